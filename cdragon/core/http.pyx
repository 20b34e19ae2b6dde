# Http: the per-connection protocol. Frames requests -- the everyday ones itself, from
# the read buffer (framer.pyx), everything else (a request split over reads, anything
# unusual or malformed) through httptools -- with one implementation of each step both
# paths share (_begin, _headers_done, _complete). Enforces the header/body size limits
# and the header/body/idle deadlines, hands complete requests to the router, and writes
# responses strictly in request order: a response that must wait (for a durable
# commit, a lock, a watch) holds back every response behind it. Stops reading under
# backpressure (too many requests in flight, or the transport's write buffer over its
# high-water mark). Never touches storage directly.

import httptools

cdef object HttpRequestParser = httptools.HttpRequestParser
cdef object HttpParserUpgrade = httptools.HttpParserUpgrade


cdef bytes KEEP_ALIVE_10 = b"Connection: keep-alive\r\n"
cdef object _UPGRADE_HEADER = __import__("re").compile(rb"(?im)^upgrade:")
cdef object _socket = __import__("socket")
cdef bytes _LINGER_RESET = __import__("struct").pack("ii", 1, 0)   # SO_LINGER on, 0 s


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


cdef bint _is_import(object url) noexcept:
    return type(url) is bytes and span_is_import(PyBytes_AS_STRING(url), PyBytes_GET_SIZE(url))


@cython.freelist(1024)
cdef class Slot:
    pass


