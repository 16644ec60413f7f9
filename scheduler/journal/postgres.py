"""The durable journal in PostgreSQL (`--db postgresql://...`), through psycopg 3 and a pool.

The same `Journal` as SQLite's: a `GroupWriter` commits in groups on its thread (`_commit`: one
transaction per group, its upserts pipelined and its events copied in with COPY, so a group
costs a few round trips and one commit however many rows it has); reads (recovery, orders
forgotten from memory, stories, idempotency keys) borrow pooled connections. Rows go through
`rows.py` like SQLite's. `synchronous_commit` is left as the server has it (on by default): a
commit is durable when the server says so.

One scheduler per database. The journal claims the database (`_claim`): a session of its own
holds a PostgreSQL advisory lock for the journal's life and writes a fresh token into
`meta.scheduler`. Every write transaction opens in one place, `_write_transaction`, which
checks (reading the row FOR SHARE, so a takeover's update waits for this commit) that the
token is still ours; a server that lost the database writes nothing more (`JournalLost`).
That is where a leader's epoch check belongs too. A second server refuses to start, naming
the holder. The lock's session is kept alive with TCP keepalives, so PostgreSQL releases the
claim of a server whose machine died within about half a minute.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from ..engine.model import Effects
from ..engine.records import (
    FINISHED_STATUSES,
    OrderQuery,
    OrderRecord,
    ResumePoint,
    TaskRecord,
)
from .location import redact
from .lock import JournalLocked
from .postgres_schema import SCHEMA_VERSION, migrate
from .recovery import Recovered
from .rows import (
    EVENT_COLUMNS,
    ORDER_COLUMNS,
    ORDER_FIELDS,
    TASK_COLUMNS,
    TASK_FIELDS,
    event_from_row,
    event_row,
    order_from_row,
    order_row,
    placeholders,
    search_where,
    task_from_row,
    task_row,
)
from .schema import StoreError
from .writer import WATCH_INTERVAL, Batch, GroupWriter, JournalLost

if TYPE_CHECKING:
    from ..engine.core import SchedulerCore

log = logging.getLogger("orderflow.store")
# pg_try_advisory_lock key of "the scheduler of this database" ("ordf").
SCHEDULER_LOCK = 0x6F726466
FINISHED = sorted(FINISHED_STATUSES)
# Finished orders removed per transaction when pruning.
PRUNE_CHUNK = 5_000
# Seconds to connect before an unreachable database is an error.
CONNECT_TIMEOUT = 5
# Pooled connections: the writer's and the reads' (orders forgotten from memory, stories,
# idempotency keys). A caller waits at most POOL_TIMEOUT seconds for one, so an outage turns
# into 503s within that, not into requests that hang.
POOL_SIZE = 8
POOL_TIMEOUT = 3.0
# Session settings of every connection: a write that waits on a lock this long fails (and the
# writer retries it, answering 503 meanwhile) instead of hanging every request.
SESSION_SETTINGS = {"lock_timeout": "10s", "statement_timeout": "60s"}
# The claim's session: the server closes it (releasing the claim) when the client's machine
# stops answering keepalives, after about idle + interval x count seconds.
CLAIM_KEEPALIVES = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5",
                    "tcp_keepalives_count": "3"}

_ORDER_UPSERT = (
    f"INSERT INTO orders ({ORDER_COLUMNS}) VALUES ({placeholders(ORDER_FIELDS, '%s')}) "
    "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, "
    "finished_at = EXCLUDED.finished_at"
)
_TASK_UPSERT = (
    f"INSERT INTO tasks ({TASK_COLUMNS}) VALUES ({placeholders(TASK_FIELDS, '%s')}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{f} = EXCLUDED.{f}" for f in TASK_FIELDS[1:])
)
_EVENT_COPY = f"COPY events ({EVENT_COLUMNS}) FROM STDIN"
_COUNTERS_UPSERT = (
    "INSERT INTO meta (key, value) VALUES ('counters', %s) "
    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
)
_CLAIM_UPSERT = (
    "INSERT INTO meta (key, value) VALUES ('scheduler', %s) "
    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
)


class PostgresJournal:
    """The journal in one PostgreSQL database: group commit by a `GroupWriter`, reads on
    pooled connections. `claim=False` opens it without becoming its scheduler (pruning and
    reading beside a running server)."""

    persistent = True

    def __init__(self, url: str, *, claim: bool = True, pool_size: int = POOL_SIZE):
        self.url = url
        self.name = redact(url)
        self._settings = _connection_settings(url, self.name)
        self._token: str | None = None
        self._holder: psycopg.Connection | None = None
        self._next_watch = 0.0
        with self._connect() as conn:
            self._guard(lambda: migrate(conn, self.name), "is not a usable orderflow database")
        if claim:
            self._claim()
        self._pool = ConnectionPool(
            url, min_size=1, max_size=pool_size, open=False, name="orderflow-journal",
            kwargs={**self._settings, "autocommit": True}, configure=_configure,
            timeout=POOL_TIMEOUT,
            # A connection PostgreSQL closed meanwhile (a restart) is replaced when it is
            # taken, not discovered by a failed write or read.
            check=ConnectionPool.check_connection,
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT * 2)
        except psycopg.Error as exc:
            self._pool.close()
            self._release()
            raise StoreError(f"cannot connect to {self.name}: {_one_line(exc)}") from None
        self._writer = GroupWriter(self.name, self._commit, self._watch)

    def attach(self, core: SchedulerCore, lock: threading.Lock) -> None:
        """Bind to the core whose state is journaled and the lock that guards it."""
        self._writer.attach(core, lock)

    # ------------------------------------------------------------ Journal protocol

    def record(self, fx: Effects, on_commit: Callable[[], None] | None = None) -> int:
        return self._writer.record(fx, on_commit)

    def wait(self, ticket: int | None) -> None:
        self._writer.wait(ticket)

    def committed(self, ticket: int) -> bool:
        return self._writer.committed(ticket)

    def check(self) -> None:
        self._writer.check()

    def close(self) -> None:
        """Write everything still pending, stop the writer, close the pool, give up the
        claim."""
        self._writer.close()
        self._pool.close()
        self._release()

    # ------------------------------------------------------------ reading

    def find_idempotency_key(self, key: str) -> str | None:
        """The order that used `key`, for keys older than the in-memory window."""
        with self._reading() as conn:
            row = conn.execute(
                "SELECT id FROM orders WHERE idempotency_key = %s", (key,)
            ).fetchone()
        return row[0] if row else None

    def recover(self, finished_orders: int = 20_000, recent_events: int = 2_000) -> Recovered:
        """What the engine needs to continue: every unfinished order, the `finished_orders`
        most recent finished ones and the `recent_events` latest events (one snapshot)."""
        with self._reading() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return _load(conn, finished_orders, recent_events)

    def find_order(self, order_id: str) -> dict | None:
        record = self.load_order(order_id, with_events=False)
        return None if record is None else record.view()

    def load_order(self, order_id: str, with_events: bool = True) -> OrderRecord | None:
        """One order with its tasks (and events), e.g. to bring it back into memory."""
        with self._reading() as conn, conn.transaction():
            row = conn.execute(
                f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = %s", (order_id,)
            ).fetchone()
            if row is None:
                return None
            return _with_tasks_and_events(conn, [row], with_events)[0]

    def search_orders(
        self, query: OrderQuery, before: int | None, limit: int
    ) -> list[OrderRecord]:
        """Orders matching `query` numbered below `before`, newest first, with their tasks."""
        where, args = search_where(query, before, "%s", "(data::jsonb ->> 'customer')",
                                   "ILIKE")
        with self._reading() as conn, conn.transaction():
            rows = conn.execute(
                f"SELECT {ORDER_COLUMNS} FROM orders WHERE {where} ORDER BY number DESC "
                "LIMIT %s",
                (*args, limit),
            ).fetchall()
            return _with_tasks_and_events(conn, rows, with_events=False)

    def story(self, order_id: str) -> list[dict]:
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE order_id = %s ORDER BY seq",
                (order_id,),
            ).fetchall()
        return [event_from_row(r) for r in rows]

    # ------------------------------------------------------------ maintenance

    def prune(self, before_wall: float) -> dict:
        """Delete finished orders (and their tasks and events) that finished before the cutoff."""
        return self._writer.run_job(lambda: self._prune(before_wall), 120)

    def _prune(self, before_wall: float) -> dict:
        removed = {"orders": 0, "events": 0}
        while True:
            with self._write_transaction() as conn:
                orders, events = conn.execute(
                    "WITH gone AS (DELETE FROM orders WHERE id IN (SELECT id FROM orders "
                    "WHERE status = ANY(%s) AND finished_at < %s LIMIT %s) RETURNING id), "
                    "t AS (DELETE FROM tasks WHERE order_id IN (SELECT id FROM gone)), "
                    "e AS (DELETE FROM events WHERE order_id IN (SELECT id FROM gone) "
                    "RETURNING 1) SELECT (SELECT COUNT(*) FROM gone), (SELECT COUNT(*) FROM e)",
                    (FINISHED, before_wall, PRUNE_CHUNK),
                ).fetchone()
            removed["orders"] += orders
            removed["events"] += events
            if orders < PRUNE_CHUNK:
                return removed

    # ------------------------------------------------------------ writing

    @contextmanager
    def _write_transaction(
        self, first: Callable[[psycopg.Cursor], None] | None = None
    ) -> Iterator[psycopg.Connection]:
        """THE place a write transaction opens: group commits and pruning run in it. Before
        anything is committed it checks that this journal is still the database's scheduler:
        the claim row, read FOR SHARE first thing (a takeover's update of it waits for this
        commit), must hold our token, else the transaction is rolled back and the journal
        is lost. A leader's epoch check belongs here, beside the claim's.

        `first(cursor)` queues statements that go out pipelined with BEGIN and the check (one
        round trip for all); the body of the `with` runs after the check, in the same
        transaction (COPY cannot be pipelined)."""
        with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor()
            with conn.pipeline():
                if self._token is not None:
                    cur.execute("SELECT value FROM meta WHERE key = 'scheduler' FOR SHARE")
                    claim = cur
                    cur = conn.cursor()
                if first is not None:
                    first(cur)
            if self._token is not None:
                row = claim.fetchone()
                if row is None or row[0] != self._token:
                    raise JournalLost(
                        f"another orderflow server took {self.name} over; this one writes "
                        "nothing more"
                    )
            yield conn

    def _commit(self, batch: Batch) -> None:
        """One group commit in one transaction (GroupWriter retries it if it raises): the
        upserts pipelined with the claim check (one round trip), then the events by COPY,
        the cheapest way into PostgreSQL for rows that are only ever inserted."""

        def upserts(cur: psycopg.Cursor) -> None:
            # As in SQLite: an order is written when submitted and again when its status
            # becomes (or, after a manual retry, stops being) final; its row may even be
            # gone if retention pruned it meanwhile.
            if batch.order_records:
                cur.executemany(_ORDER_UPSERT, [order_row(r) for r in batch.order_records])
            if batch.task_records:
                cur.executemany(_TASK_UPSERT, [task_row(r) for r in batch.task_records])
            cur.execute(_COUNTERS_UPSERT, (batch.counters,))

        with self._write_transaction(upserts) as conn:
            if batch.events:
                with conn.cursor().copy(_EVENT_COPY) as copy:
                    for event in batch.events:
                        copy.write_row(event_row(event))

    # ------------------------------------------------------------ the claim

    def _claim(self) -> None:
        """Become the database's only scheduler, or raise JournalLocked naming who is."""
        holder = self._connect(claim=True)
        try:
            if not _try_lock(holder):
                who = _describe_holder(holder)
                raise JournalLocked(
                    f"{self.name} is already the journal of another orderflow server ({who}): "
                    "one scheduler per database. Stop it first, or point --db at another "
                    "database.",
                    holder=who,
                )
            token = uuid.uuid4().hex
            holder.execute(_CLAIM_UPSERT, (token,))
        except BaseException:
            holder.close()
            raise
        self._holder, self._token = holder, token

    def _watch(self) -> None:
        """On the writer thread, now and then: is the claim's session alive? If it died
        (PostgreSQL restarted, the connection was cut), claim again; that is safe only if
        nobody claimed the database meanwhile (our token is still there), else the journal
        is lost. While the database is unreachable this raises, and the writer retries."""
        if self._token is None or time.monotonic() < self._next_watch:
            return
        self._next_watch = time.monotonic() + WATCH_INTERVAL
        if self._holder is not None:  # None: an earlier attempt to claim again failed
            try:
                self._holder.execute("SELECT 1")
                return
            except psycopg.Error:
                log.warning("the claim session on %s was lost; claiming the database again",
                            self.name)
            old, self._holder = self._holder, None
            old.close()
        holder = self._connect(claim=True)  # StoreError while unreachable: tried again
        try:
            got = _try_lock(holder)
            row = holder.execute("SELECT value FROM meta WHERE key = 'scheduler'").fetchone()
        except BaseException:
            holder.close()
            raise
        if not got or row is None or row[0] != self._token:
            who = _describe_holder(holder) if not got else "since gone"
            holder.close()
            self._token = "lost"
            raise JournalLost(
                f"another orderflow server ({who}) took {self.name} over while this one was "
                "disconnected; this one writes nothing more"
            )
        self._holder = holder
        log.warning("claimed %s again: still its only scheduler", self.name)

    def _release(self) -> None:
        holder, self._holder = self._holder, None
        if holder is not None:
            holder.close()  # the session ends, and with it the advisory lock

    # ------------------------------------------------------------ connections

    def _connect(self, claim: bool = False) -> psycopg.Connection:
        settings = dict(self._settings)
        if claim:
            extra = " ".join(f"-c {k}={v}" for k, v in CLAIM_KEEPALIVES.items())
            settings["options"] = f"{settings.get('options', '')} {extra}".strip()
        try:
            conn = psycopg.connect(self.url, autocommit=True, **settings)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self.name}: {_one_line(exc)}") from None
        _configure(conn)
        return conn

    @contextmanager
    def _reading(self) -> Iterator[psycopg.Connection]:
        """A pooled connection for reads; a database that cannot answer is a StoreError."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise StoreError(f"could not read {self.name}: {_one_line(exc)}") from None

    def _guard(self, action: Callable[[], object], problem: str) -> None:
        try:
            action()
        except psycopg.Error as exc:
            raise StoreError(
                f"{self.name} {problem} ({_one_line(exc)}). Point --db at an empty database "
                "or one orderflow created."
            ) from None


def _connection_settings(url: str, name: str) -> dict:
    """Keyword settings for every connection: who we are, and a connect timeout unless the
    URL has one. A malformed URL is a StoreError here, before anything connects."""
    try:
        given = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise StoreError(f"--db {name} is not a valid PostgreSQL URL: {_one_line(exc)}") from None
    settings = {"application_name": f"orderflow pid {os.getpid()} on {socket.gethostname()}"[:63]}
    if "connect_timeout" not in given:
        settings["connect_timeout"] = CONNECT_TIMEOUT
    if "options" in given:
        settings["options"] = given["options"]
    return settings


def _configure(conn: psycopg.Connection) -> None:
    for key, value in SESSION_SETTINGS.items():
        conn.execute(f"SET {key} = '{value}'")


def _try_lock(conn: psycopg.Connection) -> bool:
    """Take the scheduler lock for `conn`'s session, if nobody holds it."""
    return conn.execute("SELECT pg_try_advisory_lock(%s)", (SCHEDULER_LOCK,)).fetchone()[0]


