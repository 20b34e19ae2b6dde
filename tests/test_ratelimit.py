"""Rate limits (API.md "Rate limits"): GCRA by key, in POST /db (RateLimit entries,
checked last, all or nothing) and on POST/GET /db/{acc}/ratelimit/{key}, against the
real server. Exact counts come from limits slow enough (an emission interval of
seconds to hours) that the time a test takes never changes them; durability across
SIGKILL; export/import of limiter states; bad input is 400 and changes nothing.
"""
from __future__ import annotations

import json
import math
import time

import pytest

from helpers import assert_error, unique_account


def take(c, acc, key, **params):
    q = "&".join(f"{k}={v}" for k, v in params.items())
    return c.post(f"/db/{acc}/ratelimit/{key}?{q}")


def peek(c, acc, key, **params):
    q = "&".join(f"{k}={v}" for k, v in params.items())
    return c.get(f"/db/{acc}/ratelimit/{key}?{q}")


HOURLY = {"rate": 10, "per": 3600}          # T = 360 s: nothing recovers during a test


def takes_allowed(c, acc, key, limit=100, **params) -> int:
    n = 0
    while n < limit:
        r = take(c, acc, key, **params)
        if r.status == 429:
            return n
        assert r.status == 200, r
        n += 1
    return n


# ------------------------------------------------------------------------------ REST
def test_a_burst_is_exactly_burst_takes(client, acc):
    assert takes_allowed(client, acc, "b", burst=4, **HOURLY) == 4
    assert takes_allowed(client, acc, "default", **HOURLY) == 10      # Burst defaults to Rate
    # rates whose interval is not whole nanoseconds still give exactly Burst
    assert takes_allowed(client, acc, "thirds", rate=3, per=3600, burst=3) == 3
    assert takes_allowed(client, acc, "sevenths", rate=7, per="3600.7", burst=7) == 7


def test_take_answer_and_headers(client, acc):
    r = take(client, acc, "k", rate=100, per=3600, burst=20)
    assert r.status == 200, r
    assert r.json["Key"] == "k" and r.json["Allowed"] is True and r.json["Remaining"] == 19
    # ResetAfter: one interval (36 s), less the time since the take
    assert 30 < r.json["ResetAfter"] <= 36
    assert r.header("RateLimit-Limit") == "20"
    assert r.header("RateLimit-Remaining") == "19"
    assert r.header("RateLimit-Reset") == str(math.ceil(r.json["ResetAfter"]))
    r = take(client, acc, "k", rate=100, per=3600, burst=20, cost=5)
    assert r.json["Remaining"] == 14 and 6 * 36 - 6 < r.json["ResetAfter"] <= 6 * 36


def test_refused_take_is_429_with_state_and_retry_after_rounded_up(client, acc):
    for _ in range(3):
        assert take(client, acc, "k", rate=3, per=10).status == 200
    r = take(client, acc, "k", rate=3, per=10)
    body = assert_error(r, 429, "rate_limited")
    assert body["Key"] == "k" and body["Allowed"] is False and body["Remaining"] == 0
    assert 0 < body["RetryAfter"] <= 10 / 3 + 0.001
    assert 10 - 1 < body["ResetAfter"] <= 10
    assert r.header("Retry-After") == str(math.ceil(body["RetryAfter"]))
    assert r.header("RateLimit-Remaining") == "0" and r.header("RateLimit-Limit") == "3"
    assert r.header("RateLimit-Reset") == str(math.ceil(body["ResetAfter"]))


def test_waiting_retry_after_is_never_early(client, acc):
    """The sustained rate: after a refusal, waiting RetryAfter always gets the next take."""
    p = {"rate": 2, "per": 1, "burst": 2}
    assert takes_allowed(client, acc, "s", **p) == 2
    for _ in range(2):
        r = take(client, acc, "s", **p)
        assert r.status == 429
        time.sleep(r.json["RetryAfter"])
        assert take(client, acc, "s", **p).status == 200


