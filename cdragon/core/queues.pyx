# Queues: durable work queues and scheduled tasks (API.md "Queues and scheduled tasks").
# Owns the in-memory index of every queue, the deliveries in flight, the receivers
# waiting on POST /queue/{acc}, and the QPush / QAck parts of POST /db.
#
# Storage: every message is one record in the LMDB sub-database `qmsg`, key account \0
# queue \0 id (8 bytes big-endian: LMDB keeps a queue's messages in push order), value
# the header QRec (due, sent, visibility deadline, attempts, max attempts, receipt
# check, group length) + group + JSON body. Records go through the Store's overlay and
# batches like every other write, so a push, a delivery, an extension and an ack are
# durable before they are answered, and a request's pushes and acks commit with its KV
# writes or not at all. `qdedup` holds DedupIDs (account \0 queue \0 id -> message id,
# expiry); meta `qid` the highest message id issued.
#
# Memory: per queue a binary heap of (due, id) in one C array (16 bytes a ready
# message; bodies stay in LMDB), a Flight per delivery in flight (on the server's one
# Deadlines heap: its deadline is the end of the visibility), and per group only its
# messages held behind the one out. The index is rebuilt from `qmsg` at start; a
# delivery whose visibility ended while the server was down ends at once then.
#
# Visibility ending changes nothing on disk (a record whose deadline has passed is
# visible again); a move to `{Queue}:dead` does.

import re
import struct
import random as _random_mod

cdef Py_ssize_t QREC_SIZE = 38
cdef object _QID = struct.Struct(">q")
cdef object _QDEDUP = struct.Struct(">qd")     # message id, expiry
cdef object _ID = re.compile(r"[1-9][0-9]{0,18}")
cdef double MAX_VISIBILITY = 43200.0
cdef int DEFAULT_VISIBILITY = 30
cdef int MAX_RECEIVE = 100
cdef Py_ssize_t MAX_QUEUE_NAME = MAX_KEY_BYTES - 5     # room for ":dead"
cdef Py_ssize_t DEDUP_SWEEP = 2000                     # expired DedupIDs dropped per sweep
cdef bytes DEAD_SUFFIX = b":dead"


# The message record's header (QRec, big-endian: due, sent, till as doubles, attempts,
# max attempts, tag as 32-bit, group length as 16-bit), read and written in C: the push,
# delivery and ack paths touch it for every message.
cdef struct QRec:
    double due, sent, till
    int32_t attempts, maxatt
    uint32_t tag
    uint16_t glen


cdef inline void _put_be(char* p, uint64_t v, int n) noexcept:
    cdef int i
    for i in range(n):
        p[i] = <char>((v >> (8 * (n - 1 - i))) & 0xff)


cdef inline uint64_t _get_be(const unsigned char* p, int n) noexcept:
    cdef uint64_t v = 0
    cdef int i
    for i in range(n):
        v = (v << 8) | p[i]
    return v


cdef inline uint64_t _dbits(double d) noexcept:
    cdef uint64_t u
    memcpy(&u, &d, 8)
    return u


cdef inline double _bitsd(uint64_t u) noexcept:
    cdef double d
    memcpy(&d, &u, 8)
    return d


cdef int _qrec_read(bytes raw, QRec* r) except -1:
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(raw)
    if PyBytes_GET_SIZE(raw) < QREC_SIZE:
        raise ValueError("queue record shorter than its header")
    r.due = _bitsd(_get_be(p, 8))
    r.sent = _bitsd(_get_be(p + 8, 8))
    r.till = _bitsd(_get_be(p + 16, 8))
    r.attempts = <int32_t><uint32_t>_get_be(p + 24, 4)
    r.maxatt = <int32_t><uint32_t>_get_be(p + 28, 4)
    r.tag = <uint32_t>_get_be(p + 32, 4)
    r.glen = <uint16_t>_get_be(p + 36, 2)
    return 0


cdef bytes _qrec_pack(QRec* r, const char* a, Py_ssize_t an, const char* b, Py_ssize_t bn):
    """The header, then a[:an] and b[:bn] (group and body, or a record's old tail)."""
    cdef bytes out = PyBytes_FromStringAndSize(NULL, QREC_SIZE + an + bn)
    cdef char* p = PyBytes_AS_STRING(out)
    _put_be(p, _dbits(r.due), 8)
    _put_be(p + 8, _dbits(r.sent), 8)
    _put_be(p + 16, _dbits(r.till), 8)
    _put_be(p + 24, <uint32_t>r.attempts, 4)
    _put_be(p + 28, <uint32_t>r.maxatt, 4)
    _put_be(p + 32, r.tag, 4)
    _put_be(p + 36, r.glen, 2)
    if an:
        memcpy(p + QREC_SIZE, a, an)
    if bn:
        memcpy(p + QREC_SIZE + an, b, bn)
    return out


cdef inline bytes _qrec_redo(QRec* r, bytes raw):
    """raw with its header replaced by r (the group and body kept)."""
    return _qrec_pack(r, PyBytes_AS_STRING(raw) + QREC_SIZE, PyBytes_GET_SIZE(raw) - QREC_SIZE, NULL, 0)


cdef inline bytes _qrec(double due, double sent, double till, int64_t attempts, int64_t maxatt,
                        uint32_t tag, object group, bytes body):
    cdef QRec r
    cdef bytes g = b"" if group is None else <bytes>group
    r.due = due
    r.sent = sent
    r.till = till
    r.attempts = <int32_t>attempts
    r.maxatt = <int32_t>maxatt
    r.tag = tag
    r.glen = <uint16_t>PyBytes_GET_SIZE(g)
    return _qrec_pack(&r, PyBytes_AS_STRING(g), PyBytes_GET_SIZE(g), PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body))


cdef inline bytes _mkey(bytes head, int64_t id):
    """The overlay key of a message record (tag "m" + LMDB key: head + 8-byte id)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(head)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n + 9)
    cdef char* p = PyBytes_AS_STRING(out)
    p[0] = b"m"
    memcpy(p + 1, PyBytes_AS_STRING(head), n)
    _put_be(p + 1 + n, <uint64_t>id, 8)
    return out


cdef inline bytes _qhead(bytes acc, bytes name):
    """A queue's record-key prefix, acc NUL name NUL, in one allocation."""
    cdef Py_ssize_t na = PyBytes_GET_SIZE(acc), nn = PyBytes_GET_SIZE(name)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, na + nn + 2)
    cdef char* p = PyBytes_AS_STRING(out)
    memcpy(p, PyBytes_AS_STRING(acc), na)
    p[na] = 0
    memcpy(p + na + 1, PyBytes_AS_STRING(name), nn)
    p[na + nn + 1] = 0
    return out


