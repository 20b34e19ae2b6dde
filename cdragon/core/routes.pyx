# Routes: (method, path) -> handler. Splits the URL, checks the account and key rules,
# answers 404/405, and turns every ApiError raised below into its JSON answer. The
# handlers themselves live in txn.pyx (POST /db) and resources.pyx (REST endpoints).

from urllib.parse import unquote_to_bytes, parse_qsl

cdef object _unquote_to_bytes = unquote_to_bytes
cdef object _parse_qsl = parse_qsl

cdef enum Route:
    R_NONE = 0
    R_DB = 1
    R_KV = 2
    R_COUNTER = 3
    R_SEQUENCE = 4
    R_LOCK = 5
    R_WATCH = 6
    R_HEALTH = 7
    R_READY = 8

cdef dict RESOURCE_KINDS = {b"kv": R_KV, b"counter": R_COUNTER, b"sequence": R_SEQUENCE, b"lock": R_LOCK}


@cython.freelist(64)
cdef class Request:
    """What a handler needs to know about the request it answers."""
    cdef Conn conn
    cdef bytes method
    cdef bytes acc
    cdef bytes key          # resource key (percent-decoded), or None
    cdef bytes query        # raw query string, or None
    cdef bytes body
    cdef bint head
    cdef dict _params

    cdef dict params(self):
        """Query parameters, percent-decoded; a parameter without '=' maps to ''."""
        if self._params is None:
            self._params = {} if not self.query else dict(_parse_qsl(self.query.decode("latin-1"), keep_blank_values=True))
        return self._params


cdef _not_found(str what):
    return ApiError(404, "not_found", what)


cdef int route_request(Server srv, Conn conn, bytes method, bytes url, bytes body) except -1:
    cdef Request r
    cdef Py_ssize_t q, slash, n
    cdef bytes path
    cdef int route = R_NONE
    cdef bint head = method == b"HEAD"
    srv.store.wait_seq = 0
    r = Request.__new__(Request)
    r.conn = conn
    r.method = method
    r.body = body
    r.head = head
    if url is None:
        url = b"/"
    q = url.find(b"?")
    if q >= 0:
        path = url[:q]
        r.query = url[q + 1:]
    else:
        path = url
        r.query = None
    try:
        if path.startswith(b"/db/"):
            slash = path.find(b"/", 4)
            if slash < 0:
                route = R_DB
                r.acc = path[4:]
            else:
                r.acc = path[4:slash]
                n = path.find(b"/", slash + 1)
                if n < 0:
                    raise _not_found("no such route")
                route = RESOURCE_KINDS.get(path[slash + 1:n], R_NONE)
                if route == R_NONE:
                    raise _not_found("no such route")
                r.key = _resource_key(path[n + 1:])
            if not account_ok(r.acc):
                raise ApiError(400, "bad_account", "account must be 1..64 of A-Z a-z 0-9 . _ -")
        elif path.startswith(b"/watch/"):
            route = R_WATCH
            r.acc = path[7:]
            if not account_ok(r.acc):
                raise ApiError(400, "bad_account", "account must be 1..64 of A-Z a-z 0-9 . _ -")
        elif path == b"/health":
            route = R_HEALTH
        elif path == b"/ready":
            route = R_READY
        else:
            raise _not_found("no such route")

        if route == R_DB:
            _allow(method, b"POST")
            if srv.shutting_down:
                raise srv.shutting_down_error()
            handle_db(srv, r)
        elif route == R_KV or route == R_COUNTER or route == R_SEQUENCE:
            if srv.shutting_down and method != b"GET" and method != b"HEAD":
                raise srv.shutting_down_error()
            handle_resource(srv, r, route)
        elif route == R_HEALTH:
            _allow_get(method)
            conn.reply(200, srv.health_body, 0, head)
        elif route == R_READY:
            _allow_get(method)
            handle_ready(srv, r)
        elif route == R_LOCK:
            srv.locks.rest(srv, r)
        else:  # R_WATCH
            _allow(method, b"POST")
            srv.watches.begin_post(srv, r)
    except ApiError as e:
        conn.reply_error(e, srv.store.wait_seq if srv.store.wait_seq > srv.store.durable_seq else 0, head)
    return 0


cdef bytes _resource_key(bytes raw):
    cdef bytes key = raw
    if has_byte(raw, 37):     # '%' 
        key = _unquote_to_bytes(raw)
    try:
        key.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_key", "key is not valid UTF-8")
    check_key_bytes(key, "key")
    return key


cdef int _allow(bytes method, bytes allowed) except -1:
    if method != allowed:
        raise ApiError(405, "method_not_allowed", "use " + allowed.decode() + " here",
                       None, b"Allow: " + allowed + b"\r\n")
    return 0


cdef int _allow_get(bytes method) except -1:
    if method != b"GET" and method != b"HEAD":
        raise ApiError(405, "method_not_allowed", "use GET here", None, b"Allow: GET, HEAD\r\n")
    return 0


cdef int handle_ready(Server srv, Request r) except -1:
    if srv.shutting_down:
        raise ApiError(503, "shutting_down", "the server is shutting down")
    if not srv.store.has_room():
        raise ApiError(503, "storage_full", "the data store reached its configured maximum size")
    if srv.storage_error is not None:
        raise ApiError(503, "storage_error", "the last commit failed: " + srv.storage_error)
    r.conn.reply(200, b'{"Status":"ok"}', 0, r.head)
    return 0
