"""The /admin/* request path (cdragon/core/admin.pyx, cdragon/admin.py): parked
answers given by Python code, a streamed export that keeps the connection's order and
keep-alive, the import's own body limit, who may call them, and bad input refused
before any work starts. What each route does is tested in test_export_import.py and
test_backup*.py."""
from __future__ import annotations

import json

import pytest

from helpers import assert_error, http_request, unique_account


def ndjson(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def test_a_streamed_export_keeps_the_pipeline_in_order(server, client):
    acc = unique_account("pipe")
    for part in range(2):
        client.db_ok(acc, {"KVSet": [{"Key": f"k{i:04d}", "Value": "v" * 50} for i in range(part * 1000, part * 1000 + 1000)]})
    with server.raw(timeout=30) as raw:
        # three requests in one write: a write, the export, a read of what the write wrote
        raw.send(http_request("POST", f"/db/{acc}", json.dumps({"KVSet": [{"Key": "z", "Value": 1}]}).encode())
                 + http_request("GET", f"/admin/export?acc={acc}")
                 + http_request("GET", f"/db/{acc}/kv/z"))
        first = raw.read_response()
        assert first.status == 200 and first.json["Rev"] >= 2
        export = raw.read_response()
        assert export.status == 200
        assert export.header("Transfer-Encoding") == "chunked"
        assert export.header("Content-Type") == "application/x-ndjson"
        lines = ndjson(export.body)
        keys = [r["KV"] for r in lines if "KV" in r]
        assert len(keys) == 2001 and "z" in keys          # the write before it is in it
        assert lines[-1] == {"End": True, "Records": len(lines) - 2}
        third = raw.read_response()                        # the connection goes on
        assert third.status == 200 and third.json["Value"] == 1


def test_head_of_an_export_sends_no_body(server, client):
    acc = unique_account("head")
    client.db_ok(acc, {"KVSet": [{"Key": "a", "Value": 1}]})
    with server.raw() as raw:
        raw.send(http_request("HEAD", f"/admin/export?acc={acc}") + http_request("GET", "/health"))
        head = raw.read_response(head=True)
        assert head.status == 200 and head.header("Transfer-Encoding") == "chunked"
        # the terminating chunk is not sent for HEAD either: the next answer follows at once
        health = raw.read_response()
        assert health.status == 200 and health.json["Status"] == "ok"


def test_import_has_its_own_body_limit(server_factory):
    srv = server_factory(env={"CDRAGON_MAX_IMPORT_BYTES": 4096, "CDRAGON_MAX_BODY_BYTES": 65536,
                              "CDRAGON_MAX_VALUE_BYTES": 1024})
    c = srv.client()
    r = c.request("POST", "/admin/import", b"x" * 5000)
    assert_error(r, 413, "too_large")
    assert "4096" in r.json["Message"]
    # the other routes keep max_body_bytes: 5000 bytes is fine there
    acc = unique_account("lim")
    big = {"KVSet": [{"Key": f"k{i}", "Value": "y" * 900} for i in range(5)]}
    assert len(json.dumps(big)) > 4096
    c.db_ok(acc, big)
    # and an import body under its limit reaches the importer (which refuses this one)
    r = c.request("POST", "/admin/import", b"not a dump\n")
    assert_error(r, 400, "bad_request")
    srv.assert_alive()
    c.close()


@pytest.mark.parametrize("method,path,code,status", [
    ("POST", "/admin/accounts", "method_not_allowed", 405),
    ("GET", "/admin/backup", "method_not_allowed", 405),
    ("DELETE", "/admin/backups", "method_not_allowed", 405),
    ("PUT", "/admin/import", "method_not_allowed", 405),
    ("GET", "/admin/export?account=a", "bad_request", 400),
    ("GET", "/admin/export?acc=a&acc=b", "bad_request", 400),
    ("POST", "/admin/import?mode=merge&x=1", "bad_request", 400),
    ("GET", "/admin/accounts?x", "bad_request", 400),
    ("GET", "/admin/nothing", "not_found", 404),
    ("GET", "/admin", "not_found", 404),
])
def test_bad_admin_requests(client, method, path, code, status):
    assert_error(client.request(method, path), status, code)


def test_admin_get_routes_take_no_body(client):
    assert_error(client.request("GET", "/admin/accounts", b'{"x": 1}'), 400, "bad_request")
    assert_error(client.request("POST", "/admin/backup", b'{"x": 1}'), 400, "bad_request")
