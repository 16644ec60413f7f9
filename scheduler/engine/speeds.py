"""How fast each worker runs steps, learnt from what its attempts took.

A step's duration depends on the step (a gateway call, a label print), so each success is
measured against its step's moving average: a worker's *factor* is the moving average of
those ratios, 1 for a worker as fast as the cluster's average, 10 for one ten times slower.
Its expected duration for a step is its factor times the step's average; its *long*
duration adds twice the moving average of how far its ratios stray from its factor, since
a step may well last longer than the average (a gateway's 50-250 ms: up to 1.67 x). Placement
uses them to leave a slow worker's slot idle when faster workers would finish the work
sooner (placement.py): what the slow worker starts late sets when the last order ends, so
its long duration counts there. Time comes from the callers' `now`; pure, no clock.
"""

from __future__ import annotations

# Weight of the newest measurement in a worker's moving average: a worker that slows down
# (its gateway route degrades) shows it within a handful of steps.
ALPHA = 0.2
# Weight of the newest measurement in a step's average, the yardstick: slower to move, so
# one slow worker's step does not shift every worker's factor.
STEP_ALPHA = 0.05
# The smallest factor counted, so a worker whose steps took no measurable time (a fake
# clock, a no-op step) is very fast rather than infinitely so.
_TINY = 1e-6


class WorkerSpeeds:
    """Moving averages of step durations, per step and per worker."""

    def __init__(self, slow_factor: float, memory: float):
        self._slow_factor = slow_factor  # slower than the fastest by more: "slow"
        self._memory = memory  # seconds a worker's factor is trusted after its last step
        self._step_mean: dict[str, float] = {}
        self._factor: dict[str, float] = {}
        self._spread: dict[str, float] = {}  # worker -> moving |ratio - factor|
        self._seen: dict[str, float] = {}
        self._fastest: float | None = None  # the smallest factor known, while valid
        self._fastest_id = ""  # whose it is

    def observed(self, worker_id: str, step: str, took: float, now: float) -> None:
        """An attempt of `step` on `worker_id` succeeded after running `took` seconds."""
        mean = self._step_mean.get(step)
        mean = took if mean is None else mean + STEP_ALPHA * (took - mean)
        self._step_mean[step] = mean
        if mean <= 0:
            return  # nothing measurable yet to compare with
        ratio = took / mean
        factor = self._factor.get(worker_id)
        if factor is None:
            factor, spread = ratio, 0.0
        else:
            spread = self._spread[worker_id]
            spread += ALPHA * (abs(ratio - factor) - spread)
            factor += ALPHA * (ratio - factor)
        self._factor[worker_id] = factor
        self._spread[worker_id] = spread
        self._seen[worker_id] = now
        fastest = self._fastest
        if fastest is None:
            return
        if factor <= fastest:
            self._fastest, self._fastest_id = factor, worker_id
        elif worker_id == self._fastest_id:
            self._fastest = None  # the fastest slowed down: found again when asked

    def forget(self, worker_id: str) -> None:
        """The worker left the ring: its speed no longer says anything about where to run."""
        if self._factor.pop(worker_id, None) is not None:
            del self._seen[worker_id], self._spread[worker_id]
            self._fastest = None

    def factor(self, worker_id: str, now: float) -> float:
        """The worker's duration relative to its steps' averages; 1 (average) for one not
        measured, or not within the last `memory` seconds (it may have recovered)."""
        factor = self._factor.get(worker_id)
        if factor is None or now - self._seen[worker_id] > self._memory:
            return 1.0
        return max(factor, _TINY)

    def long_factor(self, worker_id: str, now: float) -> float:
        """The worker's factor for a step that lasts long: its factor plus twice its
        spread (1 for one not measured, as `factor`)."""
        factor = self._factor.get(worker_id)
        if factor is None or now - self._seen[worker_id] > self._memory:
            return 1.0
        return max(factor, _TINY) + 2 * self._spread[worker_id]

    def is_slow(self, worker_id: str, now: float) -> bool:
        """Whether the worker is more than `slow_factor` times slower than the fastest."""
        factor = self._factor.get(worker_id)
        if factor is None or now - self._seen[worker_id] > self._memory:
            return False
        fastest = self._fastest
        if fastest is None:
            self._fastest_id = min(self._factor, key=self._factor.__getitem__)
            fastest = self._fastest = self._factor[self._fastest_id]
        return factor > self._slow_factor * max(fastest, _TINY)

    def clearly_faster(self, mine: float, theirs: float) -> bool:
        return theirs * self._slow_factor <= mine
