"""Checking a run from its record, Jepsen-style: was anything lost, stuck or done twice?

`check_history` is pure: it takes the journal's events and order records (and what a client
knows it submitted) and returns a report; `load_journal` reads those from a journal (SQLite or
PostgreSQL) through the journal's own row encoder.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..engine.records import FINISHED_STATUSES, OrderRecord, TaskRecord
from ..engine.text import find_unstorable
from ..engine.workflow import DEFAULT_WORKFLOWS, Workflow
from ..journal.location import parse_location, read_connection
from ..journal.rows import (
    EVENT_COLUMNS,
    ORDER_COLUMNS,
    TASK_COLUMNS,
    event_from_row,
    order_from_row,
    task_from_row,
)

TERMINAL = FINISHED_STATUSES
SAMPLE = 10  # violations listed per kind in a report
# How the server writes a NUL or a lone surrogate it recorded (engine/text.py).
ESCAPED = re.compile(r"\\x00|\\ud[89a-f][0-9a-f]{2}")


@dataclass
class History:
    events: list[dict]  # every event, in seq order
    orders: dict[str, OrderRecord]  # by id, each with its task records
    # The leadership epoch that committed each event, in seq order (PostgreSQL; None for a
    # journal without leadership terms).
    epochs: list[int] | None = None

    def tasks(self) -> list[TaskRecord]:
        return [task for order in self.orders.values() for task in order.tasks]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def check_history(
    history: History,
    submitted: Iterable[str],
    max_retries: int,
    workflows: Mapping[str, Workflow] | None = None,
    server_errors: int = 0,
) -> dict:
    """Every invariant of the run; `report["ok"]` is False when any is violated."""
    workflows = workflows or DEFAULT_WORKFLOWS
    submitted = list(dict.fromkeys(submitted))
    events = history.events
    orders = history.orders
    violations: dict[str, list] = defaultdict(list)

    # Nothing lost, nothing stuck.
    statuses = {oid: orders[oid].status for oid in submitted if oid in orders}
    violations["lost"] = [oid for oid in submitted if oid not in orders]
    violations["stuck"] = [oid for oid, status in statuses.items() if status not in TERMINAL]
    counts = {s: sum(1 for v in statuses.values() if v == s) for s in TERMINAL}

    # Seq strictly increasing.
    seqs = [e["seq"] for e in events]
    violations["seq_not_increasing"] = [
        (a, b) for a, b in zip(seqs, seqs[1:], strict=False) if b <= a
    ]
    # Leaders one after another: along seq the epoch never goes down (a deposed leader
    # wrote nothing between its successor's writes).
    epochs = history.epochs or []
    violations["epochs_interleaved"] = [
        (seq, a, b) for seq, a, b in zip(seqs[1:], epochs, epochs[1:], strict=False) if b < a
    ]

    # No step succeeded twice; no step started before its dependencies succeeded.
    succeeded_at: dict[tuple[str, str], int] = {}
    for e in events:
        if e["type"] == "task_succeeded":
            key = (e["order_id"], e["step"])
            if key in succeeded_at:
                violations["succeeded_twice"].append(key)
            succeeded_at.setdefault(key, e["seq"])
    for e in events:
        if e["type"] != "task_started" or e["order_id"] not in orders:
            continue
        workflow = workflows.get(orders[e["order_id"]].workflow)
        if workflow is None:
            continue
        for dep in workflow.deps.get(e["step"], ()):
            done = succeeded_at.get((e["order_id"], dep))
            if done is None or done > e["seq"]:
                violations["dependency_order"].append((e["order_id"], e["step"], dep))

    # Attempts within the budget; a failed order failed for a reason.
    limit = max_retries + 1
    for e in events:
        if e["type"] == "task_started" and e["attempt"] > limit:
            violations["too_many_attempts"].append((e["order_id"], e["step"], e["attempt"]))
    retried_by_hand = {e["order_id"] for e in events if e["type"] == "order_retried"}
    for task in history.tasks():
        if task.state == "failed" and task.order_id not in retried_by_hand:
            poison = "poison" in (task.error or "")
            if task.attempt != limit and not poison:
                violations["failed_without_exhausting_retries"].append(
                    (task.order_id, task.step, task.attempt)
                )

    # Every task on a dead worker moved (or its order ended meanwhile); how fast it ran again.
    recovery: list[float] = []
    resolved: dict[tuple[str, str, str], int] = {}
    started: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    cancelled: set[tuple[str, str]] = set()
    for e in events:
        key = (e["order_id"], e["step"])
        if e["type"] == "task_reassigned" and e.get("reason") == "worker dead":
            resolved[(*key, e.get("from_worker"))] = e["seq"]
        elif e["type"] == "task_failed" and e.get("poison"):
            resolved[(*key, e["worker_id"])] = e["seq"]
        elif e["type"] == "task_started":
            started[key].append((e["seq"], e["ts"]))
        elif e["type"] == "task_cancelled":
            cancelled.add(key)
    deaths = [e for e in events if e["type"] == "worker_dead"]
    for death in deaths:
        for task_id in death.get("tasks") or []:
            oid, _, step = task_id.rpartition(":")
            key = (oid, step)
            if (oid, step, death["worker_id"]) not in resolved and key not in cancelled:
                violations["dead_worker_task_not_moved"].append((oid, step, death["worker_id"]))
                continue
            later = [ts for seq, ts in started.get(key, []) if seq > death["seq"]]
            if later:
                recovery.append(later[0] - death["ts"])

    # Text no journal can hold never reached it (engine/text.py): it was refused or escaped.
    # (PostgreSQL could not have stored it; SQLite would keep a NUL.)
    for e in events:
        found = find_unstorable(e, "")
        if found is not None:
            violations["unstorable_text"].append((e["seq"], found))
    for task in history.tasks():
        found = find_unstorable([task.error, task.result], "")
        if found is not None:
            violations["unstorable_text"].append((task.order_id, task.step, found))
    escaped = sum(1 for e in events if any(isinstance(v, str) and ESCAPED.search(v)
                                           for v in e.values()))

    if server_errors:
        violations["server_5xx"] = [server_errors]
    total = sum(len(v) for v in violations.values())
    return {
        "ok": total == 0,
        "violations": total,
        "submitted": len(submitted),
        **counts,
        "lost": len(violations["lost"]),
        "stuck": len(violations["stuck"]),
        "succeeded_twice": len(violations["succeeded_twice"]),
        "dependency_order_violations": len(violations["dependency_order"]),
        "too_many_attempts": len(violations["too_many_attempts"]),
        "failed_without_exhausting_retries": len(violations["failed_without_exhausting_retries"]),
        "worker_deaths": len(deaths),
        # Attempts that ran past their time limit (failed "timed out", then retried).
        "timed_out_attempts": sum(
            1 for e in events if e["type"] == "task_failed" and e.get("timed_out")
        ),
        "dead_worker_tasks_not_moved": len(violations["dead_worker_task_not_moved"]),
        "recovery_p50_s": _round(percentile(recovery, 50)),
        "recovery_p99_s": _round(percentile(recovery, 99)),
        "server_5xx": server_errors,
        "leader_epochs": len(set(epochs)),
        "epochs_interleaved": len(violations["epochs_interleaved"]),
        # Events holding text the server escaped (a NUL, a lone surrogate), and any it
        # should have but did not.
        "escaped_texts": escaped,
        "unstorable_texts": len(violations["unstorable_text"]),
        "examples": {k: v[:SAMPLE] for k, v in violations.items() if v},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def load_journal(db: str | Path) -> History:
    """Read a journal: an SQLite file or a postgresql:// URL (read-only; safe while a
    server runs)."""
    location = parse_location(str(db))
    with read_connection(location) as conn:
        epochs = None
        if location.kind == "postgresql":
            rows = conn.execute(f"SELECT {EVENT_COLUMNS}, epoch FROM events ORDER BY seq")
            rows = list(rows)
            epochs = [r[-1] for r in rows]
            rows = [r[:-1] for r in rows]
        else:
            rows = conn.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY seq")
        events = [event_from_row(r) for r in rows]
        tasks: dict[str, list[TaskRecord]] = defaultdict(list)
        for row in conn.execute(f"SELECT {TASK_COLUMNS} FROM tasks"):
            record = task_from_row(row)
            tasks[record.order_id].append(record)
        orders = {
            row[0]: order_from_row(row, tasks.get(row[0], ()))
            for row in conn.execute(f"SELECT {ORDER_COLUMNS} FROM orders")
        }
    return History(events, orders, epochs)


def format_report(report: dict) -> str:
    """The report as lines a person reads at the end of a chaos run."""
    keys = [
        "submitted",
        "completed",
        "failed",
        "cancelled",
        "lost",
        "stuck",
        "succeeded_twice",
        "dependency_order_violations",
        "too_many_attempts",
        "failed_without_exhausting_retries",
        "worker_deaths",
        "timed_out_attempts",
        "dead_worker_tasks_not_moved",
        "recovery_p50_s",
        "recovery_p99_s",
        "server_5xx",
        "leader_epochs",
        "epochs_interleaved",
        "escaped_texts",
        "unstorable_texts",
    ]
    lines = [f"  {k:<36} {report.get(k)}" for k in keys]
    verdict = (
        "OK: no invariant violated"
        if report["ok"]
        else (
            f"FAILED: {report['violations']} violation(s)\n"
            + json.dumps(report["examples"], indent=2)
        )
    )
    return "\n".join(lines + [verdict])


def remote_work(events: list[dict], remote_ids: Mapping[str, int], starts: int) -> dict:
    """What the driver's remote workers did, by server start (0 = the first server): steps
    they completed, and their late results the scheduler rejected (fenced)."""
    done = [0] * starts
    rejected = 0
    for e in events:
        start = remote_ids.get(e.get("worker_id"))
        if start is None:
            continue
        if e["type"] == "task_succeeded":
            done[start] += 1
        elif e["type"] == "result_rejected":
            rejected += e.get("count", 1)
    return {"worker_ids": len(remote_ids), "steps_done_by_server_start": done,
            "late_results_rejected": rejected}