def test_peek_takes_nothing(client, acc):
    r = peek(client, acc, "p", rate=5, per=3600)
    assert r.status == 200 and r.json == {"Key": "p", "Allowed": True, "Remaining": 5, "ResetAfter": 0.0}
    assert r.header("RateLimit-Limit") == "5" and r.header("RateLimit-Reset") == "0"
    for _ in range(3):
        assert peek(client, acc, "p", rate=5, per=3600).json["Remaining"] == 5
    assert takes_allowed(client, acc, "p", rate=5, per=3600) == 5
    r = peek(client, acc, "p", rate=5, per=3600)
    assert r.status == 200                         # a peek is always 200
    assert r.json["Allowed"] is False and r.json["Remaining"] == 0 and r.json["RetryAfter"] > 0
    assert r.header("RateLimit-Remaining") == "0"
    # HEAD works on the GET route
    h = client.head(f"/db/{acc}/ratelimit/p?rate=5&per=3600")
    assert h.status == 200 and h.body == b""


def test_cost_zero_in_rest_take_peeks(client, acc):
    assert take(client, acc, "z", cost=0, **HOURLY).json["Remaining"] == 10
    assert takes_allowed(client, acc, "z", **HOURLY) == 10
    r = take(client, acc, "z", cost=0, **HOURLY)
    assert r.status == 200 and r.json["Allowed"] is False


def test_cost_counts_against_the_burst(client, acc):
    p = {"rate": 10, "per": 3600, "burst": 10}
    assert take(client, acc, "c", cost=7, **p).json["Remaining"] == 3
    assert take(client, acc, "c", cost=4, **p).status == 429       # 4 > 3 left: nothing taken
    assert take(client, acc, "c", cost=3, **p).json["Remaining"] == 0
    assert take(client, acc, "c", cost=1, **p).status == 429


def test_keys_and_accounts_are_separate(client, acc):
    other = unique_account("rl-other")
    assert takes_allowed(client, acc, "k", rate=1, per=3600) == 1
    assert takes_allowed(client, acc, "k2", rate=1, per=3600) == 1
    assert takes_allowed(client, other, "k", rate=1, per=3600) == 1
    # a namespace of its own: a counter or KV key of the same name is untouched
    assert client.counter(acc, "k") == 0
    assert client.get(f"/db/{acc}/kv/k").status == 404
    # percent-decoded paths: the same key
    assert take(client, acc, "a%20b", rate=1, per=3600).status == 200
    assert client.db(acc, {"RateLimit": [{"Key": "a b", "Rate": 1, "Per": 3600}]}).status == 429


@pytest.mark.parametrize("query", [
    "rate=0&per=60", "rate=-1&per=60", "rate=1000000001&per=60", "rate=x&per=60", "rate=1.5&per=60",
    "rate=10&per=0", "rate=10&per=-1", "rate=10&per=abc", "rate=10&per=1e3", "rate=10&per=31536001",
    "rate=10&per=nan", "rate=10&per=60&burst=0", "rate=10&per=60&burst=-2", "rate=10&per=60&cost=-1",
    "rate=10&per=60&cost=11", "rate=10&per=60&burst=5&cost=6", "per=60", "rate=10",
    "rate=10&per=60&color=red", "rate=10&per=60&rate=11",
    "rate=1000000000&per=0.5",                    # over 10^9 per second
    "rate=1&per=31536000&burst=1000000000",       # a full burst would take 10^9 years
])
def test_bad_query_is_400_and_takes_nothing(client, acc, query):
    assert_error(client.post(f"/db/{acc}/ratelimit/q?{query}"), 400, "bad_request")
    assert peek(client, acc, "q", rate=10, per=60).json["Remaining"] == 10


def test_bad_keys_and_methods(client, acc):
    assert_error(client.post(f"/db/{acc}/ratelimit/{'x' * 257}?rate=1&per=1"), 400, "bad_key")
    assert_error(client.post(f"/db/{acc}/ratelimit/%ff?rate=1&per=1"), 400, "bad_key")
    assert_error(client.put(f"/db/{acc}/ratelimit/k?rate=1&per=1"), 405, "method_not_allowed")
    assert_error(client.get(f"/db/{acc}/ratelimit/k?rate=1&per=1&cost=1"), 400, "bad_request")


