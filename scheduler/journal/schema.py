"""The journal's schema, once for SQLite and PostgreSQL: its tables, and the history of steps
that brought every older database to them.

The tables are described with logical column types (`dialect.py` names them per database).
The history is one list of steps (a table, a column, an index, a statement), each with the
version that brought it on each database: the two are numbered apart, as they grew apart
(SQLite is at version 11, PostgreSQL at 10; PostgreSQL's version 1 was SQLite's version 3 in
one step, its version 2 brought the leadership lease SQLite has no use for). A table is
created with the columns no later step adds, so each column is declared once, in its
table. Creating a database replays the whole history; a test checks that what it makes is
the description rendered directly (`create_statements`), column for column and index for
index, on both databases, so the two cannot drift apart.

Each engine applies the steps its own way (`sqlite.py`: PRAGMA user_version, one
transaction per version; `postgres.py`: a `schema_version` row in `meta`, every version in
one transaction under an advisory lock).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..engine.records import FINISHED_STATUSES
from .dialect import BIGINT, INTEGER, REAL, TEXT, TIMESTAMP, Dialect

BOTH = ("sqlite", "postgresql")


class StoreError(RuntimeError):
    """The database cannot be used; the message names the file and what to do."""


@dataclass(frozen=True)
class Column:
    """A column: its name, logical type and constraints (`default`, `check`: SQL)."""

    name: str
    type: str
    not_null: bool = False
    primary_key: bool = False
    unique: bool = False
    default: str | None = None
    check: str | None = None
    dialects: tuple[str, ...] = BOTH

    def render(self, dialect: Dialect) -> str:
        """The column's definition in `dialect`'s DDL."""
        parts = [self.name, dialect.type_of(self.type)]
        if self.primary_key:
            parts.append("PRIMARY KEY")
        if self.check is not None:
            parts.append(f"CHECK ({self.check})")
        if self.not_null:
            parts.append("NOT NULL")
        if self.unique:
            parts.append("UNIQUE")
        if self.default is not None:
            parts.append(f"DEFAULT {self.default}")
        return " ".join(parts)


@dataclass(frozen=True)
class Table:
    """A table and its columns, in order (a column of some dialects only is last)."""

    name: str
    columns: tuple[Column, ...]
    dialects: tuple[str, ...] = BOTH

    def columns_of(self, dialect: Dialect) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if dialect.name in c.dialects)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True)
class Index:
    """An index of `table` on `columns`; `where`: partial, over the rows it says (a query
    must say it the same way for the index to be used)."""

    name: str
    table: str
    columns: tuple[str, ...]
    where: str | None = None

    def render(self, dialect: Dialect) -> str:
        exists = "IF NOT EXISTS " if dialect.if_not_exists else ""
        where = "" if self.where is None else f" WHERE {self.where}"
        return (f"CREATE INDEX {exists}{self.name} ON {self.table} "
                f"({', '.join(self.columns)}){where}")


# ---------------------------------------------------------------- the tables, as they are now

# Finished orders, as the partial index on them says it (and every query that reads it).
FINISHED_SQL = "status IN (" + ", ".join(f"'{s}'" for s in sorted(FINISHED_STATUSES)) + ")"

META = Table("meta", (
    Column("key", TEXT, primary_key=True),
    Column("value", TEXT, not_null=True),
))
ORDERS = Table("orders", (
    Column("id", TEXT, primary_key=True),
    Column("number", BIGINT, not_null=True),
    Column("workflow", TEXT, not_null=True),
    Column("data", TEXT, not_null=True),  # JSON
    Column("idempotency_key", TEXT, unique=True),
    Column("submitted_at", REAL, not_null=True),
    Column("status", TEXT, not_null=True),
    Column("finished_at", REAL),
    # Higher first among ready steps at the same stage.
    Column("priority", INTEGER, not_null=True, default="0"),
    # The version of the workflow definition it is pinned to (NULL: written before
    # versions, or defined without one); its DAG is the `definitions` row of both.
    Column("version", TEXT),
))
TASKS = Table("tasks", (
    Column("id", TEXT, primary_key=True),  # order id:step
    Column("order_id", TEXT, not_null=True),
    Column("step", TEXT, not_null=True),
    Column("state", TEXT, not_null=True),
    Column("attempt", INTEGER, not_null=True),
    Column("attempt_open", INTEGER, not_null=True),
    Column("reassignments", INTEGER, not_null=True),
    Column("runs", INTEGER, not_null=True),
    Column("worker", TEXT),
    Column("result", TEXT),  # JSON
    Column("error", TEXT),
    # When a retry_wait ends (wall clock), so a restart keeps the backoff.
    Column("retry_at", REAL),
    # How often the task was moved off a worker that died or drained.
    Column("moves", INTEGER, not_null=True, default="0"),
    # The seq of its success event (0: none): an order's undos run newest success first.
    Column("completed", BIGINT, not_null=True, default="0"),
    # Of an undo (a saga's compensation task): the step whose success it undoes.
    Column("compensates", TEXT),
    # Re-runs by hand with new idempotency keys: the round of its handler's key.
    Column("key_round", INTEGER, not_null=True, default="0"),
))
EVENTS = Table("events", (
    Column("seq", BIGINT, primary_key=True),
    Column("ts", REAL, not_null=True),
    Column("type", TEXT, not_null=True),
    Column("order_id", TEXT),
    Column("step", TEXT),
    Column("worker_id", TEXT),
    Column("attempt", INTEGER, not_null=True),
    Column("message", TEXT, not_null=True),
    Column("duration", REAL),
    Column("extra", TEXT),  # JSON: the event's rarer fields
    # The leadership term that committed the event (0: written without one): along seq,
    # epochs never go down, which is how a check sees that no deposed leader wrote between
    # its successor's writes.
    Column("epoch", BIGINT, not_null=True, default="0", dialects=("postgresql",)),
))
# Incidents (scheduler/runtime/incidents.py): a worker's death, a drain, a restart, a new
# leader, each one row keyed by the seq of the event that opened it; the latest are kept.
INCIDENTS = Table("incidents", (
    Column("id", BIGINT, primary_key=True),
    Column("ts", REAL, not_null=True),
    Column("kind", TEXT, not_null=True),
    Column("worker", TEXT),
    Column("message", TEXT, not_null=True),
    Column("detail", TEXT, not_null=True),  # JSON: its counts, facts and first caused events
))
# Step controls (scheduler/engine/pauses.py): a step paused by an operator or its breaker,
# and limits an operator changed while it ran; one row per step, held across restarts.
STEP_CONTROLS = Table("step_controls", (
    Column("step", TEXT, primary_key=True),
    Column("detail", TEXT, not_null=True),  # JSON: its pause (who, since, why), its limits
))
# Workflow definitions (engine/definitions.py), one row per workflow and version, written
# with the first order pinned to it: a restart with other code rebuilds that order's DAG.
DEFINITIONS = Table("definitions", (
    Column("key", TEXT, primary_key=True),  # workflow@version (the bare name: no version)
    Column("workflow", TEXT, not_null=True),
    Column("version", TEXT, not_null=True),
    Column("body", TEXT, not_null=True),  # JSON: its steps with their dependencies, undos
))
# Recurring schedules (scheduler/engine/schedules.py): what is kept of each (since when it is
# known, the latest time fired or skipped, its last run), written in the commit of its order.
SCHEDULES = Table("schedules", (
    Column("name", TEXT, primary_key=True),
    Column("detail", TEXT, not_null=True),  # JSON: the schedule's Mark
))
# The leadership lease (postgres_lease.py): one row, its epoch only grows; expiry on the
# database's clock. SQLite has one server per file (its file lock) and no lease.
LEADER = Table("leader", (
    Column("id", INTEGER, primary_key=True, check="id = 1"),
    Column("epoch", BIGINT, not_null=True),
    Column("holder", TEXT, not_null=True),
    Column("url", TEXT),
    Column("pid", INTEGER),
    Column("expires_at", TIMESTAMP, not_null=True),
    Column("since", TIMESTAMP, not_null=True),
), dialects=("postgresql",))
TABLES = (META, ORDERS, TASKS, EVENTS, LEADER, INCIDENTS, STEP_CONTROLS, SCHEDULES,
          DEFINITIONS)

ORDERS_BY_FINISH = Index("orders_by_finish", "orders", ("finished_at",))  # pruning
TASKS_BY_ORDER = Index("tasks_by_order", "tasks", ("order_id",))
EVENTS_BY_ORDER = Index("events_by_order", "events", ("order_id", "seq"))  # stories
# Orders newest first (listing and searching beyond memory); finished ones only (memory
# holds every unfinished order); of one status.
ORDERS_BY_NUMBER = Index("orders_by_number", "orders", ("number",))
ORDERS_FINISHED_BY_NUMBER = Index("orders_finished_by_number", "orders", ("number",),
                                  where=FINISHED_SQL)
ORDERS_BY_STATUS = Index("orders_by_status", "orders", ("status", "number"))
INDEXES = (ORDERS_BY_FINISH, ORDERS_BY_NUMBER, TASKS_BY_ORDER, EVENTS_BY_ORDER,
           ORDERS_FINISHED_BY_NUMBER, ORDERS_BY_STATUS)


# ---------------------------------------------------------------- how databases got there

@dataclass(frozen=True)
class CreateTable:
    """Create `table` with its columns that no later step adds."""

    table: Table

    def render(self, dialect: Dialect, added: set[tuple[str, str]]) -> list[str]:
        exists = "IF NOT EXISTS " if dialect.if_not_exists else ""
        columns = [c.render(dialect) for c in self.table.columns_of(dialect)
                   if (self.table.name, c.name) not in added]
        return [f"CREATE TABLE {exists}{self.table.name} ({', '.join(columns)})"]


@dataclass(frozen=True)
class AddColumn:
    """Add a column of its table's description."""

    table: Table
    column: str

    def render(self, dialect: Dialect, added: set[tuple[str, str]]) -> list[str]:
        definition = self.table.column(self.column).render(dialect)
        return [f"ALTER TABLE {self.table.name} ADD COLUMN {definition}"]


