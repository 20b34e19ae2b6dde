"""The stored-form shortcut for REST bodies (cdragon/core/canon.pyx): a body that is
already what the ujson parse + compact re-encode would make of it is stored as it came.

- differential: whenever json_canonical says yes, the old path (parse_json +
  encode_value) gives back exactly the body and raises nothing; over a hand-written
  corpus and a few thousand seeded random documents and byte mutations of them;
- the canonical compact forms really take the shortcut;
- stored_value answers every body (value or error) as the old path did;
- against the real server: PUT /db/{acc}/kv/{key} and the REST queue push store what
  the old path stored, and answer its errors.
"""
from __future__ import annotations

import random

import pytest
import ujson

from cdragon._core import _json_canonical, _stored_value, _stored_value_slow, ApiError
from helpers import assert_error, unique_account

MAX_JSON_DEPTH = 512
BIG = 1 << 40


def roundtrip(b: bytes) -> bytes:
    """ujson's own round trip, with the options encode_value uses."""
    return ujson.dumps(ujson.loads(b), ensure_ascii=False, escape_forward_slashes=False,
                       allow_nan=False).encode("utf-8")


def old_path(b: bytes, limit: int = BIG):
    """(value, None) or (None, (status, code, message)) from the parse + re-encode."""
    try:
        return _stored_value_slow(b, limit), None
    except ApiError as e:
        return None, (e.status, e.code, e.message)


def new_path(b: bytes, limit: int = BIG):
    try:
        return _stored_value(b, limit), None
    except ApiError as e:
        return None, (e.status, e.code, e.message)


def check(b: bytes) -> bool:
    """The differential property for one body; whether the shortcut took it."""
    yes = _json_canonical(b)
    if yes:
        assert roundtrip(b) == b, b
        assert old_path(b) == (b, None), b
    assert new_path(b) == old_path(b), b
    return yes


# ---- the hand-written corpus -------------------------------------------------------------
CANONICAL = [
    b"0", b"-1", b"7", b"42", b"-42", b"123456789012345678", b"-123456789012345678",
    b"999999999999999999", b"-999999999999999999",
    b"true", b"false", b"null",
    b'""', b'"a"', b'"a/b"', b'"/"', b'" "', b'"~"', b"\"<>&'!#$%()*+,-.:;=?@[]^_`{|}\"",
    b"[]", b"{}", b"[[]]", b"[{}]", b'{"a":{}}', b'{"a":[]}', b"[[],{},[[]],[{}]]",
    b'{"":0}', b'{"a":1,"b":2}', b'{"b":1,"a":2}', b'{"a":{"a":1}}', b'{"a":1,"A":2}',
    b'{"a":1,"ab":2,"b":3}', b'[1,"two",true,false,null,[3],{"four":4}]',
    b'{"user":{"id":17,"tags":["x","y"],"ok":true,"none":null,"url":"http://x/y"}}',
    b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH,
    b'{"a":' * MAX_JSON_DEPTH + b"1" + b"}" * MAX_JSON_DEPTH,
    b"{" + b",".join(b'"k%d":%d' % (i, i) for i in range(32)) + b"}",
    b'"' + b"x" * 5000 + b'"',
]

DECLINED = [
    b"", b" ", b"-0", b"-", b"01", b"-01", b"00", b"1.0", b"1e5", b"1E5", b"-1.5", b"0.0",
    b"1234567890123456789", b"-1234567890123456789", b"9223372036854775808",
    b"18446744073709551616", b"NaN", b"Infinity", b"-Infinity",
    b'"\\u00e9"', "\"é\"".encode(), "\"\u2603\"".encode(), b'"\\\\"', b'"\\/"', b'"\\n"',
    b'"\\""', b'"a\tb"', b'"\x7f"', b'"\x01"', b'"\xff"',
    b'{"a":1,"a":2}', b'{"a":{},"a":[]}', b'{"x":1,"y":2,"x":3}', b'[{"a":1,"a":1}]',
    b"{" + b",".join(b'"k%d":%d' % (i, i) for i in range(33)) + b"}",
    b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
    b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1),
    b"[1,]", b"[,1]", b"{,}", b'{"a"}', b'{"a":}', b'{"a",1}', b"{1:2}", b"[1 2]", b"[1:2]",
    b"tru", b"truee", b"nul", b"True", b"[true", b"]", b"}", b"[}", b"{]",
    b'"abc', b"'a'", b"[1]x", b"1 ", b"[] ", b"[][]", b"1,2", b"\xef\xbb\xbf1",
]


@pytest.mark.parametrize("b", CANONICAL)
def test_canonical_forms_take_the_shortcut(b):
    assert check(b), b


@pytest.mark.parametrize("b", DECLINED)
def test_other_forms_are_declined(b):
    assert not check(b), b


