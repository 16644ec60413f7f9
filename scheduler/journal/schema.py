"""The database schema, its version and the path from every older version to this one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 5


class StoreError(RuntimeError):
    """The database cannot be used; the message names the file and what to do."""


# MIGRATIONS[n] takes a database from version n - 1 to version n. Version 0 is an empty file.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS orders (
            id TEXT PRIMARY KEY,
            number INTEGER NOT NULL,
            workflow TEXT NOT NULL,
            data TEXT NOT NULL,
            idempotency_key TEXT UNIQUE,
            submitted_at REAL NOT NULL,
            status TEXT NOT NULL,
            finished_at REAL
        )""",
        "CREATE INDEX IF NOT EXISTS orders_by_finish ON orders (finished_at)",
        """CREATE TABLE IF NOT EXISTS tasks (
            id TEXT PRIMARY KEY,
            order_id TEXT NOT NULL,
            step TEXT NOT NULL,
            state TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            attempt_open INTEGER NOT NULL,
            reassignments INTEGER NOT NULL,
            runs INTEGER NOT NULL,
            worker TEXT,
            result TEXT,
            error TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS tasks_by_order ON tasks (order_id)",
        """CREATE TABLE IF NOT EXISTS events (
            seq INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            type TEXT NOT NULL,
            order_id TEXT,
            step TEXT,
            worker_id TEXT,
            attempt INTEGER NOT NULL,
            message TEXT NOT NULL,
            duration REAL,
            extra TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS events_by_order ON events (order_id, seq)",
    ],
    # When a retry_wait ends (wall clock), so a restart keeps the backoff.
    2: ["ALTER TABLE tasks ADD COLUMN retry_at REAL"],
    # An order's priority (higher first among ready steps at the same stage).
    3: ["ALTER TABLE orders ADD COLUMN priority INTEGER NOT NULL DEFAULT 0"],
    # How often a task was moved off a worker that died or drained (the dashboard's and the
    # API's moves); orders by number, for listing and searching newest first beyond memory.
    4: [
        "ALTER TABLE tasks ADD COLUMN moves INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX IF NOT EXISTS orders_by_number ON orders (number)",
    ],
    # Searches beyond memory: finished orders newest first (memory holds every unfinished
    # one), and orders of one status newest first. (The partial index's condition is
    # rows.FINISHED_SQL, which a query must repeat for the index to be used.)
    5: [
        "CREATE INDEX IF NOT EXISTS orders_finished_by_number ON orders (number) "
        "WHERE status IN ('cancelled', 'completed', 'failed')",
        "CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, number)",
    ],
}


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Bring the database up to SCHEMA_VERSION; refuse one written by a newer orderflow."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than this orderflow understands "
            f"({SCHEMA_VERSION}). Upgrade orderflow, or point --db at another file."
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        with conn:
            for statement in MIGRATIONS[target]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
    return SCHEMA_VERSION
