"""The journal: its interface, the SQLite and PostgreSQL implementations (each with its schema
and migrations), what `--db` names, the lock that keeps one scheduler per journal, recovery
after a restart, and retention."""

from .. import library_logging  # noqa: F401  (the orderflow logger is quiet by default)