cdef inline object _rec_group(bytes raw, int glen):
    return raw[QREC_SIZE:QREC_SIZE + glen] if glen else None


cdef Fixed E_STALE_RECEIPT = Fixed(409, "stale_receipt",
                                   "that delivery has ended (acked, released, or its visibility ran out)")
cdef Fixed E_IN_FLIGHT = Fixed(409, "in_flight", "the message is being worked on (in flight)")
cdef Fixed E_NO_MESSAGE = Fixed(404, "not_found", "no such message")


cdef class Queue(Timed):

    def __dealloc__(self):
        PyMem_Free(self.h)

    cdef int on_time(self, double now) except -1:
        return self.table.serve(self)

    cdef int hpush(self, double due, int64_t id) except -1:
        cdef Py_ssize_t cap
        cdef void* p
        if self.n == self.cap:
            cap = self.cap + self.cap // 2 + 16
            p = PyMem_Realloc(self.h, cap * sizeof(QEnt))
            if p == NULL:
                raise MemoryError()
            self.h = <QEnt*>p
            self.cap = cap
        self.h[self.n].due = due
        self.h[self.n].id = id
        self.n += 1
        self._up(self.n - 1)
        return 0

    cdef QEnt hpop(self) noexcept:
        cdef QEnt top = self.h[0]
        self.n -= 1
        if self.n > 0:
            self.h[0] = self.h[self.n]
            self._down(0)
        return top

    cdef bint hremove(self, int64_t id) noexcept:
        """Take message `id` out of the heap (a cancel: rare, so a scan)."""
        cdef Py_ssize_t i
        for i in range(self.n):
            if self.h[i].id == id:
                self.n -= 1
                if i < self.n:
                    self.h[i] = self.h[self.n]
                    self._down(i)
                    self._up(i)
                return True
        return False

    cdef void _up(self, Py_ssize_t i) noexcept:
        cdef QEnt e = self.h[i]
        cdef Py_ssize_t parent
        while i > 0:
            parent = (i - 1) >> 1
            if not _before(e, self.h[parent]):
                break
            self.h[i] = self.h[parent]
            i = parent
        self.h[i] = e

    cdef void _down(self, Py_ssize_t i) noexcept:
        cdef QEnt e = self.h[i]
        cdef Py_ssize_t c
        while True:
            c = 2 * i + 1
            if c >= self.n:
                break
            if c + 1 < self.n and _before(self.h[c + 1], self.h[c]):
                c += 1
            if not _before(self.h[c], e):
                break
            self.h[i] = self.h[c]
            i = c
        self.h[i] = e

    cdef void heapify(self) noexcept:
        cdef Py_ssize_t i = self.n // 2
        while i > 0:
            i -= 1
            self._down(i)


cdef inline bint _before(QEnt a, QEnt b) noexcept:
    return a.due < b.due or (a.due == b.due and a.id < b.id)


@cython.no_gc
cdef class QGroup:
    pass


cdef class Flight(Timed):

    cdef int on_time(self, double now) except -1:
        return self.q.table.visibility_ended(self)


cdef class Receiver(Timed):

    cdef int on_time(self, double now) except -1:
        return self.q.table.wait_expired(self)

    def drop(self):
        self.q.table.leave(self)


@cython.no_gc
cdef class QPushOp:
    pass


@cython.no_gc
cdef class QAckOp:
    pass


# ---- parsing (POST /db fields, REST parameters) ---------------------------------------------
cdef bytes queue_name(object v, str what):
    """A queue name: key rules, and room for the ":dead" suffix."""
    cdef bytes b = key_bytes(v, what)
    if PyBytes_GET_SIZE(b) > MAX_QUEUE_NAME:
        raise ApiError(400, "bad_key", "%s must be at most %d UTF-8 bytes" % (what, MAX_QUEUE_NAME))
    return b


cdef int64_t _parse_id(object v, str what) except? -1:
    if type(v) is not str or not (<str>v).isascii() or _ID.fullmatch(<str>v) is None:
        raise ApiError(400, "bad_request", what + " must be a message ID as the server gave it")
    n = int(<str>v)
    if n > INT64_MAX:
        raise ApiError(400, "bad_request", what + " must be a message ID as the server gave it")
    return n


cdef inline Py_ssize_t _decimal(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, int maxdig,
                                uint64_t hi, uint64_t* out) noexcept:
    """[1-9][0-9]{0,maxdig-1} at p[i] whose value is at most hi: the index after it, or -1."""
    cdef Py_ssize_t start = i
    cdef uint64_t v = 0
    if i >= n or not (b'1' <= p[i] <= b'9'):
        return -1
    while i < n and b'0' <= p[i] <= b'9':
        if i - start >= maxdig:
            return -1
        v = v * 10 + (p[i] - 48)
        i += 1
    if v > hi:
        return -1
    out[0] = v
    return i


