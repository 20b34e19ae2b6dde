"""Tokens and protected mode (API.md "Access: tokens and protected mode").

Tokens over loopback; protected mode with a client that is not on loopback: the server
runs inside a network namespace this test creates (with a veth pair to it) and removes
afterwards, and the test talks to the namespace's own address only.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import pytest

from helpers import REPO, Client, Raw, assert_error, free_port, http_request, unique_account

TOKENS = {
    "web": ("write", ["shop", "tenant-*"]),
    "ro": ("read", ["shop"]),
    "mon": ("metrics", None),
    "ops": ("admin", None),
    "all": ("write", ["*"]),
}


def token_of(name: str) -> str:
    return f"cdt_test-{name}-secret"


def config_text(extra: str = "") -> str:
    out = [extra]
    for name, (access, accounts) in TOKENS.items():
        out += ["[[token]]", f'name = "{name}"',
                f'sha256 = "{hashlib.sha256(token_of(name).encode()).hexdigest()}"',
                f'access = "{access}"']
        if accounts is not None:
            out.append("accounts = [" + ", ".join(f'"{a}"' for a in accounts) + "]")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    from helpers import Server
    base = tmp_path_factory.mktemp("token-server")
    cfg = base / "cdragon.toml"
    cfg.write_text(config_text())
    srv = Server(base / "data", base / "logs", config=str(cfg))
    srv.start()
    yield srv
    srv.kill()


def call(srv, method, path, body=None, token=None, headers=None):
    c = Client(srv.port, timeout=10)
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = token if token.startswith(("Bearer", "Basic", "bearer")) or not token else "Bearer " + token
    try:
        kw = {} if body is None else {"body": body}
        return c.request(method, path, headers=h, **kw)
    finally:
        c.close()


def test_no_token_is_401_with_www_authenticate_and_changes_nothing(token_server):
    r = call(token_server, "PUT", "/db/shop/kv/k", 1)
    assert_error(r, 401, "unauthorized")
    assert r.header("WWW-Authenticate") == 'Bearer realm="cdragon"'
    r = call(token_server, "GET", "/db/shop/kv/k", token=token_of("web"))
    assert r.status == 404


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "bearer", "Token abc",
                                    "Bearer " + "x" * 3000, "Bearer cdt_wrong"])
def test_malformed_or_unknown_token_is_401(token_server, header):
    r = call(token_server, "POST", "/db/shop", {"KVSet": [{"Key": "m", "Value": 1}]}, token=header)
    assert_error(r, 401, "unauthorized")
    r = call(token_server, "POST", "/db/shop", {"KVGet": ["m"]}, token=token_of("web"))
    assert r.json["KV"] == [{"Key": "m", "Version": 0}]


def test_write_token_covers_its_accounts_and_patterns(token_server):
    t = token_of("web")
    assert call(token_server, "PUT", "/db/shop/kv/k", 1, token=t).status == 200
    assert call(token_server, "PUT", "/db/tenant-a/kv/k", 1, token=t).status == 200
    assert call(token_server, "POST", "/watch/tenant-b", {"ID": "k", "Version": 5, "Timeout": 0}, token=t).status == 200
    for acc in ("other", "tenant", "tenantx", "Shop", "shop2"):
        r = call(token_server, "PUT", f"/db/{acc}/kv/k", 1, token=t)
        assert_error(r, 403, "forbidden")
    assert call(token_server, "GET", "/db/other/kv/k", token=token_of("ops")).status == 404


def test_read_token_reads_only(token_server):
    w, ro = token_of("web"), token_of("ro")
    assert call(token_server, "PUT", "/db/shop/kv/r", {"a": 1}, token=w).status == 200
    assert call(token_server, "GET", "/db/shop/kv/r", token=ro).json["Value"] == {"a": 1}
    assert call(token_server, "GET", "/db/shop/kv?prefix=r", token=ro).status == 200
    assert call(token_server, "GET", "/db/shop/counter/c", token=ro).status == 200
    assert call(token_server, "POST", "/watch/shop", {"ID": "r", "Version": 0, "Timeout": 0}, token=ro).status == 200
    out = call(token_server, "POST", "/db/shop", {"KVGet": ["r"], "KVList": [{"Prefix": "r"}],
                                                    "Atomic": [{"Key": "c", "Add": 0}]}, token=ro)
    assert out.status == 200 and out.json["KV"][0]["Value"] == {"a": 1}
    for method, path, body in [("PUT", "/db/shop/kv/r", 2), ("DELETE", "/db/shop/kv/r", None),
                               ("POST", "/db/shop/counter/c", None), ("POST", "/db/shop/lock/l", None),
                               ("DELETE", "/db/shop/kv?prefix=r", None)]:
        assert_error(call(token_server, method, path, body, token=ro), 403, "forbidden")
    # the body decides for POST /db: a write inside is 403 after parsing, nothing applied
    for body in ({"KVSet": [{"Key": "r", "Value": 3}]}, {"Atomic": [{"Key": "c", "Add": 1}]},
                 {"KVGet": ["r"], "Seq": [{"Key": "s"}]}, {"LockID": "l"}, {"IdempotencyIDs": ["x"]},
                 {"KVDelete": [{"Prefix": "r"}]}, {"Atomic": [{"Key": "c", "Set": 0}]}):
        assert_error(call(token_server, "POST", "/db/shop", body, token=ro), 403, "forbidden")
    assert call(token_server, "GET", "/db/shop/kv/r", token=ro).json["Value"] == {"a": 1}
    assert call(token_server, "GET", "/db/shop/counter/c", token=ro).json["Value"] == 0
    assert_error(call(token_server, "GET", "/db/other/kv/r", token=ro), 403, "forbidden")


def test_metrics_token_is_for_metrics_only(token_server):
    assert_error(call(token_server, "GET", "/db/shop/kv/k", token=token_of("mon")), 403, "forbidden")
    assert_error(call(token_server, "POST", "/db/shop", {"KVGet": ["k"]}, token=token_of("mon")), 403, "forbidden")


def test_health_and_ready_need_no_token(token_server):
    for token in (None, "Bearer nonsense", "Basic x"):
        assert call(token_server, "GET", "/health", token=token).status == 200
        assert call(token_server, "GET", "/ready", token=token).status == 200


def test_refused_body_is_not_read_and_the_connection_keeps_serving(token_server):
    with Raw(token_server.port, timeout=10) as raw:
        big = json.dumps({"KVSet": [{"Key": "big", "Value": "v" * 100000}]}).encode()
        raw.send(http_request("POST", "/db/shop", big) + http_request(
            "POST", "/db/shop", {"KVGet": ["big"]}, headers={"Authorization": "Bearer " + token_of("web")}))
        assert_error(raw.read_response(timeout=10), 401, "unauthorized")
        r = raw.read_response(timeout=10)
        assert r.status == 200 and r.json["KV"] == [{"Key": "big", "Version": 0}]


def test_expect_100_continue_without_a_token_is_refused_before_the_body(token_server):
    with Raw(token_server.port, timeout=10) as raw:
        raw.send(b"PUT /db/shop/kv/e HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
                 b"Expect: 100-continue\r\n\r\n")
        r = raw.read_response(timeout=10)
        assert r.status == 401 and r.header("Connection") == "close"
        raw.wait_closed(timeout=10)


def test_token_new_prints_a_token_and_its_block(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cdragon", "token", "new", "--name", "web",
                          "--accounts", "shop,tenant-*", "--access", "write"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    token, _, block = out.partition("\n\n")
    assert token.startswith("cdt_") and len(token) == 4 + 43
    t = tomllib.loads(block)["token"][0]
    assert t == {"name": "web", "sha256": hashlib.sha256(token.encode()).hexdigest(),
                 "accounts": ["shop", "tenant-*"], "access": "write"}
    r = subprocess.run([sys.executable, "-m", "cdragon", "token", "new", "--name", "x", "--accounts", "a b",
                        "--access", "read"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "bad account pattern" in r.stderr


@pytest.mark.parametrize("block,needle", [
    ('[[token]]\nname = "a"\nsha256 = "xyz"\naccess = "read"\naccounts = ["a"]\n', "sha256"),
    ('[[token]]\nname = "a"\nsha256 = "' + "0" * 64 + '"\naccess = "root"\naccounts = ["a"]\n', "access"),
    ('[[token]]\nname = "a"\nsha256 = "' + "0" * 64 + '"\naccess = "read"\n', "needs accounts"),
    ('[[token]]\nname = "a"\nsha256 = "' + "0" * 64 + '"\naccess = "read"\naccounts = ["a"]\nfoo = 1\n', "unknown key"),
    ('token = 5\n', "array of tables"),
])
def test_bad_token_tables_are_config_errors(tmp_path, block, needle):
    cfg = tmp_path / "c.toml"
    cfg.write_text(block)
    r = subprocess.run([sys.executable, "-m", "cdragon", "serve", "--config", str(cfg), "--listen",
                        f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "d")],
                       cwd=REPO, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = subprocess.run([sys.executable, "-m", "cdragon", "check-config", str(cfg)], cwd=REPO,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and needle in r.stderr


# --------------------------------------------------------------------------- protected mode

def _ip(*args, ns=None):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + ["ip", *args]
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture
def netns():
    """A network namespace with a veth pair to it: (namespace, its address, ours)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    tag = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = f"cdt-{tag}", f"cdh{tag}", f"cdn{tag}"
    octet = random.randint(2, 250)
    ours, theirs = f"10.231.{octet}.1", f"10.231.{octet}.2"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{ours}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("addr", "add", f"{theirs}/30", "dev", ns_if, ns=ns)
        _ip("link", "set", ns_if, "up", ns=ns)
        _ip("link", "set", "lo", "up", ns=ns)
        yield ns, theirs, ours
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def serve_in(ns, theirs, tmp_path, config: str | None = None):
    """A server inside `ns`, on every address there (loopback and `theirs`)."""
    port = free_port()
    cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "cdragon", "serve", "--listen", f"0.0.0.0:{port}",
           "--data-dir", str(tmp_path / f"data-{port}")]
    if config:
        cfg = tmp_path / f"cfg-{port}.toml"
        cfg.write_text(config)
        cmd += ["--config", str(cfg)]
    log = open(tmp_path / f"log-{port}", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_")}
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    end = time.monotonic() + 30
    while True:
        try:
            if _get(theirs, port, "/health")[0] == 200:
                return proc, port
        except OSError:
            pass
        if time.monotonic() > end or proc.poll() is not None:
            proc.kill()
            raise RuntimeError((tmp_path / f"log-{port}").read_text())
        time.sleep(0.05)


def _get(addr, port, path, method="GET", body=None, token=None, ns=None):
    """One request from this namespace (or from inside `ns` with a helper process)."""
    script = ("import http.client,json,sys;c=http.client.HTTPConnection(sys.argv[1],int(sys.argv[2]),timeout=10);"
              "h={'Authorization':'Bearer '+sys.argv[6]} if sys.argv[6] else {};"
              "b=sys.argv[5] or None;c.request(sys.argv[4],sys.argv[3],body=b,headers=h);"
              "r=c.getresponse();print(r.status);print(r.read().decode())")
    cmd = ([ "ip", "netns", "exec", ns] if ns else []) + [sys.executable, "-c", script, addr, str(port), path,
                                                          method, body or "", token or ""]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise OSError(out.stderr)
    status, _, text = out.stdout.partition("\n")
    return int(status), json.loads(text) if text.strip() else None


def test_protected_mode_serves_only_loopback_clients(netns, tmp_path):
    ns, theirs, _ = netns
    proc, port = serve_in(ns, theirs, tmp_path)
    try:
        status, body = _get(theirs, port, "/db/a/kv/k", "PUT", "1")
        assert status == 403 and body["Code"] == "forbidden" and "token" in body["Message"]
        assert _get(theirs, port, "/health")[0] == 200
        assert _get(theirs, port, "/ready")[0] == 200
        # a client on the server's own machine (its namespace's loopback) is served
        assert _get("127.0.0.1", port, "/db/a/kv/k", "PUT", "1", ns=ns)[0] == 200
        # loopback means 127.0.0.0/8 and ::1: the machine's other addresses do not count
        assert _get(theirs, port, "/db/a/kv/k", ns=ns)[0] == 403
        assert _get(theirs, port, "/db/a/kv/k")[0] == 403
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_protected_mode_off_and_tokens_from_outside(netns, tmp_path):
    ns, theirs, _ = netns
    proc, port = serve_in(ns, theirs, tmp_path, config="protected_mode = false\n")
    try:
        assert _get(theirs, port, "/db/a/kv/k", "PUT", "1")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    proc, port = serve_in(ns, theirs, tmp_path, config=config_text())
    try:
        assert _get(theirs, port, "/db/shop/kv/k", "PUT", "1")[0] == 401
        assert _get(theirs, port, "/db/shop/kv/k", "PUT", "1", token=token_of("web"))[0] == 200
        # with tokens, loopback clients need one too
        assert _get("127.0.0.1", port, "/db/shop/kv/k", ns=ns)[0] == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_sighup_rereads_tokens_and_a_broken_file_keeps_the_old_ones(server_factory, tmp_path):
    import signal
    cfg = tmp_path / "reload.toml"
    cfg.write_text(config_text())
    srv = server_factory(config=str(cfg))
    old, new = token_of("web"), "cdt_test-new-secret"
    assert call(srv, "PUT", "/db/shop/kv/k", 1, token=old).status == 200
    c = Client(srv.port, timeout=10)          # a connection open across the reload
    assert c.request("GET", "/db/shop/kv/k", headers={"Authorization": "Bearer " + old}).status == 200
    cfg.write_text('[[token]]\nname = "new"\nsha256 = "%s"\naccess = "write"\naccounts = ["shop"]\n'
                   % hashlib.sha256(new.encode()).hexdigest())
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while call(srv, "GET", "/db/shop/kv/k", token=new).status != 200:
        assert time.monotonic() < deadline, "the new token never worked"
        time.sleep(0.05)
    assert_error(call(srv, "GET", "/db/shop/kv/k", token=old), 401, "unauthorized")
    # the connection opened before is still there; its next request is checked anew
    assert c.request("GET", "/db/shop/kv/k", headers={"Authorization": "Bearer " + new}).status == 200
    cfg.write_text("[[token]]\nname = 5\n")
    srv.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert call(srv, "GET", "/db/shop/kv/k", token=new).status == 200
    assert "tokens not reloaded" in srv.log_tail()
    c.close()


def test_metrics_need_a_metrics_or_admin_token_and_count_failures(token_server):
    from prometheus_client.parser import text_string_to_metric_families
    assert_error(call(token_server, "GET", "/metrics"), 401, "unauthorized")
    assert_error(call(token_server, "GET", "/metrics", token=token_of("web")), 403, "forbidden")
    assert call(token_server, "GET", "/metrics", token=token_of("ops")).status == 200

    def failures():
        r = call(token_server, "GET", "/metrics", token=token_of("mon"))
        assert r.status == 200
        fams = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
        return {s.labels["reason"]: s.value for s in fams["cdragon_auth_failures"].samples
                if s.name.endswith("_total")}
    before = failures()
    call(token_server, "GET", "/db/shop/kv/k")                               # missing
    call(token_server, "GET", "/db/shop/kv/k", token="Bearer cdt_nope")      # unknown
    call(token_server, "GET", "/db/other/kv/k", token=token_of("web"))       # forbidden
    after = failures()
    assert after["missing"] == before["missing"] + 1
    assert after["unknown"] == before["unknown"] + 1
    assert after["forbidden"] == before["forbidden"] + 1


def test_access_log_names_the_token_never_the_token(server_factory, tmp_path):
    cfg = tmp_path / "log.toml"
    cfg.write_text(config_text("access_log = true\nlog_format = \"json\"\n"))
    srv = server_factory(config=str(cfg))
    assert call(srv, "PUT", "/db/shop/kv/secret-key", "secret-value", token=token_of("web")).status == 200
    deadline = time.monotonic() + 10
    while '"route"' not in srv.log_tail():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    lines = [json.loads(l) for l in srv.log_tail(100000).splitlines() if l.startswith("{") and '"route"' in l]
    put = [l for l in lines if l.get("method") == "PUT" or "PUT" in json.dumps(l)]
    assert put and '"web"' in json.dumps(put[-1])
    text = srv.log_tail(100000)
    assert token_of("web") not in text and "secret-value" not in text and "secret-key" not in text
