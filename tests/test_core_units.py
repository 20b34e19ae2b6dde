"""Unit tests of the Cython pieces of cdragon._core, called directly (no server)."""
from __future__ import annotations

import json

import pytest
import uvloop

from cdragon import _core


# ---- codec: the JSON scanner that backs ujson up ------------------------------------
@pytest.mark.parametrize("body,verdict", [
    (b'{"a":[1,2,{"b":"c"}]}', 0),
    (b"[" * 512 + b"]" * 512, 0),
    (b"[" * 513 + b"]" * 513, 1),
    (b'{"k":"' + b"[" * 2000 + b'"}', 0),          # brackets inside a string don't count
    (b'{"k":"a\\"[[[["}', 0),                       # escaped quote keeps us in the string
    (b'{"k":"tab\there"}', 2),                      # raw control character in a string
    (b'{"k":"esc\\there"}', 0),                     # the escaped form is fine
    # numbers as JSON writes them pass; what ujson reads but JSON forbids is 3
    (b'[0,-0,1,-1,10,1.5,-0.25,1e5,1E+5,2e-3,0.0e0,123456789012345678901234]', 0),
    (b'{"n":"01 - 1. .5 +1"}', 0),                  # inside a string: not numbers
    (b'[true,false,null]', 0),
    (b"01", 3), (b"-", 3), (b"00", 3), (b"1.", 3), (b"-01", 3), (b"1.e5", 3),
    (b'{"a":-}', 3), (b"[01]", 3), (b"1e", 3), (b"1e+", 3), (b"-.5", 3), (b"1-2", 3),
    (b'{"a":0.}', 3), (b"[1.5.5]", 3), (b"[1ee5]", 3),
])
def test_json_scan(body, verdict):
    assert _core._json_scan(body) == verdict


@pytest.mark.parametrize("key", ["plain", "with space", 'quo"te', "back\\slash", "ctl\x01", "日本", "a/b"])
def test_json_str_round_trips(key):
    out = _core._json_str(key.encode("utf-8"))
    assert json.loads(out) == key


def test_json_str_fast_path_is_plain_quoting():
    assert _core._json_str(b"cfg/db/url") == b'"cfg/db/url"'


@pytest.mark.parametrize("acc,ok", [
    (b"a", True), (b"A-z_0.9", True), (b"x" * 64, True), (b"x" * 65, False),
    (b"", False), (b"a b", False), (b"a/b", False), (b"\xc3\xa9", False), (b"a%20", False),
])
def test_account_rules(acc, ok):
    assert _core._account_ok(acc) is ok


@pytest.mark.parametrize("v,d", [(0, 0.0), (1, 1.5), (-(2**63), 1e300), (2**63 - 1, 1718600000.123)])
def test_pack_round_trip(v, d):
    iv, dv, raw = _core._pack_roundtrip(v, d)
    assert (iv, dv) == (v, d)
    assert len(raw) == 8


def test_expiry_encoding_sorts_by_time():
    raws = [_core._pack_roundtrip(0, t)[2] for t in (1.0, 2.5, 1e9, 1718600000.5, 4e9)]
    assert raws == sorted(raws)


