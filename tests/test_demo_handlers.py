"""The demo's chaos knobs: a stuck attempt ignores its cancellation (chaos runs use it to make
thread workers abandon threads), and a stuck rate of 0 changes nothing else."""

from __future__ import annotations

import threading
import time

import pytest

from scheduler.demo import handlers
from scheduler.demo.handlers import Chaos, demo_handlers
from scheduler.engine.config import ConfigError
from scheduler.steps.context import TaskContext, TaskError


def context(timeout: float) -> TaskContext:
    return TaskContext("o-1", {"customer": "ada", "items": [{"sku": "A1", "qty": 1, "price": 2.0}]},
                       "payment", 1, "w-1", {}, "o-1:payment", timeout=timeout)


def test_a_stuck_attempt_ignores_its_cancellation_until_past_its_time_limit(monkeypatch):
    monkeypatch.setattr(handlers, "STUCK_EXTRA", 0.05)
    chaos = Chaos(stuck_rate=1.0, seed=1)
    payment = demo_handlers(chaos)["payment"]
    ctx = context(timeout=0.05)
    ctx.cancelled.set()  # its time limit has asked it to stop: it does not listen
    started = time.monotonic()
    with pytest.raises(TaskError, match=r"^ignored its cancellation \(simulated\)$"):
        payment(ctx)
    assert time.monotonic() - started >= 0.09  # its time limit and 0.05 s more
    chaos.update(stuck_rate=0.0)
    assert payment(context(timeout=0.05))["charge_id"].startswith("ch_")


def test_a_stuck_rate_of_zero_leaves_the_other_draws_as_they_were():
    calm, stuck_free = Chaos(failure_rate=0.5, seed=3), Chaos(failure_rate=0.5, seed=3)
    for _ in range(20):
        assert stuck_free.draw_stuck() is False
    assert [calm.draw() for _ in range(20)] == [stuck_free.draw() for _ in range(20)]


def test_a_bad_stuck_rate_changes_nothing():
    chaos = Chaos(failure_rate=0.2)
    with pytest.raises(ConfigError, match="stuck_rate must be a number from 0 to 1"):
        chaos.update(failure_rate=0.4, stuck_rate=1.5)
    assert chaos.view() == {"failure_rate": 0.2, "latency_ms": [0.0, 0.0], "hang_rate": 0.0,
                            "stuck_rate": 0.0}


def test_a_stopped_cluster_lets_its_stuck_demo_handlers_end_at_once():
    """A simulated stuck attempt outlives its time limit, not its server: a cluster that stops
    releases it (the fuzzed API can turn stuck_rate up; its threads must end with the test)."""
    from conftest import wait_for

    from scheduler import Cluster

    chaos = Chaos(stuck_rate=1.0, seed=1)
    before = set(threading.enumerate())
    cluster = Cluster(workers=1, chaos=chaos, step_timeout=600.0, heartbeat_interval=0.1,
                      heartbeat_timeout=60.0).start()
    try:
        order_id = cluster.submit({"customer": "ada",
                                   "items": [{"sku": "A1", "qty": 1, "price": 2.0}]})
        wait_for(lambda: cluster.get_order(order_id)["tasks"]["payment"]["status"] == "running",
                 30, message="the stuck payment to run")
    finally:
        cluster.stop()
    # Its handler thread ends now, not 600 s from now.
    wait_for(lambda: not [t for t in threading.enumerate() if t not in before and t.is_alive()],
             30, message="the stuck handler's thread to end")
