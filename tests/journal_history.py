"""The journal's schema as released orderflows wrote it, frozen: the statements each version
ran, copied from the code that ran them (scheduler/journal/schema.py and postgres_schema.py
up to commit 99ab38d; since, SQLite's 6 and PostgreSQL's 5: the incidents; SQLite's 7 and
PostgreSQL's 6: the step controls; SQLite's 8 and PostgreSQL's 7: a task's `completed` and
`compensates`, for sagas; SQLite's 9 and PostgreSQL's 8: the schedules; SQLite's 10 and
PostgreSQL's 9: the workflow definitions and an order's version; SQLite's 11 and
PostgreSQL's 10: a task's idempotency key round, for re-runs), never derived
from today's description. Tests build a database of an older version from these and check
that today's orderflow migrates it; were the history in scheduler/journal/schema.py rendered
differently from what really ran, they would fail.

Never edit a released version here; a new version adds its statements."""

from __future__ import annotations

SQLITE: dict[int, list[str]] = {
    1: [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, number INTEGER NOT NULL, "
        "workflow TEXT NOT NULL, data TEXT NOT NULL, idempotency_key TEXT UNIQUE, "
        "submitted_at REAL NOT NULL, status TEXT NOT NULL, finished_at REAL)",
        "CREATE INDEX IF NOT EXISTS orders_by_finish ON orders (finished_at)",
        "CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, order_id TEXT NOT NULL, "
        "step TEXT NOT NULL, state TEXT NOT NULL, attempt INTEGER NOT NULL, "
        "attempt_open INTEGER NOT NULL, reassignments INTEGER NOT NULL, runs INTEGER NOT NULL, "
        "worker TEXT, result TEXT, error TEXT)",
        "CREATE INDEX IF NOT EXISTS tasks_by_order ON tasks (order_id)",
        "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, "
        "type TEXT NOT NULL, order_id TEXT, step TEXT, worker_id TEXT, attempt INTEGER NOT NULL, "
        "message TEXT NOT NULL, duration REAL, extra TEXT)",
        "CREATE INDEX IF NOT EXISTS events_by_order ON events (order_id, seq)",
    ],
    2: ["ALTER TABLE tasks ADD COLUMN retry_at REAL"],
    3: ["ALTER TABLE orders ADD COLUMN priority INTEGER NOT NULL DEFAULT 0"],
    4: [
        "ALTER TABLE tasks ADD COLUMN moves INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX IF NOT EXISTS orders_by_number ON orders (number)",
    ],
    5: [
        "CREATE INDEX IF NOT EXISTS orders_finished_by_number ON orders (number) "
        "WHERE status IN ('cancelled', 'completed', 'failed')",
        "CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, number)",
    ],
    6: [
        "CREATE TABLE IF NOT EXISTS incidents (id INTEGER PRIMARY KEY, ts REAL NOT NULL, "
        "kind TEXT NOT NULL, worker TEXT, message TEXT NOT NULL, detail TEXT NOT NULL)",
    ],
    7: ["CREATE TABLE IF NOT EXISTS step_controls (step TEXT PRIMARY KEY, detail TEXT NOT NULL)"],
    8: [
        "ALTER TABLE tasks ADD COLUMN completed INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE tasks ADD COLUMN compensates TEXT",
        "DROP INDEX orders_finished_by_number",
        "CREATE INDEX IF NOT EXISTS orders_finished_by_number ON orders (number) WHERE status "
        "IN ('cancelled', 'compensated', 'compensation_failed', 'completed', 'failed')",
    ],
    9: ["CREATE TABLE IF NOT EXISTS schedules (name TEXT PRIMARY KEY, detail TEXT NOT NULL)"],
    10: [
        "CREATE TABLE IF NOT EXISTS definitions (key TEXT PRIMARY KEY, workflow TEXT NOT NULL, "
        "version TEXT NOT NULL, body TEXT NOT NULL)",
        "ALTER TABLE orders ADD COLUMN version TEXT",
    ],
    11: ["ALTER TABLE tasks ADD COLUMN key_round INTEGER NOT NULL DEFAULT 0"],
}

