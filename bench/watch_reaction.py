"""Watch reaction benchmark: how long from sending one write until every watcher of the
written key has its answer, for cdragon, the bare fan-out ceiling of its stack
(`bench/fanout_ceiling.py`) and Redis pub/sub, taking turns in one run.

A raw-socket client (per system one process, one thread, non-blocking sockets, one epoll;
the parent makes the systems take turns write by write):

- opens N watcher connections; for cdragon and the ceiling each sends
  `POST /watch/bench {"ID": key, "Version": V, "Timeout": 300}` (V = the key's current
  version, so it parks); for Redis each sends `SUBSCRIBE key`;
- waits until all are parked (Redis confirms each subscription; for HTTP: a pause that
  grows with N, then a round trip on a probe connection, then a check that no watcher
  got anything);
- sends the write on its own connection: `PUT /db/bench/kv/{key}` with a ~64 B JSON
  value (the ceiling's trigger is the same request), for Redis
  `MULTI / SET key v / PUBLISH key v / EXEC` (with `appendfsync always` the reply and
  the messages go out after the fsync, as cdragon's do);
- takes the time with `time.time_ns()` just before the write's send() and the kernel
  receive timestamp (SO_TIMESTAMPNS, same clock) of every answer, so the figures are
  the server's, not the client's reading speed. Every answer is checked: status 200,
  the written value, and byte-identical answers across the watchers of one write.

Per write it records: reaction = write sent -> last watcher's answer received; ack =
write sent -> the writer's own answer; fan-out = the first of (writer's answer, first
watcher's answer) -> last watcher's answer (for cdragon that is the time the watch hub
spends after the commit; it holds no fsync, so it is the figure comparable with the
bare ceiling, which does no storage at all).

Scenarios: `one:N` = N watchers on one key, several writes (the watchers re-arm between
writes); `keys:KxW` = K keys x W watchers, one write per key, sequentially; `idle:NxK`
= N idle watchers spread over K keys, then the server's RSS (and one write as a check).

    python bench/watch_reaction.py run --cdragon 127.0.0.1:P1 --ceiling 127.0.0.1:P2 \\
        [--redis 127.0.0.1:P3] --scenario one:1 --scenario keys:1000x5 --out res.jsonl
    python bench/watch_reaction.py run --cdragon 127.0.0.1:P1 --pid PID --scenario idle:100000x10000 ...
    python bench/watch_reaction.py report res.jsonl --results bench/RESULTS.md [--meta meta.json]

`bench/watch.sh` starts the servers pinned to CPU 0, runs this pinned to CPU 1, and
writes the "Watch reaction" section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import select
import socket
import statistics
import struct
import sys
import time
from pathlib import Path

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = getattr(socket, "SCM_TIMESTAMPNS", SO_TIMESTAMPNS)
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
ANC = socket.CMSG_SPACE(16)
CONN_PER_SRC_IP = 20_000          # spread big fleets over 127.0.0.x source addresses
ROUND_TIMEOUT = 60.0
ACC = "bench"
CL_RE = re.compile(rb"\r\n[Cc]ontent-[Ll]ength: *(\d+)\r\n")
EXEC_RE = re.compile(rb"\*2\r\n\+OK\r\n:(\d+)\r\n$")


def log(msg: str):
    print(f"[watch_reaction {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def raise_nofile(n: int) -> int:
    """Raise RLIMIT_NOFILE towards n (the hard limit too, where the process may: that
    needs CAP_SYS_RESOURCE); returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n if hard != resource.RLIM_INFINITY and hard < n else hard))
    except (ValueError, OSError):
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard) if hard != resource.RLIM_INFINITY else n, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


args_limit_check = False   # --limit-check: idle:N was started with CDRAGON_MAX_WATCHERS=N


