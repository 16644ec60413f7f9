"""The pure engine: every scheduling decision, with time passed in. Standard library only; no
threads, clocks, sockets or files (import-linter holds it to that)."""
