"""GET /metrics against a real server over a socket: Prometheus text that
prometheus_client parses, counts that match the requests made, gauges that follow
locks, watchers and connections, and labels that never hold an account or a key."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdragon import __version__
from helpers import Raw, http_request, wait_for


def scrape(client) -> dict:
    r = client.get("/metrics")
    assert r.status == 200, r
    assert r.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    return {f.name: f for f in text_string_to_metric_families(r.body.decode("utf-8"))}, r.body.decode()


def value(families, name, sample=None, **labels):
    for s in families[name].samples:
        if (sample is None or s.name == sample) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


@pytest.fixture
def srv(server_factory):
    return server_factory()


def test_counts_durations_commits_and_labels(srv):
    c = srv.client()
    acc, key = "metricsacct", "secretkey"
    for i in range(5):
        assert c.put(f"/db/{acc}/kv/{key}", {"n": i}).status == 200
    for _ in range(3):
        assert c.get(f"/db/{acc}/kv/{key}").status == 200
    assert c.get(f"/no/such/{acc}/{key}").status == 404
    fams, text = scrape(c)
    kv = "/db/{acc}/kv/{key}"
    assert value(fams, "cdragon_requests", "cdragon_requests_total", route=kv, code="200") == 8
    assert value(fams, "cdragon_requests", "cdragon_requests_total", route="other", code="404") == 1
    assert value(fams, "cdragon_request_duration_seconds", "cdragon_request_duration_seconds_count", route=kv) == 8
    assert value(fams, "cdragon_request_duration_seconds", "cdragon_request_duration_seconds_bucket",
                 route=kv, le="+Inf") == 8
    assert value(fams, "cdragon_request_duration_seconds", "cdragon_request_duration_seconds_sum", route=kv) > 0
    assert value(fams, "cdragon_commits", "cdragon_commits_total") >= 1
    assert value(fams, "cdragon_commit_batch_ops", "cdragon_commit_batch_ops_count") >= 1
    assert value(fams, "cdragon_commit_batch_ops", "cdragon_commit_batch_ops_sum") == 5
    assert value(fams, "cdragon_fsync_duration_seconds", "cdragon_fsync_duration_seconds_count") >= 1
    assert "cdragon_checkpoint_duration_seconds" in fams
    assert value(fams, "cdragon_build_info", version=__version__) == 1
    assert value(fams, "cdragon_connections") >= 1
    assert value(fams, "cdragon_storage_bytes", part="data") > 0
    assert value(fams, "cdragon_storage_bytes", part="log") is not None
    assert value(fams, "cdragon_storage_limit_bytes") == 2 * 1024 ** 3
    assert "cdragon_auth_failures" in fams
    assert any(n.startswith("process_") for n in fams), sorted(fams)
    # route labels are templates: no account name or key anywhere in a label
    for f in fams.values():
        for s in f.samples:
            for v in s.labels.values():
                assert acc not in v and key not in v, s
    assert acc not in text and key not in text
    # the scrape itself is counted (by the next scrape)
    fams, _ = scrape(c)
    assert value(fams, "cdragon_requests", "cdragon_requests_total", route="/metrics", code="200") >= 1
    c.close()


def test_head_metrics(srv):
    c = srv.client()
    r = c.head("/metrics")
    assert r.status == 200 and r.body == b""
    assert r.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    assert int(r.header("Content-Length")) > 0
    assert c.post("/metrics", b"").status == 405
    c.close()


def test_gauges_follow_locks_waiters_watchers(srv):
    c = srv.client()
    fams, _ = scrape(c)
    assert value(fams, "cdragon_locks_held") == 0
    assert value(fams, "cdragon_watchers") == 0
    assert c.post("/db/gauges/lock/L").status == 200
    fams, _ = scrape(c)
    assert value(fams, "cdragon_locks_held") == 1
    # a waiter on the held lock, and a watcher on an unchanged key
    w = Raw(srv.port)
    w.send(http_request("POST", "/db/gauges/lock/L?wait=20", headers={"Content-Length": "0"}))
    v = c.put("/db/gauges/kv/k", 1).json["Version"]
    wt = Raw(srv.port)
    wt.send(http_request("POST", "/watch/gauges", {"ID": "k", "Version": v, "Timeout": 60}))
    assert wait_for(lambda: value(scrape(c)[0], "cdragon_watchers") == 1)
    fams, _ = scrape(c)
    assert value(fams, "cdragon_lock_waiters") == 1
    assert value(fams, "cdragon_connections") >= 3
    # the parked requests are counted once answered, under their route
    assert c.put("/db/gauges/kv/k", 2).status == 200
    assert wt.read_response().status == 200
    w.close()
    wt.close()
    assert wait_for(lambda: value(scrape(c)[0], "cdragon_lock_waiters") == 0)
    fams, _ = scrape(c)
    assert value(fams, "cdragon_watchers") == 0
    assert value(fams, "cdragon_requests", "cdragon_requests_total", route="/watch/{acc}", code="200") == 1
    assert value(fams, "cdragon_request_duration_seconds", "cdragon_request_duration_seconds_count",
                 route="/watch/{acc}") == 1
    c.close()
