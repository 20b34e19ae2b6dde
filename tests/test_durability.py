"""Durability (API.md "Basics": a 2xx only after fsync), restarts, SIGTERM drain,
SIGKILL during concurrent writes, and storage_full (507).
"""
from __future__ import annotations

import os
import threading
import time

from helpers import Raw, assert_error, http_request, unique_account


def test_everything_survives_a_clean_restart(server_factory):
    srv = server_factory()
    acc = unique_account("restart")
    c = srv.client()
    c.db_ok(acc, {"KVSet": [{"Key": "a", "Value": {"x": 1}}, {"Key": "gone", "Value": 1},
                            {"Key": "n", "Value": None}]})                                   # rev 1
    c.db_ok(acc, {"KVSet": [{"Key": "gone", "Delete": True}, {"Key": "b", "Value": "bee"}]})  # rev 2
    c.db_ok(acc, {"Atomic": [{"Key": "c", "Add": 41}, {"Key": "neg", "Set": -7}],
                  "Seq": [{"Key": "s", "Count": 10}], "IdempotencyIDs": ["done-1"]})
    c.close()
    srv.restart()
    c = srv.client()
    out = c.db_ok(acc, {"KVGet": ["a", "b", "gone", "n"]})
    assert out["KV"] == [{"Key": "a", "Value": {"x": 1}, "Version": 1},
                         {"Key": "b", "Value": "bee", "Version": 2},
                         {"Key": "gone", "Version": 0},
                         {"Key": "n", "Value": None, "Version": 1}]
    assert c.counter(acc, "c") == 41
    assert c.counter(acc, "neg") == -7
    assert c.seq_last(acc, "s") == 10
    nxt = c.db_ok(acc, {"Seq": [{"Key": "s"}]})["Seq"][0]["Value"]
    assert nxt > 10
    assert_error(c.db(acc, {"IdempotencyIDs": ["done-1"]}), 409, "duplicate_request")
    # the revision goes on from where it was
    assert c.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 2}]})["KVSet"] == [{"Key": "a", "Version": 3}]
    c.close()


def test_acknowledged_write_survives_sigkill(server_factory):
    srv = server_factory()
    acc = unique_account("kill")
    c = srv.client()
    c.db_ok(acc, {"KVSet": [{"Key": "k", "Value": "v1"}, {"Key": "d", "Value": 0}]})
    c.db_ok(acc, {"KVSet": [{"Key": "k", "Value": "v2"}, {"Key": "d", "Delete": True}],
                  "Atomic": [{"Key": "c", "Add": 3}], "IdempotencyIDs": ["paid-1"],
                  "Seq": [{"Key": "s", "Count": 4}]})
    c.close()
    srv.restart(hard=True)
    c = srv.client()
    assert c.kv(acc, "k") == {"Key": "k", "Value": "v2", "Version": 2}
    assert c.kv(acc, "d") == {"Key": "d", "Version": 0}
    assert c.counter(acc, "c") == 3
    assert_error(c.db(acc, {"IdempotencyIDs": ["paid-1"]}), 409, "duplicate_request")
    assert c.db_ok(acc, {"Seq": [{"Key": "s"}]})["Seq"][0]["Value"] > 4
    assert c.db_ok(acc, {"KVSet": [{"Key": "k", "Value": "v3"}]})["KVSet"][0]["Version"] == 3
    c.close()