cdef class Conn:
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
        self.loopback = -1

    # ---- asyncio protocol ------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        if not self.srv.conn_open(self):
            self.closing = True
            transport.write(E_TOO_MANY_CONNECTIONS.closing_frame)
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
        if not self.q and not self.in_request and not self.closed:
            # closed here rather than by returning False (uvloop would close it without
            # us knowing), so that this close gets its abort deadline like any other
            self._close()
        return True

    def pause_writing(self):
        self.write_paused = True
        self._pause_reading()

    def resume_writing(self):
        self.write_paused = False
        self._maybe_resume_reading()
        if self.streamer is not None:
            self.streamer.drained()      # a streamed answer may write on

    def data_received(self, bytes data):
        cdef Py_ssize_t off = 0
        cdef bytes rest = data        # what httptools gets (None: nothing)
        if self.closing:
            return
        self.srv.now = mono_now()     # the deadlines set while parsing this chunk
        self.srv.now_fresh = True
        self.in_feed = True
        self.began_in_chunk = False
        try:
            # the everyday requests at the front of the chunk, framed here (the framer
            # declines any request with an Upgrade header; a body is taken as it is)
            if not self.in_request and self.srv.fast_http:
                off = self._frame_requests(data)
                if off == PyBytes_GET_SIZE(data) or self.closing:
                    rest = None       # all framed, or a framed request closes: the rest is dropped
                elif off:
                    rest = data[off:]
            if rest is not None:
                # the request line of the first request begun here, when the data
                # starts with one: its version is read here, without the parser's str
                self.chunk_http11 = not self.in_request and _starts_http11(rest)
                if has_bytes(rest, "pgrade:", 7):   # "Upgrade:" / "upgrade:" (one scan; all-caps is not seen)
                    rest = _no_upgrade(rest)
                self.parser.feed_data(rest)
        except HttpParserUpgrade:
            self._fail(E_UPGRADE.closing_frame)
        except Exception as e:
            if self.fatal is not None:
                self._emit_close(self.fatal)
            elif not self.closing:
                if "HTTP version" in str(e):
                    self._fail(E_HTTP_VERSION.closing_frame)
                else:
                    self._fail(frame(400, error_body("bad_request", "malformed HTTP request: " + str(e)), True))
        self.in_feed = False
        self.srv.now_fresh = False
        if self.in_headers and not self.began_in_chunk and not self.closing:
            self.partial_hdr += len(data)     # (a request went on from the last chunk: off was 0)
            if self.partial_hdr > self.srv.lim.max_header_bytes:
                self._fail(E_HEADERS_TOO_LARGE.closing_frame)
        self._write_out()
        if len(self.q) >= self.srv.lim.max_pipeline:
            self._pause_reading()

    # ---- the fast framer ----------------------------------------------------------------
    cdef Py_ssize_t _frame_requests(self, bytes data) except -1:
        """Serve the complete everyday requests at the front of `data` (the parser at a
        message boundary) as the httptools callbacks would; returns the offset of the
        first request left to httptools (len(data): none). Stops after a request that
        closes the connection."""
        cdef const char* p = PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data), off = 0
        cdef Limits* lim = &self.srv.lim
        cdef Framed f
        cdef bytes body
        while off < n and not self.closing:
            if not fast_frame(p, off, n, lim.max_header_bytes, lim.max_body_bytes,
                              lim.max_import_bytes, &f):
                break
            self._begin()
            self.url = PyBytes_FromStringAndSize(p + f.url0, f.url1 - f.url0)
            self.hdr_bytes = f.hdr_bytes
            self.content_length = f.content_length
            if f.authz0 >= 0:
                self.authz = PyBytes_FromStringAndSize(p + f.authz0, f.authz1 - f.authz0)
            self.in_headers = False
            self.http10 = f.http10
            self.method = fm_method(f.method)
            self._headers_done()
            self.body_len = f.end - f.body0
            if self.body_len == 0 or self.denied is not None:
                body = b""            # (a refused request's body is dropped unread)
            else:                     # the one copy (httptools' on_body made one too)
                body = PyBytes_FromStringAndSize(p + f.body0, self.body_len)
            off = f.end
            self._complete(body, f.keep_alive)
        return off

    # ---- steps shared by both framings -----------------------------------------------
    cdef int _begin(self) except -1:
        """A request starts: every per-request field back to its start."""
        self.in_request = True
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
        self.authz = None
        self.denied = None
        self.read_only = False
        self.found = None
        self._set_deadline(DL_HEADERS)
        return 0

    cdef int _headers_done(self) except -1:
        """The head is in (url, method, content_length, authz, expect_continue set):
        the body limit of this route, the access check, the body deadline."""
        if _is_import(self.url):
            self.body_limit = self.srv.lim.max_import_bytes
            self.too_large = self.srv.import_too_large
        else:
            self.body_limit = self.srv.lim.max_body_bytes
            self.too_large = self.srv.body_too_large
        if self.content_length > self.body_limit:
            self._abort(self.too_large.closing_frame)
        if self.srv.auth.active:
            self.srv.auth.check(self)
            if self.denied is not None and self.expect_continue:
                # refused before its body was sent: answer now and close, no body read
                self._abort(error_response(self.denied, True, False))
        self._set_deadline(DL_BODY)
        if self.expect_continue:
            self._queue_ready(CONTINUE_100)
        return 0

    cdef int _complete(self, bytes body, bint keep_alive) except -1:
        """The request is whole: answer it (or its refusal). Sets want_close, and then
        closing: the caller reads no further request."""
        self.in_request = False
        self.want_close = not keep_alive or self.srv.shutting_down
        self.dl_kind = DL_NONE
        if self.denied is not None:
            self.reply_error(self.denied, 0, self.method == FM_HEAD)
        else:
            self.srv.dispatch(self, self.method, self.url, body)
        if self.want_close:
            self.closing = True   # the answer (queued or sent) closes the connection
        return 0

    # ---- parser callbacks (kept tiny: each is a Python call per event) -----------------
    def on_message_begin(self):
        if self.closing:
            raise _Abort()
        self._begin()
        self.line_http11 = self.chunk_http11
        self.chunk_http11 = False

    def on_url(self, bytes url):
        self.url = url if self.url is None else self.url + url
        self.hdr_bytes += len(url)
        if self.hdr_bytes > self.srv.lim.max_header_bytes:
            self._abort(E_HEADERS_TOO_LARGE.closing_frame)

    def on_header(self, bytes name, bytes value):
        cdef Py_ssize_t n = len(name)
        self.hdr_bytes += n + len(value) + 4
        if self.hdr_bytes > self.srv.lim.max_header_bytes:
            self._abort(E_HEADERS_TOO_LARGE.closing_frame)
        if n == 6 and name.lower() == b"expect":
            if value.lower() == b"100-continue":
                self.expect_continue = True
            else:
                self.bad_expect = True
        elif n == 14 and name.lower() == b"content-length":
            self.content_length = _digits(value)   # -1 if not digits: the parser rejects it
        elif n == 13 and name.lower() == b"authorization":
            self.authz = value

    def on_headers_complete(self):
        self.in_headers = False
        if self.line_http11:
            self.http10 = False
        else:
            ver = self.parser.get_http_version()
            self.http10 = ver == "1.0"
            if ver != "1.1" and ver != "1.0":
                self._abort(E_HTTP_VERSION.closing_frame)
        if self.bad_expect:
            self._abort(E_BAD_EXPECT.closing_frame)
        self.method = self.parser.get_method()
        self._headers_done()

    def on_body(self, bytes body):
        self.body_len += len(body)
        if self.body_len > self.body_limit:
            self._abort(self.too_large.closing_frame)
        if self.denied is not None:
            return                # a refused request's body is dropped as it comes
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
        if self.body_parts is not None:
            body = b"".join(self.body_parts)
            self.body_parts = None
        else:
            body = b"" if self.body1 is None else self.body1
        self.body1 = None
        self._complete(body, self.parser.should_keep_alive())
        if self.want_close:
            raise _Abort()        # no further pipelined request is read

    # ---- responding ------------------------------------------------------------------
    cdef int reply(self, int status, bytes body, int64_t seq, bint head, bint text=False) except -1:
        """Answer the current request (framed with its close/HEAD flags)."""
        self.respond(frame(status, body, self.want_close, head, text,
                           KEEP_ALIVE_10 if self.http10 and not self.want_close else None),
                     seq, self.want_close, head)

    cdef int reply_error(self, object err, int64_t seq, bint head) except -1:
        self.respond(error_response(err, self.want_close, head), seq, self.want_close, head)

    cdef int respond(self, bytes data, int64_t seq, bint close, bint head) except -1:
        cdef Slot s
        if not self.q and seq <= self.srv.store.durable_seq:
            self._emit(data, close)
            return 0
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

    cdef int fill(self, Slot s, bytes data, int64_t seq) except -1:
        if s.route_ix: self.srv.stats.answered_later(self, s, data)
        s.data = data
        s.seq = seq
        s.owner = None
        if seq > self.srv.store.durable_seq:
            if seq > self.reg_seq:
                self._register(seq)
        else:
            self.flush()

    cdef int deliver(self, Slot s, bytes data, double now) except -1:
        """fill() for a durable answer, fast when the slot is first in line (a watcher
        fan-out: one write per connection and nothing else)."""
        if self.closed or not self.q or self.q[0] is not s or self.in_feed:
            self.fill(s, data, 0)
            return 0
        del self.q[0]
        s.owner = None
        if s.route_ix: self.srv.stats.answered_later(self, s, data)
        self.transport.write(data)
        if not self.q and not self.in_request:
            if self.eof or s.close or self.closing:     # an answer that ends the connection
                self._close()
            else:
                self.dl_kind = DL_IDLE
                self.deadline = now + self.srv.lim.idle_timeout
                if self.read_paused:
                    self._maybe_resume_reading()
        else:
            self.flush()

    cdef int _register(self, int64_t seq) except -1:
        cdef Batch b = self.srv.store.batch_for(seq)
        if b is not None:
            b.conns.append(self)
            self.reg_seq = seq

    cdef int _queue_ready(self, bytes data) except -1:
        cdef Slot s
        if not self.q:
            self._emit(data, False)
        else:
            s = Slot.__new__(Slot)
            s.data = data
            s.seq = 0
            self.q.append(s)

    cdef int flush(self) except -1:
        """Send every answer at the head of the pipeline that may go out now."""
        cdef Slot s
        cdef int64_t durable = self.srv.store.durable_seq
        if self.closed:
            return 0
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

    cdef int fail_pending(self, int64_t lo, int64_t hi, object err) except -1:
        """Replace the answers waiting on batches lo..hi (which failed) with err."""
        cdef Slot s
        for s in self.q:
            if s.data is not None and lo <= s.seq <= hi:
                s.data = error_response(err, s.close, s.head)
                s.seq = 0

    cdef int _emit(self, bytes data, bint close) except -1:
        self.out.append(data)
        if close:
            self.closing = True

    cdef int _emit_close(self, bytes data) except -1:
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

    cdef int _write_out(self) except -1:
        cdef list out = self.out
        if out and not self.closed:
            if len(out) == 1:
                self.transport.write(out[0])
            else:
                self.transport.write(b"".join(out))
            out.clear()
        if self.closing and not self.q:
            if not self.closed:
                self._close()
        elif not self.q and not self.in_request:
            if self.eof:
                self._close()
            else:
                self._set_deadline(DL_IDLE)   # during shutdown, Server.close_idle ends it
        return 0

    cdef int _fail(self, bytes data) except -1:
        """Answer `data` (a closing error frame) after the answers before it, then close."""
        self._emit_close(data)
        self.in_request = False
        return 0

    cdef int _abort(self, bytes data) except -1:
        """_fail from inside a parser callback: parsing stops here."""
        self.fatal = data
        self.in_request = False
        raise _Abort()

    # ---- flow control and deadlines ----------------------------------------------------
    cdef int _pause_reading(self) except -1:
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()
        return 0

    cdef int _maybe_resume_reading(self) except -1:
        if (self.read_paused and not self.write_paused and not self.closing and not self.closed
                and len(self.q) < self.srv.lim.max_pipeline // 2):
            self.read_paused = False
            self.transport.resume_reading()
        return 0

    cdef void _set_deadline(self, int kind) noexcept:
        cdef double span
        if kind == DL_IDLE:
            span = self.srv.lim.idle_timeout
        elif kind == DL_HEADERS:
            span = self.srv.lim.header_timeout
        elif kind == DL_BODY:
            span = self.srv.lim.body_timeout
        else:
            span = CLOSE_GRACE_MS / 1000.0
        self.dl_kind = kind
        self.deadline = (self.srv.now if self.srv.now_fresh else mono_now()) + span

    cdef int on_deadline(self) except -1:
        """Called by the sweep when `deadline` has passed."""
        cdef int kind = self.dl_kind
        self.dl_kind = DL_NONE
        if self.closed:
            return 0
        if kind == DL_CLOSING:
            self.kill()
        elif self.closing:
            pass       # closing once the answers still owed are sent (their own waits)
        elif kind == DL_IDLE:
            self._close()
        elif kind == DL_HEADERS or kind == DL_BODY:
            self._emit_close((E_HEADER_TIMEOUT if kind == DL_HEADERS else E_BODY_TIMEOUT).closing_frame)
            self.in_request = False
            self._write_out()
        return 0

    cdef int _close(self) except -1:
        """Every close the server makes: transport.close() ends the connection only once
        the write buffer has drained, which is never when the peer stops reading (a 408,
        or a big answer, stuck in the buffer). So the close arms DL_CLOSING, and the
        sweep aborts the connection if it is still open CLOSE_GRACE_MS later."""
        self.closing = True
        if not self.closed and self.dl_kind != DL_CLOSING:   # once: a repeat must not defer the abort
            self.transport.close()
            self._set_deadline(DL_CLOSING)
        return 0

    cdef bint is_loopback(self) except -1:
        """Whether the client is on this machine (127.0.0.0/8, ::1): asked of the
        transport once per connection, and only in protected mode."""
        cdef str host
        if self.loopback < 0:
            host = self.peer()
            if host.startswith("::ffff:"):
                host = host[7:]
            self.loopback = 1 if (host.startswith("127.") or host == "::1") else 0
        return self.loopback == 1

    cdef object peer(self):
        """The client's address (host), or "?"."""
        try:
            pn = self.transport.get_extra_info("peername")
        except Exception:
            pn = None
        return str(pn[0]) if pn else "?"

    cdef int kill(self) noexcept:
        """Drop the connection now, with a reset; what is buffered is lost. Never raises:
        the sweep also calls it when a connection's deadline handling failed."""
        self.closing = True
        self.dl_kind = DL_NONE
        if self.closed or self.transport is None:
            return 0
        # SO_LINGER 0 first: else the kernel keeps the socket (established, as the peer
        # sees it) while it tries to deliver output that the peer never reads
        try:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, _LINGER_RESET)
        except Exception:
            pass
        try:
            self.transport.abort()
        except Exception:
            pass         # already gone: connection_lost follows or has run
        return 0

    cdef int _drop_owners(self) except -1:
        """The client went away: lock waiters and watchers on this connection leave."""
        cdef Slot s
        for s in self.q:
            if s.owner is not None:
                self.srv.drop_owner(s.owner)
                s.owner = None

    cdef int _cut_at_dropped(self) except -1:
        cdef Slot s
        for s in self.q:
            if s.data is None:
                s.data = b""
                s.seq = 0
                s.close = True
                break
        self.flush()

    cdef int shutdown_idle(self) except -1:
        if not self.q and not self.in_request and not self.closing and not self.closed:
            self._close()
