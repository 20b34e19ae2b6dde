"""Rate-limit benchmark: cdragon's GCRA takes (POST /db/{acc}/ratelimit/{key}) side by
side with Redis (`appendfsync always`) running a GCRA Lua script by EVALSHA
(bench/lua/redis_gcra.lua), in the same run, each system started fresh and pinned to
SERVER_CPU, the load generator (wrk for cdragon, redis-benchmark for Redis) pinned to
CLIENT_CPU, CONNECTIONS (400) connections.

Rows:
- take, 1 key and 100,000 keys: a limit no key reaches, so every take is allowed and
  writes its key's state (durable before the answer, on both sides);
- over the limit, 1 key: a limit of 1 per hour, so every take but the first is refused
  (no write on either side: cdragon answers 429 at once, the script returns early);
- the cost of a RateLimit entry in an atomic request: `{"Atomic":[add 1]}` against the
  same with `"RateLimit":[one allowed entry]`, over 1,000 keys (cdragon alone).

Writes section "ratelimit" of bench/RESULTS.md (bench/sections.py); never stops a
process it did not start.

    .venv/bin/python bench/ratelimit.py [--rounds 3] [--no-write]
                                      (DURATION, WARMUP, CONNECTIONS: bench/knobs.py)
With --rounds N every row is measured N times, the systems in turn each round, and
the table shows the median of each figure (the ratio: the median of the rounds' ratios).
"""
from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from knobs import BENCH, CONNECTIONS, DATA_ROOT, DURATION, LUA, WARMUP, log   # noqa: E402
from measure import redis_benchmark, redis_benchmark_calibrate, wrk            # noqa: E402
from sections import replace_section                                           # noqa: E402
from systems import Server, http, redis_cmd, stop_all                          # noqa: E402

# (label, wrk mode, keys, Redis key, Redis ARGV: interval us, tolerance us, cost)
FAST = ("1", "1000000", "1")                 # as the wrk script's rate=1000000&per=1
HOURLY = ("3600000000", "3600000000", "1")   # rate=1&per=3600
ROWS = [
    ("take, 1 key", "take", 1, "u0", FAST),
    ("take, 100,000 keys", "take", 100_000, "u__rand_int__", FAST),
    ("over the limit (refused), 1 key", "limited", 1, "h0", HOURLY),
]


def script_sha(port: int) -> str:
    raw = redis_cmd(port, "SCRIPT", "LOAD", (LUA / "redis_gcra.lua").read_text())
    if not raw.startswith(b"$40\r\n"):
        raise RuntimeError(f"SCRIPT LOAD answered {raw[:200]!r}")
    return raw[5:45].decode()


