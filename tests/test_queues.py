"""Queues and scheduled tasks (API.md "Queues and scheduled tasks"), against the real
server: QPush / QAck in POST /db (all or nothing with the rest of the request),
receiving, receipts and their fencing, groups, DedupID, Delay / At, cancel, stats, and
every bad input answered 400 (or 413) with nothing changed.

Waiting, redelivery and restarts are in test_queues_wait.py. Nothing here decides
pass/fail by timing: where something must happen "later", the test polls for it with
a generous deadline.
"""
from __future__ import annotations

import re
import time

import pytest

from helpers import assert_error

RECEIPT = re.compile(r"^[A-Za-z0-9_-]+$")


def push(c, acc, queue, body, **extra):
    out = c.db_ok(acc, {"QPush": [dict({"Queue": queue, "Body": body}, **extra)]})
    return out["QPush"][0]["ID"]


def recv(c, acc, queue, **kw):
    r = c.post(f"/queue/{acc}", dict({"Queue": queue}, **kw))
    assert r.status == 200, r
    return r.json["Messages"]


def stats(c, acc, queue):
    r = c.get(f"/db/{acc}/queue/{queue}")
    assert r.status == 200, r
    return r.json


def counts(c, acc, queue):
    s = stats(c, acc, queue)
    return s["Ready"], s["Delayed"], s["InFlight"]


# ---- the basic cycle ---------------------------------------------------------------------
def test_push_receive_ack(client, acc):
    out = client.db_ok(acc, {"QPush": [{"Queue": "mail", "Body": {"to": "a@b"}},
                                       {"Queue": "mail", "Body": None}]})
    ids = [e["ID"] for e in out["QPush"]]
    assert [e["Queue"] for e in out["QPush"]] == ["mail", "mail"]
    assert len(set(ids)) == 2 and all(RECEIPT.match(i) for i in ids)
    assert stats(client, acc, "mail")["Ready"] == 2
    t0 = time.time()
    msgs = recv(client, acc, "mail", Max=10)
    assert [m["ID"] for m in msgs] == ids                  # push order
    assert [m["Body"] for m in msgs] == [{"to": "a@b"}, None]
    for m in msgs:
        assert m["Attempts"] == 1 and m["Group"] is None
        assert RECEIPT.match(m["Receipt"])
        assert t0 - 60 < m["Sent"] <= t0 + 1
    assert counts(client, acc, "mail") == (0, 0, 2)
    assert recv(client, acc, "mail") == []                  # both invisible now
    out = client.db_ok(acc, {"QAck": [{"Queue": "mail", "Receipt": m["Receipt"]} for m in msgs]})
    assert out == {"QAck": [{"Queue": "mail", "ID": i} for i in ids]}
    assert stats(client, acc, "mail") == {"Queue": "mail", "Ready": 0, "Delayed": 0, "InFlight": 0,
                                          "OldestReady": 0}


def test_empty_queue_and_max(client, acc):
    assert stats(client, acc, "none") == {"Queue": "none", "Ready": 0, "Delayed": 0, "InFlight": 0,
                                          "OldestReady": 0}
    assert recv(client, acc, "none") == []
    for i in range(5):
        push(client, acc, "q", i)
    assert [m["Body"] for m in recv(client, acc, "q")] == [0]          # Max defaults to 1
    assert [m["Body"] for m in recv(client, acc, "q", Max=3)] == [1, 2, 3]
    assert [m["Body"] for m in recv(client, acc, "q", Max=100)] == [4]


def test_queues_are_per_account(client, acc):
    push(client, acc, "q", "mine")
    assert recv(client, acc + "x", "q") == []
    assert stats(client, acc + "x", "q")["Ready"] == 0
    assert [m["Body"] for m in recv(client, acc, "q")] == ["mine"]


