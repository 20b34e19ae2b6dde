"""Accounts frozen for a move (/admin/freeze, cdragon.moving): writes refused with 503
`moving` and Retry-After: 1, reads still served, parked watches and lock waiters
answered the same way, other accounts untouched, and the freeze kept across a SIGKILL."""
from __future__ import annotations

import json
import threading

import pytest

from helpers import assert_error, http_request, unique_account


def moving(resp):
    body = assert_error(resp, 503, "moving")
    assert resp.header("Retry-After") == "1"
    return body


@pytest.fixture
def frozen_pair(server, client):
    """(frozen account, untouched account), both holding a key, a counter, a sequence."""
    a, b = unique_account("mv"), unique_account("stay")
    for acc in (a, b):
        client.db_ok(acc, {"KVSet": [{"Key": "k", "Value": 1}], "Atomic": [{"Key": "c", "Add": 5}]})
    r = client.request("POST", f"/admin/freeze?acc={a}")
    assert r.status == 200, r
    assert r.json["Account"] == a and r.json["Frozen"] is True and isinstance(r.json["Rev"], int)
    yield a, b
    client.request("DELETE", f"/admin/freeze?acc={a}")


def test_writes_are_refused_and_reads_served(client, frozen_pair):
    a, b = frozen_pair
    moving(client.request("PUT", f"/db/{a}/kv/k", b"2"))
    moving(client.request("DELETE", f"/db/{a}/kv/k"))
    moving(client.request("DELETE", f"/db/{a}/kv?prefix=k"))
    moving(client.request("POST", f"/db/{a}/counter/c?add=1"))
    moving(client.request("POST", f"/db/{a}/sequence/s"))
    moving(client.request("POST", f"/db/{a}/lock/l?dur=5"))
    moving(client.request("POST", f"/db/{a}", json.dumps({"KVSet": [{"Key": "k", "Value": 3}]}).encode()))
    moving(client.request("POST", f"/db/{a}", json.dumps({"Atomic": [{"Key": "c", "Add": 1}]}).encode()))
    # reads: REST and a POST /db that only reads
    assert client.get(f"/db/{a}/kv/k").json["Value"] == 1
    out = client.db_ok(a, {"KVGet": ["k"], "Atomic": [{"Key": "c", "Add": 0}]})
    assert out["KV"][0]["Value"] == 1 and out["Atomic"][0]["Value"] == 5
    # the other account writes as before
    client.db_ok(b, {"KVSet": [{"Key": "k", "Value": 2}]})
    assert client.get(f"/db/{b}/kv/k").json["Value"] == 2
    listed = client.get("/admin/freeze").json["Frozen"]
    assert a in listed and b not in listed


def test_thaw_lets_writes_in_again(client, frozen_pair):
    a, _ = frozen_pair
    moving(client.request("PUT", f"/db/{a}/kv/k", b"2"))
    r = client.request("DELETE", f"/admin/freeze?acc={a}")
    assert r.status == 200 and r.json == {"Account": a, "Frozen": False}
    assert client.request("PUT", f"/db/{a}/kv/k", b"2").status == 200
    assert client.get(f"/db/{a}/kv/k").json["Value"] == 2


def test_parked_watches_and_lock_waiters_are_answered(server, client):
    a, b = unique_account("mvw"), unique_account("stayw")
    for acc in (a, b):
        client.db_ok(acc, {"KVSet": [{"Key": "k", "Value": 1}]})
        client.db_ok(acc, {"LockID": "held", "LockDur": 30})
    ver = client.get(f"/db/{a}/kv/k").json["Version"]
    raws = {}
    for acc in (a, b):
        w = server.raw(timeout=20)
        w.send(http_request("POST", f"/watch/{acc}", json.dumps({"Key": "k", "Version": ver, "Timeout": 30}).encode()))
        lw = server.raw(timeout=20)
        lw.send(http_request("POST", f"/db/{acc}", json.dumps({"LockID": "held", "LockDur": 5, "LockWait": 30}).encode()))
        raws[acc] = (w, lw)
    # both parked
    for w, lw in raws.values():
        assert not w.readable(0.3) and not lw.readable(0.05)
    assert client.request("POST", f"/admin/freeze?acc={a}").status == 200
    w, lw = raws[a]
    moving(w.read_response())
    moving(lw.read_response())
    # the other account's watcher and waiter still wait
    w2, lw2 = raws[b]
    assert not w2.readable(0.3) and not lw2.readable(0.05)
    # a new watch that would park is refused; one that can answer at once is served
    moving(client.request("POST", f"/watch/{a}", json.dumps({"Key": "k", "Version": ver, "Timeout": 5}).encode()))
    r = client.request("POST", f"/watch/{a}", json.dumps({"Key": "k", "Version": ver - 1, "Timeout": 5}).encode())
    assert r.status == 200 and r.json["Value"] == 1
    for pair in raws.values():
        for x in pair:
            x.close()
    client.request("DELETE", f"/admin/freeze?acc={a}")


