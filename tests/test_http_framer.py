"""The fast request framer (cdragon/core/framer.pyx) against httptools, the full parser
it stands in for (issue 18).

Unit level: for every request the framer accepts, httptools parsing the same bytes
must accept it too and agree on every field the server uses (method, target, body,
keep-alive, version, Authorization, Content-Length, the header byte count) and on
where the request ends; and the framer must decline whatever httptools rejects or
reads differently. Inputs: a hand-written corpus of edge cases, every cut of a few
requests, and seeded random mutations of valid requests.

Server level: the same conversations against a server that frames with it and one
started with the CDRAGON_TEST_NO_FAST_HTTP=1 test hook (httptools only) get
byte-identical answers.
"""
from __future__ import annotations

import hashlib
import random

import httptools
import pytest

from cdragon._core import _fast_frame
from helpers import Raw

MAX_HDR = 8192
MAX_BODY = 1 << 20


# --------------------------------------------------------------------------- reference


class _Recorder:
    """httptools' view of a request stream: one dict per completed message."""

    def __init__(self):
        self.msgs: list[dict] = []
        self.cur: dict | None = None
        self.parser = httptools.HttpRequestParser(self)

    def on_message_begin(self):
        self.cur = {"url": b"", "headers": [], "body": b""}

    def on_url(self, url):
        self.cur["url"] += url

    def on_header(self, name, value):
        self.cur["headers"].append((name, value))

    def on_body(self, body):
        self.cur["body"] += body

    def on_message_complete(self):
        p = self.parser
        self.cur.update(method=p.get_method(), keep_alive=p.should_keep_alive(),
                        version=p.get_http_version())
        self.msgs.append(self.cur)


def httptools_messages(data: bytes) -> tuple[list[dict], bool]:
    """The messages httptools completes in data (fed in one piece, as the server does),
    and whether it raised on the way (the Upgrade exception counts as an error)."""
    rec = _Recorder()
    try:
        rec.parser.feed_data(data)
    except Exception:
        return rec.msgs, True
    return rec.msgs, False


def completes_at(data: bytes, end: int) -> bool:
    """Whether httptools completes its first message exactly with byte `end`."""
    before, _ = httptools_messages(data[:end - 1])
    upto, _ = httptools_messages(data[:end])
    return not before and len(upto) == 1


def check(data: bytes, max_hdr: int = MAX_HDR, max_body: int = MAX_BODY):
    """The framer's answer for data, checked against httptools when it accepts; returns
    that answer (None: declined)."""
    got = _fast_frame(data, max_hdr, max_body)
    if got is None:
        return None
    method, url, body, keep_alive, http10, authz, content_length, hdr_bytes, consumed = got
    msgs, _ = httptools_messages(data)
    assert msgs, f"framer accepted what httptools does not complete: {data!r}"
    m = msgs[0]
    names = [n.lower() for n, _ in m["headers"]]
    assert method == m["method"], data
    assert url == m["url"], data
    assert body == m["body"], data
    assert keep_alive == m["keep_alive"], data
    assert http10 == (m["version"] == "1.0") and m["version"] in ("1.0", "1.1"), data
    auth = [v for n, v in m["headers"] if n.lower() == b"authorization"]
    assert authz == (auth[-1] if auth else None), data
    cls = [v for n, v in m["headers"] if n.lower() == b"content-length"]
    assert content_length == (int(cls[0]) if cls else -1) and len(cls) <= 1, data
    assert hdr_bytes == len(m["url"]) + sum(len(n) + len(v) + 4 for n, v in m["headers"]), data
    assert hdr_bytes <= max_hdr and content_length <= max_body, data
    # what the server decides itself must be plain: no framing or upgrade headers
    assert not {b"transfer-encoding", b"upgrade", b"expect", b"proxy-connection"} & set(names), data
    assert all(v.lower() in (b"close", b"keep-alive") for n, v in m["headers"] if n.lower() == b"connection")
    assert completes_at(data, consumed), data
    return got


# --------------------------------------------------------------------------- corpus

def req(method=b"GET", target=b"/db/a/kv/k", version=b"HTTP/1.1", headers=((b"Host", b"x"),),
        body=b"", cl=True) -> bytes:
    hs = list(headers)
    if cl and body:
        hs.append((b"Content-Length", b"%d" % len(body)))
    return (method + b" " + target + b" " + version + b"\r\n"
            + b"".join(n + b": " + v + b"\r\n" for n, v in hs) + b"\r\n" + body)


