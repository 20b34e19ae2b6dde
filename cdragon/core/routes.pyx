# Routes: the route table and the router. A route family is data: a Route names its
# handler for each method, which methods write, and which are still served during
# shutdown. The router splits the URL, finds the Route, checks the account and key
# rules, answers 404/405/503 from the table, calls the handler, and turns every
# ApiError raised below into its JSON answer. Adding a route family is one Route and
# its handler functions (resources.pyx, locks.pyx, watch.pyx).

from urllib.parse import unquote_to_bytes, parse_qsl

cdef object _unquote_to_bytes = unquote_to_bytes
cdef object _parse_qsl = parse_qsl

cdef dict METHODS = {b"GET": M_GET, b"HEAD": M_HEAD, b"POST": M_POST, b"PUT": M_PUT, b"DELETE": M_DELETE}
cdef tuple METHOD_NAMES = ("GET", "HEAD", "POST", "PUT", "DELETE")


@cython.freelist(64)
cdef class Request:

    cdef dict params(self):
        """Query parameters, percent-decoded; a parameter without '=' maps to ''.
        The router has checked them against the route's (check_params)."""
        if self._params is None:
            self._params = {}
        return self._params


cdef class Route:

    def accept(self, get="", post="", put="", delete=""):
        """The query parameters each method takes (space-separated names); any other
        is 400. Returns the route, so the table reads as one expression per route."""
        self.accepts = [frozenset(get.split()), frozenset(get.split()), frozenset(post.split()),
                        frozenset(put.split()), frozenset(delete.split())]
        return self


cdef frozenset _NO_PARAMS = frozenset()


cdef int check_params(Request r) except -1:
    """Parse the query string into r._params: every parameter must be one the route
    takes for this method, and none may repeat (a typo such as ?version=1 for ?ver=1
    must never turn a compare-and-swap into a blind write)."""
    cdef dict params = {}
    cdef frozenset accepts = <frozenset>r.route.accepts[r.method]
    for name, value in _query_pairs(r.query):
        if name not in accepts:
            raise ApiError(400, "bad_request", "unknown query parameter %s%s" % (
                _quoted(name), (" (this route takes " + ", ".join(sorted(accepts)) + ")") if accepts
                else " (this route takes none)"))
        if name in params:
            raise ApiError(400, "bad_request", "query parameter %s given twice" % _quoted(name))
        params[name] = value
    r._params = params
    return 0


cdef list _query_pairs(bytes q):
    """parse_qsl(q, keep_blank_values=True): split here in C when nothing needs
    decoding (no '%' and no '+'), as most queries are ("?rate=100&per=60")."""
    cdef list out = []
    cdef bytes part
    cdef Py_ssize_t eq
    if has_byte(q, 37) or has_byte(q, 43):
        return _parse_qsl(q.decode("latin-1"), keep_blank_values=True)
    for part in q.split(b"&"):
        if PyBytes_GET_SIZE(part):
            eq = part.find(b"=")
            if eq < 0:
                out.append((part.decode("latin-1"), ""))
            else:
                out.append((part[:eq].decode("latin-1"), part[eq + 1:].decode("latin-1")))
    return out


cdef str _quoted(str name):
    return '"' + (name if len(name) <= 64 else name[:64] + "...") + '"'


