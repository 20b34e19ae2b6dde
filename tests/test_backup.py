"""Backups: POST /admin/backup to moto's S3, restore into a new data directory, a
server on the restored directory; bad input; refusals. Real server processes, real
restore commands, S3 = moto's server process (tests/s3_helpers.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from helpers import REPO, Client, assert_error
from s3_helpers import CREDS, backup_env, moto  # noqa: F401  (fixture)


def cdragon(*args, env=None, timeout=120):
    full = {k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_")}
    full.update(CREDS)
    full.update(env or {})
    full["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "cdragon", *map(str, args)], cwd=str(REPO), env=full,
                          capture_output=True, text=True, timeout=timeout)


def fill(c, acc, n=50):
    """Keys, a counter, a sequence and a held lock; the lock's handle."""
    for i in range(n):
        c.db_ok(acc, {"KVSet": [{"Key": f"k{i}", "Value": {"i": i}}]})
    c.db_ok(acc, {"Atomic": [{"Key": "c", "Add": 17}], "Seq": [{"Key": "s", "Count": 5}]})
    return c.db_ok(acc, {"LockID": "L", "LockDur": 600})["Lock"]


def check(c, acc, n=50):
    for i in range(n):
        assert c.kv(acc, f"k{i}")["Value"] == {"i": i}
    assert c.counter(acc, "c") == 17
    assert c.seq_last(acc, "s") == 5


def test_backup_restore_round_trip(server_factory, moto, tmp_path, acc):  # noqa: F811
    bucket = moto.new_bucket()
    env = backup_env(moto, bucket, CDRAGON_BACKUP_SHIP_LOG="off")
    srv = server_factory(env=env)
    c = srv.client()
    handle = fill(c, acc)
    r = c.post("/admin/backup")
    assert r.status == 200, r
    out = r.json
    assert set(out) == {"Name", "Bytes", "SHA256", "Location", "Rev", "Seconds"}
    keys = moto.keys(bucket)
    assert f"cd/backups/{out['Name']}.cdbk" in keys and f"cd/backups/{out['Name']}.json" in keys
    man = json.loads(moto.get(bucket, f"cd/backups/{out['Name']}.json"))
    assert man["Format"] == "cdragon-backup" and man["FormatVersion"] == 1
    assert man["Rev"] == out["Rev"] >= 50 and man["SHA256"] == out["SHA256"]
    assert out["Location"] == f"s3://{bucket}/cd/backups/{out['Name']}.cdbk"
    # the local copy too
    assert os.path.exists(os.path.join(srv.data_dir, "backups", "backups", out["Name"] + ".cdbk"))
    listing = c.get("/admin/backups").json
    assert [b["Name"] for b in listing["Backups"]] == [out["Name"]]
    assert listing["LastError"] is None and listing["LastSuccess"] > 0
    dest = tmp_path / "restored"
    p = cdragon("restore", "--data-dir", dest, env=env)
    assert p.returncode == 0, p.stderr
    srv2 = server_factory(data_dir=dest)
    c2 = srv2.client()
    check(c2, acc)
    assert c2.get(f"/db/{acc}/lock/L").json["Locked"] is True
    # new handles are above every handle the old server gave out (+ the margin)
    assert c2.db_ok(acc, {"LockID": "L2", "LockDur": 5})["Lock"] > handle + 1_000_000_000
    assert c2.db_ok(acc, {"UnlockID": "L", "Unlock": handle}) == {}    # the lock kept its handle


def writer(port, acc, stop, acks, tag):
    c = Client(port)
    i = 0
    while not stop.is_set():
        c.db_ok(acc, {"KVSet": [{"Key": f"{tag}-{i:06d}", "Value": i}]})
        acks.append((tag, i, time.time()))
        i += 1
    c.close()


