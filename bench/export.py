"""Export and import of 1,000,000 keys (64 B values) against real servers.

1. A fresh server (pinned to CPU 0, data on the real disk, bench/out; bench/list.py
   starts it and fills it) gets N keys (default 1,000,000)
   in requests of 1,000.
2. `GET /admin/export` is read to a file on one connection, timed by the client; the
   server's RSS (VmRSS) is sampled every 50 ms meanwhile: flat means the dump is
   streamed, not built in memory (the child that reads LMDB is a process of its own;
   its peak RSS is reported too).
3. The dump is POSTed to `/admin/import` of a second fresh server, timed until the
   answer (which comes once the batch is durable), and a few keys are read back.

    .venv/bin/python bench/export.py [--keys N] [--write]     (about 20 s for 1M)
Prints a Markdown table; with --write, also puts it into bench/RESULTS.md (section
"export").
"""
from __future__ import annotations

import argparse
import http.client
import json
import shutil
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from list import fill, start_cdragon  # noqa: E402  (a fresh server; N keys of 64 B)
from sections import replace_section  # noqa: E402


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def children_peak(pid: int, peaks: dict) -> None:
    """Record the peak RSS of the server's child processes (the export child)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return
    for k in kids:
        try:
            peaks[k] = max(peaks.get(k, 0.0), rss_mb(int(k)))
        except OSError:
            pass


def timed_export(port: int, pid: int, path: Path) -> dict:
    samples: list[float] = []
    kids: dict = {}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(rss_mb(pid))
            children_peak(pid, kids)
            time.sleep(0.05)
    t = threading.Thread(target=sample)
    before = rss_mb(pid)
    t.start()
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("GET", "/admin/export")
    r = conn.getresponse()
    assert r.status == 200, r.status
    size = 0
    with open(path, "wb") as fh:
        while True:
            chunk = r.read1(1 << 20)
            if not chunk:
                break
            fh.write(chunk)
            size += len(chunk)
    secs = time.perf_counter() - t0
    stop.set()
    t.join()
    conn.close()
    return {"secs": secs, "bytes": size, "rss_before": before, "rss_min": min(samples),
            "rss_max": max(samples), "child_peak": max(kids.values(), default=0.0)}


def timed_import(port: int, pid: int, path: Path, n: int) -> dict:
    body = path.read_bytes()
    before = rss_mb(pid)
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/admin/import", body=body, headers={"Content-Type": "application/x-ndjson"})
    r = conn.getresponse()
    out = r.read()
    secs = time.perf_counter() - t0
    assert r.status == 200, out[:300]
    conn.request("POST", "/db/big", body=json.dumps({"KVGet": ["k00000", f"k{n - 1:05d}"]}))
    check = json.loads(conn.getresponse().read())
    conn.close()
    return {"secs": secs, "answer": json.loads(out), "check": check, "rss_before": before,
            "rss_after": rss_mb(pid), "rss_peak": rss_mb(pid, "VmHWM")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    n = args.keys
    procs, dirs = [], []
    try:
        src, sport, sdata = start_cdragon("export-src-")
        procs.append(src)
        dirs.append(sdata)
        t0 = time.perf_counter()
        fill(sport, "big", n)
        fill_secs = time.perf_counter() - t0
        dump = Path(sdata) / "dump.ndjson"
        e = timed_export(sport, src.pid, dump)
        dst, dport, ddata = start_cdragon("export-dst-")
        procs.append(dst)
        dirs.append(ddata)
        i = timed_import(dport, dst.pid, dump, n)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    table = f"""## Export and import ({n:,} keys of 64 B)

Measured by `bench/export.py` (`.venv/bin/python bench/export.py --write`): one server
filled with {n:,} keys of 64 B (in {n // 1000:,} requests of 1,000: {fill_secs:.1f} s), its
`GET /admin/export` read to a file on one connection, then that dump POSTed to
`/admin/import` of a second, empty server (answered once the batch is durable).
Server RSS is VmRSS sampled every 50 ms during the export: a flat line means the dump
is streamed (the LMDB reader is a child process; its peak is shown apart).

| step | time | rate | size / memory |
|---|---|---|---|
| export | {e['secs']:.1f} s | {n / e['secs']:,.0f} keys/s | {e['bytes'] / 1e6:.0f} MB of NDJSON |
| server RSS during export | | | {e['rss_before']:.0f} MB before, {e['rss_min']:.0f}–{e['rss_max']:.0f} MB during |
| export child (LMDB reader) | | | peak {e['child_peak']:.0f} MB RSS (LMDB pages mapped) |
| import | {i['secs']:.1f} s | {n / i['secs']:,.0f} keys/s | server RSS {i['rss_before']:.0f} MB before, {i['rss_after']:.0f} MB after, peak {i['rss_peak']:.0f} MB |

The import answered {json.dumps({k: v for k, v in i['answer'].items() if k != 'Rev'})}; reading back
the first and last keys gave versions {[kv['Version'] for kv in i['check']['KV']]}. The import holds the
body, the parsed plan and the batch's overlay in memory at once (about
{(i['rss_peak'] - i['rss_before']) / max(e['bytes'] / 1e6, 1):.1f}× the dump's size at its peak), and blocks the
server's loop while it parses and stages (API.md "Operations").
"""
    print(table)
    if args.write:
        replace_section(BENCH / "RESULTS.md", "export", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
