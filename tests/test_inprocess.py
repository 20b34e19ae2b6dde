"""The real Server driven in-process, without sockets: cdragon.storage.Storage and
cdragon._core.Server on a uvloop loop (as bench/inproc.py builds them), HTTP bytes fed
through each connection's data_received on a tests/fake_transport.py transport, and the
loop run until the answers are written (durable commits included).

- pipelining: answers leave in request order, each exactly once, however the bytes
  are cut into chunks;
- flow control: more requests in flight than `max_pipeline` pause reading, draining
  resumes it; the transport's pause_writing stops reading until resume_writing;
- leaks: after writes, lock waiters, watchers and closes, Server.counts() returns to
  zero once the checkpoint (every `checkpoint_interval`, 0.2 s here) has run.

Waiting is "run the loop until the condition holds", with a generous cap that only
guards against a hang; no assertion depends on how fast anything ran.
"""
from __future__ import annotations

import asyncio
import json
import time

import pytest
import uvloop

from fake_transport import FakeTransport
from helpers import VERSION, unique_account

from cdragon import config
from cdragon._core import Server
from cdragon.storage import Storage

HANG_GUARD = 30.0    # seconds: only to fail instead of hanging when something never happens
ZERO = {"connections": 0, "waiters": 0, "watchers": 0, "timers": 0, "overlay_entries": 0,
        "unapplied_batches": 0, "locks_held": 0, "listers": 0, "receivers": 0}


# --------------------------------------------------------------------------- requests

def post(path: str, obj, close: bool = False) -> bytes:
    body = json.dumps(obj).encode()
    return (b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n%s\r\n" % (path.encode(), len(body), b"Connection: close\r\n" if close else b"")
            + body)


def get(path: str) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode()


def parse_responses(data: bytes) -> tuple[list[tuple[int, dict, bytes]], bytes]:
    """Complete HTTP/1.1 responses in `data` as (status, headers, body), and what is left."""
    out = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return out, data
        head = data[:end].decode("latin-1").split("\r\n")
        status = int(head[0].split(" ")[1])
        headers = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers["content-length"])
        if len(data) < end + 4 + n:
            return out, data
        out.append((status, headers, data[end + 4:end + 4 + n]))
        data = data[end + 4 + n:]


# --------------------------------------------------------------------------- the harness

class Client:
    """One connection: the server's protocol object and its fake transport."""

    def __init__(self, h: "InProc"):
        self.h = h
        self.conn = h.server.protocol()
        self.tr = FakeTransport(record=True, loop=h.loop, protocol=self.conn)
        self.conn.connection_made(self.tr)
        self.gone = False

    def send(self, data: bytes) -> None:
        self.conn.data_received(data)

    def answers(self) -> list[tuple[int, dict, bytes]]:
        got, rest = parse_responses(self.tr.output())
        return got

    def bodies(self) -> list:
        return [json.loads(b) for _s, _h, b in self.answers()]

    def wait_answers(self, n: int, what: str = "") -> list[tuple[int, dict, bytes]]:
        self.h.run_until(lambda: len(self.answers()) >= n, what or f"{n} answers")
        return self.answers()

    def half_close(self) -> None:
        """The client sent EOF; a False answer means "close the transport", as uvloop does."""
        if not self.conn.eof_received():
            self.tr.close()

    def lose(self) -> None:
        """The client went away (the socket closed under the server)."""
        if not self.tr.closed:
            self.tr.closed = True
            self.conn.connection_lost(None)
        self.gone = True


