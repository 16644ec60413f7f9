"""Rebuilding the core's state from what the journal kept, after a restart or a crash.

Finished orders come back as they were. Unfinished steps are queued again: a step that was
running when the server died re-runs as the same attempt (at-least-once, same idempotency
key); a step waiting out a retry backoff runs its next attempt. Retry and reassignment
counts, the event seq and the order numbering continue where they stopped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..engine.core import SchedulerCore
from ..engine.model import ORDER_EVENT_CAP, Effects, Order, Task
from ..engine.states import TERMINAL, TERMINAL_ORDER, OrderStatus, TaskState

log = logging.getLogger("orderflow.recovery")
S = TaskState
FINISHED = frozenset(s.value for s in TERMINAL_ORDER)
NEW_TASK_ROW = {
    "state": "pending",
    "attempt": 0,
    "attempt_open": 0,
    "reassignments": 0,
    "runs": 0,
    "worker": None,
    "result": None,
    "error": None,
}


@dataclass
class RecoveredOrder:
    id: str
    number: int
    workflow: str
    data: dict
    idempotency_key: str | None
    submitted_at: float  # wall clock
    finished_at: float | None
    status: str
    tasks: list[
        dict
    ]  # step, state, attempt, attempt_open, reassignments, runs, worker, result, error
    events: list[dict] = field(default_factory=list)


@dataclass
class Recovered:
    orders: list[RecoveredOrder]  # oldest first
    counters: dict  # SchedulerCore.counters
    orders_by_status: dict
    tasks_by_state: dict
    seq: int
    order_number: int
    lease_counter: int
    recent_events: list[dict]


def restore(core: SchedulerCore, state: Recovered, now: float) -> Effects:
    """Load `state` into a fresh core; returns the events announcing re-queued steps."""
    core._now = now
    core.seq = state.seq
    core.order_number = state.order_number
    core.lease_counter = state.lease_counter
    core.counters.update(state.counters)
    core.orders_by_status.update(state.orders_by_status)
    core.tasks_by_state.update(state.tasks_by_state)
    core.history.extend(state.recent_events)
    requeued = 0
    for rec in state.orders:
        order = adopt(core, rec)
        if order is None or rec.status in FINISHED:
            continue
        core.active_orders += 1
        for task in order.tasks.values():
            if task.state in TERMINAL:
                continue
            requeued += _requeue(core, order, task)
    _recount_unfinished(core)
    log.info(
        "recovered %d orders from the journal; %d unfinished steps queued again",
        len(state.orders),
        requeued,
    )
    return core._flush()


def adopt(core: SchedulerCore, rec: RecoveredOrder) -> Order | None:
    """Put a journaled order (and its tasks, as recorded) back into the core's memory; a
    finished one joins the finished orders kept in memory. None for an unknown workflow."""
    workflow = core.workflows.get(rec.workflow)
    if workflow is None:
        log.error(
            "order %s uses unknown workflow %r; it stays in the database untouched",
            rec.id,
            rec.workflow,
        )
        return None
    offset = core.epoch_offset
    tasks = {}
    rows = {row["step"]: row for row in rec.tasks}
    for step in workflow.steps:
        # Steps never snapshotted since submission are still at their beginning.
        row = rows.get(step) or NEW_TASK_ROW
        task = Task(f"{rec.id}:{step}", rec.id, step, S(row["state"]), set())
        task.attempt, task.attempt_open = row["attempt"], bool(row["attempt_open"])
        task.reassignments, task.runs = row["reassignments"], row["runs"]
        task.worker, task.result, task.error = row["worker"], row["result"], row["error"]
        tasks[step] = task
    order = Order(
        rec.id,
        rec.number,
        workflow,
        rec.data,
        tasks,
        rec.submitted_at - offset,
        reported_status=rec.status,
    )
    order.idempotency_key = rec.idempotency_key
    order.journaled = True
    order.finished_at = rec.finished_at - offset if rec.finished_at is not None else None
    order.events = rec.events[-ORDER_EVENT_CAP:]
    if core.orders and rec.number < next(reversed(core.orders.values())).number:
        core.adopted_out_of_order = True
    core.orders[rec.id] = order
    core.tasks.update((t.id, t) for t in tasks.values())
    if rec.idempotency_key is not None:
        core.idempotency[rec.idempotency_key] = rec.id
    if rec.status in FINISHED:
        core._remember_finished(rec.id)
    return order


def _recount_unfinished(core: SchedulerCore) -> None:
    """Counts of unfinished orders and tasks come from what was loaded: the snapshot's are
    older than the tasks' rows (happy-path moves are not journaled). Finished counts are
    cumulative totals (pruned and evicted orders included) and are kept as snapshotted."""
    for state in S:
        if state not in TERMINAL:
            core.tasks_by_state[state.value] = 0
    for status in OrderStatus:
        if status not in TERMINAL_ORDER:
            core.orders_by_status[status.value] = 0
    for order in core.orders.values():
        status = core.order_status(order)
        if status in TERMINAL_ORDER:
            continue
        order.reported_status = status.value
        core.orders_by_status[status.value] += 1
        for task in order.tasks.values():
            if task.state not in TERMINAL:
                core.tasks_by_state[task.state.value] += 1


def _requeue(core: SchedulerCore, order: Order, task: Task) -> int:
    """Put an unfinished step back in line; it gets a worker when workers join."""
    task.waiting_on = {
        d for d in order.workflow.deps[task.step] if order.tasks[d].state is not S.SUCCEEDED
    }
    target = S.PENDING if task.waiting_on else S.READY
    task.state, task.worker, task.lease, task.due = target, None, 0, None
    if target is S.PENDING:
        return 0
    core._unplaced.append(task.id)
    last = next((e for e in reversed(order.events) if e["step"] == task.step), None)
    was = ""
    if last is not None and last["type"] == "task_started":
        was = f" (it was running on {last['worker_id']} when the server stopped)"
    core._emit(
        "task_recovered",
        f"order {order.id} step {task.step} attempt {max(task.attempt, 1)} queued again "
        f"after a restart{was}",
        task=task,
    )
    return 1
