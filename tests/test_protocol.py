"""HTTP/1.1 details clients rely on (API.md "Basics" and the error table): keep-alive,
pipelining in order, Expect: 100-continue, chunked bodies, Connection: close, HTTP/1.0,
malformed HTTP, 505, 431, 408, 413, 417, 429, framing headers on every response.

These tests speak raw bytes over real sockets.
"""
from __future__ import annotations

import json
import random
import threading
import time

import pytest

from helpers import Raw, VERSION, assert_error, http_request, unique_account


def framing_ok(r):
    """Every response carries Content-Length (matching the body) and a JSON Content-Type."""
    assert r.header("Content-Length") is not None, r.header_list
    assert int(r.header("Content-Length")) == len(r.body), r.header_list
    assert r.header("Transfer-Encoding") is None
    assert r.content_type == "application/json", r.header_list


def chunked(body: bytes, sizes=(7, 1, 30)) -> bytes:
    out, i, k = b"", 0, 0
    while i < len(body):
        n = sizes[k % len(sizes)]
        part = body[i:i + n]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
        i += n
        k += 1
    return out + b"0\r\n\r\n"


# =========================================================================== keep-alive


def test_keep_alive_serves_many_requests_on_one_connection(server, acc):
    with server.raw() as raw:
        for i in range(1, 21):
            raw.send(http_request("POST", f"/db/{acc}/counter/c"))
            r = raw.read_response()
            framing_ok(r)
            assert r.status == 200 and r.json == {"Key": "c", "Value": i}
        assert raw.is_open()


def test_http_client_keep_alive(server, acc):
    c = server.client()
    for i in range(1, 6):
        r = c.put(f"/db/{acc}/kv/k", i)
        assert r.status == 200 and r.json == {"Key": "k", "Version": i}
    sock = c.conn.sock
    assert sock is not None  # still the same connection
    assert c.get(f"/db/{acc}/kv/k").json == {"Key": "k", "Value": 5, "Version": 5}
    assert c.conn.sock is sock
    c.close()


# =========================================================================== pipelining


def test_pipelined_mixed_requests_are_answered_in_order(server, acc):
    reqs: list[bytes] = []
    expect: list = []  # (status, json or None, head?)
    counter = 0
    version = 0
    seq = 0
    last_value = None
    for i in range(50):
        kind = i % 10
        if kind == 0:
            counter += 1
            reqs.append(http_request("POST", f"/db/{acc}/counter/c"))
            expect.append((200, {"Key": "c", "Value": counter}, False))
        elif kind == 1:
            version += 1
            last_value = {"i": i}
            reqs.append(http_request("PUT", f"/db/{acc}/kv/k", last_value))
            expect.append((200, {"Key": "k", "Version": version}, False))
        elif kind == 2:
            reqs.append(http_request("GET", f"/db/{acc}/kv/k"))
            expect.append((200, {"Key": "k", "Value": last_value, "Version": version}, False))
        elif kind == 3:
            reqs.append(http_request("GET", f"/db/{acc}/kv/missing{i}"))
            expect.append((404, "not_found", False))
        elif kind == 4:
            reqs.append(http_request("POST", f"/db/{acc}", b"{not json"))
            expect.append((400, "bad_request", False))
        elif kind == 5:
            reqs.append(http_request("HEAD", f"/db/{acc}/kv/k"))
            expect.append((200, None, True))
        elif kind == 6:
            seq += 3
            reqs.append(http_request("POST", f"/db/{acc}/sequence/s?count=3"))
            expect.append((200, {"Key": "s", "Value": seq - 2, "Count": 3}, False))
        elif kind == 7:
            reqs.append(http_request("GET", "/health"))
            expect.append((200, {"Status": "ok", "Version": VERSION}, False))
        elif kind == 8:
            version += 1
            body = {"KVSet": [{"Key": "k", "Value": {"i": i}}, {"Key": f"x{i}", "Value": i}],
                    "KVGet": ["k"], "Atomic": [{"Key": "c", "Add": 0}]}
            expect.append((200, {"KV": [{"Key": "k", "Value": last_value, "Version": version - 1}],
                                 "KVSet": [{"Key": "k", "Version": version}, {"Key": f"x{i}", "Version": version}],
                                 "Rev": version, "Atomic": [{"Key": "c", "Value": counter}]}, False))
            last_value = {"i": i}
            reqs.append(http_request("POST", f"/db/{acc}", body))
        else:
            reqs.append(http_request("PATCH", f"/db/{acc}/kv/k", b"1"))
            expect.append((405, "method_not_allowed", False))
    with server.raw() as raw:
        raw.send(b"".join(reqs))
        for n, (status, body, head) in enumerate(expect):
            r = raw.read_response(head=head)
            assert r.status == status, (n, r)
            if head:
                assert r.header("Content-Length") is not None
                continue
            framing_ok(r)
            if isinstance(body, str):
                assert_error(r, status, body)
            else:
                assert r.json == body, n
        assert raw.is_open()


