"""Resource endpoints (API.md "Resource endpoints") for kv, counter and sequence, plus
GET /health and GET /ready, HEAD on every GET route, 404 / 405, bad accounts and keys.
"""
from __future__ import annotations

import pytest

from helpers import INT64_MAX, NOBODY, VERSION, assert_error, unique_account


def ok(r, status=200):
    assert r.status == status, r
    assert r.content_type == "application/json", r.header_list
    return r.json


# =========================================================================== /health, /ready


def test_health(client):
    r = client.get("/health")
    assert ok(r) == {"Status": "ok", "Version": VERSION}


def test_ready(client):
    r = client.get("/ready")
    assert r.status == 200, r
    assert r.content_type == "application/json"
    assert isinstance(r.json, dict)


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_head_on_health_and_ready(client, path):
    g = client.get(path)
    h = client.head(path)
    assert h.status == g.status == 200
    assert h.body == b""
    assert h.header("Content-Length") == g.header("Content-Length") == str(len(g.body))
    assert h.content_type == "application/json"


# =========================================================================== kv


def test_put_then_get(client, acc):
    r = client.put(f"/db/{acc}/kv/greeting", {"hello": "world"})
    assert ok(r) == {"Key": "greeting", "Version": 1}
    assert ok(client.get(f"/db/{acc}/kv/greeting")) == {"Key": "greeting", "Value": {"hello": "world"}, "Version": 1}


def test_put_answers_200_never_201(client, acc):
    r = client.put(f"/db/{acc}/kv/new", 1)
    assert r.status == 200
    r = client.put(f"/db/{acc}/kv/new", 2)
    assert ok(r) == {"Key": "new", "Version": 2}


def test_get_missing_key_is_404(client, acc):
    assert_error(client.get(f"/db/{acc}/kv/missing"), 404, "not_found")
    assert_error(client.get(f"/db/{acc}/kv/missing?raw"), 404, "not_found")


def test_rest_and_db_see_the_same_data(client, acc):
    client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": [1, 2]}]})
    assert ok(client.get(f"/db/{acc}/kv/a")) == {"Key": "a", "Value": [1, 2], "Version": 1}
    ok(client.put(f"/db/{acc}/kv/b", "bee"))
    assert client.kv(acc, "b") == {"Key": "b", "Value": "bee", "Version": 2}


@pytest.mark.parametrize("value", [None, 0, -1.25, True, "", "s", [], {}, {"a": [1, {"b": None}]}, "日本😀"])
def test_put_any_json_value(client, acc, value):
    ok(client.put(f"/db/{acc}/kv/v", value))
    assert ok(client.get(f"/db/{acc}/kv/v")) == {"Key": "v", "Value": value, "Version": 1}


@pytest.mark.parametrize("body", [b"", b"{", b"nope", b'{"a": NaN}', b'"\xff"', b'"\\ud800"',
                                  b"[" * 600 + b"]" * 600, b"1 2", b"01", b"-", b"1.", b'{"a":-0.}'])
def test_put_bad_json_is_400(server, client, acc, body):
    assert_error(client.put(f"/db/{acc}/kv/k", body), 400, "bad_request")
    assert_error(client.get(f"/db/{acc}/kv/k"), 404, "not_found")
    server.assert_alive()


def test_put_ver_cas(client, acc):
    assert ok(client.put(f"/db/{acc}/kv/k?ver=0", "first")) == {"Key": "k", "Version": 1}
    r = client.put(f"/db/{acc}/kv/k?ver=0", "again")
    assert assert_error(r, 409, "precondition_failed")["Failed"] == [{"Key": "k", "Version": 1}]
    r = client.put(f"/db/{acc}/kv/k?ver=5", "wrong")
    assert assert_error(r, 409, "precondition_failed")["Failed"] == [{"Key": "k", "Version": 1}]
    assert ok(client.get(f"/db/{acc}/kv/k")) == {"Key": "k", "Value": "first", "Version": 1}
    assert ok(client.put(f"/db/{acc}/kv/k?ver=1", "second")) == {"Key": "k", "Version": 2}
    assert ok(client.get(f"/db/{acc}/kv/k")) == {"Key": "k", "Value": "second", "Version": 2}


