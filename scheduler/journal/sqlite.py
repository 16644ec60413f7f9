"""The durable journal: orders, tasks and every event in SQLite (WAL mode).

The writer thread (`writer.GroupWriter`) owns the write connection and commits in groups;
reads (recovery, orders forgotten from memory, stories) use a second connection, and order
searches a third (WAL lets readers run beside the writer and each other: a long search
delays neither commits nor the lookups a submit makes). The file is
watched: deleted or replaced under a running server, it is reported at once and nothing more
is acknowledged.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..engine.errors import UnstorableText
from ..engine.records import (
    FINISHED_STATUSES,
    OrderQuery,
    OrderRecord,
    TaskRecord,
)
from .lock import FileLock, JournalLocked
from .recovery import Recovered, resume_point
from .rows import (
    EVENT_COLUMNS,
    EVENT_FIELDS,
    ORDER_COLUMNS,
    ORDER_FIELDS,
    TASK_COLUMNS,
    TASK_FIELDS,
    batch_rows,
    event_from_row,
    event_row,
    order_from_row,
    order_row,
    placeholders,
    search_where,
    task_from_row,
    task_row,
)
from .schema import SCHEMA_VERSION, StoreError, migrate
from .writer import Batch, GroupWriter, GroupWrittenJournal, JournalLost

if TYPE_CHECKING:
    pass

log = logging.getLogger("orderflow.store")
# Where `orderflow serve` and `orderflow prune` keep the journal unless told otherwise.
DEFAULT_DB = "logs/orderflow.db"
_FINISHED_SQL = "(" + ",".join(f"'{s}'" for s in sorted(FINISHED_STATUSES)) + ")"


class SQLiteJournal(GroupWrittenJournal):
    """The journal in one SQLite file: group commit by a `GroupWriter`, reads on a second
    connection, and a watch on the file itself (deleted or replaced: `JournalLost`)."""

    persistent = True

    def __init__(
        self, path: str | os.PathLike, synchronous: str = "FULL", lock: FileLock | None = None
    ):
        """Open (creating and migrating) the journal at `path` as its only scheduler: the
        file's lock (`lock.py`) is taken here and released by `close()`, or, when `lock` is
        given (`orderflow serve` holds it for the life of its process), checked and kept."""
        self.path = Path(path)
        make_folder(self.path)
        self._own_lock = lock is None
        self._lock = FileLock.acquire(self.path) if lock is None else lock.covers(self.path)
        try:
            self._write = _connect(self.path, synchronous)
            self._identity = _identity(self.path)
            self._read = _connect(self.path, synchronous, readonly_after_schema=True)
            self._read_lock = _Reading(self._read, str(self.path))
            self._search = _connect(self.path, synchronous, readonly_after_schema=True)
            self._search_lock = _Reading(self._search, str(self.path))
        except BaseException:
            for name in ("_write", "_read", "_search"):
                if hasattr(self, name):
                    getattr(self, name).close()
            self._release()
            raise
        self._writer = GroupWriter(str(self.path), self._commit, self._watch,
                                   refused=refused, write_each=self._commit_each)

    # ------------------------------------------------------------ Journal protocol

    def check(self) -> None:
        self._writer.check()

    def find_idempotency_key(self, key: str) -> str | None:
        """The order that used `key`, for keys older than the in-memory window."""
        with self._read_lock:
            row = self._read.execute(
                "SELECT id FROM orders WHERE idempotency_key = ?", (key,)
            ).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        """Write everything still pending, then stop the writer and close the file."""
        self._writer.close()
        for conn in (self._write, self._read, self._search):
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._release()

    def _release(self) -> None:
        if self._own_lock:
            self._lock.release()

    # ------------------------------------------------------------ reading

    def recover(self, finished_orders: int = 20_000, recent_events: int = 2_000) -> Recovered:
        """What the engine needs to continue: every unfinished order, the `finished_orders`
        most recent finished ones and the `recent_events` latest events."""
        return _load(self._read, self._read_lock, finished_orders, recent_events)

    def load_order(self, order_id: str, with_events: bool = True) -> OrderRecord | None:
        """One order with its tasks (and events), e.g. to bring it back into memory."""
        with self._read_lock:
            row = self._read.execute(
                f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?", (order_id,)
            ).fetchone()
            if row is None:
                return None
            return _with_tasks_and_events(self._read, [row], with_events)[0]

    def story(self, order_id: str) -> list[dict]:
        with self._read_lock:
            rows = self._read.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE order_id = ? ORDER BY seq", (order_id,)
            ).fetchall()
        return [event_from_row(r) for r in rows]

    def search_orders(
        self, query: OrderQuery, before: int | None, limit: int, finished_only: bool = False
    ) -> list[OrderRecord]:
        """Orders matching `query` numbered below `before`, newest first, with their tasks,
        on the search connection (searches take turns on it; other reads never wait)."""
        where, args = search_where(query, before, "?", "json_extract(data, '$.customer')",
                                   "LIKE", finished_only)
        # Finished orders of any status newest first: through their partial index, in order,
        # and never by sorting them all (which SQLite's planner picks otherwise: each status
        # through orders_by_status, then a sort before the LIMIT).
        hint = ("INDEXED BY orders_finished_by_number"
                if finished_only and query.status is None else "")
        with self._search_lock:
            rows = self._search.execute(
                f"SELECT {ORDER_COLUMNS} FROM orders {hint} WHERE {where} "
                "ORDER BY number DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
            return _with_tasks_and_events(self._search, rows, with_events=False)

    def events_after(self, seq: int, limit: int) -> list[dict]:
        with self._read_lock:
            rows = self._read.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [event_from_row(r) for r in rows]

    # ------------------------------------------------------------ maintenance

    def prune(self, before_wall: float) -> dict:
        """Delete finished orders (and their tasks and events) that finished before the cutoff."""
        return self._writer.run_job(lambda: prune_connection(self._write, before_wall), 120)

    # ------------------------------------------------------------ writer thread

    def _commit(self, batch: Batch) -> None:
        """One group commit in one transaction (GroupWriter retries it if it raises)."""
        conn = self._write
        with conn:
            # Upserts: an order is written when submitted and again when its status becomes
            # (or, after a manual retry, stops being) final; its row may even be gone if
            # retention pruned it meanwhile.
            conn.executemany(_INSERT["orders"], map(order_row, batch.order_records))
            conn.executemany(_INSERT["tasks"], map(task_row, batch.task_records))
            conn.executemany(_INSERT["events"], map(event_row, batch.events))
            conn.execute(_COUNTERS, (batch.counters,))

    def _commit_each(self, batch: Batch) -> list[tuple[str, str]]:
        """The batch row by row in one transaction, each row in a savepoint of its own: a
        row the database refuses is left out alone. Returns what was left out, and why, as
        (table, what)."""
        conn = self._write
        left_out = []
        with conn:
            conn.execute("BEGIN")
            for table, row, what in batch_rows(batch.order_records, batch.task_records,
                                               batch.events):
                conn.execute("SAVEPOINT one_row")
                try:
                    conn.execute(_INSERT[table], row)
                except REFUSALS as exc:
                    conn.execute("ROLLBACK TO one_row")
                    left_out.append((table, f"{what} ({type(exc).__name__}: {exc})"))
                conn.execute("RELEASE one_row")
            conn.execute(_COUNTERS, (batch.counters,))
        return left_out

    def _watch(self) -> None:
        """The file we write must still be the one we opened: a database deleted (say by a
        log clean-up in logs/) or replaced under a running server would lose everything
        acknowledged from then on at the next restart."""
        for suffix, expected in list(self._identity.items()):
            current = _identity_of(Path(f"{self.path}{suffix}"))
            if expected is None and suffix == "-wal":
                self._identity[suffix] = current  # the log appears with the first write
                continue
            if current != expected:
                what = "deleted" if current is None else "replaced by another file"
                raise JournalLost(f"{self.path}{suffix} was {what} while the server ran")


class _Reading:
    """The read connection's lock, which also says what a read that failed was: text that
    cannot be encoded to look it up (a lone surrogate) is UnstorableText (400: nothing
    stored can match it); any sqlite3 error (a locked or damaged file) a StoreError (503).
    Never an unexpected error."""

    def __init__(self, conn: sqlite3.Connection, name: str):
        self._conn, self._name = conn, name
        self._lock = threading.Lock()

    def __enter__(self) -> _Reading:
        self._lock.acquire()
        return self

    def __exit__(self, kind, exc, traceback) -> bool:
        try:
            if exc is not None and isinstance(exc, (UnicodeEncodeError, sqlite3.Error)):
                try:
                    self._conn.rollback()  # a read half done (its temp ids) is undone
                except sqlite3.Error:
                    pass
                if isinstance(exc, UnicodeEncodeError):
                    raise UnstorableText(f"nothing stored can match the value looked up: "
                                         f"{exc}") from None
                raise StoreError(f"could not read {self._name}: {exc}") from None
        finally:
            self._lock.release()
        return False


_INSERT = {
    "orders": f"INSERT INTO orders ({ORDER_COLUMNS}) VALUES ({placeholders(ORDER_FIELDS)}) "
              "ON CONFLICT(id) DO UPDATE SET status = excluded.status, "
              "finished_at = excluded.finished_at",
    "tasks": f"INSERT OR REPLACE INTO tasks ({TASK_COLUMNS}) "
             f"VALUES ({placeholders(TASK_FIELDS)})",
    "events": f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({placeholders(EVENT_FIELDS)},?,?)",
}
_COUNTERS = "INSERT OR REPLACE INTO meta (key, value) VALUES ('counters', ?)"
# What SQLite (or the driver, encoding a row) refuses for a value in a row: retrying cannot
# cure it (the writer rescues the batch instead). A locked, full or damaged file is an
# OperationalError or DatabaseError: an outage, retried.
REFUSALS = (UnicodeError, OverflowError, sqlite3.IntegrityError, sqlite3.DataError)


def refused(exc: BaseException) -> bool:
    """True when SQLite refused a write for a value in it (see REFUSALS)."""
    return isinstance(exc, REFUSALS)


def _identity_of(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)


def _identity(path: Path) -> dict[str, tuple[int, int] | None]:
    """(device, inode) of the database and its write-ahead log, as opened."""
    return {suffix: _identity_of(Path(f"{path}{suffix}")) for suffix in ("", "-wal")}


def make_folder(path: Path) -> None:
    """The journal's folder exists and is writable, or a StoreError says what to do."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the folder {folder} for {path}: {exc.strerror}. "
            "Choose another location with --db PATH."
        ) from None
    if not os.access(folder, os.W_OK):
        raise StoreError(
            f"the folder {folder} is not writable, so {path} cannot be used. "
            "Fix its permissions or choose another location with --db PATH."
        )