BODY = b'{"KVSet":[{"Key":"k","Value":"v"}]}'
POST = req(b"POST", b"/db/a", body=BODY, headers=((b"Host", b"127.0.0.1"), (b"Content-Type", b"application/json")))

# requests the framer must take (and httptools agree on)
ACCEPT = [
    req(),
    POST,
    req(b"PUT", b"/db/a/kv/k?ttl=5", body=b"1"),
    req(b"DELETE", b"/db/a/kv/k"),
    req(b"HEAD", b"/health"),
    req(b"HEAD", b"/health", body=b"ab"),                  # a request's body is read, even HEAD's
    req(b"DELETE", b"/db/a/kv/k", body=b"{}"),
    req(b"POST", b"/db/a/counter/c?add=2"),               # a POST with no body at all
    req(b"GET", b"/", headers=()),                         # no headers
    req(version=b"HTTP/1.0"),                              # 1.0: closes
    req(version=b"HTTP/1.0", headers=((b"Connection", b"keep-alive"),)),
    req(version=b"HTTP/1.0", headers=((b"connection", b"Keep-Alive"),)),
    req(version=b"HTTP/1.0", headers=((b"Connection", b"close"),)),
    req(headers=((b"Connection", b"close"),)),
    req(headers=((b"CONNECTION", b"CLOSE"),)),
    req(headers=((b"Connection", b"keep-alive"),)),
    req(headers=((b"Authorization", b"Bearer cdt_x"),)),
    req(headers=((b"authorization", b"bearer  cdt_x"),)),
    req(headers=((b"Authorization", b"Bearer a"), (b"Authorization", b"Bearer b"))),
    req(headers=((b"Authorization", b""),)),               # empty: the server says malformed
    req(headers=((b"X-Empty", b""), (b"Host", b"x"))),
    req(b"PUT", b"/db/a/kv/k", headers=((b"content-LENGTH", b"3"),), body=b"abc", cl=False),
    req(b"PUT", b"/db/a/kv/k", headers=((b"Content-Length", b"0003"),), body=b"abc", cl=False),
    req(b"PUT", b"/db/a/kv/k", headers=((b"Content-Length", b"0"),), cl=False),
    req(b"GET", b"/db/a/kv/k", body=b"xy"),                # a GET with a body is read
    req(target=b"/a#frag?x=\"{}|\\^`~"),
    req(target=b"/" + bytes(range(0x21, 0x7F))),
    req(headers=((b"X-Tok!#$%&'*+-.^_`|~09az", b"v"),)),
    req(headers=((b"X", b"a \t b"),)),                     # inner whitespace kept
    b"GET / HTTP/1.1\r\nX:\tv\r\n\r\n",                     # HTAB as OWS
    b"GET / HTTP/1.1\r\nX:v\r\n\r\n",                       # no OWS
    b"GET / HTTP/1.1\r\nX:  \t v\r\n\r\n",
    b"GET / HTTP/1.1\r\nX:\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: \r\n\r\n",                       # only OWS: an empty value
    req(b"POST", b"/admin/import", body=b"x" * 100),
]

