"""Incidents: what an operator on call must see whatever happened since (a worker's death, a
drain, a server restart, a new leader), kept as records of their own rather than read off
the tail of the event stream.

A restart is followed by one `task_recovered` event per step it queues again (809 in one
burst), so the latest events a page receives never held the restart that caused them. Here
each incident is one small record, opened by its event and counting the events that name it
as their `cause` (the moves of a death or a drain, the steps a restart queued again), with
the first few of those kept for a person to read. The log keeps the latest `limit`
incidents; the journal keeps them across restarts (its `incidents` table, written in the
same commit as the events), and every dashboard snapshot carries them whole.

Kinds are open: a paused step (by hand or by its breaker) and its resume are entries of
OPENERS; an alert would become one more entry of OPENERS (the event that
opens it) and of `Incident.title`. No threads and no clock: the cluster feeds it its events
under its lock, and the journal and the stream read what changed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

# Incidents kept (in memory and in the journal), the newest.
MAX_INCIDENTS = 100
# Caused events kept per incident for a person to read (all are counted).
MAX_CAUSED = 50
# What a caused event keeps: enough for one line ("o-1 payment: w-3 → w-1 (worker dead)").
CAUSED_FIELDS = ("seq", "ts", "type", "order_id", "step", "worker_id", "from_worker",
                 "reason", "attempt", "message")


@dataclass(frozen=True)
class Kind:
    """What an event that opens an incident makes of it."""

    name: str
    pinned: bool  # held above the page's log until dismissed (a drain is planned: it is not)


# The event types that open an incident, and how.
OPENERS = {
    "worker_dead": Kind("worker_dead", pinned=True),
    "worker_draining": Kind("worker_drained", pinned=False),
    "server_restarted": Kind("server_restarted", pinned=True),
    # Orders pinned to a workflow version the running app lacks, waiting for its workers.
    "definitions_missing": Kind("definitions_missing", pinned=True),
    # A step paused by hand, or by its breaker (orders wait until it resumes), and resumed.
    "step_paused": Kind("step_paused", pinned=True),
    "breaker_tripped": Kind("breaker_tripped", pinned=True),
    "step_resumed": Kind("step_resumed", pinned=False),
    "alert_raised": Kind("alert", pinned=True),
    # An undo ran out of retries: the order's charge (or stock, ...) is not given back
    # until an operator retries its undos (POST /api/orders/<id>/retry).
    "order_compensation_failed": Kind("compensation_failed", pinned=True),
}
# What a server restart is called when a leadership term of a shared database took over.
FAILOVER = Kind("failover", pinned=True)
# Caused events counted by what they are.
COUNTED = {"task_reassigned": "moved", "task_recovered": "recovered",
           "alert_cleared": "cleared"}


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


@dataclass
class Incident:
    """One incident: its opening event's facts, and what it caused (counted, the first few
    kept)."""

    id: int  # the seq of the event that opened it
    kind: str
    ts: float
    message: str
    pinned: bool
    worker: str | None = None
    order: str | None = None  # the order it is about (a failed compensation), if any
    epoch: int = 0  # the leadership term that recovered (a failover), else 0
    facts: dict = field(default_factory=dict)  # the opening event's numbers (orders, steps)
    counts: dict = field(default_factory=dict)  # caused events by what they are
    caused: list[dict] = field(default_factory=list)
    caused_total: int = 0
    version: int = 0  # the log's version when it last changed

    def add(self, event: dict) -> None:
        """An event that names this incident as its cause."""
        self.caused_total += 1
        what = COUNTED.get(event["type"], "other")
        self.counts[what] = self.counts.get(what, 0) + 1
        if len(self.caused) < MAX_CAUSED:
            self.caused.append({k: event[k] for k in CAUSED_FIELDS if event.get(k) is not None})

    def title(self) -> str:
        """The headline a person reads first: what happened and how much it moved."""
        moved = self.counts.get("moved", 0)
        if self.kind == "worker_dead":
            return f"{self.worker} died: {plural(moved, 'task')} moved"
        if self.kind == "worker_drained":
            return f"{self.worker} drained: {plural(moved, 'queued task')} moved"
        if self.kind in ("server_restarted", "failover"):
            orders = self.facts.get("orders", 0)
            steps = self.facts.get("steps", self.counts.get("recovered", 0))
            who = ("server restarted" if self.kind == "server_restarted"
                   else f"leadership taken over (epoch {self.epoch})")
            return (f"{who}: {plural(orders, 'order')} recovered, "
                    f"{plural(steps, 'step')} to run again")
        step = self.facts.get("step")
        if self.kind == "step_paused":
            return f"{step} paused by hand: its orders wait"
        if self.kind == "breaker_tripped":
            return f"{step} paused by its circuit breaker: its orders wait"
        if self.kind == "step_resumed":
            return f"{step} resumed: {plural(self.facts.get('held', 0), 'ready task')} go"
        if self.kind == "alert" and self.counts.get("cleared"):
            return f"{self.message} (cleared)"
        return self.message

    def view(self) -> dict:
        """The record as the journal keeps it and a page shows it."""
        return {
            "id": self.id, "kind": self.kind, "ts": self.ts, "title": self.title(),
            "message": self.message, "worker": self.worker, "order": self.order,
            "epoch": self.epoch,
            "pinned": self.pinned, "facts": dict(self.facts), "counts": dict(self.counts),
            "caused": list(self.caused), "caused_total": self.caused_total,
        }

    @classmethod
    def from_view(cls, view: dict) -> Incident:
        return cls(
            id=view["id"], kind=view["kind"], ts=view["ts"], message=view["message"],
            pinned=view.get("pinned", False), worker=view.get("worker"),
            order=view.get("order"), epoch=view.get("epoch", 0), facts=dict(view.get("facts", {})),
            counts=dict(view.get("counts", {})), caused=list(view.get("caused", [])),
            caused_total=view.get("caused_total", 0))


class IncidentLog:
    """The latest incidents, oldest first, fed with the cluster's events (see the module
    docstring). Not thread-safe: the cluster calls it under its lock."""

    def __init__(self, limit: int = MAX_INCIDENTS, epoch: int = 0):
        self.limit = limit
        self.epoch = epoch  # this cluster's leadership term (0: it leads its journal alone)
        self.version = 0  # bumped by every change
        self._incidents: OrderedDict[int, Incident] = OrderedDict()
        self._unsaved: set[int] = set()  # changed since the journal last took them

    def load(self, views: Iterable[dict]) -> None:
        """The incidents a journal kept (before a restart), in any order."""
        for view in sorted(views, key=lambda v: v["id"]):
            self._incidents[view["id"]] = Incident.from_view(view)
        self._trim()
        self.version += 1

    def observe(self, events: Iterable[dict]) -> bool:
        """Open incidents and count what they caused; True when any incident changed."""
        changed = False
        incidents = self._incidents
        for event in events:
            kind = OPENERS.get(event["type"])
            if kind is not None:
                self._open(kind, event)
                changed = True
                continue
            cause = event.get("cause")
            if cause is not None:
                incident = incidents.get(cause)
                if incident is not None:
                    incident.add(event)
                    self._touch(incident)
                    changed = True
        if changed:
            self._trim()
        return changed

    def _open(self, kind: Kind, event: dict) -> None:
        if kind.name == "server_restarted" and self.epoch:
            kind = FAILOVER
        facts = {k: event[k] for k in ("orders", "steps", "moving", "unconfirmed", "held")
                 if isinstance(event.get(k), int)}
        if event.get("step") is not None:
            facts["step"] = event["step"]
        incident = Incident(
            id=event["seq"], kind=kind.name, ts=event["ts"], message=event["message"],
            pinned=kind.pinned, worker=event.get("worker_id"), order=event.get("order_id"),
            epoch=self.epoch if kind is FAILOVER else 0, facts=facts)
        self._incidents[incident.id] = incident
        self._touch(incident)

    def _touch(self, incident: Incident) -> None:
        self.version += 1
        incident.version = self.version
        self._unsaved.add(incident.id)

    def _trim(self) -> None:
        while len(self._incidents) > self.limit:
            oldest, _ = self._incidents.popitem(last=False)
            self._unsaved.discard(oldest)

    # ------------------------------------------------------------ readers

    def views(self) -> list[dict]:
        """Every incident kept, newest first."""
        return [i.view() for i in reversed(self._incidents.values())]

    def changed_since(self, version: int) -> tuple[int, list[dict]]:
        """(the log's version now, the incidents changed after `version`, newest first)."""
        if version >= self.version:
            return self.version, []
        return self.version, [i.view() for i in reversed(self._incidents.values())
                              if i.version > version]

    def take_unsaved(self) -> tuple[list[dict], int | None]:
        """The incidents changed since the last call (for the journal), and the id of the
        oldest one kept (the journal forgets those before it); ([], None) when none."""
        if not self._unsaved:
            return [], None
        views = [self._incidents[i].view() for i in sorted(self._unsaved)]
        self._unsaved.clear()
        return views, next(iter(self._incidents))