def _connect(
    path: Path, synchronous: str, readonly_after_schema: bool = False
) -> sqlite3.Connection:
    """Open (creating and migrating if needed) with a clear StoreError for every bad case."""
    try:
        conn = sqlite3.connect(path, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: inserts at random keys stay in memory
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{path} could not be switched to WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        if not readonly_after_schema:
            _check_integrity(conn, path)
            migrate(conn, path)
            _check_writable(conn, path)
        return conn
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is not a usable orderflow database ({exc}). Move it aside and restart to "
            "begin with an empty database, or point --db at another file."
        ) from None


def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    """A damaged page must stop the start, not a worker thread hours later. quick_check
    reads every page once (about a second per 200 MB here) but skips the slow index
    cross-checks of integrity_check."""
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as exc:  # damage the check itself trips over
        problems = [str(exc)]
    if problems != ["ok"]:
        raise StoreError(
            f"{path} is damaged ({'; '.join(problems)}). Move it aside and restart to begin "
            "with an empty database (or restore a backup), or point --db at another file."
        )


def _check_writable(conn: sqlite3.Connection, path: Path) -> None:
    """Opening a read-only file succeeds and reads work; only the first write would fail,
    with every order refused from then on. Write once now (a no-op) to find out at start."""
    try:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.OperationalError as exc:
        raise StoreError(
            f"{path} cannot be written ({exc}). Fix its permissions (the server must be "
            "able to write its journal) or point --db at another file."
        ) from None


