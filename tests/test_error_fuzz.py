"""Error paths under junk input (issue 11, defect 1).

A regression test for the body whose error message echoed a field name with a lone
surrogate (it answered 500), and a seeded, bounded fuzz over real sockets against one
server: mutated field names, keys (in POST /db bodies and percent-encoded in REST
paths), account names, query strings and headers. Every answer must be < 500, an
error must be a JSON {"Code", "Message"} body, every request gets an answer, and the
server keeps serving.
"""
from __future__ import annotations

import json
import random
import time

import pytest

from helpers import Raw, assert_error, unique_account

SEED = 1111
N_REQUESTS = 6000
TIME_BUDGET = 45.0      # seconds; the fuzz stops early rather than run long
FUZZ_ENV = {
    # a request the fuzz left unfinished by mistake is answered 408 quickly, not hung
    "CDRAGON_HEADER_TIMEOUT": 3,
    "CDRAGON_BODY_TIMEOUT": 3,
}

# ---------------------------------------------------------------- junk material

JUNK_STR = [
    "", " ", "\ud800", "\udfff", "a\ud800b", "\udc00\ud800", "\x00", "a\x00b", "\x01\x1f\x7f",
    "é", "日本語", "\U0001f409", "\u2028\u2029", "\ufeff", "\uffff", "a" * 257, "b" * 5000,
    "%", "%00", "/", "../..", "\\", '"', "\r\n", "\t", "null", "KVSet", "Key", "\x85",
]
FIELDS = ["IdempotencyIDs", "LockID", "LockDur", "LockWait", "UnlockID", "Unlock", "KVSet",
          "KVGet", "KVList", "KVDelete", "Atomic", "Seq", "QPush", "QAck", "RateLimit"]
JUNK_NUM = [0, -1, 1, 2**63 - 1, 2**63, -2**63 - 1, 10**30, 1.5, -0.0, 1e308, 1e-308,
            "1", "x", None, True, [], {}, "\ud800"]
PCT_KEYS = ["%00", "%ff", "%ed%a0%80", "%c0%af", "%e0%80%af", "%f8%88%80%80%80", "%", "%zz",
            "%2", "a%2fb", "%41" * 300, "%e2%82", "a%00b", "%7f", "%c3%a9", "k" * 300,
            "%ef%bf%bf", "%f4%90%80%80", "x%20y", "..%2f..", "%25", "ok"]
QPARAMS = ["ver", "add", "count", "dur", "wait", "handle", "owner", "timeout", "watch", "ttl",
           "set", "ifeq", "prefix", "after", "limit", "keys", "raw", "all", "force", "id",
           "version", "%00", "a%ffb", ""]
QVALUES = ["", "0", "1", "-1", "abc", "1e400", "99999999999999999999999", "nan", "inf",
           "-inf", "1.5", "0x10", "%zz", "%00", "%ff", "%ed%a0%80", "1%00", " 1", "+1",
           "1_000", "9" * 400, "%", "1e-400", "0.0000001", "86400000"]
ACCOUNTS = ["", "a" * 65, "a/b", "%00", "%ff", "caf%c3%a9", "a%2fb", "..", ".", "a b", "%ed%a0%80"]


def _pct(s: str) -> str:
    """Percent-encode every byte that is not plain (lone surrogates as CESU bytes)."""
    b = s.encode("utf-8", "surrogatepass")
    return "".join(chr(c) if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in b"-._~")
                   else "%%%02X" % c for c in b)


def _json(obj, rng: random.Random) -> bytes:
    """JSON text; lone surrogates as \\u escapes, or (sometimes) as raw invalid UTF-8."""
    if rng.random() < 0.85:
        return json.dumps(obj, ensure_ascii=True).encode()
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _no_block(param: str) -> str:
    """A valid positive ?wait= / ?timeout= would make the fuzz wait (a held lock, a
    long-poll): those become 0; junk values stay junk."""
    name, eq, value = param.partition("=")
    if name in ("wait", "timeout") and eq:
        try:
            if float(value) > 0:
                return name + "=0"
        except ValueError:
            pass
    return param


def _request(method: str, path: str, body: bytes | None = None, headers: list | None = None) -> bytes:
    hdrs = [("Host", "fuzz")]
    if body is not None:
        hdrs += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    hdrs += headers or []
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n"
    return head.encode("latin-1") + (body or b"")


# ---------------------------------------------------------------- generators