@dataclass(frozen=True)
class CreateIndex:
    index: Index

    def render(self, dialect: Dialect, added: set[tuple[str, str]]) -> list[str]:
        return [self.index.render(dialect)]


@dataclass(frozen=True)
class Statement:
    """SQL that is the same in every dialect it runs in (data, not structure)."""

    sql: str

    def render(self, dialect: Dialect, added: set[tuple[str, str]]) -> list[str]:
        return [self.sql]


Change = CreateTable | AddColumn | CreateIndex | Statement


@dataclass(frozen=True)
class Step:
    """One change, with the schema version that brought it on each dialect (a dialect not
    named never had it; version 0: PostgreSQL's `meta`, made before its version is read)."""

    change: Change
    versions: dict[str, int]


def _step(change: Change, sqlite: int | None = None, postgresql: int | None = None) -> Step:
    versions = {"sqlite": sqlite, "postgresql": postgresql}
    return Step(change, {k: v for k, v in versions.items() if v is not None})


# In the order the steps ran; within one version, in this order too.
HISTORY: tuple[Step, ...] = (
    _step(CreateTable(META), sqlite=1, postgresql=0),
    _step(CreateTable(ORDERS), sqlite=1, postgresql=1),
    _step(CreateIndex(ORDERS_BY_FINISH), sqlite=1, postgresql=1),
    _step(CreateTable(TASKS), sqlite=1, postgresql=1),
    _step(CreateIndex(TASKS_BY_ORDER), sqlite=1, postgresql=1),
    _step(CreateTable(EVENTS), sqlite=1, postgresql=1),
    _step(CreateIndex(EVENTS_BY_ORDER), sqlite=1, postgresql=1),
    _step(AddColumn(TASKS, "retry_at"), sqlite=2, postgresql=1),
    _step(AddColumn(ORDERS, "priority"), sqlite=3, postgresql=1),
    _step(CreateIndex(ORDERS_BY_NUMBER), sqlite=4, postgresql=1),
    # Several servers on one database (failover): the lease, and each event's epoch.
    _step(CreateTable(LEADER), postgresql=2),
    # Epoch 0: nobody has led yet; the lease is free.
    _step(Statement("INSERT INTO leader VALUES (1, 0, '', NULL, NULL, 'epoch', now())"),
          postgresql=2),
    _step(AddColumn(EVENTS, "epoch"), postgresql=2),
    # The claim of PostgreSQL's version 1 (an advisory lock and this token) is replaced by
    # the lease.
    _step(Statement("DELETE FROM meta WHERE key = 'scheduler'"), postgresql=2),
    _step(AddColumn(TASKS, "moves"), sqlite=4, postgresql=3),
    _step(CreateIndex(ORDERS_FINISHED_BY_NUMBER), sqlite=5, postgresql=4),
    _step(CreateIndex(ORDERS_BY_STATUS), sqlite=5, postgresql=4),
    _step(CreateTable(INCIDENTS), sqlite=6, postgresql=5),
    _step(CreateTable(STEP_CONTROLS), sqlite=7, postgresql=6),
    _step(AddColumn(TASKS, "completed"), sqlite=8, postgresql=7),
    _step(AddColumn(TASKS, "compensates"), sqlite=8, postgresql=7),
    # Sagas: compensated and compensation_failed orders are finished too.
    _step(Statement("DROP INDEX orders_finished_by_number"), sqlite=8, postgresql=7),
    _step(CreateIndex(ORDERS_FINISHED_BY_NUMBER), sqlite=8, postgresql=7),
    _step(CreateTable(SCHEDULES), sqlite=9, postgresql=8),
    # Safe deploys: an order pinned to its workflow definition, kept once per version.
    _step(CreateTable(DEFINITIONS), sqlite=10, postgresql=9),
    _step(AddColumn(ORDERS, "version"), sqlite=10, postgresql=9),
    # Re-running an order from a step under new idempotency keys (engine/rerun.py).
    _step(AddColumn(TASKS, "key_round"), sqlite=11, postgresql=10),
)


