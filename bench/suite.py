#!/usr/bin/env python3
"""The full benchmark table (`make bench`): cdragon side by side with Redis, etcd and the
bare ceiling of its own stack, every system measured in the same run on this machine.

    .venv/bin/python bench/suite.py                 (what `make bench` runs, from the repo root)
    .venv/bin/python bench/suite.py report          (re-render the section from bench/results.json)
    SCENARIOS='^kv64-' DURATION=3 .venv/bin/python bench/suite.py    (a subset, quickly)

Rows (400 connections, a random account and key drawn per request; "A×K" = A accounts
× K keys; see bench/SUITE.md for what each system is asked to do):

- lock+unlock pairs: 1×1 (every connection fights for one lock), 1×1000, 1000×1000
- KV write of a 64 B, 1 KB and 10 KB value: 1×1, 1×1000, 1000×1, 1000×1000
- atomic add: the same four mixes
- watch reaction: 1, 100, 1,000 and 10,000 watchers on one key, 1,000 keys × 5 watchers
  (run through bench/watch_reaction.py, against cdragon, bench/fanout_ceiling.py, Redis)

Systems, each started fresh for every row in a temp dir on the real disk (not tmpfs),
pinned to CPU 0 (taskset), the load generator pinned to CPU 1, taking turns row by row
(and cdragon and Redis ROUNDS times, alternating, shown as the mean of their runs):
- ceiling: bench/ceiling_server.py (bare uvloop + httptools answering `{}`), sent the very
  same requests as cdragon by the same wrk script;
- cdragon: `python -m cdragon serve`, wrk + bench/lua/suite_write.lua / suite_lock.lua;
- redis: Redis 7, `appendonly yes`, `appendfsync always`; `redis-benchmark` (SET, INCR),
  and for lock pairs `SET k 1 NX PX 30000` then `DEL k`, two round trips per pair, by a
  small client (bench/redis_lock_client.py, run as `suite.py redis-lock-client`; uvloop, raw RESP);
- etcd: etcd 3.4 single node through its HTTP/JSON gateway (`/v3/kv/put`, and for lock
  pairs a `/v3/kv/txn` try-lock + `/v3/kv/deleterange`), wrk + bench/lua/suite_etcd.lua.

Writes `bench/RESULTS.md` (only the part between `<!-- suite:begin -->` and
`<!-- suite:end -->`), `bench/results.json` and, through bench/plot.py, `bench/results.png`.
A run limited by SCENARIOS or SYSTEMS writes those only with WRITE_RESULTS=1; its table
is printed and kept in its run folder (bench/out/suite-*/) either way.

Knobs (environment): DURATION=10 WARMUP=2 ROUNDS=2 CONNECTIONS=400 SCENARIOS=<regex on row ids,
e.g. 'lock|add-1x1$'> SYSTEMS=<regex: ceiling|cdragon|redis|etcd> SERVER_CPU=0
CLIENT_CPU=1 DATA_ROOT=bench/out START_TIMEOUT=60 STOP_TIMEOUT=15 WRK_TIMEOUT=2s
WATCH=1 (0 skips the watch rows) WATCH_TIMEOUT=480 PLOT=1 INSTALL=1 (apt-get what is
missing) KEEP_DATA=0 WRITE_RESULTS=<1 for a full run>.
Exit status: 0 clean; 1 setup problem; 3 the run finished but some measurement saw
errors (non-2xx other than the lock rows' expected 409 `locked`, socket errors) or a
server died.

Layout (each module says what it owns): bench/knobs.py (paths, knobs, log), bench/rows.py
(the rows), bench/systems.py (starting and stopping the servers), bench/measure.py (load
generators, CPU/RSS/latency, the watch rows), bench/machine.py (tools, versions, machine),
bench/suite_report.py (the RESULTS.md section, notes, results.json), bench/redis_lock_client.py
(the Redis lock+unlock client); this file runs them in order.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # the modules beside this file

from knobs import BENCH, CLIENT_CPU, DATA_ROOT, DURATION, MAX_RETRIES, NOISY_PCT, PLOT, PY, REPO, \
    RETRIES_PER_RUN, ROUND_SYSTEMS, ROUNDS, SCENARIOS, SERVER_CPU, SYSTEMS, VENV_PY, WARMUP, WATCH, log
from machine import fs_type, machine_meta, need_tools
from measure import measure, run_watch, watch_usable
from redis_lock_client import redis_lock_client
from rows import all_rows, systems_for, unit
from suite_report import build_section, findings, fmt_ms, fmt_rate, results_json, write_results_md
from systems import stop_all


# averaged over a row's rounds; the other fields are the first round's, except these
_MEAN = ("ops_rps", "rps", "p50_us", "p90_us", "p99_us", "server_cpu_pct", "client_cpu_pct",
         "server_core_busy_pct", "client_core_busy_pct", "steal_pct", "others_cpu_pct", "batch")
_SUM = ("errors", "warmup_errors", "locked", "commits")
_MAX = ("interference_pct", "vmhwm_kb", "max_us")


def mean_of_rounds(runs: list[dict]) -> dict:
    """One system's record of a row from its rounds: the mean rate (and latency, CPU), the
    errors of all, and each round's figures under "rounds". A failed round fails the row."""
    if len(runs) == 1:
        return runs[0]
    bad = [r for r in runs if "failed" in r]
    if bad:
        return bad[0]
    out = dict(runs[0])
    for k in _MEAN:
        vals = [r[k] for r in runs if isinstance(r.get(k), (int, float))]
        if len(vals) == len(runs):
            out[k] = sum(vals) / len(vals)
    for k in _SUM:
        if all(isinstance(r.get(k), (int, float)) for r in runs):
            out[k] = sum(r[k] for r in runs)
    for k in _MAX:
        vals = [r[k] for r in runs if isinstance(r.get(k), (int, float))]
        if vals:
            out[k] = max(vals)
    cpus = [r.get("cpu_us_per_req") for r in runs]
    if all(cpus):
        # per thread name, the mean over the rounds (a thread missing from a round used no CPU there)
        names = {n for c in cpus for n in c}
        out["cpu_us_per_req"] = {n: [round(sum(c.get(n, [0, 0])[i] for c in cpus) / len(cpus), 2) for i in (0, 1)]
                                 for n in sorted(names)}
    out["alive"] = all(r.get("alive", True) for r in runs)
    out["rounds"] = [{k: r.get(k) for k in ("tag", "ops_rps", "rps", "p99_us", "interference_pct", "errors")}
                     for r in runs]
    return out


