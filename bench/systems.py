"""The systems the full suite measures, as processes: cdragon, Redis, etcd, the ceiling
(bench/ceiling_server.py) and the watch rows' fan-out ceiling. Starts each pinned to
SERVER_CPU in a fresh data dir, waits until it answers, stops it by its PID only
(SIGTERM, then SIGKILL), and remembers every live one so an interrupted run stops them.
Also the small clients that probe them (HTTP, raw RESP).

Never kills a process it did not start.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from knobs import BENCH, CDRAGON_MAX_STORAGE, DATA_ROOT, GIB, KEEP_DATA, PY, REPO, SERVER_CPU, \
    START_TIMEOUT, STOP_TIMEOUT, log
from ports import free_port

LIVE: dict[int, "Server"] = {}   # every server process this run started and has not reaped


def http(method: str, url: str, body: bytes | None = None, timeout: float = 5) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": "application/json"} if body is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def redis_cmd(port: int, *args: str, timeout: float = 5) -> bytes:
    """One RESP command; returns the raw reply (enough for PING, INFO, CONFIG GET)."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"".join(parts))
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if data.startswith((b"+", b"-", b":")) and data.endswith(b"\r\n"):
                break
            m = re.match(rb"\$(\d+)\r\n", data)
            if m and len(data) >= m.end() + int(m.group(1)) + 2:
                break
            if data.startswith(b"*") and data.endswith(b"\r\n") and data.count(b"\r\n") >= 1 + 2 * int(data[1:data.index(b"\r\n")] or 0):
                break
        return data


def redis_info(port: int) -> dict:
    try:
        raw = redis_cmd(port, "INFO", "all").decode(errors="replace")
    except OSError:
        return {}
    out = {}
    for line in raw.splitlines():
        if ":" in line and not line.startswith("#"):
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip()
    return out


class Server:
    """One server process, started pinned to SERVER_CPU; stopped by its PID only."""

    def __init__(self, name: str, run_dir: Path, tag: str):
        self.name = name
        self.tag = tag
        self.run_dir = run_dir
        self.port = free_port()
        self.data: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path = run_dir / f"{tag}.log"
        self.cmd: list[str] = []
        self.extra_env: dict = {}

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        if self.name in ("cdragon", "redis", "etcd"):
            self.data = Path(tempfile.mkdtemp(prefix=f"suite-{self.name}-", dir=DATA_ROOT))
        if self.name == "ceiling":
            self.cmd = [PY, str(BENCH / "ceiling_server.py"), "--port", str(self.port)]
        elif self.name == "fanout":
            self.cmd = [PY, str(BENCH / "fanout_ceiling.py"), "--port", str(self.port)]
        elif self.name == "cdragon":
            self.cmd = [PY, "-m", "cdragon", "serve", "--listen", f"127.0.0.1:{self.port}",
                        "--data-dir", str(self.data)]
            self.extra_env = {"CDRAGON_MAX_STORAGE_BYTES": str(CDRAGON_MAX_STORAGE)}
        elif self.name == "redis":
            self.cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                        "--dir", str(self.data), "--appendonly", "yes", "--appendfsync", "always",
                        "--save", "", "--daemonize", "no", "--protected-mode", "no",
                        "--maxclients", "20000", "--logfile", ""]
        elif self.name == "etcd":
            peer = free_port()
            while peer == self.port:
                peer = free_port()
            self.cmd = ["etcd", "--name", "bench", "--data-dir", str(self.data / "etcd"),
                        "--listen-client-urls", self.url(), "--advertise-client-urls", self.url(),
                        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                        "--initial-cluster", f"bench=http://127.0.0.1:{peer}",
                        "--quota-backend-bytes", str(8 * GIB), "--logger", "zap", "--log-level", "warn"]
        else:
            raise ValueError(self.name)

    def start(self) -> None:
        self.prepare()
        env = dict(os.environ, **self.extra_env)
        logf = open(self.log_path, "wb")
        try:
            # taskset execs the server: the PID we hold is the server's own
            self.proc = subprocess.Popen(["taskset", "-c", str(SERVER_CPU), *self.cmd], cwd=REPO, env=env,
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            logf.close()
        LIVE[self.proc.pid] = self
        deadline = time.monotonic() + START_TIMEOUT
        last = ""
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with status {self.proc.returncode} before it was ready; "
                                   f"command: {' '.join(self.cmd)}; log {self.log_path}:\n{self.tail()}")
            try:
                if self.ready():
                    return
            except OSError as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready within {START_TIMEOUT}s ({last}); "
                                   f"command: {' '.join(self.cmd)}; log:\n{self.tail()}")
            time.sleep(0.05)

    def ready(self) -> bool:
        if self.name == "redis":
            return redis_cmd(self.port, "PING", timeout=1).startswith(b"+PONG")
        status, body = http("GET", self.url() + "/health", timeout=1)
        if self.name == "etcd":
            return status == 200 and b'"health":"true"' in body
        return status == 200

    def tail(self, n: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> int | None:
        """SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL; returns the exit status."""
        p = self.proc
        if p is None:
            return None
        try:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    log(f"{self.tag}: PID {p.pid} ignored SIGTERM for {STOP_TIMEOUT}s: SIGKILL")
                    p.kill()
                    p.wait(timeout=STOP_TIMEOUT)
        finally:
            LIVE.pop(p.pid, None)
            if self.data is not None and not KEEP_DATA:
                shutil.rmtree(self.data, ignore_errors=True)
        return p.returncode


def stop_all() -> None:
    for s in list(LIVE.values()):
        try:
            s.stop()
        except Exception as e:  # keep stopping the others
            log(f"could not stop {s.tag} (PID {s.pid}): {e}")


def etcd_lease(srv: Server) -> str:
    status, body = http("POST", srv.url() + "/v3/lease/grant", b'{"TTL": 3600}', timeout=10)
    if status != 200:
        raise RuntimeError(f"etcd lease grant answered {status}: {body[:200]!r}")
    return json.loads(body)["ID"]
