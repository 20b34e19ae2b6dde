"""Queues over time, against the real server: waiting receivers (first come, first
served; woken by a push; one whose connection closed is never handed a message),
visibility running out (redelivery, Attempts, stale receipts, {Queue}:dead after
MaxAttempts), DedupID's window, and durability across SIGKILL (no acked message comes
back, no pushed message is lost, a delivery in flight ends after its deadline also
across a restart).

Timing never decides pass/fail: where something happens "later", the test waits for
it with a generous deadline (test_ttl.until; the waiting-receiver count is read
from /metrics).
"""
from __future__ import annotations

import re
import time

from helpers import http_request
from test_queues import counts, push, recv
from test_ttl import until


def receivers(srv) -> int:
    c = srv.client()
    try:
        body = c.get("/metrics").body.decode()
    finally:
        c.close()
    m = re.search(r"^cdragon_queue_receivers (\S+)$", body, re.M)
    return int(float(m.group(1)))


def park(srv, acc, queue, **kw):
    """A raw connection with a receive waiting on it (sent, not yet answered)."""
    raw = srv.raw(timeout=30)
    raw.send(http_request("POST", f"/queue/{acc}", dict({"Queue": queue, "Wait": 60}, **kw)))
    return raw


def test_push_wakes_waiting_receivers_in_order(server, client, acc):
    parked = []
    base = receivers(server)
    for i in range(3):
        parked.append(park(server, acc, "q"))
        until(lambda: receivers(server) >= base + i + 1, "receiver parked")
    try:
        for i in range(3):
            push(client, acc, "q", i)
            r = parked[i].read_response()
            assert r.status == 200, r
            (m,) = r.json["Messages"]
            assert m["Body"] == i                # the earliest waiter gets the next message
            assert client.db_ok(acc, {"QAck": [{"Queue": "q", "Receipt": m["Receipt"]}]})
    finally:
        for p in parked:
            p.close()


def test_closed_receiver_is_never_handed_a_message(server, client, acc):
    base = receivers(server)
    gone = park(server, acc, "q")
    until(lambda: receivers(server) >= base + 1, "first receiver parked")
    stays = park(server, acc, "q", Max=5)
    until(lambda: receivers(server) >= base + 2, "second receiver parked")
    gone.close()
    until(lambda: receivers(server) <= base + 1, "closed receiver left")
    try:
        mid = push(client, acc, "q", "for the live one")
        r = stays.read_response()
        (m,) = r.json["Messages"]
        assert m["ID"] == mid and m["Attempts"] == 1
        assert counts(client, acc, "q") == (0, 0, 1)
    finally:
        stays.close()


def test_waiting_receiver_gets_scheduled_message(server, client, acc):
    at = time.time() + 0.3
    push(client, acc, "s", "due soon", At=at)
    r = client.post(f"/queue/{acc}", {"Queue": "s", "Wait": 60})
    assert [m["Body"] for m in r.json["Messages"]] == ["due soon"]
    assert time.time() >= at


def test_wait_ends_with_empty_list(server, client, acc):
    r = client.post(f"/queue/{acc}", {"Queue": "none", "Wait": 0.2})
    assert r.status == 200 and r.json == {"Messages": []}


def test_visibility_runs_out_redelivery_and_dead_letter(server, client, acc):
    mid = push(client, acc, "w", {"job": 1}, MaxAttempts=2)
    (m1,) = recv(client, acc, "w", Visibility=0.2)
    assert m1["Attempts"] == 1
    (m2,) = until(lambda: recv(client, acc, "w", Visibility=0.2), "redelivery")
    assert m2["ID"] == mid and m2["Attempts"] == 2
    r = client.db(acc, {"QAck": [{"Queue": "w", "Receipt": m1["Receipt"]}]})
    assert r.status == 409 and r.json["Code"] == "stale_receipt"
    # the second delivery runs out too: MaxAttempts reached, to w:dead with ID and body
    (d,) = until(lambda: recv(client, acc, "w:dead"), "dead letter")
    assert d["ID"] == mid and d["Body"] == {"job": 1} and d["Attempts"] == 3
    assert counts(client, acc, "w") == (0, 0, 0)
    assert client.db_ok(acc, {"QAck": [{"Queue": "w:dead", "Receipt": d["Receipt"]}]})
    r = client.put(f"/db/{acc}/queue/w?receipt={m2['Receipt']}&visibility=5")
    assert r.status == 409 and r.json["Code"] == "stale_receipt"


