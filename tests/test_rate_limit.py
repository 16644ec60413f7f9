"""The token bucket that limits how fast remote workers join (dashboard/rate_limit.py)."""

from __future__ import annotations

import pytest

from dashboard.rate_limit import TokenBucket


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
