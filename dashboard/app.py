"""The app factory: Flask + Flask-SocketIO (threading mode) around one cluster.

`create_app` only wires things together; nothing runs until `services(app).start()`, so a
test can build an app, use its test client, and start threads only when it needs them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Flask
from flask_socketio import SocketIO

from scheduler import Cluster
from scheduler.journal.election import Elector
from scheduler.journal.lease import LeaseSettings
from scheduler.journal.location import lease_store, parse_location
from scheduler.journal.retention import Pruner
from scheduler.remote.packets import TextPacket

from .api import orders as api_orders
from .api import pages
from .api import schedules as api_schedules
from .api import steps as api_steps
from .api import system as api_system
from .api import workers as api_workers
from .api import workflows as api_workflows
from .assets import STATIC, TEMPLATES
from .config import DefaultConfig
from .door import auth, boundary, errors, frames
from .door.gate import GateLimits, SocketGate
from .failover import leadership
from .failover.leadership import Leadership, StandbyJournal
from .failover.role import SOLE, ServerRole
from .metrics import ConnectionCollector, Metrics
from .metrics import bp as metrics_bp
from .parts import Part
from .settings import ServeSettings, build_cluster, build_pruner
from .stream import realtime
from .stream.history import History
from .stream.push import EventStream, StreamSettings
from .workers.hub import WorkerHub, install_worker_hub

log = logging.getLogger("orderflow.app")
P = TypeVar("P", bound=Part)


class Retention(Part):
    """`--retention`: the hourly pruning of the current cluster's journal. Each leadership
    term's journal gets a pruner of its own; a standby's placeholder has none."""

    def __init__(self, settings: ServeSettings, cluster: Cluster | None):
        self.settings = settings
        self.pruner: Pruner | None = (None if cluster is None
                                      else build_pruner(settings, cluster))

    def start(self) -> None:
        if self.pruner is not None:
            self.pruner.start()

    def stop(self) -> None:
        if self.pruner is not None:
            self.pruner.stop()

    def follow(self, cluster: Cluster) -> None:
        self.stop()
        self.pruner = build_pruner(self.settings, cluster)
        self.start()


@dataclass
class Services:
    """The app's moving parts (`app.extensions["orderflow"]`), started and stopped together.

    With several servers on one PostgreSQL database (`leadership`), `cluster` is the current
    term's, or a placeholder while standing by, and every part follows it (`follow`)."""

    cluster: Cluster
    socketio: SocketIO
    stream: EventStream
    metrics: Metrics
    owns_cluster: bool  # built by create_app, so started and stopped with the app
    # The last hour of throughput, queue depth and failures (sampled by the stream).
    history: History = field(default_factory=History)
    leadership: Leadership | None = None
    settings: ServeSettings | None = None
    # The remote worker hub (a part too): it alone runs worker processes.
    workers: WorkerHub | None = None
    # The parts over the cluster, registered by create_app (`add`): started in this order
    # once the cluster runs, stopped in the reverse order before it stops.
    parts: list[Part] = field(default_factory=list)

    def add(self, part: P) -> P:
        """Register a part (see `parts`); returns it."""
        self.parts.append(part)
        return part

    def start(self) -> Services:
        if self.leadership is not None:
            self.leadership.start()  # a term's cluster starts once elected
        elif self.owns_cluster:
            self.cluster.start()
        for part in self.parts:
            part.start()
        return self

    def stop(self) -> None:
        """Stop the parts (the worker hub first: the worker processes this server started
        drain and are reaped while the rest still runs), drop Socket.IO clients, then stop
        the cluster (if it is ours); a leader hands its lease back last, once its journal
        has written everything."""
        for part in reversed(self.parts):
            part.stop()
        self.disconnect_clients()
        # Stops engine.io's ping-timeout task; the web server itself is the caller's.
        self.socketio.server.eio.shutdown()
        if self.leadership is not None:
            self.leadership.stop()
            self.cluster.stop()
            self.leadership.resign()
        elif self.owns_cluster:
            self.cluster.stop()

    def role(self) -> ServerRole:
        """This server's role: always the leader of its own journal, unless it shares a
        PostgreSQL database with other servers (see failover/)."""
        return SOLE if self.leadership is None else self.leadership.view()

    def follow(self, cluster: Cluster) -> None:
        """A new term (or standing by): every part follows `cluster`. Every Socket.IO
        connection is dropped first: workers and browsers connect again, to the leader."""
        self.disconnect_clients()
        self.cluster = cluster
        for part in self.parts:
            part.follow(cluster)

    def stop_worker_processes(self) -> None:
        """The worker processes this server started stop (a standby runs no workers)."""
        if self.workers is not None:
            self.workers.stop_processes()

    def disconnect_clients(self) -> None:
        # abort, no wait: a graceful close waits for a client that may never read again.
        for sock in list(self.socketio.server.eio.sockets.values()):
            sock.close(wait=False, abort=True)


