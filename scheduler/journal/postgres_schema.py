"""The PostgreSQL journal's schema, its version and the path from every older version.

The same tables as SQLite's (`schema.py`: meta, orders, tasks, events, with the columns the row
encoder in `rows.py` writes), in PostgreSQL's types. Its version is a row of `meta`
(`schema_version`), numbered on its own: version 1 is SQLite's version 3, version 3 its version
4 (tasks.moves), version 4 its version 5 (the search indexes). Migrations run in one
transaction under an advisory lock, so two servers starting at once migrate once.

Version 2 is for several servers on one database (failover): the `leader` table, one row
holding the leadership lease (its epoch, which only grows, the holder, its URL, the backend
pid of the holder's lease session and the expiry, on the database's clock; see
`postgres_lease.py`), and each event's `epoch`, the lease under which it was committed: along
`seq` epochs never go down, which is how a check sees that no deposed leader wrote between
its successor's writes.
"""

from __future__ import annotations

from .schema import StoreError

SCHEMA_VERSION = 4
# pg_advisory_xact_lock key held while migrating ("ordm").
MIGRATION_LOCK = 0x6F72646D

# MIGRATIONS[n] takes a database from version n - 1 to version n. Version 0: no tables yet.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE orders (
            id TEXT PRIMARY KEY,
            number BIGINT NOT NULL,
            workflow TEXT NOT NULL,
            data TEXT NOT NULL,
            idempotency_key TEXT UNIQUE,
            submitted_at DOUBLE PRECISION NOT NULL,
            status TEXT NOT NULL,
            finished_at DOUBLE PRECISION,
            priority INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX orders_by_finish ON orders (finished_at)",
        "CREATE INDEX orders_by_number ON orders (number)",
        """CREATE TABLE tasks (
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
            error TEXT,
            retry_at DOUBLE PRECISION
        )""",
        "CREATE INDEX tasks_by_order ON tasks (order_id)",
        """CREATE TABLE events (
            seq BIGINT PRIMARY KEY,
            ts DOUBLE PRECISION NOT NULL,
            type TEXT NOT NULL,
            order_id TEXT,
            step TEXT,
            worker_id TEXT,
            attempt INTEGER NOT NULL,
            message TEXT NOT NULL,
            duration DOUBLE PRECISION,
            extra TEXT
        )""",
        "CREATE INDEX events_by_order ON events (order_id, seq)",
    ],
    2: [
        """CREATE TABLE leader (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            epoch BIGINT NOT NULL,
            holder TEXT NOT NULL,
            url TEXT,
            pid INTEGER,
            expires_at TIMESTAMPTZ NOT NULL,
            since TIMESTAMPTZ NOT NULL
        )""",
        # Epoch 0: nobody has led yet; the lease is free.
        "INSERT INTO leader VALUES (1, 0, '', NULL, NULL, 'epoch', now())",
        "ALTER TABLE events ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0",
        # The claim of version 1 (an advisory lock and this token) is replaced by the lease.
        "DELETE FROM meta WHERE key = 'scheduler'",
    ],
    # How often a task was moved off a worker that died or drained (the dashboard's and the
    # API's moves).
    3: ["ALTER TABLE tasks ADD COLUMN moves INTEGER NOT NULL DEFAULT 0"],
    # Searches beyond memory: finished orders newest first (memory holds every unfinished
    # one), and orders of one status newest first (as SQLite's version 5).
    4: [
        "CREATE INDEX orders_finished_by_number ON orders (number) "
        "WHERE status IN ('cancelled', 'completed', 'failed')",
        "CREATE INDEX orders_by_status ON orders (status, number)",
    ],
}


def migrate(conn, name: str) -> int:
    """Bring the database up to SCHEMA_VERSION (in one transaction); refuse one written by a
    newer orderflow. `conn` is a psycopg connection in autocommit mode."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{name} has schema version {version}, newer than this orderflow understands "
                f"({SCHEMA_VERSION}). Upgrade orderflow, or point --db at another database."
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target]:
                conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (str(SCHEMA_VERSION),),
            )
    return SCHEMA_VERSION
