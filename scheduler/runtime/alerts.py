"""Alerts: the few conditions an operator on call must hear of without watching the page.

A failure spike on one step (a gateway down), a step no live worker can run (a deploy that
dropped its handler), orders left unfinished far longer than any order should take, a
worker process that keeps dying (a crash loop), and a journal that cannot commit. Each is
raised once when its condition starts to hold and cleared once when it stops: the cluster
turns both into events (`alert_raised`, `alert_cleared`), so they are logged, journaled,
pinned as an incident and streamed like everything else, while `active()` feeds the page's
banners and `/metrics`.

Pure: no threads and no clock. The cluster feeds `observe` its events under its lock (the
failure counts and worker deaths) and calls `evaluate` with what it reads on its monitor
thread (`Signals`) and the wall clock. `docs/alerts.yml` holds the same rules for
Prometheus, written over the metrics, for a shop that pages from Alertmanager.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..engine.config import ConfigError
from ..engine.triage import reason_of

FAILURE_SPIKE = "failure_spike"
UNROUTABLE = "unroutable"
OVERDUE_ORDERS = "overdue_orders"
WORKER_FLAPPING = "worker_flapping"
JOURNAL_FAILING = "journal_failing"
ALERTS = (FAILURE_SPIKE, UNROUTABLE, OVERDUE_ORDERS, WORKER_FLAPPING, JOURNAL_FAILING)

# Failure reasons counted per step and second (the most common is quoted in the alert).
_MAX_REASONS = 20
# Characters of an error quoted in an alert.
_EXAMPLE = 200


@dataclass(frozen=True)
class AlertSettings:
    """When each alert is raised. Every field has the default `make run` uses."""

    # A failure spike: at least this share of a step's attempts failed...
    failure_share: float = 0.5
    # ...out of at least this many attempts...
    failure_min_attempts: int = 20
    # ...in the last this many seconds. It clears once under half that share.
    failure_window: float = 60.0
    # A step whose ready tasks no live worker can run, for this long (a worker may be on
    # its way: a restart, a deploy).
    unroutable_after: float = 30.0
    # An order still unfinished this long after its submission is overdue.
    overdue_after: float = 900.0
    # A worker process (by name) declared dead this many times...
    flap_deaths: int = 3
    # ...within this many seconds is flapping.
    flap_window: float = 600.0
    # The journal failing to commit for this long (submits answer 503 meanwhile).
    journal_after: float = 10.0
    # How often the cluster evaluates the conditions, in seconds.
    every: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.failure_share <= 1.0:
            raise ConfigError(f"failure_share must be in (0, 1], got {self.failure_share!r}")
        for name in ("failure_min_attempts", "flap_deaths"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("failure_window", "flap_window", "every"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("unroutable_after", "overdue_after", "journal_after"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Signals:
    """What the cluster reads for one evaluation, besides the events it observed."""

    unroutable: Mapping[str, int] = field(default_factory=dict)  # ready tasks, by step
    overdue: int = 0  # unfinished orders older than `overdue_after`
    oldest_age: float = 0.0  # seconds since the oldest of those was submitted
    journal_stalled: float = 0.0  # seconds the journal has failed to commit


@dataclass
class Alert:
    """One active alert: which, about what (a step, a worker, or "" for the server)."""

    name: str
    subject: str
    message: str
    since: float  # wall clock when it was raised
    seq: int = 0  # the event that raised it (its incident's id), once announced

    def view(self) -> dict:
        return {"alert": self.name, "subject": self.subject, "message": self.message,
                "since": round(self.since, 3), "id": self.seq}


@dataclass(frozen=True)
class Change:
    """An alert raised (`raised`) or cleared, for the cluster to announce."""

    alert: Alert
    raised: bool


class _Second:
    """One second of a step's attempts."""

    __slots__ = ("at", "attempts", "failures", "reasons", "examples")

    def __init__(self, at: int):
        self.at, self.attempts, self.failures = at, 0, 0
        self.reasons: Counter[str] = Counter()
        self.examples: dict[str, str] = {}  # reason -> the latest error of that reason


