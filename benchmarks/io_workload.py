"""I/O-bound orders: steps that mostly wait (a gateway, a warehouse, a carrier), as in issue 13.

Every order is payment -> packing -> shipping; each step waits a seeded 50-250 ms, the same
for the same (order, step) in every mode. In memory. Each measurement runs in a fresh
process; every mode is repeated (`--repeat`, interleaved) and the median counts.

  sync         orderflow, 4 workers x 64 slots, plain handlers waiting with `ctx.sleep`
  depth-first  the baseline: 256 plain threads on one priority queue (a later step before a
               first step, then the oldest order), each step a `time.sleep`
  async        orderflow, 10,000 orders, 4 workers x 500 slots, `await ctx.asleep(d)`
  dask         the same 10,000 orders through Dask distributed: LocalCluster(processes=False)
               with 4 workers x 500 threads, each step an `async def` (run on the worker's
               event loop, up to `nthreads` at once) depending on the previous one
  straggler    orderflow, 4 workers x 64 slots; the handlers of one worker wait 10x longer
  fast3        orderflow, the three fast workers alone (3 x 64 slots)
  hung         200 orders, 4 x 64 slots, step timeout 2 s; 5% of payment attempts (seeded)
               block, ignoring cancellation, until the run is over
  sync-no-tail, straggler-unaware, async-no-tail
               the same as sync, straggler and async with issue 21's policies off
               (`tail_share=0`: depth-first to the end; `slow_factor=inf`: no worker is
               slow): the before of a before-and-after in one run

The lower bound at C steps in flight is max(total work / C, the longest order's chain).
Prints one JSON line with every figure and each target's verdict.

    python benchmarks/io_workload.py [--orders 1000] [--async-orders 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import random
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ORDER, STEPS, emit, run_child  # noqa: E402

SHORTEST, LONGEST = 0.050, 0.250  # seconds a step waits
SLOW_FACTOR = 10  # the straggler's handlers wait this much longer
HANG_SHARE = 0.05  # share of payment attempts that never return (hung mode)
TARGETS = {
    "sync_makespan_vs_lower_bound": 1.15,
    "sync_latency_vs_depth_first": 1.05,
    "first_done_vs_its_chain": 2.0,
    "async_makespan_vs_lower_bound": 1.5,  # issue 21 (issue 13 asked for 2)
    "straggler_vs_fast3": 1.3,
}
MODES = ("sync", "depth-first", "async", "dask", "straggler", "fast3", "hung",
         "sync-no-tail", "straggler-unaware", "async-no-tail")
NO_TAIL = {"tail_share": 0.0}
UNAWARE = {"slow_factor": float("inf")}


def durations(orders: int, seed: int) -> list[tuple[float, ...]]:
    """Seconds each (order, step) waits: the same in every mode and process."""
    return [
        tuple(
            random.Random(f"{seed}/{index}/{step}").uniform(SHORTEST, LONGEST) for step in STEPS
        )
        for index in range(orders)
    ]


def lower_bound(table: list[tuple[float, ...]], in_flight: int) -> float:
    return max(sum(map(sum, table)) / in_flight, max(map(sum, table)))


def _index(ctx) -> int:
    """The order's index in the table: carried in its customer name (`io-<index>`)."""
    return int(ctx.order["customer"].rpartition("-")[2])


