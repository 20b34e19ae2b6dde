"""A stand-in for the asyncio transport under one cdragon connection, for driving the
real Server without sockets: the test (or bench/inproc.py) calls the protocol's
connection_made / data_received / connection_lost itself, and this object takes what
the protocol does back to its transport: writes, pause/resume of reading, close.

It records, it never decides: no buffering, no write-side back-pressure of its own (a
test calls the protocol's pause_writing / resume_writing when it wants that). With a
`loop` and `protocol` given, close() delivers connection_lost on the next loop pass, as
a real transport does; without them (bench/inproc.py) it only marks itself closed.
"""
from __future__ import annotations


class FakeTransport:
    __slots__ = ("n", "last", "chunks", "closed", "aborted", "reading", "pauses", "resumes", "loop", "protocol")

    def __init__(self, record: bool = False, loop=None, protocol=None):
        self.n = 0               # write() / writelines() calls
        self.last = b""          # the last write()'s bytes
        self.chunks = [] if record else None   # every write, when recording
        self.closed = False
        self.aborted = False     # abort() was called (closed at once, buffer dropped)
        self.reading = True      # False between pause_reading() and resume_reading()
        self.pauses = 0          # pause_reading() calls
        self.resumes = 0         # resume_reading() calls
        self.loop = loop
        self.protocol = protocol

    # ---- what the protocol calls ---------------------------------------------------------
    def write(self, data: bytes) -> None:
        self.n += 1
        self.last = data
        if self.chunks is not None:
            self.chunks.append(bytes(data))

    def writelines(self, data) -> None:
        self.n += 1
        if self.chunks is not None:
            self.chunks.append(b"".join(data))

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True
        self.resumes += 1

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.loop is not None and self.protocol is not None:
            self.loop.call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, *args, **kwargs):
        return None

    def get_write_buffer_size(self) -> int:
        return 0

    # ---- what the test reads ---------------------------------------------------------------
    def output(self) -> bytes:
        """Everything written so far (record=True)."""
        return b"".join(self.chunks or ())
