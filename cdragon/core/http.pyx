# Http: the per-connection protocol over httptools. Parses requests, enforces the
# header/body size limits and the header/body/idle deadlines, hands complete requests
# to the router, and writes responses strictly in request order: a response that must
# wait (for a durable commit, a lock, a watch) holds back every response behind it.
# Stops reading under backpressure (too many requests in flight, or the transport's
# write buffer over its high-water mark). Never touches storage directly.

from collections import deque
import httptools

cdef object HttpRequestParser = httptools.HttpRequestParser
cdef object HttpParserUpgrade = httptools.HttpParserUpgrade
cdef object _deque = deque


cdef bytes KEEP_ALIVE_10 = b"Connection: keep-alive\r\n"
cdef object _UPGRADE_HEADER = __import__("re").compile(rb"(?im)^upgrade:")


cdef bytes _no_upgrade(bytes data):
    # We never switch protocols, and RFC 9110 lets a server ignore Upgrade. llhttp would
    # stop at such a request (and drop its body), so the header is renamed before
    # parsing: same length, and no JSON body can hold a line starting "upgrade:".
    return _UPGRADE_HEADER.sub(b"Xpgrade:", data)


cdef bint _starts_http11(bytes data) noexcept:
    """Whether data starts with a request line ending in " HTTP/1.1"."""
    cdef const char* p = PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), i = 0
    while i < n and i < 8192 and p[i] != b'\r':
        i += 1
    return i >= 9 and i + 1 < n and p[i + 1] == b'\n' and memcmp(p + i - 9, b" HTTP/1.1", 9) == 0


cdef int64_t _digits(bytes b) noexcept:
    """A non-negative decimal of at most 18 digits, or -1."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(b)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b), i
    cdef int64_t v = 0
    if n < 1 or n > 18:
        return -1
    for i in range(n):
        if not (48 <= p[i] <= 57):
            return -1
        v = v * 10 + (p[i] - 48)
    return v


class _Abort(Exception):
    """Raised inside a parser callback to stop parsing this connection."""


@cython.freelist(1024)
cdef class Slot:
    """One response position in a connection's pipeline."""
    cdef bytes data        # the framed response; None until ready
    cdef int64_t seq       # batch that must be durable before it may be sent
    cdef bint close        # close the connection after sending
    cdef bint head         # HEAD request: framed without a body
    cdef object owner      # lock waiter / watcher holding this slot, if any