def _cpu() -> float:
    """CPU seconds this process has used (all threads): steadier than wall time on a
    shared machine, and what the GIL makes scarce."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _orders(count: int) -> list[dict]:
    return [{**ORDER, "customer": f"io-{i}"} for i in range(count)]


# ---------------------------------------------------------------------- orderflow


def sync_handlers(table, slow_worker: str | None = None) -> dict:
    position = {step: i for i, step in enumerate(STEPS)}

    def wait(ctx):
        seconds = table[_index(ctx)][position[ctx.step]]
        if ctx.worker_id == slow_worker:
            seconds *= SLOW_FACTOR
        ctx.sleep(seconds)

    return dict.fromkeys(STEPS, wait)


def async_handlers(table) -> dict:
    position = {step: i for i, step in enumerate(STEPS)}

    async def wait(ctx):
        await ctx.asleep(table[_index(ctx)][position[ctx.step]])

    return dict.fromkeys(STEPS, wait)


def run_orderflow(table, workers: int, slots: int, handlers: dict, **settings) -> dict:
    """Submit every order at once; the figures come from the cluster's own events."""
    from scheduler import Cluster

    orders = len(table)
    cluster = Cluster(
        workers=workers,
        slots=slots,
        handlers=handlers,
        event_history=max(20_000, 10 * orders),
        finished_order_history=orders,
        **settings,
    )
    cluster.start()
    try:
        start, cpu = time.time(), _cpu()
        ids = cluster.submit_many(_orders(orders))
        if not cluster.wait_until_idle(timeout=600):
            raise RuntimeError("orders did not finish in 600 s")
        cpu = _cpu() - cpu
        events = cluster.events(after=0)
    finally:
        cluster.stop()
    index = {order_id: i for i, order_id in enumerate(ids)}
    done = [e for e in events if e["type"] == "order_completed"]
    if len(done) != orders:
        raise RuntimeError(f"only {len(done)} of {orders} orders completed")
    first = min(done, key=lambda e: e["ts"])
    return {
        "makespan_s": round(max(e["ts"] for e in done) - start, 3),
        "first_done_s": round(first["ts"] - start, 3),
        "first_chain_s": round(sum(table[index[first["order_id"]]]), 3),
        "mean_latency_s": round(statistics.fmean(e["duration"] for e in done), 3),
        "cpu_s": round(cpu, 2),
    }


def run_hung(table, seed: int, timeout: float) -> dict:
    """Some payment attempts block until released at the end, whatever their context says."""
    from scheduler import Cluster

    release = threading.Event()
    hung: list[str] = []
    lock = threading.Lock()

    def payment(ctx):
        index = _index(ctx)
        if random.Random(f"{seed}/hang/{index}/{ctx.attempt}").random() < HANG_SHARE:
            with lock:
                hung.append(f"{index}/{ctx.attempt}")
            release.wait()  # ignores ctx.cancelled on purpose
            return None
        ctx.sleep(table[index][0])
        return None

    handlers = {**sync_handlers(table), "payment": payment}
    orders = len(table)
    cluster = Cluster(
        workers=4, slots=64, handlers=handlers, step_timeout=timeout,
        event_history=max(20_000, 20 * orders), finished_order_history=orders,
    )
    cluster.start()
    try:
        start = time.time()
        cluster.submit_many(_orders(orders))
        ended = cluster.wait_until_idle(timeout=120)
        took = time.time() - start
        counts = cluster.stats()["orders"]
        events = cluster.events(after=0)
    finally:
        release.set()
        cluster.stop()
    failed = [e["message"] for e in events if e["type"] == "order_failed"]
    return {
        "all_ended": ended,
        "ended_s": round(took, 3),
        "completed": counts.get("completed", 0),
        "failed": counts.get("failed", 0),
        "failed_not_timed_out": sum("timed out" not in m for m in failed),
        "unfinished": counts.get("pending", 0) + counts.get("in_progress", 0),
        "hung_attempts": len(hung),
        "timed_out_attempts": sum(1 for e in events if e.get("timed_out")),
    }


# ---------------------------------------------------------------------- baselines


