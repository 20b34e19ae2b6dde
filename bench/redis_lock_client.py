"""The Redis side of the lock rows: N connections, each looping a lock+unlock pair
(`SET k 1 NX PX 30000`, then `DEL k`) over raw RESP on uvloop, printing a BENCH_RESULT
line like the wrk scripts do. Run as `bench/suite.py redis-lock-client ...` on CLIENT_CPU.

Never starts or stops a server.
"""
from __future__ import annotations

import time

def redis_lock_client(a) -> int:
    """N connections, each looping `SET <key> 1 NX PX 30000` and, when granted, `DEL <key>`
    (a lock+unlock pair, two round trips). Prints a BENCH_RESULT line like the wrk scripts:
    ops= completed pairs (DEL answered :1), locked= SETs answered nil (held by another)."""
    import asyncio
    import random
    try:
        import uvloop
    except ImportError:
        uvloop = None
    perf = time.perf_counter_ns
    randrange = random.randrange
    prefix = a.prefix.encode()
    st = {"requests": 0, "grants": 0, "unlocks": 0, "locked": 0, "bad": 0, "first_bad": ""}
    lat: list[int] = []
    phase = {"measuring": False, "running": True}
    outstanding = [0]
    acc, nkeys = a.acc, a.keys

    class Conn(asyncio.Protocol):
        __slots__ = ("tr", "buf", "key", "t0", "state")

        def connection_made(self, tr):
            self.tr = tr
            self.buf = b""
            self.send_lock()

        def send_lock(self):
            if not phase["running"]:
                return
            key = b"%sa%d:lock:k%d" % (prefix, randrange(acc), randrange(nkeys))
            self.key = key
            self.state = 0
            outstanding[0] += 1
            self.t0 = perf()
            self.tr.write(b"*6\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\n1\r\n$2\r\nNX\r\n$2\r\nPX\r\n$5\r\n30000\r\n"
                          % (len(key), key))

        def data_received(self, data):
            buf = self.buf + data
            i = buf.find(b"\r\n")
            if i < 0:
                self.buf = buf
                return
            line, self.buf = buf[:i], buf[i + 2:]
            outstanding[0] -= 1
            m = phase["measuring"]
            if m:
                lat.append(perf() - self.t0)
                st["requests"] += 1
            if self.state == 0:
                if line == b"+OK":
                    if m:
                        st["grants"] += 1
                    self.state = 1
                    outstanding[0] += 1
                    self.t0 = perf()
                    key = self.key
                    self.tr.write(b"*2\r\n$3\r\nDEL\r\n$%d\r\n%s\r\n" % (len(key), key))   # always unlock
                    return
                if line == b"$-1":
                    if m:
                        st["locked"] += 1
                else:
                    self.bad(line)
            else:
                if line == b":1":
                    if m:
                        st["unlocks"] += 1
                else:
                    self.bad(line)
            self.send_lock()

        def bad(self, line):
            if not st["bad"]:
                st["first_bad"] = line.decode(errors="replace")[:200]
            st["bad"] += 1

    async def main():
        loop = asyncio.get_running_loop()
        conns = []
        for _ in range(a.conns):
            tr, _p = await loop.create_connection(Conn, "127.0.0.1", a.port)
            conns.append(tr)
        phase["measuring"] = True
        t0 = time.monotonic()
        await asyncio.sleep(a.secs)
        phase["measuring"] = False
        phase["running"] = False
        secs = time.monotonic() - t0
        deadline = time.monotonic() + 5
        while outstanding[0] > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for tr in conns:
            tr.close()
        return secs

    if uvloop is not None:
        secs = uvloop.run(main())
    else:
        secs = asyncio.run(main())
    lat.sort()

    def q(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))] // 1000 if lat else 0

    print(f"BENCH_RESULT requests={st['requests']} duration_us={int(secs * 1e6)} rps={st['requests'] / secs:.1f} "
          f"p50_us={q(0.5)} p90_us={q(0.9)} p99_us={q(0.99)} max_us={lat[-1] // 1000 if lat else 0} "
          f"non2xx={st['bad']} connect=0 read=0 write=0 timeout=0 grants={st['grants']} unlocks={st['unlocks']} "
          f"locked={st['locked']} ops={st['unlocks']} ops_rps={st['unlocks'] / secs:.1f}")
    if st["bad"]:
        print(f"BENCH_FIRST_NON2XX {st['first_bad']}")
    return 0
