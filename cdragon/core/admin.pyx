# Admin: the /admin/* routes (accounts, backup, backups, export, import). They are cold
# and slow (a checkpoint, a child process, S3), so the handler only parks the request
# in its pipeline slot and hands it to Python (cdragon.admin.Admin, Server.admin); the
# answer comes later through an AdminReply: one JSON answer (send), or a streamed
# chunked body (start, write, end) for an export of any size, written as it is
# produced with the transport's flow control (on_drain), never built in memory.

cdef bytes _CHUNKED_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\n"
                            b"Transfer-Encoding: chunked\r\n%s\r\n")


cdef class AdminReply:

    @property
    def alive(self):
        """The client is still there to take the answer."""
        return not self.done and not self.conn.closed

    @property
    def ready(self):
        """Every earlier answer on the connection has gone out: a stream may start."""
        return (not self.conn.closed and not self.conn.in_feed and len(self.conn.q) > 0
                and self.conn.q[0] is self.slot)

    @property
    def is_head(self):
        """A HEAD request: the answer's head alone."""
        return self.head

    @property
    def streaming(self):
        """start() has sent the head: an error can now only cut the connection."""
        return self.started

    @property
    def write_paused(self):
        """The transport's buffer is full: wait for on_drain before writing more."""
        return self.conn.write_paused

    def send(self, int status, bytes body, bytes extra=None, bytes ctype=None):
        """The whole answer (a JSON body, framed here)."""
        if self.done:
            return
        self.done = True
        if self.http10 and not self.close:
            extra = KEEP_ALIVE_10 + (extra or b"")
        self.conn.fill(self.slot, frame(status, body, self.close, self.head, False, extra, ctype), 0)

    def send_error(self, err):
        """An ApiError as its JSON answer."""
        if self.done:
            return
        self.done = True
        self.conn.fill(self.slot, error_response(err, self.close, self.head), 0)

    def start(self, bytes ctype):
        """Send a 200 head with a chunked body; call only when `ready`. A HEAD request
        gets the head alone (end() is then all that is left)."""
        cdef bytes head = _CHUNKED_HEAD % (ctype, b"Connection: close\r\n" if self.close else
                                           KEEP_ALIVE_10 if self.http10 else b"")
        if self.done or self.started:
            raise RuntimeError("answer already started")
        self.started = True
        self.conn.streamer = self
        self.conn.dl_kind = DL_NONE
        if self.slot.route_ix:
            self.conn.srv.stats.answered_later(self.conn, self.slot, head)
        self.conn.transport.write(head)

    def write(self, bytes data):
        """One chunk of the body (nothing for an empty one or a HEAD request)."""
        if not self.started or self.done or self.conn.closed:
            return
        if data and not self.head:
            self.conn.transport.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end(self):
        """The last chunk: the connection goes on with the answers after this one."""
        cdef Conn c = self.conn
        if not self.started or self.done:
            return
        self.done = True
        c.streamer = None
        if c.closed:
            return
        if not self.head:
            c.transport.write(b"0\r\n\r\n")
        if c.q and c.q[0] is self.slot:
            del c.q[0]
        self.slot.owner = None
        if self.close:
            c.q.clear()
            c._close()
        else:
            c.flush()

    def abort(self):
        """A failure after the head went out: the client can only be told by a cut
        connection (its chunked body never ends)."""
        if self.started and not self.done:
            self.done = True
            self.conn.streamer = None
            self.conn.kill()

    def drained(self):
        if self.on_drain is not None:
            self.on_drain()

    def drop(self):
        """The connection went away (Conn._drop_owners)."""
        self.done = True
        self.conn.streamer = None
        if self.on_drain is not None:
            self.on_drain()


cdef int admin_call(Server srv, Request r) except -1:
    """Every /admin/* method: park the request and hand it to cdragon.admin.Admin."""
    cdef AdminReply rep
    cdef Conn c = r.conn
    if srv.admin is None:
        raise ApiError(503, "unavailable", "the admin routes are not available in this process")
    rep = AdminReply.__new__(AdminReply)
    rep.conn = c
    rep.head = r.head
    rep.close = c.want_close
    rep.http10 = c.http10
    rep.slot = c.reserve(rep, r.head)
    srv.admin.handle(r.route.template, METHOD_NAMES[r.method], r.params(), r.body, rep)
    return 0


def checked_account(str acc):
    """An account named in an admin route's query (?acc=A) as bytes, under the rules of
    an account in a path; 400 bad_account otherwise."""
    cdef bytes raw = acc.encode("utf-8", "surrogateescape")
    if not account_ok(raw):
        raise E_BAD_ACCOUNT.error()
    return raw