def test_whitespace_anywhere_outside_strings_is_declined():
    doc = b'{"a":[1,"b c",true,{}],"d":{"e":null}}'
    assert check(doc)
    in_string = {i for i in range(len(doc) + 1) if doc[:i].count(b'"') % 2}   # no escapes
    for i in range(len(doc) + 1):
        for ws in (b" ", b"\t", b"\n", b"\r"):
            b = doc[:i] + ws + doc[i:]
            took = check(b)
            assert took == (ws == b" " and i in in_string), b


def test_truncations_are_declined():
    for doc in CANONICAL:
        for i in range(len(doc)):
            b = doc[:i]
            if b in CANONICAL:                  # "-1"[:1] is not, "42"[:1] is
                continue
            took = check(b)
            if took:                            # a prefix that is itself a value
                assert b[:1].isdigit() or b[:1] == b"-", b


# ---- seeded random documents -------------------------------------------------------------
PRINTABLE = [bytes([c]) for c in range(0x20, 0x7F) if c not in (0x22, 0x5C)]
ODD_STRINGS = [b'"\\u00e9"', "\"é\"".encode(), b'"\\n"', b'"\\\\"', b'"\\/"', b'"a\\"b"',
               b'"\\ud800"', b'"\x7f"', b'"\t"']
ODD_NUMBERS = [b"-0", b"1.5", b"1e3", b"-0.0", b"1234567890123456789", b"01", b"1E+2"]
WS = [b" ", b"\n", b"\t", b"\r"]


def _string(rnd: random.Random, names: list[bytes]) -> bytes:
    if names and rnd.random() < 0.3:
        return rnd.choice(names)                 # a likely duplicate member name
    return b'"' + b"".join(rnd.choice(PRINTABLE) for _ in range(rnd.randint(0, 6))) + b'"'


def _number(rnd: random.Random, odd: float) -> bytes:
    digits = rnd.choice([1, 1, 2, 5, 17, 18, 18] + ([19, 20] if odd else []))
    s = str(rnd.randint(0 if digits == 1 else 10 ** (digits - 1), 10 ** digits - 1)).encode()
    return (b"-" if rnd.random() < 0.3 else b"") + s


def _doc(rnd: random.Random, depth: int, odd: float) -> bytes:
    """A random JSON document; `odd` is the chance of a form the shortcut declines."""
    def sep(b: bytes) -> bytes:
        return b + (rnd.choice(WS) if rnd.random() < odd / 4 else b"")

    r = rnd.random()
    if depth > 4 or r < 0.45:
        if rnd.random() < odd:
            return rnd.choice(ODD_STRINGS + ODD_NUMBERS)
        return rnd.choice([_string(rnd, []), _number(rnd, odd), b"true", b"false", b"null"])
    if r < 0.7:
        items = [_doc(rnd, depth + 1, odd) for _ in range(rnd.randint(0, 4))]
        return sep(b"[") + sep(b",").join(items) + b"]"
    names: list[bytes] = []
    members = []
    for _ in range(rnd.randint(0, 5)):
        name = _string(rnd, names if rnd.random() < odd else [])
        names.append(name)
        members.append(sep(name) + sep(b":") + _doc(rnd, depth + 1, odd))
    return sep(b"{") + sep(b",").join(members) + b"}"


def _mutate(rnd: random.Random, b: bytes) -> bytes:
    if not b:
        return b
    i = rnd.randrange(len(b))
    kind = rnd.randrange(4)
    if kind == 0:
        return b[:i] + bytes([rnd.randrange(256)]) + b[i + 1:]
    if kind == 1:
        return b[:i] + b[i + 1:]
    if kind == 2:
        return b[:i] + bytes([rnd.choice(b'[]{}",:0-1 \\aetn')]) + b[i:]
    return b[:i]


def test_random_documents_and_mutations():
    rnd = random.Random(18)
    took = declined = 0
    for n in range(4000):
        doc = _doc(rnd, 0, odd=0.0 if n % 2 == 0 else 0.15)
        bodies = [doc] + [_mutate(rnd, doc) for _ in range(2)]
        for b in bodies:
            if check(b):
                took += 1
            else:
                declined += 1
        if n % 2 == 0:
            # built only from accepted forms: declined only for a repeated member name,
            # which ujson's round trip drops
            assert _json_canonical(doc) == (roundtrip(doc) == doc), doc
    # both sides of the property were exercised
    assert took > 2000 and declined > 2000, (took, declined)


# ---- stored_value: the size limit -------------------------------------------------------
def test_limit_is_the_same_413_either_way():
    b = b'"' + b"x" * 98 + b'"'                 # 100 bytes, canonical
    assert _stored_value(b, 100) == b
    assert new_path(b, 99) == old_path(b, 99) == (None, (413, "too_large", "Value is 100 bytes, limit 99"))
    spaced = b'[ "' + b"x" * 95 + b'" ]'        # 101 bytes, 99 when compact
    assert not _json_canonical(spaced)
    assert new_path(spaced, 99) == old_path(spaced, 99) == (b'["' + b"x" * 95 + b'"]', None)
    assert new_path(spaced, 98)[1][0] == 413


