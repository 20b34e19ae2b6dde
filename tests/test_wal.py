"""The write-ahead log and checkpoints (cdragon/wal.py, cdragon/storage.py): the record
format, replay at start-up (including a torn tail and records LMDB already holds),
checkpoints moving the data into LMDB, a clean stop leaving no log, retired segments
reused without their old records ever being read (also across SIGKILL), and recovery
from a failed log write while the server keeps serving.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import pytest

from cdragon import wal
from cdragon._core import SortedPuts
from cdragon.storage import Storage
from helpers import REPO, assert_error, unique_account

NO_CHECKPOINT = {"CDRAGON_CHECKPOINT_INTERVAL": 3600}   # everything stays in the log


def log_files(data_dir) -> list[Path]:
    return [Path(p) for p in wal.segments(str(data_dir))]


def log_bytes(data_dir) -> int:
    total = 0
    for p in log_files(data_dir):
        try:
            total += p.stat().st_size
        except FileNotFoundError:      # retired by a checkpoint since the listing
            pass
    return total


def log_records(data_dir) -> list[int]:
    return [lsn for p in log_files(data_dir) for lsn, _seq, _body in wal.read_records(str(p))]


# ---- the record format ------------------------------------------------------------------

OPS = [
    (b"kv", [(b"a\0k1", b"\x01" + b"\0" * 7 + b'"v"'), (b"a\0\xff\0", b"")], [b"a\0gone"]),
    (b"counter", [], [b"a\0zero"]),
    (b"meta", [(b"rev\0a", struct.pack("<q", 7))], []),
    (b"idemexp", [(b"x" * 300, b"")], []),
]


def test_body_round_trip():
    body = wal.wal_body(OPS)
    assert isinstance(body, bytes)
    assert wal.decode_body(body) == OPS
    assert wal.decode_body(wal.wal_body([])) == []


def test_body_rejects_an_unknown_database():
    with pytest.raises(KeyError):
        wal.wal_body([(b"nope", [], [])])


def test_records_read_back_and_stop_at_damage(tmp_path):
    w = wal.WalWriter(str(tmp_path), 1)
    for seq in (10, 11, 12):
        w.append(seq, wal.wal_body([(b"kv", [(b"k%d" % seq, b"v")], [])]))
    w.close()
    [path] = log_files(tmp_path)
    assert path.name == "wal-0000000000000001.log"
    recs = list(wal.read_records(str(path)))
    assert [(lsn, seq) for lsn, seq, _ in recs] == [(1, 10), (2, 11), (3, 12)]
    assert wal.decode_body(recs[1][2]) == [(b"kv", [(b"k11", b"v")], [])]
    data = path.read_bytes()
    # a torn last record (the crash came mid-write): the first two are intact
    path.write_bytes(data[:-3])
    assert [lsn for lsn, _, _ in wal.read_records(str(path))] == [1, 2]
    # one flipped byte in the second record's body: reading stops before it
    second = len(data) // 3 + wal.HEADER.size + 2     # the three records are the same size
    broken = bytearray(data)
    broken[second] ^= 0xFF
    path.write_bytes(bytes(broken))
    assert [lsn for lsn, _, _ in wal.read_records(str(path))] == [1]


def sorted_puts(d, collect=7, chunk=3):
    """Every pair of d the way a checkpoint takes them: collected `collect` at a time,
    sorted, handed out `chunk` at a time."""
    sp = SortedPuts(d)
    while sp.collect(collect):
        pass
    sp.sort()
    out = []
    while part := sp.take(chunk):
        assert len(part) <= chunk
        out += part
    assert len(sp) == len(d) and sp.take(5) == []
    return out


def test_checkpoint_puts_are_sorted_in_lmdb_order():
    import random
    rnd = random.Random(7)
    d = {bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 6))): str(i).encode() for i in range(3000)}
    d.update({b"ab": b"1", b"a": b"2", b"abc": b"3", b"": b"4", b"\xff": b"5"})
    assert sorted_puts(d) == sorted(d.items())
    assert sorted_puts(d, collect=10**6, chunk=10**6) == sorted(d.items())
    # keys around the 8 bytes compared first: shared 8-byte heads, zero bytes against a
    # shorter key's padding, and lengths on both sides of 8
    d = {bytes(rnd.choice(b"\0\1\xff") for _ in range(rnd.randrange(0, 20))): str(i).encode() for i in range(5000)}
    d.update({b"a" * 8: b"1", b"a" * 8 + b"\0": b"2", b"a" * 7: b"3", b"a" * 7 + b"\0": b"4", b"a" * 9: b"5"})
    assert sorted_puts(d, collect=1, chunk=1) == sorted(d.items())
    assert sorted_puts({}) == [] and sorted_puts({b"k": b"v"}) == [(b"k", b"v")]


def test_sorted_puts_keep_every_reference_straight():
    # the array holds a reference to each key and value until its chunk takes it over:
    # whether every pair was taken, some, or none, nothing leaks and nothing is freed early
    import sys
    keys = [b"key-%d-" % i + bytes(20) for i in range(50)]
    vals = [b"value-%d-" % i + bytes(40) for i in range(50)]
    d = dict(zip(keys, vals))
    before = [(sys.getrefcount(k), sys.getrefcount(v)) for k, v in zip(keys, vals)]
    for taken in (0, 10, 50):
        sp = SortedPuts(d)
        while sp.collect(8):
            pass
        sp.sort()
        got = sp.take(taken)
        assert got == sorted(d.items())[:taken]
        del got, sp
        assert [(sys.getrefcount(k), sys.getrefcount(v)) for k, v in zip(keys, vals)] == before
    sp = SortedPuts(d)             # collected only in part, never sorted
    sp.collect(20)
    with pytest.raises(ValueError):
        sp.take(1)
    del sp
    assert [(sys.getrefcount(k), sys.getrefcount(v)) for k, v in zip(keys, vals)] == before
    assert d == dict(zip(keys, vals))
    # a dict that changes under the walk is refused (the array has room for its old size)
    grown = dict(d)
    sp = SortedPuts(grown)
    sp.collect(10)
    grown[b"late"] = b"x"
    with pytest.raises(RuntimeError):
        sp.collect(100)
    sp.sort()
    sp.sort()                      # sorting twice changes nothing
    assert sp.take(100) == sorted(list(d.items())[:10]) and sp.take(1) == []


def test_rotate_starts_a_new_segment(tmp_path):
    w = wal.WalWriter(str(tmp_path), 5)
    assert w.rotate() == []                      # nothing written: nothing to hand out
    w.append(1, wal.wal_body([]))
    old = w.rotate()
    assert [Path(p).name for p in old] == ["wal-0000000000000005.log"]
    w.append(2, wal.wal_body([]))
    w.close()
    assert [p.name for p in log_files(tmp_path)] == ["wal-0000000000000005.log", "wal-0000000000000006.log"]


def test_a_segment_grows_ahead_in_zeros_and_is_cut_back_to_its_records(tmp_path):
    w = wal.WalWriter(str(tmp_path), 1)
    w.append(1, wal.wal_body([(b"kv", [(b"a", b"1")], [])]))
    [path] = log_files(tmp_path)
    data = path.read_bytes()
    assert len(data) == wal.PREALLOC and w.size < wal.PREALLOC      # records, then zeros
    assert data[w.size:] == bytes(wal.PREALLOC - w.size)
    # a record bigger than the room left grows the segment by whole zero-filled steps
    w.append(2, [b"x" * (wal.PREALLOC + 10)])
    assert path.stat().st_size == 2 * wal.PREALLOC
    w.append(3, wal.wal_body([(b"kv", [(b"b", b"2")], [])]))
    assert [(lsn, seq) for lsn, seq, _ in wal.read_records(str(path))] == [(1, 1), (2, 2), (3, 3)]
    size = w.size
    [closed] = w.rotate()                        # a closed segment holds just its records
    assert closed == str(path) and path.stat().st_size == size
    w.append(4, wal.wal_body([]))
    w.close()
    newest = log_files(tmp_path)[-1]
    assert newest.stat().st_size == w.size > 0
    assert [lsn for lsn, _, _ in wal.read_records(str(newest))] == [4]


def _kv_record(i: int) -> bytes:
    return wal.wal_body([(b"kv", [(b"k%d" % i, b"v" * 50)], [])])


def test_a_retired_segment_is_reused_and_its_old_records_never_read(tmp_path):
    d = str(tmp_path)
    keeper = wal.Keeper(d, False, "t")
    w = wal.WalWriter(d, 1)
    keeper.writer = w
    for i in (1, 2, 3):
        w.append(i, _kv_record(i))
    [old] = w.rotate()                          # wal-4 opens (no spare yet)
    old_size = Path(old).stat().st_size
    keeper.checkpointed(3)                      # LMDB holds 1..3: that segment is the spare now
    spare = tmp_path / wal.SPARE_NAME
    assert not Path(old).exists() and spare.stat().st_size == old_size
    ino = spare.stat().st_ino
    w.append(4, _kv_record(4))
    w.rotate()                                  # the next segment, wal-5, is the spare renamed
    assert not spare.exists()
    cur = tmp_path / "wal-0000000000000005.log"
    assert cur.stat().st_ino == ino and cur.stat().st_size == old_size
    w.append(5, _kv_record(5))
    assert cur.stat().st_size == old_size > w.size      # its old records 2 and 3 follow 5
    data = cur.read_bytes()
    assert [lsn for lsn, _ in wal.read_raw(data[w.size:])] == [2, 3]
    assert [lsn for lsn, _, _ in wal.read_records(str(cur))] == [5]
    assert [lsn for lsn, _ in wal.read_raw(data, 5)] == [5]
    assert [lsn for lsn, _ in wal.read_raw(data)] == [5]         # 2 does not follow 5
    keeper.checkpointed(4)
    keeper.shipping = True
    assert keeper.unshipped_bytes() == w.size                    # its records, not its length
    w.close()
    assert cur.stat().st_size == w.size                          # cut back to its records


def test_records_of_a_reused_segment_before_its_own_are_not_read(tmp_path):
    # a crash right after the spare became the new segment: its old records are all it
    # holds, and none of them is the segment's first
    w = wal.WalWriter(str(tmp_path), 1)
    for i in (1, 2):
        w.append(i, _kv_record(i))
    w.close()
    [seg] = log_files(tmp_path)
    data = seg.read_bytes()
    reused = seg.rename(seg.with_name("wal-0000000000000003.log"))
    assert list(wal.read_records(str(reused))) == []
    assert list(wal.read_raw(data, 3)) == []
    # an intact record numbered 9 right after record 1 ends the segment as well
    one = data[:len(data) // 2]
    n, _crc, _lsn, seq = wal.HEADER.unpack_from(one, 0)
    body = one[wal.HEADER.size:]
    reused.write_bytes(one + wal.HEADER.pack(n, wal.record_crc(9, seq, [body]), 9, seq) + body)
    reused.rename(seg)
    assert [lsn for lsn, _, _ in wal.read_records(str(seg))] == [1]
    assert [lsn for lsn, _ in wal.read_raw(seg.read_bytes())] == [1]


def test_the_bigger_spare_is_kept(tmp_path):
    keeper = wal.Keeper(str(tmp_path), False, "t")
    w = wal.WalWriter(str(tmp_path), 1)
    spare = tmp_path / wal.SPARE_NAME
    spare.write_bytes(bytes(10000))             # retired earlier, while wal-1 was being written
    w.append(1, _kv_record(1))
    [small] = w.rotate()                        # wal-2 is the spare renamed
    assert not spare.exists()
    spare.write_bytes(bytes(10000))
    keeper.checkpointed(1)                      # wal-1: one record, smaller than the spare
    assert not Path(small).exists() and spare.stat().st_size == 10000
    w.close()


def test_a_segment_too_big_to_keep_is_deleted(tmp_path, monkeypatch):
    monkeypatch.setattr(wal, "SPARE_MAX", 50)
    keeper = wal.Keeper(str(tmp_path), False, "t")
    w = wal.WalWriter(str(tmp_path), 1)
    w.append(1, _kv_record(1))                 # more than 50 bytes
    [old] = w.rotate()
    keeper.checkpointed(1)
    assert not Path(old).exists() and not (tmp_path / wal.SPARE_NAME).exists()
    w.close()


_FILL_DISK = """
import json, os, sys
from cdragon import wal
d, spare = sys.argv[1], int(sys.argv[2])
w = wal.WalWriter(d, 1)
if spare:        # retired while the first segment was being written
    with open(os.path.join(d, wal.SPARE_NAME), "wb") as f:
        f.write(b"s" * spare)