def test_release_at_max_attempts_goes_to_dead(client, acc):
    mid = push(client, acc, "r", "x", MaxAttempts=1)
    (m,) = recv(client, acc, "r")
    assert client.put(f"/db/{acc}/queue/r?receipt={m['Receipt']}&visibility=0").status == 200
    assert recv(client, acc, "r") == []
    (d,) = recv(client, acc, "r:dead")
    assert d["ID"] == mid and d["Attempts"] == 2          # Attempts counts on in :dead


def test_dedup_window_ends(server_factory):
    srv = server_factory(env={"CDRAGON_QUEUE_DEDUP_WINDOW": 0.3})
    c = srv.client()
    first = push(c, "a", "q", 1, DedupID="d")
    time.sleep(0.5)
    out = c.db_ok("a", {"QPush": [{"Queue": "q", "Body": 2, "DedupID": "d"}]})["QPush"][0]
    assert "Duplicate" not in out and out["ID"] != first
    assert counts(c, "a", "q") == (2, 0, 0)


def test_default_max_attempts_setting(server_factory):
    srv = server_factory(env={"CDRAGON_QUEUE_MAX_ATTEMPTS": 1})
    c = srv.client()
    push(c, "a", "q", "once")
    recv(c, "a", "q", Visibility=0.1)
    (d,) = until(lambda: recv(c, "a", "q:dead"), "dead letter")
    assert d["Body"] == "once"


def test_durable_across_sigkill(server_factory):
    srv = server_factory()
    c = srv.client()
    ids = [e["ID"] for e in c.db_ok("a", {"QPush": [{"Queue": "q", "Body": i} for i in range(20)]})["QPush"]]
    late = push(c, "a", "q", "scheduled", Delay=3600)
    grouped = [push(c, "a", "g", i, Group="G") for i in range(3)]
    acked = recv(c, "a", "q", Max=5, Visibility=600)
    c.db_ok("a", {"QAck": [{"Queue": "q", "Receipt": m["Receipt"]} for m in acked]})
    long_flight = recv(c, "a", "q", Max=3, Visibility=600)       # still in flight after restart
    short_flight = recv(c, "a", "q", Max=2, Visibility=1)        # comes back after its deadline
    (g0,) = recv(c, "a", "g", Visibility=600)
    c.db_ok("a", {"QPush": [{"Queue": "q", "Body": "dedup", "DedupID": "once"}]})
    srv.kill()                                                   # SIGKILL
    srv.start()
    c = srv.client()
    acked_ids = {m["ID"] for m in acked}
    # counts: 20 + dedup - 5 acked = 16 in q, 3 + 2 of them in flight (the short ones
    # may have ended already), 1 scheduled
    s = c.get("/db/a/queue/q").json
    assert s["Delayed"] == 1 and s["Ready"] + s["InFlight"] == 16
    # the long deliveries' receipts still work; the group is still held
    assert c.db_ok("a", {"QAck": [{"Queue": "q", "Receipt": long_flight[0]["Receipt"]}]})
    assert recv(c, "a", "g", Max=10) == []
    # everything else comes out: no acked message, each pushed one once (the short
    # deliveries again, with Attempts 2)
    got = {}
    deadline = time.time() + 30
    while len(got) < 13 and time.time() < deadline:
        for m in recv(c, "a", "q", Max=100, Wait=1):
            assert m["ID"] not in got
            got[m["ID"]] = m
    assert len(got) == 13
    assert not (set(got) & acked_ids)
    assert {m["ID"] for m in short_flight} <= set(got)
    assert all(got[m["ID"]]["Attempts"] == 2 for m in short_flight)
    assert set(got) | acked_ids | {m["ID"] for m in long_flight} == set(ids) | {
        next(m["ID"] for m in got.values() if m["Body"] == "dedup")}
    # the DedupID survived the restart
    again = c.db_ok("a", {"QPush": [{"Queue": "q", "Body": "dedup", "DedupID": "once"}]})["QPush"][0]
    assert again["Duplicate"] is True
    # the scheduled one is still there, and cancellable
    assert c.delete(f"/db/a/queue/q?id={late}").status == 200
    # the group goes on after its head is acked
    c.db_ok("a", {"QAck": [{"Queue": "g", "Receipt": g0["Receipt"]}]})
    assert [m["ID"] for m in recv(c, "a", "g", Max=10)] == [grouped[1]]
    # acked ones never come back, also after another hard restart
    for m in got.values():
        c.db_ok("a", {"QAck": [{"Queue": "q", "Receipt": m["Receipt"]}]})
    srv.kill()
    srv.start()
    c = srv.client()
    s = c.get("/db/a/queue/q").json
    assert (s["Ready"], s["Delayed"], s["InFlight"]) == (0, 0, 2)     # long_flight[1:]


