"""What differs between SQLite's and PostgreSQL's SQL, and nothing else.

The schema (`schema.py`) and the queries (`queries.py`) are written once; a `Dialect` fills in
the few words the two databases spell differently: the parameter marker, the case-insensitive
LIKE, reading a key of the JSON in a text column (or of each object of a JSON list), type
names, the index hint SQLite needs to read finished orders through their partial index, and
how a query is handed a list of order ids. What both accept alike (`INSERT ... ON CONFLICT
(...) DO UPDATE SET c = excluded.c`, `RETURNING`, `COALESCE`) is written once in the
queries, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# The logical column types of the schema description.
TEXT, INTEGER, BIGINT, REAL, TIMESTAMP = "text", "integer", "bigint", "real", "timestamp"


@dataclass(frozen=True)
class Dialect:
    """One database's spelling of what the schema and the queries say once."""

    name: str  # "sqlite" or "postgresql": the key of a schema step's version
    param: str  # the parameter marker of its driver (sqlite3: ?, psycopg: %s)
    ilike: str  # a case-insensitive LIKE
    json_text: str  # reads key {key} of the JSON text in column {column}, as text
    # Rows of `value`: key {field}, as text, of each object in the list at key {key} of the
    # JSON text in column {column} (an order's items' SKUs).
    json_list_text: str
    types: dict[str, str]  # logical type -> the database's type name
    # CREATE TABLE / INDEX of a migration step say IF NOT EXISTS (as SQLite's history always
    # did; PostgreSQL's fails on a table of the same name, which is how a database that is not
    # orderflow's is refused).
    if_not_exists: bool
    # Whether a query must name the index to read through (SQLite: `INDEXED BY`, or its
    # planner sorts every finished order; PostgreSQL's planner finds the index itself).
    names_index: bool
    # Whether a list goes in as one parameter (PostgreSQL's arrays; SQLite has none).
    arrays: bool

    def type_of(self, logical: str) -> str:
        """The database's name for a logical column type."""
        return self.types[logical]

    def json_field(self, column: str, key: str) -> str:
        """`column`'s JSON text's `key`, as text (`key` is ours, never a user's)."""
        return self.json_text.format(column=column, key=key)

    def json_list_field(self, column: str, key: str, field: str) -> str:
        """A SELECT of `field` (as `value`) of each object in the list at `key` of `column`'s
        JSON text, for an EXISTS (the names are ours, never a user's)."""
        return self.json_list_text.format(column=column, key=key, field=field)

    def index_hint(self, index: str) -> str:
        """What follows `FROM table` to read it through `index` ("" where not needed)."""
        return f"INDEXED BY {index}" if self.names_index else ""

    @contextmanager
    def ids(self, conn: Any, ids: Sequence[str]
            ) -> Iterator[tuple[Callable[[str], str], tuple]]:
        """`among(column)`, the condition "`column` is one of `ids`", and its parameters,
        valid inside the `with`. PostgreSQL takes the list as one array parameter; SQLite has
        no arrays and caps a statement's parameters, so the ids go into a temporary table of
        the connection (filling it opens a transaction: the caller commits or rolls back)."""
        if self.arrays:
            yield (lambda column: f"{column} = ANY({self.param})"), (list(ids),)
            return
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS chosen_ids (id TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM chosen_ids")
        conn.executemany(f"INSERT INTO chosen_ids VALUES ({self.param})", [(i,) for i in ids])
        yield (lambda column: f"{column} IN (SELECT id FROM chosen_ids)"), ()
        conn.execute("DELETE FROM chosen_ids")  # (on failure, the rollback empties it)


SQLITE = Dialect(
    name="sqlite",
    param="?",
    ilike="LIKE",  # SQLite's LIKE ignores case (of ASCII letters)
    json_text="json_extract({column}, '$.{key}')",
    json_list_text=("SELECT json_extract(value, '$.{field}') AS value "
                    "FROM json_each({column}, '$.{key}')"),
    # INTEGER for every integer: `seq INTEGER PRIMARY KEY` is the table's rowid.
    types={TEXT: "TEXT", INTEGER: "INTEGER", BIGINT: "INTEGER", REAL: "REAL",
           TIMESTAMP: "TEXT"},
    if_not_exists=True,
    names_index=True,
    arrays=False,
)

POSTGRESQL = Dialect(
    name="postgresql",
    param="%s",
    ilike="ILIKE",
    json_text="({column}::jsonb ->> '{key}')",
    json_list_text=("SELECT element ->> '{field}' AS value "
                    "FROM jsonb_array_elements({column}::jsonb -> '{key}') AS element"),
    types={TEXT: "TEXT", INTEGER: "INTEGER", BIGINT: "BIGINT", REAL: "DOUBLE PRECISION",
           TIMESTAMP: "TIMESTAMPTZ"},
    if_not_exists=False,
    names_index=False,
    arrays=True,
)

DIALECTS = {d.name: d for d in (SQLITE, POSTGRESQL)}