cdef Route route(str template, Handler get, Handler post, Handler put, Handler delete,
                 bint post_writes=True):
    """A Route from its handlers. PUT and DELETE write; POST writes unless
    post_writes is False (a watch); what writes is refused once shutdown began."""
    cdef Route r = Route.__new__(Route)
    cdef int m
    cdef list names = []
    r.template = template
    # who may use it, from the template: the probes are open, /metrics needs a metrics
    # (or admin) token, /admin/* an admin token, the rest a token covering its account
    r.guard = (G_OPEN if template in ("/health", "/ready") else G_METRICS if template == "/metrics"
               else G_ADMIN if template.startswith("/admin") else G_ACCOUNT)
    r.index = len(ROUTE_TEMPLATES)
    assert r.index < ST_ROUTES
    ROUTE_TEMPLATES.append(template)
    r.handlers[M_GET] = get
    r.handlers[M_HEAD] = get
    r.handlers[M_POST] = post
    r.handlers[M_PUT] = put
    r.handlers[M_DELETE] = delete
    r.accepts = [_NO_PARAMS] * N_METHODS
    for m in range(N_METHODS):
        r.writes[m] = m == M_PUT or m == M_DELETE or (m == M_POST and post_writes)
        r.in_shutdown[m] = not r.writes[m]
        if r.handlers[m] != NULL:
            names.append(METHOD_NAMES[m])
    r.allow = ("Allow: " + ", ".join(names) + "\r\n").encode()
    names = [n for n in names if n != "HEAD"]
    last = len(names) - 1
    r.allow_message = "use " + (names[0] if last == 0 else ", ".join(names[:last]) + " or " + names[last]) + " here"
    return r


# ---- the table ----------------------------------------------------------------------------
#                           template                  GET           POST           PUT          DELETE
cdef Route R_HEALTH = route("/health",                  health_get,   NULL,          NULL,        NULL)
cdef Route R_READY = route("/ready",                    ready_get,    NULL,          NULL,        NULL)
cdef Route R_METRICS = route("/metrics",                metrics_get,  NULL,          NULL,        NULL)
cdef Route R_DB = route("/db/{acc}",                    NULL,         db_post,       NULL,        NULL)
cdef Route R_WATCH = route("/watch/{acc}",              NULL,         watch_post,    NULL,        NULL, False)
cdef Route R_QUEUE_RECV = route("/queue/{acc}",         NULL,         queue_receive, NULL,        NULL)
cdef Route R_KV = route("/db/{acc}/kv/{key}",           kv_get,       NULL,          kv_put,      kv_delete).accept(
    get="raw watch timeout", put="ver ttl", delete="ver")
cdef Route R_KV_LIST = route("/db/{acc}/kv",            kv_list,      NULL,          NULL,        kv_delete_prefix).accept(
    get="prefix after limit keys", delete="prefix all")
cdef Route R_COUNTER = route("/db/{acc}/counter/{key}", counter_get,  counter_add,   counter_set, counter_reset).accept(
    post="add", put="set ifeq")
cdef Route R_SEQUENCE = route("/db/{acc}/sequence/{key}", sequence_get, sequence_next, NULL,      NULL).accept(
    post="count")
cdef Route R_LOCK = route("/db/{acc}/lock/{key}",       lock_get,     lock_take,     NULL,        lock_release).accept(
    post="dur wait owner id", delete="handle owner id force")
cdef Route R_QUEUE = route("/db/{acc}/queue/{key}",     queue_stats,  queue_push,    queue_extend, queue_delete).accept(
    post="delay at group dedup", put="receipt visibility", delete="receipt id")
cdef Route R_RATELIMIT = route("/db/{acc}/ratelimit/{key}", ratelimit_peek, ratelimit_take, NULL, NULL).accept(
    get="rate per burst", post="rate per burst cost")

# the admin routes are answered later, by Python code (admin.pyx, cdragon/admin.py)
cdef Route R_ADMIN_ACCOUNTS = route("/admin/accounts",  admin_call,   NULL,          NULL,        NULL)
cdef Route R_ADMIN_BACKUP = route("/admin/backup",      NULL,         admin_call,    NULL,        NULL)
cdef Route R_ADMIN_BACKUPS = route("/admin/backups",    admin_call,   NULL,          NULL,        NULL)
cdef Route R_ADMIN_EXPORT = route("/admin/export",      admin_call,   NULL,          NULL,        NULL).accept(
    get="acc")
cdef Route R_ADMIN_IMPORT = route("/admin/import",      NULL,         admin_call,    NULL,        NULL).accept(
    post="mode")
