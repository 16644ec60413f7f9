"""The one background task that pushes cluster events to Socket.IO clients.

It reads new events from the cluster's bounded history (a cursor on `seq`), so the
scheduler never waits for it, and sends them as one `events` list per interval to every
client that keeps up. A client whose unsent packets pile up is "behind": it gets nothing
more until its queue has drained, then one fresh `snapshot`, so memory per client stays
bounded however slow its network or browser is. The message contract is in realtime.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from flask_socketio import SocketIO

from scheduler import Cluster

from ..api.bodies import MAX_PAGE
from ..config import DefaultConfig
from ..failover.role import SOLE, ServerRole
from ..parts import Part
from .history import History

log = logging.getLogger("orderflow.stream")
NAMESPACE = "/"
# A behind client gets its snapshot once no more than this many packets wait for it.
CAUGHT_UP = 2
# A version no incident log reaches: asking for changes since it reads the current version.
NEWEST = 2**62


@dataclass(frozen=True)
class StreamSettings:
    """The stream's settings; the defaults (and what each means) are DefaultConfig's."""

    interval: float = DefaultConfig.STREAM_INTERVAL
    workers_interval: float = DefaultConfig.WORKERS_INTERVAL
    backlog_limit: int = DefaultConfig.STREAM_BACKLOG_LIMIT
    chunk: int = DefaultConfig.STREAM_CHUNK
    max_events: int = DefaultConfig.STREAM_MAX_EVENTS
    snapshot_orders: int = DefaultConfig.SNAPSHOT_ORDERS
    snapshot_events: int = DefaultConfig.SNAPSHOT_EVENTS
    log_events: int = DefaultConfig.DASHBOARD_LOG_EVENTS
    initial_orders: int = DefaultConfig.DASHBOARD_INITIAL_ORDERS

    @classmethod
    def from_config(cls, config: Mapping) -> StreamSettings:
        return cls(
            interval=config["STREAM_INTERVAL"],
            workers_interval=config["WORKERS_INTERVAL"],
            backlog_limit=config["STREAM_BACKLOG_LIMIT"],
            chunk=config["STREAM_CHUNK"],
            max_events=config["STREAM_MAX_EVENTS"],
            snapshot_orders=config["SNAPSHOT_ORDERS"],
            snapshot_events=config["SNAPSHOT_EVENTS"],
            log_events=config["DASHBOARD_LOG_EVENTS"],
            initial_orders=config["DASHBOARD_INITIAL_ORDERS"],
        )


def without_tracebacks(events: list[dict]) -> list[dict]:
    """`events` for the stream: a failed attempt's traceback (up to max_traceback_chars, for
    every failure of a broken handler) is left out; the order view fetches it. The list
    itself when no event has one, as is usual (no copy)."""
    if not any("traceback" in event for event in events):
        return events
    return [event if "traceback" not in event
            else {k: v for k, v in event.items() if k != "traceback"} for event in events]


def app_view(cluster: Cluster) -> dict:
    """The app the cluster runs, and whether the demo's chaos knobs drive its steps (the
    built-in demo, or an app built on its handlers): a page offers them only then."""
    app = cluster.app
    return {"name": app.name if app is not None else None,
            "chaos": app is not None and app.chaos is not None and app.chaos is cluster.chaos}


def build_snapshot(cluster: Cluster, settings: StreamSettings = StreamSettings(),
                   server: ServerRole | None = None) -> dict:
    """Everything a fresh client needs. The state is at least as new as `last_seq`, so a
    client applying the `events` with a greater seq misses nothing. `server`: this server's
    role (which server leads, with several on one database)."""
    events, orders = settings.snapshot_events, settings.snapshot_orders
    _, newest = cluster.event_bounds()
    recent = without_tracebacks(cluster.events(after=max(0, newest - events), limit=events))
    config = cluster.config
    return {
        "last_seq": recent[-1]["seq"] if recent else newest,
        "events": recent,
        "stats": cluster.stats(),
        "workers": cluster.workers(),
        "ring": cluster.ring(),
        "orders": cluster.orders(limit=orders),
        "chaos": cluster.chaos.view(),
        "app": app_view(cluster),
        # Whole, however many events followed them (a restart's recoveries, say).
        "incidents": cluster.incidents(),
        "config": {
            "heartbeat_interval": config.heartbeat_interval,
            "heartbeat_timeout": config.heartbeat_timeout,
            "max_retries": config.retry.max_retries,
            # How often `workers` comes: a page that hears nothing for longer knows.
            "workers_interval": settings.workers_interval,
        },
        # The browser's caps, so it has no copies of the server's numbers.
        "limits": {
            "orders": config.finished_order_history,
            "orders_page": MAX_PAGE,
            "initial_orders": settings.initial_orders,
            "log_events": settings.log_events,
            "incidents": cluster.incidents_kept,
        },
        "workflows": cluster.workflows(),
        # The same workflows as GET /api/workflows lists them: steps with their policies,
        # for the submit forms' choices and the order's DAG.
        "workflow_details": cluster.describe_workflows(),
        # {"role", "epoch", "leader", "leader_name", "server"}: which server leads.
        "server": (server or SOLE).as_dict(),
    }


@dataclass
class Plan:
    snapshot: list[str] = field(default_factory=list)  # get a snapshot now
    live: list[str] = field(default_factory=list)  # get events and workers messages


class ClientTable:
    """Which clients get the next batch and which need a snapshot. No I/O; thread-safe."""

    def __init__(self, backlog_limit: int):
        self.backlog_limit = backlog_limit
        self._lock = threading.Lock()
        self._needs_snapshot: dict[str, bool] = {}
        self.fell_behind = 0  # times any client was found behind (a metric)

    def add(self, sid: str) -> None:
        with self._lock:
            self._needs_snapshot[sid] = True

    def remove(self, sid: str) -> None:
        with self._lock:
            self._needs_snapshot.pop(sid, None)

    def resync(self, sid: str) -> None:
        with self._lock:
            if sid in self._needs_snapshot:
                self._needs_snapshot[sid] = True

    def resync_all(self) -> None:
        with self._lock:
            for sid in self._needs_snapshot:
                self._needs_snapshot[sid] = True

    def counts(self) -> dict[str, int]:
        with self._lock:
            waiting = sum(self._needs_snapshot.values())
            return {"live": len(self._needs_snapshot) - waiting, "resyncing": waiting}

    def plan(self, backlog: Callable[[str], int | None]) -> Plan:
        """Sort clients by how many packets wait for them (None: not ready, skip for now).

        A snapshot is promised under the lock, so a resync asked for meanwhile gets its own.
        """
        plan = Plan()
        with self._lock:
            for sid, needs_snapshot in self._needs_snapshot.items():
                queued = backlog(sid)
                if queued is None:
                    continue
                if needs_snapshot:
                    if queued <= CAUGHT_UP:
                        self._needs_snapshot[sid] = False
                        plan.snapshot.append(sid)
                elif queued > self.backlog_limit:
                    self._needs_snapshot[sid] = True
                    self.fell_behind += 1
                    log.info("client %s is %d packets behind; it will get a snapshot", sid, queued)
                else:
                    plan.live.append(sid)
        return plan


def queued_packets(socketio: SocketIO, sid: str) -> int | None:
    """Packets waiting to be written to one client; None while it is (dis)connecting.

    Reads python-engineio's per-connection send queue: the one place the backlog of a
    slow client is visible. A test client has no engine.io socket and counts as 0.
    """
    server = socketio.server
    if not server.manager.is_connected(sid, NAMESPACE):
        return None
    eio_sid = server.manager.eio_sid_from_sid(sid, NAMESPACE)
    sock = server.eio.sockets.get(eio_sid)
    return sock.queue.qsize() if sock is not None else 0


class EventStream(Part):
    """Batches cluster events to Socket.IO clients from one thread (see module docstring)."""

    def __init__(self, cluster: Cluster, socketio: SocketIO, settings: StreamSettings,
                 clock: Callable[[], float] = time.monotonic,
                 backlog: Callable[[str], int | None] | None = None,
                 history: History | None = None, wall: Callable[[], float] = time.time,
                 role: Callable[[], ServerRole] | None = None):
        self.cluster, self.socketio, self.settings = cluster, socketio, settings
        # Sampled here, whether or not anyone watches, so a page opened later has the hour.
        self.history = history
        self._wall = wall
        self._role = role
        self._backlog = backlog or (lambda sid: queued_packets(socketio, sid))
        self.clients = ClientTable(settings.backlog_limit)
        self._clock = clock
        self._cursor = cluster.event_bounds()[1]
        self._incidents_version = cluster.incidents_since(NEWEST)[0]
        self._next_events = 0.0
        self._next_workers = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.counters = {"batches": 0, "events": 0, "snapshots": 0, "resyncs_for_gap": 0}

    # ------------------------------------------------------------------ clients

    def connect(self, sid: str) -> None:
        self.clients.add(sid)
        self._wake.set()  # the snapshot goes out now, not at the next tick

    def disconnect(self, sid: str) -> None:
        self.clients.remove(sid)

    def resync(self, sid: str) -> None:
        self.clients.resync(sid)
        self._wake.set()

    def follow(self, cluster: Cluster) -> None:
        """A new leadership term (or standing by): read `cluster` from now on; every client
        gets a fresh snapshot (a term's seq continues the journal's, not this process's)."""
        self.cluster = cluster
        self._cursor = cluster.event_bounds()[1]
        self._incidents_version = cluster.incidents_since(NEWEST)[0]
        self.clients.resync_all()
        self._wake.set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="orderflow-stream", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            # Cleared before the step, so a client that connects during it is served at once.
            self._wake.clear()
            try:
                wait = self.step(self._clock())
            except Exception:  # noqa: BLE001 - a dead stream would freeze every dashboard
                log.exception("event stream step failed; retrying")
                wait = self.settings.interval
            self._wake.wait(wait)

    # ------------------------------------------------------------------ one iteration

    def step(self, now: float) -> float:
        """Send what is due at `now`; returns the seconds until something is due again."""
        tick = now >= self._next_events
        batch = self._read_new_events() if tick else []
        # Read after the events, so it is at least as new as they are: a page has the
        # record of an incident before the event that opened it arrives.
        incidents = self._read_changed_incidents() if tick else []
        plan = self.clients.plan(self._backlog)
        if plan.snapshot:
            snapshot = build_snapshot(self.cluster, self.settings,
                                      self._role() if self._role else None)
            self.socketio.emit("snapshot", snapshot, to=plan.snapshot, namespace=NAMESPACE)
            self.counters["snapshots"] += len(plan.snapshot)
        if tick:
            self._next_events = now + self.settings.interval
            if incidents and plan.live:
                self.socketio.emit("incidents", incidents, to=plan.live, namespace=NAMESPACE)
            self._send_events(batch, plan.live)
        stats = None
        if now >= self._next_workers:
            self._next_workers = now + self.settings.workers_interval
            if plan.live:
                stats = self.cluster.stats()
                # The chaos knobs too: a change made on one page shows on every other.
                message = {"workers": self.cluster.workers(), "stats": stats,
                           "chaos": self.cluster.chaos.view()}
                self.socketio.emit("workers", message, to=plan.live, namespace=NAMESPACE)
        if self.history is not None and self.history.due(self._wall()):
            self.history.sample(self._wall(), stats or self.cluster.stats())
        return max(0.0, min(self._next_events, self._next_workers) - now)

    def _read_new_events(self) -> list[dict]:
        """Events since the cursor; on a gap or a flood, everyone resyncs from a snapshot."""
        oldest, newest = self.cluster.event_bounds()
        events = [] if self._cursor < oldest - 1 else self.cluster.events(
            after=self._cursor, limit=self.settings.max_events + 1)
        if self._cursor < oldest - 1 or len(events) > self.settings.max_events:
            # The history moved past us, or a snapshot is cheaper than the backlog.
            self.counters["resyncs_for_gap"] += 1
            self.clients.resync_all()
            self._cursor = newest
            return []
        if events:
            self._cursor = events[-1]["seq"]
        return without_tracebacks(events)

    def _read_changed_incidents(self) -> list[dict]:
        """The incidents that changed since the last look (newest first)."""
        self._incidents_version, changed = self.cluster.incidents_since(self._incidents_version)
        return changed

    def _send_events(self, batch: list[dict], recipients: list[str]) -> None:
        # An empty `to` would broadcast to everyone, behind clients included.
        if not batch or not recipients:
            return
        chunk = self.settings.chunk
        for start in range(0, len(batch), chunk):
            self.socketio.emit("events", batch[start:start + chunk], to=recipients,
                               namespace=NAMESPACE)
            self.counters["batches"] += 1
        self.counters["events"] += len(batch)
