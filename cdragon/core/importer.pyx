# Importer: the Cython side of POST /admin/import (cdragon.importer is the Python side).
# parse_import checks a whole NDJSON dump against the rules of a normal write (account
# and key rules, max_value_bytes, integer ranges) and decodes it into an ImportPlan;
# apply_import stages the plan into the Store's open batch with the functions every
# write uses (kv_write, ctr_write, seq_write, idem_write, the lock table's _changed),
# so the import is one batch in the write-ahead log like any request: all or nothing,
# durable before it is answered, replayed after a crash, and seen by watchers.
# Both run on the loop and block it for the time of a big dump (documented in API.md).

cdef tuple _KINDS = ("KV", "Counter", "Seq", "Lock", "Rev", "Idem", "Msg", "Dedup", "RateLimit")
cdef dict _FIELDS = {
    "KV": ("Acc", "KV", "Value", "Version", "Expires"),
    "Counter": ("Acc", "Counter", "Value"),
    "Seq": ("Acc", "Seq", "Value"),
    "Lock": ("Acc", "Lock", "Handle", "Till", "Owner"),
    "Rev": ("Acc", "Rev"),
    "Idem": ("Acc", "Idem", "Expires"),
    "Msg": ("Acc", "Queue", "Msg", "Body", "Due", "Sent", "Till", "Attempts", "MaxAttempts", "Group"),
    "Dedup": ("Acc", "Queue", "Dedup", "ID", "Expires"),
    "RateLimit": ("Acc", "RateLimit", "TAT"),
}
cdef tuple _HEADER_FIELDS = ("Format", "FormatVersion", "Server", "Time")
EXPORT_FORMAT = "cdragon-export"
EXPORT_FORMAT_VERSION = 1


cdef class ImportPlan:
    pass


cdef double _epoch(object v, str what) except? -1:
    """A time in a dump (Expires, Till): epoch seconds, a finite number > 0."""
    cdef double d
    if type(v) is not int and type(v) is not float:
        raise ApiError(400, "bad_request", what + " must be a number (epoch seconds)")
    d = v
    if not (d > 0 and d < 1e15):
        raise ApiError(400, "bad_request", what + " out of range")
    return d


cdef int _header(object d) except -1:
    if type(d) is not dict:
        raise ApiError(400, "bad_request", "the first line must be the export header")
    for f in <dict>d:
        if f not in _HEADER_FIELDS:
            raise unknown_field("", f)
    if (<dict>d).get("Format") != EXPORT_FORMAT:
        raise ApiError(400, "bad_request", 'the first line must be the export header ({"Format": "cdragon-export", ...})')
    v = (<dict>d).get("FormatVersion")
    if type(v) is not int or v != EXPORT_FORMAT_VERSION:
        raise ApiError(400, "bad_request", "FormatVersion %r is not supported (this server reads %d)" % (v, EXPORT_FORMAT_VERSION))
    if "Server" in <dict>d and type((<dict>d)["Server"]) is not str:
        raise ApiError(400, "bad_request", "Server must be a string")
    if "Time" in <dict>d:
        _epoch((<dict>d)["Time"], "Time")
    return 0


cdef int _seen(set keys, bytes k, str kind) except -1:
    if k in keys:
        raise ApiError(400, "bad_request", "a second %s record for the same name" % kind)
    keys.add(k)
    return 0