# ------------------------------------------------------------------------------ POST /db
def test_request_applies_only_under_the_limit(client, acc):
    send = {"RateLimit": [{"Key": "mail:42", "Rate": 2, "Per": 3600}],
            "Atomic": [{"Key": "sent", "Add": 1}], "KVSet": [{"Key": "last", "Value": "x"}]}
    out = client.db_ok(acc, send)
    assert out["Atomic"] == [{"Key": "sent", "Value": 1}]
    assert out["RateLimit"][0]["Key"] == "mail:42" and out["RateLimit"][0]["Remaining"] == 1
    assert 1790 < out["RateLimit"][0]["ResetAfter"] <= 1800
    rev = out["Rev"]
    assert client.db_ok(acc, send)["RateLimit"][0]["Remaining"] == 0
    r = client.db(acc, send)
    body = assert_error(r, 429, "rate_limited")
    assert [e["Key"] for e in body["Limited"]] == ["mail:42"]
    assert 1790 < body["Limited"][0]["RetryAfter"] <= 1800
    assert r.header("Retry-After") == str(math.ceil(body["Limited"][0]["RetryAfter"]))
    # nothing of the refused request was applied
    assert client.counter(acc, "sent") == 2
    assert client.kv(acc, "last")["Version"] == rev + 1


def test_several_limits_all_must_pass(client, acc):
    tight = {"Key": "tight", "Rate": 1, "Per": 3600}
    loose = {"Key": "loose", "Rate": 100, "Per": 3600}
    assert client.db(acc, {"RateLimit": [tight, loose]}).status == 200
    r = client.db(acc, {"RateLimit": [loose, tight, {"Key": "t2", "Rate": 1, "Per": 7200, "Cost": 1}]})
    assert r.status == 429
    assert [e["Key"] for e in r.json["Limited"]] == ["tight"]
    # the loose key took nothing from the refused request
    assert client.db_ok(acc, {"RateLimit": [dict(loose, Cost=0)]})["RateLimit"][0]["Remaining"] == 99
    # with several limited keys Retry-After is the largest RetryAfter, rounded up
    client.db_ok(acc, {"RateLimit": [{"Key": "t3", "Rate": 1, "Per": 7200}]})
    r = client.db(acc, {"RateLimit": [tight, {"Key": "t3", "Rate": 1, "Per": 7200}]})
    waits = {e["Key"]: e["RetryAfter"] for e in r.json["Limited"]}
    assert set(waits) == {"tight", "t3"} and waits["t3"] > waits["tight"]
    assert r.header("Retry-After") == str(math.ceil(waits["t3"]))


def test_rate_limits_come_last(client, acc):
    """A request that fails for any other reason takes nothing."""
    rl = [{"Key": "once", "Rate": 1, "Per": 3600}]
    client.db_ok(acc, {"KVSet": [{"Key": "v", "Value": 1}]})
    r = client.db(acc, {"RateLimit": rl, "KVSet": [{"Key": "v", "Value": 2, "Version": 99}]})
    assert_error(r, 409, "precondition_failed")
    r = client.db(acc, {"RateLimit": rl, "Atomic": [{"Key": "big", "Add": 2**63 - 1}, {"Key": "big2", "Add": 1}]})
    assert r.status == 200          # (no overflow: now the one take is used)
    assert client.db(acc, {"RateLimit": rl, "Atomic": [{"Key": "big", "Add": 1}]}).status == 400   # overflow first
    assert_error(client.db(acc, {"RateLimit": rl}), 429, "rate_limited")


def test_cost_zero_entry_never_refuses(client, acc):
    rl = {"Key": "p", "Rate": 1, "Per": 3600}
    client.db_ok(acc, {"RateLimit": [rl]})
    out = client.db_ok(acc, {"RateLimit": [dict(rl, Cost=0)], "Atomic": [{"Key": "n", "Add": 1}]})
    assert out["RateLimit"][0]["Remaining"] == 0 and out["Atomic"][0]["Value"] == 1


