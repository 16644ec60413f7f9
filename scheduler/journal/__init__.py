"""The journal: its interface, one schema and one query layer for SQLite and PostgreSQL with an
engine for each (its connections and what really differs), what `--db` names, the lock that
keeps one scheduler per journal, recovery after a restart, and retention."""

from .. import library_logging  # noqa: F401  (the orderflow logger is quiet by default)
