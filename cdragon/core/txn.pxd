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
    cdef double exp       # KVSet: the expiry its TTL gives (0: none); KVGet: the key's


cdef class RangeOp:
    """One KVList or KVDelete entry: a prefix of the account's keys, and its result."""
    cdef bytes prefix     # record-key prefix: account \0 prefix
    cdef bytes pj         # the prefix as a JSON string literal, for answers
    cdef bytes start      # the first record key to read (just past After)
    cdef Py_ssize_t limit
    cdef bint keys_only
    cdef bytes body       # KVList: its KV entries as JSON, comma-separated
    cdef bint more        # KVList: keys after the last one shown
    cdef list keys        # KVDelete: the record keys it deletes


cdef class Txn:
    cdef bytes acc
    cdef list idem        # full keys of idempotency ids (deduplicated)
    cdef list idem_s      # the ids as sent, for the duplicate_request details
    cdef list kvset, kvget, atomic, seqs
    cdef list kvlist, kvdel   # RangeOps
    cdef object lock_id   # lock name bytes or None
    cdef double lock_dur, lock_wait
    cdef object unlock_id
    cdef int64_t unlock
    cdef int nops
    cdef dict seq_last    # while running: sequence key -> last value it hands out
    cdef bint kv_writes   # while running: some KVSet or KVDelete entry writes
    cdef int64_t rev      # the account revision the answer shows (0: none)
    cdef list qpush, qack # QPushOp / QAckOp (queues.pyx), or None
    cdef bytes qbody      # after running: the answer's "QPush" / "QAck" part, or None
    cdef list rl          # RateOps (ratelimit.pyx), or None

    cdef int adds_data(self) except -1
