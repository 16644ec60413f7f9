"""`orderflow order`: run a running server's finished order again from a step, or replay it
as a new order (issue 23 item 5).

A thin client of `POST /api/orders/<id>/rerun` and `/replay` (dashboard/api/orders.py),
audited under the token holder's name; every refusal is the server's own message. Standard
library only.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request

from .steps_command import CommandError, call, server_options

HELP = "run a finished order again from a step, or replay it as a new order"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = server_options()
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    rerun = actions.add_parser("rerun", parents=[common],
                               help="run a completed, failed or cancelled order again from "
                                    "a step (it and the steps after it)")
    rerun.add_argument("order")
    rerun.add_argument("--step", required=True, help="the step to run again from")
    rerun.add_argument("--new-keys", action="store_true",
                       help="new idempotency keys for the steps run again (a charge IS "
                            "repeated); default: the same keys")
    replay = actions.add_parser("replay", parents=[common],
                                help="submit a copy of an order as a new order")
    replay.add_argument("order")
    replay.add_argument("--pinned", action="store_true",
                        help="on the definition the original was pinned to; default: its "
                             "workflow's current definition")


def run(args: argparse.Namespace) -> int:
    path = f"/api/orders/{urllib.request.quote(args.order, safe='')}"
    try:
        if args.action == "rerun":
            order = call(args, "POST", f"{path}/rerun",
                         {"step": args.step, "new_keys": args.new_keys})
            keys = "new idempotency keys" if args.new_keys else "the same idempotency keys"
            print(f"order {order['id']} runs again: {', '.join(order['rerun'])} ({keys})")
        else:
            order = call(args, "POST", f"{path}/replay", {"pinned": args.pinned})
            version = f" version {order['version']}" if order.get("version") else ""
            print(f"order {args.order} replayed as new order {order['id']} "
                  f"({order['workflow']}{version})")
        return 0
    except CommandError as exc:
        print(f"orderflow order: error: {exc}", file=sys.stderr)
        return 1
