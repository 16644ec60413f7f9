"""The ready queue: which ready task a worker with a free slot takes next.

Ready tasks wait here, in the scheduler, not in workers' queues: a worker holds only what it
has slots for (plus a small prefetch), so a slow worker keeps little, and an idle one takes
work that would otherwise wait behind a busy one (work stealing, as in Dask).

Order of preference, from the issue of finishing orders soon:
1. class: later steps of orders already started before first steps of new orders, then a
   higher order `priority` first;
2. within a class, a worker takes from its own home queue (the ring's home of the order,
   so an order's steps prefer one worker) and steals from the longest other home queue only
   when its own has nothing of that class;
3. within one home queue, the oldest order first, then its earlier step.

Entries are invalidated lazily: each push gets a ticket and the engine ignores a popped
entry whose task has moved on since (cancelled, re-queued).
"""

from __future__ import annotations

import heapq
from bisect import insort
from dataclasses import dataclass, field

# (started: 0 = the order already started, 1 = a new order's first step, -priority)
RankClass = tuple[int, int]
# (order number, step index, ticket, task id)
Entry = tuple[int, int, int, str]


@dataclass
class _Class:
    homes: dict[str, list[Entry]] = field(default_factory=dict)
    size: int = 0


class ReadyQueue:
    def __init__(self) -> None:
        self._classes: dict[RankClass, _Class] = {}
        self._order: list[RankClass] = []  # the classes present, best first
        self._home_size: dict[str, int] = {}
        self._size = 0
        self._tickets = 0

    def __len__(self) -> int:
        return self._size

    def home_load(self, home: str) -> int:
        """Ready tasks whose home is `home` (their placement preference)."""
        return self._home_size.get(home, 0)

    def push(
        self, task_id: str, home: str, started: bool, priority: int, number: int, step: int
    ) -> int:
        """Queue a task; returns its ticket (the engine keeps it to recognise this entry)."""
        self._tickets += 1
        rank: RankClass = (0 if started else 1, -priority)
        cls = self._classes.get(rank)
        if cls is None:
            cls = self._classes[rank] = _Class()
            insort(self._order, rank)
        heap = cls.homes.get(home)
        if heap is None:
            heap = cls.homes[home] = []
        heapq.heappush(heap, (number, step, self._tickets, task_id))
        cls.size += 1
        self._home_size[home] = self._home_size.get(home, 0) + 1
        self._size += 1
        return self._tickets

    def pop_own(self, worker_id: str) -> tuple[str, int, str] | None:
        """The best entry queued under `worker_id`'s own home, if the best class waiting
        anywhere has one there: (task id, ticket, home)."""
        if not self._order:
            return None
        rank = self._order[0]
        cls = self._classes[rank]
        return self._pop(rank, cls, worker_id) if worker_id in cls.homes else None

    def pop_for(self, worker_id: str) -> tuple[str, int, str] | None:
        """The best entry for `worker_id`, stolen from the longest other home when its own
        has nothing of the best class: (task id, ticket, home)."""
        if not self._order:
            return None
        rank = self._order[0]
        cls = self._classes[rank]
        home = worker_id if worker_id in cls.homes else self._longest(cls)
        return self._pop(rank, cls, home)

    def take_home(self, home: str) -> list[str]:
        """Remove and return every task queued under `home` (its worker left the ring)."""
        taken: list[str] = []
        for rank in list(self._order):
            cls = self._classes[rank]
            heap = cls.homes.pop(home, None)
            if heap is None:
                continue
            taken.extend(entry[3] for entry in sorted(heap))
            cls.size -= len(heap)
            self._size -= len(heap)
            if not cls.homes:
                self._drop(rank)
        self._home_size.pop(home, None)
        return taken

    def homes(self) -> set[str]:
        return {h for cls in self._classes.values() for h in cls.homes}

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _longest(cls: _Class) -> str:
        # Steal from the most loaded home; the name breaks ties, so runs are repeatable.
        return max(cls.homes, key=lambda h: (len(cls.homes[h]), h))

    def _pop(self, rank: RankClass, cls: _Class, home: str) -> tuple[str, int, str]:
        heap = cls.homes[home]
        _, _, ticket, task_id = heapq.heappop(heap)
        if not heap:
            del cls.homes[home]
        cls.size -= 1
        self._size -= 1
        left = self._home_size[home] - 1
        if left:
            self._home_size[home] = left
        else:
            del self._home_size[home]
        if not cls.homes:
            self._drop(rank)
        return task_id, ticket, home

    def _drop(self, rank: RankClass) -> None:
        del self._classes[rank]
        self._order.remove(rank)

    # ------------------------------------------------------------------ for ReadyQueues

    def best_rank(self) -> RankClass | None:
        return self._order[0] if self._order else None

    def own_top(self, worker_id: str, rank: RankClass) -> Entry | None:
        """The first entry under `worker_id`'s home in class `rank`, without taking it."""
        cls = self._classes.get(rank)
        heap = cls.homes.get(worker_id) if cls else None
        return heap[0] if heap else None

    def longest_top(self, rank: RankClass) -> tuple[int, str, Entry] | None:
        """(length, home, first entry) of the longest home in class `rank`."""
        cls = self._classes.get(rank)
        if not cls:
            return None
        home = self._longest(cls)
        return len(cls.homes[home]), home, cls.homes[home][0]

    def pop_from(self, rank: RankClass, home: str) -> tuple[str, int, str]:
        return self._pop(rank, self._classes[rank], home)