# requests the framer must leave to httptools (unusual, incomplete, or errors there)
DECLINE = [
    b"",
    b"GET / HTTP/1.1\r\n",                                  # headers not ended
    b"GET / HTTP/1.1\r\nHost: x\r\n\r",
    req(b"PUT", body=b"abc")[:-1],                          # body short by one
    req(b"OPTIONS", b"/"), req(b"PATCH", b"/"), req(b"get", b"/"), req(b"CONNECT", b"/"),
    b"GET  / HTTP/1.1\r\n\r\n",
    b"GET * HTTP/1.1\r\n\r\n",
    b"GET http://x/ HTTP/1.1\r\n\r\n",
    req(target=b"/a\x80b"), req(target=b"/a\x7fb"), req(target=b"/a\tb"),
    req(version=b"HTTP/1.2"), req(version=b"HTTP/2.0"), req(version=b"HTTP/0.9"),
    req(version=b"http/1.1"), req(version=b"HTTP/1.1 "),
    b"GET / HTTP/1.1\nHost: x\n\n",                        # bare LF
    b"GET / HTTP/1.1\r\nHost: x\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",         # obs-fold
    b"GET / HTTP/1.1\r\nHost: x\r\n\tfolded\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",                  # SP before the colon
    b"GET / HTTP/1.1\r\n: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHo(st: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x \r\n\r\n",                  # trailing whitespace
    b"GET / HTTP/1.1\r\nHost: x\t\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\x80b\r\n\r\n",               # obs-text (httptools takes it)
    b"GET / HTTP/1.1\r\nHost: a\x7fb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\n\r\n",                          # a leading empty line
    req(headers=((b"Content-Length", b"1"), (b"Content-Length", b"1")), body=b"x", cl=False),
    req(headers=((b"Content-Length", b"1"), (b"content-length", b"2")), body=b"xy", cl=False),
    req(headers=((b"Content-Length", b"+1"),), body=b"x", cl=False),
    req(headers=((b"Content-Length", b"1,1"),), body=b"x", cl=False),
    req(headers=((b"Content-Length", b""),), cl=False),
    req(headers=((b"Content-Length", b"1" * 19),), cl=False),
    req(headers=((b"Transfer-Encoding", b"chunked"),)) + b"0\r\n\r\n",
    req(headers=((b"Transfer-Encoding", b"identity"),)),
    req(headers=((b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"))),
    req(headers=((b"UPGRADE", b"h2c"),)),
    req(headers=((b"Expect", b"100-continue"),), body=b"x"),
    req(headers=((b"Expect", b"nonsense"),)),
    req(headers=((b"Connection", b"close, keep-alive"),)),
    req(headers=((b"Connection", b"upgrade"),)),
    req(headers=((b"Connection", b"closed"),)),
    req(headers=((b"Connection", b"close"), (b"Connection", b"keep-alive"))),
    req(version=b"HTTP/1.0", headers=((b"Connection", b"keep-alive"), (b"Connection", b"close"))),
    req(headers=((b"Proxy-Connection", b"close"),)),
    req(headers=((b"X-Big", b"v" * MAX_HDR),)),              # httptools answers 431
    req(target=b"/" + b"u" * MAX_HDR),
    req(b"PUT", body=b"x" * (MAX_BODY + 1)),                  # httptools answers 413
]


@pytest.mark.parametrize("data", ACCEPT)
def test_framer_takes_everyday_requests_as_httptools_reads_them(data):
    assert check(data) is not None, data


@pytest.mark.parametrize("data", DECLINE)
def test_framer_leaves_unusual_incomplete_and_bad_requests_to_httptools(data):
    assert _fast_frame(data, MAX_HDR, MAX_BODY) is None, data


def test_header_and_body_limits_are_exact():
    data = req(b"PUT", b"/db/a/kv/k", headers=((b"Host", b"x"),), body=b"abcd")
    got = check(data)
    hdr_bytes = got[7]
    assert check(data, max_hdr=hdr_bytes) is not None
    assert _fast_frame(data, hdr_bytes - 1, MAX_BODY) is None
    assert check(data, max_body=4) is not None
    assert _fast_frame(data, MAX_HDR, 3) is None
    # /admin/import has its own (bigger) limit; only that path and its query get it
    imp = req(b"POST", b"/admin/import?x=1", body=b"x" * 10)
    assert _fast_frame(imp, MAX_HDR, 5, 10) is not None
    assert _fast_frame(imp, MAX_HDR, 5, 9) is None
    other = req(b"POST", b"/admin/importer", body=b"x" * 10)
    assert _fast_frame(other, MAX_HDR, 5, 10) is None


def test_pipelined_requests_are_framed_one_at_a_time():
    a, b = req(b"PUT", b"/db/a/kv/k", body=b"12"), req(headers=((b"Connection", b"close"),))
    got = check(a + b)
    assert got[-1] == len(a) and got[2] == b"12"
    assert check(b + a)[-1] == len(b)
    assert check(a + b"garbage")[-1] == len(a)           # the rest is httptools' to refuse
    assert _fast_frame(b"\r\n" + a, MAX_HDR, MAX_BODY) is None


@pytest.mark.parametrize("data", [POST, req(), req(version=b"HTTP/1.0"),
                                  req(b"PUT", headers=((b"Authorization", b"Bearer t"),), body=b"[1]")])
def test_every_cut_of_a_request_is_declined_until_it_is_whole(data):
    for cut in range(len(data)):
        assert _fast_frame(data[:cut], MAX_HDR, MAX_BODY) is None, cut
    assert check(data)[-1] == len(data)
    assert check(data + POST[:7])[-1] == len(data)       # the next one begun: not taken


INSERTS = [b"\r", b"\n", b" ", b"\t", b":", b"\x80", b"\x00", b"\r\n", b"\r\n ", b",", b"\x7f", b"0"]
SEEDS = [req(), POST, req(version=b"HTTP/1.0", headers=((b"Connection", b"keep-alive"),)),
         req(b"HEAD", b"/health", headers=((b"Authorization", b"Bearer cdt_x"), (b"Connection", b"close"))),
         req(b"PUT", b"/db/a/kv/k", headers=((b"Content-Length", b"3"), (b"X-A", b"")), body=b"abc", cl=False),
         req(b"DELETE", b"/db/a/lock/k?force", headers=((b"Host", b"x"), (b"Transfer-Encoding", b"chunked"))),
         req(headers=((b"Connection", b"close"), (b"Expect", b"100-continue")))]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:                                 # flip a byte to anything
            b[min(i, len(b) - 1)] = rng.randrange(256)
        elif op == 1:                                     # insert a troublesome byte
            b[i:i] = rng.choice(INSERTS)
        elif op == 2:                                     # truncate
            del b[i:]
        elif op == 3 and b:                               # duplicate a span (a header line, say)
            j = rng.randrange(len(b))
            k = min(len(b), j + rng.randint(1, 40))
            b[i:i] = b[j:k]
        elif op == 4:                                     # change a letter's case
            if b and chr(b[min(i, len(b) - 1)]).isalpha():
                b[min(i, len(b) - 1)] ^= 0x20
        elif op == 5 and b:                               # drop a span
            del b[i:i + rng.randint(1, 4)]
    return bytes(b)


def test_random_mutations_agree_with_httptools():
    rng = random.Random(18)
    taken = 0
    for n in range(6000):
        seed = rng.choice(SEEDS)
        data = _mutate(rng, seed + (rng.choice(SEEDS) if rng.random() < 0.3 else b""))
        if check(data) is not None:
            taken += 1
        # and whatever httptools refuses at the first request, the framer left alone
        msgs, failed = httptools_messages(data)
        if failed and not msgs:
            assert _fast_frame(data, MAX_HDR, MAX_BODY) is None, data
    assert 500 < taken < 5000, taken     # both kinds of outcome were exercised


# --------------------------------------------------------------------------- server level

def _conversations(acc: str, token: bytes | None = None) -> list[list[bytes]]:
    """Each conversation: the sends of one connection; the server closes after the last."""
    auth = ((b"Authorization", token if b" " in token else b"Bearer " + token),) if token else ()
    h = ((b"Host", b"x"),) + auth
    close = h + ((b"Connection", b"close"),)
    a = acc.encode()
    put = req(b"PUT", b"/db/%s/kv/k" % a, headers=h, body=b'{"v":1}')
    get = req(b"GET", b"/db/%s/kv/k" % a, headers=h)
    post = req(b"POST", b"/db/%s" % a, headers=h + ((b"Content-Type", b"application/json"),),
               body=b'{"Atomic":[{"Key":"c","Add":2}],"KVGet":["k"]}')
    last = req(b"GET", b"/db/%s/counter/c" % a, headers=close)
    return [
        [put + get + post + req(b"HEAD", b"/db/%s/kv/k" % a, headers=h) + last],    # pipelined
        [p for r in (put, post) for p in (r[:10], r[10:37], r[37:])] + [last],     # split
        [put + last + get],                        # the request after a close is not read
        [req(b"GET", b"/db/%s/kv/k" % a, version=b"HTTP/1.0", headers=h)],          # 1.0 closes
        [req(b"GET", b"/db/%s/kv/k" % a, version=b"HTTP/1.0", headers=h + ((b"Connection", b"keep-alive"),)),
         req(b"POST", b"/db/%s" % a, version=b"HTTP/1.0", headers=h, body=b'{"KVGet":["k"]}')],
        [get + req(b"GET", b"/db/%s/kv/nope" % a, headers=h) + req(b"DELETE", b"/db/%s/kv/k" % a, headers=h)
         + req(b"GET", b"/db/%s/kv/k" % a, headers=h) + b"GET /bad\x01 HTTP/1.1\r\n\r\n"],   # 404s, then a 400
        [get + req(b"POST", b"/db/%s" % a, headers=h + ((b"Transfer-Encoding", b"chunked"),))
         + b"5\r\n[1,2]\r\n0\r\n\r\n" + last],     # chunked: httptools' after a framed one
        [put + req(b"PUT", b"/db/%s/kv/k" % a, headers=h + ((b"Expect", b"100-continue"),), body=b"2") + last],
        [get + req(b"PUT", b"/db/%s/kv/big" % a, headers=h, body=b"1" * 5000)],     # 413
        [get + req(b"GET", b"/db/%s/kv/k" % a, headers=h + ((b"X-Big", b"v" * 3000),))],   # 431
        [req(b"GET", b"/db/%s/kv/k" % a, headers=h + ((b"X-Sp", b"v "),)) + last],  # httptools for one
        [req(b"GET", b"/health", headers=h) + req(b"PUT", b"/db/%s/kv/k" % a, headers=h, body=b"{bad") + last],
    ]


def _talk(port: int, sends: list[bytes]) -> bytes:
    with Raw(port) as r:
        for s in sends:
            r.send(s)
        return r.wait_closed()


def _run_both(server_factory, env: dict, config: str | None, token: bytes | None,
              others: tuple = ()):
    """Every conversation against a framing server and an httptools-only one; `others`:
    (account, token) pairs for a few more conversations each."""
    answers = []
    for extra in ({}, {"CDRAGON_TEST_NO_FAST_HTTP": "1"}):
        srv = server_factory(env={**env, **extra}, config=config)
        got = [_talk(srv.port, c) for c in _conversations("acc1", token)]
        for acc, tok in others:
            got += [_talk(srv.port, c) for c in _conversations(acc, tok)[:3]]
        answers.append(got)
        srv.kill()
    for i, (fast, full) in enumerate(zip(*answers)):
        assert fast == full, (i, fast, full)
    return answers[0]


SMALL = {"CDRAGON_MAX_BODY_BYTES": 4096, "CDRAGON_MAX_VALUE_BYTES": 1000, "CDRAGON_MAX_HEADER_BYTES": 2048}


def test_framing_server_answers_byte_for_byte_as_httptools_only(server_factory):
    answers = _run_both(server_factory, SMALL, None, None)
    assert answers[0].count(b"HTTP/1.1 200 OK") == 5                       # all five answered
    assert answers[2].count(b"HTTP/1.1 ") == 2                            # nothing after the close
    assert b"Connection: keep-alive" in answers[4]
    assert b" 413 " in answers[8] and b" 431 " in answers[9] and b" 400 " in answers[5]


def test_framing_server_with_tokens_answers_byte_for_byte_as_httptools_only(server_factory, tmp_path):
    tok, ro = b"cdt_framer-write", b"cdt_framer-read"
    cfg = tmp_path / "cdragon.toml"
    cfg.write_text("".join('[[token]]\nname = "%s"\nsha256 = "%s"\naccess = "%s"\naccounts = ["acc1"]\n'
                           % (access, hashlib.sha256(t).hexdigest(), access)
                           for t, access in ((tok, "write"), (ro, "read"))))
    answers = _run_both(server_factory, SMALL, str(cfg), tok,
                        others=(("acc1", b"cdt_wrong"), ("acc1", None), ("acc1", b"Basic dXNlcg=="),
                                ("other", tok), ("acc1", ro)))
    assert answers[0].count(b"HTTP/1.1 200 OK") == 5
    assert b'"unknown token"' in answers[-15] and b"needs a token" in answers[-12]
    assert b"Authorization" in answers[-9] and b" 401 " in answers[-9]
    assert b'"this token does not cover this account"' in answers[-6]
    assert b" 403 " in answers[-3] and b"read" in answers[-3] and b" 200 OK" in answers[-1]