def run_depth_first(table, threads: int) -> dict:
    """Plain threads on one priority queue: (later step first, then oldest order)."""
    ready: queue.PriorityQueue = queue.PriorityQueue()
    orders, last = len(table), len(STEPS) - 1
    finished: list[tuple[float, int]] = []
    lock = threading.Lock()
    stop = (1, -1)  # sorts after every real entry

    def run() -> None:
        while True:
            rank, index = ready.get()
            if (rank, index) == stop:
                return
            step = -rank
            time.sleep(table[index][step])
            if step < last:
                ready.put((-(step + 1), index))
                continue
            with lock:
                finished.append((time.time(), index))
                if len(finished) == orders:
                    for _ in range(threads):
                        ready.put(stop)

    pool = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    start, cpu = time.time(), _cpu()
    for index in range(orders):
        ready.put((0, index))
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    cpu = _cpu() - cpu
    first_ts, first_index = min(finished)
    return {
        "makespan_s": round(max(ts for ts, _ in finished) - start, 3),
        "first_done_s": round(first_ts - start, 3),
        "first_chain_s": round(sum(table[first_index]), 3),
        "mean_latency_s": round(statistics.fmean(ts - start for ts, _ in finished), 3),
        "cpu_s": round(cpu, 2),
    }


def run_dask(table, workers: int, slots: int) -> dict:
    import logging

    from distributed import Client, LocalCluster, wait

    logging.getLogger("distributed").setLevel(logging.ERROR)

    async def step(previous, seconds):
        await asyncio.sleep(seconds)

    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=slots, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        start, cpu = time.time(), _cpu()
        futures = [None] * len(table)
        for position, name in enumerate(STEPS):
            futures = client.map(
                step, futures, [row[position] for row in table],
                key=[f"{name}-{i}" for i in range(len(table))], pure=False,
            )
        wait(futures)
        makespan, cpu = time.time() - start, _cpu() - cpu
    return {"makespan_s": round(makespan, 3), "cpu_s": round(cpu, 2)}


# ---------------------------------------------------------------------- child and parent


def child(mode: str, args: argparse.Namespace) -> dict:
    from scheduler.runtime.tuning import tune_gc

    tune_gc()  # as `orderflow serve` does; the same in every mode
    if mode in ("async", "dask", "async-no-tail"):
        table = durations(args.async_orders, args.seed)
    elif mode == "hung":
        table = durations(args.hung_orders, args.seed)
    else:
        table = durations(args.orders, args.seed)
    if mode == "sync":
        return run_orderflow(table, 4, 64, sync_handlers(table))
    if mode == "sync-no-tail":
        return run_orderflow(table, 4, 64, sync_handlers(table), **NO_TAIL)
    if mode == "async-no-tail":
        return run_orderflow(table, 4, 500, async_handlers(table), **NO_TAIL)
    if mode == "straggler-unaware":
        return run_orderflow(table, 4, 64, sync_handlers(table, slow_worker="w-1"), **UNAWARE)
    if mode == "depth-first":
        return run_depth_first(table, 256)
    if mode == "async":
        return run_orderflow(table, 4, 500, async_handlers(table))
    if mode == "dask":
        return run_dask(table, 4, 500)
    if mode == "straggler":
        # Worker ids are w-1 .. w-4 in the order they join; w-1 is the slow one.
        return run_orderflow(table, 4, 64, sync_handlers(table, slow_worker="w-1"))
    if mode == "fast3":
        return run_orderflow(table, 3, 64, sync_handlers(table))
    return run_hung(table, args.seed, timeout=2.0)


def _median(runs: list[dict]) -> dict:
    """Each numeric figure's median over the runs, with every run's makespan kept."""
    out = {}
    for key, value in runs[0].items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            out[key] = value if all(r[key] == value for r in runs) else [r[key] for r in runs]
        else:
            out[key] = round(statistics.median(r[key] for r in runs), 3)
    if "makespan_s" in out:
        out["makespan_s_all"] = [r["makespan_s"] for r in runs]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--async-orders", type=int, default=10_000)
    parser.add_argument("--hung-orders", type=int, default=200)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode, interleaved")
    parser.add_argument("--modes", default=",".join(MODES), help="a comma-separated subset")
    parser.add_argument("--child", choices=MODES)
    args = parser.parse_args()
    if args.child:
        emit(child(args.child, args))
        return
    modes = [m for m in args.modes.split(",") if m]
    try:
        import distributed  # noqa: F401
    except ImportError:
        modes = [m for m in modes if m != "dask"]
    shared = ["--orders", str(args.orders), "--async-orders", str(args.async_orders),
              "--hung-orders", str(args.hung_orders), "--seed", str(args.seed)]
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for _ in range(args.repeat):
        for mode in modes:  # interleaved, so drift of the machine hits every mode alike
            runs[mode].append(run_child("io_workload.py", "--child", mode, *shared))
    emit(report(runs, args))


