"""Time from exec to the first successful GET /health, N runs, for the numbers in
packaging/README.md:

    .venv/bin/python packaging/measure_startup.py dist/cdragon             # the binary
    .venv/bin/python packaging/measure_startup.py .venv/bin/python -m cdragon

Each run gets a fresh data dir and a free port, polls /health every 5 ms, then waits for
READY=1 on a $NOTIFY_SOCKET and stops the server with SIGTERM (and checks it exits 0).
"""
from __future__ import annotations

import http.client
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    """A free port below the ephemeral range, where other programs' port-0 binds and
    client sockets do not land."""
    while True:
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def health(port: int) -> bool:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/health")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False


def one_run(cmd: list[str], timeout: float = 30.0) -> float:
    port = free_port()
    # READY=1 before SIGTERM: /health can answer a moment before the SIGTERM handler is
    # live, and a SIGTERM in that moment kills or is lost (see packaging/README.md)
    ready = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"cdragon-measure-{os.getpid()}-{port}"
    ready.bind("\0" + name)
    ready.settimeout(timeout)
    with tempfile.TemporaryDirectory() as d, ready:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_")}
        env["NOTIFY_SOCKET"] = "@" + name
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd + ["serve", "--listen", f"127.0.0.1:{port}", "--data-dir", d],
                             env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            while not health(port):
                if p.poll() is not None or time.perf_counter() - t0 > timeout:
                    raise RuntimeError(f"server did not answer /health (exit {p.poll()})")
                time.sleep(0.005)
            elapsed = time.perf_counter() - t0
            ready.recv(4096)
            p.terminate()
            rc = p.wait(timeout=30)
            if rc != 0:
                raise RuntimeError(f"exit code {rc} after SIGTERM")
            return elapsed
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)


def main() -> int:
    cmd = sys.argv[1:] or ["dist/cdragon"]
    runs = int(os.environ.get("RUNS", "10"))
    one_run(cmd)  # warm the page cache
    times = sorted(one_run(cmd) for _ in range(runs))
    print(f"{' '.join(cmd)}: exec -> first /health 200, {runs} runs: "
          f"median {statistics.median(times) * 1000:.0f} ms, min {times[0] * 1000:.0f} ms, "
          f"max {times[-1] * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
