"""The token bucket that limits how fast remote workers join, and the per-connection frame
limits (dashboard/rate_limit.py)."""

from __future__ import annotations

import pytest

from dashboard.door.rate_limit import FrameLimiter, FrameLimits, TokenBucket, Verdict


def test_a_bucket_allows_a_burst_then_refills_at_its_rate():
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take(10.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == pytest.approx(0.5)
    assert bucket.take(10.4) is False
    assert bucket.take(10.5) is True
    assert bucket.take(100.0) and bucket.take(100.0) and bucket.take(100.0)
    assert bucket.take(100.0) is False, "never more than the burst, however long the pause"


def test_a_clock_going_backwards_gives_no_tokens():
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.take(10.0)
    assert bucket.take(5.0) is False
    assert bucket.take(10.5) is False and bucket.take(11.0) is True


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0), (float("nan"), 1)])
def test_a_bucket_that_could_never_allow_anything_is_refused(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


def test_a_borrowed_token_is_used_after_the_wait_until_the_bucket_is_out_of_debt():
    bucket = TokenBucket(rate=10.0, burst=2)
    assert bucket.borrow(0.0) == 0.0 and bucket.borrow(0.0) == 0.0
    assert bucket.borrow(0.0) == pytest.approx(0.1)
    assert bucket.borrow(0.0) == pytest.approx(0.2), "each borrower waits behind the last"
    assert bucket.borrow(0.3) == pytest.approx(0.0)


# ---------------------------------------------------------------- frame limits

LIMITS = FrameLimits.for_heartbeat_interval(0.5, frames_per_second=100.0, frame_burst=10,
                                            throttled_patience=2.0)


def heartbeats(limiter: FrameLimiter, times) -> list[Verdict]:
    return [limiter.admit(True, now)[0] for now in times]


def test_heartbeats_are_allowed_four_per_interval_as_a_real_worker_never_reaches():
    assert LIMITS.heartbeats_per_second == 8.0 and LIMITS.heartbeat_burst == 8
    limiter = FrameLimiter(LIMITS)
    steady = heartbeats(limiter, [i * 0.5 for i in range(200)])  # one per interval
    assert set(steady) == {Verdict.PASS} and limiter.dropped == 0
    # Twice as often, with a reconnect's extra one now and then: still never dropped.
    limiter = FrameLimiter(LIMITS)
    doubled = heartbeats(limiter, sorted([i * 0.25 for i in range(400)] + [10.0, 20.0]))
    assert set(doubled) == {Verdict.PASS}


def test_a_heartbeat_flood_is_dropped_beyond_the_burst_then_cut():
    limiter = FrameLimiter(LIMITS)
    verdicts = heartbeats(limiter, [0.0] * 41)
    assert verdicts[:8] == [Verdict.PASS] * 8
    assert verdicts[8:8 + 32] == [Verdict.DROP] * 32, "dropped while its patience lasts"
    assert verdicts[40] is Verdict.CUT
    assert limiter.dropped == 33


def test_a_connection_slightly_over_the_heartbeat_rate_loses_only_the_extra_ones():
    limiter = FrameLimiter(LIMITS)
    verdicts = heartbeats(limiter, [i / 9 for i in range(9 * 120)])  # 9 a second, 2 minutes
    assert Verdict.CUT not in verdicts
    passed = verdicts.count(Verdict.PASS)
    assert 8 * 120 <= passed <= 8 * 120 + 8
    assert limiter.dropped == len(verdicts) - passed


def test_other_frames_beyond_their_rate_wait_their_turn_and_are_not_lost():
    limiter = FrameLimiter(LIMITS)
    verdicts = [limiter.admit(False, 0.0) for _ in range(12)]
    assert verdicts[:10] == [(Verdict.PASS, 0.0)] * 10
    assert verdicts[10][0] is Verdict.WAIT and verdicts[10][1] == pytest.approx(0.01)
    assert verdicts[11][1] == pytest.approx(0.02)
    assert limiter.delayed == 2
    # Heartbeats have a bucket of their own: frames do not use it up.
    assert limiter.admit(True, 0.0)[0] is Verdict.PASS


def test_a_connection_held_at_the_frame_rate_for_too_long_is_cut_and_a_pause_forgives():
    limiter = FrameLimiter(LIMITS)
    now, verdict = 0.0, Verdict.PASS
    while verdict is not Verdict.CUT:  # a sender always ahead: each frame waits its turn
        verdict, wait = limiter.admit(False, now)
        now += wait
        assert now < 5.0, "never cut"
    assert now == pytest.approx(2.0, abs=0.02)  # held back from the first wait on
    # Another that stops for a moment between bursts is never cut.
    limiter = FrameLimiter(LIMITS)
    for second in range(10):
        for _ in range(15):
            verdict, _ = limiter.admit(False, float(second))
            assert verdict is not Verdict.CUT


@pytest.mark.parametrize("bad", [{"heartbeats_per_second": 0}, {"frame_burst": 0},
                                 {"throttled_patience": -1}, {"pause_before_cut": -1}])
def test_frame_limits_that_could_never_allow_anything_are_refused(bad):
    with pytest.raises(ValueError):
        FrameLimits(**bad)