@pytest.mark.parametrize("q", ["ver=abc", "ver=-1", "ver=1.5", "ver=18446744073709551616"])
def test_put_bad_ver_is_400(client, acc, q):
    assert_error(client.put(f"/db/{acc}/kv/k?{q}", 1), 400, "bad_request")
    assert_error(client.get(f"/db/{acc}/kv/k"), 404, "not_found")


def test_delete(client, acc):
    ok(client.put(f"/db/{acc}/kv/k", 1))
    assert ok(client.delete(f"/db/{acc}/kv/k")) == {"Key": "k", "Version": 0}
    assert_error(client.get(f"/db/{acc}/kv/k"), 404, "not_found")
    # the delete took revision 2
    assert ok(client.put(f"/db/{acc}/kv/other", 1)) == {"Key": "other", "Version": 3}


def test_delete_missing_is_200_and_keeps_revision(client, acc):
    ok(client.put(f"/db/{acc}/kv/a", 1))
    assert ok(client.delete(f"/db/{acc}/kv/never")) == {"Key": "never", "Version": 0}
    assert ok(client.delete(f"/db/{acc}/kv/never")) == {"Key": "never", "Version": 0}
    assert ok(client.put(f"/db/{acc}/kv/b", 1)) == {"Key": "b", "Version": 2}


def test_delete_ver_cas(client, acc):
    ok(client.put(f"/db/{acc}/kv/k", "v"))
    r = client.delete(f"/db/{acc}/kv/k?ver=3")
    assert assert_error(r, 409, "precondition_failed")["Failed"] == [{"Key": "k", "Version": 1}]
    assert ok(client.get(f"/db/{acc}/kv/k")) == {"Key": "k", "Value": "v", "Version": 1}
    assert ok(client.delete(f"/db/{acc}/kv/k?ver=1")) == {"Key": "k", "Version": 0}
    assert_error(client.get(f"/db/{acc}/kv/k"), 404, "not_found")


def test_raw_string_is_plain_text(client, acc):
    ok(client.put(f"/db/{acc}/kv/msg", "hello\nwörld \"quoted\""))
    r = client.get(f"/db/{acc}/kv/msg?raw")
    assert r.status == 200
    assert r.header("Content-Type").replace(" ", "").lower() == "text/plain;charset=utf-8"
    assert r.body == "hello\nwörld \"quoted\"".encode()
    assert r.header("Content-Length") == str(len(r.body))


@pytest.mark.parametrize("q", ["raw", "raw=", "raw=1", "raw=0", "raw=false"])
def test_raw_counts_by_presence(client, acc, q):
    ok(client.put(f"/db/{acc}/kv/s", "plain"))
    r = client.get(f"/db/{acc}/kv/s?{q}")
    assert r.status == 200
    assert r.content_type == "text/plain"
    assert r.body == b"plain"


@pytest.mark.parametrize("value", [{"a": [1, "x"]}, 42, -3.5, True, None, [], ["s"]])
def test_raw_non_string_is_its_json(client, acc, value):
    ok(client.put(f"/db/{acc}/kv/j", value))
    r = client.get(f"/db/{acc}/kv/j?raw")
    assert r.status == 200
    assert r.content_type == "application/json"
    assert r.json == value


@pytest.mark.parametrize("method,path,body,name", [
    ("PUT", "kv/k?version=1", 5, "version"),            # the typo that once overwrote version 20
    ("PUT", "kv/k?ver=1&zzz", 5, "zzz"),
    ("GET", "kv/k?foo=bar", None, "foo"),
    ("GET", "kv/k?raw&x=1", None, "x"),
    ("DELETE", "kv/k?recurse", None, "recurse"),        # once answered 200 and deleted nothing
    ("DELETE", "kv/k?ttl=5", None, "ttl"),               # per route and method
    ("POST", "counter/c?foo=1", None, "foo"),
    ("GET", "counter/c?add=1", None, "add"),
    ("PUT", "counter/c?set=1&ifEq=0", None, "ifEq"),
    ("POST", "sequence/s?n=5", None, "n"),
    ("POST", "lock/l?duration=5", None, "duration"),
    ("DELETE", "lock/l?handle=1&owner=x&x=1", None, "x"),
])
def test_unknown_query_parameter_is_400_naming_it(client, acc, method, path, body, name):
    ok(client.put(f"/db/{acc}/kv/k", 1))
    kw = {} if body is None else {"body": body}
    r = client.request(method, f"/db/{acc}/{path}", **kw)
    assert_error(r, 400, "bad_request")
    assert f'"{name}"' in r.json["Message"]
    # nothing changed
    assert ok(client.get(f"/db/{acc}/kv/k")) == {"Key": "k", "Value": 1, "Version": 1}
    assert ok(client.get(f"/db/{acc}/counter/c")) == {"Key": "c", "Value": 0}
    assert ok(client.get(f"/db/{acc}/sequence/s")) == {"Key": "s", "Value": 0}
    assert ok(client.get(f"/db/{acc}/lock/l")) == {"Locked": False}