# ---- part of the atomic request ---------------------------------------------------------------
def test_push_with_writes_is_all_or_nothing(client, acc):
    out = client.db_ok(acc, {"KVSet": [{"Key": "order", "Value": 1}],
                             "QPush": [{"Queue": "outbox", "Body": "sent"}]})
    assert out["KVSet"] == [{"Key": "order", "Version": out["Rev"]}] and len(out["QPush"]) == 1
    ver = out["KVSet"][0]["Version"]
    # a failing precondition: neither the write nor the push
    r = client.db(acc, {"KVSet": [{"Key": "order", "Value": 2, "Version": ver + 5}],
                        "QPush": [{"Queue": "outbox", "Body": "never"}]})
    assert_error(r, 409, "precondition_failed")
    assert client.kv(acc, "order")["Value"] == 1
    assert [m["Body"] for m in recv(client, acc, "outbox", Max=10)] == ["sent"]
    # a counter check and a push
    r = client.db(acc, {"Atomic": [{"Key": "c", "Set": 1, "IfEq": 7}],
                        "QPush": [{"Queue": "outbox", "Body": "never"}]})
    assert_error(r, 409, "precondition_failed")
    assert stats(client, acc, "outbox")["Ready"] == 0


def test_ack_with_writes_and_stale_receipt_fails_everything(client, acc):
    push(client, acc, "jobs", "a")
    push(client, acc, "jobs", "b")
    m1, m2 = recv(client, acc, "jobs", Max=2)
    out = client.db_ok(acc, {"QAck": [{"Queue": "jobs", "Receipt": m1["Receipt"]}],
                             "KVSet": [{"Key": "done-a", "Value": True}]})
    assert out["QAck"] == [{"Queue": "jobs", "ID": m1["ID"]}]
    assert client.kv(acc, "done-a")["Value"] is True
    # the same receipt again: stale, and the whole request (another ack, a write, a
    # push) is refused
    r = client.db(acc, {"QAck": [{"Queue": "jobs", "Receipt": m2["Receipt"]},
                                 {"Queue": "jobs", "Receipt": m1["Receipt"]}],
                        "KVSet": [{"Key": "done-b", "Value": True}],
                        "QPush": [{"Queue": "jobs", "Body": "c"}]})
    assert_error(r, 409, "stale_receipt")
    assert client.kv(acc, "done-b")["Version"] == 0
    assert counts(client, acc, "jobs") == (0, 0, 1)
    # m2 is still in flight and its receipt still good
    assert client.db_ok(acc, {"QAck": [{"Queue": "jobs", "Receipt": m2["Receipt"]}]})["QAck"][0]["ID"] == m2["ID"]
    # a receipt on the wrong queue is stale too
    push(client, acc, "jobs", "d")
    (m4,) = recv(client, acc, "jobs")
    assert_error(client.db(acc, {"QAck": [{"Queue": "other", "Receipt": m4["Receipt"]}]}), 409, "stale_receipt")


def test_ack_with_lock_and_unlock(client, acc):
    push(client, acc, "jobs", "x")
    (m,) = recv(client, acc, "jobs")
    out = client.db_ok(acc, {"LockID": "L", "QAck": [{"Queue": "jobs", "Receipt": m["Receipt"]}],
                             "QPush": [{"Queue": "next", "Body": 1}]})
    assert out["QAck"][0]["ID"] == m["ID"] and out["QPush"][0]["Queue"] == "next" and "Lock" in out
    assert counts(client, acc, "jobs") == (0, 0, 0)
    assert counts(client, acc, "next") == (1, 0, 0)


# ---- REST forms ------------------------------------------------------------------------------------
def test_rest_push_ack_extend_release(client, acc):
    r = client.post(f"/db/{acc}/queue/q", {"n": 1})
    assert r.status == 200 and r.json["Queue"] == "q", r
    mid = r.json["ID"]
    (m,) = recv(client, acc, "q", Visibility=30)
    assert m["ID"] == mid and m["Body"] == {"n": 1}
    # extend
    t0 = time.time()
    r = client.put(f"/db/{acc}/queue/q?receipt={m['Receipt']}&visibility=600")
    assert r.status == 200, r
    assert r.json["Queue"] == "q" and r.json["ID"] == mid and t0 + 590 < r.json["Till"] < time.time() + 601
    # release now: visible again, the old receipt is stale, Attempts counts on
    r = client.put(f"/db/{acc}/queue/q?receipt={m['Receipt']}&visibility=0")
    assert r.status == 200 and r.json["ID"] == mid, r
    assert_error(client.put(f"/db/{acc}/queue/q?receipt={m['Receipt']}&visibility=5"), 409, "stale_receipt")
    assert_error(client.delete(f"/db/{acc}/queue/q?receipt={m['Receipt']}"), 409, "stale_receipt")
    (m2,) = recv(client, acc, "q")
    assert m2["ID"] == mid and m2["Attempts"] == 2 and m2["Receipt"] != m["Receipt"]
    r = client.delete(f"/db/{acc}/queue/q?receipt={m2['Receipt']}")
    assert r.status == 200 and r.json == {"Queue": "q", "ID": mid}, r
    assert counts(client, acc, "q") == (0, 0, 0)


