# Deadlines: the one timer structure for lock expiry, lock-wait deadlines and watch
# timeouts (ARCHITECTURE principle 6). A binary heap of (when, n, Timed) on the
# monotonic clock drives a single loop timer armed for the earliest entry. Cancelling
# is lazy: an entry whose object moved its deadline (`dl_when != when`) is skipped, and
# the heap is rebuilt from live entries when stale ones outnumber them.
# (Connection header/body/idle deadlines are coarse and checked by the Server sweep.)

from heapq import heappush, heappop, heapify

cdef object _heappush = heappush
cdef object _heappop = heappop


cdef class Timed:
    """Something with one deadline in the heap."""
    cdef double dl_when        # 0: no deadline

    cdef void on_time(self, double now):
        pass


cdef class Deadlines:
    cdef object loop
    cdef list heap
    cdef int64_t n
    cdef object handle
    cdef double armed_at
    cdef Py_ssize_t live

    def __cinit__(self, loop):
        self.loop = loop
        self.heap = []
        self.n = 0
        self.handle = None
        self.armed_at = 0
        self.live = 0

    cdef void set(self, Timed t, double when):
        """(Re)schedule `t` at monotonic time `when`."""
        if t.dl_when == 0:
            self.live += 1
        t.dl_when = when
        self.n += 1
        _heappush(self.heap, (when, self.n, t))
        if len(self.heap) > 2 * self.live + 1024:
            self._compact()
        if self.handle is None or when < self.armed_at:
            self._arm(when)

    cdef void clear(self, Timed t):
        if t.dl_when != 0:
            t.dl_when = 0
            self.live -= 1

    cdef void _compact(self):
        self.heap = [e for e in self.heap if (<Timed>e[2]).dl_when == <double>e[0]]
        heapify(self.heap)

    cdef void _arm(self, double when):
        if self.handle is not None:
            self.handle.cancel()
        self.armed_at = when
        self.handle = self.loop.call_later(max(0.0, when - mono_now()), self._fire)

    def _fire(self):
        cdef double now = mono_now()
        cdef Timed t
        cdef double when
        self.handle = None
        heap = self.heap
        while heap:
            when = heap[0][0]
            if when > now:
                break
            t = _heappop(heap)[2]
            if t.dl_when != when:
                continue           # cancelled or moved
            t.dl_when = 0
            self.live -= 1
            t.on_time(now)
        # drop stale entries at the top so the timer is armed for a live one
        while heap and (<Timed>heap[0][2]).dl_when != <double>heap[0][0]:
            _heappop(heap)
        if heap:
            self._arm(heap[0][0])

    def __len__(self):
        return self.live


# ---- Python-visible helper for unit tests ----------------------------------------------
cdef class _TestTimed(Timed):
    cdef public list fired
    cdef public str name

    def __init__(self, str name, list fired):
        self.name = name
        self.fired = fired

    cdef void on_time(self, double now):
        self.fired.append(self.name)


def _test_deadlines(loop, list plan):
    """plan: [(name, delay_s or None to cancel)]; returns (Deadlines, fired list)."""
    cdef Deadlines d = Deadlines(loop)
    fired = []
    objs = {}
    for name, delay in plan:
        if name not in objs:
            objs[name] = _TestTimed(name, fired)
        if delay is None:
            d.clear(objs[name])
        else:
            d.set(objs[name], mono_now() + delay)
    return d, fired