def _describe_holder(conn: psycopg.Connection) -> str:
    """Who holds the scheduler lock: its application name (our pid and host), its address."""
    row = conn.execute(
        "SELECT a.application_name, a.client_addr, a.backend_start FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
        "AND l.granted AND l.classid = 0 AND l.objid = %s AND l.objsubid = 1",
        (SCHEDULER_LOCK,),
    ).fetchone()
    if row is None:
        return "unknown"
    app, addr, since = row
    where = f" from {addr}" if addr else ""
    return f"{app or 'a session'}{where}, connected since {since:%Y-%m-%d %H:%M:%S}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _with_tasks_and_events(
    conn: psycopg.Connection, order_rows: list[tuple], with_events: bool = True
) -> list[OrderRecord]:
    """Order rows as records with their task rows and events."""
    ids = [row[0] for row in order_rows]
    tasks: dict[str, list[TaskRecord]] = {i: [] for i in ids}
    events: dict[str, list[dict]] = {i: [] for i in ids}
    for row in conn.execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE order_id = ANY(%s)", (ids,)):
        record = task_from_row(row)
        tasks[record.order_id].append(record)
    if with_events:
        for row in conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE order_id = ANY(%s) ORDER BY seq", (ids,)
        ):
            events[row[3]].append(event_from_row(row))
    return [order_from_row(row, tasks[row[0]], events[row[0]]) for row in order_rows]


