"""The core's one heap of timers (scheduler/engine/timers.py), on its own."""

from __future__ import annotations

from scheduler.engine.timers import Timers


def test_due_timers_come_out_earliest_first_and_are_gone():
    timers = Timers()
    timers.set("b", 2.0)
    timers.set("a", 1.0)
    timers.set("c", 3.0)
    assert timers.next_due() == 1.0 and len(timers) == 3
    assert timers.due(2.5, limit=10) == ["a", "b"]
    assert len(timers) == 1 and timers.when("a") is None and timers.when("c") == 3.0
    assert timers.due(2.5, limit=10) == []


def test_a_replaced_or_cleared_timer_fires_only_as_it_is_now():
    timers = Timers()
    timers.set("a", 1.0)
    timers.set("a", 5.0)  # moved later: the old entry is stale
    timers.set("b", 2.0)
    timers.clear("b")
    assert timers.next_due() == 5.0 and len(timers) == 1
    assert timers.due(4.0, limit=10) == []
    assert timers.due(5.0, limit=10) == ["a"] and timers.next_due() is None


def test_at_most_limit_fire_at_once_and_the_rest_stay_due():
    timers = Timers()
    for i in range(5):
        timers.set(f"t{i}", float(i))
    assert timers.due(10.0, limit=2) == ["t0", "t1"]
    assert len(timers) == 3 and timers.next_due() == 2.0
    assert timers.due(10.0, limit=5) == ["t2", "t3", "t4"]