def test_deep_pipeline_with_backpressure(server, acc):
    """1,000 pipelined requests (far more than the in-flight cap) all answered in order."""
    n = 1000
    data = b"".join(http_request("POST", f"/db/{acc}/counter/deep") for _ in range(n))
    with server.raw(timeout=60) as raw:
        sender = threading.Thread(target=raw.send, args=(data,))
        sender.start()
        values = [raw.read_response().json["Value"] for _ in range(n)]
        sender.join()
    assert values == list(range(1, n + 1))


def test_request_split_into_tiny_writes(server, acc):
    req = http_request("POST", f"/db/{acc}", {"KVSet": [{"Key": "frag", "Value": "ok"}]})
    with server.raw() as raw:
        for i in range(len(req)):
            raw.send(req[i:i + 1])
        r = raw.read_response()
        assert r.status == 200 and r.json == {"KVSet": [{"Key": "frag", "Version": 1}], "Rev": 1}


def test_two_requests_in_one_segment_and_one_across_segments(server, acc):
    a = http_request("PUT", f"/db/{acc}/kv/a", 1)
    b = http_request("PUT", f"/db/{acc}/kv/b", 2)
    c = http_request("GET", f"/db/{acc}/kv/a")
    stream = a + b + c
    cut = len(a) + len(b) // 2
    with server.raw() as raw:
        raw.send(stream[:cut])
        time.sleep(0.05)
        raw.send(stream[cut:])
        assert raw.read_response().json == {"Key": "a", "Version": 1}
        assert raw.read_response().json == {"Key": "b", "Version": 2}
        assert raw.read_response().json == {"Key": "a", "Value": 1, "Version": 1}


def test_header_names_are_case_insensitive(server, acc):
    body = b'{"KVSet":[{"Key":"h","Value":1}]}'
    req = (f"POST /db/{acc} HTTP/1.1\r\nhOsT: x\r\ncontent-LENGTH: {len(body)}\r\n"
           f"CONTENT-type: application/json\r\n\r\n").encode() + body
    with server.raw() as raw:
        raw.send(req)
        r = raw.read_response()
        assert r.status == 200 and r.json == {"KVSet": [{"Key": "h", "Version": 1}], "Rev": 1}


# =========================================================================== Expect


def test_expect_100_continue(server, acc):
    body = json.dumps({"KVSet": [{"Key": "big", "Value": "z" * 2000}]}).encode()
    head = (f"POST /db/{acc} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n").encode()
    with server.raw() as raw:
        raw.send(head)
        interim = raw.read_response()
        assert interim.status == 100
        assert interim.version == "HTTP/1.1" and interim.reason == "Continue"
        raw.send(body)
        r = raw.read_response()
        framing_ok(r)
        assert r.status == 200 and r.json == {"KVSet": [{"Key": "big", "Version": 1}], "Rev": 1}
        # the connection goes on
        raw.send(http_request("GET", f"/db/{acc}/kv/big?raw"))
        r = raw.read_response()
        assert r.status == 200 and r.body == b"z" * 2000