def test_rest_push_parameters(client, acc):
    r = client.post(f"/db/{acc}/queue/q?group=g&dedup=d1", "x")
    assert r.status == 200, r
    r2 = client.post(f"/db/{acc}/queue/q?group=g&dedup=d1", "y")
    assert r2.json == {"Queue": "q", "ID": r.json["ID"], "Duplicate": True}
    r3 = client.post(f"/db/{acc}/queue/q?delay=3600", "later")
    assert r3.status == 200
    r4 = client.post(f"/db/{acc}/queue/q?at={time.time() + 3600:.3f}", "later too")
    assert r4.status == 200
    assert counts(client, acc, "q") == (1, 2, 0)
    (m,) = recv(client, acc, "q", Max=10)
    assert m["Body"] == "x" and m["Group"] == "g"
    # HEAD of the stats
    assert client.head(f"/db/{acc}/queue/q").status == 200


def test_cancel(client, acc):
    later = push(client, acc, "tasks", "later", Delay=3600)
    now_id = push(client, acc, "tasks", "now")
    assert counts(client, acc, "tasks") == (1, 1, 0)
    r = client.delete(f"/db/{acc}/queue/tasks?id={later}")
    assert r.status == 200 and r.json == {"Queue": "tasks", "ID": later}, r
    assert_error(client.delete(f"/db/{acc}/queue/tasks?id={later}"), 404, "not_found")
    assert_error(client.delete(f"/db/{acc}/queue/tasks?id=999999999"), 404, "not_found")
    assert_error(client.delete(f"/db/{acc}/queue/other?id={now_id}"), 404, "not_found")
    (m,) = recv(client, acc, "tasks")
    assert_error(client.delete(f"/db/{acc}/queue/tasks?id={now_id}"), 409, "in_flight")
    assert counts(client, acc, "tasks") == (0, 0, 1)
    client.db_ok(acc, {"QAck": [{"Queue": "tasks", "Receipt": m["Receipt"]}]})
    assert_error(client.delete(f"/db/{acc}/queue/tasks?id={now_id}"), 404, "not_found")


# ---- scheduling ----------------------------------------------------------------------------------------
def test_delay_and_at(client, acc):
    push(client, acc, "s", "in an hour", Delay=3600)
    push(client, acc, "s", "tomorrow", At=time.time() + 86400)
    past = push(client, acc, "s", "past", At=1000)
    push(client, acc, "s", "zero", Delay=0)
    s = stats(client, acc, "s")
    assert (s["Ready"], s["Delayed"], s["InFlight"]) == (2, 2, 0)
    msgs = recv(client, acc, "s", Max=10)
    assert [m["Body"] for m in msgs] == ["past", "zero"] and msgs[0]["ID"] == past
    assert recv(client, acc, "s", Max=10) == []


def test_scheduled_message_not_delivered_before_its_time(client, acc):
    at = time.time() + 0.5
    push(client, acc, "s", "soon", At=at)
    assert recv(client, acc, "s") == []
    deadline = time.time() + 30
    got = []
    while not got and time.time() < deadline:
        got = recv(client, acc, "s", Wait=5)
    assert [m["Body"] for m in got] == ["soon"]
    assert time.time() >= at


# ---- groups ----------------------------------------------------------------------------------------------
def test_group_order_one_in_flight(client, acc):
    client.db_ok(acc, {"QPush": [{"Queue": "g", "Body": f"a{i}", "Group": "A"} for i in range(3)]
                       + [{"Queue": "g", "Body": "b0", "Group": "B"}, {"Queue": "g", "Body": "free"}]})
    msgs = recv(client, acc, "g", Max=10)
    assert [m["Body"] for m in msgs] == ["a0", "b0", "free"]      # one per group at a time
    assert [m["Group"] for m in msgs] == ["A", "B", None]
    assert recv(client, acc, "g", Max=10) == []
    assert counts(client, acc, "g") == (2, 0, 3)                   # a1, a2 held: Ready
    # releasing a0 (not acking) keeps the group's order: a0 again, a1 still held
    r = client.put(f"/db/{acc}/queue/g?receipt={msgs[0]['Receipt']}&visibility=0")
    assert r.status == 200
    (again,) = recv(client, acc, "g", Max=10)
    assert again["Body"] == "a0" and again["Attempts"] == 2
    for expect in ("a1", "a2"):
        client.db_ok(acc, {"QAck": [{"Queue": "g", "Receipt": again["Receipt"]}]})
        (again,) = recv(client, acc, "g", Max=10)
        assert again["Body"] == expect


