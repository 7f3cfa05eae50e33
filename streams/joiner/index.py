"""A time-ordered index of deadlines: O(1) per entry when deadlines arrive mostly in order.

Entries are ``(deadline, key)`` pairs. A push whose deadline is not below the newest in-order
one (the common case: windows open in roughly timestamp order) is appended to a deque; the
few that arrive out of order go to a heap. Keys do not affect that choice: the candidates of
one request share a deadline and their prediction_ids (UUIDs) come in no particular order.
When the earliest deadline is due, its whole group is gathered from both places and sorted by
key, so entries leave in exact ``(deadline, key)`` order: the same order a restored index
(sorted from the state records) gives, which keeps the joiner's output identical after a
restore.

Deletion is lazy: the owner does not remove an entry when its record changes; it checks, when
the entry comes out, that the record still has that deadline, and skips it otherwise.

Example:
    >>> index = TimeIndex()
    >>> for deadline, key in [(5, "b"), (9, "a"), (5, "a"), (2, "c")]:
    ...     index.push(deadline, key)
    >>> index.pop_before(6), index.pop_before(6), index.pop_before(6), index.pop_before(6)
    ((2, 'c'), (5, 'a'), (5, 'b'), None)
    >>> index.pop(), len(index)
    ((9, 'a'), 0)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from heapq import heappop, heappush

Entry = tuple[int, str]


class TimeIndex:
    """Deadline-ordered entries with O(1) in-order pushes and pops (heap for stragglers).

    The counters ``pushes``, ``heap_pushes``, ``pops`` and ``peeks`` let tests check the cost
    model (every look at the index is counted) without timing anything.
    """

    __slots__ = ("_run", "_heap", "_ready", "pushes", "heap_pushes", "pops", "peeks")

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        # Restore sorts once: a fully ordered run and an empty heap.
        self._run: deque[Entry] = deque(sorted(entries))
        self._heap: list[Entry] = []
        self._ready: deque[Entry] = deque()  # the due group being served, sorted by key
        self.pushes = 0
        self.heap_pushes = 0
        self.pops = 0
        self.peeks = 0

    def __len__(self) -> int:
        return len(self._run) + len(self._heap) + len(self._ready)

    def push(self, deadline: int, key: str) -> None:
        """Add an entry; O(1) unless its deadline precedes the newest in-order one."""
        self.pushes += 1
        ready = self._ready
        if ready and deadline <= ready[-1][0]:
            # Only after a partial eviction left a group half served; rare, so just re-sort.
            self._ready = deque(sorted((*ready, (deadline, key))))
            return
        run = self._run
        if not run or deadline >= run[-1][0]:
            run.append((deadline, key))
        else:
            self.heap_pushes += 1
            heappush(self._heap, (deadline, key))

    def pop_before(self, limit: int) -> Entry | None:
        """Remove and return the first entry if its deadline is below ``limit``, else None."""
        self.peeks += 1
        ready = self._ready
        if ready:
            if ready[0][0] >= limit:
                return None
        else:
            deadline = self._head_deadline()
            if deadline is None or deadline >= limit:
                return None
            self._gather(deadline)
        self.pops += 1
        return self._ready.popleft()

    def pop(self) -> Entry | None:
        """Remove and return the first entry whatever its deadline; None when empty."""
        self.peeks += 1
        if not self._ready:
            deadline = self._head_deadline()
            if deadline is None:
                return None
            self._gather(deadline)
        self.pops += 1
        return self._ready.popleft()

    def _head_deadline(self) -> int | None:
        run, heap = self._run, self._heap
        if run and (not heap or run[0][0] <= heap[0][0]):
            return run[0][0]
        return heap[0][0] if heap else None

    def _gather(self, deadline: int) -> None:
        """Move every entry with ``deadline`` to the ready queue, sorted by key."""
        run, heap = self._run, self._heap
        group = []
        while run and run[0][0] == deadline:
            group.append(run.popleft())
        while heap and heap[0][0] == deadline:
            group.append(heappop(heap))
        group.sort()
        self._ready.extend(group)
