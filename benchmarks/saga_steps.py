"""The pure core's steps/s, no threads: N orders of payment -> packing -> shipping through 8
workers, every step started and succeeded by hand. With `--against PATH` (another checkout,
e.g. a worktree of main) the same run alternates between that code (its `scheduler` put
first on PYTHONPATH) and this one, interleaved, so a change to the engine's per-step path is
measured as a ratio against the code before it, on the same machine at the same time.
`--saga` also runs N orders of a saga whose packing fails for good, so every order runs a
refund: its steps/s against the plain chain's, in the same run.

    python benchmarks/saga_steps.py --orders 20000 --against /work/wt-main-before --saga
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import deque

sys.path.insert(0, os.path.dirname(__file__))
from common import emit  # noqa: E402

ORDER = {"customer": "ada", "items": [{"sku": "A1", "qty": 1, "price": 3.0}]}


def measure(orders: int, saga: bool) -> dict:
    """Steps/s of the core alone for `orders` orders (of the saga whose packing fails)."""
    from scheduler.engine.config import ClusterConfig, RetryPolicy
    from scheduler.engine.core import SchedulerCore
    from scheduler.engine.workflow import DEFAULT_WORKFLOWS, Workflow

    workflows = dict(DEFAULT_WORKFLOWS)
    workflow = "ecommerce"
    if saga:
        workflow = "saga"
        workflows[workflow] = Workflow.define(
            workflow, [("payment", []), ("packing", ["payment"]), ("shipping", ["packing"])],
            compensations={"payment": "refund"})
    core = SchedulerCore(ClusterConfig(workers=0, seed=7, retry=RetryPolicy(max_retries=0),
                                       max_unfinished_orders=10**7), workflows)
    queues: dict[str, deque] = {}
    for i in range(8):
        queues[f"w{i}"] = deque()
        core.add_worker(f"w{i}", now=0.0)
    start = time.perf_counter()
    for i in range(orders):
        for d in core.submit(f"o{i}", ORDER, now=0.0, workflow=workflow).dispatches:
            queues[d.worker_id].append(d)
    steps = 0
    while any(queues.values()):
        for worker, queue in queues.items():
            if not queue:
                continue
            d = queue.popleft()
            _, ctx = core.start_task(d.task_id, worker, d.lease, now=0.0)
            if ctx is None:
                continue
            if saga and ctx["step"] == "packing":
                fx = core.task_failed(d.task_id, worker, d.lease, "out of stock", now=0.0)
            else:
                fx = core.task_succeeded(d.task_id, worker, d.lease, {"ok": 1}, now=0.0)
            steps += 1
            for new in fx.dispatches:
                queues[new.worker_id].append(new)
    took = time.perf_counter() - start
    assert steps == 3 * orders, steps  # payment, packing, then shipping or refund
    return {"steps_per_s": round(steps / took, 1)}


def child(path: str | None, *args: str) -> dict:
    import json
    import subprocess

    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [path, env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, __file__, "--child", *args], env=env,
                         capture_output=True, text=True, timeout=900, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--against", help="another checkout: its code is the baseline")
    parser.add_argument("--saga", action="store_true")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--mode", choices=["chain", "saga"], default="chain")
    args = parser.parse_args()
    if args.child:
        emit(measure(args.orders, args.mode == "saga"))
        return
    modes = {"chain": (None, "chain")}
    if args.against:
        modes["chain_before"] = (args.against, "chain")
    if args.saga:
        modes["saga"] = (None, "saga")
    runs: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.repeat):
        for mode, (path, kind) in modes.items():  # interleaved: drift hits every mode alike
            result = child(path, "--orders", str(args.orders), "--mode", kind)
            runs[mode].append(result["steps_per_s"])
    median = {m: statistics.median(v) for m, v in runs.items()}
    report = {"benchmark": "saga_steps", "orders": args.orders, "repeat": args.repeat,
              **{f"{m}_steps_per_s": v for m, v in median.items()},
              "all": runs}
    if args.against:
        report["chain_vs_before"] = round(median["chain"] / median["chain_before"], 3)
    if args.saga:
        report["saga_vs_chain"] = round(median["saga"] / median["chain"], 3)
    emit(report)


if __name__ == "__main__":
    main()
