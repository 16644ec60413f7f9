"""The journal: its interface, the SQLite implementation, the schema and its migrations,
recovery after a restart, and retention."""
