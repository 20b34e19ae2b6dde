"""TLS on the listener (API.md "Access: tokens and protected mode": the TLS bullet and
SIGHUP): HTTPS only, TLS 1.2+, client certificates with tls_client_ca_file, SIGHUP
re-reads the files without dropping a connection, bad files at start exit 2.

A throwaway CA and its certificates are made with the `openssl` command in tmp_path;
every connection is to 127.0.0.1.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import VERSION, Resp, Server, unique_account

pytestmark = [
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
    # the TLS 1.1 check pins a client to the deprecated version on purpose
    pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning"),
]


# --------------------------------------------------------------------------- certificates


def _openssl(*args, cwd: Path):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class Certs:
    """A CA in `d` and certificates signed by it: make(name, serial) -> (cert, key)."""

    def __init__(self, d: Path, name: str = "ca"):
        self.d = d
        d.mkdir(parents=True, exist_ok=True)
        self.ca = d / f"{name}.pem"
        self.ca_key = d / f"{name}.key"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.ca_key.name,
                 "-out", self.ca.name, "-days", "2", "-subj", f"/CN=cdragon test {name}", cwd=d)

    def make(self, name: str, serial: int) -> tuple[Path, Path]:
        key, csr, cert, ext = (self.d / f"{name}.{x}" for x in ("key", "csr", "pem", "ext"))
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key.name, "-out", csr.name,
                 "-subj", f"/CN={name}", cwd=self.d)
        _openssl("x509", "-req", "-in", csr.name, "-CA", self.ca.name, "-CAkey", self.ca_key.name,
                 "-set_serial", str(serial), "-days", "2", "-extfile", ext.name, "-out", cert.name,
                 cwd=self.d)
        return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    c = Certs(tmp_path_factory.mktemp("tls-certs"))
    c.server1 = c.make("server1", 1001)
    c.server2 = c.make("server2", 1002)
    c.client = c.make("client", 2001)
    return c


# --------------------------------------------------------------------------- a TLS client


def client_context(certs: Certs, client_cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if client_cert:
        ctx.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    return ctx


class TLSClient:
    """http.client.HTTPSConnection kept open (one connection: the reload test needs it)."""

    def __init__(self, port: int, ctx: ssl.SSLContext, timeout: float = 10.0):
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout)

    def request(self, method: str, path: str, body=None) -> Resp:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        self.conn.request(method, path, body=data, headers=hdrs)
        r = self.conn.getresponse()
        return Resp(r.status, r.reason, list(r.getheaders()), r.read())

    def peer_serial(self) -> int:
        return int(self.conn.sock.getpeercert()["serialNumber"], 16)

    def close(self):
        self.conn.close()


class TLSServer(Server):
    """The real server, readiness checked over HTTPS."""

    def __init__(self, *a, ctx: ssl.SSLContext, **kw):
        super().__init__(*a, **kw)
        self.ctx = ctx

    def wait_ready(self, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                c = TLSClient(self.port, self.ctx, timeout=5)
                r = c.request("GET", "/health")
                c.close()
                if r.status == 200 and r.json == {"Status": "ok", "Version": VERSION}:
                    return
                last = r
            except (OSError, http.client.HTTPException, ValueError) as e:
                last = e
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server not ready in {timeout}s (last: {last!r}):\n{self.log_tail()}")


@pytest.fixture
def tls_server(tmp_path):
    started: list[Server] = []

    def make(certs: Certs, cert: Path, key: Path, client_ca: Path | None = None,
             ctx: ssl.SSLContext | None = None) -> TLSServer:
        env = {"CDRAGON_TLS_CERT_FILE": str(cert), "CDRAGON_TLS_KEY_FILE": str(key)}
        if client_ca:
            env["CDRAGON_TLS_CLIENT_CA_FILE"] = str(client_ca)
        n = len(started)
        srv = TLSServer(tmp_path / f"data{n}", tmp_path / f"logs{n}", env=env,
                        ctx=ctx or client_context(certs))
        started.append(srv)
        srv.start()
        return srv

    yield make
    for srv in started:
        srv.kill()


def _live_copy(certs: Certs, tmp_path: Path, pair: tuple[Path, Path]) -> tuple[Path, Path]:
    """The pair copied to fixed names the server is configured with (rewritten later)."""
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copyfile(pair[0], cert)
    shutil.copyfile(pair[1], key)
    return cert, key


def _replace(src: Path, dst: Path):
    tmp = dst.with_suffix(".new")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


# --------------------------------------------------------------------------- tests


def test_https_write_and_read(certs, tls_server):
    srv = tls_server(certs, *certs.server1)
    c = TLSClient(srv.port, client_context(certs))
    acc = unique_account("tls")
    r = c.request("POST", f"/db/{acc}", {"KVSet": [{"Key": "k", "Value": {"tls": True}}]})
    assert r.status == 200 and r.json == {"KVSet": [{"Key": "k", "Version": 1}], "Rev": 1}, r
    r = c.request("POST", f"/db/{acc}", {"KVGet": ["k"]})
    assert r.status == 200 and r.json["KV"] == [{"Key": "k", "Value": {"tls": True}, "Version": 1}], r
    assert c.conn.sock.version() in ("TLSv1.2", "TLSv1.3")
    assert c.peer_serial() == 1001
    c.close()
    # ALPN: http/1.1 when the client offers it (with h2 first, as browsers do)
    ctx = client_context(certs)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            assert t.selected_alpn_protocol() == "http/1.1"
    # SIGTERM with a TLS connection open: the usual clean stop
    c = TLSClient(srv.port, client_context(certs))
    assert c.request("GET", "/health").status == 200
    assert srv.terminate() == 0, srv.log_tail()
    c.close()


def test_plain_http_is_not_served(certs, tls_server):
    srv = tls_server(certs, *certs.server1)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    assert not got.startswith(b"HTTP/"), got[:200]
    assert b"Status" not in got
    # the server still serves HTTPS afterwards
    c = TLSClient(srv.port, client_context(certs))
    assert c.request("GET", "/health").status == 200
    c.close()


def _tls11_client(certs: Certs) -> ssl.SSLContext:
    """A client context that offers TLS 1.1 only (legacy ciphers need security level 0)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(certs.ca))
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


