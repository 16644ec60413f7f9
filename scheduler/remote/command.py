"""`orderflow worker`: its flags, and the process's signals, logging and exit status."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from ..demo.handlers import Chaos
from ..runtime.logfile import SafeFormatter
from ..steps.app import AppError, load_app
from .client import HandlerSpecError, WorkerProcess, load_handlers
from .options import WorkerOptions
from .protocol import ENV_PARENT_PID, ENV_SPAWN_ID, EXIT_REFUSED, EXIT_STUCK, MAX_SLOTS


def _server_url(text: str) -> str:
    """One URL, or several separated by commas (servers sharing one database)."""
    urls = [url.strip().rstrip("/") for url in text.split(",") if url.strip()]
    if not urls:
        raise argparse.ArgumentTypeError("expected an http:// or https:// URL")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, got "
                                             f"{url!r}")
    if len(set(urls)) != len(urls):
        raise argparse.ArgumentTypeError(f"a URL is given twice in {text!r}")
    return ",".join(urls)


def _tags(text: str) -> tuple[str, ...]:
    tags = tuple(t.strip() for t in text.split(",") if t.strip())
    if not tags:
        raise argparse.ArgumentTypeError("expected tags separated by commas, e.g. payments,eu")
    return tags


def _slots(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_SLOTS:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to {MAX_SLOTS}")
    return value


HELP = "run a worker process that joins a server's cluster over Socket.IO"
EPILOG = (f"exit status: 0 drained (SIGTERM, or drained from the dashboard), 1 a second "
          f"signal, 2 bad arguments (or a registration the server refused as invalid), "
          f"{EXIT_REFUSED} refused by the server (token), "
          f"{EXIT_STUCK} every slot stuck in a handler that ignored its cancellation past "
          "its time limit (restart it)")


def add_arguments(worker: argparse.ArgumentParser) -> None:
    worker.epilog = EPILOG
    worker.add_argument("--server", required=True, type=_server_url, metavar="URL[,URL...]",
                        help="the orderflow server, e.g. http://127.0.0.1:5000; or every "
                        "server sharing one PostgreSQL database, separated by commas: the "
                        "worker works for whichever leads, and follows a failover")
    worker.add_argument("--token", default=os.environ.get("ORDERFLOW_TOKEN"),
                        help="the server's token; $ORDERFLOW_TOKEN if set")
    # SUPPRESS: absent unless given, so --slots wins over the deprecated alias.
    worker.add_argument("--slots", type=_slots, default=argparse.SUPPRESS, metavar="N",
                        help="handlers run at once, plain and async def together: the "
                        "server's word and meaning (default: the server's default, "
                        f"{WorkerOptions.slots})")
    worker.add_argument("--concurrency", type=_slots, default=argparse.SUPPRESS, metavar="N",
                        help="deprecated: the old name of --slots")
    worker.add_argument("--name", default=None,
                        help="shown on the dashboard; host-pid if not given")
    source = worker.add_mutually_exclusive_group()
    source.add_argument("--app", default=None, metavar="MODULE:ATTR",
                        help="your App (the same module as the server's --app): this worker "
                        "runs its steps; the built-in demo if not given")
    source.add_argument("--handlers", default=None, metavar="MODULE:ATTR",
                        help="deprecated: a dict of step -> callable; use --app")
    worker.add_argument("--tags", type=_tags, default=(), metavar="TAG,TAG",
                        help="capabilities this worker offers: steps that need a tag (e.g. "
                        "payments) run only on workers that offer it")
    worker.add_argument("--drain-grace", type=float, default=WorkerOptions.drain_grace,
                        metavar="S", help="after SIGTERM without a connection, how long to "
                        "keep trying to hand in finished results")
    worker.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"],
                        help="the least important log lines written to stderr")


def slots_of(args: argparse.Namespace) -> int:
    """--slots, or the deprecated --concurrency (with one line on stderr), or the default."""
    slots = getattr(args, "slots", None)
    if getattr(args, "concurrency", None) is not None:
        print("orderflow worker: warning: --concurrency is deprecated; use --slots (same "
              "meaning)", file=sys.stderr)
        if slots is None:
            slots = args.concurrency
    return WorkerOptions.slots if slots is None else slots


def run(args: argparse.Namespace) -> int:
    """`orderflow worker`: exit 0 after a drain, 2 for bad arguments, 3 when refused, 4
    when every slot is stuck (see EPILOG)."""
    slots = slots_of(args)
    chaos = Chaos()
    definitions = None  # without an app: any definition whose steps it has handlers for
    try:
        if args.app is not None:
            app = load_app(args.app)
            handlers = app.handlers
            definitions = tuple(sorted(app.definitions))
            if isinstance(app.chaos, Chaos):
                chaos = app.chaos  # built on the demo's handlers: the server turns its knobs
        else:
            if args.handlers is not None:
                print("orderflow worker: warning: --handlers is deprecated; declare the "
                      "steps in an App and use --app", file=sys.stderr)
            handlers = load_handlers(args.handlers, chaos)
    except (HandlerSpecError, AppError) as exc:
        print(f"orderflow worker: error: {exc}", file=sys.stderr)
        return 2
    console = logging.StreamHandler(sys.stderr)
    # One line per entry whatever a handler's error message holds (newlines escaped).
    console.setFormatter(SafeFormatter(
        "%(asctime)s %(levelname)s orderflow.worker[%(process)d]: %(message)s"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[console])
    parent = os.environ.get(ENV_PARENT_PID)
    options = WorkerOptions(
        server=args.server, token=args.token, slots=slots,
        steps=tuple(sorted(handlers)), tags=args.tags, definitions=definitions,
        name=args.name or "", drain_grace=max(0.0, args.drain_grace),
        parent_pid=int(parent) if parent and parent.isdigit() else None,
        spawn_id=os.environ.get(ENV_SPAWN_ID) or None)
    worker = WorkerProcess(options, handlers, chaos)
    signal.signal(signal.SIGTERM, worker.on_signal)
    signal.signal(signal.SIGINT, worker.on_signal)
    return worker.run()
