"""Paused steps and circuit breakers: a step whose ready tasks wait, whatever its limits.

When the payment gateway is down, an operator pauses `payment` (or its breaker does, seeing
half of its recent attempts fail alike): its ready tasks wait `ready` and say why ("payment
is paused by alice since ..."), attempts already on workers finish, and a task whose retry
backoff ends meanwhile waits too, so no attempt is spent on a gateway known to be down.
Resuming puts them back in line.

A breaker's pause lets one *probe* attempt start `probe_after` seconds after it tripped (and
again that long after each probe that failed or never reported); the probe's success
resumes the step. Pure: time is passed in; `StepLimits` (limits.py) asks `blocks`, `room`
and `free_at` here first, for limited and unlimited steps alike.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from .config import BreakerPolicy, StepPolicy
from .errors import Conflict

# Who pauses a step when its breaker trips.
BREAKER = "the circuit breaker"
# A failure's reason, as the breaker compares it: its first line, cut (an error quoting an
# order id or a long body still groups with its kind by its start).
REASON_CHARS = 120
# Buckets a breaker's window is counted in: memory stays bounded at any rate of attempts.
WINDOW_BUCKETS = 60


def stamp(wall: float) -> str:
    """A wall-clock time as a person reads it in a reason: '2026-12-07 14:03:12 UTC'."""
    return datetime.fromtimestamp(wall, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def failure_reason(error: str) -> str:
    """What makes two failures 'the same reason' for a breaker."""
    return error.strip().split("\n", 1)[0][:REASON_CHARS]


@dataclass(frozen=True)
class Pause:
    """Why a step is paused: by whom, since when (wall clock), what they said."""

    step: str
    who: str
    since: float  # wall-clock seconds
    why: str = ""
    by_breaker: bool = False

    def reason(self) -> str:
        """The wait reason its held tasks show."""
        said = f": {self.why}" if self.why else ""
        return f"{self.step} is paused by {self.who} since {stamp(self.since)}{said}"

    def view(self) -> dict:
        return {"who": self.who, "since": self.since, "why": self.why,
                "by_breaker": self.by_breaker}

    @classmethod
    def from_view(cls, step: str, view: Mapping) -> Pause:
        return cls(step, str(view["who"]), float(view["since"]), str(view.get("why", "")),
                   bool(view.get("by_breaker", False)))


class Breaker:
    """One step's recent attempts, in buckets of `window / WINDOW_BUCKETS` seconds: how many
    ended, and how many failed with each reason."""

    def __init__(self, policy: BreakerPolicy):
        self.policy = policy
        self._width = policy.window / WINDOW_BUCKETS
        # (bucket number, attempts, {reason: failures}), oldest first.
        self._buckets: deque[tuple[int, list[int], dict[str, int]]] = deque()
        self.attempts = 0
        self._failures: dict[str, int] = {}

    def record(self, error: str | None, now: float) -> tuple[str, int] | None:
        """An attempt ended (`error` None: it succeeded). Returns (the reason, its count)
        when the window now says trip: at least `min_attempts`, and `share` of them failed
        with that one reason."""
        self._trim(now)
        number = int(now // self._width)
        if not self._buckets or self._buckets[-1][0] != number:
            self._buckets.append((number, [0], {}))
        _, count, failures = self._buckets[-1]
        count[0] += 1
        self.attempts += 1
        if error is None:
            return None
        reason = failure_reason(error)
        failures[reason] = failures.get(reason, 0) + 1
        self._failures[reason] = self._failures.get(reason, 0) + 1
        failed = self._failures[reason]
        if (self.attempts >= self.policy.min_attempts
                and failed >= self.policy.share * self.attempts):
            return reason, failed
        return None

    def clear(self) -> None:
        self._buckets.clear()
        self.attempts = 0
        self._failures.clear()

    def _trim(self, now: float) -> None:
        oldest = int((now - self.policy.window) // self._width)
        buckets = self._buckets
        while buckets and buckets[0][0] <= oldest:
            _, count, failures = buckets.popleft()
            self.attempts -= count[0]
            for reason, n in failures.items():
                left = self._failures[reason] - n
                if left:
                    self._failures[reason] = left
                else:
                    del self._failures[reason]


@dataclass(frozen=True)
class Verdict:
    """What an ended attempt did to its step: `tripped` its breaker (the new pause), or
    `resumed` it (a probe succeeded: the pause that ended)."""

    pause: Pause
    tripped: bool


class StepPauses:
    """Which steps are paused, and the breakers of the steps that have one."""

    def __init__(self, policies: Mapping[str, StepPolicy]):
        self._pauses: dict[str, Pause] = {}
        self._breakers = {s: Breaker(p.breaker) for s, p in policies.items()
                          if p.breaker is not None}
        # A breaker's pause: when its next probe may start, and the task probing now.
        self._probe_at: dict[str, float] = {}
        self._probe: dict[str, str] = {}

    def __contains__(self, step: str) -> bool:
        return step in self._pauses

    def get(self, step: str) -> Pause | None:
        return self._pauses.get(step)

    def all(self) -> list[Pause]:
        return [self._pauses[s] for s in sorted(self._pauses)]

    def pause(self, step: str, who: str, why: str, wall: float) -> Pause:
        """An operator pauses `step` (Conflict if it is paused already, by anyone)."""
        if step in self._pauses:
            raise Conflict(f"step {step} is already paused: {self._pauses[step].reason()}")
        pause = self._pauses[step] = Pause(step, who, wall, why)
        return pause

    def resume(self, step: str) -> Pause:
        """Resume `step` by hand (Conflict if it is not paused); returns the pause."""
        pause = self._pauses.get(step)
        if pause is None:
            raise Conflict(f"step {step} is not paused")
        self._end(step)
        return pause

    def blocks(self, step: str, now: float) -> str | None:
        """Why a task of `step` may not start now because of a pause, or None."""
        pause = self._pauses.get(step)
        if pause is None or self._may_probe(step, now):
            return None
        return pause.reason()

    def room(self, step: str, now: float) -> int | None:
        """How many tasks of `step` a pause lets start now (None: not paused)."""
        if step not in self._pauses:
            return None
        return 1 if self._may_probe(step, now) else 0

    def free_at(self, step: str, now: float) -> float | None:
        """When a paused step may start a task by itself (its next probe), or None."""
        at = self._probe_at.get(step)
        return None if at is None else max(at, now)

    def started(self, step: str, task_id: str, now: float) -> None:
        """A task of `step` was handed to a worker: under a breaker's pause, it is the
        probe, and the next may start `probe_after` later if this one never reports."""
        if step in self._probe_at and self._may_probe(step, now):
            self._probe[step] = task_id
            self._probe_at[step] = now + self._breakers[step].policy.probe_after

    def attempt_ended(self, step: str, task_id: str, error: str | None, wall: float,
                      now: float) -> Verdict | None:
        """An attempt of `step` ended (`error` None: it succeeded): feed its breaker.
        Returns the verdict when it tripped the breaker or, as the probe, resumed the step."""
        breaker = self._breakers.get(step)
        if breaker is None:
            return None
        pause = self._pauses.get(step)
        if pause is not None:
            if self._probe.get(step) != task_id:
                return None  # attempts in flight when it paused, finishing: not evidence
            del self._probe[step]
            if error is None:
                self._end(step)
                return Verdict(pause, tripped=False)
            self._probe_at[step] = now + breaker.policy.probe_after
            return None
        tripped = breaker.record(error, now)
        if tripped is None:
            return None
        reason, failed = tripped
        window = breaker.policy.window
        why = (f"{failed} of its last {breaker.attempts} attempts in {window:g} s failed "
               f"with: {reason}; it resumes by hand, or once a probe attempt succeeds "
               f"(one every {breaker.policy.probe_after:g} s)")
        pause = self._pauses[step] = Pause(step, BREAKER, wall, why, by_breaker=True)
        self._probe_at[step] = now + breaker.policy.probe_after
        breaker.clear()
        return Verdict(pause, tripped=True)

    def restore(self, pauses: Iterable[Pause], now: float) -> None:
        """Pauses a journal kept (before a restart); a breaker's probes start over."""
        for pause in pauses:
            self._pauses[pause.step] = pause
            breaker = self._breakers.get(pause.step)
            if pause.by_breaker and breaker is not None:
                self._probe_at[pause.step] = now + breaker.policy.probe_after

    def _may_probe(self, step: str, now: float) -> bool:
        at = self._probe_at.get(step)
        return at is not None and now >= at

    def _end(self, step: str) -> None:
        del self._pauses[step]
        self._probe_at.pop(step, None)
        self._probe.pop(step, None)
        breaker = self._breakers.get(step)
        if breaker is not None:
            breaker.clear()
