"""The journal's one schema description (scheduler/journal/schema.py) against the databases
it makes: a database migrated from nothing, and one of every older version as that version's
orderflow left it (tests/journal_history.py) and migrated now, must be the description
rendered directly: the same tables, columns (names, order, types, constraints) and indexes
(partial ones with their condition), read back from the database's own catalog, on SQLite and
on PostgreSQL. So neither the description nor the history can drift from the other."""

from __future__ import annotations

import sqlite3

import journal_history
import pytest
from ha import sql

from scheduler.journal import schema
from scheduler.journal.dialect import POSTGRESQL, SQLITE
from scheduler.journal.sqlite import SCHEMA_VERSION, SQLiteJournal


def sqlite_catalog(path) -> dict:
    """Tables, their columns (name, type, not null, default, primary key) and their indexes
    (table, columns, unique, origin, partial condition), as SQLite reports them."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        columns = {t: [tuple(r[1:]) for r in conn.execute(f"PRAGMA table_info({t})")]
                   for t in tables}
        indexes = {}
        for table in tables:
            for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
                (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?",
                                      (name,)).fetchone()
                where = sql.split(" WHERE ", 1)[1] if partial else None
                names = tuple(r[2] for r in conn.execute(f"PRAGMA index_info({name})"))
                indexes[name] = (table, names, unique, origin, where)
        return {"columns": columns, "indexes": indexes}
    finally:
        conn.close()


def described_sqlite(tmp_path) -> dict:
    """The catalog of the description rendered directly (not through its history)."""
    path = tmp_path / "described.db"
    conn = sqlite3.connect(path)
    for statement in schema.create_statements(SQLITE):
        conn.execute(statement)
    conn.close()
    return sqlite_catalog(path)


def test_each_dialect_renders_only_its_own_tables_and_columns():
    sqlite_ddl = " ".join(schema.create_statements(SQLITE))
    pg_ddl = " ".join(schema.create_statements(POSTGRESQL))
    # The lease and each event's epoch are PostgreSQL's alone; so are its type names.
    assert "leader" not in sqlite_ddl and "epoch" not in sqlite_ddl
    assert "CREATE TABLE leader (id INTEGER PRIMARY KEY CHECK (id = 1)" in pg_ddl
    assert "epoch BIGINT NOT NULL DEFAULT 0" in pg_ddl
    assert "seq INTEGER PRIMARY KEY" in sqlite_ddl  # SQLite's rowid: not BIGINT
    assert "DOUBLE PRECISION" in pg_ddl and "DOUBLE PRECISION" not in sqlite_ddl


def test_a_new_sqlite_journal_is_its_schema_description(tmp_path):
    db = tmp_path / "fresh.db"
    SQLiteJournal(db).close()
    found = sqlite_catalog(db)
    assert found == described_sqlite(tmp_path)
    for table in schema.TABLES:
        if "sqlite" in table.dialects:
            assert [c[0] for c in found["columns"][table.name]] == [
                c.name for c in table.columns_of(SQLITE)]
            assert [c[1] for c in found["columns"][table.name]] == [
                SQLITE.type_of(c.type) for c in table.columns_of(SQLITE)]
    named = {n: v[:2] + (v[4],) for n, v in found["indexes"].items() if v[3] == "c"}
    assert named == {i.name: (i.table, i.columns, i.where) for i in schema.INDEXES}


def test_the_frozen_history_reaches_the_current_versions():
    # A new schema version adds its statements to tests/journal_history.py as well, so the
    # tests below build databases of it too.
    assert max(journal_history.SQLITE) == schema.version(SQLITE) == SCHEMA_VERSION
    assert max(journal_history.POSTGRESQL) == schema.version(POSTGRESQL)


@pytest.mark.parametrize("version", range(0, SCHEMA_VERSION + 1))
def test_an_sqlite_journal_of_every_version_migrates_to_the_description(tmp_path, version):
    db = tmp_path / f"v{version}.db"
    journal_history.sqlite_at(db, version)
    SQLiteJournal(db).close()
    assert sqlite_catalog(db) == described_sqlite(tmp_path)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


def test_an_sqlite_migration_that_fails_half_way_is_undone_and_runs_again(tmp_path,
                                                                          monkeypatch):
    # DDL in SQLite is transactional, but Python's sqlite3 opens no transaction for it by
    # itself: a version's statements run in one the migration opens. Before, a version that
    # failed after its ALTER TABLE (a full disk, a crash) kept the new column at the old
    # version number, and every later start failed on "duplicate column name".
    db = tmp_path / "v3.db"
    journal_history.sqlite_at(db, 3)
    real = schema.migrations

    def failing_at_the_end_of_version_4(dialect):
        steps = real(dialect)
        steps[4] = [*steps[4], "THIS IS NOT SQL"]
        return steps

    monkeypatch.setattr(schema, "migrations", failing_at_the_end_of_version_4)
    with pytest.raises(schema.StoreError, match="not a usable orderflow database"):
        SQLiteJournal(db)
    monkeypatch.undo()
    half = sqlite_catalog(db)
    assert "moves" not in [c[0] for c in half["columns"]["tasks"]]
    assert "orders_by_number" not in half["indexes"]
    SQLiteJournal(db).close()
    assert sqlite_catalog(db) == described_sqlite(tmp_path)


# ---------------------------------------------------------------- PostgreSQL

def pg_catalog(url: str) -> dict:
    """Columns (type, nullable, default, position), constraints and indexes (PostgreSQL's
    own definitions) of the tables in the database's schema."""
    columns = sql(url, "SELECT table_name, column_name, data_type, is_nullable, "
                       "column_default, ordinal_position FROM information_schema.columns "
                       "WHERE table_schema = current_schema() "
                       "ORDER BY table_name, ordinal_position")
    constraints = sql(url, "SELECT conrelid::regclass::text, conname, "
                           "pg_get_constraintdef(oid) FROM pg_constraint "
                           "WHERE connamespace = current_schema()::regnamespace ORDER BY 1, 2")
    indexes = sql(url, "SELECT tablename, indexname, indexdef FROM pg_indexes "
                       "WHERE schemaname = current_schema() ORDER BY 1, 2")
    return {"columns": columns, "constraints": constraints, "indexes": indexes}


