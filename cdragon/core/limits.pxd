# Limits: every user setting the request path reads, copied once from Config (where
# each default is defined) into C fields by fill_limits (server.pyx).
cdef struct Limits:
    # request size
    Py_ssize_t max_body_bytes, max_value_bytes, max_header_bytes, max_ops, max_seq_count
    Py_ssize_t max_prefix_delete, max_import_bytes
    double max_ttl
    # connections
    Py_ssize_t max_pipeline, max_connections
    # locks and watches
    Py_ssize_t max_waiters_per_key, max_waiters, max_watchers_per_key, max_watchers
    double max_lock_dur, max_lock_wait, default_lock_dur
    double max_watch_timeout, default_watch_timeout
    # time
    double header_timeout, body_timeout, idle_timeout, checkpoint_interval
    double idempotency_ttl, delete_retention
