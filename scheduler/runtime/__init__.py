"""The threaded runtime around the engine: the `Cluster` facade, thread workers, isolated
subscribers, the log file and process tuning."""
