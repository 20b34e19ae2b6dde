# RateLimit: GCRA limiter entries, in POST /db and on /db/{acc}/ratelimit/{key} (ratelimit.pyx).

cdef class RateOp:
    """One limiter check: its parameters in integer nanoseconds and, once evaluated,
    its result. The state is one number per key: the theoretical arrival time (TAT)."""
    cdef bytes k              # record key: account \0 key (LMDB ratelimit database)
    cdef bytes kj             # the key as a JSON string literal, for answers
    cdef int64_t burst, cost
    cdef int64_t t_ns         # emission interval: Per / Rate, whole nanoseconds (>= 1)
    cdef int64_t tau_ns       # burst tolerance: t_ns * Burst (how far TAT may run ahead)
    # results (gcra_eval)
    cdef bint allowed         # the take (Cost) fits; a peek (Cost 0): a take of 1 would
    cdef bint writes          # an allowed take of Cost > 0: new_tat is written
    cdef int64_t new_tat      # the TAT after this take (epoch ns)
    cdef int64_t remaining    # takes of cost 1 allowed after this one
    cdef int64_t reset_ns     # until the full burst is back
    cdef int64_t retry_ns     # refused: until this take would be allowed
