"""The POST /db fast path (cdragon/core/fastpath.pyx): which bodies it reads itself,
that it reads them exactly as the general parser would, and that it leaves every
other body (and every error) to the general parser.
"""
from __future__ import annotations

import json

import pytest

from cdragon._core import _fast_txn_shape
from helpers import unique_account


def compact(v) -> bytes:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()


def expected(body: dict):
    """What the general parser makes of a body, in _fast_txn_shape's terms."""
    out = {}
    for kind, entries in body.items():
        if kind == "Atomic":
            out[kind] = [(compact(e["Key"]), b"acc\0" + e["Key"].encode(), e.get("Set", e.get("Add")),
                          "Set" in e, "IfEq" in e, e.get("IfEq", 0)) for e in entries]
        elif kind == "KVSet":
            out[kind] = [(compact(e["Key"]), b"acc\0" + e["Key"].encode(), compact(e["Value"]),
                          "Version" in e, e.get("Version", 0)) for e in entries]
        elif kind == "KVGet":
            out[kind] = [(compact(k), b"acc\0" + k.encode()) for k in entries]
    if "LockID" in body:
        out.update(LockID=body["LockID"].encode(), LockDur=float(body.get("LockDur", 30)),
                   LockWait=float(body.get("LockWait", 0)))
    if "UnlockID" in body:
        out.update(UnlockID=body["UnlockID"].encode(), Unlock=body["Unlock"])
    return out


ACCEPTED = [
    {"Atomic": [{"Key": "k1", "Add": 1}]},
    {"Atomic": [{"Add": -9, "Key": "x"}, {"Key": "y", "Add": 123456789012345678}]},
    {"Atomic": [{"Key": "n", "Set": 0}, {"Key": "m", "Set": -4, "IfEq": 7}]},
    {"KVSet": [{"Key": "k", "Value": "v" * 62}]},
    {"KVSet": [{"Key": "a/b c~!", "Value": "", "Version": 0}, {"Key": "2", "Value": 42}]},
    {"KVSet": [{"Key": "k" * 256, "Value": -17, "Version": 12}]},
    {"LockID": "k5", "LockDur": 30, "KVGet": ["a3/k5"]},          # the lock benchmark's bodies
    {"UnlockID": "k5", "Unlock": 123},
    {"KVGet": ["x", "y", "x"], "LockWait": 0, "LockID": "L"},
    {"Atomic": [{"Key": "n", "Add": 1}], "KVSet": [{"Key": "k", "Value": "v"}], "KVGet": ["k"],
     "UnlockID": "L", "Unlock": 9, "LockID": "M", "LockDur": 604800, "LockWait": 300},
]


@pytest.mark.parametrize("body", ACCEPTED)
@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": ")])
def test_read_as_the_general_parser_would(body, separators):
    raw = json.dumps(body, separators=separators).encode()
    assert _fast_txn_shape(raw) == expected(body)
    # whitespace of every JSON kind around the tokens
    spaced = raw.replace(b"{", b" \t{\r\n").replace(b"]", b"\n]  ")
    assert _fast_txn_shape(spaced) == expected(body)


DECLINED = [
    b'{"Atomic":[{"Key":"k","Add":1.0}]}',             # not an integer
    b'{"Atomic":[{"Key":"k","Add":1e3}]}',
    b'{"Atomic":[{"Key":"k","Add":012}]}',             # not JSON
    b'{"Atomic":[{"Key":"k","Add":1234567890123456789}]}',   # 19 digits: the general path decides
    b'{"Atomic":[{"Key":"k","Add":true}]}',
    b'{"Atomic":[{"Key":"k","Add":1,"Set":2}]}',
    b'{"Atomic":[{"Key":"k","Add":1,"IfEq":2}]}',
    b'{"Atomic":[{"Key":"k"}]}',
    b'{"Atomic":[{"Add":1}]}',
    b'{"Atomic":[{"Key":"k","Add":1,"Add":2}]}',       # a repeated field
    b'{"Atomic":[{"Key":"k","Add":1},{"Key":"k","Add":2}]}',   # the same key twice
    b'{"Atomic":[]}',
    b'{"Atomic":[{"Key":"","Add":1}]}',
    b'{"Atomic":[{"Key":"' + b"k" * 257 + b'","Add":1}]}',
    b'{"Atomic":[{"Key":"\\u006b","Add":1}]}',         # an escape
    '{"Atomic":[{"Key":"clé","Add":1}]}'.encode(),     # not ASCII
    b'{"Atomic":[{"Key":"a\tb","Add":1}]}',            # a raw control character
    b'{"Atomic":[{"Key":"k","Add":1}],"Seq":[{"Key":"s"}]}',
    b'{"Atomic":[{"Key":"k","Add":1}],"Atomic":[{"Key":"j","Add":1}]}',
    b'{"KVGet":[]}',
    b'{"KVGet":[{"Key":"k"}]}',
    b'{"KVGet":["k"],"IdempotencyIDs":["i"]}',
    b'{"LockID":"L","LockDur":0.5}',
    b'{"LockID":"L","LockDur":0}',
    b'{"LockID":"L","LockDur":604801}',
    b'{"LockID":"L","LockWait":301}',
    b'{"LockID":"L","LockWait":-1}',
    b'{"LockDur":5}',
    b'{"LockID":"L","LockID":"M"}',
    b'{"UnlockID":"L"}',
    b'{"Unlock":5}',
    b'{"UnlockID":"L","Unlock":"5"}',
    b'{"UnlockID":"L","Unlock":0}',
    b'{"LockID":""}',
    b'{}',
    b'{"Atomic":[{"Key":"k","Add":1}]} x',
    b'{"Atomic":[{"Key":"k","Add":1}]',
    b'{"Atomic":[{"Key":"k","Add":1,}]}',
    b'{"KVSet":[{"Key":"k","Value":{"a":1}}]}',        # objects, arrays, literals: general path
    b'{"KVSet":[{"Key":"k","Value":[1]}]}',
    b'{"KVSet":[{"Key":"k","Value":true}]}',
    b'{"KVSet":[{"Key":"k","Value":null}]}',
    b'{"KVSet":[{"Key":"k","Value":1.5}]}',
    b'{"KVSet":[{"Key":"k","Value":-0}]}',
    b'{"KVSet":[{"Key":"k","Value":"a\\"b"}]}',
    b'{"KVSet":[{"Key":"k","Delete":true}]}',
    b'{"KVSet":[{"Key":"k","Value":"v","Version":-1}]}',
    b'{"KVSet":[{"Key":"k","Value":"v","Extra":1}]}',
    b'[]',
    b'',
]


