# Txn: a POST /db/{acc} transaction and its operations (txn.pyx).

cdef class Op:
    """One KVSet / KVGet / Atomic / Seq entry and, after running, its result."""
    cdef bytes k          # full record key: account \0 key
    cdef bytes kj         # the key as a JSON string literal, for responses
    cdef object val       # KVSet: compact JSON bytes, None = delete; KVGet: value read
    cdef int64_t n        # KVSet: expected version; Atomic: Add/Set operand; Seq: Count
    cdef int64_t ifeq
    cdef bint has_ver, is_set, has_ifeq
    cdef int64_t res      # KVSet/KVGet: version; Atomic: value; Seq: first value
    cdef bint writes      # KVSet delete of an existing key / set: does it write


cdef class Txn:
    cdef bytes acc
    cdef list idem        # full keys of idempotency ids (deduplicated)
    cdef list idem_s      # the ids as sent, for the duplicate_request details
    cdef list kvset, kvget, atomic, seqs
    cdef object lock_id   # lock name bytes or None
    cdef double lock_dur, lock_wait
    cdef object unlock_id
    cdef int64_t unlock
    cdef int nops
    cdef dict seq_last    # while running: sequence key -> last value it hands out
    cdef bint kv_writes   # while running: some KVSet entry writes

    cdef int adds_data(self) except -1
