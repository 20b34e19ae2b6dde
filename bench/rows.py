"""The full suite's rows (scenarios): what each row measures, the original Go server's
published figures set against them, and which systems run a row with which command.

Pure data and small functions: never starts a process or measures anything.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from knobs import SYSTEMS

@dataclass
class Row:
    id: str            # what SCENARIOS matches, e.g. "kv64-1000x1"
    group: str         # lock | kv64 | kv1k | kv10k | add | watch
    label: str
    acc: int = 1
    keys: int = 1
    size: int = 0
    watch: str = ""    # watch_reaction.py scenario, e.g. "one:1000"
    ref: float | None = None   # the original Go server's figure, in this row's ops/s
    ref_text: str = ""


# The original Go server's published figures (zero simulated latency, 2 cores).
# The lock figure is in req/s (a lock or an unlock each count), so in pairs/s it is half.
# The 1 KB and 10 KB figures do not say which mix: taken as 1 account × 1000 keys, like 64 B.
REFS = {
    "lock-1x1000": (87_500 / 2, "87.5k req/s = 43.8k pairs/s"),
    "add-1x1": (31_800, "31.8k req/s"),
    "kv64-1x1000": (27_500, "27.5k req/s"),
    "kv1k-1x1000": (28_100, "28.1k req/s (mix not stated)"),
    "kv10k-1x1000": (10_300, "10.3k req/s (mix not stated)"),
}
MIXES4 = [(1, 1), (1, 1000), (1000, 1), (1000, 1000)]
SIZES = [("kv64", 64, "64 B"), ("kv1k", 1024, "1 KB"), ("kv10k", 10240, "10 KB")]


def mix(a: int, k: int) -> str:
    return f"{a}×{k}"


def all_rows() -> list[Row]:
    rows = []
    for a, k in [(1, 1), (1, 1000), (1000, 1000)]:
        rows.append(Row(f"lock-{a}x{k}", "lock", f"lock+unlock {mix(a, k)}", a, k))
    for g, size, text in SIZES:
        for a, k in MIXES4:
            rows.append(Row(f"{g}-{a}x{k}", g, f"KV write {text} {mix(a, k)}", a, k, size))
    for a, k in MIXES4:
        rows.append(Row(f"add-{a}x{k}", "add", f"atomic add {mix(a, k)}", a, k))
    for n in (1, 100, 1000, 10000):
        rows.append(Row(f"watch-{n}", "watch", f"watch reaction, {n:,} watcher{'s' if n > 1 else ''} on one key",
                        watch=f"one:{n}"))
    rows.append(Row("watch-1000x5", "watch", "watch reaction, 1,000 keys × 5 watchers", watch="keys:1000x5"))
    for r in rows:
        if r.id in REFS:
            r.ref, r.ref_text = REFS[r.id]
    return rows


def unit(row: Row) -> str:
    return "pairs/s" if row.group == "lock" else "req/s"


def systems_for(row: Row) -> list[str]:
    names = ["ceiling", "cdragon", "redis", "etcd"]
    if row.group == "add":
        names.remove("etcd")     # etcd has no counter: an add is a read + compare-and-swap loop
    return [n for n in names if not SYSTEMS or re.search(SYSTEMS, n)]


def redis_command(row: Row) -> list[str]:
    a = "a0" if row.acc == 1 else "a__rand_int__"
    k = "k0" if row.keys == 1 else "k__rand_int__"
    key = f"{a}:{k}"
    if row.group == "add":
        return ["INCR", key]
    return ["SET", key, "v" * row.size]
