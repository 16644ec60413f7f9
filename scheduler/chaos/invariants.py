"""Checking a run from its record, Jepsen-style: was anything lost, stuck or done twice?

`check_history` is pure: it takes the journal's events and order records (and what a client
knows it submitted) and returns a report; `load_journal` reads those from a journal (SQLite or
PostgreSQL) through the journal's own row encoder.
"""

from __future__ import annotations

import bisect
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.records import FINISHED_STATUSES, OrderRecord, TaskRecord
from ..engine.text import find_unstorable
from ..engine.workflow import DEFAULT_WORKFLOWS, Workflow
from ..journal.location import parse_location, read_connection
from ..journal.rows import (
    DEFINITION_COLUMNS,
    EVENT_COLUMNS,
    ORDER_COLUMNS,
    TASK_COLUMNS,
    definition_from_row,
    event_from_row,
    order_from_row,
    task_from_row,
)
from .schedule_checks import KINDS as SCHEDULE_KINDS
from .schedule_checks import check_schedules

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
    # The workflow definitions the journal keeps, by key ("checkout@v1").
    definitions: dict[str, Workflow] = field(default_factory=dict)
    # `migrations`, and what `events` were when it was found.
    _migrations: tuple = field(default=(None, {}), repr=False, compare=False)

    def tasks(self) -> list[TaskRecord]:
        return [task for order in self.orders.values() for task in order.tasks]

    def definition_of(self, order: OrderRecord,
                      workflows: Mapping[str, Workflow]) -> Workflow | None:
        """The definition the order is pinned to, as journaled; for one without a version,
        the workflow of its name the run was given."""
        if order.version:
            return self.definitions.get(f"{order.workflow}@{order.version}")
        return workflows.get(order.workflow)

    @property
    def migrations(self) -> dict[str, list[dict]]:
        """The `order_migrated` events of each order (an operator moved it to another
        definition, engine/migrate.py), oldest first; found again when `events` changed."""
        seen = (id(self.events), len(self.events))
        if self._migrations[0] != seen:
            found: dict[str, list[dict]] = defaultdict(list)
            for e in self.events:
                if e["type"] == "order_migrated":
                    found[e["order_id"]].append(e)
            self._migrations = (seen, found)
        return self._migrations[1]

    def definition_at(self, order: OrderRecord, seq: int,
                      workflows: Mapping[str, Workflow]) -> Workflow | None:
        """The definition the order ran at event `seq`: the one a later recorded migration
        moved it from, else the one it is pinned to now."""
        for moved in self.migrations.get(order.id, ()):
            if seq < moved["seq"]:
                key = moved["source"]
                return self.definitions.get(key) or workflows.get(key)
        return self.definition_of(order, workflows)

    def key_at(self, order: OrderRecord, seq: int) -> str:
        """The key of `definition_at` (also for a definition the journal lacks)."""
        for moved in self.migrations.get(order.id, ()):
            if seq < moved["seq"]:
                return moved["source"]
        return f"{order.workflow}@{order.version}" if order.version else order.workflow


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


# Events that say a handler ended, from its worker: its result (a failure it reported too,
# not a time limit or a poison verdict of the server), its late result rejected, or the
# server's word that its process reported it ended, exited, or its thread returned.
HANDLER_ENDS = frozenset({"task_succeeded", "result_rejected"})
ENDED_BY_WORKER = frozenset({"reported", "exited", "returned"})


