"""POST /db/{acc}: one atomic transaction (API.md "POST /db/{acc}").

KVSet (with Version CAS and Delete), KVGet, Atomic (Add / Set / IfEq), Seq,
IdempotencyIDs; revision and version rules; validation; limits; concurrency.
Every error test checks afterwards that nothing was changed.
"""
from __future__ import annotations

import json
import threading
import time

import pytest

from helpers import INT64_MAX, INT64_MIN, assert_error, unique_account


def snapshot(c, acc, kv=(), counters=(), seqs=()):
    """The observable state of some keys of an account (reads only)."""
    out = {}
    if kv:
        out["kv"] = c.db_ok(acc, {"KVGet": list(kv)})["KV"]
    if counters:
        out["counters"] = c.db_ok(acc, {"Atomic": [{"Key": k, "Add": 0} for k in counters]})["Atomic"]
    for s in seqs:
        out[f"seq:{s}"] = c.seq_last(acc, s)
    return out


def next_version(c, acc) -> int:
    """Write a probe key and return the Version it got (= revision after the write)."""
    return c.db_ok(acc, {"KVSet": [{"Key": "probe", "Value": 1}]})["KVSet"][0]["Version"]


# =========================================================================== KVSet / KVGet


def test_first_write_in_fresh_account_is_version_1(client, acc):
    out = client.db_ok(acc, {"KVSet": [{"Key": "ABC", "Value": {"any": "json"}}]})
    assert out == {"KVSet": [{"Key": "ABC", "Version": 1}], "Rev": 1}


def test_kvget_returns_value_and_version(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "CDE", "Value": {"my_json": "object"}}]})
    out = client.db_ok(acc, {"KVGet": ["CDE"]})
    assert out == {"KV": [{"Key": "CDE", "Value": {"my_json": "object"}, "Version": 1}]}


def test_kvget_missing_key_has_version_0_and_no_value(client, acc):
    out = client.db_ok(acc, {"KVGet": ["nope"]})
    assert out == {"KV": [{"Key": "nope", "Version": 0}]}


def test_kvget_object_form_is_accepted(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 5}]})
    out = client.db_ok(acc, {"KVGet": [{"Key": "a"}, "b"]})
    assert out == {"KV": [{"Key": "a", "Value": 5, "Version": 1}, {"Key": "b", "Version": 0}]}


def test_stored_null_reads_as_value_null(client, acc):
    out = client.db_ok(acc, {"KVSet": [{"Key": "n", "Value": None}]})
    assert out == {"KVSet": [{"Key": "n", "Version": 1}], "Rev": 1}
    entry = client.kv(acc, "n")
    assert entry == {"Key": "n", "Value": None, "Version": 1}
    assert "Value" in entry


@pytest.mark.parametrize("value", [
    0, -17, 3.5, True, False, "", "text", [], {}, [1, "two", None, {"x": [3]}],
    {"ü": "日本語", "emoji": "😀", "esc": "a\"b\\c\n\t\u0001"},
    {"nested": {"a": {"b": {"c": [1, 2, {"d": None}]}}}},
])
def test_any_json_value_round_trips(client, acc, value):
    client.db_ok(acc, {"KVSet": [{"Key": "v", "Value": value}]})
    assert client.kv(acc, "v") == {"Key": "v", "Value": value, "Version": 1}


def test_surrogate_pair_escape_is_decoded(client, acc):
    body = '{"KVSet":[{"Key":"s","Value":"\\ud83d\\ude00"}]}'
    r = client.db(acc, body)
    assert r.status == 200, r
    assert client.kv(acc, "s")["Value"] == "😀"


def test_one_request_writing_several_keys_gives_them_one_version(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "x", "Value": 1}]})  # revision 1
    out = client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 1}, {"Key": "b", "Value": 2},
                                       {"Key": "c", "Value": 3}]})
    assert out == {"KVSet": [{"Key": "a", "Version": 2}, {"Key": "b", "Version": 2},
                             {"Key": "c", "Version": 2}], "Rev": 2}
    # ... and moved the revision by exactly one
    assert next_version(client, acc) == 3


def test_each_write_request_takes_the_next_revision(client, acc):
    versions = [client.db_ok(acc, {"KVSet": [{"Key": f"k{i % 3}", "Value": i}]})["KVSet"][0]["Version"]
                for i in range(6)]
    assert versions == [1, 2, 3, 4, 5, 6]
    out = client.db_ok(acc, {"KVGet": ["k0", "k1", "k2"]})
    assert out["KV"] == [{"Key": "k0", "Value": 3, "Version": 4},
                         {"Key": "k1", "Value": 4, "Version": 5},
                         {"Key": "k2", "Value": 5, "Version": 6}]


def test_accounts_share_nothing(client, acc):
    other = unique_account("other")
    client.db_ok(acc, {"KVSet": [{"Key": "k", "Value": "mine"}]})
    client.db_ok(acc, {"KVSet": [{"Key": "k", "Value": "mine2"}]})
    client.db_ok(acc, {"Atomic": [{"Key": "c", "Add": 5}], "Seq": [{"Key": "s", "Count": 3}]})
    # the other account has its own revision, keys, counters and sequences
    assert client.kv(other, "k") == {"Key": "k", "Version": 0}
    assert client.counter(other, "c") == 0
    out = client.db_ok(other, {"KVSet": [{"Key": "k", "Value": "theirs"}], "Seq": [{"Key": "s"}]})
    assert out == {"KVSet": [{"Key": "k", "Version": 1}], "Seq": [{"Key": "s", "Value": 1, "Count": 1}], "Rev": 1}
    assert client.kv(acc, "k") == {"Key": "k", "Value": "mine2", "Version": 2}


def test_namespaces_are_separate(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "x", "Value": "kv"}]})
    assert client.counter(acc, "x") == 0
    assert client.seq_last(acc, "x") == 0
    client.db_ok(acc, {"Atomic": [{"Key": "x", "Add": 7}]})
    out = client.db_ok(acc, {"Seq": [{"Key": "x"}]})
    assert out["Seq"] == [{"Key": "x", "Value": 1, "Count": 1}]
    assert client.kv(acc, "x") == {"Key": "x", "Value": "kv", "Version": 1}
    assert client.counter(acc, "x") == 7
    # an idempotency id named like the key does not touch it either
    client.db_ok(acc, {"IdempotencyIDs": ["x"]})
    assert client.kv(acc, "x") == {"Key": "x", "Value": "kv", "Version": 1}


