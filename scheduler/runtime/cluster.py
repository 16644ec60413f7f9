"""The threaded shell around the pure core: one lock, worker threads and a monitor thread.

Every stimulus follows the same path (`_call`): under the lock, ask the core and hand its
events to the journal and the subscribers' queues (both O(1) puts, so order is kept and
nothing slow runs under the lock); after the lock, write log lines, wait until the journal
has committed, then deliver dispatches. Handlers, disk writes and sockets never run under
the lock.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..demo.app import demo_app
from ..demo.handlers import Chaos
from ..engine import views, waits
from ..engine.config import ClusterConfig, RetryPolicy
from ..engine.core import SchedulerCore
from ..engine.cron import iso
from ..engine.errors import (
    Conflict,
    UnknownOrder,
    UnknownSchedule,
    UnknownWait,
    UnknownWorker,
    UnknownWorkflow,
)
from ..engine.events import LOG_LEVELS
from ..engine.fields import MessageError
from ..engine.model import ORDER_EVENT_CAP, Dispatch, Effects
from ..engine.orders import IDEMPOTENCY_KEY, SIGNAL, NewOrder, read_order, validate_order
from ..engine.records import OrderQuery
from ..engine.schedules import Mark, Schedule
from ..engine.states import OrderStatus
from ..engine.text import escape, escape_all
from ..engine.triage import group_failures
from ..engine.workflow import Workflow
from ..journal.base import CommitPending, Journal, NullJournal
from ..journal.recovery import recover_into
from ..journal.schema import StoreError
from ..journal.writer import Deposed
from ..steps.app import DEFAULT_WORKFLOW, App
from ..steps.context import Handler
from ..steps.failure import raised_at, traceback_of
from ..steps.run import check_outcome
from .alerts import AlertBook, AlertSettings, Change, Signals
from .ids import new_order_id
from .incidents import MAX_INCIDENTS, IncidentLog
from .order_index import OrderIndex
from .schedules import ScheduleRunner
from .search import OrderSearch
from .subscribers import Subscription
from .worker import Executor, LoopThread, ThreadWorker

log = logging.getLogger("orderflow")
_LEVELS = {name: getattr(logging, level) for name, level in LOG_LEVELS.items()}
# Events that change a step's controls (its pause, its limits): the journal keeps the result.
CONTROL_EVENTS = frozenset({"step_paused", "breaker_tripped", "step_resumed",
                            "step_limits_changed"})


def log_event(level: int, event: dict) -> None:
    """An event worth a line in the log, in one line. A failed attempt's line also names
    where it was raised; its whole traceback follows at DEBUG (`--log-level debug`), as it
    is in the order view and the journal."""
    where = raised_at(event.get("traceback"))
    if where is None:
        log.log(level, event["message"])
        return
    log.log(level, "%s (raised at %s)", event["message"], where)
    log.debug("traceback of order %s step %s attempt %s:\n%s", event["order_id"],
              event["step"], event["attempt"], event["traceback"])


class Cluster:
    """A scheduler with its workers. Thread-safe; see the README for the model."""

    def __init__(
        self,
        workers: int | None = None,
        heartbeat_interval: float | None = None,
        heartbeat_timeout: float | None = None,
        max_retries: int | None = None,
        *,
        config: ClusterConfig | None = None,
        app: App | None = None,
        handlers: Mapping[str, Handler] | None = None,
        workflows: Mapping[str, Workflow] | None = None,
        clock: Callable[[], float] = time.monotonic,
        chaos: Chaos | None = None,
        journal: Journal | None = None,
        tags: Iterable[str] = (),
        incidents_kept: int = MAX_INCIDENTS,
        alerts: AlertSettings | None = None,
        **settings: Any,
    ):
        config = config or ClusterConfig()
        named = {
            "workers": workers,
            "heartbeat_interval": heartbeat_interval,
            "heartbeat_timeout": heartbeat_timeout,
        }
        settings.update({k: v for k, v in named.items() if v is not None})
        if max_retries is not None:
            settings["retry"] = dataclasses.replace(
                settings.get("retry", config.retry), max_retries=max_retries
            )
        self.chaos = chaos or Chaos(seed=settings.get("seed", config.seed))
        if app is None and handlers is None:
            app = demo_app(self.chaos)  # the built-in demo: what `make run` shows
        elif app is not None and isinstance(app.chaos, Chaos) and app.chaos is not self.chaos:
            # An app built on the demo's handlers: its knobs are the ones to turn.
            if chaos is not None:
                app.chaos.update(**chaos.view())
            self.chaos = app.chaos
        if app is not None:
            app.check()
            # The app's step policies; settings given here override them step by step.
            settings["steps"] = {**app.policies, **settings.get("steps", config.steps)}
            handlers = app.handlers if handlers is None else handlers
            workflows = app.workflows if workflows is None else workflows
        self.app = app
        # Capability tags the thread workers of this cluster offer (e.g. "payments").
        self.tags = frozenset([tags] if isinstance(tags, str) else tags)
        self.config = dataclasses.replace(config, **settings)
        self.handlers = dict(handlers)
        self._clock = clock
        offset = time.time() - clock() if clock is time.monotonic else 0.0
        self._core = SchedulerCore(
            self.config, dict(workflows) if workflows else None, epoch_offset=offset
        )
        self._journal: Journal = journal or NullJournal()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._journal.attach(self._core, self._lock)
        # Deaths, drains, restarts and new leaders, kept whatever the events that follow
        # (incidents.py); a leadership term's restart is a failover.
        self._incidents = IncidentLog(incidents_kept, epoch=getattr(self._journal, "epoch", 0))
        # Failure spikes, unroutable steps, overdue orders, flapping workers, a failing
        # journal (alerts.py): fed the events, evaluated on the monitor thread.
        self._alerts = AlertBook(alerts)
        self._next_alerts = 0.0
        self._executors: dict[str, Executor] = {}
        self._subscriptions: list[Subscription] = []
        self._worker_numbers = itertools.count(1)
        # Orders accepted but not yet seen committed, with the journal's ticket, in ticket
        # order: from the core's acceptance (under the lock) until their commit. Not shown,
        # nor answered for (an idempotency key included), as if they existed.
        self._unconfirmed: dict[str, int] = {}
        self._unconfirmed_tickets: deque[tuple[int, list[str]]] = deque()  # the same, by ticket
        # The orders in memory as searches read them, without the lock (order_index.py).
        self._index = OrderIndex(self._core.wall)
        self._search = OrderSearch(
            self._core, self._lock, self._journal, self._index,
            view=lambda order: self._order_view(order, with_results=False),
            confirmed=lambda order_id: not self._unconfirmed or self._confirmed(order_id),
            max_searches=self.config.max_searches,
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._next_tick = 0.0
        self._monitor: LoopThread | None = None
        # The app's recurring schedules, fired by this cluster once started (runtime/schedules.py).
        self._schedules = ScheduleRunner(app.schedules if app is not None else {}, self)
        self._scheduler: LoopThread | None = None
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Cluster:
        """Recover from the journal (if any), then start the monitor and the workers."""
        if self._started:
            return self
        self._started = True
        state = self._journal.recover(
            finished_orders=self.config.finished_order_history,
            recent_events=self.config.event_history,
        )
        self._schedules.restore([] if state is None else state.schedules, self._wall())
        if state is not None:
            with self._lock:
                self._incidents.load(state.incidents)
                fx = recover_into(self._core, state, now=self._clock())
                in_memory = views.orders(self._core)
                for order in in_memory.values():
                    self._index.add(order)
                # An unfinished order of a workflow this app lacks stays in the journal only.
                self._search.unfinished_all_in_memory = all(
                    record.id in in_memory for record in state.orders
                    if not record.finished)
                ticket = self._publish(fx)
            self._carry_out(fx, ticket, durable=True)
        self._monitor = LoopThread("orderflow-monitor", self._monitor_once, self._stop)
        self._monitor.start()
        if self._schedules.schedules:
            self._scheduler = LoopThread("orderflow-schedules", self._schedules_once,
                                         self._stop)
            self._scheduler.start()
        for _ in range(self.config.workers):
            self.add_worker()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every thread this cluster started; in-flight attempts are left to recovery."""
        self._stop.set()
        self._wake.set()
        self.chaos.release()  # the demo's simulated stuck handlers let their threads end
        with self._lock:
            executors = list(self._executors.values())
        for executor in executors:
            executor.stop()
        threads_ok = all(e.join(timeout) for e in executors)
        if self._monitor is not None:
            self._monitor.join(timeout)
        if self._scheduler is not None:
            self._scheduler.join(timeout)
        for sub in self._subscriptions:
            sub.close(timeout)
        self._journal.close()
        if not threads_ok:
            log.warning("some worker threads were still inside a handler after %.1fs", timeout)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ commands

    def submit(
        self,
        data: dict,
        workflow: str | None = None,
        *,
        order_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Accept an order; returns its id once it is recorded (durably, with a journal).
        Conflict if its idempotency key already names an order."""
        order_id, created = self.submit_idempotent(
            data, workflow, order_id=order_id, idempotency_key=idempotency_key)
        if not created:
            raise Conflict(f"idempotency key already used by {order_id}")
        return order_id

    def submit_idempotent(
        self,
        data: Any,
        workflow: str | None = None,
        *,
        order_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[str, bool]:
        """(the order's id, whether it was created now): accept an order, unless its
        idempotency key already names one, whose id is answered instead. The data, its
        priority and the key are checked once (`read_order`), a bad order being refused
        even when its key is known; the key is looked up once (memory, then the journal)."""
        return self._submit_new(read_order(data, workflow, idempotency_key), order_id)

    def _submit_new(self, order: NewOrder, order_id: str | None,
                    also: Callable[[str, float], Effects] | None = None) -> tuple[str, bool]:
        """`submit_idempotent` of an order read already; `also(order_id, now)` runs under
        the lock right after the core accepted it, its effects in the same commit."""
        key = order.idempotency_key
        if key is not None:
            earlier = self.find_by_idempotency_key(key)
            if earlier is not None:
                return earlier, False
        self._journal.check()  # refuse before changing anything, not after
        order_id = order_id or new_order_id()
        try:
            def accept(now: float) -> Effects:
                later = (None if order.not_before is None
                         else order.not_before - self._core.epoch_offset)
                fx = self._core.submit(
                    order_id, order.data, now=now, workflow=order.workflow or DEFAULT_WORKFLOW,
                    idempotency_key=key, priority=order.priority, not_before=later)
                return fx if also is None else fx.absorb(also(order_id, now))

            self._accept([order_id], accept)
        except Conflict:
            # Another submit with the same key was accepted between the lookup and this one.
            earlier = None if key is None else self.find_by_idempotency_key(key)
            if earlier is None:
                raise
            return earlier, False
        return order_id, True

    def submit_many(self, orders: list[dict], workflow: str | None = None) -> list[str]:
        """Accept many orders at once, all or none, with a single durable commit."""
        cleaned = [(new_order_id(), validate_order(data)) for data in orders]
        workflow = workflow or DEFAULT_WORKFLOW
        self._journal.check()
        names = views.workflow_names(self._core)
        if workflow not in names:
            known = ", ".join(names)
            raise UnknownWorkflow(f"unknown workflow {workflow!r} (known: {known})")
        self._accept([order_id for order_id, _ in cleaned],
                     lambda now: self._core.submit_many(cleaned, now=now, workflow=workflow))
        return [order_id for order_id, _ in cleaned]

    def _accept(self, ids: list[str], accept: Callable[[float], Effects]) -> None:
        """Run `accept(now)` (the core's submit) under one lock hold and return once
        durable. Until the commit the orders `ids` are not shown or answered for
        (`_unconfirmed`); if it fails, they stay queued for the journal (the writer keeps
        trying) and hidden until they are committed: no acknowledgement before
        durability, the idempotency key's included."""
        with self._lock:
            merged = accept(self._clock())
            ticket = self._publish(merged)
            if ticket is not None:
                self._forget_committed()
                self._unconfirmed.update((order_id, ticket) for order_id in ids)
                self._unconfirmed_tickets.append((ticket, ids))
        self._carry_out(merged, ticket, durable=True)

    def _forget_committed(self) -> None:
        """Under the lock: drop the entries the journal has committed since. Tickets are
        taken in order and commit in that order, so only the oldest need a look."""
        tickets = self._unconfirmed_tickets
        while tickets and self._journal.committed(tickets[0][0]):
            for order_id in tickets.popleft()[1]:
                self._unconfirmed.pop(order_id, None)

    def _confirmed(self, order_id: str) -> bool:
        """False for an accepted order that is not committed yet. Call under the lock."""
        ticket = self._unconfirmed.get(order_id)
        if ticket is None:
            return True
        if not self._journal.committed(ticket):
            return False
        # Committed since: shown and answered from now on.
        self._forget_committed()
        return True

    def _require_confirmed(self, order_id: str) -> None:
        if not self._confirmed(order_id):
            raise CommitPending(
                f"order {order_id} is not committed to the journal yet; ask again in a moment"
            )

    def find_by_idempotency_key(self, key: str) -> str | None:
        """The order submitted with `key`: remembered in memory, or found in the journal.

        A key is answered only once its order is committed. If its commit is under way
        (the first request still waits for it), this waits for that commit, up to
        `key_commit_wait` seconds; CommitPending (503, Retry-After) if it is not committed
        by then or its commit failed (the writer keeps trying: the key answers for that
        order once it commits, or is free again if the server ends first and the order
        with it), Deposed if this server stopped leading meanwhile."""
        with self._lock:
            found = views.idempotency_owner(self._core, key)
            ticket = None if found is None else self._unconfirmed.get(found)
        if found is None:
            return self._journal.find_idempotency_key(key)
        if ticket is None:
            return found
        try:
            committed = self._journal.wait(ticket, self.config.key_commit_wait)
        except Deposed:
            raise
        except StoreError as exc:
            raise CommitPending(
                f"order {found} of this Idempotency-Key is not committed: {exc}; the key "
                "answers for it once the journal has written it"
            ) from None
        if not committed:
            raise CommitPending(
                f"order {found} of this Idempotency-Key is still being committed (waited "
                f"{self.config.key_commit_wait:g} s); post again with the same key"
            )
        return found

    def add_worker(self, worker_id: str | None = None) -> str:
        """Start a thread worker that joins the ring and takes work at once."""
        worker_id = worker_id or self.new_worker_id("w")
        executor = ThreadWorker(
            worker_id, self, self.handlers, self.config.heartbeat_interval, self.config.slots,
            tags=self.tags, definitions=self._core.definitions.current_keys(),
        )
        return self.join_worker(worker_id, executor)

    def new_worker_id(self, prefix: str) -> str:
        """A worker id not used in this cluster's lifetime so far."""
        with self._lock:
            while True:
                worker_id = f"{prefix}-{next(self._worker_numbers)}"
                if (views.membership(self._core, worker_id) is None
                        and worker_id not in self._executors):
                    return worker_id

    def join_worker(self, worker_id: str, executor: Executor, meta: dict | None = None) -> str:
        """Put any executor on the ring: a thread worker, or a remote process's connection.

        The executor has `slots`; it gets `deliver(dispatch)` for each assignment,
        `cancel(dispatch)` for an attempt that timed out, `stop()` when the worker leaves
        (drained or declared dead) and `kill()` for a simulated or real crash. It reports
        back through `begin_task`, `report` and `beat`.
        """
        with self._lock:
            if worker_id in self._executors:
                raise Conflict(f"worker {worker_id} is already running")
            self._executors[worker_id] = executor
        try:
            self._call(
                self._core.add_worker, worker_id, kind=executor.kind, meta=meta or {},
                slots=executor.slots, steps=executor.steps, tags=executor.tags,
                # (an executor of a test or an older embedding may not say: any)
                definitions=getattr(executor, "definitions", None),
            )
        except Exception:
            with self._lock:
                self._executors.pop(worker_id, None)
            raise
        # Only now: a heartbeat sent before the core knew the worker would be told
        # "unknown", and the worker would stop itself right after joining.
        executor.start()
        return worker_id

    def kill_worker(self, worker_id: str) -> None:
        """Simulate a crash. The cluster finds out only through missing heartbeats."""
        with self._lock:
            self._require_member(worker_id)
            executor = self._executors.get(worker_id)
        if executor is not None:
            executor.kill()

    def worker_lost(self, worker_id: str, reason: str) -> None:
        """The shell knows a worker is gone (its connection closed for good): declare it
        dead now instead of waiting out the heartbeat timeout."""
        self._call(self._core.worker_lost, worker_id, reason=reason)

    def drain_worker(self, worker_id: str) -> None:
        self._call(self._core.drain_worker, worker_id)

    def cancel_order(self, order_id: str) -> None:
        record = self._forgotten(order_id)
        if record is not None:
            # Only finished orders are forgotten, and a finished order cannot be cancelled.
            raise Conflict(f"order {order_id} is {record.status} and cannot be cancelled")
        self._call(self._core.cancel_order, order_id)

    def signal(self, order_id: str, name: str, body: Any = None, *, key: str | None = None,
               who: str | None = None) -> str:
        """Deliver the signal `name` to an order's wait (`body`: `{"data": ...}`, read with
        SIGNAL; `key`: the sender's Idempotency-Key; `who`: an operator delivering it by
        hand). Durable when it returns. Returns what became of it (waits.DELIVERED, KEPT or
        REPEATED); Conflict (recorded) when the wait had its signal or is over, UnknownWait
        when the order never waits for `name`, UnknownOrder."""
        data = SIGNAL.read({} if body is None else body).get("data")
        try:
            size = len(json.dumps(data))
        except (TypeError, ValueError):
            raise MessageError("data must be a JSON value") from None
        if size > self.config.max_result_bytes:
            raise MessageError(f"data is {size} bytes as JSON; at most "
                               f"{self.config.max_result_bytes} are kept")
        if key is not None:
            key = IDEMPOTENCY_KEY.read(key, MessageError)
        record = self._forgotten(order_id)
        if record is not None:
            # Only finished orders are forgotten: no wait of theirs takes a signal now.
            workflow = views.workflows(self._core).get(record.workflow)
            if workflow is None or name not in workflow.waits:
                has = ", ".join(sorted(workflow.waits)) if workflow else "unknown"
                raise UnknownWait(f"order {order_id} never waits for signal {name!r}; its "
                                  f"waits: {has or 'none'}")
            raise Conflict(f"order {order_id} is {record.status}: signal {name} refused")
        with self._lock:
            self._require_confirmed(order_id)
            fx, outcome = self._core.signal(order_id, name, data, now=self._clock(), key=key,
                                            who=None if who is None else escape(who))
            ticket = self._publish(fx)
        self._carry_out(fx, ticket, durable=True)
        if outcome == waits.REFUSED:
            refused = next(e for e in reversed(fx.events) if e["type"] == "signal_refused")
            raise Conflict(refused["message"])
        return outcome

    def retry_order(self, order_id: str) -> None:
        """Re-run a failed order from its failed step, even one only the journal still has."""
        record = self._forgotten(order_id)
        if record is not None:
            if record.status != "failed":
                raise Conflict(
                    f"order {order_id} is {record.status}; only a failed order can be retried"
                )
            with self._lock:
                if views.find_order(self._core, order_id) is None:
                    self._core.adopt(record)  # back into memory, to run again
        self._call(self._core.retry_order, order_id)

    def rerun_order(self, order_id: str, step: str, *, new_keys: bool = False) -> list[str]:
        """Run a finished order again from `step`, even one only the journal still has
        (engine/rerun.py): under the same idempotency keys unless `new_keys`. Durable when
        it returns; the steps that run again. Conflict, UnknownStep, UnknownOrder."""
        record = self._forgotten(order_id)
        if record is not None:
            with self._lock:
                if views.find_order(self._core, order_id) is None:
                    self._core.adopt(record)  # back into memory, to run again
        with self._lock:
            fx, again = self._core.rerun_order(order_id, step, now=self._clock(),
                                               new_keys=new_keys)
            ticket = self._publish(fx)
        self._carry_out(fx, ticket, durable=True)
        return again

    def replay_order(self, order_id: str, *, pinned: bool = False) -> str:
        """Submit a copy of an order (its data, priority and workflow) as a new order with a
        new id, on its workflow's current definition, or with `pinned` on the one the
        original was pinned to; returns the new id once durable. UnknownOrder;
        UnknownWorkflow when the running app no longer has its workflow."""
        original = self.get_order(order_id)
        workflow = original["workflow"]
        if pinned and original.get("version"):
            workflow = f"{workflow}@{original['version']}"
        order_id = new_order_id()
        self._journal.check()
        data, priority = dict(original["data"]), original.get("priority") or 0
        self._accept([order_id], lambda now: self._core.submit(
            order_id, data, now=now, workflow=workflow, priority=priority))
        return order_id

    def migrate_orders(self, source: str, target: str, *, run_added: bool = False,
                       dry_run: bool = False, order_ids: list[str] | None = None) -> list[dict]:
        """Move the unfinished orders of definition `source` (or those of `order_ids`) to
        `target` (engine/migrate.py), durable when it returns; with `dry_run`, only say
        what would happen. Each order's plan; MigrationRefused (nothing moved) or
        UnknownDefinition, UnknownOrder."""
        with self._lock:
            fx, plans = self._core.migrate_orders(
                source, target, now=self._clock(), run_added=run_added, dry_run=dry_run,
                order_ids=order_ids)
            ticket = self._publish(fx)
        self._carry_out(fx, ticket, durable=not dry_run)
        return [plan.view() for plan in plans]

    # ------------------------------------------------------------------ step controls

    def pause_step(self, step: str, who: str, why: str = "") -> None:
        """Hold every task of `step` that has not started, saying who paused it and why;
        attempts on workers finish (engine/pauses.py). Durable when it returns: a restart
        or a failover keeps it. UnknownStep, or Conflict if it is paused already."""
        self._call(self._core.pause_step, step, escape(who), escape(why), durable=True)

    def resume_step(self, step: str, who: str) -> None:
        """Put the tasks a pause held back in line (Conflict if `step` is not paused)."""
        self._call(self._core.resume_step, step, escape(who), durable=True)

    def set_step_limits(self, step: str, who: str, *, max_in_flight: int | None,
                        rate: float | None) -> None:
        """Change a step's concurrency and rate limits while it runs (None: no limit); kept
        across restarts. ConfigError for a value out of range, changing nothing."""
        self._call(self._core.set_limits, step, escape(who), max_in_flight=max_in_flight,
                   rate=rate, durable=True)
        with self._lock:
            self.config = self._core.config  # (workflow descriptions show the new limits)

    def steps(self) -> list[dict]:
        """Every step: its limits, attempts in flight, ready and held tasks, its pause."""
        with self._lock:
            return views.steps(self._core)

    def _forgotten(self, order_id: str):
        """The journal's record of an order no longer in memory (None if it is in memory, or
        unknown: the command itself then reports it)."""
        with self._lock:
            if views.find_order(self._core, order_id) is not None:
                return None
        return self._journal.load_order(order_id)

    def subscribe(
        self,
        callback: Callable[[list[dict]], None],
        maxsize: int = 10_000,
        name: str = "subscriber",
    ) -> Subscription:
        """Call `callback(events)` on a thread of its own; it can never stall the scheduler."""
        sub = Subscription(callback, maxsize, name)
        with self._lock:
            self._subscriptions.append(sub)
        sub.start()
        return sub

    def unsubscribe(self, sub: Subscription, timeout: float = 5.0) -> None:
        with self._lock:
            if sub in self._subscriptions:
                self._subscriptions.remove(sub)
        sub.close(timeout)

    # ------------------------------------------------------------------ queries

    @property
    def journal(self) -> Journal:
        return self._journal

    def workflow_names(self) -> list[str]:
        return views.workflow_names(self._core)

    def describe_workflows(self) -> list[dict]:
        """Each workflow with its DAG and its steps' policies (`GET /api/workflows`)."""
        known = views.workflows(self._core)
        if self.app is not None and set(self.app.workflows) == set(known):
            return self.app.describe(self.config.steps)  # overrides given to the cluster win
        return [
            {"name": name, "version": wf.version, "steps": [
                {"name": s, "deps": list(wf.deps[s]), "tags": sorted(self.config.policy(s).tags)}
                for s in wf.steps], "compensations": dict(wf.compensations)}
            for name, wf in sorted(known.items())
        ]

    def workflows(self) -> dict[str, dict[str, list[str]]]:
        """Each workflow's steps (in a topological order) with the steps each waits for."""
        return {
            name: {step: list(wf.deps[step]) for step in wf.steps}
            for name, wf in sorted(views.workflows(self._core).items())
        }

    def get_order(self, order_id: str) -> dict:
        """An order as it is now; one forgotten from memory is read from the journal."""
        with self._lock:
            order = views.find_order(self._core, order_id)
            if order is not None:
                self._require_confirmed(order_id)
                return self._order_view(order)
        found = self._journal.find_order(order_id)
        if found is None:
            raise UnknownOrder(order_id)
        return found

    def orders(
        self, status: str | None = None, limit: int = 50, before: int | None = None
    ) -> list[dict]:
        """Newest first; `before` is an order's `number`, for paging."""
        with self._lock:
            out = []
            for order in views.newest_first(self._core):
                if before is not None and order.number >= before:
                    continue
                if status is not None and order.reported_status != status:
                    continue
                if self._unconfirmed and not self._confirmed(order.id):
                    continue
                out.append(self._order_view(order, with_results=False))
                if len(out) >= limit:
                    break
            return out

    def search_orders(
        self, query: OrderQuery, limit: int = 50, before: int | None = None
    ) -> list[dict]:
        """Orders matching `query`, newest first, numbered below `before`: those in memory
        (every unfinished one and the latest finished ones) as they are now, the rest from
        the journal, merged by number. Never scans under the scheduler lock (search.py);
        SearchBusy (503) when `max_searches` searches with filters run already."""
        return self._search.search(query, limit, before)

    def failures(self, max_ids: int) -> dict:
        """Failed orders in memory grouped by the step that failed and its reason (the
        biggest groups first), each with up to `max_ids` order ids, newest first."""
        with self._lock:
            failed = views.failed_orders(self._core)
        failed.sort(key=lambda f: -f[3])
        return {"groups": group_failures(failed, max_ids), "total": len(failed)}

    def record_action(
        self, who: str, action: str, what: str, *, target: str | None = None,
        worker: str | None = None, order_id: str | None = None, **details: Any,
    ) -> None:
        """Audit: what an operator did becomes an `operator_action` event (kept, journaled
        and logged like any other). Its text is escaped where a journal could not hold it
        (engine/text.py): who asked is whatever the web layer could tell."""
        self._call(self._core.operator_action, escape(who), action, escape(what),
                   target=None if target is None else escape(target),
                   worker=worker, order_id=order_id, **escape_all(details))

    def story(self, order_id: str) -> list[dict]:
        """Every event of one order, in order (capped per order in memory)."""
        with self._lock:
            order = views.find_order(self._core, order_id)
            if order is not None and len(order.events) < ORDER_EVENT_CAP:
                return list(order.events)
        found = self._journal.story(order_id)
        if not found:
            if order is not None:
                return list(order.events)
            raise UnknownOrder(order_id)
        return found

    def workers(self) -> list[dict]:
        with self._lock:
            return views.worker_views(self._core, self._clock())

    def incidents(self) -> list[dict]:
        """The latest incidents (a worker's death, a drain, a restart, a new leader), newest
        first, each with what it caused (see incidents.py)."""
        with self._lock:
            return self._incidents.views()

    @property
    def incidents_kept(self) -> int:
        """How many incidents are kept (the newest)."""
        return self._incidents.limit

    def incidents_since(self, version: int) -> tuple[int, list[dict]]:
        """(the incident log's version, the incidents changed after `version`)."""
        with self._lock:
            return self._incidents.changed_since(version)

    def ring(self) -> dict:
        with self._lock:
            return views.ring_view(self._core)

    def events(self, after: int = 0, limit: int | None = None) -> list[dict]:
        with self._lock:
            return views.events_after(self._core, after, limit)

    def event_bounds(self) -> tuple[int, int]:
        """(oldest seq held in memory, newest seq): a reader behind the oldest has a gap."""
        with self._lock:
            return views.event_bounds(self._core)

    def stats(self) -> dict:
        with self._lock:
            numbers = views.stats(self._core, self._clock())
            # What is wrong now (alerts.py): the page's banners.
            numbers["alerts"] = self._alerts.active()
            # Seconds the journal has failed to commit (0 while it commits).
            numbers["journal_stalled"] = round(self._journal.stalled_for(time.monotonic()), 3)
            return numbers

    def wait_until_idle(self, timeout: float = 10.0) -> bool:
        """True once no order is pending or in progress; False if `timeout` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: views.active_orders(self._core) == 0, timeout)

    def validate(self) -> None:
        with self._lock:
            self._core.validate()

    # ------------------------------------------------------------------ worker port

    def begin_task(self, worker_id: str, dispatch: Dispatch) -> dict | None:
        """Start a task taken from a worker's queue: its handler context, or None if the
        lease is stale (the task moved or was cancelled meanwhile)."""
        with self._lock:
            fx, context = self._core.start_task(
                dispatch.task_id, worker_id, dispatch.lease, self._clock()
            )
            ticket = self._publish(fx)
        self._carry_out(fx, ticket)
        return context

    def report(
        self,
        worker_id: str,
        dispatch: Dispatch,
        ok: bool,
        value: object,
        following: Dispatch | None = None,
    ) -> dict | None:
        """Report an attempt's outcome; with `following`, also start that next task under
        the same lock hold (one hand-over instead of two) and return its context."""
        started = self.report_many(
            worker_id, [(dispatch, ok, value)], [following] if following is not None else []
        )
        return started[0][1] if started else None

    def report_many(
        self,
        worker_id: str,
        outcomes: list[tuple[Dispatch, bool, object]],
        following: list[Dispatch],
        take: int = 0,
    ) -> list[tuple[Dispatch, dict | None]]:
        """Report several attempts' outcomes (an event loop's, finished together) and start
        the `following` tasks (already queued at the worker), all under one lock hold.
        `take`: also start up to that many of the tasks this report hands to this worker,
        instead of delivering them (the reporter has the slots for them); not with a
        persistent journal, whose writer hands them over once the report is durable.
        Returns each task started, with its context (None for a stale lease): one
        hand-over per task rather than two, and no thread woken for the next task."""
        core = self._core
        config = self.config
        # Outside the lock: bounding an outcome serialises the result once.
        checked = [
            (dispatch, *check_outcome(ok, value, config.max_result_bytes, config.max_error_chars,
                                      config.max_traceback_chars))
            for dispatch, ok, value in outcomes
        ]
        with self._lock:
            now = self._clock()
            fx = Effects()
            for dispatch, ok, value in checked:
                if ok:
                    fx.absorb(core.task_succeeded(
                        dispatch.task_id, worker_id, dispatch.lease, value, now
                    ))
                else:
                    fx.absorb(core.task_failed(
                        dispatch.task_id, worker_id, dispatch.lease, str(value), now,
                        traceback=traceback_of(value),
                    ))
            starting = list(following)
            if take and not self._journal.persistent:
                kept = []
                for dispatch in fx.dispatches:
                    if take and dispatch.worker_id == worker_id:
                        starting.append(dispatch)
                        take -= 1
                    else:
                        kept.append(dispatch)
                fx.dispatches = kept
            started = []
            for dispatch in starting:
                fx_next, context = core.start_task(dispatch.task_id, worker_id, dispatch.lease, now)
                fx.absorb(fx_next)
                started.append((dispatch, context))
            ticket = self._publish(fx)
        self._carry_out(fx, ticket)
        return started

    def beat(self, worker_id: str) -> bool:
        # Without the lock on purpose (see SchedulerCore.heartbeat).
        return self._core.heartbeat(worker_id, self._clock())

    def attempts_ended(self, worker_id: str, ended: list[tuple[str, int]]) -> None:
        """Handlers of a worker that left have returned, as (task id, lease): a step's
        limit no longer counts them (see SchedulerCore.attempts_ended)."""
        if ended:
            self._call(self._core.attempts_ended, worker_id, ended)

    def workers_report(self, worker_ids: Iterable[str],
                       running: Iterable[tuple[str, str, int]]) -> None:
        """A worker process registered again and said what it still runs, as (worker id,
        task id, lease), under the ids it has held (see SchedulerCore.workers_report)."""
        self._call(self._core.workers_report, list(worker_ids), list(running))

    def workers_gone(self, worker_ids: Iterable[str]) -> None:
        """The process behind these worker ids is gone (reaped): nothing runs under them."""
        self._call(self._core.workers_gone, list(worker_ids))

    # ------------------------------------------------------------------ internals

    def _call(
        self, method: Callable[..., Effects], *args: Any, durable: bool = False, **kwargs: Any
    ) -> Effects:
        """Run one stimulus. `durable`: return only once its events are committed."""
        with self._lock:
            fx = method(*args, now=self._clock(), **kwargs)
            ticket = self._publish(fx)
        self._carry_out(fx, ticket, durable)
        return fx

    def _publish(self, fx: Effects) -> object:
        """Under the lock: queue the events for the journal and subscribers, in seq order.

        With a persistent journal, dispatches are handed to workers by the journal's writer
        right after the commit: a step never runs on a submission or a success that is not
        yet durable (however long the journal takes to become writable again), and the
        reporting thread does not wait.
        """
        if views.active_orders(self._core) == 0:
            self._idle.notify_all()
        if fx.orders or fx.moves or fx.forgotten:
            self._index.apply(fx)
        if not fx.events and not fx.moves:
            return None
        self._alerts.observe(fx.events)
        if self._incidents.observe(fx.events) and self._journal.persistent:
            self._journal.note_incidents(*self._incidents.take_unsaved())  # same commit
        for sub in self._subscriptions:
            sub.offer(fx.events)
        if not self._journal.persistent:
            return None
        controlled = {e["step"] for e in fx.events if e["type"] in CONTROL_EVENTS}
        if controlled:
            self._journal.note_controls([views.control_view(self._core, s) for s in controlled])
        if fx.dispatches:
            dispatches = fx.dispatches
            fx.dispatches = []
            return self._journal.record(fx, lambda: self._deliver(dispatches))
        return self._journal.record(fx)

    def _carry_out(self, fx: Effects, ticket: object, durable: bool = False) -> None:
        for event in fx.events:
            level = _LEVELS.get(event["type"])
            if level is not None:
                log_event(level, event)
        if fx.dispatches:
            self._deliver(fx.dispatches)
        for dispatch in fx.cancels:
            executor = self._executors.get(dispatch.worker_id)
            if executor is not None:
                executor.cancel(dispatch)
        for dispatch in fx.abandons:
            executor = self._executors.get(dispatch.worker_id)
            if isinstance(executor, ThreadWorker):  # the core abandons only thread workers'
                executor.abandon(dispatch)
        for worker_id in fx.departed:
            executor = self._executors.pop(worker_id, None)
            if executor is not None:
                executor.stop()
        if fx.wake_at is not None and fx.wake_at < self._next_tick:
            self._wake.set()
        if ticket is not None and durable:
            # The caller's acknowledgement (an accepted order) waits until it is durable.
            self._journal.wait(ticket)

    def _deliver(self, dispatches: list[Dispatch]) -> None:
        """Hand each worker its dispatches; one that takes them together (a remote worker:
        one message instead of one per task) gets them in one call."""
        by_worker: dict[str, list[Dispatch]] = {}
        for dispatch in dispatches:
            by_worker.setdefault(dispatch.worker_id, []).append(dispatch)
        for worker_id, batch in by_worker.items():
            executor = self._executors.get(worker_id)
            if executor is None:
                continue
            deliver_many = getattr(executor, "deliver_many", None)
            if deliver_many is not None and len(batch) > 1:
                deliver_many(batch)
            else:
                for dispatch in batch:
                    executor.deliver(dispatch)

    def _monitor_once(self) -> None:
        fx = self._call(self._core.tick)
        interval = self.config.heartbeat_interval / 4
        now = self._clock()
        if now >= self._next_alerts:
            self._next_alerts = now + self._alerts.settings.every
            self._check_alerts(now)
        wait = interval if fx.wake_at is None else min(interval, max(0.0, fx.wake_at - now))
        self._next_tick = now + wait
        self._wake.wait(wait)
        self._wake.clear()

    # ------------------------------------------------------------------ schedules

    def _wall(self) -> float:
        return self._core.wall(self._clock())

    def _schedules_once(self) -> None:
        """One look at the schedules; then wait until the next is due (at most a second, so
        a clock that jumps is noticed), or until the cluster stops."""
        due_at = 0.0  # an unexpected error (logged by the loop thread): look again in 1 s
        try:
            due_at = self._schedules.loop(self._wall())
        finally:
            wait = 1.0 if not due_at else min(1.0, max(0.0, due_at - self._wall()))
            self._stop.wait(wait)

    def run_schedules(self, now: float | None = None) -> float | None:
        """One look at the schedules at `now` (wall clock; default: the clock's): what the
        schedule thread does, for a test on a fake clock. Returns when to look again."""
        return self._schedules.loop(self._wall() if now is None else now)

    def schedules(self) -> list[dict]:
        """Each schedule with its cron, workflow, next time and last run."""
        return self._schedules.views(self._wall())

    def schedule(self, name: str) -> dict:
        """One schedule's view; UnknownSchedule if the app declares none of that name."""
        for view in self.schedules():
            if view["name"] == name:
                return view
        raise UnknownSchedule(name)

    def schedule_fire(self, schedule: Schedule, at: float, mark: Mark,
                      now: float) -> tuple[str, bool]:
        """Submit `schedule`'s order for its time `at` (its key names both); the mark it
        moves to is journaled in the same commit as the order, with a `schedule_fired`
        event. (the order's id, whether it was created now)."""
        order = read_order(schedule.data, schedule.workflow, schedule.key(at))

        def fired(order_id: str, t: float) -> Effects:
            self._journal.note_schedules([mark.fired(at, order_id, now).view()])
            return self._core.schedule_event(
                "schedule_fired", schedule.name,
                f"schedule {schedule.name} fired for {iso(at, schedule.tz)}: order {order_id}",
                t, order_id=order_id, at=at)

        return self._submit_new(order, None, fired)

    def schedule_noted(self, kind: str, schedule: Schedule, mark: Mark, message: str,
                       **details: object) -> None:
        """A schedule added or its missed times skipped: an event, and its mark journaled
        in the same commit (durable before this returns)."""

        def noted(now: float) -> Effects:
            self._journal.note_schedules([mark.view()])
            return self._core.schedule_event(kind, schedule.name, message, now, **details)

        self._journal.check()
        self._call(noted, durable=True)

    def _check_alerts(self, now: float) -> None:
        """Evaluate the alerts; each one raised or cleared is one event."""
        wall = self._core.wall(now)
        count, earliest = self._index.overdue(wall - self._alerts.settings.overdue_after)
        stalled = self._journal.stalled_for(time.monotonic())  # the writer's own clock
        done: list[tuple[Effects, object]] = []
        with self._lock:
            signals = Signals(unroutable=views.unroutable(self._core), overdue=count,
                              oldest_age=0.0 if earliest is None else wall - earliest,
                              journal_stalled=stalled)
            for change in self._alerts.evaluate(signals, wall):
                fx = self._announce_alert(change, now)
                done.append((fx, self._publish(fx)))
        for fx, ticket in done:
            self._carry_out(fx, ticket)

    def _announce_alert(self, change: Change, now: float) -> Effects:
        alert = change.alert
        fx = self._core.alert_changed(alert.name, alert.subject, change.raised, alert.message,
                                      now, cause=None if change.raised else alert.seq)
        if change.raised:
            alert.seq = fx.events[0]["seq"]
        return fx

    def alerts(self) -> list[dict]:
        """The active alerts, oldest first (the page's banners, `/metrics`)."""
        with self._lock:
            return self._alerts.active()

    def _require_member(self, worker_id: str) -> None:
        status = views.membership(self._core, worker_id)
        if status is None:
            raise UnknownWorker(worker_id)
        if status not in ("alive", "draining"):
            raise Conflict(f"worker {worker_id} is already {status}")

    def _order_view(self, order, with_results: bool = True) -> dict:
        return views.order_view(self._core, order, with_results)


__all__ = ["Cluster", "OrderStatus", "RetryPolicy"]