def gcra_check(port: int, sha: str) -> bytes:
    """One EVALSHA of the script by hand (its answer, an array of 4 integers, is one
    systems.redis_cmd does not know the end of)."""
    args = [b"EVALSHA", sha.encode(), b"1", b"check", *(x.encode() for x in FAST)]
    req = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(req)
        data = b""
        while data.count(b"\r\n") < 5 and not data.startswith(b"-"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


def run_cdragon(mode: str, keys: int, run_dir: Path, tag: str) -> dict:
    srv = Server("cdragon", run_dir, tag)
    srv.start()
    try:
        status, body = http("POST", srv.url() + "/db/bench/ratelimit/check?rate=2&per=60")
        if status != 200 or b'"Allowed":true' not in body:
            raise RuntimeError(f"cdragon take check: {status} {body[:200]!r}")
        args = [mode, str(keys)]
        wrk("ratelimit.lua", srv.url(), WARMUP, args, run_dir / f"{tag}-warmup.log")
        res, _cpu = wrk("ratelimit.lua", srv.url(), DURATION, args, run_dir / f"{tag}.log")
    finally:
        srv.stop()
    if res.get("non2xx") or res.get("timeout"):
        raise RuntimeError(f"{tag}: errors {res}")
    return res


def run_redis(key: str, argv: tuple, keys: int, run_dir: Path, tag: str) -> dict:
    srv = Server("redis", run_dir, tag)
    srv.start()
    try:
        sha = script_sha(srv.port)
        check = gcra_check(srv.port, sha)
        if not check.startswith(b"*4\r\n:1\r\n"):
            raise RuntimeError(f"Redis GCRA check answered {check[:200]!r}")
        command = ["EVALSHA", sha, "1", key, *argv]
        rate = redis_benchmark_calibrate(srv.port, command, WARMUP, run_dir / f"{tag}-warmup.log")
        res, _cpu = redis_benchmark(srv.port, command, DURATION, rate, run_dir / f"{tag}.log", keyspace=keys)
    finally:
        srv.stop()
    if res.get("first_bad"):
        raise RuntimeError(f"{tag}: {res['first_bad']}")
    return res


def median_of(results: list[dict]) -> dict:
    """Each figure's median over the rounds."""
    return {k: statistics.median(r[k] for r in results) for k in ("rps", "p50_us", "p99_us")}


def fmt(x: float) -> str:
    return f"{x:,.0f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-write", action="store_true", help="print the table, leave RESULTS.md alone")
    ap.add_argument("--rounds", type=int, default=1, help="measure every row this many times (medians)")
    a = ap.parse_args()
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    run_dir = Path(DATA_ROOT) / time.strftime("ratelimit-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True)
    lines = ["| scenario | cdragon takes/s | Redis EVALSHA/s | ratio | cdragon p50 / p99 ms | Redis p50 / p99 ms |",
             "|---|---:|---:|---:|---:|---:|"]
    try:
        for i, (label, mode, keys, rkey, argv) in enumerate(ROWS):
            cs, rs = [], []
            for n in range(a.rounds):
                log(f"{label}: cdragon (round {n + 1})")
                cs.append(run_cdragon(mode, keys, run_dir, f"cdragon-{i}-{n}"))
                log(f"{label}: redis (round {n + 1})")
                rs.append(run_redis(rkey, argv, keys, run_dir, f"redis-{i}-{n}"))
            c, r = median_of(cs), median_of(rs)
            ratio = statistics.median(x["rps"] / y["rps"] for x, y in zip(cs, rs))
            lines.append(f"| {label} | {fmt(c['rps'])} | {fmt(r['rps'])} | {ratio:.2f}× | "
                         f"{c['p50_us'] / 1000:.1f} / {c['p99_us'] / 1000:.1f} | "
                         f"{r['p50_us'] / 1000:.1f} / {r['p99_us'] / 1000:.1f} |")
            log(lines[-1] + "  rounds: " + ", ".join(f"{x['rps']:.0f}/{y['rps']:.0f}" for x, y in zip(cs, rs)))
        log("atomic add, with and without a RateLimit entry")
        adds, add_rls = [], []
        for n in range(a.rounds):
            adds.append(run_cdragon("add", 1000, run_dir, f"cdragon-add-{n}"))
            add_rls.append(run_cdragon("add_rl", 1000, run_dir, f"cdragon-add-rl-{n}"))
        add, add_rl = median_of(adds), median_of(add_rls)
        add_ratio = statistics.median(y["rps"] / x["rps"] for x, y in zip(adds, add_rls))
    finally:
        stop_all()
    cost = [f"| `POST /db` over 1,000 keys | requests/s | p99 ms |", "|---|---:|---:|",
            f"| `Atomic` add 1 | {fmt(add['rps'])} | {add['p99_us'] / 1000:.1f} |",
            f"| the same + one `RateLimit` entry (allowed) | {fmt(add_rl['rps'])} | {add_rl['p99_us'] / 1000:.1f} |",
            f"| ratio | {add_ratio:.2f}× | |"]
    section = "\n".join([
        "## Rate limits (GCRA) against Redis + Lua",
        "",
        f"`bench/ratelimit.py --rounds {a.rounds}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"load average at start {load}; DURATION={DURATION}s, "
        f"WARMUP={WARMUP}s, {CONNECTIONS} connections; server on CPU 0, load on CPU 1; each system started "
        "fresh for each row, in turn, in the same run; medians over the rounds). cdragon: `POST /db/bench/ratelimit/{key}` with wrk "
        "(`bench/lua/ratelimit.lua`); Redis 7 `appendfsync always` with a GCRA Lua script "
        "(`bench/lua/redis_gcra.lua`) by `EVALSHA`, driven by redis-benchmark. In the take rows every take "
        "is allowed and writes (durable before the answer on both sides); in the refused row every take but "
        "the first is refused and nothing is written on either side.",
        "",
        *lines,
        "",
        "The cost of a `RateLimit` entry in an atomic request (cdragon alone, same run):",
        "",
        *cost,
    ])
    print(section)
    if not a.no_write:
        replace_section(BENCH / "RESULTS.md", "ratelimit", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
