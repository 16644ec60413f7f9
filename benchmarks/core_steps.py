"""The pure core's per-step cost, against another revision of it measured in the same run.

A change to the engine must not slow its per-step path, and on a shared machine a
wall-clock figure from another day says little. This drives `SchedulerCore` alone (no
threads, no journal): N orders of payment -> packing -> shipping on 8 workers, each dispatch
started and succeeded at once, timing the process's CPU time (not the wall clock, which
other processes' load swings). `--against` names the baseline: a git ref (default `main`,
whose `scheduler` package is checked out into a temporary folder) or the path of another
checkout. `--saga` also runs orders of a saga whose packing fails for good, so each runs a
refund: its steps/s against the plain chain's. Every mode runs in fresh interpreters, the
modes alternated round by round so the machine's drift hits them alike; medians compared:

    python benchmarks/core_steps.py [--against main|PATH] [--orders 3000] [--rounds 5] [--saga]

prints one JSON line with steps/s of each mode, `ratio` = this tree's chain / the baseline's,
and with `--saga`, `saga_vs_chain`.
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
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ORDER = {"customer": "ada", "items": [{"sku": "A1", "qty": 1, "price": 3.0}]}


def drive(orders: int, saga: bool, workers: int = 8) -> dict:
    """Run `orders` orders through a core (whichever `scheduler` is importable) to the end:
    the default chain, or a saga whose packing fails for good (payment is refunded)."""
    from scheduler.engine.config import ClusterConfig, RetryPolicy
    from scheduler.engine.core import SchedulerCore
    from scheduler.engine.workflow import DEFAULT_WORKFLOWS, Workflow

    workflows, workflow = dict(DEFAULT_WORKFLOWS), "ecommerce"
    if saga:
        workflow = "saga"
        workflows[workflow] = Workflow.define(
            workflow, [("payment", []), ("packing", ["payment"]), ("shipping", ["packing"])],
            compensations={"payment": "refund"})
    core = SchedulerCore(ClusterConfig(workers=0, seed=3, retry=RetryPolicy(max_retries=0),
                                       max_unfinished_orders=10**7), workflows)
    queues: dict[str, deque] = {f"w{i}": deque() for i in range(workers)}

    def take(fx) -> None:
        for dispatch in fx.dispatches:
            queues[dispatch.worker_id].append(dispatch)

    started = time.process_time()
    for worker_id in queues:
        take(core.add_worker(worker_id, now=0.0))
    for number in range(orders):
        take(core.submit(f"o{number}", ORDER, now=0.0, workflow=workflow))
    steps = 0
    while any(queues.values()):
        for worker_id, queue in queues.items():
            if not queue:
                continue
            dispatch = queue.popleft()
            fx, context = core.start_task(dispatch.task_id, worker_id, dispatch.lease, now=0.0)
            take(fx)
            if context is None:
                continue
            if saga and context["step"] == "packing":
                take(core.task_failed(dispatch.task_id, worker_id, dispatch.lease,
                                      "out of stock", now=0.0))
            else:
                take(core.task_succeeded(dispatch.task_id, worker_id, dispatch.lease,
                                         {"ok": 1}, now=0.0))
            steps += 1
    seconds = time.process_time() - started
    assert steps == 3 * orders, steps  # payment, packing, then shipping or the refund
    return {"steps": steps, "cpu_s": round(seconds, 4), "steps_per_s": round(steps / seconds)}


def run(tree: Path, orders: int, saga: bool) -> dict:
    """One measurement in a fresh interpreter that imports `scheduler` from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, str(HERE / "core_steps.py"), "--child", "--orders", str(orders)]
    out = subprocess.run(command + (["--saga"] if saga else []), capture_output=True,
                         text=True, timeout=900, check=False, env=env, cwd=tree)
    if out.returncode != 0:
        raise RuntimeError(f"core_steps.py in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def checkout(ref: str, into: Path) -> None:
    """The engine of `ref` (its `scheduler` package) in `into`."""
    archive = subprocess.run(["git", "archive", ref, "scheduler"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


@contextmanager
def baseline_tree(against: str) -> Iterator[Path]:
    """The tree to compare with: `against` itself if it is a checkout's path, else the
    engine of that git ref extracted into a scratch folder (removed afterwards)."""
    if Path(against).is_dir():
        yield Path(against)
        return
    with tempfile.TemporaryDirectory(prefix="baseline-") as scratch:
        checkout(against, Path(scratch))
        yield Path(scratch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="main",
                        help="the baseline: a git ref, or the path of another checkout")
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--saga", action="store_true")
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(drive(args.orders, args.saga)), flush=True)
        return
    with baseline_tree(args.against) as baseline:
        modes = {"this": (ROOT, False), "other": (baseline, False)}
        if args.saga:
            modes["saga"] = (ROOT, True)
        runs: dict[str, list[int]] = {mode: [] for mode in modes}
        for _ in range(args.rounds):  # alternated, so the machine's drift hits all alike
            for mode, (tree, saga) in modes.items():
                runs[mode].append(run(tree, args.orders, saga)["steps_per_s"])
    median = {mode: statistics.median(values) for mode, values in runs.items()}
    report = {
        "benchmark": "core_steps", "orders": args.orders, "rounds": args.rounds,
        "against": args.against, "this_steps_per_s": median["this"],
        "other_steps_per_s": median["other"], "runs": runs,
        "ratio": round(median["this"] / median["other"], 3),
    }
    if args.saga:
        report["saga_steps_per_s"] = median["saga"]
        report["saga_vs_chain"] = round(median["saga"] / median["this"], 3)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