cdef int _record(ImportPlan p, dict d, Server srv, double now) except -1:
    """One record line into the plan (or ApiError)."""
    cdef str kind = None
    cdef bytes acc, k, head
    cdef int64_t n, ver
    cdef double t
    cdef object owner
    for f in _KINDS:
        if f in d:
            if kind is not None:
                raise ApiError(400, "bad_request", "a record has exactly one of " + ", ".join(_KINDS))
            kind = f
    if kind is None:
        raise ApiError(400, "bad_request", "not a record: it needs one of " + ", ".join(_KINDS)
                       + ' (or {"End": true, "Records": N} as the last line)')
    for f in d:
        if f not in <tuple>_FIELDS[kind]:
            raise unknown_field(kind + " record: ", f)
    if type(d.get("Acc")) is not str:
        raise ApiError(400, "bad_request", "Acc (the account) must be a string")
    acc = checked_account(d["Acc"] if (<str>d["Acc"]).isascii() else "")
    head = acc + b"\0"
    if kind == "Rev":
        p.revs[acc] = max(<int64_t>p.revs.get(acc, 0), as_int64(d["Rev"], "Rev", 0, INT64_MAX))
        return 0
    p.revs.setdefault(acc, 0)
    if kind == "KV":
        k = head + key_bytes(d["KV"], "KV")
        _seen(p.kv_keys, k, kind)
        if "Value" not in d or "Version" not in d:
            raise ApiError(400, "bad_request", "a KV record needs Value and Version")
        val = encode_value(d["Value"], srv.lim.max_value_bytes)
        ver = as_int64(d["Version"], "Version", 1, INT64_MAX)
        t = _epoch(d["Expires"], "Expires") if "Expires" in d else 0
        if ver > <int64_t>p.revs[acc]:
            p.revs[acc] = ver             # an account's revision is at least its newest version
        if t == 0 or t > now:             # an expired key is not brought back
            p.kv.append((acc, k, val, ver, t))
        else:
            p.kv_keys.discard(k)
    elif kind == "Counter" or kind == "Seq":
        k = head + key_bytes(d[kind], kind)
        if "Value" not in d:
            raise ApiError(400, "bad_request", "a %s record needs Value" % kind)
        if kind == "Counter":
            _seen(p.ctr_keys, k, kind)
            p.ctr.append((k, as_int64(d["Value"], "Value", INT64_MIN, INT64_MAX)))
        else:
            _seen(p.sq_keys, k, kind)
            p.sq.append((k, as_int64(d["Value"], "Value", 0, INT64_MAX)))
    elif kind == "Lock":
        k = head + key_bytes(d["Lock"], "Lock")
        _seen(p.lk_keys, k, kind)
        if "Handle" not in d or "Till" not in d:
            raise ApiError(400, "bad_request", "a Lock record needs Handle and Till")
        n = as_int64(d["Handle"], "Handle", 1, INT64_MAX)
        t = _epoch(d["Till"], "Till")
        owner = d.get("Owner")
        if owner is not None and (type(owner) is not str or not 1 <= len(utf8_of(owner, "Owner")) <= MAX_KEY_BYTES):
            raise ApiError(400, "bad_request", "Owner must be null or a string of 1..%d bytes" % MAX_KEY_BYTES)
        if n > p.top_handle:
            p.top_handle = n
            p.top_handle_key = k
        if t > now:                       # an expired lock is not held again
            p.lk.append((k, n, t, owner))
        else:
            p.lk_keys.discard(k)
    elif kind == "Msg" or kind == "Dedup":
        queue_record(p, d, kind, acc, srv, now)
    elif kind == "RateLimit":
        _rl_record(p, d, head)
    else:
        k = head + key_bytes(d["Idem"], "Idem")
        _seen(p.idem_keys, k, kind)
        if "Expires" not in d:
            raise ApiError(400, "bad_request", "an Idem record needs Expires")
        t = _epoch(d["Expires"], "Expires")
        if t > now:
            p.idem.append((k, t))
        else:
            p.idem_keys.discard(k)
    return 0


cdef int _rl_record(ImportPlan p, dict d, bytes head) except -1:
    """A limiter state: {"Acc", "RateLimit": key, "TAT": epoch nanoseconds}; one that has
    fully recovered (TAT <= now) is the same as none and is left out."""
    cdef bytes k = head + key_bytes(d["RateLimit"], "RateLimit")
    cdef int64_t now = now_ns(), tat
    _seen(p.rl_keys, k, "RateLimit")
    if "TAT" not in d:
        raise ApiError(400, "bad_request", "a RateLimit record needs TAT (epoch nanoseconds)")
    tat = as_int64(d["TAT"], "TAT", 0, INT64_MAX)
    if tat > now + RL_MAX_SPAN_NS:
        raise ApiError(400, "bad_request", "TAT too far in the future")
    if tat > now:
        p.rl.append((k, tat))
    else:
        p.rl_keys.discard(k)
    return 0


cdef object _at_line(Py_ssize_t line, object e):
    return ApiError(400, "bad_request", "line %d: %s" % (line, e.message))


