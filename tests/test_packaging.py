"""Packaging (issue #6): systemd readiness over $NOTIFY_SOCKET, the example config, the
unit files, install.sh and the single executable built by `make binary`. (The units
under a real systemd in a throwaway container: packaging/systemd-e2e.sh, run by hand.
Start-up time is measured by packaging/measure_startup.py, not asserted here.)

Every test runs real processes. The binary is built by `make binary` when missing or
older than its sources (make decides; a no-op when up to date, ~10 s plus the one-time
PyInstaller install otherwise).
"""
from __future__ import annotations

import configparser
import dataclasses
import fcntl
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from helpers import REPO, VERSION, free_port

from cdragon import cli, sd_notify
from cdragon.config import Config

PKG = REPO / "packaging"
BINARY = REPO / "dist" / "cdragon"
HEALTH_OK = {"Status": "ok", "Version": VERSION}


# --------------------------------------------------------------------------- helpers




def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_") and k != "NOTIFY_SOCKET"}
    env.update(extra)
    return env


def _http(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 10.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)
    finally:
        c.close()


def _wait_health(proc: subprocess.Popen, port: int, timeout: float = 30.0) -> float:
    """Poll /health until 200; returns the seconds waited. Fails if the process exits."""
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode} before /health answered")
        try:
            if _http(port, "GET", "/health", timeout=2) == (200, HEALTH_OK):
                return time.monotonic() - t0
        except (OSError, http.client.HTTPException, ValueError):
            pass
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"/health did not answer within {timeout}s")
        time.sleep(0.01)


def _spawn(cmd: list, **kw) -> subprocess.Popen:
    """Start a server in its own process group, so that _kill also reaches the server
    process that a onefile binary runs as its child."""
    kw.setdefault("stdout", subprocess.DEVNULL)
    kw.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL, start_new_session=True, **kw)