class AlertBook:
    """The alerts' state: what the events said so far, and which alerts are active."""

    def __init__(self, settings: AlertSettings | None = None):
        self.settings = settings or AlertSettings()
        self._seconds: dict[str, deque[_Second]] = {}  # step -> its last seconds, oldest first
        self._names: dict[str, str] = {}  # worker id -> the process name it joined under
        self._deaths: dict[str, deque[float]] = {}  # process name -> when it died
        self._holding: dict[tuple[str, str], float] = {}  # condition -> since when it holds
        self._active: dict[tuple[str, str], Alert] = {}

    # ------------------------------------------------------------ stimuli

    def observe(self, events: Iterable[dict]) -> None:
        """The cluster's events: attempts' outcomes by step, and worker deaths."""
        for event in events:
            kind = event["type"]
            if kind == "task_succeeded":
                self._second(event["step"], event["ts"]).attempts += 1
            elif kind == "task_failed":
                second = self._second(event["step"], event["ts"])
                second.attempts += 1
                second.failures += 1
                error = event.get("error")
                reason = reason_of(error)
                if reason in second.reasons or len(second.reasons) < _MAX_REASONS:
                    second.reasons[reason] += 1
                    second.examples[reason] = " ".join((error or reason).split())[:_EXAMPLE]
            elif kind == "worker_added":
                self._names[event["worker_id"]] = event.get("name") or event["worker_id"]
            elif kind == "worker_dead":
                name = self._names.get(event["worker_id"], event["worker_id"])
                self._deaths.setdefault(name, deque()).append(event["ts"])

    def evaluate(self, signals: Signals, now: float) -> list[Change]:
        """Raise what now holds, clear what no longer does; `now` is the wall clock."""
        s = self.settings
        held: dict[tuple[str, str], str] = {}  # condition -> its message, for those that hold
        seen: set[tuple[str, str]] = set()  # conditions that hold, long enough or not yet
        self._failure_spikes(now, held)
        for step, count in signals.unroutable.items():
            if count > 0:
                self._after((UNROUTABLE, step), s.unroutable_after, now, held, seen,
                            f"{step}: {_tasks(count)} ready and no live worker can run them")
        if signals.overdue > 0:
            held[(OVERDUE_ORDERS, "")] = (
                f"{signals.overdue:,} order{'s' if signals.overdue != 1 else ''} unfinished "
                f"after {_duration(s.overdue_after)} (the oldest for "
                f"{_duration(signals.oldest_age)})")
        for name, deaths in list(self._deaths.items()):
            while deaths and deaths[0] <= now - s.flap_window:
                deaths.popleft()
            if not deaths:
                del self._deaths[name]
            elif len(deaths) >= s.flap_deaths:
                held[(WORKER_FLAPPING, name)] = (
                    f"worker {name} died {len(deaths)} times in the last "
                    f"{_duration(s.flap_window)}")
        journal = (JOURNAL_FAILING, "")
        stalled = signals.journal_stalled
        if stalled >= s.journal_after or (stalled > 0 and journal in self._active):
            held[journal] = (f"the journal has not committed for {_duration(stalled)}; "
                             "submits answer 503 until it does")
        self._holding = {key: since for key, since in self._holding.items() if key in seen}
        return self._apply(held, now)

    # ------------------------------------------------------------ readers

    def active(self) -> list[dict]:
        """The active alerts, oldest first."""
        return [a.view() for a in sorted(self._active.values(), key=lambda a: a.since)]

    # ------------------------------------------------------------ internals

    def _second(self, step: str, ts: float) -> _Second:
        seconds = self._seconds.get(step)
        at = int(ts)
        if seconds is None:
            seconds = self._seconds[step] = deque()
        elif seconds and seconds[-1].at >= at:
            return seconds[-1]  # the same second (or a late event: counted in the newest)
        seconds.append(_Second(at))
        window = int(self.settings.failure_window) + 1
        while seconds[0].at <= at - window:
            seconds.popleft()
        return seconds[-1]

    def _failure_spikes(self, now: float, held: dict[tuple[str, str], str]) -> None:
        s = self.settings
        cutoff = now - s.failure_window
        for step, seconds in list(self._seconds.items()):
            while seconds and seconds[0].at < cutoff:
                seconds.popleft()
            if not seconds:
                del self._seconds[step]
                continue
            attempts = sum(sec.attempts for sec in seconds)
            failures = sum(sec.failures for sec in seconds)
            share = failures / attempts
            key = (FAILURE_SPIKE, step)
            raising = attempts >= s.failure_min_attempts and share >= s.failure_share
            # Once raised, it holds until the share falls under half the threshold, so a
            # step failing at about the threshold does not raise and clear by turns.
            keeping = key in self._active and share >= s.failure_share / 2
            if raising or keeping:
                reasons: Counter[str] = Counter()
                examples: dict[str, str] = {}
                for sec in seconds:
                    reasons.update(sec.reasons)
                    examples.update(sec.examples)  # the newest second's last
                reason, count = reasons.most_common(1)[0] if reasons else ("?", 0)
                # The reason groups the errors (what varies masked); a real one reads better.
                held[key] = (f"{step}: {failures:,} of {attempts:,} attempts failed in the "
                             f"last {_duration(s.failure_window)}; {count:,} like: "
                             f"{examples.get(reason, reason)}")

    def _after(self, key: tuple[str, str], delay: float, now: float,
               held: dict[tuple[str, str], str], seen: set[tuple[str, str]],
               message: str) -> None:
        """A condition that must hold for `delay` seconds before it raises."""
        seen.add(key)
        since = self._holding.setdefault(key, now)
        if now - since >= delay or key in self._active:
            held[key] = message

    def _apply(self, held: dict[tuple[str, str], str], now: float) -> list[Change]:
        changes: list[Change] = []
        for key in [k for k in self._active if k not in held]:
            alert = self._active.pop(key)
            changes.append(Change(alert, raised=False))
        for key, message in held.items():
            alert = self._active.get(key)
            if alert is None:
                alert = self._active[key] = Alert(key[0], key[1], message, since=now)
                changes.append(Change(alert, raised=True))
            else:
                alert.message = message  # the numbers as they are now
        return changes


def _tasks(count: int) -> str:
    return f"{count:,} task{'s' if count != 1 else ''}"


def _duration(seconds: float) -> str:
    """60 -> "1 min", 90 -> "90 s", 7200 -> "2 h"."""
    seconds = max(0.0, seconds)
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
