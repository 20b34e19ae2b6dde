# Expiry: deletes the keys whose TTL has passed. Reads already treat such a key as
# missing (Store); this makes it a real delete, at a new revision that watchers see,
# durable like any other write, within a pass or two of its time (the sweep runs every
# 250 ms, and again at once while a backlog remains).
#
# One deadline structure and no per-key timer: the index kvexp (8-byte big-endian
# expiry + record key, so LMDB keeps it in time order) is written with the batches.
# A pass reads the due entries of the batches not yet in LMDB, then the LMDB index from
# where the last pass stopped, at most EXPIRE_SLICE entries: 100,000 keys expiring at
# the same second are deleted a slice at a time, with the loop serving in between.
# An entry is checked against the key's state before it acts (a key written again, or
# without a TTL, has moved on): either way the entry is deleted from the index.


cdef class Expiry:

    def __cinit__(self, Server srv):
        self.srv = srv
        self.scan_from = b""
        self.expired = 0

    cdef int restart(self) noexcept:
        """Read the LMDB index from the start again (after a failed commit)."""
        self.scan_from = b""
        return 0

    cdef int run(self) except -1:
        """One pass; returns 1 if it stopped at EXPIRE_SLICE with more due."""
        cdef Store st = self.srv.store
        cdef double now = wall_now()
        cdef dict due = {}            # index entry -> the pending batch holding it, or None
        cdef dict gone = {}           # account -> [record keys deleted by expiry]
        cdef Batch b
        cdef bytes xk
        cdef bint full = False
        for b in st.unapplied + [st.inflight, st.open_batch]:
            if b is None or not b.kx:
                continue
            for xk, put in b.kx.items():
                if put and unpack_f64be(xk) <= now:
                    due[xk] = b
                    if len(due) >= EXPIRE_SLICE:
                        full = True
                        break
            if full:
                break
        if not full:
            cur = st.rtxn.cursor(st.db_kvexp)
            if cur.set_range(self.scan_from):
                for xk in cur.iternext(True, False):
                    if unpack_f64be(xk) > now:
                        break
                    due.setdefault(xk, None)
                    self.scan_from = xk + b"\0"
                    if len(due) >= EXPIRE_SLICE:
                        full = True
                        break
        if not due:
            return 0
        for xk, found_in in due.items():
            self._handle(xk, found_in, now, gone)
        for acc, keys in gone.items():
            # the expiries of one account in one pass share one revision
            rev = st.bump_revision(acc)
            for k in keys:
                st.kv_write(acc, k, None, 0, 0)
                self.srv.watches.deleted(acc, k, rev)
            self.expired += len(keys)
        self.srv.after_write()
        return 1 if full else 0

    cdef int _handle(self, bytes xk, Batch found_in, double now, dict gone) except -1:
        cdef Store st = self.srv.store
        cdef bytes k = xk[8:]
        cdef double exp = unpack_f64be(xk)
        cdef bytes acc
        if st.expiry_of(k) == exp:            # still this key's expiry: it goes
            acc = k[:k.index(b"\0")]
            keys = gone.get(acc)
            if keys is None:
                keys = gone[acc] = []
            keys.append(k)
        if found_in is not None and found_in is not st.open_batch:
            del found_in.kx[xk]               # logged already: not to be found again
        st.expiry_mark(xk, False)
        return 0