@pytest.mark.parametrize("path", ["kv/k?ver=1&ver=2", "kv/k?ver=1&ver=1"])
def test_repeated_query_parameter_is_400(client, acc, path):
    ok(client.put(f"/db/{acc}/kv/k", 1))
    r = client.request("PUT", f"/db/{acc}/{path}", body=2)
    assert_error(r, 400, "bad_request")
    assert '"ver"' in r.json["Message"]
    assert ok(client.get(f"/db/{acc}/kv/k"))["Value"] == 1


def test_known_query_parameters_still_work(client, acc):
    assert ok(client.put(f"/db/{acc}/kv/k?ver=0", 1)) == {"Key": "k", "Version": 1}
    assert ok(client.post(f"/db/{acc}/counter/c?add=2")) == {"Key": "c", "Value": 2}
    assert ok(client.put(f"/db/{acc}/counter/c?set=5&ifeq=2")) == {"Key": "c", "Value": 5}


def test_key_is_rest_of_path_with_slashes(client, acc):
    assert ok(client.put(f"/db/{acc}/kv/cfg/db/url", "postgres://x")) == {"Key": "cfg/db/url", "Version": 1}
    assert client.kv(acc, "cfg/db/url") == {"Key": "cfg/db/url", "Value": "postgres://x", "Version": 1}
    assert ok(client.get(f"/db/{acc}/kv/cfg/db/url")) == {"Key": "cfg/db/url", "Value": "postgres://x", "Version": 1}
    # %2F is the same key
    assert ok(client.get(f"/db/{acc}/kv/cfg%2Fdb%2Furl"))["Value"] == "postgres://x"
    assert_error(client.get(f"/db/{acc}/kv/cfg/db"), 404, "not_found")


@pytest.mark.parametrize("path,key", [
    ("a%20b", "a b"),
    ("%C3%A9t%C3%A9", "été"),
    ("100%25", "100%"),
    ("a%3Fb", "a?b"),
    ("a%23b", "a#b"),
    ("%F0%9F%98%80", "😀"),
    ("x+y", "x+y"),
    ("%41%42", "AB"),
    ("a/b/", "a/b/"),
])
def test_key_is_percent_decoded(client, acc, path, key):
    assert ok(client.put(f"/db/{acc}/kv/{path}", 7)) == {"Key": key, "Version": 1}
    assert client.kv(acc, key) == {"Key": key, "Value": 7, "Version": 1}
    ok(client.post(f"/db/{acc}/counter/{path}?add=3"))
    assert client.counter(acc, key) == 3
    assert ok(client.post(f"/db/{acc}/sequence/{path}")) == {"Key": key, "Value": 1, "Count": 1}


@pytest.mark.parametrize("path", ["a%00b", "x" * 257, "%C3%A9" * 128 + "x", "%FF", "%C3", "%ED%A0%80"])
def test_bad_key_in_path(server, client, acc, path):
    assert_error(client.put(f"/db/{acc}/kv/{path}", 1), 400, "bad_key")
    assert_error(client.get(f"/db/{acc}/kv/{path}"), 400, "bad_key")
    assert_error(client.post(f"/db/{acc}/counter/{path}"), 400, "bad_key")
    assert_error(client.get(f"/db/{acc}/sequence/{path}"), 400, "bad_key")
    server.assert_alive()


