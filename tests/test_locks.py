"""Locks (API.md "Locks", the lock fields of POST /db/{acc} and the /lock/ resource
endpoints), against the real server over real sockets.

Non-blocking conflicts, blocking waits in FIFO order, waiters that go away, expiry
handover, extend and shorten, stale handles (fencing), lock + writes atomicity,
validation, restarts (handles only grow; held locks survive until their Till), mutual
exclusion under concurrency, 10,000 waiters on one key, the waiter cap, SIGTERM with
waiters, the REST routes and the bash guard from API.md.

Waiters are raw connections (helpers.Raw) whose answer is read later; "still waiting"
is checked by the connection staying silent for a short while (bounded polling only,
no timing thresholds as pass/fail).
"""
from __future__ import annotations

import asyncio
import json
import re
import resource
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest

from helpers import Raw, assert_error, http_request, unique_account

TILL_EPS = 0.002  # Till is sent with 3 decimals in lock answers, full precision in errors


# =========================================================================== local helpers


def ok(r) -> dict:
    assert r.status == 200, r
    assert r.content_type == "application/json", r.header_list
    return r.json


def lock(c, acc, name, dur=30, **extra) -> dict:
    """Take a lock without waiting: the {"Lock", "Till"} answer."""
    body = {"LockID": name, "LockDur": dur, **extra}
    out = c.db_ok(acc, body)
    assert isinstance(out["Lock"], int) and out["Lock"] > 0, out
    assert isinstance(out["Till"], (int, float)), out
    return out


def unlock(c, acc, name, handle, **extra) -> dict:
    return c.db_ok(acc, {"UnlockID": name, "Unlock": handle, **extra})


def lock_state(c, acc, name) -> dict:
    return ok(c.get(f"/db/{acc}/lock/{name}"))


def db_req(acc, body) -> bytes:
    return http_request("POST", f"/db/{acc}", body)


def rest_req(method, acc, name, query="") -> bytes:
    path = f"/db/{acc}/lock/{name}" + (f"?{query}" if query else "")
    return http_request(method, path, headers={"Content-Length": "0"})


def waiter(srv, data: bytes, timeout: float = 30.0) -> Raw:
    """Open a connection, send one (blocking) request, return the connection."""
    w = Raw(srv.port, timeout=timeout)
    w.send(data)
    return w


def still_waiting(w: Raw, wait: float = 0.3) -> bool:
    return not w.readable(wait)


