# Auth: tokens and protected mode (auth.pyx).

cdef class Token:
    cdef readonly str name
    cdef int access             # ACC_*
    cdef bint all_accounts
    cdef frozenset exact        # account names (bytes)
    cdef tuple prefixes         # account-name prefixes (bytes), from "prefix-*"

    cdef bint covers(self, bytes acc) noexcept


cdef class Auth:
    cdef dict by_hash           # SHA-256 digest (32 bytes) -> Token
    cdef bint tokens_on         # at least one token: every client needs one
    cdef bint protected         # no token and protected_mode: loopback clients only
    cdef bint active            # either of the two: the check runs at all
    cdef readonly dict failures # reason -> failed authentications
    cdef dict last_log          # client address -> when its last failure was logged

    cdef int check(self, Conn c) except -1
    cdef int _fail(self, Conn c, str reason, object err) except -1
