"""Peer: the same workload through Dask distributed, against orderflow in the same run.

Dask: LocalCluster(processes=False) with 8 threads, each order a chain of three
`client.submit` calls (each step depends on the previous future). orderflow: in memory,
8 workers. Prints one JSON line with both tasks/s and the ratio. Needs the optional extra:
`pip install -e '.[bench]'` (dask[distributed]); without it, prints a skip line and exits 0.

    python benchmarks/peer_dask.py [--orders 2000]

`--child --workload io|noop` is one measurement for benchmarks/peers.py: `noop` as above
with --in-flight threads; `io` the I/O orders of io_workload.py (each step a `time.sleep` of
its seeded 50-250 ms) on 4 workers sharing --in-flight threads, chained by `client.map`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import STEPS, emit, run_child  # noqa: E402


def dask_io(orders: int, in_flight: int, seed: int) -> dict:
    """The I/O orders, 4 workers x in_flight / 4 threads, each step after the previous."""
    import logging

    from distributed import Client, LocalCluster, wait
    from io_workload import durations

    logging.getLogger("distributed").setLevel(logging.ERROR)
    table = durations(orders, seed)

    def step(previous, seconds):
        time.sleep(seconds)

    with (
        LocalCluster(n_workers=4, threads_per_worker=in_flight // 4, processes=False,
                     dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        start = time.perf_counter()
        futures = [None] * orders
        for position, name in enumerate(STEPS):
            futures = client.map(step, futures, [row[position] for row in table],
                                 key=[f"{name}-{i}" for i in range(orders)], pure=False)
        wait(futures)
        elapsed = time.perf_counter() - start
    return {"peer": "dask", "workload": "io", "orders": orders, "in_flight": in_flight,
            "seconds": round(elapsed, 3), "tasks_per_s": round(orders * len(STEPS) / elapsed, 1)}


def dask_run(orders: int, workers: int) -> dict:
    import logging

    from distributed import Client, LocalCluster, wait

    logging.getLogger("distributed").setLevel(logging.ERROR)

    def step(previous, name):
        return name

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=workers, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        start = time.perf_counter()
        finals = []
        for i in range(orders):
            future = None
            for name in STEPS:
                future = client.submit(step, future, name, key=f"{name}-{i}", pure=False)
            finals.append(future)
        wait(finals)
        elapsed = time.perf_counter() - start
    return {"mode": "dask", "seconds": round(elapsed, 3),
            "tasks_per_s": round(orders * len(STEPS) / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--workload", choices=["io", "noop"], help="with --child (peers.py)")
    parser.add_argument("--in-flight", type=int, default=256, help="with --workload")
    parser.add_argument("--seed", type=int, default=13, help="with --workload io")
    args = parser.parse_args()
    try:
        import distributed  # noqa: F401
    except ImportError:
        emit(
            {
                "benchmark": "peer_dask",
                "peer": "dask",
                "workload": args.workload,
                "skipped": "dask[distributed] is not installed (pip install -e '.[bench]')",
            }
        )
        return
    if args.child and args.workload == "io":
        emit(dask_io(args.orders, args.in_flight, args.seed))
        return
    if args.child and args.workload == "noop":
        figures = dask_run(args.orders, args.in_flight)
        emit({"peer": "dask", "workload": "noop", "orders": args.orders,
              "in_flight": args.in_flight, "seconds": figures["seconds"],
              "tasks_per_s": figures["tasks_per_s"]})
        return
    if args.child:
        emit(dask_run(args.orders, args.workers))
        return
    dask = run_child(
        "peer_dask.py", "--child", "--orders", str(args.orders), "--workers", str(args.workers)
    )
    ours = run_child(
        "throughput.py",
        "--child",
        "memory",
        "--orders",
        str(args.orders),
        "--workers",
        str(args.workers),
    )
    emit(
        {
            "benchmark": "peer_dask",
            "orders": args.orders,
            "dask_tasks_per_s": dask["tasks_per_s"],
            "orderflow_tasks_per_s": ours["tasks_per_s"],
            "orderflow_vs_dask": round(ours["tasks_per_s"] / dask["tasks_per_s"], 2),
            "target": 10,
        }
    )


if __name__ == "__main__":
    main()
