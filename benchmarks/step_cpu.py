"""The CPU a step costs the whole process (core and thread shell), against another revision.

`throughput.py` times the wall clock, which on a shared machine swings by 2x between runs;
`core_steps.py` times the core alone. This runs `throughput.py`'s workload (N orders of
payment -> packing -> shipping, no-op handlers, a `Cluster` in memory) and divides the
process's CPU time (user + system, every thread) by the steps, in fresh interpreters,
this tree and the baseline alternated round by round. `--against`: a git ref (default
`main`) or another checkout's path, as in `core_steps.py`. Reported per tree: the minimum
(the cost with the least interference from other processes) and the median, µs per step,
and the median tasks/s:

    python benchmarks/step_cpu.py [--against main|PATH] [--orders 4000] [--rounds 3]
                                  [--workers 8] [--slots N] [--journal]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import NOOP_HANDLERS, STEPS, run_orders  # noqa: E402
from core_steps import baseline_tree  # noqa: E402


def measure(orders: int, workers: int, slots: int | None, journal: bool) -> dict:
    """In this interpreter: CPU µs per step of `orders` orders through a started cluster."""
    from scheduler import Cluster
    from scheduler.journal.sqlite import SQLiteJournal
    from scheduler.runtime.tuning import tune_gc

    tune_gc()  # as `orderflow serve` and throughput.py run
    with tempfile.TemporaryDirectory() as folder:
        cluster = Cluster(
            workers=workers, handlers=NOOP_HANDLERS,
            journal=SQLiteJournal(Path(folder) / "bench.db") if journal else None,
            event_history=200_000, finished_order_history=orders,
            **({} if slots is None else {"slots": slots}),
        )
        cluster.start()
        before = resource.getrusage(resource.RUSAGE_SELF)
        elapsed, _ = run_orders(cluster, orders)
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    steps = orders * len(STEPS)
    return {"cpu_us_per_step": round(cpu / steps * 1e6, 1),
            "tasks_per_s": round(steps / elapsed, 1)}


def run(tree: Path, args: argparse.Namespace) -> dict:
    """One measurement in a fresh interpreter that imports `scheduler` from `tree`."""
    command = [sys.executable, str(HERE / "step_cpu.py"), "--child", "--orders",
               str(args.orders), "--workers", str(args.workers)]
    if args.slots is not None:
        command += ["--slots", str(args.slots)]
    if args.journal:
        command.append("--journal")
    out = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False,
                         env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree)
    if out.returncode != 0:
        raise RuntimeError(f"step_cpu.py in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="main",
                        help="the baseline: a git ref, or the path of another checkout")
    parser.add_argument("--orders", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--slots", type=int, help="slots per worker (default: the cluster's)")
    parser.add_argument("--journal", action="store_true", help="with the SQLite journal")
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.orders, args.workers, args.slots, args.journal)),
              flush=True)
        return
    with baseline_tree(args.against) as baseline:
        runs: dict[str, list[dict]] = {"this": [], "other": []}
        for _ in range(args.rounds):  # alternated, so the machine's drift hits both alike
            for mode, tree in (("this", ROOT), ("other", baseline)):
                runs[mode].append(run(tree, args))
    report: dict = {"benchmark": "step_cpu", "orders": args.orders, "workers": args.workers,
                    "slots": args.slots, "journal": args.journal, "against": args.against}
    for mode, results in runs.items():
        cpu = [r["cpu_us_per_step"] for r in results]
        report[mode] = {"cpu_us_per_step_min": min(cpu),
                        "cpu_us_per_step_median": statistics.median(cpu),
                        "tasks_per_s_median": statistics.median(r["tasks_per_s"]
                                                                for r in results)}
    report["cpu_ratio_min"] = round(report["this"]["cpu_us_per_step_min"]
                                    / report["other"]["cpu_us_per_step_min"], 3)
    report["cpu_ratio_median"] = round(report["this"]["cpu_us_per_step_median"]
                                       / report["other"]["cpu_us_per_step_median"], 3)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
