"""The leader's recurring schedules: a one-iteration loop over the pure decision.

`loop(now)` asks `engine/schedules.decide` which times are due for each schedule and has the
cluster carry them out (`SchedulePort`): a fire submits the schedule's order with the key
`schedule:<name>:<time>` and journals the schedule's new mark in the same commit; a skip and
a schedule seen for the first time are events with their marks. Only a started cluster runs
the loop, and on several servers only the leader's cluster is started (a standby holds a
placeholder that never starts; a deposed leader's journal commits nothing more), so only
the leader fires. A fire that cannot be committed now (the journal is down, the server is
full) is one log line, and is tried again a second later under the same key.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Protocol

from ..engine.cron import iso
from ..engine.schedules import Mark, Schedule, decide

log = logging.getLogger("orderflow.schedules")
# Seconds before a fire that could not be committed is tried again.
RETRY_AFTER = 1.0


class SchedulePort(Protocol):
    """What the loop asks of the cluster (runtime/cluster.py), each under its lock."""

    def schedule_fire(self, schedule: Schedule, at: float, mark: Mark,
                      now: float) -> tuple[str, bool]: ...
    def schedule_noted(self, kind: str, schedule: Schedule, mark: Mark, message: str,
                       **details: object) -> None: ...


class ScheduleRunner:
    """The schedules of one cluster, their marks, and when each is next due."""

    def __init__(self, schedules: Mapping[str, Schedule], port: SchedulePort):
        self.schedules = dict(schedules)
        self._port = port
        self._lock = threading.Lock()  # marks are read by views on other threads
        self._looping = threading.Lock()  # one look at a time (the thread, or a test's call)
        self._marks: dict[str, Mark] = {}
        self._next: dict[str, float | None] = {}
        self._started: float | None = None

    def restore(self, views: Iterable[dict], now: float) -> None:
        """The marks a journal kept (of schedules this app still has), and when this
        scheduler started: times before `now` that no mark covers were missed."""
        with self._lock:
            for view in views:
                if view["name"] in self.schedules:
                    self._marks[view["name"]] = Mark.from_view(view)
            self._started = now

    def loop(self, now: float) -> float | None:
        """Fire, skip and add what is due at `now` (wall clock); returns when to look again
        (None: no schedule fires again)."""
        with self._looping:
            return self._loop(now)

    def _loop(self, now: float) -> float | None:
        if self._started is None:
            self._started = now
        wake: list[float] = []
        for name, schedule in self.schedules.items():
            due_at = self._next.get(name, now)
            if due_at is not None and due_at <= now:
                due_at = self._run(schedule, now)
                self._next[name] = due_at
            if due_at is not None:
                wake.append(due_at)
        return min(wake, default=None)

    def _run(self, schedule: Schedule, now: float) -> float | None:
        mark = self._marks.get(schedule.name)
        try:
            if mark is None:
                mark = self._add(schedule, now)
            due = decide(schedule, mark, now, self._started)
            if due.skipped is not None:
                mark = self._skip(schedule, mark, due.skipped)
            for at in due.fire:
                mark = self._fire(schedule, mark, at, now)
        except Exception as exc:  # noqa: BLE001 - a journal outage, a full server: again soon
            log.warning("schedule %s: not fired yet (%s: %s); trying again in %g s",
                        schedule.name, type(exc).__name__, exc, RETRY_AFTER)
            return now + RETRY_AFTER
        return due.next_at

    def _add(self, schedule: Schedule, now: float) -> Mark:
        mark = Mark(schedule.name, since=now)
        first = schedule.cron.next_after(now, schedule.tz)
        when = "never" if first is None else iso(first, schedule.tz)
        self._port.schedule_noted(
            "schedule_added", schedule, mark,
            f"schedule {schedule.name} added: {schedule.cron.text} ({schedule.tz_name}), "
            f"first at {when}", cron=schedule.cron.text, tz=schedule.tz_name)
        self._keep(mark)
        return mark

    def _skip(self, schedule: Schedule, mark: Mark, skipped: tuple[float, float, int]) -> Mark:
        first, last, count = skipped
        mark = mark.skipped_until(last, count)
        self._port.schedule_noted(
            "schedule_skipped", schedule, mark,
            f"schedule {schedule.name} skipped {count} time(s) missed while no server ran, "
            f"{iso(first, schedule.tz)} to {iso(last, schedule.tz)} (catch_up is off)",
            first=first, last=last, count=count)
        self._keep(mark)
        return mark

    def _fire(self, schedule: Schedule, mark: Mark, at: float, now: float) -> Mark:
        order_id, created = self._port.schedule_fire(schedule, at, mark, now)
        mark = mark.fired(at, order_id, now)
        if not created:
            log.info("schedule %s: the time %s has its order already (%s)", schedule.name,
                     iso(at, schedule.tz), order_id)
        self._keep(mark)
        return mark

    def _keep(self, mark: Mark) -> None:
        with self._lock:
            self._marks[mark.name] = mark

    def views(self, now: float) -> list[dict]:
        """Each schedule with its next time and its last run (`GET /api/schedules`)."""
        with self._lock:
            marks = dict(self._marks)
        out = []
        for name, schedule in sorted(self.schedules.items()):
            mark = marks.get(name)
            # The first time not fired yet: in the past while a fire waits (the journal is
            # down, the server full), which is what an alert on it should see.
            after = now if mark is None else mark.after
            following = schedule.cron.next_after(after, schedule.tz)
            last = None if mark is None else mark.last_run
            out.append({
                **schedule.describe(),
                "next": following,
                "next_iso": None if following is None else iso(following, schedule.tz),
                "last_run": None if last is None else {
                    **last, "at_iso": iso(last["at"], schedule.tz)},
                "runs": 0 if mark is None else mark.runs,
                "skipped": 0 if mark is None else mark.skipped,
                "since": None if mark is None else mark.since,
            })
        return out