# ---- respond: framing ------------------------------------------------------------------
def test_frame_json_ends_with_a_newline():
    out = _core._frame(200, b'{"a":1}')
    assert out == (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 8\r\n\r\n{\"a\":1}\n")


def test_frame_head_keeps_length_drops_body_and_close():
    out = _core._frame(404, b'{"x":2}', close=True, head=True)
    head, _, body = out.partition(b"\r\n\r\n")
    assert body == b""
    assert b"Content-Length: 8" in head and b"Connection: close" in head
    assert head.startswith(b"HTTP/1.1 404 Not Found\r\n")


def test_frame_text():
    out = _core._frame(200, b"hello", text=True)
    assert b"Content-Type: text/plain; charset=utf-8\r\n" in out and out.endswith(b"\r\n\r\nhello")


# ---- deadlines: one heap, one timer ---------------------------------------------------------
def test_deadlines_fire_in_order_and_skip_cancelled():
    loop = uvloop.new_event_loop()
    try:
        d, fired = _core._test_deadlines(loop, [
            ("c", 0.06), ("a", 0.02), ("b", 0.04), ("x", 0.03), ("x", None),   # x cancelled
            ("m", 0.01), ("m", 0.05),                                       # m moved later
        ])
        assert len(d) == 4
        loop.run_until_complete(__import__("asyncio").sleep(0.15))
        assert fired == ["a", "b", "m", "c"]
        assert len(d) == 0
    finally:
        loop.close()


# ---- the answer buffer: reused, but a huge answer does not pin its memory ------------
def test_answer_buffer_keeps_at_most_a_megabyte():
    n, kept = _core._answer_buffer_after(100)
    assert n > 100 and 0 < kept < 1 << 20            # small answers reuse the buffer
    n, kept = _core._answer_buffer_after(5_000_000)
    assert n > 5_000_000 and kept == 0               # a 5 MB answer's buffer is let go
    n, kept = _core._answer_buffer_after(100)
    assert 0 < kept < 1 << 20


# ---- the error table ------------------------------------------------------------------
def test_fixed_errors_are_api_errors():
    seen = set()
    for status, code, message, body, closing in _core._fixed_errors():
        assert json.loads(body) == {"Code": code, "Message": message}
        assert closing.startswith(b"HTTP/1.1 %d " % status) and closing.endswith(b"\r\n\r\n" + body + b"\n")
        assert b"Connection: close\r\n" in closing
        assert (status, code, message) not in seen        # each answer exists once
        seen.add((status, code, message))


def test_error_body_survives_a_lone_surrogate():
    body = _core._error_body("bad_request", "unknown field \ud800x")
    assert json.loads(body) == {"Code": "bad_request", "Message": "unknown field ?x"}


# ---- walbody: the log record's CRC (crcfold.h) -----------------------------------------
def test_crc32_is_zlibs_for_every_length_alignment_and_start():
    """The folded CRC-32 gives zlib's value: every length up to 300 (below 64 bytes the
    byte table alone; above, the 64-byte fold, the 16-byte steps and the table's tail),
    long inputs at every offset in a 64-byte window, any running CRC, any buffer."""
    import random
    import zlib
    rnd = random.Random(7)
    data = rnd.randbytes(70_000)
    cases = [(n, n % 64) for n in range(301)] + [(rnd.randrange(301, 65_000), rnd.randrange(64)) for _ in range(400)]
    for n, off in cases:
        chunk = data[off:off + n]
        for start in (0, 0xFFFFFFFF, rnd.getrandbits(32)):
            assert _core.crc32(chunk, start) == zlib.crc32(chunk, start), (n, off, start)
        assert _core.crc32(memoryview(data)[off:off + n]) == zlib.crc32(chunk), (n, off)
        assert _core.crc32(bytearray(chunk)) == zlib.crc32(chunk), (n, off)


def test_record_crc_chains_the_numbers_and_every_part():
    import struct
    import zlib
    parts = [b"head", b"x" * 10_000, memoryview(b"y" * 77), b""]
    want = zlib.crc32(b"".join(bytes(p) for p in parts), zlib.crc32(struct.pack("<QQ", 2**40 + 3, 9)))
    assert _core.record_crc(2**40 + 3, 9, parts) == want
    assert _core.record_crc(2**40 + 3, 9, [b"".join(bytes(p) for p in parts)]) == want
    assert _core.record_crc(2**40 + 4, 9, parts) != want


def test_crc32_refuses_what_is_not_a_buffer():
    with pytest.raises(TypeError):
        _core.crc32("text")
    with pytest.raises(TypeError):
        _core.record_crc(1, 1, [b"ok", 5])
