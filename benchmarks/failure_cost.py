"""What an attempt's outcome costs its worker and the server's door, by kind: a success (the
baseline), a failure the handler chose (TaskError: its message only), and a handler's bug
(an exception: its message and its traceback, three frames deep). Each is `run_handler` then
`check_outcome`, as a thread worker and the cluster do them, timed in one interpreter, the
three kinds in turn in each of `--rounds` rounds of `--calls` calls (so a busy machine's
drift falls on all three alike); the median round of each. Prints one JSON line with microseconds
per attempt and the ratios to the success.
Target: a failure with its traceback costs at most 5 x a success.

    python benchmarks/failure_cost.py [--calls 5000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import emit  # noqa: E402

from scheduler.steps.context import TaskContext, TaskError  # noqa: E402
from scheduler.steps.run import check_outcome, run_handler  # noqa: E402

TARGET = 5.0


def _parse(answer: dict) -> str:
    return answer["charge_id"]


def _charge(ctx: TaskContext) -> str:
    return _parse({})


def bug(ctx: TaskContext) -> dict:
    return {"charge": _charge(ctx)}


def declined(ctx: TaskContext) -> dict:
    raise TaskError("gateway answered 402: card declined")


def success(ctx: TaskContext) -> dict:
    return {"charge_id": "ch_1"}


KINDS = (("success", success), ("task_error", declined), ("exception_with_traceback", bug))


def per_attempt_us(handler, calls: int) -> float:
    """One round: microseconds per attempt of `handler`."""
    ctx = TaskContext(order_id="o-1", order={}, step="payment", attempt=1, worker_id="w-1",
                      results={}, idempotency_key="o-1:payment")
    handlers = {"payment": handler}
    started = time.perf_counter()
    for _ in range(calls):
        check_outcome(*run_handler(handlers, ctx), 65536, 2000, 8000)
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rounds: dict[str, list[float]] = {name: [] for name, _ in KINDS}
    for _ in range(args.rounds):
        for name, handler in KINDS:
            rounds[name].append(per_attempt_us(handler, args.calls))
    figures = {name: round(statistics.median(times), 1) for name, times in rounds.items()}
    ratios = {f"{name}_ratio": round(us / figures["success"], 2)
              for name, us in figures.items() if name != "success"}
    emit({"benchmark": "failure_cost", "date": time.strftime("%Y-%m-%d"),
          "us_per_attempt": figures, **ratios, "target_ratio": TARGET,
          "met": ratios["exception_with_traceback_ratio"] <= TARGET})


if __name__ == "__main__":
    main()