def test_group_held_behind_scheduled(client, acc):
    later = push(client, acc, "g", "later", Group="A", Delay=3600)
    push(client, acc, "g", "now but after", Group="A")
    push(client, acc, "g", "other group", Group="B")
    assert [m["Body"] for m in recv(client, acc, "g", Max=10)] == ["other group"]
    s = stats(client, acc, "g")
    assert (s["Ready"], s["Delayed"], s["InFlight"]) == (1, 1, 1)
    # cancelling the scheduled head lets the next of the group go
    r = client.delete(f"/db/{acc}/queue/g?id={later}")
    assert r.status == 200, r
    assert [m["Body"] for m in recv(client, acc, "g", Max=10)] == ["now but after"]


def test_cancel_held_group_member(client, acc):
    push(client, acc, "g", "head", Group="A")
    mid = push(client, acc, "g", "middle", Group="A")
    push(client, acc, "g", "tail", Group="A")
    assert client.delete(f"/db/{acc}/queue/g?id={mid}").status == 200
    (m,) = recv(client, acc, "g")
    client.db_ok(acc, {"QAck": [{"Queue": "g", "Receipt": m["Receipt"]}]})
    assert [m["Body"] for m in recv(client, acc, "g", Max=10)] == ["tail"]


# ---- DedupID ------------------------------------------------------------------------------------------
def test_dedup(client, acc):
    out = client.db_ok(acc, {"QPush": [{"Queue": "m", "Body": 1, "DedupID": "d"},
                                       {"Queue": "m", "Body": 2, "DedupID": "d"},
                                       {"Queue": "n", "Body": 3, "DedupID": "d"}]})
    a, b, c = out["QPush"]
    assert "Duplicate" not in a and b == {"Queue": "m", "ID": a["ID"], "Duplicate": True}
    assert "Duplicate" not in c and c["ID"] != a["ID"]            # per queue
    again = client.db_ok(acc, {"QPush": [{"Queue": "m", "Body": 9, "DedupID": "d"}]})["QPush"][0]
    assert again == {"Queue": "m", "ID": a["ID"], "Duplicate": True}
    (m,) = recv(client, acc, "m", Max=10)
    client.db_ok(acc, {"QAck": [{"Queue": "m", "Receipt": m["Receipt"]}]})
    # acked, still within the window: still a duplicate
    assert client.db_ok(acc, {"QPush": [{"Queue": "m", "Body": 9, "DedupID": "d"}]})["QPush"][0]["Duplicate"] is True
    assert counts(client, acc, "m") == (0, 0, 0)


# ---- bad input -----------------------------------------------------------------------------------------
BAD_PUSHES = [
    {"QPush": {"Queue": "q", "Body": 1}},
    {"QPush": [1]},
    {"QPush": [{"Queue": "q"}]},                                     # Body required
    {"QPush": [{"Body": 1}]},
    {"QPush": [{"Queue": "", "Body": 1}]},
    {"QPush": [{"Queue": 5, "Body": 1}]},
    {"QPush": [{"Queue": "a\u0000b", "Body": 1}]},
    {"QPush": [{"Queue": "x" * 252, "Body": 1}]},                    # no room for ":dead"
    {"QPush": [{"Queue": "q", "Body": 1, "Extra": 1}]},
    {"QPush": [{"Queue": "q", "Body": 1, "Delay": -1}]},
    {"QPush": [{"Queue": "q", "Body": 1, "Delay": "5"}]},
    {"QPush": [{"Queue": "q", "Body": 1, "Delay": 366 * 86400}]},
    {"QPush": [{"Queue": "q", "Body": 1, "Delay": 1, "At": 1}]},
    {"QPush": [{"Queue": "q", "Body": 1, "At": -5}]},
    {"QPush": [{"Queue": "q", "Body": 1, "At": 4e12}]},
    {"QPush": [{"Queue": "q", "Body": 1, "At": None}]},
    {"QPush": [{"Queue": "q", "Body": 1, "Group": 7}]},
    {"QPush": [{"Queue": "q", "Body": 1, "Group": ""}]},
    {"QPush": [{"Queue": "q", "Body": 1, "DedupID": None}]},
    {"QPush": [{"Queue": "q", "Body": 1, "MaxAttempts": -1}]},
    {"QPush": [{"Queue": "q", "Body": 1, "MaxAttempts": 1.5}]},
    {"QPush": [{"Queue": "q", "Body": 1, "MaxAttempts": True}]},
]

