"""The core's invariants, checked from outside its methods: `validate_state(core)`.

Like dask's `validate_state`, one function that reads every table of the core and asserts
what must hold between them (a task on a worker is listed by it, counts match what they
count, a limited step's count is exactly what may still run). Tests call it after every
stimulus, through the facade's `validate()`; it never changes anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .states import DONE, ON_WORKER, TERMINAL_ORDER, OrderStatus, S, TaskState

if TYPE_CHECKING:
    from .core import SchedulerCore

FINISHED = frozenset(s.value for s in TERMINAL_ORDER)


def validate_state(core: SchedulerCore) -> None:
    """Assert the core's invariants; an AssertionError names what broke."""
    check_tasks(core)
    check_timers(core)
    check_workers(core)
    check_limits(core)
    check_orders(core)


def check_tasks(core: SchedulerCore) -> None:
    """A task on a worker is listed by it and may run there; a task waits only while pending."""
    for task in core._tasks.values():
        if task.state in ON_WORKER:
            assert task.worker is not None and task.id in core._workers[task.worker].tasks, task
            assert core.can_run(core._workers[task.worker], task), task
        for dep in task.waiting_on:
            assert core._orders[task.order_id].tasks[dep].state not in DONE, task
        if task.state is not S.PENDING:
            assert not task.waiting_on or task.state is S.CANCELLED, task


def check_timers(core: SchedulerCore) -> None:
    """A waiting task with a due time has its timer, at that time; no other task has one."""
    timed = 0
    for task in core._tasks.values():
        if task.state is S.WAITING and task.due is not None:
            assert core.timers.when(task.id) == task.due, task
            timed += 1
        else:
            assert core.timers.when(task.id) is None, task
    assert len(core.timers) == timed, (len(core.timers), timed)


def check_workers(core: SchedulerCore) -> None:
    """A worker lists only its tasks, holds no more than its slots, and is hungry (and on
    the ring) exactly when it should be; the held total is the sum of what they hold."""
    for worker in core._workers.values():
        for task_id in worker.tasks:
            task = core._tasks[task_id]
            assert task.worker == worker.id and task.state in ON_WORKER, (worker, task)
        if worker.status in ("dead", "removed"):
            assert not worker.tasks and worker.id not in core._ring
            assert not worker.stuck and worker.id not in core._hungry
            assert not worker.abandoned, worker
        assert not worker.stuck & worker.abandoned, worker
        assert worker.stuck_attempts.keys() == worker.stuck | worker.abandoned, worker
        assert len(worker.abandoned) <= core.config.abandon_limit(worker.slots), worker
        assert worker.running <= worker.tasks, worker
        # Never more than its slots run, nor more than slots + prefetch are held.
        assert len(worker.running) + len(worker.stuck) <= worker.slots, worker
        assert core.free_slots(worker) >= 0, worker
        hungry = worker.status == "alive" and core.free_slots(worker) > 0
        assert hungry == (worker.id in core._hungry), worker
    held = sum(len(w.tasks) for w in core._workers.values() if w.status == "alive")
    assert held == core._held, (held, core._held)


def check_limits(core: SchedulerCore) -> None:
    """A limited step's count is its attempts on workers (stuck ones included) and its
    zombies: nothing else, so nothing is ever counted free while it may still run."""
    counted: dict[str, int] = {}
    for task in core._tasks.values():
        if task.state in ON_WORKER:
            counted[task.step] = counted.get(task.step, 0) + 1
    for worker in core._workers.values():
        for task_id, _ in worker.stuck | worker.abandoned:
            step = task_id.rpartition(":")[2]
            counted[step] = counted.get(step, 0) + 1
    for zombie in core.zombies:
        counted[zombie.step] = counted.get(zombie.step, 0) + 1
    for step, policy in core.config.steps.items():
        if policy.limited:
            assert core.limits.in_flight(step) == counted.get(step, 0), (
                step, core.limits.in_flight(step), counted.get(step, 0))


def check_orders(core: SchedulerCore) -> None:
    """The unfinished orders are the ones counted active and in progress; a finished one
    holds no tally; with nothing forgotten, the totals by status and state are exact."""
    active = [o for o in core._orders.values() if core.order_status(o) not in TERMINAL_ORDER]
    assert len(active) == core._active_orders, (len(active), core._active_orders)
    pinned: dict[str, int] = {}
    for order in active:
        pinned[order.workflow.key] = pinned.get(order.workflow.key, 0) + 1
    counted = {k: n for k, n in core.definitions.unfinished.items() if n}
    assert pinned == counted, (pinned, counted)
    core._progress.check(active)
    for order in core._orders.values():
        if order.reported_status in FINISHED:
            assert order.stage is None, order.id
            assert all(t.tally is None for t in order.tasks.values()), order.id
    if core._order_number == len(core._orders):  # nothing forgotten: counts must match
        counted = {s.value: 0 for s in OrderStatus}
        for order in core._orders.values():
            counted[order.reported_status] += 1
        assert counted == core._orders_by_status, (counted, core._orders_by_status)
        states = {s.value: 0 for s in TaskState}
        for task in core._tasks.values():
            states[task.state.value] += 1
        assert states == core._tasks_by_state, (states, core._tasks_by_state)
