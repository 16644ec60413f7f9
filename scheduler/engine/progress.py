"""Where the unfinished work stands, counted as it moves: orders by stage, steps by state,
and how many orders, steps and failed attempts finish per second.

The counts are kept up to date by the core at every task move (a few integer updates), so
`/api/stats`, `/metrics` and the dashboard read them in O(steps), never by walking the
orders. Only unfinished orders are counted here; finished ones are the core's cumulative
`orders_by_status`. Pure: time is passed in.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .states import ACTIVE_STAGES, OrderStage, S, TaskState, active_stage

if TYPE_CHECKING:
    from .model import Order

# The states that decide an unfinished order's stage (see states.OrderStage).
STAGE_STATES = frozenset({S.RUNNING, S.RETRY_WAIT, S.WAITING, S.READY, S.ASSIGNED})
# Of those, the ones counted as queued (a waiting order has none).
QUEUED = frozenset({S.READY, S.ASSIGNED})
# Seconds over which the rates (orders/s, steps/s, failed attempts/s) are averaged: short
# enough to follow a burst, long enough not to flicker.
RATE_WINDOW = 10


class RateMeter:
    """Events per second over the last `window` whole seconds (the current one included),
    counted in one-second buckets: O(1) per event, O(window) memory."""

    def __init__(self, window: int = RATE_WINDOW):
        self.window = window
        self._buckets: deque[list[int]] = deque()  # [second, count], oldest first

    def add(self, now: float, count: int = 1) -> None:
        second = int(now // 1)
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += count
            return
        buckets.append([second, count])
        self._trim(second)

    def rate(self, now: float) -> float:
        self._trim(int(now // 1))
        return sum(count for _, count in self._buckets) / self.window

    def _trim(self, second: int) -> None:
        buckets = self._buckets
        while buckets and buckets[0][0] <= second - self.window:
            buckets.popleft()


class Progress:
    """Unfinished orders by stage and their tasks by step and state.

    An order is counted from the moment it is unfinished (`opened`: submitted, recovered,
    retried by hand) until it finishes (`closed`). While it is counted, each of its tasks
    holds its step's tally (`task.tally`), so a move costs the core two integer updates;
    moves into or out of a state of STAGE_STATES also restage the order (`moved`).
    """

    def __init__(self) -> None:
        self.stages: dict[str, int] = {s.value: 0 for s in ACTIVE_STAGES}
        self.steps: dict[str, dict[str, int]] = {}  # step -> state -> tasks
        self.orders = RateMeter()  # orders completed
        self.steps_done = RateMeter()  # steps succeeded
        self.failures = RateMeter()  # attempts failed (timeouts and poison included)

    def tally(self, step: str) -> dict[str, int]:
        tally = self.steps.get(step)
        if tally is None:
            tally = self.steps[step] = {s.value: 0 for s in TaskState}
        return tally

    def opened(self, order: Order) -> None:
        """`order` is unfinished from now on: count it and its tasks as they are."""
        order.running = order.retrying = order.waiting = order.queued = 0
        for task in order.tasks.values():
            tally = task.tally = self.tally(task.step)
            tally[task.state._value_] += 1
            _count(order, task.state, 1)
        order.stage = _stage(order)
        self.stages[order.stage] += 1

    def closed(self, order: Order) -> None:
        """`order` finished: it and its tasks are no longer counted here."""
        if order.stage is None:
            return
        for task in order.tasks.values():
            if task.tally is not None:
                task.tally[task.state._value_] -= 1
                task.tally = None
        self.stages[order.stage] -= 1
        order.stage = None

    def moved(self, order: Order, start: TaskState, finish: TaskState) -> None:
        """A counted task of `order` moved (a move between states outside STAGE_STATES
        changes no count, and so no stage). `_count` and `_stage` written out: this runs at
        most moves of every task."""
        if start is S.READY or start is S.ASSIGNED:
            order.queued -= 1
        elif start is S.RUNNING:
            order.running -= 1
        elif start is S.RETRY_WAIT:
            order.retrying -= 1
        elif start is S.WAITING:
            order.waiting -= 1
        if finish is S.READY or finish is S.ASSIGNED:
            order.queued += 1
        elif finish is S.RUNNING:
            order.running += 1
        elif finish is S.RETRY_WAIT:
            order.retrying += 1
        elif finish is S.WAITING:
            order.waiting += 1
        stage = active_stage(order.running, order.retrying, order.waiting, order.queued)._value_
        if stage != order.stage:
            self.stages[order.stage] -= 1
            self.stages[stage] += 1
            order.stage = stage

    def by_stage(self, orders_by_status: dict[str, int]) -> dict[str, int]:
        """Every order by stage: the unfinished counted here, the finished from the core's
        cumulative counts by status (pruned and forgotten ones included)."""
        finished = {s.value: orders_by_status.get(s.value, 0)
                    for s in OrderStage if s not in ACTIVE_STAGES}
        return {**self.stages, **finished}

    def unfinished_steps(self) -> dict[str, dict[str, int]]:
        """Tasks of the unfinished orders, by step and state (steps with none left out)."""
        return {step: dict(tally) for step, tally in sorted(self.steps.items())
                if any(tally.values())}

    def rates(self, now: float) -> dict[str, float]:
        """Per second over the last RATE_WINDOW seconds."""
        return {
            "orders_per_s": round(self.orders.rate(now), 3),
            "steps_per_s": round(self.steps_done.rate(now), 3),
            "failures_per_s": round(self.failures.rate(now), 3),
            "window": RATE_WINDOW,
        }

    def check(self, orders: list[Order]) -> None:
        """Recount from `orders` (the unfinished ones) and compare; used by `validate()`."""
        stages = {s.value: 0 for s in ACTIVE_STAGES}
        steps: dict[str, dict[str, int]] = {}
        for order in orders:
            states = [t.state for t in order.tasks.values()]
            counts = (states.count(S.RUNNING), states.count(S.RETRY_WAIT),
                      states.count(S.WAITING), sum(1 for s in states if s in QUEUED))
            # The counters themselves, not only the stage they give: a count off by one
            # shows in the stage only once the order's other counts come to nothing.
            kept = (order.running, order.retrying, order.waiting, order.queued)
            assert kept == counts, (order.id, kept, counts)
            stage = active_stage(*counts).value
            assert order.stage == stage, (order.id, order.stage, stage)
            stages[stage] += 1
            for task in order.tasks.values():
                assert task.tally is self.steps[task.step], task
                counts = steps.setdefault(task.step, {s.value: 0 for s in TaskState})
                counts[task.state.value] += 1
        assert stages == self.stages, (stages, self.stages)
        for step, tally in self.steps.items():
            assert tally == steps.get(step, {s.value: 0 for s in TaskState}), (step, tally)


def _count(order: Order, state: TaskState, by: int) -> None:
    """Count a task of `order` in (by 1) or out of (by -1) `state`'s stage counter. (Tests
    of identity, not of membership: an Enum hashes in Python, and this runs at most moves.)"""
    if state is S.READY or state is S.ASSIGNED:
        order.queued += by
    elif state is S.RUNNING:
        order.running += by
    elif state is S.RETRY_WAIT:
        order.retrying += by
    elif state is S.WAITING:
        order.waiting += by


def _stage(order: Order) -> str:
    return active_stage(order.running, order.retrying, order.waiting, order.queued)._value_
