"""One measurement of the full suite: run the load generator (wrk, redis-benchmark, the
Redis lock client) pinned to CLIENT_CPU against a fresh server, and collect around the
measured run the server's CPU, the two pinned cores' busy time, other processes' CPU
(interference), peak RSS, latency, errors and cdragon's commit batch. Also the watch
rows, run through bench/watch_reaction.py.

Never writes bench/RESULTS.md or bench/results.json (bench/suite_report.py does).
"""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from knobs import BENCH, CLIENT_CPU, CONNECTIONS, DURATION, LUA, PY, REPO, SERVER_CPU, SYSTEMS, \
    WARMUP, WATCH_TIMEOUT, WRK_TIMEOUT, log
from rows import Row, redis_command
from systems import Server, etcd_lease, redis_cmd, redis_info

# ---- CPU and memory of processes and cores, from /proc

def proc_ticks(pid: int) -> int | None:
    """CPU ticks of a server: its own, its reaped children's and its live children's (Redis
    forks to rewrite its AOF: that work is Redis', not someone else's)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    f = stat.rsplit(")", 1)[1].split()
    ticks = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])   # utime stime cutime cstime
    for child in children_of(pid):
        try:
            c = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(c[11]) + int(c[12])
        except OSError:
            pass
    return ticks


def thread_ticks(pid: int) -> dict[int, tuple[str, int, int]]:
    """Per thread of a server: tid -> (name, user ticks, kernel ticks). cdragon names its
    background threads in the OS (cdragon/osthread.py); its event loop is the main thread."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        f = stat.rsplit(")", 1)[1].split()
        out[int(tid)] = ("main" if int(tid) == pid else name, int(f[11]), int(f[12]))
    return out


def cpu_per_request(before: dict, after: dict, requests: int) -> dict:
    """{thread name: [user µs, kernel µs] per request} over a run (threads of one name
    summed; only threads that used CPU), plus "total"."""
    clk = os.sysconf("SC_CLK_TCK")
    per: dict[str, list[float]] = {}
    for tid, (name, u1, s1) in after.items():
        _, u0, s0 = before.get(tid, (name, 0, 0))
        if u1 - u0 or s1 - s0:
            acc = per.setdefault(name, [0.0, 0.0])
            acc[0] += (u1 - u0) / clk * 1e6 / requests
            acc[1] += (s1 - s0) / clk * 1e6 / requests
    per["total"] = [sum(v[0] for v in per.values()), sum(v[1] for v in per.values())]
    return {k: [round(v[0], 2), round(v[1], 2)] for k, v in per.items()}