BAD_RECEIPTS = [None, 5, "", "abc", "1-1", "1-1-XYZWXYZW", "0-1-00000000", "1-0-00000000",
                "1-1-0000000", "1-1-000000000", "99999999999999999999-1-00000000", "1-1-00000000 ",
                " 1-1-00000000", "1-1-0000000g", "١-1-00000000", "1-1-00000000\n", ["1-1-00000000"],
                {"r": 1}, "1.5-1-00000000", "-1-1-00000000",
                "9223372036854775808-1-00000000", "1-2147483648-00000000", "1-1-ABCDEF12",
                "1-1-00000000-", "1--1-00000000", "01-1-00000000", "1-01-00000000", "1-12345678901-00000000"]


def _unchanged(client, acc, before_kv):
    assert client.kv(acc, "k") == before_kv
    assert counts(client, acc, "q") == (1, 0, 1)
    assert counts(client, acc, "q:dead") == (0, 0, 0)


@pytest.fixture
def busy(client, acc):
    """A queue with one message in flight and one ready, and a key."""
    client.db_ok(acc, {"KVSet": [{"Key": "k", "Value": 1}]})
    push(client, acc, "q", "first")
    push(client, acc, "q", "second")
    (m,) = recv(client, acc, "q")
    return m, client.kv(acc, "k")


@pytest.mark.parametrize("body", BAD_PUSHES)
def test_bad_push_changes_nothing(client, acc, busy, body):
    body = dict(body, KVSet=[{"Key": "k", "Value": 2}])
    assert_error(client.db(acc, body), 400, ("bad_key" if _bad_key(body) else "bad_request"))
    _unchanged(client, acc, busy[1])


def _bad_key(body):
    e = body["QPush"][0] if isinstance(body["QPush"], list) and body["QPush"] and isinstance(body["QPush"][0], dict) else {}
    q = e.get("Queue", 0)
    return (isinstance(q, str) and (q == "" or "\u0000" in q or len(q) > 200)) or e.get("Group") == ""


def test_receipts_have_their_documented_shape_and_each_acks_its_delivery(client, acc):
    # ID-ATTEMPTS-CHECK, the check 8 lowercase hex digits (leading zeros kept): 64
    # deliveries make a check starting with 0 all but certain
    for i in range(64):
        client.db_ok(acc, {"QPush": [{"Queue": "shape", "Body": i}]})
    got = client.post(f"/queue/{acc}", {"Queue": "shape", "Max": 64}).json["Messages"]
    assert len(got) == 64
    for m in got:
        assert re.fullmatch(r"[1-9][0-9]*-1-[0-9a-f]{8}", m["Receipt"]), m
        assert m["Receipt"].split("-")[0] == m["ID"]
    assert len({m["Receipt"] for m in got}) == 64
    for m in got:
        client.db_ok(acc, {"QAck": [{"Queue": "shape", "Receipt": m["Receipt"]}]})
    assert counts(client, acc, "shape") == (0, 0, 0)


@pytest.mark.parametrize("receipt", BAD_RECEIPTS)
def test_bad_receipt_changes_nothing(client, acc, busy, receipt):
    body = {"QAck": [{"Queue": "q", "Receipt": receipt}], "KVSet": [{"Key": "k", "Value": 2}]}
    assert_error(client.db(acc, body), 400, "bad_request")
    _unchanged(client, acc, busy[1])
    if isinstance(receipt, str):
        from urllib.parse import quote
        assert_error(client.delete(f"/db/{acc}/queue/q?receipt={quote(receipt)}"), 400, "bad_request")
        assert_error(client.put(f"/db/{acc}/queue/q?receipt={quote(receipt)}&visibility=5"), 400, "bad_request")
        _unchanged(client, acc, busy[1])


