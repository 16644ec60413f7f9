"""A token bucket, pure (the caller passes `now`): at most `rate` events a second on average
and `burst` at once. Used to limit how fast remote workers may join (worker_hub.py)."""

from __future__ import annotations


class TokenBucket:
    """`take(now)` is True while tokens are left; they refill at `rate` per second."""

    def __init__(self, rate: float, burst: int):
        if not rate > 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._last: float | None = None

    def take(self, now: float) -> bool:
        if self._last is not None and now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now if self._last is None else max(self._last, now)
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until the next token (0 if one is there now)."""
        return max(0.0, (1 - self._tokens) / self.rate)