def children_of(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def core_ticks(cpu: int) -> tuple[int, int, int]:
    """(busy, steal, total) ticks of one CPU since boot; busy = not idle, iowait, steal."""
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f[0] == f"cpu{cpu}":
            v = [int(x) for x in f[1:9]]
            total = sum(v)
            return total - v[3] - v[4] - v[7], v[7], total
    return 0, 0, 0


def pct(a: tuple, b: tuple, i: int) -> float:
    d = b[2] - a[2]
    return 100.0 * (b[i] - a[i]) / d if d > 0 else 0.0


def others_ticks(exclude: set[int]) -> dict[int, int]:
    """CPU ticks so far of every process but this one, its children and `exclude`: what
    else ran on this shared machine during a measurement."""
    me = os.getpid()
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        if pid == me or pid in exclude:
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        f = stat.rsplit(")", 1)[1].split()
        if int(f[1]) in (me, 2) or pid == 2:   # a load generator this run started; kernel threads
            continue                              # (they also do this run's own disk writes)
        if int(f[1]) in exclude:                  # a server's own child (Redis' AOF rewrite)
            continue
        out[pid] = int(f[11]) + int(f[12])
    return out


def others_pct(before: dict[int, int], after: dict[int, int], secs: float) -> float:
    ticks = sum(t - before.get(pid, 0) for pid, t in after.items() if t >= before.get(pid, 0))
    return 100.0 * ticks / os.sysconf("SC_CLK_TCK") / secs


def vm_kb(pid: int, key: str = "VmHWM") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


# ---- load generators

def parse_bench_result(text: str) -> dict:
    out: dict = {}
    for line in text.splitlines():
        if line.startswith("BENCH_RESULT "):
            for kv in line.split()[1:]:
                k, _, v = kv.partition("=")
                out[k] = float(v)
        elif line.startswith("BENCH_FIRST_NON2XX "):
            out.setdefault("first_bad", line[len("BENCH_FIRST_NON2XX "):][:200])
    return out


def client_cmd(cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(CLIENT_CPU), *cmd]


def run_client(cmd: list[str], secs: float, log_path: Path) -> tuple[str, float]:
    """Run a load generator pinned to CLIENT_CPU, bounded in time. Returns (stdout+stderr,
    the client's CPU seconds)."""
    t0 = os.times()
    try:
        p = subprocess.run(client_cmd(cmd), cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=secs + 60)
    except subprocess.TimeoutExpired as e:
        out = (e.output or b"").decode(errors="replace")
        log_path.write_text(out)
        raise RuntimeError(f"load generator ran over {secs + 60:.0f}s and was killed: {' '.join(cmd)}")
    t1 = os.times()
    out = p.stdout.decode(errors="replace")
    log_path.write_text(f"$ {' '.join(cmd)}\n{out}")
    if p.returncode != 0:
        raise RuntimeError(f"load generator exited {p.returncode}: {' '.join(cmd)}\n{out[-800:]}")
    return out, (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)


def wrk(script: str, url: str, secs: int, args: list[str], log_path: Path) -> tuple[dict, float]:
    cmd = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{secs}s", "--timeout", WRK_TIMEOUT, "--latency",
           "-s", str(LUA / script), url + "/", "--", *args]
    out, cpu = run_client(cmd, secs, log_path)
    res = parse_bench_result(out)
    if "rps" not in res:
        raise RuntimeError(f"wrk printed no BENCH_RESULT line ({log_path}):\n{out[-800:]}")
    return res, cpu


RB_OVERALL = re.compile(r"rps=[\d.]+ \(overall: ([\d.]+)\)")


def redis_benchmark_calibrate(port: int, command: list[str], secs: int, log_path: Path) -> float:
    """The warm-up: redis-benchmark with an endless -n for `secs` seconds, then SIGINT;
    returns its last 'overall' rate, used to size the measured run's -n."""
    cmd = client_cmd(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(CONNECTIONS),
                      "-n", "1000000000", "-r", "1000", *command])
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        try:
            out, _ = p.communicate(timeout=max(secs, 1))
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGINT)
            try:
                out, _ = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
    text = out.decode(errors="replace")
    log_path.write_text(f"$ {' '.join(cmd[:12])} ...\n{text[-3000:]}")
    rates = RB_OVERALL.findall(text)
    return float(rates[-1]) if rates else 0.0


def redis_benchmark(port: int, command: list[str], secs: int, rate: float, log_path: Path,
                    keyspace: int = 1000) -> tuple[dict, float]:
    """`keyspace`: redis-benchmark's -r (the range of __rand_int__ in the command)."""
    n = max(2000, int(rate * secs)) if rate > 0 else 50_000 * secs
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(CONNECTIONS), "-n", str(n),
           "-r", str(keyspace), "--csv", *command]
    t0 = time.monotonic()
    out, cpu = run_client(cmd, secs * 4 + 30, log_path)
    wall = time.monotonic() - t0
    lines = [l for l in out.splitlines() if l.startswith('"') and not l.startswith('"test"')]
    if not lines:
        raise RuntimeError(f"redis-benchmark printed no CSV line ({log_path}):\n{out[-800:]}")
    f = next(csv.reader([lines[-1]]))
    rps = float(f[1])
    res = {"requests": n, "rps": rps, "duration_us": n / rps * 1e6 if rps else wall * 1e6,
           "p50_us": float(f[4]) * 1000, "p99_us": float(f[6]) * 1000, "max_us": float(f[7]) * 1000,
           "non2xx": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0}
    errs = [l for l in out.splitlines() if "rror" in l]
    if errs:
        res["first_bad"] = errs[0][:200]
    return res, cpu


