"""Where work goes: which workers can run a step, and which of them is its home.

A worker can run a step when it has a handler for it, offers every tag the step needs and
runs the workflow definition the task's order is pinned to. Tasks wait in lanes, one per
(step, definition key); the workers on the ring able to run each lane are remembered until
the ring changes
(`join`, `leave`). A ready task's home is the ring's choice among them by bounded load,
weighted by slots: what a worker holds plus what already waits for it. The core owns the
records this reads (its workers and its ready queue) and decides what to do with a home;
pure, no time involved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .config import ClusterConfig
from .dispatch import ReadyQueues
from .model import WorkerRecord
from .ring import HashRing

# Where a ready task waits: its step and the key of the definition its order is pinned to.
Lane = tuple[str, str]


class Placement:
    """The ring with the workers' capabilities: homes for ready tasks."""

    def __init__(self, ring: HashRing, workers: Mapping[str, WorkerRecord],
                 queue: ReadyQueues, config: ClusterConfig):
        self.ring = ring
        self._workers = workers
        self._queue = queue
        self._config = config
        # lane (step, definition) -> ring members able to run it
        self._capable: dict[Lane, frozenset[str]] = {}
        # worker id -> (its record, `can_run` for it remembered per lane): what a worker can
        # run never changes while its record stands, and dispatch asks at every step.
        self._can_run_of: dict[str, tuple[WorkerRecord, Callable[[Lane], bool]]] = {}

    def join(self, worker_id: str, weight: float) -> None:
        """A worker takes work: its share of the ring follows `weight` (its slots)."""
        self.ring.add(worker_id, weight=weight)
        self._capable.clear()

    def leave(self, worker_id: str) -> None:
        """A worker takes no more work (it died or drains)."""
        self.ring.remove(worker_id)
        self._capable.clear()
        self._can_run_of.pop(worker_id, None)  # not kept for the ids of workers gone

    def can_run(self, worker: WorkerRecord, lane: Lane) -> bool:
        """Whether `worker` has a handler for the lane's step, offers every tag it needs and
        runs the lane's workflow definition."""
        step, definition = lane
        if worker.steps is not None and step not in worker.steps:
            return False
        if worker.definitions is not None and definition not in worker.definitions:
            return False
        return self._config.policy(step).tags <= worker.tags

    def capable_of(self, lane: Lane) -> frozenset[str]:
        """Workers on the ring that can run `lane` (cached until the ring changes)."""
        capable = self._capable.get(lane)
        if capable is None:
            workers = self._workers
            capable = self._capable[lane] = frozenset(
                w for w in self.ring.members if self.can_run(workers[w], lane)
            )
        return capable

    def offered(self, definition: str) -> bool:
        """Whether a worker on the ring runs the workflow definition `definition`."""
        workers = self._workers
        return any(workers[w].definitions is None or definition in workers[w].definitions
                   for w in self.ring.members)

    def load_of(self, worker_id: str) -> int:
        """What a worker holds plus what waits in line for it."""
        return len(self._workers[worker_id].tasks) + self._queue.home_load(worker_id)

    def home(self, order_id: str, lane: Lane, held: int) -> str:
        """The ring's choice for an order's step among the workers that can run it, by
        bounded load weighted by slots, of a total of `held` tasks on workers plus those
        waiting in line; "" while none can."""
        ring = self.ring
        if not ring:
            return ""
        capable = self.capable_of(lane)
        total = held + len(self._queue)
        epsilon = self._config.load_epsilon
        if len(capable) == len(ring):  # the usual case: everyone can
            return ring.place(order_id, self.load_of, epsilon, total)
        home = ring.place(order_id, self.load_of, epsilon, total, eligible=capable.__contains__)
        return home or ""

    def can_run_cache(self, worker: WorkerRecord) -> Callable[[Lane], bool]:
        """`can_run` for one worker, remembered per lane for as long as its record stands
        (a worker that joins again has a new one)."""
        cached = self._can_run_of.get(worker.id)
        if cached is not None and cached[0] is worker:
            return cached[1]
        known: dict[Lane, bool] = {}

        def can_run(lane: Lane) -> bool:
            answer = known.get(lane)
            if answer is None:
                answer = known[lane] = self.can_run(worker, lane)
            return answer

        self._can_run_of[worker.id] = (worker, can_run)
        return can_run