cdef class Conn:
    # -- global ------------------------------------------------------------------------
    cdef Server srv
    cdef object transport
    cdef object parser
    # -- per request ---------------------------------------------------------------------
    cdef object url
    cdef bytes body1              # the body, when it came in one piece (the usual case)
    cdef list body_parts          # more pieces, when it did not
    cdef Py_ssize_t body_len
    cdef Py_ssize_t hdr_bytes
    cdef Py_ssize_t partial_hdr
    cdef bint in_request, in_headers, began_in_chunk
    cdef bint expect_continue, bad_expect, want_close, http10
    cdef int64_t content_length
    cdef bytes fatal              # a response to send, then close (set before _Abort)
    # -- per connection ------------------------------------------------------------------
    cdef list q                   # Slots waiting to be sent, in order (short: a list
                                  # with typed appends beats a deque's method calls)
    cdef list out                 # ready bytes collected during one data_received
    cdef bint in_feed
    cdef bint chunk_http11        # this chunk starts with an HTTP/1.1 request line
    cdef bint line_http11         # ... and the current request is that one
    cdef int64_t reg_seq          # highest batch this connection is registered with
    cdef bint closing, closed, eof, read_paused, write_paused
    cdef public double deadline
    cdef public int dl_kind

    def __cinit__(self, Server srv):
        self.srv = srv
        self.q = []
        self.out = []
        self.body1 = None
        self.body_parts = None
        self.url = None
        self.reg_seq = 0
        self.closing = self.closed = self.eof = False
        self.read_paused = self.write_paused = False
        self.in_request = self.in_headers = False
        self.fatal = None

    # ---- asyncio protocol ------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        if not self.srv.conn_open(self):
            self.closing = True
            transport.write(frame(429, error_body("too_many", "connection limit reached"), True, False,
                                  False, b"Retry-After: 1\r\n"))
            transport.close()
            return
        self.parser = HttpRequestParser(self)
        self._set_deadline(DL_IDLE)

    def connection_lost(self, exc):
        self.closed = True
        self.closing = True
        self.srv.conn_lost(self)
        self._drop_owners()
        self.q.clear()
        self.parser = None

    def eof_received(self):
        # A half-closed client still gets the answers to what it sent before its
        # waits; its lock waiters and watchers leave, and the connection closes there.
        self.eof = True
        self._drop_owners()
        self._cut_at_dropped()
        if not self.q and not self.in_request:
            return False   # uvloop closes the transport
        return True

    def pause_writing(self):
        self.write_paused = True
        self._pause_reading()

    def resume_writing(self):
        self.write_paused = False
        self._maybe_resume_reading()

    def data_received(self, bytes data):
        if self.closing:
            return
        self.srv.now = mono_now()     # the deadlines set while parsing this chunk
        self.srv.now_fresh = True
        self.in_feed = True
        # the request line of the first request begun in this chunk, when the chunk
        # starts with one: its version is read here, without the parser's str
        self.chunk_http11 = not self.in_request and _starts_http11(data)
        self.began_in_chunk = False
        if has_bytes(data, "pgrade:", 7):     # "Upgrade:" / "upgrade:" (one scan; all-caps is not seen)
            data = _no_upgrade(data)
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade:
            self._fail(400, "bad_request", "protocol upgrade is not supported")
        except Exception as e:
            if self.fatal is not None:
                self._emit_close(self.fatal)
            elif not self.closing:
                if "HTTP version" in str(e):
                    self._fail(505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served")
                else:
                    self._fail(400, "bad_request", "malformed HTTP request: " + str(e))
        self.in_feed = False
        self.srv.now_fresh = False
        if self.in_headers and not self.began_in_chunk and not self.closing:
            self.partial_hdr += len(data)
            if self.partial_hdr > self.srv.max_header_bytes:
                self._fail(431, "headers_too_large", "request line and headers over the limit")
        self._write_out()
        if len(self.q) >= self.srv.max_pipeline:
            self._pause_reading()

    # ---- parser callbacks (kept tiny: each is a Python call per event) -----------------
    def on_message_begin(self):
        if self.closing:
            raise _Abort()
        self.in_request = True
        self.line_http11 = self.chunk_http11
        self.chunk_http11 = False
        self.in_headers = True
        self.began_in_chunk = True
        self.partial_hdr = 0
        self.hdr_bytes = 0
        self.url = None
        self.body1 = None
        self.body_parts = None
        self.body_len = 0
        self.content_length = -1
        self.expect_continue = self.bad_expect = self.want_close = False
        self._set_deadline(DL_HEADERS)

    def on_url(self, bytes url):
        self.url = url if self.url is None else self.url + url
        self.hdr_bytes += len(url)
        if self.hdr_bytes > self.srv.max_header_bytes:
            self._abort(431, "headers_too_large", "request line and headers over the limit")

    def on_header(self, bytes name, bytes value):
        cdef Py_ssize_t n = len(name)
        self.hdr_bytes += n + len(value) + 4
        if self.hdr_bytes > self.srv.max_header_bytes:
            self._abort(431, "headers_too_large", "request line and headers over the limit")
        if n == 6 and name.lower() == b"expect":
            if value.lower() == b"100-continue":
                self.expect_continue = True
            else:
                self.bad_expect = True
        elif n == 14 and name.lower() == b"content-length":
            self.content_length = _digits(value)   # -1 if not digits: the parser rejects it

    def on_headers_complete(self):
        self.in_headers = False
        if self.line_http11:
            self.http10 = False
        else:
            ver = self.parser.get_http_version()
            self.http10 = ver == "1.0"
            if ver != "1.1" and ver != "1.0":
                self._abort(505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served")
        if self.bad_expect:
            self._abort(417, "expectation_failed", "only Expect: 100-continue is supported")
        if self.content_length > self.srv.max_body_bytes:
            self._abort(413, "too_large", "body over the limit of %d bytes" % self.srv.max_body_bytes)
        self._set_deadline(DL_BODY)
        if self.expect_continue:
            self._queue_ready(CONTINUE_100)

    def on_body(self, bytes body):
        self.body_len += len(body)
        if self.body_len > self.srv.max_body_bytes:
            self._abort(413, "too_large", "body over the limit of %d bytes" % self.srv.max_body_bytes)
        if self.body1 is None:
            self.body1 = body
        else:
            if self.body_parts is None:
                self.body_parts = [self.body1]
            self.body_parts.append(body)

    def on_message_complete(self):
        cdef bytes body
        if self.closing:
            raise _Abort()
        self.in_request = False
        if self.body_parts is not None:
            body = b"".join(self.body_parts)
            self.body_parts = None
        else:
            body = b"" if self.body1 is None else self.body1
        self.body1 = None
        self.want_close = not self.parser.should_keep_alive() or self.srv.shutting_down
        self.dl_kind = DL_NONE
        self.srv.dispatch(self, self.parser.get_method(), self.url, body)
        if self.want_close:
            self.closing = True   # the answer (queued or sent) closes the connection
            raise _Abort()        # and no further pipelined request is read

    # ---- responding ------------------------------------------------------------------
    cdef inline void reply(self, int status, bytes body, int64_t seq, bint head, bint text=False):
        """Answer the current request (framed with its close/HEAD flags)."""
        self.respond(frame(status, body, self.want_close, head, text,
                           KEEP_ALIVE_10 if self.http10 and not self.want_close else None),
                     seq, self.want_close, head)

    cdef void reply_error(self, object err, int64_t seq, bint head):
        self.respond(error_response(err, self.want_close, head), seq, self.want_close, head)

    cdef void respond(self, bytes data, int64_t seq, bint close, bint head):
        cdef Slot s
        if not self.q and seq <= self.srv.store.durable_seq:
            self._emit(data, close)
            return
        s = Slot.__new__(Slot)
        s.data = data
        s.seq = seq
        s.close = close
        s.head = head
        self.q.append(s)
        if seq > self.reg_seq:
            self._register(seq)

    cdef Slot reserve(self, object owner, bint head):
        """A place in the pipeline for an answer that comes later (lock, watch)."""
        cdef Slot s = Slot.__new__(Slot)
        s.data = None
        s.seq = 0
        s.close = self.want_close
        s.head = head
        s.owner = owner
        self.q.append(s)
        return s

    cdef void fill(self, Slot s, bytes data, int64_t seq):
        s.data = data
        s.seq = seq
        s.owner = None
        if seq > self.srv.store.durable_seq:
            if seq > self.reg_seq:
                self._register(seq)
        else:
            self.flush()

    cdef void deliver(self, Slot s, bytes data, double now):
        """fill() for a durable answer, fast when the slot is first in line (a watcher
        fan-out: one write per connection and nothing else)."""
        if self.closed or not self.q or self.q[0] is not s or self.in_feed:
            self.fill(s, data, 0)
            return
        del self.q[0]
        s.owner = None
        self.transport.write(data)
        if not self.q and not self.in_request:
            if self.eof:
                self.transport.close()
            else:
                self.dl_kind = DL_IDLE
                self.deadline = now + self.srv.idle_timeout
                if self.read_paused:
                    self._maybe_resume_reading()
        else:
            self.flush()

    cdef void _register(self, int64_t seq):
        cdef Batch b = self.srv.store.batch_for(seq)
        if b is not None:
            b.conns.append(self)
            self.reg_seq = seq

    cdef void _queue_ready(self, bytes data):
        cdef Slot s
        if not self.q:
            self._emit(data, False)
        else:
            s = Slot.__new__(Slot)
            s.data = data
            s.seq = 0
            self.q.append(s)

    cdef void flush(self):
        """Send every answer at the head of the pipeline that may go out now."""
        cdef Slot s
        cdef int64_t durable = self.srv.store.durable_seq
        if self.closed:
            return
        while self.q:
            s = <Slot>self.q[0]
            if s.data is None or s.seq > durable:
                break
            del self.q[0]
            self._emit(s.data, s.close)
            if s.close:
                self.q.clear()
                break
        if not self.in_feed:
            self._write_out()
        self._maybe_resume_reading()

    cdef void fail_pending(self, int64_t lo, int64_t hi, object err):
        """Replace the answers waiting on batches lo..hi (which failed) with err."""
        cdef Slot s
        for s in self.q:
            if s.data is not None and lo <= s.seq <= hi:
                s.data = error_response(err, s.close, s.head)
                s.seq = 0

    cdef inline void _emit(self, bytes data, bint close):
        self.out.append(data)
        if close:
            self.closing = True

    cdef void _emit_close(self, bytes data):
        # an error that ends the connection still waits behind earlier answers
        cdef Slot s
        if self.q:
            s = Slot.__new__(Slot)
            s.data = data
            s.seq = 0
            s.close = True
            self.q.append(s)
            self.closing = True
            self._pause_reading()
        else:
            self._emit(data, True)

    cdef void _write_out(self):
        cdef list out = self.out
        if out and not self.closed:
            if len(out) == 1:
                self.transport.write(out[0])
            else:
                self.transport.write(b"".join(out))
            out.clear()
        if self.closing and not self.q:
            if not self.closed:
                self.transport.close()
        elif not self.q and not self.in_request:
            if self.eof:
                self.transport.close()
            else:
                self._set_deadline(DL_IDLE)   # during shutdown, Server.close_idle ends it

    cdef void _fail(self, int status, str code, str message):
        self._emit_close(frame(status, error_body(code, message), True, False))
        self.in_request = False

    cdef void _abort(self, int status, str code, str message) except *:
        self.fatal = frame(status, error_body(code, message), True, False)
        self.in_request = False
        raise _Abort()

    # ---- flow control and deadlines ----------------------------------------------------
    cdef void _pause_reading(self):
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    cdef void _maybe_resume_reading(self):
        if (self.read_paused and not self.write_paused and not self.closing and not self.closed
                and len(self.q) < self.srv.max_pipeline // 2):
            self.read_paused = False
            self.transport.resume_reading()

    cdef void _set_deadline(self, int kind):
        cdef double span
        if kind == DL_IDLE:
            span = self.srv.idle_timeout
        elif kind == DL_HEADERS:
            span = self.srv.header_timeout
        else:
            span = self.srv.body_timeout
        self.dl_kind = kind
        self.deadline = (self.srv.now if self.srv.now_fresh else mono_now()) + span

    cdef void on_deadline(self):
        """Called by the sweep when `deadline` has passed."""
        cdef int kind = self.dl_kind
        self.dl_kind = DL_NONE
        if self.closing or self.closed:
            return
        if kind == DL_IDLE:
            self.closing = True
            self.transport.close()
        elif kind == DL_HEADERS or kind == DL_BODY:
            self._emit_close(frame(408, error_body("request_timeout",
                             "request headers not received in time" if kind == DL_HEADERS
                             else "request body not received in time"), True, False))
            self.in_request = False
            self._write_out()

    cdef void _drop_owners(self):
        """The client went away: lock waiters and watchers on this connection leave."""
        cdef Slot s
        for s in self.q:
            if s.owner is not None:
                self.srv.drop_owner(s.owner)
                s.owner = None

    cdef void _cut_at_dropped(self):
        cdef Slot s
        for s in self.q:
            if s.data is None:
                s.data = b""
                s.seq = 0
                s.close = True
                break
        self.flush()

    cdef void shutdown_idle(self):
        if not self.q and not self.in_request and not self.closing and not self.closed:
            self.closing = True
            self.transport.close()
