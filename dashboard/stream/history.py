"""The last hour of the cluster's numbers, kept by the server so a reloaded dashboard draws its
chart at once (`GET /api/history`): a bounded ring of points sampled every few seconds from
`cluster.stats()` by the event stream's thread. No thread of its own; time is passed in."""

from __future__ import annotations

import threading
from collections import deque

# What each point holds, besides its time: the rates the throughput tile shows (per second
# over the engine's last 10 s), and the tasks waiting: ready or in a worker's queue, and
# backing off before a retry.
FIELDS = ("orders_per_s", "steps_per_s", "failures_per_s", "queued", "retrying")


def point_of(stats: dict) -> dict:
    """The chart's numbers from one `cluster.stats()`: the same values the tiles show."""
    rates, tasks = stats.get("rates", {}), stats.get("tasks", {})
    return {
        "orders_per_s": rates.get("orders_per_s", 0.0),
        "steps_per_s": rates.get("steps_per_s", 0.0),
        "failures_per_s": rates.get("failures_per_s", 0.0),
        "queued": tasks.get("ready", 0) + tasks.get("assigned", 0),
        "retrying": tasks.get("retry_wait", 0),
    }


class History:
    """Points `interval` seconds apart over the last `span` seconds, oldest first."""

    def __init__(self, interval: float = 2.0, span: float = 3600.0):
        self.interval = interval
        self.span = span
        self._points: deque[tuple[float, dict]] = deque(maxlen=int(span / interval) + 1)
        self._lock = threading.Lock()
        self._next = 0.0

    def due(self, now: float) -> bool:
        """Whether a sample is due at wall time `now`."""
        return now >= self._next

    def sample(self, now: float, stats: dict) -> None:
        """Keep one point for wall time `now` (a sample within `interval` of the last is
        skipped, so a caller may offer more often than it is kept)."""
        if now < self._next:
            return
        self._next = now + self.interval
        with self._lock:
            self._points.append((round(now, 3), point_of(stats)))
            while self._points and self._points[0][0] < now - self.span:
                self._points.popleft()

    def view(self) -> dict:
        """Columns, oldest first: {"interval", "span", "t": [...], <field>: [...]}."""
        with self._lock:
            points = list(self._points)
        columns: dict = {"interval": self.interval, "span": self.span,
                         "t": [t for t, _ in points]}
        for name in FIELDS:
            columns[name] = [p[name] for _, p in points]
        return columns
