"""Paused steps and circuit breakers on their own (scheduler/engine/pauses.py), with time
passed in: the breaker's window, its trip rule, its probes."""

from __future__ import annotations

import time

import pytest

from scheduler.engine.config import BreakerPolicy, ConfigError, StepPolicy
from scheduler.engine.errors import Conflict
from scheduler.engine.limits import StepLimits
from scheduler.engine.pauses import (
    BREAKER,
    REASON_CHARS,
    WINDOW_BUCKETS,
    Breaker,
    Pause,
    StepPauses,
    failure_reason,
    stamp,
)

POLICY = BreakerPolicy(share=0.5, min_attempts=4, window=60.0, probe_after=30.0)


def pauses(**policies: StepPolicy) -> StepPauses:
    return StepPauses(policies)


# ------------------------------------------------------------------ the policy


@pytest.mark.parametrize("settings,message", [
    ({"share": 0}, "share must be in"),
    ({"share": 1.5}, "share must be in"),
    ({"share": True}, "share must be in"),
    ({"min_attempts": 0}, "min_attempts must be an integer >= 1"),
    ({"min_attempts": 2.5}, "min_attempts must be an integer >= 1"),
    ({"min_attempts": True}, "min_attempts must be an integer >= 1"),
    ({"window": 0}, "window must be > 0"),
    ({"probe_after": 0}, "probe_after must be > 0"),
])
def test_a_breaker_policy_refuses_settings_that_cannot_work(settings, message):
    with pytest.raises(ConfigError, match=message):
        BreakerPolicy(**settings)


def test_the_default_breaker_trips_on_half_of_at_least_20_attempts_in_a_minute():
    policy = BreakerPolicy()
    assert (policy.share, policy.min_attempts, policy.window) == (0.5, 20, 60.0)
    assert BreakerPolicy(share=1, min_attempts=1).share == 1  # the bounds are allowed


def test_a_step_policy_takes_only_a_breaker_policy():
    with pytest.raises(ConfigError, match="breaker must be a BreakerPolicy"):
        StepPolicy(breaker=True)
    assert StepPolicy(breaker=POLICY).breaker is POLICY


# ------------------------------------------------------------------ words


def test_a_time_reads_as_a_date_in_utc():
    assert stamp(0) == "1970-01-01 00:00:00 UTC"
    assert stamp(1_796_652_192.7) == "2026-12-07 14:03:12 UTC"


def test_a_failure_reason_is_its_first_line_cut():
    assert failure_reason("  gateway answered 503\nbody: <html>") == "gateway answered 503"
    assert len(failure_reason("x" * 500)) == REASON_CHARS


def test_a_pause_says_who_since_when_and_why():
    pause = Pause("payment", "alice", 0.0, "gateway down")
    assert pause.reason() == ("payment is paused by alice since 1970-01-01 00:00:00 UTC: "
                              "gateway down")
    assert Pause("payment", "alice", 0.0).reason().endswith("UTC")
    assert Pause.from_view("payment", pause.view()) == pause


# ------------------------------------------------------------------ the window


def test_a_breaker_trips_once_enough_attempts_failed_alike():
    breaker = Breaker(POLICY)
    assert breaker.record("503", 0.0) is None  # 1 of 1, but fewer than min_attempts
    assert breaker.record(None, 0.0) is None
    assert breaker.record("503", 0.0) is None
    assert breaker.record("503", 0.0) == ("503", 3)  # 3 of 4 >= half


def test_a_share_exactly_at_the_threshold_trips():
    breaker = Breaker(POLICY)
    for error in (None, None, "503"):
        assert breaker.record(error, 0.0) is None
    assert breaker.record("503", 0.0) == ("503", 2)  # 2 of 4 == half


def test_failures_with_different_reasons_do_not_add_up():
    breaker = Breaker(POLICY)
    for i in range(10):
        assert breaker.record(f"reason {i}", 0.0) is None
    assert breaker.attempts == 10


def test_successes_keep_a_breaker_closed():
    breaker = Breaker(POLICY)
    for _ in range(10):
        assert breaker.record(None, 0.0) is None
    for _ in range(9):
        assert breaker.record("503", 1.0) is None
    assert breaker.record("503", 1.0) == ("503", 10)  # 10 of 20


def test_attempts_older_than_the_window_no_longer_count():
    breaker = Breaker(POLICY)
    for _ in range(3):
        breaker.record("503", 0.0)
    assert breaker.attempts == 3
    assert breaker.record(None, 61.0) is None
    assert breaker.attempts == 1  # the three failures left the window
    for _ in range(2):
        assert breaker.record("503", 62.0) is None
    assert breaker.record("503", 62.0) == ("503", 3)


