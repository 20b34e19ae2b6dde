"""Export, import and /admin/accounts (API.md "Operations", "Backups, export and import"):
real servers, real sockets. A dump made by one server is loaded into another and every
kind of record reads back the same (versions, counters, sequences, held locks with
their handles, expiries, idempotency ids, revisions); bad or cut-off dumps change
nothing; the import is durable; the CLI commands work against a live server.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from helpers import REPO, assert_error, unique_account


def export(srv, acc: str | None = None) -> list[dict]:
    c = srv.client()
    r = c.get("/admin/export" + (f"?acc={acc}" if acc else ""))
    c.close()
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/x-ndjson"
    assert (r.header("Transfer-Encoding") or "").lower() == "chunked"
    assert r.body.endswith(b"\n")
    return [json.loads(line) for line in r.body.splitlines()]


def dump_bytes(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(d).encode() + b"\n" for d in lines)


def load(srv, body: bytes, mode: str | None = None):
    c = srv.client()
    r = c.post("/admin/import" + (f"?mode={mode}" if mode else ""), body=body)
    c.close()
    return r


def records(lines: list[dict], acc: str | None = None) -> list[dict]:
    """The record lines of a dump (no header, no End), of one account if given."""
    assert lines[0]["Format"] == "cdragon-export" and lines[0]["FormatVersion"] == 1
    assert lines[-1] == {"End": True, "Records": len(lines) - 2}
    return [d for d in lines[1:-1] if acc is None or d["Acc"] == acc]


def fill(c, acc: str) -> dict:
    """One of every kind of record in `acc`; returns what was handed out."""
    c.db_ok(acc, {"KVSet": [{"Key": "a", "Value": {"x": [1, "é"]}}, {"Key": "n", "Value": None},
                            {"Key": "gone", "Value": 1}]})                                 # rev 1
    c.db_ok(acc, {"KVSet": [{"Key": "gone", "Delete": True},
                            {"Key": "ttl", "Value": "soon", "TTL": 3600}]})                  # rev 2
    c.db_ok(acc, {"Atomic": [{"Key": "c", "Add": 41}, {"Key": "neg", "Set": -7}],
                  "Seq": [{"Key": "s", "Count": 10}], "IdempotencyIDs": ["done-1"]})
    held = c.db_ok(acc, {"LockID": "job", "LockDur": 600})
    owned = c.post(f"/db/{acc}/lock/nightly?owner=host-1&dur=600")
    assert owned.status == 200, owned
    return {"job": held["Lock"], "nightly": owned.json["Lock"]}


def test_round_trip_between_two_servers(server_factory):
    src, dst = server_factory(), server_factory()
    acc = unique_account("rt")
    c, d = src.client(), dst.client()
    handles = fill(c, acc)
    lines = export(src)
    recs = records(lines, acc)
    assert {"Acc": acc, "Rev": 2} in recs
    assert {"Acc": acc, "KV": "a", "Value": {"x": [1, "é"]}, "Version": 1} in recs
    assert {"Acc": acc, "Counter": "c", "Value": 41} in recs
    assert {"Acc": acc, "Seq": "s", "Value": 10} in recs
    assert not [r for r in recs if r.get("KV") == "gone"]
    lock = [r for r in recs if r.get("Lock") == "nightly"][0]
    assert lock["Handle"] == handles["nightly"] and lock["Owner"] == "host-1"
    # the destination already used handles and the account, so both must move up
    d.db_ok(acc, {"KVSet": [{"Key": "other", "Value": 1}]})
    d.db_ok(acc, {"KVSet": [{"Key": "other", "Value": 2}]})
    d.db_ok(acc, {"KVSet": [{"Key": "other", "Value": 3}], "Seq": [{"Key": "s", "Count": 20}]})  # rev 3
    r = load(dst, dump_bytes(lines))
    assert r.status == 200, r
    assert r.json == {"Accounts": 1, "Records": len(recs), "Rev": {acc: 4}}
    keys = ["a", "n", "gone", "ttl", "other"]
    want = c.db_ok(acc, {"KVGet": keys})["KV"]
    got = d.db_ok(acc, {"KVGet": keys})["KV"]
    assert got[:4] == want[:4]                        # values, versions, Expires
    assert got[3]["Expires"] == want[3]["Expires"]
    assert got[4] == {"Key": "other", "Value": 3, "Version": 3}   # merge keeps the rest
    assert d.counter(acc, "c") == 41 and d.counter(acc, "neg") == -7
    assert d.seq_last(acc, "s") == 20           # merge never moves a sequence back
    assert d.db_ok(acc, {"Seq": [{"Key": "s"}]})["Seq"][0]["Value"] == 21
    assert_error(d.db(acc, {"IdempotencyIDs": ["done-1"]}), 409, "duplicate_request")
    # the account's revision went above both the imported one and its own
    assert d.db_ok(acc, {"KVList": [{"Prefix": "zzz"}]})["Rev"] == 4
    # compare-and-swap with an imported version works
    assert d.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 2, "Version": 1}]})["KVSet"] == [
        {"Key": "a", "Version": 5}]
    # held locks: same holder, same Till, the handles still hold them
    assert d.get(f"/db/{acc}/lock/nightly").json == c.get(f"/db/{acc}/lock/nightly").json
    assert d.get(f"/db/{acc}/lock/job").json["Locked"] is True
    assert_error(d.db(acc, {"LockID": "job"}), 409, "locked")
    ext = d.db_ok(acc, {"LockID": "job", "UnlockID": "job", "Unlock": handles["job"], "LockDur": 60})
    assert ext["Lock"] == handles["job"]
    # new handles on the destination are above every imported one
    fresh = d.post(f"/db/{acc}/lock/fresh").json["Lock"]
    assert fresh > max(handles.values())
    assert d.delete(f"/db/{acc}/lock/nightly?owner=host-1").status == 200
    c.close()
    d.close()


def test_export_of_one_account_and_accounts_listing(server):
    a, b = unique_account("one-a"), unique_account("one-b")
    c = server.client()
    c.db_ok(a, {"KVSet": [{"Key": "k1", "Value": "xyz"}, {"Key": "k22", "Value": [1, 2]}],
                "Atomic": [{"Key": "c", "Add": 1}, {"Key": "c0", "Add": 0}],
                "Seq": [{"Key": "s1"}, {"Key": "s2"}]})
    c.db_ok(a, {"LockID": "l", "LockDur": 60})
    c.db_ok(a, {"KVSet": [{"Key": "tmp", "Value": 1}]})
    c.db_ok(a, {"KVSet": [{"Key": "tmp", "Delete": True}]})
    c.db_ok(b, {"Atomic": [{"Key": "c", "Add": 5}]})
    empty = unique_account("one-empty")
    c.db_ok(empty, {"KVSet": [{"Key": "x", "Value": 1}]})
    c.db_ok(empty, {"KVSet": [{"Key": "x", "Delete": True}]})
    lines = export(server, a)
    recs = records(lines)
    assert recs and all(r["Acc"] == a for r in recs)
    assert {r.get("KV") for r in recs} == {None, "k1", "k22"}
    assert {"Acc": a, "Rev": 3} in recs
    rows = {row["Account"]: row for row in c.get("/admin/accounts").json["Accounts"]}
    assert rows[a] == {"Account": a, "Keys": 2, "Counters": 1, "Sequences": 2, "Locks": 1,
                       "Queues": 0, "Messages": 0, "Bytes": len("k1") + len('"xyz"') + len("k22") + len("[1,2]")}
    assert rows[b] == {"Account": b, "Keys": 0, "Counters": 1, "Sequences": 0, "Locks": 0,
                       "Queues": 0, "Messages": 0, "Bytes": 0}
    assert empty not in rows                          # nothing left: not listed
    names = [row["Account"] for row in c.get("/admin/accounts").json["Accounts"]]
    assert names == sorted(names)
    c.close()


def test_a_big_export_streams_to_its_end(server_factory):
    srv = server_factory()
    acc = unique_account("big")
    c = srv.client()
    for i in range(50):
        c.db_ok(acc, {"KVSet": [{"Key": f"k{i:02d}-{j:04d}", "Value": {"i": i, "j": j}} for j in range(1000)]})
    lines = export(srv)
    recs = records(lines, acc)
    kv = [r for r in recs if "KV" in r]
    assert len(kv) == 50_000
    assert kv[0] == {"Acc": acc, "KV": "k00-0000", "Value": {"i": 0, "j": 0}, "Version": 1}
    assert kv[-1] == {"Acc": acc, "KV": "k49-0999", "Value": {"i": 49, "j": 999}, "Version": 50}
    # the same dump loads into another server
    dst = server_factory()
    r = load(dst, dump_bytes(lines))
    assert r.status == 200 and r.json["Records"] == len(lines) - 2, r
    d = dst.client()
    assert d.kv(acc, "k17-0500") == {"Key": "k17-0500", "Value": {"i": 17, "j": 500}, "Version": 18}
    c.close()
    d.close()


def _dest_with_data(server_factory):
    dst = server_factory()
    acc = unique_account("dst")
    dst.client().db_ok(acc, {"KVSet": [{"Key": "mine", "Value": 1}], "Atomic": [{"Key": "c", "Add": 3}]})
    return dst, acc


def _a_dump(acc: str) -> list[dict]:
    return [{"Format": "cdragon-export", "FormatVersion": 1, "Server": "0.0.0", "Time": 1.5},
            {"Acc": acc, "Rev": 9},
            {"Acc": acc, "KV": "mine", "Value": "imported", "Version": 9},
            {"Acc": acc, "Counter": "c", "Value": 100},
            {"Acc": acc, "KV": "new", "Value": [1], "Version": 2},
            {"End": True, "Records": 4}]


@pytest.mark.parametrize("edit, message", [
    (lambda lines: lines[:-1], "no End line"),                                # cut off
    (lambda lines: lines[:3], "no End line"),
    (lambda lines: lines[1:], "line 1"),                                       # no header
    (lambda lines: lines[:-1] + [{"End": True, "Records": 3}], "line 6"),
    (lambda lines: lines + [{"Acc": "x", "Rev": 1}], "line 7"),               # after End
])
def test_a_cut_off_or_miscounted_dump_changes_nothing(server_factory, edit, message):
    dst, acc = _dest_with_data(server_factory)
    before = export(dst)
    r = load(dst, dump_bytes(edit(_a_dump(acc))))
    body = assert_error(r, 400, "bad_request")
    assert message in body["Message"], body
    assert records(export(dst)) == records(before)


@pytest.mark.parametrize("bad", [
    b"{not json",
    b'{"Acc": "a/b", "KV": "k", "Value": 1, "Version": 1}',                   # bad account
    b'{"Acc": "\\ud800", "KV": "k", "Value": 1, "Version": 1}',
    b'{"KV": "k", "Value": 1, "Version": 1}',
    b'{"Acc": "a", "KV": "", "Value": 1, "Version": 1}',                      # bad key
    b'{"Acc": "a", "KV": "k", "Value": 1, "Version": 0}',                     # version range
    b'{"Acc": "a", "KV": "k", "Version": 1}',                                 # no Value
    b'{"Acc": "a", "KV": "k", "Value": 1, "Version": 1, "TTL": 5}',           # unknown field
    b'{"Acc": "a", "Counter": "c", "Value": 1.5}',
    b'{"Acc": "a", "Counter": "c", "Seq": "s", "Value": 1}',                  # two kinds
    b'{"Acc": "a", "Queue": "q"}',                                            # unknown kind
    b'{"Acc": "a", "Lock": "l", "Handle": 0, "Till": 1e10, "Owner": null}',
    b'{"Acc": "a", "Idem": "i", "Expires": "soon"}',
    b'["Acc", "a"]',
    b"",
])
def test_a_bad_line_is_named_and_nothing_changes(server_factory, bad):
    dst, acc = _dest_with_data(server_factory)
    before = export(dst)
    lines = dump_bytes(_a_dump(acc)).splitlines(keepends=True)
    lines.insert(3, bad + b"\n")
    lines[-1] = b'{"End": true, "Records": 5}\n'
    body = assert_error(load(dst, b"".join(lines)), 400, "bad_request")
    assert body["Message"].startswith("line 4: "), body
    assert records(export(dst)) == records(before)


def test_values_obey_the_write_limits(server_factory):
    dst = server_factory(env={"CDRAGON_MAX_VALUE_BYTES": 100, "CDRAGON_MAX_IMPORT_BYTES": 2000})
    acc = unique_account("lim")
    dump = _a_dump(acc)
    dump[4]["Value"] = "x" * 200
    body = assert_error(load(dst, dump_bytes(dump)), 400, "bad_request")
    assert body["Message"].startswith("line 5: Value is"), body
    dump[4]["Value"] = "x" * 2000                    # the body over max_import_bytes
    assert_error(load(dst, dump_bytes(dump)), 413, "too_large")
    assert records(export(dst)) == []
    # a dump that may not fit under max_storage_bytes is 507 and changes nothing
    small = server_factory(env={"CDRAGON_MAX_STORAGE_BYTES": 4 << 20, "CDRAGON_INITIAL_MAP_BYTES": 1 << 20})
    big = [_a_dump(acc)[0]] + [{"Acc": acc, "KV": f"k{i}", "Value": "x" * 1000, "Version": 1}
                               for i in range(5000)]
    assert_error(load(small, dump_bytes(big + [{"End": True, "Records": 5000}])), 507, "storage_full")
    assert records(export(small)) == []


def test_bad_params_are_400_and_change_nothing(server):
    acc = unique_account("params")
    body = dump_bytes(_a_dump(acc))
    c = server.client()
    for path in ("/admin/import?mode=x", "/admin/import?mode=merge&zap=1", "/admin/import?mode=merge&mode=replace"):
        assert_error(c.post(path, body=body), 400, "bad_request")
    assert c.kv(acc, "new") == {"Key": "new", "Version": 0}
    empty = dump_bytes([_a_dump(acc)[0], {"End": True, "Records": 0}])
    assert c.post("/admin/import", body=empty).json == {"Accounts": 0, "Records": 0, "Rev": {}}
    assert_error(c.get("/admin/export?acc=no%2Fslash"), 400, "bad_account")
    assert_error(c.get("/admin/export?acc=" + "x" * 65), 400, "bad_account")
    assert_error(c.get("/admin/export?account=a"), 400, "bad_request")
    assert_error(c.get("/admin/accounts?all=1"), 400, "bad_request")
    c.close()


def test_an_account_frozen_for_a_move_takes_no_import(server_factory):
    dst, acc = _dest_with_data(server_factory)
    c = dst.client()
    assert c.post(f"/admin/freeze?acc={acc}").status == 200
    before = export(dst)
    r = load(dst, dump_bytes(_a_dump(acc)))
    assert_error(r, 503, "moving")
    assert records(export(dst)) == records(before)
    assert c.delete(f"/admin/freeze?acc={acc}").status == 200
    assert load(dst, dump_bytes(_a_dump(acc))).status == 200
    assert c.kv(acc, "new")["Version"] == 2
    c.close()


def test_replace_clears_the_accounts_of_the_dump_only(server_factory):
    dst, acc = _dest_with_data(server_factory)
    other = unique_account("other")
    d = dst.client()
    d.db_ok(acc, {"KVSet": [{"Key": "extra", "Value": 1}], "Atomic": [{"Key": "c2", "Add": 1}],
                  "Seq": [{"Key": "s"}], "IdempotencyIDs": ["i1"]})
    d.db_ok(acc, {"LockID": "held", "LockDur": 600})
    d.db_ok(other, {"KVSet": [{"Key": "extra", "Value": 1}]})
    r = load(dst, dump_bytes(_a_dump(acc)), "replace")
    assert r.status == 200 and r.json == {"Accounts": 1, "Records": 4, "Rev": {acc: 9}}, r
    got = d.db_ok(acc, {"KVGet": ["mine", "new", "extra"]})["KV"]
    assert got == [{"Key": "mine", "Value": "imported", "Version": 9},
                   {"Key": "new", "Value": [1], "Version": 2}, {"Key": "extra", "Version": 0}]
    assert d.counter(acc, "c") == 100 and d.counter(acc, "c2") == 0
    assert d.seq_last(acc, "s") == 0
    assert d.db_ok(acc, {"IdempotencyIDs": ["i1"]}) == {}
    assert d.get(f"/db/{acc}/lock/held").json == {"Locked": False}
    assert d.kv(other, "extra")["Version"] == 1
    assert {r.get("KV") for r in records(export(dst, acc))} == {None, "mine", "new"}
    d.close()


def test_import_is_durable_across_sigkill(server_factory):
    src = server_factory()
    acc = unique_account("kill")
    handles = fill(src.client(), acc)
    lines = export(src)
    dst = server_factory()
    assert load(dst, dump_bytes(lines)).status == 200
    dst.restart(hard=True)                  # SIGKILL right after the answer
    d = dst.client()
    assert d.kv(acc, "a") == {"Key": "a", "Value": {"x": [1, "é"]}, "Version": 1}
    assert d.counter(acc, "c") == 41 and d.seq_last(acc, "s") == 10
    assert d.get(f"/db/{acc}/lock/nightly").json["Owner"] == "host-1"
    assert records(export(dst), acc) == records(lines, acc)
    assert d.post(f"/db/{acc}/lock/fresh").json["Lock"] > max(handles.values())
    d.close()


def test_a_watcher_of_an_imported_key_is_woken(server_factory):
    dst = server_factory()
    acc = unique_account("watch")
    seen = {}

    def watch():
        w = dst.client(timeout=30)
        seen["r"] = w.get(f"/db/{acc}/kv/new?watch=0&timeout=20")
        w.close()
    t = threading.Thread(target=watch)
    t.start()
    c = dst.client()
    deadline = time.monotonic() + 10
    while b"\ncdragon_watchers 1.0\n" not in c.get("/metrics").body:
        assert time.monotonic() < deadline, "the watch never parked"
        time.sleep(0.01)                    # the watch is parked before the import
    assert load(dst, dump_bytes(_a_dump(acc))).status == 200
    t.join(25)
    assert seen["r"].json == {"Key": "new", "Value": [1], "Version": 2}
    c.close()


def _cli(*args, stdin: bytes | None = None, env: dict | None = None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_")}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "cdragon", *args], input=stdin, capture_output=True,
                          cwd=str(REPO), env=e, timeout=60)


def test_cli_export_and_import(server_factory, tmp_path):
    src, dst = server_factory(), server_factory()
    acc = unique_account("cli")
    fill(src.client(), acc)
    out = _cli("export", "--url", f"http://127.0.0.1:{src.port}")
    assert out.returncode == 0, out.stderr
    assert records([json.loads(x) for x in out.stdout.splitlines()], acc) == records(export(src), acc)
    # --acc, and the URL from the config's listen
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'listen = "127.0.0.1:{src.port}"\n')
    one = _cli("export", "--acc", acc, "--config", str(cfg))
    assert one.returncode == 0, one.stderr
    f = tmp_path / "dump.ndjson"
    f.write_bytes(one.stdout)
    res = _cli("import", str(f), "--url", f"http://127.0.0.1:{dst.port}", env={"CDRAGON_TOKEN": "unused"})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["Accounts"] == 1
    assert dst.client().counter(acc, "c") == 41
    res = _cli("import", "-", "--mode", "replace", "--url", f"http://127.0.0.1:{dst.port}",
               stdin=one.stdout.rsplit(b"\n", 2)[0] + b"\n")             # no End line
    assert res.returncode == 1
    assert "400 bad_request" in res.stderr.decode() and "End line" in res.stderr.decode()
    res = _cli("export", "--url", "http://127.0.0.1:1")
    assert res.returncode == 1 and "cannot reach" in res.stderr.decode()


def test_cli_sends_the_admin_token(server_factory, tmp_path):
    token = "cdt_export-import-test-token"
    cfg = tmp_path / "auth.toml"
    cfg.write_text('[[token]]\nname = "ops"\nsha256 = "%s"\naccess = "admin"\naccounts = ["*"]\n'
                   % hashlib.sha256(token.encode()).hexdigest())
    srv = server_factory(config=str(cfg))
    url = f"http://127.0.0.1:{srv.port}"
    refused = _cli("export", "--url", url)
    assert refused.returncode == 1 and "401 unauthorized" in refused.stderr.decode()
    out = _cli("export", "--url", url, env={"CDRAGON_TOKEN": token})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {"End": True, "Records": 0}
    res = _cli("import", "-", "--url", url, "--token", token, stdin=out.stdout)
    assert res.returncode == 0 and json.loads(res.stdout)["Records"] == 0, res.stderr


def test_an_imported_expiring_key_expires(server):
    acc = unique_account("exp")
    soon = time.time() + 1.0
    dump = [_a_dump(acc)[0], {"Acc": acc, "KV": "k", "Value": 1, "Version": 3, "Expires": soon},
            {"End": True, "Records": 1}]
    c = server.client(timeout=30)
    assert load(server, dump_bytes(dump)).status == 200
    got = c.kv(acc, "k")
    assert abs(got.pop("Expires") - soon) < 0.002 and got == {"Key": "k", "Value": 1, "Version": 3}
    # the expiry deletes it like any expiring key: at a new revision, watchers told
    r = c.get(f"/db/{acc}/kv/k?watch=3&timeout=20")
    assert r.json == {"Key": "k", "Version": 0}
    assert c.get(f"/db/{acc}/kv").json["Rev"] == 4
    c.close()
