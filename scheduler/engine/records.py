"""Records: orders and tasks as every reader outside the engine sees them.

The engine keeps live objects (`model.Order`, `model.Task`) on its own clock. Everything that
leaves it (the API's order view, the journal's rows, recovery, the invariant checker) goes
through these plain values, stamped in wall-clock seconds, so a field is named in one place
and a time is converted in one place (`SchedulerCore.wall`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .states import TERMINAL_ORDER

FINISHED_STATUSES = frozenset(s.value for s in TERMINAL_ORDER)


class TaskRecord(NamedTuple):
    """One step of one order. The field order is the journal's column order."""

    order_id: str
    step: str
    state: str  # a TaskState value
    attempt: int  # number of the latest attempt started; 0 before the first
    attempt_open: bool  # the latest attempt has not failed (a restart re-runs it)
    reassignments: int  # times its worker died while it ran (poison count)
    runs: int  # times a worker started it, whatever the outcome
    worker: str | None
    result: Any
    error: str | None
    retry_at: float | None  # wall clock: when a retry_wait ends
    # Times it was taken off a worker that left (died or drained) and put back in line.
    moves: int = 0
    # The seq of its success event (0: none): an order's undos run newest success first.
    completed: int = 0
    # Of an undo (a saga's compensation task): the step whose success it undoes.
    compensates: str | None = None
    # Re-runs by hand with new idempotency keys (engine/rerun.py): its handler's key round.
    key_round: int = 0

    @property
    def id(self) -> str:
        """The task id, which is also the idempotency key handed to its handler."""
        return f"{self.order_id}:{self.step}"

    def view(self, with_result: bool = True, waiting_for: str | None = None) -> dict:
        """The task as the HTTP API shows it; `waiting_for` says why a ready step is not on a
        worker yet (known only to the running engine)."""
        view = {
            "status": self.state,
            "attempts": self.attempt,
            "runs": self.runs,
            # Moves: every time it was taken off a worker that died or drained (what the
            # dashboard shows); reassignments: the deaths while it ran (its poison count).
            "moves": self.moves,
            "reassignments": self.reassignments,
            "worker": self.worker,
            "error": self.error,
            "retry_at": self.retry_at,
            "waiting_for": waiting_for,
            "compensates": self.compensates,
        }
        if with_result:
            view["result"] = self.result
        return view


def new_task_record(order_id: str, step: str) -> TaskRecord:
    """A step as it is at submission: what a journal that never wrote its row implies."""
    return TaskRecord(order_id, step, "pending", 0, False, 0, 0, None, None, None, None)


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One order with its tasks (in the workflow's step order) and, where asked, events."""

    id: str
    number: int  # submission order, for stable listing and cursors
    workflow: str
    data: dict
    idempotency_key: str | None
    submitted_at: float  # wall clock
    finished_at: float | None  # wall clock
    status: str  # an OrderStatus value, as last announced
    priority: int = 0  # higher first among orders at the same stage
    tasks: tuple[TaskRecord, ...] = ()
    events: tuple[dict, ...] = field(default=())
    # The version of the workflow definition it is pinned to ("": none, or a journal
    # written before versions).
    version: str = ""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def view(self, with_results: bool = True, waiting: dict[str, str] | None = None) -> dict:
        """The order as the HTTP API shows it, from memory or from the journal alike;
        `waiting`: step -> why it waits (from the running engine)."""
        waiting = waiting or {}
        return {
            "id": self.id,
            "number": self.number,
            "status": self.status,
            "workflow": self.workflow,
            "version": self.version,
            "priority": self.priority,
            "customer": self.data.get("customer"),
            "data": self.data,
            "tasks": {t.step: t.view(with_results, waiting.get(t.step)) for t in self.tasks},
            "submitted_at": round(self.submitted_at, 3),
            "finished_at": round(self.finished_at, 3) if self.finished_at is not None else None,
            "terminal": self.finished,
            # What its steps wait for (a signal, a time) and until when: known only to the
            # running engine (views.order_view).
            "waits": [],
        }


@dataclass(frozen=True)
class OrderQuery:
    """What a search of orders asks for (`GET /api/orders`): every field given must hold.
    Text is matched case-insensitively as a part of the value; times are wall clock."""

    status: str | None = None  # an OrderStatus value
    workflow: str | None = None
    customer: str | None = None  # a part of the order's customer
    error: str | None = None  # a part of any step's last error
    since: float | None = None  # submitted at or after
    until: float | None = None  # submitted before
    sku: str | None = None  # a part of any item's SKU
    # A part of any of these: the order's id, its customer, an item's SKU, a step's last
    # error, its workflow (what an operator types in the dashboard's search box).
    text: str | None = None

    def time_bounds(self) -> tuple[float | None, float | None]:
        """`since` and `until` as bounds on the exact submission time. Views show times to
        the millisecond (rounded), and a bound is compared with the time as shown: an
        order's own `submitted_at` as `since` finds it, as `until` leaves it out."""
        half = 0.0005
        return (None if self.since is None else self.since - half,
                None if self.until is None else self.until - half)

    def matches(
        self,
        status: str,
        workflow: str,
        customer: object,
        submitted_at: float,
        errors: Iterable[str | None],
        order_id: str = "",
        skus: Iterable[str] = (),
    ) -> bool:
        """Whether an order with these values is one the query asks for."""
        if self.status is not None and status != self.status:
            return False
        if self.workflow is not None and workflow != self.workflow:
            return False
        since, until = self.time_bounds()
        if since is not None and submitted_at < since:
            return False
        if until is not None and submitted_at >= until:
            return False
        if self.customer is not None and not (
            isinstance(customer, str) and self.customer.casefold() in customer.casefold()
        ):
            return False
        if self.sku is not None:
            wanted = self.sku.casefold()
            if not any(wanted in sku.casefold() for sku in skus):
                return False
        if self.text is not None:
            errors = list(errors)  # read twice: for `text`, then for `error`
            wanted = self.text.casefold()
            if not any(wanted in value.casefold() for value in (
                    order_id, workflow, customer if isinstance(customer, str) else "",
                    *skus, *(e for e in errors if e is not None))):
                return False
        if self.error is not None:
            wanted = self.error.casefold()
            return any(e is not None and wanted in e.casefold() for e in errors)
        return True


def skus_of(data: dict) -> list[str]:
    """The SKUs of an order's items (its input as accepted: each item has one)."""
    items = data.get("items")
    if not isinstance(items, list):
        return []
    return [item["sku"] for item in items
            if isinstance(item, dict) and isinstance(item.get("sku"), str)]


@dataclass(frozen=True)
class ResumePoint:
    """Where numbering and totals stood when the journal last committed, so a restarted
    engine continues them: event seq, order numbers, leases, and the cumulative counts of
    finished orders and tasks (pruned and forgotten ones included)."""

    seq: int = 0
    order_number: int = 0
    lease_counter: int = 0
    counters: dict[str, int] = field(default_factory=dict)  # retries, reassignments, ...
    # Counts by status and state; only the finished ones are taken over (the unfinished
    # are recounted from the orders that come back).
    orders_by_status: dict[str, int] = field(default_factory=dict)
    tasks_by_state: dict[str, int] = field(default_factory=dict)
    recent_events: list[dict] = field(default_factory=list)


__all__ = [
    "FINISHED_STATUSES",
    "OrderQuery",
    "OrderRecord",
    "ResumePoint",
    "TaskRecord",
    "new_task_record",
    "skus_of",
]
