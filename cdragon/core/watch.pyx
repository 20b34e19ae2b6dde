# Watch: long-poll watchers of one key or of a key prefix. Exact keys sit in a map
# key -> set of watchers; prefixes in a per-account map prefix -> set. A committed batch
# wakes only the watchers of keys it wrote, with the durable state (Store.durable_*:
# never a write still waiting for its batch), serialised once and written as the same
# bytes to every waiting transport. Timeouts use the shared Deadlines heap.
#
# Delete markers for prefix watches are kept in memory for `delete_retention` seconds;
# after a restart the history starts at the revision found on disk, and a watch from an
# older revision answers 410 compacted (the client re-reads and watches from Rev).

cdef class Watcher(Timed):

    cdef int on_time(self, double now) except -1:
        return self.hub.timed_out(self)

    def drop(self):
        self.hub.remove(self)


cdef class AccountHistory:
    pass


cdef class WatchHub:

    def __cinit__(self, Server srv, Deadlines dl):
        self.srv = srv
        self.dl = dl
        self.keys = {}
        self.prefixes = {}
        self.history = {}
        self.nwatchers = 0
        self.retention = srv.lim.delete_retention

    # ---- delete markers (called for every delete that writes) --------------------------
    cdef AccountHistory _history(self, bytes acc):
        cdef AccountHistory h = self.history.get(acc)
        if h is None:
            h = AccountHistory.__new__(AccountHistory)
            h.marks = []
            # deletes before this process first loaded the account are unknown
            h.floor = self.srv.store.start_revision(acc)
            self.history[acc] = h
        return h

    cdef int deleted(self, bytes acc, bytes k, int64_t rev) except -1:
        cdef AccountHistory h = self._history(acc)
        h.marks.append((rev, wall_now(), k))
        self._trim(h)

    cdef int _trim(self, AccountHistory h) except -1:
        cdef double cutoff = wall_now() - self.retention
        cdef Py_ssize_t i = 0, n = len(h.marks)
        while i < n and <double>h.marks[i][1] < cutoff:
            i += 1
        if i:
            h.floor = max(h.floor, <int64_t>h.marks[i - 1][0])
            del h.marks[:i]

    # ---- reads of the durable snapshot -------------------------------------------------
    cdef int64_t _durable_rev(self, bytes acc) except -1:
        return self.srv.store.durable_revision(acc)

    cdef bytes _prefix_changes(self, bytes acc, bytes prefix, int64_t since):
        """{"Rev","KV"} of keys under `prefix` (a record key prefix) changed after
        revision `since`, from the durable snapshot; None if there are none."""
        cdef Store st = self.srv.store
        cdef dict found = {}
        cdef Py_ssize_t skip = len(acc) + 1
        cdef int64_t ver, rev = self._durable_rev(acc)
        cdef AccountHistory h
        for k, ver, val, exp in st.scan(acc, prefix, prefix, -1, True):
            if ver > since:
                found[k] = kv_entry(json_str((<bytes>k)[skip:]), ver, val, exp)
        h = self.history.get(acc)
        if h is not None:
            last_delete = {}
            for mrev, _, mk in h.marks:          # oldest first: the last delete wins
                if since < <int64_t>mrev <= rev and (<bytes>mk).startswith(prefix):
                    last_delete[mk] = mrev
            for mk, mrev in last_delete.items():
                if mk not in found:              # not re-created since
                    found[mk] = b'{"Key":%s,"Version":%d,"Deleted":true}' % (json_str((<bytes>mk)[skip:]), <int64_t>mrev)
        if not found:
            return None
        return b'{"Rev":%d,"KV":[%s]}' % (rev, b",".join(found.values()))

    # ---- starting a watch ----------------------------------------------------------------
    cdef int begin_post(self, Server srv, Request r) except -1:
        cdef object body = parse_json(r.body)
        cdef dict d
        cdef object key = None, prefix = None, version = None
        cdef double timeout = srv.lim.default_watch_timeout
        cdef bint has_key = False
        if type(body) is not dict:
            raise E_NOT_OBJECT.error()
        d = <dict>body
        for name, v in d.items():
            if name == "ID" or name == "Key":
                if has_key:
                    raise ApiError(400, "bad_request", "send ID or Key, not both")
                has_key = True
                key = key_bytes(v, name)
            elif name == "Prefix":
                prefix = prefix_bytes(v, "Prefix")
            elif name == "Version":
                version = as_int64(v, "Version", 0, INT64_MAX)
            elif name == "Timeout":
                timeout = as_seconds(_not_null(v, name), "Timeout", srv.lim.max_watch_timeout, True)
            else:
                raise unknown_field("", name)
        if version is None:
            raise ApiError(400, "bad_request", "Version is required")
        if has_key == (prefix is not None):
            raise ApiError(400, "bad_request", "send exactly one of ID (or Key) and Prefix")
        if has_key:
            return self._watch_key(r, key, version, timeout)
        return self._watch_prefix(r, prefix, version, timeout)

    cdef int begin_get(self, Server srv, Request r) except -1:
        cdef dict params = r.params()
        cdef int64_t version = _qint(params, "watch", 0, 0, INT64_MAX)
        cdef double timeout = _qseconds(params, "timeout", srv.lim.default_watch_timeout, srv.lim.max_watch_timeout, True)
        return self._watch_key(r, r.key, version, timeout)

    cdef int _watch_key(self, Request r, bytes key, int64_t version, double timeout) except -1:
        cdef Store st = self.srv.store
        cdef bytes k = r.acc + b"\0" + key
        cdef bytes kj = json_str(key)
        cdef int64_t cur = st.kv_read(k)
        cdef Watcher w
        cdef set group
        if cur != version or timeout == 0 or self.srv.shutting_down:
            r.conn.reply(200, kv_entry(kj, cur, st.r_val, st.r_exp), read_seq(st), r.head)
            return 0
        group = self.keys.get(k)
        self._check_room(group)
        w = self._new(r, timeout, version)
        w.k = k
        w.kj = kj
        if group is None:
            group = set()
            self.keys[k] = group
        group.add(w)
        return 0

    cdef int _watch_prefix(self, Request r, bytes prefix, int64_t version, double timeout) except -1:
        cdef bytes acc = r.acc
        cdef bytes p = acc + b"\0" + prefix
        cdef AccountHistory h = self._history(acc)
        cdef int64_t rev = self._durable_rev(acc)
        cdef bytes body
        cdef dict groups
        cdef set group
        cdef Watcher w
        self._trim(h)
        if version < h.floor:
            raise ApiError(410, "compacted", "changes before revision %d are no longer known" % h.floor,
                           {"Rev": rev})
        body = self._prefix_changes(acc, p, version) if version < rev else None
        if body is not None or timeout == 0 or self.srv.shutting_down:
            if body is None:
                body = b'{"Rev":%d,"KV":[]}' % rev
            r.conn.reply(200, body, 0, r.head)
            return 0
        groups = self.prefixes.get(acc)
        group = groups.get(p) if groups is not None else None
        self._check_room(group)
        # a revision from the future waits for the next change, as in etcd
        w = self._new(r, timeout, min(version, rev))
        w.acc = acc
        w.prefix = p
        if groups is None:
            groups = {}
            self.prefixes[acc] = groups
        if group is None:
            group = set()
            groups[p] = group
        group.add(w)
        return 0

    cdef int _check_room(self, set group) except -1:
        if self.nwatchers >= self.srv.lim.max_watchers or (
                group is not None and len(group) >= self.srv.lim.max_watchers_per_key):
            raise E_TOO_MANY_WATCHERS.error()
        return 0

    cdef Watcher _new(self, Request r, double timeout, int64_t version):
        cdef Watcher w
        if self.srv.frozen and r.acc in self.srv.frozen:
            raise E_MOVING.error()      # it would wait here for writes that go elsewhere
        w = Watcher.__new__(Watcher)
        w.hub = self
        w.conn = r.conn
        w.ver = version
        w.live = True
        w.k = w.prefix = w.acc = None
        w.slot = r.conn.reserve(w, r.head)
        self.nwatchers += 1
        self.dl.set(w, mono_now() + timeout)
        return w

    # ---- ending a watch ---------------------------------------------------------------------
    cdef int remove(self, Watcher w) except -1:
        cdef set group
        cdef dict groups
        if not w.live:
            return 0
        w.live = False
        self.nwatchers -= 1
        self.dl.clear(w)
        if w.k is not None:
            group = self.keys.get(w.k)
            if group is not None:
                group.discard(w)
                if not group:
                    del self.keys[w.k]
        else:
            groups = self.prefixes.get(w.acc)
            if groups is not None:
                group = groups.get(w.prefix)
                if group is not None:
                    group.discard(w)
                    if not group:
                        del groups[w.prefix]
                        if not groups:
                            del self.prefixes[w.acc]

    cdef int _answer(self, Watcher w, bytes data, bytes body, int64_t seq) except -1:
        """`data` is the framed response shared by every plain slot."""
        self.remove(w)
        if w.slot.close or w.slot.head:
            data = frame(200, body, w.slot.close, w.slot.head)
        w.conn.fill(w.slot, data, seq)

    cdef int timed_out(self, Watcher w) except -1:
        cdef Store st = self.srv.store
        cdef bytes body
        cdef int64_t v
        w.dl_when = 0
        if not w.live:
            return 0
        st.wait_seq = 0
        if w.k is not None:
            v = st.kv_read(w.k)
            body = kv_entry(w.kj, v, st.r_val, st.r_exp)
        else:
            body = b'{"Rev":%d,"KV":[]}' % self._durable_rev(w.acc)
        self._answer(w, frame(200, body), body, read_seq(st))

    # ---- wake-ups after a commit ----------------------------------------------------------
    cdef int committed(self, Batch b) except -1:
        """Batch b is durable: answer the watchers of the keys it wrote."""
        cdef bytes k
        cdef set group
        cdef Store st = self.srv.store
        if self.nwatchers == 0:
            return 0
        for k in b.kv:
            group = self.keys.get(k)
            if group:
                self._wake_key(k, group, st.durable_kv(k), st.r_val, st.r_exp)
        if self.prefixes:
            self._wake_prefixes(b)
        return 0

    cdef int _wake_prefixes(self, Batch b) except -1:
        cdef dict groups, bodies
        cdef Watcher w
        cdef bytes body
        for acc in b.revs:
            groups = self.prefixes.get(acc)
            if not groups:
                continue
            for p in list(groups):
                if not any([(<bytes>k).startswith(p) for k in b.kv]):
                    continue
                bodies = {}        # watchers at the same revision share one answer
                for w in list(groups.get(p, ())):
                    if w.ver not in bodies:
                        body = self._prefix_changes(acc, p, w.ver)
                        bodies[w.ver] = None if body is None else (body, frame(200, body))
                    pair = bodies[w.ver]
                    if pair is not None:
                        self._answer(w, pair[1], pair[0], 0)
        return 0

    cdef int _wake_key(self, bytes k, set group, int64_t ver, object val, double exp) except -1:
        """Answer every watcher of k not already at `ver`: one body, one framing, the
        same bytes to every connection; the per-watcher work is the write itself."""
        cdef Watcher w
        cdef set keep = None
        cdef bytes body = None, data = None
        cdef double now = mono_now()
        del self.keys[k]
        for w in group:
            if w.ver == ver:
                if keep is None:
                    keep = set()
                keep.add(w)
                continue
            if body is None:
                body = kv_entry(w.kj, ver, val, exp)
                data = frame(200, body)
            w.live = False
            self.nwatchers -= 1
            self.dl.clear(w)
            if w.slot.close or w.slot.head:
                w.conn.fill(w.slot, frame(200, body, w.slot.close, w.slot.head), 0)
            else:
                w.conn.deliver(w.slot, data, now)
        if keep is not None:
            self.keys[k] = keep

    cdef int moving(self, bytes acc) except -1:
        """The account is frozen for a move: its watchers are answered 503 moving, and
        watch again (through HAProxy, on the account's new instance) a second later."""
        cdef Watcher w
        cdef bytes head = acc + b"\0"
        cdef list mine = []
        for k, group in self.keys.items():
            if (<bytes>k).startswith(head):
                mine.extend(group)
        for group in (self.prefixes.get(acc) or {}).values():
            mine.extend(group)
        for w in mine:
            if w.live:
                self.remove(w)
                w.conn.fill(w.slot, error_response(E_MOVING.error(), w.slot.close, w.slot.head), 0)
        return 0

    cdef int shutdown(self) except -1:
        """Answer every watcher at once with its current state (and close)."""
        cdef Watcher w
        for group in list(self.keys.values()):
            for w in list(group):
                w.slot.close = True
                self.timed_out(w)
        for groups in list(self.prefixes.values()):
            for group in list(groups.values()):
                for w in list(group):
                    w.slot.close = True
                    self.timed_out(w)


# ---- the watch route's handler ------------------------------------------------------------
cdef int watch_post(Server srv, Request r) except -1:
    return srv.watches.begin_post(srv, r)