def test_longest_key_in_path(client, acc):
    key = "é" * 128  # 256 UTF-8 bytes
    assert ok(client.put(f"/db/{acc}/kv/" + "%C3%A9" * 128, 1)) == {"Key": key, "Version": 1}
    assert client.kv(acc, key)["Value"] == 1


@pytest.mark.parametrize("account", ["a%20b", "a" * 65, "a!b", "%C3%A9"])
@pytest.mark.parametrize("method,route", [("GET", "kv/k"), ("PUT", "kv/k"), ("DELETE", "kv/k"),
                                          ("GET", "counter/c"), ("POST", "counter/c"),
                                          ("GET", "sequence/s"), ("POST", "sequence/s")])
def test_bad_account_in_path(client, account, method, route):
    body = b"1" if method == "PUT" else NOBODY
    assert_error(client.request(method, f"/db/{account}/{route}", body=body), 400, "bad_account")


def test_put_value_over_limit_is_413(limits_server):
    c = limits_server.client()
    acc = unique_account("restbig")
    assert c.put(f"/db/{acc}/kv/ok", "x" * 998).status == 200
    assert_error(c.put(f"/db/{acc}/kv/big", "x" * 999), 413, "too_large")
    assert_error(c.get(f"/db/{acc}/kv/big"), 404, "not_found")
    limits_server.assert_alive()
    c.close()


# =========================================================================== counter


def test_counter_get_never_set_is_0(client, acc):
    assert ok(client.get(f"/db/{acc}/counter/visits")) == {"Key": "visits", "Value": 0}


def test_counter_add(client, acc):
    assert ok(client.post(f"/db/{acc}/counter/visits")) == {"Key": "visits", "Value": 1}
    assert ok(client.post(f"/db/{acc}/counter/visits?add=10")) == {"Key": "visits", "Value": 11}
    assert ok(client.post(f"/db/{acc}/counter/visits?add=-20")) == {"Key": "visits", "Value": -9}
    assert ok(client.post(f"/db/{acc}/counter/visits?add=0")) == {"Key": "visits", "Value": -9}
    assert ok(client.get(f"/db/{acc}/counter/visits")) == {"Key": "visits", "Value": -9}
    assert client.counter(acc, "visits") == -9


def test_counter_set_and_ifeq(client, acc):
    assert ok(client.put(f"/db/{acc}/counter/gen?set=4")) == {"Key": "gen", "Value": 4}
    assert ok(client.put(f"/db/{acc}/counter/gen?set=5&ifeq=4")) == {"Key": "gen", "Value": 5}
    r = client.put(f"/db/{acc}/counter/gen?set=6&ifeq=4")
    assert assert_error(r, 409, "precondition_failed")["Failed"] == [{"Key": "gen", "Value": 5}]
    assert ok(client.get(f"/db/{acc}/counter/gen")) == {"Key": "gen", "Value": 5}
    assert ok(client.put(f"/db/{acc}/counter/fresh?ifeq=0&set=-3")) == {"Key": "fresh", "Value": -3}


def test_counter_delete_resets_to_0(client, acc):
    ok(client.post(f"/db/{acc}/counter/c?add=5"))
    assert ok(client.delete(f"/db/{acc}/counter/c")) == {"Key": "c", "Value": 0}
    assert ok(client.get(f"/db/{acc}/counter/c")) == {"Key": "c", "Value": 0}
    assert ok(client.delete(f"/db/{acc}/counter/never")) == {"Key": "never", "Value": 0}
    assert ok(client.post(f"/db/{acc}/counter/c")) == {"Key": "c", "Value": 1}


def test_counter_writes_do_not_move_revision(client, acc):
    ok(client.put(f"/db/{acc}/kv/k", 1))
    ok(client.post(f"/db/{acc}/counter/c"))
    ok(client.put(f"/db/{acc}/counter/c?set=9"))
    ok(client.delete(f"/db/{acc}/counter/c"))
    ok(client.post(f"/db/{acc}/sequence/s?count=4"))
    assert ok(client.put(f"/db/{acc}/kv/k", 2)) == {"Key": "k", "Version": 2}


