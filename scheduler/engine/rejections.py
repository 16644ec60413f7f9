"""Late results, counted per worker in windows so a flood of them cannot flood the log.

A late result (its lease no longer valid) gets an event and a log line of its own, up to
`REJECTION_BURST` per worker per `REJECTION_WINDOW` seconds; more in the same window are
counted and summed up in one event when the window closes. A confused or hostile worker
that sends hundreds cannot flood the journal and the log. Pure: time is passed in; the
core writes the events.
"""

from __future__ import annotations

REJECTION_BURST = 5
REJECTION_WINDOW = 10.0


class RejectionWindows:
    """One window per worker that sent late results: when it opened, how many came, and
    how many of those were not recorded one by one."""

    def __init__(self, burst: int = REJECTION_BURST, window: float = REJECTION_WINDOW):
        self.burst = burst
        self.window = window
        self._open: dict[str, list] = {}  # worker id -> [opened at, counted, not recorded]

    def count(self, worker_id: str, now: float) -> tuple[int, bool]:
        """Count one late result of `worker_id`: (how many the window it closed, if any,
        did not record, to be summed up first; whether this one is one too many for its
        own event)."""
        window = self._open.get(worker_id)
        closed = 0
        if window is None or now - window[0] >= self.window:
            closed = self.close(worker_id)
            window = self._open[worker_id] = [now, 0, 0]
        window[1] += 1
        if window[1] <= self.burst:
            return closed, False
        window[2] += 1
        return closed, True

    def close(self, worker_id: str) -> int:
        """Close the worker's window: how many of its late results it did not record."""
        window = self._open.pop(worker_id, None)
        return 0 if window is None else window[2]

    def close_expired(self, now: float) -> list[tuple[str, int]]:
        """Close every window `window` seconds old or older: (worker id, how many it did
        not record) for each that has some to sum up, oldest opened first."""
        expired = [w for w, (since, _, _) in self._open.items() if now - since >= self.window]
        closed = [(worker_id, self.close(worker_id)) for worker_id in expired]
        return [(worker_id, count) for worker_id, count in closed if count]
