"""`orderflow migrate`: move a running server's unfinished orders of one workflow definition
to another (issue 23), after showing what would happen to each and how many move.

A thin client of `POST /api/definitions/migrate` (dashboard/api/workflows.py): a dry run
first, the operator's yes (or `--yes`), then the move, audited under the token holder's
name; every refusal is the server's own message. Standard library only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .steps_command import CommandError, add_server_options, call

HELP = "move unfinished orders of a workflow definition to another (dry run first)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_options(parser)
    parser.add_argument("source", metavar="FROM",
                        help="the definition whose orders move: checkout@v1 (a key, as "
                             "/api/stats lists them) or a workflow of the running app")
    parser.add_argument("target", metavar="TO", help="the definition they move to")
    parser.add_argument("--order", action="append", dest="orders", metavar="ID",
                        help="only this order (again for more); default: all of FROM's")
    parser.add_argument("--run-added", action="store_true",
                        help="run steps TO adds before steps that ran, instead of skipping "
                             "them")
    parser.add_argument("--dry-run", action="store_true",
                        help="only show what would happen to each order")
    parser.add_argument("--yes", action="store_true", help="do not ask before moving")


def run(args: argparse.Namespace, ask: Callable[[str], str] = input) -> int:
    body = {"from": args.source, "to": args.target, "run_added": args.run_added}
    if args.orders:
        body["orders"] = args.orders
    try:
        plan = call(args, "POST", "/api/definitions/migrate", {**body, "dry_run": True})
        for order in plan["orders"]:
            print(describe(order))
        count = plan["count"]
        if args.dry_run or count == 0:
            print(f"{count} order(s) would move from {args.source} to {args.target}")
            return 0
        if not args.yes:
            try:
                answer = ask(f"move {count} order(s) from {args.source} to {args.target}? "
                             "[y/N] ")
            except EOFError:
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing moved", file=sys.stderr)
                return 1
        done = call(args, "POST", "/api/definitions/migrate", {**body, "dry_run": False})
        print(f"moved {done['count']} order(s) from {args.source} to {args.target}")
        return 0
    except CommandError as exc:
        print(f"orderflow migrate: error: {exc}", file=sys.stderr)
        return 1


def describe(order: dict) -> str:
    """One line per order: `o-1: kept payment; skipped fraud; to run packing, shipping`."""
    parts = [f"{what} {', '.join(order[key])}" for what, key in (
        ("kept", "kept"), ("skipped", "skipped"), ("dropped", "dropped"),
        ("to run", "to_run")) if order[key]]
    return f"{order['order_id']}: {'; '.join(parts) or 'nothing left to run'}"
