# Auth: who may do what. A client sends `Authorization: Bearer <token>`; the server
# knows tokens by their SHA-256 only (cdragon/tokens.py reads them from the config
# file), each limited to accounts and to read, write, metrics or admin access. With no
# token configured, protected mode serves loopback clients only (as Redis does).
#
# Decided from the request line and headers (Conn.on_headers_complete), before the body
# is read: a refused request's body is dropped as it arrives and nothing changes. The
# one decision the body makes, a read token's POST /db holding a write, is made after
# parsing (db_post). Which methods write comes from the route table. With neither
# tokens nor protected mode in force, none of this runs (one flag per request).

import hashlib
import time as _time

cdef object _sha256 = hashlib.sha256

cdef enum:
    ACC_READ = 1
    ACC_WRITE = 2
    ACC_METRICS = 3
    ACC_ADMIN = 4

cdef dict ACCESS_LEVELS = {"read": ACC_READ, "write": ACC_WRITE, "metrics": ACC_METRICS, "admin": ACC_ADMIN}

cdef bytes WWW_AUTHENTICATE = b'WWW-Authenticate: Bearer realm="cdragon"\r\n'
cdef Fixed E_NO_TOKEN = Fixed(401, "unauthorized", "this server needs a token: send Authorization: Bearer <token>", WWW_AUTHENTICATE)
cdef Fixed E_BAD_AUTHORIZATION = Fixed(401, "unauthorized", "the Authorization header must be: Bearer <token>", WWW_AUTHENTICATE)
cdef Fixed E_UNKNOWN_TOKEN = Fixed(401, "unauthorized", "unknown token", WWW_AUTHENTICATE)
cdef Fixed E_NOT_YOUR_ACCOUNT = Fixed(403, "forbidden", "this token does not cover this account")
cdef Fixed E_READ_ONLY = Fixed(403, "forbidden", "this token may only read")
cdef Fixed E_NOT_FOR_ROUTE = Fixed(403, "forbidden", "this token's access does not include this route")
cdef Fixed E_PROTECTED = Fixed(403, "forbidden",
    "protected mode: with no token configured, only clients on the server's own machine are served; "
    "add a token to the config file (cdragon token new --help) or set protected_mode = false")


cdef class Token:

    cdef bint covers(self, bytes acc) noexcept:
        cdef bytes p
        if self.all_accounts or self.access == ACC_ADMIN:
            return True
        if acc in self.exact:
            return True
        for p in self.prefixes:
            if acc.startswith(p):
                return True
        return False


cdef class Auth:

    def __cinit__(self):
        self.by_hash = {}
        self.failures = {"missing": 0, "malformed": 0, "unknown": 0, "forbidden": 0, "protected": 0}
        self.last_log = {}

    def configure(self, list specs, bint protected_mode):
        """specs: [(name, sha256 hex, [account patterns], access)]; replaces the tokens."""
        cdef Token t
        cdef dict by_hash = {}
        for name, digest, accounts, access in specs:
            t = Token.__new__(Token)
            t.name = name
            t.access = ACCESS_LEVELS[access]
            t.all_accounts = "*" in accounts
            t.exact = frozenset([a.encode() for a in accounts if not a.endswith("*")])
            t.prefixes = tuple([a[:-1].encode() for a in accounts if a.endswith("*") and a != "*"])
            by_hash[bytes.fromhex(digest)] = t
        self.by_hash = by_hash
        self.tokens_on = bool(by_hash)
        self.protected = not by_hash and protected_mode
        self.active = self.tokens_on or self.protected

    cdef int check(self, Conn c) except -1:
        """Decide the request whose headers just arrived; sets c.denied (an error to
        answer instead of serving it) and c.read_only (a read token's POST /db)."""
        cdef Request r = Request.__new__(Request)
        cdef Route route
        cdef bytes url = c.url if c.url is not None else b"/"
        cdef Py_ssize_t q = _index(PyBytes_AS_STRING(url), 0, PyBytes_GET_SIZE(url), 63)
        cdef int m
        cdef Token tok
        cdef bytes hdr, raw
        try:
            route = _find(r, url if q < 0 else url[:q])
        except ApiError:
            route = None             # 404 / 400 for whoever may ask at all
        else:                        # the router takes it from here, not finding it again
            c.found = route
            c.found_acc = r.acc
            c.found_key = r.key
        if route is not None and route.guard == G_OPEN:
            return 0
        if not self.tokens_on:       # protected mode
            if not c.is_loopback():
                self._fail(c, "protected", E_PROTECTED.error())
            return 0
        hdr = c.authz
        if hdr is None:
            return self._fail(c, "missing", E_NO_TOKEN.error())
        if c.authz_seen is not None and hdr == c.authz_seen:
            tok = c.token            # the same header as this connection's last request
        else:
            if PyBytes_GET_SIZE(hdr) < 8 or hdr[:7].lower() != b"bearer ":
                return self._fail(c, "malformed", E_BAD_AUTHORIZATION.error())
            raw = hdr[7:].strip()
            tok = self.by_hash.get(_sha256(raw).digest()) if raw else None
            c.authz_seen = hdr
            c.token = tok
        if tok is None:
            return self._fail(c, "unknown", E_UNKNOWN_TOKEN.error())
        if route is None or tok.access == ACC_ADMIN:
            return 0
        if route.guard == G_METRICS:
            if tok.access != ACC_METRICS:
                self._fail(c, "forbidden", E_NOT_FOR_ROUTE.error())
            return 0
        if route.guard == G_ADMIN or tok.access == ACC_METRICS:
            return self._fail(c, "forbidden", E_NOT_FOR_ROUTE.error())
        if not tok.covers(r.acc):
            return self._fail(c, "forbidden", E_NOT_YOUR_ACCOUNT.error())
        if tok.access != ACC_READ:
            return 0
        m = METHODS.get(c.method, M_OTHER)
        if m < N_METHODS and route.writes[m]:
            if route is R_DB:
                c.read_only = True   # the body decides (db_post)
            else:
                return self._fail(c, "forbidden", E_READ_ONLY.error())
        return 0

    cdef int _fail(self, Conn c, str reason, object err) except -1:
        """Refuse the request; count it, and log it at most once a second per client."""
        cdef double now = mono_now()
        c.denied = err
        self.failures[reason] = self.failures.get(reason, 0) + 1
        addr = c.peer()
        if now - <double>self.last_log.get(addr, 0.0) >= 1.0:
            if len(self.last_log) > 10000:
                self.last_log.clear()
            self.last_log[addr] = now
            log.warning("refused %s from %s: %s", "authentication" if err.status == 401 else "access",
                        addr, reason)
        return 0


cdef bint read_only_txn(Txn t):
    """Whether a POST /db does nothing but read (what a read token may send)."""
    cdef Op op
    if (t.kvset or t.kvdel or t.seqs or t.idem or t.qpush or t.qack or t.lock_id is not None
            or t.unlock_id is not None):
        return False
    for op in t.atomic:
        if op.is_set or op.n != 0:
            return False
    if t.rl:
        for rop in t.rl:
            if (<RateOp>rop).cost != 0:      # a take writes its TAT; Cost 0 peeks
                return False
    return True
