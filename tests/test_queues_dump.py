"""Queues in export, import and /admin/accounts (API.md "Backups, export and import"):
a dump of one server loaded into another carries every message (same ID, body, due
time, Attempts, group order, deliveries in flight until their Till) and the live
DedupIDs; mode=replace drops the account's messages the dump lacks; bad queue lines
change nothing.
"""
from __future__ import annotations

import time

from helpers import assert_error
from test_export_import import dump_bytes, export, load, records
from test_queues import counts, push, recv


def test_queue_round_trip(server_factory):
    src, dst = server_factory(), server_factory()
    c = src.client()
    ids = [push(c, "a", "q", {"n": i}) for i in range(3)]
    later = push(c, "a", "q", "later", Delay=3600)
    g = [push(c, "a", "g", i, Group="G") for i in range(2)]
    dd = push(c, "a", "d", "deduped", DedupID="once")
    (flying,) = recv(c, "a", "q", Visibility=600)       # ids[0]: in flight, till +600 s
    (g0,) = recv(c, "a", "g", Visibility=600)
    lines = export(src, "a")
    msgs = [d for d in records(lines) if "Msg" in d]
    assert {d["Msg"] for d in msgs} == set(ids) | {later} | set(g) | {dd}
    assert [d["Till"] > time.time() + 500 for d in msgs if "Till" in d] == [True, True]
    assert [d for d in records(lines) if "Dedup" in d][0]["Dedup"] == "once"
    r = load(dst, dump_bytes(lines))
    assert r.status == 200, r
    c2 = dst.client()
    # the one in flight stays invisible (its receipt did not travel); the rest as they were
    assert counts(c2, "a", "q") == (2, 1, 1)
    got = recv(c2, "a", "q", Max=10)
    assert [m["ID"] for m in got] == ids[1:] and [m["Body"] for m in got] == [{"n": 1}, {"n": 2}]
    assert all(m["Attempts"] == 1 for m in got)
    assert c2.delete(f"/db/a/queue/q?id={later}").status == 200
    assert counts(c2, "a", "g") == (1, 0, 1)            # the group still waits for its head
    assert recv(c2, "a", "g") == []
    assert c2.db_ok("a", {"QPush": [{"Queue": "d", "Body": 1, "DedupID": "once"}]})["QPush"][0]["Duplicate"]
    # new IDs on the target go on above the imported ones
    assert int(push(c2, "a", "q", "new")) > max(int(i) for i in ids + [later] + g)
    acc = [e for e in c2.get("/admin/accounts").json["Accounts"] if e["Account"] == "a"][0]
    assert acc["Queues"] == 3 and acc["Messages"] == 7
    del flying, g0


def test_merge_keeps_messages_already_there_and_replace_drops_the_rest(server_factory):
    srv = server_factory()
    c = srv.client()
    a = push(c, "a", "q", "kept")
    dump = export(srv, "a")
    b = push(c, "a", "q", "not in the dump")
    assert load(srv, dump_bytes(dump)).status == 200
    assert counts(c, "a", "q") == (2, 0, 0)               # merge: nothing twice
    assert load(srv, dump_bytes(dump), "replace").status == 200
    assert [m["ID"] for m in recv(c, "a", "q", Max=10)] == [a]
    assert_error(c.delete(f"/db/a/queue/q?id={b}"), 404, "not_found")


def test_bad_queue_lines_change_nothing(server_factory):
    srv = server_factory()
    c = srv.client()
    push(c, "a", "q", "x")
    head = {"Format": "cdragon-export", "FormatVersion": 1, "Server": "0", "Time": time.time()}
    for bad in ({"Acc": "a", "Queue": "q", "Msg": "x1", "Body": 1},
                {"Acc": "a", "Queue": "", "Msg": "5", "Body": 1},
                {"Acc": "a", "Queue": "q", "Msg": "5"},
                {"Acc": "a", "Queue": "q", "Msg": "5", "Body": 1, "Group": 3},
                {"Acc": "a", "Queue": "q", "Msg": "5", "Body": 1, "Extra": 1},
                {"Acc": "a", "Queue": "q", "Dedup": "d", "ID": "5"},
                {"Acc": "a", "Queue": "q", "Dedup": "d", "ID": "0", "Expires": time.time() + 60}):
        r = load(srv, dump_bytes([head, {"Acc": "a", "Queue": "q", "Msg": "900", "Body": 2}, bad,
                                  {"End": True, "Records": 2}]))
        assert_error(r, 400, "bad_request")
        assert "line 3" in r.json["Message"]
        assert counts(c, "a", "q") == (1, 0, 0)


def test_purge_deletes_the_account_queues(server_factory):
    srv = server_factory()
    c = srv.client()
    for acc in ("gone", "stays"):
        push(c, acc, "q", "ready")
        push(c, acc, "q", "later", Delay=3600, DedupID="d")
        push(c, acc, "g", "grouped", Group="G")
        recv(c, acc, "g", Visibility=600)                 # in flight
    assert c.request("POST", "/admin/freeze?acc=gone").status == 200
    assert c.request("POST", "/admin/purge?acc=gone").status == 200
    assert c.request("DELETE", "/admin/freeze?acc=gone").status == 200
    assert counts(c, "gone", "q") == (0, 0, 0) and counts(c, "gone", "g") == (0, 0, 0)
    assert "Duplicate" not in c.db_ok("gone", {"QPush": [{"Queue": "q", "Body": 1, "DedupID": "d"}]})["QPush"][0]
    assert counts(c, "stays", "q") == (1, 1, 0) and counts(c, "stays", "g") == (0, 0, 1)
    srv.restart(hard=True)
    c = srv.client()
    assert counts(c, "gone", "q") == (1, 0, 0) and counts(c, "gone", "g") == (0, 0, 0)
    assert counts(c, "stays", "q") == (1, 1, 0) and counts(c, "stays", "g") == (0, 0, 1)