def redis_lock_pairs(port: int, secs: int, row: Row, prefix: str, log_path: Path) -> tuple[dict, float]:
    cmd = [PY, str(BENCH / "suite.py"), "redis-lock-client", "--port", str(port),
           "--conns", str(CONNECTIONS), "--secs", str(secs), "--acc", str(row.acc), "--keys", str(row.keys),
           "--prefix", prefix]
    out, cpu = run_client(cmd, secs, log_path)
    res = parse_bench_result(out)
    if "rps" not in res:
        raise RuntimeError(f"redis-lock-client printed no BENCH_RESULT line ({log_path}):\n{out[-800:]}")
    return res, cpu


# ---- one measurement

def wal_lsn(data_dir: Path) -> int | None:
    """The number of the last record in cdragon's write-ahead log: the server logs one
    record per commit batch, numbered on across segments (cdragon/wal.py)."""
    sys.path.insert(0, str(REPO))
    from cdragon import wal
    for _ in range(5):
        paths = wal.segments(str(data_dir))
        if not paths:
            return None
        newest = paths[-1]
        last = int(Path(newest).name[4:20]) - 1
        try:
            for lsn, _seq, _body in wal.read_records(newest):
                last = lsn
        except FileNotFoundError:      # a checkpoint deleted it meanwhile: look again
            continue
        return last
    return None