def test_a_freeze_survives_sigkill(server_factory):
    srv = server_factory()
    c = srv.client()
    a = unique_account("mvk")
    c.db_ok(a, {"KVSet": [{"Key": "k", "Value": 1}]})
    assert c.request("POST", f"/admin/freeze?acc={a}").status == 200
    c.close()
    srv.restart(hard=True)
    c = srv.client()
    moving(c.request("PUT", f"/db/{a}/kv/k", b"2"))
    assert c.get("/admin/freeze").json["Frozen"] == [a]
    assert c.request("DELETE", f"/admin/freeze?acc={a}").status == 200
    srv.restart(hard=True)
    c = srv.client()
    assert c.request("PUT", f"/db/{a}/kv/k", b"2").status == 200
    c.close()


def test_writes_racing_the_freeze_are_either_refused_or_counted(server, client):
    """Every write answered 200 before or during the freeze is in what the freeze's
    answer covers (the answer waits until LMDB holds them); every other is 503."""
    a = unique_account("race")
    done = {"ok": 0, "refused": 0}
    stop = threading.Event()

    def writer():
        c = server.client()
        while not stop.is_set():
            r = c.request("POST", f"/db/{a}/counter/n?add=1")
            if r.status == 200:
                done["ok"] += 1
            else:
                moving(r)
                done["refused"] += 1
                break
        c.close()
    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    import time
    time.sleep(0.3)
    assert client.request("POST", f"/admin/freeze?acc={a}").status == 200
    for t in threads:
        t.join(10)
    stop.set()
    assert done["refused"] == 4
    assert client.get(f"/db/{a}/counter/n").json["Value"] == done["ok"]
    client.request("DELETE", f"/admin/freeze?acc={a}")


@pytest.mark.parametrize("query,code", [("", "bad_request"), ("?acc=", "bad_account"),
                                        ("?acc=a%20b", "bad_account"), ("?acc=a&x=1", "bad_request")])
def test_bad_freeze_requests(client, query, code):
    assert_error(client.request("POST", f"/admin/freeze{query}"), 400, code)
    assert client.get("/admin/freeze").status == 200


def test_purge_deletes_everything_of_a_frozen_account_only(server_factory):
    srv = server_factory()
    c = srv.client()
    a, b = unique_account("pg"), unique_account("pgstay")
    for acc in (a, b):
        c.db_ok(acc, {"KVSet": [{"Key": f"k{i}", "Value": i} for i in range(50)] + [{"Key": "t", "Value": 1, "TTL": 300}],
                      "Atomic": [{"Key": "c", "Add": 5}], "Seq": [{"Key": "s", "Count": 3}],
                      "LockID": "l", "LockDur": 60, "IdempotencyIDs": ["once"]})
    rev_before = c.get(f"/db/{a}/kv?limit=1").json["Rev"]
    # not frozen: refused, nothing deleted
    assert_error(c.request("POST", f"/admin/purge?acc={a}"), 409, "not_frozen")
    assert c.get(f"/db/{a}/kv/k1").json["Value"] == 1
    assert c.request("POST", f"/admin/freeze?acc={a}").status == 200
    r = c.request("POST", f"/admin/purge?acc={a}")
    assert r.status == 200 and r.json["Account"] == a and r.json["Purged"] is True and r.json["Rev"] > rev_before
    for check in (lambda: c.get(f"/db/{a}/kv?limit=100").json["KV"] == [],
                  lambda: c.get(f"/db/{a}/counter/c").json["Value"] == 0,
                  lambda: c.get(f"/db/{a}/lock/l").json.get("Handle") in (None, 0)):
        assert check()
    assert a not in [x["Account"] for x in c.get("/admin/accounts").json["Accounts"]]
    # the other account is whole, and the purge is durable
    srv.restart(hard=True)
    c = srv.client()
    assert len(c.get(f"/db/{b}/kv?limit=100").json["KV"]) == 51
    assert c.get(f"/db/{a}/kv?limit=100").json["KV"] == []
    assert c.get(f"/db/{a}/counter/c").json["Value"] == 0
    names = [x["Account"] for x in c.get("/admin/accounts").json["Accounts"]]
    assert b in names and a not in names
    c.close()