def in_flight_peaks(
    events: list[dict], limits: Mapping[str, tuple[int, float]], grace: float
) -> tuple[dict[str, int], list[tuple]]:
    """For each step with a concurrency limit ({step: (max_in_flight, time limit s)}): the
    most handlers that may have been running at once, and each start that went past the
    limit (order, step, worker, how many).

    A handler may be running from its `task_started` until its worker said it ended (its
    result, its late result rejected, its process's report, its thread returned, its
    process reaped). A worker that is written off (declared dead, or its server restarted)
    stops it by contract within `grace` after its time limit or the write-off, whichever is
    later (the server's zombie_grace); a thread worker's handlers run until they return,
    or their server ends."""
    threads: set[str] = set()
    dead: dict[str, float] = {}  # worker -> when it was declared dead
    restarts: list[float] = []  # when the server restarted, in order
    running: dict[str, dict[tuple[str, str], list[float]]] = {s: {} for s in limits}
    peaks = dict.fromkeys(limits, 0)
    over: list[tuple] = []

    def written_off(worker: str, started: float) -> float | None:
        """When the server stopped counting on the worker of an attempt begun at `started`:
        its death, or the first restart after the start. Never for a thread worker: the
        server sees its threads (and a restart ends them)."""
        if worker in threads:
            return None
        after = bisect.bisect_left(restarts, started)
        times = [t for t in (dead.get(worker), restarts[after] if after < len(restarts)
                             else None) if t is not None and t >= started]
        return min(times) if times else None

    def expire(step: str, now: float) -> None:
        timeout = limits[step][1]
        for key, starts in list(running[step].items()):
            kept = []
            for started in starts:
                off = written_off(key[1], started)
                if off is None or now < max(started + timeout, off) + grace:
                    kept.append(started)
            if kept:
                running[step][key] = kept
            else:
                del running[step][key]

    for e in events:
        kind, step, worker = e["type"], e.get("step"), e.get("worker_id")
        if kind == "worker_added" and e.get("worker_kind") == "thread":
            threads.add(worker)
        elif kind == "worker_dead":
            dead.setdefault(worker, e["ts"])
        elif kind == "server_restarted":
            restarts.append(e["ts"])
            for held in running.values():  # thread workers died with the old server
                for key in [k for k in held if k[1] in threads]:
                    del held[key]
        if step not in limits:
            continue
        key = (e["order_id"], worker)
        if kind == "task_started":
            expire(step, e["ts"])
            running[step].setdefault(key, []).append(e["ts"])
            count = sum(len(starts) for starts in running[step].values())
            peaks[step] = max(peaks[step], count)
            if count > limits[step][0]:
                over.append((e["order_id"], step, worker, count))
        elif (kind in HANDLER_ENDS
              or (kind == "task_failed" and not e.get("timed_out") and not e.get("poison"))
              or (kind == "attempt_ended" and e.get("reason") in ENDED_BY_WORKER)):
            starts = running[step].get(key)
            if starts:
                starts.pop(0)
                if not starts:
                    del running[step][key]
    return peaks, over


