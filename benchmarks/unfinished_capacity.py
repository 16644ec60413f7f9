"""How many unfinished orders one server holds at 1 GiB of RSS (issue 21, item 5).

Orders park unfinished when no worker runs: each is submitted and its first step waits in the
ready queue, the other two pending, exactly as a backlog waits while the workers are away.

  memory   a `Cluster` in memory, no workers, `max_unfinished_orders` lifted out of the way:
           orders submitted in bulks of 10,000; after every --every orders a full garbage
           collection and the process's RSS, until it reaches --limit-mb (1,024) or
           --max-orders. The count at the limit is found, not extrapolated: interpolated
           between the two samples around it.
  journal  the same with the SQLite journal (its page cache is in the same process)
  server   `orderflow serve --workers 0 --no-persist` (gunicorn; the dashboard's bridge,
           the index and the event history in the same process), filled by
           POST /api/orders/bulk up to its default cap (`max_unfinished_orders`, 50,000: the
           next bulk must be refused with 503); its RSS per order, and the count at
           --limit-mb extrapolated from that slope (say so: a server stops at the cap)

Each mode in a fresh child process. Prints one JSON line.

    python benchmarks/unfinished_capacity.py [--modes memory,journal,server] [--limit-mb 1024]
                                             [--max-orders 400000] [--every 25000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ORDER, current_rss_mb, emit, run_child  # noqa: E402

BULK = 10_000


def at_limit(samples: list[dict], limit_mb: float) -> tuple[int, str]:
    """The order count at `limit_mb`: interpolated between the samples around it when the run
    crossed it, else extrapolated along the slope of the last two samples."""
    for before, after in zip(samples, samples[1:], strict=False):
        if before["rss_mb"] < limit_mb <= after["rss_mb"]:
            share = (limit_mb - before["rss_mb"]) / (after["rss_mb"] - before["rss_mb"])
            return round(before["orders"] + share * (after["orders"] - before["orders"])), \
                "found"
    first, last = samples[-2], samples[-1]
    slope = (last["rss_mb"] - first["rss_mb"]) / (last["orders"] - first["orders"])
    return round(last["orders"] + (limit_mb - last["rss_mb"]) / slope), "extrapolated"


def _per_order_kb(samples: list[dict], start_mb: float) -> float:
    last = samples[-1]
    return round((last["rss_mb"] - start_mb) * 1024 / last["orders"], 2)


def fill_cluster(journal: bool, limit_mb: float, max_orders: int, every: int) -> dict:
    from scheduler import Cluster
    from scheduler.journal.sqlite import SQLiteJournal
    from scheduler.runtime.tuning import tune_gc

    tune_gc()  # as `orderflow serve` does
    with tempfile.TemporaryDirectory() as folder:
        settings = {"journal": SQLiteJournal(Path(folder) / "capacity.db")} if journal else {}
        cluster = Cluster(workers=0, max_unfinished_orders=max_orders, **settings).start()
        try:
            gc.collect()
            start_mb, samples, submitted = current_rss_mb(), [], 0
            started = time.perf_counter()
            while submitted < max_orders and (not samples or samples[-1]["rss_mb"] < limit_mb):
                target = min(max_orders, submitted + every)
                while submitted < target:
                    batch = min(BULK, target - submitted)
                    cluster.submit_many([ORDER] * batch)
                    submitted += batch
                gc.collect()
                samples.append({"orders": submitted, "rss_mb": round(current_rss_mb(), 1)})
            took = time.perf_counter() - started
            unfinished = cluster.stats()["orders"]["pending"]
        finally:
            cluster.stop()
    if unfinished != submitted:
        raise RuntimeError(f"{unfinished} of {submitted} orders pending")
    count, how = at_limit(samples, limit_mb)
    return {"mode": "journal" if journal else "memory", "start_rss_mb": round(start_mb, 1),
            "samples": samples, "kb_per_order": _per_order_kb(samples, start_mb),
            "orders_at_limit": count, "how": how,
            "submits_per_s": round(submitted / took)}


def fill_server(limit_mb: float) -> dict:
    import requests
    from fleet_scale import process_figures, server_process
    from remote_workers import _healthy, stats, wait_for
    from server import Server

    with tempfile.TemporaryDirectory() as folder, \
            Server("--workers", "0", "--no-persist", "--log-file",
                   str(Path(folder) / "serve.log"), timeout=60) as server, \
            requests.Session() as session:
        wait_for("the server to answer", lambda: _healthy(session, server.url), timeout=60)
        worker = server_process(server.proc.pid)
        start_mb, samples = process_figures(worker)["rss_mb"], []
        refused = None
        while refused is None:
            response = session.post(f"{server.url}/api/orders/bulk", json={"count": 1000},
                                    timeout=120)
            if response.status_code == 503:
                refused = response.status_code
                break
            response.raise_for_status()
            pending = stats(session, server.url)["orders"]["pending"]
            if pending % 10_000 == 0:
                samples.append({"orders": pending, "rss_mb": process_figures(worker)["rss_mb"]})
    count, _ = at_limit(samples, limit_mb)
    return {"mode": "server", "start_rss_mb": start_mb, "samples": samples,
            "refused_at_cap": refused == 503, "cap": samples[-1]["orders"],
            "kb_per_order": _per_order_kb(samples, start_mb),
            "orders_at_limit": count, "how": "extrapolated"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="memory,journal,server")
    parser.add_argument("--limit-mb", type=float, default=1024)
    parser.add_argument("--max-orders", type=int, default=400_000)
    parser.add_argument("--every", type=int, default=25_000)
    parser.add_argument("--child", choices=["memory", "journal", "server"])
    args = parser.parse_args()
    if args.child == "server":
        emit(fill_server(args.limit_mb))
        return
    if args.child:
        emit(fill_cluster(args.child == "journal", args.limit_mb, args.max_orders, args.every))
        return
    shared = ["--limit-mb", str(args.limit_mb), "--max-orders", str(args.max_orders),
              "--every", str(args.every)]
    results = {}
    for mode in (m for m in args.modes.split(",") if m):
        results[mode] = run_child("unfinished_capacity.py", "--child", mode, *shared,
                                  timeout=1800)
        print(results[mode], file=sys.stderr, flush=True)
    emit({"benchmark": "unfinished_capacity", "limit_mb": args.limit_mb, **results})


if __name__ == "__main__":
    main()
