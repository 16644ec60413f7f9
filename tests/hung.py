"""Handlers deaf to their cancellation, and a clock the test moves: for the tests of hung
handlers whose threads a thread worker abandons (issue 19, finding 5)."""

from __future__ import annotations

import threading

from conftest import wait_for

from scheduler import Cluster
from scheduler.steps.context import TaskContext


class FakeClock:
    """The scheduler's clock, moved on by the test: time limits, grace periods and backoffs
    pass only when the test says so, however busy the machine is."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def deaf_handlers(entered: threading.Semaphore, release: threading.Event, hang: str = "hang"):
    """Payment hangs for orders of customer `hang` until the test releases it, deaf to its
    cancellation (a gateway call without a timeout); everything else returns at once."""

    def payment(ctx: TaskContext):
        if ctx.order["customer"] == hang:
            entered.release()
            release.wait(60)  # ignores ctx.cancelled on purpose (bounded, should a test fail)
        return "paid"

    return {"payment": payment, "packing": lambda c: "packed", "shipping": lambda c: "shipped"}


def run_hung_attempts(cluster: Cluster, clock: FakeClock, entered: threading.Semaphore,
                      hung: int, timeout: float, grace: float) -> None:
    """Once `hung` attempts are inside a deaf handler, move the clock past their time limit,
    wait until the scheduler holds them stuck, then move it past their grace."""
    for _ in range(hung):
        assert entered.acquire(timeout=10), "a hung attempt to start"
    clock.advance(timeout)
    wait_for(lambda: cluster.stats()["slots"]["stuck"] == hung, 10,
             message=f"{hung} attempts timed out and stuck")
    clock.advance(grace)