def _load(conn: psycopg.Connection, finished_limit: int, recent_events: int) -> Recovered:
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    counters = json.loads(meta.get("counters", "{}"))
    rows = conn.execute(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE status <> ALL(%s) "
        f"UNION ALL (SELECT {ORDER_COLUMNS} FROM orders WHERE status = ANY(%s) "
        "ORDER BY number DESC LIMIT %s)",
        (FINISHED, FINISHED, finished_limit),
    ).fetchall()
    rows.sort(key=lambda r: r[1])
    orders = _with_tasks_and_events(conn, rows)
    recent = [
        event_from_row(r)
        for r in conn.execute(
            f"SELECT * FROM (SELECT {EVENT_COLUMNS} FROM events ORDER BY seq DESC LIMIT %s) "
            "AS latest ORDER BY seq",
            (recent_events,),
        )
    ]
    seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
    number = conn.execute("SELECT COALESCE(MAX(number), 0) FROM orders").fetchone()[0]
    point = ResumePoint(
        seq=max(seq, counters.get("seq", 0)),
        order_number=max(number, counters.get("order_number", 0)),
        lease_counter=counters.get("lease_counter", 0),
        counters=counters.get("counters", {}),
        orders_by_status=counters.get("orders_by_status", {}),
        tasks_by_state=counters.get("tasks_by_state", {}),
        recent_events=recent,
    )
    return Recovered(point, orders)


__all__ = ["SCHEMA_VERSION", "PostgresJournal", "StoreError"]
