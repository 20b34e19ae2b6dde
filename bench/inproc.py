"""In-process CPU cost of cdragon's request path, without sockets: 400 connections
get their requests through data_received on a fake transport, the loop runs until
every answer is written (durable, group commit and all), and the process's CPU time
is divided by the requests. The kernel's TCP work is left out, so this compares
versions of the request path far more steadily than a wrk run on a shared machine.

    taskset -c 0 .venv/bin/python bench/inproc.py add 1 1       # atomic add, 1 account x 1 key
    taskset -c 0 .venv/bin/python bench/inproc.py kv 1 1000     # KVSet 64 B, 1 x 1000 keys
    taskset -c 0 .venv/bin/python bench/inproc.py lock 1 1      # lock + unlock, a key per connection
    taskset -c 0 .venv/bin/python bench/inproc.py rl 1 1        # rate-limit take (allowed); rlrefused: refused;
                                                                # addrl: atomic add + a RateLimit entry
    taskset -c 0 .venv/bin/python bench/inproc.py push 1 1000   # REST queue push, 1 account x 1000 queues
    taskset -c 0 .venv/bin/python bench/inproc.py cycle 1 1     # push, receive (Max 1), ack in turn per connection
    (optional 4th argument: rounds of 400 requests, default 250; REPO=dir to time another checkout;
     TOKEN=1: one token configured and sent with every request, where the checkout has tokens)

The fake transport is tests/fake_transport.py (the in-process tests drive the server the same way).
"""
import asyncio, os, sys, time, tempfile, shutil, random
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.environ.get("REPO", HERE))
sys.path.insert(1, os.path.join(HERE, "tests"))    # this checkout's fake transport, whichever REPO is timed
import uvloop
from fake_transport import FakeTransport
from cdragon import config, __version__
from cdragon.storage import Storage
from cdragon._core import Server

import re
HANDLE = re.compile(rb'"Lock":(\d+)')
RECEIPT = re.compile(rb'"Receipt":"([^"]+)"')
QBODY = b'{"job":"send-mail","to":"someone@example.com","n":1}'

def main():
    kind, acc, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    nconn, rounds = 400, int(sys.argv[4]) if len(sys.argv) > 4 else 250
    os.makedirs(os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"), exist_ok=True)
    d = tempfile.mkdtemp(dir=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"))
    cfg = config.load(env={"CDRAGON_MAX_STORAGE_BYTES": str(32 << 30)}, overrides={"data_dir": d})
    loop = uvloop.new_event_loop(); asyncio.set_event_loop(loop)
    st = Storage(d, cfg.initial_map_bytes, cfg.max_storage_bytes)
    srv = Server(loop, st, cfg, "x")
    auth = b""
    if os.environ.get("TOKEN") and hasattr(srv, "set_auth"):
        # one token configured: every request carries it and is checked (issue 13's guard)
        import hashlib
        tok = "cdt_bench-token"
        if os.environ.get("TOKEN") != "header-only":
            srv.set_auth([("bench", hashlib.sha256(tok.encode()).hexdigest(), ["*"], "write")], True)
        auth = b"Authorization: Bearer " + tok.encode() + b"\r\n"
    srv.start()
    conns, ts = [], []
    for i in range(nconn):
        c = srv.protocol(); t = FakeTransport(); c.connection_made(t); conns.append(c); ts.append(t)
    def req():
        a = random.randrange(acc); k = random.randrange(keys)
        if kind == "add":
            body = b'{"Atomic":[{"Key":"k%d","Add":1}]}' % k
        elif kind == "addrl":       # the same with an allowed RateLimit entry
            body = b'{"Atomic":[{"Key":"k%d","Add":1}],"RateLimit":[{"Key":"u%d","Rate":1000000,"Per":1}]}' % (k, k)
        elif kind in ("rl", "rlrefused"):   # a take: allowed (never reached), or over 1 per hour
            q = b"rate=1000000&per=1" if kind == "rl" else b"rate=1&per=3600"
            return b"POST /db/a%d/ratelimit/u%d?%s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: 0\r\n\r\n" % (a, k, q, auth)
        else:
            body = b'{"KVSet":[{"Key":"k%d","Value":"%s"}]}' % (k, b"v" * 62)
        return b"POST /db/a%d HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (a, auth, len(body)) + body
    def qreq(ci, r, t):
        """Queue traffic of connection ci in round r: pushes, or (cycle) push, receive, ack
        of what it received (a push again if it received nothing)."""
        q = b"q%d" % (ci % keys)
        step = r % 3 if kind == "cycle" else 0
        m = RECEIPT.search(t.last) if step == 2 else None
        if step == 1:
            body = b'{"Queue":"%s","Max":1,"Visibility":60}' % q
            return b"POST /queue/a0 HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: %d\r\n\r\n" % (auth, len(body)) + body
        if m is not None:
            return b"DELETE /db/a0/queue/%s?receipt=%s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (q, m.group(1), auth)
        return b"POST /db/a0/queue/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: %d\r\n\r\n" % (q, auth, len(QBODY)) + QBODY
    reqs = [req() for _ in range(20000)]
    total = nconn * rounds
    async def drive():
        j = 0
        for r in range(rounds):
            target = (r + 1)
            for ci, c in enumerate(conns):
                if kind == "lock":
                    if r % 2 == 0:
                        body = b'{"LockID":"k%d","LockDur":30,"KVGet":["a0/k%d"]}' % (ci, ci)
                    else:
                        h = HANDLE.search(ts[ci].last).group(1)
                        body = b'{"UnlockID":"k%d","Unlock":%s}' % (ci, h)
                    c.data_received(b"POST /db/a0 HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (auth, len(body)) + body)
                    continue
                if kind in ("push", "cycle"):
                    c.data_received(qreq(ci, r, ts[ci]))
                    continue
                c.data_received(reqs[j % 20000]); j += 1
            # wait until every conn got its answer
            while any(t.n < target for t in ts):
                await asyncio.sleep(0)
    t0 = time.process_time(); w0 = time.perf_counter()
    loop.run_until_complete(drive())
    cpu = time.process_time() - t0; wall = time.perf_counter() - w0
    print(f"{kind} {acc}x{keys}: {cpu/total*1e6:.2f} us CPU/request, {wall/total*1e6:.2f} us wall/request ({total} requests, commits {srv.commits})")
    for c in conns: c.connection_lost(None)
    srv.begin_shutdown(); srv.close(); st.close(); loop.close()
    shutil.rmtree(d)
main()