class InProc:
    def __init__(self, data_dir, env: dict):
        data_dir.mkdir(parents=True, exist_ok=True)
        self.cfg = config.load(env=env, overrides={"data_dir": str(data_dir)})
        self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.storage = Storage(str(data_dir), self.cfg.initial_map_bytes, self.cfg.max_storage_bytes)
        self.server = Server(self.loop, self.storage, self.cfg, VERSION)
        self.server.start()
        self.clients: list[Client] = []

    def client(self) -> Client:
        c = Client(self)
        self.clients.append(c)
        return c

    def run_until(self, cond, what: str, limit: float = HANG_GUARD) -> None:
        assert self.settle(cond, limit), f"never happened (gave up after {limit}s): {what}"

    def settle(self, cond, limit: float) -> bool:
        """Run the loop until cond() holds (True) or `limit` seconds pass (False)."""
        async def wait():
            end = time.monotonic() + limit
            while not cond():
                if time.monotonic() > end:
                    return False
                await asyncio.sleep(0.002)
            return True
        return self.loop.run_until_complete(wait())

    def spin(self, passes: int = 20) -> None:
        """A few loop passes with nothing awaited (lets call_soon work run)."""
        async def go():
            for _ in range(passes):
                await asyncio.sleep(0)
        self.loop.run_until_complete(go())

    def counts(self) -> dict:
        return self.server.counts()

    def close(self) -> None:
        for c in self.clients:
            c.lose()
        self.server.begin_shutdown()
        self.settle(self.server.committed_everything, HANG_GUARD)
        self.server.close()
        self.storage.close()
        self.loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture
def inproc(tmp_path):
    """inproc(max_pipeline=4, ...): a fresh in-process server (settings as CDRAGON_*
    variables; checkpoint_interval 0.2 s unless given), shut down at the end."""
    made: list[InProc] = []

    def make(**settings) -> InProc:
        env = {"CDRAGON_CHECKPOINT_INTERVAL": "0.2"}
        env.update({"CDRAGON_" + k.upper(): str(v) for k, v in settings.items()})
        h = InProc(tmp_path / f"data{len(made)}", env)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def add(acc: str, key: str) -> bytes:
    return post(f"/db/{acc}", {"Atomic": [{"Key": key, "Add": 1}]})


def counter_value(body: bytes) -> int:
    return json.loads(body)["Atomic"][0]["Value"]


# --------------------------------------------------------------------------- pipelining

def test_pipeline_in_one_chunk_answers_in_order_once(inproc):
    h = inproc()
    acc = unique_account("pipe")
    c = h.client()
    # durable adds (their answers wait for the commit) between instant /health answers
    reqs = []
    for _ in range(6):
        reqs += [add(acc, "n"), get("/health")]
    c.send(b"".join(reqs))
    got = c.wait_answers(len(reqs))
    h.spin()
    assert len(c.answers()) == len(reqs)                 # nothing answered twice
    assert parse_responses(c.tr.output())[1] == b""      # and no stray bytes
    assert [s for s, _h, _b in got] == [200] * len(reqs)
    assert [counter_value(b) for _s, _h, b in got[0::2]] == [1, 2, 3, 4, 5, 6]
    assert all(json.loads(b) == {"Status": "ok", "Version": VERSION} for _s, _h, b in got[1::2])


def test_pipeline_split_at_every_byte_boundary(inproc):
    h = inproc()
    acc = unique_account("split")
    # a small pipeline: write, read of what it wrote, instant answer, write
    def pipeline(key: str) -> bytes:
        return (post(f"/db/{acc}", {"KVSet": [{"Key": key, "Value": "one"}]})
                + post(f"/db/{acc}", {"KVGet": [key]})
                + get("/health")
                + add(acc, key))
    n = len(pipeline("k0000"))
    clients = []
    for cut in range(1, n):
        c = h.client()
        data = pipeline(f"k{cut:04d}")
        assert len(data) == n
        c.send(data[:cut])
        c.send(data[cut:])
        clients.append((cut, c))
    bytewise = h.client()                        # and one fed a byte at a time
    data = pipeline("kbyte")
    for i in range(len(data)):
        bytewise.send(data[i:i + 1])
    clients.append(("bytewise", bytewise))
    h.run_until(lambda: all(len(c.answers()) >= 4 for _cut, c in clients), "every split pipeline answered")
    h.spin()
    for cut, c in clients:
        got = c.answers()
        assert len(got) == 4, (cut, got)
        assert parse_responses(c.tr.output())[1] == b"", cut
        assert [s for s, _h, _b in got] == [200, 200, 200, 200], (cut, got)
        kvset, kvget, health, atomic = (json.loads(b) for _s, _h, b in got)
        assert kvset["KVSet"][0]["Version"] >= 1, cut
        assert kvget["KV"][0]["Value"] == "one", (cut, kvget)
        assert health == {"Status": "ok", "Version": VERSION}, cut
        assert atomic["Atomic"][0]["Value"] == 1, (cut, atomic)


