"""Several instances behind the real HAProxy (issue 15; API.md "Several instances behind
HAProxy"): `cdragon haproxy-config` output checked by `haproxy -c`, then run in the
foreground (`haproxy -db`) in front of real cdragon instances on loopback ports.

Where a request landed is always checked by asking each instance directly (its data,
or its own request counters), never by trusting HAProxy. The 40 s watch and the lock
wait run in threads while the other tests of the module run, to keep the file short.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import REPO, VERSION, Client, Server, assert_error, free_port

from cdragon.shard import haproxy_cfg, pins, runtime

# Debian's haproxy is installed by `make testdeps`; without it these tests fail (no skip)

LONG_POLL = 40      # seconds a watch and a lock wait are held open through HAProxy


def cdragon(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the checkout's `cdragon` command line."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_")}
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "cdragon", *args], cwd=str(REPO), env=full_env,
                          capture_output=True, text=True, timeout=120)


class HAProxy:
    """`cdragon haproxy-config` written to a file, `haproxy -c` on it, then `haproxy -db`."""

    def __init__(self, base: Path, servers: list[Server], names: list[str]):
        self.base = base
        self.pins = str(base / "pins.map")
        self.socket = str(base / "haproxy.sock")
        self.cfg = base / "haproxy.cfg"
        self.port = None
        self.proc = None
        self.configure(servers, names)

    def configure(self, servers, names):
        self.names = list(names)
        self.specs = [f"{n}=127.0.0.1:{s.port}" for n, s in zip(names, servers)]
        self.instances = haproxy_cfg.parse_servers(self.specs)

    def server_args(self) -> list[str]:
        return [a for spec in self.specs for a in ("--server", spec)]

    def write_config(self):
        out = cdragon("haproxy-config", *self.server_args(), "--bind", f"127.0.0.1:{self.port}",
                      "--pins", self.pins, "--socket", self.socket)
        assert out.returncode == 0, out.stderr
        self.cfg.write_text(out.stdout)
        check = subprocess.run(["haproxy", "-c", "-f", str(self.cfg)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "WARNING" not in check.stdout + check.stderr, check.stdout + check.stderr

    def start(self):
        """In master-worker mode (-W), as Debian's unit runs it, so reload() is its reload."""
        self.port = free_port()
        self.write_config()
        self.log = self.base / f"haproxy-{self.port}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(["haproxy", "-W", "-db", "-f", str(self.cfg)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.wait_up(self.names)
        return self

    def reload(self):
        """`systemctl reload haproxy`: a new worker on the new config; the old one finishes
        the requests it holds."""
        self.write_config()
        self.proc.send_signal(signal.SIGUSR2)
        self.wait_up(self.names)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def states(self) -> dict[str, str]:
        """instance name -> its server's check status in HAProxy ("UP", "DOWN", ...)."""
        text = runtime.command(self.socket, "show stat")
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {r["svname"]: r["status"] for r in rows if r["pxname"].startswith("cdragon_")
                and r["pxname"] != "cdragon_any" and r["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_up(self, names, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                states = self.states()
                if all(states.get(n, "").startswith("UP") for n in names):
                    return
            except runtime.HAProxyError:
                states = None
            assert time.monotonic() < deadline, f"instances not UP in HAProxy: {states}"
            time.sleep(0.1)

    def client(self, timeout: float = 30.0) -> Client:
        return Client(self.port, timeout=timeout)

    def home(self, acc: str) -> int:
        """The index of the instance HAProxy should send `acc` to (pins, else hash)."""
        pinned = pins.read(self.pins).get(acc)
        if pinned is not None:
            return self.names.index(pinned)
        return haproxy_cfg.slot(acc, len(self.names))


def start_cluster(base: Path, n: int, first: int = 0) -> tuple[list[Server], HAProxy]:
    servers = [Server(base / f"data{i}", base / f"logs{i}", keep_port=True).start()
               for i in range(first, first + n)]
    return servers, HAProxy(base, servers, [f"n{i}" for i in range(first, first + n)])


def holder(servers: list[Server], acc: str, key: str = "k") -> list[int]:
    """Which instances hold `key` in `acc`, asked directly."""
    found = []
    for i, s in enumerate(servers):
        c = s.client(timeout=10)
        try:
            if "Value" in c.kv(acc, key):
                found.append(i)
        finally:
            c.close()
    return found


def accounts_on(n: int, count: int, prefix: str) -> list[str]:
    """`count` account names whose hash slot (of n) is each of 0..n-1 in turn."""
    out, k = [], 0
    while len(out) < count:
        acc = f"{prefix}-{k}"
        if haproxy_cfg.slot(acc, n) == len(out) % n:
            out.append(acc)
        k += 1
    return out


# --------------------------------------------------------------------------- no cluster


def test_config_is_valid_haproxy_and_bad_flags_are_refused(tmp_path):
    pins_file = tmp_path / "p" / "pins.map"
    pins_file.parent.mkdir()
    out = cdragon("haproxy-config", "--server", "a=127.0.0.1:8081", "--server", "b=[::1]:8082",
                  "--server", "c=localhost:8083", "--pins", str(pins_file),
                  "--socket", str(tmp_path / "s.sock"), "--bind", "127.0.0.1:8080")
    assert out.returncode == 0, out.stderr
    assert pins.read(str(pins_file)) == {}          # created, empty
    cfg = tmp_path / "h.cfg"
    cfg.write_text(out.stdout)
    check = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0 and "WARNING" not in check.stdout + check.stderr, check
    text = out.stdout
    # long-polls are never cut: every timeout a parked request meets is above 300 s
    for kind in ("client", "server", "tunnel"):
        line = next(l for l in text.splitlines() if l.strip().startswith(f"timeout {kind} "))
        assert int(line.split()[-1].rstrip("s")) > 300, line
    assert "maxconn" not in "\n".join(l for l in text.splitlines() if l.strip().startswith("server "))
    assert "balance hash" not in text and "option redispatch" not in text.split("backend cdragon_any")[0].replace("no option redispatch", "")
    assert f"map({pins_file})" in text and f"stats socket {tmp_path / 's.sock'} " in text

    for bad in (["--server", "a=127.0.0.1"], ["--server", "a b=127.0.0.1:1"], ["--server", "a=h:70000"],
                ["--server", "a=127.0.0.1:1", "--server", "a=127.0.0.1:2"], [],
                ["--server", "a=127.0.0.1:1", "--bind", "nowhere"],
                ["--server", "a=127.0.0.1:1", "--user", "bad user"]):
        p2 = tmp_path / "q.map"
        out = cdragon("haproxy-config", *bad, "--pins", str(p2), "--socket", str(tmp_path / "t"))
        assert out.returncode == 2 and out.stdout == "" and out.stderr.startswith("cdragon: "), (bad, out)
        assert not p2.exists()
    out = cdragon("haproxy-config", "--server", "a=127.0.0.1:1", "--pins", str(tmp_path / "a b.map"))
    assert out.returncode == 2 and out.stdout == "" and not (tmp_path / "a b.map").exists()


def test_pins_file_updates_keep_other_pins_and_refuse_bad_accounts(tmp_path):
    path = str(tmp_path / "pins.map")
    pins.ensure(path)
    pins.update(path, {"a": "n1", "b": "n2"})
    pins.set_pin(path, "a", "n3")
    assert pins.read(path) == {"a": "n3", "b": "n2"}
    with pytest.raises(pins.PinsError):
        pins.update(path, {"bad acc": "n1"})
    assert pins.read(path) == {"a": "n3", "b": "n2"}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# --------------------------------------------------------------------------- 3 instances


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("hap")
    servers, hap = start_cluster(base, 3)
    # pinned before HAProxy starts: read from the file; each away from its hash slot
    pinned = {}
    for k in range(6):
        acc = f"pinned-{k}"
        pinned[acc] = f"n{(haproxy_cfg.slot(acc, 3) + 1 + k % 2) % 3}"
    pins.update(hap.pins, pinned)
    hap.start()
    polls = LongPolls(hap, servers)
    polls.start()
    yield servers, hap, polls
    hap.stop()
    for s in servers:
        s.kill()


class LongPolls:
    """A 40 s watch (ends by its timeout, unchanged) and a lock wait (granted when the
    holder's 38 s lock runs out) through HAProxy, on instance n1 and n2 (the kill test
    stops n0)."""

    def __init__(self, hap: HAProxy, servers):
        self.hap = hap
        self.watch_acc = next(a for a in accounts_on(3, 30, "watch") if hap.home(a) == 1)
        self.lock_acc = next(a for a in accounts_on(3, 30, "lock") if hap.home(a) == 2)
        self.results: dict[str, object] = {}     # name -> the answer, or the exception
        self.threads = []

    def start(self):
        c = self.hap.client()
        put = c.db_ok(self.watch_acc, {"KVSet": [{"Key": "w", "Value": 1}]})
        assert put["KVSet"][0]["Version"] == 1
        got = c.db_ok(self.lock_acc, {"LockID": "L", "LockDur": LONG_POLL - 2})
        assert got["Lock"] > 0
        c.close()
        self.threads = [threading.Thread(target=self._run, args=(name, fn), daemon=True)
                        for name, fn in (("watch", self._watch), ("lock", self._lock))]
        for t in self.threads:
            t.start()

    def _run(self, name, fn):
        try:
            self.results[name] = fn()
        except Exception as e:     # reported by the joining test
            self.results[name] = e

    def _watch(self):
        c = self.hap.client(timeout=LONG_POLL + 60)
        try:
            return c.post(f"/watch/{self.watch_acc}", {"ID": "w", "Version": 1, "Timeout": LONG_POLL})
        finally:
            c.close()

    def _lock(self):
        c = self.hap.client(timeout=LONG_POLL + 60)
        try:
            return c.db(self.lock_acc, {"LockID": "L", "LockWait": LONG_POLL + 30})
        finally:
            c.close()


def test_every_route_family_reaches_the_accounts_instance(cluster):
    servers, hap, _ = cluster
    c = hap.client()
    odd = ["A.b_c-D", "z" * 64, "0", "-.-", "_"]         # every kind of account character
    accounts = [f"route-{k}" for k in range(300)] + [f"pinned-{k}" for k in range(6)] + odd
    for acc in accounts:
        c.db_ok(acc, {"KVSet": [{"Key": "k", "Value": acc}]})
    for acc in accounts:
        assert holder(servers, acc) == [hap.home(acc)], acc
    # the hash HAProxy applied is the one Python computes: each slot got its share
    counts = [sum(1 for a in accounts[:300] if hap.home(a) == i) for i in range(3)]
    assert min(counts) > 50, counts
    assert {pins.read(hap.pins)[f"pinned-{k}"] for k in range(6)} <= set(hap.names)

    # every other route family, for a few accounts per instance
    sample = [a for i in range(3) for a in accounts[:300] if hap.home(a) == i][::25]
    for acc in sample:
        home = servers[hap.home(acc)].client()
        assert c.put(f"/db/{acc}/kv/rest", {"v": 1}).status == 200
        assert c.get(f"/db/{acc}/kv/rest").json["Value"] == {"v": 1}
        assert c.post(f"/db/{acc}/counter/n?add=5").json["Value"] == 5
        assert c.post(f"/db/{acc}/sequence/s?count=3").json["Value"] == 1
        lock = c.post(f"/db/{acc}/lock/L?dur=30&owner=me")
        assert lock.status == 200, lock
        w = c.post(f"/watch/{acc}", {"ID": "k", "Version": 0, "Timeout": 0})
        assert w.status == 200 and w.json["Value"] == acc, w
        # each write is on the home instance, and on no other
        assert home.get(f"/db/{acc}/kv/rest").json["Value"] == {"v": 1}
        assert home.get(f"/db/{acc}/counter/n").json["Value"] == 5
        assert home.get(f"/db/{acc}/sequence/s").json["Value"] == 3
        assert home.get(f"/db/{acc}/lock/L").json["Locked"] is True
        for i, s in enumerate(servers):
            if i != hap.home(acc):
                other = s.client()
                assert other.get(f"/db/{acc}/kv/rest").status == 404
                assert other.get(f"/db/{acc}/counter/n").json["Value"] == 0
                assert other.get(f"/db/{acc}/lock/L").json == {"Locked": False}
                other.close()
        home.close()
    # an instance's own 503 (an account frozen for a move) passes through untouched
    acc = sample[0]
    home = servers[hap.home(acc)].client()
    assert home.post(f"/admin/freeze?acc={acc}").status == 200
    r = c.db(acc, {"KVSet": [{"Key": "k", "Value": 2}]})
    assert_error(r, 503, "moving")
    assert r.header("Retry-After") == "1"
    assert c.kv(acc, "k")["Value"] == acc                     # reads still served
    assert home.delete(f"/admin/freeze?acc={acc}").status == 200
    home.close()
    # /queue/{acc} is routed by its account too: a message pushed through HAProxy lives
    # on the account's instance only, and is received through HAProxy
    for acc in sample:
        assert c.post(f"/db/{acc}/queue/q", {"m": acc}).status == 200
        for i, s in enumerate(servers):
            sc = s.client()
            assert sc.get(f"/db/{acc}/queue/q").json["Ready"] == (1 if i == hap.home(acc) else 0)
            sc.close()
        r = c.post(f"/queue/{acc}", {"Queue": "q"})
        assert r.status == 200 and [m["Body"] for m in r.json["Messages"]] == [{"m": acc}], r
    # /admin/export?acc=A: the dump comes from the account's instance
    for acc in sample[:6]:
        r = c.get(f"/admin/export?acc={acc}")
        assert r.status == 200, r
        assert f'"{acc}"'.encode() in r.body and b'"rest"' in r.body, r
        # a query parameter is percent-decoded by the instance: HAProxy routes the decoded one
        r = c.get(f"/admin/export?acc=%{ord(acc[0]):02X}{acc[1:]}")
        assert r.status == 200 and b'"rest"' in r.body, r
    c.close()


def test_unrouted_paths_and_haproxys_own_errors_are_json(cluster):
    servers, hap, _ = cluster
    c = hap.client()
    for path in ("/health", "/ready"):
        r = c.get(path)
        assert r.status == 200 and r.content_type == "application/json", r
    assert c.get("/health").json == {"Status": "ok", "Version": VERSION}
    for method, path in (("GET", "/metrics"), ("GET", "/admin/accounts"), ("POST", "/admin/backup"),
                         ("GET", "/admin/export"), ("GET", "/admin/export?acc="), ("GET", "/nope"),
                         ("POST", "/db"), ("POST", "/db/"), ("POST", "/watch")):
        r = c.request(method, path, body=b"{}" if method == "POST" else None)
        assert_error(r, 404, "not_found")
    # (HAProxy 2.6 answers a request it cannot parse with its built-in HTML 400,
    # whatever the config says: haproxy/haproxy#3032, fixed in 3.2. docs/SCALE-OUT.md)
    # an account pinned to a name no instance has: 503, and no instance saw it
    pins.set_pin(hap.pins, "ghost", "n9")
    runtime.set_pin(hap.socket, hap.pins, "ghost", "n9")
    assert_error(c.db("ghost", {"KVSet": [{"Key": "k", "Value": 1}]}), 503, "unavailable")
    assert holder(servers, "ghost") == []
    c.close()


def test_runtime_repin_routes_the_next_request_without_reload(cluster):
    servers, hap, _ = cluster
    c = hap.client()
    acc = next(a for a in (f"repin-{k}" for k in range(100)) if hap.home(a) == 0)
    c.db_ok(acc, {"KVSet": [{"Key": "k", "Value": "first"}]})
    assert holder(servers, acc) == [0]
    assert runtime.get_pin(hap.socket, hap.pins, acc) is None
    pins.set_pin(hap.pins, acc, "n2")
    runtime.set_pin(hap.socket, hap.pins, acc, "n2")
    assert runtime.get_pin(hap.socket, hap.pins, acc) == "n2"
    c.db_ok(acc, {"KVSet": [{"Key": "k2", "Value": "second"}]})
    assert holder(servers, acc, "k2") == [2]
    runtime.set_pin(hap.socket, hap.pins, acc, "n1")      # an existing entry is set in place
    assert runtime.get_pin(hap.socket, hap.pins, acc) == "n1"
    c.close()


def test_a_killed_instance_answers_503_for_its_accounts_only(cluster):
    servers, hap, _ = cluster
    c = hap.client()
    accounts = [f"route-{k}" for k in range(300)]
    dead = [a for a in accounts if hap.home(a) == 0]
    alive = [a for a in accounts if hap.home(a) != 0]
    servers[0].kill()
    deadline = time.monotonic() + 30
    while hap.states()["n0"].startswith("UP"):
        assert time.monotonic() < deadline, "n0 never marked down"
        time.sleep(0.1)
    for acc in dead:
        r = c.db(acc, {"KVSet": [{"Key": "lost", "Value": 1}], "KVGet": ["k"]})
        assert_error(r, 503, "unavailable")
    for acc in alive:
        assert c.kv(acc, "k") == {"Key": "k", "Value": acc, "Version": 1}
    assert c.get("/health").status == 200        # another instance answers the probes
    for acc in dead[:20]:                        # nothing landed anywhere else
        assert holder(servers[1:], acc, "lost") == []
    servers[0].start()                           # same port, same data
    hap.wait_up(["n0"])
    for acc in dead:
        assert c.kv(acc, "k") == {"Key": "k", "Value": acc, "Version": 1}
    assert holder(servers, dead[0], "lost") == []
    c.close()


def test_pin_all_then_a_fourth_instance_moves_nothing(tmp_path):
    servers, hap = start_cluster(tmp_path, 3)
    try:
        hap.start()
        c = hap.client()
        old = [f"old-{k}" for k in range(60)]
        for acc in old:
            c.db_ok(acc, {"KVSet": [{"Key": "k", "Value": acc}]})
        c.close()
        before = {acc: holder(servers, acc) for acc in old}
        out = cdragon("shard", "pin-all", *hap.server_args(), "--pins", hap.pins, "--socket", hap.socket)
        assert out.returncode == 0, out.stderr
        assert pins.read(hap.pins) == {acc: f"n{before[acc][0]}" for acc in old}
        assert all(runtime.get_pin(hap.socket, hap.pins, acc) == f"n{before[acc][0]}" for acc in old)

        # a 4th instance: regenerate the config with it appended and reload HAProxy, while
        # a watch is parked through it (the old worker answers it after the reload)
        watch = {}
        parked = threading.Thread(target=lambda: watch.update(r=hap.client(timeout=60).post(
            f"/watch/{old[0]}", {"ID": "k", "Version": 1, "Timeout": 5})))
        parked.start()
        servers.append(Server(tmp_path / "data3", tmp_path / "logs3", keep_port=True).start())
        hap.configure(servers, ["n0", "n1", "n2", "n3"])
        hap.reload()
        parked.join(timeout=60)
        assert watch["r"].status == 200 and watch["r"].json["Version"] == 1, watch
        c = hap.client()
        moved_by_hash = [a for a in old if haproxy_cfg.slot(a, 4) != haproxy_cfg.slot(a, 3)]
        assert moved_by_hash            # without the pins these would have moved
        for acc in old:
            assert c.kv(acc, "k") == {"Key": "k", "Value": acc, "Version": 1}
            c.db_ok(acc, {"KVSet": [{"Key": "k2", "Value": 1}]})
            assert holder(servers, acc, "k2") == before[acc]
        new = accounts_on(4, 8, "new")
        for acc in new:
            c.db_ok(acc, {"KVSet": [{"Key": "k", "Value": acc}]})
            assert holder(servers, acc) == [haproxy_cfg.slot(acc, 4)]
        assert any(holder(servers, acc) == [3] for acc in new)
        c.close()

        # bad input: nothing is pinned, exit 2
        pinned = pins.read(hap.pins)
        bad = cdragon("shard", "pin-all", "--server", "n0", "--pins", hap.pins, "--socket", hap.socket)
        assert bad.returncode == 2 and bad.stderr.startswith("cdragon: "), bad
        bad = cdragon("shard", "pin-all", *hap.server_args(), "--timeout", "0", "--pins", hap.pins)
        assert bad.returncode == 2 and "--timeout" in bad.stderr, bad
        assert pins.read(hap.pins) == pinned
    finally:
        hap.stop()
        for s in servers:
            s.kill()


def test_pin_all_needs_an_admin_token_and_refuses_an_account_on_two_instances(tmp_path, server_factory):
    token = "cdt_" + "x" * 43
    conf = tmp_path / "tokens.toml"
    conf.write_text('[[token]]\nname = "ops"\nsha256 = "%s"\naccess = "admin"\n'
                    % hashlib.sha256(token.encode()).hexdigest())
    servers = [server_factory(config=str(conf)) for _ in range(2)]
    auth = {"Authorization": f"Bearer {token}"}
    for i, acc in enumerate(("only-a", "only-b")):
        c = servers[i].client()
        assert c.request("POST", f"/db/{acc}", {"KVSet": [{"Key": "k", "Value": 1}]}, auth).status == 200
        c.close()
    path = str(tmp_path / "pins.map")
    args = ["shard", "pin-all", "--server", f"a=127.0.0.1:{servers[0].port}",
            "--server", f"b=127.0.0.1:{servers[1].port}", "--pins", path,
            "--socket", str(tmp_path / "no-haproxy.sock")]
    for env, extra in (({}, []), ({"CDRAGON_TOKEN": "cdt_wrong"}, [])):
        out = cdragon(*args, *extra, env=env)
        assert out.returncode == 1 and "401 unauthorized" in out.stderr, out
        assert not os.path.exists(path)
    # with the token (flag or variable), and no HAProxy running: the file only
    for env, extra in (({}, ["--token", token]), ({"CDRAGON_TOKEN": token}, [])):
        out = cdragon(*args, *extra, env=env)
        assert out.returncode == 0, out.stderr
        assert "HAProxy is not running" in out.stdout, out.stdout
        assert pins.read(path) == {"only-a": "a", "only-b": "b"}
    # the same account on both instances: an error, and the pins stay as they were
    c = servers[1].client()
    assert c.request("POST", "/db/only-a", {"KVSet": [{"Key": "k", "Value": 2}]}, auth).status == 200
    c.close()
    out = cdragon(*args, env={"CDRAGON_TOKEN": token})
    assert out.returncode == 1 and "only-a (a and b)" in out.stderr, out
    assert pins.read(path) == {"only-a": "a", "only-b": "b"}


def test_the_long_polls_through_haproxy_were_not_cut(cluster):
    servers, hap, polls = cluster
    for t in polls.threads:
        t.join(timeout=LONG_POLL + 90)
    watch, lock = polls.results["watch"], polls.results["lock"]
    assert not isinstance(watch, Exception), watch
    assert watch.status == 200 and watch.json == {"Key": "w", "Version": 1, "Value": 1}, watch
    assert not isinstance(lock, Exception), lock
    assert lock.status == 200 and lock.json["Lock"] > 0, lock
    # the answers came from the instances holding the accounts, after the full wait
    assert holder(servers, polls.watch_acc, "w") == [1]
    home = servers[2].client()
    assert home.get(f"/db/{polls.lock_acc}/lock/L").json["Locked"] is True
    home.close()


# --------------------------------------------------------------------------- install.sh


def _free_port_pair() -> int:
    """A port P with P+1 free too (install.sh numbers instances from FIRST_PORT up)."""
    import socket
    for _ in range(100):
        p = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise RuntimeError("no two consecutive free ports")


def test_install_sh_instances_writes_haproxy_config_and_pins_before_growing(tmp_path):
    fake = tmp_path / "cdragon"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -m cdragon \"$@\"\n")
    fake.chmod(0o755)
    dest = tmp_path / "root"
    first = _free_port_pair()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_")}
    env.update(DESTDIR=str(dest), PYTHONPATH=str(REPO), FIRST_PORT=str(first))

    def install(*args, ok=True):
        p = subprocess.run(["sh", str(REPO / "packaging/install.sh"), *args, str(fake)],
                           capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
        assert (p.returncode == 0) == ok, p.stdout + p.stderr
        return p

    for bad in (["--instances", "0"], ["--instances", "x"], ["--instances"], ["--nope"]):
        p = install(*bad, ok=False)
        assert "install.sh: error:" in p.stderr, p.stderr
    assert not dest.exists()

    install("--instances", "2")
    cfg = dest / "etc/haproxy/haproxy.cfg"
    pins_file = dest / "etc/haproxy/cdragon-pins.map"
    text = cfg.read_text()
    names = [str(first), str(first + 1)]
    assert f"# cdragon-servers: --server {names[0]}=127.0.0.1:{first} --server {names[1]}=127.0.0.1:{first + 1}\n" in text
    assert "bind 127.0.0.1:8080" in text and "map(/etc/haproxy/cdragon-pins.map)" in text
    assert pins.read(str(pins_file)) == {}
    assert (dest / "usr/local/bin/cdragon").exists() and (dest / "etc/cdragon/cdragon.toml").exists()
    staged = tmp_path / "staged.cfg"           # haproxy -c needs the map where it is named
    staged.write_text(text.replace("/etc/haproxy/cdragon-pins.map", str(pins_file)))
    check = subprocess.run(["haproxy", "-c", "-f", str(staged)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    # growing to 3 while the 2 serve: the accounts they hold are pinned first
    servers = []
    for i in range(2):
        srv = Server(tmp_path / f"data{i}", tmp_path / f"logs{i}", keep_port=True)
        srv.port = first + i
        servers.append(srv.start())
    try:
        accounts = accounts_on(2, 10, "inst")
        for acc in accounts:
            c = servers[haproxy_cfg.slot(acc, 2)].client()
            c.db_ok(acc, {"KVSet": [{"Key": "k", "Value": 1}]})
            c.close()
        out = install("--instances", "3").stdout
        assert "pinning every existing account" in out, out
        assert pins.read(str(pins_file)) == {acc: names[haproxy_cfg.slot(acc, 2)] for acc in accounts}
        assert f"--server {first + 2}=127.0.0.1:{first + 2}" in cfg.read_text()
        before = cfg.read_text()
        install("--instances", "3")            # the same instances again: nothing to pin
        assert cfg.read_text() == before
    finally:
        for s in servers:
            s.kill()
    # growing again with the instances down: refused, nothing changed
    p = install("--instances", "4", ok=False)
    assert "pin-all failed" in p.stderr, p.stderr
    assert cfg.read_text() == before