def test_sigkill_during_concurrent_writes_keeps_every_acknowledged_write(server_factory):
    srv = server_factory()
    acc = unique_account("crash")
    stop = threading.Event()
    lock = threading.Lock()
    acked_kv: dict[str, tuple[int, int]] = {}      # key -> (value, version)
    adds_sent = [0]
    adds_acked = [0]
    seq_acked: list[int] = []
    unexpected: list = []

    def writer(t: int):
        c = srv.client(timeout=10)
        i = 0
        while not stop.is_set():
            i += 1
            try:
                if i % 3 == 0:
                    with lock:
                        adds_sent[0] += 1
                    r = c.post(f"/db/{acc}/counter/total")
                    if r.status == 200:
                        with lock:
                            adds_acked[0] += 1
                    else:
                        unexpected.append(r)
                elif i % 3 == 1:
                    key = f"t{t}/k{i}"
                    out = c.db(acc, {"KVSet": [{"Key": key, "Value": {"t": t, "i": i, "pad": "p" * 200}}]})
                    if out.status == 200:
                        with lock:
                            acked_kv[key] = (i, out.json["KVSet"][0]["Version"])
                    else:
                        unexpected.append(out)
                else:
                    r = c.post(f"/db/{acc}/sequence/ids?count=2")
                    if r.status == 200:
                        with lock:
                            seq_acked.extend([r.json["Value"], r.json["Value"] + 1])
                    else:
                        unexpected.append(r)
            except Exception:
                # the server died under us: this request may or may not have been applied
                break
        c.close()

    # readers on other connections: nothing they see may be lost in the crash
    seen_total = [0]
    seen_hot: dict[int, int] = {}
    seen_seq = [0]

    def reader():
        c = srv.client(timeout=10)
        while not stop.is_set():
            try:
                total = c.get(f"/db/{acc}/counter/total")
                hot = c.db(acc, {"KVGet": [f"hot{t}" for t in range(8)]})
                seq = c.get(f"/db/{acc}/sequence/ids")
            except Exception:
                break
            if total.status != 200 or hot.status != 200 or seq.status != 200:
                unexpected.append((total, hot, seq))
                break
            with lock:
                seen_total[0] = max(seen_total[0], total.json["Value"])
                seen_seq[0] = max(seen_seq[0], seq.json["Value"])
                for e in hot.json["KV"]:
                    if e["Version"]:
                        t = int(e["Key"][3:])
                        seen_hot[t] = max(seen_hot.get(t, 0), e["Value"])
        c.close()

    def hot_writer(t: int):
        # one key per writer, written with increasing values
        c = srv.client(timeout=10)
        i = 0
        while not stop.is_set():
            i += 1
            try:
                c.db(acc, {"KVSet": [{"Key": f"hot{t}", "Value": i}]})
            except Exception:
                break
        c.close()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    threads += [threading.Thread(target=hot_writer, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with lock:
            if len(acked_kv) >= 150 and adds_acked[0] >= 100:
                break
        time.sleep(0.05)
    srv.kill()  # SIGKILL while the writers are still going
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not unexpected, unexpected[:3]
    assert len(acked_kv) >= 150, "too few writes were acknowledged before the kill"

    srv.start()
    c = srv.client()
    keys = sorted(acked_kv)
    for start in range(0, len(keys), 500):
        batch = keys[start:start + 500]
        out = c.db_ok(acc, {"KVGet": batch})["KV"]
        for entry in out:
            i, version = acked_kv[entry["Key"]]
            t = int(entry["Key"].split("/")[0][1:])
            assert entry == {"Key": entry["Key"], "Value": {"t": t, "i": i, "pad": "p" * 200},
                             "Version": version}, entry
    total = c.counter(acc, "total")
    assert adds_acked[0] <= total <= adds_sent[0]
    # no read revealed a state that was not durable
    assert total >= seen_total[0]
    assert seen_hot, "the readers saw no hot key"
    hot_now = c.db_ok(acc, {"KVGet": [f"hot{t}" for t in seen_hot]})["KV"]
    for e in hot_now:
        assert e["Value"] >= seen_hot[int(e["Key"][3:])], (e, seen_hot)
    # sequence numbers never repeat, also across the crash
    assert len(seq_acked) == len(set(seq_acked))
    nxt = c.post(f"/db/{acc}/sequence/ids").json["Value"]
    assert nxt > max(seq_acked) and nxt > seen_seq[0]
    # versions only grow: the next write gets a version above every acknowledged one
    v = c.db_ok(acc, {"KVSet": [{"Key": "after", "Value": 1}]})["KVSet"][0]["Version"]
    assert v > max(version for _, version in acked_kv.values())
    c.close()


def test_sigterm_answers_requests_sent_before_and_exits_0(server_factory):
    srv = server_factory()
    acc = unique_account("drain")
    singles: list[Raw] = []
    for _ in range(10):
        raw = srv.raw(timeout=20)
        # make sure the connection is accepted and working
        raw.send(http_request("GET", "/health"))
        assert raw.read_response().status == 200
        singles.append(raw)
    piped = srv.raw(timeout=20)
    for raw in singles:
        raw.send(http_request("POST", f"/db/{acc}/counter/c"))
    piped.send(b"".join(http_request("POST", f"/db/{acc}/counter/c") for _ in range(30)))
    # connections that may still sit in the listen backlog, each with a request sent
    for _ in range(5):
        raw = srv.raw(timeout=20)
        raw.send(http_request("POST", f"/db/{acc}/counter/c"))
        singles.append(raw)
    srv.proc.send_signal(15)  # SIGTERM
    oks = 0
    for raw in singles:
        r = raw.read_response()  # never left unanswered
        if r.status == 200:
            oks += 1
        else:
            assert_error(r, 503, "shutting_down")
            assert (r.header("Connection") or "").lower() == "close", r.header_list
        raw.close()
    answered = 0
    while answered < 30:
        try:
            r = piped.read_response()
        except EOFError:
            break  # the server closed after a `Connection: close` response
        answered += 1
        if r.status == 200:
            oks += 1
        else:
            assert_error(r, 503, "shutting_down")
        if (r.header("Connection") or "").lower() == "close":
            piped.wait_closed()
            break
    piped.close()
    assert answered >= 1
    code = srv.proc.wait(timeout=20)
    assert code == 0, srv.log_tail()
    srv.start()
    c = srv.client()
    # every 200 was applied and durable; every 503 / unanswered request changed nothing
    assert c.counter(acc, "c") == oks
    c.close()


def test_sigterm_on_idle_server_exits_0_and_keeps_data(server_factory):
    srv = server_factory()
    acc = unique_account("term")
    c = srv.client()
    c.put(f"/db/{acc}/kv/k", "kept")
    idle = srv.raw()  # an idle keep-alive connection must not hold up the exit
    idle.send(http_request("GET", "/health"))
    assert idle.read_response().status == 200
    code = srv.terminate(timeout=20)
    assert code == 0, srv.log_tail()
    idle.close()
    c.close()
    srv.start()
    c = srv.client()
    assert c.get(f"/db/{acc}/kv/k").json == {"Key": "k", "Value": "kept", "Version": 1}
    c.close()


FULL_ENV = {"CDRAGON_MAX_STORAGE_BYTES": 4 * 1024 * 1024, "CDRAGON_INITIAL_MAP_BYTES": 1024 * 1024}


def fill_storage(c, acc):
    """PUT ~100 KB values to new keys until a refusal: (acked {key: value}, key, response)."""
    acked: dict[str, str] = {}
    for i in range(400):
        key = f"blob{i}"
        value = f"{i:06d}" + os.urandom(50_000).hex()  # ~100 KB of text
        r = c.put(f"/db/{acc}/kv/{key}", value)
        if r.status != 200:
            return acked, key, r
        acked[key] = value
    raise AssertionError("storage never filled up")


def test_storage_full_is_507_and_loses_nothing(server_factory):
    srv = server_factory(env=FULL_ENV)
    acc = unique_account("full")
    c = srv.client()
    acked, key_full, r = fill_storage(c, acc)
    assert_error(r, 507, "storage_full")
    assert len(acked) >= 5
    # nothing was written by the refused request
    assert_error(c.get(f"/db/{acc}/kv/{key_full}"), 404, "not_found")
    # reads still work
    for key, value in acked.items():
        got = c.get(f"/db/{acc}/kv/{key}?raw")
        assert got.status == 200 and got.body == value.encode(), key
    r_rev = c.db(acc, {"KVGet": [key_full, "blob0"]})
    assert r_rev.status == 200, r_rev
    assert r_rev.json["KV"][0] == {"Key": key_full, "Version": 0}
    assert r_rev.json["KV"][1]["Version"] == 1
    # liveness yes, readiness no
    h = c.get("/health")
    assert h.status == 200 and h.json["Status"] == "ok"
    ready = c.get("/ready")
    assert ready.status == 503, ready
    assert ready.content_type == "application/json"
    c.close()
    # after a restart every acknowledged write is still there
    srv.restart()
    c = srv.client()
    for key, value in acked.items():
        got = c.get(f"/db/{acc}/kv/{key}?raw")
        assert got.status == 200 and got.body == value.encode(), key
    versions = sorted(c.get(f"/db/{acc}/kv/{k}").json["Version"] for k in acked)
    assert versions == list(range(1, len(acked) + 1))
    c.close()


def test_storage_full_still_answers_pure_reads(server_factory):
    srv = server_factory(env=FULL_ENV)
    acc = unique_account("fullread")
    c = srv.client()
    c.db_ok(acc, {"Atomic": [{"Key": "n", "Add": 5}], "Seq": [{"Key": "s", "Count": 2}]})
    acked, _, r = fill_storage(c, acc)
    assert_error(r, 507, "storage_full")
    assert c.get(f"/db/{acc}/counter/n").json == {"Key": "n", "Value": 5}
    assert c.get(f"/db/{acc}/sequence/s").json == {"Key": "s", "Value": 2}
    # "Add: 0 reads a counter": a request that only reads changes nothing and needs no space
    r = c.db(acc, {"Atomic": [{"Key": "n", "Add": 0}], "KVGet": ["blob0"]})
    assert r.status == 200, r
    assert r.json["Atomic"] == [{"Key": "n", "Value": 5}]
    c.close()


def test_storage_full_under_concurrent_writers_rolls_back_refused_requests(server_factory):
    srv = server_factory(env=FULL_ENV)
    acc = unique_account("fullc")
    lock = threading.Lock()
    acked: dict[str, tuple[str, int]] = {}   # key -> (value, version)
    refused: list[tuple[str, dict]] = []     # (key, request body)
    unexpected: list = []

    def writer(t: int):
        c = srv.client()
        for i in range(200):
            key = f"w{t}-{i}"
            value = os.urandom(30_000).hex()
            body = {"IdempotencyIDs": [f"id-{key}"], "KVSet": [{"Key": key, "Value": value}],
                    "Atomic": [{"Key": "writes", "Add": 1}]}
            r = c.db(acc, body)
            if r.status == 200:
                with lock:
                    acked[key] = (value, r.json["KVSet"][0]["Version"])
                continue
            if r.status == 507 and r.json.get("Code") == "storage_full":
                with lock:
                    refused.append((key, body))
            else:
                unexpected.append(r)
            break
        c.close()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not unexpected, unexpected[:3]
    assert refused, "storage never filled up"
    assert acked

    def check(c):
        # every acknowledged write is there, with the version it was given
        for key, (value, version) in acked.items():
            assert c.kv(acc, key) == {"Key": key, "Value": value, "Version": version}
        # every refused request changed nothing: no key, no counter increment
        for key, _ in refused:
            assert c.kv(acc, key) == {"Key": key, "Version": 0}
        r = c.get(f"/db/{acc}/counter/writes")
        assert r.status == 200 and r.json == {"Key": "writes", "Value": len(acked)}, r
        # acknowledged requests got distinct versions
        versions = [v for _, v in acked.values()]
        assert len(set(versions)) == len(versions)

    c = srv.client()
    check(c)
    # the ids of refused requests were not claimed: a retry is never a duplicate_request
    for key, body in refused:
        r = c.db(acc, body)
        assert r.status in (200, 507), r
        if r.status == 200:
            acked[key] = (body["KVSet"][0]["Value"], r.json["KVSet"][0]["Version"])
        else:
            assert_error(r, 507, "storage_full")
    refused[:] = [(k, b) for k, b in refused if k not in acked]
    c.close()
    srv.restart(hard=True)
    c = srv.client()
    check(c)
    c.close()