def parse_import(Server srv, bytes body):
    """The whole dump checked and decoded into an ImportPlan. Any bad line is 400
    bad_request naming it ("line N: ..."); so is a dump without its header, without
    its End line (cut off), with a Records count that does not match, or with
    anything after End."""
    cdef ImportPlan p = ImportPlan.__new__(ImportPlan)
    cdef Py_ssize_t pos = 0, end, size = PyBytes_GET_SIZE(body), line = 0
    cdef bint ended = False
    cdef bytes text
    cdef object d
    cdef double now = wall_now()
    p.kv = []
    p.ctr = []
    p.sq = []
    p.lk = []
    p.idem = []
    p.revs = {}
    p.kv_keys = set()
    p.ctr_keys = set()
    p.sq_keys = set()
    p.lk_keys = set()
    p.idem_keys = set()
    p.qm = []
    p.qd = []
    p.qm_keys = set()
    p.rl = []
    p.rl_keys = set()
    p.records = 0
    p.top_handle = 0
    p.top_handle_key = None
    while pos < size:
        end = body.find(b"\n", pos)
        if end < 0:
            end = size
        text = body[pos:end]
        pos = end + 1
        line += 1
        if ended:
            if text.strip():
                raise ApiError(400, "bad_request", "line %d: nothing may follow the End line" % line)
            continue
        try:
            d = parse_json(text)
            if line == 1:
                _header(d)
                continue
            if type(d) is not dict:
                raise ApiError(400, "bad_request", "a record must be a JSON object")
            if "End" in <dict>d:
                for f in <dict>d:
                    if f != "End" and f != "Records":
                        raise unknown_field("End line: ", f)
                if (<dict>d)["End"] is not True:
                    raise ApiError(400, "bad_request", "End must be true")
                n = as_int64((<dict>d).get("Records"), "Records", 0, INT64_MAX)
                if n != p.records:
                    raise ApiError(400, "bad_request", "the End line counts %d records, the dump holds %d" % (n, p.records))
                ended = True
                continue
            _record(p, <dict>d, srv, now)
            p.records += 1
        except ApiError as e:
            raise _at_line(line, e)
    if line == 0:
        raise ApiError(400, "bad_request", "empty dump: no export header")
    if not ended:
        raise ApiError(400, "bad_request", 'the dump has no End line (line %d is the last): it is cut off' % line)
    return p


cdef set _names_under(Store st, dict over, object db, bytes head):
    """Every record key under `head` in one of the Store's sub-databases: the overlay's
    (newest writes) and LMDB's (the last checkpoint)."""
    cdef set out = {k for k in over if (<bytes>k).startswith(head)}
    cur = st.rtxn.cursor(db)
    if cur.set_range(head):
        for k in cur.iternext(True, False):
            if not (<bytes>k).startswith(head):
                break
            out.add(k)
    return out


cdef list _clear_account(Server srv, ImportPlan p, bytes acc, int64_t rev, double nm):
    """mode=replace: delete what the account holds and the dump does not (what it
    holds is overwritten anyway), in the open batch; returns the locks it freed."""
    cdef Store st = srv.store
    cdef LockTable table = srv.locks
    cdef bytes head = acc + b"\0"
    cdef list freed = []
    cdef Lock L
    for k, ver, val, exp in st.scan(acc, head, head, -1, False):
        if k not in p.kv_keys:
            st.kv_write(acc, k, None, 0, 0)
            srv.watches.deleted(acc, k, rev)
    for k in _names_under(st, st.o_ctr, st.db_ctr, head):
        if k not in p.ctr_keys and st.ctr_read(k) != 0:
            st.ctr_write(k, 0)
    for k in _names_under(st, st.o_seq, st.db_seq, head):
        if k not in p.sq_keys and st.seq_read(k) != 0:
            st.seq_write(k, 0)            # a sequence at 0 reads as none
    now = wall_now()
    for k in _names_under(st, st.o_idem, st.db_idem, head):
        if k not in p.idem_keys and st.idem_live(k, now):
            st.idem_write(k, 0.0)         # expired: the checkpoint's sweep drops it
    for k in _names_under(st, st.o_rl, st.db_rl, head):
        if k not in p.rl_keys and st.rl_read(k) != 0:
            st.rl_write(k, 0)             # no state (deleted by the batch)
    for k, L in list(table.locks.items()):
        if (<bytes>k).startswith(head) and k not in p.lk_keys and table._held(L, nm):
            table._free(L)
            freed.append(L)
    return freed


