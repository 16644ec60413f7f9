"""Recovery: what a journal hands back after a restart, and how the engine takes it over.

The journal reads (`Journal.recover`); the engine rebuilds its own state through its public
`restore()`, so every state a task comes back in goes through the transition table. Finished
orders come back as they were; a step that was queued or running re-runs as the same attempt
(at-least-once, same idempotency key); a step waiting out a retry keeps its backoff. Event
seq, order numbers, leases and the retry and reassignment counts continue where they stopped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..engine.core import SchedulerCore
from ..engine.model import Effects
from ..engine.pauses import Pause
from ..engine.records import OrderRecord, ResumePoint
from ..engine.workflow import Workflow

log = logging.getLogger("orderflow.recovery")


@dataclass
class Recovered:
    """Everything the engine needs to continue after a restart."""

    point: ResumePoint
    orders: list[OrderRecord]  # every unfinished order and the latest finished ones, oldest first
    # The incidents kept (scheduler/runtime/incidents.py), as their views, oldest first.
    incidents: list[dict] = field(default_factory=list)
    # Each step's controls (SchedulerCore.control_view): its pause, its live limits.
    controls: list[dict] = field(default_factory=list)
    # Each schedule's mark (engine/schedules.py `Mark.view`): since when, the latest time.
    schedules: list[dict] = field(default_factory=list)
    # Every workflow definition an order was pinned to (engine/definitions.py).
    definitions: list[Workflow] = field(default_factory=list)


def resume_point(counters: dict, max_seq: int, max_number: int,
                 recent: list[dict]) -> ResumePoint:
    """Where the engine continues, from the journal's saved counters and what its tables
    hold: an event or order written after the counters were last saved still counts."""
    return ResumePoint(
        seq=max(max_seq, counters.get("seq", 0)),
        order_number=max(max_number, counters.get("order_number", 0)),
        lease_counter=counters.get("lease_counter", 0),
        counters=counters.get("counters", {}),
        orders_by_status=counters.get("orders_by_status", {}),
        tasks_by_state=counters.get("tasks_by_state", {}),
        recent_events=recent,
    )


def recover_into(core: SchedulerCore, recovered: Recovered, now: float) -> Effects:
    """Hand `recovered` to a fresh core; returns the events announcing re-queued steps."""
    pauses = [Pause.from_view(c["step"], c["pause"]) for c in recovered.controls if c["pause"]]
    limits = {c["step"]: c["limits"] for c in recovered.controls if c["limits"]}
    core.restore_controls(pauses, limits, now)
    # Before the orders: each comes back with the definition it was pinned to.
    core.definitions.learn(recovered.definitions)
    fx = core.restore(recovered.point, recovered.orders, now)
    if pauses:
        log.warning("steps still paused after the restart: %s",
                    "; ".join(p.reason() for p in pauses))
    requeued = sum(1 for e in fx.events if e["type"] == "task_recovered")
    log.info(
        "recovered %d orders from the journal; %d unfinished steps queued again",
        len(recovered.orders),
        requeued,
    )
    return fx
