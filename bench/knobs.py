"""The full suite's settings: paths, the environment knobs (DURATION, SCENARIOS, ...;
listed in bench/suite.py's docstring) read once at import, and the run's log line.

Owns no state that changes during a run; never starts a process.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
LUA = BENCH / "lua"
VENV_PY = REPO / ".venv" / "bin" / "python"
PY = str(VENV_PY) if VENV_PY.exists() else sys.executable

SYSTEM_NAMES = ("ceiling", "cdragon", "redis", "etcd")
GIB = 1 << 30


def env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise SystemExit(f"suite.py: {name} must be an integer, got {os.environ[name]!r}")


DURATION = env_int("DURATION", 10)
WARMUP = env_int("WARMUP", 2)
CONNECTIONS = env_int("CONNECTIONS", 400)
SERVER_CPU = env_int("SERVER_CPU", 0)
CLIENT_CPU = env_int("CLIENT_CPU", 1)
START_TIMEOUT = env_int("START_TIMEOUT", 60)
STOP_TIMEOUT = env_int("STOP_TIMEOUT", 15)
WATCH_TIMEOUT = env_int("WATCH_TIMEOUT", 480)
WRK_TIMEOUT = os.environ.get("WRK_TIMEOUT", "2s")
SCENARIOS = os.environ.get("SCENARIOS", "")
SYSTEMS = os.environ.get("SYSTEMS", "")
DATA_ROOT = Path(os.environ.get("DATA_ROOT", str(BENCH / "out"))).resolve()
KEEP_DATA = os.environ.get("KEEP_DATA", "0") == "1"
WATCH = os.environ.get("WATCH", "1") != "0"
PLOT = os.environ.get("PLOT", "1") != "0"
INSTALL = os.environ.get("INSTALL", "1") != "0"
# a measurement during which this much of a core went to work that was neither the server's
# nor the load generator's is taken again (twice at most), up to MAX_RETRIES times per run:
# the machine is shared
NOISY_PCT = env_int("NOISY_PCT", 15)
MAX_RETRIES = env_int("MAX_RETRIES", 20)
RETRIES_PER_RUN = 2
# cdragon and Redis are measured this many times per row, taking turns (cdragon, Redis,
# cdragon, Redis, ...), and each shown as the mean: single runs drift by 10-30 % here
ROUNDS = max(1, env_int("ROUNDS", 2))
ROUND_SYSTEMS = ("cdragon", "redis")
# the 10 KB rows over 1,000,000 keys store more than cdragon's default 2 GiB cap
CDRAGON_MAX_STORAGE = 32 * GIB


def log(msg: str) -> None:
    print(f"[suite {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