def test_bad_ack_entries(client, acc, busy):
    m = busy[0]
    for body in ({"QAck": [{"Queue": "q"}]},
                 {"QAck": [{"Receipt": m["Receipt"]}]},
                 {"QAck": [{"Queue": "q", "Receipt": m["Receipt"], "X": 1}]},
                 {"QAck": [{"Queue": "q", "Receipt": m["Receipt"]}, {"Queue": "q", "Receipt": m["Receipt"]}]},
                 {"QAck": "x"}, {"QAck": [[]]}):
        assert_error(client.db(acc, dict(body, KVSet=[{"Key": "k", "Value": 2}])), 400, "bad_request")
        _unchanged(client, acc, busy[1])


def test_push_body_over_value_limit(limits_server, acc):
    c = limits_server.client()
    try:
        assert_error(c.db(acc, {"QPush": [{"Queue": "q", "Body": "x" * 2000}]}), 413, "too_large")
        assert_error(c.post(f"/db/{acc}/queue/q", "x" * 2000), 413, "too_large")
        assert counts(c, acc, "q") == (0, 0, 0)
        # max_ops counts pushes and acks
        assert_error(c.db(acc, {"QPush": [{"Queue": "q", "Body": i} for i in range(11)]}), 413, "too_large")
        assert counts(c, acc, "q") == (0, 0, 0)
    finally:
        c.close()


@pytest.mark.parametrize("body", [
    b"", b"[]", b"{", b'{"Max": 1}', b'{"Queue": 1}', b'{"Queue": ""}', b'{"Queue": "q", "X": 1}',
    b'{"Queue": "q", "Max": 0}', b'{"Queue": "q", "Max": 101}', b'{"Queue": "q", "Max": "1"}',
    b'{"Queue": "q", "Wait": -1}', b'{"Queue": "q", "Wait": 301}', b'{"Queue": "q", "Visibility": 0}',
    b'{"Queue": "q", "Visibility": 43201}', b'{"Queue": "q", "Visibility": null}',
])
def test_bad_receive_changes_nothing(client, acc, busy, body):
    r = client.post(f"/queue/{acc}", body)
    assert r.status == 400 and r.json["Code"] in ("bad_request", "bad_key"), r
    _unchanged(client, acc, busy[1])


@pytest.mark.parametrize("method,path", [
    ("POST", "/db/{acc}/queue/q?delay=1&at=5"),
    ("POST", "/db/{acc}/queue/q?delay=abc"),
    ("POST", "/db/{acc}/queue/q?at=abc"),
    ("POST", "/db/{acc}/queue/q?at=nan"),
    ("POST", "/db/{acc}/queue/q?priority=1"),
    ("POST", "/db/{acc}/queue/q?group="),
    ("PUT", "/db/{acc}/queue/q?receipt=1-1-00000000"),
    ("PUT", "/db/{acc}/queue/q?visibility=5"),
    ("PUT", "/db/{acc}/queue/q?receipt=1-1-00000000&visibility=-1"),
    ("PUT", "/db/{acc}/queue/q?receipt=1-1-00000000&visibility=43201"),
    ("PUT", "/db/{acc}/queue/q?receipt=1-1-00000000&visibility=x"),
    ("DELETE", "/db/{acc}/queue/q"),
    ("DELETE", "/db/{acc}/queue/q?id=1&receipt=1-1-00000000"),
    ("DELETE", "/db/{acc}/queue/q?id=abc"),
    ("DELETE", "/db/{acc}/queue/q?id=0"),
    ("DELETE", "/db/{acc}/queue/q?id=-3"),
    ("DELETE", "/db/{acc}/queue/q?id=1&id=2"),
    ("GET", "/db/{acc}/queue/q?x=1"),
    ("GET", "/db/{acc}/queue/" + "x" * 255),
])
def test_bad_rest_changes_nothing(client, acc, busy, method, path):
    r = client.request(method, path.format(acc=acc), body=b"1" if method == "POST" else None)
    assert r.status == 400 and r.json["Code"] in ("bad_request", "bad_key"), r
    _unchanged(client, acc, busy[1])


def test_rest_push_body_must_be_json(client, acc, busy):
    for body in (b"", b"not json", b"{", b"[1,"):
        r = client.post(f"/db/{acc}/queue/q", body)
        assert_error(r, 400, "bad_request")
    _unchanged(client, acc, busy[1])
