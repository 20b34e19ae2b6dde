"""The ceiling of cdragon's stack: bare uvloop + httptools answering every request with `{}`.

Nothing built on uvloop + httptools can answer faster than this on one core, so the
benchmark quotes cdragon's throughput as a ratio to it, measured in the same run.
It parses each request with httptools.HttpRequestParser and, when a request is
complete, writes one prebuilt response (HTTP/1.1 keep-alive, Content-Type
application/json, Content-Length). No routing, no body handling, no JSON work.

    python bench/ceiling_server.py --port 18090
"""
from __future__ import annotations

import argparse
import asyncio
import signal

import httptools
import uvloop

BODY = b"{}"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
    b"\r\n" + BODY
)
# Same answer for a client that asked to close (HTTP/1.0 without keep-alive, or
# `Connection: close`): say so, then close once the bytes are written.
RESPONSE_CLOSE = RESPONSE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)


class CeilingProtocol(asyncio.Protocol):
    __slots__ = ("transport", "parser")

    def connection_made(self, transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.transport.close()
        except httptools.HttpParserError:
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            self.transport.close()

    # httptools callback: one whole request (line, headers, body) has been parsed.
    def on_message_complete(self):
        if self.parser.should_keep_alive():
            self.transport.write(RESPONSE)
        else:
            self.transport.write(RESPONSE_CLOSE)
            self.transport.close()

    def connection_lost(self, exc):
        self.transport = None


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(CeilingProtocol, host, port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ceiling server listening on {host}:{port}", flush=True)
    await stop.wait()
    server.close()  # open connections die with the process


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=18090)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    uvloop.run(main(args.host, args.port))
