"""Plain records the core keeps for orders, tasks and workers, and the effects it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .states import TaskState
from .workflow import Workflow

# How many events of one order are kept for its timeline (a retried, much-reassigned order
# can produce many); the journal keeps all of them.
ORDER_EVENT_CAP = 500


@dataclass(slots=True)
class Task:
    id: str  # "<order id>:<step>", also the idempotency key handed to handlers
    order_id: str
    step: str
    state: TaskState
    waiting_on: set[str]
    attempt: int = 0  # number of the latest attempt started; 0 before the first
    # True while the latest attempt has not failed: a restart after a reassignment is the
    # same attempt (losing a worker is not a retry), a start after a failure is a new one.
    attempt_open: bool = False
    reassignments: int = 0  # times its worker died while it was running (poison count)
    runs: int = 0  # times a worker started it, whatever the outcome
    # Times it was taken off a worker that left (died or drained) and put back in line:
    # what the dashboard, the API and the `task_reassigned` events count as moves.
    moves: int = 0
    worker: str | None = None
    lease: int = 0  # fencing token of the current assignment; 0 = none
    due: float | None = None  # when a retry_wait ends, or a waiting task's timer fires
    deadline: float | None = None  # when the running attempt times out
    ticket: int = 0  # its entry in the ready queue (older entries are stale)
    wait_reason: str | None = None  # why a ready task is not on a worker yet
    result: Any = None
    error: str | None = None
    started_at: float | None = None
    history: list[TaskState] = field(default_factory=list)
    # Seq of its `task_succeeded` event (0: not succeeded): its order's undos run newest
    # success first.
    completed: int = 0
    # Of an undo (a compensation task): the step whose success it undoes.
    compensates: str | None = None
    # Its step's counts in `Progress` while its order is unfinished (None once finished).
    tally: dict[str, int] | None = None
    # Re-runs by hand asked with new idempotency keys: its handler's key is new after each
    # (rerun.py `key_of`; 0: its id).
    key_round: int = 0


@dataclass(slots=True)
class Order:
    id: str
    number: int  # submission order, for stable listing and cursors
    workflow: Workflow
    data: dict
    tasks: dict[str, Task]
    submitted_at: float
    reported_status: str = "pending"  # the status last announced by an event
    finished_at: float | None = None
    idempotency_key: str | None = None
    priority: int = 0  # higher first among orders at the same stage (e.g. express)
    started: bool = False  # a step of it has run: its later steps go before new orders
    events: list[dict] = field(default_factory=list)
    # Kept by `Progress` while unfinished: its steps running and waiting out a backoff, and
    # its stage (an OrderStage value; None once finished).
    running: int = 0
    retrying: int = 0
    waiting: int = 0  # its steps waiting for a signal or a time
    queued: int = 0  # its steps ready or on a worker
    stage: str | None = None
    # Its undos in the order they run (empty: not compensating); each waits for the one
    # before it.
    undoing: list[str] = field(default_factory=list)
    # No step of it starts before this (its submit's `not_before`, on the core's clock).
    not_before: float | None = None
    # Signals delivered to its waits: name -> (data, idempotency key). One that came before
    # its wait was reached is kept here until it is. None: none came (most orders).
    signals: dict[str, tuple[Any, str | None]] | None = None

    def deps_of(self, step: str) -> tuple[str, ...]:
        """What `step` (of the workflow, or an undo) waits for."""
        if step in self.workflow.deps:
            return self.workflow.deps[step]
        at = self.undoing.index(step)
        return (self.undoing[at - 1],) if at else ()

    def dependents_of(self, step: str) -> tuple[str, ...]:
        """What waits for `step` (of the workflow, or an undo)."""
        if step in self.workflow.dependents:
            return self.workflow.dependents[step]
        at = self.undoing.index(step) + 1
        return tuple(self.undoing[at:at + 1])

    def position(self, step: str) -> int:
        """Where `step` stands in the order's steps: the workflow's, then the undos."""
        steps = self.workflow.steps
        return steps.index(step) if step in self.workflow.deps else (
            len(steps) + self.undoing.index(step))

    def to_undo(self) -> list[Task]:
        """Its succeeded steps that have an undo, newest success first (steps of a journal
        older than `completed`, all 0: the later in the workflow first)."""
        undone = self.workflow.compensations
        done = [t for t in self.tasks.values() if t.state is TaskState.SUCCEEDED
                and t.step in undone]
        steps = self.workflow.steps
        return sorted(done, key=lambda t: (t.completed, steps.index(t.step)), reverse=True)

    def step_names(self) -> list[str]:
        """Its tasks' steps: the workflow's, then its undos in the order they run."""
        return [*self.workflow.steps, *self.undoing]


@dataclass(slots=True)
class WorkerRecord:
    id: str
    kind: str  # "thread" or "process"
    status: str  # alive | draining | dead | removed ("suspect" is derived from heartbeat age)
    last_heartbeat: float
    joined_at: float
    slots: int = 1  # tasks it runs at once
    # What it can run: the steps it has handlers for (None: any step) and the capability
    # tags it offers (a step with tags runs only where all of them are offered).
    steps: frozenset[str] | None = None
    tags: frozenset[str] = frozenset()
    # The workflow definitions it runs (keys, "checkout@v1"; None: any): a step of an
    # order runs only where the definition the order is pinned to is offered.
    definitions: frozenset[str] | None = None
    tasks: set[str] = field(default_factory=set)  # assigned or running here
    running: set[str] = field(default_factory=set)  # of those, started
    # (task, lease) of attempts that timed out while their handler has not returned: the
    # slot stays taken until it does.
    stuck: set[tuple[str, int]] = field(default_factory=set)
    # Of a thread worker: those stuck past `abandon_after`, whose thread was abandoned and
    # replaced. The slot serves again; the handler still runs (and its step's limits count
    # it) until it returns.
    abandoned: set[tuple[str, int]] = field(default_factory=set)
    # The attempt number of each of those (task, lease), stuck or abandoned: its own, as the
    # task itself may be on a later attempt by the time the worker leaves and it is buried.
    stuck_attempts: dict[tuple[str, int], int] = field(default_factory=dict)
    done: int = 0
    failed: int = 0
    meta: dict = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Dispatch:
    """Put task `task_id` under `lease` into worker `worker_id`'s queue."""

    worker_id: str
    task_id: str
    lease: int