# Finished orders removed per transaction when pruning: a server writing the same file (from
# its own process, see `prune_beside_server`) waits for one chunk at most, never the whole prune.
PRUNE_CHUNK = 2_000


def prune_connection(conn: sqlite3.Connection, before_wall: float) -> dict:
    """Delete finished orders (with their tasks and events) finished before the cutoff, in
    transactions of PRUNE_CHUNK orders."""
    removed = {"orders": 0, "events": 0}
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS prune_ids (id TEXT PRIMARY KEY)")
    while True:
        with conn:
            ids = [
                r[0]
                for r in conn.execute(
                    f"SELECT id FROM orders WHERE status IN {_FINISHED_SQL} AND finished_at < ? "
                    "LIMIT ?",
                    (before_wall, PRUNE_CHUNK),
                )
            ]
            conn.execute("DELETE FROM prune_ids")
            conn.executemany("INSERT INTO prune_ids VALUES (?)", [(i,) for i in ids])
            removed["events"] += conn.execute(
                "DELETE FROM events WHERE order_id IN (SELECT id FROM prune_ids)"
            ).rowcount
            conn.execute("DELETE FROM tasks WHERE order_id IN (SELECT id FROM prune_ids)")
            conn.execute("DELETE FROM orders WHERE id IN (SELECT id FROM prune_ids)")
            conn.execute("DELETE FROM prune_ids")
        removed["orders"] += len(ids)
        if len(ids) < PRUNE_CHUNK:
            return removed