def first_ready(waiters: list[Raw], timeout: float = 10.0) -> int:
    """Index of the first waiter that gets an answer (bounded polling)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i, w in enumerate(waiters):
            if w.readable(0):
                return i
        time.sleep(0.005)
    raise AssertionError("no waiter was answered in time")


def read_silently_closed(w: Raw, timeout: float = 3.0) -> bytes:
    """Whatever the server sends before it closes the connection (or before timeout)."""
    try:
        return w.wait_closed(timeout=timeout)
    except TimeoutError:
        return w.buf


def assert_till_close(a, b):
    assert abs(a - b) <= TILL_EPS, (a, b)


# =========================================================================== basics


def test_lock_answer_shape(client, acc):
    before = time.time()
    out = client.db_ok(acc, {"LockID": "L", "LockDur": 30})
    after = time.time()
    assert set(out) == {"Lock", "Till"}, out
    assert isinstance(out["Lock"], int) and out["Lock"] > 0
    assert before + 30 - TILL_EPS <= out["Till"] <= after + 30 + TILL_EPS


def test_default_lock_dur_is_30s(client, acc):
    before = time.time()
    out = client.db_ok(acc, {"LockID": "L"})
    assert before + 30 - TILL_EPS <= out["Till"] <= time.time() + 30 + TILL_EPS


def test_non_blocking_conflict_is_409_locked_with_holders_till(client, acc):
    held = lock(client, acc, "L", dur=30)
    body = assert_error(client.db(acc, {"LockID": "L"}), 409, "locked")
    assert_till_close(body["Till"], held["Till"])
    # LockWait 0 is the same as omitting it
    body = assert_error(client.db(acc, {"LockID": "L", "LockWait": 0}), 409, "locked")
    assert_till_close(body["Till"], held["Till"])
    # a conflict changes nothing: the holder still holds, its handle still works
    assert lock_state(client, acc, "L")["Locked"] is True
    assert unlock(client, acc, "L", held["Lock"]) == {}
    assert lock_state(client, acc, "L") == {"Locked": False}


def test_conflict_applies_none_of_the_writes(client, acc):
    lock(client, acc, "L")
    r = client.db(acc, {"LockID": "L", "KVSet": [{"Key": "x", "Value": 1}],
                        "Atomic": [{"Key": "c", "Add": 1}], "Seq": [{"Key": "s"}]})
    assert_error(r, 409, "locked")
    assert client.kv(acc, "x") == {"Key": "x", "Version": 0}
    assert client.counter(acc, "c") == 0
    assert client.seq_last(acc, "s") == 0


def test_handles_strictly_increase(client, acc):
    handles = []
    for i in range(5):
        h = lock(client, acc, f"k{i}")["Lock"]
        handles.append(h)
        unlock(client, acc, f"k{i}", h)
    h = lock(client, acc, "k0")["Lock"]
    handles.append(h)
    assert handles == sorted(handles) and len(set(handles)) == len(handles), handles


def test_locks_and_kv_keys_are_separate_namespaces(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "same", "Value": 1}]})
    lock(client, acc, "same")
    assert client.kv(acc, "same") == {"Key": "same", "Value": 1, "Version": 1}
    # and locks are per account
    other = unique_account("other")
    lock(client, other, "same")


def test_lock_with_writes_and_reads_in_one_request(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "r", "Value": "old"}]})
    out = client.db_ok(acc, {"LockID": "L", "KVGet": ["r"], "KVSet": [{"Key": "r", "Value": "new"}],
                             "Atomic": [{"Key": "c", "Add": 2}]})
    assert out["KV"] == [{"Key": "r", "Value": "old", "Version": 1}]
    assert out["KVSet"] == [{"Key": "r", "Version": 2}]
    assert out["Atomic"] == [{"Key": "c", "Value": 2}]
    assert isinstance(out["Lock"], int) and "Till" in out
    assert client.kv(acc, "r")["Value"] == "new"


# =========================================================================== waiting


def test_blocking_wait_is_granted_right_after_unlock(server, client, acc):
    held = lock(client, acc, "L", dur=30)
    w = waiter(server, db_req(acc, {"LockID": "L", "LockWait": 20, "LockDur": 30}))
    with w:
        assert still_waiting(w), "waiter answered while the lock was held"
        t_unlock = time.time()
        assert unlock(client, acc, "L", held["Lock"]) == {}   # the unlock's answer comes first
        r = w.read_final(timeout=10)
        out = ok(r)
        assert set(out) == {"Lock", "Till"}, out
        assert out["Lock"] > held["Lock"]
        assert out["Till"] >= t_unlock + 30 - TILL_EPS
        state = lock_state(client, acc, "L")
        assert state["Locked"] is True
        assert_till_close(state["Till"], out["Till"])


def test_unlock_answer_is_sent_before_the_waiters_grant(server, client, acc):
    """The waiter's answer arrives after the unlock's answer: whenever the waiter's
    socket turns readable, the unlocker's answer is already there too. Repeated, because
    both go out after the same disk sync, microseconds apart."""
    wrong = []
    for trial in range(20):
        held = lock(client, acc, "L", dur=30)
        w = waiter(server, db_req(acc, {"LockID": "L", "LockWait": 20, "LockDur": 30}))
        u = Raw(server.port)
        with w, u:
            assert still_waiting(w, 0.05)
            if trial % 2:
                u.send(rest_req("DELETE", acc, "L", f"handle={held['Lock']}"))
            else:
                u.send(db_req(acc, {"UnlockID": "L", "Unlock": held["Lock"]}))
            deadline = time.monotonic() + 10
            while True:
                assert time.monotonic() < deadline, "no answer to the unlock or the waiter"
                r, _, _ = select.select([u.sock, w.sock], [], [], 1)
                if r:
                    break
            if r == [w.sock]:
                wrong.append(trial)
            ok(u.read_final(timeout=10))
            out = ok(w.read_final(timeout=10))
            assert out["Lock"] > held["Lock"]
            unlock(client, acc, "L", out["Lock"])
    assert not wrong, f"the waiter's grant arrived before the unlocker's answer in trials {wrong} of 20"


def test_stale_unlock_with_lock_wait_fails_at_once(server, client, acc):
    """Order of evaluation: the Unlock handle is checked before waiting for LockID."""
    lock(client, acc, "B", dur=30)
    w = waiter(server, db_req(acc, {"UnlockID": "A", "Unlock": 999999999, "LockID": "B", "LockWait": 60}))
    with w:
        assert_error(w.read_final(timeout=10), 409, "not_lock_holder")   # not after 60 s


def test_pipelined_request_behind_a_waiter_is_answered_after_it(server, client, acc):
    held = lock(client, acc, "L", dur=30)
    w = Raw(server.port)
    with w:
        w.send(db_req(acc, {"LockID": "L", "LockWait": 20}) + http_request("GET", "/health")
               + db_req(acc, {"KVGet": ["x"]}))
        assert still_waiting(w)
        unlock(client, acc, "L", held["Lock"])
        first = ok(w.read_final(timeout=10))
        assert set(first) == {"Lock", "Till"}
        assert ok(w.read_final(timeout=10))["Status"] == "ok"
        assert ok(w.read_final(timeout=10)) == {"KV": [{"Key": "x", "Version": 0}]}


def test_waiting_connection_is_not_idle(timeouts_server):
    """A lock wait longer than the idle timeout (2 s here) is neither cut nor timed out."""
    acc = unique_account("idle")
    c = timeouts_server.client()
    held = lock(c, acc, "L", dur=3)
    w1 = waiter(timeouts_server, db_req(acc, {"LockID": "L", "LockWait": 10, "LockDur": 30}))
    w2 = waiter(timeouts_server, rest_req("POST", acc, "M", "dur=30"))
    ok(w2.read_final(timeout=5))
    w3 = waiter(timeouts_server, rest_req("POST", acc, "M", "wait=3.5"))
    with w1, w2, w3:
        out = ok(w1.read_final(timeout=15))            # granted at expiry, after 3 s
        assert out["Lock"] > held["Lock"]
        assert_error(w3.read_final(timeout=15), 409, "locked")   # its wait ran out, after 3.5 s
    c.close()


def test_lock_wait_runs_out_with_409_locked(server, client, acc):
    held = lock(client, acc, "L", dur=30)
    w = waiter(server, db_req(acc, {"LockID": "L", "LockWait": 0.3,
                                     "KVSet": [{"Key": "x", "Value": 1}]}))
    with w:
        body = assert_error(w.read_final(timeout=10), 409, "locked")
        assert_till_close(body["Till"], held["Till"])
    assert client.kv(acc, "x") == {"Key": "x", "Version": 0}
    unlock(client, acc, "L", held["Lock"])   # the holder is unaffected


def test_rest_wait_runs_out_with_409_locked(server, client, acc):
    held = lock(client, acc, "L", dur=30)
    w = waiter(server, rest_req("POST", acc, "L", "wait=0.3"))
    with w:
        body = assert_error(w.read_final(timeout=10), 409, "locked")
        assert_till_close(body["Till"], held["Till"])


def test_waiters_are_served_in_fifo_order(server, client, acc):
    held = lock(client, acc, "L", dur=30)
    n = 6
    ws = []
    try:
        for i in range(n):
            # alternate POST /db and REST waiters: one queue for both
            if i % 2 == 0:
                data = db_req(acc, {"LockID": "L", "LockWait": 30, "LockDur": 30})
            else:
                data = rest_req("POST", acc, "L", "wait=30&dur=30")
            ws.append(waiter(server, data))
            time.sleep(0.1)   # let the server park it before the next one arrives
        assert all(still_waiting(w, 0) for w in ws)
        handle = held["Lock"]
        order, handles = [], []
        pending = list(range(n))
        for _ in range(n):
            ok(client.delete(f"/db/{acc}/lock/L?handle={handle}"))
            got = pending[first_ready([ws[i] for i in pending])]
            out = ok(ws[got].read_final(timeout=10))
            pending.remove(got)
            # only one waiter at a time is granted
            assert all(still_waiting(ws[i], 0.1) for i in pending), "two waiters granted at once"
            order.append(got)
            handles.append(out["Lock"])
            assert out["Lock"] > handle
            handle = out["Lock"]
        assert order == list(range(n)), f"grant order {order}"
        assert handles == sorted(handles)
    finally:
        for w in ws:
            w.close()


def test_closed_waiter_is_skipped(server, client, acc):
    held = lock(client, acc, "L", dur=30)
    gone = waiter(server, rest_req("POST", acc, "L", "wait=30&dur=60&owner=gone"))
    time.sleep(0.1)
    nxt = waiter(server, rest_req("POST", acc, "L", "wait=30&dur=60&owner=next"))
    with nxt:
        assert still_waiting(gone) and still_waiting(nxt)
        gone.close()
        time.sleep(0.2)   # the server notices the close
        unlock(client, acc, "L", held["Lock"])
        # had the closed waiter been granted, it would hold the lock for 60 s
        out = ok(nxt.read_final(timeout=10))
        assert out["Lock"] > held["Lock"]
    state = lock_state(client, acc, "L")
    assert state["Locked"] is True and state["Owner"] == "next", state


def test_half_closed_waiter_leaves_the_queue(server, client, acc):
    held = lock(client, acc, "L", dur=30)
    half = waiter(server, db_req(acc, {"LockID": "L", "LockWait": 30, "LockDur": 60,
                                        "KVSet": [{"Key": "half", "Value": 1}]}))
    time.sleep(0.1)
    nxt = waiter(server, rest_req("POST", acc, "L", "wait=30&dur=60&owner=next"))
    with half, nxt:
        assert still_waiting(half) and still_waiting(nxt)
        half.sock.shutdown(socket.SHUT_WR)   # EOF from the client
        time.sleep(0.2)
        unlock(client, acc, "L", held["Lock"])
        out = ok(nxt.read_final(timeout=10))
        assert out["Lock"] > held["Lock"]
        leftover = read_silently_closed(half)
        assert b"200 OK" not in leftover and b'"Lock"' not in leftover, leftover
    state = lock_state(client, acc, "L")
    assert state["Locked"] is True and state["Owner"] == "next", state
    # the half-closed waiter's writes were never applied
    assert client.kv(acc, "half") == {"Key": "half", "Version": 0}


def test_half_closed_client_still_gets_answers_sent_before_the_wait(server, client, acc):
    """A pipelined request ahead of the wait is still answered after EOF."""
    held = lock(client, acc, "L", dur=30)
    w = Raw(server.port)
    with w:
        w.send(db_req(acc, {"KVSet": [{"Key": "before", "Value": 1}]})
               + db_req(acc, {"LockID": "L", "LockWait": 30}))
        first = ok(w.read_final(timeout=10))
        assert first == {"KVSet": [{"Key": "before", "Version": 1}], "Rev": 1}
        w.sock.shutdown(socket.SHUT_WR)
        time.sleep(0.2)
        unlock(client, acc, "L", held["Lock"])
        leftover = read_silently_closed(w)
        assert b'"Lock"' not in leftover, leftover
    assert lock_state(client, acc, "L") == {"Locked": False}


def test_expiry_hands_the_lock_to_the_waiter(server, client, acc):
    held = lock(client, acc, "L", dur=0.3)
    w = waiter(server, db_req(acc, {"LockID": "L", "LockWait": 5, "LockDur": 30}))
    with w:
        out = ok(w.read_final(timeout=10))
    assert out["Lock"] > held["Lock"]
    granted_at = out["Till"] - 30
    assert granted_at >= held["Till"] - 0.01, ("granted before the holder's Till", granted_at, held["Till"])
    # the expired holder's handle no longer works
    assert_error(client.db(acc, {"UnlockID": "L", "Unlock": held["Lock"]}), 409, "not_lock_holder")
    unlock(client, acc, "L", out["Lock"])


def test_expired_lock_is_free_without_waiters(client, acc):
    held = lock(client, acc, "L", dur=0.2)
    deadline = time.monotonic() + 10
    while lock_state(client, acc, "L")["Locked"]:
        assert time.monotonic() < deadline, "lock did not expire"
        time.sleep(0.05)
    out = lock(client, acc, "L")
    assert out["Lock"] > held["Lock"]


def test_waiter_with_failing_precondition_releases_and_next_waiter_gets_it(server, client, acc):
    held = lock(client, acc, "L", dur=30)
    bad = waiter(server, db_req(acc, {"LockID": "L", "LockWait": 30,
                                       "KVSet": [{"Key": "x", "Value": 1, "Version": 7}]}))
    time.sleep(0.1)
    good = waiter(server, db_req(acc, {"LockID": "L", "LockWait": 30, "LockDur": 30,
                                        "KVSet": [{"Key": "y", "Value": 2}]}))
    with bad, good:
        assert still_waiting(bad) and still_waiting(good)
        unlock(client, acc, "L", held["Lock"])
        body = assert_error(bad.read_final(timeout=10), 409, "precondition_failed")
        assert body["Failed"] == [{"Key": "x", "Version": 0}], body
        out = ok(good.read_final(timeout=10))
        assert out["KVSet"] == [{"Key": "y", "Version": 1}]
        assert out["Lock"] > held["Lock"]
    assert client.kv(acc, "x") == {"Key": "x", "Version": 0}
    unlock(client, acc, "L", out["Lock"])
    assert lock_state(client, acc, "L") == {"Locked": False}


def test_unlock_handle_is_checked_again_after_the_wait(server, client, acc):
    """Order of evaluation: when the wait ends, the Unlock handle is checked again."""
    a = lock(client, acc, "A", dur=0.3)
    b = lock(client, acc, "B", dur=30)
    w = waiter(server, db_req(acc, {"UnlockID": "A", "Unlock": a["Lock"], "LockID": "B",
                                     "LockWait": 20, "KVSet": [{"Key": "x", "Value": 1}]}))
    with w:
        assert still_waiting(w, 0.6)          # A expires meanwhile
        unlock(client, acc, "B", b["Lock"])
        assert_error(w.read_final(timeout=10), 409, "not_lock_holder")
    assert lock_state(client, acc, "B") == {"Locked": False}
    assert client.kv(acc, "x") == {"Key": "x", "Version": 0}


def test_unlock_one_and_lock_another_in_one_request(client, acc):
    a = lock(client, acc, "A")
    out = client.db_ok(acc, {"UnlockID": "A", "Unlock": a["Lock"], "LockID": "B", "LockDur": 30})
    assert set(out) == {"Lock", "Till"} and out["Lock"] > a["Lock"]
    assert lock_state(client, acc, "A") == {"Locked": False}
    assert lock_state(client, acc, "B")["Locked"] is True


# =========================================================================== extend / stale handles


def test_extend_keeps_handle_and_moves_till(client, acc):
    held = lock(client, acc, "L", dur=5)
    time.sleep(0.05)
    ext = client.db_ok(acc, {"LockID": "L", "UnlockID": "L", "Unlock": held["Lock"], "LockDur": 60})
    assert ext["Lock"] == held["Lock"]
    assert ext["Till"] > held["Till"] + 50
    state = lock_state(client, acc, "L")
    assert_till_close(state["Till"], ext["Till"])
    # extend can also shorten
    short = client.db_ok(acc, {"LockID": "L", "UnlockID": "L", "Unlock": held["Lock"], "LockDur": 1})
    assert short["Lock"] == held["Lock"]
    assert short["Till"] < ext["Till"] - 50
    # and the shortened lock really ends at its new Till
    deadline = time.monotonic() + 10
    while lock_state(client, acc, "L")["Locked"]:
        assert time.monotonic() < deadline, "shortened lock did not expire"
        time.sleep(0.05)
    assert time.time() >= short["Till"] - 0.01
    assert_error(client.db(acc, {"UnlockID": "L", "Unlock": held["Lock"]}), 409, "not_lock_holder")


def test_extend_while_others_wait_keeps_the_lock(server, client, acc):
    held = lock(client, acc, "L", dur=10)
    w = waiter(server, db_req(acc, {"LockID": "L", "LockWait": 30}))
    with w:
        assert still_waiting(w)
        ext = client.db_ok(acc, {"LockID": "L", "UnlockID": "L", "Unlock": held["Lock"], "LockDur": 60})
        assert ext["Lock"] == held["Lock"]
        assert still_waiting(w, 0.2)
        unlock(client, acc, "L", held["Lock"])
        assert ok(w.read_final(timeout=10))["Lock"] > held["Lock"]


def test_extend_with_writes_applies_them(client, acc):
    held = lock(client, acc, "L")
    ext = client.db_ok(acc, {"LockID": "L", "UnlockID": "L", "Unlock": held["Lock"], "LockDur": 30,
                             "KVSet": [{"Key": "x", "Value": 1}]})
    assert ext["Lock"] == held["Lock"] and ext["KVSet"] == [{"Key": "x", "Version": 1}]


def test_extend_of_an_expired_lock_is_not_lock_holder(client, acc):
    held = lock(client, acc, "L", dur=0.2)
    time.sleep(0.4)
    r = client.db(acc, {"LockID": "L", "UnlockID": "L", "Unlock": held["Lock"], "LockDur": 30})
    assert_error(r, 409, "not_lock_holder")
    assert lock_state(client, acc, "L") == {"Locked": False}


def test_unlock_with_writes_applies_them(client, acc):
    held = lock(client, acc, "L")
    out = unlock(client, acc, "L", held["Lock"], KVSet=[{"Key": "x", "Value": "done"}],
                 Atomic=[{"Key": "c", "Add": 5}])
    assert out == {"KVSet": [{"Key": "x", "Version": 1}], "Atomic": [{"Key": "c", "Value": 5}], "Rev": 1}
    assert lock_state(client, acc, "L") == {"Locked": False}


def test_stale_handle_unlock_is_rejected_and_writes_not_applied(client, acc):
    held = lock(client, acc, "L", dur=0.2)
    time.sleep(0.4)   # expired
    writes = {"KVSet": [{"Key": "x", "Value": "late"}], "Atomic": [{"Key": "c", "Add": 5}],
              "Seq": [{"Key": "s"}]}
    r = client.db(acc, {"UnlockID": "L", "Unlock": held["Lock"], **writes})
    assert_error(r, 409, "not_lock_holder")
    assert client.kv(acc, "x") == {"Key": "x", "Version": 0}
    assert client.counter(acc, "c") == 0
    assert client.seq_last(acc, "s") == 0
    # someone else takes the lock: the old handle still does not work, not even as a string
    new = lock(client, acc, "L")
    for h in (held["Lock"], str(held["Lock"])):
        r = client.db(acc, {"UnlockID": "L", "Unlock": h, **writes})
        assert_error(r, 409, "not_lock_holder")
    assert client.kv(acc, "x") == {"Key": "x", "Version": 0}
    assert client.counter(acc, "c") == 0
    # the new holder is unaffected
    assert lock_state(client, acc, "L")["Locked"] is True
    unlock(client, acc, "L", new["Lock"])


def test_unlock_of_a_never_held_lock_is_not_lock_holder(client, acc):
    r = client.db(acc, {"UnlockID": "never", "Unlock": 12345, "KVSet": [{"Key": "x", "Value": 1}]})
    assert_error(r, 409, "not_lock_holder")
    assert client.kv(acc, "x") == {"Key": "x", "Version": 0}


def test_unlock_with_another_locks_handle_is_rejected(client, acc):
    a = lock(client, acc, "A")
    b = lock(client, acc, "B")
    assert_error(client.db(acc, {"UnlockID": "A", "Unlock": b["Lock"]}), 409, "not_lock_holder")
    assert lock_state(client, acc, "A")["Locked"] is True
    unlock(client, acc, "A", a["Lock"])
    unlock(client, acc, "B", b["Lock"])


def test_handle_is_not_valid_in_another_account(client, acc):
    held = lock(client, acc, "L")
    other = unique_account("other")
    lock(client, other, "L")
    assert_error(client.db(other, {"UnlockID": "L", "Unlock": held["Lock"]}), 409, "not_lock_holder")


def test_double_unlock_is_not_lock_holder(client, acc):
    held = lock(client, acc, "L")
    unlock(client, acc, "L", held["Lock"])
    assert_error(client.db(acc, {"UnlockID": "L", "Unlock": held["Lock"]}), 409, "not_lock_holder")


# =========================================================================== lock + writes atomic


def test_lock_with_failing_precondition_is_not_held(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "x", "Value": 1}]})
    r = client.db(acc, {"LockID": "L", "LockDur": 30, "KVSet": [{"Key": "x", "Value": 2, "Version": 0}]})
    body = assert_error(r, 409, "precondition_failed")
    assert body["Failed"] == [{"Key": "x", "Version": 1}], body
    assert lock_state(client, acc, "L") == {"Locked": False}
    out = client.db_ok(acc, {"LockID": "L"})           # free: a non-blocking lock succeeds
    assert "Lock" in out
    assert client.kv(acc, "x") == {"Key": "x", "Value": 1, "Version": 1}


def test_lock_with_failing_ifeq_is_not_held(client, acc):
    r = client.db(acc, {"LockID": "L", "Atomic": [{"Key": "g", "Set": 5, "IfEq": 4}]})
    assert_error(r, 409, "precondition_failed")
    assert lock_state(client, acc, "L") == {"Locked": False}


def test_lock_with_duplicate_idempotency_id_is_not_held(client, acc):
    client.db_ok(acc, {"IdempotencyIDs": ["once"]})
    r = client.db(acc, {"LockID": "L", "IdempotencyIDs": ["once"]})
    assert_error(r, 409, "duplicate_request")
    assert lock_state(client, acc, "L") == {"Locked": False}


def test_lock_with_counter_overflow_is_not_held(client, acc):
    client.db_ok(acc, {"Atomic": [{"Key": "c", "Set": 2**63 - 1}]})
    r = client.db(acc, {"LockID": "L", "Atomic": [{"Key": "c", "Add": 1}]})
    assert_error(r, 400, "bad_request")
    assert lock_state(client, acc, "L") == {"Locked": False}


def test_unlock_with_failing_precondition_keeps_the_lock(client, acc):
    held = lock(client, acc, "L")
    r = client.db(acc, {"UnlockID": "L", "Unlock": held["Lock"],
                        "KVSet": [{"Key": "x", "Value": 1, "Version": 3}]})
    assert_error(r, 409, "precondition_failed")
    state = lock_state(client, acc, "L")
    assert state["Locked"] is True
    assert_till_close(state["Till"], held["Till"])
    unlock(client, acc, "L", held["Lock"])


# =========================================================================== validation


@pytest.mark.parametrize("body", [
    {"LockDur": 5, "KVGet": ["a"]},
    {"LockWait": 5, "KVGet": ["a"]},
    {"LockDur": 5},
    {"Unlock": 1, "KVGet": ["a"]},
    {"UnlockID": "L", "KVGet": ["a"]},
    {"UnlockID": "L"},
    {"Unlock": 1},
    {"UnlockID": "L", "Unlock": 0},
    {"UnlockID": "L", "Unlock": -1},
    {"UnlockID": "L", "Unlock": "0"},
    {"UnlockID": "L", "Unlock": "-3"},
    {"UnlockID": "L", "Unlock": "12abc"},
    {"UnlockID": "L", "Unlock": ""},
    {"UnlockID": "L", "Unlock": "9223372036854775808"},
    {"UnlockID": "L", "Unlock": 9223372036854775808},
    {"UnlockID": "L", "Unlock": 1.5},
    {"UnlockID": "L", "Unlock": True},
    {"UnlockID": "L", "Unlock": None},
    {"UnlockID": None, "Unlock": 1},
    {"LockID": None},
    {"LockID": "L", "LockDur": None},
    {"LockID": "L", "LockWait": None},
    {"LockID": "L", "LockDur": 0},
    {"LockID": "L", "LockDur": -1},
    {"LockID": "L", "LockDur": 7 * 24 * 3600 + 1},
    {"LockID": "L", "LockDur": "30"},
    {"LockID": "L", "LockWait": -1},
    {"LockID": "L", "LockWait": 301},
    {"LockID": "L", "LockWait": "5"},
    {"LockID": 5},
    {"UnlockID": 5, "Unlock": 1},
])
def test_lock_field_validation_is_400(client, acc, body):
    assert_error(client.db(acc, body), 400, "bad_request")
    assert lock_state(client, acc, "L") == {"Locked": False}


@pytest.mark.parametrize("name", ["", "a\u0000b", "x" * 257, "é" * 129])
@pytest.mark.parametrize("field", ["LockID", "UnlockID"])
def test_bad_lock_names_are_bad_key(client, acc, field, name):
    body = {"LockID": name} if field == "LockID" else {"UnlockID": name, "Unlock": 1}
    assert_error(client.db(acc, body), 400, "bad_key")


def test_lock_name_of_256_bytes_is_fine(client, acc):
    name = "é" * 128
    held = lock(client, acc, name)
    assert held["Lock"] > 0
    # the REST form names it percent-encoded (UTF-8)
    assert lock_state(client, acc, urllib.parse.quote(name))["Locked"] is True
    unlock(client, acc, name, held["Lock"])
    assert lock_state(client, acc, urllib.parse.quote(name)) == {"Locked": False}


def test_handle_as_decimal_string_is_accepted(client, acc):
    held = lock(client, acc, "L")
    ext = client.db_ok(acc, {"LockID": "L", "UnlockID": "L", "Unlock": str(held["Lock"]), "LockDur": 60})
    assert ext["Lock"] == held["Lock"]
    assert client.db_ok(acc, {"UnlockID": "L", "Unlock": str(held["Lock"])}) == {}
    assert lock_state(client, acc, "L") == {"Locked": False}


def test_max_lock_dur_and_wait_are_accepted(client, acc):
    out = client.db_ok(acc, {"LockID": "L", "LockDur": 7 * 24 * 3600, "LockWait": 300})
    assert out["Till"] > time.time() + 7 * 24 * 3600 - 5
    client.db_ok(acc, {"UnlockID": "L", "Unlock": out["Lock"]})


def test_fractional_lock_dur_is_accepted(client, acc):
    before = time.time()
    out = client.db_ok(acc, {"LockID": "L", "LockDur": 2.5})
    assert before + 2.5 - TILL_EPS <= out["Till"] <= time.time() + 2.5 + TILL_EPS


def test_validation_error_changes_nothing_even_with_valid_lock(client, acc):
    held = lock(client, acc, "L")
    r = client.db(acc, {"UnlockID": "L", "Unlock": held["Lock"], "KVSet": [{"Key": "x"}]})  # no Value
    assert_error(r, 400, "bad_request")
    assert lock_state(client, acc, "L")["Locked"] is True


# =========================================================================== restarts


@pytest.mark.parametrize("hard", [True, False], ids=["sigkill", "sigterm"])
def test_handles_strictly_increase_across_restarts(server_factory, hard):
    srv = server_factory()
    acc = unique_account("handles")
    seen = []
    for round_ in range(3):
        c = srv.client()
        for i in range(4):
            h = lock(c, acc, f"r{round_}-{i}")["Lock"]
            seen.append(h)
        # the highest handle is released before the restart: it lives only in the counter
        unlock(c, acc, f"r{round_}-3", seen[-1])
        c.close()
        srv.restart(hard=hard)
    c = srv.client()
    h = lock(c, acc, "after")["Lock"]
    seen.append(h)
    assert seen == sorted(seen) and len(set(seen)) == len(seen), seen


def test_handles_increase_after_sigkill_right_after_grants(server_factory):
    """Kill right after acknowledged grants (no quiet period): the next handle is
    still above every acknowledged one."""
    srv = server_factory()
    acc = unique_account("handles")
    top = 0
    for round_ in range(3):
        c = srv.client()
        for i in range(20):
            h = lock(c, acc, "k")["Lock"]
            assert h > top
            top = h
            unlock(c, acc, "k", h)
        srv.kill()
        c.close()
        srv.start()
    c = srv.client()
    assert lock(c, acc, "k")["Lock"] > top


@pytest.mark.parametrize("hard", [True, False], ids=["sigkill", "sigterm"])
def test_held_locks_survive_restart_until_their_till(server_factory, hard):
    srv = server_factory()
    acc = unique_account("survive")
    c = srv.client()
    long = lock(c, acc, "long", dur=120)
    owned = ok(c.post(f"/db/{acc}/lock/owned?owner=w%C3%B6rker-1&dur=120"))
    short = lock(c, acc, "short", dur=0.3)
    soon = lock(c, acc, "soon", dur=6)
    c.close()
    srv.restart(hard=hard)
    c = srv.client()

    # still held, same Till, same holder
    body = assert_error(c.db(acc, {"LockID": "long"}), 409, "locked")
    assert_till_close(body["Till"], long["Till"])
    st = lock_state(c, acc, "owned")
    assert st["Locked"] is True and st["Owner"] == "wörker-1", st
    assert_till_close(st["Till"], owned["Till"])
    # the short one is free once its Till has passed (a fast restart may beat it)
    while time.time() < short["Till"] + 0.05:
        time.sleep(0.02)
    assert lock_state(c, acc, "short") == {"Locked": False}
    fresh = lock(c, acc, "short")
    assert fresh["Lock"] > max(long["Lock"], owned["Lock"], short["Lock"], soon["Lock"])

    # the holder's handle / owner still work after the restart
    ext = c.db_ok(acc, {"LockID": "long", "UnlockID": "long", "Unlock": long["Lock"], "LockDur": 60})
    assert ext["Lock"] == long["Lock"]
    again = ok(c.post(f"/db/{acc}/lock/owned?owner=w%C3%B6rker-1&dur=60"))
    assert again["Lock"] == owned["Lock"]
    ok(c.delete(f"/db/{acc}/lock/owned?owner=w%C3%B6rker-1"))
    assert unlock(c, acc, "long", long["Lock"]) == {}

    # "soon" is held until its Till, then handed to a waiter
    if time.time() < soon["Till"] - 0.3:
        assert_error(c.db(acc, {"LockID": "soon"}), 409, "locked")
    out = c.db_ok(acc, {"LockID": "soon", "LockWait": 30, "LockDur": 30})
    assert out["Till"] - 30 >= soon["Till"] - 0.01, ("granted before Till", out, soon)
    assert out["Lock"] > fresh["Lock"]


def test_expired_lock_is_free_after_restart(server_factory):
    srv = server_factory()
    acc = unique_account("expired")
    c = srv.client()
    held = lock(c, acc, "L", dur=0.5)
    ok(c.post(f"/db/{acc}/lock/R?owner=o&dur=0.5"))
    c.close()
    srv.kill()
    while time.time() < held["Till"] + 0.2:
        time.sleep(0.05)
    srv.start()
    c = srv.client()
    assert lock_state(c, acc, "L") == {"Locked": False}
    assert lock_state(c, acc, "R") == {"Locked": False}
    assert lock(c, acc, "L")["Lock"] > held["Lock"]
    assert_error(c.delete(f"/db/{acc}/lock/R?owner=o"), 409, "not_lock_holder")


# =========================================================================== mutual exclusion


def test_mutual_exclusion_read_modify_write(server, acc):
    threads_n, iters = 20, 10
    errors: list[str] = []
    inside = [0]
    max_inside = [0]
    handles: list[int] = []
    guard = threading.Lock()

    def work():
        c = server.client(timeout=90)
        try:
            for _ in range(iters):
                out = c.db_ok(acc, {"LockID": "mutex", "LockWait": 120, "LockDur": 60, "KVGet": ["n"]})
                with guard:
                    inside[0] += 1
                    max_inside[0] = max(max_inside[0], inside[0])
                    handles.append(out["Lock"])
                v = out["KV"][0].get("Value", 0)
                with guard:
                    inside[0] -= 1
                c.db_ok(acc, {"UnlockID": "mutex", "Unlock": out["Lock"], "KVSet": [{"Key": "n", "Value": v + 1}]})
        except BaseException as e:  # reported below
            errors.append(repr(e))
        finally:
            c.close()

    ts = [threading.Thread(target=work) for _ in range(threads_n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in ts), "workers hung"
    assert not errors, errors[:5]
    c = server.client()
    assert c.kv(acc, "n")["Value"] == threads_n * iters
    assert max_inside[0] == 1
    assert len(set(handles)) == threads_n * iters
    assert lock_state(c, acc, "mutex") == {"Locked": False}
    c.close()


# =========================================================================== 10,000 waiters


async def _read_http(reader: asyncio.StreamReader, timeout: float) -> tuple[int, bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"\r\n[Cc]ontent-[Ll]ength:\s*(\d+)", head)
    body = await asyncio.wait_for(reader.readexactly(int(m.group(1))), timeout) if m else b""
    return status, head, body


def _req(method: str, path: str) -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()


async def _many_waiters(port: int, acc: str, n: int) -> dict:
    path = f"/db/{acc}/lock/hot"
    ctl_r, ctl_w = await asyncio.open_connection("127.0.0.1", port)
    ctl_w.write(_req("POST", path + "?dur=300"))
    status, _, body = await _read_http(ctl_r, 10)
    assert status == 200, body
    holder = json.loads(body)["Lock"]

    conns = []
    for start in range(0, n, 250):
        batch = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                       for _ in range(min(250, n - start))))
        for r, w in batch:
            w.write(_req("POST", path + "?wait=120&dur=300"))
        conns.extend(batch)
    for _, w in conns:
        await w.drain()

    # Every waiter is parked once one more waiter is refused with 429 (the cap is n).
    parked = False
    for _ in range(60):
        await asyncio.sleep(0.5)
        pr, pw = await asyncio.open_connection("127.0.0.1", port)
        pw.write(_req("POST", path + "?wait=0.2"))
        status, head, body = await _read_http(pr, 10)
        pw.close()
        if status == 429:
            parked = True
            break
        assert status == 409, (status, body)

    grants: list[tuple[int, int]] = []   # (waiter index, handle) in arrival order
    problems: list[str] = []

    async def serve(i, r, w):
        try:
            status, head, body = await _read_http(r, 150)
            if status != 200:
                problems.append(f"waiter {i}: {status} {body[:200]!r}")
                return
            h = json.loads(body)["Lock"]
            grants.append((i, h))
            w.write(_req("DELETE", f"{path}?handle={h}"))
            status, _, body = await _read_http(r, 30)
            if status != 200 or json.loads(body) != {"Locked": False}:
                problems.append(f"waiter {i}: unlock answered {status} {body[:200]!r}")
            # nothing else may arrive on this connection (exactly one grant)
            w.write_eof()
            extra = await asyncio.wait_for(r.read(), 10)
            if extra:
                problems.append(f"waiter {i}: unexpected extra bytes {extra[:200]!r}")
        except Exception as e:  # noqa: BLE001 - collected and reported
            problems.append(f"waiter {i}: {type(e).__name__}: {e}")
        finally:
            w.close()

    tasks = [asyncio.create_task(serve(i, r, w)) for i, (r, w) in enumerate(conns)]
    t0 = time.monotonic()
    ctl_w.write(_req("DELETE", f"{path}?handle={holder}"))
    status, _, body = await _read_http(ctl_r, 10)
    assert status == 200, body
    await asyncio.wait_for(asyncio.gather(*tasks), 150)
    elapsed = time.monotonic() - t0
    ctl_w.write(_req("GET", path))
    status, _, final = await _read_http(ctl_r, 10)
    ctl_w.close()
    return {"holder": holder, "grants": grants, "problems": problems, "parked": parked,
            "elapsed": elapsed, "final": json.loads(final)}


def test_ten_thousand_waiters_on_one_key_are_each_served_once(server_factory):
    n = 10_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = n + 1000   # per process: the test and the server each hold n sockets
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need) if hard == resource.RLIM_INFINITY
                                                else hard, hard))
    try:
        srv = server_factory(env={"CDRAGON_MAX_WAITERS_PER_KEY": n})   # inherits the limit
        acc = unique_account("many")
        res = asyncio.run(_many_waiters(srv.port, acc, n))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert not res["problems"], f"{len(res['problems'])} problems, e.g. {res['problems'][:5]}"
    assert res["parked"], "the 10,000 waiters were never all parked at once (no 429 for one more)"
    grants = res["grants"]
    assert len(grants) == n
    assert sorted(i for i, _ in grants) == list(range(n))          # each waiter exactly once
    handles = [h for _, h in grants]
    assert all(b > a for a, b in zip(handles, handles[1:])), "handles not increasing in grant order"
    # nobody else was granted in between: the handles are consecutive after the holder's
    assert handles == list(range(res["holder"] + 1, res["holder"] + 1 + n))
    assert res["final"] == {"Locked": False}
    print(f"\n10,000 waiters served in {res['elapsed']:.1f} s")
    srv.assert_alive()


# =========================================================================== limits and shutdown


def test_waiter_cap_per_key_is_429_too_many(server_factory):
    srv = server_factory(env={"CDRAGON_MAX_WAITERS_PER_KEY": 2})
    acc = unique_account("cap")
    c = srv.client()
    held = lock(c, acc, "L", dur=30)
    w1 = waiter(srv, db_req(acc, {"LockID": "L", "LockWait": 30}))
    time.sleep(0.1)
    w2 = waiter(srv, rest_req("POST", acc, "L", "wait=30"))
    time.sleep(0.2)
    with w1, w2:
        for r in (c.db(acc, {"LockID": "L", "LockWait": 5, "KVSet": [{"Key": "x", "Value": 1}]}),
                  c.post(f"/db/{acc}/lock/L?wait=5")):
            assert_error(r, 429, "too_many")
            assert r.header("Retry-After") is not None and int(r.header("Retry-After")) >= 0, r.header_list
        assert c.kv(acc, "x") == {"Key": "x", "Version": 0}
        # a non-blocking attempt is not a waiter: still 409 locked
        assert_error(c.db(acc, {"LockID": "L"}), 409, "locked")
        # the cap is per key
        other = lock(c, acc, "M")
        w3 = waiter(srv, db_req(acc, {"LockID": "M", "LockWait": 30}))
        with w3:
            assert still_waiting(w3)
            unlock(c, acc, "M", other["Lock"])
            ok(w3.read_final(timeout=10))
        # the queued waiters are unaffected: first in, first served
        assert still_waiting(w1, 0.1) and still_waiting(w2, 0.1)
        unlock(c, acc, "L", held["Lock"])
        ok(w1.read_final(timeout=10))
        assert still_waiting(w2, 0.2)


def _sigterm_with_waiters(srv, acc):
    """Hold L and M, park three waiters, SIGTERM: the waiters' answers and the exit code."""
    c = srv.client()
    lock(c, acc, "L", dur=60)
    lock(c, acc, "M", dur=60)
    c.close()
    ws = [waiter(srv, db_req(acc, {"LockID": "L", "LockWait": 60, "KVSet": [{"Key": "x", "Value": 1}]})),
          waiter(srv, rest_req("POST", acc, "L", "wait=60&owner=w2")),
          waiter(srv, db_req(acc, {"LockID": "M", "LockWait": 60}))]
    time.sleep(0.3)
    assert all(still_waiting(w, 0) for w in ws)
    srv.proc.send_signal(signal.SIGTERM)
    answers = []
    try:
        for w in ws:
            answers.append(w.read_final(timeout=10))   # promptly: well before their LockWait
        code = srv.proc.wait(timeout=15)
    finally:
        for w in ws:
            w.close()
    return answers, code


