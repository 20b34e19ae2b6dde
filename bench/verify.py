"""After a load run, ask the server how many writes it actually applied.

bench/quick.sh calls this before stopping cdragon, so that a server answering 200
without doing the work is caught: it prints one integer on stdout.

    python bench/verify.py atomic_add PORT  -> the sum of counters k0..k999 in account
                                               `bench` (= Add:1 requests applied)
    python bench/verify.py kvset64 PORT     -> the highest Version among keys k0..k999
                                               (= KVSet requests applied: each moves the
                                               account revision by exactly 1)

Exit status 1 (with the reason on stderr) when the answer is not what the API promises.
Stdlib only; keys and account match bench/lua/*.lua.
"""
from __future__ import annotations

import json
import sys
import urllib.request

KEYS = [f"k{i}" for i in range(1000)]  # 1,000 operations: exactly the default per-request limit
VALUE = "v" * 62  # kvset64.lua writes this string (64 bytes of JSON)


def post(port: int, body: dict) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/db/bench",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def atomic_add(port: int) -> int:
    answer = post(port, {"Atomic": [{"Key": k, "Add": 0} for k in KEYS]})
    values = {e["Key"]: e["Value"] for e in answer["Atomic"]}
    if set(values) != set(KEYS):
        raise ValueError(f"Atomic answer lists {len(values)} of {len(KEYS)} counters")
    return sum(values.values())


def kvset64(port: int) -> int:
    answer = post(port, {"KVGet": KEYS})
    entries = answer.get("KV", [])
    if len(entries) != len(KEYS):
        raise ValueError(f"KV answer lists {len(entries)} of {len(KEYS)} keys")
    for e in entries:
        if e.get("Version", 0) > 0 and e.get("Value") != VALUE:
            raise ValueError(f"key {e.get('Key')!r} holds {e.get('Value')!r}, not the 62-char string written")
    return max(e.get("Version", 0) for e in entries)


def main() -> int:
    scenario, port = sys.argv[1], int(sys.argv[2])
    check = {"atomic_add": atomic_add, "kvset64": kvset64}[scenario]
    try:
        print(check(port))
    except Exception as e:  # any failure is reported, never a crash with a traceback
        print(f"verify {scenario}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
