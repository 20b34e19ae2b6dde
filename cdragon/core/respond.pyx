# Respond: the status-line table and response framing (Content-Length, Content-Type,
# Connection: close), from prebuilt prefixes so that a response costs one allocation.
# The error answers themselves are in errors.pyx.

cdef dict STATUS_TEXT = {
    100: b"Continue", 200: b"OK", 400: b"Bad Request", 401: b"Unauthorized",
    403: b"Forbidden", 404: b"Not Found", 405: b"Method Not Allowed",
    408: b"Request Timeout", 409: b"Conflict", 410: b"Gone", 413: b"Content Too Large",
    417: b"Expectation Failed", 429: b"Too Many Requests", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 503: b"Service Unavailable",
    505: b"HTTP Version Not Supported", 507: b"Insufficient Storage",
}

cdef bytes CT_JSON = b"application/json"
cdef bytes CT_TEXT = b"text/plain; charset=utf-8"
cdef bytes CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
cdef dict _PREFIX_JSON = {}
cdef dict _PREFIX_TEXT = {}

cdef bytes _prefix(int status, bytes ctype):
    return (b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: "
            % (status, STATUS_TEXT.get(status, b"Unknown"), ctype))

for _st in STATUS_TEXT:
    _PREFIX_JSON[_st] = _prefix(_st, CT_JSON)
    _PREFIX_TEXT[_st] = _prefix(_st, CT_TEXT)


# Content-Length digits for the usual small bodies, so framing formats no number
cdef list _LENGTHS = [b"%d" % _n for _n in range(4096)]


cdef bytes _TAIL = b"\r\n\r\n"
cdef bytes _TAIL_CLOSE = b"\r\nConnection: close\r\n\r\n"
cdef bytes _OK_JSON = _PREFIX_JSON[200]


cdef inline char* _put(char* w, bytes b) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    memcpy(w, PyBytes_AS_STRING(b), n)
    return w + n


cdef bytes frame(int status, bytes body, bint close=False, bint head=False,
                 bint text=False, bytes extra=None, bytes ctype=None):
    """A whole HTTP/1.1 response. `extra` is raw header lines ending in CRLF. A JSON
    body (not `text`) gets a newline after it. `ctype`: a Content-Type of the
    caller's (with `text`: no newline added)."""
    cdef bytes prefix = _OK_JSON if status == 200 and not text else (
        <dict>(_PREFIX_TEXT if text else _PREFIX_JSON)).get(status)
    if ctype is not None:
        prefix = _prefix(status, ctype)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
    cdef Py_ssize_t nl = 0 if text else 1      # a JSON answer ends with a newline
    cdef bytes tail, digits, out
    cdef char* w
    if prefix is None:
        prefix = _prefix(status, CT_TEXT if text else CT_JSON)
    if extra is None:
        tail = _TAIL_CLOSE if close else _TAIL
    else:
        tail = (b"\r\nConnection: close\r\n" if close else b"\r\n") + extra + b"\r\n"
    digits = <bytes>_LENGTHS[n + nl] if n + nl < 4096 else b"%d" % (n + nl)
    if head:
        n = nl = 0
    # one allocation, four copies: this runs for every answer
    out = PyBytes_FromStringAndSize(NULL, PyBytes_GET_SIZE(prefix) + PyBytes_GET_SIZE(digits)
                                    + PyBytes_GET_SIZE(tail) + n + nl)
    w = _put(_put(_put(PyBytes_AS_STRING(out), prefix), digits), tail)
    memcpy(w, PyBytes_AS_STRING(body), n)
    if nl:
        w[n] = b'\n'     # so that curl's answer does not run into the prompt
    return out




cdef bytes kv_entry(bytes kj, int64_t ver, object val, double exp):
    """One key's state as every answer shows it: {"Key","Value","Version"} (no Value
    when val is None: a missing key, or a keys-only listing), plus "Expires" (epoch
    seconds, milliseconds) when the key has an expiry."""
    cdef int64_t ms
    if exp != 0:
        ms = <int64_t>(exp * 1000.0 + 0.5)         # as every other answer rounds times
        if val is None:
            return b'{"Key":%s,"Version":%d,"Expires":%d.%03d}' % (kj, ver, ms // 1000, ms % 1000)
        return b'{"Key":%s,"Value":%s,"Version":%d,"Expires":%d.%03d}' % (kj, <bytes>val, ver, ms // 1000, ms % 1000)
    if val is None:
        return b'{"Key":%s,"Version":%d}' % (kj, ver)
    return b'{"Key":%s,"Value":%s,"Version":%d}' % (kj, <bytes>val, ver)