def test_the_window_keeps_attempts_younger_than_it():
    breaker = Breaker(POLICY)
    breaker.record("503", 0.0)
    breaker.record("503", 30.0)
    breaker.record("503", 59.0)
    assert breaker.attempts == 3
    assert breaker.record("503", 59.5) == ("503", 4)


def test_a_reason_that_leaves_the_window_is_forgotten_but_others_stay():
    breaker = Breaker(POLICY)
    breaker.record("a", 0.0)
    breaker.record("b", 30.0)
    breaker.record(None, 61.0)
    assert breaker.attempts == 2
    assert breaker._failures == {"b": 1}


def test_clearing_a_breaker_forgets_its_window():
    breaker = Breaker(POLICY)
    for _ in range(3):
        breaker.record("503", 0.0)
    breaker.clear()
    assert breaker.attempts == 0
    for _ in range(3):
        assert breaker.record("503", 0.0) is None


# ------------------------------------------------------------------ pauses


def test_an_operator_pause_blocks_until_resumed_and_never_probes():
    p = pauses()
    pause = p.pause("payment", "alice", "gateway down", 0.0)
    assert "payment" in p and p.get("payment") is pause
    assert p.blocks("payment", 0.0) == pause.reason()
    assert p.room("payment", 1e9) == 0
    assert p.free_at("payment", 1e9) is None
    assert p.blocks("packing", 0.0) is None and p.room("packing", 0.0) is None
    with pytest.raises(Conflict, match="already paused: payment is paused by alice"):
        p.pause("payment", "bob", "", 1.0)
    assert p.resume("payment") is pause
    assert p.blocks("payment", 0.0) is None and p.room("payment", 0.0) is None
    with pytest.raises(Conflict, match="step payment is not paused"):
        p.resume("payment")


def test_pauses_are_listed_by_step():
    p = pauses()
    p.pause("shipping", "a", "", 0.0)
    p.pause("payment", "b", "", 0.0)
    assert [x.step for x in p.all()] == ["payment", "shipping"]


def trip(p: StepPauses, now: float = 0.0, task: str = "o:payment"):
    verdict = None
    for _ in range(POLICY.min_attempts):
        verdict = p.attempt_ended("payment", task, "gateway answered 503", 100.0, now)
    return verdict


def test_a_step_without_a_breaker_never_pauses_itself():
    p = pauses(payment=StepPolicy())
    for _ in range(50):
        assert p.attempt_ended("payment", "o:payment", "503", 0.0, 0.0) is None
    assert "payment" not in p


def test_a_tripped_breaker_pauses_its_step_saying_why():
    p = pauses(payment=StepPolicy(breaker=POLICY))
    verdict = trip(p)
    assert verdict.tripped
    pause = verdict.pause
    assert p.get("payment") is pause and pause.by_breaker and pause.who == BREAKER
    assert pause.since == 100.0
    assert pause.why.startswith("4 of its last 4 attempts in 60 s failed with: "
                                "gateway answered 503; it resumes by hand, or once a probe")
    assert "(one every 30 s)" in pause.why
    assert p.blocks("payment", 29.9) == pause.reason()
    assert p.free_at("payment", 10.0) == 30.0
    assert p.free_at("payment", 40.0) == 40.0


def test_a_breaker_lets_one_probe_start_after_probe_after_and_its_success_resumes():
    p = pauses(payment=StepPolicy(breaker=POLICY))
    trip(p)
    assert p.room("payment", 29.9) == 0
    assert p.room("payment", 30.0) == 1 and p.blocks("payment", 30.0) is None
    p.started("payment", "o7:payment", 30.0)
    assert p.room("payment", 30.0) == 0  # one probe at a time
    assert p.blocks("payment", 31.0) is not None
    # Attempts that were in flight when it tripped prove nothing, even a success.
    assert p.attempt_ended("payment", "o3:payment", None, 0.0, 31.0) is None
    assert "payment" in p
    verdict = p.attempt_ended("payment", "o7:payment", None, 0.0, 32.0)
    assert verdict is not None and not verdict.tripped and verdict.pause.by_breaker
    assert "payment" not in p and p.free_at("payment", 32.0) is None
    assert p.blocks("payment", 32.0) is None


def test_a_failed_probe_keeps_the_step_paused_and_the_next_probe_waits_again():
    p = pauses(payment=StepPolicy(breaker=POLICY))
    trip(p)
    p.started("payment", "o7:payment", 30.0)
    assert p.attempt_ended("payment", "o7:payment", "503", 0.0, 35.0) is None
    assert "payment" in p
    assert p.room("payment", 64.9) == 0 and p.room("payment", 65.0) == 1