# PostgreSQL's `meta` was made before its version was read; version 1 kept a claim token in
# it (the row 'scheduler'), which version 2 removed.
POSTGRESQL_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
POSTGRESQL: dict[int, list[str]] = {
    1: [
        "CREATE TABLE orders (id TEXT PRIMARY KEY, number BIGINT NOT NULL, "
        "workflow TEXT NOT NULL, data TEXT NOT NULL, idempotency_key TEXT UNIQUE, "
        "submitted_at DOUBLE PRECISION NOT NULL, status TEXT NOT NULL, "
        "finished_at DOUBLE PRECISION, priority INTEGER NOT NULL DEFAULT 0)",
        "CREATE INDEX orders_by_finish ON orders (finished_at)",
        "CREATE INDEX orders_by_number ON orders (number)",
        "CREATE TABLE tasks (id TEXT PRIMARY KEY, order_id TEXT NOT NULL, step TEXT NOT NULL, "
        "state TEXT NOT NULL, attempt INTEGER NOT NULL, attempt_open INTEGER NOT NULL, "
        "reassignments INTEGER NOT NULL, runs INTEGER NOT NULL, worker TEXT, result TEXT, "
        "error TEXT, retry_at DOUBLE PRECISION)",
        "CREATE INDEX tasks_by_order ON tasks (order_id)",
        "CREATE TABLE events (seq BIGINT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, "
        "type TEXT NOT NULL, order_id TEXT, step TEXT, worker_id TEXT, "
        "attempt INTEGER NOT NULL, message TEXT NOT NULL, duration DOUBLE PRECISION, "
        "extra TEXT)",
        "CREATE INDEX events_by_order ON events (order_id, seq)",
    ],
    2: [
        "CREATE TABLE leader (id INTEGER PRIMARY KEY CHECK (id = 1), epoch BIGINT NOT NULL, "
        "holder TEXT NOT NULL, url TEXT, pid INTEGER, expires_at TIMESTAMPTZ NOT NULL, "
        "since TIMESTAMPTZ NOT NULL)",
        "INSERT INTO leader VALUES (1, 0, '', NULL, NULL, 'epoch', now())",
        "ALTER TABLE events ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0",
        "DELETE FROM meta WHERE key = 'scheduler'",
    ],
    3: ["ALTER TABLE tasks ADD COLUMN moves INTEGER NOT NULL DEFAULT 0"],
    4: [
        "CREATE INDEX orders_finished_by_number ON orders (number) "
        "WHERE status IN ('cancelled', 'completed', 'failed')",
        "CREATE INDEX orders_by_status ON orders (status, number)",
    ],
    5: [
        "CREATE TABLE incidents (id BIGINT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, "
        "kind TEXT NOT NULL, worker TEXT, message TEXT NOT NULL, detail TEXT NOT NULL)",
    ],
    6: ["CREATE TABLE step_controls (step TEXT PRIMARY KEY, detail TEXT NOT NULL)"],
    7: [
        "ALTER TABLE tasks ADD COLUMN completed BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE tasks ADD COLUMN compensates TEXT",
        "DROP INDEX orders_finished_by_number",
        "CREATE INDEX orders_finished_by_number ON orders (number) WHERE status "
        "IN ('cancelled', 'compensated', 'compensation_failed', 'completed', 'failed')",
    ],
    8: ["CREATE TABLE schedules (name TEXT PRIMARY KEY, detail TEXT NOT NULL)"],
    9: [
        "CREATE TABLE definitions (key TEXT PRIMARY KEY, workflow TEXT NOT NULL, "
        "version TEXT NOT NULL, body TEXT NOT NULL)",
        "ALTER TABLE orders ADD COLUMN version TEXT",
    ],
    10: ["ALTER TABLE tasks ADD COLUMN key_round INTEGER NOT NULL DEFAULT 0"],
}


def sqlite_at(path, version: int) -> None:
    """An SQLite journal file at `version`, as that version's orderflow left it."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        for v in range(1, version + 1):
            for statement in SQLITE[v]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.commit()
    finally:
        conn.close()


def postgresql_at(url: str, version: int) -> None:
    """A PostgreSQL journal database at `version`, as that version's orderflow left it (at
    version 1 with its claim token in meta)."""
    from ha import sql

    if version == 0:
        return
    sql(url, POSTGRESQL_META)
    for v in range(1, version + 1):
        for statement in POSTGRESQL[v]:
            sql(url, statement)
        if v == 1:
            sql(url, "INSERT INTO meta VALUES ('scheduler', 'the claim token of version 1')")
    sql(url, "INSERT INTO meta VALUES ('schema_version', %s)", str(version))
