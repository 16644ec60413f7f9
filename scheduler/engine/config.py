"""Every tunable default of the scheduler, in one place.

Policies are small frozen dataclasses that validate themselves, so a bad setting fails
when the cluster is built, not in the middle of a run.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A setting is out of range; the message names the setting."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failing step is tried again."""

    # Retries after the first attempt: a step runs at most max_retries + 1 times.
    max_retries: int = 3
    # Backoff before retry n is uniform in [0, min(cap, base * 2**(n-1))] ("full jitter").
    backoff_base: float = 0.1
    backoff_cap: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")
        if self.backoff_base < 0 or self.backoff_cap < 0:
            raise ConfigError("backoff_base and backoff_cap must be >= 0")
        if self.backoff_cap < self.backoff_base:
            raise ConfigError("backoff_cap must be >= backoff_base")


def backoff(retry_number: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Delay before retry `retry_number` (1-based): exponential with full jitter.

    Full jitter (AWS architecture blog, "Exponential Backoff and Jitter") spreads retries of
    many orders that failed together, so a flaky payment gateway is not hit in waves.
    """
    if retry_number < 1:
        raise ValueError("retry_number starts at 1")
    # Clamp the exponent so huge retry numbers do not overflow the float.
    ceiling = min(policy.backoff_cap, policy.backoff_base * math.pow(2, min(retry_number - 1, 60)))
    return rng.uniform(0.0, ceiling)


@dataclass(frozen=True)
class BreakerPolicy:
    """When a step pauses itself: a share of its recent attempts failed with one reason.

    A gateway that is down fails every charge the same way ("gateway answered 503"); burning
    every order's retries on it turns an outage into failed orders. With a breaker the step
    pauses instead (its orders wait, their attempts kept), and resumes by hand or once a
    probe attempt succeeds.
    """

    # The share of the attempts in the window that failed with the same reason.
    share: float = 0.5
    # Attempts the window must hold before it may trip (a few failures prove nothing).
    min_attempts: int = 20
    # Seconds of attempts counted (the recent past).
    window: float = 60.0
    # Seconds after a trip (or a failed probe) before one probe attempt may start.
    probe_after: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.share, bool) or not 0 < self.share <= 1:
            raise ConfigError(f"breaker share must be in (0, 1], got {self.share!r}")
        if (isinstance(self.min_attempts, bool) or not isinstance(self.min_attempts, int)
                or self.min_attempts < 1):
            raise ConfigError(
                f"breaker min_attempts must be an integer >= 1, got {self.min_attempts!r}")
        if not self.window > 0:
            raise ConfigError(f"breaker window must be > 0 seconds, got {self.window!r}")
        if not self.probe_after > 0:
            raise ConfigError(
                f"breaker probe_after must be > 0 seconds, got {self.probe_after!r}")


@dataclass(frozen=True)
class StepPolicy:
    """How one step may run: its time limit and its cluster-wide limits."""

    # Seconds an attempt may run before it counts as failed ("timed out after N s");
    # None: the cluster's `step_timeout`.
    timeout: float | None = None
    # At most this many tasks of the step on workers at once (a gateway's concurrency).
    max_in_flight: int | None = None
    # At most this many starts per second, with bursts of up to `burst` (default: rate).
    rate: float | None = None
    burst: int | None = None
    # Its own retries and backoff; None: the cluster's `retry`.
    retry: RetryPolicy | None = None
    # Capabilities a worker must offer to run it (e.g. "payments": the network zone that
    # may reach the payment gateway); empty: any worker.
    tags: frozenset[str] = frozenset()
    # Opt-in: the step pauses itself when its recent attempts fail alike (BreakerPolicy).
    breaker: BreakerPolicy | None = None
    # Seconds it waits, holding no slot, after its dependencies finished before it may
    # start (a review request a week after delivery); None: none.
    delay: float | None = None

    def __post_init__(self) -> None:
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise ConfigError("retry must be a RetryPolicy")
        if self.breaker is not None and not isinstance(self.breaker, BreakerPolicy):
            raise ConfigError("breaker must be a BreakerPolicy")
        if not isinstance(self.tags, frozenset) or not all(
            isinstance(t, str) and t.strip() for t in self.tags
        ):
            raise ConfigError("tags must be a frozenset of non-empty strings")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {self.timeout!r}")
        if self.delay is not None and (isinstance(self.delay, bool) or not isinstance(
                self.delay, int | float) or not 0 <= self.delay < float("inf")):
            raise ConfigError(f"delay must be >= 0 seconds, got {self.delay!r}")
        if self.max_in_flight is not None and (
            not isinstance(self.max_in_flight, int) or self.max_in_flight < 1
        ):
            raise ConfigError(f"max_in_flight must be an integer >= 1, got {self.max_in_flight!r}")
        if self.rate is not None and not self.rate > 0:
            raise ConfigError(f"rate must be > 0 starts per second, got {self.rate!r}")
        if self.burst is not None and (not isinstance(self.burst, int) or self.burst < 1):
            raise ConfigError(f"burst must be an integer >= 1, got {self.burst!r}")
        if self.burst is not None and self.rate is None:
            raise ConfigError("burst needs a rate")

    @property
    def limited(self) -> bool:
        return self.max_in_flight is not None or self.rate is not None


@dataclass(frozen=True)
class ClusterConfig:
    """Settings of one cluster. Every field has the default a user gets from `make run`."""

    # Worker threads started with the cluster.
    workers: int = 4
    # Steps one worker runs at once (a worker is the unit of failure, a slot the unit of
    # concurrency): plain handlers on that many threads, async ones on one event loop.
    slots: int = 8
    # Tasks a worker is handed beyond its free slots, so the next one is at hand when a
    # slot frees; the rest waits in the scheduler, where an idle worker can take it.
    prefetch: int = 1
    # Seconds a step's attempt may run unless its policy says otherwise.
    step_timeout: float = 60.0
    # Seconds a thread worker's handler may take to return once its time limit cancelled
    # it; past that its thread is abandoned (never reused) and a new one takes the slot, so
    # a handler deaf to its cancellation does not keep the slot.
    abandon_after: float = 1.0
    # Abandoned threads (still inside a handler that ignored its cancellation) one thread
    # worker may have at once; None: its slots times the attempts a step may make
    # (max_retries + 1; 32 by default), so every slot's step may hang through all its
    # attempts. One more and the worker is declared dead and its work moves: an app whose
    # handlers never return cannot make the server start threads without end.
    max_abandoned: int | None = None
    # Per-step policies (time limit, concurrency and rate limits), by step name.
    steps: Mapping[str, StepPolicy] = field(default_factory=dict)
    # How often each worker proves it is alive (seconds).
    heartbeat_interval: float = 0.5
    # A worker silent for longer than this is declared dead and its tasks move (seconds).
    heartbeat_timeout: float = 2.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # A task whose worker died under it more than this many times fails as poison.
    max_reassignments: int = 5
    # An attempt of a step with max_in_flight whose remote worker left (declared dead, its
    # connection lost) keeps its place in the step's count until the worker confirms that it
    # ended, or until this long past the attempt's time limit: by then a worker has, by
    # contract, cancelled it, and exited if the handler ignored that (seconds). Must exceed
    # the workers' cancel grace plus the time they take to exit.
    zombie_grace: float = 10.0
    # After a restart, steps with max_in_flight start nothing for this long, so that the
    # workers that outlived the old server can register again and say what they still run
    # (seconds; None: twice the heartbeat timeout).
    restart_hold: float | None = None
    # Bounded-load slack: no worker holds more than ceil((1 + epsilon) * average) tasks.
    load_epsilon: float = 0.25
    # The tail (dispatch.py): once no more orders wait to start than the slots on the ring
    # times this, first steps go before started orders' later steps, so the last orders do
    # not start only as the others end (0: depth-first to the end). 1 suits I/O-bound
    # orders best (benchmarks/io_policy_model.py: 1.08 x the bound against 1.24 x, mean
    # latency 1.04 x).
    tail_share: float = 1.0
    # A worker whose steps take more than this many times the fastest worker's (moving
    # averages, each step against its own) is slow: it takes a task only when the faster
    # workers would not finish the waiting work sooner (placement.py).
    slow_factor: float = 2.0
    # Seconds a worker's measured speed counts after its last success; then it is taken
    # for average again, so a worker that recovered gets work and is measured anew.
    speed_memory: float = 30.0
    # Virtual nodes per worker on the hash ring; more nodes, more even shares.
    vnodes: int = 160
    # Events kept in memory for `events()` and the dashboard; older ones live in the journal.
    event_history: int = 20_000
    # Finished orders kept in memory; the oldest are forgotten (the journal keeps them).
    finished_order_history: int = 20_000
    # Idempotency keys remembered in memory (older ones are looked up in the journal).
    idempotency_history: int = 200_000
    # A submit that repeats the key of an order whose commit is still under way (a client
    # that timed out and posted again) waits this long for that commit, then is refused
    # for now (HTTP 503 with Retry-After): a key is never answered before its order is
    # durable (seconds).
    key_commit_wait: float = 5.0
    # Unfinished orders accepted at most; beyond it a submit is refused (HTTP 503 with
    # Retry-After, a bulk all or none) until work drains, so memory and the time a restart
    # takes to reload the backlog stay bounded (benchmarks/backlog.py).
    max_unfinished_orders: int = 50_000
    # Timers (waits' timeouts, delays, not_before) one tick fires at most: many due in the
    # same second fire over several ticks, each short, so the shell's lock is never held
    # for long (the shell wakes at once while some are due).
    timers_per_tick: int = 5_000
    # A step's result is journaled and served as JSON: a bigger one is a failed attempt.
    max_result_bytes: int = 64 * 1024
    # A failed attempt's error message is cut beyond this many characters.
    max_error_chars: int = 2_000
    # ...and its traceback (where it was raised; shown folded in the order view) beyond
    # about this many, keeping its end: the innermost frames and the exception.
    max_traceback_chars: int = 8_000
    # Order searches with filters (GET /api/orders?customer=...) running at once; one more
    # is refused (HTTP 503 with Retry-After) instead of queueing. Each holds a journal
    # search connection of its own while it reads the journal.
    max_searches: int = 4
    # Seed for jitter and demo chaos; None draws one from the OS.
    seed: int | None = None

    def policy(self, step: str) -> StepPolicy:
        return self.steps.get(step) or _NO_POLICY

    def retry_of(self, step: str) -> RetryPolicy:
        return self.policy(step).retry or self.retry

    def timeout(self, step: str) -> float:
        timeout = self.policy(step).timeout
        return self.step_timeout if timeout is None else timeout

    def delay(self, step: str) -> float:
        """Seconds `step` waits after its dependencies finished (0: none)."""
        return self.policy(step).delay or 0.0

    @property
    def hold_after_restart(self) -> float:
        """Seconds limited steps wait after a restart (`restart_hold`, or its default)."""
        return 2 * self.heartbeat_timeout if self.restart_hold is None else self.restart_hold

    def abandon_limit(self, slots: int) -> int:
        """Abandoned threads a thread worker with `slots` may have at once."""
        if self.max_abandoned is None:
            return slots * (self.retry.max_retries + 1)
        return self.max_abandoned

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigError(f"workers must be an integer >= 0, got {self.workers!r}")
        if not isinstance(self.slots, int) or self.slots < 1:
            raise ConfigError(f"slots must be an integer >= 1, got {self.slots!r}")
        if not isinstance(self.prefetch, int) or self.prefetch < 0:
            raise ConfigError(f"prefetch must be an integer >= 0, got {self.prefetch!r}")
        if not self.step_timeout > 0:
            raise ConfigError(f"step_timeout must be > 0 seconds, got {self.step_timeout!r}")
        if not self.abandon_after >= 0:
            raise ConfigError(f"abandon_after must be >= 0 seconds, got {self.abandon_after!r}")
        if self.max_abandoned is not None and (
            isinstance(self.max_abandoned, bool)
            or not isinstance(self.max_abandoned, int) or self.max_abandoned < 0
        ):
            raise ConfigError(
                f"max_abandoned must be an integer >= 0 or None, got {self.max_abandoned!r}"
            )
        if any(not isinstance(p, StepPolicy) for p in self.steps.values()):
            raise ConfigError("steps must map step names to StepPolicy values")
        if not self.heartbeat_interval > 0:
            raise ConfigError("heartbeat_interval must be > 0")
        if not self.heartbeat_timeout > self.heartbeat_interval:
            raise ConfigError(
                "heartbeat_timeout must be greater than heartbeat_interval "
                f"({self.heartbeat_timeout} <= {self.heartbeat_interval})"
            )
        if not isinstance(self.max_reassignments, int) or self.max_reassignments < 0:
            raise ConfigError("max_reassignments must be an integer >= 0")
        if not self.zombie_grace >= 0:
            raise ConfigError(f"zombie_grace must be >= 0 seconds, got {self.zombie_grace!r}")
        if self.restart_hold is not None and not self.restart_hold >= 0:
            raise ConfigError(f"restart_hold must be >= 0 seconds, got {self.restart_hold!r}")
        if self.load_epsilon <= 0:
            raise ConfigError("load_epsilon must be > 0")
        if not self.tail_share >= 0:
            raise ConfigError(f"tail_share must be >= 0, got {self.tail_share!r}")
        if not self.slow_factor > 1:
            raise ConfigError(f"slow_factor must be > 1, got {self.slow_factor!r}")
        if not self.speed_memory > 0:
            raise ConfigError(f"speed_memory must be > 0 seconds, got {self.speed_memory!r}")
        if not isinstance(self.vnodes, int) or self.vnodes < 1:
            raise ConfigError("vnodes must be an integer >= 1")
        if not self.key_commit_wait >= 0:
            raise ConfigError(f"key_commit_wait must be >= 0 seconds, got {self.key_commit_wait!r}")
        if self.event_history < 100 or self.finished_order_history < 1:
            raise ConfigError("event_history must be >= 100 and finished_order_history >= 1")
        for name in ("max_unfinished_orders", "max_result_bytes", "max_error_chars",
                     "max_traceback_chars", "max_searches", "timers_per_tick"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


_NO_POLICY = StepPolicy()
# How a duration may be written: "90s", "30m", "12h", "7d", "2w" (or plain seconds).
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(value: float | str, what: str = "a duration") -> float:
    """Seconds from a number or a string such as "30m" or "7d"; ConfigError naming `what`
    and the forms accepted otherwise."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value)
        if match:
            return float(match.group(1)) * DURATION_UNITS[match.group(2)]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"{what} must be seconds or a duration such as 90s, 30m, 12h, 7d or 2w, "
                      f"got {value!r}")