def _added(dialect: Dialect) -> set[tuple[str, str]]:
    """(table, column) of every column a step adds to an existing table on `dialect`."""
    return {(s.change.table.name, s.change.column) for s in HISTORY
            if isinstance(s.change, AddColumn) and dialect.name in s.versions}


def version(dialect: Dialect) -> int:
    """The current schema version on `dialect`."""
    return max(s.versions[dialect.name] for s in HISTORY if dialect.name in s.versions)


def migrations(dialect: Dialect) -> dict[int, list[str]]:
    """The statements of each version (0: before the version is read, always run, and
    idempotent) on `dialect`; version n takes a database from version n - 1 to n."""
    added = _added(dialect)
    steps: dict[int, list[str]] = {}
    for s in HISTORY:
        if dialect.name in s.versions:
            at = s.versions[dialect.name]
            spoken = replace(dialect, if_not_exists=True) if at == 0 else dialect
            steps.setdefault(at, []).extend(s.change.render(spoken, added))
    return steps


def pending(dialect: Dialect, found: int, name: str, where: str) -> list[tuple[int, list[str]]]:
    """The versions (each with its statements) a database at version `found` still needs;
    StoreError for one written by a newer orderflow (`name` says which database, `where`
    what --db should name instead)."""
    current = version(dialect)
    if found > current:
        raise StoreError(
            f"{name} has schema version {found}, newer than this orderflow understands "
            f"({current}). Upgrade orderflow, or point --db at another {where}."
        )
    steps = migrations(dialect)
    return [(v, steps[v]) for v in range(found + 1, current + 1)]


def create_statements(dialect: Dialect) -> list[str]:
    """The current schema rendered directly from the description (not through its
    history): what a database migrated from nothing must be."""
    exists = "IF NOT EXISTS " if dialect.if_not_exists else ""
    statements = []
    for table in TABLES:
        if dialect.name in table.dialects:
            columns = ", ".join(c.render(dialect) for c in table.columns_of(dialect))
            statements.append(f"CREATE TABLE {exists}{table.name} ({columns})")
    statements.extend(index.render(dialect) for index in INDEXES)
    return statements


__all__ = ["HISTORY", "TABLES", "StoreError", "create_statements", "migrations",
           "pending", "version"]
