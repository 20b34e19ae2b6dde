# Errors: the error answers of API.md, in one place. ApiError carries a status, Code,
# Message and optional details and headers; every error whose words never change is a
# Fixed, built here once with its JSON body and its closing frame, so every place that
# gives that answer gives it the same way. Messages that quote a limit take it from
# where the limit is defined (consts.pxi, or the Limits of the server at hand).


class ApiError(Exception):
    """An API.md error: status, Code, Message and optional detail fields."""

    def __init__(self, int status, str code, str message, dict details=None, bytes headers=None,
                 bytes body=None):
        Exception.__init__(self, message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers
        self._body = body

    def body(self):
        cdef dict d
        if self._body is None:
            d = {"Code": self.code, "Message": self.message}
            if self.details:
                d.update(self.details)
            self._body = _error_json(d)
        return self._body


cdef bytes _error_json(dict d):
    # "replace": a message or detail may quote client input (a field name, a key),
    # which can hold a lone surrogate (from a "\ud800" escape) that UTF-8 cannot
    # encode; it becomes "?" rather than turning the error into a 500
    return (<str>_ujson_dumps(d, ensure_ascii=False, escape_forward_slashes=False)).encode("utf-8", "replace")


cdef bytes error_body(str code, str message):
    return _error_json({"Code": code, "Message": message})


cdef bytes error_response(object err, bint close, bint head):
    return frame(err.status, err.body(), close, head, False, err.headers)


cdef class Fixed:
    def __cinit__(self, int status, str code, str message, bytes headers=None):
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.body = error_body(code, message)
        self.closing_frame = frame(status, self.body, True, False, False, headers)

    cdef object error(self):
        # a new exception each time: a raised instance keeps its traceback, and one
        # raised again and again would grow it without end
        return ApiError(self.status, self.code, self.message, None, self.headers, self.body)


cdef bytes RETRY_1 = b"Retry-After: 1\r\n"
cdef str STORAGE_FULL_MSG = "the data store reached its configured maximum size"

# routing and HTTP
cdef Fixed E_NO_ROUTE = Fixed(404, "not_found", "no such route")
cdef Fixed E_BAD_ACCOUNT = Fixed(400, "bad_account", "account must be 1..%d of A-Z a-z 0-9 . _ -" % MAX_ACCOUNT_LEN)
cdef Fixed E_KEY_NOT_UTF8 = Fixed(400, "bad_key", "key is not valid UTF-8")
cdef Fixed E_UPGRADE = Fixed(400, "bad_request", "protocol upgrade is not supported")
cdef Fixed E_HTTP_VERSION = Fixed(505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served")
cdef Fixed E_HEADERS_TOO_LARGE = Fixed(431, "headers_too_large", "request line and headers over the limit")
cdef Fixed E_BAD_EXPECT = Fixed(417, "expectation_failed", "only Expect: 100-continue is supported")
cdef Fixed E_HEADER_TIMEOUT = Fixed(408, "request_timeout", "request headers not received in time")
cdef Fixed E_BODY_TIMEOUT = Fixed(408, "request_timeout", "request body not received in time")
cdef Fixed E_TOO_MANY_CONNECTIONS = Fixed(429, "too_many", "connection limit reached", RETRY_1)
# request bodies
cdef Fixed E_NOT_OBJECT = Fixed(400, "bad_request", "request body must be a JSON object")
cdef Fixed E_JSON_DEPTH = Fixed(400, "bad_request", "JSON nested deeper than %d levels" % MAX_JSON_DEPTH)
cdef Fixed E_JSON_CONTROL = Fixed(400, "bad_request", "invalid JSON: control character in a string")
cdef Fixed E_JSON_NUMBER = Fixed(400, "bad_request", "invalid JSON: a number with a leading zero, a lone minus or a point without digits")
cdef Fixed E_NO_OPERATION = Fixed(400, "bad_request", "the request has no operation")
# state
cdef Fixed E_NO_KEY = Fixed(404, "not_found", "no such key")
cdef Fixed E_NOT_LOCK_HOLDER = Fixed(409, "not_lock_holder", "that handle does not hold the lock (expired or never held)")
cdef Fixed E_TOO_MANY_WAITERS = Fixed(429, "too_many", "too many waiters", RETRY_1)
cdef Fixed E_TOO_MANY_WATCHERS = Fixed(429, "too_many", "too many watchers", RETRY_1)
cdef Fixed E_STORAGE_FULL = Fixed(507, "storage_full", STORAGE_FULL_MSG)
cdef Fixed E_NOT_READY_FULL = Fixed(503, "storage_full", STORAGE_FULL_MSG)       # /ready
cdef Fixed E_SHUTTING_DOWN = Fixed(503, "shutting_down", "the server is shutting down")
# an account frozen for `cdragon shard move`: its writes wait for the new instance
cdef Fixed E_MOVING = Fixed(503, "moving", "this account is moving to another instance: retry in a second", RETRY_1)


cdef object commit_failed(str why):
    """What every answer that waited on a failed commit gets (and every lock waiter
    answered because of it): the same cause, the same answer."""
    return ApiError(500, "internal", "the commit failed: " + why)


cdef Fixed body_too_large(Py_ssize_t limit):
    return Fixed(413, "too_large", "body over the limit of %d bytes" % limit)
