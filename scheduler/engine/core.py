"""The pure scheduling core: stimuli in, effects out. No threads, locks, clocks or I/O.

Every public method takes the current time `now` and returns an `Effects` value: the events
that happened and the dispatches the shell must carry out. All state changes of a task go
through `_move`, which consults the transition table in `states.py`. What leaves the core
(views, journal rows) is built as `records` stamped in wall time by `wall()`.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any

from . import migrate, rerun, restart, waits
from .config import ClusterConfig, ConfigError, backoff
from .definitions import Definitions
from .dispatch import ReadyQueues
from .errors import (
    Conflict,
    Overloaded,
    UnknownOrder,
    UnknownStep,
    UnknownWorker,
    UnknownWorkflow,
)
from .events import EventHistory
from .limits import StepLimits
from .model import ORDER_EVENT_CAP, Dispatch, Effects, Order, Task, WorkerRecord
from .pauses import BREAKER, Pause
from .placement import Placement
from .progress import Progress
from .records import OrderRecord, ResumePoint, TaskRecord
from .rejections import RejectionWindows
from .ring import HashRing
from .states import (
    DONE,
    ON_WORKER,
    STATUS_OF,
    TERMINAL,
    TERMINAL_ORDER,
    OrderStatus,
    S,
    Status,
    TaskState,
    check_transition,
    derive_compensation_status,
    derive_order_status,
)
from .timers import Timers
from .validate import validate_state
from .workflow import DEFAULT_WORKFLOWS, Workflow
from .zombies import Zombie, Zombies

# Dead and removed workers kept for display; older ones are forgotten.
DEPARTED_WORKER_CAP = 64
THROUGHPUT_WINDOW = 60.0
# Why a zombie no longer counts (an `attempt_ended` event's `reason`), in words.
ZOMBIE_ENDS = {
    "reported": "its process registered again and no longer runs it",
    "exited": "its process exited",
    "returned": "its handler returned after its worker had left",
    "bound": "its time limit and the grace have passed: its worker has stopped it, or exited",
}


def _attempt_of(task: Task) -> str:
    """'order o-1 step payment attempt 2': how log lines name a task's current attempt."""
    return f"order {task.order_id} step {task.step} attempt {task.attempt}"


def _limits_text(policy) -> str:
    """'at most 20 in flight, 5 starts/s' (or 'no limits')."""
    parts = []
    if policy.max_in_flight is not None:
        parts.append(f"at most {policy.max_in_flight} in flight")
    if policy.rate is not None:
        parts.append(f"{policy.rate:g} starts/s")
    return ", ".join(parts) or "no limits"


def _which_attempt(task: Task) -> str:
    """How a log line names the attempt a move interrupts (or that none had begun)."""
    if not task.attempt_open:
        return f"(attempt {task.attempt + 1} not started yet)"
    return f"attempt {task.attempt}"


