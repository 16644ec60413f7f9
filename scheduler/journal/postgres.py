"""The durable journal in PostgreSQL (`--db postgresql://...`), through psycopg 3 and a pool.

The same `Journal` as SQLite's: a `GroupWriter` commits in groups on its thread (`_commit`: one
transaction per group, its upserts pipelined and its events copied in with COPY, so a group
costs a few round trips and one commit however many rows it has); reads (recovery, orders
forgotten from memory, stories, idempotency keys) borrow pooled connections, and order searches
connections of a pool of their own (a search never holds a connection the writer or a
submit's lookup is waiting for). The statements are the query layer's (`queries.py`, in
PostgreSQL's dialect), as SQLite's are; this module holds the pools, the lease, COPY and the
migration lock. `synchronous_commit` is left as the server has it (on by default): a commit
is durable when the server says so.

One scheduler per database, and standbys. A journal that writes holds a `Term` of the
database's leadership lease (lease.py, postgres_lease.py): an epoch that only grows. Every
write transaction opens in one place, `_write_transaction`, which reads the lease row first
(FOR KEY SHARE, so a takeover, which locks it FOR UPDATE, waits for this commit) and checks
that the epoch is still ours; a journal whose term is over writes nothing more (`Deposed`).
`orderflow serve` gets its terms from an elector and runs as a standby between them; a
journal opened on its own (`claim=True`, the default: the Python API, the benchmarks) takes
one term for its life, or refuses to open, naming the leader. `claim=False` writes without
a term (pruning beside a running server).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from ..engine.errors import UnstorableText
from .dialect import POSTGRESQL
from .election import Elector
from .lease import LeaseSettings, Term
from .location import redact
from .lock import JournalLocked
from .postgres_lease import (
    EPOCH_CHECK,
    PostgresLeaseStore,
    lease_connection_options,
    lease_statement_timeout,
)
from .queries import COUNTERS, Queries
from .rows import event_row, order_row, task_row
from .schema import StoreError, migrations, pending, version
from .sql_journal import LOOKUP, RECOVER, SEARCH, SQLJournal
from .writer import Batch, Deposed, GroupWriter

log = logging.getLogger("orderflow.store")
SCHEMA_VERSION = version(POSTGRESQL)
QUERIES = Queries(POSTGRESQL)
# pg_advisory_xact_lock key held while migrating ("ordm"): two servers starting at once
# migrate once.
MIGRATION_LOCK = 0x6F72646D
# Finished orders removed per transaction when pruning.
PRUNE_CHUNK = 5_000
# Seconds to connect before an unreachable database is an error.
CONNECT_TIMEOUT = 5
# Seconds a cancel of a write in flight (once the term is over) waits for the database.
CANCEL_TIMEOUT = 2.0
# Pooled connections: the writer's and the reads' (orders forgotten from memory, stories,
# idempotency keys). A caller waits at most POOL_TIMEOUT seconds for one, so an outage turns
# into 503s within that, not into requests that hang.
POOL_SIZE = 8
POOL_TIMEOUT = 3.0
# Connections of the searches' own pool (opened when first needed): as many as searches may
# run at once (ClusterConfig.max_searches), so a search waits for none.
SEARCH_POOL_SIZE = 4
# Session settings of every connection: a write that waits on a lock this long fails (and the
# writer retries it, answering 503 meanwhile) instead of hanging every request.
SESSION_SETTINGS = {"lock_timeout": "10s", "statement_timeout": "60s"}
# The lease session: the server closes it when the client's machine stops answering
# keepalives, after about idle + interval x count seconds (a standby then sees its holder
# gone; the lease's expiry comes sooner anyway).
LEASE_KEEPALIVES = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5",
                    "tcp_keepalives_count": "3"}

# Each event with the epoch of the term that committed it (0: written without one).
_EVENT_COPY = f"COPY events ({', '.join(QUERIES.event_columns)}) FROM STDIN"

# What PostgreSQL (or the driver, sending a row) refuses for a value in a row: retrying
# cannot cure it (the writer rescues the batch instead): text it cannot hold (a NUL: a
# DataError; a lone surrogate: the driver cannot encode it), a value out of range, a
# constraint. Anything else (a lost connection, a lock timeout, a term that is over) is an
# outage or a step-down, retried or stopped as such.
REFUSALS = (UnicodeError, psycopg.DataError, psycopg.IntegrityError)


def refused(exc: BaseException) -> bool:
    """True when PostgreSQL refused a write for a value in it (see REFUSALS)."""
    return isinstance(exc, REFUSALS)


class PostgresJournal(SQLJournal):
    """The journal in one PostgreSQL database: group commit by a `GroupWriter`, reads on
    pooled connections. `term`: the leadership term this journal writes under (given by
    `orderflow serve`'s elector); without one, `claim=True` takes the lease for the journal's
    life (JournalLocked, naming the leader, if another server leads), and `claim=False` opens
    it without leading (pruning and reading beside a running server)."""

    _queries = QUERIES
    prune_chunk = PRUNE_CHUNK

    def __init__(self, url: str, *, claim: bool = True, term: Term | None = None,
                 pool_size: int = POOL_SIZE, lease: LeaseSettings | None = None,
                 search_pool_size: int = SEARCH_POOL_SIZE):
        self.url = url
        self.name = redact(url)
        self._settings = _connection_settings(url, self.name)
        self._elector: Elector | None = None
        _migrate(url, self.name, self._settings)
        if term is None and claim:
            term = self._lead(lease or LeaseSettings())
        self.term = term
        self._pool = ConnectionPool(
            url, min_size=1, max_size=pool_size, open=False, name="orderflow-journal",
            kwargs={**self._settings, "autocommit": True}, configure=_configure,
            timeout=POOL_TIMEOUT,
            # A connection PostgreSQL closed meanwhile (a restart) is replaced when it is
            # taken, not discovered by a failed write or read.
            check=ConnectionPool.check_connection,
        )
        self._search_pool = ConnectionPool(
            url, min_size=0, max_size=search_pool_size, open=False, name="orderflow-search",
            kwargs={**self._settings, "autocommit": True}, configure=_configure,
            timeout=POOL_TIMEOUT, check=ConnectionPool.check_connection,
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT * 2)
            self._search_pool.open()
        except psycopg.Error as exc:
            self._pool.close()
            self._search_pool.close()
            self._release()
            raise StoreError(f"cannot connect to {self.name}: {_one_line(exc)}") from None
        self._writer = GroupWriter(self.name, self._commit, refused=refused,
                                   write_each=self._commit_each)
        self._writing: tuple[psycopg.Connection, int] | None = None
        if term is not None:
            # A leader whose journal cannot commit for longer than its lease steps down,
            # and a write still hanging then is cancelled.
            term.watch_commits(self._writer.stalled_for)
            term.on_lost(self._cancel_write)

    @property
    def epoch(self) -> int:
        """The epoch this journal writes under (0: none)."""
        return self.term.epoch if self.term is not None else 0

    # ------------------------------------------------------------ Journal protocol

    def check(self) -> None:
        term = self.term
        if term is not None and not term.holds(time.monotonic()):
            raise Deposed(f"this server no longer leads {self.name} (epoch {term.epoch} "
                          f"is over: {term.lost or 'its lease ran out'}); it accepts nothing")
        self._writer.check()

    def close(self) -> None:
        """Write everything still pending (nothing, once the term is over), stop the writer,
        close the pool, hand back a lease of its own."""
        over = self.term is not None and not self.term.holds(time.monotonic())
        self._writer.close(timeout=0.0 if over else 30.0)
        self._pool.close()
        self._search_pool.close()
        self._release()

    # ------------------------------------------------------------ writing

    @contextmanager
    def _write_transaction(
        self, first: Callable[[psycopg.Cursor], None] | None = None
    ) -> Iterator[psycopg.Connection]:
        """THE place a write transaction opens: group commits and pruning run in it. With a
        term, before anything is committed it checks that the term still leads: by its own
        clock first (a term that could not renew in time writes nothing), then in the
        database: the lease row, read FOR KEY SHARE first thing (a takeover locks it FOR
        UPDATE, so it waits for this commit, and a transaction after the takeover reads the
        new epoch), must hold our epoch, else the transaction is rolled back, the term is
        lost and so is the journal (`Deposed`).

        `first(cursor)` queues statements that go out pipelined with BEGIN and the check (one
        round trip for all); the body of the `with` runs after the check, in the same
        transaction (COPY cannot be pipelined)."""
        term = self.term
        if term is not None:
            term.check(time.monotonic())
        try:
            with self._write_transaction_checked(term, first) as conn:
                yield conn
        except psycopg.Error:
            # A write that failed because the term is over (the new leader ended this
            # transaction of an expired lease, say) is a step-down, not an outage.
            if term is not None:
                term.check(time.monotonic())
            raise

    @contextmanager
    def _write_transaction_checked(
        self, term: Term | None, first: Callable[[psycopg.Cursor], None] | None
    ) -> Iterator[psycopg.Connection]:
        with self._pool.connection() as conn, self._in_flight(conn), conn.transaction():
            cur = conn.cursor()
            with conn.pipeline():
                if term is not None:
                    # A leader paused inside this transaction must not hold up a takeover
                    # for longer than its lease would have lasted.
                    cur.execute(f"SET LOCAL idle_in_transaction_session_timeout = "
                                f"'{int(term.settings.ttl * 1000)}ms'")
                    cur.execute(EPOCH_CHECK)
                    lease = cur
                    cur = conn.cursor()
                if first is not None:
                    first(cur)
            if term is not None:
                epoch, holder, url = lease.fetchone()
                if epoch != term.epoch:
                    reason = f"epoch {epoch} is led by {holder}{f' at {url}' if url else ''}"
                    term.lose(reason)
                    raise Deposed(f"epoch {term.epoch} is over ({reason}); this server "
                                  "writes nothing more")
            yield conn
            if term is not None:
                # Stepped down meanwhile (this transaction waited on the database): roll
                # back rather than commit after the step-down.
                term.check(time.monotonic())

    @contextmanager
    def _in_flight(self, conn: psycopg.Connection) -> Iterator[None]:
        """While a write transaction is open on `conn` (for `_cancel_write`)."""
        self._writing = (conn, threading.get_ident())
        try:
            yield
        finally:
            self._writing = None

    def _cancel_write(self, reason: str) -> None:
        """The term is over (stepped down by the elector, say because this very write
        hangs on a lock): cancel the write transaction in flight, so it rolls back now and
        no longer holds the lease row a standby must lock to take over (the taker ends
        only transactions that wait for nothing). Not from the writer's own thread: it
        finds out by itself."""
        writing = self._writing
        if writing is None or writing[1] == threading.get_ident():
            return
        try:
            # Bounded: the database may not answer the cancel either (frozen), and the
            # caller (the elector, its watchdog) has more to do than wait for it.
            writing[0].cancel_safe(timeout=CANCEL_TIMEOUT)
        except psycopg.Error:
            pass  # it ended meanwhile, or the database did not answer in time

    def _commit(self, batch: Batch) -> None:
        """One group commit in one transaction (GroupWriter retries it if it raises): the
        upserts pipelined with the epoch check (one round trip), then the events by COPY,
        the cheapest way into PostgreSQL for rows that are only ever inserted."""

        def upserts(cur: psycopg.Cursor) -> None:
            insert = QUERIES.insert
            if batch.order_records:
                cur.executemany(insert["orders"], [order_row(r) for r in batch.order_records])
            if batch.task_records:
                cur.executemany(insert["tasks"], [task_row(r) for r in batch.task_records])
            QUERIES.write_incidents(cur, batch)
            cur.execute(QUERIES.set_meta, (COUNTERS, batch.counters))

        epoch = self.epoch
        with self._write_transaction(upserts) as conn:
            if batch.events:
                with conn.cursor().copy(_EVENT_COPY) as copy:
                    for event in batch.events:
                        copy.write_row((*event_row(event), epoch))

    def _commit_each(self, batch: Batch) -> list[tuple[str, str]]:
        """The batch row by row in one transaction, each row in a savepoint of its own: a
        row PostgreSQL refuses is left out alone. Returns what was left out, and why, as
        (table, what)."""
        epoch = self.epoch
        with self._write_transaction() as conn:
            return QUERIES.write_each(conn, batch, REFUSALS, (epoch,))

    # ------------------------------------------------------------ the lease

    def lease_store(self, settings: LeaseSettings, url: str | None = None
                    ) -> PostgresLeaseStore:
        """The lease row of this database, through a session of its own, for an elector;
        `url`: what this server advertises to clients (the leader's address)."""
        return PostgresLeaseStore(
            lambda: _session(self.url, self.name, self._settings, lease=settings), self.name,
            self._settings["application_name"], url, settings)

    def _lead(self, settings: LeaseSettings) -> Term:
        """Take the lease for this journal's life, or raise JournalLocked naming who leads.
        The lease is renewed on a thread of its own; once it is lost, nothing more is
        written (no standing by: that is `orderflow serve`'s business)."""
        store = self.lease_store(settings)
        elector = Elector(store, settings, stand_by=False)
        try:
            seen = store.look()
            if seen.free:
                elector.step(time.monotonic())
        except BaseException:
            store.close()
            raise
        if elector.term is None:
            store.close()
            who = seen.describe() if not seen.free else "another server, just now"
            raise JournalLocked(
                f"{self.name} is led by another orderflow server ({who}): one scheduler per "
                "database. Run this one with `orderflow serve` to stand by, or stop that "
                "one first.",
                holder=who,
            )
        self._elector = elector.start()
        return elector.term

    def _release(self) -> None:
        elector, self._elector = self._elector, None
        if elector is not None:
            elector.stop(resign=True)

    # ------------------------------------------------------------ connections

    @contextmanager
    def _reading(self, kind: str = LOOKUP) -> Iterator[psycopg.Connection]:
        """A pooled connection for a read of `kind`: a search's of the searches' own pool,
        every other of the pool the writer shares; in a transaction where it reads more
        than once (a snapshot for RECOVER). A read never fails as an unexpected error: a
        value looked up that PostgreSQL cannot even be sent (a NUL, a lone surrogate) is
        UnstorableText (400: nothing stored can match it); anything else the database
        answers (it is down, a pool timeout, a stored row it cannot convert) is a
        StoreError (503)."""
        pool = self._search_pool if kind == SEARCH else self._pool
        try:
            with pool.connection() as conn:
                if kind == LOOKUP:
                    yield conn
                    return
                with conn.transaction():
                    if kind == RECOVER:
                        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, "
                                     "READ ONLY")
                    yield conn
        except UnicodeEncodeError as exc:
            raise UnstorableText("nothing stored can match the value looked up: "
                                 f"{_one_line(exc)}") from None
        except psycopg.DataError as exc:
            if exc.sqlstate is None:  # refused by the driver, before it was sent
                raise UnstorableText("nothing stored can match the value looked up: "
                                     f"{_one_line(exc)}") from None
            raise StoreError(f"could not read {self.name}: {_one_line(exc)}") from None
        except psycopg.Error as exc:
            raise StoreError(f"could not read {self.name}: {_one_line(exc)}") from None

    def _transaction(self) -> AbstractContextManager[psycopg.Connection]:
        return self._write_transaction()


def lease_store(url: str, settings: LeaseSettings, advertise: str | None = None
                ) -> PostgresLeaseStore:
    """The leadership lease of the database at `url` (migrated first, so the row exists),
    for `orderflow serve`'s elector; `advertise`: this server's URL, shown to clients."""
    name = redact(url)
    given = _connection_settings(url, name)
    _migrate(url, name, given)
    return PostgresLeaseStore(lambda: _session(url, name, given, lease=settings), name,
                              given["application_name"], advertise, settings)


def _session(url: str, name: str, settings: dict, lease: LeaseSettings | None = None
             ) -> psycopg.Connection:
    """A connection of its own (autocommit); with `lease`, the lease session of those
    timings: keepalives on the database's side that end it within about half a minute of
    its machine going silent, and on ours that end it within a few times the lease's ttl
    of the database's going silent (postgres_lease.lease_connection_options), and a
    statement timeout of the lease's ttl."""
    settings = dict(settings)
    if lease is not None:
        extra = " ".join(f"-c {k}={v}" for k, v in LEASE_KEEPALIVES.items())
        settings["options"] = f"{settings.get('options', '')} {extra}".strip()
        settings.update(lease_connection_options(lease))
    try:
        conn = psycopg.connect(url, autocommit=True, **settings)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to {name}: {_one_line(exc)}") from None
    try:
        _configure(conn)
        if lease is not None:
            conn.execute(f"SET statement_timeout = '{lease_statement_timeout(lease)}'")
    except psycopg.Error as exc:
        conn.close()
        raise StoreError(f"cannot set up a session on {name}: {_one_line(exc)}") from None
    return conn


def migrate(conn: psycopg.Connection, name: str) -> int:
    """Bring the database up to SCHEMA_VERSION (its number a row of `meta`) in one
    transaction, under an advisory lock, so two servers starting at once migrate once;
    refuse one written by a newer orderflow. `conn` is in autocommit mode."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        for statement in migrations(POSTGRESQL)[0]:  # meta, which holds the version
            conn.execute(statement)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        steps = pending(POSTGRESQL, int(row[0]) if row else 0, name, "database")
        for _, statements in steps:
            for statement in statements:
                conn.execute(statement)
        if steps:
            conn.execute(QUERIES.set_meta, ("schema_version", str(SCHEMA_VERSION)))
    return SCHEMA_VERSION


def _migrate(url: str, name: str, settings: dict) -> None:
    with _session(url, name, settings) as conn:
        try:
            migrate(conn, name)
        except psycopg.Error as exc:
            raise StoreError(
                f"{name} is not a usable orderflow database ({_one_line(exc)}). Point --db at "
                "an empty database or one orderflow created."
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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


__all__ = ["SCHEMA_VERSION", "PostgresJournal", "StoreError"]
