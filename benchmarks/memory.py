"""Memory: RSS while 100,000 orders complete in memory, sampled every 10,000 orders.

In-memory history is capped (finished orders and events), so RSS must stop growing once the
caps are reached. Prints one JSON line: the samples, growth per 100,000 orders, and the
growth over the last half of the run (which should be near zero).

    python benchmarks/memory.py [--orders 100000] [--history 20000]
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import NOOP_HANDLERS, ORDER, current_rss_mb, emit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument(
        "--history",
        type=int,
        default=20_000,
        help="finished orders and events kept in memory (the defaults)",
    )
    args = parser.parse_args()

    from scheduler import Cluster
    from scheduler.runtime.tuning import tune_gc

    tune_gc()
    cluster = Cluster(
        workers=8,
        handlers=NOOP_HANDLERS,
        finished_order_history=args.history,
        event_history=args.history,
    ).start()
    gc.collect()
    start_rss = current_rss_mb()
    samples = []
    done = 0
    step = 10_000
    while done < args.orders:
        batch = min(step, args.orders - done)
        for first in range(0, batch, 1000):
            cluster.submit_many([ORDER] * min(1000, batch - first))
        if not cluster.wait_until_idle(timeout=300):
            raise RuntimeError("orders did not finish")
        done += batch
        gc.collect()
        samples.append({"orders": done, "rss_mb": round(current_rss_mb(), 1)})
    stats = cluster.stats()
    cluster.stop()
    half = samples[len(samples) // 2]
    end = samples[-1]
    emit(
        {
            "benchmark": "memory",
            "orders": args.orders,
            "completed": stats["orders"]["completed"],
            "history_cap": args.history,
            "start_rss_mb": round(start_rss, 1),
            "samples": samples,
            "growth_per_100k_mb": round((end["rss_mb"] - start_rss) * 100_000 / args.orders, 1),
            "growth_last_half_mb": round(end["rss_mb"] - half["rss_mb"], 1),
            "target_growth_per_100k_mb": 200,
        }
    )


if __name__ == "__main__":
    main()