def test_backup_while_writes_go_on_is_one_moment(server_factory, moto, tmp_path, acc):  # noqa: F811
    bucket = moto.new_bucket()
    env = backup_env(moto, bucket, CDRAGON_BACKUP_SHIP_LOG="off")
    srv = server_factory(env=env)
    stop, acks = threading.Event(), []
    threads = [threading.Thread(target=writer, args=(srv.port, acc, stop, acks, f"w{n}")) for n in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    asked = time.time()
    r = srv.client().post("/admin/backup")
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert r.status == 200, r
    dest = tmp_path / "r"
    p = cdragon("restore", "--data-dir", dest, "--name", r.json["Name"], env=env)
    assert p.returncode == 0, p.stderr
    c2 = server_factory(data_dir=dest).client()
    for tag in ("w0", "w1", "w2"):
        mine = [(i, when) for t, i, when in acks if t == tag]
        got = present(c2, acc, [f"{tag}-{i:06d}" for i, _ in mine])
        # every write acknowledged before the request is there, and what is there is a
        # prefix of each writer's sequence (one moment, not a smear)
        need = {f"{tag}-{i:06d}" for i, when in mine if when < asked}
        assert need <= got
        n = len(got)
        assert got == {f"{tag}-{i:06d}" for i in range(n)}


def present(c, acc, keys) -> set:
    found = set()
    keys = list(keys)
    for i in range(0, len(keys), 500):
        out = c.db_ok(acc, {"KVGet": keys[i:i + 500]})["KV"]
        found |= {e["Key"] for e in out if "Value" in e}
    return found


def test_bad_input_is_400_and_changes_nothing(server_factory, moto):  # noqa: F811
    bucket = moto.new_bucket()
    srv = server_factory(env=backup_env(moto, bucket, CDRAGON_BACKUP_SHIP_LOG="off"))
    c = srv.client()
    assert_error(c.post("/admin/backup?now=1"), 400, "bad_request")
    assert_error(c.post("/admin/backup", body={"Name": "x"}), 400, "bad_request")
    assert_error(c.get("/admin/backups?x=1"), 400, "bad_request")
    assert moto.keys(bucket) == {}
    assert c.get("/admin/backups").json["Backups"] == []


@pytest.mark.parametrize("var,value,needle", [
    ("CDRAGON_BACKUP_KEEP", "0", "backup_keep must be > 0"),
    ("CDRAGON_BACKUP_INTERVAL", "-1", "backup_interval must be >= 0"),
    ("CDRAGON_BACKUP_SHIP_INTERVAL", "0", "backup_ship_interval must be > 0"),
    ("CDRAGON_BACKUP_SHIP_LOG", "maybe", "backup_ship_log must be one of auto, on, off"),
    ("CDRAGON_BACKUP_SHIP_LOG", "on", "backup_ship_log = \"on\" needs backup_s3_url"),
    ("CDRAGON_BACKUP_S3_URL", "http://x/y", "backup_s3_url must be s3://BUCKET[/PREFIX]"),
    ("CDRAGON_BACKUP_S3_ENDPOINT", "127.0.0.1:9000", "backup_s3_endpoint must be http(s)://HOST[:PORT]"),
])
def test_bad_backup_settings_exit_2(tmp_path, var, value, needle):
    p = cdragon("serve", "--listen", "127.0.0.1:0", "--data-dir", tmp_path / "d", env={var: value})
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], p.stderr
    assert not (tmp_path / "d").exists()


def test_retention_keeps_the_newest(server_factory, moto, acc):  # noqa: F811
    bucket = moto.new_bucket()
    srv = server_factory(env=backup_env(moto, bucket, CDRAGON_BACKUP_SHIP_LOG="off", CDRAGON_BACKUP_KEEP=2))
    c = srv.client()
    names = []
    for i in range(3):
        c.db_ok(acc, {"KVSet": [{"Key": f"k{i}", "Value": i}]})
        r = c.post("/admin/backup")
        assert r.status == 200, r
        names.append(r.json["Name"])
        time.sleep(1.0)      # names carry whole seconds
    kept = sorted(k for k in moto.keys(bucket, "cd/backups/"))
    assert kept == sorted(f"cd/backups/{n}.{ext}" for n in names[1:] for ext in ("cdbk", "json"))
    local = sorted(os.listdir(os.path.join(srv.data_dir, "backups", "backups")))
    assert local == sorted(f"{n}.{ext}" for n in names[1:] for ext in ("cdbk", "json"))
    assert [b["Name"] for b in c.get("/admin/backups").json["Backups"]] == names[1:]


