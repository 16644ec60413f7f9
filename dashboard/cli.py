"""The `orderflow` command line: `demo` (console), `serve` (HTTP, Socket.IO, metrics),
`prune` (journal retention) and `worker` (a worker process joining a server)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from scheduler import ConfigError
from scheduler.logfile import LogFileError, configure_logging
from scheduler.retention import parse_duration
from scheduler.schema import StoreError
from scheduler.store import SQLiteJournal
from scheduler.tuning import tune_gc

from . import worker_process
from .runtime import DEFAULT_DB, DEFAULT_LOG, ServeSettings, check_settings

DEFAULTS = ServeSettings()


def _latency(text: str) -> tuple[float, float]:
    low, sep, high = text.partition(",")
    try:
        if not sep:
            raise ValueError
        return float(low), float(high)
    except ValueError:
        message = f"expected MIN,MAX in milliseconds, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def _add_serve(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve", help="run the HTTP API, the Socket.IO event stream and metrics",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    serve.add_argument("--host", default=DEFAULTS.host,
                       help="address to bind; anything but loopback requires --token")
    serve.add_argument("--port", type=int, default=DEFAULTS.port, help="0 picks a free port")
    serve.add_argument("--workers", type=int, default=DEFAULTS.workers,
                       help="worker threads at start")
    store = serve.add_mutually_exclusive_group()
    store.add_argument("--db", default=DEFAULT_DB, metavar="PATH", help="journal file")
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
    serve.add_argument("--token", default=os.environ.get("ORDERFLOW_TOKEN"),
                       help="bearer token for the API and Socket.IO; $ORDERFLOW_TOKEN if set")
    serve.add_argument("--threads", type=int, default=DEFAULTS.threads,
                       help="server threads; each open Socket.IO connection holds one")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-file", default=DEFAULT_LOG, metavar="PATH",
                       help="readable log, rotated at 10 MB, 5 kept")
    serve.add_argument("--retention", type=_duration, default=None, metavar="AGE",
                       help="prune finished orders older than AGE (e.g. 7d) every hour")


def _add_chaos(sub: argparse._SubParsersAction) -> None:
    chaos = sub.add_parser(
        "chaos", help="inject faults under load, then check the journal for lost or doubled work",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    chaos.add_argument("--duration", type=float, default=60.0, help="seconds of faults")
    chaos.add_argument("--seed", type=int, default=1)
    chaos.add_argument("--server", default=None, metavar="URL",
                       help="drive this server instead of starting one (no restart fault)")
    chaos.add_argument("--db", default=None, metavar="PATH",
                       help="journal to check (required with --server)")
    chaos.add_argument("--token", default=os.environ.get("ORDERFLOW_TOKEN"))
    chaos.add_argument("--rate", type=float, default=25.0, help="orders per second")
    chaos.add_argument("--no-restart", action="store_true",
                       help="do not SIGKILL and restart the server halfway")
    chaos.add_argument("--report", default=None, metavar="FILE", help="also write JSON here")


def _add_prune(sub: argparse._SubParsersAction) -> None:
    prune = sub.add_parser("prune",
                           help="delete finished orders older than an age from the journal")
    prune.add_argument("--older-than", type=_duration, required=True, metavar="AGE",
                       help="for example 7d, 12h or 30m")
    prune.add_argument("--db", default=DEFAULT_DB, metavar="PATH", help="journal file")


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def serve_settings(args: argparse.Namespace) -> ServeSettings:
    """The parsed `serve` flags as settings (not yet checked)."""
    return ServeSettings(
        host=args.host, port=args.port, threads=args.threads, workers=args.workers,
        db=args.db, persist=not args.no_persist,
        heartbeat_interval=args.heartbeat_interval, heartbeat_timeout=args.heartbeat_timeout,
        max_retries=args.max_retries, failure_rate=args.failure_rate, latency_ms=args.latency_ms,
        token=args.token, retention=args.retention, log_file=args.log_file,
    )


def _serve(args: argparse.Namespace) -> int:
    settings = serve_settings(args)
    try:
        check_settings(settings)
    except ConfigError as exc:
        print(f"orderflow serve: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        # The console shows --log-level; the log file below always gets INFO and up.
        handler.setLevel(args.log_level.upper())
    tune_gc()  # inherited by gunicorn's worker process (it forks from here)
    try:
        configure_logging(settings.log_file, level=logging.INFO)
        if settings.persist:
            # Open (and migrate) the journal here, so a bad file is a message, not a
            # worker that fails to boot inside gunicorn.
            SQLiteJournal(settings.db).close()
    except (StoreError, LogFileError) as exc:
        print(f"orderflow serve: error: {exc}", file=sys.stderr)
        return 2
    from .server import serve  # gunicorn is imported only when serving

    return serve(settings)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; `--token` defaults to $ORDERFLOW_TOKEN as it is now."""
    parser = argparse.ArgumentParser(prog="orderflow",
                                     description="Fault-tolerant order processing")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo",
                          help="run a console demo: orders flow, a worker dies, work recovers")
    demo.add_argument("--orders", type=int, default=200)
    demo.add_argument("--workers", type=int, default=4)
    _add_serve(sub)
    _add_prune(sub)
    _add_chaos(sub)
    worker_process.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from scheduler.demo import run_demo

        return run_demo(orders=args.orders, workers=args.workers)
    if args.command == "serve":
        return _serve(args)
    if args.command == "prune":
        return _prune(args)
    if args.command == "chaos":
        from .chaos import main as chaos_main

        return chaos_main(args)
    if args.command == "worker":
        return worker_process.run(args)
    return 2


def _prune(args: argparse.Namespace) -> int:
    import time

    try:
        journal = SQLiteJournal(args.db)
    except StoreError as exc:
        print(f"orderflow prune: error: {exc}", file=sys.stderr)
        return 2
    try:
        removed = journal.prune(time.time() - args.older_than)
    finally:
        journal.close()
    print(f"removed {removed['orders']} finished orders and {removed['events']} events "
          f"from {args.db}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
