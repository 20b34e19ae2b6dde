# Lister: a GET /db/{acc}/kv of more than LIST_SLICE keys, read a slice at a time with
# the loop serving other clients in between (a 10,000-key list is ~5 ms of CPU: in one
# piece it would hold up every other request that long). The list still shows one
# snapshot: its own LMDB read transaction, and the overlay's entries in the range
# copied when it starts. Its answer keeps its place in the connection's pipeline (a
# reserved slot, like a lock waiter), and waits for the newest batch it showed.
#
# LMDB can only grow its map with no read transaction open: the server suspends every
# running Lister first (Server._grow), and a suspended Lister starts again from a new
# snapshot.


cdef class Lister:

    def __cinit__(self, Server srv, Request r, bytes prefix, bytes start, Py_ssize_t limit, bint keys_only):
        self.srv = srv
        self.conn = r.conn
        self.acc = r.acc
        self.prefix = prefix
        self.start = start
        self.limit = limit
        self.keys_only = keys_only
        self.live = True
        self.stale = False
        self.txn = None
        self.slot = r.conn.reserve(self, r.head)

    cdef int begin(self) except -1:
        """Take the snapshot: a read transaction, the overlay's entries, the revision."""
        cdef Store st = self.srv.store
        st.wait_seq = 0
        self.txn = self.srv.storage.begin_read()
        self.reader = st.range_reader(self.acc, self.prefix, self.start, False, self.txn)
        self.rev = st.shown_revision(self.acc)
        self.seq = read_seq(st)
        self.found = []
        self.stale = False
        self.srv.listers.add(self)
        return 0

    def step(self):
        """One slice; the next is queued behind the loop's other work."""
        cdef bint more
        if not self.live:
            return
        if self.stale:
            self.begin()
        if not self.reader.read(self.srv.store, min(LIST_SLICE, self.limit + 1 - len(self.found)), self.found) \
                and len(self.found) <= self.limit:
            self.srv.loop.call_soon(self.step)
            return
        more = len(self.found) > self.limit
        if more:
            del self.found[self.limit:]
        body = b'{"Rev":%d,"KV":[%s],"More":%s}' % (
            self.rev, _list_body(self.found, PyBytes_GET_SIZE(self.acc) + 1, self.keys_only),
            b"true" if more else b"false")
        self._close()
        self.live = False
        self.conn.fill(self.slot, frame(200, body, self.slot.close, self.slot.head), self.seq)

    cdef int suspend(self) except -1:
        """The map is about to grow: let go of the snapshot; the next slice starts over."""
        if self.txn is not None:
            self.txn.abort()
            self.txn = None
        self.reader = None
        self.stale = True
        return 0

    cdef int _close(self) except -1:
        if self.txn is not None:
            self.txn.abort()
            self.txn = None
        self.reader = None
        self.srv.listers.discard(self)
        return 0

    def drop(self):
        """The client went away."""
        self.live = False
        self._close()