def measure(system: str, row: Row, run_dir: Path, idx: int) -> dict:
    tag = f"{idx:02d}-{row.id}-{system}"
    rec: dict = {"row": row.id, "system": system, "tag": tag}
    srv = Server(system, run_dir, tag)
    try:
        srv.start()
        rec["port"] = srv.port
        rec["pid"] = srv.pid
        wargs = []
        margs = []
        lease = None
        if system == "etcd" and row.group == "lock":
            lease = etcd_lease(srv)
        # ---- warm-up (a prefix keeps the warm-up's still-held locks out of the measured keys)
        if system in ("ceiling", "cdragon"):
            if row.group == "lock":
                script = "suite_lock.lua"
                wargs = [f"acc={row.acc}", f"keys={row.keys}", "prefix=w"]
                margs = [f"acc={row.acc}", f"keys={row.keys}"]
            else:
                script = "suite_write.lua"
                kind = "add" if row.group == "add" else "kv"
                wargs = margs = [f"kind={kind}", f"acc={row.acc}", f"keys={row.keys}", f"size={row.size}"]
            if WARMUP > 0:
                wres, _ = wrk(script, srv.url(), WARMUP, wargs, run_dir / f"{tag}.warmup.txt")
                rec["warmup"] = wres
            runner = lambda: wrk(script, srv.url(), DURATION, margs, run_dir / f"{tag}.txt")
            rec["tool"] = f"wrk -t1 -c{CONNECTIONS} -s bench/lua/{script} -- {' '.join(margs)}"
        elif system == "etcd":
            base = [f"acc={row.acc}", f"keys={row.keys}"]
            if row.group == "lock":
                wargs = ["kind=lock", *base, f"lease={lease}", "prefix=w"]
                margs = ["kind=lock", *base, f"lease={lease}"]
            else:
                wargs = margs = ["kind=put", *base, f"size={row.size}"]
            if WARMUP > 0:
                wres, _ = wrk("suite_etcd.lua", srv.url(), WARMUP, wargs, run_dir / f"{tag}.warmup.txt")
                rec["warmup"] = wres
            runner = lambda: wrk("suite_etcd.lua", srv.url(), DURATION, margs, run_dir / f"{tag}.txt")
            rec["tool"] = f"wrk -t1 -c{CONNECTIONS} -s bench/lua/suite_etcd.lua -- {' '.join(margs)}"
        elif system == "redis":
            info0 = redis_info(srv.port)
            rec["redis_appendfsync"] = redis_cmd(srv.port, "CONFIG", "GET", "appendfsync").decode(errors="replace").split()[-1]
            if row.group == "lock":
                if WARMUP > 0:
                    wres, _ = redis_lock_pairs(srv.port, WARMUP, row, "w", run_dir / f"{tag}.warmup.txt")
                    rec["warmup"] = wres
                runner = lambda: redis_lock_pairs(srv.port, DURATION, row, "", run_dir / f"{tag}.txt")
                rec["tool"] = (f"suite.py redis-lock-client --conns {CONNECTIONS} --acc {row.acc} --keys {row.keys}"
                               " (SET k 1 NX PX 30000, then DEL k)")
            else:
                command = redis_command(row)
                rate = redis_benchmark_calibrate(srv.port, command, max(WARMUP, 1), run_dir / f"{tag}.warmup.txt")
                rec["warmup"] = {"rps": rate}
                runner = lambda: redis_benchmark(srv.port, command, DURATION, rate, run_dir / f"{tag}.txt")
                shown = " ".join(command[:2] + [f"<{len(c)} B value>" for c in command[2:]])
                rec["tool"] = f"redis-benchmark -c {CONNECTIONS} -r 1000 -n <{DURATION}s worth> {shown}"
        else:
            raise ValueError(system)

        # ---- the measured run, with CPU counters around it
        txn0 = wal_lsn(srv.data) if system == "cdragon" else None
        t0 = proc_ticks(srv.pid)
        th0 = thread_ticks(srv.pid)
        o0 = others_ticks({srv.pid})
        s0, c0 = core_ticks(SERVER_CPU), core_ticks(CLIENT_CPU)
        res, client_cpu = runner()
        s1, c1 = core_ticks(SERVER_CPU), core_ticks(CLIENT_CPU)
        o1 = others_ticks({srv.pid})
        th1 = thread_ticks(srv.pid)
        t1 = proc_ticks(srv.pid)
        txn1 = wal_lsn(srv.data) if system == "cdragon" else None
        secs = res.get("duration_us", DURATION * 1e6) / 1e6 or DURATION
        rec.update(res)
        rec["alive"] = srv.alive()
        rec["vmhwm_kb"] = vm_kb(srv.pid, "VmHWM")
        rec["vmrss_kb"] = vm_kb(srv.pid, "VmRSS")
        clk = os.sysconf("SC_CLK_TCK")
        if t0 is not None and t1 is not None:
            rec["server_cpu_pct"] = 100.0 * (t1 - t0) / clk / secs
        if res.get("requests"):
            # every answered request, conflicts included (as the ceiling ratio counts them)
            rec["cpu_us_per_req"] = cpu_per_request(th0, th1, int(res["requests"]))
        rec["client_cpu_pct"] = 100.0 * client_cpu / secs
        rec["server_core_busy_pct"] = pct(s0, s1, 0)
        rec["client_core_busy_pct"] = pct(c0, c1, 0)
        rec["steal_pct"] = pct(s0, s1, 1)
        rec["others_cpu_pct"] = others_pct(o0, o1, secs)
        # interference: CPU on the two pinned cores (or anywhere, by processes that outlived
        # the run) that neither the server nor the load generator used. On a quiet machine
        # it stays under ~5 %; short-lived processes of other users show up only here.
        rec["interference_pct"] = max(
            rec["others_cpu_pct"],
            rec["server_core_busy_pct"] - rec.get("server_cpu_pct", rec["server_core_busy_pct"]),
            rec["client_core_busy_pct"] - rec["client_cpu_pct"], 0.0)
        # ---- what counts
        sock = sum(int(res.get(k, 0)) for k in ("connect", "read", "write", "timeout"))
        rec["errors"] = int(res.get("non2xx", 0)) + sock
        rec["warmup_errors"] = int(sum(rec.get("warmup", {}).get(k, 0)
                                       for k in ("non2xx", "connect", "read", "write", "timeout")))
        if row.group == "lock":
            rec["ops_rps"] = res.get("ops_rps", 0.0)       # completed pairs per second
            writes = res.get("grants", 0) + res.get("unlocks", 0)
        else:
            ok = res.get("requests", 0) - res.get("non2xx", 0)
            rec["ops_rps"] = ok / secs if system != "redis" else res["rps"]
            writes = ok
        if system == "cdragon" and txn0 is not None and txn1 is not None and txn1 > txn0:
            rec["commits"] = txn1 - txn0
            rec["batch"] = writes / (txn1 - txn0)
        if system == "redis":
            info1 = redis_info(srv.port)
            e0 = int(info0.get("total_error_replies", 0) or 0)
            e1 = int(info1.get("total_error_replies", 0) or 0)
            rec["redis_error_replies"] = e1 - e0
            rec["redis_aof"] = f"aof_enabled={info1.get('aof_enabled')} aof_last_write_status={info1.get('aof_last_write_status')}"
            if row.group != "lock":      # redis-benchmark does not count error replies itself
                rec["errors"] += max(e1 - e0, 0)
            if info1.get("aof_last_write_status", "ok") != "ok":
                rec["errors"] += 1
                rec.setdefault("first_bad", "AOF write failed: " + rec["redis_aof"])
        if system == "cdragon":
            bad_lines = [l for l in srv.log_path.read_text(errors="replace").splitlines()
                         if " ERROR " in l or "Traceback" in l]
            if bad_lines:
                rec["server_log_errors"] = bad_lines[:3]
        if not rec["alive"]:
            rec["crash_log"] = srv.tail()
    except Exception as e:
        rec["failed"] = str(e)[:1500]
        rec["alive"] = srv.alive()
        log(f"{tag}: FAILED: {str(e)[:500]}")
    finally:
        rc = srv.stop()
        rec["exit_status"] = rc
    return rec