n, err = 0, None
while n < 5000:
    try:
        w.append(n + 1, [b"x" * 4000])
    except OSError as e:
        err = e.errno
        break
    n += 1
[path] = wal.segments(d)
print(json.dumps({"n": n, "err": err, "read": [lsn for lsn, _, _ in wal.read_records(path)],
                  "spare": os.path.exists(os.path.join(d, wal.SPARE_NAME))}))
"""


def _fill_a_small_disk(tmp_path, spare: int) -> dict:
    # a 1.5 MiB tmpfs (in a private mount namespace, gone with the process) filled with
    # 4,000-byte records until one does not fit
    disk = tmp_path / "disk"
    disk.mkdir()
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f"mount -t tmpfs -o size=1536k tmpfs '{disk}' && exec \"$@\"", "sh",
                        sys.executable, "-c", _FILL_DISK, str(disk), str(spare)],
                       capture_output=True, text=True, timeout=60, cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert p.returncode == 0, p.stderr
    assert not os.path.ismount(disk)
    return json.loads(p.stdout)


needs_unshare = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                   reason="needs root and unshare for a private tmpfs mount")


@needs_unshare
def test_a_nearly_full_disk_still_takes_records_that_fit(tmp_path):
    # the segment's second step of zeros only half fits; records still go in until one
    # does not fit, and none is lost or overwritten by zeros
    out = _fill_a_small_disk(tmp_path, 0)
    assert out["err"] == errno.ENOSPC
    assert out["n"] * 4024 > wal.PREALLOC + 256 * 1024      # well past the first step's zeros
    assert out["read"] == list(range(1, out["n"] + 1))      # every record written reads back


@needs_unshare
def test_a_full_disk_gets_the_spare_segments_room_back(tmp_path):
    # a 700 KiB spare: the record that first finds the disk full is written once the
    # spare is deleted, and records go on into its room
    out = _fill_a_small_disk(tmp_path, 700 * 1024)
    assert out["err"] == errno.ENOSPC and out["spare"] is False
    assert out["n"] * 4024 > 1536 * 1024 - 700 * 1024 + 256 * 1024     # past what fit beside it
    assert out["read"] == list(range(1, out["n"] + 1))


def test_zeros_never_read_as_a_record():
    assert list(wal.read_raw(bytes(wal.PREALLOC))) == []
    n, crc, lsn, seq = wal.HEADER.unpack(bytes(wal.HEADER.size))
    assert wal.record_crc(lsn, seq, [b""]) != crc


def _lmdb_value(data_dir, db: bytes, key: bytes):
    env = lmdb.open(str(data_dir), max_dbs=16, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return txn.get(key, db=env.open_db(db, txn=txn, create=False))
    finally:
        env.close()


def test_replay_applies_the_log_once(tmp_path):
    d = tmp_path / "data"
    Storage(str(d), 1 << 20, 1 << 30).close()
    w = wal.WalWriter(str(d), 1)
    w.append(1, wal.wal_body([(b"counter", [(b"a\0c", struct.pack("<q", 1))], [])]))
    w.append(2, wal.wal_body([(b"counter", [(b"a\0c", struct.pack("<q", 2)), (b"a\0d", struct.pack("<q", 9))], [])]))
    w.append(3, wal.wal_body([(b"counter", [], [b"a\0d"])]))
    w.close()
    st = Storage(str(d), 1 << 20, 1 << 30)
    assert st.applied_lsn == 3
    # replayed into LMDB and retired; the log goes on in a new segment with no records
    # (the retired one reused: its old records are not read as this segment's)
    assert [p.name for p in log_files(d)] == ["wal-0000000000000004.log"]
    assert log_records(d) == []
    st.close()
    assert _lmdb_value(d, b"counter", b"a\0c") == struct.pack("<q", 2)
    assert _lmdb_value(d, b"counter", b"a\0d") is None
    # a segment whose records LMDB already holds (a crash between a checkpoint's commit
    # and the deletion of its segments) is skipped, not applied again
    w = wal.WalWriter(str(d), 2)
    w.append(2, wal.wal_body([(b"counter", [(b"a\0c", struct.pack("<q", 77))], [])]))
    w.close()
    st = Storage(str(d), 1 << 20, 1 << 30)
    assert st.applied_lsn == 3
    st.close()
    assert _lmdb_value(d, b"counter", b"a\0c") == struct.pack("<q", 2)


# ---- the server ------------------------------------------------------------------------------

def _write_everything(c, acc):
    c.db_ok(acc, {"KVSet": [{"Key": "k", "Value": {"n": 1}}, {"Key": "d", "Value": 0}]})
    c.db_ok(acc, {"KVSet": [{"Key": "d", "Delete": True}], "Atomic": [{"Key": "c", "Add": 5}],
                  "Seq": [{"Key": "s", "Count": 3}], "IdempotencyIDs": ["once"]})
    assert c.db_ok(acc, {"LockID": "L", "LockDur": 600})["Lock"] > 0


def _check_everything(c, acc):
    assert c.kv(acc, "k") == {"Key": "k", "Value": {"n": 1}, "Version": 1}
    assert c.kv(acc, "d") == {"Key": "d", "Version": 0}
    assert c.counter(acc, "c") == 5
    assert c.db_ok(acc, {"Seq": [{"Key": "s"}]})["Seq"][0]["Value"] == 4
    assert_error(c.db(acc, {"IdempotencyIDs": ["once"]}), 409, "duplicate_request")
    assert_error(c.db(acc, {"LockID": "L"}), 409, "locked")


def _server_holding_everything(server_factory, name: str):
    """A server that never checkpoints, after _write_everything: (server, account)."""
    srv = server_factory(env=NO_CHECKPOINT)
    acc = unique_account(name)
    c = srv.client()
    _write_everything(c, acc)
    c.close()
    return srv, acc


def test_sigkill_with_everything_in_the_log_loses_nothing(server_factory):
    srv, acc = _server_holding_everything(server_factory, "wal")
    assert log_bytes(srv.data_dir) > 0
    srv.restart(hard=True)
    c = srv.client()
    _check_everything(c, acc)
    c.close()
    # start-up put the log into LMDB: with the log gone, it is all still there
    srv.kill()
    for p in log_files(srv.data_dir):
        p.unlink()
    srv.start()
    c = srv.client()
    assert c.kv(acc, "k") == {"Key": "k", "Value": {"n": 1}, "Version": 1}
    assert c.counter(acc, "c") == 5
    assert_error(c.db(acc, {"LockID": "L"}), 409, "locked")
    c.close()


def test_a_checkpoint_puts_the_log_into_lmdb(server_factory):
    srv = server_factory(env={"CDRAGON_CHECKPOINT_INTERVAL": 0.05})
    acc = unique_account("ckpt")
    c = srv.client()
    for i in range(20):
        c.db_ok(acc, {"KVSet": [{"Key": f"k{i}", "Value": i}], "Atomic": [{"Key": "n", "Add": 1}]})
    c.close()
    # once the checkpoint has run, the old segments are gone and the new one holds nothing
    wait_until(lambda: log_records(srv.data_dir) == [], "a checkpoint to empty the log")
    srv.kill()
    for p in log_files(srv.data_dir):
        p.unlink()
    srv.start()
    c = srv.client()
    assert c.counter(acc, "n") == 20
    assert [c.kv(acc, f"k{i}")["Value"] for i in range(20)] == list(range(20))
    c.close()


def wait_until(cond, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _stale_tail(path: Path) -> bool:
    """Whether the segment holds more than its records and zeros: a reused one."""
    data = path.read_bytes()
    end = sum(len(raw) for _lsn, raw in wal.read_raw(data, wal.first_lsn(str(path))))
    return any(data[end:])


def test_sigkill_while_writing_into_a_reused_segment_loses_nothing(server_factory):
    srv = server_factory(env={"CDRAGON_CHECKPOINT_INTERVAL": 0.05})
    acc = unique_account("reuse")
    c = srv.client()
    n = 0
    for _ in range(200):             # until the segment being written is a reused one
        for _ in range(10):
            c.db_ok(acc, {"KVSet": [{"Key": f"k{n}", "Value": "v" * (n % 300)}]})
            n += 1
        if _stale_tail(log_files(srv.data_dir)[-1]):
            break
    assert _stale_tail(log_files(srv.data_dir)[-1])
    for _ in range(5):               # acknowledged, in the reused segment, before the kill
        c.db_ok(acc, {"KVSet": [{"Key": f"k{n}", "Value": "v" * (n % 300)}]})
        n += 1
    c.close()
    srv.kill()
    srv.start()
    c = srv.client()
    assert [c.kv(acc, f"k{i}")["Value"] for i in range(n)] == ["v" * (i % 300) for i in range(n)]
    c.db_ok(acc, {"KVSet": [{"Key": "after", "Value": 1}]})
    c.close()
    srv.restart(hard=True)
    c = srv.client()
    assert c.kv(acc, "after")["Value"] == 1
    assert c.kv(acc, f"k{n - 1}")["Value"] == "v" * ((n - 1) % 300)
    c.close()


def test_a_torn_log_tail_is_ignored(server_factory):
    srv = server_factory(env=NO_CHECKPOINT)
    acc = unique_account("torn")
    c = srv.client()
    c.db_ok(acc, {"KVSet": [{"Key": "a", "Value": "acked"}]})
    c.close()
    srv.kill()
    newest = log_files(srv.data_dir)[-1]
    data = newest.read_bytes()
    end = sum(len(raw) for _lsn, raw in wal.read_raw(data))
    assert end > 0 and set(data[end:]) == {0}     # the segment's zero-filled room follows its records
    with open(newest, "r+b") as f:    # a record the crash cut short: header, half a body, then zeros
        f.seek(end)
        f.write(wal.HEADER.pack(100, 0, 99, 99) + b"x" * 40)
    srv.start()
    c = srv.client()
    assert c.kv(acc, "a") == {"Key": "a", "Value": "acked", "Version": 1}
    c.db_ok(acc, {"KVSet": [{"Key": "b", "Value": "after"}]})
    c.close()
    srv.restart(hard=True)
    c = srv.client()
    assert c.kv(acc, "a")["Value"] == "acked"
    assert c.kv(acc, "b") == {"Key": "b", "Value": "after", "Version": 2}
    c.close()


def test_a_clean_stop_leaves_no_log(server_factory):
    srv, acc = _server_holding_everything(server_factory, "stop")
    assert srv.terminate() == 0
    assert log_files(srv.data_dir) == []
    srv.start()
    c = srv.client()
    _check_everything(c, acc)
    c.close()


def test_a_failed_log_write_fails_that_request_only(server_factory):
    # the 6th log write fails: requests 1-5 are durable but only in the log (no
    # checkpoint), so recovery has to put them into LMDB before dropping the overlay
    srv = server_factory(env=dict(NO_CHECKPOINT, CDRAGON_TEST_FAIL_LOG_WRITES="6"))
    acc = unique_account("fail")
    c = srv.client()
    assert "Lock" in c.db_ok(acc, {"LockID": "L", "LockDur": 600})          # write 1
    c.db_ok(acc, {"KVSet": [{"Key": "k", "Value": "before"}]})              # write 2
    statuses = []
    for i in range(8):                                                      # writes 3-10
        r = c.db(acc, {"Atomic": [{"Key": "n", "Add": 1}], "KVSet": [{"Key": "k", "Value": f"v{i}"}]})
        statuses.append(r.status)
        if r.status != 200:
            assert_error(r, 500, "internal")
    assert statuses == [200, 200, 200, 500, 200, 200, 200, 200]

    def check(c):
        assert c.counter(acc, "n") == 7
        # the failed request's revision was never used: versions 2, 3, 4, then 5..8
        assert c.kv(acc, "k") == {"Key": "k", "Value": "v7", "Version": 8}
        assert_error(c.db(acc, {"LockID": "L"}), 409, "locked")

    check(c)
    c.close()
    srv.assert_alive()
    srv.restart(hard=True)
    c = srv.client()
    check(c)
    c.close()


def test_big_values_reach_the_log_by_reference():
    # a kv value of 2 KB and more is handed over as its own part (no copy on the way to
    # the log), and a (head, value) pair stands for head + value; the body is the same
    big = b'"' + b"x" * 5000 + b'"'
    ops = [(b"kv", [(b"a\0small", b"\x01" + b"\0" * 7 + b'"v"'), (b"a\0big", (b"\x02" + b"\0" * 7, big)),
                    (b"a\0raw", big)], [b"a\0gone"]),
           (b"meta", [(b"rev\0a", struct.pack("<q", 7))], [])]
    parts = wal.wal_parts(ops)
    assert any(p is big for p in parts)
    joined = [(name, [(k, v if isinstance(v, bytes) else v[0] + v[1]) for k, v in puts], dels)
              for name, puts, dels in ops]
    assert wal.decode_body(b"".join(parts)) == joined
    assert wal.wal_body(ops) == b"".join(parts)
    # and a checkpoint stores the joined value
    assert sorted_puts({b"a\0k": b"x", b"a\0big": (b"h", b"v"), b"b": (b"", b"w")}, chunk=2) == [
        (b"a\0big", b"hv"), (b"a\0k", b"x"), (b"b", b"w")]


def test_big_values_survive_sigkill_from_the_log_and_from_a_checkpoint(server_factory):
    # big values travel by reference to the log and are joined with their version only
    # by the checkpoint: both ways must give back the very value, version and expiry
    def big(i: int, n: int) -> str:
        return (f"{i}:" + "ab" * n)[: 2 * n]

    sizes = [1020, 1024, 2050, 5000, 60000]      # around WAL_BY_REF (2 KB of JSON)
    for env in (NO_CHECKPOINT, {"CDRAGON_CHECKPOINT_INTERVAL": 0.05}):
        srv = server_factory(env=env)
        acc = unique_account("bigv")
        c = srv.client()
        for i, n in enumerate(sizes):
            c.db_ok(acc, {"KVSet": [{"Key": f"k{i}", "Value": big(0, n)}]})
            c.db_ok(acc, {"KVSet": [{"Key": f"k{i}", "Value": big(1, n)},
                                    {"Key": f"t{i}", "Value": {"v": big(2, n)}, "TTL": 3600}]})
        c.close()
        if env is not NO_CHECKPOINT:
            wait_until(lambda: log_bytes(srv.data_dir) == 0, "a checkpoint to empty the log")
        srv.restart(hard=True)
        c = srv.client()
        for i, n in enumerate(sizes):
            assert c.kv(acc, f"k{i}") == {"Key": f"k{i}", "Value": big(1, n), "Version": 2 * i + 2}
            t = c.db_ok(acc, {"KVGet": [f"t{i}"]})["KV"][0]
            assert t["Value"] == {"v": big(2, n)} and t["Version"] == 2 * i + 2
            assert 3500 < t["Expires"] - time.time() <= 3600
        c.close()


def test_a_record_of_more_parts_than_one_writev_takes_reads_back_whole(tmp_path):
    # 700 big values make 1,400 parts: the writer writes them in groups of IOV_MAX, and
    # the record (its CRC chained over every part) reads back as the one body it is
    values = [(b"a\0k%d" % i, (b"%08d" % i, b'"' + bytes([97 + i % 26]) * 3000 + b'"')) for i in range(700)]
    ops = [(b"kv", values, [b"a\0gone"]), (b"meta", [(b"rev\0a", struct.pack("<q", 3))], [])]
    parts = wal.wal_parts(ops)
    assert len(parts) > 1024
    w = wal.WalWriter(str(tmp_path), 1)
    w.append(5, parts)
    w.append(6, wal.wal_body([(b"kv", [(b"a\0after", b"x")], [])]))
    w.close()
    [path] = log_files(tmp_path)
    recs = list(wal.read_records(str(path)))
    assert [(lsn, seq) for lsn, seq, _ in recs] == [(1, 5), (2, 6)]
    assert bytes(recs[0][2]) == b"".join(parts)
    assert wal.decode_body(recs[0][2])[0][1][699] == (b"a\0k699", b"00000699" + b'"' + b"x" * 3000 + b'"')


def test_a_checkpoint_starts_once_256_mib_wait_before_the_interval(server_factory):
    # big values fill memory fast: besides every checkpoint_interval (an hour here) and
    # 100,000 records, a checkpoint starts once the waiting records hold 256 MiB
    # (CHECKPOINT_DATA). The storage cap is set high so that its own trigger (the map
    # filling up) stays out of it; the same 40 keys are rewritten (20 MiB of them) so
    # that the trigger on new keys (32 MiB, the test below) stays out of it too.
    srv = server_factory(env={**NO_CHECKPOINT, "CDRAGON_MAX_STORAGE_BYTES": 32 << 30})
    acc = unique_account("ckbytes")
    c = srv.client()
    value = "v" * (500 * 1024)
    mib = 1 << 20

    def write(n: int, start: int):
        for i in range(start, start + n):
            c.db_ok(acc, {"KVSet": [{"Key": f"k{i % 40}", "Value": value}]})

    write(400, 0)                         # ~195 MiB: below the bound
    time.sleep(0.5)
    assert log_bytes(srv.data_dir) >= 195 * mib and log_records(srv.data_dir)[0] == 1
    write(200, 400)                       # ~293 MiB: past it
    wait_until(lambda: log_bytes(srv.data_dir) < 100 * mib, "a checkpoint to retire the log")
    c.close()
    srv.restart(hard=True)                # what the checkpoint wrote reads back
    c = srv.client()
    for i in (0, 39):     # a version is the account's revision: the key's last write, 560 + i
        assert c.kv(acc, f"k{i}") == {"Key": f"k{i}", "Value": value, "Version": 561 + i}
    c.close()


def test_a_checkpoint_starts_once_32_mib_of_new_keys_wait(server_factory):
    # 80 new keys of 500 KB (39 MiB of keys no checkpoint has written yet): far below
    # the 256 MiB and the 100,000 records, a checkpoint starts anyway, so that one
    # checkpoint does not write more pages at once than the log's fdatasyncs can wait
    # behind (CHECKPOINT_NEW_DATA)
    srv = server_factory(env={**NO_CHECKPOINT, "CDRAGON_MAX_STORAGE_BYTES": 32 << 30})
    acc = unique_account("cknew")
    c = srv.client()
    value = "n" * (500 * 1024)
    for i in range(80):
        c.db_ok(acc, {"KVSet": [{"Key": f"n{i}", "Value": value}]})
    def first_record_retired() -> bool:
        try:
            return (log_records(srv.data_dir) or [0])[0] != 1
        except FileNotFoundError:      # a segment retired between the listing and the read
            return False               # (the next look sees where the log stands)

    wait_until(first_record_retired, "a checkpoint to retire the first log records")
    c.close()
    srv.restart(hard=True)
    c = srv.client()
    for i in (0, 79):
        assert c.kv(acc, f"n{i}") == {"Key": f"n{i}", "Value": value, "Version": i + 1}
    c.close()
