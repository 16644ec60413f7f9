"""The durable journal: orders, tasks and every event in SQLite (WAL mode).

The writer thread (`writer.GroupWriter`) owns the write connection and commits in groups;
reads (recovery, orders forgotten from memory, stories) use a second connection, and order
searches a third (WAL lets readers run beside the writer and each other: a long search
delays neither commits nor the lookups a submit makes). The file is
watched: deleted or replaced under a running server, it is reported at once and nothing more
is acknowledged. The statements are the query layer's (`queries.py`, in SQLite's dialect);
this module holds the connections, the file's checks and its migration (PRAGMA user_version).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from ..engine.errors import UnstorableText
from .dialect import SQLITE
from .lock import FileLock, JournalLocked
from .queries import COUNTERS, Queries
from .rows import event_row, order_row, task_row
from .schema import StoreError, pending, version
from .sql_journal import SEARCH, SQLJournal
from .writer import Batch, GroupWriter, JournalLost

log = logging.getLogger("orderflow.store")
# Where `orderflow serve` and `orderflow prune` keep the journal unless told otherwise.
DEFAULT_DB = "logs/orderflow.db"
SCHEMA_VERSION = version(SQLITE)
QUERIES = Queries(SQLITE)
# Finished orders removed per transaction when pruning: a server writing the same file (from
# its own process, see `prune_beside_server`) waits for one chunk at most, never the whole prune.
PRUNE_CHUNK = 2_000


class SQLiteJournal(SQLJournal):
    """The journal in one SQLite file: group commit by a `GroupWriter`, reads on a second
    connection, searches on a third, and a watch on the file itself (deleted or replaced:
    `JournalLost`)."""

    _queries = QUERIES
    prune_chunk = PRUNE_CHUNK

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

    # ------------------------------------------------------------ connections

    @contextmanager
    def _reading(self, kind: str) -> Iterator[sqlite3.Connection]:
        """Searches take turns on their own connection; every other read on the read
        connection (WAL lets both run beside the writer)."""
        conn, guard = ((self._search, self._search_lock) if kind == SEARCH
                       else (self._read, self._read_lock))
        with guard:
            yield conn

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return _transaction(self._write)

    # ------------------------------------------------------------ writer thread

    def _commit(self, batch: Batch) -> None:
        """One group commit in one transaction (GroupWriter retries it if it raises)."""
        conn, insert = self._write, QUERIES.insert
        with conn:
            conn.executemany(insert["orders"], map(order_row, batch.order_records))
            conn.executemany(insert["tasks"], map(task_row, batch.task_records))
            conn.executemany(insert["events"], map(event_row, batch.events))
            QUERIES.write_incidents(conn, batch)
            conn.execute(QUERIES.set_meta, (COUNTERS, batch.counters))

    def _commit_each(self, batch: Batch) -> list[tuple[str, str]]:
        """The batch row by row in one transaction, each row in a savepoint of its own: a
        row the database refuses is left out alone. Returns what was left out, and why, as
        (table, what)."""
        with _transaction(self._write) as conn:
            return QUERIES.write_each(conn, batch, REFUSALS)

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
            if exc is None and self._conn.in_transaction:
                # Filling a temp table (the ids a query reads by) opened a transaction: end
                # it, or this reader would keep seeing the database as it was now.
                try:
                    self._conn.commit()
                except sqlite3.Error as failed:
                    exc = failed
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


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Bring the database up to SCHEMA_VERSION, one transaction per version (its number in
    PRAGMA user_version); refuse one written by a newer orderflow."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    for target, statements in pending(SQLITE, found, str(path), "file"):
        with conn:
            conn.execute("BEGIN")  # DDL too: a step half done is undone, never kept
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
    return SCHEMA_VERSION


def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    """A damaged page must stop the start, not a worker thread hours later. quick_check
    reads every page once (about a second per 200 MB here) but skips the slow index
    cross-checks of integrity_check."""
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as exc:  # damage the check itself trips over
        problems = [str(exc)]
    if problems != ["ok"]:
        # One line: SQLite's report may span several ("*** in database main ***\nTree 11").
        said = "; ".join(" ".join(problem.split()) for problem in problems)
        raise StoreError(
            f"{path} is damaged ({said}). Move it aside and restart to begin "
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


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on `conn`, committed at the end (rolled back on an error). It
    takes the file's write lock at once, so what it reads first is what it writes against."""
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        yield conn


def prune_connection(conn: sqlite3.Connection, before_wall: float) -> dict:
    """Delete finished orders (with their tasks and events) finished before the cutoff, in
    transactions of PRUNE_CHUNK orders."""
    return QUERIES.prune(lambda: _transaction(conn), before_wall, PRUNE_CHUNK)


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
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found != SCHEMA_VERSION:
            raise StoreError(
                f"{path} has schema version {found} and its server another orderflow's "
                f"({SCHEMA_VERSION} here): prune with the server's own orderflow, or stop it"
            )
        return prune_connection(conn, before_wall)
    except sqlite3.Error as exc:
        raise StoreError(f"could not prune {path}: {exc}") from None
    finally:
        conn.close()


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