# ---- the watch rows

def watch_usable() -> tuple[bool, str]:
    script = BENCH / "watch_reaction.py"
    if not script.exists():
        return False, "bench/watch_reaction.py is not there"
    if not (BENCH / "fanout_ceiling.py").exists():
        return False, "bench/fanout_ceiling.py (the watch rows' ceiling) is not there"
    try:
        p = subprocess.run([PY, str(script), "run", "--help"], cwd=REPO, capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        return False, "`watch_reaction.py run --help` hung"
    text = p.stdout.decode(errors="replace")
    if p.returncode != 0 or "--cdragon" not in text or "--scenario" not in text:
        return False, "`watch_reaction.py run --help` does not offer --cdragon/--scenario"
    return True, ""


def run_watch(rows: list[Row], run_dir: Path) -> tuple[list[dict], list[str]]:
    """One watch_reaction.py run over all the watch rows: cdragon (fresh), the fan-out
    ceiling and Redis side by side on CPU 0, the client on CPU 1; they take turns write
    by write (watch_reaction.py's own design)."""
    notes = []
    want = {"cdragon": "cdragon", "ceiling": "fanout", "redis": "redis"}
    names = [n for n in want if not SYSTEMS or re.search(SYSTEMS, n)]
    if "cdragon" not in names:
        return [], ["watch rows skipped: SYSTEMS excludes cdragon"]
    servers: dict[str, Server] = {}
    out = run_dir / "watch.jsonl"
    recs: list[dict] = []
    try:
        for n in names:
            s = Server(want[n], run_dir, f"watch-{n}")
            servers[n] = s
            s.start()
        cmd = [PY, str(BENCH / "watch_reaction.py"), "run", "--out", str(out)]
        for n, s in servers.items():
            cmd += [f"--{n}", f"127.0.0.1:{s.port}"]
        for r in rows:
            cmd += ["--scenario", r.watch]
        log(f"watch rows: {' '.join(r.watch for r in rows)} via bench/watch_reaction.py "
            f"(timeout {WATCH_TIMEOUT}s)")
        t0 = time.monotonic()
        try:
            p = subprocess.run(client_cmd(cmd), cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=WATCH_TIMEOUT)
            text = p.stdout.decode(errors="replace")
            if p.returncode != 0:
                notes.append(f"`watch_reaction.py run` exited {p.returncode} after {time.monotonic() - t0:.0f}s: "
                             f"{text.strip().splitlines()[-1][:300] if text.strip() else ''}")
        except subprocess.TimeoutExpired as e:
            text = (e.output or b"").decode(errors="replace")
            notes.append(f"`watch_reaction.py run` did not finish within WATCH_TIMEOUT={WATCH_TIMEOUT}s and was "
                         "killed; rows it had finished are kept")
        (run_dir / "watch.txt").write_text(f"$ taskset -c {CLIENT_CPU} {' '.join(cmd)}\n{text}")
        if out.exists():
            recs = [json.loads(l) for l in out.read_text().splitlines() if l.strip()]
        hwm = vm_kb(servers["cdragon"].pid) if servers["cdragon"].alive() else None
        for n, s in servers.items():
            if not s.alive():
                notes.append(f"watch rows: {n} (PID {s.pid}) died during the run; log {s.log_path}")
        for r in recs:
            if r.get("system") == "cdragon":
                r["vmhwm_kb_all_watch_rows"] = hwm
    except Exception as e:
        notes.append(f"watch rows failed: {str(e)[:500]}")
    finally:
        for s in servers.values():
            s.stop()
    return recs, notes