def test_kvget_sees_state_before_own_writes(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": "old"}]})
    out = client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": "new"}, {"Key": "b", "Value": 1}],
                             "KVGet": ["a", "b"]})
    assert out == {"KV": [{"Key": "a", "Value": "old", "Version": 1}, {"Key": "b", "Version": 0}],
                   "KVSet": [{"Key": "a", "Version": 2}, {"Key": "b", "Version": 2}], "Rev": 2}
    assert client.kv(acc, "a") == {"Key": "a", "Value": "new", "Version": 2}


def test_empty_fields_are_omitted_from_the_response(client, acc):
    out = client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 1}], "KVGet": [], "Atomic": [], "Seq": []})
    assert set(out) == {"KVSet", "Rev"}       # Rev: the request wrote KV
    out = client.db_ok(acc, {"Atomic": [{"Key": "c", "Add": 1}]})
    assert set(out) == {"Atomic"}
    out = client.db_ok(acc, {"Seq": [{"Key": "s"}]})
    assert set(out) == {"Seq"}


def test_all_operations_in_one_request(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "CDE", "Value": {"my_json": "object"}}]})
    out = client.db_ok(acc, {
        "IdempotencyIDs": ["order-17-create"],
        "KVSet": [{"Key": "ABC", "Value": {"any": "json"}, "Version": 0}],
        "KVGet": ["CDE"],
        "Atomic": [{"Key": "Total_Count", "Add": 1}, {"Key": "Gen", "Set": 5, "IfEq": 0}],
        "Seq": [{"Key": "order_ids", "Count": 10}],
    })
    assert out == {
        "KV": [{"Key": "CDE", "Value": {"my_json": "object"}, "Version": 1}],
        "KVSet": [{"Key": "ABC", "Version": 2}],
        "Atomic": [{"Key": "Total_Count", "Value": 1}, {"Key": "Gen", "Value": 5}],
        "Seq": [{"Key": "order_ids", "Value": 1, "Count": 10}],
        "Rev": 2,
    }


# --------------------------------------------------------------------------- CAS


def test_version_cas_succeeds_when_current(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 1}]})
    out = client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 2, "Version": 1}]})
    assert out == {"KVSet": [{"Key": "a", "Version": 2}], "Rev": 2}
    assert client.kv(acc, "a") == {"Key": "a", "Value": 2, "Version": 2}


def test_version_cas_fails_with_current_version(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 1}]})
    client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 2}]})
    r = client.db(acc, {"KVSet": [{"Key": "a", "Value": 3, "Version": 1}]})
    body = assert_error(r, 409, "precondition_failed")
    assert body["Failed"] == [{"Key": "a", "Version": 2}]
    assert client.kv(acc, "a") == {"Key": "a", "Value": 2, "Version": 2}
    assert next_version(client, acc) == 3


def test_version_0_means_must_not_exist(client, acc):
    out = client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": "first", "Version": 0}]})
    assert out == {"KVSet": [{"Key": "a", "Version": 1}], "Rev": 1}
    r = client.db(acc, {"KVSet": [{"Key": "a", "Value": "second", "Version": 0}]})
    body = assert_error(r, 409, "precondition_failed")
    assert body["Failed"] == [{"Key": "a", "Version": 1}]
    assert client.kv(acc, "a") == {"Key": "a", "Value": "first", "Version": 1}


def test_cas_on_missing_key_reports_version_0(client, acc):
    r = client.db(acc, {"KVSet": [{"Key": "ghost", "Value": 1, "Version": 5}]})
    body = assert_error(r, 409, "precondition_failed")
    assert body["Failed"] == [{"Key": "ghost", "Version": 0}]
    assert client.kv(acc, "ghost") == {"Key": "ghost", "Version": 0}


def test_failed_cas_changes_nothing_anywhere_in_the_request(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": "a1"}, {"Key": "gone", "Value": 0}],
                       "Atomic": [{"Key": "c", "Add": 10}], "Seq": [{"Key": "s", "Count": 2}]})
    before = snapshot(client, acc, kv=["a", "b", "gone"], counters=["c", "d"], seqs=["s"])
    r = client.db(acc, {
        "IdempotencyIDs": ["idem-1"],
        "KVSet": [{"Key": "b", "Value": "b1"}, {"Key": "gone", "Delete": True},
                  {"Key": "a", "Value": "a2", "Version": 99}],
        "Atomic": [{"Key": "c", "Add": 1}, {"Key": "d", "Set": 4}],
        "Seq": [{"Key": "s", "Count": 5}],
    })
    body = assert_error(r, 409, "precondition_failed")
    assert body["Failed"] == [{"Key": "a", "Version": 1}]
    assert snapshot(client, acc, kv=["a", "b", "gone"], counters=["c", "d"], seqs=["s"]) == before
    # the idempotency id was not claimed, the revision did not move, the sequence has no gap
    client.db_ok(acc, {"IdempotencyIDs": ["idem-1"]})
    assert client.db_ok(acc, {"Seq": [{"Key": "s"}]})["Seq"] == [{"Key": "s", "Value": 3, "Count": 1}]
    assert next_version(client, acc) == 2


def test_every_failed_precondition_is_listed(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 1}, {"Key": "b", "Value": 1}],
                       "Atomic": [{"Key": "n", "Set": 7}]})
    r = client.db(acc, {"KVSet": [{"Key": "a", "Value": 2, "Version": 5},
                                  {"Key": "b", "Value": 2, "Version": 1},
                                  {"Key": "c", "Value": 2, "Version": 3}],
                        "Atomic": [{"Key": "n", "Set": 8, "IfEq": 6}, {"Key": "m", "Set": 1, "IfEq": 0}]})
    body = assert_error(r, 409, "precondition_failed")
    failed = sorted(body["Failed"], key=lambda e: e["Key"])
    assert failed == [{"Key": "a", "Version": 1}, {"Key": "c", "Version": 0}, {"Key": "n", "Value": 7}]
    assert client.kv(acc, "b") == {"Key": "b", "Value": 1, "Version": 1}
    assert client.counter(acc, "m") == 0


# --------------------------------------------------------------------------- Delete


def test_delete_existing_key(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 1}]})
    out = client.db_ok(acc, {"KVSet": [{"Key": "a", "Delete": True}]})
    assert out == {"KVSet": [{"Key": "a", "Version": 0}], "Rev": 2}
    assert client.kv(acc, "a") == {"Key": "a", "Version": 0}
    # a delete is a KV write: it took revision 2
    assert next_version(client, acc) == 3