cdef bint _receipt_parts(bytes b, uint64_t* id, uint64_t* attempts, uint32_t* tag) noexcept:
    """A receipt as _receipt writes it: ID-ATTEMPTS-TAG (8 lowercase hex digits)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(b)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b), i
    cdef uint32_t t = 0
    cdef unsigned char c
    i = _decimal(p, 0, n, 19, <uint64_t>INT64_MAX, id)
    if i < 0 or i >= n or p[i] != b'-':
        return False
    i = _decimal(p, i + 1, n, 10, 2147483647, attempts)
    if i < 0 or i + 9 != n or p[i] != b'-':
        return False
    for i in range(i + 1, n):
        c = p[i]
        if b'0' <= c <= b'9':
            t = (t << 4) | (c - 48)
        elif b'a' <= c <= b'f':
            t = (t << 4) | (c - 87)
        else:
            return False
    tag[0] = t
    return True


cdef QAckOp parse_receipt(bytes acc, bytes qname, object v, str what):
    cdef QAckOp op = QAckOp.__new__(QAckOp)
    cdef uint64_t id = 0, attempts = 0
    cdef uint32_t tag = 0
    if (type(v) is not str or not (<str>v).isascii()
            or not _receipt_parts((<str>v).encode("ascii"), &id, &attempts, &tag)):
        raise ApiError(400, "bad_request", what + " must be a receipt as the server gave it")
    op.head = _qhead(acc, qname)
    op.qj = json_str(qname)
    op.id = <int64_t>id
    op.attempts = <int64_t>attempts
    op.tag = tag
    return op


cdef QPushOp new_push(bytes head, bytes qj, object body):
    """A push of body to the queue of record-key prefix `head` and JSON name `qj`."""
    cdef QPushOp op = QPushOp.__new__(QPushOp)
    op.head = head
    op.qj = qj
    op.body = body
    op.delay = 0
    op.at = -1
    op.group = op.dedup = None
    op.max_attempts = -1
    op.res_id = 0
    op.dup = False
    return op


cdef double as_epoch(object v, str what, double hi) except? -1:
    cdef double d
    if type(v) is not int and type(v) is not float:
        raise ApiError(400, "bad_request", what + " must be a number (epoch seconds)")
    d = v
    if not (d == d) or d < 0 or d > hi:
        raise ApiError(400, "bad_request", "%s out of range (0..now + max_queue_delay)" % what)
    return d


cdef int parse_qpush(Txn t, object v, Server srv) except -1:
    cdef dict e
    cdef QPushOp op
    cdef QueueTable qt = srv.queues
    if t.qpush is None:
        t.qpush = []
    for item in as_list(v, "QPush"):
        e = as_obj(item, "QPush")
        for f in e:
            if f not in ("Queue", "Body", "Delay", "At", "Group", "DedupID", "MaxAttempts"):
                raise unknown_field("QPush.", f)
        if "Body" not in e:
            raise ApiError(400, "bad_request", "each QPush entry needs a Body (null is a value)")
        if "Delay" in e and "At" in e:
            raise ApiError(400, "bad_request", "QPush takes Delay or At, not both")
        name = queue_name(e.get("Queue"), "QPush Queue")
        op = new_push(_qhead(t.acc, name), json_str(name), encode_value(e["Body"], srv.lim.max_value_bytes))
        if "Delay" in e:
            op.delay = as_seconds(e["Delay"], "QPush Delay", qt.max_delay, True)
        if "At" in e:
            op.at = as_epoch(e["At"], "QPush At", wall_now() + qt.max_delay)
        if "Group" in e:
            op.group = key_bytes(e["Group"], "QPush Group")
        if "DedupID" in e:
            op.dedup = key_bytes(e["DedupID"], "QPush DedupID")
        if "MaxAttempts" in e:
            op.max_attempts = as_int64(e["MaxAttempts"], "QPush MaxAttempts", 0, 2147483647)
        t.qpush.append(op)
    return 0


cdef int parse_qack(Txn t, object v) except -1:
    cdef dict e
    cdef QAckOp op
    cdef set seen = set()
    if t.qack is None:
        t.qack = []
    for item in as_list(v, "QAck"):
        e = as_obj(item, "QAck")
        for f in e:
            if f != "Queue" and f != "Receipt":
                raise unknown_field("QAck.", f)
        if "Receipt" not in e:
            raise ApiError(400, "bad_request", "each QAck entry needs a Receipt")
        op = parse_receipt(t.acc, queue_name(e.get("Queue"), "QAck Queue"), e["Receipt"], "QAck Receipt")
        if (op.head, op.id) in seen:
            raise ApiError(400, "bad_request", "the same message twice in QAck")
        seen.add((op.head, op.id))
        t.qack.append(op)
    return 0


cdef int queue_record(ImportPlan p, dict d, str kind, bytes acc, Server srv, double now) except -1:
    """A "Msg" or "Dedup" line of an export dump (cdragon.dump) into the import plan."""
    cdef bytes head = _qhead(acc, queue_name(d.get("Queue"), "Queue"))
    cdef bytes k
    cdef double t
    if kind == "Dedup":
        if "ID" not in d or "Expires" not in d:
            raise ApiError(400, "bad_request", "a Dedup record needs ID and Expires")
        k = b"d" + head + key_bytes(d["Dedup"], "Dedup")
        t = _epoch(d["Expires"], "Expires")
        if t > now:
            p.qd.append((k, _parse_id(d["ID"], "ID"), t))
        return 0
    k = _mkey(head, _parse_id(d["Msg"], "Msg"))
    _seen(p.qm_keys, k, kind)
    if "Body" not in d:
        raise ApiError(400, "bad_request", "a Msg record needs Body")
    group = d.get("Group")
    p.qm.append((acc, head[len(acc) + 1:len(head) - 1], _parse_id(d["Msg"], "Msg"),
                 _epoch(d["Due"], "Due") if "Due" in d else now,
                 _epoch(d["Sent"], "Sent") if "Sent" in d else now,
                 _epoch(d["Till"], "Till") if "Till" in d else 0,
                 as_int64(d.get("Attempts", 0), "Attempts", 0, 2147483647),
                 as_int64(d.get("MaxAttempts", srv.queues.max_attempts), "MaxAttempts", 0, 2147483647),
                 None if group is None else key_bytes(group, "Group"),
                 encode_value(d["Body"], srv.lim.max_value_bytes)))
    return 0


cdef inline bytes _pushed(QPushOp p):
    """A push's answer: {"Queue":..,"ID":".."} (and "Duplicate":true), in POST /db's
    "QPush" list and as the REST push's whole answer."""
    return b'{"Queue":%s,"ID":"%d"%s}' % (p.qj, p.res_id, b',"Duplicate":true' if p.dup else b"")


cdef inline bytes _acked(QAckOp a):
    return b'{"Queue":%s,"ID":"%d"}' % (a.qj, a.id)


cdef bytes _receipt(int64_t id, int64_t attempts, uint32_t tag):
    """ID-ATTEMPTS-TAG (8 lowercase hex digits), as _receipt_parts reads it."""
    cdef char buf[48]
    cdef char* w = _put_i64(buf, id)
    cdef const char* hexdig = b"0123456789abcdef"
    cdef int i
    w[0] = b'-'
    w = _put_i64(w + 1, attempts)
    w[0] = b'-'
    for i in range(8):
        w[1 + i] = hexdig[(tag >> (28 - 4 * i)) & 0xf]
    return PyBytes_FromStringAndSize(buf, w + 9 - buf)