def prune_beside_server(path: str | os.PathLike, before_wall: float) -> dict:
    """`orderflow prune` on a journal a running server holds: through a connection of its
    own, never migrating (the server's schema is the one in use). SQLite lets one writer in at
    a time; the server's writer waits for a chunk (busy_timeout) and, should it wait longer,
    retries its commit like any failed write: nothing acknowledged is affected."""
    path = Path(path)
    try:
        conn = sqlite3.connect(path, timeout=10.0)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from None
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"{path} has schema version {version} and its server another orderflow's "
                f"({SCHEMA_VERSION} here): prune with the server's own orderflow, or stop it"
            )
        return prune_connection(conn, before_wall)
    except sqlite3.Error as exc:
        raise StoreError(f"could not prune {path}: {exc}") from None
    finally:
        conn.close()


def _with_tasks_and_events(
    conn: sqlite3.Connection, order_rows: list[tuple], with_events: bool = True
) -> list[OrderRecord]:
    """Order rows as records with their task rows and events (through a temp table of ids)."""
    if not order_rows:
        return []  # (a search that found nothing costs no temp table and no transaction)
    ids = [row[0] for row in order_rows]
    tasks: dict[str, list[TaskRecord]] = {i: [] for i in ids}
    events: dict[str, list[dict]] = {i: [] for i in ids}
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS load_ids (id TEXT PRIMARY KEY)")
    conn.execute("DELETE FROM load_ids")
    conn.executemany("INSERT INTO load_ids VALUES (?)", [(i,) for i in ids])
    for row in conn.execute(
        f"SELECT {TASK_COLUMNS} FROM tasks WHERE order_id IN (SELECT id FROM load_ids)"
    ):
        record = task_from_row(row)
        tasks[record.order_id].append(record)
    if with_events:
        for row in conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE order_id IN (SELECT id FROM load_ids) "
            "ORDER BY seq"
        ):
            events[row[3]].append(event_from_row(row))
    conn.execute("DELETE FROM load_ids")
    # Filling the temp table opened a transaction; end it, or this reader would keep
    # seeing the database as it was now.
    conn.commit()
    return [order_from_row(row, tasks[row[0]], events[row[0]]) for row in order_rows]


def _load(
    conn: sqlite3.Connection,
    lock: _Reading,
    finished_limit: int,
    recent_events: int,
) -> Recovered:
    with lock:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        counters = json.loads(meta.get("counters", "{}"))
        rows = conn.execute(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE status NOT IN {_FINISHED_SQL} "
            f"UNION ALL SELECT * FROM (SELECT {ORDER_COLUMNS} FROM orders "
            f"WHERE status IN {_FINISHED_SQL} ORDER BY number DESC LIMIT ?)",
            (finished_limit,),
        ).fetchall()
        rows.sort(key=lambda r: r[1])
        orders = _with_tasks_and_events(conn, rows)
        recent = [
            event_from_row(r)
            for r in conn.execute(
                f"SELECT * FROM (SELECT {EVENT_COLUMNS} FROM events ORDER BY seq DESC LIMIT ?) "
                "ORDER BY seq",
                (recent_events,),
            )
        ]
        seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        number = conn.execute("SELECT COALESCE(MAX(number), 0) FROM orders").fetchone()[0]
    return Recovered(resume_point(counters, seq, number, recent), orders)


__all__ = [
    "DEFAULT_DB",
    "SCHEMA_VERSION",
    "JournalLocked",
    "SQLiteJournal",
    "StoreError",
    "make_folder",
    "prune_beside_server",
    "prune_connection",
]
