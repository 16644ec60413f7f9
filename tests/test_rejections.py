"""Late results counted per worker per window (engine/rejections.py): pure, time passed in."""

from __future__ import annotations

from scheduler.engine.rejections import REJECTION_BURST, REJECTION_WINDOW, RejectionWindows


def test_the_first_burst_of_a_window_is_recorded_and_the_rest_only_counted():
    windows = RejectionWindows(burst=3, window=10.0)
    answers = [windows.count("w1", now=1.0 + i / 10) for i in range(5)]
    assert answers == [(0, False)] * 3 + [(0, True)] * 2
    assert windows.close("w1") == 2
    assert windows.close("w1") == 0  # closed already


def test_a_window_closes_exactly_its_length_after_it_opened_and_says_what_it_held_back():
    windows = RejectionWindows(burst=1, window=10.0)
    windows.count("w1", now=5.0)
    assert windows.count("w1", now=14.9) == (0, True)  # still the same window
    # The next one, at 15.0, opens a new window: the old one's held-back count comes first.
    assert windows.count("w1", now=15.0) == (1, False)
    assert windows.count("w1", now=15.5) == (0, True)


def test_each_worker_has_its_own_window():
    windows = RejectionWindows(burst=1, window=10.0)
    assert windows.count("w1", now=0.0) == (0, False)
    assert windows.count("w2", now=0.0) == (0, False)
    assert windows.count("w1", now=1.0) == (0, True)
    assert windows.close("w2") == 0 and windows.close("w1") == 1


def test_expired_windows_close_oldest_first_and_only_those_with_a_count_are_summed_up():
    windows = RejectionWindows(burst=1, window=10.0)
    for worker, at in (("quiet", 0.0), ("b", 1.0), ("a", 2.0), ("late", 9.0)):
        windows.count(worker, now=at)
    for worker, at in (("b", 1.5), ("b", 1.6), ("a", 2.5), ("late", 9.5)):
        windows.count(worker, now=at)
    assert windows.close_expired(now=11.999) == [("b", 2)]  # quiet's window closed: nothing
    assert windows.close_expired(now=12.0) == [("a", 1)]
    assert windows.close_expired(now=12.0) == []
    assert windows.close("late") == 1 and windows.close("quiet") == 0


def test_the_defaults_are_a_burst_of_five_per_ten_seconds():
    windows = RejectionWindows()
    assert (windows.burst, windows.window) == (REJECTION_BURST, REJECTION_WINDOW) == (5, 10.0)
    answers = [windows.count("w1", now=0.0)[1] for _ in range(REJECTION_BURST + 1)]
    assert answers == [False] * REJECTION_BURST + [True]