def test_expect_100_continue_case_insensitive_with_put(server, acc):
    body = b'"v"'
    head = (f"PUT /db/{acc}/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            f"Expect: 100-Continue\r\n\r\n").encode()
    with server.raw() as raw:
        raw.send(head)
        assert raw.read_response().status == 100
        raw.send(body)
        r = raw.read_response()
        assert r.status == 200 and r.json == {"Key": "k", "Version": 1}


def test_other_expectation_is_417(server, acc):
    body = b'{"KVSet":[{"Key":"e","Value":1}]}'
    req = (f"POST /db/{acc} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
           f"Expect: something-else\r\n\r\n").encode() + body
    with server.raw() as raw:
        raw.send(req)
        r = raw.read_final()
        framing_ok(r)
        assert_error(r, 417, "expectation_failed")
    c = server.client()
    assert c.kv(acc, "e") == {"Key": "e", "Version": 0}
    c.close()
    server.assert_alive()


# =========================================================================== chunked bodies


def test_chunked_request_body(server, acc):
    body = json.dumps({"KVSet": [{"Key": "ch", "Value": {"text": "chunky " * 20}}]}).encode()
    head = f"POST /db/{acc} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    with server.raw() as raw:
        raw.send(head + chunked(body))
        r = raw.read_response()
        framing_ok(r)
        assert r.status == 200 and r.json == {"KVSet": [{"Key": "ch", "Version": 1}], "Rev": 1}
        raw.send(http_request("GET", f"/db/{acc}/kv/ch"))
        assert raw.read_response().json["Value"] == {"text": "chunky " * 20}


def test_chunked_with_extension_and_trailer_then_pipelined(server, acc):
    body = b'"chunked value"'
    req = (f"PUT /db/{acc}/kv/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
           + b"5;name=val\r\n" + body[:5] + b"\r\n" + f"{len(body) - 5:X}\r\n".encode() + body[5:] + b"\r\n"
           + b"0\r\nX-Trailer: yes\r\n\r\n")
    with server.raw() as raw:
        raw.send(req + http_request("GET", f"/db/{acc}/kv/t?raw"))
        r = raw.read_response()
        assert r.status == 200 and r.json == {"Key": "t", "Version": 1}
        r = raw.read_response()
        assert r.status == 200 and r.body == b"chunked value"


def test_chunked_body_sent_slowly(server, acc):
    body = json.dumps({"Atomic": [{"Key": "slow", "Add": 5}]}).encode()
    head = f"POST /db/{acc} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    with server.raw() as raw:
        raw.send(head)
        for i in range(0, len(body), 4):
            part = body[i:i + 4]
            raw.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            time.sleep(0.01)
        raw.send(b"0\r\n\r\n")
        r = raw.read_response()
        assert r.status == 200 and r.json == {"Atomic": [{"Key": "slow", "Value": 5}]}


def test_chunked_body_over_limit_is_413(limits_server):
    acc = unique_account("chunk413")
    body = json.dumps({"KVSet": [{"Key": "a", "Value": "q" * 900}, {"Key": "b", "Value": "q" * 900},
                                 {"Key": "c", "Value": "q" * 900}, {"Key": "d", "Value": "q" * 900},
                                 {"Key": "e", "Value": "q" * 900}]}).encode()
    assert len(body) > 4096
    head = f"POST /db/{acc} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    with limits_server.raw() as raw:
        raw.send(head + chunked(body, sizes=(1000,)))
        r = raw.read_response()
        framing_ok(r)
        assert_error(r, 413, "too_large")
        raw.wait_closed()
    c = limits_server.client()
    assert c.kv(acc, "a") == {"Key": "a", "Version": 0}
    c.close()
    limits_server.assert_alive()


def test_body_at_limit_is_accepted(limits_server):
    acc = unique_account("atlimit")
    prefix = '{"KVSet": [{"Key": "a", "Value": "'
    suffix = '"}]}'
    # pad with whitespace so the body is exactly max_body_bytes while the value fits
    core = prefix + "v" * 900 + suffix
    body = (core + " " * (4096 - len(core))).encode()
    assert len(body) == 4096
    with limits_server.raw() as raw:
        raw.send(http_request("POST", f"/db/{acc}", body))
        r = raw.read_response()
        assert r.status == 200 and r.json == {"KVSet": [{"Key": "a", "Version": 1}], "Rev": 1}
        raw.send(http_request("POST", f"/db/{acc}", body + b" "))
        assert_error(raw.read_response(), 413, "too_large")
        raw.wait_closed()


def test_expect_100_continue_with_too_large_body_is_413(limits_server):
    acc = unique_account("exp413")
    head = (f"POST /db/{acc} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
            f"Expect: 100-continue\r\n\r\n").encode()
    with limits_server.raw() as raw:
        raw.send(head)
        # the refusal comes without the client having to upload the body
        r = raw.read_final()
        assert_error(r, 413, "too_large")
        raw.wait_closed()
    limits_server.assert_alive()


# =========================================================================== connection handling


def test_connection_close_is_honoured(server, acc):
    with server.raw() as raw:
        raw.send(http_request("PUT", f"/db/{acc}/kv/a", 1, headers={"Connection": "close"})
                 + http_request("PUT", f"/db/{acc}/kv/b", 2))
        r = raw.read_response()
        assert r.status == 200 and r.json == {"Key": "a", "Version": 1}
        assert raw.wait_closed() == b""  # the second request is not answered ...
    c = server.client()
    assert c.kv(acc, "b") == {"Key": "b", "Version": 0}  # ... nor processed
    c.close()


def test_http10_closes_after_response(server):
    with server.raw() as raw:
        raw.send(b"GET /health HTTP/1.0\r\n\r\n")
        r = raw.read_response()
        framing_ok(r)
        assert r.status == 200 and r.json == {"Status": "ok", "Version": VERSION}
        assert raw.wait_closed() == b""


def test_http10_keep_alive_when_asked(server, acc):
    with server.raw() as raw:
        for i in range(1, 4):
            raw.send(http_request("POST", f"/db/{acc}/counter/c", headers={"Connection": "keep-alive"},
                                  version="HTTP/1.0"))
            r = raw.read_response()
            framing_ok(r)
            assert r.status == 200 and r.json == {"Key": "c", "Value": i}
            # an HTTP/1.0 client keeps the connection only when told so (ApacheBench -k)
            assert (r.header("Connection") or "").lower() == "keep-alive", r.header_list
        assert raw.is_open()
        raw.send(b"GET /health HTTP/1.0\r\n\r\n")
        assert raw.read_response().status == 200
        assert raw.wait_closed() == b""


@pytest.mark.parametrize("version", ["HTTP/2.0", "HTTP/1.2", "HTTP/3.0", "HTTP/0.9"])
def test_unsupported_http_version_is_505(server, version):
    with server.raw() as raw:
        raw.send(f"GET /health {version}\r\nHost: x\r\n\r\n".encode())
        r = raw.read_response()
        framing_ok(r)
        assert_error(r, 505, "http_version_not_supported")
    server.assert_alive()


MALFORMED = {
    "tls_client_hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",
    "nul_bytes": b"\x00\x01\x02\x03\x04\r\n\r\n",
    "bad_method_chars": b"G{}T /health HTTP/1.1\r\nHost: x\r\n\r\n",
    "header_without_colon": b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
    "space_before_colon": b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n",
    "bad_content_length": b"POST /db/a HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "negative_content_length": b"POST /db/a HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "two_content_lengths": b"POST /db/a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "cl_and_chunked": (b"POST /db/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "bad_chunk_size": b"POST /db/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n",
    "unknown_transfer_encoding": b"POST /db/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nxx",
    "garbage_line": b"this is not http at all\r\n\r\n",
    "random_bytes": b"\xff" + random.Random(7).randbytes(3000),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_http_is_400_then_close(server, name):
    with server.raw() as raw:
        raw.send(MALFORMED[name])
        r = raw.read_response()
        framing_ok(r)
        assert_error(r, 400, "bad_request")
        raw.wait_closed()
    server.assert_alive()


def test_malformed_request_after_good_ones_on_same_connection(server, acc):
    with server.raw() as raw:
        raw.send(http_request("POST", f"/db/{acc}/counter/c") + b"BROKEN\x00 \r\n\r\n")
        r = raw.read_response()
        assert r.status == 200 and r.json == {"Key": "c", "Value": 1}
        assert_error(raw.read_response(), 400, "bad_request")
        raw.wait_closed()
    server.assert_alive()


def test_headers_too_large_is_431(server):
    with server.raw() as raw:
        raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        r = raw.read_response()
        framing_ok(r)
        assert_error(r, 431, "headers_too_large")
    server.assert_alive()


def test_many_headers_too_large_is_431(server):
    hdrs = b"".join(f"X-H{i}: {'v' * 40}\r\n".encode() for i in range(500))
    with server.raw() as raw:
        raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n" + hdrs + b"\r\n")
        assert_error(raw.read_response(), 431, "headers_too_large")
    server.assert_alive()


def test_request_line_too_large_is_431(server, acc):
    with server.raw() as raw:
        raw.send(f"GET /db/{acc}/kv/k?pad={'p' * 20000} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert_error(raw.read_response(), 431, "headers_too_large")
    server.assert_alive()


def test_headers_under_limit_are_fine(server):
    with server.raw() as raw:
        raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 12000 + b"\r\n\r\n")
        r = raw.read_response()
        assert r.status == 200 and r.json == {"Status": "ok", "Version": VERSION}


def test_max_header_bytes_is_configurable(limits_server):
    with limits_server.raw() as raw:
        raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 1500 + b"\r\n\r\n")
        assert raw.read_response().status == 200
    with limits_server.raw() as raw:
        raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 3000 + b"\r\n\r\n")
        assert_error(raw.read_response(), 431, "headers_too_large")
    limits_server.assert_alive()


