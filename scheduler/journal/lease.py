"""The leadership lease of a database several `orderflow serve` share, as values and rules.

Exactly one server leads (schedules, writes the journal); the others stand by. Who leads is
one row in the database (`postgres_lease.py`): an epoch that only grows, the holder, its URL,
the backend pid of its lease session and an expiry on the database's clock. Taking the lease
bumps the epoch; every write transaction of the leader checks, first thing, that the row
still holds its epoch, so a leader that lost the lease writes nothing, whatever it believes.

Nothing here reads a clock or a database: `LeaseSettings` are the timings, `LeaseView` is one
look at the row, and a `Term` is one leader's hold on one epoch, told `now` and when each
renewal was sent. The elector (election.py) and the journal share a Term.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..engine.config import ConfigError
from .writer import Deposed


@dataclass(frozen=True)
class LeaseSettings:
    """Timings of the lease (seconds); the defaults are what `orderflow serve` runs with."""

    # How long one renewal keeps the lease, on the database's clock. A standby takes over a
    # lease that expired, so a leader that stops answering while its session lives on
    # (paused, partitioned, its machine gone) is replaced within about ttl + poll_every.
    ttl: float = 4.0
    # The leader renews this often. By its own clock it steps down once it has not renewed
    # for ttl - renew_every: before its lease can expire in the database.
    renew_every: float = 0.5
    # A standby looks at the lease this often, and takes over as soon as the lease expired
    # or the leader's lease session ended (a leader process that died: within about this).
    poll_every: float = 0.25
    # A server that stepped down leaves the lease to the others for this long.
    holdoff: float = 4.0

    def __post_init__(self) -> None:
        for name in ("ttl", "renew_every", "poll_every", "holdoff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"lease {name} must be a positive number of seconds")
        if self.ttl < 3 * self.renew_every:
            raise ConfigError("lease ttl must be at least 3 x renew_every (a renewal late by "
                              "one interval must not cost the lease)")

    @property
    def hold(self) -> float:
        """How long after sending a renewal (that succeeded) the leader may go on leading."""
        return self.ttl - self.renew_every


@dataclass(frozen=True)
class LeaseView:
    """One look at the lease row."""

    epoch: int  # 0: nobody has led this database yet
    holder: str  # "orderflow pid N on HOST"
    url: str | None  # the holder's advertised URL
    expired: bool  # on the database's clock
    holder_gone: bool  # the holder's lease session has ended (its process died, say)
    remaining: float = 0.0  # seconds left before it expires (database clock)

    @property
    def free(self) -> bool:
        """A standby may take it: never held, expired, or its holder's session is gone."""
        return self.epoch == 0 or self.expired or self.holder_gone

    def why_free(self) -> str:
        if self.epoch == 0:
            return "nobody led this database before"
        if self.holder_gone:
            return f"the session of epoch {self.epoch}'s leader ({self.holder}) ended"
        return f"epoch {self.epoch}'s lease ({self.holder}) expired"

    def describe(self) -> str:
        if self.epoch == 0:
            return "nobody (the lease was never taken)"
        where = f", {self.url}" if self.url else ""
        return f"epoch {self.epoch}: {self.holder}{where}"

    def hint(self) -> dict:
        """What a standby tells clients about the leader (None fields while nobody leads)."""
        leading = self.epoch > 0 and not self.free
        return {"epoch": self.epoch if leading else None,
                "leader": (self.url if leading else None),
                "leader_name": self.holder if leading else None}


class Term:
    """One leader's hold on one epoch: valid until its last renewal's send time plus
    `settings.hold` (a renewal counts only if answered before that), and until anyone (the
    elector, a write that found the epoch moved) calls `lose`. Thread-safe: the elector
    renews it, the journal's writer checks it."""

    def __init__(self, epoch: int, settings: LeaseSettings, sent_at: float,
                 holder: str = "", url: str | None = None):
        self.epoch, self.settings, self.holder, self.url = epoch, settings, holder, url
        self._lock = threading.Lock()
        self._valid_until = sent_at + settings.hold
        self._lost: str | None = None
        self._listeners: list[Callable[[str], None]] = []
        self._stalled_for: Callable[[float], float] = lambda now: 0.0

    def renewed(self, sent_at: float, answered_at: float) -> bool:
        """A renewal sent at `sent_at` succeeded, and its answer came at `answered_at`. True
        if the term holds on. An answer that came once the term had run out (the database
        was frozen under the renewal, say) does not revive it: whoever checked the term in
        between was told it is over and acted on that (a write lost it, a request was
        refused), so it stays over for everyone: False, and the elector steps down."""
        with self._lock:
            if self._lost is not None or answered_at >= self._valid_until:
                return False
            self._valid_until = max(self._valid_until, sent_at + self.settings.hold)
            return True

    def holds(self, now: float) -> bool:
        with self._lock:
            return self._lost is None and now < self._valid_until

    def over(self, now: float) -> str | None:
        """Why the term is over at `now`, by this server's own clock (None while it holds):
        lost, or no renewal answered for `settings.hold` (sent before that and still
        unanswered counts for nothing: the database may be frozen or out of reach)."""
        with self._lock:
            lost, valid_until = self._lost, self._valid_until
        if lost is not None:
            return lost
        if now >= valid_until:
            return self._ran_out()
        return None

    def _ran_out(self) -> str:
        return f"no renewal of epoch {self.epoch} for {self.settings.hold:g} s"

    def valid_until(self) -> float:
        with self._lock:
            return self._valid_until

    @property
    def lost(self) -> str | None:
        """Why the term ended, once `lose` was called."""
        return self._lost

    def watch_commits(self, stalled_for: Callable[[float], float]) -> None:
        """The journal writing under this term says how long (at `now`) its recorded work
        has waited for a commit, so the elector can step down a leader that cannot commit
        (GroupWriter.stalled_for)."""
        self._stalled_for = stalled_for

    def commits_stalled(self, now: float) -> float:
        """Seconds the journal's work has waited for a commit at `now` (0: none waits)."""
        return self._stalled_for(now)

    def on_lost(self, listener: Callable[[str], None]) -> None:
        """Call `listener(reason)` when the term is lost (so the elector hears of a write
        that found the epoch moved at once, not at its next renewal)."""
        with self._lock:
            self._listeners.append(listener)

    def lose(self, reason: str) -> bool:
        """End the term; True the first time."""
        with self._lock:
            if self._lost is not None:
                return False
            self._lost = reason
            listeners = list(self._listeners)
        for listener in listeners:
            listener(reason)
        return True

    def check(self, now: float) -> None:
        """Raise Deposed unless this term still holds at `now` (before a write)."""
        with self._lock:
            lost, valid_until = self._lost, self._valid_until
        if lost is not None:
            raise Deposed(f"epoch {self.epoch} is over ({lost}); this server writes nothing "
                          "more")
        if now >= valid_until:
            reason = self._ran_out()
            self.lose(reason)
            raise Deposed(f"{reason}; this server writes nothing more")
