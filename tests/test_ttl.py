"""Keys that expire (API.md: KVSet[].TTL, PUT .../kv/{key}?ttl=S): "Expires" on every
read, an expired key reads as missing at once (compare-and-swap included), the server
deletes it as a durable change at a new revision that watchers see, a write without
TTL clears the expiry, expiry survives restarts, and bad TTLs are 400.

Waiting for an expiry is bounded polling (a hang guard), never a timing assertion.
"""
from __future__ import annotations

import time

import pytest

from helpers import assert_error, http_request, unique_account

GUARD = 15.0     # seconds: only to fail instead of hanging


def ok(r) -> dict:
    assert r.status == 200, r
    return r.json


def until(cond, what: str):
    end = time.monotonic() + GUARD
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def test_put_with_ttl_shows_expires_everywhere(client, acc):
    t0 = time.time()
    out = ok(client.put(f"/db/{acc}/kv/s?ttl=600", {"u": 1}))
    assert out["Key"] == "s" and out["Version"] == 1
    assert t0 + 599 <= out["Expires"] <= time.time() + 601
    exp = out["Expires"]
    assert ok(client.get(f"/db/{acc}/kv/s")) == {"Key": "s", "Value": {"u": 1}, "Version": 1, "Expires": exp}
    assert client.db_ok(acc, {"KVGet": ["s"]})["KV"] == [{"Key": "s", "Value": {"u": 1}, "Version": 1, "Expires": exp}]
    assert ok(client.get(f"/db/{acc}/kv?keys"))["KV"] == [{"Key": "s", "Version": 1, "Expires": exp}]
    assert ok(client.post(f"/watch/{acc}", {"ID": "s", "Version": 0, "Timeout": 0})) == {
        "Key": "s", "Value": {"u": 1}, "Version": 1, "Expires": exp}
    assert ok(client.post(f"/watch/{acc}", {"Prefix": "", "Version": 0, "Timeout": 0}))["KV"] == [
        {"Key": "s", "Value": {"u": 1}, "Version": 1, "Expires": exp}]


def test_kvset_ttl_and_a_later_write_without_ttl_clears_it(client, acc):
    out = client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 1, "TTL": 0.5}, {"Key": "b", "Value": 2}]})
    assert "Expires" in out["KVSet"][0] and "Expires" not in out["KVSet"][1]
    out = client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 3}]})
    assert out["KVSet"] == [{"Key": "a", "Version": 2}]
    time.sleep(0.8)
    assert client.kv(acc, "a") == {"Key": "a", "Value": 3, "Version": 2}


def test_expired_key_is_missing_then_deleted_at_a_new_revision(server, client, acc):
    rev = client.db_ok(acc, {"KVSet": [{"Key": "e", "Value": "x", "TTL": 1}, {"Key": "keep", "Value": 1}]})["Rev"]
    with server.raw(timeout=30) as kw, server.raw(timeout=30) as pw:
        kw.send(http_request("POST", f"/watch/{acc}", {"ID": "e", "Version": rev, "Timeout": 20}))
        pw.send(http_request("POST", f"/watch/{acc}", {"Prefix": "", "Version": rev, "Timeout": 20}))
        assert ok(kw.read_final(timeout=GUARD)) == {"Key": "e", "Version": 0}
        got = ok(pw.read_final(timeout=GUARD))
        assert got["Rev"] == rev + 1
        assert got["KV"] == [{"Key": "e", "Version": rev + 1, "Deleted": True}]
    assert client.get(f"/db/{acc}/kv/e").status == 404
    out = ok(client.get(f"/db/{acc}/kv"))
    assert out["Rev"] == rev + 1 and [e["Key"] for e in out["KV"]] == ["keep"]


def test_expired_key_is_missing_for_compare_and_swap(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "lease", "Value": "a", "TTL": 0.3}]})
    until(lambda: client.get(f"/db/{acc}/kv/lease").status == 404, "the key reads as missing")
    out = client.db_ok(acc, {"KVSet": [{"Key": "lease", "Value": "b", "Version": 0}]})
    assert out["KVSet"][0]["Version"] > 1
    assert client.kv(acc, "lease")["Value"] == "b"


