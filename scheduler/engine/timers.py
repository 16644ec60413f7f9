"""Timers: when each waiting task's time comes (a wait's timeout, the end of a step's
delay, an order's `not_before`), in one heap, with no thread of their own.

The core sets a timer when a task starts waiting and the move out of `waiting` clears it;
its `tick(now)` takes the ones that are due. A cleared or replaced timer leaves its heap
entry behind, skipped when it comes up (as the retry heap does), so both are O(log n).
Pure: time is passed in.
"""

from __future__ import annotations

import heapq


class Timers:
    """Due times by task: a dict of the live ones and a heap to find the earliest."""

    def __init__(self) -> None:
        self._due: dict[str, float] = {}  # task id -> when it fires
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._due)

    def set(self, task_id: str, due: float) -> None:
        """`task_id` fires at `due` (replacing a timer it had)."""
        self._due[task_id] = due
        heapq.heappush(self._heap, (due, task_id))

    def when(self, task_id: str) -> float | None:
        """When `task_id`'s timer fires (None: it has none)."""
        return self._due.get(task_id)

    def clear(self, task_id: str) -> None:
        """`task_id` no longer waits for its time."""
        self._due.pop(task_id, None)

    def due(self, now: float, limit: int) -> list[str]:
        """At most `limit` of the tasks whose time has come by `now`, earliest first; their
        timers are gone (the rest stay due, for the next call)."""
        fired: list[str] = []
        heap, live = self._heap, self._due
        while heap and heap[0][0] <= now and len(fired) < limit:
            when, task_id = heapq.heappop(heap)
            if live.get(task_id) == when:
                del live[task_id]
                fired.append(task_id)
        return fired

    def next_due(self) -> float | None:
        """When the earliest live timer fires (stale entries at the top are dropped)."""
        heap, live = self._heap, self._due
        while heap and live.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None