def gen_db_body(rng: random.Random, acc: str) -> bytes:
    """POST /db/{acc}: a valid request with one thing mutated."""
    junk = rng.choice(JUNK_STR)
    templates = [
        {"UnlockID": "L", "Unlock": 1},
        {"LockID": "L", "LockDur": 1, "LockWait": 0},
        {"KVSet": [{"Key": "k", "Value": {"v": 1}}]},
        {"KVGet": ["k"]},
        {"KVList": [{"Prefix": "", "Limit": 10}]},
        {"KVDelete": [{"Prefix": "zz/"}]},
        {"Atomic": [{"Key": "c", "Add": 1}]},
        {"Seq": [{"Key": "s", "Count": 1}]},
        {"IdempotencyIDs": ["i"]},
    ]
    body = rng.choice(templates)
    how = rng.randrange(6)
    if how == 0:      # a junk field name beside a valid one (the issue-11 shape)
        body = dict(body)
        body[junk + rng.choice(FIELDS + [""])] = rng.choice(JUNK_NUM)
    elif how == 1:    # a junk field name inside an entry
        for v in body.values():
            if isinstance(v, list) and v and isinstance(v[0], dict):
                v[0] = dict(v[0])
                v[0][rng.choice([junk, junk + "Key", "Key" + junk])] = 1
    elif how == 2:    # junk keys and lock names
        key = junk
        body = rng.choice([{"KVSet": [{"Key": key, "Value": 1}]}, {"KVGet": [key]},
                           {"Atomic": [{"Key": key, "Add": 1}]}, {"Seq": [{"Key": key}]},
                           {"LockID": key, "LockDur": 1}, {"IdempotencyIDs": [key]},
                           {"KVList": [{"Prefix": key, "After": key}]},
                           {"UnlockID": key, "Unlock": 1}, {"KVDelete": [{"Prefix": key}]}])
    elif how == 3:    # junk numbers
        n = rng.choice(JUNK_NUM)
        body = rng.choice([{"LockID": "L", "LockDur": n}, {"LockID": "L", "LockWait": n},
                           {"UnlockID": "L", "Unlock": n}, {"Atomic": [{"Key": "c", "Add": n}]},
                           {"Atomic": [{"Key": "c", "Set": n, "IfEq": n}]},
                           {"Seq": [{"Key": "s", "Count": n}]},
                           {"KVSet": [{"Key": "k", "Value": 1, "Version": n, "TTL": n}]},
                           {"KVList": [{"Prefix": "", "Limit": n}]}])
    elif how == 4:    # junk values (any JSON is a value; strings with junk)
        body = {"KVSet": [{"Key": "k" + str(rng.randrange(20)), "Value": {junk: [junk, rng.choice(JUNK_NUM)]}}]}
    else:             # broken JSON text
        text = _json(body, rng)
        cut = rng.randrange(len(text) + 1)
        return rng.choice([text[:cut], text[:cut] + b"\xff" + text[cut:], text + b"}",
                           b"\xed\xa0\x80" + text, text.replace(b'"', b"'", 1), b"[" * 600,
                           b'{"KVGet":["\\ud800"]}', b'{"KVGet":["\\u0000"]}', b"\x00"])
    return _json(body, rng)


