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

    cdef int on_time(self, double now) except -1:
        return 0


cdef class Deadlines:

    def __cinit__(self, loop):
        self.loop = loop
        self.heap = []
        self.n = 0
        self.handle = None
        self.armed_at = 0
        self.live = 0

    cdef int set(self, Timed t, double when) except -1:
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
        return 0

    cdef void clear(self, Timed t) noexcept:
        if t.dl_when != 0:
            t.dl_when = 0
            self.live -= 1

    cdef int _compact(self) except -1:
        self.heap = [e for e in self.heap if (<Timed>e[2]).dl_when == <double>e[0]]
        heapify(self.heap)
        return 0

    cdef int _arm(self, double when) except -1:
        if self.handle is not None:
            self.handle.cancel()
        self.armed_at = when
        self.handle = self.loop.call_later(max(0.0, when - mono_now()), self._fire)
        return 0

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
            try:
                t.on_time(now)
            except Exception:
                # one failing entry must not leave the others (and the timer) dead
                log.exception("deadline handler failed")
        # drop stale entries at the top so the timer is armed for a live one
        while heap and (<Timed>heap[0][2]).dl_when != <double>heap[0][0]:
            _heappop(heap)
        if heap:
            self._arm(heap[0][0])

    def __len__(self):
        return self.live