@pytest.mark.parametrize("entry", [
    {"Key": "k", "Rate": 0, "Per": 60}, {"Key": "k", "Rate": -5, "Per": 60},
    {"Key": "k", "Rate": 10, "Per": 0}, {"Key": "k", "Rate": 10, "Per": -1.5},
    {"Key": "k", "Rate": 10, "Per": 60, "Burst": 0}, {"Key": "k", "Rate": "10", "Per": 60},
    {"Key": "k", "Rate": 10, "Per": "60"}, {"Key": "k", "Rate": 10.5, "Per": 60},
    {"Key": "k", "Rate": 10, "Per": 60, "Cost": 11}, {"Key": "k", "Rate": 10, "Per": 60, "Cost": -1},
    {"Key": "k", "Rate": 10, "Per": 60, "Cost": True}, {"Key": "k", "Rate": 10, "Per": 60, "Burst": None},
    {"Key": "k", "Rate": 10, "Per": 60, "Color": 1}, {"Key": "k", "Rate": 10}, {"Key": "k", "Per": 60},
    {"Rate": 10, "Per": 60}, {"Key": "k", "Rate": 10, "Per": 31536001}, {"Key": "k", "Rate": 10**10, "Per": 60},
    "k", None,
])
def test_bad_entries_are_400_and_nothing_changes(client, acc, entry):
    r = client.db(acc, {"RateLimit": [entry], "Atomic": [{"Key": "n", "Add": 1}]})
    assert r.status == 400 and r.json["Code"] in ("bad_request", "bad_key"), r
    assert client.counter(acc, "n") == 0
    assert client.db_ok(acc, {"RateLimit": [{"Key": "k", "Rate": 10, "Per": 60, "Cost": 0}]})["RateLimit"][0]["Remaining"] == 10


def test_bad_lists_and_keys(client, acc):
    assert_error(client.db(acc, {"RateLimit": {"Key": "k"}}), 400, "bad_request")
    assert_error(client.db(acc, {"RateLimit": [{"Key": "", "Rate": 1, "Per": 1}]}), 400, "bad_key")
    assert_error(client.db(acc, {"RateLimit": [{"Key": "a\u0000b", "Rate": 1, "Per": 1}]}), 400, "bad_key")
    twice = [{"Key": "k", "Rate": 1, "Per": 1}, {"Key": "k", "Rate": 2, "Per": 1}]
    assert_error(client.db(acc, {"RateLimit": twice}), 400, "bad_request")
    assert_error(client.db(acc, {"RateLimit": []}), 400, "bad_request")      # no operation


def test_fractional_per(client, acc):
    out = client.db_ok(acc, {"RateLimit": [{"Key": "f", "Rate": 4, "Per": 7200.5, "Burst": 2}]})
    assert out["RateLimit"][0]["Remaining"] == 1
    assert 1790 < out["RateLimit"][0]["ResetAfter"] <= 1800.125
    assert take(client, acc, "f", rate=4, per="7200.5", burst=2).json["Remaining"] == 0


# ------------------------------------------------------------------------------ state
def test_limits_survive_sigkill(server_factory):
    srv = server_factory()
    c = srv.client()
    acc = unique_account("rl-kill")
    assert takes_allowed(c, acc, "k", rate=5, per=3600) == 5
    c.db_ok(acc, {"RateLimit": [{"Key": "t", "Rate": 3, "Per": 3600}]})
    c.close()
    srv.restart(hard=True)
    c = srv.client()
    assert take(c, acc, "k", rate=5, per=3600).status == 429        # no fresh burst
    assert c.db_ok(acc, {"RateLimit": [{"Key": "t", "Rate": 3, "Per": 3600, "Cost": 0}]})["RateLimit"][0]["Remaining"] == 2
    c.close()


def test_export_and_import_carry_limiter_states(server_factory):
    src, dst = server_factory(), server_factory()
    acc = unique_account("rl-dump")
    c = src.client()
    assert takes_allowed(c, acc, "k", rate=2, per=3600) == 2
    take(c, acc, "recovered", rate=1000, per=0.001)          # fully recovered at once
    time.sleep(0.01)
    e = c.get(f"/admin/export?acc={acc}")
    c.close()
    lines = [json.loads(x) for x in e.body.splitlines()]
    recs = [d for d in lines[1:-1] if "RateLimit" in d]
    assert len(recs) == 1 and recs[0]["Acc"] == acc and recs[0]["RateLimit"] == "k"
    assert abs(recs[0]["TAT"] - (time.time() + 3600) * 1e9) < 60e9
    d = dst.client()
    assert take(d, acc, "k", rate=2, per=3600).status == 200          # dst: its own state
    r = d.post("/admin/import", body=e.body)
    assert r.status == 200, r
    assert take(d, acc, "k", rate=2, per=3600).status == 429
    # merge keeps the later TAT; replace drops the account's others
    other = {"Format": "cdragon-export", "FormatVersion": 1}
    take(d, acc, "extra", rate=1, per=3600)
    body = b"\n".join(json.dumps(x).encode() for x in (other, {"Acc": acc, "Rev": 0}, {"End": True, "Records": 1}))
    r = d.post("/admin/import?mode=replace", body=body)
    assert r.status == 200, r
    assert take(d, acc, "extra", rate=1, per=3600).status == 200     # cleared: fresh
    d.close()


