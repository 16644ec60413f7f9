"""The chaos checker holds waits and timers to their promises: a wait completes once, by a
signal it received or by its timeout once that passed; no step starts before the wait it
follows completed, before its delay ended, nor before its order's not_before."""

from __future__ import annotations

import copy

import pytest
from sim import ORDER, Sim
from test_invariants import history_of

from scheduler.chaos.invariants import History, check_history, format_report
from scheduler.engine.config import RetryPolicy, StepPolicy
from scheduler.engine.workflow import Wait, Workflow


def flow(on_timeout: str) -> Workflow:
    return Workflow.define(
        f"pay_{on_timeout}", [("payment", []), ("confirmed", ["payment"]),
                              ("shipping", ["confirmed"]), ("review", ["shipping"])],
        waits=[Wait("confirmed", 60.0, on_timeout)])


FLOWS = {w.name: w for w in (flow("continue"), flow("fail"))}
IDS = ["o1", "o2", "o3", "o4", "o5"]


@pytest.fixture
def waits() -> Sim:
    """o1 signalled while waiting, o2 signalled early, o3 timed out (continue), o4 timed out
    (fail), o5 submitted for later; review is delayed 10 s after shipping."""
    sim = Sim(workers=1, slots=8, workflows=FLOWS, retry=RetryPolicy(max_retries=0),
              steps={"review": StepPolicy(delay=10.0)})

    def run_all() -> None:
        while True:
            d, _ = sim.start_next("w1")
            if d is None:
                return
            sim.succeed(d, "ok")

    def signal(oid: str) -> None:
        sim.apply(sim.core.signal(oid, "confirmed", {"by": oid}, now=sim.now)[0])

    for oid in ("o1", "o2", "o3"):
        sim.submit(oid, "pay_continue")
    sim.submit("o4", "pay_fail")
    sim.apply(sim.core.submit("o5", dict(ORDER), now=sim.now, workflow="pay_continue",
                              not_before=30.0))
    signal("o2")
    run_all()
    signal("o1")
    signal("o5")
    run_all()
    sim.advance(61.0)
    run_all()
    sim.advance(11.0)
    run_all()
    return sim


def report(history: History) -> dict:
    return check_history(history, IDS, max_retries=0, workflows=FLOWS)


def test_waits_and_timers_that_keep_their_promises_pass_with_their_figures(waits):
    found = report(history_of(waits))
    assert found["ok"], found["examples"]
    assert (found["completed"], found["failed"]) == (4, 1)
    assert found["signals_received"] == 3 and found["waits_timed_out"] == 2
    assert found["steps_delayed"] == 4 + 1  # each review, and o5's payment (not_before)
    assert "waits_timed_out" in format_report(found)


def violations(history: History, kind: str, counted: str | None = None) -> list:
    """The examples of `kind` (counted in the report as `counted`, default `kind`)."""
    found = report(history)
    assert not found["ok"] and found[counted or kind] >= 1, found
    return found["examples"][kind]


def test_a_wait_completed_twice_is_caught(waits):
    history = history_of(waits)
    twice = next(e for e in history.events if e["type"] == "wait_completed")
    history.events.append({**twice, "seq": history.events[-1]["seq"] + 1})
    assert violations(history, "wait_twice") == [(twice["order_id"], "confirmed")]


def test_a_wait_completed_with_no_signal_received_is_caught(waits):
    history = history_of(waits)
    history.events = [e for e in history.events
                      if not (e["type"] == "signal_received" and e["order_id"] == "o1")]
    assert violations(history, "wait_completed_without_signal") == [("o1", "confirmed")]


def test_a_timeout_before_its_time_is_caught(waits):
    history = history_of(waits)
    history.events = copy.deepcopy(history.events)
    timed_out = next(e for e in history.events if e["type"] == "wait_timed_out")
    timed_out["ts"] -= 5.0
    assert violations(history, "wait_timed_out_early")[0][:2] == (timed_out["order_id"],
                                                                  "confirmed")


def test_a_step_started_before_the_wait_it_follows_completed_is_caught(waits):
    history = history_of(waits)
    events = history.events
    done = next(i for i, e in enumerate(events)
                if e["type"] == "wait_completed" and e["order_id"] == "o1")
    start = next(i for i, e in enumerate(events) if e["type"] == "task_started"
                 and e["order_id"] == "o1" and e["step"] == "shipping")
    events[done]["seq"], events[start]["seq"] = events[start]["seq"], events[done]["seq"]
    events.sort(key=lambda e: e["seq"])
    assert ("o1", "shipping", "confirmed") in violations(history, "dependency_order",
                                                         "dependency_order_violations")


def test_a_delayed_step_started_early_is_caught(waits):
    history = history_of(waits)
    history.events = copy.deepcopy(history.events)
    start = next(e for e in history.events
                 if e["type"] == "task_started" and e["step"] == "review")
    delayed = next(e for e in history.events if e["type"] == "task_delayed"
                   and (e["order_id"], e["step"]) == (start["order_id"], "review"))
    start["ts"] = delayed["until"] - 0.5
    assert violations(history, "started_before_its_time")[0][:2] == (start["order_id"],
                                                                     "review")


def test_a_step_started_before_its_orders_not_before_is_caught(waits):
    history = history_of(waits)
    history.events = copy.deepcopy(history.events)
    start = next(e for e in history.events if e["type"] == "task_started"
                 and e["order_id"] == "o5" and e["step"] == "payment")
    assert start["ts"] >= 30.0
    start["ts"] = 29.0
    assert violations(history, "started_before_its_time")[0] == ("o5", "payment", 29.0, 30.0)