@pytest.mark.parametrize("raw", DECLINED)
def test_declines_everything_else(raw):
    assert _fast_txn_shape(raw) is None


@pytest.mark.parametrize("at", [0, 1, 7, 8, 9, 15, 16, 63, 64, 1000, 1023])
@pytest.mark.parametrize("bad", ["\\u0041", '\\"', "\t", "\x7f", "é", "\x00"])
def test_long_values_are_checked_at_every_position(at, bad):
    """Long strings are scanned eight bytes at a time: a character that makes the
    general parser's answer differ is caught wherever it sits."""
    text = "v" * at + bad + "w" * (1030 - at)
    raw = b'{"KVSet":[{"Key":"k","Value":"' + text.encode() + b'"}]}'
    assert _fast_txn_shape(raw) is None
    plain = "v" * at + "x" + "w" * (1030 - at)
    raw = b'{"KVSet":[{"Key":"k","Value":"' + plain.encode() + b'"}]}'
    assert _fast_txn_shape(raw)["KVSet"][0][2] == compact(plain)


def test_declines_over_the_limits():
    value = b'{"KVSet":[{"Key":"k","Value":"' + b"v" * 98 + b'"}]}'   # a 100-byte value
    assert _fast_txn_shape(value, max_value_bytes=100) is not None
    assert _fast_txn_shape(value, max_value_bytes=99) is None
    three = b'{"Atomic":[{"Key":"a","Add":1},{"Key":"b","Add":1},{"Key":"c","Add":1}]}'
    assert _fast_txn_shape(three, max_ops=3) is not None
    assert _fast_txn_shape(three, max_ops=2) is None


def test_both_paths_answer_alike(server):
    """The same requests, read by the fast path and (a key spelled with an escape) by the
    general parser, on two accounts: the same answers and the same state."""
    c = server.client()
    answers = {}
    for acc, key in ((unique_account("fast"), '"k"'), (unique_account("slow"), '"\\u006b"')):
        got = []
        for body in ('{"Atomic":[{"Key":%s,"Add":5}]}', '{"Atomic":[{"Key":%s,"Set":9,"IfEq":5}]}',
                     '{"Atomic":[{"Key":%s,"Set":1,"IfEq":5}]}', '{"KVSet":[{"Key":%s,"Value":"x y"}]}',
                     '{"KVSet":[{"Key":%s,"Value":7,"Version":1}]}', '{"KVSet":[{"Key":%s,"Value":8,"Version":1}]}',
                     '{"Atomic":[{"Key":%s,"Add":9223372036854775807}]}'):
            r = c.post(f"/db/{acc}", (body % key).encode())
            got.append((r.status, r.json))
        got.append(c.kv(acc, "k"))
        got.append(c.counter(acc, "k"))
        answers[key] = got
    assert answers['"k"'] == answers['"\\u006b"']
    assert answers['"k"'][0] == (200, {"Atomic": [{"Key": "k", "Value": 5}]})
    assert answers['"k"'][2][0] == 409 and answers['"k"'][5][0] == 409
    c.close()


def test_string_scan_finds_every_special_byte_at_every_position():
    # the fast path steps over plain runs 16 bytes at a time (plainscan.h): a quote,
    # backslash, control byte, DEL or non-ASCII byte anywhere in a value, at every
    # offset around those 16-byte steps, must still send the body to the general parser
    for n in (0, 1, 15, 16, 17, 31, 32, 33, 47, 64, 100):
        plain = bytes(0x21 + (i * 7) % 94 for i in range(n)).replace(b'"', b"a").replace(b"\\", b"b")
        body = b'{"KVSet":[{"Key":"k","Value":"' + plain + b'"}]}'
        assert _fast_txn_shape(body)["KVSet"][0][2] == b'"' + plain + b'"'
        for pos in range(n):
            for bad in (b"\\", b"\x00", b"\x1f", b"\x7f", b"\x80", b"\xff"):
                v = plain[:pos] + bad + plain[pos + 1:]
                assert _fast_txn_shape(b'{"KVSet":[{"Key":"k","Value":"' + v + b'"}]}') is None, (n, pos, bad)
            # a quote ends the string early: what follows is not the body's shape
            v = plain[:pos] + b'"' + plain[pos + 1:]
            assert _fast_txn_shape(b'{"KVSet":[{"Key":"k","Value":"' + v + b'"}]}') is None