def check_history(
    history: History,
    submitted: Iterable[str],
    max_retries: int,
    workflows: Mapping[str, Workflow] | None = None,
    server_errors: int = 0,
    limits: Mapping[str, tuple[int, float]] | None = None,
    grace: float = 10.0,
    answers: Iterable[tuple[str, str]] = (),
) -> dict:
    """Every invariant of the run; `report["ok"]` is False when any is violated. `limits`:
    the steps with a concurrency limit, {step: (max_in_flight, time limit s)}, checked with
    the server's `grace` (its zombie_grace). `answers`: (idempotency key, order id) of every
    200/201 the server gave."""
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

    # No key answered before its commit: every order a key was answered with is in the
    # journal under that key (else the answer came before a commit that never happened, and
    # the key was free for another order), and a key names one order, whatever was asked.
    answers = list(answers)
    answered: dict[str, set[str]] = defaultdict(set)
    for key, oid in answers:
        answered[key].add(oid)
        if oid not in orders or orders[oid].idempotency_key != key:
            holder = next((o.id for o in orders.values() if o.idempotency_key == key), None)
            violations["key_answered_before_commit"].append((key, oid, holder))
    violations["key_answered_with_two_orders"] = [
        (key, sorted(ids)) for key, ids in answered.items() if len(ids) > 1]

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

    # No step succeeded twice, no wait completed twice (a wait is done when it completes:
    # by its signal, or its timeout); no step started before its dependencies were done.
    # A step an operator ran again (an `order_retried` naming it in `rerun`, rerun.py) may
    # succeed once more after it.
    succeeded_at: dict[tuple[str, str], int] = {}
    succeeded_since: set[tuple[str, str]] = set()
    for e in events:
        if e["type"] == "order_retried":
            succeeded_since.difference_update((e["order_id"], s) for s in e.get("rerun", ()))
        if e["type"] in ("task_succeeded", "wait_completed"):
            key = (e["order_id"], e["step"])
            if key in succeeded_since:
                twice = "succeeded_twice" if e["type"] == "task_succeeded" else "wait_twice"
                violations[twice].append(key)
            succeeded_since.add(key)
            succeeded_at.setdefault(key, e["seq"])
    # A step a migration skipped is done from the migration on (it never runs).
    done_at = dict(succeeded_at)
    for moves in history.migrations.values():
        for moved in moves:
            for step in moved.get("skipped", ()):
                done_at.setdefault((moved["order_id"], step), moved["seq"])
    for e in events:
        if e["type"] != "task_started" or e["order_id"] not in orders:
            continue
        workflow = history.definition_at(orders[e["order_id"]], e["seq"], workflows)
        if workflow is None:
            continue
        for dep in workflow.deps.get(e["step"], ()):
            done = done_at.get((e["order_id"], dep))
            if done is None or done > e["seq"]:
                violations["dependency_order"].append((e["order_id"], e["step"], dep))

    # Safe deploys: an order runs only steps of the definition it is pinned to (a step of
    # another version of its workflow would be a silent change of its DAG).
    violations["step_of_another_definition"] = steps_off_definition(history, workflows)

    # Attempts within the budget; a failed order failed for a reason.
    limit = max_retries + 1
    for e in events:
        if e["type"] == "task_started" and e["attempt"] > limit:
            violations["too_many_attempts"].append((e["order_id"], e["step"], e["attempt"]))
    retried_by_hand = {e["order_id"] for e in events if e["type"] == "order_retried"}
    for task in history.tasks():
        workflow = workflows.get(orders[task.order_id].workflow)
        if workflow is not None and task.step in workflow.waits:
            continue  # a wait that timed out "fail" has no attempts
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

    # Sagas: an undo runs only after the step it undoes succeeded, newest success first; a
    # compensated order's undos all succeeded, one per step with an undo that succeeded; a
    # failed or cancelled order has no such step left undone. (An undo succeeding twice is
    # `succeeded_twice`: an undo is a step.)
    undos = check_compensations(history, workflows, succeeded_at)
    violations.update(undos)
    # Waits and timers: a wait is completed by a signal it received, or by its timeout
    # once that passed; no step starts before its delay ended, nor before its order's
    # not_before.
    timing = check_waits(events)
    violations.update(timing)
    # Recurring schedules: each time fired at most once, in order, with its order, by the
    # leader (schedule_checks.py).
    schedule_violations, schedule_fires = check_schedules(history)
    violations.update(schedule_violations)

    # A gateway quota is a promise: never more handlers of a limited step possibly running at
    # once than its max_in_flight, through stalls, deaths and restarts.
    peaks, over = in_flight_peaks(events, limits or {}, grace)
    violations["max_in_flight_exceeded"] = over
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
        "keys_answered": len(answered),
        "keys_answered_before_commit": len(violations["key_answered_before_commit"]),
        "keys_answered_with_two_orders": len(violations["key_answered_with_two_orders"]),
        "succeeded_twice": len(violations["succeeded_twice"]),
        "wait_twice": len(violations["wait_twice"]),
        "dependency_order_violations": len(violations["dependency_order"]),
        "steps_of_another_definition": len(violations["step_of_another_definition"]),
        "too_many_attempts": len(violations["too_many_attempts"]),
        "failed_without_exhausting_retries": len(violations["failed_without_exhausting_retries"]),
        "worker_deaths": len(deaths),
        # Attempts that ran past their time limit (failed "timed out", then retried).
        "timed_out_attempts": sum(
            1 for e in events if e["type"] == "task_failed" and e.get("timed_out")
        ),
        # Of those, the ones whose handler ignored its cancellation: its thread abandoned
        # and replaced; and thread workers declared dead for too many of them.
        "abandoned_threads": sum(1 for e in events if e["type"] == "thread_abandoned"),
        "workers_hung": sum(1 for e in events if e["type"] == "worker_hung"),
        "dead_worker_tasks_not_moved": len(violations["dead_worker_task_not_moved"]),
        "compensations_run": sum(1 for t in history.tasks()
                                 if t.compensates is not None and t.state == "succeeded"),
        **{k: len(v) for k, v in undos.items()},
        "signals_received": sum(1 for e in events if e["type"] == "signal_received"),
        "signals_refused": sum(1 for e in events if e["type"] == "signal_refused"),
        "waits_timed_out": sum(1 for e in events if e["type"] == "wait_timed_out"),
        "steps_delayed": sum(1 for e in events if e["type"] == "task_delayed"),
        **{k: len(v) for k, v in timing.items()},
        "schedule_fires": schedule_fires,
        **{k: len(v) for k, v in schedule_violations.items()},
        "recovery_p50_s": _round(percentile(recovery, 50)),
        "recovery_p99_s": _round(percentile(recovery, 99)),
        "server_5xx": server_errors,
        "leader_epochs": len(set(epochs)),
        "epochs_interleaved": len(violations["epochs_interleaved"]),
        "max_in_flight_exceeded": len(over),
        # The most handlers of each limited step possibly running at once, and its limit.
        "peak_in_flight": {step: [peaks[step], limit] for step, (limit, _) in
                           sorted((limits or {}).items())},
        # Events holding text the server escaped (a NUL, a lone surrogate), and any it
        # should have but did not.
        "escaped_texts": escaped,
        "unstorable_texts": len(violations["unstorable_text"]),
        "examples": {k: v[:SAMPLE] for k, v in violations.items() if v},
    }


