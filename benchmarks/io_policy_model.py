"""What the order of the ready queue alone allows on io_workload.py's orders: no overhead.

An event-driven simulation of `--slots` slots taking io_workload.py's seeded steps in one of
these orders, each step lasting exactly its duration:

  depth-first   a later step before a first step, then the oldest order (the baseline pool,
                and what orderflow's "started orders first, then oldest" amounts to for
                chains)
  breadth-first an earlier step first, then the oldest order
  tail-X        depth-first while more than X x slots orders are still unstarted, then
                breadth-first (their whole chain is still ahead of the last orders)

Prints one JSON line with each order's makespan over the lower bound and its mean order
latency over depth-first's: the two targets of io_workload.py's first measurement.

    python benchmarks/io_policy_model.py [--orders 1000] [--slots 256] [--seeds 13,1,2]
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402
from io_workload import durations, lower_bound  # noqa: E402

# (order, step, unstarted orders) -> sort key; the smallest goes first.
Rank = Callable[[int, int, int], tuple]


def depth_first(order: int, step: int, unstarted: int) -> tuple:
    return (-step, order)


def breadth_first(order: int, step: int, unstarted: int) -> tuple:
    return (step, order)


def tail(share: float, slots: int) -> Rank:
    def rank(order: int, step: int, unstarted: int) -> tuple:
        if unstarted <= share * slots:
            return (0, step, order)
        return (1, -step, order)

    return rank


def simulate(table: list[tuple[float, ...]], slots: int, rank: Rank) -> tuple[float, float]:
    """(makespan, mean order latency) with every order submitted at 0."""
    steps = len(table[0])
    unstarted = len(table)
    ready = [(rank(i, 0, unstarted), i, 0) for i in range(len(table))]
    heapq.heapify(ready)
    running: list[tuple[float, int, int]] = []
    done = [0.0] * len(table)
    now = 0.0
    while ready or running:
        while ready and len(running) < slots:
            _, order, step = heapq.heappop(ready)
            if step == 0:
                unstarted -= 1
                # The rank may depend on how many are unstarted: re-rank what waits.
                ready = [(rank(o, s, unstarted), o, s) for _, o, s in ready]
                heapq.heapify(ready)
            heapq.heappush(running, (now + table[order][step], order, step))
        now, order, step = heapq.heappop(running)
        if step + 1 < steps:
            heapq.heappush(ready, (rank(order, step + 1, unstarted), order, step + 1))
        else:
            done[order] = now
    return max(done), statistics.fmean(done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--slots", type=int, default=256)
    parser.add_argument("--seeds", default="13,1,2")
    args = parser.parse_args()
    policies: dict[str, Rank] = {"depth-first": depth_first, "breadth-first": breadth_first}
    for share in (0.5, 0.75, 1.0, 1.5):
        policies[f"tail-{share:g}"] = tail(share, args.slots)
    out: dict[str, dict[str, list[float]]] = {
        name: {"makespan_vs_lower_bound": [], "latency_vs_depth_first": []} for name in policies
    }
    for seed in (int(s) for s in args.seeds.split(",")):
        table = durations(args.orders, seed)
        bound = lower_bound(table, args.slots)
        _, depth_latency = simulate(table, args.slots, depth_first)
        for name, rank in policies.items():
            makespan, latency = simulate(table, args.slots, rank)
            out[name]["makespan_vs_lower_bound"].append(round(makespan / bound, 3))
            out[name]["latency_vs_depth_first"].append(round(latency / depth_latency, 3))
    emit({"benchmark": "io_policy_model", "orders": args.orders, "slots": args.slots,
          "seeds": args.seeds, **out})


if __name__ == "__main__":
    main()