def rss_kib(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out


def oncpu_ns(pid: int | None) -> int | None:
    """Time the server's main thread (the event loop) has spent on a CPU, in ns
    (/proc/PID/schedstat: unlike wall time, not inflated by other tenants of the core)."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/schedstat") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Conn:
    __slots__ = ("sock", "fd", "buf", "kts", "done", "key")

    def __init__(self, sock: socket.socket, key=None):
        self.sock = sock
        self.fd = sock.fileno()
        self.buf = b""
        self.kts = None
        self.done = False
        self.key = key


def open_socket(host: str, port: int, index: int, timestamps: bool = True) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if index >= CONN_PER_SRC_IP and host.startswith("127."):
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((f"127.0.0.{1 + index // CONN_PER_SRC_IP}", 0))
    s.settimeout(10)
    s.connect((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if timestamps:
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return s


def recv_into(c: Conn) -> bool:
    """Read what is there; keep the kernel receive timestamp of the first segment.
    False on EOF."""
    while True:
        try:
            data, anc, _, _ = c.sock.recvmsg(65536, ANC)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data:
            return False
        if c.kts is None:
            for lvl, typ, d in anc:
                if lvl == socket.SOL_SOCKET and typ == SCM_TIMESTAMPNS and len(d) >= 16:
                    sec, ns = struct.unpack("qq", d[:16])
                    c.kts = sec * 1_000_000_000 + ns
            if c.kts is None:
                c.kts = time.time_ns()
        c.buf += data


def http_complete(buf: bytes) -> bool:
    i = buf.find(b"\r\n\r\n")
    if i < 0:
        return False
    m = CL_RE.search(buf, 0, i + 2)
    n = int(m.group(1)) if m else 0
    return len(buf) >= i + 4 + n


def http_body(buf: bytes) -> tuple[int, bytes]:
    i = buf.find(b"\r\n\r\n")
    return int(buf[9:12]), buf[i + 4:]


def blocking_http(sock: socket.socket, method: str, path: str, body: bytes | None = None,
                  timeout: float = 30.0) -> tuple[int, bytes]:
    req = (f"{method} {path} HTTP/1.1\r\nHost: bench\r\n").encode()
    if body is not None:
        req += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    req += b"\r\n" + (body or b"")
    sock.setblocking(True)
    sock.settimeout(timeout)
    sock.sendall(req)
    buf = b""
    while not http_complete(buf):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"{method} {path}: connection closed")
        buf += chunk
    return http_body(buf)


def blocking_redis(sock: socket.socket, cmd: bytes, done_re: bytes, timeout: float = 30.0) -> bytes:
    sock.setblocking(True)
    sock.settimeout(timeout)
    sock.sendall(cmd)
    buf = b""
    while not re.search(done_re, buf):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        buf += chunk
    return buf


def resp_cmd(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


# ============================================================================ systems


class System:
    """One server under test: its watcher connections, one epoll, a writer and a probe."""
    name = "?"

    def __init__(self, host: str, port: int, pid: int | None = None):
        self.host, self.port, self.pid = host, port, pid
        self.ep = select.epoll()
        self.by_fd: dict[int, Conn] = {}
        self.groups: dict[str, list[Conn]] = {}
        self.version: dict[str, int] = {}
        self.opened = 0
        self.writer = Conn(open_socket(host, port, 0))
        self.writer.sock.setblocking(False)
        self.ep.register(self.writer.fd, select.EPOLLIN)
        self.by_fd[self.writer.fd] = self.writer
        self.probe = open_socket(host, port, 0, timestamps=False)
        self.errors: list[str] = []
        self.nround = 0

    # -- to implement
    def prepare_keys(self, keys: list[str]): ...
    def watch_request(self, key: str) -> bytes: ...
    def write_request(self, key: str, value: bytes) -> bytes: ...
    def writer_complete(self, buf: bytes) -> bool: ...
    def watcher_complete(self, c: Conn) -> bool: ...
    def barrier(self): ...
    def wait_parked(self, conns: list[Conn], nreq: int | None = None): ...
    def check_round(self, key: str, value: bytes, group: list[Conn]) -> None: ...
    def rearm(self, key: str, group: list[Conn]): ...

    # -- common
    def open_watchers(self, keys: list[str], per_key: int, chunk: int = 1000, pipelined: int = 1):
        """per_key watchers on each key, one connection each; or, with pipelined > 1,
        that many watch requests pipelined on each connection (idle memory only)."""
        self.prepare_keys(keys)
        total = len(keys) * per_key
        fresh: list[Conn] = []
        nconn = (total + pipelined - 1) // pipelined
        for i in range(nconn):
            ks = [keys[(i * pipelined + j) % len(keys)] for j in range(min(pipelined, total - i * pipelined))]
            s = open_socket(self.host, self.port, self.opened)
            self.opened += 1
            s.sendall(b"".join(self.watch_request(k) for k in ks))
            s.setblocking(False)
            c = Conn(s, ks[0])
            self.by_fd[c.fd] = c
            for k in ks:
                self.groups.setdefault(k, []).append(c)
            fresh.append(c)
            if (i + 1) % chunk == 0:
                self.barrier()          # the server has accepted them: no accept-queue overflow
                if (i + 1) % (chunk * 10) == 0:
                    log(f"{self.name}: {(i + 1) * pipelined:,} watchers open")
        for c in fresh:
            self.ep.register(c.fd, select.EPOLLIN)
        self.wait_parked(fresh, total)

    def early_answers(self) -> list[Conn]:
        out = []
        for fd, _ in self.ep.poll(0):
            c = self.by_fd[fd]
            if c is not self.writer:
                out.append(c)
        return out

    def measure(self, key: str, value: bytes) -> dict:
        group = self.groups[key]
        for c in group:
            c.buf, c.kts, c.done = b"", None, False
        w = self.writer
        w.buf, w.kts, w.done = b"", None, False
        req = self.write_request(key, value)
        pending = len(group) + 1
        ep, by_fd = self.ep, self.by_fd
        deadline = time.monotonic() + ROUND_TIMEOUT
        cpu0 = oncpu_ns(self.pid)
        t0 = time.perf_counter()
        t0_ns = time.time_ns()
        w.sock.send(req)
        last_t = t0
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sum(1 for c in group if not c.done)
                raise RuntimeError(f"{self.name}: {missing} of {len(group)} watchers (writer done: {w.done}) "
                                   f"unanswered after {ROUND_TIMEOUT}s")
            for fd, _ in ep.poll(min(left, 1.0)):
                c = by_fd[fd]
                if c.done:
                    # more bytes after a complete answer: an error to report, not a time
                    recv_into(c)
                    self.errors.append(f"{self.name}: extra bytes on a connection: {c.buf[-200:]!r}")
                    continue
                alive = recv_into(c)
                if c is w:
                    ok = self.writer_complete(c.buf)
                else:
                    if c.key != key:
                        self.errors.append(f"{self.name}: watcher of {c.key!r} answered on a write to {key!r}")
                    ok = self.watcher_complete(c)
                if ok:
                    c.done = True
                    pending -= 1
                    last_t = time.perf_counter()
                elif not alive:
                    raise RuntimeError(f"{self.name}: connection closed mid-answer: {c.buf[:200]!r}")
        cpu1 = oncpu_ns(self.pid)
        self.check_round(key, value, group)
        kts = [c.kts for c in group]
        first, last = min(kts), max(kts)
        self.nround += 1
        return {
            "reaction_us": (last - t0_ns) / 1e3,
            "ack_us": (w.kts - t0_ns) / 1e3,
            "first_us": (first - t0_ns) / 1e3,
            "fanout_us": (last - min(first, w.kts)) / 1e3,
            "client_done_us": (last_t - t0) * 1e6,
            "server_cpu_us": (cpu1 - cpu0) / 1e3 if cpu0 is not None and cpu1 is not None else 0.0,
        }


class HttpSystem(System):
    name = "http"

    def prepare_keys(self, keys: list[str]):
        for i in range(0, len(keys), 1000):
            part = keys[i:i + 1000]
            body = json.dumps({"KVSet": [{"Key": k, "Value": {"init": True}} for k in part]}).encode()
            status, out = blocking_http(self.probe, "POST", f"/db/{ACC}", body)
            if status != 200:
                raise RuntimeError(f"{self.name}: KVSet of the keys -> {status} {out[:200]!r}")
            try:
                v = json.loads(out).get("KVSet", [{}])[0].get("Version", 0)
            except (ValueError, AttributeError, IndexError):
                v = 0
            for k in part:
                self.version[k] = v

    def watch_request(self, key: str) -> bytes:
        body = json.dumps({"ID": key, "Version": self.version.get(key, 0), "Timeout": 300}).encode()
        return (b"POST /watch/%s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (ACC.encode(), len(body), body))

    def write_request(self, key: str, value: bytes) -> bytes:
        return (b"PUT /db/%s/kv/%s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (ACC.encode(), key.encode(), len(value), value))

    def writer_complete(self, buf: bytes) -> bool:
        return http_complete(buf)

    def watcher_complete(self, c: Conn) -> bool:
        return http_complete(c.buf)

    def barrier(self):
        status, _ = blocking_http(self.probe, "GET", "/health")
        if status != 200:
            raise RuntimeError(f"{self.name}: GET /health -> {status}")

    def wait_parked(self, conns: list[Conn], nreq: int | None = None):
        # the server reads the watch requests at its own pace: give it time in proportion,
        # make a round trip behind them, and check that nobody was answered
        time.sleep(0.05 + 50e-6 * (nreq or len(conns)))
        self.barrier()
        time.sleep(0.05)
        early = self.early_answers()
        if early:
            c = early[0]
            recv_into(c)
            raise RuntimeError(f"{self.name}: {len(early)} watchers answered before the write, e.g. {c.buf[:300]!r}")

    def check_round(self, key: str, value: bytes, group: list[Conn]):
        status, out = http_body(self.writer.buf)
        if status != 200:
            raise RuntimeError(f"{self.name}: the write answered {status}: {out[:200]!r}")
        try:
            self.version[key] = json.loads(out).get("Version", 0)
        except ValueError:
            self.version[key] = 0
        answers = {c.buf for c in group}
        if len(answers) != 1:
            self.errors.append(f"{self.name}: {len(answers)} different answers to one write")
        for a in answers:
            status, body = http_body(a)
            doc = json.loads(body)
            if status != 200 or doc.get("Key") != key or doc.get("Value") != json.loads(value):
                raise RuntimeError(f"{self.name}: wrong watch answer {a[:300]!r}")

    def rearm(self, key: str, group: list[Conn]):
        req = self.watch_request(key)
        for c in group:
            c.sock.send(req)
        self.wait_parked(group)


class Cdragon(HttpSystem):
    name = "cdragon"


class Ceiling(HttpSystem):
    name = "ceiling"


class Redis(System):
    name = "redis"

    def __init__(self, host, port, pid=None):
        super().__init__(host, port, pid)
        self.expect: dict[str, bytes] = {}

    def prepare_keys(self, keys: list[str]):
        pass

    def watch_request(self, key: str) -> bytes:
        return resp_cmd(b"SUBSCRIBE", key.encode())

    def write_request(self, key: str, value: bytes) -> bytes:
        k = key.encode()
        self.expect[key] = resp_cmd(b"message", k, value)
        return resp_cmd(b"MULTI") + resp_cmd(b"SET", k, value) + resp_cmd(b"PUBLISH", k, value) + resp_cmd(b"EXEC")

    def writer_complete(self, buf: bytes) -> bool:
        return EXEC_RE.search(buf) is not None

    def watcher_complete(self, c: Conn) -> bool:
        return len(c.buf) >= len(self.expect[c.key])

    def barrier(self):
        blocking_redis(self.probe, resp_cmd(b"PING"), rb"\+PONG\r\n$")

    def wait_parked(self, conns: list[Conn], nreq: int | None = None):
        # every SUBSCRIBE is confirmed: read the confirmations, so that a watcher's next
        # bytes are the message itself (and its kernel timestamp the message's)
        want = {}
        for c in conns:
            k = c.key.encode()
            want[c.fd] = b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(k), k)
        pending = {c.fd for c in conns}
        deadline = time.monotonic() + 120
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis: {len(pending)} subscriptions unconfirmed")
            for fd, _ in self.ep.poll(1.0):
                c = self.by_fd[fd]
                if fd not in pending:
                    continue
                recv_into(c)
                if len(c.buf) >= len(want[fd]):
                    if c.buf != want[fd]:
                        raise RuntimeError(f"redis: unexpected SUBSCRIBE answer {c.buf[:200]!r}")
                    pending.discard(fd)
                    c.buf, c.kts = b"", None

    def check_round(self, key: str, value: bytes, group: list[Conn]):
        m = EXEC_RE.search(self.writer.buf)
        if int(m.group(1)) != len(group):
            self.errors.append(f"redis: PUBLISH reached {m.group(1)} subscribers, {len(group)} expected")
        answers = {c.buf for c in group}
        if answers != {self.expect[key]}:
            raise RuntimeError(f"redis: wrong message {next(iter(answers))[:200]!r}")

    def rearm(self, key: str, group: list[Conn]):
        pass


SYSTEMS = {"ceiling": Ceiling, "cdragon": Cdragon, "redis": Redis}


def value_for(n: int) -> bytes:
    v = json.dumps({"n": n, "pad": "x" * 40}, separators=(",", ":")).encode()
    return v


# ============================================================================ scenarios


def summary(samples: list[dict]) -> dict:
    out = {"n": len(samples)}
    for f in ("reaction_us", "ack_us", "first_us", "fanout_us", "client_done_us", "server_cpu_us"):
        xs = sorted(s[f] for s in samples)
        out[f] = {"min": xs[0], "median": statistics.median(xs), "avg": statistics.fmean(xs), "max": xs[-1],
                  "p99": xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]}
    return out


def reps_for(n: int) -> int:
    return 50 if n <= 1 else 30 if n <= 100 else 20 if n <= 1000 else 16


def _worker(pipe, name: str, host: str, port: int, pid, keys: list[str], per_key: int, nofile: int):
    """One system's fleet in its own process (each process has its own descriptor
    limit): opens the watchers, then does one write per "measure" command."""
    try:
        raise_nofile(nofile)
        s = SYSTEMS[name](host, port, pid)
        s.open_watchers(keys, per_key)
        pipe.send(("ready", None))
        while True:
            cmd, arg = pipe.recv()
            if cmd == "measure":
                key, r, rearm = arg
                res = s.measure(key, value_for(r))
                if rearm:
                    s.rearm(key, s.groups[key])
                pipe.send(("ok", res))
            else:
                pipe.send(("done", s.errors))
                close_system(s)
                return
    except BaseException as e:  # report, don't hang the parent
        import traceback
        pipe.send(("error", f"{name}: {e!r}\n{traceback.format_exc()}"))


class Worker:
    def __init__(self, name, addr, keys, per_key):
        import multiprocessing as mp
        ctx = mp.get_context("fork")
        self.name = name
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, name, addr[0], addr[1], addr[2], keys, per_key,
                                                      len(keys) * per_key + 1000), daemon=True)
        self.proc.start()
        self._wait("ready", 600)

    def _wait(self, want, timeout):
        if not self.pipe.poll(timeout):
            self.proc.kill()
            raise RuntimeError(f"{self.name}: worker silent for {timeout}s")
        kind, val = self.pipe.recv()
        if kind == "error":
            self.proc.kill()
            raise RuntimeError(val)
        assert kind == want, (kind, val)
        return val

    def measure(self, key, r, rearm):
        self.pipe.send(("measure", (key, r, rearm)))
        return self._wait("ok", ROUND_TIMEOUT + 600)

    def close(self):
        self.pipe.send(("close", None))
        errors = self._wait("done", 120)
        self.proc.join(30)
        return errors


def run_turns(specs: dict, label: str, keys: list[str], per_key: int, writes: list[tuple[str, int]],
              rearm: bool, emit, extra: dict):
    """Every system's fleet in its own worker process, opened one after the other; then
    the systems take turns write by write (the first system rotates)."""
    workers = []
    try:
        for name, addr in specs.items():
            log(f"{label}: opening {len(keys) * per_key:,} watchers on {name}")
            workers.append(Worker(name, addr, keys, per_key))
        samples = {w.name: [] for w in workers}
        for i, (key, r) in enumerate(writes):
            order = workers[i % len(workers):] + workers[:i % len(workers)]
            for w in order:
                samples[w.name].append(w.measure(key, r, rearm))
        for w in workers:
            errors = w.close()
            emit({"scenario": label, "system": w.name, "watchers": len(keys) * per_key, "keys": len(keys),
                  "writes": len(samples[w.name]), "errors": errors[:5], "n_errors": len(errors),
                  **extra, **summary(samples[w.name]),
                  # per write, in write order (write i of every system was taken in one turn)
                  "samples": [[round(x["reaction_us"], 1), round(x["fanout_us"], 1), round(x["ack_us"], 1),
                               round(x["server_cpu_us"], 1)]
                              for x in samples[w.name]]})
    finally:
        for w in workers:
            if w.proc.is_alive():
                w.proc.kill()


def run_one_key(specs: dict, n: int, reps: int | None, emit):
    reps = reps or reps_for(n)
    run_turns(specs, f"one:{n}", ["k"], n, [("k", r) for r in range(reps)], True, emit, {})


def run_keys(specs: dict, nkeys: int, per_key: int, emit):
    keys = [f"k{i:04d}" for i in range(nkeys)]
    run_turns(specs, f"keys:{nkeys}x{per_key}", keys, per_key, [(k, i) for i, k in enumerate(keys)],
              False, emit, {})


def run_idle(specs: dict, n: int, nkeys: int, pid: int, emit, pipelined: int = 1):
    (name, (host, port, _)), = specs.items()
    keys = [f"idle{i:05d}" for i in range(nkeys)]
    s = SYSTEMS[name](host, port)
    s.prepare_keys(keys)
    s.barrier()
    time.sleep(0.5)
    before = rss_kib(pid)
    nconn = (n + pipelined - 1) // pipelined
    log(f"idle:{n}x{nkeys}: opening {n:,} idle watchers on {name} over {nconn:,} connections "
        f"(RSS before {before['VmRSS'] / 1024:.1f} MiB)")
    t0 = time.monotonic()
    s.prepare_keys = lambda keys: None
    s.open_watchers(keys, n // nkeys, pipelined=pipelined)
    opened = time.monotonic() - t0
    time.sleep(1.0)
    after = rss_kib(pid)
    limit = None
    if isinstance(s, HttpSystem) and args_limit_check:
        # started with CDRAGON_MAX_WATCHERS=n: one more parking watch must get 429, which
        # proves all n watchers are registered (not merely sent)
        k = keys[-1]
        body = json.dumps({"ID": k, "Version": s.version.get(k, 0), "Timeout": 0.5}).encode()
        status, out = blocking_http(s.probe, "POST", f"/watch/{ACC}", body)
        limit = {"status": status, "code": (json.loads(out).get("Code") if out.startswith(b"{") else None)}
        if status != 429:
            s.errors.append(f"the watch after {n:,} watchers got {status}, not 429: not all are registered?")
    check = None
    if pipelined == 1:
        check = s.measure(keys[0], value_for(0))
    emit({"scenario": f"idle:{n}x{nkeys}" + (f"p{pipelined}" if pipelined > 1 else ""), "system": name,
          "watchers": n, "keys": nkeys, "connections": nconn, "pipelined": pipelined,
          "rss_before_kib": before["VmRSS"], "rss_kib": after["VmRSS"], "hwm_kib": after["VmHWM"],
          "per_watcher_bytes": (after["VmRSS"] - before["VmRSS"]) * 1024 / n,
          "open_seconds": opened, "check_write": check, "limit_check": limit,
          "errors": s.errors[:5], "n_errors": len(s.errors)})
    close_system(s)


def close_system(s: System):
    linger = struct.pack("ii", 1, 0)    # RST: no TIME_WAIT pile-up between scenarios
    for c in s.by_fd.values():
        try:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            c.sock.close()
        except OSError:
            pass
    s.probe.close()
    s.ep.close()


def parse_addr(a: str) -> tuple[str, int]:
    host, _, port = a.rpartition(":")
    return host or "127.0.0.1", int(port)


def cmd_run(args) -> int:
    specs = {}
    for name in ("ceiling", "cdragon", "redis"):
        a = getattr(args, name)
        if a:
            specs[name] = (*parse_addr(a), getattr(args, name + "_pid"))
    if not specs:
        raise SystemExit("give at least one of --ceiling, --cdragon, --redis")
    global args_limit_check
    args_limit_check = args.limit_check
    raise_nofile(1 << 20)     # as far as allowed; each worker process raises its own too
    out = open(args.out, "a") if args.out else None

    def emit(rec: dict):
        rec["time"] = time.strftime("%Y-%m-%d %H:%M:%S")
        line = json.dumps(rec)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    for sc in args.scenario:
        kind, _, arg = sc.partition(":")
        if kind == "one":
            run_one_key(specs, int(arg), args.reps, emit)
        elif kind == "keys":
            k, _, w = arg.partition("x")
            run_keys(specs, int(k), int(w), emit)
        elif kind == "idle":
            n, _, k = arg.partition("x")
            k, _, pipe = k.partition("p")
            if args.pid is None or len(specs) != 1:
                raise SystemExit("idle:NxK[pP] needs exactly one system and --pid of its server")
            run_idle(specs, int(n), int(k), args.pid, emit, int(pipe or 1))
        else:
            raise SystemExit(f"unknown scenario {sc!r}")
    return 0


# ============================================================================ report

BEGIN = "<!-- watch_reaction:begin -->"
END = "<!-- watch_reaction:end -->"
TARGET_US = {"one:1": 2_000, "one:10000": 15_000}


def ms(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us < 100_000 else f"{us / 1000:.0f} ms"


def cmd_report(args) -> int:
    recs = [json.loads(line) for line in open(args.jsonl) if line.strip()]
    meta = json.load(open(args.meta)) if args.meta else {}
    rows = {}
    order = []
    for r in recs:
        if r["scenario"] not in order:
            order.append(r["scenario"])
        rows[(r["scenario"], r["system"])] = r
    lines = [BEGIN, "", "## Watch reaction", ""]
    lines += [
        "Measured by `bench/watch.sh` (`bench/watch_reaction.py`, a one-thread raw-socket epoll client).",
        "Servers pinned to CPU 0, the client to CPU 1, loopback; the three systems run side by side",
        "and take turns write by write, so they share the machine's drift. Time runs from just",
        "before the write's send() to the kernel receive timestamp (SO_TIMESTAMPNS) of each answer:",
        "**reaction** = write sent → the last watcher's answer; **fan-out** = the writer's answer",
        "(or the first watcher's, if earlier) → the last watcher's answer. cdragon's reaction",
        "includes its durable commit (fsync); the ceiling (`bench/fanout_ceiling.py`, bare uvloop +",
        "httptools, one prebuilt response written to every held request) stores nothing, so the",
        "fan-out ratio is the like-for-like one (LIMITS.md: target ≤ 1.1×). Redis 7 runs with",
        "`appendonly yes`, `appendfsync always`; its write is `MULTI; SET; PUBLISH; EXEC` to",
        "`SUBSCRIBE`d clients. Every answer is checked (status, value, identical bytes per write).",
        "**Server CPU** is the time the server's main thread (its event loop) spent on a CPU during the",
        "write (/proc/PID/schedstat, kernel socket work included): unlike wall time it is not inflated",
        "by other tenants of CPU 0, so the CPU ratio is the steadier like-for-like figure on this",
        "shared machine (cdragon's fsync runs on its writer thread and is not in it). It covers the",
        "whole write, so with few watchers it mostly compares handling the PUT itself (a transaction",
        "and its commit bookkeeping in cdragon, nothing in the ceiling); from 1,000 watchers on it is",
        "the fan-out's cost.",
        "Times are medians over the writes; ratios are the median over the writes of cdragon's figure /",
        "the ceiling's for the same write turn. `keys` rows: one write per key.",
        "",
    ]
    if meta:
        lines += [f"- Run: {meta.get('date', '?')}; load average at start {meta.get('loadavg', '?')}",
                  f"- Machine: {meta.get('machine', '?')}",
                  f"- Versions: {meta.get('versions', '?')}; cdragon git `{meta.get('git', '?')}`",
                  f"- Raw results: `{meta.get('raw', '?')}` (not committed)", ""]
    lines += ["| scenario | reaction: cdragon / ceiling / Redis | cdragon write ack | fan-out: cdragon / ceiling / Redis "
              "| **fan-out ratio** | server CPU per write: cdragon / ceiling / Redis | **CPU ratio** | target | met |",
              "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    spread = ["| scenario | cdragon reaction min / p99 / max | ceiling reaction min / p99 / max "
              "| Redis reaction min / p99 / max |", "|---|---:|---:|---:|"]
    notes = []
    for sc in order:
        if sc.startswith("idle"):
            continue
        cd, ce, rd = rows.get((sc, "cdragon")), rows.get((sc, "ceiling")), rows.get((sc, "redis"))

        def cell(r, f):
            if r is None:
                return "—"
            s = r[f]
            return f"{ms(s['median'])} [{ms(s['min'])}–{ms(s['max'])}]"

        def ratio(f):
            """The median over the writes of cdragon's time / the ceiling's time for the
            same write index (taken in the same turn, so drift cancels), else the ratio
            of the medians."""
            if cd is None or ce is None or ce[f]["median"] <= 0:
                return "—"
            col = {"reaction_us": 0, "fanout_us": 1, "server_cpu_us": 3}[f]
            a, b = cd.get("samples"), ce.get("samples")
            if a and b and len(a) == len(b) and all(len(x) > col for x in a + b):
                pairs = [x[col] / y[col] for x, y in zip(a, b) if y[col] > 0]
                if pairs:
                    return f"{statistics.median(pairs):.2f}×"
            return f"{cd[f]['median'] / ce[f]['median']:.2f}×"

        def ratio_value(f):
            r = ratio(f)
            return None if r == "—" else float(r.rstrip("×"))

        kind, _, arg = sc.partition(":")
        label = (f"{int(arg):,} watcher{'s' if int(arg) != 1 else ''} on one key ({cd['writes'] if cd else '?'} writes)"
                 if kind == "one" else f"{arg.replace('x', ' keys × ')} watchers (one write per key)")
        target = "—"
        met = "—"
        if sc in TARGET_US:
            target = f"≤ {TARGET_US[sc] / 1000:g} ms reaction / fan-out ≤ 1.1× ceiling"
            if cd:
                met_abs = cd["reaction_us"]["median"] <= TARGET_US[sc]
                rv = ratio_value("fanout_us")
                met_ratio = rv is not None and rv <= 1.1
                met = f"{'yes' if met_abs else 'no'} / {'yes' if met_ratio else 'no'}"
        elif cd and ce:
            target = "fan-out ≤ 1.1× ceiling"
            rv = ratio_value("fanout_us")
            met = "yes" if rv is not None and rv <= 1.1 else "no"
        if sc == "one:1" and cd:
            notes.append(f"1 watcher: cdragon's reaction is its durable write (the writer's 200 after the fsync: "
                         f"median {ms(cd['ack_us']['median'])}) plus {ms(cd['fanout_us']['median'])} of fan-out; "
                         f"the ceiling stores nothing, so only the fan-out ratio compares like with like.")
        if sc == "one:10000" and ce:
            notes.append(f"10,000 watchers: the bare ceiling alone needs {ms(ce['fanout_us']['median'])} "
                         f"(LIMITS.md: ~12 µs of kernel time per socket on this machine, ≈ 120 ms), so no "
                         f"one-thread server meets ≤ 15 ms here; the ratio is the figure to read.")
        if kind == "keys" and cd:
            s = cd["reaction_us"]
            notes.append(f"{label}: cdragon reaction min {ms(s['min'])} / avg {ms(s['avg'])} / max {ms(s['max'])} "
                         f"(p99 {ms(s['p99'])})"
                         + (f"; ceiling min {ms(ce['reaction_us']['min'])} / avg {ms(ce['reaction_us']['avg'])} / "
                            f"max {ms(ce['reaction_us']['max'])}" if ce else "")
                         + (f"; Redis min {ms(rd['reaction_us']['min'])} / avg {ms(rd['reaction_us']['avg'])} / "
                            f"max {ms(rd['reaction_us']['max'])}" if rd else ""))
        def med(r, f):
            return "—" if r is None or (f == "server_cpu_us" and not r[f]["max"]) else ms(r[f]["median"])

        def three(f):
            return f"{med(cd, f)} / {med(ce, f)} / {med(rd, f)}"

        def mpm(r):
            return "—" if r is None else (f"{ms(r['reaction_us']['min'])} / {ms(r['reaction_us']['p99'])} / "
                                          f"{ms(r['reaction_us']['max'])}")

        lines.append(f"| {label} | {three('reaction_us')} | {med(cd, 'ack_us')} | {three('fanout_us')} "
                     f"| **{ratio('fanout_us')}** | {three('server_cpu_us')} | **{ratio('server_cpu_us')}** "
                     f"| {target} | {met} |")
        spread.append(f"| {label} | {mpm(cd)} | {mpm(ce)} | {mpm(rd)} |")
        for r in (cd, ce, rd):
            if r and r.get("n_errors"):
                notes.append(f"{sc} {r['system']}: {r['n_errors']} errors, e.g. {r['errors'][:2]}")
    lines += ["", "Spread of the reaction over the writes:", ""] + spread
    idle = [r for r in recs if r["scenario"].startswith("idle")]
    if idle:
        lines += ["", "Memory with idle watchers (spread over keys, 10 per key; each system started fresh; RSS of the "
                  "server process once all are parked; per watcher = growth over the RSS before they came, divided "
                  "by their number):", "",
                  "| system | idle watchers | connections | RSS before | RSS with watchers | per watcher "
                  "| all registered? | one write to a key with 10 of them (reaction) |",
                  "|---|---:|---:|---:|---:|---:|---|---:|"]
        for r in idle:
            lc = r.get("limit_check")
            reg = ("yes: the next watch got 429 `too_many`" if lc and lc.get("status") == 429
                   else f"no: the next watch got {lc.get('status')}" if lc else "(not checked)")
            conns = f"{r.get('connections', r['watchers']):,}"
            if r.get("pipelined", 1) > 1:
                conns += f" ({r['pipelined']} pipelined watches each)"
            cw = r.get("check_write")
            lines.append(f"| {r['system']} | {r['watchers']:,} | {conns} | {r['rss_before_kib'] / 1024:.0f} MiB "
                         f"| {r['rss_kib'] / 1024:.0f} MiB | {r['per_watcher_bytes']:,.0f} B | {reg} "
                         f"| {ms(cw['reaction_us']) if cw else '—'} |")
            if r.get("n_errors"):
                notes.append(f"{r['scenario']} {r['system']}: {r['n_errors']} errors, e.g. {r['errors'][:2]}")
        one = [r for r in idle if r["system"] == "cdragon" and r.get("pipelined", 1) == 1]
        if one:
            r = one[-1]
            est = r["rss_before_kib"] * 1024 + 100_000 * r["per_watcher_bytes"]
            notes.append(f"100,000 idle watchers on their own connections would take about {est / 2**20:.0f} MiB "
                         f"(RSS before + 100,000 × {r['per_watcher_bytes']:,.0f} B measured with "
                         f"{r['watchers']:,} such watchers): extrapolated, because every process on this machine "
                         f"is held to 20,000 open files (hard RLIMIT_NOFILE, and no CAP_SYS_RESOURCE to raise it), "
                         f"so neither the server nor the client can hold 100,000 sockets. The pipelined row holds "
                         f"the real 100,000 watchers in one server.")
    if args.notes:
        notes += [n for n in open(args.notes).read().splitlines() if n.strip()]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    lines += ["", END, ""]
    section = "\n".join(lines)
    print(section)
    if args.results:
        p = Path(args.results)
        old = p.read_text() if p.exists() else ""
        if BEGIN in old and END in old:
            a = old.index(BEGIN)
            b = old.index(END) + len(END)
            new = old[:a] + section.rstrip("\n") + old[b:]
        else:
            new = old.rstrip("\n") + "\n\n" + section
        p.write_text(new)
        log(f"written to {p}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--cdragon")
    r.add_argument("--ceiling")
    r.add_argument("--redis")
    for name in ("cdragon", "ceiling", "redis"):
        r.add_argument(f"--{name}-pid", type=int, help=f"PID of the {name} server (its main thread's CPU time per write)")
    r.add_argument("--scenario", action="append", required=True)
    r.add_argument("--reps", type=int, default=None, help="writes per one:N scenario (default by N)")
    r.add_argument("--pid", type=int, help="server PID (idle:NxK reads its RSS)")
    r.add_argument("--out", help="append JSON lines here")
    r.add_argument("--limit-check", action="store_true",
                   help="idle:N: the server runs with CDRAGON_MAX_WATCHERS=N; check the next watch gets 429")
    p = sub.add_parser("report")
    p.add_argument("jsonl")
    p.add_argument("--results", help="bench/RESULTS.md to update")
    p.add_argument("--meta", help="JSON with date, machine, versions, git, raw")
    p.add_argument("--notes", help="a file of extra note lines")
    args = ap.parse_args()
    return cmd_run(args) if args.cmd == "run" else cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
