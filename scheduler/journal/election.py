"""Who leads a shared database: the elector, one thread per server, one iteration per `step`.

Standing by, it looks at the lease every `poll_every` and takes it once it is free (expired,
or its holder's session ended). Leading, it renews every `renew_every`; it steps down at once
when a renewal finds the lease moved, when its lease session is lost (the lease is bound to
that session: a killed connection is a lost lease), when it has not renewed for
`ttl - renew_every` by its own clock (it was paused, or the database was out of reach; a
renewal answered only after that, by a database frozen under it, is too late), when
a journal write found the epoch moved (`Term.lose`), or when its journal's work has waited
longer than `ttl` for a commit that failed (`Term.commits_stalled`: writes that fail, or
hang until the database's lock or statement timeout, while the lease session still renews:
a leader that would otherwise keep the lease and answer every submit 503, for good; a
journal of its own, `stand_by=False`, keeps trying instead, since it could not lead again).
After stepping down it leaves the lease to the others for `holdoff`, then stands by like any
other server.

A renewal can hang for as long as the database does not answer (a frozen PostgreSQL, a
partition that drops packets), and the elector's thread with it. So a watchdog on a thread of
its own (`watch`) wakes when the term runs out by this server's clock, or at once when a write
loses it, and steps the server down then, without the lease store (its session is the
elector's thread's, busy in the hung call): the role, /healthz, the API and worker connections
follow at once. The hung call's answer, when it comes, revives nothing (`Term.renewed`); the
elector's thread then frees the lease that answer may have extended and stands by.

`step(now)` takes the time and returns how long to wait; the thread only calls it. Each
change of leadership is one log line naming the epoch and the server, and goes to
`on_change(term)` (the new Term, or None after stepping down), which must only hand it on:
recovering a term's state takes time, and renewals must not wait for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from .lease import LeaseSettings, LeaseView, Term
from .schema import StoreError

log = logging.getLogger("orderflow.leader")


class LeaseStore(Protocol):
    """The lease row's operations (postgres_lease.py); StoreError when the database does not
    answer. `holder` and `url` name this server."""

    holder: str
    url: str | None

    def look(self) -> LeaseView: ...
    def take(self, seen_epoch: int) -> int | None: ...
    def renew(self, epoch: int) -> bool: ...
    def release(self, epoch: int) -> None: ...
    def close(self) -> None: ...


STANDBY, LEADER = "standby", "leader"


class Elector:
    """Campaigns while standing by, renews while leading (see the module docstring).
    `stand_by=False`: one term only (a journal opened as the only scheduler): after stepping
    down it stops campaigning."""

    def __init__(self, store: LeaseStore, settings: LeaseSettings | None = None,
                 on_change: Callable[[Term | None], None] = lambda term: None,
                 clock: Callable[[], float] = time.monotonic, stand_by: bool = True):
        self.store = store
        self.settings = settings or LeaseSettings()
        self.on_change = on_change
        self.stand_by = stand_by
        self._clock = clock
        self._lock = threading.Lock()
        self.term: Term | None = None
        self.seen: LeaseView | None = None  # the lease as last looked at
        self.last_reason: str | None = None  # why the last term ended
        self._next_renew = 0.0
        self._holdoff_until = 0.0
        # A term the watchdog ended, whose lease the elector's thread has yet to free.
        self._unreleased: Term | None = None
        self._looked_ok = True
        self._campaigning = True
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._watch_wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None

    # ------------------------------------------------------------------ queries

    @property
    def role(self) -> str:
        return LEADER if self.term is not None else STANDBY

    def view(self) -> dict:
        """The role, for /healthz and the dashboard: this server's epoch while it leads,
        otherwise who leads as far as the last look saw."""
        with self._lock:
            term, seen = self.term, self.seen
        if term is not None:
            return {"role": LEADER, "epoch": term.epoch, "leader": self.store.url,
                    "leader_name": self.store.holder, "server": self.store.url}
        hint = seen.hint() if seen is not None else {"epoch": None, "leader": None,
                                                     "leader_name": None}
        return {"role": STANDBY, **hint, "server": self.store.url}

    # ------------------------------------------------------------------ one iteration

    def step(self, now: float) -> float:
        """Renew or campaign as `now` requires; returns the seconds until the next step."""
        self._free_unreleased()
        term = self.term
        if term is not None:
            return self._lead(term, now)
        if not self._campaigning:
            return self.settings.poll_every
        # During the holdoff it only looks (to name the leader), leaving the lease to others.
        self._campaign(now, may_take=now >= self._holdoff_until)
        return self.settings.poll_every if self.term is None else self.settings.renew_every

    def _lead(self, term: Term, now: float) -> float:
        over = term.over(now)
        if over is not None:
            self._step_down(now, term, over)
            return self.settings.poll_every
        stalled = term.commits_stalled(now) if self.stand_by else 0.0
        if stalled >= self.settings.ttl:
            # Renewing would keep a leader that commits nothing; a standby may do better.
            self._step_down(now, term, f"its journal could not commit for {stalled:.1f} s, "
                                       f"longer than the lease ({self.settings.ttl:g} s)")
            return self.settings.poll_every
        if now < self._next_renew:
            return self._next_renew - now
        try:
            renewed = self.store.renew(term.epoch)
        except StoreError as exc:
            self._step_down(now, term, f"its lease session was lost ({exc})")
            return self.settings.poll_every
        if not renewed:
            self._step_down(now, term, "the lease moved to another server")
            return self.settings.poll_every
        # The renewal may have waited long for its answer (a frozen database): one that
        # comes after the term ran out is too late (Term.renewed), and the watchdog may have
        # stepped the server down meanwhile. The database's lease it just extended is freed
        # by the step-down, so a standby need not wait for it.
        answered = self._clock()
        if not term.renewed(now, answered):
            self._step_down(answered, term, term.lost or (
                f"its renewal was answered {answered - now:.1f} s after it was sent, too "
                f"late: no renewal had been answered for {self.settings.hold:g} s"))
            return self.settings.poll_every
        self._next_renew = now + self.settings.renew_every
        return self.settings.renew_every

    def _campaign(self, now: float, may_take: bool) -> None:
        try:
            seen = self.store.look()
        except StoreError as exc:
            if self._looked_ok:
                log.warning("standing by, but cannot look at the lease: %s", exc)
            self._looked_ok = False
            return
        self._looked_ok = True
        with self._lock:
            previous, self.seen = self.seen, seen
        if not seen.free:
            if previous is None or previous.epoch != seen.epoch or previous.free:
                log.info("standing by (%s): epoch %d is led by %s%s", self.store.holder,
                         seen.epoch, seen.holder, f" at {seen.url}" if seen.url else "")
            return
        if not may_take:
            return
        # The term counts from just before the take: the look may have waited long (a
        # frozen database), and a term counted from `now` would be born expired.
        now = self._clock()
        try:
            epoch = self.store.take(seen.epoch)
        except StoreError as exc:
            log.warning("could not take the lease: %s", exc)
            return
        if epoch is None:
            return  # another server got there first, or the leader renewed meanwhile
        term = Term(epoch, self.settings, now, self.store.holder, self.store.url)
        term.on_lost(self._heard_lost)
        with self._lock:
            self.term = term
        self._next_renew = now + self.settings.renew_every
        log.warning("leading: %s took the lease at epoch %d%s (%s)", self.store.holder, epoch,
                    f" as {self.store.url}" if self.store.url else "", seen.why_free())
        self.on_change(term)
        self._watch_wake.set()  # the watchdog watches this term from now on

    def _heard_lost(self, reason: str) -> None:
        """A term's listener: whoever lost it (a write that found the epoch moved), the
        elector and the watchdog look at once (the elector may be busy in a hung call)."""
        self._wake.set()
        self._watch_wake.set()

    def watch(self, now: float) -> float:
        """The watchdog's one iteration, on a thread of its own: once the term is over at
        `now` by this server's clock, step down, without touching the lease store (the
        elector's thread may be stuck in it, and its session is that thread's; it frees the
        lease at its next step). Returns the seconds until the term may run out; a new term
        or a lost one wakes it sooner."""
        term = self.term
        if term is None:
            return self.settings.ttl  # nothing to watch until a term begins (it wakes us)
        over = term.over(now)
        if over is None:
            return term.valid_until() - now
        self._step_down(now, term, over, release=False)
        return self.settings.ttl

    def _step_down(self, now: float, term: Term, reason: str, release: bool = True) -> None:
        """End `term` (if it is still this server's: the elector's thread and the watchdog
        may both find it over; one steps down). `release`: free the lease in the database
        now, from the elector's thread, which owns the store's session; the watchdog leaves
        that to the elector's next step."""
        with self._lock:
            ours = self.term is term
            if ours:
                self.term, self._unreleased = None, term
        if ours:
            self.last_reason = reason
            self._holdoff_until = now + self.settings.holdoff
            if not self.stand_by:
                self._campaigning = False
            then = "standing by" if self.stand_by else "writing nothing more"
            log.warning("stepped down: %s left epoch %d (%s); %s", self.store.holder,
                        term.epoch, reason, then)
            # Serving stops first (on_change only hands it on); losing the term then cancels
            # a write in flight, which may wait on the database.
            self.on_change(None)
            term.lose(reason)
        if release:
            self._free_unreleased()

    def _free_unreleased(self) -> None:
        """Free the lease of the term that ended last, if not yet done: still ours in the
        database (we lost it by our own clock, or a renewal answered late just extended it),
        so a standby need not wait for it to expire. The elector's thread only."""
        with self._lock:
            term, self._unreleased = self._unreleased, None
        if term is None:
            return
        try:
            self.store.release(term.epoch)
        except StoreError:
            pass

    # ------------------------------------------------------------------ thread

    def start(self) -> Elector:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="orderflow-elector",
                                            daemon=True)
            self._watchdog = threading.Thread(target=self._run_watchdog,
                                              name="orderflow-elector-watchdog", daemon=True)
            self._thread.start()
            self._watchdog.start()
        return self

    def _run_watchdog(self) -> None:
        while not self._stop.is_set():
            # Cleared before the look, so a term that begins (or is lost) during it wakes
            # the next wait instead of being missed.
            self._watch_wake.clear()
            try:
                wait = self.watch(self._clock())
            except Exception:  # noqa: BLE001 - a dead watchdog would never step down
                log.exception("elector watchdog failed; trying again")
                wait = self.settings.poll_every
            self._watch_wake.wait(max(0.0, wait))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step(self._clock())
            except Exception:  # noqa: BLE001 - an elector that dies would never step down
                log.exception("elector step failed; trying again")
                wait = self.settings.poll_every
            self._wake.wait(max(0.0, wait))
            self._wake.clear()

    def stop(self, resign: bool = True) -> None:
        """Stop the thread; `resign`: hand the lease back first (a clean shutdown), so a
        standby takes over within its poll interval instead of the lease's expiry."""
        self._stop.set()
        self._wake.set()
        self._watch_wake.set()
        for thread in (self._thread, self._watchdog):
            if thread is not None:
                thread.join(5)
        term = self.term
        if term is not None:
            with self._lock:
                self.term = None
            term.lose("this server stopped")
            if resign:
                try:
                    self.store.release(term.epoch)
                    log.warning("resigned: %s handed back the lease of epoch %d",
                                self.store.holder, term.epoch)
                except StoreError:
                    pass
        if resign:
            self._free_unreleased()  # a term the watchdog ended just before
        self.store.close()
