# Http: the per-connection protocol (http.pyx).

cdef class Slot:
    """One response position in a connection's pipeline."""
    cdef bytes data        # the framed response; None until ready
    cdef int64_t seq       # batch that must be durable before it may be sent
    cdef bint close        # close the connection after sending
    cdef bint head         # HEAD request: framed without a body
    cdef object owner      # lock waiter / watcher holding this slot, if any
    cdef int route_ix      # parked: 1 + its route's index, for Stats.answered_later (0: none)
    cdef int method
    cdef double t0


cdef class Conn:
    # -- global ------------------------------------------------------------------------
    cdef Server srv
    cdef object transport
    cdef object parser
    # -- per request ---------------------------------------------------------------------
    cdef object url
    cdef bytes method             # the request's method (FM_GET ... from the framer)
    cdef bytes body1              # the body, when it came in one piece (the usual case)
    cdef list body_parts          # more pieces, when it did not
    cdef Py_ssize_t body_len
    cdef Py_ssize_t body_limit    # max_body_bytes, or max_import_bytes for /admin/import
    cdef Fixed too_large          # the 413 for body_limit
    cdef Py_ssize_t hdr_bytes
    cdef Py_ssize_t partial_hdr
    cdef bint in_request, in_headers, began_in_chunk
    cdef bint expect_continue, bad_expect, want_close, http10
    cdef int64_t content_length
    cdef bytes fatal              # a response to send, then close (set before _Abort)
    cdef bytes authz              # the Authorization header, or None
    cdef object denied            # Auth's refusal (an ApiError) to answer instead, or None
    cdef bint read_only           # a read token's POST /db: the body must only read
    cdef Route found              # the route Auth found for this request (the router
    cdef bytes found_acc, found_key   # then does not look again), or None
    # -- per connection ------------------------------------------------------------------
    cdef list q                   # Slots waiting to be sent, in order (short: a list
                                  # with typed appends beats a deque's method calls)
    cdef list out                 # ready bytes collected during one data_received
    cdef bint in_feed
    cdef bint chunk_http11        # this chunk starts with an HTTP/1.1 request line
    cdef bint line_http11         # ... and the current request is that one
    cdef int64_t reg_seq          # highest batch this connection is registered with
    cdef bint closing, closed, eof, read_paused, write_paused
    cdef int loopback             # the client is on this machine: -1 not known yet
    cdef bytes authz_seen         # the Authorization header of the last request ...
    cdef Token token              # ... and its token (None: unknown)
    cdef object streamer          # an AdminReply streaming its answer (told of drains)
    cdef public double deadline
    cdef public int dl_kind

    # answering (handlers, lock table, watch hub)
    cdef int reply(self, int status, bytes body, int64_t seq, bint head, bint text=*) except -1
    cdef int reply_error(self, object err, int64_t seq, bint head) except -1
    cdef int respond(self, bytes data, int64_t seq, bint close, bint head) except -1
    cdef Slot reserve(self, object owner, bint head)
    cdef int fill(self, Slot s, bytes data, int64_t seq) except -1
    cdef int deliver(self, Slot s, bytes data, double now) except -1
    cdef int flush(self) except -1
    cdef int fail_pending(self, int64_t lo, int64_t hi, object err) except -1
    # the server's sweep and shutdown
    cdef int on_deadline(self) except -1
    cdef int shutdown_idle(self) except -1
    cdef int kill(self) noexcept
    cdef bint is_loopback(self) except -1
    cdef object peer(self)
    cdef int _close(self) except -1
    # inside
    cdef int _register(self, int64_t seq) except -1
    cdef int _queue_ready(self, bytes data) except -1
    cdef int _emit(self, bytes data, bint close) except -1
    cdef int _emit_close(self, bytes data) except -1
    cdef int _write_out(self) except -1
    cdef int _fail(self, bytes data) except -1
    cdef int _abort(self, bytes data) except -1
    cdef Py_ssize_t _frame_requests(self, bytes data) except -1
    cdef int _begin(self) except -1
    cdef int _headers_done(self) except -1
    cdef int _complete(self, bytes body, bint keep_alive) except -1
    cdef int _pause_reading(self) except -1
    cdef int _maybe_resume_reading(self) except -1
    cdef void _set_deadline(self, int kind) noexcept
    cdef int _drop_owners(self) except -1
    cdef int _cut_at_dropped(self) except -1
