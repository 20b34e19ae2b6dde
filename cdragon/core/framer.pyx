# Framer: recognises an everyday HTTP/1.x request straight from the read buffer, with C
# pointers and no Python calls, so that Conn (http.pyx) need not pay httptools' parser
# callbacks (a Python call per event) for it. Pure function: it only says where the
# parts of one complete request lie, or declines. It accepts a strict subset that
# httptools (llhttp) parses to the same fields -- tests/test_http_framer.py checks that
# against httptools -- and declines everything else (incomplete, unusual, too large,
# malformed), which Conn then hands to httptools from that request's first byte, so
# every answer and error of the full parser stays as it was.

cdef bytes FM_GET = b"GET"         # the method objects passed on (no allocation per request)
cdef bytes FM_POST = b"POST"
cdef bytes FM_PUT = b"PUT"
cdef bytes FM_DELETE = b"DELETE"
cdef bytes FM_HEAD = b"HEAD"


cdef struct Framed:
    int method                    # 0 GET, 1 POST, 2 PUT, 3 DELETE, 4 HEAD (fm_method)
    Py_ssize_t url0, url1         # the request target: data[url0:url1]
    Py_ssize_t authz0, authz1     # the Authorization value (authz0 < 0: none)
    Py_ssize_t body0, end         # the body: data[body0:end]; the next request starts at end
    int64_t content_length        # -1: no Content-Length header
    Py_ssize_t hdr_bytes          # as Conn.on_url / on_header count them
    bint http10, keep_alive


cdef inline bytes fm_method(int m):
    if m == 0:
        return FM_GET
    if m == 1:
        return FM_POST
    if m == 2:
        return FM_PUT
    if m == 3:
        return FM_DELETE
    return FM_HEAD


# RFC 9110 token characters (header names): 1 for each allowed byte
cdef unsigned char _TOKEN[256]
for _c in range(256):
    _TOKEN[_c] = 1 if (48 <= _c <= 57 or 65 <= _c <= 90 or 97 <= _c <= 122
                       or chr(_c) in "!#$%&'*+-.^_`|~") else 0


cdef inline bint _ieq(const char* a, const char* lower, Py_ssize_t n) noexcept:
    """Case-insensitive equality with a lower-case literal, for header names and
    Connection values (token / visible bytes only, where |0x20 folds just the letters
    onto the literal's characters)."""
    cdef Py_ssize_t i
    for i in range(n):
        if (a[i] | 0x20) != lower[i]:
            return False
    return True


cdef bint span_is_import(const char* u, Py_ssize_t n) noexcept:
    """POST /admin/import takes a bigger body (max_import_bytes) than any other route:
    whether the request target u[:n] is that path (with or without a query)."""
    return n >= 13 and memcmp(u, b"/admin/import", 13) == 0 and (n == 13 or u[13] == b'?')


