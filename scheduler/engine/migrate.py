"""Moving unfinished orders from one workflow definition to another, on an operator's word.

An order runs the definition it was pinned to (definitions.py); an operator may move the
unfinished orders of one definition to another (a fix deployed as a new version, the old
version's workers gone for good). Per order: the steps that succeeded are kept by name; a
step the new definition adds before steps that already ran is skipped (it is not run after
the fact) unless `run_added` asks for it; a step the new definition lacks is dropped (taken
off its worker or out of line, with its event); the rest run as the new definition says.

A migration that would run a step after its dependency was skipped, or leave a step that
ran before a dependency that did not, is refused whole: nothing changes, and the reason
names the order, the step and the dependency. `plan_order` decides, purely, from an order's
task states; `migrate` applies the plans through the core's own doors (its moves go through
the transition table), the way restart.py does. Time is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import waits
from .errors import Conflict, UnknownDefinition, UnknownOrder
from .model import Order, Task
from .states import DONE, ON_WORKER, TERMINAL, TERMINAL_ORDER, S
from .workflow import Workflow

if TYPE_CHECKING:
    from .core import SchedulerCore

# A step in one of these states has run, or is running, or was reached (a wait waiting for
# its signal): a step added before it would run after the fact.
HAPPENED = frozenset({S.SUCCEEDED, S.ASSIGNED, S.RUNNING, S.RETRY_WAIT, S.WAITING})
# How many orders' reasons a refusal quotes (it counts them all).
REASONS_QUOTED = 3


class MigrationRefused(Conflict):
    """The migration would run a step out of its dependencies' order, or cannot apply to an
    order as it stands (HTTP 409, naming the order, the step and why)."""


@dataclass(frozen=True)
class OrderPlan:
    """What a migration does to one order: the steps it keeps (succeeded), skips (added
    before steps that ran), drops (not in the new definition) and leaves to run."""

    order_id: str
    kept: tuple[str, ...]
    skipped: tuple[str, ...]
    dropped: tuple[str, ...]
    to_run: tuple[str, ...]

    def view(self) -> dict:
        return {"order_id": self.order_id, "kept": list(self.kept),
                "skipped": list(self.skipped), "dropped": list(self.dropped),
                "to_run": list(self.to_run)}


def descendants(workflow: Workflow, step: str) -> set[str]:
    """Every step that waits for `step`, directly or through others."""
    found: set[str] = set()
    frontier = [step]
    while frontier:
        for user in workflow.dependents[frontier.pop()]:
            if user not in found:
                found.add(user)
                frontier.append(user)
    return found


def plan_order(order: Order, target: Workflow, run_added: bool,
               runs_there: Callable[[Task], bool] = lambda task: True) -> OrderPlan:
    """What migrating `order` (unfinished) to `target` does; MigrationRefused saying why
    it cannot. `runs_there(task)`: whether the worker holding `task` runs `target`."""
    if order.undoing:
        raise MigrationRefused(f"order {order.id} is undoing its steps; it cannot be moved")
    states = {step: order.tasks[step].state for step in order.workflow.steps}
    kept, skipped, to_run = [], [], []
    # Added, or skipped by an earlier migration: skipped if steps after it ran.
    fresh = {s for s in target.steps if states.get(s) in (None, S.SKIPPED)}
    for step in target.steps:
        state = states.get(step)
        if state is S.SUCCEEDED:
            kept.append(step)
        elif step in fresh and not run_added and any(
                states.get(d) in HAPPENED for d in descendants(target, step)):
            skipped.append(step)
        else:
            to_run.append(step)
    done = set(kept) | set(skipped)
    for step in target.steps:
        state = states.get(step)
        for dep in target.deps[step]:
            if dep in skipped and state not in HAPPENED and step not in skipped:
                raise MigrationRefused(
                    f"order {order.id}: step {step} would run after {dep}, which is skipped "
                    "as it comes before steps that ran (run_added runs it after the fact)")
            if dep in done:
                continue
            if state in HAPPENED or step in skipped:
                if run_added and dep in fresh:
                    continue  # asked for: the added step runs after the fact
                did = "succeeded" if state is S.SUCCEEDED else (
                    "is skipped" if step in skipped else f"is {state.value}")
                raise MigrationRefused(
                    f"order {order.id}: step {step} {did}, but {target.label()} has it "
                    f"after {dep}, which has not run")
    for step, state in states.items():
        task = order.tasks[step]
        if state in ON_WORKER and step in target.deps and not runs_there(task):
            raise MigrationRefused(
                f"order {order.id}: step {step} is {state.value} on worker {task.worker}, "
                f"which does not run {target.label()}; wait for it to end")
    dropped = tuple(s for s in order.workflow.steps if s not in target.deps)
    return OrderPlan(order.id, tuple(kept), tuple(skipped), dropped, tuple(to_run))


def select(core: SchedulerCore, source: Workflow,
           order_ids: Iterable[str] | None) -> list[Order]:
    """The unfinished orders pinned to `source`: all of them, or those named (each must
    be one: UnknownOrder, or MigrationRefused naming what it is)."""
    if order_ids is None:
        return [o for o in core._orders.values()
                if o.workflow is source and o.stage is not None]
    chosen = []
    for order_id in dict.fromkeys(order_ids):
        order = core._orders.get(order_id)
        if order is None:
            raise UnknownOrder(order_id)
        if order.workflow.key != source.key:
            raise MigrationRefused(f"order {order_id} runs {order.workflow.label()}, not "
                                   f"{source.label()}")
        status = core.order_status(order)
        if status in TERMINAL_ORDER:
            raise MigrationRefused(f"order {order_id} is {status.value}; only unfinished "
                                   "orders move")
        chosen.append(order)
    return chosen


def resolve(core: SchedulerCore, source_ref: str, target_ref: str) -> tuple[Workflow, Workflow]:
    """The two definitions named (a key, or a name the running app has); UnknownDefinition
    for one the core does not know, MigrationRefused for one and the same."""
    found = []
    for what, ref in (("from", source_ref), ("to", target_ref)):
        workflow = core.definitions.find(ref)
        if workflow is None:
            raise UnknownDefinition(f"{what}: no workflow definition {ref!r} is known")
        found.append(workflow)
    source, target = found
    if source.key == target.key:
        raise MigrationRefused(f"from and to are both {source.label()}")
    return source, target


def migrate(core: SchedulerCore, source_ref: str, target_ref: str, now: float, *,
            run_added: bool, dry_run: bool, order_ids: Iterable[str] | None) -> list[OrderPlan]:
    """Plan every chosen order, refuse the whole if one cannot move, then (unless
    `dry_run`) move each. Returns the plans, in submission order."""
    source, target = resolve(core, source_ref, target_ref)
    orders = select(core, source, order_ids)
    planned, refusals = [], []
    for order in orders:
        try:
            planned.append((order, plan_order(order, target, run_added,
                                              _runs_there(core, target))))
        except MigrationRefused as exc:
            refusals.append(str(exc))
    if refusals:
        quoted = "; ".join(refusals[:REASONS_QUOTED])
        more = len(refusals) - REASONS_QUOTED
        raise MigrationRefused(
            f"{len(refusals)} of {len(orders)} orders of {source.label()} cannot move to "
            f"{target.label()}, so none moved: {quoted}"
            + (f" (and {more} more)" if more > 0 else ""))
    if not dry_run:
        for order, plan in planned:
            apply(core, order, target, plan, run_added, now)
    return [plan for _, plan in planned]


def _runs_there(core: SchedulerCore, target: Workflow) -> Callable[[Task], bool]:
    def runs_there(task: Task) -> bool:
        return core._placement.can_run(core._workers[task.worker], (task.step, target.key))
    return runs_there


def apply(core: SchedulerCore, order: Order, target: Workflow, plan: OrderPlan,
          run_added: bool, now: float) -> None:
    """Move one order as `plan` says (made by `plan_order` for it as it is)."""
    source = order.workflow
    for step in plan.dropped:
        _drop(core, order, order.tasks[step])
    order.workflow = target
    order.tasks = {step: order.tasks.get(step) or _new_task(core, order, step)
                   for step in target.steps}
    core.definitions.unfinished[source.key] -= 1
    core.definitions.unfinished[target.key] += 1
    if core.definitions.first_use(target):
        core._fx.definitions.append(target)
    core._fx.orders[order.id] = order  # its row names the new definition
    said = "; ".join(f"{what} {', '.join(steps)}" for what, steps in (
        ("kept", plan.kept), ("skipped", plan.skipped), ("dropped", plan.dropped),
        ("to run", plan.to_run)) if steps)
    core._emit("order_migrated",
               f"order {order.id} moved from {source.label()} to {target.label()}: {said}",
               order=order, workflow=target.name, version=target.version,
               source=source.key, target=target.key, run_added=run_added,
               steps=list(target.steps), kept=list(plan.kept), skipped=list(plan.skipped),
               dropped=list(plan.dropped), to_run=list(plan.to_run))
    for step in plan.skipped:
        task = order.tasks[step]
        if task.state is not S.SKIPPED:
            core._move(task, S.SKIPPED)
            core._emit("task_skipped", f"order {order.id} step {step} skipped: "
                       f"{target.label()} adds it before steps that ran", task=task)
    for step in plan.to_run:
        if order.tasks[step].state is S.SKIPPED:  # skipped before; nothing after it ran
            core._move(order.tasks[step], S.PENDING)
    unfinished = [order.tasks[s] for s in target.steps
                  if order.tasks[s].state in (S.PENDING, S.READY)]
    for task in unfinished:
        task.waiting_on = {d for d in target.deps[task.step]
                           if order.tasks[d].state not in DONE}
    for task in unfinished:
        if task.waiting_on:
            if task.state is S.READY:
                core._move(task, S.PENDING)  # a step added before it runs first
        elif task.state is S.PENDING:
            waits.reach(core, task, now)
        elif task.state is S.READY:
            core._enqueue(task)  # in the new definition's line
    core._check_order(order, now)


def _new_task(core: SchedulerCore, order: Order, step: str) -> Task:
    """A step the new definition adds: pending, counted as every task of an unfinished
    order is."""
    task = Task(f"{order.id}:{step}", order.id, step, S.PENDING, set())
    core._tasks[task.id] = task
    core._tasks_by_state[S.PENDING.value] += 1
    task.tally = core._progress.tally(step)
    task.tally[S.PENDING.value] += 1
    return task


def _drop(core: SchedulerCore, order: Order, task: Task) -> None:
    """A step the new definition lacks: cancelled if unfinished (off its worker, out of
    line, with its event), then forgotten with its counts. Its journal row stays."""
    if task.state not in TERMINAL:
        core._cancel_task(task)
    core._tasks_by_state[task.state.value] -= 1
    if task.tally is not None:
        task.tally[task.state.value] -= 1
    del core._tasks[task.id]
    del order.tasks[task.step]