@pytest.mark.parametrize("rec", [
    {"RateLimit": "k", "TAT": "1"}, {"RateLimit": "k"}, {"RateLimit": "", "TAT": 1},
    {"RateLimit": "k", "TAT": 1, "Rate": 3}, {"RateLimit": "k", "TAT": 2**62 * 2},
])
def test_bad_limiter_records_are_refused(server, rec):
    acc = unique_account("rl-bad")
    c = server.client()
    lines = [{"Format": "cdragon-export", "FormatVersion": 1}, dict(rec, Acc=acc),
             {"End": True, "Records": 1}]
    r = c.post("/admin/import", body=b"\n".join(json.dumps(x).encode() for x in lines))
    assert r.status == 400 and r.json["Message"].startswith("line 2:"), r
    c.close()


def test_a_read_token_may_only_peek(server_factory, tmp_path):
    from test_auth import call, config_text, token_of
    cfg = tmp_path / "tokens.toml"
    cfg.write_text(config_text())
    srv = server_factory(config=str(cfg))
    ro, rw = token_of("ro"), token_of("web")
    path = "/db/shop/ratelimit/k?rate=2&per=3600"
    assert call(srv, "GET", path, token=ro).json["Remaining"] == 2
    assert_error(call(srv, "POST", path, token=ro), 403, "forbidden")
    body = {"RateLimit": [{"Key": "k", "Rate": 2, "Per": 3600}]}
    assert_error(call(srv, "POST", "/db/shop", body, token=ro), 403, "forbidden")
    body["RateLimit"][0]["Cost"] = 0
    assert call(srv, "POST", "/db/shop", body, token=ro).json["RateLimit"][0]["Remaining"] == 2
    assert call(srv, "POST", path, token=rw).json["Remaining"] == 1


# ------------------------------------------------------------------------------ fast path
FAST_BODIES = [
    {"RateLimit": [{"Key": "k", "Rate": 10, "Per": 60}]},
    {"RateLimit": [{"Per": 1, "Rate": 3, "Burst": 7, "Cost": 0, "Key": "a/b"}, {"Key": "c", "Rate": 1, "Per": 31536000}],
     "Atomic": [{"Key": "n", "Add": 1}]},
]


@pytest.mark.parametrize("body", FAST_BODIES)
def test_fast_path_reads_limits_as_the_general_parser(body):
    from cdragon._core import _fast_txn_shape
    got = _fast_txn_shape(json.dumps(body).encode())["RateLimit"]
    want = []
    for e in body["RateLimit"]:
        t = e["Per"] * 10**9 // e["Rate"]
        burst = e.get("Burst", e["Rate"])
        want.append((json.dumps(e["Key"]).encode(), b"acc\0" + e["Key"].encode(), t, t * burst, burst, e.get("Cost", 1)))
    assert got == want


@pytest.mark.parametrize("raw", [
    b'{"RateLimit":[]}', b'{"RateLimit":[{"Key":"k","Rate":10,"Per":0.5}]}',
    b'{"RateLimit":[{"Key":"k","Rate":10}]}', b'{"RateLimit":[{"Key":"k","Per":10}]}',
    b'{"RateLimit":[{"Key":"k","Rate":0,"Per":10}]}', b'{"RateLimit":[{"Key":"k","Rate":10,"Per":10,"Burst":0}]}',
    b'{"RateLimit":[{"Key":"k","Rate":10,"Per":10,"Cost":11}]}', b'{"RateLimit":[{"Key":"k","Rate":10,"Per":10,"Rate":1}]}',
    b'{"RateLimit":[{"Key":"k","Rate":10,"Per":10,"X":1}]}', b'{"RateLimit":[{"Key":"k","Rate":1000000000,"Per":-1}]}',
    b'{"RateLimit":[{"Key":"k","Rate":1,"Per":31536001}]}', b'{"RateLimit":[{"Key":"k","Rate":1,"Per":31536000,"Burst":1000000000}]}',
    b'{"RateLimit":[{"Key":"k","Rate":1,"Per":1},{"Key":"k","Rate":2,"Per":1}]}',
    b'{"RateLimit":[{"Key":"k","Rate":1,"Per":1}],"RateLimit":[{"Key":"j","Rate":1,"Per":1}]}',
])
def test_fast_path_declines_other_limits(raw):
    from cdragon._core import _fast_txn_shape
    assert _fast_txn_shape(raw) is None


