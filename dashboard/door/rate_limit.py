"""Token buckets and the per-connection frame limit, pure (the caller passes `now`).

`TokenBucket` limits how fast remote workers may join (worker_hub.py); `FrameLimiter`
limits what one Socket.IO connection may send (frames.py runs it on the connection's
reading thread, before a frame reaches Engine.IO, a lock or a handler thread).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class TokenBucket:
    """`take(now)` is True while tokens are left; they refill at `rate` per second."""

    def __init__(self, rate: float, burst: int):
        if not rate > 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._last: float | None = None

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now if self._last is None else max(self._last, now)

    def take(self, now: float) -> bool:
        self._refill(now)
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def borrow(self, now: float) -> float:
        """Take a token even if none is left: the seconds to wait before using it (0 if
        one was there), i.e. until the bucket is out of debt."""
        self._refill(now)
        self._tokens -= 1
        return max(0.0, -self._tokens / self.rate)

    def retry_after(self) -> float:
        """Seconds until the next token (0 if one is there now)."""
        return max(0.0, (1 - self._tokens) / self.rate)


@dataclass(frozen=True)
class FrameLimits:
    """What one Socket.IO connection may send (see FrameLimiter)."""

    # Heartbeats: a worker sends one per heartbeat interval; four times that rate is allowed
    # (`for_heartbeat_interval`), in bursts of heartbeat_burst.
    heartbeats_per_second: float = 8.0
    heartbeat_burst: int = 8
    # Dropped heartbeats a connection is forgiven (regained at heartbeats_per_second)
    # before it is cut: a worker that works never has one dropped.
    heartbeat_patience: int = 32
    # Every other frame, in bursts of frame_burst; a frame beyond waits its turn.
    frames_per_second: float = 500.0
    frame_burst: int = 1000
    # A connection held at frames_per_second this long without a break is cut.
    throttled_patience: float = 10.0
    # Seconds a connection to be cut is left unread first: a client that would connect
    # again at once cannot make the cut a loop of handshakes and registrations.
    pause_before_cut: float = 5.0

    def __post_init__(self) -> None:
        if not (self.heartbeats_per_second > 0 and self.frames_per_second > 0
                and self.throttled_patience > 0 and self.pause_before_cut >= 0):
            raise ValueError("frame rates and patience must be positive")
        if min(self.heartbeat_burst, self.frame_burst, self.heartbeat_patience) < 1:
            raise ValueError("frame bursts and heartbeat_patience must be at least 1")

    @classmethod
    def for_heartbeat_interval(cls, interval: float, **others: float) -> FrameLimits:
        """Limits that allow four heartbeats per `interval` seconds."""
        rate = 4 / interval
        return cls(heartbeats_per_second=rate, heartbeat_burst=max(8, round(rate)), **others)


class Verdict(Enum):
    PASS = "pass"  # hand it on
    DROP = "drop"  # a heartbeat over its rate: forget it
    WAIT = "wait"  # hand it on after the wait the limiter names
    CUT = "cut"  # far past the limits: close the connection (after pause_before_cut)


class FrameLimiter:
    """One connection's limits, decided frame by frame with `now` passed in.

    A heartbeat beyond its rate is dropped: a late or repeated one is worth nothing, and
    dropping it costs nothing. Any other frame beyond its rate waits for its turn: the
    caller stops reading the connection meanwhile, so a fast sender is slowed to the rate
    by TCP itself and nothing it sent is lost. A connection is cut once it has more dropped
    heartbeats than its patience, or has been held at the frame rate for longer than
    `throttled_patience` without a break.
    """

    def __init__(self, limits: FrameLimits):
        self.limits = limits
        self._heartbeats = TokenBucket(limits.heartbeats_per_second, limits.heartbeat_burst)
        self._patience = TokenBucket(limits.heartbeats_per_second, limits.heartbeat_patience)
        self._frames = TokenBucket(limits.frames_per_second, limits.frame_burst)
        self._throttled_since: float | None = None
        self.dropped = 0  # heartbeats dropped on this connection
        self.delayed = 0  # frames that waited for their turn

    def admit(self, heartbeat: bool, now: float) -> tuple[Verdict, float]:
        """The verdict on one frame, and for WAIT the seconds to wait before handing it on."""
        if heartbeat:
            if self._heartbeats.take(now):
                return Verdict.PASS, 0.0
            self.dropped += 1
            return (Verdict.DROP if self._patience.take(now) else Verdict.CUT), 0.0
        wait = self._frames.borrow(now)
        if wait == 0.0:
            self._throttled_since = None
            return Verdict.PASS, 0.0
        self.delayed += 1
        if self._throttled_since is None:
            self._throttled_since = now
        elif now - self._throttled_since > self.limits.throttled_patience:
            return Verdict.CUT, 0.0
        return Verdict.WAIT, wait
