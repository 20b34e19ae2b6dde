"""Queue benchmark: cdragon's queues side by side with beanstalkd (Debian's, binlog
fsync'd on every write: `-b DIR -f 0`) and Redis (`appendfsync always`, the reliable
queue pattern: LPUSH, BLMOVE to a processing list, LREM to ack), each pinned to
SERVER_CPU in a fresh data dir, the load generator pinned to CLIENT_CPU. Two load
generators, the same requests for every system: this script's asyncio + uvloop clients
(one process), and bench/qload.c (one C process, epoll; compiled here with `cc -O2`),
whose own CPU cost is small enough that its rows measure the servers.

Rows, for 1 queue and for 1,000 queues:
- push: 400 connections pushing as fast as they are answered (pushes/s), by both load
  generators, and by wrk (cdragon) / redis-benchmark (Redis) beside them;
- cycle: 50 workers, each push -> receive -> ack in turn (full cycles/s), by both;
- latency: one receiver waiting, one pusher; from sending the push to the receiver
  holding the message (p50 / p99 over LAT_SAMPLES pushes, one at a time; Python client).
Each load generator's run has a fresh server. Then `--scale N` (cdragon only): N
messages in one queue: push rate in batches of 1,000 per request, the server's RSS
before and after (once checkpoints have moved the bodies to LMDB), so the memory per
ready message, the restart time with N messages, and that a receive and the stats
still answer at once.

Writes section "queues" of bench/RESULTS.md (bench/sections.py); never stops a
process it did not start.

    .venv/bin/python bench/queues.py [--duration 10] [--systems cdragon,redis,beanstalkd]
                                     [--scale 10000000] [--no-write]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from knobs import CLIENT_CPU, DATA_ROOT, REPO, SERVER_CPU, log   # noqa: E402
from ports import free_port                                      # noqa: E402
from sections import replace_section                             # noqa: E402
from systems import Server, stop_all                             # noqa: E402

LAT_SAMPLES = 1000
BODY = b'{"job":"send-mail","to":"someone@example.com","n":%d}'


# ---- protocol clients: one request in flight per connection -------------------------------
class Conn(asyncio.Protocol):
    """A connection with one call in flight: send bytes, wait until `parse(buf)` says
    the answer is complete (it returns (value, bytes used) or None)."""

    def __init__(self):
        self.buf = bytearray()
        self.fut = None
        self.parse = None
        self.tr = None

    def connection_made(self, tr):
        self.tr = tr

    def data_received(self, data):
        self.buf += data
        if self.fut is not None:
            got = self.parse(self.buf)
            if got is not None:
                value, used = got
                del self.buf[:used]
                fut, self.fut = self.fut, None
                fut.set_result(value)

    def connection_lost(self, exc):
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(ConnectionError("closed"))

    def call(self, data: bytes, parse):
        self.fut = asyncio.get_running_loop().create_future()
        self.parse = parse
        self.tr.write(data)
        return self.fut


async def connect(port: int) -> Conn:
    _, c = await asyncio.get_running_loop().create_connection(Conn, "127.0.0.1", port)
    return c


def parse_http(buf):
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    i = head.find(b"content-length:")
    n = int(head[i + 15:head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None]) if i >= 0 else 0
    if len(buf) < end + 4 + n:
        return None
    status = int(head[9:12])
    return (status, bytes(buf[end + 4:end + 4 + n])), end + 4 + n


def _resp_item(buf, i):
    """(value, next index) of the RESP value at i, or None if incomplete."""
    j = buf.find(b"\r\n", i)
    if j < 0:
        return None
    kind, line = buf[i:i + 1], bytes(buf[i + 1:j])
    if kind in (b"+", b":"):
        return line, j + 2
    if kind == b"-":
        raise RuntimeError(line.decode())
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, j + 2
        if len(buf) < j + 2 + n + 2:
            return None
        return bytes(buf[j + 2:j + 2 + n]), j + 4 + n
    if kind == b"*":
        n = int(line)
        out, k = [], j + 2
        for _ in range(max(n, 0)):
            got = _resp_item(buf, k)
            if got is None:
                return None
            out.append(got[0])
            k = got[1]
        return out, k
    raise RuntimeError(f"RESP? {bytes(buf[i:i + 20])!r}")


def parse_resp(buf):
    return _resp_item(buf, 0)


def resp(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def parse_lines(n):
    """beanstalkd: n reply lines; a RESERVED line carries a body after it."""
    def parse(buf):
        i, out = 0, []
        for _ in range(n):
            j = buf.find(b"\r\n", i)
            if j < 0:
                return None
            line = bytes(buf[i:j])
            i = j + 2
            if line.startswith(b"RESERVED"):
                size = int(line.split()[2])
                if len(buf) < i + size + 2:
                    return None
                line = (line, bytes(buf[i:i + size]))
                i += size + 2
            out.append(line)
        return out, i
    return parse


# ---- what each system does for push / receive / ack -----------------------------------------
class CdragonOps:
    acc = "bench"

    def __init__(self, port):
        self.port = port

    async def setup(self, c, queue):
        pass

    async def push(self, c, queue, body):
        st, b = await c.call(b"POST /db/%s/queue/%s HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n%s" % (
            self.acc.encode(), queue.encode(), len(body), body), parse_http)
        assert st == 200, (st, b)

    async def receive(self, c, queue, wait):
        req = b'{"Queue":"%s","Wait":%d,"Visibility":60}' % (queue.encode(), wait)
        st, b = await c.call(b"POST /queue/%s HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n%s" % (
            self.acc.encode(), len(req), req), parse_http)
        assert st == 200, (st, b)
        msgs = json.loads(b)["Messages"]
        return msgs[0] if msgs else None

    async def ack(self, c, queue, msg):
        st, b = await c.call(b"DELETE /db/%s/queue/%s?receipt=%s HTTP/1.1\r\nHost: b\r\n\r\n" % (
            self.acc.encode(), queue.encode(), msg["Receipt"].encode()), parse_http)
        assert st == 200, (st, b)


class RedisOps:
    def __init__(self, port):
        self.port = port

    async def setup(self, c, queue):
        pass

    async def push(self, c, queue, body):
        await c.call(resp("LPUSH", queue, body), parse_resp)

    async def receive(self, c, queue, wait):
        return await c.call(resp("BLMOVE", queue, queue + ":processing", "RIGHT", "LEFT", wait), parse_resp)

    async def ack(self, c, queue, msg):
        n = await c.call(resp("LREM", queue + ":processing", 1, msg), parse_resp)
        assert n == b"1", n


class BeanstalkOps:
    """A connection uses and watches one tube at a time; switching costs commands."""

    def __init__(self, port):
        self.port = port
        self.using = {}
        self.watching = {}

    async def setup(self, c, queue):
        pass

    async def push(self, c, queue, body):
        pre, n = b"", 1
        if self.using.get(id(c)) != queue:
            pre, n = b"use %s\r\n" % queue.encode(), 2
            self.using[id(c)] = queue
        out = await c.call(pre + b"put 1024 0 60 %d\r\n%s\r\n" % (len(body), body), parse_lines(n))
        assert out[-1].startswith(b"INSERTED"), out

    async def receive(self, c, queue, wait):
        pre, n = b"", 1
        old = self.watching.get(id(c), "default")
        if old != queue:
            pre, n = b"watch %s\r\nignore %s\r\n" % (queue.encode(), old.encode()), 3
            self.watching[id(c)] = queue
        out = await c.call(pre + b"reserve-with-timeout %d\r\n" % wait, parse_lines(n))
        last = out[-1]
        if isinstance(last, tuple):
            return last[0].split()[1]
        return None

    async def ack(self, c, queue, msg):
        out = await c.call(b"delete %s\r\n" % msg, parse_lines(1))
        assert out[0] == b"DELETED", out


OPS = {"cdragon": CdragonOps, "redis": RedisOps, "beanstalkd": BeanstalkOps}


# ---- rows ---------------------------------------------------------------------------------------
def qname(i: int) -> str:
    return f"q{i}"


async def _timed(ops, nconn: int, duration: float, step) -> dict:
    """nconn connections, each running `await step(k, n, conn)` (n = 0, 1, ...; it
    returns how many operations it completed) until stopped; the rate over `duration`
    seconds after a 1 s warm-up, and the load generator's CPU share meanwhile."""
    conns = [await connect(ops.port) for _ in range(nconn)]
    done = 0
    stop = False

    async def worker(k, c):
        nonlocal done
        n = 0
        while not stop:
            got = await step(k, n, c)      # (not `done += await ...`: that reads done
            done += got                    # before the await and loses the others' counts)
            n += 1

    tasks = [asyncio.create_task(worker(k, c)) for k, c in enumerate(conns)]
    await asyncio.sleep(1.0)                     # warm-up
    d0, t0, c0 = done, time.perf_counter(), os.times()
    await asyncio.sleep(duration)
    d1, t1, c1 = done, time.perf_counter(), os.times()
    stop = True
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in conns:
        c.tr.close()
    return {"rate": (d1 - d0) / (t1 - t0), "client_cpu": (c1.user + c1.system - c0.user - c0.system) / (t1 - t0)}


