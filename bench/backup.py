"""Backups: what a snapshot costs the writers, how long it and its upload take, and how
long a restore of it plus 1,000,000 shipped log records takes.

Server on CPU 0 (taskset; its snapshot child inherits that and runs niced), wrk, the
filler and moto's S3 server on CPU 1, data on the real disk (bench/out):
1. Fill BACKUP_BYTES (default 1 GiB) of values: 4,000-byte JSON strings of hex digits
   (about 2:1 under gzip), 200 keys a request.
2. Writers alone: wrk with bench/lua/kvset64.lua (400 connections, DURATION s).
3. A snapshot with the server idle: POST /admin/backup (snapshot + upload to moto),
   and the snapshot child alone (`cdragon _snapshot`, niced, on CPU 0) for its share.
4. Writers during a snapshot: the snapshot child (`cdragon _snapshot`, niced, CPU 0, as
   the server runs it) started, then the same wrk run; the throughput over the writers'
   alone (issue 14's target: >= 0.9x). The upload is left out of this one: moto runs on
   CPU 1 here, beside wrk, and would take the load generator's CPU, where a real S3 is
   another machine.
5. Restore: stop the server; replace the shipped log after the newest backup by
   1,000,000 records (real one-request records logged by a sequential client, repeated
   with new record numbers and distinct keys), then time `cdragon restore` from moto
   into an empty directory (on CPU 0).

    .venv/bin/python bench/backup.py           (several minutes at 1 GiB)
Prints a Markdown table; with --write, also puts it into bench/RESULTS.md (section
"backup"). Knobs: BACKUP_BYTES, DURATION (default 15), LOG_RECORDS (default 1000000),
ROUNDS (default 3 pairs of writers alone / beside a snapshot).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))
from list import report, request, wrk_p99  # noqa: E402  (the same harness as bench/list.py)
from ports import free_port  # noqa: E402

PY = str(REPO / ".venv" / "bin" / "python")
MOTO = str(REPO / ".venv" / "bin" / "moto_server")
SIZE = int(os.environ.get("BACKUP_BYTES", str(1 << 30)))
LOG_RECORDS = int(os.environ.get("LOG_RECORDS", "1000000"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
VALUE_CHARS = 4000
CREDS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def s3(endpoint):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench",
                        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                                      response_checksum_validation="when_required"))


def wait_port(port: int) -> None:
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def post(port: int, path: str, body: bytes = b"") -> dict:
    with socket.create_connection(("127.0.0.1", port)) as s:
        return json.loads(request(s, "POST", path, body))


def fill(port: int, nbytes: int) -> int:
    n = nbytes // (VALUE_CHARS + 40)
    with socket.create_connection(("127.0.0.1", port)) as s:
        for i in range(0, n, 200):
            ops = [{"Key": f"fill-{j:08d}", "Value": os.urandom(VALUE_CHARS // 2).hex()}
                   for j in range(i, min(n, i + 200))]
            request(s, "POST", "/db/fill", json.dumps({"KVSet": ops}).encode())
    return n


def metric(port: int, name: str) -> float:
    with socket.create_connection(("127.0.0.1", port)) as s:
        text = request(s, "GET", "/metrics").decode()
    m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1))


def synth_log(client, bucket: str, prefix: str, timeline: str, rev: int, count: int) -> int:
    """Replace the shipped log after `rev` by `count` records made from the real ones."""
    from cdragon import wal
    keys = [o["Key"] for p in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}/wal/{timeline}/") for o in p.get("Contents", [])]
    bodies = []
    for k in sorted(keys):
        data = client.get_object(Bucket=bucket, Key=k)["Body"].read()
        for lsn, raw in wal.read_raw(data):
            if lsn > rev:
                bodies.append(wal.decode_body(wal.split_record(raw)[2]))
    if keys:
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert bodies, "no shipped records after the backup"
    lsn, parts, size, objects = rev, [], 0, 0

    def flush():
        nonlocal parts, size, objects
        blob = b"".join(parts)
        first = lsn - len(parts) + 1
        sha = hashlib.sha256(blob).hexdigest()
        client.put_object(Bucket=bucket, Key=f"{prefix}/wal/{timeline}/{first:016d}-{lsn:016d}-{sha}.log", Body=blob)
        parts, size, objects = [], 0, objects + 1
    for i in range(count):
        ops = bodies[i % len(bodies)]
        round_ = i // len(bodies)
        ops = [(name, [(k + b"-%d" % round_ if name == b"kv" else k, v) for k, v in puts], list(dels))
               for name, puts, dels in ops]
        body = wal.wal_body(ops)
        lsn += 1
        rec = wal.HEADER.pack(len(body), wal._crc(lsn, lsn, body), lsn, lsn) + body
        parts.append(rec)
        size += len(rec)
        if size >= 64 << 20:
            flush()
    if parts:
        flush()
    return objects


def main() -> int:
    if shutil.which("wrk") is None:
        print("wrk is missing (apt-get install -y wrk)", file=sys.stderr)
        return 1
    duration = int(os.environ.get("DURATION", "15"))
    os.environ["DURATION"] = str(duration)
    (BENCH / "out").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=BENCH / "out", prefix="backup-"))
    mport, port = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_")}, **CREDS,
           "CDRAGON_BACKUP_S3_URL": "s3://bench/cd", "CDRAGON_BACKUP_S3_ENDPOINT": f"http://127.0.0.1:{mport}",
           "CDRAGON_BACKUP_SHIP_INTERVAL": "1", "CDRAGON_BACKUP_INTERVAL": "0",
           "CDRAGON_MAX_STORAGE_BYTES": str(max(4 << 30, SIZE * 4)), "PYTHONPATH": str(REPO)}
    moto = subprocess.Popen(["taskset", "-c", "1", MOTO, "-H", "127.0.0.1", "-p", str(mport)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv = None
    rows = []
    try:
        wait_port(mport)
        client = s3(f"http://127.0.0.1:{mport}")
        client.create_bucket(Bucket="bench")
        data = work / "data"
        srv = subprocess.Popen(["taskset", "-c", "0", PY, "-m", "cdragon", "serve", "--listen", f"127.0.0.1:{port}",
                                "--data-dir", str(data)], cwd=REPO, env=env,
                               stdout=open(work / "server.log", "wb"), stderr=subprocess.STDOUT)
        wait_port(port)
        os.sched_setaffinity(0, {1})
        t0 = time.monotonic()
        nkeys = fill(port, SIZE)
        fill_s = time.monotonic() - t0
        time.sleep(3)                                     # the last checkpoint
        used = metric(port, 'cdragon_storage_bytes{part="data"}')
        rows += ["| what | measured |", "|---|---|",
                 f"| data: {nkeys:,} keys of {VALUE_CHARS:,}-char values | {used / 2**20:,.0f} MiB of LMDB pages "
                 f"(filled in {fill_s:.0f} s) |"]
        alone = wrk_p99(port)
        t0 = time.monotonic()
        idle = post(port, "/admin/backup")
        idle_s = time.monotonic() - t0
        t0 = time.monotonic()
        subprocess.run(["taskset", "-c", "0", PY, "-m", "cdragon", "_snapshot", "--data-dir", str(data),
                        "--dir", str(work / "snap")], cwd=REPO, env=env, capture_output=True, check=True)
        snap_s = time.monotonic() - t0
        shutil.rmtree(work / "snap", ignore_errors=True)
        rows.append(f"| snapshot + upload to moto, server idle (POST /admin/backup) | {idle_s:.1f} s "
                    f"({idle['Bytes'] / 2**20:,.0f} MiB file) |")
        rows.append(f"| ... the snapshot child alone (niced, CPU 0) | {snap_s:.1f} s |")
        # the writers beside the snapshot child alone (as the server runs it, minus the
        # upload: moto shares CPU 1 with wrk here, where a real S3 is another machine);
        # ROUNDS pairs of (alone, beside a snapshot), alternating: the machine drifts
        pairs = []
        for r in range(ROUNDS):
            alone = alone if r == 0 else wrk_p99(port)
            t0 = time.monotonic()
            child = subprocess.Popen(["taskset", "-c", "0", PY, "-m", "cdragon", "_snapshot", "--data-dir",
                                      str(data), "--dir", str(work / "snap2")], cwd=REPO, env=env,
                                     stdout=subprocess.DEVNULL)
            time.sleep(0.2)
            t_w = time.monotonic()
            busy = wrk_p99(port)
            wrk_s = time.monotonic() - t_w
            child.wait()
            child_s = time.monotonic() - t0
            shutil.rmtree(work / "snap2", ignore_errors=True)
            pairs.append((alone, busy, min(1.0, (child_s - 0.2) / wrk_s), child_s))
        for alone, busy, overlap, child_s in pairs:
            rows.append(f"| writers alone (kvset64, 400 connections, {duration} s) | {alone[0]:,.0f} req/s, "
                        f"p99 {alone[1]:.2f} ms |")
            rows.append(f"| writers during a snapshot ({overlap:.0%} of the run overlapped it; the snapshot "
                        f"took {child_s:.1f} s) | {busy[0]:,.0f} req/s, p99 {busy[1]:.2f} ms: "
                        f"{busy[0] / alone[0]:.2f}x the throughput alone |")
        ratios = sorted(b[0] / a[0] for a, b, _o, _c in pairs)
        rows.append(f"| median ratio over {ROUNDS} rounds | {statistics.median(ratios):.2f}x |")
        during = {"out": post(port, "/admin/backup")}     # the backup the restore below starts from
        if not LOG_RECORDS:              # a quick run without the restore: not reported
            print("\n".join(rows))
            return 0
        rev, name = during["out"]["Rev"], during["out"]["Name"]
        timeline = name.split("-")[1]
        # real one-request records after that backup: a sequential client
        with socket.create_connection(("127.0.0.1", port)) as s:
            for i in range(2000):
                request(s, "POST", "/db/logbench", json.dumps(
                    {"KVSet": [{"Key": f"r{i:05d}", "Value": "v" * 62}]}).encode())
        time.sleep(3)                                     # shipped
        srv.send_signal(signal.SIGTERM)
        srv.wait(timeout=120)
        srv = None
        objects = synth_log(client, "bench", "cd", timeline, rev, LOG_RECORDS)
        dest = work / "restored"
        t0 = time.monotonic()
        p = subprocess.run(["taskset", "-c", "0", PY, "-m", "cdragon", "restore", "--data-dir", str(dest)],
                           cwd=REPO, env=env, capture_output=True, text=True)
        restore_s = time.monotonic() - t0
        if p.returncode != 0:
            raise RuntimeError(f"restore failed: {p.stderr}")
        rows.append(f"| restore: that backup + {LOG_RECORDS:,} shipped log records ({objects} objects) from moto "
                    f"| {restore_s:.1f} s |")
        print(p.stdout.strip().splitlines()[-1], file=sys.stderr)
    finally:
        if srv is not None:
            srv.kill()
        moto.kill()
        moto.wait()
        shutil.rmtree(work, ignore_errors=True)
    report(rows, "backup", "Backups", "bench/backup.py",
           "Server (and its niced snapshot child) on CPU 0; wrk, the filler and moto's S3 server on CPU 1; "
           f"data on the real disk. {SIZE / 2**30:.2f} GiB asked for (BACKUP_BYTES). The machine may be shared: "
           "the writers' rate can drift between rounds, so compare the two rows of one round.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