def _backed_up(server_factory, moto, acc, **more):  # noqa: F811
    bucket = moto.new_bucket()
    env = backup_env(moto, bucket, CDRAGON_BACKUP_SHIP_LOG="off", **more)
    srv = server_factory(env=env)
    c = srv.client()
    fill(c, acc)
    r = c.post("/admin/backup")
    assert r.status == 200, r
    return srv, env, bucket, r.json["Name"]


def _tree(path) -> dict:
    out = {}
    for root, _dirs, files in os.walk(path):
        for f in files:
            full = os.path.join(root, f)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, path)] = fh.read()
    return out


def test_corrupted_backup_fails_loudly_and_leaves_the_directory(server_factory, moto, tmp_path, acc):  # noqa: F811
    srv, env, bucket, name = _backed_up(server_factory, moto, acc)
    key = f"cd/backups/{name}.cdbk"
    data = bytearray(moto.get(bucket, key))
    data[len(data) // 2] ^= 0x40
    moto.put(bucket, key, bytes(data))
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "keep.txt").write_text("old data")
    before = _tree(dest)
    p = cdragon("restore", "--data-dir", dest, "--force", env=env)
    assert p.returncode == 1, p.stderr
    assert "damaged" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert _tree(dest) == before
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".d.")]     # no temp dir left
    # the same backup with its manifest's hash made to match: the stream's own trailer fails
    import hashlib
    man = json.loads(moto.get(bucket, f"cd/backups/{name}.json"))
    man["SHA256"] = hashlib.sha256(bytes(data)).hexdigest()
    moto.put(bucket, f"cd/backups/{name}.json", json.dumps(man).encode())
    p = cdragon("restore", "--data-dir", dest, "--force", env=env)
    assert p.returncode == 1 and "damaged" in p.stderr, p.stderr
    assert _tree(dest) == before


def test_restore_refuses_a_non_empty_or_busy_directory(server_factory, moto, tmp_path, acc):  # noqa: F811
    srv, env, bucket, name = _backed_up(server_factory, moto, acc)
    dest = tmp_path / "full"
    dest.mkdir()
    (dest / "x").write_text("x")
    p = cdragon("restore", "--data-dir", dest, env=env)
    assert p.returncode == 1 and "not empty" in p.stderr, p.stderr
    assert _tree(dest) == {"x": b"x"}
    # the running server's own directory: refused even with --force
    before = sorted(os.listdir(srv.data_dir))
    p = cdragon("restore", "--data-dir", srv.data_dir, "--force", env=env)
    assert p.returncode == 3 and "in use" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert sorted(os.listdir(srv.data_dir)) == before
    assert srv.client().get("/ready").status == 200
    # --force on a stopped server's directory replaces it
    srv.terminate()
    p = cdragon("restore", "--data-dir", srv.data_dir, "--force", env=env)
    assert p.returncode == 0, p.stderr
    # its local backups (default backup_dir = <data_dir>/backups) are kept
    assert os.path.exists(os.path.join(srv.data_dir, "backups", "backups", name + ".cdbk"))
    srv.start()
    check(srv.client(), acc)


def test_backups_list_and_restore_from_a_directory(server_factory, moto, tmp_path, acc):  # noqa: F811
    srv, env, bucket, name = _backed_up(server_factory, moto, acc)
    p = cdragon("backups", "list", env=env)
    assert p.returncode == 0, p.stderr
    assert name in p.stdout and f"s3://{bucket}/cd/" in p.stdout
    local = os.path.join(srv.data_dir, "backups")
    p = cdragon("backups", "list", "--from", local)
    assert p.returncode == 0 and name in p.stdout, p.stderr
    dest = tmp_path / "fromdir"
    p = cdragon("restore", "--data-dir", dest, "--from", local)
    assert p.returncode == 0, p.stderr
    check(server_factory(data_dir=dest).client(), acc)
    p = cdragon("restore", "--data-dir", tmp_path / "none", "--from", local, "--name", "nope")
    assert p.returncode == 1 and "no backup named nope" in p.stderr
    p = cdragon("restore", "--data-dir", tmp_path / "none", "--from", local, "--until", "yesterday")
    assert p.returncode == 1 and "not an ISO 8601 time" in p.stderr
    p = cdragon("restore", "--data-dir", tmp_path / "none", "--from", local, "--until", "2001-01-01T00:00:00")
    assert p.returncode == 1 and "no backup" in p.stderr and "2001-01-01T00:00:00.000Z" in p.stderr, p.stderr
    assert not (tmp_path / "none").exists()
    # an ISO time with a zone, after the backup: restored
    p = cdragon("restore", "--data-dir", tmp_path / "iso", "--from", local, "--until",
                time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 60)))
    assert p.returncode == 0, p.stderr


