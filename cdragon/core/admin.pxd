# Admin: the /admin/* routes' answers, given later by Python code (admin.pyx).

cdef class AdminReply:
    cdef Conn conn
    cdef Slot slot
    cdef bint head, close, http10
    cdef bint started          # a streamed answer's head is out
    cdef bint done             # answered (or the connection went away)
    cdef public object on_drain    # () -> None: the connection may take more output, or closed
