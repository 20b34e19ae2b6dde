# Limits and tunables that are not user settings (user settings live in Config and
# reach the request path through the Limits struct, core/limits.pxd).
cdef enum:
    MAX_JSON_DEPTH = 512          # API.md: deeper nesting is 400 bad_request
    MAX_KEY_BYTES = 256           # API.md: keys are 1..256 UTF-8 bytes
    MAX_ACCOUNT_LEN = 64          # API.md: accounts are [A-Za-z0-9._-]{1,64}
    LIST_LIMIT_DEFAULT = 1000     # API.md: KVList Limit default ...
    LIST_LIMIT_MAX = 10000        # ... and maximum
    MAX_AFTER_BYTES = 1024        # a listing's After (any string; longer ones are 400)
    LIST_SLICE = 1000             # a longer GET .../kv list is read this many keys a pass
    EXPIRE_SLICE = 2000           # TTL expiries handled per pass (then the loop's turn)
    LMDB_NODE_MAX = 2038          # larger nodes go to overflow pages (4 KB pages)
    PAGE_COPY_BYTES = 12288       # pages a checkpoint may copy per record written (3)
    CHECKPOINT_RECORDS = 100000   # checkpoint once this many records wait for LMDB
    CHECKPOINT_DATA = 268435456   # ... or once they hold this many bytes (256 MiB): bounds
                                  # the values the overlay and a checkpoint's pages hold
    CHECKPOINT_NEW_DATA = 33554432  # ... or once big values (over LMDB_NODE_MAX) of keys
                                  # not yet in the next checkpoint took this many bytes
                                  # (32 MiB; Store.new_data): bounds the pages one
                                  # checkpoint writes at once, which the log's fdatasync
                                  # waits behind on the same disk
    WAL_BY_REF = 2048             # a value this long reaches the log by reference (walbody)
    PURGE_SLICE = 2000            # checkpointed overlay keys dropped per loop pass
                                  # (Server._purge_pass)
    SWEEP_INTERVAL_MS = 250       # connection deadline sweep period
    STORAGE_HEADROOM = 1048576    # bytes kept free below max_storage_bytes for deletes
    SCRATCH_KEEP_BYTES = 1048576  # the answer buffer keeps at most this between answers
    CLOSE_GRACE_MS = 1000         # a connection we closed still open this long is aborted

# time deadline kinds of a connection
cdef enum:
    DL_NONE = 0
    DL_IDLE = 1
    DL_HEADERS = 2
    DL_BODY = 3
    DL_CLOSING = 4                # an error was sent; the peer has this long to take it

# who may use a route (Auth): anyone, a token covering its account, a metrics or an
# admin token
cdef enum:
    G_OPEN = 0
    G_ACCOUNT = 1
    G_METRICS = 2
    G_ADMIN = 3

# request methods, as indexes into a Route's handler table (HEAD is served by GET's)
cdef enum:
    M_GET = 0
    M_HEAD = 1
    M_POST = 2
    M_PUT = 3
    M_DELETE = 4
    N_METHODS = 5
    M_OTHER = 5