class SchedulerCore:
    """All scheduling decisions. Callers serialise access (the shell holds one lock)."""

    def __init__(
        self,
        config: ClusterConfig | None = None,
        workflows: dict[str, Workflow] | None = None,
        rng: random.Random | None = None,
        epoch_offset: float = 0.0,
    ):
        self.config = config or ClusterConfig()
        self._workflows = dict(workflows or DEFAULT_WORKFLOWS)
        # Every definition an order may be pinned to, with the unfinished orders of each.
        self.definitions = Definitions(self._workflows)
        self.rng = rng or random.Random(self.config.seed)
        # Added to `now` to stamp events with wall-clock time while decisions use `now`;
        # `wall()` is the one place that does it.
        self.epoch_offset = epoch_offset
        self._orders: dict[str, Order] = {}
        self._tasks: dict[str, Task] = {}
        self._workers: dict[str, WorkerRecord] = {}
        self._ring = HashRing(self.config.vnodes)
        self._history = EventHistory(self.config.event_history)
        self._seq = 0
        self._order_number = 0
        self._lease_counter = 0
        # Idempotency keys outlive the orders kept in memory (their own, larger cap); the
        # journal answers for older ones.
        self._idempotency: OrderedDict[str, str] = OrderedDict()
        # READY tasks wait here for a free slot (a worker holds only what it has slots for).
        self.queue = ReadyQueues()
        self._hungry: set[str] = set()  # alive workers with room for another task
        self.limits = StepLimits(self.config.steps)
        self._live_limits: set[str] = set()  # steps whose limits an operator changed
        # Attempts that may still run on a worker that left, kept in their step's count.
        self.zombies = Zombies()
        # Which workers can run a step, and a ready task's home among them (placement.py).
        self._placement = Placement(self._ring, self._workers, self.queue, self.config,
                                    self.definitions)
        self._held_back: dict[str, deque[str]] = {}  # step -> READY tasks its limits hold
        self._deadlines: list[tuple[float, int, str]] = []  # (deadline, lease, running task)
        # Timed-out attempts on thread workers: (when to abandon the thread if its handler
        # has not returned, lease, task, worker, attempt).
        self._abandon_due: list[tuple[float, int, str, str, int]] = []
        # Tasks moved off a departed worker in this stimulus: (task, from, why, attempt).
        # Tasks moved off a departed worker in this stimulus:
        # (task, from, why, attempt, seq of the event that made them move).
        self._moved: list[tuple[Task, str, str, str, int]] = []
        self._retry_heap: list[tuple[float, int, str]] = []  # (due, lease-at-schedule, task)
        # When waiting tasks' time comes: waits' timeouts, delays, not_before (waits.py).
        self.timers = Timers()
        # Whether any step has a delay: if not (and an order has no wait nor not_before),
        # a step whose dependencies are done is simply ready.
        self._delays = any(p.delay for p in self.config.steps.values())
        self._finished: OrderedDict[str, None] = OrderedDict()  # terminal orders, oldest first
        self._departed: deque[str] = deque()
        self._completions: deque[float] = deque()
        # Late results per worker per window, beyond a burst summed up (rejections.py).
        self._rejections = RejectionWindows()
        self._active_orders = 0
        # Cumulative, journaled and restored. `moves` counts every task taken off a worker
        # that left and put back in line (one per `task_reassigned` event), split by reason;
        # `reassignments` counts every task held by a worker that died (poisoned ones too).
        # `abandoned_threads` counts threads abandoned in handlers that ignored their
        # cancellation; `workers_hung` the thread workers declared dead for one too many;
        # `timed_out_attempts` the attempts that ran past their step's time limit.
        self._counters = {"retries": 0, "reassignments": 0, "rejected_results": 0,
                         "moves": 0, "moves_worker_dead": 0, "moves_drain": 0,
                         "abandoned_threads": 0, "workers_hung": 0, "timed_out_attempts": 0}
        self._progress = Progress()  # unfinished orders by stage, steps by state, rates
        self._orders_by_status = {s.value: 0 for s in OrderStatus}
        self._tasks_by_state = {s.value: 0 for s in TaskState}
        self._fx = Effects()
        self._held = 0  # tasks held by workers on the ring, for the bounded-load rule
        # True once an old order was brought back from the journal: `orders` is then no
        # longer in submission order, and listings must sort.
        self._adopted_out_of_order = False
        self._last_tick: float | None = None
        self._now = 0.0  # time of the stimulus being handled, for event stamps
        self._cause = 0  # seq of the restart event the recovered steps point back to

    # ------------------------------------------------------------------ stimuli

    def submit(
        self,
        order_id: str,
        data: dict,
        now: float,
        workflow: str = "ecommerce",
        idempotency_key: str | None = None,
        priority: int = 0,
        not_before: float | None = None,
    ) -> Effects:
        """Accept a new order; its root steps become ready and go to free slots at once
        (or, before `not_before`, wait for it: no step of it starts earlier)."""
        self._now = now
        wf = self._check_new(order_id, workflow, idempotency_key)
        self.check_capacity(1)
        self._open(order_id, data, wf, now, idempotency_key, priority, not_before)
        return self._flush()

    def submit_many(
        self, orders: list[tuple[str, dict]], now: float, workflow: str = "ecommerce"
    ) -> Effects:
        """Accept a batch of new orders whole or not at all: every id, the workflow and the
        room for all of them are checked before the first is opened. One dispatch round
        and one next wake for the batch, not one per order: a bulk of a thousand orders
        otherwise ran the whole dispatch a thousand times under the shell's lock. (So the
        orders of a batch that start at once are each worker's oldest of its home, not the
        batch's first: all of a batch arrive at the same time.)"""
        self._now = now
        if len({order_id for order_id, _ in orders}) != len(orders):
            raise Conflict("an order id appears twice in the batch")
        wf = None
        for order_id, _ in orders:
            wf = self._check_new(order_id, workflow, None)
        self.check_capacity(len(orders))
        for order_id, data in orders:
            self._open(order_id, data, wf, now, None, 0, None)
        return self._flush()

    def _check_new(self, order_id: str, workflow: str, idempotency_key: str | None) -> Workflow:
        """The definition a new order runs, or why it cannot be accepted (nothing changed)."""
        if idempotency_key is not None and idempotency_key in self._idempotency:
            raise Conflict(f"idempotency key already used by {self._idempotency[idempotency_key]}")
        if order_id in self._orders:
            raise Conflict(f"order {order_id} already exists")
        # A known definition's key too: a replay of an order on the definition it was pinned to.
        wf = self._workflows.get(workflow) or (
            self.definitions.find(workflow) if "@" in workflow else None)
        if wf is None:
            known = ", ".join(sorted(self._workflows))
            raise UnknownWorkflow(f"unknown workflow {workflow!r} (known: {known})")
        return wf

    def _open(self, order_id: str, data: dict, wf: Workflow, now: float,
              idempotency_key: str | None, priority: int, not_before: float | None) -> None:
        """Record a checked new order; its root steps become ready (dispatched at the flush)."""
        self._order_number += 1
        tasks = {
            step: Task(f"{order_id}:{step}", order_id, step, S.PENDING, set(wf.deps[step]))
            for step in wf.steps
        }
        order = Order(order_id, self._order_number, wf, data, tasks, now)
        order.idempotency_key = idempotency_key
        order.priority = priority
        if not_before is not None and not_before > now:
            order.not_before = not_before
        self._orders[order_id] = order
        self._fx.orders[order_id] = order
        if self.definitions.first_use(wf):
            self._fx.definitions.append(wf)
        self.definitions.unfinished[wf.key] += 1
        self._tasks.update((t.id, t) for t in tasks.values())
        self._tasks_by_state["pending"] += len(tasks)
        self._orders_by_status["pending"] += 1
        self._progress.opened(order)
        self._active_orders += 1
        if idempotency_key is not None:
            self._idempotency[idempotency_key] = order_id
            while len(self._idempotency) > self.config.idempotency_history:
                self._idempotency.popitem(last=False)
        self._emit(
            "order_submitted",
            f"order {order_id} accepted ({wf.label()}: {' -> '.join(wf.steps)})",
            order=order,
            # What a live view needs to draw the order before it fetches it.
            workflow=wf.name,
            steps=list(wf.steps),
            customer=data.get("customer"),
            **({} if order.not_before is None
               else {"not_before": round(self.wall(order.not_before), 6)}),
        )
        plain = not (wf.waits or order.not_before is not None or self._delays)
        for step in wf.roots():
            if plain:
                self._make_ready(tasks[step], now)
            else:
                waits.reach(self, tasks[step], now)
        if order.waiting:
            self._check_order(order, now)  # submitted for later, or a wait first: waiting

    def add_worker(
        self,
        worker_id: str,
        now: float,
        kind: str = "thread",
        meta: dict | None = None,
        slots: int | None = None,
        steps: frozenset[str] | set[str] | None = None,
        tags: frozenset[str] | set[str] = frozenset(),
        definitions: frozenset[str] | set[str] | None = None,
    ) -> Effects:
        """A worker joins the ring with `slots` (default: the cluster's) and takes work:
        the steps it has handlers for (None: any) whose tags it all offers, of orders pinned
        to the workflow definitions it runs (None: any)."""
        self._now = now
        if worker_id in self._workers and self._workers[worker_id].status in ("alive", "draining"):
            raise Conflict(f"worker {worker_id} is already a member")
        slots = self.config.slots if slots is None else slots
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ConfigError(f"slots must be an integer >= 1, got {slots!r}")
        worker = WorkerRecord(
            worker_id, kind, "alive", now, now, slots=slots, meta=meta or {},
            steps=None if steps is None else frozenset(steps), tags=frozenset(tags),
            definitions=None if definitions is None else frozenset(definitions),
        )
        self._workers[worker_id] = worker
        # Its share of the ring (where work prefers to go) follows its slots.
        self._placement.join(worker_id, weight=slots / self.config.slots)
        self._update_hunger(worker)
        offers = f", tags {', '.join(sorted(worker.tags))}" if worker.tags else ""
        self._emit(
            "worker_added",
            f"worker {worker_id} ({kind}, {slots} slot{'s' if slots != 1 else ''}{offers}) "
            "joined",
            worker=worker_id,
            worker_kind=kind,
            slots=slots,
            tags=sorted(worker.tags),
            # A process's name outlives its worker ids (it joins under a new one each time).
            name=worker.meta.get("name"),
        )
        self._rehome("")  # tasks that had no worker able to run them get a home now
        return self._flush()

    def heartbeat(self, worker_id: str, now: float) -> bool:
        """Record a sign of life. False tells the worker it was declared dead (or is unknown).

        The one stimulus that is safe without the shell's lock: it only raises one float,
        so heartbeats keep flowing while a long stimulus (a bulk submit) holds the lock.
        """
        worker = self._workers.get(worker_id)
        if worker is None or worker.status not in ("alive", "draining"):
            return False
        worker.last_heartbeat = max(worker.last_heartbeat, now)
        return True

    def start_task(
        self, task_id: str, worker_id: str, lease: int, now: float
    ) -> tuple[Effects, dict | None]:
        """A worker took a task from its queue. Returns the handler context, or None if stale."""
        self._now = now
        task = self._tasks.get(task_id)
        if (
            task is None
            or task.lease != lease
            or task.state is not S.ASSIGNED
            or task.worker != worker_id
        ):
            return self._flush(), None
        worker = self._workers[worker_id]
        self._move(task, S.RUNNING)
        if not task.attempt_open:
            task.attempt += 1
            task.attempt_open = True
        task.runs += 1
        task.started_at = now
        timeout = self.config.timeout(task.step)
        task.deadline = now + timeout
        heapq.heappush(self._deadlines, (task.deadline, lease, task_id))
        worker.running.add(task_id)
        order = self._orders[task.order_id]
        order.started = True
        self._emit(
            "task_started",
            f"{_attempt_of(task)} started on {worker_id}",
            task=task,
            worker=worker_id,
        )
        context = {
            "order_id": order.id,
            "order": order.data,
            "step": task.step,
            "attempt": task.attempt,
            "worker_id": worker_id,
            "results": {d: order.tasks[d].result for d in order.deps_of(task.step)},
            "idempotency_key": rerun.key_of(task),
            "timeout": timeout,
        }
        if task.compensates is not None:
            # An undo gets the result of the step it undoes, and a key of its own.
            undone = task.compensates
            context["results"] = {undone: order.tasks[undone].result}
            context["compensates"] = undone
            context["idempotency_key"] = f"{order.id}:{undone}:compensate"
        return self._flush(), context

    def task_succeeded(
        self, task_id: str, worker_id: str, lease: int, result: Any, now: float
    ) -> Effects:
        self._now = now
        task = self._fenced(task_id, worker_id, lease, "success")
        if task is None:
            return self._flush()
        order = self._orders[task.order_id]
        self._release_worker(task, worker_id, ok=True)
        task.result = result
        task.error = None
        self._move(task, S.SUCCEEDED)
        self._progress.steps_done.add(now)
        took = round(now - task.started_at, 6) if task.started_at is not None else None
        if took is not None:
            self._placement.speeds.observed(worker_id, task.step, took, now)
        self._emit(
            "task_succeeded",
            f"{_attempt_of(task)} succeeded on {worker_id}",
            task=task,
            worker=worker_id,
            duration=took,
        )
        task.completed = self._seq
        self._judge(task, None)
        self._release(order, task, now)
        self._check_order(order, now)
        self._finish_drain(worker_id)
        return self._flush()

    def task_failed(
        self, task_id: str, worker_id: str, lease: int, error: str, now: float,
        traceback: str | None = None,
    ) -> Effects:
        """An attempt failed with `error`; `traceback`: where its handler raised it (kept on
        the attempt's event, which the journal keeps and the order view shows)."""
        self._now = now
        task = self._fenced(task_id, worker_id, lease, "failure")
        if task is None:
            return self._flush()
        self._release_worker(task, worker_id, ok=False)
        extra = {} if traceback is None else {"traceback": traceback}
        self._attempt_failed(task, worker_id, error, now, **extra)
        return self._flush()

    def _attempt_failed(self, task: Task, worker_id: str, error: str, now: float, **extra: Any):
        """The attempt is over and failed: retry after a backoff, or give the step up."""
        task.error = error
        task.attempt_open = False
        self._progress.failures.add(now)
        self._emit(
            "task_failed",
            f"{_attempt_of(task)} failed on {worker_id}: {error}",
            task=task,
            worker=worker_id,
            error=error,
            **extra,
        )
        policy = self.config.retry_of(task.step)
        if task.attempt <= policy.max_retries:
            delay = backoff(task.attempt, policy, self.rng)
            self._move(task, S.RETRY_WAIT)
            task.due = now + delay
            heapq.heappush(self._retry_heap, (task.due, task.lease, task.id))
            self._counters["retries"] += 1
            self._emit(
                "task_retrying",
                f"{_attempt_of(task)} on {worker_id} will retry as attempt {task.attempt + 1} "
                f"of {policy.max_retries + 1} in {delay:.3f}s",
                task=task,
                worker=worker_id,
                attempt=task.attempt + 1,
                delay=round(delay, 6),
            )
        else:
            self._fail_task(task, now, f"gave up after {task.attempt} attempts: {error}")
        self._judge(task, error)
        self._finish_drain(worker_id)

    def worker_lost(self, worker_id: str, now: float, reason: str) -> Effects:
        """Declare a worker dead before its heartbeats run out, when the shell knows it is
        gone (a remote process's connection closed and it did not come back): its tasks
        move at once. A worker already dead or removed is left as it is."""
        self._now = now
        worker = self._worker(worker_id)
        if worker.status in ("alive", "draining"):
            self._declare_dead(worker, now, reason)
        return self._flush()

    def workers_report(
        self, worker_ids: Iterable[str], running: Iterable[tuple[str, str, int]], now: float
    ) -> Effects:
        """A worker process registered again and said what it still runs: `running`, as
        (worker id, task id, lease), under the ids it has held, `worker_ids`. An attempt
        that counts as possibly running under one of those ids and is not in `running` has
        ended; one in `running` that no count holds (a restart forgot it) counts from now
        until its bound."""
        self._now = now
        running = list(running)
        self._ended_but(set(worker_ids), running, "reported")
        for worker_id, task_id, lease in running:
            step = task_id.rpartition(":")[2]
            if not self._tracks(step) or self._counted(worker_id, task_id, lease):
                continue
            task = self._tasks.get(task_id)
            bound = now + self.config.timeout(step) + self.config.zombie_grace
            zombie = Zombie(worker_id, task_id, lease, step, task.attempt if task else 0,
                            None, bound)
            if self.zombies.add(zombie):
                self.limits.occupied(step)
        return self._flush()

    def workers_gone(self, worker_ids: Iterable[str], now: float) -> Effects:
        """The process behind these worker ids is gone (the server reaped it): nothing runs
        under them any more."""
        self._now = now
        self._ended_but(set(worker_ids), [], "exited")
        return self._flush()

    def _ended_but(self, worker_ids: set[str], running: list[tuple[str, str, int]],
                   reason: str) -> None:
        """Every zombie of `worker_ids` (or of an id in `running`) but those in `running`
        has ended, for `reason` (a key of ZOMBIE_ENDS)."""
        still = {(w, t, lease) for w, t, lease in running}
        still_any = {(w, t) for w, t, _ in running}
        ids = worker_ids | {w for w, _, _ in running}
        for zombie in self.zombies.of_workers(ids):
            if (zombie.key in still
                    or (not zombie.lease and (zombie.worker_id, zombie.task_id) in still_any)):
                continue
            self._end_zombie(zombie, reason)

    def attempts_ended(
        self, worker_id: str, ended: Iterable[tuple[str, int]], now: float
    ) -> Effects:
        """Handlers of a worker that left returned (a thread worker's, seen by the server
        itself): their attempts no longer count towards their step's limit."""
        self._now = now
        for task_id, lease in ended:
            zombie = self.zombies.find(worker_id, task_id, lease)
            if zombie is not None:
                self._end_zombie(zombie, "returned")
        return self._flush()

    def drain_worker(self, worker_id: str, now: float) -> Effects:
        """Graceful removal: no new work, queued tasks move now, the running one finishes."""
        self._now = now
        worker = self._worker(worker_id)
        if worker.status != "alive":
            raise Conflict(f"worker {worker_id} is {worker.status}; only an alive worker can drain")
        self._leave_ring(worker)
        worker.status = "draining"
        queued = sum(1 for t in worker.tasks if self._tasks[t].state is S.ASSIGNED)
        moving = f"; {queued} queued task(s) to move" if queued else ""
        self._emit("worker_draining", f"worker {worker_id} is draining{moving}",
                   worker=worker_id, moving=queued)
        cause = self._seq
        for task_id in sorted(worker.tasks):
            task = self._tasks[task_id]
            if task.state is S.ASSIGNED:
                self._take_off(worker, task)
                self._back_in_line(task, worker_id, "drain", cause)
        self._rehome(worker_id)
        self._finish_drain(worker_id)
        return self._flush()

    def tick(self, now: float) -> Effects:
        """Periodic duty: declare silent workers dead, release retries whose backoff ended."""
        self._now = now
        timeout = self.config.heartbeat_timeout
        stalled = self._last_tick is not None and now - self._last_tick > timeout / 2
        self._last_tick = now
        if stalled:
            # The monitor itself was not running (a stalled process, a long pause): it
            # cannot tell who was silent meanwhile, so every worker gets one more interval.
            floor = now - self.config.heartbeat_interval
            for worker in self._workers.values():
                worker.last_heartbeat = max(worker.last_heartbeat, floor)
        for worker in list(self._workers.values()):
            if worker.status in ("alive", "draining") and now - worker.last_heartbeat > timeout:
                self._declare_dead(worker, now)
        for worker_id, unrecorded in self._rejections.close_expired(now):
            self._sum_up_rejections(worker_id, unrecorded)
        for zombie in self.zombies.expired(now):
            self._end_zombie(zombie, "bound")
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, lease, task_id = heapq.heappop(deadlines)
            task = self._tasks.get(task_id)
            # Entries of attempts that ended meanwhile are stale; skip them.
            if task is not None and task.state is S.RUNNING and task.lease == lease:
                self._time_out(task, now)
        due = self._abandon_due
        while due and due[0][0] <= now:
            _, lease, task_id, worker_id, attempt = heapq.heappop(due)
            worker = self._workers.get(worker_id)
            # Entries of handlers that returned meanwhile (or of a worker that left) are stale.
            if worker is not None and worker.status == "alive" and (task_id, lease) in worker.stuck:
                self._abandon(worker, task_id, lease, attempt, now)
        heap = self._retry_heap
        while heap and heap[0][0] <= now:
            _, lease, task_id = heapq.heappop(heap)
            task = self._tasks.get(task_id)
            # A cancelled or retried-by-hand task leaves a stale entry behind; skip it.
            if task is not None and task.state is S.RETRY_WAIT and task.lease == lease:
                task.due = None
                self._make_ready(task, now)
        waits.fire(self, now)
        for step in list(self._held_back):
            self._release_held(step)  # a rate limit's tokens refill with time
        return self._flush()

    def signal(self, order_id: str, name: str, data: Any, now: float,
               key: str | None = None, who: str | None = None) -> tuple[Effects, str]:
        """The outside world's signal `name` for an order's wait, with `data` for the steps
        after it (`key`: the sender's idempotency key; `who`: an operator delivering it by
        hand). Returns the effects and what became of it (waits.DELIVERED, KEPT, REPEATED,
        REFUSED); raises UnknownOrder, or UnknownWait for a name it never waits for."""
        self._now = now
        outcome = waits.signal(self, order_id, name, data, now, key, who)
        return self._flush(), outcome

    def cancel_order(self, order_id: str, now: float) -> Effects:
        self._now = now
        order = self._order(order_id)
        status = self.order_status(order)
        if status in TERMINAL_ORDER or status is Status.COMPENSATING:
            raise Conflict(f"order {order_id} is {status.value} and cannot be cancelled")
        self._cancel_order(order, now, "it was cancelled")
        return self._flush()

    def _cancel_order(self, order: Order, now: float, why: str) -> None:
        for task in order.tasks.values():
            if task.state not in TERMINAL:
                self._cancel_task(task)
        self._compensate(order, now, why)
        self._check_order(order, now)

    def retry_order(self, order_id: str, now: float) -> Effects:
        """Re-run a failed order from the step that failed; finished steps are kept."""
        self._now = now
        order = self._order(order_id)
        status = self.order_status(order)
        if status not in (Status.FAILED, Status.COMPENSATION_FAILED):
            raise Conflict(
                f"order {order_id} is {status.value}; only a failed order (or one whose "
                "compensation failed) can be retried"
            )
        undoing = status is Status.COMPENSATION_FAILED
        what = "its undos retried" if undoing else "retried"
        # `undos`: only its undos run again (a page resets those, not the failed step).
        self._emit("order_retried", f"order {order_id} {what} by hand", order=order,
                   **({"undos": list(order.undoing)} if undoing else {}))
        # A failed compensation retries its undos, never the steps they undo.
        for step in order.undoing if undoing else order.workflow.steps:
            task = order.tasks[step]
            if task.state is S.SUCCEEDED:
                continue
            task.attempt, task.attempt_open, task.reassignments, task.error = 0, False, 0, None
            task.waiting_on = {
                d for d in order.deps_of(step) if order.tasks[d].state not in DONE
            }
            if task.waiting_on:
                self._move(task, S.PENDING)
            elif not waits.hold(self, task, now):
                self._move(task, S.READY)
        self._check_order(order, now)
        for task in order.tasks.values():
            if task.state is S.READY:
                self._enqueue(task)
        return self._flush()

    def migrate_orders(self, source: str, target: str, now: float, *, run_added: bool = False,
                       dry_run: bool = False, order_ids: Iterable[str] | None = None,
                       ) -> tuple[Effects, list[migrate.OrderPlan]]:
        """Move the unfinished orders of definition `source` (or those of `order_ids`) to
        `target`, or with `dry_run` only say what it would do (migrate.py). Returns the
        effects and each order's plan; refused whole (MigrationRefused) if one cannot."""
        self._now = now
        plans = migrate.migrate(self, source, target, now, run_added=run_added,
                                dry_run=dry_run, order_ids=order_ids)
        return self._flush(), plans

    def rerun_order(self, order_id: str, step: str, now: float,
                    new_keys: bool = False) -> tuple[Effects, list[str]]:
        """Run a finished order again from `step`: it and the steps after it, and every step
        that did not succeed, under the same idempotency keys unless `new_keys` (rerun.py).
        Returns the effects and the steps that run again."""
        self._now = now
        again = rerun.rerun(self, order_id, step, now, new_keys)
        return self._flush(), again

    def operator_action(
        self,
        who: str,
        action: str,
        what: str,
        now: float,
        *,
        target: str | None = None,
        worker: str | None = None,
        order_id: str | None = None,
        **details: Any,
    ) -> Effects:
        """Record what an operator did (the audit trail): one `operator_action` event, kept,
        journaled and logged like every other, in its order's timeline when it names one
        the core holds. `action` is a short key ("kill", "retry", "chaos", ...), `what` says
        it in words, `target` names what it was done to (a worker, an order, "37 orders")."""
        self._now = now
        self._emit(
            "operator_action",
            f"{who}: {what}",
            order=self._orders.get(order_id) if order_id is not None else None,
            worker=worker,
            who=who,
            action=action,
            target=target,
            **details,
        )
        return self._flush()

    # ------------------------------------------------------------------ step controls

    def pause_step(self, step: str, who: str, why: str, now: float) -> Effects:
        """Hold every task of `step` that has not started (pauses.py); attempts on workers
        finish. Conflict if it is paused already."""
        self._now = now
        self._require_step(step)
        self.limits.pauses.pause(step, who, why, self.wall(now))
        said = f": {why}" if why else ""
        self._emit("step_paused", f"step {step} paused by {who}{said}", step=step,
                   who=who, why=why, by_breaker=False)
        return self._flush()

    def resume_step(self, step: str, who: str, now: float) -> Effects:
        """Put the tasks a pause held back in line. Conflict if `step` is not paused."""
        self._now = now
        self._require_step(step)
        pause = self.limits.pauses.resume(step)
        self._resumed(pause, who, "")
        return self._flush()

    def set_limits(self, step: str, who: str, now: float, *, max_in_flight: int | None,
                   rate: float | None) -> Effects:
        """Change `step`'s concurrency and rate limits while it runs (None: no limit). Its
        attempts on workers (and its zombies) count at once; held tasks go as room allows."""
        self._now = now
        self._require_step(step)
        old = self.config.policy(step)
        new = dataclasses.replace(old, max_in_flight=max_in_flight, rate=rate,
                                  burst=old.burst if rate is not None else None)
        self._set_policy(step, new)
        self._emit("step_limits_changed",
                   f"step {step} limits set by {who}: {_limits_text(old)} → {_limits_text(new)}",
                   step=step, who=who, max_in_flight=max_in_flight, rate=rate)
        self._release_held(step)
        return self._flush()

    def restore_controls(self, pauses: Iterable[Pause], limits: dict[str, dict],
                         now: float) -> None:
        """Before `restore`: the pauses and live limits a journal kept (steps this cluster
        no longer has are left out)."""
        known = self._known_steps()
        for step, values in limits.items():
            if step in known:
                self._set_policy(step, dataclasses.replace(self.config.policy(step), **values))
        self.limits.pauses.restore((p for p in pauses if p.step in known), now)

    def _ready_of(self, step: str) -> int:
        """Tasks of `step` ready (waiting for a slot, a limit or a pause)."""
        return self._progress.steps.get(step, {}).get(S.READY.value, 0)

    def _require_step(self, step: str) -> None:
        if step not in self._known_steps():
            raise UnknownStep(step)

    def _known_steps(self) -> set[str]:
        return {s for wf in self._workflows.values() for s in wf.steps}

    def _set_policy(self, step: str, policy) -> None:
        """`step` runs under `policy` from now on, its attempts that may run counted."""
        # (Placement keeps the config it was given: it reads tags and load_epsilon only,
        # which limits never change.)
        self.config = dataclasses.replace(self.config, steps={**self.config.steps, step: policy})
        self._live_limits.add(step)
        self.limits.set_policy(step, policy, self._occupying(step))

    def _occupying(self, step: str) -> int:
        """Attempts of `step` that may be running: on workers, stuck, abandoned, zombies."""
        count = sum(1 for t in self._tasks.values() if t.step == step and t.state in ON_WORKER)
        for worker in self._workers.values():
            count += sum(1 for t, _ in worker.stuck | worker.abandoned
                         if t.rpartition(":")[2] == step)
        return count + sum(1 for z in self.zombies if z.step == step)

    def _judge(self, task: Task, error: str | None) -> None:
        """An attempt of `task` ended: its step's breaker may trip, or its probe resume."""
        verdict = self.limits.pauses.attempt_ended(task.step, task.id, error,
                                                   self.wall(self._now), self._now)
        if verdict is None:
            return
        pause = verdict.pause
        if verdict.tripped:
            self._emit("breaker_tripped", f"step {task.step} paused by {BREAKER}: {pause.why}",
                       step=task.step, who=BREAKER, why=pause.why, by_breaker=True)
        else:
            self._resumed(pause, BREAKER, f" after probe {_attempt_of(task)} succeeded")

    def _resumed(self, pause: Pause, who: str, how: str) -> None:
        held = self._ready_of(pause.step)
        paused_for = round(max(0.0, self.wall(self._now) - pause.since), 3)
        self._emit("step_resumed",
                   f"step {pause.step} resumed by {who}{how}, paused {paused_for:g} s by "
                   f"{pause.who}; {held} ready task(s) go back in line",
                   step=pause.step, who=who, paused_by=pause.who, paused_for=paused_for,
                   held=held)
        self._release_held(pause.step)

    def alert_changed(self, alert: str, subject: str, raised: bool, message: str, now: float,
                      cause: int | None = None) -> Effects:
        """An alert raised or cleared (runtime/alerts.py decides which): one `alert_raised`
        or `alert_cleared` event, kept, journaled and logged like every other; a clearing
        names the event that raised it as its `cause`."""
        self._now = now
        self._emit("alert_raised" if raised else "alert_cleared",
                   message if raised else f"cleared: {message}",
                   alert=alert, subject=subject or None,
                   **({} if cause is None else {"cause": cause}))
        return self._flush()

    def schedule_event(self, kind: str, schedule: str, message: str, now: float, *,
                       order_id: str | None = None, **details: Any) -> Effects:
        """A recurring schedule added, fired or skipped (engine/schedules.py; the runtime
        decides which): one event, in the order's timeline when it names one."""
        self._now = now
        self._emit(kind, message, order=self._orders.get(order_id) if order_id else None,
                   schedule=schedule, **details)
        return self._flush()

    # ------------------------------------------------------------------ restarts

    def restore(self, point: ResumePoint, orders: Iterable[OrderRecord], now: float) -> Effects:
        """Continue from what a journal kept: numbering and finished totals from `point`, and
        `orders` (oldest first) back in memory, their unfinished steps back in line
        (restart.py). Only on a core that has not run yet."""
        return restart.restore(self, point, orders, now)

    def adopt(self, record: OrderRecord) -> Order:
        """Bring back a finished order that memory had forgotten (to retry it by hand)."""
        return restart.adopt_finished(self, record)

    # ------------------------------------------------------------------ records

    def wall(self, t: float) -> float:
        """Wall-clock seconds for a time on the core's clock: the one place that converts."""
        return t + self.epoch_offset

    def task_record(self, task: Task) -> TaskRecord:
        return TaskRecord(
            task.order_id,
            task.step,
            task.state.value,
            task.attempt,
            task.attempt_open,
            task.reassignments,
            task.runs,
            task.worker,
            task.result,
            task.error,
            None if task.due is None else round(self.wall(task.due), 6),
            task.moves,
            task.completed,
            task.compensates,
            task.key_round,
        )

    def order_record(
        self, order: Order, with_tasks: bool = True, with_events: bool = False
    ) -> OrderRecord:
        finished = order.finished_at
        return OrderRecord(
            order.id,
            order.number,
            order.workflow.name,
            order.data,
            order.idempotency_key,
            self.wall(order.submitted_at),
            None if finished is None else self.wall(finished),
            order.reported_status,
            order.priority,
            tuple(self.task_record(order.tasks[s]) for s in order.step_names())
            if with_tasks
            else (),
            tuple(order.events) if with_events else (),
            order.workflow.version,
        )

    # ------------------------------------------------------------------ queries

    def check_capacity(self, orders: int) -> None:
        """Raise Overloaded unless `orders` more unfinished orders fit under the cap."""
        cap = self.config.max_unfinished_orders
        if self._active_orders + orders > cap:
            raise Overloaded(
                f"{self._active_orders} orders are unfinished and at most {cap} are accepted; "
                f"{orders} more would not fit. Try again once work has drained."
            )

    def order_status(self, order: Order) -> OrderStatus:
        if order.undoing:
            return derive_compensation_status(order.tasks[u].state for u in order.undoing)
        return derive_order_status(t.state for t in order.tasks.values())

    def free_slots(self, worker: WorkerRecord) -> int:
        """Room for more tasks: its slots and the prefetch, less what it holds or is stuck on."""
        return worker.slots + self.config.prefetch - len(worker.tasks) - len(worker.stuck)

    def can_run(self, worker: WorkerRecord, task: Task) -> bool:
        """Whether `worker` has a handler for the task's step, offers every tag it needs
        and runs the workflow definition its order is pinned to."""
        return self._placement.can_run(worker, self.lane_of(task))

    def lane_of(self, task: Task) -> tuple[str, str]:
        """Where the task waits when ready: its step, and its order's definition."""
        return task.step, self._orders[task.order_id].workflow.key

    def validate(self) -> None:
        """Check internal invariants (validate.py); used by tests after every step."""
        validate_state(self)

    # ------------------------------------------------------------------ internals

    def _flush(self) -> Effects:
        """End of a stimulus: hand ready tasks to free slots, then return the effects."""
        self._dispatch()
        if self._moved:
            self._announce_moves()
        fx, self._fx = self._fx, Effects()
        if fx.events:
            self._history.extend(fx.events)
        fx.wake_at = self._next_wake()
        return fx

    def _next_wake(self) -> float | None:
        """The earliest time something is due: a retry, a time limit, a rate limit's token.
        Entries made stale since (a cancelled retry, an attempt that ended) are dropped
        from the top first, so the shell's timer does not wake for nothing."""
        for heap, state in ((self._retry_heap, S.RETRY_WAIT), (self._deadlines, S.RUNNING)):
            while heap:
                task = self._tasks.get(heap[0][2])
                if task is not None and task.state is state and task.lease == heap[0][1]:
                    break
                heapq.heappop(heap)
        due = [heap[0][0] for heap in (self._retry_heap, self._deadlines) if heap]
        timer = self.timers.next_due()
        if timer is not None:
            due.append(timer)
        bound = self.zombies.next_bound()
        if bound is not None:
            due.append(bound)
        abandon = self._abandon_due
        while abandon:
            _, lease, task_id, worker_id, _ = abandon[0]
            worker = self._workers.get(worker_id)
            if worker is not None and worker.status == "alive" and (task_id, lease) in worker.stuck:
                due.append(abandon[0][0])
                break
            heapq.heappop(abandon)
        for step in self._held_back:
            free = self.limits.free_at(step, self._now)
            if free is not None:
                due.append(free)
        return min(due) if due else None

    def _emit(
        self,
        kind: str,
        message: str,
        *,
        order: Order | None = None,
        task: Task | None = None,
        worker: str | None = None,
        attempt: int | None = None,
        **extra: Any,
    ) -> None:
        """Record one event. A task's event names its order, step and attempt by itself."""
        if task is not None and order is None:
            order = self._orders.get(task.order_id)
        if attempt is None:
            attempt = task.attempt if task is not None else 0
        self._seq += 1
        event = {
            "seq": self._seq,
            "ts": round(self.wall(self._now), 6),
            "type": kind,
            "order_id": order.id if order else None,
            "step": task.step if task is not None else None,
            "worker_id": worker,
            "attempt": attempt,
            "message": message,
        }
        if extra:
            event.update(extra)
        self._fx.events.append(event)
        if order is not None and len(order.events) < ORDER_EVENT_CAP:
            order.events.append(event)

    def _move(self, task: Task, finish: TaskState) -> None:
        start = task.state
        check_transition(task.id, start, finish, task.history)
        # `_value_`, not `.value`: the same string without a descriptor call (this runs at
        # every move of every task).
        was, now = start._value_, finish._value_
        self._tasks_by_state[was] -= 1
        self._tasks_by_state[now] += 1
        tally = task.tally
        if tally is not None:  # its order is unfinished: keep the progress counts
            tally[was] -= 1
            tally[now] += 1
            # (Most moves touch a state that stages the order: no test of which first.)
            self._progress.moved(self._orders[task.order_id], start, finish)
        task.history.append(task.state)
        if len(task.history) > 32:
            del task.history[:16]
        self._fx.moves.append((task, task.state, finish))
        task.state = finish
        if start is S.WAITING:
            self.timers.clear(task.id)  # whatever ended its wait, its time no longer counts

    def _release(self, order: Order, task: Task, now: float) -> None:
        """`task` succeeded: the steps waiting only for it are reached (waits.reach; simply
        ready in an order with no wait, no not_before and no delayed step)."""
        plain = not (order.workflow.waits or order.not_before is not None or self._delays)
        for dependent in order.dependents_of(task.step):
            child = order.tasks[dependent]
            child.waiting_on.discard(task.step)
            if not child.waiting_on and child.state is S.PENDING:
                if plain:
                    self._make_ready(child, now)
                else:
                    waits.reach(self, child, now)

    def _make_ready(self, task: Task, now: float) -> None:
        self._move(task, S.READY)
        self._enqueue(task)

    def _enqueue(self, task: Task) -> None:
        """Put a READY task in line; its home is where the ring prefers it to run."""
        order = self._orders[task.order_id]
        task.wait_reason = None
        lane = (task.step, order.workflow.key)
        home = self._placement.home(task.order_id, lane, self._held)
        task.ticket = self.queue.push(
            task.id, lane, home, order.started,
            order.priority, order.number, order.position(task.step),
        )

    def _rehome(self, home: str) -> None:
        """Tasks queued under a home that left (or under none) go back in line anew."""
        for task_id in self.queue.take_home(home):
            task = self._tasks.get(task_id)
            if task is not None and task.state is S.READY:
                self._enqueue(task)

    def _dispatch(self) -> None:
        """Hand ready tasks to workers with room, one each per round so a burst spreads:
        each takes from its own home first; only a worker with nothing of its own (of the
        best class waiting) steals from the longest other home."""
        queue, hungry = self.queue, self._hungry
        idled = self._placement.idled  # slow workers leaving tasks to faster ones
        idled.clear()
        while queue and hungry:
            took = False
            for worker_id in sorted(hungry):
                task = self._next_for(worker_id, steal=False)
                if task is not None:
                    self._assign(task, worker_id)
                    took = True
                    if not queue:
                        return
            if took:
                continue
            for worker_id in sorted(hungry):
                task = self._next_for(worker_id, steal=True)
                if task is None:
                    if worker_id in idled:
                        continue  # a faster worker may still steal what it left
                    return  # nothing left that may start now
                self._assign(task, worker_id)
                took = True
                if not queue:
                    return
            if not took:
                return

    def _next_for(self, worker_id: str, steal: bool) -> Task | None:
        """The next task `worker_id` may take; tasks their step's limits hold are set aside."""
        pop = self.queue.pop_for if steal else self.queue.pop_own
        worker = self._workers[worker_id]
        placement = self._placement
        can_run = placement.can_run_cache(worker)
        if placement.speeds.is_slow(worker_id, self._now):
            by_state = self._tasks_by_state
            can_run = placement.unless_faster(
                worker, can_run, by_state["ready"] + by_state["pending"], self._now)
        while True:
            popped = pop(worker_id, can_run)
            if popped is None:
                return None
            task_id, ticket, _ = popped
            task = self._tasks.get(task_id)
            if task is None or task.state is not S.READY or task.ticket != ticket:
                continue  # cancelled or queued again since
            reason = self.limits.blocks(task.step, self._now)
            if reason is None:
                return task
            task.wait_reason = reason
            self._held_back.setdefault(task.step, deque()).append(task_id)

    def _release_held(self, step: str) -> None:
        """Put back in line as many held tasks of `step` as its limits now allow."""
        held = self._held_back.get(step)
        room = self.limits.room(step, self._now)
        while held and room > 0:
            task = self._tasks.get(held.popleft())
            if task is not None and task.state is S.READY:
                self._enqueue(task)
                room -= 1
        if not held:
            self._held_back.pop(step, None)

    def _update_hunger(self, worker: WorkerRecord) -> None:
        if worker.status == "alive" and self.free_slots(worker) > 0:
            self._hungry.add(worker.id)
        else:
            self._hungry.discard(worker.id)

    def _take_off(self, worker: WorkerRecord, task: Task, stuck: bool = False) -> None:
        """The task no longer occupies the worker, queued or running. `stuck`: it timed
        out, but its handler has not returned, so its slot (and its step's limit) stays
        taken until it does."""
        if task.id not in worker.tasks:
            return
        worker.tasks.discard(task.id)
        worker.running.discard(task.id)
        if worker.status == "alive":
            self._held -= 1
        if stuck:
            worker.stuck.add((task.id, task.lease))
            worker.stuck_attempts[(task.id, task.lease)] = task.attempt
        elif self.limits.finished(task.step):
            self._release_held(task.step)
        self._update_hunger(worker)

    def _free_stuck(self, worker: WorkerRecord, task_id: str, lease: int) -> bool:
        """A timed-out handler returned (its report is rejected): its slot is free again,
        or, if its thread was abandoned, its step's limits no longer count it."""
        key = (task_id, lease)
        if key in worker.stuck:
            worker.stuck.discard(key)
        elif key in worker.abandoned:
            worker.abandoned.discard(key)
        else:
            return False
        del worker.stuck_attempts[key]
        step = task_id.rpartition(":")[2]
        if self.limits.finished(step):
            self._release_held(step)
        self._update_hunger(worker)
        return True

    def _tracks(self, step: str) -> bool:
        """Whether attempts of `step` that may still run are counted (it has max_in_flight)."""
        return self.config.policy(step).max_in_flight is not None

    def _bound(self, worker: WorkerRecord, deadline: float | None, now: float) -> float | None:
        """When an attempt on `worker`, which left, can no longer be running: a remote
        worker has stopped it (or exited) by its time limit plus the grace; a thread
        worker's handler only ends when its thread returns (None)."""
        if worker.kind == "thread":
            return None
        return max(now, deadline if deadline is not None else now) + self.config.zombie_grace

    def _bury(self, worker: WorkerRecord, task_id: str, lease: int, step: str, attempt: int,
              deadline: float | None, now: float) -> bool:
        """Keep an attempt that may still run on `worker` in its step's count, as a zombie.
        False when nothing is kept (the step has no concurrency limit, or the attempt is a
        zombie already): the caller gives its place back."""
        if not self._tracks(step):
            return False
        alive = worker.status in ("alive", "draining")
        bound = None if alive else self._bound(worker, deadline, now)
        return self.zombies.add(Zombie(worker.id, task_id, lease, step, attempt, deadline, bound))

    def _bury_stuck(self, worker: WorkerRecord, now: float, freed: set[str]) -> int:
        """A worker that left: its stuck attempts (timed out, handler not returned, its
        thread abandoned or not) become zombies, or, for a step without a concurrency limit,
        give their place back (the step goes in `freed`). Returns how many became zombies."""
        buried = 0
        for task_id, lease in sorted(worker.stuck | worker.abandoned):
            worker.stuck.discard((task_id, lease))
            worker.abandoned.discard((task_id, lease))
            step = task_id.rpartition(":")[2]
            attempt = worker.stuck_attempts.pop((task_id, lease))
            if self._bury(worker, task_id, lease, step, attempt, None, now):
                buried += 1
            elif self.limits.finished(step):
                freed.add(step)
        return buried

    def _end_zombie(self, zombie: Zombie, reason: str | None) -> None:
        """A zombie's handler has ended (or can no longer be running): its place in the
        step's limit is free. `reason` (a key of ZOMBIE_ENDS): say so in an `attempt_ended`
        event (None: the caller's own event says it)."""
        self.zombies.remove(zombie)
        if reason is not None:
            order_id, _, step = zombie.task_id.rpartition(":")
            self._emit(
                "attempt_ended",
                f"order {order_id} step {step} attempt {zombie.attempt} on {zombie.worker_id} "
                f"no longer counts towards the step's limit: {ZOMBIE_ENDS[reason]}",
                order=self._orders.get(order_id),
                task=self._tasks.get(zombie.task_id),
                worker=zombie.worker_id,
                attempt=zombie.attempt,
                task_id=zombie.task_id,
                reason=reason,
            )
        if self.limits.finished(zombie.step):
            self._release_held(zombie.step)

    def _counted(self, worker_id: str, task_id: str, lease: int) -> bool:
        """Whether an attempt is counted already: on its live worker (running, stuck or its
        thread abandoned), or as a zombie."""
        if self.zombies.find(worker_id, task_id, lease) is not None:
            return True
        worker = self._workers.get(worker_id)
        if worker is None or worker.status not in ("alive", "draining"):
            return False
        task = self._tasks.get(task_id)
        on_it = task is not None and task.worker == worker_id and task.lease == lease
        return ((on_it and task_id in worker.tasks) or (task_id, lease) in worker.stuck
                or (task_id, lease) in worker.abandoned)

    def _leave_ring(self, worker: WorkerRecord) -> None:
        if worker.status == "alive":  # a draining worker has left already
            self._placement.leave(worker.id)
            self._held -= len(worker.tasks)
            self._hungry.discard(worker.id)

    def _assign(self, task: Task, worker_id: str) -> None:
        self._move(task, S.ASSIGNED)
        self._lease_counter += 1
        task.lease = self._lease_counter
        task.worker = worker_id
        task.wait_reason = None
        worker = self._workers[worker_id]
        worker.tasks.add(task.id)
        self._held += 1
        self.limits.started(task.step, self._now, task.id)
        self._update_hunger(worker)
        self._fx.dispatches.append(Dispatch(worker_id, task.id, task.lease))
        order = self._orders[task.order_id]
        if order.reported_status == "pending":
            self._check_order(order, self._now)

    def _time_out(self, task: Task, now: float) -> None:
        """A running attempt passed its step's time limit: its lease is revoked (a late
        result is rejected), its worker is told to cancel it, and it is a failed attempt."""
        worker = self._workers[task.worker]
        seconds = self.config.timeout(task.step)
        self._counters["timed_out_attempts"] += 1
        self._fx.cancels.append(Dispatch(worker.id, task.id, task.lease))
        self._take_off(worker, task, stuck=True)
        if worker.kind == "thread":
            # A thread can be replaced in the process; a worker process whose slots are
            # all stuck exits instead, to be restarted by its supervisor.
            heapq.heappush(self._abandon_due, (now + self.config.abandon_after, task.lease,
                                               task.id, worker.id, task.attempt))
        worker.failed += 1
        self._attempt_failed(task, worker.id, f"timed out after {seconds:g} s", now,
                             timed_out=True)

    def _abandon(
        self, worker: WorkerRecord, task_id: str, lease: int, attempt: int, now: float
    ) -> None:
        """A thread worker's handler ignored its cancellation for `abandon_after`: its thread
        is abandoned and the slot serves again on a new one (its step's limits still count
        it until it returns). Past the worker's bound of abandoned threads the worker is
        declared dead instead, so its work moves and no more threads are started for it."""
        task = self._tasks.get(task_id)  # None once its order is forgotten
        order_id, _, step = task_id.rpartition(":")
        which = f"order {order_id} step {step} attempt {attempt}"
        limit = self.config.abandon_limit(worker.slots)
        grace = self.config.abandon_after
        if len(worker.abandoned) >= limit:
            self._counters["workers_hung"] += 1
            self._emit(
                "worker_hung",
                f"worker {worker.id}: the handler of {which} ignored its cancellation "
                f"{grace:g} s past its time limit, and {len(worker.abandoned)} of its threads "
                f"are already abandoned in such handlers (at most {limit}); the worker is "
                "declared dead so its work moves",
                task=task, worker=worker.id, attempt=attempt, abandoned=len(worker.abandoned),
                limit=limit,
            )
            held = len(worker.abandoned) + len(worker.stuck)
            self._declare_dead(worker, now, f"{held} of its threads are held by handlers "
                                            "that ignored their cancellation")
            return
        worker.stuck.discard((task_id, lease))
        worker.abandoned.add((task_id, lease))
        self._counters["abandoned_threads"] += 1
        self._fx.abandons.append(Dispatch(worker.id, task_id, lease))
        self._update_hunger(worker)
        self._emit(
            "thread_abandoned",
            f"{which} ignored its cancellation {grace:g} s past its time limit on "
            f"{worker.id}: its thread is abandoned and a new one takes the slot "
            f"({len(worker.abandoned)} abandoned of at most {limit})",
            task=task, worker=worker.id, attempt=attempt, abandoned=len(worker.abandoned),
            limit=limit,
        )

    def _fenced(self, task_id: str, worker_id: str, lease: int, what: str) -> Task | None:
        """The task if `lease` is its current running lease; otherwise record a rejection."""
        task = self._tasks.get(task_id)
        if (
            task is not None
            and task.lease == lease
            and task.state is S.RUNNING
            and task.worker == worker_id
        ):
            return task
        self._counters["rejected_results"] += 1
        worker = self._workers.get(worker_id)
        timed_out = worker is not None and self._free_stuck(worker, task_id, lease)
        zombie = self.zombies.find(worker_id, task_id, lease)
        if zombie is not None:
            self._end_zombie(zombie, None)
        # A rejection that frees a place is never folded into a summary: it is the record
        # that the handler ended (each attempt's once, so it cannot flood).
        if not (timed_out or zombie) and self._rejection_suppressed(worker_id):
            return None
        why = "the attempt had timed out" if timed_out else f"lease {lease} is no longer valid"
        if zombie is not None:
            why += f"; it no longer counts towards step {zombie.step}'s limit"
        self._emit(
            "result_rejected",
            f"late {what} of {task_id} from {worker_id} rejected ({why})",
            task=task,
            worker=worker_id,
        )
        return None

    def _rejection_suppressed(self, worker_id: str) -> bool:
        """Count a late result; True when it is one too many for its own event."""
        closed, suppressed = self._rejections.count(worker_id, self._now)
        if closed:
            self._sum_up_rejections(worker_id, closed)
        return suppressed

    def _sum_up_rejections(self, worker_id: str, unrecorded: int) -> None:
        """One event for the late results of a closed window that had none of their own."""
        self._emit(
            "result_rejected",
            f"{unrecorded} more late results from {worker_id} rejected within "
            f"{self._rejections.window:.0f}s (counted, not recorded one by one)",
            worker=worker_id,
            count=unrecorded,
        )

    def _release_worker(self, task: Task, worker_id: str, ok: bool) -> None:
        worker = self._workers[worker_id]
        self._take_off(worker, task)
        if ok:
            worker.done += 1
        else:
            worker.failed += 1

    def _back_in_line(self, task: Task, from_worker: str, reason: str, cause: int) -> None:
        """A task taken off a worker that left goes to the next free slot elsewhere; the
        move is counted now and announced at the end of the stimulus, naming where it went
        and the event that made it move (`cause`: the worker's death or drain)."""
        task.lease = 0
        task.worker = None
        task.moves += 1
        self._counters["moves"] += 1
        self._counters["moves_" + reason.replace(" ", "_")] += 1
        self._move(task, S.READY)
        self._enqueue(task)
        self._moved.append((task, from_worker, reason, _which_attempt(task), cause))

    def _announce_moves(self) -> None:
        moved, self._moved = self._moved, []
        for task, from_worker, reason, attempt, cause in moved:
            target = task.worker if task.state is S.ASSIGNED else None
            where = (
                f"from {from_worker} to {target}"
                if target
                else f"off {from_worker}; it waits for a free slot"
            )
            self._emit(
                "task_reassigned",
                f"order {task.order_id} step {task.step} {attempt} moved {where} ({reason})",
                task=task,
                worker=target,
                from_worker=from_worker,
                reason=reason,
                cause=cause,
                moves=task.moves,
            )

    def _declare_dead(self, worker: WorkerRecord, now: float, reason: str | None = None) -> None:
        age = now - worker.last_heartbeat
        reason = reason or f"no heartbeat for {age:.2f}s"
        self._leave_ring(worker)
        worker.status = "dead"
        worker.running = set()
        freed: set[str] = set()  # limited steps that now have room
        # Its handlers may still run (a stall is not a crash): those of steps with a
        # concurrency limit keep their place until it says they ended, or their bound.
        buried = self._bury_stuck(worker, now, freed)
        self.zombies.bind(worker.id, lambda z: self._bound(worker, z.deadline, now))
        buried += sum(1 for t in worker.tasks
                      if self._tasks[t].state is S.RUNNING and self._tracks(self._tasks[t].step))
        still = (f"; {buried} attempt(s) it may still be running keep their place in their "
                 "step's limit until it says they ended" if buried else "")
        self._emit(
            "worker_dead",
            f"worker {worker.id} declared dead: {reason}; {len(worker.tasks)} task(s) to move"
            f"{still}",
            worker=worker.id,
            tasks=sorted(worker.tasks),
        )
        cause = self._seq
        lost, worker.tasks = sorted(worker.tasks), set()
        for task_id in lost:
            task = self._tasks[task_id]
            if task.state not in ON_WORKER:
                continue  # cancelled meanwhile: its order failed through a sibling
            if task.state is S.RUNNING and self._bury(
                worker, task.id, task.lease, task.step, task.attempt, task.deadline, now
            ):
                pass  # its place in the step's limit stays taken
            elif self.limits.finished(task.step):
                freed.add(task.step)
            self._counters["reassignments"] += 1
            if task.state is S.RUNNING:
                # Only a death while the task ran counts towards poison: a task that keeps
                # killing its workers is suspect, one that merely waited in a queue is not.
                task.reassignments += 1
            if task.reassignments > self.config.max_reassignments:
                task.lease, task.worker = 0, None
                reason = f"poison: its worker died under it {task.reassignments} times"
                self._progress.failures.add(now)
                self._emit(
                    "task_failed",
                    f"{_attempt_of(task)} failed on {worker.id}: {reason}",
                    task=task,
                    worker=worker.id,
                    error=reason,
                    poison=True,
                )
                self._fail_task(task, now, reason)
            else:
                self._back_in_line(task, worker.id, "worker dead", cause)
        for step in sorted(freed):
            self._release_held(step)
        self._rehome(worker.id)
        self._depart(worker.id)

    def _finish_drain(self, worker_id: str) -> None:
        worker = self._workers.get(worker_id)
        if worker is not None and worker.status == "draining" and not worker.tasks:
            worker.status = "removed"
            # As after a death: the handlers it hung on (stuck, or their thread abandoned)
            # keep a limited step's place as zombies until it says they ended, or their
            # bound; others give their place back (its slots are gone with it).
            freed: set[str] = set()
            self._bury_stuck(worker, self._now, freed)
            self.zombies.bind(worker.id, lambda z: self._bound(worker, z.deadline, self._now))
            for step in sorted(freed):
                self._release_held(step)
            self._emit("worker_removed", f"worker {worker_id} drained and left", worker=worker_id)
            self._depart(worker_id)

    def _depart(self, worker_id: str) -> None:
        self._fx.departed.append(worker_id)
        self._departed.append(worker_id)
        while len(self._departed) > DEPARTED_WORKER_CAP:
            old = self._departed.popleft()
            if self._workers.get(old) and self._workers[old].status in ("dead", "removed"):
                del self._workers[old]

    def _fail_task(self, task: Task, now: float, reason: str) -> None:
        """The step is given up: the order fails and its other unfinished steps are cancelled."""
        order = self._orders[task.order_id]
        task.error = reason
        self._move(task, S.FAILED)
        for other in order.tasks.values():
            if other is not task and other.state not in TERMINAL:
                self._cancel_task(other)
        self._compensate(order, now, f"step {task.step} {reason}")
        self._check_order(order, now, reason=f"step {task.step} {reason}")

    def _compensate(self, order: Order, now: float, why: str) -> None:
        """An order that failed or was cancelled (its steps all finished) undoes its steps
        that succeeded and have an undo, newest success first, one at a time; each undo
        is a task of its own. Once only: an order undoing already is left as it is."""
        if order.undoing:
            return
        done = order.to_undo()
        if not done:
            return
        order.undoing = [order.workflow.compensations[t.step] for t in done]
        for i, original in enumerate(done):
            undo = order.undoing[i]
            task = Task(f"{order.id}:{undo}", order.id, undo, S.PENDING,
                        {order.undoing[i - 1]} if i else set(), compensates=original.step)
            order.tasks[undo] = task
            self._tasks[task.id] = task
            self._tasks_by_state["pending"] += 1
            if order.stage is not None:  # unfinished: counted in its step's tally
                task.tally = self._progress.tally(undo)
                task.tally["pending"] += 1
        self._fx.orders[order.id] = order
        steps = ", ".join(f"{t.step} by {order.workflow.compensations[t.step]}" for t in done)
        self._emit("order_compensating", f"order {order.id}: {why}; undoing {steps}",
                   order=order, reason=why, undo=list(order.undoing),
                   undoes={order.workflow.compensations[t.step]: t.step for t in done})
        self._make_ready(order.tasks[order.undoing[0]], now)

    def _cancel_task(self, task: Task) -> None:
        worker = None
        if task.state in ON_WORKER and task.worker is not None:
            worker = self._workers[task.worker]
            if task.state is S.RUNNING and self._bury(
                worker, task.id, task.lease, task.step, task.attempt, task.deadline, self._now
            ):
                # Its handler runs on until its (rejected) result comes back: the zombie
                # keeps the place that taking it off below gives back.
                self.limits.occupied(task.step)
            self._take_off(worker, task)
        task.lease = 0
        task.due = None
        self._move(task, S.CANCELLED)
        self._emit(
            "task_cancelled",
            f"order {task.order_id} step {task.step} cancelled",
            task=task,
            worker=task.worker,
        )
        if worker is not None:
            self._finish_drain(worker.id)  # after the cancellation, so events read in order

    def _check_order(self, order: Order, now: float, reason: str = "") -> None:
        status = self.order_status(order)
        if status._value_ == order.reported_status:  # `_value_`: no descriptor call per step
            return
        if status is Status.PENDING and order.reported_status == Status.IN_PROGRESS.value:
            # Handed to a worker once, it stays in progress when its steps go back in line
            # (its worker died, or the server restarted): only a dispatch starts an order.
            return
        was_finished = STATUS_OF[order.reported_status] in TERMINAL_ORDER
        self._set_order_status(order, status)
        if was_finished and status not in TERMINAL_ORDER:
            # Reopened by a manual retry.
            self._active_orders += 1
            self.definitions.unfinished[order.workflow.key] += 1
            order.finished_at = None
            self._finished.pop(order.id, None)
        elif status in TERMINAL_ORDER:
            self._active_orders -= 1
            self.definitions.unfinished[order.workflow.key] -= 1
            order.finished_at = now
            if status is Status.COMPLETED:
                self._completions.append(now)
                self._progress.orders.add(now)
                self._trim_completions(now)
                took = now - order.submitted_at
                self._emit(
                    "order_completed",
                    f"order {order.id} completed in {took:.3f}s",
                    order=order,
                    duration=round(took, 6),
                )
            elif status is Status.FAILED:
                self._emit("order_failed", f"order {order.id} failed: {reason}", order=order)
            elif status is Status.COMPENSATED:
                self._emit("order_compensated",
                           f"order {order.id} compensated: {', '.join(order.undoing)} done",
                           order=order)
            elif status is Status.COMPENSATION_FAILED:
                self._emit("order_compensation_failed",
                           f"order {order.id} compensation failed: {reason}", order=order)
            else:
                self._emit("order_cancelled", f"order {order.id} cancelled", order=order)
            self._remember_finished(order.id)

    def _set_order_status(self, order: Order, status: OrderStatus) -> None:
        value = status._value_
        if value != order.reported_status:
            was = STATUS_OF[order.reported_status]
            self._orders_by_status[order.reported_status] -= 1
            self._orders_by_status[value] += 1
            if status in TERMINAL_ORDER or was in TERMINAL_ORDER:
                self._fx.orders[order.id] = order
            if status in TERMINAL_ORDER and was not in TERMINAL_ORDER:
                self._progress.closed(order)
            elif was in TERMINAL_ORDER and status not in TERMINAL_ORDER:
                self._progress.opened(order)  # reopened by a manual retry
            order.reported_status = value

    def _remember_finished(self, order_id: str) -> None:
        """Keep memory bounded: forget the oldest finished orders beyond the cap."""
        self._finished[order_id] = None
        self._finished.move_to_end(order_id)
        while len(self._finished) > self.config.finished_order_history:
            old_id, _ = self._finished.popitem(last=False)
            old = self._orders.pop(old_id, None)
            if old is None:
                continue
            self._fx.forgotten.append(old_id)
            for task in old.tasks.values():
                self._tasks.pop(task.id, None)

    def _trim_completions(self, now: float) -> None:
        while self._completions and self._completions[0] < now - THROUGHPUT_WINDOW:
            self._completions.popleft()

    def _worker(self, worker_id: str) -> WorkerRecord:
        worker = self._workers.get(worker_id)
        if worker is None:
            raise UnknownWorker(worker_id)
        return worker

    def _order(self, order_id: str) -> Order:
        order = self._orders.get(order_id)
        if order is None:
            raise UnknownOrder(order_id)
        return order