@pytest.mark.parametrize("make", [
    lambda acc: http_request("GET", "/health"),
    lambda acc: http_request("HEAD", "/nope"),
    lambda acc: http_request("GET", "/nope"),
    lambda acc: http_request("DELETE", "/health"),
    lambda acc: http_request("POST", f"/db/{acc}", b"[]"),
    lambda acc: http_request("POST", "/db/bad%20acc", b"{}"),
    lambda acc: http_request("POST", f"/db/{acc}", {"KVSet": [{"Key": "", "Value": 1}]}),
    lambda acc: http_request("POST", f"/db/{acc}", {"KVSet": [{"Key": "k", "Value": 1, "Version": 3}]}),
    lambda acc: http_request("POST", f"/db/{acc}/counter/c?add=x"),
    lambda acc: http_request("GET", f"/db/{acc}/kv/nope"),
    lambda acc: http_request("GET", f"/db/{acc}/counter/c"),
    lambda acc: http_request("GET", f"/db/{acc}/sequence/s"),
    lambda acc: http_request("DELETE", f"/db/{acc}/kv/nope"),
    lambda acc: http_request("GET", "/ready"),
], ids=["health", "head404", "404", "405", "400json", "bad_account", "bad_key", "409", "400query",
        "kv404", "counter", "sequence", "delete", "ready"])