def steps_off_definition(history: History, workflows: Mapping[str, Workflow]) -> list[tuple]:
    """(order, step, definition) of every step started or succeeded that is not a step (or
    an undo) of the workflow definition its order was pinned to then (a recorded migration
    moves it), or of an order pinned to a definition the journal does not keep."""
    found = []
    for e in history.events:
        if e["type"] not in ("task_started", "task_succeeded"):
            continue
        order = history.orders.get(e["order_id"])
        if order is None:
            continue
        # Before a recorded migration, the definition it was moved from.
        workflow = history.definition_at(order, e["seq"], workflows)
        key = history.key_at(order, e["seq"])
        if workflow is None or (e["step"] not in workflow.deps
                                and e["step"] not in workflow.compensations.values()):
            found.append((order.id, e["step"], key))
    return found


def check_compensations(
    history: History, workflows: Mapping[str, Workflow],
    succeeded_at: Mapping[tuple[str, str], int],
) -> dict[str, list]:
    """The saga invariants of a run, by kind (each a list of what broke them)."""
    found: dict[str, list] = {"undo_of_unsucceeded_step": [], "undos_out_of_order": [],
                              "compensated_incompletely": [], "left_uncompensated": []}
    first_start: dict[tuple[str, str], int] = {}
    for e in history.events:
        if e["type"] == "task_started":
            first_start.setdefault((e["order_id"], e["step"]), e["seq"])
    for order in history.orders.values():
        undo_of = {t.step: t.compensates for t in order.tasks if t.compensates is not None}
        for undo, step in undo_of.items():
            began = first_start.get((order.id, undo))
            done = succeeded_at.get((order.id, step))
            if began is not None and (done is None or done > began):
                found["undo_of_unsucceeded_step"].append((order.id, undo, step))
        started = sorted((first_start[(order.id, u)], -succeeded_at.get((order.id, s), 0), u)
                         for u, s in undo_of.items() if (order.id, u) in first_start)
        if [u for *_, u in started] != [u for *_, u in sorted(started, key=lambda x: x[1])]:
            found["undos_out_of_order"].append((order.id, [u for *_, u in started]))
        workflow = history.definition_of(order, workflows)
        owed = set() if workflow is None else {
            workflow.compensations[t.step] for t in order.tasks
            if t.state == "succeeded" and t.step in workflow.compensations}
        undone = {t.step for t in order.tasks if t.step in undo_of and t.state == "succeeded"}
        if order.status == "compensated" and (
                not undo_of or undone != set(undo_of) or not owed <= undone):
            found["compensated_incompletely"].append(order.id)
        if order.status in ("failed", "cancelled") and owed:
            found["left_uncompensated"].append((order.id, sorted(owed)))
    return found


# Event times are rounded to the microsecond and a restart measures wall time anew: a time
# reached this close to its due time is on time.
CLOCK_SLACK = 0.001