@pytest.fixture
def described_pg(postgres) -> dict:
    """The catalog of the description rendered directly, in a database of its own."""
    url = postgres.emptied_database("orderflow_described")
    for statement in schema.create_statements(POSTGRESQL):
        sql(url, statement)
    return pg_catalog(url)


@pytest.mark.slow
def test_a_new_postgresql_journal_is_its_schema_description(pg_url, described_pg):
    from scheduler.journal.postgres import PostgresJournal

    PostgresJournal(pg_url, claim=False).close()
    found = pg_catalog(pg_url)
    assert found == described_pg
    by_table: dict[str, list[str]] = {}
    for table, column, *_ in found["columns"]:
        by_table.setdefault(table, []).append(column)
    assert by_table == {t.name: [c.name for c in t.columns_of(POSTGRESQL)]
                        for t in schema.TABLES}
    named = {name for _, name, _ in found["indexes"]
             if not name.endswith(("_pkey", "_key"))}
    assert named == {i.name for i in schema.INDEXES}


@pytest.mark.slow
@pytest.mark.parametrize("version", range(0, schema.version(POSTGRESQL) + 1))
def test_a_postgresql_journal_of_every_version_migrates_to_the_description(
        pg_url, described_pg, version):
    from scheduler.journal.postgres import SCHEMA_VERSION as PG_VERSION
    from scheduler.journal.postgres import PostgresJournal

    journal_history.postgresql_at(pg_url, version)
    PostgresJournal(pg_url, claim=False).close()
    assert pg_catalog(pg_url) == described_pg
    assert sql(pg_url, "SELECT key, value FROM meta ORDER BY key") == [
        ("schema_version", str(PG_VERSION))]  # version 1's claim token is gone
    assert sql(pg_url, "SELECT id, epoch, holder FROM leader") == [(1, 0, "")]
