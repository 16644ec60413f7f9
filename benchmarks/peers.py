"""Peers: orderflow beside Dask, DBOS Transact and Celery + Redis on the same two workloads,
in the same run (issue 21, item 4).

  io    the I/O orders of io_workload.py: --io-orders orders (1,000), payment -> packing ->
        shipping, each step waiting its seeded 50-250 ms (the same table in every system),
        all submitted at once, at most --io-in-flight (256) steps running at a time
  noop  --noop-orders no-op 3-step chains (1,000; DBOS gets --dbos-noop-orders, 200: it runs
        a few dozen steps a second here), all submitted at once, 8 steps in flight

Systems, each measurement in a child process of its own (a fresh heap; a missing package
prints a skip line there and the run goes on):
  orderflow          a `Cluster` in memory: io 4 workers x 64 slots; noop 8 workers x 1 slot
  orderflow-journal  the same with its SQLite journal (durable: synchronous=FULL)
  dask               Dask distributed, LocalCluster(processes=False) (peer_dask.py)
  dbos               DBOS Transact on SQLite, one queue bounding the steps in flight
                     (peer_dbos.py)
  celery             Celery, Redis broker and result backend, one thread-pool worker
                     (peer_celery.py; needs `redis-server` on PATH)

Each measurement is one JSON line (seconds from the first submit to the last order done,
tasks/s); the last line has every figure and each peer's ratio to orderflow of the same
durability (Dask and Celery against orderflow in memory, DBOS against the journal). `--out
FILE` writes the same lines to FILE; benchmarks/peer_table.py turns them into the README's
comparison table.

    python benchmarks/peers.py [--io-orders 1000] [--noop-orders 1000] [--peers dask,dbos,celery]
                               [--out benchmarks/peers.jsonl]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, run_child  # noqa: E402

PEERS = {"dask": "peer_dask.py", "dbos": "peer_dbos.py", "celery": "peer_celery.py"}
DURABLE = {"orderflow": False, "orderflow-journal": True, "dask": False, "dbos": True,
           "celery": False}
NOOP_IN_FLIGHT = 8
PACKAGES = {"dask": "dask", "distributed": "distributed", "dbos": "dbos", "celery": "celery",
            "redis": "redis-py"}


def orderflow_child(workload: str, orders: int, in_flight: int, seed: int,
                    journal: bool) -> dict:
    from common import STEPS
    from io_workload import durations, run_orderflow, sync_handlers
    from throughput import orderflow

    from scheduler.journal.sqlite import SQLiteJournal
    from scheduler.runtime.tuning import tune_gc

    tune_gc()  # as `orderflow serve` does
    system = "orderflow-journal" if journal else "orderflow"
    if workload == "noop":
        figures = orderflow(orders, in_flight, persist=journal, slots=1)
        seconds = round(orders * len(STEPS) / figures["tasks_per_s"], 3)
        return {"peer": system, "workload": workload, "orders": orders,
                "in_flight": in_flight, "seconds": seconds,
                "tasks_per_s": figures["tasks_per_s"]}
    table = durations(orders, seed)
    with tempfile.TemporaryDirectory() as folder:
        settings = {"journal": SQLiteJournal(Path(folder) / "io.db")} if journal else {}
        figures = run_orderflow(table, 4, in_flight // 4, sync_handlers(table), **settings)
    return {"peer": system, "workload": workload, "orders": orders, "in_flight": in_flight,
            "seconds": figures["makespan_s"],
            "tasks_per_s": round(orders * len(STEPS) / figures["makespan_s"], 1)}


def measure(system: str, workload: str, orders: int, in_flight: int, seed: int) -> dict:
    shared = ["--workload", workload, "--orders", str(orders), "--in-flight", str(in_flight),
              "--seed", str(seed)]
    if system.startswith("orderflow"):
        journal = ["--journal"] if system == "orderflow-journal" else []
        return run_child("peers.py", "--child", *shared, *journal)
    extra = ["--child"] if system == "dask" else []
    return run_child(PEERS[system], *extra, *shared, timeout=1800)


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name, label in PACKAGES.items():
        try:
            out[label] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        line = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                              timeout=10, check=False).stdout
        out["redis-server"] = next(w[2:] for w in line.split() if w.startswith("v="))
    except (OSError, StopIteration, subprocess.TimeoutExpired):
        pass
    return out


def ratios(results: list[dict]) -> dict:
    """How many times faster orderflow of the same durability is than each peer."""
    figure = {(r["peer"], r["workload"]): r for r in results if "skipped" not in r}
    out = {}
    for (system, workload), result in figure.items():
        if system.startswith("orderflow"):
            continue
        ours = figure.get(("orderflow-journal" if DURABLE[system] else "orderflow", workload))
        if ours:
            out[f"{workload}:{system}"] = round(ours["tasks_per_s"] / result["tasks_per_s"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--io-orders", type=int, default=1000)
    parser.add_argument("--io-in-flight", type=int, default=256)
    parser.add_argument("--noop-orders", type=int, default=1000)
    parser.add_argument("--dbos-noop-orders", type=int, default=200)
    parser.add_argument("--peers", default=",".join(PEERS), help="a comma-separated subset")
    parser.add_argument("--workloads", default="io,noop")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, help="also write the JSON lines to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workload", choices=["io", "noop"], help=argparse.SUPPRESS)
    parser.add_argument("--orders", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--in-flight", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--journal", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        emit(orderflow_child(args.workload, args.orders, args.in_flight, args.seed,
                             args.journal))
        return
    lines = []
    out = open(args.out, "w") if args.out else None  # noqa: SIM115 - closed below

    def record(line: dict) -> None:
        lines.append(line)
        emit(line)
        if out:
            out.write(json.dumps(line) + "\n")
            out.flush()

    systems = ["orderflow", "orderflow-journal",
               *(p for p in args.peers.split(",") if p)]
    try:
        for workload in (w for w in args.workloads.split(",") if w):
            for system in systems:
                if workload == "io":
                    orders, in_flight = args.io_orders, args.io_in_flight
                else:
                    orders = args.dbos_noop_orders if system == "dbos" else args.noop_orders
                    in_flight = NOOP_IN_FLIGHT
                result = measure(system, workload, orders, in_flight, args.seed)
                result["load_average"] = round(os.getloadavg()[0], 1)
                record(result)
        results = [line for line in lines if "peer" in line]
        record({"benchmark": "peers", "date": datetime.date.today().isoformat(),
                "cores": os.cpu_count(), "versions": versions(),
                "load_average": [r["load_average"] for r in results],
                "orderflow_times_faster": ratios(results)})
    finally:
        if out:
            out.close()


if __name__ == "__main__":
    main()