def test_sigterm_answers_waiters_503_and_exits_0(server_factory):
    srv = server_factory()
    acc = unique_account("term")
    answers, code = _sigterm_with_waiters(srv, acc)
    for r in answers:
        assert_error(r, 503, "shutting_down")
    assert code == 0, srv.log_tail()
    # nothing the waiters asked for was applied; the held locks are still held
    srv.start()
    c = srv.client()
    assert c.kv(acc, "x") == {"Key": "x", "Version": 0}
    st = lock_state(c, acc, "L")
    assert st["Locked"] is True and st["Owner"] is None, st
    c.close()


def test_sigterm_waiter_answers_carry_connection_close(server_factory):
    """API.md: responses after the signal carry `Connection: close`."""
    srv = server_factory()
    answers, code = _sigterm_with_waiters(srv, unique_account("term"))
    assert code == 0
    for r in answers:
        assert r.status == 503, r
        assert (r.header("Connection") or "").lower() == "close", r.header_list


def test_total_waiter_cap_is_429_too_many(server_factory):
    srv = server_factory(env={"CDRAGON_MAX_WAITERS": 2})
    acc = unique_account("cap")
    c = srv.client()
    for k in ("A", "B", "C"):
        lock(c, acc, k)
    w1 = waiter(srv, db_req(acc, {"LockID": "A", "LockWait": 30}))
    w2 = waiter(srv, db_req(acc, {"LockID": "B", "LockWait": 30}))
    time.sleep(0.2)
    with w1, w2:
        r = c.db(acc, {"LockID": "C", "LockWait": 5})
        assert_error(r, 429, "too_many")
        assert r.header("Retry-After") is not None
    # once those waiters left, there is room again
    time.sleep(0.2)
    lock(c, acc, "D")
    w3 = waiter(srv, db_req(acc, {"LockID": "D", "LockWait": 0.2}))
    with w3:
        assert_error(w3.read_final(timeout=10), 409, "locked")


