"""Throughput: N orders x payment -> packing -> shipping with no-op handlers and 8 workers.

Runs, each in a fresh process and in the same run of this script:
  baseline  a bare ThreadPoolExecutor(8) chaining the three calls with done-callbacks
  memory    orderflow without persistence
  journal   orderflow with the SQLite journal (synchronous=FULL, the default)
and prints one JSON line with orders/s, tasks/s, p50/p99 order latency, peak RSS and the
ratios orderflow/baseline and journal/memory.

    python benchmarks/throughput.py [--orders 20000] [--workers 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import NOOP_HANDLERS, STEPS, emit, rate_figures, run_child, run_orders  # noqa: E402

from scheduler.runtime.tuning import GC_THRESHOLDS  # noqa: E402


def baseline(orders: int, workers: int) -> dict:
    """The same chain with nothing but a thread pool: each step's callback submits the next."""
    pool = ThreadPoolExecutor(max_workers=workers)
    done = threading.Event()
    lock = threading.Lock()
    latencies: list[float] = []

    def run_step(index: int, started: float) -> tuple[int, float]:
        NOOP_HANDLERS[STEPS[index]](None)
        return index, started

    def on_done(future) -> None:
        index, started = future.result()
        if index + 1 < len(STEPS):
            pool.submit(run_step, index + 1, started).add_done_callback(on_done)
            return
        with lock:
            latencies.append(time.perf_counter() - started)
            if len(latencies) == orders:
                done.set()

    start = time.perf_counter()
    for _ in range(orders):
        pool.submit(run_step, 0, time.perf_counter()).add_done_callback(on_done)
    done.wait()
    elapsed = time.perf_counter() - start
    pool.shutdown()
    return _figures("baseline", orders, elapsed, latencies)


def orderflow(orders: int, workers: int, persist: bool, slots: int | None = None) -> dict:
    from scheduler import Cluster
    from scheduler.journal.sqlite import SQLiteJournal

    with tempfile.TemporaryDirectory() as folder:
        journal = SQLiteJournal(Path(folder) / "bench.db") if persist else None
        cluster = Cluster(
            workers=workers,
            handlers=NOOP_HANDLERS,
            journal=journal,
            event_history=200_000,
            finished_order_history=orders,
            **({} if slots is None else {"slots": slots}),
        )
        cluster.start()
        elapsed, latencies = run_orders(cluster, orders)
    return _figures("journal" if persist else "memory", orders, elapsed, latencies)


def _figures(mode: str, orders: int, elapsed: float, latencies: list[float]) -> dict:
    return {"mode": mode, **rate_figures(orders, elapsed, latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--slots", type=int, help="slots per worker (default: the cluster's default)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per mode, interleaved; the median counts"
    )
    parser.add_argument("--child", choices=["baseline", "memory", "journal"])
    args = parser.parse_args()
    if args.child:
        # Every mode runs with the GC tuning `orderflow serve` applies (runtime/tuning.py).
        from scheduler.runtime.tuning import tune_gc

        tune_gc()
    if args.child == "baseline":
        emit(baseline(args.orders, args.workers))
        return
    if args.child:
        emit(orderflow(args.orders, args.workers, args.child == "journal", args.slots))
        return
    runs: dict[str, list[dict]] = {"baseline": [], "memory": [], "journal": []}
    for _ in range(args.repeat):
        for mode in runs:  # interleaved, so drift of the machine hits every mode alike
            runs[mode].append(
                run_child(
                    "throughput.py",
                    "--child",
                    mode,
                    "--orders",
                    str(args.orders),
                    "--workers",
                    str(args.workers),
                )
            )
    median = {mode: _median(results) for mode, results in runs.items()}
    base, mem, jour = median["baseline"], median["memory"], median["journal"]
    emit(
        {
            "benchmark": "throughput",
            "orders": args.orders,
            "workers": args.workers,
            "repeat": args.repeat,
            **{mode: figures for mode, figures in median.items()},
            "memory_vs_baseline": round(mem["tasks_per_s"] / base["tasks_per_s"], 3),
            "journal_vs_baseline": round(jour["tasks_per_s"] / base["tasks_per_s"], 3),
            "journal_vs_memory": round(jour["tasks_per_s"] / mem["tasks_per_s"], 3),
            "targets": {
                "memory_vs_baseline": 0.35,
                "journal_vs_baseline": 0.2,
                "journal_vs_memory": 0.6,
            },
            "gc_thresholds": list(GC_THRESHOLDS),
        }
    )


def _median(results: list[dict]) -> dict:
    """The run with the median tasks/s (its own latency and RSS figures go with it)."""
    ordered = sorted(results, key=lambda r: r["tasks_per_s"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["tasks_per_s_all"] = [r["tasks_per_s"] for r in results]
    chosen["spread"] = round(
        statistics.pstdev(chosen["tasks_per_s_all"]) / chosen["tasks_per_s"], 3
    )
    return chosen


if __name__ == "__main__":
    main()
