"""Watches (API.md "POST /watch/{acc}" and "GET .../kv/{key}?watch=V"), against the real
server over real sockets.

Key watches answer {"Key","Value","Version"} (no Value when Version is 0): at once when
the key's version differs from the one sent, else when it changes, else on Timeout with
the unchanged state. Prefix watches answer {"Rev","KV":[...]} with deleted keys as
{"Key","Version": <rev of the delete>,"Deleted": true}; a revision older than what the
server still knows answers 410 compacted with Rev. On SIGTERM pending watches are
answered at once with their current state.

"Parked" below means: the watch request was sent and no answer came within a short
quiet period, followed by a round trip on another connection (the server runs one
event loop, so by then it has read the watch). These are bounded waits, never
pass/fail timing thresholds.

Ordering is checked with kernel receive timestamps (SO_TIMESTAMPNS) of the client's
sockets: one machine clock for every connection, stamped when a segment reaches the
socket, independent of the order in which the client gets round to reading them
(the client's own clock is the fallback where the kernel gives no timestamps).
"""
from __future__ import annotations

import json
import resource
import selectors
import signal
import socket
import struct
import time

import pytest

from helpers import Raw, Resp, assert_error, http_request, unique_account

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)   # Linux: SO_TIMESTAMPNS_OLD
SCM_TIMESTAMPNS = getattr(socket, "SCM_TIMESTAMPNS", SO_TIMESTAMPNS)
QUIET = 0.3          # seconds without an answer that count as "parked"
ANSWER = 10.0        # bounded wait for an answer that must come


# =========================================================================== local helpers


def watch_bytes(acc: str, body) -> bytes:
    return http_request("POST", f"/watch/{acc}", body)


def open_watch(server, acc: str, body, timeout: float = 20.0) -> Raw:
    """Send POST /watch/{acc} on a fresh connection; the caller reads the answer."""
    raw = server.raw(timeout=timeout)
    raw.send(watch_bytes(acc, body))
    return raw


def open_get_watch(server, path: str, timeout: float = 20.0) -> Raw:
    raw = server.raw(timeout=timeout)
    raw.send(http_request("GET", path))
    return raw


def barrier(server):
    """A round trip on a fresh connection: the server has read what was sent before."""
    c = server.client(timeout=10)
    try:
        assert c.get("/health").status == 200
    finally:
        c.close()


def assert_parked(server, *raws: Raw):
    for raw in raws:
        assert not raw.readable(QUIET), f"watch answered early: {raw.read_response(timeout=1)!r}"
    barrier(server)
    for raw in raws:
        assert not raw.readable(0), f"watch answered early: {raw.read_response(timeout=1)!r}"


def answer(raw: Raw, timeout: float = ANSWER) -> Resp:
    """The final answer of a watch (bounded wait)."""
    return raw.read_final(timeout=timeout)


def ok(resp: Resp):
    assert resp.status == 200, resp
    assert resp.content_type == "application/json", resp.header_list
    assert resp.header("Content-Length") == str(len(resp.body)), resp.header_list
    return resp.json


def put(client, acc: str, key: str, value) -> int:
    out = client.db_ok(acc, {"KVSet": [{"Key": key, "Value": value}]})
    return out["KVSet"][0]["Version"]


def delete(client, acc: str, key: str) -> int:
    out = client.db_ok(acc, {"KVSet": [{"Key": key, "Delete": True}]})
    return out["KVSet"][0]["Version"]


def prefix_now(client, acc: str, prefix: str = "") -> dict:
    """The client's way to learn the current revision: a prefix watch with Timeout 0
    from revision 0 on a still empty account."""
    r = client.post(f"/watch/{acc}", {"Prefix": prefix, "Version": 0, "Timeout": 0})
    return ok(r)


def by_key(kv: list) -> dict:
    out = {}
    for e in kv:
        assert e["Key"] not in out, f"key {e['Key']!r} appears twice in {kv!r}"
        out[e["Key"]] = e
    return out


