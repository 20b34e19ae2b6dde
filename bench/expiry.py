"""Mass expiry: 100,000 keys whose TTL ends in the same second, while 400 writers run.

Server on CPU 0 (taskset), the rest on CPU 1, data on the real disk. Writers alone (wrk,
bench/lua/kvset64.lua, DURATION s), then the same while 100,000 keys written just
before with one TTL expire in the middle of the run; the writers' p99 in both, and how
long after their expiry the keys were all deleted (the account's revision moves at
each expiry slice; the test polls a prefix watch's Rev until the deletes are in).

    .venv/bin/python bench/expiry.py [--write]       (about 40 s)
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time

from list import report, request, start_cdragon, wrk_p99   # the same harness as bench/list.py

KEYS = 100_000
TTL = 6.0          # seconds after the fill: the middle of a 10 s wrk run started at once


def fill(port: int) -> float:
    """Write KEYS keys with one TTL; returns their expiry (epoch seconds)."""
    expires = 0.0
    with socket.create_connection(("127.0.0.1", port)) as s:
        t_end = time.time() + TTL
        for i in range(0, KEYS, 1000):
            ttl = t_end - time.time()
            body = json.dumps({"KVSet": [{"Key": f"e/{j:06d}", "Value": "v" * 62, "TTL": ttl}
                                         for j in range(i, i + 1000)]})
            out = json.loads(request(s, "POST", "/db/exp", body.encode()))
            expires = max(expires, out["KVSet"][0]["Expires"])
    return expires


def main() -> int:
    srv, port, data = start_cdragon("expiry-")
    try:
        os.sched_setaffinity(0, {1})
        alone = wrk_p99(port)
        expires = fill(port)
        last_change = [None]
        stop = threading.Event()

        def watch_revision():
            # each expiry slice moves the account's revision: the last move is when the
            # last deletes went in (a prefix with no keys makes the poll cheap)
            with socket.create_connection(("127.0.0.1", port)) as s:
                rev = None
                while not stop.is_set():
                    r = json.loads(request(s, "GET", "/db/exp/kv?prefix=zzz&limit=1"))["Rev"]
                    if rev is not None and r != rev:
                        last_change[0] = time.time()
                    rev = r
                    time.sleep(0.02)
        th = threading.Thread(target=watch_revision)
        th.start()
        during = wrk_p99(port)
        time.sleep(2)
        stop.set()
        th.join()
        with socket.create_connection(("127.0.0.1", port)) as s:
            left = json.loads(request(s, "GET", "/db/exp/kv?prefix=e/&limit=1&keys"))["KV"]
            rev = json.loads(request(s, "GET", "/db/exp/kv?prefix=zzz&limit=1"))["Rev"]
        assert not left, "keys left after their expiry"
        done_at = [last_change[0]]
    finally:
        srv.terminate()
        srv.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)
    rows = [
        "| what | measured |",
        "|---|---|",
        f"| writers alone (kvset64, 400 connections) | {alone[0]:,.0f} req/s, p99 {alone[1]:.2f} ms |",
        f"| writers while {KEYS:,} keys expire in the same second | {during[0]:,.0f} req/s, p99 {during[1]:.2f} ms: "
        f"{during[1] / alone[1]:.2f}x the p99 alone |",
        f"| the last of them deleted (durable, watchers told), after their expiry "
        f"({rev - KEYS // 1000} revisions for the deletes) | "
        + (f"{done_at[0] - expires:.2f} s |" if done_at[0] else "not seen |"),
    ]
    report(rows, "expiry", "Mass expiry", "bench/expiry.py",
           "Server on CPU 0; wrk and the filling and polling client on CPU 1.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
