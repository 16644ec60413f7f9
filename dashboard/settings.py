"""What `orderflow serve` runs with: its settings, their checks, and the one place that
builds the cluster from them."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from scheduler import Chaos, Cluster, ClusterConfig, ConfigError, RetryPolicy, load_app
from scheduler.journal.base import Journal
from scheduler.journal.lease import Term
from scheduler.journal.location import BadLocation, open_journal, parse_location
from scheduler.journal.lock import FileLock
from scheduler.journal.retention import Pruner
from scheduler.journal.sqlite import DEFAULT_DB
from scheduler.runtime.logfile import DEFAULT_LOG


@dataclass(frozen=True)
class ServeSettings:
    """Settings of one server process; every default is what `make run` gets."""

    # Where to listen. Anything but loopback requires a token.
    host: str = "127.0.0.1"
    # 0 lets the kernel pick a free port (the server prints the URL it got).
    port: int = 5000
    # Threads for HTTP requests. Socket.IO connections get threads of their own, up to
    # their caps below (each holds one while open), so they never starve the API. With a
    # token, requests without it use at most three quarters of these threads at once.
    threads: int = 32
    # Socket.IO connections open at once: of workers (`orderflow worker` processes), and of
    # dashboards in all and from one client address; beyond them a handshake gets 503 / 429
    # before it costs a thread. Each open one costs three threads (measured in
    # benchmarks/fleet_scale.py).
    max_worker_sockets: int = 256
    max_dashboard_sockets: int = 64
    max_sockets_per_address: int = 32
    # TCP connections open at once (any state), from everyone and from one address; at
    # them a new connection sheds an idle one (a head not yet whole, a kept-alive one
    # between requests), the oldest of the address holding the most, and gets an immediate
    # 503 / 429 only if none is idle.
    max_connections: int = 1000
    max_connections_per_address: int = 500
    # Frames a second one Socket.IO connection may send besides heartbeats (those are held
    # to four per heartbeat interval), in bursts of twice as many; beyond, a frame waits.
    max_frame_rate: float = 500.0
    # Seconds a client has to send a whole request head (request line and headers). Until
    # then the connection waits in the server's event loop, not on a thread; past it, it is
    # closed. A slow body or a client that does not read its response is cut after
    # request_timeout seconds without progress.
    header_timeout: float = 10.0
    request_timeout: float = 30.0
    # Worker threads of the cluster at start; this and the heartbeat and retry settings
    # default to the cluster's own (`ClusterConfig`), so `make run` and the Python API agree.
    # The shop's App as "module:attr"; None: the built-in demo (whose chaos knobs below
    # only the demo's steps follow).
    app: str | None = None
    workers: int = ClusterConfig.workers
    # Steps each thread worker runs at once.
    slots: int = ClusterConfig.slots
    # Capability tags the server's thread workers offer (a step that needs a tag they lack,
    # e.g. "payments", runs only on `orderflow worker --tags payments` processes).
    tags: tuple[str, ...] = ()
    # Seconds a step's attempt may run before it fails as timed out.
    step_timeout: float = ClusterConfig.step_timeout
    # The journal: a file (SQLite) or a postgresql:// URL, unless persist is False
    # (`--no-persist`).
    db: str = DEFAULT_DB
    persist: bool = True
    heartbeat_interval: float = ClusterConfig.heartbeat_interval
    heartbeat_timeout: float = ClusterConfig.heartbeat_timeout
    max_retries: int = RetryPolicy.max_retries
    # Demo handler chaos: some failures and latency make the dashboard worth watching.
    failure_rate: float = 0.05
    latency_ms: tuple[float, float] = (50.0, 250.0)
    # Bearer token for the API and Socket.IO; None = open, allowed on loopback only.
    token: str | None = None
    # Seconds gunicorn waits for open requests on shutdown before it cuts them (Socket.IO
    # connections, which never end by themselves, are closed at once).
    graceful_timeout: int = 3
    # Finished orders older than this many seconds are pruned hourly; None keeps everything.
    retention: float | None = None
    # The readable log file (rotating, 10 MB x 5).
    log_file: str = DEFAULT_LOG
    # The URL other machines reach this server at (workers, a load balancer, and clients
    # that a standby names the leader to); None: the address it listens on, as seen from
    # this machine. Matters with several servers on one PostgreSQL database.
    advertise: str | None = None


def sockets(settings: ServeSettings) -> int:
    """Socket.IO connections the server may hold at once (each holds a thread)."""
    return settings.max_worker_sockets + settings.max_dashboard_sockets


def reserved_threads(settings: ServeSettings) -> int:
    """HTTP threads kept for requests that carry the token (a quarter, at least one)."""
    return max(1, settings.threads // 4) if settings.token else 0


def log_next_to(db: str) -> str:
    """The readable log beside its journal (shop.db -> shop.log), so two servers with
    different databases never write one file; the default db gives the default log, and so
    does a database URL (or a bad --db, refused later by `check_settings`)."""
    try:
        if parse_location(db).is_url:
            return DEFAULT_LOG
    except BadLocation:
        return DEFAULT_LOG
    return str(Path(db).with_suffix(".log"))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_settings(settings: ServeSettings) -> None:
    """Raise ConfigError naming the first bad setting, before anything starts."""
    if not 0 <= settings.port <= 65535:
        raise ConfigError("port must be from 0 to 65535")
    if settings.threads < 2:
        raise ConfigError("threads must be at least 2")
    # A per-address cap above the total is simply the total.
    if min(settings.max_worker_sockets, settings.max_dashboard_sockets,
           settings.max_sockets_per_address) < 1:
        raise ConfigError("max-worker-sockets, max-dashboard-sockets and "
                          "max-sockets-per-address must be at least 1")
    if min(settings.max_connections, settings.max_connections_per_address) < 1:
        raise ConfigError("max-connections and max-connections-per-address must be at least 1")
    if settings.max_connections <= settings.threads + sockets(settings):
        raise ConfigError("max-connections must be more than threads + max-worker-sockets + "
                          "max-dashboard-sockets")
    if not settings.max_frame_rate > 0:
        raise ConfigError("max-frame-rate must be positive")
    if not (settings.header_timeout > 0 and settings.request_timeout > 0):
        raise ConfigError("header-timeout and request-timeout must be positive")
    if settings.graceful_timeout < 0:
        raise ConfigError("graceful-timeout must be 0 or more")
    if settings.token is not None and not settings.token.strip():
        raise ConfigError("token must not be empty")
    if not is_loopback(settings.host) and not settings.token:
        raise ConfigError(
            f"binding {settings.host} exposes the API beyond this machine: "
            "give a token with --token or ORDERFLOW_TOKEN"
        )
    # The scheduler's own value objects know their limits; building them checks them.
    ClusterConfig(
        workers=settings.workers,
        slots=settings.slots,
        step_timeout=settings.step_timeout,
        heartbeat_interval=settings.heartbeat_interval,
        heartbeat_timeout=settings.heartbeat_timeout,
        retry=RetryPolicy(max_retries=settings.max_retries),
    )
    Chaos(failure_rate=settings.failure_rate, latency_ms=settings.latency_ms)
    if settings.persist:
        try:
            parse_location(settings.db)
        except BadLocation as exc:
            raise ConfigError(str(exc)) from None
    if settings.advertise is not None and not settings.advertise.startswith(
            ("http://", "https://")):
        raise ConfigError(f"advertise must be an http:// or https:// URL, got "
                          f"{settings.advertise!r}")
    if settings.app is not None:
        load_app(settings.app)  # AppError: one line naming what is wrong, before anything


def build_cluster(settings: ServeSettings, lock: FileLock | None = None, *,
                  term: Term | None = None, journal: Journal | None = None) -> Cluster:
    """The cluster a server hosts. Not started: the caller starts it in the serving process
    (starting replays the journal). Raises StoreError for an unusable database, or one that
    another server journals to. `lock`: the SQLite journal's lock when `orderflow serve`
    holds it for its whole life (the journal takes its own otherwise). `term`: the
    leadership term a PostgreSQL journal writes under; `journal`: this one instead."""
    if journal is None and settings.persist:
        journal = open_journal(parse_location(settings.db), lock, term)
    return Cluster(
        app=load_app(settings.app) if settings.app else None,
        tags=settings.tags,
        workers=settings.workers,
        slots=settings.slots,
        step_timeout=settings.step_timeout,
        heartbeat_interval=settings.heartbeat_interval,
        heartbeat_timeout=settings.heartbeat_timeout,
        max_retries=settings.max_retries,
        chaos=Chaos(failure_rate=settings.failure_rate, latency_ms=settings.latency_ms),
        journal=journal,
    )


def build_pruner(settings: ServeSettings, cluster: Cluster) -> Pruner | None:
    """The hourly retention job for `--retention`, when the cluster is persisted."""
    if settings.retention is None or not cluster.journal.persistent:
        return None
    return Pruner(cluster.journal, older_than=settings.retention)


def flask_config(settings: ServeSettings) -> dict:
    """The Flask config that makes `create_app` build this server's cluster."""
    return {"ORDERFLOW_TOKEN": settings.token, "CLUSTER_SETTINGS": settings,
            "WORKER_SOCKET_LIMIT": settings.max_worker_sockets,
            "DASHBOARD_SOCKET_LIMIT": settings.max_dashboard_sockets,
            "DASHBOARD_SOCKET_LIMIT_PER_ADDRESS": settings.max_sockets_per_address,
            "SOCKET_FRAMES_PER_SECOND": settings.max_frame_rate,
            "SOCKET_FRAME_BURST": max(1, round(2 * settings.max_frame_rate))}