def test_stored_value_returns_the_body_object_itself():
    b = b'{"a":[1,2,3]}'
    assert _stored_value(b, BIG) is b


# ---- against the real server -------------------------------------------------------------
SERVER_BODIES = [
    b'{"a":1,"b":[true,null,"x/y"]}', b"17", b'"text"', b"[]", b"{}", b"null",
    b'{ "a" : 1 }', b" [1, 2] ", b'"caf\\u00e9"', "\"café\"".encode(), b'"a\\/b"',
    b'{"a":1,"a":2}', b"1.50", b"1e2", b"-0", b"12345678901234567890", b'"\\n\\t"',
]


def _between(body: bytes, head: bytes, tail: bytes) -> bytes:
    """The bytes of an answer after its first `head` and before its last `tail`."""
    _, found, rest = body.partition(head)
    value, found2, _ = rest.rpartition(tail)
    assert found and found2, body
    return value


def _stored_of(c, acc: str, i: int) -> bytes:
    """The stored bytes of key k{i}, cut out of the GET answer {"Key","Value","Version"}."""
    r = c.get(f"/db/{acc}/kv/k{i}")
    assert r.status == 200 and r.body.startswith(b'{"Key":"k%d","Value":' % i), r
    return _between(r.body, b'"Value":', b',"Version":')


def _received_body(c, acc: str, i: int) -> bytes:
    """The Body of the one message in queue q{i}, received, as its bytes in the answer."""
    r = c.post(f"/queue/{acc}", {"Queue": f"q{i}", "Max": 10})
    assert r.status == 200 and len(r.json["Messages"]) == 1, r
    return _between(r.body, b'"Body":', b',"Attempts":')


def _queue_empty(c, acc: str, i: int) -> bool:
    s = c.get(f"/db/{acc}/queue/q{i}").json
    return (s["Ready"], s["Delayed"], s["InFlight"]) == (0, 0, 0)


# route -> (write body b as item i, its stored bytes, whether nothing is stored)
ROUTES = {
    "kv": (lambda c, acc, i, b: c.put(f"/db/{acc}/kv/k{i}", b), _stored_of,
           lambda c, acc, i: c.kv(acc, f"k{i}") == {"Key": f"k{i}", "Version": 0}),
    "queue": (lambda c, acc, i, b: c.post(f"/db/{acc}/queue/q{i}", b), _received_body, _queue_empty),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_rest_body_is_stored_as_the_old_path_stored_it(limits_server, route):
    write, stored, _ = ROUTES[route]
    c = limits_server.client()
    acc = unique_account("canon")
    spaced = b'[ "' + b"x" * 994 + b'" ]'        # 1000 bytes, 998 once compact: fits
    for i, b in enumerate(SERVER_BODIES + [spaced]):
        want, err = old_path(b, 1000)
        assert err is None, b
        r = write(c, acc, i, b)
        assert r.status == 200, (b, r)
        assert stored(c, acc, i) == want, b
    c.close()


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_rest_body_errors_are_the_old_paths(limits_server, route):
    write, _, nothing = ROUTES[route]
    c = limits_server.client()
    acc = unique_account("canon")
    cases = [(b'"' + b"x" * 999 + b'"', 413, "too_large"),           # canonical, 1001 bytes
             (b'{"a":"' + b"x" * 994 + b'"}', 413, "too_large"),     # canonical, 1002 bytes
             (b'[ "' + b"x" * 997 + b'" ]', 413, "too_large"),       # 1001 once compact
             (b"[1,", 400, "bad_request"), (b"{'a':1}", 400, "bad_request"),
             (b'{"a":1,}', 400, "bad_request"), (b"[1]x", 400, "bad_request"),
             (b"[1] 2", 400, "bad_request"), (b"", 400, "bad_request"), (b"NaN", 400, "bad_request"),
             (b"[" * 513 + b"]" * 513, 400, "bad_request"), (b'"a\x01"', 400, "bad_request"),
             (b'"a\\q"', 400, "bad_request"),
             # numbers JSON forbids, which ujson alone would read (01 as 1, - as 0)
             (b"01", 400, "bad_request"), (b"-", 400, "bad_request"), (b"[1.]", 400, "bad_request")]
    for i, (b, status, code) in enumerate(cases):
        body = assert_error(write(c, acc, i, b), status, code)
        _, err = old_path(b, 1000)
        assert err[:2] == (status, code) and body["Message"] == err[2], (b, body, err)
        assert nothing(c, acc, i), b
    limits_server.assert_alive()
    c.close()
