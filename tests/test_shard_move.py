"""`cdragon shard move` (API.md "Several instances behind HAProxy"): an account moves
from one instance to another behind the real HAProxy while a writer keeps writing to
it through HAProxy. Every acknowledged write is on the target, nothing of the account
stays on the source, held locks keep their handles, and the source answers a request
still sent to it `503 moving`."""
from __future__ import annotations

import json
import threading
import time

from helpers import assert_error
from test_haproxy import accounts_on, cdragon, start_cluster


def move(hap, acc: str, to: str, *extra):
    return cdragon("shard", "move", acc, "--to", to, *hap.server_args(), "--pins", hap.pins,
                   "--socket", hap.socket, *extra)


def test_move_under_a_writer_loses_nothing_and_leaves_no_copy(tmp_path):
    servers, hap = start_cluster(tmp_path, 2)
    hap.start()
    try:
        acc, other = accounts_on(2, 2, "mv")          # acc hashes to n0, other to n1
        c = hap.client()
        c.db_ok(acc, {"KVSet": [{"Key": f"k{i}", "Value": i} for i in range(200)],
                      "Atomic": [{"Key": "n", "Add": 0}], "Seq": [{"Key": "s", "Count": 5}]})
        held = c.db_ok(acc, {"LockID": "job", "LockDur": 120})["Lock"]
        c.db_ok(other, {"KVSet": [{"Key": "stay", "Value": 1}]})
        acked, refused = [0], [0]
        stop = threading.Event()

        def writer():
            w = hap.client()
            while not stop.is_set():
                r = w.request("POST", f"/db/{acc}/counter/n?add=1")
                if r.status == 200:
                    acked[0] += 1
                else:
                    assert_error(r, 503, "moving")
                    assert r.header("Retry-After") == "1"
                    refused[0] += 1
                    time.sleep(0.05)
            w.close()
        t = threading.Thread(target=writer)
        t.start()
        time.sleep(0.5)
        out = move(hap, acc, "n1")
        assert out.returncode == 0, out.stdout + out.stderr
        time.sleep(0.5)                                  # the writer goes on, now on n1
        stop.set()
        t.join(30)
        assert acked[0] > 0
        # every acknowledged add is on the target, once
        direct = [s.client() for s in servers]
        assert direct[1].get(f"/db/{acc}/counter/n").json["Value"] == acked[0]
        assert len(direct[1].get(f"/db/{acc}/kv?limit=1000").json["KV"]) == 200
        assert direct[1].get(f"/db/{acc}/sequence/s").json["Value"] == 5
        # the held lock kept its handle (it unlocks there); a new one is above it
        assert direct[1].get(f"/db/{acc}/lock/job").json["Locked"] is True
        c.db_ok(acc, {"UnlockID": "job", "Unlock": held})
        assert direct[1].get(f"/db/{acc}/lock/job").json["Locked"] is False
        assert c.db_ok(acc, {"LockID": "job", "LockDur": 5})["Lock"] > held
        # nothing of it on the source, which answers a stale request 503 moving
        names0 = [a["Account"] for a in direct[0].get("/admin/accounts").json["Accounts"]]
        assert acc not in names0
        assert_error(direct[0].request("PUT", f"/db/{acc}/kv/x", b"1"), 503, "moving")
        # HAProxy routes it to n1 from now on; the other account did not move
        assert c.request("PUT", f"/db/{acc}/kv/after", b"1").status == 200
        assert direct[1].get(f"/db/{acc}/kv/after").json["Value"] == 1
        assert direct[1].get(f"/db/{other}/kv/stay").json["Value"] == 1
        assert hap.home(acc) == 1
        for d in direct:
            d.close()
        c.close()
        # moving it back works too (the old source thaws it, the purge happens on n1)
        out = move(hap, acc, "n0")
        assert out.returncode == 0, out.stdout + out.stderr
        c = hap.client()
        assert c.get(f"/db/{acc}/counter/n").json["Value"] == acked[0]
        assert c.request("POST", f"/db/{acc}/counter/n?add=1").status == 200
        c.close()
    finally:
        hap.stop()
        for s in servers:
            s.kill()


def test_move_of_an_empty_account_only_pins_it_and_bad_input_is_refused(tmp_path):
    servers, hap = start_cluster(tmp_path, 2)
    try:
        acc = accounts_on(2, 1, "fresh")[0]              # hashes to n0, holds nothing
        out = move(hap, acc, "n1")                        # no HAProxy running: the file only
        assert out.returncode == 0, out.stderr
        assert "only pinning" in out.stdout and hap.home(acc) == 1
        bad = move(hap, acc, "n7")
        assert bad.returncode == 1 and "no --server of that name" in bad.stderr
        bad = move(hap, "not an account", "n1")
        assert bad.returncode == 2 and "not an account name" in bad.stderr
        for s in servers:
            c = s.client()
            assert json.loads(c.get("/admin/freeze").body)["Frozen"] == []
            c.close()
    finally:
        for s in servers:
            s.kill()