def test_a_probe_that_never_reports_is_replaced_after_probe_after():
    p = pauses(payment=StepPolicy(breaker=POLICY))
    trip(p)
    p.started("payment", "o7:payment", 30.0)
    assert p.room("payment", 59.9) == 0 and p.room("payment", 60.0) == 1
    p.started("payment", "o8:payment", 60.0)
    # The first probe's late success is not the probe's any more.
    assert p.attempt_ended("payment", "o7:payment", None, 0.0, 61.0) is None
    assert p.attempt_ended("payment", "o8:payment", None, 0.0, 61.0) is not None


def test_a_start_before_the_probe_time_is_no_probe():
    p = pauses(payment=StepPolicy(breaker=POLICY))
    trip(p)
    p.started("payment", "o1:payment", 10.0)  # (an operator's resume raced it, say)
    assert p.room("payment", 30.0) == 1
    assert p.attempt_ended("payment", "o1:payment", None, 0.0, 11.0) is None


def test_an_operator_pause_ignores_its_breaker_and_resuming_clears_the_window():
    p = pauses(payment=StepPolicy(breaker=POLICY))
    for _ in range(3):
        p.attempt_ended("payment", "o:payment", "503", 0.0, 0.0)
    p.pause("payment", "alice", "", 0.0)
    p.started("payment", "o1:payment", 100.0)
    assert p.attempt_ended("payment", "o1:payment", "503", 0.0, 100.0) is None
    assert p.get("payment").who == "alice"
    p.resume("payment")
    for _ in range(3):  # the three failures before the pause were forgotten
        assert p.attempt_ended("payment", "o:payment", "503", 0.0, 100.0) is None


def test_resuming_a_tripped_step_by_hand_ends_its_probes():
    p = pauses(payment=StepPolicy(breaker=POLICY))
    trip(p)
    p.resume("payment")
    assert p.free_at("payment", 0.0) is None
    p.started("payment", "o1:payment", 40.0)
    assert p.attempt_ended("payment", "o1:payment", None, 0.0, 41.0) is None


def test_restored_pauses_hold_and_a_breakers_probes_start_over():
    p = pauses(payment=StepPolicy(breaker=POLICY))
    p.restore([Pause("payment", BREAKER, 5.0, "why", by_breaker=True),
               Pause("packing", "alice", 6.0)], now=1000.0)
    assert p.get("packing").who == "alice"
    assert p.room("payment", 1029.0) == 0 and p.room("payment", 1030.0) == 1
    assert p.free_at("packing", 1030.0) is None


# ------------------------------------------------------------------ inside the limits


def test_a_paused_step_blocks_before_its_limits_and_has_no_room():
    lim = StepLimits({"payment": StepPolicy(max_in_flight=5)})
    lim.pauses.pause("payment", "alice", "", 0.0)
    assert lim.blocks("payment", 0.0).startswith("payment is paused by alice")
    assert lim.room("payment", 0.0) == 0
    assert lim.free_at("payment", 0.0) is None
    lim.pauses.pause("packing", "alice", "", 0.0)  # an unlimited step pauses alike
    assert lim.blocks("packing", 0.0).startswith("packing is paused by alice")
    assert lim.room("packing", 0.0) == 0


def test_a_probe_is_still_bound_by_the_steps_limits():
    lim = StepLimits({"payment": StepPolicy(max_in_flight=1, breaker=POLICY)})
    lim.started("payment", 0.0, "o0:payment")
    for _ in range(4):
        lim.pauses.attempt_ended("payment", "o:payment", "503", 0.0, 0.0)
    assert lim.room("payment", 30.0) == 0  # probe allowed, but one is in flight
    lim.finished("payment")
    assert lim.room("payment", 30.0) == 1
    assert lim.free_at("payment", 10.0) == 30.0
    lim.started("payment", 30.0, "o1:payment")
    assert lim.in_flight("payment") == 1
    assert lim.pauses.attempt_ended("payment", "o1:payment", None, 0.0, 31.0) is not None


def test_limits_set_while_running_hold_at_once_with_the_count_given():
    lim = StepLimits({})
    lim.set_policy("payment", StepPolicy(max_in_flight=2), in_flight=2)
    assert lim.blocks("payment", 0.0) == "step payment is at its limit of 2 in flight"
    lim.set_policy("payment", StepPolicy(max_in_flight=3), in_flight=2)
    assert lim.room("payment", 0.0) == 1
    lim.set_policy("payment", StepPolicy(max_in_flight=3), in_flight=0)
    assert lim.in_flight("payment") == 0 and lim.room("payment", 0.0) == 3
    lim.restarted(0.0, 10.0)
    lim.set_policy("payment", StepPolicy(), in_flight=2)  # no limit any more
    assert lim.in_flight("payment") == 0 and lim.blocks("payment", 1.0) is None
    lim.set_policy("payment", StepPolicy(max_in_flight=1), in_flight=0)
    assert lim.blocks("payment", 1.0) is None  # the old hold went with the old limit