# =========================================================================== REST


def test_rest_lock_get_and_delete_by_handle(client, acc):
    before = time.time()
    out = ok(client.post(f"/db/{acc}/lock/job?dur=20&owner=me"))
    assert set(out) == {"Lock", "Till"}
    assert before + 20 - TILL_EPS <= out["Till"] <= time.time() + 20 + TILL_EPS
    st = lock_state(client, acc, "job")
    assert st == {"Locked": True, "Till": st["Till"], "Owner": "me"}, st
    assert_till_close(st["Till"], out["Till"])
    r = client.get(f"/db/{acc}/lock/job")
    assert "Lock" not in r.json and out["Lock"] not in r.json.values()
    assert ok(client.delete(f"/db/{acc}/lock/job?handle={out['Lock']}")) == {"Locked": False}
    assert lock_state(client, acc, "job") == {"Locked": False}


def test_rest_lock_defaults(client, acc):
    before = time.time()
    out = ok(client.post(f"/db/{acc}/lock/job"))
    assert before + 30 - TILL_EPS <= out["Till"] <= time.time() + 30 + TILL_EPS
    assert_error(client.post(f"/db/{acc}/lock/job"), 409, "locked")   # wait defaults to 0


def test_rest_lock_without_owner_reads_owner_null(client, acc):
    lock(client, acc, "job")
    st = lock_state(client, acc, "job")
    assert st["Locked"] is True and "Owner" in st and st["Owner"] is None, st