def check_waits(events: Sequence[dict]) -> dict[str, list]:
    """The invariants of waits and timers, by kind (each a list of what broke them)."""
    found: dict[str, list] = {"wait_completed_without_signal": [],
                              "wait_timed_out_early": [], "started_before_its_time": []}
    signalled: set[tuple[str, str]] = set()
    wait_until: dict[tuple[str, str], float | None] = {}
    not_before: dict[str, float] = {}
    due: dict[tuple[str, str], float] = {}  # a delayed step: when it may start
    for e in events:
        kind, key = e["type"], (e.get("order_id"), e.get("step"))
        if kind == "order_submitted" and e.get("not_before") is not None:
            not_before[e["order_id"]] = e["not_before"]
        elif kind == "signal_received":
            signalled.add(key)
        elif kind == "wait_started":
            wait_until[key] = e.get("until")
        elif kind == "wait_timed_out":
            until = wait_until.get(key)
            if until is None or e["ts"] < until - CLOCK_SLACK:
                found["wait_timed_out_early"].append((*key, e["ts"], until))
        elif kind == "wait_completed" and e.get("how") != "its timeout" \
                and key not in signalled:
            found["wait_completed_without_signal"].append(key)
        elif kind == "task_delayed":
            due[key] = e["until"]
        elif kind == "task_started":
            until = max(due.get(key, 0.0), not_before.get(e["order_id"], 0.0))
            if e["ts"] < until - CLOCK_SLACK:
                found["started_before_its_time"].append((*key, e["ts"], until))
    return found


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
        definitions = {}
        for row in conn.execute(f"SELECT {DEFINITION_COLUMNS} FROM definitions"):
            workflow = definition_from_row(row)
            definitions[workflow.key] = workflow
    return History(events, orders, epochs, definitions)


def format_report(report: dict) -> str:
    """The report as lines a person reads at the end of a chaos run."""
    keys = [
        "submitted",
        "completed",
        "failed",
        "cancelled",
        "lost",
        "stuck",
        "keys_answered",
        "keys_answered_before_commit",
        "keys_answered_with_two_orders",
        "succeeded_twice",
        "dependency_order_violations",
        "steps_of_another_definition",
        "too_many_attempts",
        "failed_without_exhausting_retries",
        "worker_deaths",
        "timed_out_attempts",
        "abandoned_threads",
        "workers_hung",
        "dead_worker_tasks_not_moved",
        "compensated",
        "compensation_failed",
        "compensations_run",
        "undo_of_unsucceeded_step",
        "undos_out_of_order",
        "compensated_incompletely",
        "left_uncompensated",
        "wait_twice",
        "signals_received",
        "signals_refused",
        "waits_timed_out",
        "steps_delayed",
        "wait_completed_without_signal",
        "wait_timed_out_early",
        "started_before_its_time",
        "schedule_fires",
        *SCHEDULE_KINDS,
        "recovery_p50_s",
        "recovery_p99_s",
        "server_5xx",
        "leader_epochs",
        "epochs_interleaved",
        "max_in_flight_exceeded",
        "peak_in_flight",
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


def remote_work(events: list[dict], remote_ids: Mapping[str, int], starts: int,
                began: Sequence[float] | None = None) -> dict:
    """What the driver's remote workers did, by server start (0 = the first server): steps
    they completed, and their late results the scheduler rejected (fenced). With `began`,
    the wall time each later start began (the kill of the server or leader before it, which
    commits nothing after that), also the steps every worker completed, by start."""
    done = [0] * starts
    everyone = [0] * starts
    rejected = 0
    for e in events:
        if began is not None and e["type"] == "task_succeeded":
            everyone[min(bisect.bisect_right(began, e["ts"]), starts - 1)] += 1
        start = remote_ids.get(e.get("worker_id"))
        if start is None:
            continue
        if e["type"] == "task_succeeded":
            done[start] += 1
        elif e["type"] == "result_rejected":
            rejected += e.get("count", 1)
    found = {"worker_ids": len(remote_ids), "steps_done_by_server_start": done,
             "late_results_rejected": rejected}
    if began is not None:
        found["all_steps_done_by_server_start"] = everyone
    return found
