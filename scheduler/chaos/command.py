"""`orderflow chaos`: its flags; the run itself is driver.py."""

from __future__ import annotations

import argparse
import os

HELP = "inject faults under load, then check the journal for lost or doubled work"


def add_arguments(chaos: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    from .driver import main  # requests and the harness load only for a real run

    return main(args)