def test_both_paths_limit_alike(client, acc):
    answers = []
    for key in ('"k"', '"\\u006b"'):
        a = acc + str(len(key))
        body = ('{"RateLimit":[{"Key":%s,"Rate":2,"Per":3600}],"Atomic":[{"Key":"n","Add":1}]}' % key).encode()
        got = [client.post(f"/db/{a}", body) for _ in range(3)]
        answers.append([(r.status, r.json.get("Atomic"), [e["Remaining"] for e in r.json.get("RateLimit", [])],
                         [e["Key"] for e in r.json.get("Limited", [])]) for r in got])
    assert answers[0] == answers[1]
    assert [a[0] for a in answers[0]] == [200, 200, 429]


def test_recovered_states_are_deleted(server_factory):
    """Keys used once do not stay stored: a state whose TAT has passed is deleted by
    the server's sweep (checked in LMDB itself, after /admin/export's checkpoint)."""
    from cdragon.dump import open_snapshot
    srv = server_factory()
    c = srv.client()
    acc = unique_account("rl-sweep")
    for i in range(30):
        assert take(c, acc, f"ip-{i}", rate=1, per="0.05").status == 200
    assert take(c, acc, "slow", rate=1, per=3600).status == 200

    def stored() -> list[bytes]:
        assert c.get(f"/admin/export?acc={acc}").status == 200      # a checkpoint first
        env, txn, dbs = open_snapshot(str(srv.data_dir))
        try:
            return [k for k, _ in txn.cursor(dbs[b"ratelimit"])]
        finally:
            txn.abort()
            env.close()

    deadline = time.monotonic() + 30
    keys = stored()
    while len(keys) > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
        keys = stored()
    assert keys == [acc.encode() + b"\0slow"]
    assert take(c, acc, "ip-0", rate=1, per=3600).json["Remaining"] == 0     # reads as fresh
    c.close()


def test_extreme_limits_do_not_overflow(client, acc):
    """The largest tolerance allowed (a full burst back in 146 years) taken at once,
    then the same key judged by the tightest limit: integer time stays in range."""
    year = 31536000
    r = take(client, acc, "x", rate=1, per=year, burst=146, cost=146)
    assert r.status == 200 and r.json["Remaining"] == 0
    assert 146 * year - 60 < r.json["ResetAfter"] <= 146 * year
    r = take(client, acc, "x", rate=10**9, per=1, burst=10**9, cost=10**9)
    assert r.status == 429 and 145 * year < r.json["RetryAfter"] <= 146 * year
    assert r.header("Retry-After") == str(math.ceil(r.json["RetryAfter"]))
    r = peek(client, acc, "x", rate=10**9, per=1, burst=10**9)
    assert r.status == 200 and r.json["Allowed"] is False and r.json["Remaining"] == 0
    assert_error(take(client, acc, "y", rate=1, per=year, burst=147), 400, "bad_request")


def test_a_refused_request_pushes_no_message(client, acc):
    """With queues (issue 16): "send this mail only if user 42 is under the limit"."""
    send = {"RateLimit": [{"Key": "user:42", "Rate": 1, "Per": 3600}],
            "QPush": [{"Queue": "mail", "Body": {"to": "a@b"}}]}
    assert client.db(acc, send).status == 200
    assert_error(client.db(acc, send), 429, "rate_limited")
    got = client.post(f"/queue/{acc}", {"Queue": "mail", "Max": 10})
    assert got.status == 200 and len(got.json["Messages"]) == 1