def test_delete_missing_key_is_ok_and_does_not_move_revision(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 1}]})
    out = client.db_ok(acc, {"KVSet": [{"Key": "never", "Delete": True}]})
    assert out == {"KVSet": [{"Key": "never", "Version": 0}]}
    out = client.db_ok(acc, {"KVSet": [{"Key": "never", "Delete": True}, {"Key": "never2", "Delete": True}]})
    assert out == {"KVSet": [{"Key": "never", "Version": 0}, {"Key": "never2", "Version": 0}]}
    assert next_version(client, acc) == 2


def test_delete_then_recreate_versions_only_grow(client, acc):
    assert client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 1}]})["KVSet"][0]["Version"] == 1
    client.db_ok(acc, {"KVSet": [{"Key": "a", "Delete": True}]})
    # deleted means "does not exist" for Version 0
    out = client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 2, "Version": 0}]})
    assert out == {"KVSet": [{"Key": "a", "Version": 3}], "Rev": 3}
    assert client.kv(acc, "a") == {"Key": "a", "Value": 2, "Version": 3}


def test_delete_with_version_cas(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 1}]})
    r = client.db(acc, {"KVSet": [{"Key": "a", "Delete": True, "Version": 7}]})
    assert assert_error(r, 409, "precondition_failed")["Failed"] == [{"Key": "a", "Version": 1}]
    assert client.kv(acc, "a") == {"Key": "a", "Value": 1, "Version": 1}
    out = client.db_ok(acc, {"KVSet": [{"Key": "a", "Delete": True, "Version": 1}]})
    assert out == {"KVSet": [{"Key": "a", "Version": 0}], "Rev": 2}
    assert client.kv(acc, "a") == {"Key": "a", "Version": 0}


def test_value_with_delete_false_is_a_set(client, acc):
    out = client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": "v", "Delete": False}]})
    assert out == {"KVSet": [{"Key": "a", "Version": 1}], "Rev": 1}
    assert client.kv(acc, "a")["Value"] == "v"


def test_delete_of_missing_key_beside_a_write_moves_revision_once(client, acc):
    out = client.db_ok(acc, {"KVSet": [{"Key": "nope", "Delete": True}, {"Key": "a", "Value": 1}]})
    assert out == {"KVSet": [{"Key": "nope", "Version": 0}, {"Key": "a", "Version": 1}], "Rev": 1}
    assert next_version(client, acc) == 2


def test_requests_without_kv_writes_leave_revision_alone(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 1}]})
    client.db_ok(acc, {"KVGet": ["a", "b"]})
    client.db_ok(acc, {"Atomic": [{"Key": "c", "Add": 3}, {"Key": "d", "Set": 1}]})
    client.db_ok(acc, {"Seq": [{"Key": "s", "Count": 100}]})
    client.db_ok(acc, {"IdempotencyIDs": ["only-an-id"]})
    client.db_ok(acc, {"KVSet": [{"Key": "missing", "Delete": True}]})
    assert next_version(client, acc) == 2


# =========================================================================== Atomic


def test_counter_is_0_when_never_set(client, acc):
    out = client.db_ok(acc, {"Atomic": [{"Key": "Total_Count", "Add": 0}]})
    assert out == {"Atomic": [{"Key": "Total_Count", "Value": 0}]}


def test_add_increments_and_decrements(client, acc):
    assert client.db_ok(acc, {"Atomic": [{"Key": "c", "Add": 1}]}) == {"Atomic": [{"Key": "c", "Value": 1}]}
    assert client.db_ok(acc, {"Atomic": [{"Key": "c", "Add": 332}]})["Atomic"] == [{"Key": "c", "Value": 333}]
    assert client.db_ok(acc, {"Atomic": [{"Key": "c", "Add": -400}]})["Atomic"] == [{"Key": "c", "Value": -67}]
    assert client.counter(acc, "c") == -67


def test_set_and_set_ifeq(client, acc):
    assert client.db_ok(acc, {"Atomic": [{"Key": "Gen", "Set": 4}]})["Atomic"] == [{"Key": "Gen", "Value": 4}]
    out = client.db_ok(acc, {"Atomic": [{"Key": "Gen", "Set": 5, "IfEq": 4}]})
    assert out == {"Atomic": [{"Key": "Gen", "Value": 5}]}
    r = client.db(acc, {"Atomic": [{"Key": "Gen", "Set": 6, "IfEq": 4}]})
    assert assert_error(r, 409, "precondition_failed")["Failed"] == [{"Key": "Gen", "Value": 5}]
    assert client.counter(acc, "Gen") == 5


def test_ifeq_on_never_set_counter_compares_with_0(client, acc):
    r = client.db(acc, {"Atomic": [{"Key": "g", "Set": 1, "IfEq": 3}]})
    assert assert_error(r, 409, "precondition_failed")["Failed"] == [{"Key": "g", "Value": 0}]
    assert client.db_ok(acc, {"Atomic": [{"Key": "g", "Set": 1, "IfEq": 0}]})["Atomic"] == [{"Key": "g", "Value": 1}]


def test_several_counters_in_one_request(client, acc):
    out = client.db_ok(acc, {"Atomic": [{"Key": "a", "Add": 2}, {"Key": "b", "Set": -9}, {"Key": "c", "Add": 0}]})
    assert out == {"Atomic": [{"Key": "a", "Value": 2}, {"Key": "b", "Value": -9}, {"Key": "c", "Value": 0}]}


def test_int64_limits_are_reachable(client, acc):
    out = client.db_ok(acc, {"Atomic": [{"Key": "max", "Set": INT64_MAX}, {"Key": "min", "Set": INT64_MIN}]})
    assert out == {"Atomic": [{"Key": "max", "Value": INT64_MAX}, {"Key": "min", "Value": INT64_MIN}]}
    assert client.counter(acc, "max") == INT64_MAX
    assert client.counter(acc, "min") == INT64_MIN
    out = client.db_ok(acc, {"Atomic": [{"Key": "x", "Add": INT64_MAX}]})
    assert out["Atomic"] == [{"Key": "x", "Value": INT64_MAX}]


@pytest.mark.parametrize("start,add", [(INT64_MAX, 1), (INT64_MAX - 5, 6), (INT64_MIN, -1), (-5, INT64_MIN)])
def test_overflow_is_400_not_wraparound(client, acc, start, add):
    client.db_ok(acc, {"Atomic": [{"Key": "c", "Set": start}]})
    r = client.db(acc, {"Atomic": [{"Key": "other", "Add": 1}, {"Key": "c", "Add": add}],
                        "KVSet": [{"Key": "k", "Value": 1}]})
    assert_error(r, 400, "bad_request")
    assert client.counter(acc, "c") == start
    assert client.counter(acc, "other") == 0
    assert client.kv(acc, "k") == {"Key": "k", "Version": 0}


