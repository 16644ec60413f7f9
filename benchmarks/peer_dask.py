"""Peer: the same workload through Dask distributed, against orderflow in the same run.

Dask: LocalCluster(processes=False) with 8 threads, each order a chain of three
`client.submit` calls (each step depends on the previous future). orderflow: in memory,
8 workers. Prints one JSON line with both tasks/s and the ratio. Needs the optional extra:
`pip install -e '.[bench]'` (dask[distributed]); without it, prints a skip line and exits 0.

    python benchmarks/peer_dask.py [--orders 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import STEPS, emit, run_child  # noqa: E402


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
    return {"mode": "dask", "tasks_per_s": round(orders * len(STEPS) / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        emit(dask_run(args.orders, args.workers))
        return
    try:
        import distributed  # noqa: F401
    except ImportError:
        emit(
            {
                "benchmark": "peer_dask",
                "skipped": "dask[distributed] is not installed (pip install -e '.[bench]')",
            }
        )
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
