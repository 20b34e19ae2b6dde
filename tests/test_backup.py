"""Backups: POST /admin/backup to moto's S3, restore into a new data directory, a
server on the restored directory; bad input; refusals. Real server processes, real
restore commands, S3 = moto's server process (tests/s3_helpers.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from helpers import REPO, assert_error
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