def test_counter_overflow_is_400(client, acc):
    ok(client.put(f"/db/{acc}/counter/c?set={INT64_MAX}"))
    assert_error(client.post(f"/db/{acc}/counter/c?add=1"), 400, "bad_request")
    assert ok(client.get(f"/db/{acc}/counter/c")) == {"Key": "c", "Value": INT64_MAX}


@pytest.mark.parametrize("method,q", [
    ("POST", "add=abc"), ("POST", "add=1.5"), ("POST", "add=9223372036854775808"),
    ("PUT", "set=x"), ("PUT", "set=9223372036854775808"), ("PUT", "set=1&ifeq=zz"), ("PUT", ""),
    ("PUT", "ifeq=0"),
])
def test_counter_bad_numbers_are_400(client, acc, method, q):
    assert_error(client.request(method, f"/db/{acc}/counter/c?{q}"), 400, "bad_request")
    assert ok(client.get(f"/db/{acc}/counter/c")) == {"Key": "c", "Value": 0}


# =========================================================================== sequence


def test_sequence_get_never_used_is_0(client, acc):
    assert ok(client.get(f"/db/{acc}/sequence/ids")) == {"Key": "ids", "Value": 0}


def test_sequence_next(client, acc):
    assert ok(client.post(f"/db/{acc}/sequence/ids")) == {"Key": "ids", "Value": 1, "Count": 1}
    assert ok(client.post(f"/db/{acc}/sequence/ids?count=10")) == {"Key": "ids", "Value": 2, "Count": 10}
    assert ok(client.get(f"/db/{acc}/sequence/ids")) == {"Key": "ids", "Value": 11}
    assert ok(client.post(f"/db/{acc}/sequence/ids")) == {"Key": "ids", "Value": 12, "Count": 1}
    assert client.db_ok(acc, {"Seq": [{"Key": "ids"}]})["Seq"] == [{"Key": "ids", "Value": 13, "Count": 1}]
    assert ok(client.get(f"/db/{acc}/sequence/ids")) == {"Key": "ids", "Value": 13}


@pytest.mark.parametrize("q", ["count=0", "count=-1", "count=10001", "count=abc", "count=1.5"])
def test_sequence_bad_count_is_400(client, acc, q):
    assert_error(client.post(f"/db/{acc}/sequence/s?{q}"), 400, "bad_request")
    assert ok(client.get(f"/db/{acc}/sequence/s")) == {"Key": "s", "Value": 0}


def test_sequence_count_max(client, acc):
    assert ok(client.post(f"/db/{acc}/sequence/s?count=10000")) == {"Key": "s", "Value": 1, "Count": 10000}


# =========================================================================== HEAD, 404, 405


def test_head_on_get_routes(client, acc):
    ok(client.put(f"/db/{acc}/kv/k", {"some": "value"}))
    ok(client.put(f"/db/{acc}/kv/s", "text"))
    ok(client.post(f"/db/{acc}/counter/c"))
    ok(client.post(f"/db/{acc}/sequence/q"))
    for path in (f"/db/{acc}/kv/k", f"/db/{acc}/kv/s?raw", f"/db/{acc}/counter/c", f"/db/{acc}/sequence/q"):
        g = client.get(path)
        h = client.head(path)
        assert g.status == h.status == 200, (path, g, h)
        assert h.body == b""
        assert h.header("Content-Length") == str(len(g.body)), path
        assert h.header("Content-Type") == g.header("Content-Type"), path
    h = client.head(f"/db/{acc}/kv/missing")
    assert h.status == 404 and h.body == b""
    assert h.content_type == "application/json"


def test_head_writes_nothing(client, acc):
    client.head(f"/db/{acc}/counter/c")
    client.head(f"/db/{acc}/sequence/s")
    assert ok(client.get(f"/db/{acc}/counter/c")) == {"Key": "c", "Value": 0}
    assert ok(client.get(f"/db/{acc}/sequence/s")) == {"Key": "s", "Value": 0}