@pytest.mark.parametrize("entry", [
    {"Key": "c", "Add": 2**63},
    {"Key": "c", "Add": -(2**63) - 1},
    {"Key": "c", "Set": 2**63},
    {"Key": "c", "Set": -(2**63) - 1},
    {"Key": "c", "Set": 1, "IfEq": 2**63},
    {"Key": "c", "Add": 10**30},
])
def test_numbers_outside_int64_are_400(client, acc, entry):
    r = client.db(acc, {"Atomic": [entry]})
    assert_error(r, 400, "bad_request")
    assert client.counter(acc, "c") == 0


def test_precondition_failed_comes_before_overflow(client, acc):
    client.db_ok(acc, {"Atomic": [{"Key": "big", "Set": INT64_MAX}, {"Key": "g", "Set": 1}]})
    r = client.db(acc, {"Atomic": [{"Key": "big", "Add": 1}, {"Key": "g", "Set": 2, "IfEq": 0}]})
    assert assert_error(r, 409, "precondition_failed")["Failed"] == [{"Key": "g", "Value": 1}]
    assert client.counter(acc, "big") == INT64_MAX
    assert client.counter(acc, "g") == 1


# =========================================================================== Seq


def test_sequence_starts_at_1_and_count_defaults_to_1(client, acc):
    assert client.db_ok(acc, {"Seq": [{"Key": "order_ids"}]}) == \
        {"Seq": [{"Key": "order_ids", "Value": 1, "Count": 1}]}
    assert client.db_ok(acc, {"Seq": [{"Key": "order_ids"}]})["Seq"] == [{"Key": "order_ids", "Value": 2, "Count": 1}]


def test_sequence_blocks(client, acc):
    assert client.db_ok(acc, {"Seq": [{"Key": "s", "Count": 10}]})["Seq"] == [{"Key": "s", "Value": 1, "Count": 10}]
    assert client.db_ok(acc, {"Seq": [{"Key": "s", "Count": 5}]})["Seq"] == [{"Key": "s", "Value": 11, "Count": 5}]
    assert client.seq_last(acc, "s") == 15


def test_same_sequence_twice_in_one_request_gives_consecutive_blocks(client, acc):
    out = client.db_ok(acc, {"Seq": [{"Key": "s", "Count": 3}, {"Key": "t"}, {"Key": "s", "Count": 2}]})
    assert out == {"Seq": [{"Key": "s", "Value": 1, "Count": 3}, {"Key": "t", "Value": 1, "Count": 1},
                           {"Key": "s", "Value": 4, "Count": 2}]}
    assert client.seq_last(acc, "s") == 5


def test_seq_count_max_is_10000(client, acc):
    assert client.db_ok(acc, {"Seq": [{"Key": "s", "Count": 10000}]})["Seq"] == [{"Key": "s", "Value": 1, "Count": 10000}]
    r = client.db(acc, {"Seq": [{"Key": "s", "Count": 10001}]})
    assert_error(r, 400, "bad_request")
    assert client.seq_last(acc, "s") == 10000


@pytest.mark.parametrize("count", [0, -1, 1.5, "2", True])
def test_seq_bad_count_is_400(client, acc, count):
    r = client.db(acc, {"Seq": [{"Key": "s", "Count": count}]})
    assert_error(r, 400, "bad_request")
    assert client.seq_last(acc, "s") == 0


# =========================================================================== IdempotencyIDs


def test_idempotency_id_alone_is_an_operation(client, acc):
    assert client.db_ok(acc, {"IdempotencyIDs": ["order-17-create"]}) == {}


def test_duplicate_request_is_rejected_and_changes_nothing(client, acc):
    first = {"IdempotencyIDs": ["order-17-create"], "KVSet": [{"Key": "order-17", "Value": "created"}],
             "Atomic": [{"Key": "orders", "Add": 1}], "Seq": [{"Key": "ids"}]}
    assert client.db_ok(acc, first) == {"KVSet": [{"Key": "order-17", "Version": 1}],
                                        "Atomic": [{"Key": "orders", "Value": 1}],
                                        "Seq": [{"Key": "ids", "Value": 1, "Count": 1}], "Rev": 1}
    r = client.db(acc, first)
    body = assert_error(r, 409, "duplicate_request")
    assert body["IDs"] == ["order-17-create"]
    assert client.kv(acc, "order-17") == {"Key": "order-17", "Value": "created", "Version": 1}
    assert client.counter(acc, "orders") == 1
    assert client.seq_last(acc, "ids") == 1
    assert next_version(client, acc) == 2


def test_duplicate_lists_only_used_ids_and_claims_none(client, acc):
    client.db_ok(acc, {"IdempotencyIDs": ["old-1", "old-2"]})
    r = client.db(acc, {"IdempotencyIDs": ["new-1", "old-2", "new-2", "old-1"], "Atomic": [{"Key": "c", "Add": 1}]})
    body = assert_error(r, 409, "duplicate_request")
    assert sorted(body["IDs"]) == ["old-1", "old-2"]
    assert client.counter(acc, "c") == 0
    # new-1 and new-2 were not claimed by the failed request
    assert client.db_ok(acc, {"IdempotencyIDs": ["new-1", "new-2"]}) == {}


def test_repeated_id_within_one_request_counts_once(client, acc):
    out = client.db_ok(acc, {"IdempotencyIDs": ["x", "x"], "Atomic": [{"Key": "c", "Add": 1}]})
    assert out == {"Atomic": [{"Key": "c", "Value": 1}]}
    r = client.db(acc, {"IdempotencyIDs": ["x"]})
    assert assert_error(r, 409, "duplicate_request")["IDs"] == ["x"]


def test_idempotency_ids_are_per_account(client, acc):
    client.db_ok(acc, {"IdempotencyIDs": ["shared-id"]})
    other = unique_account("idem-other")
    assert client.db_ok(other, {"IdempotencyIDs": ["shared-id"]}) == {}


def test_duplicate_request_comes_before_precondition_failed(client, acc):
    client.db_ok(acc, {"IdempotencyIDs": ["once"], "KVSet": [{"Key": "a", "Value": 1}]})
    r = client.db(acc, {"IdempotencyIDs": ["once"], "KVSet": [{"Key": "a", "Value": 2, "Version": 9}]})
    assert assert_error(r, 409, "duplicate_request")["IDs"] == ["once"]