def gen_request(rng: random.Random, acc: str) -> bytes:
    kind = rng.randrange(7)
    if kind in (0, 1):
        return _request("POST", f"/db/{acc}", gen_db_body(rng, acc))
    if kind == 2:     # REST with percent-encoded junk keys and junk queries
        res = rng.choice(["kv", "counter", "sequence", "lock"])
        key = rng.choice(PCT_KEYS + [_pct(rng.choice(JUNK_STR)) or "k"])
        method = rng.choice(["GET", "PUT", "POST", "DELETE"])
        params = []
        for _ in range(rng.randrange(4)):
            name = rng.choice(QPARAMS)
            params.append(name if rng.random() < 0.15 else f"{name}={rng.choice(QVALUES)}")
        if params and rng.random() < 0.2:
            params.append(params[0])          # a repeated parameter
        params = [_no_block(p) for p in params]
        if method == "GET" and res == "kv" and any(p.split("=")[0] == "watch" for p in params):
            params.append("timeout=0")        # a valid watch answers at once
        q = ("?" + "&".join(params)) if params else rng.choice(["", "?", "?&", "?=", "?%"])
        body = None
        if method == "PUT" and res == "kv":
            body = rng.choice([b'{"v":1}', b"", b"junk", _json(rng.choice(JUNK_STR), rng)])
        elif method in ("PUT", "POST") and rng.random() < 0.3:
            body = rng.choice([b"", b"{}", b"x"])
        path = f"/db/{acc}/{res}/{key}{q}"
        if rng.random() < 0.1:
            path = f"/db/{acc}/{res}{q}"      # no key (the kv list / prefix delete routes)
        return _request(method, path, body)
    if kind == 3:     # junk account names
        a = rng.choice(ACCOUNTS + [_pct(rng.choice(JUNK_STR))])
        return rng.choice([_request("POST", f"/db/{a}", b'{"KVGet":["k"]}'),
                           _request("GET", f"/db/{a}/kv/k"),
                           _request("POST", f"/watch/{a}", b'{"ID":"k","Version":5,"Timeout":0}')])
    if kind == 4:     # watch bodies
        junk = rng.choice(JUNK_STR)
        body = rng.choice([{"ID": junk, "Version": 0, "Timeout": 0},
                           {"Prefix": junk, "Version": 1, "Timeout": 0},
                           {"ID": "k", "Version": rng.choice(JUNK_NUM), "Timeout": 0},
                           {"ID": "k", "Version": 1, "Timeout": rng.choice(JUNK_NUM)},
                           {"ID": "k", "Key": "k", "Version": 1},
                           {junk: 1, "ID": "k", "Version": 1, "Timeout": 0}])
        if body.get("Timeout") not in (0, None) and not isinstance(body.get("Timeout"), (str, list, dict, bool)):
            body["Timeout"] = 0       # never block the fuzz on a real long-poll
        return _request("POST", f"/watch/{acc}", _json(body, rng))
    if kind == 5:     # headers
        body = b'{"KVGet":["k"]}'
        path = f"/db/{acc}"
        choice = rng.randrange(9)
        if choice == 0:
            cl = rng.choice(["abc", "-1", "1.0", "99999999999999999999999", "15, 15", "0x0f",
                             " 15", "15 ", "+15", "10000000", ""])
            head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {cl}\r\n\r\n").encode()
            return head + body
        if choice == 1:     # two different Content-Lengths
            return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n"
                    f"Content-Length: 3\r\n\r\n").encode() + body
        if choice == 2:
            return _request("POST", path, body, [("Expect", rng.choice(
                ["100-continue", "100-Continue", "200-ok", "", "100-continue, foo", "\x01", "x" * 3000]))])
        if choice == 3:     # header names that are not tokens
            name = rng.choice(["X Y", "X:Y", "", "\x00", "é", "X\x7f", "(x)", "X-" + "a" * 5000])
            return f"GET /health HTTP/1.1\r\nHost: x\r\n{name}: v\r\n\r\n".encode("utf-8")
        if choice == 4:     # header values with junk bytes
            val = rng.choice([b"\x00", b"\x01", b"\xff\xfe", b"\xed\xa0\x80", b"a\rb", b"\x7f", b" "])
            return b"GET /health HTTP/1.1\r\nHost: x\r\nX-J: " + val + b"\r\n\r\n"
        if choice == 5:     # long values, under and over the 16 KiB header limit
            n = rng.choice([1000, 8000, 15000, 17000, 40000])
            return _request("GET", "/health", None, [("X-Long", "v" * n)])
        if choice == 6:     # Transfer-Encoding oddities
            te = rng.choice(["chunked", "gzip", "chunked, chunked", "identity", "xchunked"])
            return (f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n"
                    f"{len(body):x}\r\n").encode() + body + b"\r\n0\r\n\r\n"
        if choice == 7:     # odd request lines
            return rng.choice([b"GET /health HTTP/1.2\r\nHost: x\r\n\r\n",
                               b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n",
                               b"FOO /health HTTP/1.1\r\nHost: x\r\n\r\n",
                               b"GET health HTTP/1.1\r\nHost: x\r\n\r\n",
                               b"GET /health?\xff HTTP/1.1\r\nHost: x\r\n\r\n",
                               b"GET /db/\xff/kv/k HTTP/1.1\r\nHost: x\r\n\r\n",
                               b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
                               b"GET / HTTP/1.1\nHost: x\n\n",
                               b"GET /health HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                               b"Connection: Upgrade\r\n\r\n"])
        # Connection header oddities
        return _request("GET", "/health", None, [("Connection", rng.choice(
            ["close", "keep-alive", "upgrade", "x" * 100, "close, close", ""]))])
    # queries on the list / prefix-delete routes and unknown routes
    q = "&".join(f"{rng.choice(QPARAMS)}={rng.choice(QVALUES)}" for _ in range(rng.randrange(1, 4)))
    return rng.choice([_request("GET", f"/db/{acc}/kv?{q}"), _request("DELETE", f"/db/{acc}/kv?{q}"),
                       _request("GET", f"/db/{acc}/nope/k?{q}"), _request("PATCH", f"/db/{acc}/kv/k"),
                       _request("GET", f"/health?{q}"), _request("GET", f"/%ff/{q}")])


# ---------------------------------------------------------------- checking


def check_answer(req: bytes, r) -> None:
    where = f"request {req[:300]!r}"
    # 505 is the documented answer to an HTTP version other than 1.0/1.1 (API.md)
    assert r.status < 500 or (r.status == 505 and b"http_version_not_supported" in r.body), \
        f"{where} -> {r!r}"
    if r.status >= 400:
        assert r.content_type == "application/json", f"{where} -> {r.header_list}"
        try:
            body = json.loads(r.body)
        except ValueError:
            raise AssertionError(f"{where} -> error body is not JSON: {r.body[:300]!r}")
        assert isinstance(body, dict) and isinstance(body.get("Code"), str) and body["Code"], \
            f"{where} -> {body!r}"
        assert isinstance(body.get("Message"), str) and body["Message"], f"{where} -> {body!r}"


def send_and_check(port: int, raw: Raw | None, req: bytes) -> Raw | None:
    """Send one request on `raw` (a new connection when None), check its answer, and
    return the connection to reuse (None when the server closes it)."""
    if raw is None:
        raw = Raw(port, timeout=10)
    try:
        raw.send(req)
        r = raw.read_final(head=req.startswith(b"HEAD "), timeout=10)
    except EOFError:
        raw.close()
        raise AssertionError(f"the server closed without answering {req[:300]!r}")
    except BrokenPipeError:
        raw.close()
        raise AssertionError(f"the server closed before {req[:300]!r} was sent")
    check_answer(req, r)
    if (r.header("Connection") or "").lower() == "close" or r.version == "HTTP/1.0":
        raw.close()
        return None
    return raw


# ---------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    from helpers import Server
    base = tmp_path_factory.mktemp("fuzz-server")
    srv = Server(base / "data", base / "logs", env=FUZZ_ENV)
    srv.start()
    yield srv
    srv.kill()


REGRESSIONS = [
    # issue 11, defect 1: the message echoed a field name with a lone surrogate -> 500
    b'{"UnlockID": "L", "\\ud800Unlock": 1}',
    b'{"\\ud800": 1, "KVGet": ["k"]}',
    b'{"KVSet": [{"Key": "k", "Value": 1, "\\udfffTTL": 1}]}',
]


@pytest.mark.parametrize("body", REGRESSIONS)
def test_lone_surrogate_field_name_is_400_not_500(fuzz_server, body):
    acc = unique_account("surrogate")
    with fuzz_server.raw() as raw:
        raw.send(_request("POST", f"/db/{acc}", body))
        r = raw.read_response()
        err = assert_error(r, 400, "bad_request")
        assert json.loads(r.body) == err
        # the same connection keeps serving
        raw.send(_request("POST", f"/db/{acc}", b'{"KVSet":[{"Key":"k","Value":1}]}'))
        r = raw.read_response()
        assert r.status == 200 and r.json == {"KVSet": [{"Key": "k", "Version": 1}], "Rev": 1}, r
    fuzz_server.assert_alive()


def test_error_paths_fuzz(fuzz_server):
    rng = random.Random(SEED)
    acc = unique_account("fuzz")
    port = fuzz_server.port
    raw = None
    start = time.monotonic()
    sent = 0
    try:
        for i in range(N_REQUESTS):
            if time.monotonic() - start > TIME_BUDGET:
                break
            req = gen_request(rng, acc)
            raw = send_and_check(port, raw, req)
            sent += 1
            if i % 500 == 499:
                assert fuzz_server.running(), fuzz_server.log_tail()
    finally:
        if raw is not None:
            raw.close()
    assert sent >= 1000, f"only {sent} requests in {TIME_BUDGET} s"
    fuzz_server.assert_alive()
    log = fuzz_server.log_tail(1_000_000)
    assert "internal error" not in log and "Traceback" not in log, log[-4000:]