def raise_nofile(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@pytest.fixture
def nofile():
    """Raise RLIMIT_NOFILE for this test (servers started inside inherit it)."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield raise_nofile
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)
    except (ValueError, OSError):
        pass


def parse_one(buf: bytes):
    """(Resp, rest) for one complete Content-Length framed response in buf, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    _, status, *reason = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    r = Resp(int(status), reason[0] if reason else "", headers, b"")
    n = int(r.header("Content-Length", "0"))
    if len(buf) < end + 4 + n:
        return None
    r.body = buf[end + 4:end + 4 + n]
    r.raw = buf[:end + 4 + n]
    return r, buf[end + 4 + n:]


class Peer:
    """One non-blocking connection in a Fleet: its answers with their arrival times
    (kernel receive timestamp of the first segment, and the client clock at the
    recvmsg that returned it)."""

    def __init__(self, sock: socket.socket, tag):
        self.sock = sock
        self.tag = tag
        self.buf = b""
        self.answers: list[tuple[Resp, int | None, float]] = []
        self.first_kts: int | None = None   # kernel ts of the first byte of the pending answer
        self.first_t: float | None = None
        self.closed = False
        self.on_answer = None
        self.first = False


class Fleet:
    """Many raw non-blocking connections driven by one epoll loop."""

    def __init__(self, port: int, timestamps: bool = True):
        self.port = port
        self.sel = selectors.DefaultSelector()
        self.peers: list[Peer] = []
        self.timestamps = timestamps

    def connect(self, tag=None) -> Peer:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.timestamps:
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:
                self.timestamps = False
        p = Peer(s, tag)
        self.peers.append(p)
        self.sel.register(s, selectors.EVENT_READ, p)
        return p

    def send(self, p: Peer, data: bytes):
        p.sock.setblocking(True)
        p.sock.settimeout(10)
        p.sock.sendall(data)
        p.sock.setblocking(False)

    def _read(self, p: Peer):
        while True:
            try:
                data, anc, _, _ = p.sock.recvmsg(65536, socket.CMSG_SPACE(16))
                t = time.perf_counter()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, anc = b"", []
            if not data:
                p.closed = True
                self.sel.unregister(p.sock)
                return
            kts = None
            for lvl, typ, d in anc:
                if lvl == socket.SOL_SOCKET and typ == SCM_TIMESTAMPNS and len(d) >= 16:
                    sec, ns = struct.unpack("qq", d[:16])
                    kts = sec * 1_000_000_000 + ns
            if not p.buf:
                p.first_kts, p.first_t = kts, t
            p.buf += data
            while True:
                got = parse_one(p.buf)
                if got is None:
                    break
                r, p.buf = got
                p.answers.append((r, p.first_kts, p.first_t))
                if p.buf:
                    p.first_kts, p.first_t = kts, t
                if p.on_answer is not None:
                    p.on_answer(p, r)

    def _poll(self, timeout: float):
        # peers with first=True (the writer) are read first in each wake-up, so that the
        # client clock of an acknowledgement is never later than that of a notification
        # that was ready in the same wake-up
        events = self.sel.select(timeout)
        events.sort(key=lambda e: not e[0].data.first)
        for key, _ in events:
            self._read(key.data)

    def run(self, until, timeout: float):
        """Poll until until() is true; AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("fleet: condition not reached in time")
            self._poll(min(left, 0.5))

    def quiet(self, peers, wait: float) -> bool:
        """True if none of `peers` got anything within `wait` seconds."""
        end = time.monotonic() + wait
        while time.monotonic() < end:
            self._poll(max(0.0, end - time.monotonic()))
        return not any(p.answers or p.buf or p.closed for p in peers)

    def close(self):
        for p in self.peers:
            try:
                self.sel.unregister(p.sock)
            except (KeyError, ValueError):
                pass
            p.sock.close()
        self.sel.close()


@pytest.fixture
def fleet_factory():
    fleets = []

    def make(port, timestamps=True):
        f = Fleet(port, timestamps)
        fleets.append(f)
        return f

    yield make
    for f in fleets:
        f.close()


# =========================================================================== key watch basics


def test_differing_higher_version_answers_at_once(client, acc):
    v = put(client, acc, "k", {"a": 1})
    r = client.post(f"/watch/{acc}", {"ID": "k", "Version": v + 5, "Timeout": 60})
    assert ok(r) == {"Key": "k", "Value": {"a": 1}, "Version": v}


def test_differing_lower_version_answers_at_once(client, acc):
    v1 = put(client, acc, "k", "one")
    v2 = put(client, acc, "k", "two")
    assert v2 > v1
    r = client.post(f"/watch/{acc}", {"ID": "k", "Version": v1, "Timeout": 60})
    assert ok(r) == {"Key": "k", "Value": "two", "Version": v2}


def test_missing_key_with_nonzero_version_answers_version_0(client, acc):
    r = client.post(f"/watch/{acc}", {"ID": "nothing", "Version": 7, "Timeout": 60})
    assert ok(r) == {"Key": "nothing", "Version": 0}


def test_block_then_wake_on_change(server, client, acc):
    v = put(client, acc, "k", 1)
    w = open_watch(server, acc, {"ID": "k", "Version": v, "Timeout": 60})
    assert_parked(server, w)
    v2 = put(client, acc, "k", {"new": [1, 2]})
    assert ok(answer(w)) == {"Key": "k", "Value": {"new": [1, 2]}, "Version": v2}
    # the connection stays usable (keep-alive) for the next watch
    w.send(watch_bytes(acc, {"ID": "k", "Version": v2, "Timeout": 0}))
    assert ok(answer(w)) == {"Key": "k", "Value": {"new": [1, 2]}, "Version": v2}
    w.close()


def test_timeout_answers_unchanged_state(server, client, acc):
    v = put(client, acc, "k", "same")
    t0 = time.monotonic()
    r = client.post(f"/watch/{acc}", {"ID": "k", "Version": v, "Timeout": 0.5})
    waited = time.monotonic() - t0
    assert ok(r) == {"Key": "k", "Value": "same", "Version": v}
    assert waited >= 0.4, f"answered after {waited:.3f}s, before its 0.5 s Timeout"


def test_timeout_on_missing_key_answers_version_0(client, acc):
    r = client.post(f"/watch/{acc}", {"ID": "absent", "Version": 0, "Timeout": 0.3})
    assert ok(r) == {"Key": "absent", "Version": 0}


def test_timeout_zero_answers_at_once_even_when_equal(client, acc):
    v = put(client, acc, "k", True)
    r = client.post(f"/watch/{acc}", {"ID": "k", "Version": v, "Timeout": 0})
    assert ok(r) == {"Key": "k", "Value": True, "Version": v}
    r = client.post(f"/watch/{acc}", {"ID": "none", "Version": 0, "Timeout": 0})
    assert ok(r) == {"Key": "none", "Version": 0}


def test_delete_wakes_with_version_0_and_no_value(server, client, acc):
    v = put(client, acc, "k", {"x": 1})
    w = open_watch(server, acc, {"ID": "k", "Version": v, "Timeout": 60})
    assert_parked(server, w)
    delete(client, acc, "k")
    body = ok(answer(w))
    assert body == {"Key": "k", "Version": 0}
    assert "Value" not in body
    w.close()


def test_creation_watch_version_0(server, client, acc):
    w = open_watch(server, acc, {"ID": "later", "Version": 0, "Timeout": 60})
    assert_parked(server, w)
    v = put(client, acc, "later", [1, "two"])
    assert ok(answer(w)) == {"Key": "later", "Value": [1, "two"], "Version": v}
    w.close()


def test_stored_null_is_answered_as_value_null(server, client, acc):
    w = open_watch(server, acc, {"ID": "n", "Version": 0, "Timeout": 60})
    assert_parked(server, w)
    v = put(client, acc, "n", None)
    body = ok(answer(w))
    assert body == {"Key": "n", "Value": None, "Version": v}
    assert "Value" in body
    w.close()


def test_delete_of_missing_key_does_not_wake_creation_watch(server, client, acc):
    w = open_watch(server, acc, {"ID": "never", "Version": 0, "Timeout": 60})
    assert_parked(server, w)
    r = client.db_ok(acc, {"KVSet": [{"Key": "never", "Delete": True}]})
    assert r["KVSet"] == [{"Key": "never", "Version": 0}]
    assert_parked(server, w)
    v = put(client, acc, "never", 1)
    assert ok(answer(w)) == {"Key": "never", "Value": 1, "Version": v}
    w.close()


def test_failed_cas_does_not_wake(server, client, acc):
    v = put(client, acc, "k", 1)
    w = open_watch(server, acc, {"ID": "k", "Version": v, "Timeout": 60})
    assert_parked(server, w)
    r = client.db(acc, {"KVSet": [{"Key": "k", "Value": 2, "Version": v + 100}]})
    assert_error(r, 409, "precondition_failed")
    assert_parked(server, w)
    w.close()


def test_writes_to_other_keys_and_accounts_do_not_wake(server, client, acc):
    other = unique_account("other")
    v = put(client, acc, "k", 1)
    w = open_watch(server, acc, {"ID": "k", "Version": v, "Timeout": 60})
    assert_parked(server, w)
    put(client, acc, "k2", 1)
    put(client, acc, "k/", 1)
    put(client, other, "k", 1)
    client.db_ok(acc, {"Atomic": [{"Key": "k", "Add": 1}], "Seq": [{"Key": "k"}]})
    assert_parked(server, w)
    v2 = put(client, acc, "k", 2)
    assert ok(answer(w)) == {"Key": "k", "Value": 2, "Version": v2}
    w.close()


def test_one_transaction_wakes_watchers_of_every_key_it_wrote(server, client, acc):
    put(client, acc, "a", 0)
    v = put(client, acc, "b", 0)
    wa = open_watch(server, acc, {"ID": "a", "Version": 1, "Timeout": 60})
    wb = open_watch(server, acc, {"ID": "b", "Version": v, "Timeout": 60})
    assert_parked(server, wa, wb)
    out = client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": "A"}, {"Key": "b", "Delete": True}]})
    rev = out["KVSet"][0]["Version"]
    assert ok(answer(wa)) == {"Key": "a", "Value": "A", "Version": rev}
    assert ok(answer(wb)) == {"Key": "b", "Version": 0}
    wa.close()
    wb.close()


def test_key_is_accepted_for_id(server, client, acc):
    v = put(client, acc, "k", "v")
    r = client.post(f"/watch/{acc}", {"Key": "k", "Version": 0, "Timeout": 5})
    assert ok(r) == {"Key": "k", "Value": "v", "Version": v}
    w = open_watch(server, acc, {"Key": "k", "Version": v, "Timeout": 60})
    assert_parked(server, w)
    v2 = put(client, acc, "k", "w")
    assert ok(answer(w)) == {"Key": "k", "Value": "w", "Version": v2}
    w.close()


def test_unicode_and_slash_keys(server, client, acc):
    key = "cfg/db/ürl \"q\""
    v = put(client, acc, key, "x")
    r = client.post(f"/watch/{acc}", {"ID": key, "Version": 0})
    assert ok(r) == {"Key": key, "Value": "x", "Version": v}


def test_watchers_at_different_versions(server, client, acc):
    v1 = put(client, acc, "k", 1)
    v2 = put(client, acc, "k", 2)
    parked = open_watch(server, acc, {"ID": "k", "Version": v2, "Timeout": 60})
    behind = open_watch(server, acc, {"ID": "k", "Version": v1, "Timeout": 60})
    assert ok(answer(behind)) == {"Key": "k", "Value": 2, "Version": v2}
    assert_parked(server, parked)
    v3 = put(client, acc, "k", 3)
    assert ok(answer(parked)) == {"Key": "k", "Value": 3, "Version": v3}
    parked.close()
    behind.close()


def test_pipelined_request_behind_a_watch_waits_for_it(server, client, acc):
    v = put(client, acc, "k", 1)
    raw = server.raw(timeout=20)
    raw.send(watch_bytes(acc, {"ID": "k", "Version": v, "Timeout": 60})
             + http_request("GET", "/health"))
    assert_parked(server, raw)      # /health is held behind the watch (responses in order)
    v2 = put(client, acc, "k", 2)
    assert ok(answer(raw)) == {"Key": "k", "Value": 2, "Version": v2}
    assert ok(answer(raw))["Status"] == "ok"
    raw.close()


def test_two_pipelined_watches_answer_in_order(server, client, acc):
    v = put(client, acc, "k", 1)
    raw = server.raw(timeout=20)
    raw.send(watch_bytes(acc, {"ID": "k", "Version": v, "Timeout": 60})     # parks
             + watch_bytes(acc, {"ID": "k", "Version": 0, "Timeout": 60}))  # ready at once
    assert_parked(server, raw)      # the ready answer waits behind the parked one
    v2 = put(client, acc, "k", 2)
    assert ok(answer(raw)) == {"Key": "k", "Value": 2, "Version": v2}
    body = ok(answer(raw))
    assert body["Key"] == "k" and body["Version"] in (v, v2)
    raw.close()


def test_watch_with_connection_close_is_answered_then_closed(server, client, acc):
    v = put(client, acc, "k", 1)
    raw = server.raw(timeout=20)
    raw.send(http_request("POST", f"/watch/{acc}", {"ID": "k", "Version": v, "Timeout": 60},
                          headers={"Connection": "close"}))
    assert_parked(server, raw)
    v2 = put(client, acc, "k", 2)
    r = answer(raw)
    assert ok(r) == {"Key": "k", "Value": 2, "Version": v2}
    assert (r.header("Connection") or "").lower() == "close", r.header_list
    assert raw.wait_closed(timeout=10) == b""
    raw.close()


def test_http10_watch(server, client, acc):
    v = put(client, acc, "k", 1)
    raw = server.raw(timeout=20)
    raw.send(http_request("POST", f"/watch/{acc}", {"ID": "k", "Version": v, "Timeout": 60},
                          version="HTTP/1.0"))
    assert_parked(server, raw)
    v2 = put(client, acc, "k", 2)
    assert ok(answer(raw)) == {"Key": "k", "Value": 2, "Version": v2}
    raw.wait_closed(timeout=10)
    raw.close()


def test_head_on_get_watch(server, client, acc):
    v = put(client, acc, "k", {"a": "b"})
    g = client.get(f"/db/{acc}/kv/k?watch=0")
    raw = server.raw(timeout=20)
    raw.send(http_request("HEAD", f"/db/{acc}/kv/k?watch=0"))
    h = raw.read_final(head=True, timeout=10)
    assert h.status == 200 and h.header("Content-Length") == str(len(g.body)), h.header_list
    # parked, then woken: still headers only, and the connection stays in sync
    raw.send(http_request("HEAD", f"/db/{acc}/kv/k?watch={v}&timeout=60"))
    assert_parked(server, raw)
    v2 = put(client, acc, "k", {"a": "c"})
    h = raw.read_final(head=True, timeout=10)
    want = json.dumps({"Key": "k", "Value": {"a": "c"}, "Version": v2}, separators=(",", ":")).encode() + b"\n"
    assert h.status == 200 and h.header("Content-Length") == str(len(want)), h.header_list
    raw.send(http_request("GET", "/health"))
    assert ok(raw.read_final(timeout=10))["Status"] == "ok"
    raw.close()


def test_long_poll_is_not_idle(server_factory):
    """API.md: a connection waiting on a long-poll is not idle (idle timeout 1 s here)."""
    srv = server_factory(env={"CDRAGON_IDLE_TIMEOUT": 1})
    c = srv.client(timeout=10)
    acc = unique_account("idle")
    v = put(c, acc, "k", 1)
    c.close()
    w = open_watch(srv, acc, {"ID": "k", "Version": v, "Timeout": 2.5})
    r = answer(w, timeout=10)
    assert ok(r) == {"Key": "k", "Value": 1, "Version": v}
    w.close()


def test_default_timeout_respects_a_lower_max(server_factory):
    """With max_watch_timeout lowered to 1 s, a watch without Timeout must not be held
    for the 30 s default (that would exceed the operator's maximum)."""
    srv = server_factory(env={"CDRAGON_MAX_WATCH_TIMEOUT": 1})
    c = srv.client(timeout=10)
    acc = unique_account("defto")
    v = put(c, acc, "k", 1)
    c.close()
    w = open_watch(srv, acc, {"ID": "k", "Version": v})
    t0 = time.monotonic()
    try:
        r = answer(w, timeout=8)
    except TimeoutError:
        raise AssertionError("a watch without Timeout was still held 8 s after it began, "
                             "with CDRAGON_MAX_WATCH_TIMEOUT=1") from None
    assert ok(r) == {"Key": "k", "Value": 1, "Version": v}
    assert time.monotonic() - t0 < 8
    w.close()


def test_watch_route_is_post_only(client, acc):
    r = client.get(f"/watch/{acc}")
    assert_error(r, 405, "method_not_allowed")
    assert "POST" in (r.header("Allow") or "")


# =========================================================================== GET ?watch=V form


def test_get_watch_answers_at_once_when_differing(client, acc):
    v = put(client, acc, "k", {"a": 1})
    r = client.get(f"/db/{acc}/kv/k?watch={v + 1}&timeout=60")
    assert ok(r) == {"Key": "k", "Value": {"a": 1}, "Version": v}
    r = client.get(f"/db/{acc}/kv/k?watch=0")
    assert ok(r) == {"Key": "k", "Value": {"a": 1}, "Version": v}


def test_get_watch_missing_key_is_200_version_0_never_404(client, acc):
    r = client.get(f"/db/{acc}/kv/missing?watch=3&timeout=60")
    assert ok(r) == {"Key": "missing", "Version": 0}
    r = client.get(f"/db/{acc}/kv/missing?watch=0&timeout=0")
    assert ok(r) == {"Key": "missing", "Version": 0}
    r = client.get(f"/db/{acc}/kv/missing?watch=0&timeout=0.2")
    assert ok(r) == {"Key": "missing", "Version": 0}


def test_get_watch_blocks_then_wakes(server, client, acc):
    v = put(client, acc, "cfg/db/url", "a")
    w = open_get_watch(server, f"/db/{acc}/kv/cfg/db/url?watch={v}&timeout=60")
    assert_parked(server, w)
    v2 = put(client, acc, "cfg/db/url", "b")
    assert ok(answer(w)) == {"Key": "cfg/db/url", "Value": "b", "Version": v2}
    w.close()


def test_get_watch_creation_and_delete(server, client, acc):
    w = open_get_watch(server, f"/db/{acc}/kv/new?watch=0&timeout=60")
    assert_parked(server, w)
    v = put(client, acc, "new", 5)
    assert ok(answer(w)) == {"Key": "new", "Value": 5, "Version": v}
    w.send(http_request("GET", f"/db/{acc}/kv/new?watch={v}&timeout=60"))
    assert_parked(server, w)
    r = client.delete(f"/db/{acc}/kv/new")
    assert ok(r) == {"Key": "new", "Version": 0}
    assert ok(answer(w)) == {"Key": "new", "Version": 0}
    w.close()


def test_get_watch_timeout_answers_unchanged(client, acc):
    v = put(client, acc, "k", "v")
    r = client.get(f"/db/{acc}/kv/k?watch={v}&timeout=0.3")
    assert ok(r) == {"Key": "k", "Value": "v", "Version": v}


def test_get_watch_answers_json_even_with_raw(client, acc):
    v = put(client, acc, "s", "plain text")
    r = client.get(f"/db/{acc}/kv/s?watch=0&raw")
    assert ok(r) == {"Key": "s", "Value": "plain text", "Version": v}


def test_get_watch_percent_encoded_key(server, client, acc):
    v = put(client, acc, "a b/ü", 1)
    r = client.get(f"/db/{acc}/kv/a%20b%2F%C3%BC?watch=0")
    assert ok(r) == {"Key": "a b/ü", "Value": 1, "Version": v}


# =========================================================================== validation


BAD_BODIES = [
    pytest.param({"ID": "k", "Key": "k", "Version": 1}, "bad_request", id="ID-and-Key"),
    pytest.param({"ID": "k"}, "bad_request", id="no-Version"),
    pytest.param({"ID": "k", "Timeout": 1}, "bad_request", id="no-Version-with-Timeout"),
    pytest.param({"ID": "k", "Prefix": "", "Version": 1}, "bad_request", id="ID-and-Prefix"),
    pytest.param({"Key": "k", "Prefix": "p", "Version": 1}, "bad_request", id="Key-and-Prefix"),
    pytest.param({"Version": 1}, "bad_request", id="neither-ID-nor-Prefix"),
    pytest.param({"ID": "k", "Version": 1, "Foo": 1}, "bad_request", id="unknown-field"),
    pytest.param({"ID": "k", "Version": 1, "timeout": 1}, "bad_request", id="unknown-field-case"),
    pytest.param({"ID": "k", "Version": 1, "Timeout": 301}, "bad_request", id="Timeout-over-max"),
    pytest.param({"ID": "k", "Version": 1, "Timeout": -1}, "bad_request", id="Timeout-negative"),
    pytest.param({"ID": "k", "Version": 1, "Timeout": "5"}, "bad_request", id="Timeout-string"),
    pytest.param({"ID": "k", "Version": 1, "Timeout": None}, "bad_request", id="Timeout-null"),
    pytest.param({"ID": "k", "Version": None}, "bad_request", id="Version-null"),
    pytest.param({"ID": None, "Version": 1}, "bad_request", id="ID-null"),
    pytest.param({"Key": None, "Version": 1}, "bad_request", id="Key-null"),
    pytest.param({"Prefix": None, "Version": 1}, "bad_request", id="Prefix-null"),
    pytest.param({"ID": "k", "Version": -1}, "bad_request", id="Version-negative"),
    pytest.param({"ID": "k", "Version": "1"}, "bad_request", id="Version-string"),
    pytest.param({"ID": "k", "Version": 1.5}, "bad_request", id="Version-float"),
    pytest.param({"ID": "k", "Version": True}, "bad_request", id="Version-bool"),
    pytest.param({"ID": "k", "Version": 2**63}, "bad_request", id="Version-over-int64"),
    pytest.param({"ID": 5, "Version": 1}, "bad_request", id="ID-number"),
    pytest.param({"ID": "", "Version": 1}, "bad_key", id="ID-empty"),
    pytest.param({"ID": "x" * 257, "Version": 1}, "bad_key", id="ID-257-bytes"),
    pytest.param({"ID": "é" * 129, "Version": 1}, "bad_key", id="ID-258-utf8-bytes"),
    pytest.param({"ID": "a\u0000b", "Version": 1}, "bad_key", id="ID-with-NUL"),
    pytest.param({"Key": "", "Version": 1}, "bad_key", id="Key-empty"),
    pytest.param({"Prefix": "a\u0000", "Version": 1}, "bad_key", id="Prefix-with-NUL"),
    pytest.param({"Prefix": "p" * 257, "Version": 1}, "bad_key", id="Prefix-257-bytes"),
    pytest.param({}, "bad_request", id="empty-object"),
    pytest.param([], "bad_request", id="array"),
    pytest.param(None, "bad_request", id="json-null"),
]


@pytest.mark.parametrize("body, code", BAD_BODIES)
def test_invalid_watch_is_400(server, acc, body, code):
    raw = server.raw(timeout=10)
    raw.send(watch_bytes(acc, json.dumps(body)))
    r = raw.read_final(timeout=10)
    assert_error(r, 400, code)
    # the same connection still serves, and so does the server
    raw.send(watch_bytes(acc, {"ID": "k", "Version": 1, "Timeout": 0}))
    assert ok(raw.read_final(timeout=10)) == {"Key": "k", "Version": 0}
    raw.close()
    server.assert_alive()


@pytest.mark.parametrize("body", [b"", b"not json", b'{"ID": "k", "Version": 1', b'"\\ud800"'],
                         ids=["empty", "garbage", "truncated", "lone-surrogate"])
def test_malformed_json_watch_is_400(server, client, acc, body):
    r = client.post(f"/watch/{acc}", body)
    assert_error(r, 400, "bad_request")
    server.assert_alive()


@pytest.mark.parametrize("path", ["/watch/bad!acc", "/watch/" + "a" * 65, "/watch/", "/watch/a%20b"],
                         ids=["bang", "65-chars", "empty", "space"])
def test_bad_account_is_400(server, client, path):
    r = client.post(path, {"ID": "k", "Version": 1, "Timeout": 0})
    assert_error(r, 400, "bad_account")
    server.assert_alive()


@pytest.mark.parametrize("query", ["watch=abc", "watch=-1", "watch=1.5", "watch=",
                                   "watch=1&timeout=301", "watch=1&timeout=-1", "watch=1&timeout=abc"])
def test_get_watch_bad_query_is_400(server, client, acc, query):
    r = client.get(f"/db/{acc}/kv/k?{query}")
    assert_error(r, 400, "bad_request")
    server.assert_alive()


def test_get_watch_bad_key_is_bad_key(server, client, acc):
    assert_error(client.get(f"/db/{acc}/kv/a%00b?watch=1"), 400, "bad_key")
    assert_error(client.get(f"/db/{acc}/kv/{'x' * 257}?watch=1"), 400, "bad_key")
    assert_error(client.get(f"/db/bad!acc/kv/k?watch=1"), 400, "bad_account")
    server.assert_alive()


def test_timeout_limit_is_configurable(server_factory):
    srv = server_factory(env={"CDRAGON_MAX_WATCH_TIMEOUT": 2})
    c = srv.client(timeout=10)
    acc = unique_account("maxto")
    assert_error(c.post(f"/watch/{acc}", {"ID": "k", "Version": 0, "Timeout": 2.5}), 400, "bad_request")
    assert_error(c.get(f"/db/{acc}/kv/k?watch=0&timeout=3"), 400, "bad_request")
    assert ok(c.post(f"/watch/{acc}", {"ID": "k", "Version": 0, "Timeout": 0.1})) == {"Key": "k", "Version": 0}
    c.close()


# =========================================================================== many watchers


def test_2500_watchers_on_one_key_woken_by_one_write(server_factory, fleet_factory, nofile):
    n = 2500
    have = nofile(2 * n + 1000)
    if have < n + 200:
        pytest.skip(f"RLIMIT_NOFILE {have} is too low for {n} watchers")
    srv = server_factory()
    c = srv.client(timeout=30)
    acc = unique_account("fanout")
    v = put(c, acc, "k", "before")
    fleet = fleet_factory(srv.port, timestamps=False)
    req = watch_bytes(acc, {"ID": "k", "Version": v, "Timeout": 120})
    peers = []
    for i in range(n):
        p = fleet.connect(i)
        fleet.send(p, req)
        peers.append(p)
    barrier(srv)
    assert fleet.quiet(peers, QUIET), "a watcher was answered before the write"
    value = {"big": "x" * 2000, "n": list(range(50))}
    v2 = put(c, acc, "k", value)
    fleet.run(lambda: all(p.answers or p.closed for p in peers), timeout=60)
    assert not [p.tag for p in peers if p.closed and not p.answers], "connections closed unanswered"
    bodies = {p.answers[0][0].body for p in peers}
    statuses = {p.answers[0][0].status for p in peers}
    assert statuses == {200}
    assert len(bodies) == 1, f"{len(bodies)} different bodies"
    assert json.loads(bodies.pop()) == {"Key": "k", "Value": value, "Version": v2}
    raws = {p.answers[0][0].raw for p in peers}
    assert len(raws) == 1, "responses (status line + headers + body) differ between watchers"
    assert all(len(p.answers) == 1 for p in peers)
    # every connection is still usable: a second round on a few of them
    for p in peers[:20]:
        fleet.send(p, watch_bytes(acc, {"ID": "k", "Version": v2, "Timeout": 0}))
    fleet.run(lambda: all(len(p.answers) == 2 for p in peers[:20]), timeout=20)
    fleet.close()      # helpers use select(): keep their descriptors below 1024
    srv.assert_alive()
    c.close()


def test_disconnected_watchers_do_not_disturb_others(server, client, acc):
    v = put(client, acc, "k", 1)
    stay1 = open_watch(server, acc, {"ID": "k", "Version": v, "Timeout": 60})
    reset = open_watch(server, acc, {"ID": "k", "Version": v, "Timeout": 60})
    closed = open_watch(server, acc, {"ID": "k", "Version": v, "Timeout": 60})
    half = open_watch(server, acc, {"ID": "k", "Version": v, "Timeout": 60})
    stay2 = open_watch(server, acc, {"ID": "k", "Version": v, "Timeout": 60})
    assert_parked(server, stay1, reset, closed, half, stay2)
    reset.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    reset.close()                       # RST
    closed.close()                      # FIN
    half.sock.shutdown(socket.SHUT_WR)  # half-close: the watcher leaves
    barrier(server)
    assert_parked(server, stay1, stay2)
    v2 = put(client, acc, "k", 2)
    want = {"Key": "k", "Value": 2, "Version": v2}
    assert ok(answer(stay1)) == want
    assert ok(answer(stay2)) == want
    # the half-closed one is dropped: the connection ends without a watch answer
    rest = half.wait_closed(timeout=10)
    assert b'"Value":2' not in rest, rest
    half.close()
    stay1.close()
    stay2.close()
    server.assert_alive()


# =========================================================================== ordering


def _order_violation(what: str, kts, t, a_kts, a_t):
    """A message if an answer (kernel receive timestamp kts, client clock t) arrived
    before the writer's acknowledgement (a_kts, a_t); None if it did not.

    The kernel receive timestamps (SO_TIMESTAMPNS, one clock for every socket of this
    machine) decide. The client clock is only the fallback where they are missing:
    it is taken when recvmsg returns, so it includes the client's own processing
    order (a socket read late in a wake-up looks late), which is why it is not used
    when the kernel's are available."""
    if kts is not None and a_kts is not None:
        if kts >= a_kts:
            return None
        return f"{what}: {(a_kts - kts) / 1e3:.1f} µs earlier by kernel receive time"
    if t >= a_t:
        return None
    return f"{what}: {(a_t - t) * 1e6:.1f} µs earlier by the client clock (no kernel timestamps)"


def _assert_no_violations(violations: list, total: int):
    assert not violations, (f"{len(violations)} of {total} notifications arrived before the "
                            f"writer's 200; first ones:\n  " + "\n  ".join(violations[:8]))


def _writer_and_watchers(srv, acc, n_watchers, v):
    fleet = Fleet(srv.port, timestamps=True)
    writer = fleet.connect("writer")
    writer.first = True
    watchers = []
    for i in range(n_watchers):
        p = fleet.connect(i)
        fleet.send(p, watch_bytes(acc, {"ID": "k", "Version": v, "Timeout": 60}))
        watchers.append(p)
    return fleet, writer, watchers


def test_no_watcher_sees_the_value_before_the_writer_got_its_200(server_factory):
    """Watchers parked on k, one PUT: every notification arrives (kernel receive time,
    and the client's clock per epoll wake-up) at or after the writer's 200."""
    srv = server_factory()
    c = srv.client(timeout=10)
    acc = unique_account("order")
    v = put(c, acc, "k", 0)
    violations, total = [], 0
    for rnd in range(10):
        fleet, writer, watchers = _writer_and_watchers(srv, acc, 30, v)
        try:
            barrier(srv)
            assert fleet.quiet(watchers, 0.1)
            fleet.send(writer, http_request("PUT", f"/db/{acc}/kv/k", {"round": rnd}))
            fleet.run(lambda: writer.answers and all(p.answers for p in watchers), timeout=20)
            wr, w_kts, w_t = writer.answers[0]
            v = ok(wr)["Version"]
            for p in watchers:
                r, kts, t = p.answers[0]
                assert ok(r) == {"Key": "k", "Value": {"round": rnd}, "Version": v}
                bad = _order_violation(f"round {rnd} watcher {p.tag}", kts, t, w_kts, w_t)
                if bad:
                    violations.append(bad)
                total += 1
        finally:
            fleet.close()
    c.close()
    _assert_no_violations(violations, total)


def test_watch_arriving_during_the_commit_waits_for_durability(server_factory):
    """Watches sent right behind a PUT (while its commit is in flight) with the old
    version see the new value only at or after the writer's 200: an answer never
    reveals a write that is not yet acknowledged."""
    srv = server_factory()
    c = srv.client(timeout=10)
    acc = unique_account("inflight")
    v = put(c, acc, "k", "old")
    violations, total = [], 0
    for rnd in range(15):
        fleet = Fleet(srv.port, timestamps=True)
        try:
            writer = fleet.connect("writer")
            writer.first = True
            watchers = [fleet.connect(i) for i in range(10)]
            get_form = [fleet.connect(f"get{i}") for i in range(5)]
            fleet.send(writer, http_request("PUT", f"/db/{acc}/kv/k", {"r": rnd}))
            for p in watchers:
                fleet.send(p, watch_bytes(acc, {"ID": "k", "Version": v, "Timeout": 60}))
            for p in get_form:
                fleet.send(p, http_request("GET", f"/db/{acc}/kv/k?watch={v}&timeout=60"))
            everyone = watchers + get_form
            fleet.run(lambda: writer.answers and all(p.answers for p in everyone), timeout=20)
            wr, w_kts, w_t = writer.answers[0]
            new_v = ok(wr)["Version"]
            for p in everyone:
                r, kts, t = p.answers[0]
                assert ok(r) == {"Key": "k", "Value": {"r": rnd}, "Version": new_v}
                bad = _order_violation(f"round {rnd} {p.tag}", kts, t, w_kts, w_t)
                if bad:
                    violations.append(bad)
                total += 1
            v = new_v
        finally:
            fleet.close()
    c.close()
    _assert_no_violations(violations, total)


def test_notifications_never_show_unacknowledged_values(server_factory):
    """A writer does 40 sequential PUTs; 12 watchers keep re-watching with the last
    version they saw. Every version a watcher sees was acknowledged to the writer
    (kernel receive time) no later than the watcher received it, with that value,
    and each watcher's versions only grow."""
    srv = server_factory()
    c = srv.client(timeout=10)
    acc = unique_account("stream")
    v0 = put(c, acc, "k", -1)
    n_writes = 40
    fleet = Fleet(srv.port, timestamps=True)
    acks: dict[int, tuple[int, int | None, float]] = {}   # version -> (i, kts, t)
    state = {"i": 0}
    try:
        writer = fleet.connect("writer")
        writer.first = True

        def next_write(p=None, r=None):
            if r is not None:
                body = ok(r)
                _, kts, t = p.answers[-1]
                acks[body["Version"]] = (state["i"] - 1, kts, t)
            if state["i"] < n_writes:
                fleet.send(writer, http_request("PUT", f"/db/{acc}/kv/k", {"i": state["i"]}))
                state["i"] += 1

        def rewatch(p, r):
            body = ok(r)
            if body.get("Value") != {"i": n_writes - 1}:
                fleet.send(p, watch_bytes(acc, {"ID": "k", "Version": body["Version"], "Timeout": 60}))

        watchers = []
        for i in range(12):
            p = fleet.connect(i)
            p.on_answer = rewatch
            fleet.send(p, watch_bytes(acc, {"ID": "k", "Version": v0, "Timeout": 60}))
            watchers.append(p)
        barrier(srv)
        writer.on_answer = next_write
        next_write()
        fleet.run(lambda: len(acks) == n_writes and all(
            p.answers and ok(p.answers[-1][0]).get("Value") == {"i": n_writes - 1} for p in watchers),
            timeout=60)
        seen = 0
        violations = []
        for p in watchers:
            last = v0
            for r, kts, t in p.answers:
                body = ok(r)
                ver = body["Version"]
                assert ver > last, f"watcher {p.tag}: version went {last} -> {ver}"
                last = ver
                assert ver in acks, f"watcher {p.tag} saw version {ver}, never acknowledged to the writer"
                i, a_kts, a_t = acks[ver]
                assert body == {"Key": "k", "Value": {"i": i}, "Version": ver}
                bad = _order_violation(f"watcher {p.tag} version {ver}", kts, t, a_kts, a_t)
                if bad:
                    violations.append(bad)
                seen += 1
        assert seen >= len(watchers)
        _assert_no_violations(violations, seen)
    finally:
        fleet.close()
        c.close()


# =========================================================================== prefix watches


def test_prefix_changes_after_rev_including_deletes(server, client, acc):
    assert prefix_now(client, acc) == {"Rev": 0, "KV": []}
    va = put(client, acc, "cfg/a", "A")              # 1
    vb = put(client, acc, "cfg/b", "B")              # 2
    put(client, acc, "other", "O")                   # 3
    vc = put(client, acc, "cfg/c", {"c": 3})         # 4
    vd = delete(client, acc, "cfg/b")                # 5 (the delete's revision; answer Version 0)
    assert vd == 0
    rev = 5
    r = ok(client.post(f"/watch/{acc}", {"Prefix": "cfg/", "Version": vb, "Timeout": 60}))
    assert r["Rev"] == rev
    assert by_key(r["KV"]) == {
        "cfg/c": {"Key": "cfg/c", "Value": {"c": 3}, "Version": vc},
        "cfg/b": {"Key": "cfg/b", "Version": rev, "Deleted": True},
    }
    r = ok(client.post(f"/watch/{acc}", {"Prefix": "cfg/", "Version": 0, "Timeout": 60}))
    assert r["Rev"] == rev
    assert by_key(r["KV"]) == {
        "cfg/a": {"Key": "cfg/a", "Value": "A", "Version": va},
        "cfg/c": {"Key": "cfg/c", "Value": {"c": 3}, "Version": vc},
        "cfg/b": {"Key": "cfg/b", "Version": rev, "Deleted": True},
    }
    # an empty prefix is the whole account
    r = ok(client.post(f"/watch/{acc}", {"Prefix": "", "Version": 2, "Timeout": 60}))
    assert r["Rev"] == rev
    assert set(by_key(r["KV"])) == {"other", "cfg/c", "cfg/b"}


def test_prefix_watch_waits_then_wakes(server, client, acc):
    assert prefix_now(client, acc)["Rev"] == 0
    put(client, acc, "cfg/a", 1)
    rev = put(client, acc, "cfg/b", 2)
    w = open_watch(server, acc, {"Prefix": "cfg/", "Version": rev, "Timeout": 60})
    assert_parked(server, w)
    v = put(client, acc, "cfg/c", 3)
    assert ok(answer(w)) == {"Rev": v, "KV": [{"Key": "cfg/c", "Value": 3, "Version": v}]}
    w.close()


def test_prefix_watch_wakes_on_delete(server, client, acc):
    assert prefix_now(client, acc)["Rev"] == 0
    rev = put(client, acc, "cfg/a", 1)
    w = open_watch(server, acc, {"Prefix": "cfg/", "Version": rev, "Timeout": 60})
    assert_parked(server, w)
    delete(client, acc, "cfg/a")
    assert ok(answer(w)) == {"Rev": rev + 1, "KV": [{"Key": "cfg/a", "Version": rev + 1, "Deleted": True}]}
    w.close()


def test_keys_outside_the_prefix_do_not_wake_it(server, client, acc):
    other = unique_account("other")
    assert prefix_now(client, acc)["Rev"] == 0
    rev = put(client, acc, "cfg/x", 0)
    w = open_watch(server, acc, {"Prefix": "cfg/", "Version": rev, "Timeout": 60})
    assert_parked(server, w)
    put(client, acc, "cfg", 1)            # the prefix without its slash
    put(client, acc, "cfgx/a", 1)
    put(client, acc, "xcfg/a", 1)
    put(client, other, "cfg/a", 1)        # same prefix, other account
    client.db_ok(acc, {"Atomic": [{"Key": "cfg/ctr", "Add": 1}]})   # counters are no KV
    client.db_ok(acc, {"KVSet": [{"Key": "cfg/missing", "Delete": True}]})  # deletes nothing
    assert_parked(server, w)
    v = put(client, acc, "cfg/y", "Y")
    assert ok(answer(w)) == {"Rev": v, "KV": [{"Key": "cfg/y", "Value": "Y", "Version": v}]}
    w.close()


def test_prefix_each_key_once_at_its_latest_state(server, client, acc):
    assert prefix_now(client, acc)["Rev"] == 0
    rev = put(client, acc, "p/seed", 0)
    put(client, acc, "p/a", 1)
    put(client, acc, "p/a", 2)
    put(client, acc, "p/b", 1)
    delete(client, acc, "p/b")
    vb = put(client, acc, "p/b", "back")        # re-created after its delete
    put(client, acc, "p/c", 1)
    delete(client, acc, "p/c")
    put(client, acc, "p/c", 2)
    vc = delete(client, acc, "p/c")             # deleted again: the last delete wins
    assert vc == 0
    va = put(client, acc, "p/a", 3)
    cur = va
    r = ok(client.post(f"/watch/{acc}", {"Prefix": "p/", "Version": rev, "Timeout": 60}))
    assert r["Rev"] == cur
    assert by_key(r["KV"]) == {
        "p/a": {"Key": "p/a", "Value": 3, "Version": va},
        "p/b": {"Key": "p/b", "Value": "back", "Version": vb},
        "p/c": {"Key": "p/c", "Version": cur - 1, "Deleted": True},
    }


def test_prefix_one_transaction_one_answer(server, client, acc):
    assert prefix_now(client, acc)["Rev"] == 0
    rev = put(client, acc, "p/z", 0)
    w = open_watch(server, acc, {"Prefix": "p/", "Version": rev, "Timeout": 60})
    assert_parked(server, w)
    out = client.db_ok(acc, {"KVSet": [{"Key": "p/a", "Value": 1}, {"Key": "p/z", "Delete": True},
                                       {"Key": "q/x", "Value": 1}]})
    v = out["KVSet"][0]["Version"]
    r = ok(answer(w))
    assert r["Rev"] == v
    assert by_key(r["KV"]) == {"p/a": {"Key": "p/a", "Value": 1, "Version": v},
                               "p/z": {"Key": "p/z", "Version": v, "Deleted": True}}
    w.close()


def test_prefix_version_above_current_waits_for_next_change(server, client, acc):
    assert prefix_now(client, acc)["Rev"] == 0
    put(client, acc, "p/a", 1)
    rev = put(client, acc, "p/b", 1)
    w = open_watch(server, acc, {"Prefix": "p/", "Version": rev + 100, "Timeout": 60})
    assert_parked(server, w)
    v = put(client, acc, "p/c", 1)
    assert ok(answer(w)) == {"Rev": v, "KV": [{"Key": "p/c", "Value": 1, "Version": v}]}
    w.close()


def test_prefix_timeout_and_timeout_zero(server, client, acc):
    assert prefix_now(client, acc)["Rev"] == 0
    rev = put(client, acc, "p/a", 1)
    t0 = time.monotonic()
    r = client.post(f"/watch/{acc}", {"Prefix": "p/", "Version": rev, "Timeout": 0.4})
    assert ok(r) == {"Rev": rev, "KV": []}
    assert time.monotonic() - t0 >= 0.3
    r = client.post(f"/watch/{acc}", {"Prefix": "p/", "Version": rev, "Timeout": 0})
    assert ok(r) == {"Rev": rev, "KV": []}
    r = client.post(f"/watch/{acc}", {"Prefix": "nothing/", "Version": 0, "Timeout": 0})
    assert ok(r) == {"Rev": rev, "KV": []}


def test_prefix_watch_on_account_written_earlier_in_this_process(server, client, acc):
    """The server has run since before this account existed, so it knows every change:
    a prefix watch from an old revision answers the changes (only a restart forgets
    delete markers). Here the first prefix watch comes after some writes."""
    put(client, acc, "cfg/a", 1)                       # 1
    put(client, acc, "cfg/b", 2)                       # 2
    r = client.post(f"/watch/{acc}", {"Prefix": "cfg/", "Version": 0, "Timeout": 0})
    assert r.status == 200, f"POST /watch {{Prefix:'cfg/',Version:0}} after 2 writes -> {r!r}"
    assert by_key(r.json["KV"]) == {"cfg/a": {"Key": "cfg/a", "Value": 1, "Version": 1},
                                    "cfg/b": {"Key": "cfg/b", "Value": 2, "Version": 2}}


def test_prefix_watch_after_first_delete_of_account(server, client, acc):
    """Same, when the account's first delete comes after some writes: the changes from
    revision 1 (incl. the delete) are known, so no 410."""
    put(client, acc, "cfg/a", 1)                       # 1
    put(client, acc, "cfg/b", 2)                       # 2
    delete(client, acc, "cfg/a")                       # 3
    r = client.post(f"/watch/{acc}", {"Prefix": "cfg/", "Version": 1, "Timeout": 0})
    assert r.status == 200, f"POST /watch {{Prefix:'cfg/',Version:1}} after put,put,delete -> {r!r}"
    assert by_key(r.json["KV"]) == {"cfg/a": {"Key": "cfg/a", "Version": 3, "Deleted": True},
                                    "cfg/b": {"Key": "cfg/b", "Value": 2, "Version": 2}}


def test_prefix_410_compacted_after_restart(server_factory):
    srv = server_factory()
    c = srv.client(timeout=10)
    acc = unique_account("compact")
    put(c, acc, "p/a", 1)           # 1
    put(c, acc, "p/b", 1)           # 2
    delete(c, acc, "p/a")           # 3
    c.close()
    srv.restart()
    c = srv.client(timeout=10)
    for old in (0, 1, 2):
        r = c.post(f"/watch/{acc}", {"Prefix": "p/", "Version": old, "Timeout": 0})
        body = assert_error(r, 410, "compacted")
        assert body["Rev"] == 3, body
    # the revision on disk at start is still served
    assert ok(c.post(f"/watch/{acc}", {"Prefix": "p/", "Version": 3, "Timeout": 0})) == {"Rev": 3, "KV": []}
    # changes after the restart, deletes included, are known from that revision on
    delete(c, acc, "p/b")           # 4
    v = put(c, acc, "p/c", "C")     # 5
    r = ok(c.post(f"/watch/{acc}", {"Prefix": "p/", "Version": 3, "Timeout": 0}))
    assert r["Rev"] == 5
    assert by_key(r["KV"]) == {"p/b": {"Key": "p/b", "Version": 4, "Deleted": True},
                               "p/c": {"Key": "p/c", "Value": "C", "Version": v}}
    # a key watch is not affected by the restart
    assert ok(c.post(f"/watch/{acc}", {"ID": "p/c", "Version": 0})) == {"Key": "p/c", "Value": "C", "Version": 5}
    # the client's recovery: re-read, then watch from Rev
    w = open_watch(srv, acc, {"Prefix": "p/", "Version": 5, "Timeout": 60})
    assert_parked(srv, w)
    v6 = put(c, acc, "p/d", 1)
    assert ok(answer(w)) == {"Rev": v6, "KV": [{"Key": "p/d", "Value": 1, "Version": v6}]}
    w.close()
    c.close()


def test_prefix_after_restart_from_start_revision_with_writes_first(server_factory):
    """After a restart the history starts at the revision on disk at start (3): writes
    made after the restart, before any prefix watch, must not move that floor."""
    srv = server_factory()
    c = srv.client(timeout=10)
    acc = unique_account("floor")
    for i in range(3):
        put(c, acc, f"p/{i}", i)    # 1..3
    c.close()
    srv.restart()
    c = srv.client(timeout=10)
    v = put(c, acc, "p/new", "N")   # 4
    r = c.post(f"/watch/{acc}", {"Prefix": "p/", "Version": 3, "Timeout": 0})
    assert r.status == 200, f"watch from the start revision 3 after one write -> {r!r}"
    assert r.json == {"Rev": v, "KV": [{"Key": "p/new", "Value": "N", "Version": v}]}
    c.close()


def test_prefix_delete_markers_expire_after_retention(server_factory):
    srv = server_factory(env={"CDRAGON_DELETE_RETENTION": 1})
    c = srv.client(timeout=10)
    acc = unique_account("retain")
    assert prefix_now(c, acc)["Rev"] == 0
    put(c, acc, "p/a", 1)           # 1
    delete(c, acc, "p/a")           # 2
    r = ok(c.post(f"/watch/{acc}", {"Prefix": "p/", "Version": 0, "Timeout": 0}))
    assert r == {"Rev": 2, "KV": [{"Key": "p/a", "Version": 2, "Deleted": True}]}
    time.sleep(1.6)
    body = assert_error(c.post(f"/watch/{acc}", {"Prefix": "p/", "Version": 0, "Timeout": 0}), 410, "compacted")
    assert body["Rev"] == 2
    assert ok(c.post(f"/watch/{acc}", {"Prefix": "p/", "Version": 2, "Timeout": 0})) == {"Rev": 2, "KV": []}
    c.close()


# =========================================================================== limits


def test_max_watchers_per_key(server_factory):
    srv = server_factory(env={"CDRAGON_MAX_WATCHERS_PER_KEY": 2})
    c = srv.client(timeout=10)
    acc = unique_account("perkey")
    v = put(c, acc, "k", 1)
    w1 = open_watch(srv, acc, {"ID": "k", "Version": v, "Timeout": 60})
    w2 = open_watch(srv, acc, {"ID": "k", "Version": v, "Timeout": 60})
    assert_parked(srv, w1, w2)
    w3 = open_watch(srv, acc, {"ID": "k", "Version": v, "Timeout": 60})
    r = answer(w3)
    assert_error(r, 429, "too_many")
    assert r.header("Retry-After") is not None and int(r.header("Retry-After")) >= 0, r.header_list
    # the 429'd connection is still usable
    w3.send(watch_bytes(acc, {"ID": "k", "Version": 0, "Timeout": 0}))
    assert ok(answer(w3)) == {"Key": "k", "Value": 1, "Version": v}
    # GET form counts against the same key
    assert_error(c.get(f"/db/{acc}/kv/k?watch={v}&timeout=60"), 429, "too_many")
    # other keys and answers that need no wait are not limited
    assert ok(c.post(f"/watch/{acc}", {"ID": "k", "Version": 0, "Timeout": 5}))["Version"] == v
    w4 = open_watch(srv, acc, {"ID": "other", "Version": 0, "Timeout": 60})
    assert_parked(srv, w4)
    # a watcher that leaves frees its place
    w1.close()
    deadline = time.monotonic() + ANSWER
    while True:
        w5 = open_watch(srv, acc, {"ID": "k", "Version": v, "Timeout": 60})
        if not w5.readable(QUIET):
            break
        assert_error(answer(w5), 429, "too_many")
        w5.close()
        assert time.monotonic() < deadline, "the closed watcher's place was never freed"
    assert_parked(srv, w2, w5)
    # a write answers both; the key then takes two new watchers
    v2 = put(c, acc, "k", 2)
    assert ok(answer(w2))["Version"] == v2
    assert ok(answer(w5))["Version"] == v2
    w6 = open_watch(srv, acc, {"ID": "k", "Version": v2, "Timeout": 60})
    w7 = open_watch(srv, acc, {"ID": "k", "Version": v2, "Timeout": 60})
    assert_parked(srv, w6, w7)
    for w in (w2, w3, w4, w5, w6, w7):
        w.close()
    c.close()


def test_max_watchers_per_prefix(server_factory):
    srv = server_factory(env={"CDRAGON_MAX_WATCHERS_PER_KEY": 2})
    c = srv.client(timeout=10)
    acc = unique_account("perprefix")
    assert prefix_now(c, acc)["Rev"] == 0
    rev = put(c, acc, "p/a", 1)
    ws = [open_watch(srv, acc, {"Prefix": "p/", "Version": rev, "Timeout": 60}) for _ in range(2)]
    assert_parked(srv, *ws)
    r = c.post(f"/watch/{acc}", {"Prefix": "p/", "Version": rev, "Timeout": 60})
    assert_error(r, 429, "too_many")
    assert r.header("Retry-After") is not None
    for w in ws:
        w.close()
    c.close()


def test_max_watchers_in_all(server_factory):
    srv = server_factory(env={"CDRAGON_MAX_WATCHERS": 3})
    c = srv.client(timeout=10)
    acc = unique_account("total")
    ws = [open_watch(srv, acc, {"ID": f"k{i}", "Version": 0, "Timeout": 60}) for i in range(3)]
    assert_parked(srv, *ws)
    r = c.post(f"/watch/{acc}", {"ID": "k9", "Version": 0, "Timeout": 60})
    assert_error(r, 429, "too_many")
    assert r.header("Retry-After") is not None
    # a timed-out watcher frees its place
    for w in ws:
        w.close()
    deadline = time.monotonic() + ANSWER
    while True:
        r = c.post(f"/watch/{acc}", {"ID": "k9", "Version": 0, "Timeout": 0.05})
        if r.status == 200:
            break
        assert_error(r, 429, "too_many")
        assert time.monotonic() < deadline, "closed watchers' places were never freed"
        time.sleep(0.05)
    assert r.json == {"Key": "k9", "Version": 0}
    # watchers that time out free their places too
    ws = [open_watch(srv, acc, {"ID": f"t{i}", "Version": 0, "Timeout": 0.3}) for i in range(3)]
    for w in ws:
        assert ok(answer(w)) == {"Key": f"t{ws.index(w)}", "Version": 0}
    ws2 = [open_watch(srv, acc, {"ID": f"u{i}", "Version": 0, "Timeout": 60}) for i in range(3)]
    assert_parked(srv, *ws2)
    for w in ws + ws2:
        w.close()
    c.close()


# =========================================================================== SIGTERM


def _sigterm_setup(srv):
    c = srv.client(timeout=10)
    acc = unique_account("term")
    assert prefix_now(c, acc)["Rev"] == 0
    v = put(c, acc, "p/k", {"v": 1})
    c.close()
    key_w = open_watch(srv, acc, {"ID": "p/k", "Version": v, "Timeout": 120})
    missing_w = open_watch(srv, acc, {"ID": "p/none", "Version": 0, "Timeout": 120})
    prefix_w = open_watch(srv, acc, {"Prefix": "p/", "Version": v, "Timeout": 120})
    get_w = open_get_watch(srv, f"/db/{acc}/kv/p/k?watch={v}&timeout=120")
    assert_parked(srv, key_w, missing_w, prefix_w, get_w)
    return v, [(key_w, {"Key": "p/k", "Value": {"v": 1}, "Version": v}),
               (missing_w, {"Key": "p/none", "Version": 0}),
               (prefix_w, {"Rev": v, "KV": []}),
               (get_w, {"Key": "p/k", "Value": {"v": 1}, "Version": v})]


def test_sigterm_answers_pending_watches_and_exits_0(server_factory):
    srv = server_factory()
    v, watches = _sigterm_setup(srv)
    srv.proc.send_signal(signal.SIGTERM)
    for w, want in watches:
        r = answer(w, timeout=8)
        assert ok(r) == want
    try:
        code = srv.proc.wait(timeout=15)
    except Exception:
        srv.kill()
        raise AssertionError(f"server did not exit after SIGTERM:\n{srv.log_tail()}")
    assert code == 0, f"exit code {code}:\n{srv.log_tail()}"
    for w, _ in watches:
        w.close()


def test_sigterm_watch_answers_carry_connection_close(server_factory):
    """API.md: responses after the signal carry `Connection: close`."""
    srv = server_factory()
    v, watches = _sigterm_setup(srv)
    srv.proc.send_signal(signal.SIGTERM)
    answers = [(answer(w, timeout=8), w) for w, _ in watches]
    code = srv.proc.wait(timeout=15)
    assert code == 0
    for r, w in answers:
        assert r.status == 200
        assert (r.header("Connection") or "").lower() == "close", \
            f"watch answered after SIGTERM without Connection: close: {r.header_list}"
        w.close()


def test_watch_after_sigterm_answers_at_once(server_factory):
    """A watch that arrives after the signal (on an open keep-alive connection) is
    answered at once with its current state, or 503 shutting_down; never left hanging."""
    srv = server_factory()
    c = srv.client(timeout=10)
    acc = unique_account("late")
    v = put(c, acc, "k", 1)
    c.close()
    holder = open_watch(srv, acc, {"ID": "k", "Version": v, "Timeout": 120})   # keeps the process busy
    idle = srv.raw(timeout=10)
    idle.send(watch_bytes(acc, {"ID": "k", "Version": 0, "Timeout": 0}))
    assert ok(idle.read_final(timeout=10))["Version"] == v
    assert_parked(srv, holder)
    srv.proc.send_signal(signal.SIGTERM)
    try:
        idle.send(watch_bytes(acc, {"ID": "k", "Version": v, "Timeout": 120}))
        r = idle.read_final(timeout=8)
        if r.status == 200:
            assert r.json == {"Key": "k", "Value": 1, "Version": v}
        else:
            assert_error(r, 503, "shutting_down")
    except (EOFError, OSError) as e:
        # the server closed the idle keep-alive connection before reading it: allowed
        assert not isinstance(e, TimeoutError), e
    ok(answer(holder, timeout=8))
    assert srv.proc.wait(timeout=15) == 0
    holder.close()
    idle.close()