def test_failed_precondition_does_not_claim_ids(client, acc):
    r = client.db(acc, {"IdempotencyIDs": ["try-1"], "KVSet": [{"Key": "a", "Value": 2, "Version": 9}]})
    assert_error(r, 409, "precondition_failed")
    assert client.db_ok(acc, {"IdempotencyIDs": ["try-1"], "KVSet": [{"Key": "a", "Value": 2}]}) == \
        {"KVSet": [{"Key": "a", "Version": 1}], "Rev": 1}


def test_idempotency_ids_follow_key_rules(client, acc):
    assert_error(client.db(acc, {"IdempotencyIDs": [""]}), 400, "bad_key")
    assert_error(client.db(acc, {"IdempotencyIDs": ["x" * 257]}), 400, "bad_key")
    assert_error(client.db(acc, {"IdempotencyIDs": ["a\u0000b"]}), 400, "bad_key")
    assert client.db_ok(acc, {"IdempotencyIDs": ["x" * 256]}) == {}


def test_idempotency_ttl_expires(server_factory):
    srv = server_factory(env={"CDRAGON_IDEMPOTENCY_TTL": 1})
    c = srv.client()
    acc = unique_account("ttl")
    assert c.db_ok(acc, {"IdempotencyIDs": ["short"], "Atomic": [{"Key": "c", "Add": 1}]}) == \
        {"Atomic": [{"Key": "c", "Value": 1}]}
    assert_error(c.db(acc, {"IdempotencyIDs": ["short"]}), 409, "duplicate_request")
    # after the TTL the id may be used again (generous bounded polling)
    deadline = time.monotonic() + 20
    while True:
        r = c.db(acc, {"IdempotencyIDs": ["short"], "Atomic": [{"Key": "c", "Add": 1}]})
        if r.status == 200:
            break
        assert_error(r, 409, "duplicate_request")
        assert time.monotonic() < deadline, "idempotency id never expired"
        time.sleep(0.25)
    assert r.json == {"Atomic": [{"Key": "c", "Value": 2}]}
    c.close()


# =========================================================================== validation


@pytest.mark.parametrize("body", [
    {},
    {"KVSet": []},
    {"KVSet": [], "KVGet": [], "Atomic": [], "Seq": [], "IdempotencyIDs": []},
])
def test_request_without_operation_is_400(client, acc, body):
    assert_error(client.db(acc, body), 400, "bad_request")


@pytest.mark.parametrize("body", [
    # KVSet entries: neither/both of Value and Delete:true
    {"KVSet": [{"Key": "a"}]},
    {"KVSet": [{"Key": "a", "Delete": False}]},
    {"KVSet": [{"Key": "a", "Value": 1, "Delete": True}]},
    {"KVSet": [{"Value": 1}]},
    # same key twice in KVSet / Atomic
    {"KVSet": [{"Key": "a", "Value": 1}, {"Key": "a", "Value": 2}]},
    {"KVSet": [{"Key": "a", "Value": 1}, {"Key": "a", "Delete": True}]},
    {"Atomic": [{"Key": "c", "Add": 1}, {"Key": "c", "Add": 2}]},
    # Atomic: both/neither of Add and Set, IfEq beside Add
    {"Atomic": [{"Key": "c", "Add": 1, "Set": 2}]},
    {"Atomic": [{"Key": "c"}]},
    {"Atomic": [{"Key": "c", "IfEq": 0}]},
    {"Atomic": [{"Key": "c", "Add": 1, "IfEq": 0}]},
    {"Atomic": [{"Add": 1}]},
    {"Seq": [{"Count": 1}]},
    # unknown fields
    {"KVSet": [{"Key": "a", "Value": 1}], "Bogus": 1},
    {"kvset": [{"Key": "a", "Value": 1}]},
    {"KVSet": [{"Key": "a", "Value": 1, "Extra": 1}]},
    {"Atomic": [{"Key": "c", "Add": 1, "Sub": 1}]},
    {"Seq": [{"Key": "s", "Count": 1, "Step": 2}]},
    {"KVGet": [{"Key": "a", "Version": 1}]},
    # wrong types
    {"KVSet": {"Key": "a", "Value": 1}},
    {"KVSet": [["a", 1]]},
    {"KVSet": [{"Key": 5, "Value": 1}]},
    {"KVSet": [{"Key": "a", "Value": 1, "Version": "1"}]},
    {"KVSet": [{"Key": "a", "Value": 1, "Version": 1.5}]},
    {"KVSet": [{"Key": "a", "Value": 1, "Version": True}]},
    {"KVSet": [{"Key": "a", "Value": 1, "Version": -1}]},
    {"KVSet": [{"Key": "a", "Value": 1, "Version": 2**64}]},
    {"KVSet": [{"Key": "a", "Delete": "yes"}]},
    {"KVSet": [{"Key": "a", "Delete": 1}]},
    {"KVGet": "a"},
    {"KVGet": [5]},
    {"KVGet": [["a"]]},
    {"Atomic": [{"Key": "c", "Add": "1"}]},
    {"Atomic": [{"Key": "c", "Add": True}]},
    {"Atomic": [{"Key": "c", "Add": 1.5}]},
    {"Atomic": [{"Key": "c", "Set": [1]}]},
    {"Atomic": {"Key": "c", "Add": 1}},
    {"Seq": {"Key": "s"}},
    {"Seq": ["s"]},
    {"IdempotencyIDs": "id"},
    {"IdempotencyIDs": [1]},
    # null in typed fields
    {"KVSet": None},
    {"KVGet": None, "KVSet": [{"Key": "a", "Value": 1}]},
    {"KVSet": [{"Key": None, "Value": 1}]},
    {"KVSet": [{"Key": "a", "Value": 1, "Version": None}]},
    {"KVSet": [{"Key": "a", "Delete": None}]},
    {"KVSet": [None]},
    {"KVGet": [None]},
    {"Atomic": [{"Key": "c", "Add": None}]},
    {"Atomic": [{"Key": "c", "Set": 1, "IfEq": None}]},
    {"Seq": [{"Key": "s", "Count": None}]},
    {"IdempotencyIDs": [None]},
    {"IdempotencyIDs": None, "Atomic": [{"Key": "c", "Add": 1}]},
])
def test_invalid_request_is_400_and_changes_nothing(client, acc, body):
    r = client.db(acc, body)
    assert_error(r, 400, "bad_request")
    assert snapshot(client, acc, kv=["a"], counters=["c"], seqs=["s"]) == {
        "kv": [{"Key": "a", "Version": 0}], "counters": [{"Key": "c", "Value": 0}], "seq:s": 0}
    assert next_version(client, acc) == 1


