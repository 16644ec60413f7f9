"""Waiting for the outside world: a wait's signal or timeout, a step's delay, an order
submitted for later.

A task whose dependencies are done is *reached*: a wait starts waiting for its signal (or
takes the one that came early), a step with a delay (or of an order whose `not_before` is
still ahead) waits for its time, any other step is ready at once. A waiting task holds no
slot and no thread: it is a state in the table and, when it has a time, one entry in the
core's `Timers`, which its `tick(now)` fires. Functions of the one core they act on
(`SchedulerCore` owns the state and calls them); pure, `now` passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import UnknownWait
from .model import Order, Task
from .states import TERMINAL, S
from .workflow import Wait

if TYPE_CHECKING:
    from .core import SchedulerCore

# What `signal` did with a signal (the API answers the first two 202, a repeat 200, a
# refusal 409): its wait took it, it is kept for its wait, it repeats the signal already
# taken (same idempotency key), or it came too late or twice.
DELIVERED, KEPT, REPEATED, REFUSED = "delivered", "kept", "repeated", "refused"
# How a log line says what a wait's timeout does (before it, and as it happens).
WILL = {"cancel": "cancels its order", "fail": "fails its order", "continue": "continues"}
DOING = {"cancel": "cancelling the order", "fail": "failing the order",
         "continue": "continuing with no signal"}


def reach(core: SchedulerCore, task: Task, now: float) -> None:
    """`task`'s dependencies are done: it waits, or it is ready and queued."""
    if not hold(core, task, now):
        core._make_ready(task, now)


def hold(core: SchedulerCore, task: Task, now: float) -> bool:
    """Move `task` to waiting if it must wait (a wait, a delay, its order's not_before);
    False: it may start now (it was not moved)."""
    order = core._orders[task.order_id]
    wait = order.workflow.waits.get(task.step)
    if wait is not None:
        _begin_wait(core, order, task, wait, now)
        return True
    due = now + core.config.delay(task.step)
    if order.not_before is not None and order.not_before > due:
        due = order.not_before
    if due <= now:
        return False
    core._move(task, S.WAITING)
    _set_timer(core, task, due)
    core._emit("task_delayed",
               f"order {order.id} step {task.step} waits {due - now:.3f}s before it may start",
               task=task, until=round(core.wall(due), 6))
    return True


def _begin_wait(core: SchedulerCore, order: Order, task: Task, wait: Wait, now: float) -> None:
    core._move(task, S.WAITING)
    kept = order.signals.get(wait.name) if order.signals else None
    if kept is not None:
        _complete(core, order, task, kept[0], now, "a signal that came before it")
        return
    until = ""
    if wait.timeout is not None:
        _set_timer(core, task, now + wait.timeout)
        until = f" for {wait.timeout:g}s, then {WILL[wait.on_timeout]}"
    core._emit("wait_started",
               f"order {order.id} waits for signal {wait.name}{until}",
               task=task, until=None if task.due is None else round(core.wall(task.due), 6),
               on_timeout=wait.on_timeout)


def _set_timer(core: SchedulerCore, task: Task, due: float) -> None:
    task.due = due
    core.timers.set(task.id, due)


def _complete(core: SchedulerCore, order: Order, task: Task, data: Any, now: float,
              how: str) -> None:
    """A waiting wait ends well: `data` is its result for the steps after it."""
    task.result = data
    task.due = None
    core._move(task, S.SUCCEEDED)
    core._emit("wait_completed", f"order {order.id} wait {task.step} completed by {how}",
               task=task, how=how)
    core._release(order, task, now)


def signal(core: SchedulerCore, order_id: str, name: str, data: Any, now: float,
           key: str | None, who: str | None) -> str:
    """Deliver the signal `name` to an order: one of DELIVERED, KEPT, REPEATED, REFUSED.
    Raises UnknownOrder, or UnknownWait for a name none of its waits has."""
    order = core._order(order_id)
    wait = order.workflow.waits.get(name)
    if wait is None:
        has = ", ".join(sorted(order.workflow.waits)) or "none"
        raise UnknownWait(f"order {order_id} ({order.workflow.name}) never waits for signal "
                          f"{name!r}; its waits: {has}")
    task = order.tasks[name]
    got = order.signals.get(name) if order.signals else None
    by = f" from {who}" if who else ""
    if got is not None and key is not None and got[1] == key:
        return REPEATED
    if got is not None or task.state in TERMINAL:
        why = "one came already" if got is not None else f"the wait is {task.state.value}"
        core._emit("signal_refused", f"order {order.id} signal {name}{by} refused: {why}",
                   task=task, who=who, reason=why)
        return REFUSED
    if order.signals is None:
        order.signals = {}
    order.signals[name] = (data, key)
    waiting = task.state is S.WAITING
    core._emit("signal_received",
               f"order {order.id} signal {name} received{by}"
               + ("" if waiting else "; kept until the order reaches its wait"),
               task=task, who=who, data=data, key=key)
    if waiting:
        _complete(core, order, task, data, now, "its signal")
        core._check_order(order, now)
    return DELIVERED if waiting else KEPT


def fire(core: SchedulerCore, now: float) -> None:
    """Timers due by `now`, at most `timers_per_tick` of them (the rest are due at once
    again: the shell wakes for them without holding its lock between): a delayed step is
    ready; a wait's timeout does what it says."""
    for task_id in core.timers.due(now, core.config.timers_per_tick):
        task = core._tasks.get(task_id)
        if task is None or task.state is not S.WAITING:
            continue
        task.due = None
        order = core._orders[task.order_id]
        wait = order.workflow.waits.get(task.step)
        if wait is None:
            core._make_ready(task, now)
        else:
            _timed_out(core, order, task, wait, now)


def _timed_out(core: SchedulerCore, order: Order, task: Task, wait: Wait, now: float) -> None:
    why = f"no signal {wait.name} within {wait.timeout:g}s"
    core._emit("wait_timed_out", f"order {order.id} wait {wait.name}: {why}; "
               f"{DOING[wait.on_timeout]}", task=task, on_timeout=wait.on_timeout)
    if wait.on_timeout == "continue":
        _complete(core, order, task, None, now, "its timeout")
        core._check_order(order, now)
    elif wait.on_timeout == "fail":
        core._fail_task(task, now, why)
    else:
        core._cancel_order(order, now, why)


def restore(core: SchedulerCore, order: Order, task: Task, now: float) -> None:
    """After a restart: a waiting task waits on (a time that passed meanwhile fires at the
    next tick, once); a wait whose signal was journaled but not yet taken takes it."""
    wait = order.workflow.waits.get(task.step)
    kept = order.signals.get(task.step) if wait is not None and order.signals else None
    if kept is not None:
        _complete(core, order, task, kept[0], now, "a signal that came before a restart")
    elif task.due is not None:
        core.timers.set(task.id, task.due)
    elif wait is None:
        _set_timer(core, task, now)  # a step's time with none written down: it is due


def recorded(core: SchedulerCore, order: Order, events: Iterable[dict]) -> None:
    """An order's `not_before` and signals, as its journaled events say."""
    for event in events:
        kind = event["type"]
        if kind == "order_submitted" and event.get("not_before") is not None:
            order.not_before = event["not_before"] - core.epoch_offset
        elif kind == "signal_received":
            if order.signals is None:
                order.signals = {}
            order.signals[event["step"]] = (event.get("data"), event.get("key"))