def _local_tls11_works(certs: Certs) -> str | None:
    """None if this Python/OpenSSL completes a TLS 1.1 handshake with itself on loopback
    (a server thread that allows it), else why not: then a refusal by cdragon proves
    nothing, and that one check is skipped."""
    if not ssl.HAS_TLSv1_1:
        return "this OpenSSL was built without TLS 1.1"
    try:
        client = _tls11_client(certs)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(str(certs.server1[0]), str(certs.server1[1]))
        server.set_ciphers("DEFAULT:@SECLEVEL=0")
        server.minimum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError) as e:
        return f"cannot set up TLS 1.1 locally: {e}"
    lsock = socket.create_server(("127.0.0.1", 0))
    result = {}

    def serve_one():
        try:
            conn, _ = lsock.accept()
            with server.wrap_socket(conn, server_side=True) as t:
                result["server"] = t.version()
        except (OSError, ssl.SSLError) as e:
            result["server"] = repr(e)

    th = threading.Thread(target=serve_one, daemon=True)
    th.start()
    try:
        with socket.create_connection(lsock.getsockname(), timeout=10) as s:
            with client.wrap_socket(s, server_hostname="127.0.0.1") as t:
                version = t.version()
    except (OSError, ssl.SSLError) as e:
        return f"the local OpenSSL refuses TLS 1.1 to itself: {e}"
    finally:
        th.join(10)
        lsock.close()
    return None if version == "TLSv1.1" else f"the local handshake gave {version}"


def test_tls_12_minimum(certs, tls_server):
    srv = tls_server(certs, *certs.server1)
    # TLS 1.2 exactly is served
    ctx = client_context(certs)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    c = TLSClient(srv.port, ctx)
    assert c.request("GET", "/health").status == 200
    assert c.conn.sock.version() == "TLSv1.2"
    c.close()
    why = _local_tls11_works(certs)
    if why:
        pytest.skip(f"TLS 1.2 served; TLS 1.1 refusal not checked: {why}")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        try:
            t = _tls11_client(certs).wrap_socket(s, server_hostname="127.0.0.1")
        except (ssl.SSLError, ConnectionResetError):
            pass        # refused (the same client completed TLS 1.1 with a local server)
        else:
            version = t.version()
            t.close()
            pytest.fail(f"a TLS 1.1 handshake succeeded ({version})")


def test_client_certificates_required(certs, tls_server):
    with_cert = client_context(certs, certs.client)
    srv = tls_server(certs, *certs.server1, client_ca=certs.ca, ctx=with_cert)
    c = TLSClient(srv.port, with_cert)
    acc = unique_account("mtls")
    r = c.request("POST", f"/db/{acc}", {"KVSet": [{"Key": "k", "Value": 1}]})
    assert r.status == 200, r
    assert c.request("POST", f"/db/{acc}", {"KVGet": ["k"]}).json["KV"][0]["Value"] == 1
    c.close()
    # no certificate: the handshake fails (TLS 1.3 reports it on the first read)
    c = TLSClient(srv.port, client_context(certs))
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError,
                        http.client.RemoteDisconnected)):
        c.request("GET", "/health")
    c.close()
    # a certificate from another CA: refused too
    other = Certs(certs.d / "other", "otherca")
    stranger = other.make("stranger", 3001)
    c = TLSClient(srv.port, client_context(certs, stranger))
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError,
                        http.client.RemoteDisconnected)):
        c.request("GET", "/health")
    c.close()
    assert srv.running()


