"""Atomic add over TLS: cdragon serving HTTPS next to Redis serving TLS, same run.

    .venv/bin/python bench/tls.py          # DURATION=10 CONNECTIONS=400 by default

Both servers on CPU 0 (taskset), their load generators on CPU 1, data on the real disk
(bench/out), every write durable before its answer: cdragon's write-ahead log, Redis
with `--appendonly yes --appendfsync always`. cdragon: wrk over https with
bench/lua/atomic_add.lua (add 1 to one of 1,000 counters a request). Redis:
redis-benchmark --tls -t incr -r 1000 (INCR on one of 1,000 keys). A throwaway CA and
server certificate are made with the openssl command in a temporary directory. Prints
one table: requests/s, p50 and p99 of each, and the ratio cdragon/Redis.

redis-server must be built with TLS (Debian's is); `apt-get install -y redis-server
redis-tools` if it is missing.
"""
from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PY = str(REPO / ".venv" / "bin" / "python")
sys.path.insert(0, str(BENCH))

from ports import free_port     # noqa: E402

DURATION = int(os.environ.get("DURATION", "10"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "400"))
SERVER_CPU, CLIENT_CPU = "0", "1"


def make_certs(d: Path) -> dict:
    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "1", "-subj", "/CN=bench CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "7",
        "-days", "1", "-extfile", "ext", "-out", "server.pem")
    return {k: str(d / f) for k, f in (("ca", "ca.pem"), ("cert", "server.pem"), ("key", "server.key"))}


def wait_tls(port: int, ca: str, what: str, proc: subprocess.Popen) -> None:
    ctx = ssl.create_default_context(cafile=ca)
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                with ctx.wrap_socket(s, server_hostname="127.0.0.1"):
                    return
        except (OSError, ssl.SSLError):
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer over TLS on {port}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def bench_cdragon(certs: dict, out: Path) -> dict:
    data = tempfile.mkdtemp(dir=out, prefix="tls-cdragon-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_")}
    env.update(CDRAGON_TLS_CERT_FILE=certs["cert"], CDRAGON_TLS_KEY_FILE=certs["key"])
    srv = subprocess.Popen(["taskset", "-c", SERVER_CPU, PY, "-m", "cdragon", "serve",
                            "--listen", f"127.0.0.1:{port}", "--data-dir", data],
                           cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_tls(port, certs["ca"], "cdragon", srv)
        cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION}s",
               "--timeout", "2s", "-s", str(BENCH / "lua" / "atomic_add.lua"), f"https://127.0.0.1:{port}/"]
        text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        stop(srv)
        shutil.rmtree(data, ignore_errors=True)
    return wrk_summary(text)


def wrk_summary(text: str) -> dict:
    """requests/s, p50 and p99 (ms) and the non-zero error counts of wrk's BENCH_RESULT
    line (bench/lua/result.lua); also used by bench/haproxy.py."""
    m = re.search(r"BENCH_RESULT .*", text)
    if not m:
        raise RuntimeError(f"wrk printed no BENCH_RESULT line:\n{text[-800:]}")
    f = dict(kv.split("=", 1) for kv in m.group(0).split()[1:])
    bad = {k: f[k] for k in ("non2xx", "connect", "read", "write", "timeout") if f.get(k, "0") != "0"}
    return {"rps": float(f["rps"]), "p50_ms": int(f["p50_us"]) / 1000, "p99_ms": int(f["p99_us"]) / 1000,
            "errors": bad}


def bench_redis(certs: dict, out: Path) -> dict:
    data = tempfile.mkdtemp(dir=out, prefix="tls-redis-")
    port = free_port()
    srv = subprocess.Popen(["taskset", "-c", SERVER_CPU, "redis-server", "--port", "0",
                            "--tls-port", str(port), "--bind", "127.0.0.1",
                            "--tls-cert-file", certs["cert"], "--tls-key-file", certs["key"],
                            "--tls-ca-cert-file", certs["ca"], "--tls-auth-clients", "no",
                            "--dir", data, "--appendonly", "yes", "--appendfsync", "always",
                            "--save", "", "--daemonize", "no", "--protected-mode", "no",
                            "--maxclients", "20000", "--logfile", ""],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_tls(port, certs["ca"], "redis-server", srv)
        base = ["taskset", "-c", CLIENT_CPU, "redis-benchmark", "--tls", "--cacert", certs["ca"],
                "-h", "127.0.0.1", "-p", str(port), "-c", str(CONNECTIONS), "-r", "1000", "-t", "incr"]
        # a short run sizes -n so that the measured run lasts about DURATION seconds
        probe = subprocess.run(base + ["-n", "20000", "--csv"], capture_output=True, text=True, check=True).stdout
        n = max(20000, int(_csv(probe)[1] * DURATION))
        row = _csv(subprocess.run(base + ["-n", str(n), "--csv"], capture_output=True, text=True,
                                  check=True).stdout)
    finally:
        stop(srv)
        shutil.rmtree(data, ignore_errors=True)
    return {"rps": row[1], "p50_ms": row[4], "p99_ms": row[6], "errors": {}}


def _csv(text: str) -> list:
    lines = [ln for ln in text.splitlines() if ln.startswith('"') and not ln.startswith('"test"')]
    if not lines:
        raise RuntimeError(f"redis-benchmark printed no CSV line:\n{text[-800:]}")
    f = next(csv.reader([lines[-1]]))
    return [f[0]] + [float(x) for x in f[1:]]


def main() -> int:
    for tool in ("openssl", "wrk", "redis-server", "redis-benchmark", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing (apt-get install -y openssl wrk redis-server redis-tools)",
                  file=sys.stderr)
            return 1
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    (BENCH / "out").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cdragon-tls-bench-") as d:
        certs = make_certs(Path(d))
        cd = bench_cdragon(certs, BENCH / "out")
        rd = bench_redis(certs, BENCH / "out")
    print(f"atomic add over TLS, {CONNECTIONS} connections, {DURATION} s each, servers on CPU "
          f"{SERVER_CPU}, clients on CPU {CLIENT_CPU}, every write fsynced before its answer")
    print(f"{'':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'cdragon (wrk https, Atomic Add)':34} {cd['rps']:>9,.0f} {cd['p50_ms']:>8.2f} {cd['p99_ms']:>8.2f}")
    print(f"{'redis (redis-benchmark --tls INCR)':34} {rd['rps']:>9,.0f} {rd['p50_ms']:>8.2f} {rd['p99_ms']:>8.2f}")
    print(f"cdragon / redis: {cd['rps'] / rd['rps']:.2f}x the requests/s"
          f" ({version.split(' sha=')[0]}, {ssl.OPENSSL_VERSION})")
    if cd["errors"]:
        print(f"cdragon errors: {cd['errors']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
