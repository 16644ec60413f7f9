"""Per-step limits on their own, with time passed in: how many of a step are in flight, how
many more may start, a token bucket that refills at the step's rate up to its burst."""

from __future__ import annotations

import pytest

from scheduler.engine.config import StepPolicy
from scheduler.engine.limits import StepLimits


def limits(**policies: StepPolicy) -> StepLimits:
    return StepLimits(policies)


def test_an_unlimited_step_never_blocks_and_has_room_for_far_more_than_any_backlog():
    lim = limits(payment=StepPolicy(timeout=5.0))  # a policy, but no limit in it
    for _ in range(100):
        lim.started("payment", 0.0)
    assert lim.blocks("payment", 0.0) is None
    assert lim.room("payment", 0.0) >= 1_000_000
    assert lim.room("packing", 0.0) >= 1_000_000
    assert lim.in_flight("payment") == 0  # not counted at all
    assert lim.free_at("payment", 0.0) is None


def test_finishing_an_unlimited_step_frees_no_waiters():
    lim = limits(payment=StepPolicy(max_in_flight=1))
    assert lim.finished("packing") is False
    lim.started("payment", 0.0)
    assert lim.finished("payment") is True


def test_room_under_a_concurrency_limit_is_what_is_left_of_it():
    lim = limits(payment=StepPolicy(max_in_flight=3))
    assert lim.room("payment", 0.0) == 3
    lim.started("payment", 0.0)
    lim.started("payment", 0.0)
    assert lim.in_flight("payment") == 2
    assert lim.room("payment", 0.0) == 1
    assert lim.blocks("payment", 0.0) is None
    lim.started("payment", 0.0)
    assert lim.room("payment", 0.0) == 0
    assert lim.blocks("payment", 0.0) == "step payment is at its limit of 3 in flight"
    assert lim.room("packing", 0.0) > 3  # other steps are not held by it


def test_finishing_a_task_gives_its_room_back_one_at_a_time():
    lim = limits(payment=StepPolicy(max_in_flight=2))
    lim.started("payment", 0.0)
    lim.started("payment", 0.0)
    assert lim.finished("payment") is True
    assert lim.in_flight("payment") == 1 and lim.room("payment", 0.0) == 1
    assert lim.finished("payment") is True
    assert lim.in_flight("payment") == 0 and lim.room("payment", 0.0) == 2


def test_finishing_more_than_started_never_counts_below_zero():
    lim = limits(payment=StepPolicy(max_in_flight=2))
    assert lim.finished("payment") is True
    assert lim.in_flight("payment") == 0
    assert lim.room("payment", 0.0) == 2


def test_a_rate_limited_step_starts_with_a_full_bucket_of_its_burst():
    lim = limits(payment=StepPolicy(rate=1.0, burst=5))
    assert lim.room("payment", 0.0) == 5
    assert lim.free_at("payment", 0.0) == 0.0


@pytest.mark.parametrize("rate,burst", [(3.0, 3), (2.6, 3), (0.4, 1), (1.0, 1)])
def test_without_a_burst_the_bucket_holds_one_second_of_starts_and_at_least_one(rate, burst):
    lim = limits(payment=StepPolicy(rate=rate))
    assert lim.room("payment", 0.0) == burst


def test_tokens_are_spent_by_starts_and_refill_at_the_rate_up_to_the_burst():
    lim = limits(payment=StepPolicy(rate=2.0, burst=3))
    for _ in range(3):
        lim.started("payment", 0.0)
    assert lim.room("payment", 0.0) == 0
    assert lim.blocks("payment", 0.0) == "step payment is at its rate limit of 2 starts/s"
    assert lim.free_at("payment", 0.0) == 0.5
    assert lim.room("payment", 0.25) == 0  # half a token
    assert lim.free_at("payment", 0.25) == 0.5
    assert lim.room("payment", 0.5) == 1
    assert lim.blocks("payment", 0.5) is None
    assert lim.room("payment", 1.0) == 2
    assert lim.room("payment", 100.0) == 3  # never more than the burst
    lim.started("payment", 100.0)
    assert lim.room("payment", 100.0) == 2


def test_a_step_with_both_limits_has_the_room_of_the_tighter_one():
    lim = limits(payment=StepPolicy(rate=10.0, burst=10, max_in_flight=2))
    assert lim.room("payment", 0.0) == 2
    lim.started("payment", 0.0)
    lim.started("payment", 0.0)
    assert lim.room("payment", 0.0) == 0
    assert lim.blocks("payment", 0.0) == "step payment is at its limit of 2 in flight"


def test_finishing_frees_a_concurrency_slot_but_gives_no_spent_token_back():
    lim = limits(payment=StepPolicy(rate=10.0, burst=3, max_in_flight=5))
    assert lim.room("payment", 0.0) == 3
    for _ in range(3):
        lim.started("payment", 0.0)
    assert lim.blocks("payment", 0.0) == "step payment is at its rate limit of 10 starts/s"
    for _ in range(3):
        lim.finished("payment")
    assert lim.in_flight("payment") == 0
    assert lim.room("payment", 0.0) == 0
    assert lim.room("payment", 0.1) == 1


def test_a_step_with_a_rate_of_under_one_a_second_says_so_exactly():
    lim = limits(payment=StepPolicy(rate=0.5))
    lim.started("payment", 0.0)
    assert lim.blocks("payment", 1.0) == "step payment is at its rate limit of 0.5 starts/s"
    assert lim.free_at("payment", 1.0) == 2.0
    assert lim.blocks("payment", 2.0) is None


def test_a_concurrency_limit_alone_has_no_time_to_wait_for():
    lim = limits(payment=StepPolicy(max_in_flight=1))
    lim.started("payment", 0.0)
    assert lim.free_at("payment", 5.0) is None


# ------------------------------------------------------------------ the hold after a restart


def held(hold: float, **policy) -> StepLimits:
    """Limits of a payment step (`policy`), restarted at 10.0 with a hold of `hold` s."""
    lim = limits(payment=StepPolicy(**policy))
    lim.restarted(10.0, hold)
    return lim


def test_a_restart_holds_a_concurrency_limited_step_until_the_hold_ends_and_not_after():
    lim = held(5.0, max_in_flight=3)
    assert lim.room("payment", 12.0) == 0
    assert lim.blocks("payment", 12.0) == (
        "step payment holds its starts after a restart until the workers that outlived the "
        "old server have said what they still run")
    assert lim.free_at("payment", 12.0) == 15.0  # the timer wakes the core then
    # At the hold's end exactly, the step starts again, and no timer is asked for.
    assert lim.room("payment", 15.0) == 3 and lim.blocks("payment", 15.0) is None
    assert lim.free_at("payment", 15.0) is None


def test_a_hold_shorter_than_a_second_still_holds():
    lim = held(0.5, max_in_flight=3)
    assert lim.room("payment", 10.25) == 0 and lim.free_at("payment", 10.25) == 10.5
    assert lim.room("payment", 10.5) == 3


def test_a_held_rate_limited_step_is_free_at_the_later_of_the_hold_and_its_refill():
    # Its bucket starts empty at the restart: a token comes at 10.1, the hold ends at 15.
    lim = held(5.0, max_in_flight=3, rate=10.0)
    assert lim.free_at("payment", 10.0) == 15.0
    # A hold shorter than the refill: the first token decides.
    lim = held(0.05, max_in_flight=3, rate=10.0)
    assert lim.free_at("payment", 10.0) == pytest.approx(10.1)