async def row_push(ops, nconn: int, nqueues: int, duration: float) -> dict:
    async def step(k, n, c):
        await ops.push(c, qname((k + n * nconn) % nqueues), BODY % n)
        return 1
    return await _timed(ops, nconn, duration, step)


async def row_cycle(ops, nworkers: int, nqueues: int, duration: float) -> dict:
    async def step(k, n, c):
        q = qname((k + n * nworkers) % nqueues)
        await ops.push(c, q, BODY % (k * 10_000_000 + n))
        m = await ops.receive(c, q, 1)
        if m is None:
            return 0
        await ops.ack(c, q, m)
        return 1
    return await _timed(ops, nworkers, duration, step)


async def row_latency(ops, nqueues: int, samples: int) -> dict:
    pusher, receiver = await connect(ops.port), await connect(ops.port)
    lat = []
    for i in range(samples):
        q = qname(i % nqueues)
        rtask = asyncio.create_task(ops.receive(receiver, q, 5))
        await asyncio.sleep(0.002)               # the receiver is parked before the push
        t0 = time.perf_counter()
        await ops.push(pusher, q, BODY % i)
        m = await rtask
        lat.append(time.perf_counter() - t0)
        assert m is not None
        await ops.ack(receiver, q, m)
    pusher.tr.close()
    receiver.tr.close()
    lat.sort()
    return {"p50_ms": lat[len(lat) // 2] * 1000, "p99_ms": lat[int(len(lat) * 0.99)] * 1000}


# ---- servers --------------------------------------------------------------------------------------
class Beanstalkd:
    def __init__(self, run_dir: Path):
        self.port = free_port()
        self.data = Path(tempfile.mkdtemp(prefix="suite-beanstalkd-", dir=DATA_ROOT))
        self.log_path = run_dir / "beanstalkd.log"
        self.proc = None

    def start(self):
        logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(["taskset", "-c", str(SERVER_CPU), "beanstalkd", "-l", "127.0.0.1",
                                      "-p", str(self.port), "-b", str(self.data), "-f", "0"],
                                     stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        logf.close()
        import socket
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("beanstalkd did not start")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.data, ignore_errors=True)


def start(name: str, run_dir: Path):
    if name == "beanstalkd":
        s = Beanstalkd(run_dir)
    else:
        s = Server(name, run_dir, f"queues-{name}")
    s.start()
    return s


PUSH_LUA = """-- wrk: REST pushes of a 52-byte message to queue q0 or one of q0..q999
local headers = { ["Content-Type"] = "application/json" }
local nq, i = %d, 0
request = function()
   i = i + 1
   return wrk.format("POST", "/db/bench/queue/q" .. (i %% nq), headers,
                     '{"job":"send-mail","to":"someone@example.com","n":1}')
end
"""


TOOL_PUSH = ("cdragon", "redis")      # the systems with a well-known push load generator


def run_timed(cmd: list[str]) -> tuple[str, float]:
    """Run a load generator; its stdout and its CPU share (user + sys over wall seconds,
    its whole run: start-up included)."""
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    r1, t1 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    return out, (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / (t1 - t0)


def tool_push(name: str, port: int, nqueues: int, duration: float, run_dir: Path) -> dict:
    """The push row by a well-known load generator in C pinned to CLIENT_CPU: wrk for
    cdragon, redis-benchmark for Redis."""
    if name == "cdragon":
        lua = run_dir / f"push{nqueues}.lua"
        lua.write_text(PUSH_LUA % nqueues)
        out, cpu = run_timed(["taskset", "-c", str(CLIENT_CPU), "wrk", "-t1", "-c400", f"-d{duration:g}s",
                              "-s", str(lua), f"http://127.0.0.1:{port}"])
        rate = float(out.split("Requests/sec:")[1].split()[0])
        assert "Non-2xx" not in out, out
        return {"rate": rate, "client_cpu": cpu, "client": "wrk -t1 -c400"}
    cmd = ["taskset", "-c", str(CLIENT_CPU), "redis-benchmark", "-p", str(port), "-c", "400",
           "-n", str(int(30000 * duration)), "--csv"]
    cmd += ["-r", "1000", "LPUSH", "q__rand_int__", BODY % 1] if nqueues > 1 else ["LPUSH", "q0", BODY % 1]
    out, cpu = run_timed(cmd)
    rate = float(out.strip().splitlines()[-1].rsplit(",", 7)[1].strip('"'))   # (the test name holds commas)
    return {"rate": rate, "client_cpu": cpu, "client": "redis-benchmark -c400"}


QLOAD_SRC = Path(__file__).resolve().parent / "qload.c"
QLOAD_PROTO = {"cdragon": "http", "redis": "resp", "beanstalkd": "beanstalk"}


def build_qload(run_dir: Path) -> Path:
    """bench/qload.c compiled into the run dir."""
    exe = run_dir / "qload"
    subprocess.run(["cc", "-O2", "-Wall", "-o", str(exe), str(QLOAD_SRC)], check=True)
    return exe


def qload_row(exe: Path, name: str, port: int, kind: str, nconn: int, nqueues: int, duration: float) -> dict:
    """A push or cycle row by qload pinned to CLIENT_CPU: the same requests and queue
    spreading as row_push / row_cycle, 1 s of warm-up; its rate and its own CPU share
    over the measured seconds."""
    p = subprocess.run(["taskset", "-c", str(CLIENT_CPU), str(exe), "--proto", QLOAD_PROTO[name],
                        "--port", str(port), "--mode", kind, "--conns", str(nconn), "--queues", str(nqueues),
                        "--duration", f"{duration:g}", "--warmup", "1"], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"qload against {name} failed (status {p.returncode}): {p.stderr.strip()}")
    out = json.loads(p.stdout)
    return {"rate": out["rate"], "client_cpu": out["client_cpu"]}


def on_fresh(name: str, run_dir: Path, run):
    """`run(server)` against a freshly started `name`, stopped after."""
    srv = start(name, run_dir)
    try:
        return run(srv)
    finally:
        srv.stop()


def latency(name: str, srv, nq: int) -> dict:
    r = asyncio.run(row_latency(OPS[name](srv.port), nq, LAT_SAMPLES))
    if name == "cdragon":
        r["fsync_ms"] = mean_fsync_ms(srv.port)
    return r


def measure(systems: list[str], duration: float, run_dir: Path) -> list[dict]:
    qload = build_qload(run_dir)        # before any server starts: a build error ends the run at once
    rows = []
    for nq in (1, 1000):
        for kind in ("push", "cycle", "latency"):
            for name in systems:
                if kind == "latency":
                    r = on_fresh(name, run_dir, lambda s: latency(name, s, nq))
                else:
                    nconn, row = (400, row_push) if kind == "push" else (50, row_cycle)
                    r = on_fresh(name, run_dir, lambda s: asyncio.run(row(OPS[name](s.port), nconn, nq, duration)))
                    r["qload"] = on_fresh(name, run_dir,
                                          lambda s: qload_row(qload, name, s.port, kind, nconn, nq, duration))
                    if kind == "push" and name in TOOL_PUSH:
                        r["c"] = on_fresh(name, run_dir, lambda s: tool_push(name, s.port, nq, duration, run_dir))
                r.update(system=name, row=kind, queues=nq)
                log(f"queues: {r}")
                rows.append(r)
    return rows


def mean_fsync_ms(port: int) -> float:
    """cdragon's mean log append (write + fdatasync) so far: the commit in a latency."""
    st, body = asyncio.run(http_call(port, "GET", "/metrics"))
    vals = {}
    for line in body.decode().splitlines():
        if line.startswith(("cdragon_fsync_duration_seconds_sum", "cdragon_fsync_duration_seconds_count")):
            name, v = line.split()
            vals[name] = float(v)
    n = vals.get("cdragon_fsync_duration_seconds_count", 0)
    return vals.get("cdragon_fsync_duration_seconds_sum", 0) / n * 1000 if n else 0.0


# ---- scale: N messages in one queue ---------------------------------------------------------------
def rss_kb(pid: int) -> int:
    """The process's anonymous resident memory (its heap: the index, the overlay).
    Not VmRSS: that also counts the LMDB map's file pages the process has read, which
    are the kernel's page cache, shared and reclaimable."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


async def push_many(port: int, n: int, nconn: int = 8) -> float:
    conns = [await connect(port) for _ in range(nconn)]
    per = 1000
    batches = list(range(0, n, per))
    t0 = time.perf_counter()

    async def worker(c):
        while batches:
            start_i = batches.pop()
            body = json.dumps({"QPush": [{"Queue": "big", "Body": {"n": i}}
                                         for i in range(start_i, min(n, start_i + per))]}).encode()
            st, b = await c.call(b"POST /db/bench HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n%s" % (
                len(body), body), parse_http)
            assert st == 200, (st, b[:200])

    await asyncio.gather(*(worker(c) for c in conns))
    for c in conns:
        c.tr.close()
    return time.perf_counter() - t0


async def http_call(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    c = await connect(port)
    out = await c.call(b"%s %s HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n%s" % (
        method.encode(), path.encode(), len(body), body), parse_http)
    c.tr.close()
    return out


def wait_settled(srv, timeout: float = 600) -> None:
    """Until the overlay is empty (every push checkpointed into LMDB and purged)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        st, body = asyncio.run(http_call(srv.port, "GET", "/metrics"))
        text = body.decode()
        if "cdragon_queue_messages" in text:
            break
        time.sleep(1)
    time.sleep(8)       # checkpoint_interval (2 s) and the purge slices after it


def scale(n: int, run_dir: Path) -> dict:
    os.environ["CDRAGON_MAX_STORAGE_BYTES"] = str(64 << 30)
    srv = Server("cdragon", run_dir, "queues-scale")
    srv.start()
    out = {"messages": n}
    try:
        time.sleep(1)
        rss0 = rss_kb(srv.pid)
        secs = asyncio.run(push_many(srv.port, n))
        out["push_per_s"] = n / secs
        wait_settled(srv)
        rss1 = rss_kb(srv.pid)
        out["rss_before_mb"] = rss0 / 1024
        out["rss_after_mb"] = rss1 / 1024
        out["bytes_per_message"] = (rss1 - rss0) * 1024 / n
        st, body = asyncio.run(http_call(srv.port, "GET", "/db/bench/queue/big"))
        out["stats"] = json.loads(body)
        # restart with n messages: the index is rebuilt from LMDB
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(timeout=120)
        data = srv.data
        t0 = time.perf_counter()
        srv2 = Server("cdragon", run_dir, "queues-scale-2")
        srv2.prepare = lambda: None
        srv2.data = data
        srv2.cmd = [sys.executable, "-m", "cdragon", "serve", "--listen", f"127.0.0.1:{srv2.port}",
                    "--data-dir", str(data)]
        srv2.extra_env = {"CDRAGON_MAX_STORAGE_BYTES": str(64 << 30)}
        srv2.start()
        out["restart_s"] = time.perf_counter() - t0
        out["rss_restarted_mb"] = rss_kb(srv2.pid) / 1024
        out["index_bytes_per_message"] = (out["rss_restarted_mb"] - out["rss_before_mb"]) * 1024 * 1024 / n
        t0 = time.perf_counter()
        st, body = asyncio.run(http_call(srv2.port, "POST", "/queue/bench", b'{"Queue":"big","Max":10}'))
        out["receive_ms"] = (time.perf_counter() - t0) * 1000
        out["received"] = len(json.loads(body)["Messages"])
        st, body = asyncio.run(http_call(srv2.port, "GET", "/db/bench/queue/big"))
        out["stats_after_restart"] = json.loads(body)
        srv2.stop()
    finally:
        stop_all()
    return out


# ---- report ---------------------------------------------------------------------------------------------
def report(rows: list[dict], sc: dict | None, duration: float, load: str) -> str:
    lines = ["# Queues", "",
             f"Run of {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; load average at start: "
             f"{load} (a shared 2-core machine: other work ran meanwhile, so read rows of one run "
             "side by side, not as absolute figures).", "",
             "Measured by `bench/queues.py` (`.venv/bin/python bench/queues.py`). Each system pinned to "
             f"CPU {SERVER_CPU} and started fresh for each load generator's run; the load generator pinned "
             f"to CPU {CLIENT_CPU}, one request in flight per connection; {duration:g} s per row after 1 s "
             "of warm-up. cdragon: REST push (`POST /db/bench/queue/q`), receive (`POST /queue/bench`, "
             "Visibility 60), ack (`DELETE ...?receipt=`). Redis 7 with `appendfsync always`: LPUSH, "
             "BLMOVE to `q:processing`, LREM. beanstalkd (Debian) with `-b DIR -f 0`: put, "
             "reserve-with-timeout, delete (switching tubes costs `use` / `watch` + `ignore`, sent in "
             "the same write).", "",
             "Two load generators send the same requests to every system, connection k's n-th push "
             "or cycle on queue `q{(k + n * connections) % queues}`: a Python process (asyncio + uvloop) "
             "and `bench/qload.c` (one C process, one thread, epoll; compiled by the script with "
             "`cc -O2`). Client CPU is the load generator's share of its core over the measured "
             "seconds: near 1.0 means the row is bounded by the load generator, not the server (the "
             "Python client parses HTTP answers at a higher cost than RESP ones, so where it nears "
             "1.0 it understates cdragon more than Redis); the C client's share shows how far its "
             "rows are from that bound. The latency rows use the Python client (one push at a time, "
             "its cost the same for every system).", "",
             "The push row also has a figure from a well-known load generator in C where one exists, "
             "each against its own fresh server: wrk with a Lua script for cdragon (no warm-up; pushes "
             "to q(i mod queues) in turn), redis-benchmark for Redis (random queues among 1,000 with "
             "`-r 1000`); their client CPU spans their whole run, start-up included. beanstalkd has "
             "none.", "",
             "| queues | row | system | Python client | client CPU | C client (qload) | client CPU "
             "| push, wrk / redis-benchmark | client CPU |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        unit = {"push": "pushes", "cycle": "cycles"}.get(r["row"])
        if r["row"] == "latency":
            res = f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"
            if "fsync_ms" in r:
                res += f" (its commit: a log append of {r['fsync_ms']:.2f} ms on average)"
            cells = [res, ""]
        else:
            cells = [f"{r['rate']:,.0f} {unit}/s", f"{r['client_cpu']:.2f}"]
        for c in (r.get("qload"), r.get("c")):
            cells += [f"{c['rate']:,.0f} {unit}/s" + (f" ({c['client']})" if "client" in c else ""),
                      f"{c['client_cpu']:.2f}"] if c else ["", ""]
        conns = {"push": " (400 conns)", "cycle": " (50 workers)", "latency": ""}[r["row"]]
        lines.append(f"| {r['queues']:,} | {r['row']}{conns} | {r['system']} | " + " | ".join(cells) + " |")
    if sc:
        lines += ["", f"Scale (`--scale {sc['messages']}`): {sc['messages']:,} messages pushed into one "
                  f"queue in requests of 1,000 `QPush` entries over 8 connections at "
                  f"{sc['push_per_s']:,.0f} messages/s; server anonymous RSS (`RssAnon`: the heap, not the LMDB "
                  f"map's page cache) {sc['rss_before_mb']:.0f} MB before, "
                  f"{sc['rss_after_mb']:.0f} MB after, once checkpointed and the overlay purged "
                  f"({sc['bytes_per_message']:.1f} bytes per message: the allocator keeps the memory "
                  "the overlay held the bodies in until checkpoints caught up). Stats then: "
                  + json.dumps(sc["stats"]) + f". Restart with them: ready in "
                  f"{sc['restart_s']:.1f} s (the index rebuilt from LMDB), RssAnon "
                  f"{sc['rss_restarted_mb']:.0f} MB: **{sc['index_bytes_per_message']:.1f} bytes per ready "
                  "message** (the index: a 16-byte (due, id) entry in one C array per queue, grown by "
                  "half); a receive of 10 answered in "
                  f"{sc['receive_ms']:.1f} ms ({sc['received']} messages); stats: "
                  + json.dumps(sc["stats_after_restart"]) + "."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--systems", default="cdragon,redis,beanstalkd")
    ap.add_argument("--scale", type=int, default=0)
    ap.add_argument("--no-rows", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    os.sched_setaffinity(0, {CLIENT_CPU})
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="queues-run-", dir=DATA_ROOT))
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    rows, sc = [], None
    saved = DATA_ROOT / "queues.json"
    if not a.scale and saved.exists():
        sc = json.loads(saved.read_text()).get("scale")      # the last --scale run's, kept
    try:
        if not a.no_rows:
            rows = measure([s for s in a.systems.split(",") if s], a.duration, run_dir)
        if a.scale:
            sc = scale(a.scale, run_dir)
            log(f"queues scale: {sc}")
    finally:
        stop_all()
    text = report(rows, sc, a.duration, load)
    print(text)
    (DATA_ROOT / "queues.json").write_text(json.dumps({"rows": rows, "scale": sc}, indent=1))
    if not a.no_write:
        replace_section(REPO / "bench" / "RESULTS.md", "queues", text)


if __name__ == "__main__":
    random.seed(1)
    main()