class ReadyQueues:
    """One ReadyQueue per lane (a step, and the workflow definition its orders are pinned
    to), so a worker only ever looks at what it can run (its handlers, its capability tags,
    its definitions); the same order of preference across them."""

    def __init__(self) -> None:
        self._by_lane: dict[tuple[str, str], ReadyQueue] = {}
        self._size = 0
        # Entries per home over every lane: placement asks for a worker's load at every
        # step, and a sum over the lanes cost more than the rest of the placement.
        self._home_size: dict[str, int] = {}

    def __len__(self) -> int:
        return self._size

    def lanes(self) -> list[tuple[str, str]]:
        return [lane for lane, queue in self._by_lane.items() if queue]

    def size(self, lane: tuple[str, str]) -> int:
        """Entries queued in `lane` (stale ones included until they are popped)."""
        queue = self._by_lane.get(lane)
        return len(queue) if queue is not None else 0

    def push(
        self, task_id: str, lane: tuple[str, str], home: str, started: bool, priority: int,
        number: int, index: int,
    ) -> int:
        queue = self._by_lane.get(lane)
        if queue is None:
            queue = self._by_lane[lane] = ReadyQueue()
        self._size += 1
        self._home_size[home] = self._home_size.get(home, 0) + 1
        return queue.push(task_id, home, started, priority, number, index)

    def home_load(self, home: str) -> int:
        return self._home_size.get(home, 0)

    def take_home(self, home: str) -> list[str]:
        taken: list[str] = []
        for queue in self._by_lane.values():
            taken.extend(queue.take_home(home))
        self._size -= len(taken)
        self._home_size.pop(home, None)
        return taken

    def pop_own(self, worker_id: str, can_run) -> tuple[str, int, str] | None:
        """The best entry under the worker's own home among the lanes it can run, if the
        best class waiting in those lanes has one there."""
        queues = self._runnable(can_run)
        if not queues:
            return None
        rank = min(q.best_rank() for q in queues)
        best = None
        for queue in queues:
            top = queue.own_top(worker_id, rank)
            if top is not None and (best is None or top < best[0]):
                best = (top, queue)
        if best is None:
            return None
        return self._take(best[1], rank, worker_id)

    def pop_for(self, worker_id: str, can_run) -> tuple[str, int, str] | None:
        """The best entry for the worker among the lanes it can run: its own home's first,
        else stolen from the longest home of the best class."""
        own = self.pop_own(worker_id, can_run)
        if own is not None:
            return own
        queues = self._runnable(can_run)
        if not queues:
            return None
        rank = min(q.best_rank() for q in queues)
        best = None
        for queue in queues:
            found = queue.longest_top(rank)
            if found is None:
                continue
            length, home, top = found
            key = (-length, top)
            if best is None or key < best[0]:
                best = (key, queue, home)
        if best is None:
            return None
        return self._take(best[1], rank, best[2])

    def _runnable(self, can_run) -> list[ReadyQueue]:
        return [q for lane, q in self._by_lane.items() if q and can_run(lane)]

    def _take(self, queue: ReadyQueue, rank: RankClass, home: str) -> tuple[str, int, str]:
        self._size -= 1
        left = self._home_size[home] - 1
        if left:
            self._home_size[home] = left
        else:
            del self._home_size[home]
        return queue.pop_from(rank, home)