# ---- the table ---------------------------------------------------------------------------------
cdef class QueueTable:

    def __cinit__(self, Server srv, Deadlines dl):
        self.srv = srv
        self.dl = dl
        self.queues = {}
        self.hw = 0
        self.dedup_exp = _deque()
        self.nwaiters = 0
        self.rng = _random_mod.Random()
        self.rs = self.rng.getrandbits(64) | 1
        self.dedup_window = srv.cfg.queue_dedup_window
        self.max_delay = srv.cfg.max_queue_delay
        self.max_attempts = srv.cfg.queue_max_attempts

    # ---- queues -------------------------------------------------------------------------------
    cdef Queue _get(self, bytes acc, bytes name):
        cdef bytes head = _qhead(acc, name)
        cdef Queue q = self.queues.get(head)
        if q is None:
            q = Queue.__new__(Queue)
            q.table = self
            q.acc = acc
            q.name = name
            q.head = head
            q.nj = json_str(name)
            q.h = NULL
            q.n = q.cap = 0
            q.flights = {}
            q.groups = {}
            q.held = 0
            q.waiters = None
            q.nwait = 0
            q.seq = 0
            self.queues[head] = q
        return q

    cdef Queue _by_head(self, bytes head):
        cdef Queue q = self.queues.get(head)
        cdef Py_ssize_t a
        if q is not None:
            return q
        a = head.index(b"\0")
        return self._get(head[:a], head[a + 1:len(head) - 1])

    cdef uint32_t _tag(self) noexcept:
        """A receipt's check part: xorshift64* (a stale receipt must not match a new
        delivery of the same message; nothing secret rides on it)."""
        cdef uint64_t x = self.rs
        x ^= x >> 12
        x ^= x << 25
        x ^= x >> 27
        self.rs = x
        return <uint32_t>((x * 2685821657736338717ULL) >> 32)

    cdef int _forget_if_idle(self, Queue q) except -1:
        if q.n == 0 and not q.flights and not q.groups and q.nwait == 0:
            self.dl.clear(q)
            q.waiters = None
            if self.queues.get(q.head) is q:
                del self.queues[q.head]
        return 0

    cdef int _changed(self, Queue q) except -1:
        q.seq = self.srv.store.write_seq()
        return 0

    cdef void _saw(self, Queue q) noexcept:
        cdef Store st = self.srv.store
        if q is not None and q.seq > st.durable_seq and q.seq > st.wait_seq:
            st.wait_seq = q.seq

    # ---- start-up and failures -------------------------------------------------------------------
    cdef int load(self) except -1:
        """Rebuild the index from LMDB (start, and after a failed commit)."""
        cdef Store st = self.srv.store
        cdef double nw = wall_now(), nm = mono_now()
        cdef bytes k, raw, head, last = None
        cdef Queue q = None
        cdef set touched = set()
        cdef list stale = []
        raw = st.rtxn.get(b"qid", None, st.db_meta)
        self.hw = 0 if raw is None else unpack_i64(raw)
        cur = st.rtxn.cursor(st.db_qmsg)
        for k, raw in cur.iternext(True, True):
            head = k[:len(k) - 8]
            if head != last:
                q = self._by_head(head)
                touched.add(q)
                last = head
            self._index_record(q, _QID.unpack_from(k, len(k) - 8)[0], raw, nw, nm, None)
        for q in touched:
            q.heapify()
        cur = st.rtxn.cursor(st.db_qdedup)
        live = []
        for k, raw in cur.iternext(True, True):
            mid, exp = _QDEDUP.unpack(raw)
            if exp <= nw:
                stale.append(b"d" + k)
            else:
                live.append((exp, b"d" + k))
        live.sort()
        self.dedup_exp = _deque(live)
        for k in stale:
            st.q_write(k, None)
        if stale:
            self.srv.after_write()
        return 0

    cdef int _index_record(self, Queue q, int64_t id, bytes raw, double nw, double nm, dict keep) except -1:
        """Put one stored message into q's index; records come in id (push) order.
        The heap is appended to: the caller heapifies. `keep`: id -> Flight still
        going (a rebuild keeps the deliveries and their receipts)."""
        cdef QGroup g = None
        cdef Flight f
        cdef QRec rec
        if id > self.hw:
            self.hw = id
        _qrec_read(raw, &rec)
        due, till = rec.due, rec.till
        group = _rec_group(raw, rec.glen)
        if group is not None:
            g = self._group(q, group)
        if till > 0:
            # a delivery: in flight until its deadline (which may have passed while the
            # server was down: it then ends at once, on the loop's first turn)
            f = None if keep is None else keep.get(id)
            if f is None:
                f = Flight.__new__(Flight)
                f.q = q
                f.id = id
                f.attempts = rec.attempts
                f.tag = rec.tag
                f.till = till
                f.group = group
                self.dl.set(f, nm + (till - nw))
            q.flights[id] = f
            if g is not None:
                g.out = id
            return 0
        if g is not None:
            if g.out != 0:
                g.pending.append((due, id))
                q.held += 1
                return 0
            g.out = id
        if q.n == q.cap:
            q.hpush(due, id)
        else:
            q.h[q.n].due = due
            q.h[q.n].id = id
            q.n += 1
        return 0

    # ---- export / import (cdragon.dump writes the records; core/importer.pyx reads them) --
    cdef int import_records(self, list msgs, list dedups, set accs_replaced, set keep) except -1:
        """Stage imported messages [(account, queue, id, due, sent, till, attempts, max
        attempts, group, JSON body)] and DedupIDs [(overlay key, id, expiry)] into the
        open batch, and index them. A message already here under the same ID is kept as
        it is (a dump merged back). With mode=replace, the accounts' messages not in
        the dump (`keep`: their overlay keys) are deleted first. Imported deliveries in
        flight have no receipt anyone holds: they come back at their Till."""
        cdef Store st = self.srv.store
        cdef Queue q
        cdef bytes mk
        cdef double nw = wall_now()
        cdef set touched = set()
        for q in list(self.queues.values()):
            if q.acc in accs_replaced:
                touched.add(q)
        for acc in accs_replaced:
            for mk in self._stored_keys(<bytes>acc + b"\0", b"m"):
                if mk not in keep:
                    st.q_write(mk, None)
            for mk in self._stored_keys(<bytes>acc + b"\0", b"d"):
                st.q_write(mk, None)          # the dump's DedupIDs are written again below
        for acc, name, mid, due, sent, till, att, maxatt, group, body in msgs:
            q = self._get(acc, name)
            touched.add(q)
            mk = _mkey(q.head, mid)
            if mid > self.hw:
                self.hw = mid
            if st.q_read(mk) is None:
                st.q_write(mk, _qrec(due, sent, till, att, maxatt, self._tag(), group, body))
        for dk, mid, exp in dedups:
            st.q_write(dk, _QDEDUP.pack(mid, exp))
            self.dedup_exp.append((exp, dk))
        if dedups:
            self.dedup_exp = _deque(sorted(self.dedup_exp))
        for q in touched:
            self._rebuild(q)
        return 0

    cdef list _stored_keys(self, bytes head, bytes tag):
        """The overlay keys of every message (tag b"m") or DedupID (b"d") under `head`
        (a record-key prefix), in key order: LMDB's and the overlay's (deleted ones
        included)."""
        cdef Store st = self.srv.store
        cdef bytes oh = tag + head
        cdef set out = {k for k in st.o_q if (<bytes>k).startswith(oh)}
        cur = st.rtxn.cursor(st.db_qmsg if tag == b"m" else st.db_qdedup)
        if cur.set_range(head):
            for k in cur.iternext(True, False):
                if not (<bytes>k).startswith(head):
                    break
                out.add(tag + <bytes>k)
        return sorted(out)

    cdef int _rebuild(self, Queue q) except -1:
        """Index q again from its stored messages (after an import changed them)."""
        cdef Store st = self.srv.store
        cdef dict keep = q.flights
        cdef double nw = wall_now(), nm = mono_now()
        cdef bytes raw
        q.n = 0
        q.groups = {}
        q.held = 0
        q.flights = {}
        for mk in self._stored_keys(q.head, b"m"):
            raw = st.q_read(mk)
            if raw is not None:
                self._index_record(q, _QID.unpack_from(mk, len(mk) - 8)[0], raw, nw, nm, keep)
        for f in keep.values():
            if (<Flight>f).id not in q.flights:
                self.dl.clear(<Flight>f)          # deleted by a replace
        q.heapify()
        self._changed(q)
        if q.nwait:
            self.serve(q)
        else:
            self._forget_if_idle(q)
        return 0

    cdef QGroup _group(self, Queue q, object group):
        cdef QGroup g = q.groups.get(group)
        if g is None:
            g = QGroup.__new__(QGroup)
            g.pending = _deque()
            g.out = 0
            q.groups[group] = g
        return g

    cdef int _answer_waiters(self, object err, bytes acc=None) except -1:
        cdef Queue q
        cdef Receiver w
        for q in list(self.queues.values()):
            if q.nwait and (acc is None or q.acc == acc):
                for w in q.waiters:
                    if w.live:
                        self._unpark(w)
                        w.slot.close = True
                        w.conn.fill(w.slot, error_response(err, True, w.slot.head), read_seq(self.srv.store))
                q.waiters = None
                self._forget_if_idle(q)
        return 0

    cdef int reload(self, object err) except -1:
        """After a failed commit: answer the receivers with its error, and take the
        index again from what is on disk."""
        cdef Queue q
        self._answer_waiters(err)
        for q in self.queues.values():
            self.dl.clear(q)
            for f in q.flights.values():
                self.dl.clear(<Flight>f)
        self.queues = {}
        return self.load()

    cdef int shutdown(self) except -1:
        return self._answer_waiters(E_SHUTTING_DOWN.error())

    cdef int moving(self, bytes acc) except -1:
        return self._answer_waiters(E_MOVING.error(), acc)

    cdef int sweep(self) except -1:
        """Drop DedupIDs past the window, a slice at a time."""
        cdef Store st = self.srv.store
        cdef double nw
        cdef Py_ssize_t n = 0
        cdef object dq = self.dedup_exp
        if not dq:
            return 0
        nw = wall_now()
        while dq and n < DEDUP_SWEEP and <double>dq[0][0] <= nw:
            exp, dk = dq.popleft()
            raw = st.q_read(dk)
            # (the same DedupID pushed again after the window has a later expiry)
            if raw is not None and _QDEDUP.unpack(raw)[1] == exp:
                st.q_write(dk, None)
                n += 1
        if n:
            self.srv.after_write()
        return 0

    # ---- POST /db: QPush and QAck ----------------------------------------------------------------
    cdef Flight _flight_of(self, bytes head, int64_t id, int64_t attempts, uint32_t tag):
        """The delivery a receipt names, or 409 stale_receipt."""
        cdef Queue q = self.queues.get(head)
        cdef Flight f = None
        if q is not None:
            self._saw(q)
            f = q.flights.get(id)
        if f is None or f.attempts != attempts or f.tag != tag:
            raise E_STALE_RECEIPT.error()
        return f

    cdef int check_acks(self, Txn t) except -1:
        """QAck receipts, checked with the preconditions."""
        cdef QAckOp op
        for op in t.qack:
            self._flight_of(op.head, op.id, op.attempts, op.tag)
        return 0

    cdef bytes apply(self, Txn t):
        """Push and ack (every check passed); returns the answer's "QPush"/"QAck" part."""
        cdef QPushOp p
        cdef QAckOp a
        cdef Queue q
        cdef double nw = wall_now()
        cdef set wake = set()         # queues with receivers waiting
        cdef list parts = [], acks = [], pushes = []
        self.wrote = bool(t.qack)
        for a in (t.qack or ()):
            q = self._ack(self._flight_of(a.head, a.id, a.attempts, a.tag))
            if q.nwait:
                wake.add(q)
            acks.append(_acked(a))
        for p in (t.qpush or ()):
            q = self._by_head(p.head)
            self._push(q, p, nw)
            if q.nwait:
                wake.add(q)
            pushes.append(_pushed(p))
        # waiting receivers get the new messages now: their answers go out with this
        # batch, once it is durable
        for q in wake:
            self.serve(q)
        if acks:
            parts.append(b'"QAck":[' + b",".join(acks) + b"]")
        if pushes:
            parts.append(b'"QPush":[' + b",".join(pushes) + b"]")
        return b",".join(parts)

    cdef Queue _ack(self, Flight f):
        """The delivery f is done: its message leaves the queue. Returns its queue."""
        cdef Queue q = f.q
        del q.flights[f.id]
        self.dl.clear(f)
        self.srv.store.q_write(_mkey(q.head, f.id), None)
        self._changed(q)
        self._group_done(q, f.group, f.id)
        return q

    cdef int _push(self, Queue q, QPushOp p, double nw) except -1:
        """Push p into q (sets p.res_id; p.dup for a DedupID seen within the window,
        which writes nothing); self.wrote is set when it wrote."""
        cdef Store st = self.srv.store
        cdef double due
        cdef bytes raw, dk
        if p.dedup is not None:
            dk = b"d" + p.head + <bytes>p.dedup
            raw = st.q_read(dk)
            if raw is not None and _QDEDUP.unpack(raw)[1] > nw:
                p.dup = True
                p.res_id = _QDEDUP.unpack(raw)[0]
                return self._forget_if_idle(q)
        self.hw += 1
        self.wrote = True
        p.res_id = self.hw
        if p.dedup is not None:
            st.q_write(dk, _QDEDUP.pack(p.res_id, nw + self.dedup_window))
            self.dedup_exp.append((nw + self.dedup_window, dk))
        due = nw
        if p.at > nw:
            due = p.at
        elif p.delay > 0:
            due = nw + p.delay
        st.q_write_new(_mkey(q.head, p.res_id),
                       _qrec(due, nw, 0, 0, self.max_attempts if p.max_attempts < 0 else p.max_attempts,
                             0, p.group, p.body))
        self._changed(q)
        return self._index_new(q, due, p.res_id, p.group)

    cdef int _index_new(self, Queue q, double due, int64_t id, object group) except -1:
        cdef QGroup g
        if group is not None:
            g = self._group(q, group)
            if g.out != 0:
                g.pending.append((due, id))
                q.held += 1
                return 0
            g.out = id
        return q.hpush(due, id)

    cdef int _group_done(self, Queue q, object group, int64_t id) except -1:
        """Message `id` of `group` left the queue: the next of the group may go."""
        cdef QGroup g
        if group is None:
            return self._forget_if_idle(q)
        g = q.groups.get(group)
        if g is not None and g.out == id:
            g.out = 0
            if g.pending:
                due, nid = g.pending.popleft()
                q.held -= 1
                g.out = nid
                q.hpush(due, nid)
            else:
                del q.groups[group]
        return self._forget_if_idle(q)

    # ---- delivering -----------------------------------------------------------------------------------
    cdef bytes _deliver(self, Queue q, int64_t id, double vis, double nw, double nm):
        """Hand message `id` (just taken from the heap) out for `vis` seconds: its
        record gets the new delivery; returns its JSON for the answer (None: gone)."""
        cdef Store st = self.srv.store
        cdef bytes mk = _mkey(q.head, id)
        cdef bytes raw = st.q_read(mk)
        cdef Flight f
        if raw is None:
            return None
        cdef QRec rec
        _qrec_read(raw, &rec)
        f = Flight.__new__(Flight)
        f.q = q
        f.id = id
        f.attempts = rec.attempts + 1
        f.tag = self._tag()
        f.till = nw + vis
        f.group = _rec_group(raw, rec.glen)
        rec.till = f.till
        rec.attempts = <int32_t>f.attempts
        rec.tag = f.tag
        st.q_write(mk, _qrec_redo(&rec, raw))
        q.flights[id] = f
        self.dl.set(f, nm + vis)
        body = raw[QREC_SIZE + rec.glen:]
        return b'{"ID":"%d","Receipt":"%s","Body":%s,"Attempts":%d,"Sent":%s,"Group":%s}' % (
            id, _receipt(id, f.attempts, f.tag), body, f.attempts, _secs(rec.sent),
            b"null" if f.group is None else json_str(<bytes>f.group))

    cdef int _take(self, Queue q, int max, double vis, list out) except -1:
        """Deliver up to `max` due messages of q into `out` (JSON)."""
        cdef double nw = wall_now(), nm = mono_now()
        cdef QEnt e
        cdef bytes m
        while len(out) < max and q.n > 0 and q.h[0].due <= nw:
            e = q.hpop()
            m = self._deliver(q, e.id, vis, nw, nm)
            if m is not None:
                out.append(m)
        if out:
            self._changed(q)
        return 0

    cdef int serve(self, Queue q) except -1:
        """Hand due messages to the waiting receivers, first come first served; arm
        q's deadline for its next scheduled message while receivers still wait."""
        cdef Receiver w
        cdef list out
        cdef Store st = self.srv.store
        cdef double nw = wall_now()
        while q.nwait > 0 and q.n > 0 and q.h[0].due <= nw:
            w = q.waiters.popleft()
            if not w.live:
                continue
            self._unpark(w)
            if w.conn.closed or w.conn.eof:
                continue              # gone, and we have not been told yet: never hand it one
            out = []
            self._take(q, w.max, w.vis, out)
            if out:
                self.srv.after_write()
            w.conn.fill(w.slot, frame(200, _messages(out), w.slot.close, w.slot.head),
                        st.write_seq() if out else read_seq(st))
        if q.nwait == 0:
            self._no_waiters(q)
        else:
            self._arm(q)
        return 0

    cdef int _arm(self, Queue q) except -1:
        if q.n > 0:
            self.dl.set(q, mono_now() + max(0.0, q.h[0].due - wall_now()) + 0.001)
        else:
            self.dl.clear(q)
        return 0

    cdef int visibility_ended(self, Flight f) except -1:
        cdef Queue q = f.q
        if q.flights.get(f.id) is not f:
            return 0
        del q.flights[f.id]
        self._end_delivery(f, f.till)
        if q.nwait:
            self.serve(q)
        return 0

    cdef int _end_delivery(self, Flight f, double nw) except -1:
        """A delivery ended without an ack (visibility ran out, or released): the
        message is ready again from `nw`, or, after its MaxAttempts, goes to
        {Queue}:dead. Only the move is written: a record whose deadline has passed
        reads as ready."""
        cdef Queue q = f.q
        cdef Store st = self.srv.store
        cdef bytes raw = st.q_read(_mkey(q.head, f.id))
        cdef QRec rec
        if raw is None:
            return self._group_done(q, f.group, f.id)
        _qrec_read(raw, &rec)
        if rec.maxatt > 0 and rec.attempts >= rec.maxatt:
            return self._to_dead(q, f.id, raw, wall_now())
        q.hpush(nw, f.id)
        return 0

    cdef int _to_dead(self, Queue q, int64_t id, bytes raw, double nw) except -1:
        """Move message `id` to {Queue}:dead: the same ID, body and Attempts, no limit
        on attempts there, no group."""
        cdef Store st = self.srv.store
        cdef Queue d = self._get(q.acc, q.name + DEAD_SUFFIX)
        cdef QRec rec
        _qrec_read(raw, &rec)
        st.q_write(_mkey(q.head, id), None)
        st.q_write(_mkey(d.head, id), _qrec(nw, rec.sent, 0, rec.attempts, 0, 0, None, raw[QREC_SIZE + rec.glen:]))
        self._changed(q)
        self._changed(d)
        d.hpush(nw, id)
        self.srv.after_write()
        self._group_done(q, _rec_group(raw, rec.glen), id)
        if d.nwait:
            self.serve(d)
        return 0

    # ---- receivers ----------------------------------------------------------------------------------
    cdef int receive(self, Request r) except -1:
        """POST /queue/{acc}."""
        cdef Server srv = self.srv
        cdef object body = parse_json(r.body)
        cdef dict e
        cdef int nmax = 1
        cdef double wait = 0, vis = DEFAULT_VISIBILITY
        cdef Queue q
        cdef list out = []
        cdef Receiver w
        if type(body) is not dict:
            raise E_NOT_OBJECT.error()
        e = <dict>body
        for f in e:
            if f not in ("Queue", "Max", "Wait", "Visibility"):
                raise unknown_field("", f)
        name = queue_name(e.get("Queue"), "Queue")
        if "Max" in e:
            nmax = as_int64(e["Max"], "Max", 1, MAX_RECEIVE)
        if "Wait" in e:
            wait = as_seconds(e["Wait"], "Wait", srv.lim.max_lock_wait, True)
        if "Visibility" in e:
            vis = as_seconds(e["Visibility"], "Visibility", MAX_VISIBILITY, False)
        q = self._get(r.acc, name)
        self._saw(q)
        if q.nwait == 0:                 # else the ones waiting come first
            self._take(q, nmax, vis, out)
        if out or wait <= 0:
            if out:
                srv.after_write()
            else:
                self._forget_if_idle(q)
            r.conn.reply(200, _messages(out), srv.store.write_seq() if out else read_seq(srv.store), r.head)
            return 1 if out else 0
        if q.nwait >= srv.lim.max_waiters_per_key or self.nwaiters >= srv.lim.max_waiters:
            self._forget_if_idle(q)
            raise E_TOO_MANY_WAITERS.error()
        w = Receiver.__new__(Receiver)
        w.q = q
        w.conn = r.conn
        w.max = nmax
        w.vis = vis
        w.live = True
        w.slot = r.conn.reserve(w, r.head)
        if q.waiters is None:
            q.waiters = _deque()
        q.waiters.append(w)
        q.nwait += 1
        self.nwaiters += 1
        self.dl.set(w, mono_now() + wait)
        self._arm(q)
        return 0

    cdef int _unpark(self, Receiver w) except -1:
        w.live = False
        w.q.nwait -= 1
        self.nwaiters -= 1
        self.dl.clear(w)
        return 0

    cdef int _no_waiters(self, Queue q) except -1:
        """q's last receiver left: no deque, no deadline of its own; q may go."""
        q.waiters = None
        self.dl.clear(q)
        return self._forget_if_idle(q)

    cdef int leave(self, Receiver w) except -1:
        """The receiver's client went away: it leaves and is never handed a message."""
        if w.live:
            self._unpark(w)
            if w.q.nwait == 0:
                self._no_waiters(w.q)
        return 0

    cdef int wait_expired(self, Receiver w) except -1:
        if not w.live:
            return 0
        self._unpark(w)
        w.conn.fill(w.slot, frame(200, b'{"Messages":[]}', w.slot.close, w.slot.head), 0)
        if w.q.nwait == 0:
            self._no_waiters(w.q)
        return 0

    # ---- REST: /db/{acc}/queue/{q} ---------------------------------------------------------------
    cdef int rest_stats(self, Request r) except -1:
        cdef bytes name = queue_name(r.key.decode("utf-8"), "queue")
        cdef Queue q = self.queues.get(_qhead(r.acc, name))
        cdef Py_ssize_t ready = 0, delayed = 0, i
        cdef double nw = wall_now(), oldest = nw
        cdef QGroup g
        if q is not None:
            self._saw(q)
            for i in range(q.n):
                if q.h[i].due <= nw:
                    ready += 1
                    if q.h[i].due < oldest:
                        oldest = q.h[i].due
                else:
                    delayed += 1
            if q.held:
                for g in q.groups.values():
                    for due, _ in g.pending:
                        if <double>due <= nw:
                            ready += 1
                            if <double>due < oldest:
                                oldest = due
                        else:
                            delayed += 1
        r.conn.reply(200, b'{"Queue":%s,"Ready":%d,"Delayed":%d,"InFlight":%d,"OldestReady":%s}' % (
            json_str(name), ready, delayed, 0 if q is None else len(q.flights), _secs(nw - oldest)),
            read_seq(self.srv.store), r.head)
        return 0

    cdef int rest_push(self, Request r) except -1:
        """POST /db/{acc}/queue/{queue}: one push, straight to _push (what run_txn
        would check for it is only the room left)."""
        cdef Server srv = self.srv
        cdef dict params = r.params()
        cdef bytes name = queue_name(r.key.decode("utf-8"), "queue")
        cdef QPushOp op = new_push(None, None, stored_value(r.body, srv.lim.max_value_bytes))
        cdef Queue q
        if params:
            self._push_params(op, params)
        if not srv.store.has_room():
            raise E_STORAGE_FULL.error()
        q = self._get(r.acc, name)     # (after every check: a refused push leaves no queue)
        op.head = q.head
        op.qj = q.nj
        self.wrote = False
        self._push(q, op, wall_now())
        if q.nwait:
            self.serve(q)
        r.conn.reply(200, _pushed(op), commit_seq(srv, self.wrote), r.head)
        return self.wrote

    cdef int _push_params(self, QPushOp op, dict params) except -1:
        if "delay" in params and "at" in params:
            raise ApiError(400, "bad_request", "send delay or at, not both")
        if "delay" in params:
            op.delay = _qseconds(params, "delay", 0, self.max_delay, True)
        if "at" in params:
            try:
                at = float(<str>params["at"])
            except ValueError:
                raise ApiError(400, "bad_request", "query parameter at must be a number (epoch seconds)")
            op.at = as_epoch(at, "at", wall_now() + self.max_delay)
        if "group" in params:
            op.group = key_bytes(params["group"], "group")
        if "dedup" in params:
            op.dedup = key_bytes(params["dedup"], "dedup")
        return 0

    cdef int rest_delete(self, Request r) except -1:
        cdef dict params = r.params()
        cdef bytes name = queue_name(r.key.decode("utf-8"), "queue")
        cdef QAckOp a
        cdef Queue q
        if ("receipt" in params) == ("id" in params):
            raise ApiError(400, "bad_request", "DELETE needs ?receipt=R (ack) or ?id=ID (cancel)")
        if "id" in params:
            return self._cancel(r, name, _parse_id(params["id"], "id"))
        a = parse_receipt(r.acc, name, params["receipt"], "receipt")
        q = self._ack(self._flight_of(a.head, a.id, a.attempts, a.tag))
        if q.nwait:
            self.serve(q)
        r.conn.reply(200, _acked(a), commit_seq(self.srv, True), r.head)
        return 1

    cdef int _cancel(self, Request r, bytes name, int64_t id) except -1:
        cdef Store st = self.srv.store
        cdef bytes head = _qhead(r.acc, name)
        cdef Queue q = self.queues.get(head)
        cdef bytes mk = _mkey(head, id)
        cdef bytes raw = st.q_read(mk)
        cdef QGroup g
        cdef object group
        cdef QRec rec
        self._saw(q)
        if raw is None:
            raise E_NO_MESSAGE.error()
        if q is not None and id in q.flights:
            raise E_IN_FLIGHT.error()
        if q is None:
            q = self._get(r.acc, name)
        _qrec_read(raw, &rec)
        group = _rec_group(raw, rec.glen)
        g = None if group is None else q.groups.get(group)
        if g is not None and g.out != id:
            for i, ent in enumerate(g.pending):
                if ent[1] == id:
                    del g.pending[i]
                    q.held -= 1
                    break
        else:
            q.hremove(id)
        st.q_write(mk, None)
        self._changed(q)
        self._group_done(q, group, id)
        self.srv.after_write()
        r.conn.reply(200, b'{"Queue":%s,"ID":"%d"}' % (json_str(name), id), st.write_seq(), r.head)
        if q.nwait:
            self.serve(q)             # the group's next may be due
        return 1

    cdef int rest_extend(self, Request r) except -1:
        cdef Store st = self.srv.store
        cdef dict params = r.params()
        cdef bytes name = queue_name(r.key.decode("utf-8"), "queue")
        cdef QAckOp a
        cdef Flight f
        cdef Queue q
        cdef double vis, nw
        cdef bytes mk, raw
        cdef QRec rec
        if "receipt" not in params or "visibility" not in params:
            raise ApiError(400, "bad_request", "PUT needs ?receipt=R&visibility=S")
        a = parse_receipt(r.acc, name, params["receipt"], "receipt")
        vis = _qseconds(params, "visibility", 0, MAX_VISIBILITY, True)
        f = self._flight_of(a.head, a.id, a.attempts, a.tag)
        if vis > 0 and not st.has_room():
            raise E_STORAGE_FULL.error()
        q = f.q
        nw = wall_now()
        mk = _mkey(q.head, f.id)
        raw = st.q_read(mk)
        _qrec_read(raw, &rec)
        if vis > 0:
            f.till = nw + vis
            rec.till = f.till
            st.q_write(mk, _qrec_redo(&rec, raw))
            self.dl.set(f, mono_now() + vis)
        else:
            # released: ready again now (written, so that a restart agrees)
            del q.flights[f.id]
            self.dl.clear(f)
            if rec.maxatt > 0 and rec.attempts >= rec.maxatt:
                self._to_dead(q, f.id, raw, nw)
            else:
                rec.due = nw
                rec.till = 0
                rec.tag = 0
                st.q_write(mk, _qrec_redo(&rec, raw))
                q.hpush(nw, f.id)
        self._changed(q)
        self.srv.after_write()
        r.conn.reply(200, b'{"Queue":%s,"ID":"%d","Till":%s}' % (a.qj, a.id, _secs(nw + vis)),
                     st.write_seq(), r.head)
        if vis == 0 and q.nwait:
            self.serve(q)
        return 1

    # ---- counts (metrics, tests) --------------------------------------------------------------
    def counts(self):
        """{"ready", "delayed", "inflight", "waiters", "queues"} over every queue."""
        cdef Queue q
        cdef double nw = wall_now()
        cdef Py_ssize_t ready = 0, delayed = 0, inflight = 0, i
        for q in self.queues.values():
            for i in range(q.n):
                if q.h[i].due <= nw:
                    ready += 1
                else:
                    delayed += 1
            ready += q.held
            inflight += len(q.flights)
        return {"ready": ready, "delayed": delayed, "inflight": inflight,
                "waiters": self.nwaiters, "queues": len(self.queues)}

    def index_bytes(self):
        """Bytes of the C heaps (capacity), for the memory-per-message measurement."""
        cdef Queue q
        return sum((<Queue>q).cap * sizeof(QEnt) for q in self.queues.values())


cdef inline bytes _secs(double t):
    """Seconds with milliseconds, as JSON (a timestamp or a duration)."""
    cdef char buf[32]
    cdef char* w
    if t < 0:
        t = 0
    w = _put_till(buf, t)
    return PyBytes_FromStringAndSize(buf, w - buf)


cdef bytes _messages(list out):
    return b'{"Messages":[' + b",".join(out) + b"]}"


# ---- the queue routes' handlers ------------------------------------------------------------------
cdef int queue_receive(Server srv, Request r) except -1:
    return srv.queues.receive(r)


cdef int queue_stats(Server srv, Request r) except -1:
    return srv.queues.rest_stats(r)


cdef int queue_push(Server srv, Request r) except -1:
    return srv.queues.rest_push(r)


cdef int queue_extend(Server srv, Request r) except -1:
    return srv.queues.rest_extend(r)


cdef int queue_delete(Server srv, Request r) except -1:
    return srv.queues.rest_delete(r)
