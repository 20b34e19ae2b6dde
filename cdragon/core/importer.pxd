# Importer: a validated NDJSON dump, staged into the open batch (importer.pyx).

cdef class ImportPlan:
    """Every record of a dump, checked and decoded; expired ones already left out."""
    cdef list kv               # (account, record key, JSON bytes, version, expires or 0)
    cdef list ctr, sq          # (record key, value)
    cdef list lk               # (record key, handle, till, owner or None)
    cdef list idem             # (record key, expires)
    cdef list rl               # (record key, TAT in epoch ns): rate-limit states
    cdef dict revs             # account -> the revision it must reach at least
    cdef set kv_keys, ctr_keys, sq_keys, lk_keys, idem_keys
    cdef list qm, qd           # queue messages and DedupIDs (queues.pyx import_records)
    cdef set qm_keys           # the messages' overlay keys
    cdef set rl_keys
    cdef readonly Py_ssize_t records
    cdef int64_t top_handle    # the highest handle named, expired locks included
    cdef bytes top_handle_key  # a lock key to carry the handle high-water mark