def test_sighup_swaps_certificate_for_new_connections(certs, tls_server, tmp_path):
    cert, key = _live_copy(certs, tmp_path, certs.server1)
    srv = tls_server(certs, cert, key)
    ctx = client_context(certs)
    before = TLSClient(srv.port, ctx)
    acc = unique_account("hup")
    assert before.request("POST", f"/db/{acc}", {"KVSet": [{"Key": "k", "Value": 1}]}).status == 200
    assert before.peer_serial() == 1001

    _replace(certs.server2[0], cert)
    _replace(certs.server2[1], key)
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:
        after = TLSClient(srv.port, ctx)
        assert after.request("GET", "/health").status == 200
        if after.peer_serial() == 1002 or time.monotonic() > deadline:
            break
        after.close()
        time.sleep(0.05)
    assert after.peer_serial() == 1002, srv.log_tail()
    # the connection opened before is still served, on its old session
    r = before.request("POST", f"/db/{acc}", {"KVGet": ["k"]})
    assert r.status == 200 and r.json["KV"][0]["Value"] == 1, r
    assert before.peer_serial() == 1001
    r = after.request("POST", f"/db/{acc}", {"KVGet": ["k"]})
    assert r.status == 200 and r.json["KV"][0]["Value"] == 1, r
    assert "reload: re-read TLS files" in srv.log_tail()
    before.close()

    # a broken key at the next SIGHUP: one line logged, the server keeps the old certificate
    key.write_text("not a key\n")
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "not reloaded" not in srv.log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [ln for ln in srv.log_tail().splitlines() if "not reloaded" in ln]
    assert len(lines) == 1 and str(key) in lines[0], srv.log_tail()
    assert srv.running()
    again = TLSClient(srv.port, ctx)
    assert again.request("GET", "/health").status == 200
    assert again.peer_serial() == 1002
    again.close()
    # the connection opened between the two reloads still works too
    assert after.request("GET", "/health").status == 200
    after.close()


def _start_fails(tmp_path: Path, env: dict) -> tuple[int, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_")}
    full.update(env)
    repo = Path(__file__).resolve().parent.parent
    p = subprocess.run([sys.executable, "-m", "cdragon", "serve", "--listen", "127.0.0.1:0",
                        "--data-dir", str(tmp_path / "data")], cwd=repo, env=full,
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stderr


def test_bad_files_at_start_exit_2(certs, tmp_path):
    cert, key = certs.server1
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    cases = [
        ({"CDRAGON_TLS_CERT_FILE": str(cert)}, "tls_key_file"),                 # one without the other
        ({"CDRAGON_TLS_KEY_FILE": str(key)}, "tls_cert_file"),
        ({"CDRAGON_TLS_CERT_FILE": str(tmp_path / "missing.pem"), "CDRAGON_TLS_KEY_FILE": str(key)},
         "missing.pem"),
        ({"CDRAGON_TLS_CERT_FILE": str(junk), "CDRAGON_TLS_KEY_FILE": str(key)}, "junk.pem"),
        ({"CDRAGON_TLS_CERT_FILE": str(cert), "CDRAGON_TLS_KEY_FILE": str(certs.server2[1])},
         "does not belong"),
        ({"CDRAGON_TLS_CERT_FILE": str(cert), "CDRAGON_TLS_KEY_FILE": str(key),
          "CDRAGON_TLS_CLIENT_CA_FILE": str(junk)}, "junk.pem"),
    ]
    for env, word in cases:
        code, err = _start_fails(tmp_path, env)
        assert code == 2, (env, code, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cdragon: config error:"), (env, err)
        assert word in lines[0], (env, err)
        assert not (tmp_path / "data").exists(), "a config error must not touch the data dir"


def test_check_config_loads_the_tls_files(tmp_path):
    import subprocess, sys
    from helpers import REPO
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'tls_cert_file = "{tmp_path}/none.pem"\ntls_key_file = "{tmp_path}/none.key"\n')
    r = subprocess.run([sys.executable, "-m", "cdragon", "check-config", str(cfg)], cwd=REPO,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "none.pem" in r.stderr, r.stderr
