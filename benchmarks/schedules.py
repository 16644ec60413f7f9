"""What a scheduled time costs the server: one fire (the decision, then the order submitted
with its key `schedule:<name>:<time>`, its `schedule_fired` event and the schedule's mark in
the same durable commit) against one `submit_idempotent` with a key of its own (the
baseline), on one cluster with its SQLite journal, its thread not started (the fires are
driven here, one time each, on a fake clock one second apart). Both kinds in turn in each
of `--rounds` rounds of `--calls` calls; the median round of each. Prints one JSON line with
milliseconds per order and the ratio to the submit, and the pure decision's microseconds
per time (a `decide` that has one time to fire) against `Cron.next_after`.
Target: a fire costs at most 1.5 x a submit with a key.

    python benchmarks/schedules.py [--calls 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import ORDER, emit  # noqa: E402

from scheduler import App, Cluster  # noqa: E402
from scheduler.engine.cron import Cron  # noqa: E402
from scheduler.engine.schedules import Mark, decide  # noqa: E402
from scheduler.journal.location import open_journal, parse_location  # noqa: E402

TARGET = 1.5
START = 1_796_637_600.0  # 2026-12-07T10:00:00Z


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def ticking_app() -> App:
    app = App("bench")
    app.add_step("reconcile", lambda ctx: None)
    app.workflow("nightly", ["reconcile"])
    app.schedule("tick", cron="* * * * * *", workflow="nightly", data=ORDER)
    return app


def submits_ms(cluster: Cluster, calls: int, round_no: int) -> float:
    started = time.perf_counter()
    for i in range(calls):
        cluster.submit_idempotent(ORDER, "nightly", idempotency_key=f"k-{round_no}-{i}")
    return (time.perf_counter() - started) * 1000 / calls


def fires_ms(cluster: Cluster, clock: Clock, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        clock.now += 1.0
        cluster.run_schedules(clock.now)
    return (time.perf_counter() - started) * 1000 / calls


def decide_us(calls: int) -> tuple[float, float]:
    """(µs per decide with one time due, µs per Cron.next_after)."""
    schedule = ticking_app().schedules["tick"]
    cron = Cron.parse("* * * * * *")
    mark, t = Mark("tick", since=START), START
    started = time.perf_counter()
    for _ in range(calls):
        t += 1.0
        due = decide(schedule, mark, t, START)
        mark = mark.fired(due.fire[0], "o", t)
    decided = (time.perf_counter() - started) * 1e6 / calls
    started = time.perf_counter()
    for i in range(calls):
        cron.next_after(START + i)
    return decided, (time.perf_counter() - started) * 1e6 / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        clock = Clock(START)
        journal = open_journal(parse_location(str(Path(folder) / "bench.db")))
        cluster = Cluster(workers=0, journal=journal, app=ticking_app(), clock=clock)
        try:
            cluster.run_schedules(clock.now)  # the schedule known: a first commit
            submit, fire = [], []
            for round_no in range(args.rounds):
                submit.append(submits_ms(cluster, args.calls, round_no))
                fire.append(fires_ms(cluster, clock, args.calls))
            runs = cluster.schedule("tick")["runs"]
        finally:
            cluster.stop()
    assert runs == args.calls * args.rounds, f"{runs} fires, not one per call"
    decided, walked = decide_us(5000)
    submit_ms, fire_ms = statistics.median(submit), statistics.median(fire)
    ratio = fire_ms / submit_ms
    emit({
        "benchmark": "schedules", "calls": args.calls, "rounds": args.rounds,
        "submit_ms": round(submit_ms, 3), "fire_ms": round(fire_ms, 3),
        "fire_over_submit": round(ratio, 2), "target": TARGET, "ok": ratio <= TARGET,
        "decide_us": round(decided, 1), "next_after_us": round(walked, 1),
        "decide_over_next_after": round(decided / walked, 2),
    })


if __name__ == "__main__":
    main()
