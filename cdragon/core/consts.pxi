# Limits and tunables that are not user settings (user settings live in Config).
cdef enum:
    MAX_JSON_DEPTH = 512          # API.md: deeper nesting is 400 bad_request
    MAX_KEY_BYTES = 256           # API.md: keys are 1..256 UTF-8 bytes
    MAX_ACCOUNT_LEN = 64
    BATCH_KEY_OVERHEAD = 12288    # pessimistic LMDB pages dirtied per new key (3 pages)
    SWEEP_INTERVAL_MS = 250       # connection deadline sweep period
    STORAGE_HEADROOM = 1048576    # bytes kept free below max_storage_bytes for deletes

# time deadline kinds of a connection
cdef enum:
    DL_NONE = 0
    DL_IDLE = 1
    DL_HEADERS = 2
    DL_BODY = 3