@dataclass(slots=True)
class Effects:
    """What the shell must carry out after one stimulus, in this order."""

    events: list[dict] = field(default_factory=list)
    dispatches: list[Dispatch] = field(default_factory=list)
    # Workers that left (dead or removed): the shell stops their threads or connections.
    departed: list[str] = field(default_factory=list)
    # Attempts whose lease was revoked while running (timed out): the shell tells their
    # worker to cancel the handler.
    cancels: list[Dispatch] = field(default_factory=list)
    # Timed-out attempts whose handler ignored the cancellation: the shell tells their
    # thread worker to give the slot a new thread and leave the old one to its handler.
    abandons: list[Dispatch] = field(default_factory=list)
    # Earliest due time (a retry, a time limit, a timer), so the shell's timer can sleep
    # until then.
    wake_at: float | None = None
    # Every state move of a task, in order: (task, from, to). The journal decides which of
    # them it must write down.
    moves: list[tuple[Task, TaskState, TaskState]] = field(default_factory=list)
    # Orders submitted, or whose status became or stopped being final.
    orders: dict[str, Order] = field(default_factory=dict)
    # Orders forgotten from memory (finished beyond the history kept): an index of memory
    # drops them; the journal keeps them.
    forgotten: list[str] = field(default_factory=list)
    # Workflow definitions an order used for the first time: the journal writes each once,
    # in the same commit as that order.
    definitions: list[Workflow] = field(default_factory=list)

    def absorb(self, later: Effects) -> Effects:
        """Add the effects of a later stimulus, to carry several out as one."""
        self.events += later.events
        self.dispatches += later.dispatches
        self.departed += later.departed
        self.cancels += later.cancels
        self.abandons += later.abandons
        self.moves += later.moves
        self.orders.update(later.orders)
        self.forgotten += later.forgotten
        self.definitions += later.definitions
        self.wake_at = later.wake_at
        return self
