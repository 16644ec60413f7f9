"""A deterministic driver for the pure core: fake time, worker queues, no threads."""

from __future__ import annotations

from collections import deque

from scheduler.engine import views
from scheduler.engine.config import ClusterConfig
from scheduler.engine.core import SchedulerCore
from scheduler.engine.model import Dispatch, Effects
from scheduler.engine.workflow import DEFAULT_WORKFLOWS, Workflow

ORDER = {"customer": "ada", "items": [{"sku": "A1", "qty": 2, "price": 9.5}]}


class Sim:
    def __init__(self, workers: int = 2, workflows: dict[str, Workflow] | None = None,
                 **settings):
        """`workflows`: more workflows beside the default ones."""
        settings.setdefault("seed", 7)
        self.core = SchedulerCore(ClusterConfig(workers=0, **settings),
                                  {**DEFAULT_WORKFLOWS, **(workflows or {})})
        self.now = 0.0
        self.queues: dict[str, deque[Dispatch]] = {}
        self.events: list[dict] = []
        for i in range(1, workers + 1):
            self.add_worker(f"w{i}")

    # stimuli -------------------------------------------------------------
    def apply(self, fx: Effects) -> Effects:
        self.events.extend(fx.events)
        for d in fx.dispatches:
            self.queues.setdefault(d.worker_id, deque()).append(d)
        self.core.validate()
        return fx

    def add_worker(self, wid: str, **options) -> None:
        """A worker joins (`options`: slots, steps, tags, ...) with a queue of its own."""
        self.queues.setdefault(wid, deque())
        self.apply(self.core.add_worker(wid, now=self.now, **options))

    def submit(self, oid: str, workflow: str = "ecommerce") -> str:
        self.apply(self.core.submit(oid, dict(ORDER), now=self.now, workflow=workflow))
        return oid

    def advance(self, seconds: float, beating: tuple[str, ...] | None = None) -> Effects:
        """Move time on in monitor-sized steps; workers in `beating` (default: all with a
        queue) heartbeat at every step, the others stay silent."""
        step = self.core.config.heartbeat_interval / 2
        target = self.now + seconds
        merged = Effects()
        while True:
            self.now = min(target, self.now + step)
            for wid in self.queues if beating is None else beating:
                self.core.heartbeat(wid, self.now)
            merged.absorb(self.apply(self.core.tick(now=self.now)))
            if self.now >= target:
                return merged

    def start_next(self, wid: str):
        """Take the next live dispatch from a worker's queue and start it: (dispatch, ctx).
        Like a real worker, it starts nothing while all its slots are busy."""
        q = self.queues[wid]
        worker = views.workers(self.core).get(wid)
        if worker is not None and len(worker.running) + len(worker.stuck) >= worker.slots:
            return None, None
        while q:
            d = q.popleft()
            fx, ctx = self.core.start_task(d.task_id, wid, d.lease, now=self.now)
            self.apply(fx)
            if ctx is not None:
                return d, ctx
        return None, None

    def succeed(self, d: Dispatch, result=None) -> Effects:
        return self.apply(
            self.core.task_succeeded(d.task_id, d.worker_id, d.lease, result, now=self.now)
        )

    def fail(self, d: Dispatch, error: str = "boom", traceback: str | None = None) -> Effects:
        return self.apply(self.core.task_failed(d.task_id, d.worker_id, d.lease, error,
                                                now=self.now, traceback=traceback))

    def run_all(self, max_rounds: int = 10_000) -> None:
        """Run every queued task to success, following retries, until nothing is left."""
        for _ in range(max_rounds):
            progressed = False
            for wid in list(self.queues):
                d, _ = self.start_next(wid)
                if d is not None:
                    self.succeed(d)
                    progressed = True
            if not progressed:
                if views.active_orders(self.core) == 0:
                    return
                self.advance(self.core.config.retry.backoff_cap)
        raise AssertionError("run_all did not finish")

    # queries -------------------------------------------------------------
    def task(self, oid: str, step: str):
        return views.tasks(self.core)[f"{oid}:{step}"]

    def types(self, **match) -> list[dict]:
        return [e for e in self.events if all(e.get(k) == v for k, v in match.items())]
