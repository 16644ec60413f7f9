"""A restarted server's core: continuing from what the journal kept.

The numbering and the finished totals come from the resume point; the orders come back
as recorded, their unfinished steps put back in line through the transition table (the
same attempt, the same idempotency key; a retry keeps its backoff); and the attempts the
old server started that a surviving worker may still run keep their place in a limited
step's count (`inherit_attempts`). Functions of the one core they act on (`SchedulerCore`
owns the state and calls them from `restore` and `adopt`); pure, `now` passed in.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import waits
from .definitions import describe_stranded
from .errors import Conflict, UnknownWorkflow
from .model import ORDER_EVENT_CAP, Effects, Order, Task
from .records import OrderRecord, ResumePoint, new_task_record
from .states import DONE, ON_WORKER, TERMINAL, TERMINAL_ORDER, TaskState
from .workflow import Workflow
from .zombies import Zombie

if TYPE_CHECKING:
    from .core import SchedulerCore

S = TaskState
# Events that say an attempt's handler on that worker has ended (a worker's own failure
# report counts too, a time limit or a poison verdict of the server does not).
ATTEMPT_ENDS = frozenset({"task_succeeded", "result_rejected", "attempt_ended"})


def restore(
    core: SchedulerCore, point: ResumePoint, orders: Iterable[OrderRecord], now: float
) -> Effects:
    """Continue from what a journal kept: numbering and finished totals from `point`, and
    `orders` (oldest first) back in memory.

    Finished orders stay as they were. Unfinished steps go back in line through the
    transition table: one that was queued or running re-runs as the same attempt (same
    idempotency key); one waiting out a retry keeps its backoff. They are placed when
    workers join.
    """
    if core._orders or core._seq:
        raise Conflict("restore() needs a core that has not run yet")
    core._now = now
    core._seq, core._order_number = point.seq, point.order_number
    core._lease_counter = point.lease_counter
    core._counters.update(point.counters)
    # Finished totals are cumulative (pruned and forgotten orders included); the
    # unfinished ones are counted from the orders that come back.
    for status in TERMINAL_ORDER:
        core._orders_by_status[status.value] = point.orders_by_status.get(status.value, 0)
    for state in TERMINAL:
        core._tasks_by_state[state.value] = point.tasks_by_state.get(state.value, 0)
    core._history.extend(point.recent_events)
    unfinished = []
    unknown: dict[str, int] = {}  # unfinished orders whose definition is nowhere, by workflow
    kept = 0
    tracked = {s for s in core.config.steps if core._tracks(s)} if point.seq else set()
    for record in orders:
        order = adopt_record(core, record)
        if order is not None and not record.finished:
            unfinished.append(order)
        elif order is None and not record.finished:
            unknown[record.workflow] = unknown.get(record.workflow, 0) + 1
        kept += order is not None
        if tracked:
            inherit_attempts(core, record, tracked, now)
    if point.seq:
        # Workers that outlived the old server may still run its attempts: the limited
        # steps wait until they have said so (and the rate buckets start empty).
        core.limits.restarted(now, core.config.hold_after_restart)
        # Where the log shows the restart: the steps queued again below point back here.
        steps = sum(1 for o in unfinished for t in o.tasks.values() if t.state not in TERMINAL)
        running = (f"; {len(core.zombies)} attempt(s) the old server started may still "
                   "run and keep their step's place in flight" if core.zombies else "")
        core._emit(
            "server_restarted",
            f"restarted from the journal: {len(unfinished)} unfinished order(s) recovered, "
            f"{steps} step(s) to run again; {kept - len(unfinished)} finished order(s) kept"
            f"{running}",
            orders=len(unfinished),
            steps=steps,
            unconfirmed=len(core.zombies),
        )
    _announce_missing(core, unfinished, unknown)
    core._cause = core._seq
    for order in unfinished:
        core._orders_by_status[order.reported_status] += 1
        core._progress.opened(order)
        core._active_orders += 1
        core.definitions.unfinished[order.workflow.key] += 1
        for step in order.step_names():
            requeue(core, order, order.tasks[step], now)
        for step in order.step_names():
            if order.tasks[step].state is S.WAITING:  # after the others: it may release them
                waits.restore(core, order, order.tasks[step], now)
        if all(order.tasks[s].state in TERMINAL for s in order.workflow.steps):
            # It failed or was cancelled, and the server stopped before its undos were
            # written down: they start now (an order undoing already is left as it is).
            core._compensate(order, now, "its steps finished before a restart")
        core._check_order(order, now)
    return core._flush()


def _announce_missing(core: SchedulerCore, unfinished: list[Order],
                      unknown: dict[str, int]) -> None:
    """One `definitions_missing` event when unfinished orders are pinned to definitions the
    running app lacks (they wait for a worker that offers one), or to none the journal kept
    (a journal written before versions: they stay in it only)."""
    stranded: dict[str, int] = {}
    for order in unfinished:
        key = order.workflow.key
        if not core.definitions.is_current(key):
            stranded[key] = stranded.get(key, 0) + 1
    if not stranded and not unknown:
        return
    parts = []
    if stranded:
        parts.append(f"{describe_stranded(stranded, core.definitions)}, which this server's "
                     "app lacks: they wait for a worker that offers it "
                     "(orderflow worker --app <that version's module:app>)")
    if unknown:
        lost = ", ".join(f"{n} of workflow {name}" for name, n in sorted(unknown.items()))
        parts.append(f"unfinished orders {lost} stay in the journal only: no definition "
                     "of their workflow is known (deploy an app that has it)")
    core._emit("definitions_missing", "after the restart, " + "; ".join(parts),
               orders=sum(stranded.values()) + sum(unknown.values()),
               definitions=stranded, unknown=unknown)


def adopt_finished(core: SchedulerCore, record: OrderRecord) -> Order:
    """Bring back a finished order that memory had forgotten (to retry it by hand)."""
    if not record.finished:
        raise Conflict(f"order {record.id} is {record.status}; only finished orders return")
    order = adopt_record(core, record)
    if order is None:
        raise UnknownWorkflow(f"order {record.id} uses unknown workflow {record.workflow!r}")
    return order


def adopt_record(core: SchedulerCore, record: OrderRecord) -> Order | None:
    """An order back in memory with its tasks as recorded (None: unknown workflow).
    Unfinished tasks are counted here; finished ones are in the totals already."""
    existing = core._orders.get(record.id)
    if existing is not None:
        return existing
    # The definition it was submitted under (the journal keeps each), whatever runs now.
    workflow = core.definitions.pinned(record.workflow, record.version)
    if workflow is None or (not record.version and not _fits(workflow, record)):
        return None
    recorded = {t.step: t for t in record.tasks}
    tasks = {step: _task_back(core, record.id, recorded, step) for step in workflow.steps}
    order = Order(
        record.id,
        record.number,
        workflow,
        record.data,
        tasks,
        record.submitted_at - core.epoch_offset,
        reported_status=record.status,
    )
    order.idempotency_key = record.idempotency_key
    order.priority = record.priority
    if any(undo in recorded for undo in workflow.compensations.values()):
        # Its compensation had begun (an undo's row was written): the same undos, in the
        # same order (its succeeded steps, newest success first), each as recorded.
        order.undoing = [workflow.compensations[t.step] for t in order.to_undo()]
        for undo in order.undoing:
            tasks[undo] = _task_back(core, record.id, recorded, undo, workflow.undo_of(undo))
    order.started = any(t.runs or t.state is S.SUCCEEDED for t in tasks.values())
    if record.finished_at is not None:
        order.finished_at = record.finished_at - core.epoch_offset
    order.events = list(record.events[-ORDER_EVENT_CAP:])
    waits.recorded(core, order, record.events)
    if core._orders and record.number < next(reversed(core._orders.values())).number:
        core._adopted_out_of_order = True
    core._orders[record.id] = order
    core._tasks.update((t.id, t) for t in tasks.values())
    if record.idempotency_key is not None:
        core._idempotency[record.idempotency_key] = record.id
    if record.finished:
        core._remember_finished(record.id)
    return order


# States a step can be in without having run (a cancelled one may never have been ready).
_NOT_STARTED = frozenset({S.PENDING.value, S.CANCELLED.value})


def _fits(workflow: Workflow, record: OrderRecord) -> bool:
    """Whether an order journaled before versions (no definition kept) can run `workflow`:
    each recorded step is of it, and each that became ready or ran has its dependencies
    succeeded (no step inserted before one that already ran)."""
    recorded = {t.step: t for t in record.tasks}
    undos = set(workflow.compensations.values())
    for task in record.tasks:
        if task.step not in workflow.deps:
            if task.step not in undos:
                return False
        elif task.state not in _NOT_STARTED and not all(
                d in recorded and recorded[d].state == S.SUCCEEDED.value
                for d in workflow.deps[task.step]):
            return False
    return True


def _task_back(core: SchedulerCore, order_id: str, recorded: dict, step: str,
               compensates: str | None = None) -> Task:
    """A task as recorded; one whose row was never written is as it was when made.
    Unfinished, it is counted here; finished ones are in the totals already."""
    rec = recorded.get(step) or new_task_record(order_id, step)
    task = Task(rec.id, order_id, step, S(rec.state), set(), compensates=compensates)
    task.attempt, task.attempt_open = rec.attempt, rec.attempt_open
    task.reassignments, task.runs, task.moves = rec.reassignments, rec.runs, rec.moves
    task.worker, task.result, task.error = rec.worker, rec.result, rec.error
    task.completed, task.key_round = rec.completed, rec.key_round
    if rec.retry_at is not None:
        task.due = rec.retry_at - core.epoch_offset
    if task.state not in TERMINAL:
        core._tasks_by_state[task.state.value] += 1
    return task


def requeue(core: SchedulerCore, order: Order, task: Task, now: float) -> None:
    """After a restart: an unfinished step goes back in line, through the table."""
    if task.state in TERMINAL:
        return
    task.waiting_on = {
        d for d in order.deps_of(task.step) if order.tasks[d].state not in DONE
    }
    if task.state in ON_WORKER:
        task.worker, task.lease = None, 0
        core._move(task, S.READY)
    elif task.state is S.PENDING and not task.waiting_on and not waits.hold(core, task, now):
        core._move(task, S.READY)  # its dependencies finished; its own row was not due
    if task.state is S.RETRY_WAIT:
        due = now if task.due is None else task.due
        task.due = due
        heapq.heappush(core._retry_heap, (due, task.lease, task.id))
        core._emit(
            "task_recovered",
            f"order {order.id} step {task.step} will retry as attempt {task.attempt + 1} "
            f"in {max(0.0, due - now):.3f}s, after a restart",
            task=task,
            cause=core._cause,
        )
    elif task.state is S.READY:
        core._enqueue(task)
        # Its row may predate the start (starting is not written down); its events say.
        last = next((e for e in reversed(order.events) if e["step"] == task.step), None)
        was = ""
        if last is not None and last["type"] == "task_started":
            was = f" (it was running on {last['worker_id']} when the server stopped)"
        core._emit(
            "task_recovered",
            f"order {order.id} step {task.step} attempt {max(task.attempt, 1)} queued again "
            f"after a restart{was}",
            task=task,
            cause=core._cause,
        )


def inherit_attempts(
    core: SchedulerCore, record: OrderRecord, tracked: set[str], now: float
) -> None:
    """After a restart: the attempts of `tracked` steps that the order's events show
    started on a worker and never ended there may still run (on a worker that outlived
    the old server): each keeps a place in its step's count until its worker says, or
    until its time limit (counted from its start), or the restart that wrote it off if
    that is later, plus the grace: a worker learns that its ids are dead only once it is
    back. That restart is this one, unless the order's events show an earlier one after
    the start (its `task_recovered` events): a later restart is no news to the worker,
    and bounding the attempt from it again would hold its place for another grace at
    every failover that comes within the grace of the one before."""
    # (attempt, start ts, wall time of the first restart after the start or None)
    started: dict[tuple[str, str], list[list]] = {}
    for event in record.events:
        kind = event["type"]
        if kind == "task_recovered":  # a restart, after every start listed so far
            for attempts in started.values():
                for entry in attempts:
                    entry[2] = event["ts"] if entry[2] is None else entry[2]
            continue
        step = event.get("step")
        if step not in tracked:
            continue
        key = (step, event.get("worker_id"))
        if kind == "task_started":
            started.setdefault(key, []).append([event["attempt"], event["ts"], None])
        elif kind in ATTEMPT_ENDS or (
            kind == "task_failed" and not event.get("timed_out") and not event.get("poison")
        ):
            if started.get(key):
                started[key].pop(0)
    for (step, worker_id), attempts in started.items():
        for attempt, ts, written_off in attempts:
            deadline = ts - core.epoch_offset + core.config.timeout(step)
            restart = now if written_off is None else written_off - core.epoch_offset
            bound = max(deadline, restart) + core.config.zombie_grace
            if worker_id and bound > now and core.zombies.add(
                Zombie(worker_id, f"{record.id}:{step}", 0, step, attempt, deadline, bound)
            ):
                core.limits.occupied(step)