@pytest.mark.parametrize("raw", [
    b"",
    b"{",
    b"not json",
    b"[]",
    b"null",
    b"5",
    b'"KVSet"',
    b'{"KVSet": [{"Key": "a", "Value": 1}]} trailing',
    b'{"KVSet": [{"Key": "a", "Value": 1},]}',
    b"{'KVSet': []}",
    b'{"KVSet": [{"Key": "a", "Value": NaN}]}',
    b'{"KVSet": [{"Key": "a", "Value": Infinity}]}',
    b'{"KVSet": [{"Key": "a", "Value": -Infinity}]}',
    b'{"Atomic": [{"Key": "c", "Add": NaN}]}',
    b'{"KVSet": [{"Key": "a", "Value": "\xff\xfe"}]}',
    b'{"KVSet": [{"Key": "\xc3\x28", "Value": 1}]}',
    b'{"KVSet": [{"Key": "a", "Value": "\xed\xa0\x80"}]}',
    b'{"KVSet": [{"Key": "a", "Value": "\\ud800"}]}',
    b'{"KVSet": [{"Key": "a", "Value": "x\\udc00y"}]}',
    b'{"KVSet": [{"Key": "a", "Value": "\\ud800\\u0041"}]}',
    b'{"KVSet": [{"Key": "\\ud800", "Value": 1}]}',
    b'{"KVSet": [{"Key": "a", "Value": "bad \\q escape"}]}',
    b'{"KVSet": [{"Key": "a", "Value": "raw\x01control"}]}',
    # numbers JSON forbids (ujson alone would read them)
    b'{"KVSet": [{"Key": "a", "Value": 01}]}',
    b'{"KVSet": [{"Key": "a", "Value": -}]}',
    b'{"KVSet": [{"Key": "a", "Value": 1.}]}',
    b'{"KVSet": [{"Key": "a", "Value": [1.e5]}]}',
    b'{"Atomic": [{"Key": "c", "Add": 007}]}',
])
def test_malformed_json_is_400_and_changes_nothing(server, client, acc, raw):
    r = client.db(acc, raw)
    assert_error(r, 400, "bad_request")
    assert client.kv(acc, "a") == {"Key": "a", "Version": 0}
    assert client.counter(acc, "c") == 0
    server.assert_alive()


def test_nesting_600_deep_is_400(server, client, acc):
    for value in ("[" * 600 + "]" * 600, '{"a":' * 600 + "1" + "}" * 600):
        body = '{"KVSet": [{"Key": "a", "Value": ' + value + "}]}"
        assert_error(client.db(acc, body), 400, "bad_request")
    assert client.kv(acc, "a") == {"Key": "a", "Version": 0}
    server.assert_alive()


def test_very_deep_nesting_does_not_crash(server, client, acc):
    body = '{"KVSet": [{"Key": "a", "Value": ' + "[" * 100_000 + "]" * 100_000 + "}]}"
    assert_error(client.db(acc, body), 400, "bad_request")
    server.assert_alive()


def test_moderate_nesting_is_accepted(client, acc):
    value = 1
    for _ in range(200):
        value = [value]
    client.db_ok(acc, {"KVSet": [{"Key": "deep", "Value": value}]})
    assert client.kv(acc, "deep")["Value"] == value


def test_duplicated_object_key_last_wins(client, acc):
    r = client.db(acc, '{"KVSet": [{"Key": "a", "Value": 1, "Value": 2}]}')
    assert r.status == 200, r
    assert client.kv(acc, "a")["Value"] == 2
    r = client.db(acc, '{"KVSet": [{"Key": "x", "Value": 1}], "KVSet": [{"Key": "y", "Value": 2}]}')
    assert r.status == 200, r
    assert r.json == {"KVSet": [{"Key": "y", "Version": 2}], "Rev": 2}
    assert client.kv(acc, "x") == {"Key": "x", "Version": 0}
    # the earlier duplicate is dropped, even when it would not be valid on its own
    r = client.db(acc, '{"KVSet": "junk", "KVSet": [{"Key": "z", "Value": 3}]}')
    assert r.status == 200 and r.json == {"KVSet": [{"Key": "z", "Version": 3}], "Rev": 3}, r


def test_whitespace_and_unicode_escapes_in_keys(client, acc):
    r = client.db(acc, '  {\n "KVSet" : [ { "Key" : "caf\\u00e9" , "Value" : 1 } ]\t}\r\n ')
    assert r.status == 200, r
    assert client.kv(acc, "café") == {"Key": "café", "Value": 1, "Version": 1}


# --------------------------------------------------------------------------- accounts and keys


@pytest.mark.parametrize("account", ["a%20b", "a" * 65, "a%2Fb", "a+b", "%C3%A9", "a%00b", "a:b"])
def test_bad_account_is_400(server, client, account):
    r = client.db(account, {"KVSet": [{"Key": "k", "Value": 1}]})
    assert_error(r, 400, "bad_account")
    server.assert_alive()


@pytest.mark.parametrize("account", ["a", "A-Z_a.z-09", "x" * 64, "..", "-", "_"])
def test_good_accounts(client, account):
    # these account names are legal; use a unique key so reruns do not collide
    key = unique_account("k")
    out = client.db_ok(account, {"KVSet": [{"Key": key, "Value": 1}]})
    assert out["KVSet"][0]["Key"] == key
    assert client.kv(account, key)["Value"] == 1


@pytest.mark.parametrize("key", ["", "x" * 257, "a\u0000b", "\u0000", "é" * 128 + "x"])
@pytest.mark.parametrize("where", ["KVSet", "KVGet", "Atomic", "Seq"])
def test_bad_key_is_400(server, client, acc, key, where):
    body = {
        "KVSet": {"KVSet": [{"Key": "ok", "Value": 1}, {"Key": key, "Value": 1}]},
        "KVGet": {"KVSet": [{"Key": "ok", "Value": 1}], "KVGet": [key]},
        "Atomic": {"Atomic": [{"Key": "ok", "Add": 1}, {"Key": key, "Add": 1}]},
        "Seq": {"Seq": [{"Key": "ok"}, {"Key": key}]},
    }[where]
    assert_error(client.db(acc, body), 400, "bad_key")
    assert client.kv(acc, "ok") == {"Key": "ok", "Version": 0}
    assert client.counter(acc, "ok") == 0
    assert client.seq_last(acc, "ok") == 0


def test_key_length_is_counted_in_utf8_bytes(client, acc):
    k256 = "é" * 128  # 256 bytes
    k_ascii = "k" * 256
    out = client.db_ok(acc, {"KVSet": [{"Key": k256, "Value": 1}, {"Key": k_ascii, "Value": 2}]})
    assert out == {"KVSet": [{"Key": k256, "Version": 1}, {"Key": k_ascii, "Version": 1}], "Rev": 1}
    assert client.kv(acc, k256)["Value"] == 1
    assert_error(client.db(acc, {"KVSet": [{"Key": "é" * 129, "Value": 1}]}), 400, "bad_key")


