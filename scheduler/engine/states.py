"""The task state machine: a closed set of states and one table of allowed moves."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum


class TaskState(str, Enum):
    PENDING = "pending"  # waiting for the steps it depends on
    READY = "ready"  # dependencies done; waiting for a live worker
    ASSIGNED = "assigned"  # in a worker's queue under a lease
    RUNNING = "running"  # a worker started it under that lease
    RETRY_WAIT = "retry_wait"  # an attempt failed; waiting out the backoff
    # Waiting for the outside world, holding no slot: a wait for its signal (or its
    # timeout), a step for the end of its delay (or of its order's not_before).
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Never to run: a step a migration to another definition added before steps the order
    # had run already (engine/migrate.py). Done, as far as its dependents and its order go.
    SKIPPED = "skipped"


class OrderStatus(str, Enum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    # Nothing of it is queued or running: it waits for a signal or a time (states.WAITING).
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # A step failed for good, or the order was cancelled, after steps with an undo had
    # succeeded: those undos run (a saga's compensations), newest success first.
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"  # every undo succeeded
    COMPENSATION_FAILED = "compensation_failed"  # an undo ran out of retries: an incident


class OrderStage(str, Enum):
    """Where an order stands, as an operator counts progress (tiles, filters, /api/stats,
    /metrics): an unfinished order is running while any of its steps runs, else retrying
    while any waits out a backoff, else queued (its next steps wait for a slot, in the
    scheduler or in a worker's queue). A finished one is its status."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    WAITING = "waiting"  # nothing queued or running; a step waits for a signal or a time
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


def members(enum: type[Enum]) -> type:
    """The enum's members as attributes of a plain class: the same objects, read cheaply.
    On Python 3.11 reading `TaskState.RUNNING` goes through the enum's class machinery,
    about 130 ns (measured: 9 ns for a local, 20-25 ns for a plain class's attribute), and
    the per-step path reads dozens; the modules on it name members through these."""
    return type(f"{enum.__name__}Members", (), dict(enum.__members__))


S = members(TaskState)
Status = members(OrderStatus)
Stage = members(OrderStage)

# Every legal move. Reassignment of a lost worker's task is ASSIGNED/RUNNING -> ASSIGNED (or
# READY when no worker is left). FAILED/CANCELLED -> READY/PENDING is the manual "retry order"
# (-> WAITING for a wait or a delayed step). WAITING ends READY (a delay is over), SUCCEEDED
# (its signal came, or its timeout continues), FAILED or CANCELLED (its timeout says so).
# A migration (migrate.py) skips a step added before steps that ran (PENDING -> SKIPPED) and
# puts a ready step back to wait for one added before it (READY -> PENDING); a later one
# may put a skipped step back in line when no step after it has run (SKIPPED -> PENDING).
# An operator re-running a finished order from a step (rerun.py) puts that step and those
# after it back in line, succeeded or not (SUCCEEDED/FAILED/SKIPPED -> PENDING/READY/WAITING).
ALLOWED: dict[TaskState, frozenset[TaskState]] = {
    S.PENDING: frozenset({S.READY, S.WAITING, S.CANCELLED, S.SKIPPED}),
    S.READY: frozenset({S.ASSIGNED, S.CANCELLED, S.PENDING}),
    S.ASSIGNED: frozenset({S.RUNNING, S.ASSIGNED, S.READY, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.RETRY_WAIT, S.FAILED, S.ASSIGNED, S.READY, S.CANCELLED}),
    S.RETRY_WAIT: frozenset({S.READY, S.CANCELLED}),
    S.WAITING: frozenset({S.READY, S.SUCCEEDED, S.FAILED, S.CANCELLED}),
    S.SUCCEEDED: frozenset({S.PENDING, S.READY, S.WAITING}),
    S.FAILED: frozenset({S.PENDING, S.READY, S.WAITING}),
    S.CANCELLED: frozenset({S.PENDING, S.READY, S.WAITING}),
    S.SKIPPED: frozenset({S.PENDING, S.READY, S.WAITING}),
}

# States in which a task sits on a worker and counts towards its load.
ON_WORKER = frozenset({S.ASSIGNED, S.RUNNING})
TERMINAL = frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED, S.SKIPPED})
# States that let the steps after a step go on: it succeeded, or a migration skipped it.
DONE = frozenset({S.SUCCEEDED, S.SKIPPED})
TERMINAL_ORDER = frozenset({OrderStatus.COMPLETED, OrderStatus.FAILED, OrderStatus.CANCELLED,
                            OrderStatus.COMPENSATED, OrderStatus.COMPENSATION_FAILED})