def test_rest_id_is_an_alias_for_owner(client, acc):
    out = ok(client.post(f"/db/{acc}/lock/job?id=host-7&dur=30"))
    assert lock_state(client, acc, "job")["Owner"] == "host-7"
    again = ok(client.post(f"/db/{acc}/lock/job?id=host-7&dur=30"))
    assert again["Lock"] == out["Lock"]
    ok(client.delete(f"/db/{acc}/lock/job?owner=host-7"))
    assert lock_state(client, acc, "job") == {"Locked": False}


def test_rest_same_owner_extends_and_keeps_handle_even_while_others_wait(server, client, acc):
    first = ok(client.post(f"/db/{acc}/lock/job?owner=A&dur=10"))
    w = waiter(server, rest_req("POST", acc, "job", "owner=B&wait=30&dur=30"))
    with w:
        assert still_waiting(w)
        time.sleep(0.05)
        again = ok(client.post(f"/db/{acc}/lock/job?owner=A&dur=60"))
        assert again["Lock"] == first["Lock"]
        assert again["Till"] > first["Till"] + 40
        st = lock_state(client, acc, "job")
        assert st["Owner"] == "A"
        assert_till_close(st["Till"], again["Till"])
        # it can shorten too
        short = ok(client.post(f"/db/{acc}/lock/job?owner=A&dur=20"))
        assert short["Lock"] == first["Lock"] and short["Till"] < again["Till"]
        # another owner (or none) is refused while A holds it
        assert_error(client.post(f"/db/{acc}/lock/job?owner=C"), 409, "locked")
        assert_error(client.post(f"/db/{acc}/lock/job"), 409, "locked")
        assert still_waiting(w, 0.1)
        ok(client.delete(f"/db/{acc}/lock/job?owner=A"))
        out = ok(w.read_final(timeout=10))
        assert out["Lock"] > first["Lock"]
    st = lock_state(client, acc, "job")
    assert st["Owner"] == "B"