def test_answer_behind_a_watch_waits_for_it(inproc):
    h = inproc()
    acc = unique_account("behind")
    c = h.client()
    c.send(post(f"/watch/{acc}", {"Key": "w", "Version": 0, "Timeout": 60}) + get("/health"))
    h.spin()
    assert c.answers() == []                     # /health is ready but queued behind the watch
    writer = h.client()
    writer.send(post(f"/db/{acc}", {"KVSet": [{"Key": "w", "Value": 7}]}))
    got = c.wait_answers(2)
    assert json.loads(got[0][2])["Value"] == 7
    assert json.loads(got[1][2])["Status"] == "ok"


# --------------------------------------------------------------------------- flow control

def test_too_many_in_flight_pauses_reading_until_drained(inproc):
    h = inproc(max_pipeline=4)
    acc = unique_account("flow")
    c = h.client()
    c.send(b"".join(add(acc, "n") for _ in range(2)))
    assert c.tr.pauses == 0 and c.tr.reading     # under the limit: keeps reading
    c.wait_answers(2)
    c.send(b"".join(add(acc, "n") for _ in range(10)))
    # ten answers wait for their commit: over max_pipeline, reading stops at once
    assert c.tr.pauses == 1 and not c.tr.reading
    got = c.wait_answers(12)
    assert [counter_value(b) for _s, _h, b in got] == list(range(1, 13))
    h.spin()
    assert c.tr.reading and c.tr.resumes == 1 and c.tr.pauses == 1


def test_pause_writing_stops_reading_until_resume_writing(inproc):
    h = inproc()
    acc = unique_account("wflow")
    c = h.client()
    c.conn.pause_writing()
    assert not c.tr.reading and c.tr.pauses == 1
    c.send(add(acc, "n"))                        # already in the buffer: still served
    c.wait_answers(1)
    h.spin()
    assert not c.tr.reading and c.tr.resumes == 0   # answers drained, but writing is paused
    c.conn.resume_writing()
    assert c.tr.reading and c.tr.resumes == 1
    c.send(add(acc, "n"))
    got = c.wait_answers(2)
    assert counter_value(got[1][2]) == 2


# --------------------------------------------------------------------------- leaks

def lock_req(acc: str, **fields) -> bytes:
    return post(f"/db/{acc}", {"LockID": "L", **fields})


