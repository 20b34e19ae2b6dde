"""bench/qload.c, the queue benchmark's C load generator, against the real server: it
compiles without warnings, and what it says it did (the totals on stderr, the rate on
stdout) agrees with what the server counted (queue stats, /metrics). An error answer
ends it with status 1 and the answer on stderr. Timing decides nothing here: the runs
are short and only their counts are checked.
"""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from helpers import REPO

SRC = REPO / "bench" / "qload.c"


@pytest.fixture(scope="module")
def qload(tmp_path_factory):
    exe = tmp_path_factory.mktemp("qload") / "qload"
    p = subprocess.run(["cc", "-O2", "-Wall", "-o", str(exe), str(SRC)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr      # warnings-free
    return exe


def run(exe, port, *args):
    p = subprocess.run([str(exe), "--proto", "http", "--port", str(port), *args],
                       capture_output=True, text=True, timeout=60)
    return p


def results(p):
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    m = re.search(r"^qload: totals (\{.*\})$", p.stderr, re.M)
    assert m, p.stderr
    return out, json.loads(m.group(1))


def requests_by_route(client) -> dict:
    text = client.get("/metrics").body.decode()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r'^cdragon_requests_total\{code="200",route="([^"]+)"\} (\S+)$', text, re.M)}


def queue_totals(client, acc, nqueues):
    tot = {"Ready": 0, "Delayed": 0, "InFlight": 0}
    for i in range(nqueues):
        r = client.get(f"/db/{acc}/queue/q{i}")
        assert r.status == 200, r
        for k in tot:
            tot[k] += r.json[k]
    return tot


def check_window(out, counted):
    assert 0 < out["ops"] <= counted
    assert out["seconds"] > 0
    assert out["rate"] == pytest.approx(out["ops"] / out["seconds"], rel=1e-3, abs=0.1)
    assert 0 <= out["client_cpu"] < 2


def test_cycle_counts_match_the_server(qload, server_factory):
    srv = server_factory()
    c = srv.client()
    out, t = results(run(qload, srv.port, "--mode", "cycle", "--conns", "8", "--queues", "3",
                         "--duration", "1", "--warmup", "0.3", "--acc", "qc"))
    # every step finished before qload exited (it drains): each pushed message was
    # received by someone and acked, none is left ready or in flight
    assert t["in_flight"] == 0
    assert t["pushes"] == t["received"] + t["empty"] and t["acks"] == t["received"]
    assert t["acks"] > 0
    check_window(out, t["acks"])
    reqs = requests_by_route(c)
    assert reqs["/queue/{acc}"] == t["received"] + t["empty"]
    assert reqs["/db/{acc}/queue/{key}"] == t["pushes"] + t["acks"]
    assert queue_totals(c, "qc", 3) == {"Ready": t["pushes"] - t["acks"], "Delayed": 0, "InFlight": 0}


def test_push_counts_match_the_server(qload, server_factory):
    srv = server_factory()
    c = srv.client()
    out, t = results(run(qload, srv.port, "--mode", "push", "--conns", "20", "--queues", "4",
                         "--duration", "0.5", "--warmup", "0.2", "--acc", "qp"))
    assert t["received"] == t["empty"] == t["acks"] == t["in_flight"] == 0
    check_window(out, t["pushes"])
    assert requests_by_route(c)["/db/{acc}/queue/{key}"] == t["pushes"]
    assert queue_totals(c, "qp", 4) == {"Ready": t["pushes"], "Delayed": 0, "InFlight": 0}
    # connection k's n-th push goes to q{(k + n*conns) % queues}: here connection k
    # always to q{k % 4}, five connections to each queue
    assert all(c.get(f"/db/qp/queue/q{i}").json["Ready"] > 0 for i in range(4))


def test_an_error_answer_ends_the_run(qload, server):
    p = run(qload, server.port, "--mode", "push", "--conns", "2", "--duration", "1", "--acc", "bad%zz")
    assert p.returncode == 1 and p.stdout == ""
    assert "status not 200" in p.stderr and '"Code":"bad_account"' in p.stderr, p.stderr