def test_keys_may_contain_slashes_spaces_and_unicode(client, acc):
    keys = ["cfg/db/url", "a b", "日本/語", "%41", "?x=1&y", "#frag", "tab\there", "😀"]
    client.db_ok(acc, {"KVSet": [{"Key": k, "Value": i} for i, k in enumerate(keys)]})
    out = client.db_ok(acc, {"KVGet": keys})
    assert out["KV"] == [{"Key": k, "Value": i, "Version": 1} for i, k in enumerate(keys)]


# =========================================================================== limits


def test_max_ops_counts_all_lists(limits_server):
    c = limits_server.client()
    acc = unique_account("ops")
    ten = {"IdempotencyIDs": ["i1", "i2"], "KVSet": [{"Key": "a", "Value": 1}, {"Key": "b", "Value": 1}],
           "KVGet": ["a", "b"], "Atomic": [{"Key": "c", "Add": 1}, {"Key": "d", "Add": 1}],
           "Seq": [{"Key": "s"}, {"Key": "t"}]}
    out = c.db_ok(acc, ten)
    assert out["KVSet"] == [{"Key": "a", "Version": 1}, {"Key": "b", "Version": 1}]
    eleven = {"IdempotencyIDs": ["j1", "j2"], "KVSet": [{"Key": "a", "Value": 2}, {"Key": "b", "Value": 2}],
              "KVGet": ["a", "b"], "Atomic": [{"Key": "c", "Add": 1}, {"Key": "d", "Add": 1}],
              "Seq": [{"Key": "s"}, {"Key": "t"}, {"Key": "u"}]}
    assert_error(c.db(acc, eleven), 413, "too_large")
    assert snapshot(c, acc, kv=["a", "b"], counters=["c", "d"], seqs=["s", "u"]) == {
        "kv": [{"Key": "a", "Value": 1, "Version": 1}, {"Key": "b", "Value": 1, "Version": 1}],
        "counters": [{"Key": "c", "Value": 1}, {"Key": "d", "Value": 1}], "seq:s": 1, "seq:u": 0}
    assert c.db_ok(acc, {"IdempotencyIDs": ["j1", "j2"]}) == {}
    assert_error(c.db(acc, {"KVGet": [f"k{i}" for i in range(11)]}), 413, "too_large")
    assert len(c.db_ok(acc, {"KVGet": [f"k{i}" for i in range(10)]})["KV"]) == 10
    limits_server.assert_alive()
    c.close()


def test_value_over_max_value_bytes_is_413(limits_server):
    c = limits_server.client()
    acc = unique_account("val")
    # compact JSON of a string of n chars is n + 2 bytes; the limit is 1000
    out = c.db_ok(acc, {"KVSet": [{"Key": "fits", "Value": "x" * 998}]})
    assert out == {"KVSet": [{"Key": "fits", "Version": 1}], "Rev": 1}
    r = c.db(acc, {"KVSet": [{"Key": "small", "Value": 1}, {"Key": "big", "Value": "x" * 999}]})
    assert_error(r, 413, "too_large")
    assert c.kv(acc, "big") == {"Key": "big", "Version": 0}
    assert c.kv(acc, "small") == {"Key": "small", "Version": 0}
    assert c.kv(acc, "fits")["Value"] == "x" * 998
    limits_server.assert_alive()
    c.close()


def test_value_size_is_its_compact_json(limits_server):
    c = limits_server.client()
    acc = unique_account("compact")
    value = [1] * 499  # compact "[1,1,...,1]" is 2*499 + 1 = 999 bytes
    body = json.dumps({"KVSet": [{"Key": "k", "Value": value}]}, separators=(", ", ": "))
    assert len(json.dumps(value)) > 1400  # as sent (with spaces) the value is over the limit
    r = c.db(acc, body)
    assert r.status == 200, r
    assert c.kv(acc, "k")["Value"] == value
    too_big = json.dumps({"KVSet": [{"Key": "k2", "Value": [1] * 500}]})  # 1001 bytes compact
    assert_error(c.db(acc, too_big), 413, "too_large")
    assert c.kv(acc, "k2") == {"Key": "k2", "Version": 0}
    c.close()


def test_body_over_max_body_bytes_is_413_and_closes(limits_server):
    acc = unique_account("body")
    body = ('{"KVSet": [{"Key": "a", "Value": "' + "y" * 5000 + '"}]}').encode()
    with limits_server.raw() as raw:
        raw.send(f"POST /db/{acc} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        r = raw.read_response()
        assert_error(r, 413, "too_large")
        raw.wait_closed()
    c = limits_server.client()
    assert c.kv(acc, "a") == {"Key": "a", "Version": 0}
    limits_server.assert_alive()
    c.close()


# =========================================================================== concurrency


def test_concurrent_increments_are_distinct_and_gap_free(server, acc):
    results: list[int] = []
    errors: list = []
    lock = threading.Lock()

    def worker():
        c = server.client()
        mine = []
        try:
            for _ in range(50):
                out = c.db_ok(acc, {"Atomic": [{"Key": "hits", "Add": 1}]})
                mine.append(out["Atomic"][0]["Value"])
            # within one connection the values only grow
            assert mine == sorted(mine), mine
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            c.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert sorted(results) == list(range(1, 1001))
    c = server.client()
    assert c.counter(acc, "hits") == 1000
    c.close()


def test_concurrent_sequence_blocks_never_overlap(server, acc):
    blocks: list[tuple[int, int]] = []
    errors: list = []
    lock = threading.Lock()

    def worker(n):
        c = server.client()
        try:
            for i in range(25):
                count = 1 + (n + i) % 7
                out = c.db_ok(acc, {"Seq": [{"Key": "ids", "Count": count}]})
                e = out["Seq"][0]
                assert e["Count"] == count
                with lock:
                    blocks.append((e["Value"], e["Count"]))
        except Exception as e:  # pragma: no cover
            errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    handed = [v for start, count in blocks for v in range(start, start + count)]
    total = sum(count for _, count in blocks)
    assert sorted(handed) == list(range(1, total + 1))  # no overlap, no gap
    c = server.client()
    assert c.seq_last(acc, "ids") == total
    c.close()


def test_concurrent_cas_updates_lose_nothing(server, acc):
    c0 = server.client()
    c0.db_ok(acc, {"KVSet": [{"Key": "doc", "Value": 0}]})
    c0.close()
    errors: list = []
    won_versions: list[int] = []
    lock = threading.Lock()

    def worker():
        c = server.client()
        try:
            done = 0
            while done < 10:
                cur = c.kv(acc, "doc")
                r = c.db(acc, {"KVSet": [{"Key": "doc", "Value": cur["Value"] + 1, "Version": cur["Version"]}]})
                if r.status == 200:
                    done += 1
                    with lock:
                        won_versions.append(r.json["KVSet"][0]["Version"])
                else:
                    body = assert_error(r, 409, "precondition_failed")
                    assert body["Failed"][0]["Key"] == "doc"
                    assert body["Failed"][0]["Version"] > cur["Version"]
        except Exception as e:  # pragma: no cover
            errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert sorted(won_versions) == list(range(2, 82))
    c = server.client()
    assert c.kv(acc, "doc") == {"Key": "doc", "Value": 80, "Version": 81}
    c.close()


def test_concurrent_idempotency_claims_exactly_one_winner(server, acc):
    statuses: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(12)

    def worker():
        c = server.client()
        try:
            barrier.wait()
            r = c.db(acc, {"IdempotencyIDs": ["race"], "Atomic": [{"Key": "c", "Add": 1}]})
            if r.status != 200:
                assert_error(r, 409, "duplicate_request")
            with lock:
                statuses.append(r.status)
        finally:
            c.close()

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] + [409] * 11
    c = server.client()
    assert c.counter(acc, "c") == 1
    c.close()