cdef Route R_ADMIN_FREEZE = route("/admin/freeze",      admin_call,   admin_call,    NULL,        admin_call).accept(
    post="acc", delete="acc")
cdef Route R_ADMIN_PURGE = route("/admin/purge",        NULL,         admin_call,    NULL,        NULL).accept(
    post="acc")

cdef dict EXACT = {b"/health": R_HEALTH, b"/ready": R_READY,      # whole paths
                   b"/metrics": R_METRICS,
                   b"/admin/accounts": R_ADMIN_ACCOUNTS, b"/admin/backup": R_ADMIN_BACKUP,
                   b"/admin/backups": R_ADMIN_BACKUPS, b"/admin/export": R_ADMIN_EXPORT,
                   b"/admin/import": R_ADMIN_IMPORT, b"/admin/freeze": R_ADMIN_FREEZE,
                   b"/admin/purge": R_ADMIN_PURGE}
cdef list ACCOUNT_ROOTS = [(b"db", R_DB), (b"watch", R_WATCH),      # /{root}/{acc}
                         (b"queue", R_QUEUE_RECV)]
cdef dict RESOURCES = {b"kv": R_KV, b"counter": R_COUNTER,        # /db/{acc}/{kind}/{key}
                       b"sequence": R_SEQUENCE, b"lock": R_LOCK, b"queue": R_QUEUE,
                       b"ratelimit": R_RATELIMIT}
cdef dict COLLECTIONS = {b"kv": R_KV_LIST}                         # /db/{acc}/{kind}


def route_templates():
    """Every route's template (the route label of logs and metrics)."""
    return ([(<Route>r).template for r in EXACT.values()] + [(<Route>r).template for _, r in ACCOUNT_ROOTS]
            + [(<Route>r).template for r in RESOURCES.values()]
            + [(<Route>r).template for r in COLLECTIONS.values()])


# ---- the router -------------------------------------------------------------------------
cdef inline Py_ssize_t _index(const char* p, Py_ssize_t start, Py_ssize_t n, char c) noexcept:
    """The index of c in p[start:n], or -1 (memchr: no Python call per request)."""
    cdef const char* hit = <const char*>memchr(p + start, c, n - start) if start < n else NULL
    return -1 if hit == NULL else hit - p


cdef Route _root(const char* name, Py_ssize_t n):
    """The Route of /{name}/{acc}..., or None: a scan of a short list, comparing bytes
    in place (a slice and a dict lookup per request cost more)."""
    cdef bytes root
    for root, found in ACCOUNT_ROOTS:
        if PyBytes_GET_SIZE(root) == n and memcmp(PyBytes_AS_STRING(root), name, n) == 0:
            return <Route>found
    return None


cdef Route _find(Request r, bytes path):
    """The Route of `path`; sets r.acc and r.key. Raises 404 / bad_account / bad_key."""
    cdef const char* p = PyBytes_AS_STRING(path)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(path), root_end, acc_end, kind_end
    cdef Route found
    root_end = _index(p, 1, n, 47)                 # "/"
    if root_end < 0:
        found = EXACT.get(path)
        if found is None:
            raise E_NO_ROUTE.error()
        return found
    found = _root(p + 1, root_end - 1) if p[0] == 47 else None
    if found is None:
        found = EXACT.get(path)       # /admin/...
        if found is None:
            raise E_NO_ROUTE.error()
        return found
    acc_end = _index(p, root_end + 1, n, 47) if found is R_DB else -1
    if acc_end < 0:
        r.acc = path[root_end + 1:]
    else:
        # deeper: /db/{acc}/{kind}/{key}, or /db/{acc}/{kind}
        kind_end = _index(p, acc_end + 1, n, 47)
        if kind_end >= 0:
            found = RESOURCES.get(path[acc_end + 1:kind_end])
        else:
            found = COLLECTIONS.get(path[acc_end + 1:])
        if found is None:
            raise E_NO_ROUTE.error()
        r.acc = path[root_end + 1:acc_end]
        if kind_end >= 0:
            r.key = _resource_key(path[kind_end + 1:])
    if not account_ok(r.acc):
        raise E_BAD_ACCOUNT.error()
    return found


