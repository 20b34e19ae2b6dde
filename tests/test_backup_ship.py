"""Continuous log shipping: write under load, SIGKILL the server, restore from S3
alone; restore to a point in time; S3 going away and coming back. Real server
processes, real restore commands, S3 = moto's server process (tests/s3_helpers.py)."""
from __future__ import annotations

import threading
import time

from helpers import Client
from s3_helpers import backup_env, moto  # noqa: F401  (fixture)
from test_backup import cdragon

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


def present(c, acc, keys) -> set:
    found = set()
    keys = list(keys)
    for i in range(0, len(keys), 500):
        out = c.db_ok(acc, {"KVGet": keys[i:i + 500]})["KV"]
        found |= {e["Key"] for e in out if "Value" in e}
    return found


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
    time.sleep(2.0)
    mid = time.time()
    time.sleep(2.0)
    c.post("/admin/backup")     # a second backup in the middle: restore uses the newest
    time.sleep(2.0 + SHIP + MARGIN)
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