@pytest.mark.parametrize("method,path", [
    ("GET", "/"), ("GET", "/nope"), ("GET", "/db"), ("POST", "/dbx/a"), ("GET", "/db/a/unknown/k"),
    ("POST", "/db/a/kvs/k"), ("GET", "/healthz"), ("GET", "/health/x"),
])
def test_unknown_route_is_404(client, method, path):
    assert_error(client.request(method, path, body=b"{}" if method == "POST" else NOBODY), 404, "not_found")


@pytest.mark.parametrize("method,route", [
    ("GET", "/db/{acc}"), ("PUT", "/db/{acc}"), ("DELETE", "/db/{acc}"),
    ("POST", "/db/{acc}/kv/k"), ("PATCH", "/db/{acc}/kv/k"),
    ("PATCH", "/db/{acc}/counter/c"),
    ("PUT", "/db/{acc}/sequence/s"), ("DELETE", "/db/{acc}/sequence/s"),
    ("POST", "/health"), ("DELETE", "/health"), ("PUT", "/ready"),
])
def test_wrong_method_is_405(client, acc, method, route):
    body = b"1" if method in ("PUT", "POST", "PATCH") else NOBODY
    r = client.request(method, route.format(acc=acc), body=body)
    assert_error(r, 405, "method_not_allowed")
    assert_error(client.get(f"/db/{acc}/kv/k"), 404, "not_found")
    assert ok(client.get(f"/db/{acc}/sequence/s")) == {"Key": "s", "Value": 0}
    assert ok(client.get(f"/db/{acc}/counter/c")) == {"Key": "c", "Value": 0}


# =========================================================================== more edges


@pytest.mark.parametrize("ctype", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_body_is_json_whatever_the_content_type(server, acc, ctype):
    """curl -d sends application/x-www-form-urlencoded; the body is JSON all the same."""
    from helpers import http_request
    headers = {} if ctype is None else {"Content-Type": ctype}
    with server.raw() as raw:
        put = http_request("PUT", f"/db/{acc}/kv/k", b'{"a": 1}', headers=headers)
        db = http_request("POST", f"/db/{acc}", b'{"KVGet": ["k"]}', headers=headers)
        if ctype is None:
            put = put.replace(b"Content-Type: application/json\r\n", b"")
            db = db.replace(b"Content-Type: application/json\r\n", b"")
        raw.send(put + db)
        r = raw.read_response()
        assert r.status == 200 and r.json == {"Key": "k", "Version": 1}, r
        r = raw.read_response()
        assert r.status == 200 and r.json == {"KV": [{"Key": "k", "Value": {"a": 1}, "Version": 1}]}, r


def test_health_takes_no_query_parameter(client):
    assert_error(client.get("/health?verbose=1"), 400, "bad_request")
    assert ok(client.get("/health")) == {"Status": "ok", "Version": VERSION}


def test_put_ver_0_recreates_deleted_key(client, acc):
    ok(client.put(f"/db/{acc}/kv/k", 1))
    ok(client.delete(f"/db/{acc}/kv/k"))
    assert ok(client.put(f"/db/{acc}/kv/k?ver=0", 2)) == {"Key": "k", "Version": 3}
    assert ok(client.get(f"/db/{acc}/kv/k")) == {"Key": "k", "Value": 2, "Version": 3}


def test_put_body_over_max_body_is_413_and_closes(limits_server):
    acc = unique_account("putbody")
    body = b'"' + b"b" * 5000 + b'"'
    with limits_server.raw() as raw:
        raw.send(f"PUT /db/{acc}/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        assert_error(raw.read_response(), 413, "too_large")
        raw.wait_closed()
    c = limits_server.client()
    assert_error(c.get(f"/db/{acc}/kv/k"), 404, "not_found")
    c.close()


def test_rest_write_reads_back_on_another_connection(server, acc):
    a, b = server.client(), server.client()
    for i in range(20):
        assert ok(a.put(f"/db/{acc}/kv/k", i)) == {"Key": "k", "Version": i + 1}
        assert ok(b.get(f"/db/{acc}/kv/k")) == {"Key": "k", "Value": i, "Version": i + 1}
        assert ok(b.post(f"/db/{acc}/counter/c")) == {"Key": "c", "Value": i + 1}
        assert ok(a.get(f"/db/{acc}/counter/c")) == {"Key": "c", "Value": i + 1}
    a.close()
    b.close()