# Each status by its value (an order keeps the status it last reported as its value): a
# lookup for the per-step path, where `OrderStatus(value)` costs more.
STATUS_OF = {status.value: status for status in OrderStatus}
# How many of a task's last moves an invalid move's error names.
RECENT_MOVES = 12


class InvalidTransition(RuntimeError):
    """A move the table does not allow; carries the task's recent history."""

    def __init__(self, task_id: str, start: TaskState, finish: TaskState, history: list):
        self.task_id, self.start, self.finish, self.history = task_id, start, finish, history
        trail = " -> ".join(h.value for h in history) or "(none)"
        super().__init__(
            f"task {task_id}: {start.value} -> {finish.value} is not allowed (history: {trail})"
        )


def check_transition(task_id: str, start: TaskState, finish: TaskState, history: list) -> None:
    """Raise InvalidTransition, naming the task's last moves of `history`, unless the
    table allows the move. (Copied only then: this runs at every move of every task.)"""
    if finish not in ALLOWED[start]:
        raise InvalidTransition(task_id, start, finish, history[-RECENT_MOVES:])


def derive_order_status(states: Iterable[TaskState]) -> OrderStatus:
    """An order's status is a function of its tasks' states, never stored separately.

    One pass, as this runs after every step: failed beats cancelled beats the rest. An
    order with a step waiting for the outside world and none queued or running is waiting;
    one whose steps all succeeded or were skipped is completed.
    """
    count = succeeded = waiting = outside = 0
    cancelled = busy = False
    for state in states:
        count += 1
        if state is S.SUCCEEDED or state is S.SKIPPED:
            succeeded += 1
        elif state is S.FAILED:
            return Status.FAILED
        elif state is S.CANCELLED:
            cancelled = True
        elif state is S.PENDING:
            waiting += 1
        elif state is S.READY:
            waiting += 1
            busy = True
        elif state is S.WAITING:
            outside += 1
        else:
            busy = True
    if cancelled:
        return Status.CANCELLED
    if succeeded == count:
        return Status.COMPLETED
    if outside and not busy:
        return Status.WAITING
    if waiting == count:
        return Status.PENDING  # nothing has been handed to a worker yet
    return Status.IN_PROGRESS


def derive_compensation_status(undo_states: Iterable[TaskState]) -> OrderStatus:
    """The status of an order whose undos run, from their states: one undo given up makes
    it compensation_failed (the undos after it are cancelled); all done, compensated."""
    done = True
    for state in undo_states:
        if state is S.FAILED:
            return Status.COMPENSATION_FAILED
        if state is not S.SUCCEEDED:
            done = False
    return Status.COMPENSATED if done else Status.COMPENSATING


ACTIVE_STAGES = (Stage.QUEUED, Stage.RUNNING, Stage.RETRYING, Stage.WAITING)


def active_stage(running: int, retrying: int, waiting: int = 0, queued: int = 0) -> OrderStage:
    """The stage of an unfinished order with `running` steps running, `retrying` steps
    waiting out a backoff, `waiting` steps waiting for a signal or a time and `queued`
    ones ready or on a worker: the one rule, which `derive_order_stage` and the counts
    share (waiting, like the status, only while nothing is queued)."""
    if running:
        return Stage.RUNNING
    if retrying:
        return Stage.RETRYING
    if waiting and not queued:
        return Stage.WAITING
    return Stage.QUEUED


def derive_order_stage(states: Iterable[TaskState],
                       status: OrderStatus | None = None) -> OrderStage:
    """An order's stage from its tasks' states (see OrderStage), and its status where the
    caller knows it (a saga's: its failed step does not make it failed)."""
    states = list(states)
    status = derive_order_status(states) if status is None else status
    if status in TERMINAL_ORDER:
        return OrderStage(status.value)
    return active_stage(states.count(S.RUNNING), states.count(S.RETRY_WAIT),
                        states.count(S.WAITING), states.count(S.READY) + states.count(S.ASSIGNED))