def test_rest_wait_is_granted_after_delete(server, client, acc):
    held = ok(client.post(f"/db/{acc}/lock/job?owner=A"))
    w = waiter(server, rest_req("POST", acc, "job", "owner=B&wait=20&dur=15"))
    with w:
        assert still_waiting(w)
        ok(client.delete(f"/db/{acc}/lock/job?handle={held['Lock']}"))
        out = ok(w.read_final(timeout=10))
        assert set(out) == {"Lock", "Till"} and out["Lock"] > held["Lock"]
    ok(client.delete(f"/db/{acc}/lock/job?owner=B"))


def test_rest_delete_of_free_lock_is_not_lock_holder(client, acc):
    assert_error(client.delete(f"/db/{acc}/lock/free?handle=1"), 409, "not_lock_holder")
    assert_error(client.delete(f"/db/{acc}/lock/free?owner=x"), 409, "not_lock_holder")


def test_rest_delete_of_someone_elses_lock_is_not_lock_holder(client, acc):
    held = ok(client.post(f"/db/{acc}/lock/job?owner=A&dur=30"))
    assert_error(client.delete(f"/db/{acc}/lock/job?owner=B"), 409, "not_lock_holder")
    assert_error(client.delete(f"/db/{acc}/lock/job?handle={held['Lock'] + 1000}"), 409, "not_lock_holder")
    st = lock_state(client, acc, "job")
    assert st["Locked"] is True and st["Owner"] == "A"
    assert_till_close(st["Till"], held["Till"])