cdef int64_t _plan_bytes(ImportPlan p):
    """What the plan's records may add to LMDB (as Batch.count estimates a write)."""
    cdef int64_t n = 0
    for rec in p.kv:
        n += record_bytes(PyBytes_GET_SIZE(<bytes>rec[1]), PyBytes_GET_SIZE(<bytes>rec[2]))
    for rec in p.qm:
        n += record_bytes(PyBytes_GET_SIZE(<bytes>rec[1]) + 16, PyBytes_GET_SIZE(<bytes>rec[9]) + 64)
    for recs in (p.ctr, p.sq, p.lk, p.idem, p.rl):
        for rec in <list>recs:
            n += record_bytes(PyBytes_GET_SIZE(<bytes>rec[0]), 24)
    return n


def apply_import(Server srv, ImportPlan p, bint replace, object on_durable):
    """Stage the plan into the open batch (with mode=replace, the accounts it names
    cleared first), and call on_durable() once that batch is durable. Returns
    ({account: its revision now}, the batch's number). 507 storage_full when the
    records may not fit under max_storage_bytes,
    503 moving when the dump names an account frozen for a move."""
    cdef Store st = srv.store
    cdef LockTable table = srv.locks
    cdef Batch b
    cdef Lock L
    cdef dict out = {}
    cdef list freed = []
    cdef int64_t rev
    cdef double nm = mono_now(), nw = wall_now()
    for acc in p.revs:
        if acc in srv.frozen:             # moving away: its writes are refused
            raise E_MOVING.error()
    if st.used_bytes + st.pending_bytes() + _plan_bytes(p) + STORAGE_HEADROOM > st.max_bytes:
        raise E_STORAGE_FULL.error()
    b = st.open_batch
    # every account of the dump moves to a new revision, at least the imported one
    for acc in sorted(p.revs):
        st.bump_revision(acc)
        rev = max(st.revision(acc), <int64_t>p.revs[acc])
        st.revs[acc] = rev
        b.revs[acc] = rev
        out[(<bytes>acc).decode()] = rev
        if replace:
            freed.extend(_clear_account(srv, p, acc, rev, nm))
    for acc, k, val, ver, exp in p.kv:
        st.kv_write(acc, k, val, ver, exp)
    for k, v in p.ctr:
        st.ctr_write(k, v)
    for k, v in p.sq:
        # merge never moves a sequence back (a number is never handed out twice)
        st.seq_write(k, v if replace else max(<int64_t>v, st.seq_read(k)))
    for k, t in p.idem:
        st.idem_write(k, t)
    if p.qm or p.qd or replace:
        srv.queues.import_records(p.qm, p.qd, set(p.revs) if replace else set(), p.qm_keys)
    for k, tat in p.rl:
        # merge keeps the later TAT: an import never hands out a fresh burst
        st.rl_write(k, tat if replace else max(<int64_t>tat, st.rl_read(k)))
    for k, h, till, owner in p.lk:
        L = table._get(k)
        L.handle = h
        L.owner = owner
        L.till = till
        L.tmono = nm + (<double>till - nw)
        table.dl.set(L, L.tmono)
        table._changed(L)
    if p.top_handle > table.hw:
        table.hw = p.top_handle
        # the high-water mark is written with the lock records: make sure there is one
        b.mark(b.lk, p.top_handle_key, 48)
    for L in freed:
        table._grant_next(L, nm)
        table._forget_if_idle(L)
    st.open_batch.after.append(on_durable)
    srv.after_write()
    return out, b.seq


def purge_account(Server srv, bytes acc, object on_durable):
    """Delete everything the account holds (keys, counters, sequences, idempotency
    ids, locks, queue messages and DedupIDs; its revision stays, one higher) in the open batch, as the last step of
    moving it to another instance; on_durable() once that batch is durable. Only an
    account frozen for the move: it takes no writes here any more, and its lock
    waiters have been answered. Returns (its revision now, the batch's number)."""
    cdef ImportPlan p = ImportPlan.__new__(ImportPlan)
    cdef Lock L
    cdef int64_t rev
    if acc not in srv.frozen:
        raise ApiError(409, "not_frozen", "only an account frozen for a move (POST /admin/freeze) can be purged")
    p.kv_keys = p.ctr_keys = p.sq_keys = p.lk_keys = p.idem_keys = p.rl_keys = set()
    rev = srv.store.bump_revision(acc)
    for L in _clear_account(srv, p, acc, rev, mono_now()):
        srv.locks._forget_if_idle(L)
    srv.queues.import_records([], [], {acc}, set())      # its queue messages and DedupIDs
    srv.store.open_batch.after.append(on_durable)
    srv.after_write()
    return rev, srv.store.open_batch.seq
