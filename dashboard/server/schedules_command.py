"""`orderflow schedule list`: a running server's recurring schedules, their next and last runs.

A thin client of `GET /api/schedules` (dashboard/api/schedules.py), like `orderflow step`,
whose request and refusal handling it shares. Standard library only.
"""

from __future__ import annotations

import argparse
import sys

from .steps_command import CommandError, call, server_options

HELP = "list a running server's recurring schedules with their next and last runs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = server_options()
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=[common],
                       help="every schedule: cron, workflow, next time, last run")


def run(args: argparse.Namespace) -> int:
    try:
        schedules = call(args, "GET", "/api/schedules")["schedules"]
    except CommandError as exc:
        print(f"orderflow schedule: error: {exc}", file=sys.stderr)
        return 1
    if not schedules:
        print("no schedules (the app declares none)")
    for schedule in schedules:
        print(describe(schedule))
    return 0


def describe(schedule: dict) -> str:
    """One line per schedule: `reconcile: 0 3 * * * (UTC) -> nightly; next 2026-12-08T03:00:00
    +00:00; last 2026-12-07T03:00:00+00:00 order o-12 (3 runs)`."""
    last = schedule.get("last_run")
    ran = "never ran" if last is None else f"last {last['at_iso']} order {last['order_id']}"
    following = schedule.get("next_iso") or "never again"
    extra = [f"{schedule.get('runs', 0)} runs"]
    if schedule.get("skipped"):
        extra.append(f"{schedule['skipped']} skipped")
    if not schedule.get("catch_up", True):
        extra.append("no catch-up")
    workflow = schedule.get("workflow") or "default workflow"
    return (f"{schedule['name']}: {schedule['cron']} ({schedule['tz']}) -> {workflow}; "
            f"next {following}; {ran} ({', '.join(extra)})")
