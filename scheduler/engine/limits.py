"""Per-step limits across the whole cluster: at most N in flight, at most R starts a second.

A shop's gateway has a quota (say 50 concurrent charges, 100 a second); a step that would
exceed it waits `ready` (never failed) and says why. Pure: time is passed in.

A quota is a promise about handlers that run, not about leases: the core keeps an attempt
counted in flight until its worker confirms it ended or it can no longer be running
(zombies.py), and after a restart `restarted` holds each limited step's starts until the
workers that outlived the old server have said what they still run, and starts the rate
buckets empty (the old server may have spent them just before it stopped).

A paused step (pauses.py) is asked first: its tasks wait whatever its limits say. Limits can
be changed while the cluster runs (`set_policy`).
"""

from __future__ import annotations

from collections.abc import Mapping

from .config import StepPolicy
from .pauses import StepPauses


class StepLimits:
    def __init__(self, policies: Mapping[str, StepPolicy]):
        self.pauses = StepPauses(policies)
        self._policies = {s: p for s, p in policies.items() if p.limited}
        self._in_flight: dict[str, int] = {}
        # step -> (tokens, when they were counted); a bucket of `burst` refilled at `rate`/s.
        self._buckets: dict[str, tuple[float, float]] = {}
        # step -> until when its starts are held after a restart.
        self._held_until: dict[str, float] = {}

    def in_flight(self, step: str) -> int:
        return self._in_flight.get(step, 0)

    def blocks(self, step: str, now: float) -> str | None:
        """Why a task of `step` may not start now, or None."""
        paused = self.pauses.blocks(step, now)
        if paused is not None:
            return paused
        policy = self._policies.get(step)
        if policy is None:
            return None
        until = self._held_until.get(step)
        if until is not None and now < until:
            return (f"step {step} holds its starts after a restart until the workers that "
                    "outlived the old server have said what they still run")
        if policy.max_in_flight is not None and self.in_flight(step) >= policy.max_in_flight:
            return f"step {step} is at its limit of {policy.max_in_flight} in flight"
        if policy.rate is not None and self._tokens(step, policy, now) < 1.0:
            return f"step {step} is at its rate limit of {policy.rate:g} starts/s"
        return None

    def room(self, step: str, now: float) -> int:
        """How many more tasks of `step` may start now (a large number when unlimited)."""
        paused = self.pauses.room(step, now)
        policy = self._policies.get(step)
        if policy is None:
            return 1 << 30 if paused is None else paused
        until = self._held_until.get(step)
        if until is not None and now < until:
            return 0
        room = 1 << 30
        if policy.max_in_flight is not None:
            room = policy.max_in_flight - self.in_flight(step)
        if policy.rate is not None:
            room = min(room, int(self._tokens(step, policy, now)))
        if paused is not None:
            room = min(room, paused)
        return max(0, room)

    def started(self, step: str, now: float, task_id: str = "") -> None:
        """A task of `step` was handed to a worker (it counts until `finished`)."""
        self.pauses.started(step, task_id, now)
        policy = self._policies.get(step)
        if policy is None:
            return
        self._in_flight[step] = self.in_flight(step) + 1
        if policy.rate is not None:
            self._buckets[step] = (self._tokens(step, policy, now) - 1.0, now)

    def occupied(self, step: str) -> None:
        """An attempt the core did not start here counts in flight (one a restarted server
        found in the journal, or a rejoining worker said it still runs): no token spent."""
        if step in self._policies:
            self._in_flight[step] = self.in_flight(step) + 1

    def restarted(self, now: float, hold: float) -> None:
        """After a restart: steps with a concurrency limit start nothing for `hold` seconds,
        and rate buckets start empty, refilling from `now`."""
        for step, policy in self._policies.items():
            if policy.max_in_flight is not None and hold > 0:
                self._held_until[step] = now + hold
            if policy.rate is not None:
                self._buckets[step] = (0.0, now)

    def finished(self, step: str) -> bool:
        """A task of `step` left its worker; True if the step is limited (waiters may go)."""
        if step not in self._policies:
            return False
        left = self.in_flight(step) - 1
        if left > 0:
            self._in_flight[step] = left
        else:
            self._in_flight.pop(step, None)
        return True

    def free_at(self, step: str, now: float) -> float | None:
        """When a step held by time (a rate limit, a hold after a restart) may start its
        next task (None: nothing but a finishing task can free it)."""
        if step in self.pauses:
            return self.pauses.free_at(step, now)
        policy = self._policies.get(step)
        if policy is None:
            return None
        until = self._held_until.get(step)
        if until is not None and now >= until:
            until = None
        if policy.rate is None:
            return until
        missing = 1.0 - self._tokens(step, policy, now)
        refilled = now if missing <= 0 else now + missing / policy.rate
        return refilled if until is None else max(until, refilled)

    def set_policy(self, step: str, policy: StepPolicy, in_flight: int) -> None:
        """The step's limits changed while running: `policy` holds from now on, with
        `in_flight` attempts counted (the core counts them, since an unlimited step's are
        not). A rate bucket keeps its tokens, cut to the new burst."""
        if not policy.limited:
            self._policies.pop(step, None)
            self._in_flight.pop(step, None)
            self._buckets.pop(step, None)
            self._held_until.pop(step, None)
            return
        self._policies[step] = policy
        if in_flight:
            self._in_flight[step] = in_flight
        else:
            self._in_flight.pop(step, None)

    def _tokens(self, step: str, policy: StepPolicy, now: float) -> float:
        burst = float(policy.burst if policy.burst is not None else max(1, round(policy.rate)))
        tokens, since = self._buckets.get(step, (burst, now))
        return min(burst, tokens + max(0.0, now - since) * policy.rate)