def test_ids_keep_growing_across_restart(server_factory):
    srv = server_factory()
    c = srv.client()
    a = push(c, "a", "q", 1)
    (m,) = recv(c, "a", "q")
    c.db_ok("a", {"QAck": [{"Queue": "q", "Receipt": m["Receipt"]}]})
    srv.kill()
    srv.start()
    c = srv.client()
    b = push(c, "a", "q", 2)
    assert int(b) > int(a)


def test_read_token_cannot_push_or_receive(server_factory, tmp_path):
    import hashlib
    tok_r, tok_w = "cdt_reader", "cdt_writer"
    cfg = tmp_path / "tokens.toml"
    cfg.write_text("".join(
        f'[[token]]\nname = "{n}"\nsha256 = "{hashlib.sha256(t.encode()).hexdigest()}"\n'
        f'accounts = ["a"]\naccess = "{acc}"\n' for n, t, acc in (("r", tok_r, "read"), ("w", tok_w, "write"))))
    srv = server_factory(config=str(cfg))
    c = srv.client()
    R = {"Authorization": f"Bearer {tok_r}"}
    W = {"Authorization": f"Bearer {tok_w}"}
    r = c.request("POST", "/db/a", body={"QPush": [{"Queue": "q", "Body": 1}]}, headers=R)
    assert r.status == 403
    assert c.request("POST", "/queue/a", body={"Queue": "q"}, headers=R).status == 403
    assert c.request("POST", "/db/a/queue/q", body=1, headers=R).status == 403
    assert c.request("GET", "/db/a/queue/q", headers=R).json["Ready"] == 0
    assert c.request("POST", "/db/a/queue/q", body=1, headers=W).status == 200
    r = c.request("POST", "/queue/a", body={"Queue": "q"}, headers=W)
    assert [m["Body"] for m in r.json["Messages"]] == [1]



def test_freeze_answers_receivers_and_refuses_queue_writes(server_factory):
    srv = server_factory()
    c = srv.client()
    push(c, "a", "q", "x")
    (m,) = recv(c, "a", "q")
    waiting = park(srv, "a", "empty")
    until(lambda: receivers(srv) == 1, "receiver parked")
    try:
        assert c.request("POST", "/admin/freeze?acc=a").status == 200
        r = waiting.read_response()
        assert r.status == 503 and r.json["Code"] == "moving"
        for method, path, body in (("POST", "/db/a/queue/q", 1), ("POST", "/queue/a", {"Queue": "q"}),
                                   ("DELETE", f"/db/a/queue/q?receipt={m['Receipt']}", None)):
            r = c.request(method, path, body=body) if body is not None else c.request(method, path)
            assert r.status == 503 and r.json["Code"] == "moving", (path, r)
        r = c.db("a", {"QPush": [{"Queue": "q", "Body": 2}]})
        assert r.status == 503 and r.json["Code"] == "moving"
        assert counts(c, "a", "q") == (0, 0, 1)           # reads still served
        assert c.request("DELETE", "/admin/freeze?acc=a").status == 200
        assert c.db_ok("a", {"QAck": [{"Queue": "q", "Receipt": m["Receipt"]}]})
    finally:
        waiting.close()


def test_shutdown_answers_receivers(server_factory):
    srv = server_factory()
    waiting = park(srv, "a", "q")
    until(lambda: receivers(srv) == 1, "receiver parked")
    try:
        srv.proc.send_signal(15)
        r = waiting.read_response()
        assert r.status == 503 and r.json["Code"] == "shutting_down"
        assert srv.proc.wait(timeout=30) == 0
    finally:
        waiting.close()