cdef bint fast_frame(const char* p, Py_ssize_t off, Py_ssize_t n, Py_ssize_t max_header_bytes,
                     Py_ssize_t max_body, Py_ssize_t max_import, Framed* f) noexcept:
    """Frame the request at p[off:n]: True with *f filled in when it is complete in the
    buffer and of the everyday shape (see the top comment); False to leave it to
    httptools. Never reads past p[n-1]."""
    cdef const unsigned char* s = <const unsigned char*>p
    cdef Py_ssize_t i = off, j, name0, nlen, v0, vlen, limit
    cdef unsigned char c
    cdef bint conn_seen = False, conn_close = False, conn_keep = False
    f.content_length = -1
    f.authz0 = f.authz1 = -1
    # request line: METHOD SP /target SP HTTP/1.x CRLF
    if n - i < 16:                    # shorter than "GET / HTTP/1.1\r\n"
        return False
    c = s[i]
    if c == b'G' and memcmp(p + i, b"GET ", 4) == 0:
        f.method = 0; i += 4
    elif c == b'P' and memcmp(p + i, b"POST ", 5) == 0:
        f.method = 1; i += 5
    elif c == b'P' and memcmp(p + i, b"PUT ", 4) == 0:
        f.method = 2; i += 4
    elif c == b'D' and memcmp(p + i, b"DELETE ", 7) == 0:
        f.method = 3; i += 7
    elif c == b'H' and memcmp(p + i, b"HEAD ", 5) == 0:
        f.method = 4; i += 5
    else:
        return False
    if i >= n or s[i] != b'/':
        return False
    f.url0 = i
    while i < n and 0x21 <= s[i] <= 0x7E:
        i += 1
    f.url1 = i
    if n - i < 11 or memcmp(p + i, b" HTTP/1.", 8) != 0 or s[i + 9] != b'\r' or s[i + 10] != b'\n':
        return False
    if s[i + 8] == b'1':
        f.http10 = False
    elif s[i + 8] == b'0':
        f.http10 = True
    else:
        return False
    i += 11
    f.hdr_bytes = f.url1 - f.url0
    if f.hdr_bytes > max_header_bytes:
        return False
    # header lines: token ":" OWS value CRLF, up to the empty line
    while True:
        if i >= n:
            return False
        if s[i] == b'\r':
            if i + 1 >= n or s[i + 1] != b'\n':
                return False
            i += 2
            break
        name0 = i
        while i < n and _TOKEN[s[i]]:
            i += 1
        nlen = i - name0
        if nlen == 0 or i >= n or s[i] != b':':
            return False            # also obs-fold (a line starting with SP/HTAB), bare LF
        i += 1
        while i < n and (s[i] == b' ' or s[i] == b'\t'):
            i += 1
        v0 = i
        while i < n and ((0x20 <= s[i] <= 0x7E) or s[i] == b'\t'):
            i += 1
        if i + 1 >= n or s[i] != b'\r' or s[i + 1] != b'\n':
            return False            # incomplete, or a control byte, obs-text, bare CR/LF
        vlen = i - v0
        if vlen and (s[i - 1] == b' ' or s[i - 1] == b'\t'):
            return False            # httptools keeps trailing whitespace: not ours to judge
        i += 2
        f.hdr_bytes += nlen + vlen + 4
        if f.hdr_bytes > max_header_bytes:
            return False            # httptools answers 431
        if nlen == 14 and _ieq(p + name0, b"content-length", 14):
            if f.content_length >= 0 or vlen < 1 or vlen > 18:
                return False        # a duplicate, empty or absurd length
            f.content_length = 0
            for j in range(v0, v0 + vlen):
                if not (48 <= s[j] <= 57):     # 0-9
                    return False
                f.content_length = f.content_length * 10 + (s[j] - 48)
        elif nlen == 13 and _ieq(p + name0, b"authorization", 13):
            f.authz0 = v0
            f.authz1 = v0 + vlen
        elif nlen == 10 and _ieq(p + name0, b"connection", 10):
            if conn_seen:
                return False
            conn_seen = True
            if vlen == 5 and _ieq(p + v0, b"close", 5):
                conn_close = True
            elif vlen == 10 and _ieq(p + v0, b"keep-alive", 10):
                conn_keep = True
            else:
                return False        # "upgrade", lists: llhttp's token rules decide
        elif ((nlen == 17 and _ieq(p + name0, b"transfer-encoding", 17))
              or (nlen == 7 and _ieq(p + name0, b"upgrade", 7))
              or (nlen == 6 and _ieq(p + name0, b"expect", 6))
              or (nlen == 16 and _ieq(p + name0, b"proxy-connection", 16))):
            return False            # framing or connection semantics llhttp owns
    # body: Content-Length bytes (none without the header: a request has no other framing)
    limit = max_import if span_is_import(p + f.url0, f.url1 - f.url0) else max_body
    if f.content_length > limit:
        return False                # httptools answers 413
    f.body0 = i
    f.end = i + (f.content_length if f.content_length > 0 else 0)
    if f.end > n:
        return False
    f.keep_alive = conn_keep if f.http10 else not conn_close
    return True