def test_every_response_has_content_length_and_json_type(server, acc, make):
    with server.raw() as raw:
        raw.send(make(acc))
        head = make(acc).startswith(b"HEAD")
        r = raw.read_response(head=head)
        assert r.header("Content-Length") is not None, r.header_list
        assert r.content_type == "application/json", r.header_list
        if not head:
            framing_ok(r)
        assert raw.is_open()


# =========================================================================== timeouts


def test_slow_headers_get_408_then_close(timeouts_server):
    with timeouts_server.raw() as raw:
        raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        r = raw.read_response(timeout=20)
        framing_ok(r)
        assert_error(r, 408, "request_timeout")
        raw.wait_closed()
    timeouts_server.assert_alive()


def test_slow_body_gets_408_then_close(timeouts_server):
    acc = unique_account("slowbody")
    with timeouts_server.raw() as raw:
        raw.send(f"POST /db/{acc} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n".encode()
                 + b'{"KVSet":[{"Key":"a","Value":')
        r = raw.read_response(timeout=20)
        assert_error(r, 408, "request_timeout")
        raw.wait_closed()
    c = timeouts_server.client()
    assert c.kv(acc, "a") == {"Key": "a", "Version": 0}
    c.close()


def test_trickled_headers_are_timed_out_from_first_byte(timeouts_server):
    """A slowloris client sending one byte at a time cannot keep the request alive."""
    req = b"GET /health HTTP/1.1\r\n" + b"".join(f"X-{i}: y\r\n".encode() for i in range(200)) + b"\r\n"
    with timeouts_server.raw() as raw:
        deadline = time.monotonic() + 30
        answered = False
        for b in req:
            if raw.readable(wait=0):
                answered = True
                break
            try:
                raw.send(bytes([b]))
            except OSError:
                answered = True
                break
            time.sleep(0.05)
            assert time.monotonic() < deadline
        assert answered, "server kept reading a trickled request forever"
        r = raw.read_response(timeout=10)
        assert_error(r, 408, "request_timeout")
    timeouts_server.assert_alive()


def test_idle_keep_alive_connection_is_closed(timeouts_server):
    with timeouts_server.raw() as raw:
        raw.send(http_request("GET", "/health"))
        assert raw.read_response().status == 200
        assert raw.wait_closed(timeout=30) == b""


