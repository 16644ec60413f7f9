"""The threaded runtime around the engine: the `Cluster` facade, thread workers, isolated
subscribers, the log file and process tuning."""

from .. import library_logging  # noqa: F401  (the orderflow logger is quiet by default)
