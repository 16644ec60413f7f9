"""An attempt's cancellation signal (steps/context.py): an Event's behaviour for handlers,
without an Event per attempt unless a handler waits."""

from __future__ import annotations

import threading

from scheduler.steps import context
from scheduler.steps.context import Cancellation, TaskContext


def test_a_signal_not_set_times_out_and_one_set_answers_at_once():
    signal = Cancellation()
    assert signal.is_set() is False and signal.wait(0.01) is False
    signal.set()
    assert signal.is_set() is True and signal.wait(0) is True and signal.wait() is True


def test_a_handler_waiting_is_woken_by_the_set_from_another_thread():
    signal = Cancellation()
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(signal.wait(30)))
    waiter.start()
    # Once it waits, its Event exists: set it then, from this thread.
    for _ in range(10_000):
        if signal._event is not None:
            break
        threading.Event().wait(0.001)
    signal.set()
    waiter.join(30)
    assert woke == [True] and not waiter.is_alive()


def test_a_set_racing_the_first_wait_is_not_missed(monkeypatch):
    # The race: `set` runs while the first `wait` makes its Event, so `set` finds none.
    signal = Cancellation()

    class RacedEvent(threading.Event):
        def __init__(self):
            super().__init__()
            signal.set()  # the Event is not yet the signal's: this set cannot reach it

    monkeypatch.setattr(context.threading, "Event", RacedEvent)
    assert signal.wait(5) is True and signal._event.is_set()


def test_a_context_has_a_signal_of_its_own_that_its_sleep_obeys():
    one = TaskContext("o-1", {}, "pay", 1, "w", {}, "o-1:pay")
    two = TaskContext("o-2", {}, "pay", 1, "w", {}, "o-2:pay")
    one.cancelled.set()
    assert one.sleep(30) is False and two.cancelled.is_set() is False
    assert two.sleep(0) is True
