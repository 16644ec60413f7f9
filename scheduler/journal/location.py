"""Where a journal lives: `--db` (or ORDERFLOW_DB) as a file path or a `postgresql://` URL.

The one place that tells the two apart and opens the right journal, so the server, `orderflow
prune` and the invariant checker agree. A value that looks like a URL (`scheme://...`) with
any other scheme is an error naming the supported ones, never a file name: `mysql://host/db`
would otherwise become a folder `mysql:` with an SQLite file in it.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.definitions import DefinitionConflict, Definitions
from ..engine.workflow import Workflow
from .lock import FileLock, JournalLocked
from .schema import StoreError

if TYPE_CHECKING:
    from .base import Journal
    from .lease import Term

POSTGRES_SCHEMES = ("postgresql", "postgres")
SUPPORTED = "a file path (SQLite) or a postgresql://user@host:port/database URL"
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_PASSWORD_IN_NETLOC = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/@]*@")
_PASSWORD_IN_QUERY = re.compile(r"(?i)([?&]password=)[^&]*")


class BadLocation(StoreError):
    """`--db` names no journal orderflow can open."""


def redact(url: str) -> str:
    """The URL with any password replaced by ***, fit for logs and error messages."""
    url = _PASSWORD_IN_NETLOC.sub(r"\1:***@", url)
    return _PASSWORD_IN_QUERY.sub(r"\1***", url)


@dataclass(frozen=True)
class Location:
    """A parsed `--db`: `kind` is "sqlite" (target: a path) or "postgresql" (a URL)."""

    kind: str
    target: str

    @property
    def name(self) -> str:
        """What messages call it (no password)."""
        return redact(self.target) if self.kind == "postgresql" else self.target

    @property
    def is_url(self) -> bool:
        return self.kind != "sqlite"


def parse_location(text: str) -> Location:
    """`--db` as a Location; BadLocation for an empty value or a URL of an unknown scheme."""
    if not text or not text.strip():
        raise BadLocation(f"--db is empty: give {SUPPORTED}")
    match = _URL.match(text)
    if match is None:
        return Location("sqlite", text)
    scheme = match.group(1).lower()
    if scheme in POSTGRES_SCHEMES:
        return Location("postgresql", text)
    raise BadLocation(
        f"--db {redact(text)}: unsupported scheme {scheme}://; use {SUPPORTED}"
    )


def open_journal(location: Location, lock: FileLock | None = None,
                 term: Term | None = None) -> Journal:
    """The journal at `location`, opened as its only scheduler. `lock`: the SQLite file's
    lock, when the caller already holds it for its whole life (`orderflow serve`). `term`: on
    PostgreSQL, the leadership term it writes under (`orderflow serve`'s elector); without
    one it takes the lease itself, for its life."""
    if location.kind == "postgresql":
        return _postgres().PostgresJournal(location.target, term=term)
    from .sqlite import SQLiteJournal

    return SQLiteJournal(location.target, lock=lock)


def check_journal(location: Location, lock: FileLock | None = None) -> None:
    """Open (creating or migrating it) and close the journal at `location`, without leading
    it: a bad database is a StoreError before a server starts."""
    if location.kind == "postgresql":
        _postgres().PostgresJournal(location.target, claim=False).close()
    else:
        open_journal(location, lock).close()


def check_definitions(location: Location, workflows: Iterable[Workflow]) -> None:
    """StoreError naming a workflow version the journal keeps with another shape than
    `workflows` (an app that changed a workflow but kept its version): orders pinned to it
    would run a DAG they were not submitted under. Before a server starts."""
    from .rows import DEFINITION_COLUMNS, definition_from_row

    with read_connection(location) as conn:
        kept = [definition_from_row(r) for r in conn.execute(
            f"SELECT {DEFINITION_COLUMNS} FROM definitions")]
    try:
        Definitions({w.name: w for w in workflows}).learn(kept)
    except DefinitionConflict as exc:
        raise StoreError(f"{location.name}: {exc}") from None


def lease_store(location: Location, settings, url: str | None = None):
    """The leadership lease of a PostgreSQL journal, for `orderflow serve`'s elector (None
    for SQLite: one server per file, held by the file lock)."""
    if location.kind != "postgresql":
        return None
    return _postgres().lease_store(location.target, settings, url)


def hold_for_process(location: Location) -> FileLock | None:
    """For `orderflow serve`: take an SQLite journal's lock for the rest of this process's
    life (never released by hand; the kernel does it when the process ends, however it
    ends). JournalLocked, naming the holder's pid, if another process has it. None for
    PostgreSQL, whose servers share the database under a leadership lease."""
    if location.kind != "sqlite":
        return None
    from .sqlite import make_folder

    make_folder(Path(location.target))
    return FileLock.acquire(location.target)


def prune_location(location: Location, before_wall: float) -> tuple[dict, str]:
    """`orderflow prune`: remove finished orders finished before the cutoff. Returns what
    was removed and a note on how. A journal a server holds is pruned beside it."""
    if location.kind == "postgresql":
        # PostgreSQL takes concurrent writers as they come: no leadership needed.
        journal = _postgres().PostgresJournal(location.target, claim=False)
        try:
            return journal.prune(before_wall), ""
        finally:
            journal.close()
    from .sqlite import SQLiteJournal, make_folder, prune_beside_server

    make_folder(Path(location.target))
    try:
        lock = FileLock.acquire(location.target)
    except JournalLocked as held:
        removed = prune_beside_server(location.target, before_wall)
        return removed, f" (through a second connection: {held.holder})"
    try:
        journal = SQLiteJournal(location.target, lock=lock)
        try:
            return journal.prune(before_wall), ""
        finally:
            journal.close()
    finally:
        lock.release()


@contextmanager
def read_connection(location: Location) -> Iterator[Any]:
    """A read-only connection to the journal's database (sqlite3 or psycopg; both answer
    `conn.execute(sql)` with rows), closed at the end. Safe while a server writes."""
    if location.kind == "postgresql":
        psycopg = _postgres().psycopg
        try:
            conn = psycopg.connect(location.target, connect_timeout=10)
            # Every read in one snapshot (the transaction is rolled back at close).
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {location.name}: {_one_line(exc)}") from None
    else:
        path = Path(location.target)
        if not path.exists():
            raise StoreError(f"{path} does not exist")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()


def _postgres():
    """The PostgreSQL journal's module, which needs psycopg (the `postgres` extra): only
    loaded for a postgresql:// URL; its absence is a StoreError saying how to install it."""
    try:
        from . import postgres
    except ImportError as exc:
        raise StoreError(
            f"a postgresql:// journal needs psycopg ({exc}): pip install 'orderflow[postgres]'"
        ) from None
    return postgres


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