def test_counts_return_to_zero(inproc):
    h = inproc()
    acc = unique_account("leak")
    s = h.server

    # ---- a burst of writes on pipelined connections, one closed by its last request
    writers = [h.client() for _ in range(4)]
    for i, w in enumerate(writers):
        reqs = []
        for j in range(15):
            reqs.append(post(f"/db/{acc}", {
                "KVSet": [{"Key": f"b{i}-{j}", "Value": {"j": j}}],
                "Atomic": [{"Key": f"c{i}", "Add": 1}],
                "Seq": [{"Key": "s"}],
                "IdempotencyIDs": [f"id-{i}-{j}"],
            }))
        reqs.append(post(f"/db/{acc}", {"KVSet": [{"Key": f"b{i}-1", "Delete": True}]}, close=(i == 0)))
        w.send(b"".join(reqs))
    for w in writers:
        got = w.wait_answers(16)
        assert [st for st, _h, _b in got] == [200] * 16, got[-1]
    h.run_until(lambda: writers[0].tr.closed, "the Connection: close writer closed")

    # ---- lock waiters: A holds, B C D E wait (FIFO)
    a, b, cc, d, e = (h.client() for _ in range(5))
    a.send(lock_req(acc, LockDur=30))
    handle_a = json.loads(a.wait_answers(1)[0][2])["Lock"]
    b.send(lock_req(acc, LockDur=0.3, LockWait=60))      # granted next; its lock expires
    cc.send(lock_req(acc, LockDur=30, LockWait=60))      # its client goes away
    d.send(lock_req(acc, LockDur=30, LockWait=0.3))      # gives up waiting: 409
    e.send(lock_req(acc, LockDur=30, LockWait=60))       # granted when B's lock expires
    h.spin()
    assert s.counts()["waiters"] == 4 - len(d.answers())    # D may have given up already
    status, _h, body = d.wait_answers(1, "D's wait ends")[0]
    assert status == 409 and json.loads(body)["Code"] == "locked"
    assert s.counts()["waiters"] == 3
    cc.lose()
    assert s.counts()["waiters"] == 2
    a.send(post(f"/db/{acc}", {"UnlockID": "L", "Unlock": handle_a}))
    assert a.wait_answers(2)[1][0] == 200
    handle_b = json.loads(b.wait_answers(1, "B granted")[0][2])["Lock"]
    assert handle_b > handle_a
    handle_e = json.loads(e.wait_answers(1, "E granted after B's lock expired")[0][2])["Lock"]
    assert handle_e > handle_b
    assert s.counts()["waiters"] == 0 and s.counts()["locks_held"] == 1
    e.send(post(f"/db/{acc}", {"UnlockID": "L", "Unlock": handle_e}))
    assert e.wait_answers(2)[1][0] == 200
    assert cc.answers() == []                    # a waiter that left is never granted

    # ---- watchers: answered by a write, timed out, or their connection gone
    probe = h.client()        # the account revision, from a prefix watch that answers at once
    probe.send(post(f"/watch/{acc}", {"Prefix": "none/", "Version": 0, "Timeout": 0}))
    rev = json.loads(probe.wait_answers(1)[0][2])["Rev"]
    assert rev >= 1
    w_answered, w_timeout, w_lost, w_eof = (h.client() for _ in range(4))
    p_answered, p_timeout, p_lost, g_answered = (h.client() for _ in range(4))
    w_answered.send(post(f"/watch/{acc}", {"Key": "wk1", "Version": 0, "Timeout": 60}))
    w_timeout.send(post(f"/watch/{acc}", {"Key": "wk2", "Version": 0, "Timeout": 0.3}))
    w_lost.send(post(f"/watch/{acc}", {"Key": "wk1", "Version": 0, "Timeout": 60}))
    w_eof.send(post(f"/watch/{acc}", {"Key": "wk3", "Version": 0, "Timeout": 60}))
    p_answered.send(post(f"/watch/{acc}", {"Prefix": "p/", "Version": rev, "Timeout": 60}))
    p_timeout.send(post(f"/watch/{acc}", {"Prefix": "q/", "Version": rev, "Timeout": 0.3}))
    p_lost.send(post(f"/watch/{acc}", {"Prefix": "p/", "Version": rev, "Timeout": 60}))
    g_answered.send(get(f"/db/{acc}/kv/wk4?watch=0&timeout=60"))
    h.spin()

    def timed_out() -> int:      # the two short watches may have ended already
        return len(w_timeout.answers()) + len(p_timeout.answers())
    assert s.counts()["watchers"] == 8 - timed_out()
    w_lost.lose()
    p_lost.lose()
    w_eof.half_close()                           # the watch leaves, then the connection closes
    h.run_until(lambda: w_eof.tr.closed, "the half-closed watcher's connection closed")
    assert s.counts()["watchers"] == 5 - timed_out()
    assert w_timeout.wait_answers(1)[0][0] == 200
    assert p_timeout.wait_answers(1)[0][0] == 200
    assert json.loads(p_timeout.answers()[0][2])["KV"] == []
    writer = writers[1]
    writer.send(post(f"/db/{acc}", {"KVSet": [{"Key": "wk1", "Value": 1}, {"Key": "p/x", "Value": 2},
                                              {"Key": "wk4", "Value": 3}]}))
    assert json.loads(w_answered.wait_answers(1)[0][2])["Value"] == 1
    assert json.loads(p_answered.wait_answers(1)[0][2])["KV"][0]["Key"] == "p/x"
    assert json.loads(g_answered.wait_answers(1)[0][2])["Value"] == 3
    assert s.counts()["watchers"] == 0

    # ---- REST locks: a waiter granted by DELETE, one whose client goes away
    r1, r2, r3 = (h.client() for _ in range(3))
    r1.send(post(f"/db/{acc}/lock/R?dur=30", {}))
    handle_r1 = json.loads(r1.wait_answers(1)[0][2])["Lock"]
    r2.send(post(f"/db/{acc}/lock/R?dur=30&wait=60", {}))
    r3.send(post(f"/db/{acc}/lock/R?dur=30&wait=60", {}))
    h.spin()
    assert s.counts()["waiters"] == 2
    r3.lose()
    r1.send(b"DELETE /db/%s/lock/R?handle=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (acc.encode(), handle_r1))
    assert r1.wait_answers(2)[1][0] == 200
    handle_r2 = json.loads(r2.wait_answers(1, "R granted to r2")[0][2])["Lock"]
    r2.send(b"DELETE /db/%s/lock/R?handle=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (acc.encode(), handle_r2))
    assert r2.wait_answers(2)[1][0] == 200
    assert s.counts()["waiters"] == 0 and s.counts()["locks_held"] == 0
    open_clients = [c for c in h.clients if not c.tr.closed]
    assert s.counts()["connections"] == len(open_clients)

    # ---- every client goes away; then a quiet period past a checkpoint and a sweep
    for c in h.clients:
        c.lose()
    h.spin()
    h.settle(lambda: s.counts() == ZERO, limit=10 * 0.2 + 3)
    assert s.counts() == ZERO


def test_shutdown_answers_waiters_and_watchers_and_counts_drop(inproc):
    h = inproc()
    acc = unique_account("down")
    s = h.server
    holder, waiter, watcher = h.client(), h.client(), h.client()
    holder.send(lock_req(acc, LockDur=30))
    holder.wait_answers(1)
    waiter.send(lock_req(acc, LockDur=30, LockWait=60))
    watcher.send(post(f"/watch/{acc}", {"Key": "k", "Version": 0, "Timeout": 60}))
    h.spin()
    assert s.counts()["waiters"] == 1 and s.counts()["watchers"] == 1
    s.begin_shutdown()
    status, headers, body = waiter.wait_answers(1)[0]
    assert status == 503 and json.loads(body)["Code"] == "shutting_down"
    assert headers.get("connection") == "close"
    status, headers, body = watcher.wait_answers(1)[0]
    assert status == 200 and json.loads(body) == {"Key": "k", "Version": 0}
    assert headers.get("connection") == "close"
    h.run_until(lambda: waiter.tr.closed and watcher.tr.closed, "both connections closed")
    c = s.counts()
    assert (c["waiters"], c["watchers"], c["connections"]) == (0, 0, 1)   # the holder stays connected
    assert c["locks_held"] == 1                  # a held lock outlives a shutdown (and a restart)


# --------------------------------------------------------------------------- closing

def test_a_peer_that_never_takes_its_408_is_aborted(inproc):
    """A slow-header client gets 408 and close(); when the transport never finishes
    closing (a peer that does not read keeps close() waiting), the sweep aborts it."""
    h = inproc(header_timeout=0.3, idle_timeout=5)
    c = h.client()
    c.tr.loop = None                  # close() marks the transport, never reports loss
    c.send(b"POST /db/a HTTP/1.1\r\nHost: t\r\nX-Slow: abc")
    got = c.wait_answers(1, "the 408")
    assert got[0][0] == 408 and json.loads(got[0][2])["Code"] == "request_timeout"
    assert c.tr.closed and not c.tr.aborted
    h.run_until(lambda: c.tr.aborted, "abort after the close grace")


def test_an_idle_close_that_never_completes_is_aborted(inproc):
    h = inproc(idle_timeout=0.3)
    c = h.client()
    c.tr.loop = None
    c.send(get("/health"))
    assert c.wait_answers(1)[0][0] == 200
    h.run_until(lambda: c.tr.closed, "the idle close")
    assert not c.tr.aborted
    h.run_until(lambda: c.tr.aborted, "abort after the close grace")


def test_checkpointed_entries_leave_the_overlay_a_slice_per_loop_pass(inproc):
    # 40 batches of 100 keys, checkpointed with no commit after it: the sweep starts
    # the purge, which drops about one slice (2,000 keys, whole batches) per loop pass
    # and then lets the loop serve its connections, instead of dropping every key at once
    h = inproc(checkpoint_interval=3600)
    acc = unique_account("slices")
    c = h.client()
    for i in range(40):
        c.send(post(f"/db/{acc}", {"KVSet": [{"Key": f"k{i}-{j}", "Value": j} for j in range(100)]}))
        assert c.wait_answers(i + 1)[i][0] == 200      # each request its own batch
    s = h.server
    done = []
    s.when_checkpointed(done.append)
    h.run_until(lambda: done, "the checkpoint")
    before = s.counts()["overlay_entries"]
    assert before >= 4000 and s.counts()["unapplied_batches"] == 40
    s._sweep()
    left = s.counts()["overlay_entries"]
    assert 0 < before - left <= 2100 and left >= 1800     # one slice, whole batches
    h.run_until(lambda: s.counts()["overlay_entries"] == 0, "the rest of the purge")
    assert s.counts()["unapplied_batches"] == 0
    # the keys now read from LMDB alone
    c.send(post(f"/db/{acc}", {"KVGet": [f"k{i}-99" for i in range(40)]}))
    status, _h, body = c.wait_answers(41)[40]
    assert status == 200 and [kv["Value"] for kv in json.loads(body)["KV"]] == [99] * 40


# --------------------------------------------------------------------------- checkpoint size

def _write_100kb_values(h, acc: str, keys_of) -> object:
    """40 requests, request i setting keys_of(i) to 100 KB values, each answered 200."""
    c = h.client()
    for i in range(40):
        c.send(post(f"/db/{acc}", {"KVSet": [{"Key": f"k{j}", "Value": "x" * 100_000} for j in keys_of(i)]}))
        assert c.wait_answers(i + 1)[i][0] == 200
    return c


def test_a_checkpoint_starts_once_32_mib_of_new_keys_wait(inproc):
    # 40 requests of 10 keys x 100 KB, every key new: 40 MB of keys the next checkpoint
    # would write. Far from the 2 s interval (an hour here), the 100,000 records and the
    # 256 MiB of logged data, a checkpoint starts anyway, so that one checkpoint does not
    # write more pages at once than the log's fdatasyncs can wait behind
    h = inproc(checkpoint_interval=3600)
    s = h.server
    _write_100kb_values(h, unique_account("newdata"), lambda i: range(10 * i, 10 * i + 10))
    h.run_until(lambda: s.checkpoints >= 1, "a checkpoint started by the new keys' size")
    assert s.store.new_data < 32 << 20          # counting again from the cut


def test_rewriting_the_same_keys_does_not_start_a_checkpoint(inproc):
    # the same 10 keys x 100 KB rewritten 40 times: 40 MB logged, but a checkpoint would
    # write 1 MB of them (the newest value of each key), so none starts
    h = inproc(checkpoint_interval=3600)
    acc = unique_account("rewrite")
    s = h.server
    c = _write_100kb_values(h, acc, lambda i: range(10))
    h.settle(lambda: False, 0.3)                # the loop's turn: the commits, any trigger
    assert s.checkpoints == 0
    assert 0 < s.store.new_data <= 2 << 20
    # and the values are all there, the newest of each key
    c.send(post(f"/db/{acc}", {"KVGet": [f"k{j}" for j in range(10)]}))
    status, _h, body = c.wait_answers(41)[40]
    assert status == 200 and [kv["Version"] for kv in json.loads(body)["KV"]] == [40] * 10


def test_values_that_share_leaf_pages_do_not_count_toward_the_checkpoint_bound(inproc):
    # 40 requests of 100 new keys x 1.5 KB: such values share B-tree leaf pages, which a
    # bigger checkpoint rewrites for more of them at once, so they do not count toward
    # the 32 MiB of new keys (a big value has overflow pages of its own and does)
    h = inproc(checkpoint_interval=3600)
    acc = unique_account("leafsize")
    c = h.client()
    for i in range(40):
        c.send(post(f"/db/{acc}", {"KVSet": [{"Key": f"k{i}-{j}", "Value": "y" * 1500} for j in range(100)]}))
        assert c.wait_answers(i + 1)[i][0] == 200
    assert h.server.store.new_data == 0
    c.send(post(f"/db/{acc}", {"KVSet": [{"Key": "big", "Value": "z" * 3000}]}))
    assert c.wait_answers(41)[40][0] == 200
    assert 3000 < h.server.store.new_data < 3000 + 4096 + 64     # its overflow pages
