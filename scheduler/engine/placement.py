"""Where work goes: which workers can run a step, and which of them is its home.

A worker can run a step when it has a handler for it, offers every tag the step needs and
runs the workflow definition the task's order is pinned to. Tasks wait in lanes, one per
(step, definition key); the workers on the ring able to run each lane are remembered until
the ring changes
(`join`, `leave`). A ready task's home is the ring's choice among them by bounded load,
weighted by slots: what a worker holds plus what already waits for it. The core owns the
records this reads (its workers and its ready queue) and decides what to do with a home.

Speed (issue 21): a worker measured more than `slow_factor` times slower than the fastest
takes a task only where that does not delay the work: when the faster workers able to run
its lane would still be busy with what waits when it finished this task and the steps
after it (expected finish = the time their queue takes + their duration, against its own
long duration: what it starts late decides when the last order ends). Otherwise its slot
stays idle and the task waits for a faster slot. Workers of alike speeds are untouched:
the ring's home first. Time comes from the callers' `now`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .config import ClusterConfig
from .definitions import Definitions
from .dispatch import ReadyQueues
from .model import WorkerRecord
from .ring import HashRing
from .speeds import WorkerSpeeds

# Where a ready task waits: its step and the key of the definition its order is pinned to.
Lane = tuple[str, str]


class Placement:
    """The ring with the workers' capabilities: homes for ready tasks."""

    def __init__(self, ring: HashRing, workers: Mapping[str, WorkerRecord],
                 queue: ReadyQueues, config: ClusterConfig, definitions: Definitions):
        self.ring = ring
        self._workers = workers
        self._queue = queue
        self._config = config
        self._definitions = definitions
        # lane (step, definition) -> ring members able to run it
        self._capable: dict[Lane, frozenset[str]] = {}
        # worker id -> (its record, `can_run` for it remembered per lane): what a worker can
        # run never changes while its record stands, and dispatch asks at every step.
        self._can_run_of: dict[str, tuple[WorkerRecord, Callable[[Lane], bool]]] = {}
        self.speeds = WorkerSpeeds(config.slow_factor, config.speed_memory)
        # Slow workers that left a lane to faster ones in the current dispatch.
        self.idled: set[str] = set()

    def join(self, worker_id: str, weight: float) -> None:
        """A worker takes work: its share of the ring follows `weight` (its slots)."""
        self.ring.add(worker_id, weight=weight)
        self._capable.clear()
        self._set_tail()

    def leave(self, worker_id: str) -> None:
        """A worker takes no more work (it died or drains)."""
        self.ring.remove(worker_id)
        self._capable.clear()
        self._can_run_of.pop(worker_id, None)  # not kept for the ids of workers gone
        self.speeds.forget(worker_id)
        self._set_tail()

    def _set_tail(self) -> None:
        # The tail begins when no more orders wait to start than a share of the slots.
        workers = self._workers
        self._queue.tail_at = self._config.tail_share * sum(
            workers[member].slots for member in self.ring.members)

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

    def unless_faster(self, worker: WorkerRecord, can_run: Callable[[Lane], bool],
                      work_ahead: int, now: float) -> Callable[[Lane], bool]:
        """`can_run` for a slow worker: false also for a lane whose faster workers would
        finish its task sooner than this one (it is then noted in `idled`)."""
        def runs_here(lane: Lane) -> bool:
            if not can_run(lane):
                return False
            if self._faster_elsewhere(worker.id, lane, work_ahead, now):
                self.idled.add(worker.id)
                return False
            return True

        return runs_here

    def _faster_elsewhere(self, worker_id: str, lane: Lane, work_ahead: int,
                          now: float) -> bool:
        """Whether faster workers able to run `lane` would end `work_ahead` tasks (those
        waiting and those still to come of unfinished orders) before this worker ended
        one of the lane's tasks (at its long duration) and the steps after it. Durations
        in units of the step's average: a worker of factor f takes f, and its slots end
        slots / f tasks each."""
        speeds = self.speeds
        mine = speeds.factor(worker_id, now)
        rate = 0.0
        best = mine
        workers = self._workers
        for other in sorted(self.capable_of(lane)):  # by name: the same answer every run
            theirs = speeds.factor(other, now)
            if not speeds.clearly_faster(mine, theirs):
                continue
            record = workers[other]
            usable = record.slots - len(record.stuck)
            if usable > 0:
                rate += usable / theirs
                best = min(best, theirs)
        if not rate:
            return False  # nobody faster can take it: this worker's slot is the best
        after = self._definitions.steps_after(lane[1], lane[0])
        return speeds.long_factor(worker_id, now) + after * best > work_ahead / rate + best
