"""Continuous log shipping: write under load, SIGKILL the server, restore from S3
alone; restore to a point in time; S3 going away and coming back. Real server
processes, real restore commands, S3 = moto's server process (tests/s3_helpers.py)."""
from __future__ import annotations

import threading
import time

from helpers import Client
from s3_helpers import backup_env, moto  # noqa: F401  (fixture)
from test_backup import cdragon, present

SHIP = 0.5          # backup_ship_interval in these tests
MARGIN = 3.0        # + upload time, generously: timing never decides pass/fail here


def wait_for(what, fn, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def load(port, acc, stop, acks, handles, tag):
    """Write until `stop`: each KVSet's (key, sent, acknowledged) in `acks`; each lock
    handle given out in `handles`."""
    c = Client(port)
    i = 0
    while not stop.is_set():
        key = f"{tag}-{i}"
        sent = time.time()
        try:
            r = c.db(acc, {"KVSet": [{"Key": key, "Value": i}]})
        except OSError:          # the server was killed
            break
        if r.status != 200:
            break
        acks.append((key, sent, time.time()))
        if i % 20 == 0:
            try:
                r = c.db(acc, {"LockID": f"L{tag}", "LockDur": 1})
                if r.status == 200:
                    handles.append(r.json["Lock"])
                    c.db(acc, {"UnlockID": f"L{tag}", "Unlock": r.json["Lock"]})
            except OSError:
                break
        i += 1
    c.close()


def test_sigkill_then_restore_from_s3_alone(server_factory, moto, tmp_path, acc):  # noqa: F811
    bucket = moto.new_bucket()
    env = backup_env(moto, bucket, CDRAGON_BACKUP_SHIP_INTERVAL=SHIP, CDRAGON_CHECKPOINT_INTERVAL=0.5)
    srv = server_factory(env=env)
    c = srv.client()
    # the server takes a backup of its new timeline by itself, then ships
    wait_for("the first backup", lambda: c.get("/admin/backups").json["Backups"])
    stop = threading.Event()
    acks: list = []
    handles: list = []
    threads = [threading.Thread(target=load, args=(srv.port, acc, stop, acks, handles, f"t{n}"))
               for n in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    mid = time.time()
    time.sleep(1.0)
    c.post("/admin/backup")     # a second backup in the middle: restore uses the newest
    time.sleep(1.0 + SHIP + MARGIN)
    killed = time.time()
    srv.kill()
    stop.set()
    for t in threads:
        t.join()
    assert len(acks) > 100 and handles
    # restore from S3 alone (the old data directory is not used) into an empty directory
    dest = tmp_path / "restored"
    p = cdragon("restore", "--data-dir", dest, env=env)
    assert p.returncode == 0, p.stderr
    srv2 = server_factory(data_dir=dest)
    c2 = srv2.client()
    must = {k for k, _sent, acked in acks if acked < killed - SHIP - MARGIN}
    assert must and must <= present(c2, acc, must)
    # new lock handles are above every handle the old server gave out
    assert c2.db_ok(acc, {"LockID": "new", "LockDur": 5})["Lock"] > max(handles)
    srv2.kill()
    # to a point in time: everything acknowledged before it, nothing sent after it
    dest2 = tmp_path / "until"
    p = cdragon("restore", "--data-dir", dest2, "--until", repr(mid), env=env)
    assert p.returncode == 0, p.stderr
    srv3 = server_factory(data_dir=dest2)
    c3 = srv3.client()
    before = {k for k, _s, acked in acks if acked <= mid}
    after = {k for k, sent, _a in acks if sent > mid}
    assert before and after
    assert present(c3, acc, before) == before
    assert not present(c3, acc, after)


def metric(c, name) -> float:
    for line in c.get("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def wal_files(srv) -> list:
    import os
    return sorted(n for n in os.listdir(srv.data_dir) if n.startswith("wal-") and n.endswith(".log"))


def test_s3_outage_segments_wait_then_shipping_catches_up(server_factory, tmp_path, acc):
    from s3_helpers import Moto
    m = Moto(tmp_path / "moto").start()
    try:
        bucket = m.new_bucket()
        env = backup_env(m, bucket, CDRAGON_BACKUP_SHIP_INTERVAL=SHIP, CDRAGON_CHECKPOINT_INTERVAL=0.3)
        srv = server_factory(env=env)
        c = srv.client()
        wait_for("the first backup", lambda: c.get("/admin/backups").json["Backups"])
        c.db_ok(acc, {"KVSet": [{"Key": "before", "Value": 1}]})
        wait_for("shipping", lambda: metric(c, "cdragon_backup_shipped_through_record") > 0)
        m.stop()                                     # S3 goes away
        value = "x" * 1000
        for i in range(200):
            c.db_ok(acc, {"KVSet": [{"Key": f"out-{i}", "Value": value}]})
        wait_for("a failed upload", lambda: metric(c, "cdragon_backup_ship_failures_total") > 0)
        time.sleep(1.0)                              # several checkpoints meanwhile
        assert c.get("/ready").status == 200
        # checkpointed but unshipped: the segments stay on disk
        assert metric(c, "cdragon_backup_unshipped_bytes") > 200 * 1000
        assert len(wal_files(srv)) >= 2
        shipped = metric(c, "cdragon_backup_shipped_through_record")
        # S3 comes back on the same port, empty (moto keeps its state in memory)
        m.start()
        m.new_bucket(bucket)
        # the server notices its backup is gone, takes a new one, and ships on by itself
        wait_for("a new backup", lambda: m.keys(bucket, "cd/backups/"), timeout=60)
        c.db_ok(acc, {"KVSet": [{"Key": "after", "Value": 2}]})
        wait_for("catching up", lambda: metric(c, "cdragon_backup_shipped_through_record") > shipped + 1
                 and metric(c, "cdragon_backup_unshipped_bytes") < 200 * 1000, timeout=60)
        wait_for("segments deleted once shipped and checkpointed", lambda: len(wal_files(srv)) <= 2)
        time.sleep(SHIP + MARGIN)
        srv.kill()
        dest = tmp_path / "restored"
        p = cdragon("restore", "--data-dir", dest, env=env)
        assert p.returncode == 0, p.stderr
        c2 = server_factory(data_dir=dest).client()
        keys = ["before", "after"] + [f"out-{i}" for i in range(200)]
        assert present(c2, acc, keys) == set(keys)
    finally:
        m.stop()


def test_a_damaged_log_object_fails_restore(server_factory, moto, tmp_path, acc):  # noqa: F811
    bucket = moto.new_bucket()
    env = backup_env(moto, bucket, CDRAGON_BACKUP_SHIP_INTERVAL=SHIP)
    srv = server_factory(env=env)
    c = srv.client()
    wait_for("the first backup", lambda: c.get("/admin/backups").json["Backups"])
    for burst in range(3):
        for i in range(10):
            c.db_ok(acc, {"KVSet": [{"Key": f"k{burst}-{i}", "Value": i}]})
        wait_for("a shipped object", lambda: len(moto.keys(bucket, "cd/wal/")) > burst)
    srv.kill()
    keys = sorted(moto.keys(bucket, "cd/wal/"))
    good = moto.get(bucket, keys[-1])
    data = bytearray(good)
    data[-3] ^= 1
    moto.put(bucket, keys[-1], bytes(data))
    dest = tmp_path / "d"
    p = cdragon("restore", "--data-dir", dest, env=env)
    assert p.returncode == 1 and "damaged" in p.stderr, (keys, p.stdout, p.stderr)
    assert len(p.stderr.strip().splitlines()) == 1
    assert not dest.exists()
    # an object missing from the middle of the chain: a gap, named, and nothing restored
    moto.put(bucket, keys[-1], good)
    moto.client().delete_object(Bucket=bucket, Key=keys[1])
    p = cdragon("restore", "--data-dir", dest, env=env)
    assert p.returncode == 1 and "gap" in p.stderr, p.stderr
    assert not dest.exists()


def test_unshipped_log_above_its_bound_is_dropped_then_a_new_backup(server_factory, tmp_path, acc):
    from s3_helpers import Moto
    m = Moto(tmp_path / "moto").start()
    try:
        bucket = m.new_bucket()
        env = backup_env(m, bucket, CDRAGON_BACKUP_SHIP_INTERVAL=SHIP, CDRAGON_CHECKPOINT_INTERVAL=0.3,
                         CDRAGON_BACKUP_SHIP_MAX_BYTES=100_000)
        srv = server_factory(env=env)
        c = srv.client()
        wait_for("the first backup", lambda: c.get("/admin/backups").json["Backups"])
        m.stop()
        for i in range(300):
            c.db_ok(acc, {"KVSet": [{"Key": f"out-{i}", "Value": "x" * 1000}]})
        wait_for("the bound kept", lambda: "dropped it up to record" in srv.log_tail(20000)
                 and metric(c, "cdragon_backup_unshipped_bytes") <= 100_000, timeout=60)
        assert c.get("/ready").status == 200
        m.start()
        m.new_bucket(bucket)
        wait_for("a new backup", lambda: m.keys(bucket, "cd/backups/"), timeout=60)
        c.db_ok(acc, {"KVSet": [{"Key": "after", "Value": 2}]})
        wait_for("shipping again", lambda: m.keys(bucket, "cd/wal/"), timeout=60)
        time.sleep(SHIP + MARGIN)
        srv.kill()
        dest = tmp_path / "restored"
        p = cdragon("restore", "--data-dir", dest, env=env)
        assert p.returncode == 0, p.stderr
        keys = ["after"] + [f"out-{i}" for i in range(300)]
        assert present(server_factory(data_dir=dest).client(), acc, keys) == set(keys)
    finally:
        m.stop()


def test_a_clean_stop_ships_the_last_interval(server_factory, moto, tmp_path, acc):  # noqa: F811
    bucket = moto.new_bucket()
    env = backup_env(moto, bucket, CDRAGON_BACKUP_SHIP_INTERVAL=60)   # no interval passes
    srv = server_factory(env=env)
    c = srv.client()
    wait_for("the first backup", lambda: moto.keys(bucket, "cd/backups/"), timeout=90)
    c.db_ok(acc, {"KVSet": [{"Key": "last", "Value": 1}]})
    assert srv.terminate() == 0
    p = cdragon("restore", "--data-dir", tmp_path / "r", env=env)
    assert p.returncode == 0, p.stderr
    assert present(server_factory(data_dir=tmp_path / "r").client(), acc, ["last"]) == {"last"}
