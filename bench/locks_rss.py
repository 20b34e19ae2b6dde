"""Memory of the lock table at the scale API.md promises ("10,000 waiters on one key;
1,000,000 held locks"): the server's RSS (VmRSS of its process) measured

  1. fresh, before anything;
  2. with WAITERS clients (default 10,000) all waiting for one held key (each its own
     connection with `POST /db/bench/lock/hot?wait=300`);
  3. after those clients went away (every waiter must leave the queue);
  4. with LOCKS locks (default 1,000,000) held at once, created as fast as the client
     can: `POST /db/bench {"LockID": "k<i>", "LockDur": 3600}`, one lock per request
     (a request takes one LockID), many connections with pipelining.

Checks along the way (exit 1 if one fails): all waiters parked at once (one more
waiter is refused 429 too_many, the per-key cap being WAITERS), no waiter's connection
was closed while waiting, every lock request answered 200 with a distinct handle, and the
locks are really held afterwards (samples answer 409 locked).

    .venv/bin/python bench/locks_rss.py [--waiters 10000] [--locks 1000000]
        [--port P (default: a free one)] [--results bench/RESULTS.md] [--no-write]

The server is started fresh with its data directory under bench/out (the real disk),
pinned to CPU 0 and this client to CPU 1 when there are two CPUs, and stopped at the
end (SIGTERM). The numbers go to stdout and into a section of bench/RESULTS.md that
bench/report.py keeps when it rewrites the file. Stdlib only (plus uvloop if present).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from ports import free_port
from sections import replace_section

REPO = Path(__file__).resolve().parent.parent
PY = REPO / ".venv" / "bin" / "python"


# --------------------------------------------------------------------------- the server


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of a process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0])
    return out


def start_server(port: int, data: Path, log: Path, cpu: int | None, waiters: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_")}
    env["CDRAGON_MAX_WAITERS_PER_KEY"] = str(waiters)   # the default is 10,000: the same unless --waiters
    cmd = [str(PY), "-m", "cdragon", "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data)]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu)] + cmd
    with socket.socket() as s:   # never measure someone else's server on that port
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise SystemExit(f"port {port} is busy ({e.strerror}): pick another with --port") from None
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200 and proc.poll() is None:
                    return proc
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not answer /health within 30 s; see {log}")


def server_pid(proc: subprocess.Popen) -> int:
    """The python process (taskset execs it, so it is the same PID)."""
    return proc.pid


def stop_server(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            return -9
    return proc.returncode


# --------------------------------------------------------------------------- HTTP over asyncio


def req(method: str, path: str, body: bytes = b"") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


_CL = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)


async def read_resp(reader: asyncio.StreamReader, timeout: float = 60) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status = int(head.split(b" ", 2)[1])
    m = _CL.search(head)
    body = await asyncio.wait_for(reader.readexactly(int(m.group(1))), timeout) if m else b""
    return status, body


async def one(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        w.write(req(method, path, body))
        return await read_resp(r, 30)
    finally:
        w.close()


# --------------------------------------------------------------------------- 1. waiters


async def waiters_phase(port: int, pid: int, n: int, out: dict) -> None:
    path = "/db/bench/lock/hot"
    status, body = await one(port, "POST", path + "?dur=3600")
    assert status == 200, (status, body)
    holder = json.loads(body)["Lock"]

    t0 = time.monotonic()
    conns = []
    for start in range(0, n, 500):
        batch = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                       for _ in range(min(500, n - start))))
        for _, w in batch:
            w.write(req("POST", path + "?wait=300&dur=30"))
        conns.extend(batch)
    for _, w in conns:
        await w.drain()

    # all parked once one more waiter is refused (the per-key cap is n by default)
    parked = False
    for _ in range(120):
        await asyncio.sleep(0.5)
        status, body = await one(port, "POST", path + "?wait=0.2")
        if status == 429:
            parked = True
            break
        assert status == 409, (status, body)
    if not parked:
        raise SystemExit(f"the {n:,} waiters were not all parked within 60 s")
    out["waiters_setup_s"] = time.monotonic() - t0
    await asyncio.sleep(0.5)
    out["with_waiters"] = proc_status(pid)

    # nobody was answered (or cut off) while the lock was held
    answered = [i for i, (r, _) in enumerate(conns) if r.at_eof()]
    if answered:
        raise SystemExit(f"{len(answered)} waiter connections closed while the lock was held")

    for _, w in conns:
        w.close()
    await asyncio.sleep(1.0)
    # every waiter left: the lock is still held, a new waiter fits again, release works
    status, body = await one(port, "DELETE", f"{path}?handle={holder}")
    assert status == 200, (status, body)
    status, body = await one(port, "GET", path)
    assert status == 200 and json.loads(body) == {"Locked": False}, (status, body)
    out["after_waiters"] = proc_status(pid)


# --------------------------------------------------------------------------- 2. held locks


async def locks_phase(port: int, pid: int, n: int, conns: int, depth: int, out: dict) -> None:
    next_i = 0
    handles_seen = 0
    max_handle = 0
    errors: list[str] = []

    async def worker():
        nonlocal next_i, handles_seen, max_handle
        r, w = await asyncio.open_connection("127.0.0.1", port)
        try:
            while next_i < n and not errors:
                lo = next_i
                hi = min(n, lo + depth)
                next_i = hi
                w.write(b"".join(req("POST", "/db/bench", b'{"LockID":"k%d","LockDur":3600}' % i)
                                 for i in range(lo, hi)))
                for _ in range(lo, hi):
                    status, body = await read_resp(r)
                    if status != 200:
                        errors.append(f"{status} {body[:200]!r}")
                        return
                    h = int(body[8:body.index(b",")])   # {"Lock":H,"Till":...}
                    handles_seen += 1
                    if h > max_handle:
                        max_handle = h
        finally:
            w.close()

    before = proc_status(pid)
    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(conns)))
    elapsed = time.monotonic() - t0
    if errors:
        raise SystemExit(f"lock requests failed, e.g. {errors[:3]}")
    assert handles_seen == n, (handles_seen, n)
    await asyncio.sleep(1.0)
    out["locks_before"] = before
    out["with_locks"] = proc_status(pid)
    out["locks_s"] = elapsed
    out["locks_rate"] = n / elapsed
    out["max_handle"] = max_handle

    # they are held: samples answer 409 locked; a fresh key still locks
    for i in (0, n // 2, n - 1):
        status, body = await one(port, "POST", "/db/bench", b'{"LockID":"k%d"}' % i)
        if status != 409 or json.loads(body).get("Code") != "locked":
            raise SystemExit(f"lock k{i} is not held: {status} {body[:200]!r}")
    status, body = await one(port, "POST", "/db/bench", b'{"LockID":"fresh"}')
    assert status == 200, (status, body)
    out["next_handle"] = json.loads(body)["Lock"]
    if out["next_handle"] <= max_handle:
        raise SystemExit("handle after 1M grants is not above every handle issued")


# --------------------------------------------------------------------------- report


def mib(kib: int) -> str:
    return f"{kib / 1024:,.1f} MiB"


def render(args, out: dict, data_bytes: int, exit_code: int) -> str:
    base, ww, aw = out["fresh"], out["with_waiters"], out["after_waiters"]
    lb, wl = out["locks_before"], out["with_locks"]
    per_waiter = (ww["VmRSS"] - base["VmRSS"]) * 1024 / args.waiters
    per_lock = (wl["VmRSS"] - lb["VmRSS"]) * 1024 / args.locks
    per_lock_anon = (wl["RssAnon"] - lb["RssAnon"]) * 1024 / args.locks
    lines = [
        "## Lock table memory (`bench/locks_rss.py`)",
        "",
        f"Run of {out['date']}: a fresh server (data on the real disk), pinned to CPU 0, the client on CPU 1; "
        "RSS is the server process's VmRSS (RssAnon = heap, RssFile = LMDB pages mapped). Reproduce with "
        "`.venv/bin/python bench/locks_rss.py`.",
        "",
        "| state | VmRSS | RssAnon | RssFile | per item |",
        "|---|---:|---:|---:|---:|",
        f"| fresh server | {mib(base['VmRSS'])} | {mib(base['RssAnon'])} | {mib(base['RssFile'])} | — |",
        f"| {args.waiters:,} clients waiting on one key | {mib(ww['VmRSS'])} | {mib(ww['RssAnon'])} "
        f"| {mib(ww['RssFile'])} | {per_waiter:,.0f} B per waiter (connection included) |",
        f"| after those clients left | {mib(aw['VmRSS'])} | {mib(aw['RssAnon'])} | {mib(aw['RssFile'])} | — |",
        f"| {args.locks:,} locks held | {mib(wl['VmRSS'])} | {mib(wl['RssAnon'])} | {mib(wl['RssFile'])} "
        f"| {per_lock:,.0f} B per lock ({per_lock_anon:,.0f} B of heap) |",
        "",
        f"- Peak RSS (VmHWM) over the run: {mib(wl['VmHWM'])}. Data directory after the run: "
        f"{data_bytes / 2**20:,.1f} MiB.",
        f"- The {args.waiters:,} waiters were all parked at once (one more waiter was refused 429 "
        f"`too_many`) {out['waiters_setup_s']:.1f} s after the first connect; no waiter's connection was closed "
        "while the lock was held, and all left the queue when their connections closed (the lock was then released and read free).",
        f"- The {args.locks:,} locks were taken in {out['locks_s']:.1f} s ({out['locks_rate']:,.0f} "
        f"locks/s, one lock per request, {args.conns} connections pipelining {args.depth} requests each; "
        "a Python client: a fill rate, not a throughput benchmark). Samples answer 409 `locked`; the next "
        f"handle ({out['next_handle']:,}) is above every one issued.",
        f"- The server exited with code {exit_code} after SIGTERM.",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    replace_section(path, "locks_rss", section)


async def main_async(args, port: int, pid: int, out: dict) -> None:
    await waiters_phase(port, pid, args.waiters, out)
    await locks_phase(port, pid, args.locks, args.conns, args.depth, out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--waiters", type=int, default=10_000)
    ap.add_argument("--locks", type=int, default=1_000_000)
    ap.add_argument("--conns", type=int, default=64, help="connections creating the locks")
    ap.add_argument("--depth", type=int, default=64, help="pipelined lock requests per connection")
    ap.add_argument("--port", type=int, default=0, help="default: a free port")
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = ap.parse_args()

    need = args.waiters + 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} < {need}: raise it (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else need, hard))

    if not args.port:
        args.port = free_port()
    two_cpus = (os.cpu_count() or 1) >= 2
    if two_cpus:
        os.sched_setaffinity(0, {1})
    (REPO / "bench" / "out").mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="locks-rss-", dir=REPO / "bench" / "out"))
    log = data.with_suffix(".log")
    proc = start_server(args.port, data / "db", log, 0 if two_cpus else None, args.waiters)
    out: dict = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}
    code = None
    try:
        pid = server_pid(proc)
        time.sleep(0.5)
        out["fresh"] = proc_status(pid)
        try:
            import uvloop  # noqa: PLC0415 - optional, faster client
            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        runner(main_async(args, args.port, pid, out))
        if proc.poll() is not None:
            raise SystemExit(f"the server died during the run (exit {proc.returncode}); see {log}")
        data_bytes = sum(f.stat().st_size for f in (data / "db").rglob("*") if f.is_file())
    finally:
        code = stop_server(proc)
    section = render(args, out, data_bytes, code)
    print(section)
    if not args.no_write:
        write_section(args.results, section)
        print(f"written to {args.results}")
    shutil.rmtree(data, ignore_errors=True)
    if code != 0:
        print(f"server exit code {code} after SIGTERM; log: {log}", file=sys.stderr)
        return 1
    log.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
