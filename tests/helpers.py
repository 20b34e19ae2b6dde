"""Test helpers: start the real cdragon server as a subprocess and talk to it over
real sockets (http.client for ordinary calls, raw sockets for protocol tests).

Nothing here mocks the server; every helper speaks HTTP to a live process.
"""
from __future__ import annotations

import http.client
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:        # the checkout's cdragon, however pytest was started
    sys.path.insert(0, str(REPO))

from cdragon import __version__ as VERSION   # noqa: E402  (the one definition)

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def _readable(sock: socket.socket, wait: float) -> bool:
    """Whether `sock` has data (or EOF) within `wait` seconds. poll, not select: the
    tests hold thousands of sockets and select() fails past descriptor 1023."""
    p = select.poll()
    p.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(p.poll(max(0, int(wait * 1000))))


def wait_for(check, timeout: float = 5.0) -> bool:
    """Poll check() every 20 ms until it is true or `timeout` seconds passed; its last
    result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def free_port() -> int:
    """A port below Linux's ephemeral range (32768+), so the many client sockets of
    the tests never take a server's port between this check and the server's bind."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def unique_account(hint: str = "t") -> str:
    """An account name that follows [A-Za-z0-9._-]{1,64} and is unique per call."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", hint)[:48]
    return f"{clean}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- responses


class Resp:
    """One HTTP response: status, headers (case-insensitive lookup), body bytes."""

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes,
                 version: str = "HTTP/1.1"):
        self.status = status
        self.reason = reason
        self.header_list = headers
        self.body = body
        self.version = version

    def header(self, name: str, default=None):
        name = name.lower()
        for k, v in self.header_list:
            if k.lower() == name:
                return v
        return default

    def has_header(self, name: str) -> bool:
        return self.header(name) is not None

    @property
    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:  # pragma: no cover - makes failures readable
            raise AssertionError(f"response body is not JSON: {self.body[:300]!r}") from e

    @property
    def content_type(self) -> str:
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()

    def __repr__(self):
        return f"<Resp {self.status} {self.body[:300]!r}>"


def assert_error(resp: Resp, status: int, code: str):
    """An API error: the status, JSON body {"Code": code, "Message": str, ...}."""
    assert resp.status == status, f"expected {status} {code}, got {resp!r}"
    assert resp.content_type == "application/json", resp.header_list
    body = resp.json
    assert isinstance(body, dict), body
    assert body.get("Code") == code, body
    assert isinstance(body.get("Message"), str) and body["Message"], body
    return body


# --------------------------------------------------------------------------- http.client


NOBODY = object()  # "send no body" (None is the JSON value null)


class Client:
    """A keep-alive HTTP client for one server. Reconnects when the server closed."""

    def __init__(self, port: int, timeout: float = 30.0):
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _connection(self) -> http.client.HTTPConnection:
        c = self.conn
        if c is not None and c.sock is not None:
            # The server may have closed an idle/errored connection: readable == EOF.
            r = _readable(c.sock, 0)
            if r:
                c.close()
                c = None
        if c is None:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.conn = c
        return c

    def request(self, method: str, path: str, body=NOBODY, headers: dict | None = None) -> Resp:
        """body: bytes are sent as they are; anything else (str and None included) as its
        JSON; NOBODY (the default) sends no body."""
        hdrs = dict(headers or {})
        if body is NOBODY:
            body = None
        elif not isinstance(body, bytes):
            body = json.dumps(body).encode("utf-8")
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
        except Exception:
            self.close()
            raise
        resp = Resp(r.status, r.reason, list(r.getheaders()), data,
                    "HTTP/1.1" if r.version == 11 else "HTTP/1.0")
        if r.will_close:
            self.close()
        return resp

    # conveniences ---------------------------------------------------------------
    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def head(self, path, **kw):
        return self.request("HEAD", path, **kw)

    def put(self, path, body=NOBODY, **kw):
        return self.request("PUT", path, body=body, **kw)

    def post(self, path, body=NOBODY, **kw):
        return self.request("POST", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def db(self, acc: str, body) -> Resp:
        """POST /db/{acc} with a JSON body (dict) or a raw JSON text (bytes/str)."""
        if isinstance(body, str):
            body = body.encode("utf-8")
        return self.request("POST", f"/db/{acc}", body=body)

    def db_ok(self, acc: str, body) -> dict:
        r = self.db(acc, body)
        assert r.status == 200, f"POST /db/{acc} {body!r} -> {r!r}"
        assert r.content_type == "application/json"
        return r.json

    # reading state back -----------------------------------------------------------
    def kv(self, acc: str, key: str) -> dict:
        """The KVGet entry for one key: {"Key", "Value"?, "Version"}."""
        out = self.db_ok(acc, {"KVGet": [key]})
        assert len(out["KV"]) == 1, out
        return out["KV"][0]

    def counter(self, acc: str, key: str) -> int:
        out = self.db_ok(acc, {"Atomic": [{"Key": key, "Add": 0}]})
        return out["Atomic"][0]["Value"]

    def seq_last(self, acc: str, key: str) -> int:
        r = self.get(f"/db/{acc}/sequence/{key}")
        assert r.status == 200, r
        return r.json["Value"]


# --------------------------------------------------------------------------- raw sockets


class Raw:
    """A raw TCP connection: send exact bytes, parse responses one by one."""

    def __init__(self, port: int, timeout: float = 15.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Read more bytes into buf; False on EOF."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no response from server in time")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no response from server in time") from None
        except ConnectionResetError:
            return False
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_response(self, head: bool = False, timeout: float | None = None) -> Resp:
        """Parse one response (a 1xx interim response counts as one). Raises EOFError if
        the server closed before a complete response."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                raise EOFError(f"connection closed; partial data {self.buf[:200]!r}")
        head_bytes, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        version, status, *reason = lines[0].split(" ", 2)
        status = int(status)
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        self.buf = rest
        resp = Resp(status, reason[0] if reason else "", headers, b"", version)
        if head or 100 <= status < 200 or status in (204, 304):
            return resp
        cl = resp.header("Content-Length")
        te = (resp.header("Transfer-Encoding") or "").lower()
        if cl is not None:
            n = int(cl)
            while len(self.buf) < n:
                if not self._fill(deadline):
                    raise EOFError("connection closed inside a body")
            resp.body, self.buf = self.buf[:n], self.buf[n:]
        elif "chunked" in te:
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    if not self._fill(deadline):
                        raise EOFError("closed inside chunked body")
                size_line, _, self.buf = self.buf.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    if not self._fill(deadline):
                        raise EOFError("closed inside chunked body")
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
            resp.body = body
        else:  # no framing: body runs to EOF
            while self._fill(deadline):
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def read_final(self, head: bool = False, timeout: float | None = None) -> Resp:
        """Skip interim 1xx responses, return the final one."""
        while True:
            r = self.read_response(head=head, timeout=timeout)
            if r.status >= 200:
                return r

    def wait_closed(self, timeout: float = 15.0) -> bytes:
        """Wait until the server closes the connection; returns any bytes still unread
        plus what arrived before EOF. Raises TimeoutError if it stays open."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if not self._fill(deadline):
                    data, self.buf = self.buf, b""
                    return data
            except OSError as e:
                if isinstance(e, TimeoutError):
                    raise
                data, self.buf = self.buf, b""
                return data

    def readable(self, wait: float = 0.0) -> bool:
        """True if the server sent something (or closed) within `wait` seconds."""
        if self.buf:
            return True
        r = _readable(self.sock, wait)
        return bool(r)

    def is_open(self, wait: float = 0.3) -> bool:
        """True if the server has not closed the connection within `wait` seconds
        (and sent nothing)."""
        r = _readable(self.sock, wait)
        if not r:
            return True
        try:
            self.sock.settimeout(1)
            chunk = self.sock.recv(65536, socket.MSG_PEEK)
        except (ConnectionResetError, OSError):
            return False
        return bool(chunk)


def http_request(method: str, path: str, body: bytes | str | dict | list | None = None,
                 headers: dict | None = None, version: str = "HTTP/1.1") -> bytes:
    """Serialise one request with Host and Content-Length (when a body is given)."""
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    hdrs = {"Host": "localhost"}
    if body is not None:
        hdrs["Content-Type"] = "application/json"
        hdrs["Content-Length"] = str(len(body))
    hdrs.update(headers or {})
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    return head.encode("latin-1") + (body or b"")


# --------------------------------------------------------------------------- the server


class Server:
    """One real `python -m cdragon serve` process on a free port."""

    def __init__(self, data_dir: Path | str, log_dir: Path | str, env: dict | None = None,
                 config: str | None = None, extra_args: list[str] | None = None,
                 keep_port: bool = False):
        self.data_dir = str(data_dir)
        self.keep_port = keep_port   # restart on the same port (a load balancer points at it)
        self.log_dir = Path(log_dir)
        self.env_overrides = {k: str(v) for k, v in (env or {}).items()}
        self.config = config
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.starts = 0
        self.log_path: Path | None = None

    # lifecycle -------------------------------------------------------------------
    def environ(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_")}
        env.update(self.env_overrides)
        return env

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "cdragon", "serve",
               "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir]
        if self.config:
            cmd += ["--config", self.config]
        return cmd + self.extra_args

    def start(self, wait: bool = True) -> "Server":
        for attempt in range(5):
            try:
                return self._start(wait)
            except RuntimeError:
                # another process took the port between our check and the bind: retry
                if attempt == 4 or "Address already in use" not in self.log_tail():
                    raise

    def _start(self, wait: bool) -> "Server":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if not (self.keep_port and self.port):
            self.port = free_port()
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"server-{self.port}-{self.starts}.log"
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), cwd=str(REPO), env=self.environ(),
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except Exception:
            return "<no log>"

    def wait_ready(self, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} before it was ready:\n"
                                   f"{self.log_tail()}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/health")
                r = c.getresponse()
                body = r.read()
                c.close()
                if r.status == 200 and json.loads(body) == {"Status": "ok", "Version": VERSION}:
                    return
                last = (r.status, body)
            except (OSError, http.client.HTTPException, ValueError) as e:
                last = e
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server not ready in {timeout}s (last: {last!r}):\n{self.log_tail()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait for exit, return the exit code (kills on timeout and fails)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"server did not exit within {timeout}s of SIGTERM:\n{self.log_tail()}")

    def restart(self, hard: bool = False) -> "Server":
        """Stop (SIGTERM, or SIGKILL if hard) and start again on the same data dir."""
        if self.running():
            if hard:
                self.kill()
            else:
                code = self.terminate()
                assert code == 0, f"exit code {code} after SIGTERM:\n{self.log_tail()}"
        return self.start()

    # clients -------------------------------------------------------------------
    def client(self, timeout: float = 30.0) -> Client:
        return Client(self.port, timeout=timeout)

    def raw(self, timeout: float = 15.0) -> Raw:
        return Raw(self.port, timeout=timeout)

    def assert_alive(self):
        """The server still serves a fresh client: /health and a small write + read."""
        assert self.running(), f"server process died:\n{self.log_tail()}"
        c = self.client(timeout=10)
        try:
            r = c.get("/health")
            assert r.status == 200 and r.json == {"Status": "ok", "Version": VERSION}, r
            acc = unique_account("alive")
            out = c.db_ok(acc, {"KVSet": [{"Key": "k", "Value": {"ok": True}}]})
            assert out == {"KVSet": [{"Key": "k", "Version": 1}], "Rev": 1}, out
            assert c.kv(acc, "k") == {"Key": "k", "Value": {"ok": True}, "Version": 1}
        finally:
            c.close()
