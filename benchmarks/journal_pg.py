"""Journal throughput on PostgreSQL next to SQLite, in the same run on the same machine.

The throughput workload (N orders x payment -> packing -> shipping, no-op handlers, 8 workers,
all submitted at once) with each journal, each run in a fresh process, interleaved:
  sqlite      the SQLite journal (WAL, synchronous=FULL: the default)
  postgresql  the PostgreSQL journal on a throwaway local server (tests/pg.py) with
              PostgreSQL's durable defaults: fsync on, synchronous_commit on
and prints one JSON line with orders/s, tasks/s, p50/p99 order latency, group commits and
events per commit, and the ratio postgresql/sqlite (target: >= 0.5).

    python benchmarks/journal_pg.py [--orders 20000] [--workers 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' throwaway PostgreSQL server
from common import NOOP_HANDLERS, emit, rate_figures, run_child, run_orders  # noqa: E402

MODES = ("sqlite", "postgresql")
TARGET = 0.5  # postgresql tasks/s >= 0.5 x sqlite's


def measure(orders: int, workers: int, db: str) -> dict:
    """One run of the workload with the journal at `db`; counts the group commits too."""
    from scheduler import Cluster
    from scheduler.journal.location import open_journal, parse_location

    journal = open_journal(parse_location(db))
    commits = {"n": 0, "events": 0}
    write = journal._writer._write

    def counted(batch):
        write(batch)
        commits["n"] += 1
        commits["events"] += len(batch.events)

    journal._writer._write = counted
    cluster = Cluster(workers=workers, handlers=NOOP_HANDLERS, journal=journal,
                      event_history=200_000, finished_order_history=orders)
    cluster.start()
    elapsed, latencies = run_orders(cluster, orders)
    return {
        **rate_figures(orders, elapsed, latencies),
        "group_commits": commits["n"],
        "events_per_commit": round(commits["events"] / max(1, commits["n"]), 1),
    }


def median(results: list[dict]) -> dict:
    """The run with the median tasks/s (its other figures go with it)."""
    ordered = sorted(results, key=lambda r: r["tasks_per_s"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["tasks_per_s_all"] = [r["tasks_per_s"] for r in results]
    chosen["spread"] = round(
        statistics.pstdev(chosen["tasks_per_s_all"]) / chosen["tasks_per_s"], 3)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per journal, interleaved; the median counts")
    parser.add_argument("--child", metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        from scheduler.runtime.tuning import tune_gc

        tune_gc()  # as `orderflow serve` runs
        emit(measure(args.orders, args.workers, args.child))
        return

    from pg import PostgresServer, missing

    reason = missing()
    if reason is not None:
        emit({"benchmark": "journal_pg", "skipped": reason})
        return
    server = PostgresServer().start()  # PostgreSQL's defaults: fsync and synchronous_commit on
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    try:
        with tempfile.TemporaryDirectory() as folder:
            for i in range(args.repeat):
                for mode in MODES:  # interleaved, so drift of the machine hits both alike
                    db = (str(Path(folder) / f"bench{i}.db") if mode == "sqlite"
                          else server.emptied_database("bench"))
                    runs[mode].append(run_child(
                        "journal_pg.py", "--child", db, "--orders", str(args.orders),
                        "--workers", str(args.workers)))
        version = server.sql("SHOW server_version")[0][0]
    finally:
        server.stop()
    figures = {mode: median(results) for mode, results in runs.items()}
    ratio = figures["postgresql"]["tasks_per_s"] / figures["sqlite"]["tasks_per_s"]
    emit({
        "benchmark": "journal_pg",
        "date": time.strftime("%Y-%m-%d"),
        "orders": args.orders,
        "workers": args.workers,
        "repeat": args.repeat,
        "postgresql_version": version,
        **figures,
        "postgresql_vs_sqlite": round(ratio, 3),
        "target": TARGET,
        "met": ratio >= TARGET,
    })


if __name__ == "__main__":
    main()
