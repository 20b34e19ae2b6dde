"""Listing by prefix: how long a list takes, and what a big list costs other clients.

Server on CPU 0 (taskset), everything else on CPU 1, data on the real disk:
1. 1,000 keys of 64 B: 1,000 `GET /db/l1k/kv` round trips on one keep-alive connection,
   timed by the client (loopback included), and the server process's CPU time over
   them divided by their number (its time per list). Same for 10,000 keys
   (`limit=10000`, 200 lists).
2. Writers alone: wrk with bench/lua/kvset64.lua (400 connections), then the same with
   one client listing the 10,000 keys beside it, once every 100 ms and then back to
   back; the writers' p99 with the lists over their p99 without (issue 12's target:
   within 2x). Back to back, the lister asks for ~5 ms of the one core's time per list
   without pause: the writers then share the core with it, which no single-threaded
   server can hide.

    .venv/bin/python bench/list.py            (about 40 s; DURATION=10 per wrk run)
Prints a Markdown table; with --write, also puts it into bench/RESULTS.md (section
"list").
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from ports import free_port  # noqa: E402
from sections import replace_section  # noqa: E402

PY = str(REPO / ".venv" / "bin" / "python")
DURATION = int(os.environ.get("DURATION", "10"))
INTERVALS = (0.1, 0.0)              # a 10,000-key list every 100 ms, then back to back
VALUE = "v" * 62                    # 64 bytes of JSON


def request(sock, method: str, path: str, body: bytes = b"") -> bytes:
    sock.sendall(b"%s %s HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n%s"
                 % (method.encode(), path.encode(), len(body), body))
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(rest) < n:
        rest += sock.recv(1 << 20)
    assert head.startswith(b"HTTP/1.1 200"), head
    return rest


def fill(port: int, acc: str, n: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        for i in range(0, n, 1000):
            body = json.dumps({"KVSet": [{"Key": f"k{j:05d}", "Value": VALUE} for j in range(i, min(n, i + 1000))]})
            request(s, "POST", f"/db/{acc}", body.encode())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_lists(port: int, path: str, rounds: int) -> list[float]:
    out = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(rounds):
            t0 = time.perf_counter()
            body = request(s, "GET", path)
            out.append((time.perf_counter() - t0) * 1000)
        assert json.loads(body)["More"] is False
    return out


def wrk_p99(port: int) -> tuple[float, float]:
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c400", f"-d{DURATION}s", "--timeout", "2s",
                          "-s", str(BENCH / "lua" / "kvset64.lua"), f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"BENCH_RESULT .*", out).group(0)
    f = dict(kv.split("=") for kv in m.split()[1:])
    return float(f["rps"]), int(f["p99_us"]) / 1000


def start_cdragon(tag: str):
    """A fresh server on CPU 0 with its data on the real disk (bench/out): (process,
    port, data dir), once it accepts connections."""
    (BENCH / "out").mkdir(exist_ok=True)
    data = tempfile.mkdtemp(dir=BENCH / "out", prefix=tag)
    port = free_port()
    srv = subprocess.Popen(["taskset", "-c", "0", PY, "-m", "cdragon", "serve", "--listen", f"127.0.0.1:{port}",
                            "--data-dir", data], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            break
        except OSError:
            time.sleep(0.05)
    return srv, port, data


def main() -> int:
    if shutil.which("wrk") is None:
        print("wrk is missing (apt-get install -y wrk, or run make quick-bench once)", file=sys.stderr)
        return 1
    srv, port, data = start_cdragon("list-")
    try:
        fill(port, "l1k", 1000)
        fill(port, "l10k", 10000)
        os.sched_setaffinity(0, {1})
        c0 = cpu_seconds(srv.pid)
        t1k = time_lists(port, "/db/l1k/kv", 1000)
        c1 = cpu_seconds(srv.pid)
        t10k = time_lists(port, "/db/l10k/kv?limit=10000", 200)
        c2 = cpu_seconds(srv.pid)
        cpu1k, cpu10k = (c1 - c0) / 1000 * 1000, (c2 - c1) / 200 * 1000
        alone = wrk_p99(port)
        beside = []
        for interval in INTERVALS:
            stop = threading.Event()
            lists = [0]

            def lister():
                with socket.create_connection(("127.0.0.1", port)) as s:
                    while not stop.is_set():
                        request(s, "GET", "/db/l10k/kv?limit=10000")
                        lists[0] += 1
                        if interval:
                            stop.wait(interval)
            th = threading.Thread(target=lister)
            th.start()
            try:
                beside.append((interval, lists, wrk_p99(port)))
            finally:
                stop.set()
                th.join()
    finally:
        srv.terminate()
        srv.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)

    def ms(xs):
        xs = sorted(xs)
        return f"{statistics.median(xs):.2f} ms median, {xs[int(len(xs) * 0.99) - 1]:.2f} ms p99"
    rows = [
        "| what | measured |",
        "|---|---|",
        f"| list 1,000 keys of 64 B: round trip on loopback | {ms(t1k)} |",
        f"| ... the server's CPU per list | {cpu1k:.2f} ms |",
        f"| list 10,000 keys of 64 B: round trip | {ms(t10k)} |",
        f"| ... the server's CPU per list | {cpu10k:.2f} ms |",
        f"| writers alone (kvset64, 400 connections) | {alone[0]:,.0f} req/s, p99 {alone[1]:.2f} ms |",
    ]
    for interval, lists, (rps, p99) in beside:
        how = f"one every {interval * 1000:.0f} ms" if interval else "back to back"
        rows.append(f"| writers beside a client listing 10,000 keys, {how} ({lists[0]} lists) "
                    f"| {rps:,.0f} req/s, p99 {p99:.2f} ms: {p99 / alone[1]:.2f}x the p99 alone |")
    report(rows, "list", "Listing by prefix", "bench/list.py",
           "Server on CPU 0; the lists, the listing client and wrk on CPU 1.")
    return 0


def report(rows: list[str], section: str, title: str, script: str, where: str) -> None:
    """Print the table; with --write, also put it into bench/RESULTS.md's `section`."""
    table = "\n".join(rows)
    print(table)
    if "--write" in sys.argv:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        replace_section(BENCH / "RESULTS.md", section,
                        f"## {title} ({stamp}, `.venv/bin/python {script} --write`)\n\n{where}\n\n{table}\n")


if __name__ == "__main__":
    sys.exit(main())
