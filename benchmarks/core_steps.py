"""The pure core's per-step cost, against another revision of it measured in the same run.

A refactoring of the engine must not slow its per-step path, and on a shared machine a
wall-clock figure from another day says little. This drives `SchedulerCore` alone (no
threads, no journal): N orders of the default workflow on 8 workers, each dispatch started
and succeeded at once, timing the process's CPU time (not the wall clock, which other
processes' load swings). The revision `--against` (a git ref, default `main`) is checked out
into a temporary folder; the two run in alternation, each round in fresh interpreters, and
the median of each is compared:

    python benchmarks/core_steps.py [--against main] [--orders 3000] [--rounds 5]

prints one JSON line with steps/s of each and `ratio` = this tree's / the other's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import deque
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def drive(orders: int, workers: int = 8) -> dict:
    """Run `orders` orders through a core (whichever `scheduler` is importable) to the end."""
    from scheduler.engine.config import ClusterConfig
    from scheduler.engine.core import SchedulerCore

    core = SchedulerCore(ClusterConfig(workers=0, seed=3))
    queues: dict[str, deque] = {f"w{i}": deque() for i in range(workers)}

    def take(fx) -> None:
        for dispatch in fx.dispatches:
            queues[dispatch.worker_id].append(dispatch)

    started = time.process_time()
    for worker_id in queues:
        take(core.add_worker(worker_id, now=0.0))
    for number in range(orders):
        take(core.submit(f"o{number}", {"customer": "ada"}, now=0.0))
    steps = 0
    while any(queues.values()):
        for worker_id, queue in queues.items():
            if not queue:
                continue
            dispatch = queue.popleft()
            fx, context = core.start_task(dispatch.task_id, worker_id, dispatch.lease, now=0.0)
            take(fx)
            if context is not None:
                take(core.task_succeeded(dispatch.task_id, worker_id, dispatch.lease, None,
                                         now=0.0))
                steps += 1
    seconds = time.process_time() - started
    return {"steps": steps, "cpu_s": round(seconds, 4), "steps_per_s": round(steps / seconds)}


def run(tree: Path, orders: int) -> dict:
    """One measurement in a fresh interpreter that imports `scheduler` from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, str(HERE / "core_steps.py"), "--child", "--orders", str(orders)],
        capture_output=True, text=True, timeout=600, check=False, env=env, cwd=tree,
    )
    if out.returncode != 0:
        raise RuntimeError(f"core_steps.py in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def checkout(ref: str, into: Path) -> None:
    """The engine of `ref` (its `scheduler` package) in `into`."""
    archive = subprocess.run(["git", "archive", ref, "scheduler"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="main", help="git ref to compare with")
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(drive(args.orders)), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="core-steps-") as other:
        checkout(args.against, Path(other))
        runs: dict[str, list[int]] = {"this": [], "other": []}
        for _ in range(args.rounds):  # alternated, so the machine's drift hits both alike
            runs["this"].append(run(ROOT, args.orders)["steps_per_s"])
            runs["other"].append(run(Path(other), args.orders)["steps_per_s"])
    this, against = statistics.median(runs["this"]), statistics.median(runs["other"])
    print(json.dumps({
        "benchmark": "core_steps", "orders": args.orders, "rounds": args.rounds,
        "against": args.against, "this_steps_per_s": this, "other_steps_per_s": against,
        "runs": runs, "ratio": round(this / against, 3),
    }), flush=True)


if __name__ == "__main__":
    main()