def test_a_rate_set_while_running_keeps_its_bucket_cut_to_the_new_burst():
    lim = StepLimits({"payment": StepPolicy(rate=10.0, burst=10)})
    lim.set_policy("payment", StepPolicy(rate=2.0, burst=2), in_flight=0)
    assert lim.room("payment", 0.0) == 2
    lim.started("payment", 0.0)
    lim.set_policy("payment", StepPolicy(), in_flight=0)
    lim.set_policy("payment", StepPolicy(rate=2.0, burst=2), in_flight=0)
    assert lim.room("payment", 0.0) == 2  # the bucket went with the old rate


# ------------------------------------------------------------------ found by mutation testing


def test_a_time_reads_in_utc_whatever_the_servers_own_zone(monkeypatch):
    monkeypatch.setenv("TZ", "XST+05")  # a POSIX zone five hours behind UTC, no tzdata needed
    time.tzset()
    try:
        assert time.localtime(0).tm_hour == 19  # the zone took effect
        assert stamp(0) == "1970-01-01 00:00:00 UTC"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_failure_reason_of_many_lines_is_its_first_line_only():
    assert failure_reason("timeout\nretrying\nbody: <html>") == "timeout"


def test_a_breakers_pause_and_one_read_from_an_older_view_come_back_as_they_were():
    tripped = Pause("payment", BREAKER, 5.0, "4 of 4 failed", by_breaker=True)
    assert Pause.from_view("payment", tripped.view()) == tripped
    # A view written before `why` and `by_breaker` existed: an operator's pause, no words.
    assert Pause.from_view("payment", {"who": "alice", "since": 7}) == Pause(
        "payment", "alice", 7.0, "", by_breaker=False)


def test_an_attempt_a_whole_window_old_has_left_it():
    breaker = Breaker(POLICY)
    for _ in range(3):
        breaker.record("503", 0.0)
    assert breaker.record(None, 60.0) is None
    assert breaker.attempts == 1


def test_a_reason_still_in_the_window_keeps_the_failures_that_did_not_leave():
    breaker = Breaker(POLICY)
    assert breaker.record("503", 0.0) is None
    for error in ("503", None, None):
        assert breaker.record(error, 30.0) is None  # 2 of 4, but the first "503" at 30 s
    # At 61 s the first failure left: 1 of 3 "503" remain, and one more makes 2 of 4.
    assert breaker.record("503", 61.0) == ("503", 2)


def test_a_breakers_memory_stays_bounded_at_any_rate_of_attempts():
    breaker = Breaker(BreakerPolicy(share=1.0, min_attempts=10**9, window=60.0,
                                    probe_after=30.0))
    for i in range(6000):
        breaker.record("503" if i % 2 else None, i / 50)  # 50 a second for two minutes
    assert breaker.attempts == 3000  # the last minute's
    assert len(breaker._buckets) <= WINDOW_BUCKETS + 1


def test_a_restored_operator_pause_on_a_step_with_a_breaker_never_probes():
    p = pauses(payment=StepPolicy(breaker=POLICY))
    p.restore([Pause("payment", "alice", 5.0, "maintenance")], now=1000.0)
    assert p.room("payment", 5000.0) == 0 and p.free_at("payment", 5000.0) is None
    assert p.blocks("payment", 5000.0).startswith("payment is paused by alice")


def test_resuming_an_operator_pause_forgets_the_failures_its_breaker_saw_before():
    p = pauses(payment=StepPolicy(breaker=POLICY))
    for _ in range(3):
        p.attempt_ended("payment", "o:payment", "503", 0.0, 0.0)
    p.pause("payment", "alice", "", 0.0)
    p.resume("payment")
    # Still inside the window: without the pause, the fourth failure would trip it.
    assert p.attempt_ended("payment", "o:payment", "503", 0.0, 10.0) is None
    assert "payment" not in p


def test_a_probe_resumed_by_hand_that_reports_after_a_new_trip_does_not_resume_the_step():
    p = pauses(payment=StepPolicy(breaker=POLICY))
    trip(p)
    p.started("payment", "o7:payment", 30.0)  # the probe
    p.resume("payment")  # an operator does not wait for it
    assert trip(p, now=40.0).tripped  # the gateway fails again
    assert p.attempt_ended("payment", "o7:payment", None, 0.0, 41.0) is None
    assert p.get("payment").by_breaker


def test_a_breaker_may_count_over_and_probe_after_less_than_a_second():
    policy = BreakerPolicy(share=0.5, min_attempts=4, window=0.5, probe_after=0.25)
    assert (policy.window, policy.probe_after) == (0.5, 0.25)
