# cdragon._core's declarations (uvloop's layout): every class of the request path with
# its attributes and cdef signatures, one .pxd per concern under core/, so that each
# table's interface is a short read. Exceptions are explicit: `except -1` where a
# function can raise, `noexcept` where it cannot.
cimport cython
from libc.stdint cimport int64_t, uint64_t, uint32_t

cdef class Server
cdef class Store
cdef class Batch
cdef class Conn
cdef class Slot
cdef class Request
cdef class Route
cdef class Txn
cdef class Op
cdef class LockTable
cdef class Lock
cdef class Waiter
cdef class Deadlines
cdef class Timed
cdef class WatchHub
cdef class Fixed
cdef class Expiry
cdef class Token
cdef class Auth
cdef class AdminReply
cdef class RangeReader
cdef class Lister
cdef class Stats
cdef class Queue
cdef class QGroup
cdef class Flight
cdef class Receiver
cdef class QPushOp
cdef class QAckOp
cdef class QueueTable
cdef class ImportPlan
cdef class RateOp

include "core/consts.pxi"
include "core/limits.pxd"
include "core/errors.pxd"
include "core/store.pxd"
include "core/deadlines.pxd"
include "core/http.pxd"
include "core/routes.pxd"
include "core/txn.pxd"
include "core/locks.pxd"
include "core/watch.pxd"
include "core/queues.pxd"
include "core/ratelimit.pxd"
include "core/expiry.pxd"
include "core/auth.pxd"
include "core/lister.pxd"
include "core/stats.pxd"
include "core/admin.pxd"
include "core/importer.pxd"
include "core/server.pxd"