def run_suite() -> int:
    if not VENV_PY.exists():
        log(f"{VENV_PY} is missing: run `make setup` first")
        return 1
    try:
        subprocess.run([PY, "-c", "import uvloop, httptools, cdragon._core"], cwd=REPO, check=True,
                       capture_output=True, timeout=60)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        log(".venv cannot import uvloop/httptools/cdragon._core: run `make setup` first")
        return 1
    for cpu in (SERVER_CPU, CLIENT_CPU):
        if subprocess.run(["taskset", "-c", str(cpu), "true"], capture_output=True).returncode != 0:
            log(f"CPU {cpu} is not available (SERVER_CPU={SERVER_CPU}, CLIENT_CPU={CLIENT_CPU}; needs 2 cores)")
            return 1
    if SERVER_CPU == CLIENT_CPU:
        log("SERVER_CPU and CLIENT_CPU must differ")
        return 1

    rows = [r for r in all_rows() if not SCENARIOS or re.search(SCENARIOS, r.id)]
    if not rows:
        log(f"SCENARIOS={SCENARIOS!r} matches no row; rows: {' '.join(r.id for r in all_rows())}")
        return 1
    partial = bool(SCENARIOS or SYSTEMS)
    write_out = os.environ.get("WRITE_RESULTS", "0" if partial else "1") == "1"
    thr = [r for r in rows if r.group != "watch"]
    wrows = [r for r in rows if r.group == "watch"] if WATCH else []
    used = {n for r in thr for n in systems_for(r)}
    if wrows and (not SYSTEMS or re.search(SYSTEMS, "redis")):
        used.add("redis")
    tools = {"wrk"} if used & {"ceiling", "cdragon", "etcd"} else set()
    if "redis" in used:
        tools |= {"redis-server", "redis-benchmark"}
    if "etcd" in used:
        tools.add("etcd")
    problems = need_tools(tools)
    if "wrk" in problems:
        log(problems["wrk"] + ": cannot run")
        return 1
    skipped = {"redis": problems.get("redis-server") or problems.get("redis-benchmark"),
               "etcd": problems.get("etcd")}

    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    fstype = fs_type(DATA_ROOT)
    if fstype in ("tmpfs", "ramfs"):
        log(f"DATA_ROOT {DATA_ROOT} is on {fstype}, not a real disk: set DATA_ROOT to a directory on disk")
        return 1
    (BENCH / "out").mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=time.strftime("suite-%Y%m%d-%H%M%S-"), dir=BENCH / "out"))
    meta = machine_meta(run_dir, fstype)
    meta["rounds"] = ROUNDS
    log(f"logs in {run_dir}; {len(thr)} throughput rows, {len(wrows)} watch rows; "
        f"DURATION={DURATION} WARMUP={WARMUP}; data on {fstype} ({DATA_ROOT})")
    t_start = time.monotonic()
    recs: list[dict] = []
    notes: list[str] = []
    for n, why in skipped.items():
        if why and n in used:
            notes.append(f"{n} not measured: {why}")
    idx = 0
    retries_left = [MAX_RETRIES]
    for row in thr:
        runs: dict[str, list[dict]] = {}
        turns = [(0, s) for s in systems_for(row)]
        turns += [(n, s) for n in range(1, ROUNDS) for s in systems_for(row) if s in ROUND_SYSTEMS]
        for rnd, system in turns:
            if skipped.get(system):
                continue
            idx += 1
            rec = measure(system, row, run_dir, idx)
            tries = [rec]
            while (rec.get("interference_pct", 0) >= NOISY_PCT and retries_left[0] > 0
                   and len(tries) <= RETRIES_PER_RUN):
                # someone else's work shared the machine: take it again, keep the cleanest
                retries_left[0] -= 1
                log(f"{row.id} {system}: {rec['interference_pct']:.0f} % of a core went to other work "
                    f"during the run ({fmt_rate(rec.get('ops_rps'))} {unit(row)}): measuring again "
                    f"({retries_left[0]} retries left)")
                idx += 1
                tries.append(measure(system, row, run_dir, idx))
                ok = [t for t in tries if "failed" not in t] or tries
                rec = min(ok, key=lambda t: t.get("interference_pct", 0))
            if len(tries) > 1:
                rec["tries"] = [{k: t.get(k) for k in ("tag", "ops_rps", "rps", "interference_pct", "errors")}
                                for t in tries]
            runs.setdefault(system, []).append(rec)
            extra = ""
            if row.group == "lock":
                extra = f" ({fmt_rate(rec.get('rps'))} req/s, {int(rec.get('locked', 0)):,} conflicts)"
            if system == "ceiling":
                extra = ""
            log(f"{row.id:<16} {system:<8} {fmt_rate(rec.get('ops_rps')):>7} "
                f"{'req/s' if system == 'ceiling' else unit(row)}{extra} "
                f"p99 {fmt_ms(rec.get('p99_us'))} ms, errors {rec.get('errors', '?')}"
                + (f", batch {rec['batch']:.1f}" if rec.get("batch") else "")
                + (" FAILED" if "failed" in rec else "")
                + (f" (round {rnd + 1} of {ROUNDS})" if system in ROUND_SYSTEMS and ROUNDS > 1 else ""))
        recs += [mean_of_rounds(runs[s]) for s in systems_for(row) if s in runs]
        with open(run_dir / "records.jsonl", "w") as fh:
            for r in recs:
                fh.write(json.dumps(r) + "\n")
    watch_recs: list[dict] = []
    if wrows:
        ok, why = watch_usable()
        if ok:
            watch_recs, wnotes = run_watch(wrows, run_dir)
            notes += wnotes
        else:
            notes.append(f"watch rows not measured here ({why}): left to `bench/watch.sh`.")
    elif any(r.group == "watch" for r in all_rows() if not SCENARIOS or re.search(SCENARIOS, r.id)):
        notes.append("watch rows skipped (WATCH=0): see `bench/watch.sh`.")
    took = time.monotonic() - t_start
    meta["took"] = f"{took / 60:.1f} min"
    if any(r["system"] == "cdragon" for r in recs):
        notes.append("cdragon ran with CDRAGON_MAX_STORAGE_BYTES=32 GiB: the 10 KB × 1,000,000-key rows can store "
                     "more than the default 2 GiB cap (nothing else differs from the defaults).")
    notes.append(f"Load average at the end of the run: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}.")
    run_notes = notes
    more, bad = findings(thr, recs, watch_recs, meta)
    notes = more + run_notes
    section = build_section(rows, recs, watch_recs, meta, notes)
    print(section)
    result = {"meta": meta, "rows": [r.__dict__ for r in rows], "records": recs, "watch": watch_recs,
              "notes": notes, "run_notes": run_notes}
    (run_dir / "results.json").write_text(results_json(result))
    (run_dir / "section.md").write_text(section + "\n")
    if write_out:
        write_results_md(section)
        (BENCH / "results.json").write_text(results_json(result))
        log("written bench/RESULTS.md (suite section) and bench/results.json")
        target_json, target_png = BENCH / "results.json", BENCH / "results.png"
    else:
        log(f"bench/RESULTS.md and bench/results.json left alone (a subset run, or WRITE_RESULTS=0); "
            f"results in {run_dir}")
        target_json, target_png = run_dir / "results.json", run_dir / "results.png"
    if PLOT:
        try:
            p = subprocess.run([PY, str(BENCH / "plot.py"), str(target_json), str(target_png)], cwd=REPO,
                               timeout=900, capture_output=True)
            if p.returncode != 0:
                log(f"plot.py failed ({p.returncode}): {(p.stdout + p.stderr).decode(errors='replace')[-600:]}")
            else:
                log(f"chart: {target_png}")
        except subprocess.TimeoutExpired:
            log("plot.py timed out")
    log(f"done in {took / 60:.1f} min")
    return 3 if bad else 0