def services(app: Flask) -> Services:
    """The running parts of an app built by `create_app`."""
    return app.extensions["orderflow"]


def _cluster_settings(value: Any) -> ServeSettings:
    if isinstance(value, ServeSettings):
        return value
    # A bare create_app() is for embedding and tests: in memory unless told otherwise.
    return ServeSettings(**{"persist": False, **(value or {})})


def create_app(config: Mapping[str, Any] | None = None, cluster: Cluster | None = None) -> Flask:
    """Build the app. Without `cluster`, one is built from CLUSTER_SETTINGS and owned."""
    app = Flask(__name__, template_folder=str(TEMPLATES), static_folder=str(STATIC))
    app.config.from_object(DefaultConfig)
    app.config.update(config or {})
    app.json.sort_keys = False  # keep the scheduler's order: tasks in workflow order
    owns_cluster = cluster is None
    settings = _cluster_settings(app.config["CLUSTER_SETTINGS"])
    if owns_cluster and app.config["ORDERFLOW_APP"] is None:
        app.config["ORDERFLOW_APP"] = settings.app  # what its worker processes run too
    shared = owns_cluster and settings.persist and parse_location(settings.db).is_url
    elector = None
    if shared:
        # Several servers may share this database: lead, or stand by (leadership.py).
        lease = app.config["LEASE_SETTINGS"] or LeaseSettings()
        store = lease_store(parse_location(settings.db), lease,
                            settings.advertise or app.config["ORDERFLOW_URL"])
        elector = Elector(store, lease)
        cluster = build_cluster(settings, journal=StandbyJournal(
            lambda: app.extensions["orderflow"].role()))
    elif cluster is None:
        cluster = build_cluster(settings, app.config["JOURNAL_LOCK"])

    socketio = SocketIO(
        app,
        async_mode="threading",  # explicit: never pick eventlet/gevent because one is installed
        cors_allowed_origins=app.config["CORS_ORIGINS"],
        ping_interval=app.config["PING_INTERVAL"],
        ping_timeout=app.config["PING_TIMEOUT"],
        max_http_buffer_size=app.config["MAX_CONTENT_LENGTH"],
        # Ours, so a client's malformed packet is one log line, not a traceback (frames.py).
        logger=frames.library_logger("orderflow.socketio.lib"),
        engineio_logger=frames.library_logger("orderflow.engineio.lib"),
        serializer=TextPacket,  # JSON text only: no scan of each packet for bytes
    )
    # Each connection's frames within limits, checked before Engine.IO sees them.
    frame_guard = frames.FrameGuard.from_config(app.config, cluster.config.heartbeat_interval)
    frames.guard(socketio, frame_guard)
    app.extensions["orderflow_frames"] = frame_guard
    history = History(app.config["HISTORY_INTERVAL"], app.config["HISTORY_SPAN"])
    stream = EventStream(cluster, socketio, StreamSettings.from_config(app.config),
                         history=history, role=lambda: app.extensions["orderflow"].role())
    running = Services(cluster, socketio, stream, Metrics(cluster, stream), owns_cluster,
                       history=history, settings=settings)
    running.add(stream)
    running.add(running.metrics)
    # Shared: each term's journal gets its pruner when the term begins.
    running.add(Retention(settings, None if shared else cluster))
    if elector is not None:
        running.leadership = Leadership(
            running, elector,
            lambda term: build_cluster(settings, term=term), placeholder=cluster)
    app.extensions["orderflow"] = running

    errors.register(app)
    auth.register(app)
    leadership.register(app, lambda: app.extensions["orderflow"].leadership)
    boundary.register(app)  # after the token and standby checks
    # Around Socket.IO's requests, which never reach Flask's hooks: the token and the caps
    # are checked before a handshake is answered, so a refused one never holds a thread.
    app.wsgi_app = SocketGate(
        app.wsgi_app, socketio.server_options.get("path", "socket.io"),
        lambda: app.config.get("ORDERFLOW_TOKEN"),
        GateLimits(app.config["WORKER_SOCKET_LIMIT"], app.config["DASHBOARD_SOCKET_LIMIT"],
                   app.config["DASHBOARD_SOCKET_LIMIT_PER_ADDRESS"]),
        standby=lambda: leadership.refusal_of(app.extensions["orderflow"].leadership))
    app.extensions["orderflow_gate"] = app.wsgi_app
    running.metrics.registry.register(
        ConnectionCollector(app.wsgi_app, frame_guard.stats))
    # Outermost: a request to a foreign host name is refused before anything else.
    app.wsgi_app = auth.LoopbackHostGuard(app.wsgi_app, app.extensions["orderflow_host_guard"])
    for blueprint in (pages.bp, api_orders.bp, api_workers.bp, api_workflows.bp,
                      api_workflows.definitions_bp, api_steps.bp, api_schedules.bp,
                      api_system.bp, metrics_bp):
        app.register_blueprint(blueprint)
    realtime.register(socketio, stream)
    running.workers = running.add(install_worker_hub(app, socketio, cluster))

    return app