def test_rest_delete_of_expired_lock_is_not_lock_holder(client, acc):
    held = ok(client.post(f"/db/{acc}/lock/job?owner=A&dur=0.2"))
    time.sleep(0.4)
    assert_error(client.delete(f"/db/{acc}/lock/job?owner=A"), 409, "not_lock_holder")
    assert_error(client.delete(f"/db/{acc}/lock/job?handle={held['Lock']}"), 409, "not_lock_holder")


def test_rest_delete_without_handle_or_owner_is_400(client, acc):
    ok(client.post(f"/db/{acc}/lock/job"))
    assert_error(client.delete(f"/db/{acc}/lock/job"), 400, "bad_request")
    assert lock_state(client, acc, "job")["Locked"] is True


@pytest.mark.parametrize("query", ["handle=0", "handle=-1", "handle=abc", "handle=1.5",
                                   "handle=9223372036854775808"])
def test_rest_delete_bad_handle_is_400(client, acc, query):
    assert_error(client.delete(f"/db/{acc}/lock/job?{query}"), 400, "bad_request")


@pytest.mark.parametrize("query", ["dur=0", "dur=-1", "dur=abc", "dur=604801", "wait=-1",
                                   "wait=301", "wait=x", "dur=nan", "dur=inf"])
def test_rest_bad_dur_or_wait_is_400(client, acc, query):
    assert_error(client.post(f"/db/{acc}/lock/job?{query}"), 400, "bad_request")
    assert lock_state(client, acc, "job") == {"Locked": False}