def report_only(path: Path) -> int:
    """Rebuild the notes and the RESULTS.md section from a stored results.json (after a
    change to the report's wording or checks; no measurement is taken)."""
    data = json.loads(path.read_text())
    known = {r.id: r for r in all_rows()}
    rows = [known[r["id"]] for r in data["rows"] if r["id"] in known]
    run_notes = data.get("run_notes")
    if run_notes is None:    # a file written before run_notes were kept apart
        run_notes = [n for n in data.get("notes", []) if n.startswith(("cdragon ran with", "Load average", "watch rows",
                                                                      "`watch_reaction.py", "redis not", "etcd not"))]
    thr = [r for r in rows if r.group != "watch"]
    more, bad = findings(thr, data["records"], data.get("watch", []), data["meta"])
    notes = more + run_notes
    section = build_section(rows, data["records"], data.get("watch", []), data["meta"], notes)
    data["notes"], data["run_notes"] = notes, run_notes
    path.write_text(results_json(data))
    if path.resolve() == (BENCH / "results.json").resolve():
        write_results_md(section)
        log("rewritten the suite section of bench/RESULTS.md and bench/results.json")
    else:
        (path.parent / "section.md").write_text(section + "\n")
        log(f"rewritten {path} and {path.parent / 'section.md'}")
    print(section)
    return 3 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd")
    rl = sub.add_parser("redis-lock-client", help="(internal) the Redis lock+unlock pairs load generator")
    rl.add_argument("--port", type=int, required=True)
    rl.add_argument("--conns", type=int, default=400)
    rl.add_argument("--secs", type=float, default=10)
    rl.add_argument("--acc", type=int, default=1)
    rl.add_argument("--keys", type=int, default=1)
    rl.add_argument("--prefix", default="")
    rp = sub.add_parser("report", help="re-render the RESULTS.md section (and the chart) from a results.json")
    rp.add_argument("json", nargs="?", default=str(BENCH / "results.json"))
    args = ap.parse_args()
    if args.cmd == "redis-lock-client":
        return redis_lock_client(args)
    if args.cmd == "report":
        return report_only(Path(args.json))

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    try:
        return run_suite()
    except KeyboardInterrupt:
        log("interrupted: stopping the servers this run started")
        return 130
    finally:
        stop_all()


if __name__ == "__main__":
    raise SystemExit(main())