def test_silent_connection_is_closed(timeouts_server):
    with timeouts_server.raw() as raw:
        data = raw.wait_closed(timeout=30)
        assert data == b"" or data.startswith(b"HTTP/1.1 408 ")


def test_slow_client_does_not_block_others(timeouts_server):
    slow = timeouts_server.raw()
    slow.send(b"POST /db/x HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
    try:
        timeouts_server.assert_alive()
    finally:
        slow.close()


# =========================================================================== max_connections


def test_max_connections_gives_429_with_retry_after(server_factory):
    srv = server_factory(env={"CDRAGON_MAX_CONNECTIONS": 5})
    held: list[Raw] = []

    def open_accepted() -> Raw:
        # a freshly closed probe connection may still count for a moment: retry briefly
        deadline = time.monotonic() + 15
        while True:
            raw = srv.raw()
            raw.send(http_request("GET", "/health"))
            try:
                r = raw.read_response()
            except (EOFError, OSError):
                r = None
            if r is not None and r.status == 200:
                return raw
            raw.close()
            assert time.monotonic() < deadline, f"connection never accepted: {r!r}"
            time.sleep(0.1)

    try:
        for _ in range(5):
            held.append(open_accepted())
        extra = srv.raw()
        # the server may answer at once or after the request line: both are fine
        if not extra.readable(wait=1.0):
            try:
                extra.send(http_request("GET", "/health"))
            except OSError:
                pass
        r = extra.read_response()
        framing_ok(r)
        assert_error(r, 429, "too_many")
        retry = r.header("Retry-After")
        assert retry is not None and retry.strip().isdigit(), r.header_list
        extra.wait_closed()
        extra.close()
        # the held connections still work
        for raw in held:
            raw.send(http_request("GET", "/health"))
            assert raw.read_response().status == 200
        # freeing one makes room again
        held.pop().close()
        held.append(open_accepted())
    finally:
        for raw in held:
            raw.close()


# =========================================================================== more edges


def test_expect_100_continue_with_body_sent_at_once(server, acc):
    """A client that does not wait for 100 Continue: at most one interim response, then
    the answer, and the next pipelined request stays in step."""
    body = b'{"Atomic": [{"Key": "c", "Add": 2}]}'
    req = (f"POST /db/{acc} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
           f"Expect: 100-continue\r\n\r\n").encode() + body
    with server.raw() as raw:
        raw.send(req + http_request("POST", f"/db/{acc}/counter/c"))
        r = raw.read_response()
        if r.status == 100:
            r = raw.read_response()
        assert r.status == 200 and r.json == {"Atomic": [{"Key": "c", "Value": 2}]}
        r = raw.read_response()
        assert r.status == 200 and r.json == {"Key": "c", "Value": 3}


def test_expect_100_continue_with_chunked_body(server, acc):
    body = b'{"KVSet": [{"Key": "ec", "Value": "both"}]}'
    head = (f"POST /db/{acc} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            f"Expect: 100-continue\r\n\r\n").encode()
    with server.raw() as raw:
        raw.send(head)
        assert raw.read_response().status == 100
        raw.send(chunked(body))
        r = raw.read_response()
        assert r.status == 200 and r.json == {"KVSet": [{"Key": "ec", "Version": 1}], "Rev": 1}


def test_body_on_get_is_consumed(server):
    with server.raw() as raw:
        raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                 + http_request("GET", "/health"))
        for _ in range(2):
            r = raw.read_response()
            assert r.status == 200 and r.json == {"Status": "ok", "Version": VERSION}


def test_slow_chunked_body_gets_408(timeouts_server):
    acc = unique_account("slowchunk")
    with timeouts_server.raw() as raw:
        raw.send(f"POST /db/{acc} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
                 + b"5\r\n{\"KVS")
        assert_error(raw.read_response(timeout=20), 408, "request_timeout")
        raw.wait_closed()
    timeouts_server.assert_alive()


def test_second_request_on_keep_alive_also_has_a_header_deadline(timeouts_server):
    with timeouts_server.raw() as raw:
        raw.send(http_request("GET", "/health"))
        assert raw.read_response().status == 200
        raw.send(b"GET /health HTTP/1.1\r\nHo")
        assert_error(raw.read_response(timeout=20), 408, "request_timeout")
        raw.wait_closed()


def test_error_responses_of_every_kind_are_framed(limits_server, server):
    """413, 431, 400 (malformed), 505 and 408-free paths: Content-Length + JSON type."""
    cases = [
        (limits_server, b"POST /db/x HTTP/1.1\r\nHost: x\r\nContent-Length: 9999\r\n\r\n" + b" " * 9999, 413),
        (limits_server, b"GET /health HTTP/1.1\r\nX: " + b"a" * 3000 + b"\r\n\r\n", 431),
        (server, b"GET /health HTTP/9.9\r\n\r\n", 505),
        (server, b"\x01\x02\x03\r\n\r\n", 400),
    ]
    for srv, data, status in cases:
        with srv.raw() as raw:
            raw.send(data)
            r = raw.read_response()
            assert r.status == status, r
            framing_ok(r)


def test_many_simultaneous_connections(server, acc):
    conns = [server.raw(timeout=30) for _ in range(300)]
    try:
        for raw in conns:
            raw.send(http_request("POST", f"/db/{acc}/counter/c"))
        values = sorted(raw.read_response().json["Value"] for raw in conns)
        assert values == list(range(1, 301))
    finally:
        for raw in conns:
            raw.close()
    server.assert_alive()


def test_upgrade_request_is_served_as_plain_http11(server, acc):
    """`curl --http2 http://...` asks for an h2c upgrade; a server that does not upgrade
    ignores the Upgrade header (RFC 9110 §7.8) and serves the request, body included,
    and the connection goes on as HTTP/1.1."""
    body = json.dumps({"KVSet": [{"Key": "up", "Value": "graded"}]}).encode()
    req = (f"POST /db/{acc} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           f"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    with server.raw() as raw:
        raw.send(req + http_request("GET", f"/db/{acc}/kv/up"))
        r = raw.read_response()
        assert r.status == 200 and r.json == {"KVSet": [{"Key": "up", "Version": 1}], "Rev": 1}, r
        r = raw.read_response()
        assert r.status == 200 and r.json == {"Key": "up", "Value": "graded", "Version": 1}, r
    with server.raw() as raw:
        raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        assert raw.read_response().status == 200
        raw.send(http_request("GET", f"/db/{acc}/kv/up"))
        r = raw.read_response()
        assert r.status == 200 and r.json == {"Key": "up", "Value": "graded", "Version": 1}, r


def test_idle_timer_restarts_after_each_request(timeouts_server):
    """idle_timeout is 2 s: requests 0.8 s apart keep one connection alive for longer."""
    with timeouts_server.raw() as raw:
        for _ in range(4):
            raw.send(http_request("GET", "/health"))
            assert raw.read_response().status == 200
            time.sleep(0.8)
        raw.send(http_request("GET", "/health"))
        assert raw.read_response().status == 200


def test_api_errors_keep_the_connection_in_step(limits_server):
    """Errors that are not malformed HTTP leave the connection open, with any body
    consumed: the next pipelined request is answered normally."""
    acc = unique_account("instep")
    reqs = [
        (http_request("POST", f"/db/{acc}", {"KVGet": [f"k{i}" for i in range(11)]}), 413, "too_large"),
        (http_request("POST", "/db/bad%20acc", b'{"KVGet": ["a"]}'), 400, "bad_account"),
        (http_request("POST", "/nope", b"x" * 1000), 404, "not_found"),
        (b"PATCH /db/a/kv/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
         405, "method_not_allowed"),
        (http_request("POST", f"/db/{acc}", b""), 400, "bad_request"),
        (http_request("PUT", f"/db/{acc}/kv/v", b'"' + b"x" * 1200 + b'"'), 413, "too_large"),
        (http_request("POST", f"/db/{acc}", {"KVSet": [{"Key": "k", "Value": 1}]}), 200, None),
    ]
    with limits_server.raw() as raw:
        raw.send(b"".join(r for r, _, _ in reqs))
        for _, status, code in reqs:
            r = raw.read_response()
            framing_ok(r)
            if code:
                assert_error(r, status, code)
            else:
                assert r.status == 200 and r.json == {"KVSet": [{"Key": "k", "Version": 1}], "Rev": 1}, r
        assert raw.is_open()