def test_rest_lock_and_post_db_share_one_lock_table(client, acc):
    out = ok(client.post(f"/db/{acc}/lock/shared?dur=30"))
    assert_error(client.db(acc, {"LockID": "shared"}), 409, "locked")
    assert unlock(client, acc, "shared", out["Lock"]) == {}
    held = lock(client, acc, "shared")
    assert_error(client.post(f"/db/{acc}/lock/shared"), 409, "locked")
    ok(client.delete(f"/db/{acc}/lock/shared?handle={held['Lock']}"))


def test_rest_lock_key_is_the_rest_of_the_path(client, acc):
    out = ok(client.post(f"/db/{acc}/lock/jobs/nightly%20run"))
    st = lock_state(client, acc, "jobs/nightly%20run")
    assert st["Locked"] is True
    assert_error(client.db(acc, {"LockID": "jobs/nightly run"}), 409, "locked")
    unlock(client, acc, "jobs/nightly run", out["Lock"])


@pytest.mark.parametrize("path_key", ["a%00b", "x" * 257])
def test_rest_bad_lock_name_is_bad_key(client, acc, path_key):
    assert_error(client.post(f"/db/{acc}/lock/{path_key}"), 400, "bad_key")


def test_rest_head_on_lock(client, acc):
    ok(client.post(f"/db/{acc}/lock/job?owner=o"))
    g = client.get(f"/db/{acc}/lock/job")
    h = client.head(f"/db/{acc}/lock/job")
    assert h.status == 200 and h.body == b""
    assert h.header("Content-Length") == str(len(g.body))


def test_rest_wrong_method_on_lock_is_405(client, acc):
    r = client.put(f"/db/{acc}/lock/job", {})
    assert_error(r, 405, "method_not_allowed")
    assert r.header("Allow") is not None


# =========================================================================== the bash guard

GUARD = r"""
set -u
URL=$1; ACC=$2; STOP=$3
curl -sf -m 10 -o /dev/null -X POST "$URL/db/$ACC/lock/nightly?owner=host-$$&dur=600" || exit 1
trap 'curl -sf -m 10 -o /dev/null -X DELETE "$URL/db/$ACC/lock/nightly?owner=host-$$"' EXIT
echo "locked $$"
for i in $(seq 1 600); do [ -e "$STOP" ] && break; sleep 0.05; done
exit 0
"""


def test_bash_guard_from_the_api_doc(server, client, acc, tmp_path):
    url = f"http://127.0.0.1:{server.port}"
    stop = tmp_path / "stop"
    first = subprocess.Popen(["bash", "-c", GUARD, "guard", url, acc, str(stop)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = first.stdout.readline()   # bounded: the script ends within ~30 s regardless
        assert line.startswith("locked "), (line, first.stderr.read() if first.poll() is not None else "")
        pid = int(line.split()[1])
        st = lock_state(client, acc, "nightly")
        assert st["Locked"] is True and st["Owner"] == f"host-{pid}", st
        assert st["Till"] > time.time() + 590

        # a second copy while the first holds the lock exits 1 and leaves the lock alone
        second = subprocess.run(["bash", "-c", GUARD, "guard", url, acc, str(stop)],
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 1, second
        assert "locked" not in second.stdout
        assert lock_state(client, acc, "nightly")["Owner"] == f"host-{pid}"
    finally:
        stop.touch()
        try:
            code = first.wait(timeout=30)
        except subprocess.TimeoutExpired:
            first.kill()
            raise
    assert code == 0
    assert lock_state(client, acc, "nightly") == {"Locked": False}   # the trap released it
    # and now another copy can run
    stop.unlink()
    third = subprocess.Popen(["bash", "-c", GUARD, "guard", url, acc, str(stop)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert third.stdout.readline().startswith("locked ")
    finally:
        stop.touch()
        assert third.wait(timeout=30) == 0
    assert lock_state(client, acc, "nightly") == {"Locked": False}


# ---- DELETE ?force: an operator's way out -------------------------------------------------
def test_force_unlock_frees_a_lock_whose_handle_is_lost(client, acc):
    held = lock(client, acc, "F", dur=600)
    assert ok(client.delete(f"/db/{acc}/lock/F?force")) == {"Locked": False}
    assert lock_state(client, acc, "F") == {"Locked": False}
    # the lost handle no longer holds it: its writes are fenced off
    r = client.db(acc, {"UnlockID": "F", "Unlock": held["Lock"], "KVSet": [{"Key": "x", "Value": 1}]})
    assert_error(r, 409, "not_lock_holder")
    assert client.db_ok(acc, {"KVGet": ["x"]})["KV"] == [{"Key": "x", "Version": 0}]


def test_force_unlock_hands_the_lock_to_the_next_waiter_with_a_higher_handle(server, client, acc):
    held = lock(client, acc, "F", dur=600)
    w = waiter(server, db_req(acc, {"LockID": "F", "LockWait": 20, "LockDur": 30}))
    with w:
        assert still_waiting(w)
        assert ok(client.delete(f"/db/{acc}/lock/F?force")) == {"Locked": False}
        out = ok(w.read_final(timeout=10))
        assert out["Lock"] > held["Lock"]
        assert lock_state(client, acc, "F")["Locked"] is True


def test_force_unlock_of_a_free_lock_is_200(client, acc):
    assert ok(client.delete(f"/db/{acc}/lock/never?force")) == {"Locked": False}
    held = lock(client, acc, "F", dur=30)
    unlock(client, acc, "F", held["Lock"])
    assert ok(client.delete(f"/db/{acc}/lock/F?force")) == {"Locked": False}


@pytest.mark.parametrize("query", ["force&handle=1", "force&owner=me", "force=no"])
def test_force_goes_alone(client, acc, query):
    held = lock(client, acc, "F", dur=30)
    assert_error(client.delete(f"/db/{acc}/lock/F?{query}"), 400, "bad_request")
    assert lock_state(client, acc, "F")["Locked"] is True
    unlock(client, acc, "F", held["Lock"])


def test_force_unlock_survives_a_restart(server_factory):
    srv = server_factory()
    c = srv.client()
    acc = unique_account("force")
    lock(c, acc, "F", dur=600)
    assert ok(c.delete(f"/db/{acc}/lock/F?force")) == {"Locked": False}
    c.close()
    srv.restart(hard=True)          # SIGKILL: the release was acknowledged, so it is durable
    c = srv.client()
    assert lock_state(c, acc, "F") == {"Locked": False}
    c.close()
