"""Listing and deleting by prefix (API.md: KVList, KVDelete, GET and DELETE
/db/{acc}/kv): byte order, After paging, Limit, KeysOnly, More, one snapshot with the
request's reads, Rev for list-then-watch, prefix deletes as changes watchers see,
max_prefix_delete, and every bad input answered 400/413 with nothing changed.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import assert_error, http_request, unique_account, wait_for


def ok(r) -> dict:
    assert r.status == 200, r
    assert r.content_type == "application/json", r.header_list
    return r.json


def fill(c, acc, keys, value="v"):
    out = c.db_ok(acc, {"KVSet": [{"Key": k, "Value": f"{value}-{k}"} for k in keys]})
    return out["Rev"]


def listing(c, acc, query="") -> dict:
    return ok(c.get(f"/db/{acc}/kv" + (f"?{query}" if query else "")))


# --------------------------------------------------------------------------- listing

def test_list_is_in_byte_order_and_includes_the_prefix_itself(client, acc):
    rev = fill(client, acc, ["cfg/b", "cfg", "cfg/a", "cfg/a/x", "cfh", "other", "cf"])
    out = listing(client, acc, "prefix=cfg")
    assert [e["Key"] for e in out["KV"]] == ["cfg", "cfg/a", "cfg/a/x", "cfg/b"]
    assert out["KV"][1] == {"Key": "cfg/a", "Value": "v-cfg/a", "Version": rev}
    assert out["Rev"] == rev and out["More"] is False
    # no prefix (or an empty one) is the whole account
    assert [e["Key"] for e in listing(client, acc)["KV"]] == sorted(
        ["cfg/b", "cfg", "cfg/a", "cfg/a/x", "cfh", "other", "cf"], key=str.encode)
    assert listing(client, acc, "prefix=") == listing(client, acc)


def test_non_ascii_keys_sort_by_their_utf8_bytes(client, acc):
    keys = ["z", "é", "a", "日本", "Z"]
    fill(client, acc, keys)
    assert [e["Key"] for e in listing(client, acc)["KV"]] == sorted(keys, key=lambda k: k.encode())


def test_paging_with_after_and_limit(client, acc):
    keys = [f"p/{i:03d}" for i in range(25)]
    fill(client, acc, keys + ["q"])
    seen, after, pages = [], None, 0
    while True:
        q = "prefix=p/&limit=10" + (f"&after={after}" if after else "")
        out = listing(client, acc, q)
        pages += 1
        seen += [e["Key"] for e in out["KV"]]
        if not out["More"]:
            break
        assert len(out["KV"]) == 10
        after = out["KV"][-1]["Key"]
    assert seen == keys and pages == 3
    # After need not be a key, and is exclusive
    assert [e["Key"] for e in listing(client, acc, "prefix=p/&after=p/0105&limit=2")["KV"]] == ["p/011", "p/012"]
    assert [e["Key"] for e in listing(client, acc, "prefix=p/&after=p/011&limit=1")["KV"]] == ["p/012"]
    # After before the prefix starts at the prefix
    assert listing(client, acc, "prefix=p/&after=a&limit=1")["KV"][0]["Key"] == "p/000"


def test_keys_only(client, acc):
    rev = fill(client, acc, ["k1", "k2"])
    out = listing(client, acc, "keys")
    assert out["KV"] == [{"Key": "k1", "Version": rev}, {"Key": "k2", "Version": rev}]
    out = client.db_ok(acc, {"KVList": [{"Prefix": "k", "KeysOnly": True, "Limit": 1}]})
    assert out == {"KVList": [{"Prefix": "k", "KV": [{"Key": "k1", "Version": rev}], "More": True}], "Rev": rev}


def test_deleted_keys_are_not_listed(client, acc):
    fill(client, acc, ["a", "b", "c"])
    out = client.db_ok(acc, {"KVSet": [{"Key": "b", "Delete": True}]})
    assert [e["Key"] for e in listing(client, acc)["KV"]] == ["a", "c"]
    assert listing(client, acc)["Rev"] == out["Rev"]


def test_empty_account_lists_nothing_at_revision_0(client, acc):
    assert listing(client, acc) == {"Rev": 0, "KV": [], "More": False}
    assert client.db_ok(acc, {"KVList": [{"Prefix": "x"}]}) == {
        "KVList": [{"Prefix": "x", "KV": [], "More": False}], "Rev": 0}


def test_lists_and_reads_of_a_request_see_the_state_before_its_writes(client, acc):
    rev = fill(client, acc, ["s/a"], "old")
    out = client.db_ok(acc, {"KVList": [{"Prefix": "s/"}, {"Prefix": "s/", "KeysOnly": True}],
                             "KVGet": ["s/a"],
                             "KVSet": [{"Key": "s/a", "Value": "new"}, {"Key": "s/b", "Value": 1}]})
    assert out["Rev"] == rev + 1                          # the revision after the request
    assert out["KVList"][0]["KV"] == [{"Key": "s/a", "Value": "old-s/a", "Version": rev}]
    assert out["KVList"][1]["KV"] == [{"Key": "s/a", "Version": rev}]
    assert out["KV"] == [{"Key": "s/a", "Value": "old-s/a", "Version": rev}]
    assert [e["Key"] for e in listing(client, acc, "prefix=s/")["KV"]] == ["s/a", "s/b"]


def test_list_then_watch_from_rev_misses_nothing(server, client, acc):
    fill(client, acc, ["cfg/a", "cfg/b"])
    out = listing(client, acc, "prefix=cfg/")
    with server.raw(timeout=20) as raw:
        raw.send(http_request("POST", f"/watch/{acc}", {"Prefix": "cfg/", "Version": out["Rev"], "Timeout": 20}))
        assert not raw.readable(0.3)                      # nothing changed since the list
        w = client.db_ok(acc, {"KVSet": [{"Key": "cfg/c", "Value": 3}]})
        got = ok(raw.read_final(timeout=10))
        assert got == {"Rev": w["Rev"], "KV": [{"Key": "cfg/c", "Value": 3, "Version": w["Rev"]}]}


def test_list_rev_is_the_way_back_after_410_compacted(server_factory):
    srv = server_factory(env={"CDRAGON_DELETE_RETENTION": 1})
    c = srv.client()
    acc = unique_account("compacted")
    fill(c, acc, ["x"])
    c.db_ok(acc, {"KVSet": [{"Key": "x", "Delete": True}]})
    srv.restart()                                         # history starts again on disk
    c = srv.client()
    r = c.post(f"/watch/{acc}", {"Prefix": "", "Version": 0, "Timeout": 0})
    assert_error(r, 410, "compacted")
    out = listing(c, acc)
    assert out["KV"] == [] and out["Rev"] == r.json["Rev"]
    assert ok(c.post(f"/watch/{acc}", {"Prefix": "", "Version": out["Rev"], "Timeout": 0}))["KV"] == []
    c.close()


def test_kvlist_counts_as_operations(limits_server):
    c = limits_server.client()
    acc = unique_account("ops")
    r = c.db(acc, {"KVList": [{"Prefix": str(i)} for i in range(11)]})
    assert_error(r, 413, "too_large")
    assert ok(c.post(f"/db/{acc}", {"KVList": [{"Prefix": str(i)} for i in range(10)]}))["Rev"] == 0
    c.close()


@pytest.mark.parametrize("entry,code", [
    ({"Prefix": 5}, "bad_request"),
    ({"Prefix": None}, "bad_request"),
    ({"Prefix": "x" * 257}, "bad_key"),
    ({"Prefix": "a\u0000b"}, "bad_key"),
    ({"Prefix": "\ud800"}, "bad_request"),
    ({"Limit": 0}, "bad_request"),
    ({"Limit": 10001}, "bad_request"),
    ({"Limit": "10"}, "bad_request"),
    ({"Limit": 1.5}, "bad_request"),
    ({"Limit": None}, "bad_request"),
    ({"After": 3}, "bad_request"),
    ({"After": None}, "bad_request"),
    ({"After": "x" * 1025}, "bad_request"),
    ({"KeysOnly": 1}, "bad_request"),
    ({"Prefx": "a"}, "bad_request"),
    ("cfg/", "bad_request"),
])
def test_bad_kvlist_entry_is_400_and_changes_nothing(client, acc, entry, code):
    body = {"KVList": [entry], "KVSet": [{"Key": "w", "Value": 1}]}
    assert_error(client.db(acc, body), 400, code)
    assert client.kv(acc, "w") == {"Key": "w", "Version": 0}


@pytest.mark.parametrize("query", ["limit=0", "limit=10001", "limit=x", "limit=1&limit=2",
                                   "prefix=%00", "prefix=" + "y" * 257, "after=" + "z" * 1025, "keys&foo"])
def test_bad_list_query_is_400(client, acc, query):
    r = client.get(f"/db/{acc}/kv?{query}")
    assert r.status == 400 and r.json["Code"] in ("bad_request", "bad_key"), r


def test_list_and_prefix_delete_routes_answer_405_otherwise(client, acc):
    r = client.request("PUT", f"/db/{acc}/kv", body=1)
    assert_error(r, 405, "method_not_allowed")
    assert r.header("Allow") == "GET, HEAD, DELETE"


# --------------------------------------------------------------------------- deleting

def test_kvdelete_deletes_every_key_under_the_prefix_at_one_new_revision(client, acc):
    rev = fill(client, acc, ["tmp/a", "tmp/b/c", "tmp", "tmq", "keep"])
    out = client.db_ok(acc, {"KVDelete": [{"Prefix": "tmp"}]})
    assert out == {"KVDelete": [{"Prefix": "tmp", "Deleted": 3}], "Rev": rev + 1}
    assert [e["Key"] for e in listing(client, acc)["KV"]] == ["keep", "tmq"]


def test_kvdelete_of_nothing_leaves_the_revision_alone(client, acc):
    rev = fill(client, acc, ["a"])
    assert client.db_ok(acc, {"KVDelete": [{"Prefix": "zz"}]}) == {
        "KVDelete": [{"Prefix": "zz", "Deleted": 0}], "Rev": rev}
    assert listing(client, acc)["Rev"] == rev


def test_kvdelete_applies_before_kvset(client, acc):
    fill(client, acc, ["cfg/old", "cfg/keep"])
    out = client.db_ok(acc, {"KVDelete": [{"Prefix": "cfg/"}],
                             "KVSet": [{"Key": "cfg/keep", "Value": "new"}, {"Key": "cfg/n", "Value": 1}]})
    assert out["KVDelete"] == [{"Prefix": "cfg/", "Deleted": 2}]
    got = listing(client, acc, "prefix=cfg/")["KV"]
    assert got == [{"Key": "cfg/keep", "Value": "new", "Version": out["Rev"]},
                   {"Key": "cfg/n", "Value": 1, "Version": out["Rev"]}]


def test_overlapping_kvdeletes_delete_a_key_once(client, acc):
    fill(client, acc, ["a/b/1", "a/b/2", "a/c"])
    out = client.db_ok(acc, {"KVDelete": [{"Prefix": "a/"}, {"Prefix": "a/b/"}]})
    # each entry counts the keys under its own prefix that the request deleted
    assert out["KVDelete"] == [{"Prefix": "a/", "Deleted": 3}, {"Prefix": "a/b/", "Deleted": 2}]
    assert listing(client, acc)["KV"] == []


def test_kvdelete_all_needs_all_true(client, acc):
    fill(client, acc, ["a", "b"])
    for entry in ({"Prefix": ""}, {}, {"All": False}, {"Prefix": "a", "All": True}, {"All": 1}):
        assert_error(client.db(acc, {"KVDelete": [entry]}), 400, "bad_request")
    assert len(listing(client, acc)["KV"]) == 2
    out = client.db_ok(acc, {"KVDelete": [{"All": True}]})
    assert out["KVDelete"] == [{"Prefix": "", "Deleted": 2}]
    assert listing(client, acc)["KV"] == []


def test_failed_request_deletes_nothing(client, acc):
    rev = fill(client, acc, ["t/1", "t/2"])
    r = client.db(acc, {"KVDelete": [{"Prefix": "t/"}], "KVSet": [{"Key": "x", "Value": 1, "Version": 99}]})
    assert_error(r, 409, "precondition_failed")
    out = listing(client, acc)
    assert len(out["KV"]) == 2 and out["Rev"] == rev


def test_max_prefix_delete_is_413_and_deletes_nothing(server_factory):
    srv = server_factory(env={"CDRAGON_MAX_PREFIX_DELETE": 5})
    c = srv.client()
    acc = unique_account("maxdel")
    fill(c, acc, [f"a/{i}" for i in range(4)] + [f"b/{i}" for i in range(2)])
    # the limit counts every KVDelete of the request
    r = c.db(acc, {"KVDelete": [{"Prefix": "a/"}, {"Prefix": "b/"}]})
    assert_error(r, 413, "too_large")
    assert len(listing(c, acc)["KV"]) == 6
    assert_error(c.delete(f"/db/{acc}/kv?all"), 413, "too_large")
    assert ok(c.delete(f"/db/{acc}/kv?prefix=a/"))["Deleted"] == 4
    c.close()


def test_rest_prefix_delete(client, acc):
    rev = fill(client, acc, ["x/1", "x/2", "y"])
    assert ok(client.delete(f"/db/{acc}/kv?prefix=x/")) == {"Rev": rev + 1, "Deleted": 2}
    for q in ("", "?prefix=", "?prefix=y&all", "?all=1&all"):
        r = client.delete(f"/db/{acc}/kv{q}")
        assert_error(r, 400, "bad_request")
    assert ok(client.delete(f"/db/{acc}/kv?all")) == {"Rev": rev + 2, "Deleted": 1}
    assert listing(client, acc) == {"Rev": rev + 2, "KV": [], "More": False}


def test_prefix_delete_wakes_key_and_prefix_watchers(server, client, acc):
    rev = fill(client, acc, ["w/a", "w/b"])
    with server.raw(timeout=20) as kw, server.raw(timeout=20) as pw:
        kw.send(http_request("POST", f"/watch/{acc}", {"ID": "w/a", "Version": rev, "Timeout": 20}))
        pw.send(http_request("POST", f"/watch/{acc}", {"Prefix": "w/", "Version": rev, "Timeout": 20}))
        assert not kw.readable(0.3) and not pw.readable(0)
        out = client.db_ok(acc, {"KVDelete": [{"Prefix": "w/"}]})
        assert ok(kw.read_final(timeout=10)) == {"Key": "w/a", "Version": 0}
        got = ok(pw.read_final(timeout=10))
        assert got["Rev"] == out["Rev"]
        assert sorted(got["KV"], key=lambda e: e["Key"]) == [
            {"Key": "w/a", "Version": out["Rev"], "Deleted": True},
            {"Key": "w/b", "Version": out["Rev"], "Deleted": True}]


def test_prefix_delete_survives_sigkill(server_factory):
    srv = server_factory()
    c = srv.client()
    acc = unique_account("durable-del")
    fill(c, acc, [f"d/{i}" for i in range(50)] + ["keep"])
    out = c.db_ok(acc, {"KVDelete": [{"Prefix": "d/"}]})
    c.close()
    srv.restart(hard=True)
    c = srv.client()
    assert listing(c, acc) == {"Rev": out["Rev"], "KV": [{"Key": "keep", "Value": "v-keep", "Version": 1}],
                               "More": False}
    c.close()


# --------------------------------------------------------------------------- big lists

def test_a_big_list_is_one_snapshot_while_writes_go_on(server, client, acc):
    """A list over LIST_SLICE (1,000) keys is read a slice at a time with other requests
    served in between; it still shows the state of one moment."""
    keys = [f"big/{i:05d}" for i in range(3500)]
    for i in range(0, len(keys), 1000):
        rev = client.db_ok(acc, {"KVSet": [{"Key": k, "Value": i} for k in keys[i:i + 1000]]})["Rev"]
    with server.raw(timeout=30) as lister, server.raw(timeout=30) as writer:
        lister.send(http_request("GET", f"/db/{acc}/kv?prefix=big/&limit=10000&keys"))
        # writes (and a delete) racing the list, pipelined on another connection
        writer.send(b"".join(http_request("POST", f"/db/{acc}", {"KVSet": [
            {"Key": keys[j], "Delete": True}, {"Key": f"big/new{j}", "Value": 1}]}) for j in range(0, 3500, 500)))
        out = ok(lister.read_final(timeout=20))
        for _ in range(7):
            assert writer.read_response(timeout=20).status == 200
    # the state of exactly one revision: the first m racing writes and none after
    m = out["Rev"] - rev
    assert 0 <= m <= 7 and out["More"] is False
    gone = {keys[j] for j in range(0, 500 * m, 500)}
    want = sorted([k for k in keys if k not in gone] + [f"big/new{j}" for j in range(0, 500 * m, 500)])
    assert [e["Key"] for e in out["KV"]] == want
    later = ok(client.get(f"/db/{acc}/kv?prefix=big/&limit=10000&keys"))
    assert later["Rev"] == rev + 7 and len(later["KV"]) == 3500


def test_big_list_answers_in_pipeline_order_and_pages(server, client, acc):
    keys = [f"p/{i:05d}" for i in range(2500)]
    for i in range(0, len(keys), 1000):
        client.db_ok(acc, {"KVSet": [{"Key": k, "Value": "x"} for k in keys[i:i + 1000]]})
    with server.raw(timeout=30) as raw:
        raw.send(http_request("GET", f"/db/{acc}/kv?prefix=p/&limit=2000")
                 + http_request("GET", "/health")
                 + http_request("GET", f"/db/{acc}/kv?prefix=p/&limit=2000&after=p/01999"))
        first = ok(raw.read_response(timeout=20))
        assert raw.read_response(timeout=20).json["Status"] == "ok"
        second = ok(raw.read_response(timeout=20))
    assert [e["Key"] for e in first["KV"]] == keys[:2000] and first["More"] is True
    assert first["KV"][0] == {"Key": "p/00000", "Value": "x", "Version": first["KV"][0]["Version"]}
    assert [e["Key"] for e in second["KV"]] == keys[2000:] and second["More"] is False


def test_a_client_that_leaves_mid_list_costs_nothing(server, client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": f"g/{i:05d}", "Value": i} for i in range(1000)]})
    client.db_ok(acc, {"KVSet": [{"Key": f"g/{i:05d}", "Value": i} for i in range(1000, 2000)]})
    for _ in range(5):
        raw = server.raw(timeout=10)
        raw.send(http_request("GET", f"/db/{acc}/kv?limit=10000"))
        raw.close()
    assert len(ok(client.get(f"/db/{acc}/kv?limit=10000"))["KV"]) == 2000
    server.assert_alive()


def checkpoints(c) -> int:
    """Checkpoints finished so far, from /metrics."""
    text = c.get("/metrics").body.decode()
    m = re.search(r"^cdragon_checkpoint_duration_seconds_count (\S+)$", text, re.M)
    return int(float(m.group(1)))


def test_big_lists_while_the_map_grows(server_factory):
    """The LMDB map grows while big lists hold snapshots: each list lets go of its
    snapshot first and starts over; every answer is still whole and consistent."""
    srv = server_factory(env={"CDRAGON_INITIAL_MAP_BYTES": 1 << 20, "CDRAGON_CHECKPOINT_INTERVAL": 0.05})
    c = srv.client()
    acc = unique_account("grow")
    c.db_ok(acc, {"KVSet": [{"Key": f"l/{i:05d}", "Value": i} for i in range(1000)]})
    c.db_ok(acc, {"KVSet": [{"Key": f"l/{i:05d}", "Value": i} for i in range(1000, 1500)]})
    big = "x" * 4000
    with srv.raw(timeout=30) as raw:
        for round_ in range(20):
            raw.send(http_request("GET", f"/db/{acc}/kv?prefix=l/&limit=5000&keys"))
            before = checkpoints(c)
            c.db_ok(acc, {"KVSet": [{"Key": f"fill/{round_}/{j}", "Value": big} for j in range(60)]})
            # each round's fill reaches LMDB (so the map must grow) before the list is read
            assert wait_for(lambda: checkpoints(c) > before, 30), "no checkpoint ran"
            out = ok(raw.read_response(timeout=20))
            assert [e["Key"] for e in out["KV"]] == [f"l/{i:05d}" for i in range(1500)]
    assert (Path(srv.data_dir) / "data.mdb").stat().st_size > 1 << 20       # it did grow
    srv.assert_alive()
    c.close()
