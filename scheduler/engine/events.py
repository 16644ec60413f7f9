"""Event records and the bounded in-memory history that serves `events(after=...)`."""

from __future__ import annotations

import bisect
from operator import itemgetter

_SEQ = itemgetter("seq")

# The kinds of event the core emits. Subscribers may rely on this set. Becoming ready and
# being queued on a worker are not events: they happen for every step, and `task_started`
# (or `task_reassigned`) already says where it went.
EVENT_TYPES = frozenset(
    {
        "order_submitted",
        "order_completed",
        "order_failed",
        "order_cancelled",
        "order_retried",
        # A saga: an order that failed or was cancelled undoes its succeeded steps, and
        # ends compensated, or compensation_failed (an undo ran out of retries).
        "order_compensating",
        "order_compensated",
        "order_compensation_failed",
        # An operator moved an unfinished order to another workflow definition (kept,
        # skipped, dropped and to-run steps named); a step it skipped (migrate.py).
        "order_migrated",
        "task_skipped",
        "task_started",
        "task_succeeded",
        "task_failed",
        "task_retrying",
        "task_reassigned",
        "task_cancelled",
        "result_rejected",
        # An attempt that may have run on after its worker left (a zombie) no longer counts
        # towards its step's limit: its process said so, or its bound passed.
        "attempt_ended",
        "task_recovered",
        # Waiting for the outside world (waits.py): a wait begins, its signal comes (or is
        # refused: too late, or twice), it completes or its timeout passes; a step delayed
        # (its delay, or its order's not_before) until a time.
        "wait_started",
        "signal_received",
        "signal_refused",
        "wait_completed",
        "wait_timed_out",
        "task_delayed",
        "worker_added",
        "worker_dead",
        "worker_draining",
        "worker_removed",
        # A thread worker's thread left to a handler that ignored its cancellation (a new
        # one took its slot), and a worker declared dead for one too many of those.
        "thread_abandoned",
        "worker_hung",
        # A restart: recovered steps (task_recovered) name it as their `cause`.
        "server_restarted",
        # At a restart: unfinished orders pinned to workflow definitions the running app
        # lacks (they wait for a worker of that version), by definition.
        "definitions_missing",
        # What an operator did (kill, drain, add, chaos, cancel, retry, bulk actions) and who.
        "operator_action",
        # A step paused by an operator or by its circuit breaker, resumed (by hand or by a
        # probe that succeeded), its limits changed while running (pauses.py, limits.py).
        "step_paused",
        "breaker_tripped",
        "step_resumed",
        "step_limits_changed",
        # An alert (runtime/alerts.py) raised, and cleared once its condition no longer holds.
        "alert_raised",
        "alert_cleared",
        # A recurring schedule first known, one of its times fired (its order submitted in
        # the same commit), and missed times skipped (catch_up off) (engine/schedules.py).
        "schedule_added",
        "schedule_fired",
        "schedule_skipped",
    }
)

# Events worth a line in the log file: failures, retries, moves and deaths at WARNING,
# the life of orders and workers at INFO. Started/succeeded attempts are too many to log.
LOG_LEVELS = {
    "task_failed": "WARNING",
    "task_retrying": "WARNING",
    "task_reassigned": "WARNING",
    "worker_dead": "WARNING",
    "thread_abandoned": "WARNING",
    "worker_hung": "ERROR",
    "order_failed": "WARNING",
    "order_compensating": "WARNING",
    "order_compensated": "INFO",
    "order_compensation_failed": "ERROR",
    "result_rejected": "WARNING",
    "order_submitted": "INFO",
    "order_completed": "INFO",
    "order_cancelled": "INFO",
    "order_retried": "INFO",
    # One line per order moved (its skipped steps named in it: no line of their own).
    "order_migrated": "INFO",
    "worker_added": "INFO",
    "worker_draining": "INFO",
    "worker_removed": "INFO",
    "task_recovered": "INFO",
    "attempt_ended": "INFO",
    "server_restarted": "WARNING",
    "definitions_missing": "WARNING",
    "operator_action": "WARNING",
    "step_paused": "WARNING",
    "breaker_tripped": "ERROR",
    "step_resumed": "WARNING",
    "step_limits_changed": "WARNING",
    "alert_raised": "WARNING",
    "alert_cleared": "INFO",
    # One per signal: the outside world's word on an order (and a refused one, recorded).
    "signal_received": "INFO",
    "signal_refused": "WARNING",
    "wait_timed_out": "WARNING",
    "schedule_added": "INFO",
    "schedule_fired": "INFO",
    "schedule_skipped": "WARNING",
}


class EventHistory:
    """The most recent events, oldest first, with O(log n) lookup by seq.

    Trimming happens in chunks (when the list reaches twice the cap) so appends stay O(1)
    amortised instead of shifting the list on every event.
    """

    def __init__(self, cap: int):
        self.cap = cap
        self._events: list[dict] = []

    def extend(self, events: list[dict]) -> None:
        self._events.extend(events)
        if len(self._events) >= 2 * self.cap:
            del self._events[: -self.cap]

    def after(self, seq: int, limit: int | None = None) -> list[dict]:
        """Events with a seq greater than `seq`, oldest first, at most `limit` of them."""
        start = bisect.bisect_right(self._events, seq, key=_SEQ)
        stop = len(self._events) if limit is None else start + limit
        return self._events[start:stop]

    @property
    def first_seq(self) -> int:
        """Seq of the oldest event still held (0 when empty)."""
        return self._events[0]["seq"] if self._events else 0

    @property
    def last_seq(self) -> int:
        return self._events[-1]["seq"] if self._events else 0