def _stop(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise AssertionError(f"no exit within {timeout}s of SIGTERM") from None


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(timeout=10)


class NotifySocket:
    """The systemd side of sd_notify: a unix datagram socket to bind and read."""

    def __init__(self, tmp_path: Path, abstract: bool):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"cdragon-test-{os.getpid()}-{random.getrandbits(32):x}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            path = str(tmp_path / "notify.sock")
            self.sock.bind(path)
            self.address = path

    def recv(self, timeout: float) -> list[str]:
        """One datagram's assignments, e.g. ["READY=1", "STATUS=..."]."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            raise AssertionError(f"no notification within {timeout}s") from None
        return data.decode().split("\n")

    def close(self):
        self.sock.close()


# --------------------------------------------------------------------------- (a) sd_notify


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify_ready_when_serving_and_stopping_on_sigterm(tmp_path, abstract):
    ns = NotifySocket(tmp_path, abstract)
    port = free_port()
    proc = _spawn([sys.executable, "-m", "cdragon", "serve", "--listen", f"127.0.0.1:{port}",
                   "--data-dir", tmp_path / "data"], cwd=str(REPO), env=_env(NOTIFY_SOCKET=ns.address))
    try:
        msg = ns.recv(timeout=30)
        assert "READY=1" in msg, msg
        assert f"STATUS=serving on 127.0.0.1:{port}" in msg, msg
        # ready means serving: /health answers at once, no retry
        assert _http(port, "GET", "/health") == (200, HEALTH_OK)
        proc.send_signal(signal.SIGTERM)
        msg = ns.recv(timeout=10)
        assert msg == ["STOPPING=1"], msg
        assert proc.wait(timeout=20) == 0
    finally:
        _kill(proc)
        ns.close()


def test_notify_without_systemd_is_a_no_op(monkeypatch, tmp_path):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify.notify("READY=1") is False
    for bad in (str(tmp_path / "nobody-listens.sock"), "@cdragon-nobody-listens-here", "vsock:2:1", ""):
        monkeypatch.setenv("NOTIFY_SOCKET", bad)
        assert sd_notify.notify("READY=1") is False  # never raises


def test_notify_sends_one_datagram(monkeypatch, tmp_path):
    ns = NotifySocket(tmp_path, abstract=True)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", ns.address)
        assert sd_notify.notify("READY=1\nSTATUS=x") is True
        assert ns.recv(timeout=5) == ["READY=1", "STATUS=x"]
    finally:
        ns.close()


# --------------------------------------------------------------------------- (b) config


def _check_config(path: Path, **env):
    return subprocess.run([sys.executable, "-m", "cdragon", "check-config", str(path)],
                          cwd=str(REPO), env=_env(**env), capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_example_config_passes_check_config():
    p = _check_config(PKG / "cdragon.toml")
    assert p.returncode == 0, p.stderr
    assert "config ok" in p.stdout and "data_dir=/var/lib/cdragon" in p.stdout, p.stdout


def test_example_config_lists_every_setting_with_its_default():
    """Each field of cdragon.config.Config appears as `# name = default` (or, for the
    ones the service sets, uncommented); a new setting must be added there."""
    text = (PKG / "cdragon.toml").read_text()
    lines = {}
    for line in text.splitlines():
        m = re.match(r"^(# )?([a-z0-9_]+) = (.+)$", line)
        if m:
            assert m.group(2) not in lines, f"{m.group(2)} listed twice"
            lines[m.group(2)] = (m.group(1) is not None, tomllib.loads(f"v = {m.group(3)}")["v"])
    defaults = {f.name: f.default for f in dataclasses.fields(Config)}
    missing = sorted(set(defaults) - set(lines))
    assert not missing, f"settings missing from packaging/cdragon.toml: {missing}"
    assert not set(lines) - set(defaults), f"unknown settings: {sorted(set(lines) - set(defaults))}"
    for name, (commented, value) in lines.items():
        if commented:
            assert value == defaults[name] and type(value) is type(defaults[name]), \
                f"{name}: example says {value!r}, default is {defaults[name]!r}"
    assert lines["data_dir"] == (False, "/var/lib/cdragon")  # the unit's StateDirectory
    assert tomllib.loads(text) == {"data_dir": "/var/lib/cdragon"}


@pytest.mark.parametrize("line,needle", [
    ("max_ops = 0", "max_ops must be > 0"),
    ("max_opps = 5", "unknown setting 'max_opps'"),
    ('header_timeout = "soon"', "header_timeout"),
    ('listen = "nowhere"', "listen"),
    ("max_value_bytes = 2_000_000", "max_value_bytes must not exceed max_body_bytes"),
    ("data_dir = [", "not valid TOML"),
])
def test_broken_config_fails_check_config(tmp_path, line, needle):
    f = tmp_path / "cdragon.toml"
    f.write_text((PKG / "cdragon.toml").read_text() + line + "\n")
    p = _check_config(f)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert needle in p.stderr and str(f) in p.stderr, p.stderr


def test_check_config_blames_the_environment(tmp_path):
    p = _check_config(PKG / "cdragon.toml", CDRAGON_MAX_OPS="0")
    assert p.returncode == 2
    assert "CDRAGON_MAX_OPS" in p.stderr, p.stderr


# --------------------------------------------------------------------------- (c) units


def _unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=False, delimiters=("=",))
    cp.optionxform = str
    cp.read_string((PKG / name).read_text())
    return cp


@pytest.mark.parametrize("name", ["cdragon.service", "cdragon@.service"])
def test_unit_key_lines(name):
    u = _unit(name)
    s = u["Service"]
    assert s["Type"] == "notify"
    assert s["NotifyAccess"] == "all"  # onefile: the server is a child of the main PID
    assert s["User"] == "cdragon" and s["Group"] == "cdragon"
    assert s["Restart"] == "on-failure"
    # no restart after the exit codes a restart cannot fix: every EXIT_* but 0 and 1
    permanent = sorted(v for k, v in vars(cli).items() if k.startswith("EXIT_") and v > 1)
    assert permanent == [2, 3, 4, 5]
    assert [int(c) for c in s["RestartPreventExitStatus"].split()] == permanent
    assert int(s["LimitNOFILE"]) >= 100_000 + 1000
    assert float(s["TimeoutStopSec"]) > Config.shutdown_timeout
    assert s["KillMode"] == "mixed"
    for key in ("NoNewPrivileges", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
                "ProtectControlGroups", "RestrictSUIDSGID", "MemoryDenyWriteExecute"):
        assert s[key] == "yes", key
    assert s["ProtectSystem"] == "strict" and s["ProtectHome"] == "yes"
    assert s["CapabilityBoundingSet"] == ""
    assert u["Install"]["WantedBy"] == "multi-user.target"
    if name == "cdragon.service":
        assert s["ExecStart"] == "/usr/local/bin/cdragon serve --config /etc/cdragon/cdragon.toml"
        assert s["StateDirectory"] == "cdragon" and s["CacheDirectory"] == "cdragon"
        assert s["Environment"] == "TMPDIR=%C/cdragon"  # exec-able, not noexec /tmp or /run
    else:
        assert s["ExecStart"].startswith("/usr/local/bin/cdragon serve --config /etc/cdragon/cdragon.toml ")
        assert "--listen ${LISTEN_HOST}:%i" in s["ExecStart"]
        assert "--data-dir %S/cdragon-%i" in s["ExecStart"]
        assert s["StateDirectory"] == "cdragon-%i" and s["CacheDirectory"] == "cdragon-%i"
        # configparser keeps the last of repeated keys; check both Environment= lines
        text = (PKG / name).read_text()
        assert "Environment=TMPDIR=%C/cdragon-%i" in text and "Environment=LISTEN_HOST=127.0.0.1" in text


def test_systemd_analyze_verify(tmp_path):
    """systemd's own parser on the units (ExecStart pointed at a stand-in executable,
    since verify insists that it exists; the template checked as instance 8081)."""
    stub = tmp_path / "bin" / "cdragon"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    units = []
    for src, dst in (("cdragon.service", "cdragon.service"), ("cdragon@.service", "cdragon@8081.service")):
        text = (PKG / src).read_text().replace("/usr/local/bin/cdragon", str(stub))
        (tmp_path / dst).write_text(text)
        units.append(str(tmp_path / dst))
    p = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True,
                       timeout=60, cwd=str(tmp_path), stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "cdragon" not in p.stderr, p.stderr  # no warnings about our units either


# --------------------------------------------------------------------------- install.sh


def test_install_sh_is_idempotent_and_keeps_the_config(tmp_path):
    """install.sh with DESTDIR (staged, no root): a stand-in binary that runs the CLI."""
    fake = tmp_path / "cdragon"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -m cdragon \"$@\"\n")
    fake.chmod(0o755)
    dest = tmp_path / "root"
    env = _env(DESTDIR=str(dest), PYTHONPATH=str(REPO))

    def run():
        p = subprocess.run(["sh", str(PKG / "install.sh"), str(fake)], capture_output=True, text=True,
                           env=env, timeout=60, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stdout + p.stderr
        return p.stdout

    out = run()
    assert "config ok" in out, out
    assert (dest / "usr/local/bin/cdragon").read_bytes() == fake.read_bytes()
    assert os.access(dest / "usr/local/bin/cdragon", os.X_OK)
    for unit in ("cdragon.service", "cdragon@.service"):
        assert (dest / "etc/systemd/system" / unit).read_text() == (PKG / unit).read_text()
    conf = dest / "etc/cdragon/cdragon.toml"
    assert conf.read_text().startswith((PKG / "cdragon.toml").read_text())
    assert conf.stat().st_mode & 0o777 == 0o640
    # a first install adds an admin token: shown once in the output, its hash in the file
    token = re.search(r"admin token \(shown this once.*\): (cdt_\S+)", out).group(1)
    tables = tomllib.loads(conf.read_text())["token"]
    assert tables == [{"name": "admin", "sha256": hashlib.sha256(token.encode()).hexdigest(), "access": "admin"}]
    assert token not in conf.read_text()
    conf.write_text("max_ops = 77\n" + conf.read_text())  # the admin's edit (above the tables)
    out = run()
    assert "kept the existing" in out, out
    assert conf.read_text().startswith("max_ops = 77\n")
    assert (dest / "etc/cdragon/cdragon.toml.example").read_text() == (PKG / "cdragon.toml").read_text()
    # a broken existing config is reported, and the run fails
    conf.write_text("max_ops = 0\n")
    p = subprocess.run(["sh", str(PKG / "install.sh"), str(fake)], capture_output=True, text=True,
                       env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode != 0 and "max_ops must be > 0" in p.stderr, p.stdout + p.stderr


def _install(fake: Path, dest: Path, ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(["sh", str(PKG / "install.sh"), str(fake)], capture_output=True, text=True,
                       env=_env(DESTDIR=str(dest), PYTHONPATH=str(REPO)), timeout=60,
                       stdin=subprocess.DEVNULL)
    assert (p.returncode == 0) == ok, p.stdout + p.stderr
    return p


def test_install_sh_drop_in_for_a_data_dir_outside_the_state_directory(tmp_path):
    """ProtectSystem=strict leaves only /var/lib/cdragon writable: install.sh reads the
    configured data_dir (through check-config) and writes ReadWritePaths= for it into
    cdragon.service.d/data-dir.conf, removes its own drop-in when the data_dir comes
    back, and keeps one the admin wrote."""
    fake = tmp_path / "cdragon"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -m cdragon \"$@\"\n")
    fake.chmod(0o755)
    dest = tmp_path / "root"
    conf = dest / "etc/cdragon/cdragon.toml"
    units = dest / "etc/systemd/system"
    dropin = units / "cdragon.service.d" / "data-dir.conf"

    _install(fake, dest)
    assert not (units / "cdragon.service.d").exists()   # the example's /var/lib/cdragon

    for inside in ("/var/lib/cdragon/sub", "relative/to/the/state/dir"):
        conf.write_text(f'data_dir = "{inside}"\n')
        _install(fake, dest)
        assert not dropin.exists(), inside

    conf.write_text('data_dir = "/srv/cdragon-data"\n')
    out = _install(fake, dest).stdout
    assert "data-dir.conf" in out, out
    text = dropin.read_text()
    assert text.startswith("# Written by install.sh")
    assert dropin.stat().st_mode & 0o777 == 0o644
    cp = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    cp.optionxform = str
    cp.read_string(text)
    assert {k: dict(v) for k, v in cp.items() if k != "DEFAULT"} == \
        {"Service": {"ReadWritePaths": "-/srv/cdragon-data"}}
    assert _install(fake, dest).returncode == 0 and dropin.read_text() == text   # idempotent

    # systemd's parser on the unit with the drop-in beside it
    if shutil.which("systemd-analyze"):
        stub = tmp_path / "bin" / "cdragon"
        stub.parent.mkdir()
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
        check = tmp_path / "verify"
        (check / "cdragon.service.d").mkdir(parents=True)
        (check / "cdragon.service").write_text(
            (units / "cdragon.service").read_text().replace("/usr/local/bin/cdragon", str(stub)))
        shutil.copy(dropin, check / "cdragon.service.d" / "data-dir.conf")
        p = subprocess.run(["systemd-analyze", "verify", str(check / "cdragon.service")],
                           capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
                           stdin=subprocess.DEVNULL)
        assert p.returncode == 0 and "cdragon" not in p.stderr, p.stdout + p.stderr

    # % is a systemd specifier: written as %%
    conf.write_text('data_dir = "/srv/cd%data"\n')
    _install(fake, dest)
    assert "ReadWritePaths=-/srv/cd%%data\n" in dropin.read_text()
    # a path systemd would split is refused, with a pointer to the manual way
    conf.write_text('data_dir = "/srv/my data"\n')
    p = _install(fake, dest, ok=False)
    assert "/srv/my data" in p.stderr and "by hand" in p.stderr, p.stderr
    # data_dir back under /var/lib/cdragon: our drop-in goes
    conf.write_text('data_dir = "/var/lib/cdragon"\n')
    out = _install(fake, dest).stdout
    assert not dropin.exists() and "removed" in out, out
    # one the admin wrote stays
    dropin.parent.mkdir()
    dropin.write_text("[Service]\nReadWritePaths=/srv/mine\n")
    _install(fake, dest)
    assert dropin.read_text() == "[Service]\nReadWritePaths=/srv/mine\n"


# --------------------------------------------------------------------------- (d) the binary


@pytest.fixture(scope="module")
def binary() -> Path:
    """dist/cdragon, (re)built by `make binary` when missing or older than its sources.
    A lock serialises concurrent test runs sharing the tree."""
    sources = [REPO / "cdragon" / "_core.pyx", PKG / "cdragon.spec", *(REPO / "cdragon").glob("*.py")]
    newest = max(s.stat().st_mtime for s in sources if s.exists())  # before make: others may edit meanwhile
    (REPO / "build").mkdir(exist_ok=True)
    with open(REPO / "build" / ".binary.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        t0 = time.monotonic()
        p = subprocess.run(["make", "--no-print-directory", "binary"], cwd=str(REPO), capture_output=True,
                           text=True, timeout=900, stdin=subprocess.DEVNULL)
        took = time.monotonic() - t0
    assert p.returncode == 0, f"make binary failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    assert BINARY.is_file() and os.access(BINARY, os.X_OK)
    assert BINARY.stat().st_mtime >= newest, "dist/cdragon is older than its sources after make binary"
    print(f"\nmake binary: {took:.1f}s, dist/cdragon {BINARY.stat().st_size / 1e6:.1f} MB")
    return BINARY


def test_binary_version(binary):
    p = subprocess.run([str(binary), "version"], capture_output=True, text=True, timeout=60,
                       env=_env(), stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    line = p.stdout.strip()
    m = re.fullmatch(rf"cdragon {re.escape(VERSION)} \(Python (3\.\d+\.\d+), glibc ([\d.]+); "
                     r"single executable built on glibc ([\d.]+), needs glibc >= ([\d.]+)\)", line)
    assert m, line
    assert m.group(1).startswith("3.11.")
    needed = tuple(map(int, m.group(4).split(".")))
    assert needed <= tuple(map(int, m.group(3).split("."))) <= tuple(map(int, m.group(2).split(".")))
    # --version prints the same line, unwrapped however narrow the terminal
    p = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60,
                       env=dict(_env(), COLUMNS="40"), stdin=subprocess.DEVNULL)
    assert p.returncode == 0 and p.stdout.strip() == line, p.stdout


def test_binary_usage(binary, tmp_path):
    """The binary's command line is cdragon.cli's: bare prints the help and exits 2, an
    unknown CDRAGON_* variable is refused before serving."""
    p = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60,
                       env=_env(), stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and p.stderr.startswith("usage: cdragon"), p.stderr
    p = subprocess.run([str(binary), "serve", "--listen", f"127.0.0.1:{free_port()}",
                        "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=60,
                       env=dict(_env(), CDRAGON_MAX_OPZ="5"), stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and "CDRAGON_MAX_OPZ" in p.stderr, p.stderr
    assert not (tmp_path / "d").exists()


def test_binary_check_config(binary, tmp_path):
    p = subprocess.run([str(binary), "check-config", str(PKG / "cdragon.toml")], capture_output=True,
                       text=True, timeout=60, env=_env(), stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("max_ops = 0\n")
    p = subprocess.run([str(binary), "check-config", str(bad)], capture_output=True, text=True,
                       timeout=60, env=_env(), stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and "max_ops must be > 0" in p.stderr, p.stderr


def test_binary_serves_keeps_data_and_locks_across_restart(binary, tmp_path):
    data = tmp_path / "data"
    logs = []

    def start(ns: NotifySocket | None = None):
        port = free_port()
        log = open(tmp_path / f"server-{len(logs)}.log", "wb")
        logs.append(log.name)
        env = _env(NOTIFY_SOCKET=ns.address) if ns else _env()
        proc = _spawn([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data],
                      cwd=str(tmp_path), env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return proc, port

    ns = NotifySocket(tmp_path, abstract=True)
    proc, port = start(ns)
    try:
        took = _wait_health(proc, port)
        print(f"\nbinary: exec -> first /health 200 in {took * 1000:.0f} ms (cold)")
        assert took < 10, took
        # the onefile child sends READY=1 (the unit has NotifyAccess=all for that)
        assert "READY=1" in ns.recv(timeout=5)
        status, body = _http(port, "POST", "/db/a/lock/x?owner=t")
        assert status == 200 and body["Lock"] >= 1, body
        handle = body["Lock"]
        assert _http(port, "PUT", "/db/a/kv/k", b'"v"') == (200, {"Key": "k", "Version": 1})
        assert _http(port, "GET", "/db/a/kv/k") == (200, {"Key": "k", "Value": "v", "Version": 1})
        # SIGTERM to the onefile parent: forwarded to the server, which drains and exits 0
        proc.send_signal(signal.SIGTERM)
        assert ns.recv(timeout=10) == ["STOPPING=1"]
        assert proc.wait(timeout=30) == 0, Path(logs[-1]).read_text()
    finally:
        _kill(proc)
        ns.close()

    proc, port = start()
    try:
        took = _wait_health(proc, port)
        print(f"binary: exec -> first /health 200 in {took * 1000:.0f} ms (restart)")
        assert _http(port, "GET", "/db/a/kv/k") == (200, {"Key": "k", "Value": "v", "Version": 1})
        status, body = _http(port, "GET", "/db/a/lock/x")
        assert status == 200 and body["Locked"] is True and body["Owner"] == "t", body
        status, body = _http(port, "POST", "/db/a/lock/x?owner=other&wait=0")
        assert (status, body["Code"]) == (409, "locked"), body
        status, body = _http(port, "POST", "/db/a/lock/x?owner=t")  # the holder re-locks: same handle
        assert status == 200 and body["Lock"] == handle, body
        assert _stop(proc) == 0, Path(logs[-1]).read_text()
    finally:
        _kill(proc)
