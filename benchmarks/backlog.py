"""Backlog: a server full to the unfinished-order cap, its memory, and how long a restart takes.

One child process fills a journal with `--orders` unfinished orders (the default cap,
`ClusterConfig.max_unfinished_orders`; no workers, so nothing finishes) in bulks of 10,000
and reports its RSS; a second, fresh process opens the same journal and reports how long
`Cluster.start()` took to reload the backlog, and its RSS. Baseline in the same run: the
same restart with an empty journal. Prints one JSON line.

    python benchmarks/backlog.py [--orders 50000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ORDER, current_rss_mb, emit, peak_rss_mb, run_child  # noqa: E402

# Targets from the hardening issue: a restart with a full backlog within this many seconds.
RESTART_TARGET_S = 10.0


def fill(db: str, orders: int) -> dict:
    from scheduler import Cluster
    from scheduler.journal.sqlite import SQLiteJournal
    from scheduler.runtime.tuning import tune_gc

    tune_gc()
    cluster = Cluster(workers=0, journal=SQLiteJournal(db), max_unfinished_orders=orders).start()
    start = time.perf_counter()
    left = orders
    while left:
        batch = min(10_000, left)
        cluster.submit_many([ORDER] * batch)
        left -= batch
    took = time.perf_counter() - start
    rss = current_rss_mb()
    cluster.stop()
    return {"orders": orders, "fill_s": round(took, 2), "rss_full_mb": round(rss, 1)}


def restart(db: str, orders: int) -> dict:
    from scheduler import Cluster
    from scheduler.journal.sqlite import SQLiteJournal
    from scheduler.runtime.tuning import tune_gc

    tune_gc()
    start = time.perf_counter()
    cluster = Cluster(workers=0, journal=SQLiteJournal(db), max_unfinished_orders=orders)
    cluster.start()
    took = time.perf_counter() - start
    unfinished = cluster.stats()["orders"]["pending"]
    rss = current_rss_mb()
    cluster.stop()
    return {
        "restart_s": round(took, 2),
        "unfinished_after_restart": unfinished,
        "rss_after_restart_mb": round(rss, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def main() -> None:
    from scheduler import ClusterConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=ClusterConfig.max_unfinished_orders)
    parser.add_argument("--child", choices=["fill", "restart"])
    parser.add_argument("--db")
    args = parser.parse_args()
    if args.child == "fill":
        emit(fill(args.db, args.orders))
        return
    if args.child == "restart":
        emit(restart(args.db, args.orders))
        return
    with tempfile.TemporaryDirectory() as tmp:
        empty = str(Path(tmp) / "empty.db")
        baseline = run_child("backlog.py", "--child", "restart", "--db", empty, "--orders", "1")
        db = str(Path(tmp) / "full.db")
        filled = run_child("backlog.py", "--child", "fill", "--db", db,
                           "--orders", str(args.orders))
        again = run_child("backlog.py", "--child", "restart", "--db", db,
                          "--orders", str(args.orders))
        size_mb = Path(db).stat().st_size / 2**20
    emit({
        "benchmark": "backlog",
        **filled,
        "db_mb": round(size_mb, 1),
        "baseline_restart_s": baseline["restart_s"],
        **again,
        "restart_target_s": RESTART_TARGET_S,
        "restart_ok": again["restart_s"] <= RESTART_TARGET_S
        and again["unfinished_after_restart"] == args.orders,
    })


if __name__ == "__main__":
    main()
