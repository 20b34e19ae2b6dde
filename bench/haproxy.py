"""What HAProxy in front costs, and what a second instance behind it gives on this
machine (issue 15; docs/SCALE-OUT.md has the reasoning for N cores and N hosts).

    .venv/bin/python bench/haproxy.py      # DURATION=10 CONNECTIONS=400 LIGHT=4

Three loads per set-up, wrk with one of 1,000 accounts a request: writes
(bench/lua/accounts_add.lua, an atomic add, fsynced before its answer) and reads
(bench/lua/accounts_get.lua, a counter GET: no disk, so the proxy's own time shows) on
CONNECTIONS connections (saturating), and reads on LIGHT connections (the latency a
request sees when nothing queues). Four set-ups, one after the other in the same run:
  direct      1 instance on CPU 0; wrk on CPU 1
  haproxy-1   the same instance behind HAProxy; HAProxy and wrk share CPU 1
  shared-1    1 instance behind HAProxy; instance, HAProxy and wrk unpinned (2 cores)
  shared-2    2 instances behind HAProxy; all unpinned on the same 2 cores
direct vs haproxy-1 is the cost HAProxy adds per request; shared-1 vs shared-2 is what
a second instance gives when the load generator and HAProxy use the same cores (on
2 cores it cannot show scale-out: see the section's text). HAProxy runs the config of
`cdragon haproxy-config`. Writes the "haproxy" section of bench/RESULTS.md.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ports import free_port               # noqa: E402
from sections import replace_section      # noqa: E402
# the same paths, DURATION and CONNECTIONS knobs, stop and wrk parsing as bench/tls.py
from tls import BENCH, CONNECTIONS, DURATION, PY, REPO, stop, wrk_summary   # noqa: E402

LIGHT = int(os.environ.get("LIGHT", "4"))
LOADS = [("write", "accounts_add.lua", CONNECTIONS), ("read", "accounts_get.lua", CONNECTIONS),
         ("light", "accounts_get.lua", LIGHT)]


def _wait_http(port: int, path: str, proc: subprocess.Popen, what: str) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer on {port}")


def _taskset(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus else []


class Setup:
    """Instances (and HAProxy in front of them, unless direct) started for one row."""

    def __init__(self, work: Path, n: int, server_cpus: list[str | None], haproxy_cpu: str | None,
                 direct: bool):
        self.procs: list[subprocess.Popen] = []
        self.dirs = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDRAGON_")}
        ports = []
        for i in range(n):
            port = free_port()
            d = tempfile.mkdtemp(dir=work, prefix="haproxy-bench-")
            self.dirs.append(d)
            p = subprocess.Popen(_taskset(server_cpus[i]) + [PY, "-m", "cdragon", "serve", "--listen",
                                 f"127.0.0.1:{port}", "--data-dir", d], cwd=REPO, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append(p)
            _wait_http(port, "/health", p, "cdragon")
            ports.append(port)
        if direct:
            self.port = ports[0]
            return
        self.port = free_port()
        d = Path(tempfile.mkdtemp(dir=work, prefix="haproxy-cfg-"))
        self.dirs.append(str(d))
        args = [a for i, p in enumerate(ports) for a in ("--server", f"n{i}=127.0.0.1:{p}")]
        cfg = subprocess.run([PY, "-m", "cdragon", "haproxy-config", *args, "--bind",
                              f"127.0.0.1:{self.port}", "--pins", str(d / "pins.map"),
                              "--socket", str(d / "haproxy.sock")],
                             cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
        (d / "haproxy.cfg").write_text(cfg)
        hap = subprocess.Popen(_taskset(haproxy_cpu) + ["haproxy", "-db", "-f", str(d / "haproxy.cfg")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(hap)
        _wait_http(self.port, "/ready", hap, "haproxy")
        time.sleep(2.5)      # every instance's first health checks passed (inter 1s, rise 2)

    def close(self):
        for p in reversed(self.procs):
            stop(p)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


def wrk(port: int, cpu: str | None, script: str, connections: int) -> dict:
    cmd = _taskset(cpu) + ["wrk", "-t1", f"-c{connections}", f"-d{DURATION}s", "--timeout", "5s",
                           "-s", str(BENCH / "lua" / script), f"http://127.0.0.1:{port}/"]
    return wrk_summary(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


SETUPS = [
    # name, what, instances, instance CPUs, HAProxy CPU, wrk CPU, direct
    ("direct", "1 instance, direct (instance CPU 0, wrk CPU 1)", 1, ["0"], None, "1", True),
    ("haproxy-1", "1 instance via HAProxy (instance CPU 0, HAProxy + wrk CPU 1)", 1, ["0"], "1", "1", False),
    ("shared-1", "1 instance via HAProxy, all unpinned on 2 cores", 1, [None], None, None, False),
    ("shared-2", "2 instances via HAProxy, all unpinned on 2 cores", 2, [None, None], None, None, False),
]


def main() -> int:
    for tool in ("wrk", "haproxy", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing (apt-get install -y wrk haproxy util-linux)", file=sys.stderr)
            return 1
    work = BENCH / "out"
    work.mkdir(exist_ok=True)
    busy = os.getloadavg()[0]        # the machine is shared: say how busy it was
    rows = []
    for name, what, n, cpus, hcpu, wcpu, direct in SETUPS:
        setup = Setup(work, n, cpus, hcpu, direct)
        try:
            res = {load: wrk(setup.port, wcpu, script, conns) for load, script, conns in LOADS}
        finally:
            setup.close()
        rows.append((name, what, res))
        print(f"{name:10} " + " | ".join(
            f"{load} {r['rps']:>7,.0f} req/s p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} ms"
            + (f" {r['errors']}" if r["errors"] else "") for load, r in res.items()), flush=True)
    write_section(rows, busy)
    return 0


def write_section(rows, busy: float) -> None:
    hv = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    by = {r[0]: r for r in rows}
    lines = [
        "## HAProxy in front (bench/haproxy.py)",
        "",
        f"`.venv/bin/python bench/haproxy.py` on {time.strftime('%Y-%m-%d')}, {hv.split(' - ')[0]} "
        f"with the config of `cdragon haproxy-config`, wrk with one of 1,000 accounts a request, "
        f"{DURATION} s per cell: writes (an atomic add, fsynced before its answer) and reads (a "
        f"counter GET) on {CONNECTIONS} connections, reads on {LIGHT} connections; "
        f"{os.cpu_count()} cores, a shared machine (1-minute load average {busy:.1f} when the run "
        "began: other work competes for the same cores, and the rows are taken one after the other).",
        "",
        f"| set-up | writes req/s | p50 ms | p99 ms | reads req/s | p50 ms | p99 ms "
        f"| {LIGHT} conns: reads req/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, what, res in rows:
        errs = {f"{k} {e}": v for k, r in res.items() for e, v in r["errors"].items()}
        cells = " | ".join(f"{r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f}" for r in res.values())
        lines.append(f"| {what}{' (errors: ' + str(errs) + ')' if errs else ''} | {cells} |")
    d, h1, s1, s2 = (by[k][2] for k in ("direct", "haproxy-1", "shared-1", "shared-2"))

    def change(a, b):
        return f"{a['rps']:,.0f} -> {b['rps']:,.0f} req/s ({100 * (b['rps'] / a['rps'] - 1):+.0f}%)"

    lines += [
        "",
        f"- HAProxy's cost per request (direct vs haproxy-1): reads on {LIGHT} connections, p50 "
        f"{d['light']['p50_ms']:.2f} -> {h1['light']['p50_ms']:.2f} ms "
        f"({(h1['light']['p50_ms'] - d['light']['p50_ms']) * 1000:+.0f} us), p99 "
        f"{d['light']['p99_ms']:.2f} -> {h1['light']['p99_ms']:.2f} ms; saturated, with HAProxy "
        f"on the load generator's core: reads {change(d['read'], h1['read'])}, writes "
        f"{change(d['write'], h1['write'])}. HAProxy reuses its connections to the instance (one "
        "per client connection, not one per request), so what caps haproxy-1 is CPU: HAProxy and "
        "wrk together on one core carry fewer requests than the instance answers on its own "
        "core. Per small request, HAProxy costs about as much CPU as the instance, or more.",
        f"- 2 instances vs 1 behind HAProxy, wrk and HAProxy on the same 2 cores (shared-1 vs "
        f"shared-2): reads {change(s1['read'], s2['read'])}, writes {change(s1['write'], s2['write'])}. "
        "Here the second instance competes with HAProxy and wrk for the same 2 cores, so this is "
        "no scale-out figure; it shows what splitting the accounts costs or gives on this "
        "machine. With a core per instance and HAProxy and the clients elsewhere, each instance "
        "adds about one `direct` row until HAProxy's own core or the network is full "
        "(docs/SCALE-OUT.md).",
    ]
    replace_section(BENCH / "RESULTS.md", "haproxy", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
