"""Recurring schedules: what one is, what is kept of it, and which times fire now. Pure.

A schedule submits an order of its workflow at each time its cron expression names. The
firing decision is a function of what the journal kept (`Mark`: since when the schedule is
known, the latest time fired or skipped), the time now, and when this scheduler started:

- a time that came while this scheduler ran fires, each one, oldest first;
- a time that came while no scheduler ran (before `started`: the server was down, or a
  failover was under way) is *missed*: with `catch_up` (the default) the latest missed time
  fires once at the start, however many were missed; without it they are skipped.

Each fire's idempotency key is `schedule:<name>:<time>` (`key`), and the mark moves on in
the same commit as the order, so a time fires at most once across restarts and failovers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timezone, tzinfo
from typing import Any

from .cron import Cron, iso

# A decision fires at most this many times at once (a scheduler stalled for long catches
# up over several loops instead of in one burst).
MAX_FIRES = 100


@dataclass(frozen=True)
class Schedule:
    """A declared schedule (`App.schedule`)."""

    name: str
    cron: Cron
    workflow: str | None  # None: the default workflow
    data: dict[str, Any] = field(hash=False)  # the order each time submits
    catch_up: bool = True
    tz: tzinfo = timezone.utc
    tz_name: str = "UTC"

    def key(self, at: float) -> str:
        """The idempotency key of the order submitted for the time `at`."""
        return f"schedule:{self.name}:{iso(at)}"

    def describe(self) -> dict:
        return {"name": self.name, "cron": self.cron.text, "tz": self.tz_name,
                "workflow": self.workflow, "catch_up": self.catch_up}


@dataclass(frozen=True)
class Mark:
    """What the journal keeps of a schedule (one row each), times in POSIX seconds."""

    name: str
    since: float  # when it was first known: no earlier time fires
    last: float | None = None  # the latest time fired or skipped
    last_run: dict | None = None  # {"at", "order_id", "fired_at"} of the latest time fired
    runs: int = 0
    skipped: int = 0

    @property
    def after(self) -> float:
        """Times after this one are still to come."""
        return self.since if self.last is None else max(self.since, self.last)

    def view(self) -> dict:
        return {"name": self.name, "since": self.since, "last": self.last,
                "last_run": self.last_run, "runs": self.runs, "skipped": self.skipped}

    @classmethod
    def from_view(cls, view: dict) -> Mark:
        return cls(view["name"], float(view["since"]), view.get("last"), view.get("last_run"),
                   int(view.get("runs", 0)), int(view.get("skipped", 0)))

    def fired(self, at: float, order_id: str, now: float) -> Mark:
        """After the order for `at` was submitted at `now`."""
        return replace(self, last=at, runs=self.runs + 1,
                       last_run={"at": at, "order_id": order_id, "fired_at": now})

    def skipped_until(self, at: float, count: int) -> Mark:
        return replace(self, last=at, skipped=self.skipped + count)


@dataclass(frozen=True)
class Due:
    """What to do now: the times to fire (oldest first), the missed times skipped (first,
    last and how many, or None), and when to look again (None: never fires again)."""

    fire: tuple[float, ...] = ()
    skipped: tuple[float, float, int] | None = None
    next_at: float | None = None


def decide(schedule: Schedule, mark: Mark, now: float, started: float,
           limit: int = MAX_FIRES) -> Due:
    """Which of `schedule`'s times fire at `now` (wall clock), given its `mark` and when
    this scheduler `started` (see the module docstring)."""
    cron, tz = schedule.cron, schedule.tz
    after = mark.after
    fire: list[float] = []
    skipped = None
    missed_until = min(now, started)
    if missed_until > after:
        latest = cron.last_at_or_before(missed_until, tz)
        if latest is not None and latest > after:
            if schedule.catch_up:
                fire.append(latest)
            else:
                missed = cron.times_between(after, latest, tz, limit=10_000)
                skipped = (missed[0], latest, len(missed))
            after = latest
    after = max(after, missed_until)
    room = limit - len(fire)
    regular = cron.times_between(after, now, tz, limit=room)
    fire.extend(regular)
    if len(regular) == room:  # more may be due: look again at once
        return Due(tuple(fire), skipped, now)
    return Due(tuple(fire), skipped, cron.next_after(now, tz))


__all__ = ["MAX_FIRES", "Due", "Mark", "Schedule", "decide"]
