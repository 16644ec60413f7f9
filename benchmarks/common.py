"""Shared pieces of the benchmarks: the workload, timing, percentiles and RSS."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

ORDER = {"customer": "bench", "items": [{"sku": "SKU-1", "qty": 1, "price": 1.0}]}
STEPS = ("payment", "packing", "shipping")
HERE = Path(__file__).resolve().parent


def noop(ctx):
    return None


NOOP_HANDLERS = {step: noop for step in STEPS}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_child(script: str, *args: str, timeout: float = 900) -> dict:
    """Run one measurement in a fresh interpreter (clean heap, own peak RSS); its last
    stdout line is a JSON object."""
    out = subprocess.run(
        [sys.executable, str(HERE / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def emit(result: dict) -> None:
    print(json.dumps(result, sort_keys=False), flush=True)


def run_orders(cluster, orders: int) -> tuple[float, list[float]]:
    """The throughput workload on a started cluster: `orders` demo orders submitted in bulks
    of 1,000, then wait until every one is done. Returns (seconds, each order's latency)
    and stops the cluster; raises if any order did not complete."""
    import time

    start = time.perf_counter()
    for first in range(0, orders, 1000):
        cluster.submit_many([ORDER] * min(1000, orders - first))
    if not cluster.wait_until_idle(timeout=600):
        raise RuntimeError("orders did not finish in 600 s")
    elapsed = time.perf_counter() - start
    latencies = [e["duration"] for e in cluster.events(after=0) if e["type"] == "order_completed"]
    completed = cluster.stats()["orders"]["completed"]
    cluster.stop()
    if completed != orders:
        raise RuntimeError(f"only {completed} of {orders} orders completed")
    return elapsed, latencies


def rate_figures(orders: int, elapsed: float, latencies: list[float]) -> dict:
    """Orders and tasks per second, p50/p99 latency and peak RSS of one run."""
    return {
        "orders_per_s": round(orders / elapsed, 1),
        "tasks_per_s": round(orders * len(STEPS) / elapsed, 1),
        "p50_latency_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_latency_ms": round(percentile(latencies, 99) * 1000, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def peer_arguments(doc: str) -> argparse.Namespace:
    """A peer script's command line (peers.py runs each): the workload, how many orders,
    how many steps in flight, the I/O latencies' seed."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--workload", choices=["io", "noop"], required=True)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--seed", type=int, default=13)
    return parser.parse_args()
