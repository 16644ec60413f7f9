"""The chaos run's planned burst of hung attempts against a fake server
(scheduler/chaos/faults.py): what it sets, when it tries again, and that spikes keep out of
it. No process, no socket: the driver's requests are recorded."""

from __future__ import annotations

import io
import time

import pytest

from scheduler.chaos.driver import ChaosSettings, Driver
from scheduler.chaos.faults import Faults
from scheduler.chaos.settings import CALM, SPIKE, STUCK_BURST
from scheduler.chaos.settings import HANG_BURST as HANG_BURST_CHAOS


class _Answer:
    def __init__(self, status_code: int, body: dict):
        self.status_code, self._body = status_code, body

    def json(self) -> dict:
        return self._body


@pytest.fixture
def burst_driver(monkeypatch):
    drivers: list[Driver] = []

    def make(time_outs_after_parts: int):
        driver, sent = _burst_driver(monkeypatch, time_outs_after_parts)
        drivers.append(driver)
        return driver, sent

    yield make
    for driver in drivers:
        driver.close()


def _burst_driver(monkeypatch, time_outs_after_parts: int):
    """A driver whose server is a fake: it records the chaos it is sent, and counts an
    attempt timed out once `time_outs_after_parts` hanging parts have run."""
    import scheduler.chaos.faults as faults_module

    for name in ("STUCK_BURST_SECONDS", "HANG_BURST_SECONDS", "HANG_EVIDENCE_GRACE"):
        monkeypatch.setattr(faults_module, name, 0.0)
    driver = Driver(ChaosSettings(duration=1, step_timeout=0.05), "http://127.0.0.1:9")
    driver.out = io.StringIO()
    sent: list[dict] = []

    def call(method, path, timeout=10, **kw):
        if method == "PUT":
            sent.append(kw["json"])
            return _Answer(200, {})
        if path == "/api/workers":
            return _Answer(201, {"ids": ["w9"]})
        hanging = sum(chaos == HANG_BURST_CHAOS for chaos in sent)
        return _Answer(200, {"timed_out_attempts": int(hanging >= time_outs_after_parts)})

    monkeypatch.setattr(driver, "call", call)
    return driver, sent


def test_the_hanging_part_of_the_burst_runs_again_until_an_attempt_has_timed_out(burst_driver):
    # A loaded machine (or a failover) let the first half second start nothing that hung:
    # the run would show no time limit at work, so the hanging part comes again.
    driver, sent = burst_driver(time_outs_after_parts=2)
    faults = Faults(driver)
    faults.hang_burst()
    assert faults.bursting()  # no spike now
    faults._burst.join(10)
    assert sent == [STUCK_BURST, HANG_BURST_CHAOS, CALM, HANG_BURST_CHAOS, CALM]
    assert driver.faults["hang_burst"] == 1 and driver.faults["hang_burst_again"] == 1
    assert "w9" in faults.spared and not faults.bursting()


def test_the_hanging_part_does_not_come_again_when_it_would_run_into_the_next_restart(
        burst_driver):
    driver, sent = burst_driver(time_outs_after_parts=2)
    faults = Faults(driver)
    faults.burst_deadline = time.monotonic()  # the next planned restart is due
    faults.hang_burst()
    faults._burst.join(10)
    assert sent == [STUCK_BURST, HANG_BURST_CHAOS, CALM]
    assert driver.faults["hang_burst_out_of_time"] == 1 and not faults.bursting()


def test_a_burst_whose_attempts_timed_out_runs_once(burst_driver):
    driver, sent = burst_driver(time_outs_after_parts=1)
    faults = Faults(driver)
    faults.hang_burst()
    faults._burst.join(10)
    assert sent == [STUCK_BURST, HANG_BURST_CHAOS, CALM]
    assert "hang_burst_again" not in driver.faults


def test_a_spike_neither_starts_nor_ends_during_the_planned_burst(burst_driver, monkeypatch):
    driver, sent = burst_driver(time_outs_after_parts=1)
    faults = Faults(driver)
    faults.for_a_moment(SPIKE, 0.0).join(10)
    assert sent == [SPIKE, CALM]  # out of a burst, a spike calms down again
    calm = faults.for_a_moment(SPIKE, 60.0)
    faults._bursting = True  # the burst began before the spike's end
    calm.cancel()
    calm.function()  # what its timer would have done then
    assert sent == [SPIKE, CALM, SPIKE]  # the burst's own end calms the handlers
    monkeypatch.setattr(driver.rng, "choices", lambda *a, **k: ["spike"])
    monkeypatch.setattr(driver, "alive", lambda: [])
    faults.one_fault()
    assert sent == [SPIKE, CALM, SPIKE]
    assert driver.faults.get("failure_and_latency_spike") is None