def test_cdragon_backup_command(server_factory, moto, acc):  # noqa: F811
    bucket = moto.new_bucket()
    srv = server_factory(env=backup_env(moto, bucket, CDRAGON_BACKUP_SHIP_LOG="off"))
    p = cdragon("backup", "--url", f"http://127.0.0.1:{srv.port}")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert f"cd/backups/{out['Name']}.json" in moto.keys(bucket)


def test_s3_failing_is_502_backup_failed_without_credentials(server_factory, tmp_path, acc):
    from helpers import free_port
    env = {"CDRAGON_BACKUP_S3_URL": "s3://nowhere/cd", "CDRAGON_BACKUP_SHIP_LOG": "off",
           "CDRAGON_BACKUP_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}", **CREDS}
    srv = server_factory(env=env)
    c = srv.client()
    c.db_ok(acc, {"KVSet": [{"Key": "k", "Value": 1}]})
    body = assert_error(c.post("/admin/backup"), 502, "backup_failed")
    assert "s3://nowhere/cd" in body["Message"]
    assert CREDS["AWS_SECRET_ACCESS_KEY"] not in body["Message"] and CREDS["AWS_SECRET_ACCESS_KEY"] not in srv.log_tail(100000)
    listing = c.get("/admin/backups").json      # S3 down: the local copy, and the error
    assert listing["LastError"] == body["Message"] and listing["LastSuccess"] is None
    assert len(listing["Backups"]) == 1 and listing["Backups"][0]["Location"].startswith(srv.data_dir)
    text = c.get("/metrics").body.decode()
    assert "cdragon_backup_failures_total 1.0" in text
    assert "cdragon_backup_last_success_timestamp_seconds 0.0" in text
    assert c.get("/ready").status == 200


def test_a_backup_carries_queues_and_rate_limits(server_factory, tmp_path, acc):
    """Queue messages (ready, scheduled, in flight) and rate-limiter states come back
    from a restore: the snapshot holds every LMDB database, theirs too."""
    srv = server_factory(env={"CDRAGON_BACKUP_SHIP_LOG": "off"})
    c = srv.client()
    for _ in range(3):
        assert c.request("POST", f"/db/{acc}/ratelimit/api?rate=1&per=86400&burst=3").status == 200
    assert c.request("POST", f"/db/{acc}/ratelimit/api?rate=1&per=86400&burst=3").status == 429
    c.db_ok(acc, {"QPush": [{"Queue": "mail", "Body": {"n": i}} for i in range(5)]
                  + [{"Queue": "later", "Body": "x", "Delay": 3600}]})
    got = c.post(f"/queue/{acc}", {"Queue": "mail", "Max": 2, "Visibility": 3600}).json["Messages"]
    assert [m["Body"] for m in got] == [{"n": 0}, {"n": 1}]
    assert c.post("/admin/backup").status == 200
    dest = tmp_path / "restored"
    p = cdragon("restore", "--data-dir", dest, "--from", os.path.join(srv.data_dir, "backups"))
    assert p.returncode == 0, p.stderr
    c2 = server_factory(data_dir=dest).client()
    stats = c2.get(f"/db/{acc}/queue/mail").json
    assert (stats["Ready"], stats["InFlight"]) == (3, 2)
    assert c2.get(f"/db/{acc}/queue/later").json["Delayed"] == 1
    rest = c2.post(f"/queue/{acc}", {"Queue": "mail", "Max": 10}).json["Messages"]
    assert [m["Body"] for m in rest] == [{"n": 2}, {"n": 3}, {"n": 4}]
    # the burst taken before the backup stays taken
    assert_error(c2.request("POST", f"/db/{acc}/ratelimit/api?rate=1&per=86400&burst=3"), 429, "rate_limited")
    # the deliveries in flight at the backup still hold their receipts
    assert c2.request("DELETE", f"/db/{acc}/queue/mail?receipt={got[0]['Receipt']}").status == 200
