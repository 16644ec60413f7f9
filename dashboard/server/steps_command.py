"""`orderflow step`: list a running server's steps, pause and resume one, change its limits.

A thin client of the HTTP API (`/api/steps`, see dashboard/api/steps.py): what it sends is
what the dashboard sends, audited under the token holder's name, and every refusal is the
server's own message. Standard library only: an operator's shell needs nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

HELP = "list a running server's steps, pause or resume one, change its limits"
DEFAULT_SERVER = "http://127.0.0.1:5000"
TIMEOUT = 10.0


class CommandError(Exception):
    """What to tell the operator (exit 1)."""


def server_options() -> argparse.ArgumentParser:
    """--server and --token, for a command's every action (a parent parser), so they go
    after it (`orderflow step pause payment --server ...`)."""
    common = argparse.ArgumentParser(add_help=False)
    add_server_options(common)
    return common


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """--server and --token on `parser` itself (a command without actions)."""
    parser.add_argument("--server", default=os.environ.get("ORDERFLOW_SERVER", DEFAULT_SERVER),
                        help="the server's URL (or ORDERFLOW_SERVER)")
    parser.add_argument("--token", default=os.environ.get("ORDERFLOW_TOKEN"),
                        help="the server's token, if it has one (or ORDERFLOW_TOKEN)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = server_options()
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=[common],
                       help="every step: limits, what runs and waits, pauses")
    pause = actions.add_parser("pause", parents=[common],
                               help="hold a step's ready tasks until it is resumed")
    pause.add_argument("step")
    pause.add_argument("--why", default="", help="said in the wait reason and the audit")
    resume = actions.add_parser("resume", parents=[common],
                                help="let a paused step start its tasks again")
    resume.add_argument("step")
    limits = actions.add_parser("limits", parents=[common],
                                help="change a step's limits while it runs")
    limits.add_argument("step")
    limits.add_argument("--max-in-flight", type=int, metavar="N",
                        help="attempts running at once across the cluster (0: no limit)")
    limits.add_argument("--rate", type=float, metavar="R",
                        help="starts a second across the cluster (0: no limit)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "list":
            for step in call(args, "GET", "/api/steps")["steps"]:
                print(describe(step))
            return 0
        path = f"/api/steps/{urllib.request.quote(args.step, safe='')}"
        if args.action == "pause":
            step = call(args, "POST", f"{path}/pause", {"why": args.why} if args.why else {})
        elif args.action == "resume":
            step = call(args, "POST", f"{path}/resume")
        else:
            body = {key: value for key, value in (("max_in_flight", args.max_in_flight),
                                                   ("rate", args.rate)) if value is not None}
            if not body:
                raise CommandError("give --max-in-flight and/or --rate")
            step = call(args, "PUT", f"{path}/limits", body)
        print(describe(step))
        return 0
    except CommandError as exc:
        print(f"orderflow step: error: {exc}", file=sys.stderr)
        return 1


def call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """One request to the server; its JSON answer, or CommandError with its message."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    url = args.server.rstrip("/") + path
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise CommandError(f"{exc.code}: {_message(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"cannot reach {args.server} ({reason}); is it running? "
                           "(--server)") from None


def _message(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return exc.reason


def describe(step: dict) -> str:
    """One line per step: `payment  paused by ops since ...: why  (in flight 2, held 40)`."""
    limits = []
    if step.get("max_in_flight") is not None:
        limits.append(f"max {step['max_in_flight']} in flight")
    if step.get("rate") is not None:
        limits.append(f"{step['rate']:g} starts/s")
    paused = step.get("paused")
    state = paused["reason"] if paused else "running"
    counts = (f"in flight {step.get('in_flight', 0)}, ready {step.get('ready', 0)}, "
              f"held {step.get('held', 0)}")
    said = f"; {', '.join(limits)}" if limits else ""
    return f"{step['name']}: {state} ({counts}{said})"
