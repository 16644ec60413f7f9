"""`orderflow serve`: its flags, their checks, and the start of the gunicorn server.

Importing this module loads no Flask: the server itself is imported only when serving."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from scheduler import AppError, ConfigError, load_app
from scheduler.engine.text import escape, problem
from scheduler.journal.location import (
    check_definitions,
    check_journal,
    hold_for_process,
    parse_location,
)
from scheduler.journal.retention import duration_arg
from scheduler.journal.schema import StoreError
from scheduler.runtime.logfile import LogFileError, SafeFormatter, configure_logging
from scheduler.runtime.tuning import tune_gc

from ..settings import DEFAULT_DB, DEFAULT_LOG, ServeSettings, check_settings, log_next_to
from .listener import ListenError, listen

DEFAULTS = ServeSettings()


def _tags(text: str) -> tuple[str, ...]:
    tags = tuple(t.strip() for t in text.split(",") if t.strip())
    if not tags:
        raise argparse.ArgumentTypeError("expected tags separated by commas, e.g. payments,eu")
    for tag in tags:  # bytes that are not UTF-8 arrive as lone surrogates
        if (why := problem(tag)) is not None:
            raise argparse.ArgumentTypeError(f"the tag {escape(tag)} {why}")
    return tags


def _latency(text: str) -> tuple[float, float]:
    low, sep, high = text.partition(",")
    try:
        if not sep:
            raise ValueError
        return float(low), float(high)
    except ValueError:
        message = f"expected MIN,MAX in milliseconds, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


HELP = "run the HTTP API, the Socket.IO event stream, metrics and the dashboard"


def add_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--host", default=DEFAULTS.host,
                       help="address to bind; anything but loopback requires --token")
    serve.add_argument("--port", type=int, default=DEFAULTS.port, help="0 picks a free port")
    serve.add_argument("--app", default=None, metavar="MODULE:ATTR",
                       help="your App (steps and workflows); the built-in demo if not given")
    serve.add_argument("--workers", type=int, default=DEFAULTS.workers,
                       help="thread workers at start (each a unit of failure)")
    serve.add_argument("--slots", type=int, default=DEFAULTS.slots, metavar="N",
                       help="steps each thread worker runs at once (plain handlers on N "
                       "threads, async ones on one event loop)")
    serve.add_argument("--tags", type=_tags, default=(), metavar="TAG,TAG",
                       help="capabilities the server's thread workers offer (steps that need "
                       "a tag run only on workers that offer it)")
    serve.add_argument("--step-timeout", type=float, default=DEFAULTS.step_timeout,
                       metavar="S", help="seconds a step's attempt may run before it fails as "
                       "timed out (and is retried)")
    store = serve.add_mutually_exclusive_group()
    store.add_argument("--db", default=os.environ.get("ORDERFLOW_DB", DEFAULT_DB),
                       metavar="PATH|URL", help="journal: a file (SQLite), or a "
                       "postgresql://user@host:port/database URL; $ORDERFLOW_DB if set")
    store.add_argument("--no-persist", action="store_true", help="keep everything in memory only")
    serve.add_argument("--heartbeat-interval", type=float, default=DEFAULTS.heartbeat_interval,
                       metavar="S", help="how often each worker proves it is alive")
    serve.add_argument("--heartbeat-timeout", type=float, default=DEFAULTS.heartbeat_timeout,
                       metavar="S", help="silence after which a worker is declared dead")
    serve.add_argument("--max-retries", type=int, default=DEFAULTS.max_retries, metavar="N",
                       help="retries after a step's first attempt (at most N + 1 attempts)")
    serve.add_argument("--failure-rate", type=float, default=DEFAULTS.failure_rate, metavar="P",
                       help="chance that a demo step attempt fails, 0..1")
    serve.add_argument("--latency-ms", type=_latency, default=DEFAULTS.latency_ms,
                       metavar="MIN,MAX", help="demo step latency range")
    serve.add_argument("--advertise", default=os.environ.get("ORDERFLOW_ADVERTISE"),
                       metavar="URL", help="the URL workers and other machines reach this "
                       "server at, which standbys name as the leader's (several servers on one "
                       "PostgreSQL database); default: the address it listens on; "
                       "$ORDERFLOW_ADVERTISE if set")
    serve.add_argument("--token", default=os.environ.get("ORDERFLOW_TOKEN"),
                       help="bearer token for the API and Socket.IO; $ORDERFLOW_TOKEN if set")
    serve.add_argument("--threads", type=int, default=DEFAULTS.threads,
                       help="threads for HTTP requests (Socket.IO connections have their "
                       "own); with --token, a quarter is kept for requests that carry it")
    limits = serve.add_argument_group("connection limits")
    limits.add_argument("--max-worker-sockets", type=int, default=DEFAULTS.max_worker_sockets,
                        metavar="N", help="worker processes' Socket.IO connections open at "
                        "once; each holds three threads")
    limits.add_argument("--max-dashboard-sockets", "--max-sockets", type=int,
                        default=DEFAULTS.max_dashboard_sockets, metavar="N",
                        help="dashboards' (any other) Socket.IO connections open at once; "
                        "each holds three threads (--max-sockets: the old name)")
    limits.add_argument("--max-sockets-per-address", type=int,
                        default=DEFAULTS.max_sockets_per_address, metavar="N",
                        help="dashboards' Socket.IO connections open at once from one client "
                        "address")
    limits.add_argument("--max-connections", type=int, default=DEFAULTS.max_connections,
                        metavar="N", help="TCP connections open at once, in any state; at "
                        "the cap a new one sheds the oldest idle one of the address that holds "
                        "the most")
    limits.add_argument("--max-connections-per-address", type=int,
                        default=DEFAULTS.max_connections_per_address, metavar="N",
                        help="TCP connections open at once from one client address")
    limits.add_argument("--max-frame-rate", type=float, default=DEFAULTS.max_frame_rate,
                        metavar="N", help="frames a second one Socket.IO connection may send "
                        "besides heartbeats (held to 4 per heartbeat interval); beyond, a "
                        "frame waits")
    limits.add_argument("--header-timeout", type=float, default=DEFAULTS.header_timeout,
                        metavar="S", help="time a client has to send a whole request head")
    limits.add_argument("--request-timeout", type=float, default=DEFAULTS.request_timeout,
                        metavar="S", help="a request body or response stalled this long is cut")
    limits.add_argument("--graceful-timeout", type=int, default=DEFAULTS.graceful_timeout,
                        metavar="S", help="on SIGTERM or Ctrl-C, seconds open requests may take "
                        "to finish before they are cut (Socket.IO connections are closed at once)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-file", default=None, metavar="PATH",
                       help="readable log, rotated at 10 MB, 5 kept; by default next to the "
                       f"journal (--db x.db: x.log), or {DEFAULT_LOG} with --no-persist")
    serve.add_argument("--retention", type=duration_arg, default=None, metavar="AGE",
                       help="prune finished orders older than AGE (e.g. 7d) every hour")


def serve_settings(args: argparse.Namespace) -> ServeSettings:
    """The parsed `serve` flags as settings (not yet checked)."""
    return ServeSettings(
        host=args.host, port=args.port, threads=args.threads, workers=args.workers,
        app=args.app, slots=args.slots, step_timeout=args.step_timeout, tags=args.tags,
        max_worker_sockets=args.max_worker_sockets,
        max_dashboard_sockets=args.max_dashboard_sockets,
        max_sockets_per_address=args.max_sockets_per_address,
        max_connections=args.max_connections,
        max_connections_per_address=args.max_connections_per_address,
        max_frame_rate=args.max_frame_rate,
        header_timeout=args.header_timeout, request_timeout=args.request_timeout,
        graceful_timeout=args.graceful_timeout,
        db=args.db, persist=not args.no_persist,
        heartbeat_interval=args.heartbeat_interval, heartbeat_timeout=args.heartbeat_timeout,
        max_retries=args.max_retries, failure_rate=args.failure_rate, latency_ms=args.latency_ms,
        token=args.token, retention=args.retention,
        advertise=args.advertise.rstrip("/") if args.advertise else None,
        log_file=args.log_file or (log_next_to(args.db) if not args.no_persist else DEFAULT_LOG),
    )


def run(args: argparse.Namespace) -> int:
    settings = serve_settings(args)
    try:
        check_settings(settings)
    except (ConfigError, AppError) as exc:
        print(f"orderflow serve: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper())
    for handler in logging.getLogger().handlers:
        # The console shows --log-level; the log file below always gets INFO and up.
        handler.setLevel(args.log_level.upper())
        handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    tune_gc()  # inherited by gunicorn's worker process (it forks from here)
    try:
        # First: a taken port is one line naming --port, and leaves the journal unopened.
        listener = listen(settings.host, settings.port)
    except ListenError as exc:
        print(f"orderflow serve: error: {exc}", file=sys.stderr)
        return 2
    lock = None
    try:
        configure_logging(settings.log_file, level=logging.INFO)
        if settings.persist:
            # One scheduler per journal: an SQLite file is locked here for the life of this
            # process (gunicorn's worker inherits the lock); a journal another server holds
            # is refused in one line naming it. On PostgreSQL several servers share the
            # database: one leads, the others stand by (dashboard/failover/leadership.py).
            location = parse_location(settings.db)
            lock = hold_for_process(location)
            # Open (and migrate) the journal here, so a bad database is a message, not a
            # worker that fails to boot inside gunicorn.
            check_journal(location, lock)
            if settings.app is not None:
                # A workflow changed under a version the journal keeps: one line, no start.
                check_definitions(location, load_app(settings.app).workflows.values())
    except (StoreError, LogFileError) as exc:
        if lock is not None:
            lock.release()
        listener.close()
        print(f"orderflow serve: error: {exc}", file=sys.stderr)
        return 2
    from .runner import serve  # gunicorn is imported only when serving

    return serve(settings, lock=lock, listener=listener)
