"""The journal's queries, written once for SQLite and PostgreSQL.

The statements of a group commit (the upserts of orders and tasks, the events, the meta
counters) and every read (an order, a story, an idempotency key, a search, the events after a
seq, what a restart recovers) and pruning, in one `Dialect`'s spelling (`dialect.py`). Each
function takes a connection of its engine (sqlite3's or psycopg's: both answer
`conn.execute(sql, params)` with a cursor); which connection, in what transaction and under
which lock is the engine's business (`sqlite.py`, `postgres.py`). Rows go through the one
encoder, `rows.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..engine.records import OrderQuery, OrderRecord, TaskRecord
from .dialect import Dialect
from .recovery import Recovered, resume_point
from .rows import (
    DEFINITION_COLUMNS,
    EVENT_COLUMNS,
    EVENT_FIELDS,
    INCIDENT_COLUMNS,
    INCIDENT_FIELDS,
    ORDER_COLUMNS,
    ORDER_FIELDS,
    TASK_COLUMNS,
    TASK_FIELDS,
    batch_rows,
    control_from_row,
    control_row,
    definition_from_row,
    definition_row,
    event_from_row,
    incident_from_row,
    incident_row,
    order_from_row,
    schedule_from_row,
    schedule_row,
    task_from_row,
)
from .schema import EVENTS, FINISHED_SQL, ORDERS_FINISHED_BY_NUMBER

if TYPE_CHECKING:
    from .writer import Batch

# The meta row that holds the core's numbering and totals (JSON), written by every commit.
COUNTERS = "counters"


def _upsert(table: str, fields: Sequence[str], update: Sequence[str], param: str) -> str:
    """INSERT of `fields` that, on a row with the same key (the first field), sets `update`
    (SQLite and PostgreSQL spell this alike)."""
    return (f"INSERT INTO {table} ({', '.join(fields)}) "
            f"VALUES ({', '.join(param for _ in fields)}) "
            f"ON CONFLICT ({fields[0]}) DO UPDATE SET "
            + ", ".join(f"{f} = excluded.{f}" for f in update))


def _like_pattern(value: str) -> str:
    """`value` anywhere in the text, its LIKE wildcards taken literally (ESCAPE '\\')."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class Queries:
    """Every statement of the journal in one dialect, built once per dialect."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        p = self.p = dialect.param
        # Columns of events in this dialect: the encoder's, then those the engine fills
        # (PostgreSQL: the epoch of the term that commits the event).
        self.event_columns = tuple(c.name for c in EVENTS.columns_of(dialect))
        # An order is written when submitted and again when its status becomes (or, after a
        # manual retry, stops being) final, or an operator moves it to another definition
        # (engine/migrate.py); its row may even be gone if retention pruned it meanwhile.
        # A task's row is replaced whole.
        self.insert = {
            "orders": _upsert("orders", ORDER_FIELDS,
                              ("status", "finished_at", "workflow", "version"), p),
            "tasks": _upsert("tasks", TASK_FIELDS, TASK_FIELDS[1:], p),
            "events": f"INSERT INTO events ({', '.join(self.event_columns)}) "
                      f"VALUES ({', '.join(p for _ in self.event_columns)})",
            # An incident is written when it opens and again as it counts what it caused.
            "incidents": _upsert("incidents", (*INCIDENT_FIELDS, "detail"),
                                 (*INCIDENT_FIELDS[1:], "detail"), p),
        }
        # A step's controls are replaced whole when they change.
        self.insert["step_controls"] = _upsert("step_controls", ("step", "detail"),
                                               ("detail",), p)
        # A definition is written once (with the first order pinned to it), never changed.
        self.insert["definitions"] = (
            f"INSERT INTO definitions ({DEFINITION_COLUMNS}) VALUES ({', '.join([p] * 4)}) "
            "ON CONFLICT (key) DO NOTHING")
        # A schedule's mark is replaced whole as it moves on.
        self.insert["schedules"] = _upsert("schedules", ("name", "detail"), ("detail",), p)
        # Only the latest incidents are kept: those before the oldest one kept go.
        self.forget_incidents = f"DELETE FROM incidents WHERE id < {p}"
        # set_meta with (key, value): the counters of each commit, the schema's version.
        self.set_meta = _upsert("meta", ("key", "value"), ("value",), p)

    # ------------------------------------------------------------ writing

    def write_incidents(self, conn: Any, batch: Batch) -> None:
        """The batch's incidents (rare: a death, a drain, a restart and what they caused),
        inside the caller's transaction, and the older ones the incident log let go; and
        its steps' controls (rarer still: a pause, a resume, limits changed) and its
        schedules' marks."""
        for view in batch.incidents:  # a few at most (psycopg's connections lack executemany)
            conn.execute(self.insert["incidents"], incident_row(view))
        if batch.incidents_from is not None:
            conn.execute(self.forget_incidents, (batch.incidents_from,))
        for view in batch.controls:
            conn.execute(self.insert["step_controls"], control_row(view))
        for workflow in batch.definitions:
            conn.execute(self.insert["definitions"], definition_row(workflow))
        for view in batch.schedules:
            conn.execute(self.insert["schedules"], schedule_row(view))

    def write_each(self, conn: Any, batch: Batch, refusals: tuple[type[BaseException], ...],
                   event_extra: tuple = ()) -> list[tuple[str, str]]:
        """A group commit row by row, inside the caller's transaction, each row in a
        savepoint of its own: a row the database refuses (`refusals`) is left out alone.
        Returns what was left out, and why, as (table, what). `event_extra`: the values of
        the event columns after the encoder's."""
        left_out = []
        for table, row, what in batch_rows(batch.order_records, batch.task_records,
                                           batch.events):
            if table == "events":
                row = (*row, *event_extra)
            conn.execute("SAVEPOINT one_row")
            try:
                conn.execute(self.insert[table], row)
            except refusals as exc:
                conn.execute("ROLLBACK TO SAVEPOINT one_row")
                left_out.append((table, f"{what} ({type(exc).__name__}: {_one_line(exc)})"))
            conn.execute("RELEASE SAVEPOINT one_row")
        self.write_incidents(conn, batch)
        conn.execute(self.set_meta, (COUNTERS, batch.counters))
        return left_out

    def prune(self, transaction: Callable[[], AbstractContextManager[Any]],
              before_wall: float, chunk: int) -> dict:
        """Delete finished orders (with their tasks and events) finished before the cutoff,
        `chunk` orders per `transaction()` (a writer beside it waits for one chunk at most,
        never the whole prune). Returns how many orders and events went."""
        removed = {"orders": 0, "events": 0}
        p = self.p
        while True:
            with transaction() as conn:
                ids = [r[0] for r in conn.execute(
                    f"SELECT id FROM orders WHERE {FINISHED_SQL} AND finished_at < {p} "
                    f"LIMIT {p}", (before_wall, chunk))]
                if ids:
                    with self.dialect.ids(conn, ids) as (among, args):
                        removed["events"] += conn.execute(
                            f"DELETE FROM events WHERE {among('order_id')}", args).rowcount
                        conn.execute(f"DELETE FROM tasks WHERE {among('order_id')}", args)
                        conn.execute(f"DELETE FROM orders WHERE {among('id')}", args)
            removed["orders"] += len(ids)
            if len(ids) < chunk:
                return removed

    # ------------------------------------------------------------ reading

    def find_idempotency_key(self, conn: Any, key: str) -> str | None:
        """The order that used `key`."""
        row = conn.execute(f"SELECT id FROM orders WHERE idempotency_key = {self.p}",
                           (key,)).fetchone()
        return row[0] if row else None

    def load_order(self, conn: Any, order_id: str, with_events: bool) -> OrderRecord | None:
        """One order with its tasks (and events)."""
        row = conn.execute(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = {self.p}",
                           (order_id,)).fetchone()
        if row is None:
            return None
        return self.with_tasks_and_events(conn, [row], with_events)[0]

    def story(self, conn: Any, order_id: str) -> list[dict]:
        """One order's events in seq order."""
        rows = conn.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE order_id = {self.p} "
                            "ORDER BY seq", (order_id,)).fetchall()
        return [event_from_row(r) for r in rows]

    def events_after(self, conn: Any, seq: int, limit: int) -> list[dict]:
        """At most `limit` events after `seq`, in seq order."""
        rows = conn.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > {self.p} "
                            f"ORDER BY seq LIMIT {self.p}", (seq, limit)).fetchall()
        return [event_from_row(r) for r in rows]

    def search_orders(self, conn: Any, query: OrderQuery, before: int | None, limit: int,
                      finished_only: bool) -> list[OrderRecord]:
        """Orders matching `query` numbered below `before`, newest first, with their tasks
        (not their events); `finished_only`: finished orders only."""
        where, args = self.search_where(query, before, finished_only)
        # Finished orders of any status newest first: through their partial index, in order,
        # and never by sorting them all (which SQLite's planner picks otherwise: each status
        # through orders_by_status, then a sort before the LIMIT).
        hint = (self.dialect.index_hint(ORDERS_FINISHED_BY_NUMBER.name)
                if finished_only and query.status is None else "")
        rows = conn.execute(
            f"SELECT {ORDER_COLUMNS} FROM orders {hint}".rstrip()
            + f" WHERE {where} ORDER BY number DESC LIMIT {self.p}", (*args, limit)).fetchall()
        return self.with_tasks_and_events(conn, rows, with_events=False)

    def search_where(self, query: OrderQuery, before: int | None,
                     finished_only: bool = False) -> tuple[str, list]:
        """The WHERE clause (and its parameters) of an order search, newest first from
        `before` (an order number); `finished_only`: finished orders only, said as their
        partial index says it."""
        p, like = self.p, self.dialect.ilike
        clauses, args = [FINISHED_SQL if finished_only else "1 = 1"], []
        since, until = query.time_bounds()
        for clause, value in ((f"number < {p}", before), (f"status = {p}", query.status),
                              (f"workflow = {p}", query.workflow),
                              (f"submitted_at >= {p}", since), (f"submitted_at < {p}", until)):
            if value is not None:
                clauses.append(clause)
                args.append(value)
        customer = self.dialect.json_field("data", "customer")
        # Each a condition on one text, given its LIKE pattern as the one parameter.
        has_customer = f"{customer} {like} {p} ESCAPE '\\'"
        has_error = ("EXISTS (SELECT 1 FROM tasks WHERE tasks.order_id = orders.id AND "
                     f"tasks.error {like} {p} ESCAPE '\\')")
        has_sku = (f"EXISTS (SELECT 1 FROM ({self.dialect.json_list_field('data', 'items', 'sku')})"
                   f" AS skus WHERE skus.value {like} {p} ESCAPE '\\')")
        for condition, value in ((has_customer, query.customer), (has_error, query.error),
                                 (has_sku, query.sku)):
            if value is not None:
                clauses.append(condition)
                args.append(_like_pattern(value))
        if query.text is not None:
            anywhere = [f"id {like} {p} ESCAPE '\\'", f"workflow {like} {p} ESCAPE '\\'",
                        has_customer, has_sku, has_error]
            clauses.append("(" + " OR ".join(anywhere) + ")")
            args.extend([_like_pattern(query.text)] * len(anywhere))
        return " AND ".join(clauses), args

    def recover(self, conn: Any, finished_limit: int, recent_events: int) -> Recovered:
        """What the engine needs to continue: every unfinished order, the `finished_limit`
        most recent finished ones, the `recent_events` latest events and the counters."""
        p = self.p
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        counters = json.loads(meta.get(COUNTERS, "{}"))
        rows = conn.execute(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE NOT ({FINISHED_SQL}) "
            f"UNION ALL SELECT * FROM (SELECT {ORDER_COLUMNS} FROM orders "
            f"WHERE {FINISHED_SQL} ORDER BY number DESC LIMIT {p}) AS finished",
            (finished_limit,),
        ).fetchall()
        rows.sort(key=lambda r: r[1])
        orders = self.with_tasks_and_events(conn, rows)
        recent = [event_from_row(r) for r in conn.execute(
            f"SELECT * FROM (SELECT {EVENT_COLUMNS} FROM events ORDER BY seq DESC LIMIT {p}) "
            "AS latest ORDER BY seq", (recent_events,))]
        seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        number = conn.execute("SELECT COALESCE(MAX(number), 0) FROM orders").fetchone()[0]
        incidents = [incident_from_row(r) for r in conn.execute(
            f"SELECT {INCIDENT_COLUMNS} FROM incidents ORDER BY id")]
        controls = [control_from_row(r) for r in conn.execute(
            "SELECT step, detail FROM step_controls ORDER BY step")]
        schedules = [schedule_from_row(r) for r in conn.execute(
            "SELECT name, detail FROM schedules ORDER BY name")]
        definitions = [definition_from_row(r) for r in conn.execute(
            f"SELECT {DEFINITION_COLUMNS} FROM definitions ORDER BY key")]
        return Recovered(resume_point(counters, seq, number, recent), orders, incidents,
                         controls, schedules, definitions)

    def with_tasks_and_events(self, conn: Any, order_rows: list[tuple],
                              with_events: bool = True) -> list[OrderRecord]:
        """Order rows as records with their task rows (and events)."""
        if not order_rows:
            return []  # (a search that found nothing costs no further statement)
        ids = [row[0] for row in order_rows]
        tasks: dict[str, list[TaskRecord]] = {i: [] for i in ids}
        events: dict[str, list[dict]] = {i: [] for i in ids}
        with self.dialect.ids(conn, ids) as (among, args):
            for row in conn.execute(
                    f"SELECT {TASK_COLUMNS} FROM tasks WHERE {among('order_id')}", args):
                record = task_from_row(row)
                tasks[record.order_id].append(record)
            if with_events:
                for row in conn.execute(f"SELECT {EVENT_COLUMNS} FROM events "
                                        f"WHERE {among('order_id')} ORDER BY seq", args):
                    events[row[EVENT_FIELDS.index('order_id')]].append(event_from_row(row))
        return [order_from_row(row, tasks[row[0]], events[row[0]]) for row in order_rows]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
