"""The fan-out ceiling of cdragon's stack: bare uvloop + httptools holding watch requests
open and, on a trigger, writing one prebuilt response to all of them.

It speaks just enough of cdragon's watch API for `bench/watch_reaction.py` to drive it
unchanged:

- `POST /watch/{acc}` with a JSON body `{"ID": key, ...}` is held open in the group of
  `key` (the body is parsed when the request parks, which is not measured);
- `PUT /db/{acc}/kv/{key}` is the trigger: it is answered `{"Key","Version"}` first
  (cdragon also answers the writer first), then ONE response
  `{"Key": key, "Value": <the PUT body>, "Version": n}` is framed once and the same
  bytes object is written to every held request of that key; the group is emptied;
- anything else (`GET /health`) is answered `{}` at once.

No storage, no fsync, no per-watcher work beyond `transport.write`: nothing built on
uvloop + httptools can fan one answer out faster on one core, so the watch benchmark
quotes cdragon's fan-out as a ratio to this, measured in the same run.

    python bench/fanout_ceiling.py --port 18091
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal

import httptools
import uvloop


def frame(body: bytes, close: bool = False) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + (b"\r\nConnection: close" if close else b"")
            + b"\r\n\r\n" + body)


EMPTY = frame(b"{}")
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

groups: dict[bytes, set] = {}      # key (JSON-encoded) -> held protocols
version = 0


class FanoutProtocol(asyncio.Protocol):
    __slots__ = ("transport", "parser", "url", "body", "held")

    def connection_made(self, transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body = []
        self.held = None

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(BAD)
            self.transport.close()

    def on_message_begin(self):
        self.url = b""
        self.body = []

    def on_url(self, url):
        self.url += url

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        global version
        method = self.parser.get_method()
        body = b"".join(self.body)
        if method == b"POST" and self.url.startswith(b"/watch/"):
            key = json.dumps(json.loads(body)["ID"]).encode()
            self.held = key
            groups.setdefault(key, set()).add(self)
            return
        if method == b"PUT" and self.url.startswith(b"/db/"):
            key = json.dumps(self.url.split(b"/kv/", 1)[1].decode()).encode()
            version += 1
            self.transport.write(frame(b'{"Key":%s,"Version":%d}' % (key, version)))
            group = groups.pop(key, None)
            if group:
                data = frame(b'{"Key":%s,"Value":%s,"Version":%d}' % (key, body, version))
                for p in group:           # serialise once, write the same bytes everywhere
                    p.held = None
                    p.transport.write(data)
            return
        self.transport.write(EMPTY)

    def connection_lost(self, exc):
        if self.held is not None:
            g = groups.get(self.held)
            if g is not None:
                g.discard(self)
        self.transport = None


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FanoutProtocol, host, port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fan-out ceiling listening on {host}:{port}", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=18091)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    uvloop.run(main(args.host, args.port))
