# Routes: the route table and the request a handler answers (routes.pyx).

# A handler answers one (route, method): it replies (or parks the request) and returns
# 1 if it wrote to the open batch, 0 if not; it raises ApiError to answer an error.
ctypedef int (*Handler)(Server srv, Request r) except -1


cdef class Route:
    """One route family: its handler per method, and the rules the router applies
    before calling it."""
    cdef readonly str template            # "/db/{acc}/kv/{key}": what logs and metrics name
    cdef readonly int index               # its slot in Stats' counters (0: no route)
    cdef Handler handlers[N_METHODS]      # NULL: method not allowed (HEAD: GET's handler)
    cdef bint writes[N_METHODS]           # the method changes state (token access: write)
    cdef bint in_shutdown[N_METHODS]      # still served once shutdown began
    cdef list accepts                     # per method: frozenset of the query parameters it takes
    cdef int guard                        # G_*: who may use it (Auth)
    cdef bytes allow                      # the 405's Allow header line
    cdef str allow_message                # the 405's message


cdef class Request:
    """What a handler needs to know about the request it answers."""
    cdef Conn conn
    cdef Route route
    cdef int method         # M_*
    cdef bytes acc
    cdef bytes key          # resource key (percent-decoded), or None
    cdef bytes query        # raw query string, or None
    cdef bytes body
    cdef bint head
    cdef dict _params       # query parameters (checked against the route's)
    cdef bint moving        # the account is frozen for a move: the body may only read

    cdef dict params(self)
