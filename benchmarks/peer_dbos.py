"""Peer: DBOS Transact on SQLite, on the peers' two workloads (run by benchmarks/peers.py).

Each order is a DBOS workflow of three `@DBOS.step()` calls, durable in a fresh SQLite system
database; the orders go through one DBOS queue whose `worker_concurrency` bounds the steps in
flight, as orderflow's slots do (polled every 50 ms instead of DBOS's default second).

  io    each step a `time.sleep` of the order's seeded 50-250 ms (io_workload.py's table)
  noop  each step returns at once

Prints one JSON line. Without the `dbos` package (the `bench` extra), prints a skip line and
exits 0.

    python benchmarks/peer_dbos.py --workload io|noop [--orders 1000] [--in-flight 256]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import STEPS, emit, peer_arguments  # noqa: E402
from io_workload import durations  # noqa: E402

QUEUE_POLL_S = 0.05


def run(workload: str, orders: int, in_flight: int, seed: int) -> dict:
    import logging

    from dbos import DBOS

    logging.getLogger("dbos").setLevel(logging.WARNING)

    @DBOS.step()
    def wait(seconds: float) -> None:
        time.sleep(seconds)

    @DBOS.step()
    def noop() -> None:
        return None

    @DBOS.workflow()
    def io_order(waits: list[float]) -> None:
        for seconds in waits:
            wait(seconds)

    @DBOS.workflow()
    def noop_order() -> None:
        for _ in STEPS:
            noop()

    with tempfile.TemporaryDirectory() as folder:
        DBOS(config={"name": "peers", "log_level": "WARNING",
                     "system_database_url": f"sqlite:///{folder}/dbos.sqlite"})
        DBOS.launch()
        try:
            queue = DBOS.register_queue("orders", worker_concurrency=in_flight,
                                        polling_interval_sec=QUEUE_POLL_S)
            table = durations(orders, seed) if workload == "io" else None
            start = time.perf_counter()
            if table is not None:
                handles = [queue.enqueue(io_order, list(row)) for row in table]
            else:
                handles = [queue.enqueue(noop_order) for _ in range(orders)]
            for handle in handles:
                handle.get_result()
            elapsed = time.perf_counter() - start
        finally:
            DBOS.destroy()
    return {"peer": "dbos", "workload": workload, "orders": orders, "in_flight": in_flight,
            "seconds": round(elapsed, 3),
            "tasks_per_s": round(orders * len(STEPS) / elapsed, 1)}


def main() -> None:
    args = peer_arguments(__doc__)
    try:
        import dbos  # noqa: F401
    except ImportError:
        emit({"peer": "dbos", "workload": args.workload,
              "skipped": "dbos is not installed (pip install -e '.[bench]')"})
        return
    emit(run(args.workload, args.orders, args.in_flight, args.seed))


if __name__ == "__main__":
    main()
