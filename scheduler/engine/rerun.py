"""Re-running a finished order from a chosen step, on an operator's word.

An order that completed, failed or was cancelled runs again from `step`: that step and every
step after it (its descendants in the order's definition) run again, and so does every step
that did not succeed (a failed or cancelled one, or one a migration skipped); the others
keep their results. By default a step runs again under its same idempotency key, so a
gateway that saw the key answers with what it did the first time (a charge is not repeated
by accident); with `new_keys` each step run again gets a key of its own (`key_of`), for a
charge the operator does mean to repeat. The key's round is kept with the task (journaled),
so a restart hands the same key again.

An order whose undos ran (a saga's compensated or compensation_failed) is not re-run: its
succeeded steps were undone. Pure: functions of the core, `now` passed in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import waits
from .errors import Conflict, UnknownStep
from .migrate import descendants
from .model import Task
from .states import DONE, S, Status, TaskState

if TYPE_CHECKING:
    from .core import SchedulerCore

RERUNNABLE = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


def key_of(task: Task) -> str:
    """The idempotency key handed to the task's handler: its id, or after a re-run asked
    with new keys, its id and that round ("o-1:payment:rerun-2")."""
    return f"{task.id}:rerun-{task.key_round}" if task.key_round else task.id


def rerun_steps(workflow, states: dict[str, TaskState], step: str) -> list[str]:
    """The steps a re-run from `step` runs again, in a topological order: it, its
    descendants, and every step that did not succeed."""
    again = {step} | descendants(workflow, step)
    return [s for s in workflow.steps if s in again or states[s] is not S.SUCCEEDED]


def rerun(core: SchedulerCore, order_id: str, step: str, now: float,
          new_keys: bool) -> list[str]:
    """Run a finished order again from `step` (see the module); returns the steps that run
    again. Conflict for an unfinished order or one whose undos ran; UnknownStep for a step
    its definition lacks."""
    order = core._order(order_id)
    status = core.order_status(order)
    if status not in RERUNNABLE:
        raise Conflict(
            f"order {order_id} is {status.value}; only a completed, failed or cancelled order "
            "(whose undos did not run) can run again from a step")
    if step not in order.workflow.deps:
        raise UnknownStep(step)
    workflow = order.workflow
    again = rerun_steps(workflow, {s: order.tasks[s].state for s in workflow.steps}, step)
    keys = "new idempotency keys" if new_keys else "the same idempotency keys"
    core._emit("order_retried",
               f"order {order_id} runs again from step {step} by hand ({', '.join(again)}; "
               f"{keys})", order=order, rerun=again, from_step=step, new_keys=new_keys)
    for name in again:
        task = order.tasks[name]
        task.attempt, task.attempt_open, task.reassignments, task.error = 0, False, 0, None
        task.result, task.completed = None, 0
        if new_keys:
            task.key_round += 1
    for name in again:
        task = order.tasks[name]
        # (Its dependencies run again are back in line already: a topological order.)
        task.waiting_on = {d for d in workflow.deps[name]
                           if order.tasks[d].state not in DONE}
        if task.waiting_on:
            core._move(task, S.PENDING)
        elif not waits.hold(core, task, now):
            core._move(task, S.READY)
    core._check_order(order, now)
    for name in again:
        if order.tasks[name].state is S.READY:
            core._enqueue(order.tasks[name])
    return again
