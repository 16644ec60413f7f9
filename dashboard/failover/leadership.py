"""Several `orderflow serve` on one PostgreSQL database: this server leads, or stands by.

An elector (scheduler/journal/election.py) holds or watches the database's leadership lease.
Its changes are carried out here, in order, on a thread of their own (a term's recovery takes
time, and renewals must never wait for it):

- elected: the term's cluster is built on a journal that writes under the term and started,
  which recovers its state from the database exactly as a restart does (`Cluster.start()` ->
  `journal.recover()` -> `SchedulerCore.restore()`); then every part of the app follows it
  (`Services.follow`: the stream, metrics, the worker hub, the pruner) and the server leads;
- deposed: the server stops leading at once (it answers as a standby from then on), drops
  every Socket.IO connection (workers and browsers reconnect, to the leader), stops the
  worker processes it started, and stops the term's cluster: its journal writes nothing more
  (its term is over), so nothing it still does can commit.

While it does not lead, the app holds a placeholder cluster that is never started (no
workers, no monitor) over a journal that accepts nothing, and refuses, before any view: the
API (503 naming the leader), Socket.IO handshakes (the gate: 503 with the leader) and worker
registrations. `/healthz` answers 200 on the leader only, so a load balancer in front sends
everything there; `/`, the page's files, `/api/openapi.json` and `/metrics` stay open.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from flask import Flask, jsonify, request

from scheduler import Cluster
from scheduler.journal.base import NullJournal
from scheduler.journal.election import Elector
from scheduler.journal.lease import Term
from scheduler.journal.schema import StoreError

from ..parts import Part
from .role import Role, ServerRole

log = logging.getLogger("orderflow.leader")
# Paths a standby still answers (everything else under /api/ is refused, naming the leader).
OPEN_PATHS = ("/api/openapi.json",)


class StandbyJournal(NullJournal):
    """The placeholder cluster's journal: nothing can be accepted while standing by."""

    def __init__(self, view: Callable[[], ServerRole]):
        self._view = view

    def check(self) -> None:
        raise StoreError(self._view().standby_message())


class Followers(Protocol):
    """What a change of leadership is carried out on: the app's running parts (app.py's
    `Services`), named here so that this room needs nothing above it."""

    cluster: Cluster  # the current term's, or the placeholder

    def follow(self, cluster: Cluster) -> None: ...
    def stop_worker_processes(self) -> None: ...


class Leadership(Part):
    """The elector and the changes it decides, carried out on the app's parts in order."""

    def __init__(self, services: Followers, elector: Elector,
                 build_term: Callable[[Term], Cluster], placeholder: Cluster):
        self.services = services
        self.elector = elector
        self.build_term = build_term
        self.placeholder = placeholder
        self._state = Role.STANDBY
        self._epoch: int | None = None
        self._term: Term | None = None  # the term it serves while LEADER
        self._changes: queue.SimpleQueue[Term | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orderflow-leadership",
                                        daemon=True)
        elector.on_change = self._changes.put

    # ------------------------------------------------------------------ queries

    @property
    def leading(self) -> bool:
        """Serving as the leader: elected, its term's state recovered, and the term not
        over. The elector ends a term at once (by its own clock, or a write that found the
        epoch moved) and hands the step-down to this part's thread, which carries it out a
        moment later; in that moment nothing may be served as the leader's."""
        return self._state == Role.LEADER and self.elector.term is self._term

    def view(self) -> ServerRole:
        """This server's role (leader, starting or standby), its epoch, the leader's URL and
        name, and this server's URL: for /healthz, refusals and the page."""
        view = ServerRole.of(self.elector.view())
        if self._state == Role.LEADER:
            return view
        if self._state == Role.STARTING:
            return replace(view, role=Role.STARTING, epoch=self._epoch)
        if view.role == Role.LEADER:  # elected just now, not yet carried out
            return replace(view, role=Role.STARTING)
        return view

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Leadership:
        self._thread.start()
        self.elector.start()
        return self

    def stop(self) -> None:
        """Take no new term; the caller stops the current cluster (its journal still
        writes under the term); then `resign`."""
        self._stop.set()
        self._changes.put(None)
        self._thread.join(30)

    def resign(self) -> None:
        """Hand the lease back (a clean shutdown): a standby takes over at its next look."""
        self.elector.stop(resign=True)

    # ------------------------------------------------------------------ changes

    def _run(self) -> None:
        while True:
            change = self._changes.get()
            if self._stop.is_set():
                return
            try:
                if change is None:
                    self._step_down()
                else:
                    self._lead(change)
            except Exception:  # noqa: BLE001 - the server must keep standing by
                log.exception("carrying out a change of leadership failed")

    def _lead(self, term: Term) -> None:
        if not term.holds(time.monotonic()):
            return  # lost before it could start; its step-down follows in the queue
        self._state, self._epoch = Role.STARTING, term.epoch
        started = time.monotonic()
        try:
            cluster = self.build_term(term)
        except StoreError as exc:
            log.error("epoch %d: could not open the journal: %s; stepping down", term.epoch, exc)
            term.lose(f"could not open the journal: {exc}")
            self._state = Role.STANDBY
            return
        try:
            cluster.start()  # recovers, as a restart does
        except Exception as exc:  # noqa: BLE001 - a term that cannot start gives the lease up
            log.error("epoch %d: could not recover: %s; stepping down", term.epoch, exc)
            term.lose(f"could not recover: {exc}")
            cluster.stop()
            self._state = Role.STANDBY
            return
        if not term.holds(time.monotonic()) or self._stop.is_set():
            cluster.stop()
            self._state = Role.STANDBY
            return
        self.services.follow(cluster)
        self._term, self._state = term, Role.LEADER
        stats = cluster.stats()["orders"]
        log.info("epoch %d: recovered in %.2f s; leading (%d orders pending, %d in progress)",
                 term.epoch, time.monotonic() - started, stats.get("pending", 0),
                 stats.get("in_progress", 0))

    def _step_down(self) -> None:
        self._state, self._epoch, self._term = Role.STANDBY, None, None
        services = self.services
        old = services.cluster
        if old is self.placeholder:
            return
        services.follow(self.placeholder)
        services.stop_worker_processes()
        old.stop()


def refusal_of(lead: Leadership | None) -> dict | None:
    """The refusal a standby answers with (None: this server leads, or is the only one)."""
    if lead is None or lead.leading:
        return None
    return lead.view().refusal()


def register(app: Flask, leadership: Callable[[], Leadership | None]) -> None:
    """A standby refuses the API (503 naming the leader) before any view runs."""

    @app.before_request
    def _standby_refuses() -> Any:
        path = request.path
        if not path.startswith("/api/") or path in OPEN_PATHS:
            return None
        body = refusal_of(leadership())
        if body is None:
            return None
        response = jsonify(body)
        response.status_code = 503
        response.headers["Retry-After"] = "1"
        return response
