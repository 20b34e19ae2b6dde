# Errors: the API.md error answers (errors.pyx).

cdef class Fixed:
    """An error whose words never change, built once: raise it with `raise F.error()`."""
    cdef readonly int status
    cdef readonly str code, message
    cdef readonly bytes body           # the JSON body
    cdef readonly bytes headers        # extra header lines (CRLF-terminated) or None
    cdef readonly bytes closing_frame  # the whole response, with Connection: close
    cdef object error(self)
