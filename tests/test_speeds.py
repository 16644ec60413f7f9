"""How fast each worker runs steps (engine/speeds.py): factors against each step's average."""

from __future__ import annotations

import pytest

from scheduler.engine.speeds import ALPHA, STEP_ALPHA, WorkerSpeeds


def test_an_unmeasured_worker_counts_as_average_and_is_not_slow():
    speeds = WorkerSpeeds(slow_factor=2.0, memory=30.0)
    assert speeds.factor("w1", 0.0) == 1.0 and not speeds.is_slow("w1", 0.0)


def test_each_step_is_measured_against_its_own_average():
    speeds = WorkerSpeeds(slow_factor=2.0, memory=30.0)
    speeds.observed("fast", "payment", 1.0, now=1.0)  # the step's first: its average
    speeds.observed("fast", "label", 0.1, now=1.0)
    assert speeds.factor("fast", 1.0) == 1.0
    speeds.observed("slow", "payment", 10.0, now=2.0)
    mean = 1.0 + STEP_ALPHA * 9.0
    assert speeds.factor("slow", 2.0) == pytest.approx(10.0 / mean)
    speeds.observed("slow", "payment", 10.0, now=3.0)
    later = mean + STEP_ALPHA * (10.0 - mean)
    assert speeds.factor("slow", 3.0) == pytest.approx(
        10.0 / mean + ALPHA * (10.0 / later - 10.0 / mean))


def test_a_worker_more_than_slow_factor_times_slower_than_the_fastest_is_slow():
    speeds = WorkerSpeeds(slow_factor=2.0, memory=30.0)
    speeds.observed("fast", "payment", 1.0, now=1.0)
    speeds.observed("slow", "payment", 10.0, now=2.0)  # factor 6.9 against 1
    speeds.observed("twice", "payment", 2.0, now=2.0)  # factor 1.36
    speeds.observed("quick", "payment", 0.5, now=2.0)  # factor 0.34: the fastest
    assert speeds.is_slow("slow", 2.0) and speeds.is_slow("twice", 2.0)
    assert speeds.is_slow("fast", 2.0) and not speeds.is_slow("quick", 2.0)
    assert speeds.clearly_faster(3.57, 1.0) and speeds.clearly_faster(2.0, 1.0)
    assert not speeds.clearly_faster(1.9, 1.0)


def test_alike_speeds_make_nobody_slow():
    speeds = WorkerSpeeds(slow_factor=2.0, memory=30.0)
    for now, (worker, took) in enumerate([("a", 1.0), ("b", 1.5), ("c", 0.8), ("a", 1.2)]):
        speeds.observed(worker, "payment", took, now=float(now))
    assert not any(speeds.is_slow(w, 4.0) for w in "abc")


def test_a_speed_not_measured_within_memory_is_forgotten_until_the_next_step():
    speeds = WorkerSpeeds(slow_factor=2.0, memory=30.0)
    speeds.observed("fast", "payment", 1.0, now=0.0)
    speeds.observed("slow", "payment", 10.0, now=0.0)
    assert speeds.is_slow("slow", 30.0) and speeds.factor("slow", 30.0) > 3
    assert not speeds.is_slow("slow", 30.5) and speeds.factor("slow", 30.5) == 1.0


def test_when_the_fastest_slows_down_or_leaves_the_next_fastest_is_the_measure():
    speeds = WorkerSpeeds(slow_factor=2.0, memory=1000.0)
    speeds.observed("a", "payment", 1.0, now=0.0)
    speeds.observed("b", "payment", 3.0, now=0.0)  # mean 1.1: b 2.73, a 1
    assert speeds.is_slow("b", 0.0)
    for now in range(1, 8):  # a slows to b's speed
        speeds.observed("a", "payment", 3.0, now=float(now))
    assert not speeds.is_slow("b", 8.0)
    speeds.observed("c", "payment", 0.5, now=9.0)  # a new fastest
    assert speeds.is_slow("b", 9.0) and speeds.is_slow("a", 9.0)
    speeds.forget("c")
    assert not speeds.is_slow("b", 9.0) and speeds.factor("c", 9.0) == 1.0
    speeds.forget("c")  # twice: nothing left to forget


def test_steps_that_took_no_time_leave_factors_unmeasured_then_very_fast():
    speeds = WorkerSpeeds(slow_factor=2.0, memory=30.0)
    speeds.observed("a", "noop", 0.0, now=0.0)
    assert speeds.factor("a", 0.0) == 1.0  # no average to compare with yet
    speeds.observed("b", "noop", 1.0, now=0.0)  # mean 0.05: b is 20
    speeds.observed("a", "noop", 0.0, now=0.0)  # a is 0: counted as tiny, not zero
    assert 0 < speeds.factor("a", 0.0) < 1e-5 and speeds.is_slow("b", 0.0)


def test_a_workers_long_factor_adds_twice_how_far_its_steps_stray_from_its_factor():
    speeds = WorkerSpeeds(slow_factor=2.0, memory=30.0)
    assert speeds.long_factor("w1", 0.0) == 1.0  # not measured: average
    speeds.observed("w1", "payment", 1.0, now=0.0)  # ratio 1: factor 1, no spread yet
    assert speeds.long_factor("w1", 0.0) == 1.0
    speeds.observed("w1", "payment", 2.0, now=1.0)  # mean 1.05, ratio 1.905
    ratio = 2.0 / (1.0 + STEP_ALPHA)
    spread = ALPHA * (ratio - 1.0)
    factor = 1.0 + ALPHA * (ratio - 1.0)
    assert speeds.factor("w1", 1.0) == pytest.approx(factor)
    assert speeds.long_factor("w1", 1.0) == pytest.approx(factor + 2 * spread)
    speeds.observed("w1", "payment", 0.5, now=2.0)  # shorter: strays the other way
    mean = 1.0 + STEP_ALPHA + STEP_ALPHA * (0.5 - 1.0 - STEP_ALPHA)
    spread += ALPHA * (abs(0.5 / mean - factor) - spread)
    factor += ALPHA * (0.5 / mean - factor)
    assert speeds.long_factor("w1", 2.0) == pytest.approx(factor + 2 * spread)
    assert speeds.long_factor("w1", 32.5) == 1.0  # forgotten
    speeds.forget("w1")
    assert speeds.long_factor("w1", 2.0) == 1.0


def test_a_speed_is_trusted_for_memory_seconds_from_its_last_step_whenever_that_was():
    speeds = WorkerSpeeds(slow_factor=2.0, memory=30.0)
    speeds.observed("fast", "payment", 1.0, now=100.0)
    speeds.observed("slow", "payment", 10.0, now=100.0)
    factor = speeds.factor("slow", 100.0)
    assert factor > 6 and speeds.long_factor("slow", 129.0) == factor
    assert speeds.is_slow("slow", 130.0) and speeds.factor("slow", 130.0) == factor
    assert speeds.long_factor("slow", 130.0) == factor
    assert speeds.factor("slow", 130.5) == speeds.long_factor("slow", 130.5) == 1.0