cdef int route_request(Server srv, Conn conn, bytes method, bytes url, bytes body) except -1:
    cdef Request r
    cdef Route found
    cdef Py_ssize_t q
    cdef bytes path
    cdef int m
    cdef Handler h
    cdef double t0 = mono_now()
    srv.store.wait_seq = 0
    r = Request.__new__(Request)
    r.conn = conn
    r.method = m = METHODS.get(method, M_OTHER)
    r.body = body
    r.head = m == M_HEAD
    if url is None:
        url = b"/"
    q = _index(PyBytes_AS_STRING(url), 0, PyBytes_GET_SIZE(url), 63)     # "?"
    if q >= 0:
        path = url[:q]
        r.query = url[q + 1:]
    else:
        path = url
        r.query = None
    try:
        if conn.found is not None:
            # the token check already found it (Auth.check): the same request
            found = conn.found
            r.acc = conn.found_acc
            r.key = conn.found_key
            conn.found = None
        else:
            found = _find(r, path)
        r.route = found
        h = found.handlers[m] if m < N_METHODS else NULL
        if h == NULL:
            raise ApiError(405, "method_not_allowed", found.allow_message, None, found.allow)
        if srv.shutting_down and not found.in_shutdown[m]:
            raise E_SHUTTING_DOWN.error()
        if srv.frozen and found.writes[m] and r.acc in srv.frozen:
            if found is not R_DB:
                raise E_MOVING.error()
            r.moving = True          # a POST /db that only reads is still served (db_post)
        if r.query is not None:
            check_params(r)
        h(srv, r)
    except ApiError as e:
        conn.reply_error(e, read_seq(srv.store), r.head)
    srv.stats.answered(r, conn, t0)
    return 0


cdef bytes _resource_key(bytes raw):
    cdef bytes key = raw
    if has_byte(raw, 37):     # '%'
        key = _unquote_to_bytes(raw)
    try:
        key.decode("utf-8")
    except UnicodeDecodeError:
        raise E_KEY_NOT_UTF8.error()
    check_key_bytes(key, "key")
    return key


cdef inline int64_t read_seq(Store st) noexcept:
    """The batch an answer that only read must wait for: the newest not-yet-durable
    batch whose writes the request saw (0: nothing to wait for)."""
    return st.wait_seq if st.wait_seq > st.durable_seq else 0


cdef int64_t commit_seq(Server srv, bint wrote) except -1:
    """The batch an answer waits for: the open one after a write, else read_seq."""
    if wrote:
        srv.after_write()
        return srv.store.write_seq()
    return read_seq(srv.store)


# ---- operations routes ------------------------------------------------------------------
cdef int health_get(Server srv, Request r) except -1:
    r.conn.reply(200, srv.health_body, 0, r.head)
    return 0


cdef int ready_get(Server srv, Request r) except -1:
    if srv.shutting_down:
        raise E_SHUTTING_DOWN.error()
    if not srv.store.has_room():
        raise E_NOT_READY_FULL.error()
    if srv.storage_error is not None:
        raise ApiError(503, "storage_error", "the last commit failed: " + srv.storage_error)
    r.conn.reply(200, b'{"Status":"ok"}', 0, r.head)
    return 0


cdef bytes CT_PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"


cdef int metrics_get(Server srv, Request r) except -1:
    """Prometheus text, rendered now by cdragon.metrics (first scrape: set up then)."""
    cdef Conn c = r.conn
    if srv.metrics_renderer is None:
        from cdragon.metrics import renderer
        srv.metrics_renderer = renderer(srv)
    c.respond(frame(200, srv.metrics_renderer(), c.want_close, r.head, True,
                    KEEP_ALIVE_10 if c.http10 and not c.want_close else None, CT_PROMETHEUS),
              0, c.want_close, r.head)
    return 0