# =========================================================================== more edges


def test_default_max_ops_is_1000(server, client, acc):
    out = client.db_ok(acc, {"KVSet": [{"Key": f"k{i}", "Value": i} for i in range(1000)]})
    assert len(out["KVSet"]) == 1000 and {e["Version"] for e in out["KVSet"]} == {1}
    r = client.db(acc, {"KVSet": [{"Key": f"j{i}", "Value": i} for i in range(999)],
                        "IdempotencyIDs": ["one", "two"]})
    assert_error(r, 413, "too_large")
    assert client.kv(acc, "j0") == {"Key": "j0", "Version": 0}
    assert client.db_ok(acc, {"IdempotencyIDs": ["one", "two"]}) == {}
    assert next_version(client, acc) == 2


def test_default_max_value_is_512_kib(client, acc):
    limit = 512 * 1024
    out = client.db_ok(acc, {"KVSet": [{"Key": "big", "Value": "v" * (limit - 2)}]})
    assert out == {"KVSet": [{"Key": "big", "Version": 1}], "Rev": 1}
    assert client.kv(acc, "big")["Value"] == "v" * (limit - 2)
    assert_error(client.db(acc, {"KVSet": [{"Key": "big", "Value": "w" * (limit - 1)}]}), 413, "too_large")
    assert client.kv(acc, "big")["Version"] == 1


def test_default_max_body_is_1_mib(server, acc):
    body = b'{"KVSet": [{"Key": "a", "Value": 1}]}'
    body = body + b" " * (1024 * 1024 + 1 - len(body))
    with server.raw() as raw:
        def send():
            try:
                raw.send(f"POST /db/{acc} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                         + body)
            except OSError:
                pass  # the server may refuse (and close) before the whole body is sent
        sender = threading.Thread(target=send)
        sender.start()
        assert_error(raw.read_response(), 413, "too_large")
        raw.wait_closed()
        sender.join()
    c = server.client()
    assert c.kv(acc, "a") == {"Key": "a", "Version": 0}
    c.close()
    server.assert_alive()


def test_longest_account_and_key_in_every_namespace(client):
    acc = unique_account("x")
    acc = acc + "z" * (64 - len(acc))
    key = "日" * 85 + "k"  # 256 UTF-8 bytes
    assert len(acc) == 64 and len(key.encode()) == 256
    out = client.db_ok(acc, {"IdempotencyIDs": [key], "KVSet": [{"Key": key, "Value": 1}],
                             "Atomic": [{"Key": key, "Add": 2}], "Seq": [{"Key": key, "Count": 3}]})
    assert out == {"KVSet": [{"Key": key, "Version": 1}], "Atomic": [{"Key": key, "Value": 2}],
                   "Seq": [{"Key": key, "Value": 1, "Count": 3}], "Rev": 1}
    assert client.kv(acc, key) == {"Key": key, "Value": 1, "Version": 1}
    assert_error(client.db(acc, {"IdempotencyIDs": [key]}), 409, "duplicate_request")


@pytest.mark.parametrize("value", [
    2**63, -(2**63), 2**64 - 1, 0.1, 1.5e300, -2.5e-300, 123456789.125, "nul\u0000inside", "\u2028\u2029",
])
def test_value_numbers_and_strings_round_trip_exactly(client, acc, value):
    client.db_ok(acc, {"KVSet": [{"Key": "v", "Value": value}]})
    got = client.kv(acc, "v")["Value"]
    assert got == value and type(got) is type(value)


def test_huge_integer_value_is_kept_exactly_or_refused(client, acc):
    r = client.db(acc, '{"KVSet": [{"Key": "v", "Value": 123456789012345678901234567890}]}')
    if r.status == 200:
        assert client.kv(acc, "v")["Value"] == 123456789012345678901234567890
    else:
        assert_error(r, 400, "bad_request")
        assert client.kv(acc, "v") == {"Key": "v", "Version": 0}


def test_delete_missing_key_with_version_0_is_a_no_op(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 1}]})
    out = client.db_ok(acc, {"KVSet": [{"Key": "ghost", "Delete": True, "Version": 0}]})
    assert out == {"KVSet": [{"Key": "ghost", "Version": 0}]}
    assert next_version(client, acc) == 2


def test_concurrent_multi_key_writes_get_distinct_revisions(server, acc):
    versions: list[int] = []
    errors: list = []
    lock = threading.Lock()

    def worker(t):
        c = server.client()
        try:
            for i in range(20):
                out = c.db_ok(acc, {"KVSet": [{"Key": f"a{t}", "Value": i}, {"Key": f"b{t}", "Value": i},
                                              {"Key": "shared", "Value": [t, i]}]})
                vs = {e["Version"] for e in out["KVSet"]}
                assert len(vs) == 1, out
                with lock:
                    versions.append(vs.pop())
        except Exception as e:  # pragma: no cover
            errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert sorted(versions) == list(range(1, 201))
    c = server.client()
    shared = c.kv(acc, "shared")
    assert shared["Version"] == 200
    t, i = shared["Value"]
    assert i == 19 and c.kv(acc, f"a{t}") == {"Key": f"a{t}", "Value": 19, "Version": 200}
    c.close()
