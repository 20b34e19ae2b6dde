"""Logs of a real server: JSON lines, the access log (route templates, never the key
or the value), and text lines without a timestamp of their own under systemd."""
import json
import re
import time

from helpers import http_request


def log_lines(srv, want, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        lines = srv.log_path.read_text("utf-8", "replace").splitlines()
        if want(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_json_lines_and_access_log(server_factory):
    srv = server_factory(env={"CDRAGON_LOG_FORMAT": "json", "CDRAGON_ACCESS_LOG": "true"})
    c = srv.client()
    key, value = "topsecretkey", "hush-hush-value"
    assert c.put(f"/db/logacct/kv/{key}", value).status == 200
    assert c.get(f"/db/logacct/kv/{key}").status == 200
    assert c.get("/nowhere").status == 404
    lines = log_lines(srv, lambda ls: any('"other"' in l for l in ls))   # the readiness probe's /health first
    records = [json.loads(l) for l in lines if l.strip()]      # every line is JSON
    for r in records:
        assert {"time", "level", "message"} <= set(r), r
    assert any("serving on" in r["message"] for r in records)
    access = [r for r in records if r.get("logger") == "cdragon.access" and r["route"] != "/health"]
    assert [(r["method"], r["route"], r["status"]) for r in access] == [
        ("PUT", "/db/{acc}/kv/{key}", 200), ("GET", "/db/{acc}/kv/{key}", 200), ("GET", "other", 404)]
    for r in access:
        assert r["client"].startswith("127.0.0.1:") and r["token"] is None
        assert r["bytes"] > 0 and r["duration"] >= 0
    text = "\n".join(lines)
    assert key not in text and value not in text and "logacct" not in text
    c.close()


def test_no_access_log_by_default(server_factory):
    srv = server_factory(env={"CDRAGON_LOG_FORMAT": "json"})
    c = srv.client()
    assert c.put("/db/quiet/kv/k", 1).status == 200
    c.close()
    lines = log_lines(srv, lambda ls: False, timeout=0.3)
    assert not any("cdragon.access" in l for l in lines)


def test_text_without_timestamp_under_systemd(server_factory):
    srv = server_factory(env={"JOURNAL_STREAM": "8:12345", "CDRAGON_ACCESS_LOG": "1"})
    c = srv.client()
    assert c.get("/health").status == 200
    c.close()
    lines = log_lines(srv, lambda ls: any("cdragon.access" in l for l in ls))
    serving = [l for l in lines if "serving on" in l]
    assert serving and serving[0].startswith("INFO cdragon: "), lines
    access = [l for l in lines if "cdragon.access" in l]
    assert access and re.match(r"^INFO cdragon\.access: 127\.0\.0\.1:\d+ GET /health 200 \d+ [\d.]+$", access[0]), access
    assert not any(re.match(r"^\d{4}-\d\d-\d\d", l) for l in lines)


def test_text_has_timestamp_outside_systemd(server_factory):
    srv = server_factory()
    lines = log_lines(srv, lambda ls: any("serving on" in l for l in ls))
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO cdragon: ", [l for l in lines if "serving on" in l][0])


def test_bad_log_settings_refused(server_factory):
    from cdragon.config import ConfigError, load
    import pytest
    with pytest.raises(ConfigError, match="log_format"):
        load(env={"CDRAGON_LOG_FORMAT": "xml"})
    with pytest.raises(ConfigError, match="log_level"):
        load(env={"CDRAGON_LOG_LEVEL": "loud"})
    with pytest.raises(ConfigError, match="access_log"):
        load(env={"CDRAGON_ACCESS_LOG": "maybe"})
    assert load(env={"CDRAGON_ACCESS_LOG": "true"}).access_log is True
