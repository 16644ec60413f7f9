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

The straggler: 4 workers of `--slots` / 4 slots, one 10x slower, against the 3 fast ones
alone (io_workload.py's straggler target), each in depth-first and tail-1 order:

  greedy        every free slot takes the next task, the slow worker's first (it sorts
                first in the cluster too)
  speed-aware   placement.py's rule: the slow worker takes a task only if the fast
                workers would still be busy with the work ahead (tasks ready or still to
                come) when it ended this one (at its long duration: mean + twice the mean
                deviation, as speeds.py measures it) and the steps after it

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


def simulate_workers(table: list[tuple[float, ...]], workers: list[tuple[int, float]],
                     rank: Rank, aware: bool) -> float:
    """Makespan of `workers` ((slots, slowness) each, the slowest first) taking tasks in
    `rank` order; `aware`: a slow worker leaves a task to faster ones that end the work
    ahead sooner, as placement.py decides (durations in units of the fastest's)."""
    steps = len(table[0])
    unstarted = len(table)
    ready = [(rank(i, 0, unstarted), i, 0) for i in range(len(table))]
    heapq.heapify(ready)
    free = [slots for slots, _ in workers]
    fastest = min(f for _, f in workers)
    every = [d for row in table for d in row]
    mean = statistics.fmean(every)
    long = 1 + 2 * statistics.fmean(abs(d - mean) for d in every) / mean
    running: list[tuple[float, int, int, int]] = []  # (end, order, step, worker)
    ahead = len(table) * steps  # tasks not yet started
    now = 0.0
    while ready or running:
        for w, (_, factor) in enumerate(workers):
            while ready and free[w]:
                if aware and factor > 2 * fastest:
                    rate = sum(slots / f for slots, f in workers if f * 2 <= factor)
                    after = steps - 1 - ready[0][2]
                    if factor * long + after * fastest > ahead / rate + fastest:
                        break
                _, order, step = heapq.heappop(ready)
                if step == 0:
                    unstarted -= 1
                    ready = [(rank(o, s, unstarted), o, s) for _, o, s in ready]
                    heapq.heapify(ready)
                free[w] -= 1
                ahead -= 1
                heapq.heappush(running, (now + table[order][step] * factor, order, step, w))
        now, order, step, w = heapq.heappop(running)
        free[w] += 1
        if step + 1 < steps:
            heapq.heappush(ready, (rank(order, step + 1, unstarted), order, step + 1))
    return now


def straggler(table: list[tuple[float, ...]], slots: int) -> dict[str, float]:
    """Each straggler case's makespan over the 3 fast workers' alone (same order)."""
    each = slots // 4
    out = {}
    for name, rank in (("depth-first", depth_first), ("tail-1", tail(1.0, slots))):
        alone = simulate_workers(table, [(each, 1.0)] * 3, rank, aware=False)
        four = [(each, 10.0)] + [(each, 1.0)] * 3
        for how, aware in (("greedy", False), ("speed-aware", True)):
            out[f"{how} {name}"] = round(simulate_workers(table, four, rank, aware) / alone, 3)
    return out


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
    stragglers: dict[str, list[float]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        table = durations(args.orders, seed)
        for name, ratio in straggler(table, args.slots).items():
            stragglers.setdefault(name, []).append(ratio)
        bound = lower_bound(table, args.slots)
        _, depth_latency = simulate(table, args.slots, depth_first)
        for name, rank in policies.items():
            makespan, latency = simulate(table, args.slots, rank)
            out[name]["makespan_vs_lower_bound"].append(round(makespan / bound, 3))
            out[name]["latency_vs_depth_first"].append(round(latency / depth_latency, 3))
    emit({"benchmark": "io_policy_model", "orders": args.orders, "slots": args.slots,
          "seeds": args.seeds, **out, "straggler_vs_fast3": stragglers})


if __name__ == "__main__":
    main()