def _every_order_ended(run: dict) -> bool:
    """Hung mode: no order left pending or in progress, and every failure a time-out."""
    return run["all_ended"] is True and run["unfinished"] == 0 and not run["failed_not_timed_out"]


def report(runs: dict[str, list[dict]], args: argparse.Namespace) -> dict:
    """Every figure (medians over the runs), the ratios the targets are stated in, and a
    verdict per target."""
    median = {mode: _median(results) for mode, results in runs.items()}
    bound = round(lower_bound(durations(args.orders, args.seed), 256), 3)
    bound_async = round(lower_bound(durations(args.async_orders, args.seed), 2000), 3)
    out: dict = {
        "benchmark": "io_workload",
        "orders": args.orders,
        "async_orders": args.async_orders,
        "repeat": args.repeat,
        "lower_bound_256_s": bound,
        "lower_bound_2000_s": bound_async,
        **median,
    }
    ratios: dict[str, float] = {}
    sync, pool = median.get("sync"), median.get("depth-first")
    if sync:
        ratios["sync_makespan_vs_lower_bound"] = sync["makespan_s"] / bound
        ratios["first_done_vs_its_chain"] = sync["first_done_s"] / sync["first_chain_s"]
    if sync and pool:
        ratios["sync_latency_vs_depth_first"] = sync["mean_latency_s"] / pool["mean_latency_s"]
        out["sync_makespan_vs_depth_first"] = round(sync["makespan_s"] / pool["makespan_s"], 3)
    if pool:
        # No target: how far depth-first order itself is from the bound (see the README).
        out["depth_first_makespan_vs_lower_bound"] = round(pool["makespan_s"] / bound, 3)
    if median.get("async"):
        ratios["async_makespan_vs_lower_bound"] = median["async"]["makespan_s"] / bound_async
        if median.get("dask"):
            out["async_orderflow_vs_dask"] = round(
                median["dask"]["makespan_s"] / median["async"]["makespan_s"], 2
            )
    if median.get("straggler") and median.get("fast3"):
        ratios["straggler_vs_fast3"] = (
            median["straggler"]["makespan_s"] / median["fast3"]["makespan_s"]
        )
    before = {}  # the same figures with issue 21's policies off, same run
    if median.get("sync-no-tail"):
        before["sync_makespan_vs_lower_bound"] = median["sync-no-tail"]["makespan_s"] / bound
        if pool:
            before["sync_latency_vs_depth_first"] = (
                median["sync-no-tail"]["mean_latency_s"] / pool["mean_latency_s"])
    if median.get("async-no-tail"):
        before["async_makespan_vs_lower_bound"] = (
            median["async-no-tail"]["makespan_s"] / bound_async)
    if median.get("straggler-unaware") and median.get("fast3"):
        before["straggler_vs_fast3"] = (
            median["straggler-unaware"]["makespan_s"] / median["fast3"]["makespan_s"])
    if before:
        out["ratios_policies_off"] = {k: round(v, 3) for k, v in before.items()}
    out["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    out["targets"] = {k: v for k, v in TARGETS.items() if k in ratios}
    verdicts = {k: "met" if v <= TARGETS[k] else "missed" for k, v in ratios.items()}
    if runs.get("hung"):
        ended = all(_every_order_ended(run) for run in runs["hung"])  # in every run
        verdicts["hung_every_order_ends"] = "met" if ended else "missed"
    out["verdicts"] = verdicts
    return out


if __name__ == "__main__":
    main()
