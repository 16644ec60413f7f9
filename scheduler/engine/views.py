"""What the core shows: read-only views of its state, for the shell and for tests.

The core's state (its orders, tasks, workers, workflows, counters) is its own: nothing
outside the engine reads those attributes. The shell calls these functions under its lock
and gets plain values back (dicts, lists, numbers), or a read-only mapping of the core's
records to look one up. They never change a decision; the one cost they add to the
per-step path is none, since the path does not call them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from .core import THROUGHPUT_WINDOW
from .model import Order, Task, WorkerRecord
from .states import S
from .workflow import Workflow

if TYPE_CHECKING:
    from .core import SchedulerCore
    from .ring import HashRing


# ------------------------------------------------------------------ records, looked up

def orders(core: SchedulerCore) -> Mapping[str, Order]:
    """The orders in memory by id, oldest submitted first (unless `adopted_out_of_order`)."""
    return MappingProxyType(core._orders)


def find_order(core: SchedulerCore, order_id: str) -> Order | None:
    """The order in memory with this id, or None (forgotten, or never submitted)."""
    return core._orders.get(order_id)


def tasks(core: SchedulerCore) -> Mapping[str, Task]:
    """The tasks of the orders in memory, by task id ("<order id>:<step>")."""
    return MappingProxyType(core._tasks)


def workers(core: SchedulerCore) -> Mapping[str, WorkerRecord]:
    """Every worker the core knows: members, and the latest departed ones (for display)."""
    return MappingProxyType(core._workers)


def workflows(core: SchedulerCore) -> Mapping[str, Workflow]:
    """The workflows orders may name, by name."""
    return MappingProxyType(core._workflows)


def workflow_names(core: SchedulerCore) -> list[str]:
    return sorted(core._workflows)


def ring(core: SchedulerCore) -> HashRing:
    """The placement ring (its members are the workers that take new work). Read only."""
    return core._ring


# ------------------------------------------------------------------ numbers

def counters(core: SchedulerCore) -> dict[str, int]:
    """The cumulative counters (retries, reassignments, moves, ...): a copy."""
    return dict(core._counters)


def orders_by_status(core: SchedulerCore) -> dict[str, int]:
    """Every order ever submitted by its reported status (forgotten ones included): a copy."""
    return dict(core._orders_by_status)


def tasks_by_state(core: SchedulerCore) -> dict[str, int]:
    return dict(core._tasks_by_state)


def totals(core: SchedulerCore) -> dict:
    """What a journal keeps to resume from (a `ResumePoint`'s numbers), as they are now."""
    return {
        "counters": dict(core._counters),
        "orders_by_status": dict(core._orders_by_status),
        "tasks_by_state": dict(core._tasks_by_state),
        "seq": core._seq,
        "order_number": core._order_number,
        "lease_counter": core._lease_counter,
    }


def last_seq(core: SchedulerCore) -> int:
    """The seq of the latest event (0 before any)."""
    return core._seq


def order_number(core: SchedulerCore) -> int:
    """How many orders were ever submitted (the latest order's number)."""
    return core._order_number


def lease_counter(core: SchedulerCore) -> int:
    return core._lease_counter


def active_orders(core: SchedulerCore) -> int:
    """Orders pending or in progress."""
    return core._active_orders


def adopted_out_of_order(core: SchedulerCore) -> bool:
    """True once an old order came back from the journal: `orders` is then no longer in
    submission order."""
    return core._adopted_out_of_order


def idempotency_owner(core: SchedulerCore, key: str) -> str | None:
    """The order in memory's idempotency memory that `key` was submitted with, or None."""
    return core._idempotency.get(key)


def idempotency_keys(core: SchedulerCore) -> list[str]:
    """The keys remembered in memory, oldest first."""
    return list(core._idempotency)


def progress(core: SchedulerCore):
    """The running counts of unfinished work (progress.Progress). Read only."""
    return core._progress


# ------------------------------------------------------------------ events

def events_after(core: SchedulerCore, seq: int, limit: int | None = None) -> list[dict]:
    """Events held in memory with a seq above `seq`, oldest first, at most `limit`."""
    return core._history.after(seq, limit)


def event_bounds(core: SchedulerCore) -> tuple[int, int]:
    """(oldest seq held in memory, newest seq): a reader behind the oldest has a gap."""
    return core._history.first_seq, core._seq


# ------------------------------------------------------------------ orders

def newest_first(core: SchedulerCore) -> Iterable[Order]:
    """The orders in memory, newest (highest number) first."""
    if core._adopted_out_of_order:
        # An old order brought back by a retry sits at the end of insertion order.
        return sorted(core._orders.values(), key=lambda o: -o.number)
    return reversed(core._orders.values())


def wait_reason(core: SchedulerCore, task: Task) -> str | None:
    """Why a ready task is not on a worker yet, or what a waiting one waits for (shown on
    the dashboard)."""
    if task.state is S.WAITING:
        return waiting_for(core, task)["what"]
    if task.state is not S.READY:
        return None
    pause = core.limits.pauses.get(task.step)
    if pause is not None:  # (a queued task is held only once a free slot looks at it)
        return pause.reason()
    if task.wait_reason is not None:
        return task.wait_reason
    if not core._ring:
        return "no live worker"
    lane = core.lane_of(task)
    if not core._placement.capable_of(lane):
        workflow = core._orders[task.order_id].workflow
        if not core._placement.offered(workflow.key):
            return f"needs workflow {workflow.label()}: no live worker offers it"
        tags = core.config.policy(task.step).tags
        needs = f" (it needs tags: {', '.join(sorted(tags))})" if tags else ""
        return f"no live worker can run step {task.step}{needs}"
    return "waiting for a free slot"


def waiting_for(core: SchedulerCore, task: Task) -> dict:
    """What a waiting task waits for: {"step", "signal" (a wait's name; None: a time),
    "until" (Unix time; None: no timeout), "what" (in words)}."""
    order = core._orders[task.order_id]
    signal = task.step if task.step in order.workflow.waits else None
    until = None if task.due is None else round(core.wall(task.due), 3)
    what = f"the signal {signal}" if signal else "its time (a delay, or its order's not_before)"
    return {"step": task.step, "signal": signal, "until": until, "what": what}


def order_view(core: SchedulerCore, order: Order, with_results: bool = True) -> dict:
    """The order as the HTTP API shows it, with why each waiting step waits (and `waits`:
    what each step waiting for a signal or a time waits for, and until when). The
    status is the one last derived and announced: the one stats and listings count, so an
    order that lost its worker stays "in_progress" rather than looking unstarted."""
    waiting = {}
    waits = []
    for step, task in order.tasks.items():
        if task.state is S.WAITING:
            waits.append(waiting_for(core, task))
            waiting[step] = waits[-1]["what"]
            continue
        reason = wait_reason(core, task)
        if reason is not None:
            waiting[step] = reason
    view = core.order_record(order).view(with_results, waiting)
    view["waits"] = waits
    return view


def failed_orders(core: SchedulerCore) -> list[tuple[str, str, str | None, float]]:
    """Failed orders in memory as (id, failed step, its error, wall time it finished),
    newest in memory first."""
    failed = []
    for order in reversed(core._orders.values()):
        if order.reported_status != "failed":
            continue
        for task in order.tasks.values():
            if task.state is S.FAILED:  # the one step that failed it
                at = core.wall(order.finished_at if order.finished_at is not None else 0.0)
                failed.append((order.id, task.step, task.error, at))
                break
    return failed


# ------------------------------------------------------------------ workers

def worker_status(core: SchedulerCore, worker: WorkerRecord, now: float) -> str:
    """alive turns "suspect" once two heartbeats in a row are missing."""
    if (
        worker.status == "alive"
        and now - worker.last_heartbeat > 2 * core.config.heartbeat_interval
    ):
        return "suspect"
    return worker.status


def worker_views(core: SchedulerCore, now: float) -> list[dict]:
    """Every worker the core knows, as the HTTP API shows it."""
    shares = core._ring.shares()
    return [
        {
            "id": w.id,
            "kind": w.kind,
            "status": worker_status(core, w, now),
            "heartbeat_age": round(max(0.0, now - w.last_heartbeat), 3),
            "current_task": min(w.running) if w.running else None,
            "running": sorted(w.running),
            "slots": w.slots,
            # What it can run: its steps (None: any) and the tags it offers.
            "steps": None if w.steps is None else sorted(w.steps),
            "tags": sorted(w.tags),
            # The workflow definitions it runs (None: any): a worker of an old version
            # may go once no order pinned to it is left (stats' `definitions`).
            "definitions": None if w.definitions is None else sorted(w.definitions),
            # Started here, waiting here (prefetched), and timed out but not yet
            # returned (each holds a slot until its handler gives up).
            "busy": len(w.running),
            "queued": len(w.tasks) - len(w.running),
            "stuck": len(w.stuck),
            # Threads left to handlers that ignored their cancellation (a new thread
            # took each one's slot), still inside them.
            "abandoned": len(w.abandoned),
            "tasks_done": w.done,
            "tasks_failed": w.failed,
            "share": round(shares.get(w.id, 0.0), 4),
            "joined_at": round(core.wall(w.joined_at), 3),
            **w.meta,
        }
        for w in core._workers.values()
    ]


def membership(core: SchedulerCore, worker_id: str) -> str | None:
    """A worker's own status ("alive", "draining", "dead", "removed"), None if unknown."""
    worker = core._workers.get(worker_id)
    return None if worker is None else worker.status


def loads(core: SchedulerCore) -> dict[str, int]:
    """Tasks each worker on the ring holds (queued or running there)."""
    return {w.id: len(w.tasks) for w in core._workers.values() if w.id in core._ring}


def ring_view(core: SchedulerCore) -> dict:
    """The ring's arcs (start, end, worker) and each worker's share of it."""
    ring = core._ring
    return {
        "arcs": [[round(a, 5), round(b, 5), w] for a, b, w in ring.arcs()],
        "shares": ring.shares(),
    }


# ------------------------------------------------------------------ stats

def unroutable(core: SchedulerCore) -> dict[str, int]:
    """Ready tasks no live worker can run (no handler, a tag nobody offers, or a workflow
    definition nobody runs), by step."""
    found: dict[str, int] = {}
    for lane in core.queue.lanes():
        if not core._placement.capable_of(lane):
            found[lane[0]] = found.get(lane[0], 0) + core.queue.size(lane)
    return found


def stranded(core: SchedulerCore) -> dict[str, int]:
    """Unfinished orders, by definition key, pinned to a workflow definition that the
    running app lacks and no live worker offers: they wait until a worker of it joins."""
    return core.definitions.stranded(core._placement.offered)


def definitions(core: SchedulerCore) -> list[dict]:
    """Each workflow definition with unfinished orders (or the running app's): how many
    remain, whether the app has it and whether a live worker offers it, so an operator
    knows when the last worker of an old version may go."""
    return core.definitions.view(core._placement.offered)


def held_by_limits(core: SchedulerCore) -> dict[str, int]:
    """Ready tasks their step's limits hold back, by step."""
    tasks = core._tasks
    return {
        step: sum(1 for t in held if t in tasks and tasks[t].state is S.READY)
        for step, held in core._held_back.items()
    }


def throughput(core: SchedulerCore, now: float) -> float:
    """Orders completed per second over the last minute."""
    core._trim_completions(now)
    return len(core._completions) / THROUGHPUT_WINDOW


def stats(core: SchedulerCore, now: float) -> dict:
    """The cluster's numbers as `/api/stats` shows them (and `/metrics` reads them)."""
    counted = core._counters
    by_status = core._orders_by_status
    workers: dict[str, int] = {}
    slots = {"total": 0, "busy": 0, "stuck": 0, "abandoned": 0}
    for w in core._workers.values():
        status = worker_status(core, w, now)
        workers[status] = workers.get(status, 0) + 1
        if w.status == "alive":
            slots["total"] += w.slots
            slots["busy"] += len(w.running)
            slots["stuck"] += len(w.stuck)
            slots["abandoned"] += len(w.abandoned)
    return {
        "orders": dict(by_status),
        "orders_total": core._order_number,
        "tasks": dict(core._tasks_by_state),
        # Every order by stage (queued, running, retrying, completed, failed,
        # cancelled): the numbers the dashboard's tiles and filters show.
        "progress": core._progress.by_stage(by_status),
        # Tasks of the unfinished orders, by step and state.
        "steps": core._progress.unfinished_steps(),
        # Orders completed, steps succeeded, attempts failed: per second, last 10 s.
        "rates": core._progress.rates(now),
        "retries": counted["retries"],
        "reassignments": counted["reassignments"],
        # Tasks taken off a worker that died or drained and put back in line (one
        # per task_reassigned event), by reason.
        "moves": counted["moves"],
        "moves_by_reason": {"worker dead": counted["moves_worker_dead"],
                            "drain": counted["moves_drain"]},
        "rejected_results": counted["rejected_results"],
        "workers": workers,
        # Capacity of the live workers: slots in all, running a task, stuck on an
        # attempt that timed out; and threads abandoned to such attempts (each
        # replaced, so not a slot taken).
        "slots": slots,
        # Threads abandoned to handlers that ignored their cancellation, ever; and
        # thread workers declared dead for more of those than they may have.
        "abandoned_threads": counted["abandoned_threads"],
        "workers_hung": counted["workers_hung"],
        # Attempts that ran past their step's time limit (each a failed attempt), ever.
        "timed_out_attempts": counted["timed_out_attempts"],
        # Ready tasks their step's limits hold back, by step.
        "held_by_limits": held_by_limits(core),
        # Ready tasks no live worker can run (no handler, a tag nobody offers, or a
        # workflow definition nobody runs).
        "unroutable": unroutable(core),
        # Unfinished orders by workflow definition (the orders pinned to each), and those
        # of definitions the app lacks that no live worker offers, by definition key.
        "definitions": definitions(core),
        "stranded": stranded(core),
        # Paused steps (by an operator or a breaker): who, since, why.
        "paused": {p.step: p.view() for p in core.limits.pauses.all()},
        "throughput": round(throughput(core, now), 3),
        # Timers set (waits' timeouts, delays, not_before): one heap entry each, no thread.
        "timers_pending": len(core.timers),
        "last_seq": core._seq,
        # The server's clock (Unix time), so a page can place these numbers in time.
        "now": round(core.wall(now), 3),
    }


# ------------------------------------------------------------------ steps and their controls

def control_view(core: SchedulerCore, step: str) -> dict:
    """What the journal keeps of a step's controls: its pause and its live limits."""
    pause = core.limits.pauses.get(step)
    policy = core.config.policy(step)
    return {"step": step, "pause": None if pause is None else pause.view(),
            "limits": {"max_in_flight": policy.max_in_flight, "rate": policy.rate,
                       "burst": policy.burst} if step in core._live_limits else None}


def steps(core: SchedulerCore) -> list[dict]:
    """Every step of the core's workflows: its limits, how many of its attempts are counted
    in flight, its tasks ready and held back, and its pause (with the reason its tasks
    show)."""
    held = held_by_limits(core)
    views = []
    for step in sorted(core._known_steps()):
        policy = core.config.policy(step)
        pause = core.limits.pauses.get(step)
        views.append({
            "name": step, "max_in_flight": policy.max_in_flight, "rate": policy.rate,
            "burst": policy.burst, "in_flight": core.limits.in_flight(step),
            "held": held.get(step, 0), "ready": core._ready_of(step),
            "breaker": policy.breaker is not None,
            "paused": None if pause is None else {**pause.view(), "reason": pause.reason()},
        })
    return views