def test_expiries_of_one_pass_share_a_revision_and_many_keys_all_go(client, acc):
    keys = [f"bulk/{i:04d}" for i in range(3000)]
    for i in range(0, len(keys), 1000):
        client.db_ok(acc, {"KVSet": [{"Key": k, "Value": 1, "TTL": 1} for k in keys[i:i + 1000]]})
    client.db_ok(acc, {"KVSet": [{"Key": "stay", "Value": 1}]})
    assert [e["Key"] for e in ok(client.get(f"/db/{acc}/kv?keys&limit=10000"))["KV"]] in (["stay"], keys + ["stay"])

    def deleted():
        # deleted, not just hidden: a prefix watch from before sees each delete once
        got = ok(client.post(f"/watch/{acc}", {"Prefix": "bulk/", "Version": 4, "Timeout": 0}))
        return got if len(got["KV"]) == len(keys) else None
    got = until(deleted, "every expired key deleted")
    assert sorted(e["Key"] for e in got["KV"]) == keys and all(e["Deleted"] for e in got["KV"])
    # in slices of at most EXPIRE_SLICE (2,000), each slice one revision
    assert 5 <= min(e["Version"] for e in got["KV"]) and max(e["Version"] for e in got["KV"]) <= 4 + 3
    assert [e["Key"] for e in ok(client.get(f"/db/{acc}/kv?keys"))["KV"]] == ["stay"]
    assert client.get("/health").status == 200


def test_expiry_survives_a_restart(server_factory):
    srv = server_factory(env={"CDRAGON_CHECKPOINT_INTERVAL": 0.2})
    c = srv.client()
    acc = unique_account("ttl-restart")
    c.db_ok(acc, {"KVSet": [{"Key": "short", "Value": 1, "TTL": 1}, {"Key": "long", "Value": 2, "TTL": 3600}]})
    rev = c.db_ok(acc, {"KVSet": [{"Key": "plain", "Value": 3}]})["Rev"]
    c.close()
    srv.restart(hard=True)                      # SIGKILL: only the log and LMDB are left
    time.sleep(1.1)                             # "short" expires while the server is down
    srv.kill()
    srv.start()
    c = srv.client()
    assert c.get(f"/db/{acc}/kv/short").status == 404          # gone when it starts
    assert ok(c.get(f"/db/{acc}/kv/long"))["Expires"] > time.time() + 3000
    until(lambda: ok(c.get(f"/db/{acc}/kv"))["Rev"] == rev + 1, "the expired key deleted after the start")
    assert [e["Key"] for e in ok(c.get(f"/db/{acc}/kv"))["KV"]] == ["long", "plain"]
    c.close()


def test_ttl_with_the_log_only_and_after_a_checkpoint(server_factory):
    """An expiry found in a batch not yet in LMDB, and one found in LMDB's index."""
    srv = server_factory(env={"CDRAGON_CHECKPOINT_INTERVAL": 600})
    c = srv.client()
    acc = unique_account("ttl-log")
    c.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 1, "TTL": 0.5}]})
    until(lambda: ok(c.get(f"/db/{acc}/kv"))["Rev"] == 2, "deleted from the log's batch")
    c.db_ok(acc, {"KVSet": [{"Key": "b", "Value": 1, "TTL": 2}]})
    c.close()
    srv.restart()                               # a clean stop puts everything into LMDB
    c = srv.client()
    until(lambda: ok(c.get(f"/db/{acc}/kv"))["Rev"] == 4, "deleted from LMDB's index")
    c.close()


@pytest.mark.parametrize("ttl", [0, -1, "10", None, True, 365 * 86400 + 1, float("inf")])
def test_bad_ttl_is_400(client, acc, ttl):
    body = {"KVSet": [{"Key": "k", "Value": 1, "TTL": ttl}]}
    raw = None
    if ttl == float("inf"):
        raw = b'{"KVSet": [{"Key": "k", "Value": 1, "TTL": 1e999}]}'
    r = client.db(acc, raw if raw is not None else body)
    assert r.status == 400 and r.json["Code"] == "bad_request", r
    assert client.kv(acc, "k") == {"Key": "k", "Version": 0}


def test_ttl_with_delete_is_400(client, acc):
    assert_error(client.db(acc, {"KVSet": [{"Key": "k", "Delete": True, "TTL": 5}]}), 400, "bad_request")


@pytest.mark.parametrize("q", ["ttl=0", "ttl=-5", "ttl=abc", "ttl=", "ttl=1&ttl=2", "ttl=31536001"])
def test_bad_ttl_parameter_is_400(client, acc, q):
    assert_error(client.put(f"/db/{acc}/kv/k?{q}", 1), 400, "bad_request")
    assert client.kv(acc, "k") == {"Key": "k", "Version": 0}


def test_max_ttl_is_a_setting(server_factory):
    srv = server_factory(env={"CDRAGON_MAX_TTL": 10})
    c = srv.client()
    acc = unique_account("maxttl")
    assert_error(c.put(f"/db/{acc}/kv/k?ttl=11", 1), 400, "bad_request")
    assert ok(c.put(f"/db/{acc}/kv/k?ttl=10", 1))["Version"] == 1
    c.close()
