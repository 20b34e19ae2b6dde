# Queues: durable work queues and scheduled tasks (queues.pyx).
from libc.stdint cimport uint32_t, uint64_t, int32_t, uint16_t

cdef struct QEnt:
    double due          # wall-clock epoch seconds from which it may be delivered
    int64_t id          # message id (server-wide, only grows): ties go in push order


cdef class Queue(Timed):
    """One queue of one account: the ready index (a binary heap of QEnt in one C array,
    16 bytes a message), its deliveries in flight, its groups and its waiting
    receivers. Its own deadline (Timed) is the due time of its first scheduled message,
    set only while receivers wait."""
    cdef QueueTable table
    cdef bytes acc, name
    cdef bytes head             # record-key prefix: account \0 queue \0
    cdef bytes nj               # the name as a JSON string literal
    cdef QEnt* h
    cdef Py_ssize_t n, cap
    cdef dict flights           # id -> Flight
    cdef dict groups            # group bytes -> QGroup
    cdef Py_ssize_t held        # messages waiting behind an earlier one of their group
    cdef object waiters         # deque of Receiver, or None
    cdef Py_ssize_t nwait       # live receivers in it
    cdef int64_t seq            # the batch holding its last change

    cdef int hpush(self, double due, int64_t id) except -1
    cdef QEnt hpop(self) noexcept
    cdef bint hremove(self, int64_t id) noexcept
    cdef void _up(self, Py_ssize_t i) noexcept
    cdef void _down(self, Py_ssize_t i) noexcept
    cdef void heapify(self) noexcept
    cdef int on_time(self, double now) except -1


cdef class QGroup:
    cdef object pending         # deque of (due, id) behind `out`, in push order
    cdef int64_t out            # the group's message in the heap or in flight (0: none)


cdef class Flight(Timed):
    """One delivery in flight: its deadline is the end of its visibility."""
    cdef Queue q
    cdef int64_t id
    cdef int64_t attempts       # deliveries so far, this one included
    cdef uint32_t tag           # the receipt's check part
    cdef double till            # wall clock (what clients see)
    cdef object group           # bytes or None


cdef class Receiver(Timed):
    """A POST /queue request parked until a message is due or its Wait ends."""
    cdef Queue q
    cdef Conn conn
    cdef Slot slot
    cdef int max
    cdef double vis
    cdef bint live


cdef class QPushOp:
    cdef bytes head, qj         # the queue's record-key prefix and JSON name
    cdef bytes body             # compact JSON
    cdef double delay, at       # at < 0: none
    cdef object group, dedup    # bytes or None
    cdef int64_t max_attempts   # -1: queue_max_attempts
    cdef int64_t res_id
    cdef bint dup


cdef class QAckOp:
    cdef bytes head, qj
    cdef int64_t id, attempts
    cdef uint32_t tag


cdef class QueueTable:
    cdef Server srv
    cdef Deadlines dl
    cdef dict queues            # head -> Queue
    cdef readonly int64_t hw    # highest message id ever issued
    cdef object dedup_exp       # deque of (expiry, overlay key) of dedup records
    cdef readonly Py_ssize_t nwaiters
    cdef object rng
    cdef uint64_t rs            # _tag's xorshift state
    cdef double dedup_window, max_delay
    cdef int64_t max_attempts
    cdef readonly bint wrote    # the last apply() wrote something (not only duplicates)

    cdef int load(self) except -1
    cdef int import_records(self, list msgs, list dedups, set accs_replaced, set keep) except -1
    cdef int reload(self, object err) except -1
    cdef int shutdown(self) except -1
    cdef int moving(self, bytes acc) except -1
    cdef int sweep(self) except -1
    # POST /db
    cdef int check_acks(self, Txn t) except -1
    cdef bytes apply(self, Txn t)
    cdef Queue _ack(self, Flight f)
    cdef int _push(self, Queue q, QPushOp p, double nw) except -1
    cdef int _push_params(self, QPushOp op, dict params) except -1
    # routes
    cdef int receive(self, Request r) except -1
    cdef int rest_stats(self, Request r) except -1
    cdef int rest_push(self, Request r) except -1
    cdef int rest_delete(self, Request r) except -1
    cdef int rest_extend(self, Request r) except -1
    # deadlines and connections
    cdef int leave(self, Receiver w) except -1
    cdef int wait_expired(self, Receiver w) except -1
    cdef int visibility_ended(self, Flight f) except -1
    cdef int serve(self, Queue q) except -1
    # inside
    cdef Queue _get(self, bytes acc, bytes name)
    cdef Queue _by_head(self, bytes head)
    cdef uint32_t _tag(self) noexcept
    cdef int _forget_if_idle(self, Queue q) except -1
    cdef int _changed(self, Queue q) except -1
    cdef void _saw(self, Queue q) noexcept
    cdef int _index_new(self, Queue q, double due, int64_t id, object group) except -1
    cdef int _group_done(self, Queue q, object group, int64_t id) except -1
    cdef bytes _deliver(self, Queue q, int64_t id, double vis, double nw, double nm)
    cdef int _take(self, Queue q, int max, double vis, list out) except -1
    cdef int _arm(self, Queue q) except -1
    cdef Flight _flight_of(self, bytes head, int64_t id, int64_t attempts, uint32_t tag)
    cdef int _end_delivery(self, Flight f, double nw) except -1
    cdef int _to_dead(self, Queue q, int64_t id, bytes raw, double nw) except -1
    cdef int _answer_waiters(self, object err, bytes acc=*) except -1
    cdef int _cancel(self, Request r, bytes name, int64_t id) except -1
    cdef int _unpark(self, Receiver w) except -1
    cdef int _no_waiters(self, Queue q) except -1
    cdef QGroup _group(self, Queue q, object group)
    cdef int _index_record(self, Queue q, int64_t id, bytes raw, double nw, double nm, dict keep) except -1
    cdef list _stored_keys(self, bytes head, bytes tag)
    cdef int _rebuild(self, Queue q) except -1
