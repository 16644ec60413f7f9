"""What the core's events say: the timeline an operator reads in the dashboard and the logs.

Each line names its order, step, attempt and worker by itself, and carries the fields a live
view draws from (duration, error, delay, from_worker, ...). Pure: the fake-clock Sim, no threads.
"""

from __future__ import annotations

from collections import deque

import pytest
from sim import ORDER, Sim

from scheduler.engine import views
from scheduler.engine.config import ClusterConfig, RetryPolicy
from scheduler.engine.core import SchedulerCore
from scheduler.engine.errors import Conflict, UnknownOrder, UnknownWorker, UnknownWorkflow
from scheduler.engine.model import ORDER_EVENT_CAP


def story(sim: Sim, *types: str) -> list[tuple]:
    """(type, message, worker_id, attempt) of the events of the given types, in order."""
    return [
        (e["type"], e["message"], e["worker_id"], e["attempt"])
        for e in sim.events
        if not types or e["type"] in types
    ]


def one(sim: Sim, kind: str, **match) -> dict:
    found = sim.types(type=kind, **match)
    assert len(found) == 1, found
    return found[0]


def test_a_retried_step_tells_its_attempts_and_workers_in_order():
    sim = Sim(workers=1)
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.now = 0.25
    sim.fail(d, "card declined")
    retrying = one(sim, "task_retrying")
    sim.advance(1.0)
    d, _ = sim.start_next("w1")
    started_again = sim.now
    sim.now += 1.25
    sim.succeed(d, "paid")
    assert story(sim, "task_started", "task_failed", "task_retrying", "task_succeeded") == [
        ("task_started", "order o1 step payment attempt 1 started on w1", "w1", 1),
        ("task_failed", "order o1 step payment attempt 1 failed on w1: card declined", "w1", 1),
        (
            "task_retrying",
            "order o1 step payment attempt 1 on w1 will retry as attempt 2 of 4 in "
            f"{retrying['delay']:.3f}s",
            "w1",
            2,
        ),
        ("task_started", "order o1 step payment attempt 2 started on w1", "w1", 2),
        ("task_succeeded", "order o1 step payment attempt 2 succeeded on w1", "w1", 2),
    ]
    assert one(sim, "task_failed")["error"] == "card declined"
    assert one(sim, "task_succeeded")["duration"] == pytest.approx(1.25)
    assert one(sim, "task_started", attempt=2)["ts"] == started_again
    assert {e["order_id"] for e in sim.events if e["type"].startswith("task_")} == {"o1"}
    assert {e["step"] for e in sim.events if e["type"].startswith("task_")} == {"payment"}


def test_the_retry_delay_in_the_event_is_the_wait_before_the_step_is_ready_again():
    sim = Sim(workers=1, seed=5)
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.now = 3.0
    sim.fail(d)
    retrying = one(sim, "task_retrying")
    assert retrying["delay"] == pytest.approx(sim.task("o1", "payment").due - 3.0, abs=1e-6)
    assert 0 < retrying["delay"] <= 0.1


def test_an_order_announces_its_workflow_steps_and_customer_when_accepted():
    sim = Sim(workers=0)
    sim.submit("o1", workflow="ecommerce_invoiced")
    event = one(sim, "order_submitted")
    assert event["message"] == (
        "order o1 accepted (ecommerce_invoiced: payment -> packing -> invoice -> shipping)"
    )
    assert event["order_id"] == "o1" and event["attempt"] == 0 and event["worker_id"] is None
    assert event["workflow"] == "ecommerce_invoiced"
    assert event["steps"] == ["payment", "packing", "invoice", "shipping"]
    assert event["customer"] == ORDER["customer"]
    assert views.orders(sim.core)["o1"].events[0] == event  # the start of the order's own timeline


def test_a_completed_order_says_how_long_it_took():
    sim = Sim(workers=1)
    sim.now = 10.0
    sim.submit("o1")
    for _ in range(3):
        d, _ = sim.start_next("w1")
        sim.now += 0.5
        sim.succeed(d)
    done = one(sim, "order_completed")
    assert done["message"] == "order o1 completed in 1.500s" and done["order_id"] == "o1"
    assert done["duration"] == pytest.approx(1.5)
    assert views.orders(sim.core)["o1"].events[-1] == done


def test_a_step_given_up_fails_its_order_naming_the_step_and_the_last_error():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=0))
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.fail(d, "card declined")
    reason = "gave up after 1 attempts: card declined"
    assert sim.task("o1", "payment").error == reason
    failed = one(sim, "order_failed")
    assert failed["message"] == f"order o1 failed: step payment {reason}"
    assert failed["order_id"] == "o1"
    cancelled = sim.types(type="task_cancelled")
    assert [(e["step"], e["message"], e["worker_id"]) for e in cancelled] == [
        ("packing", "order o1 step packing cancelled", None),
        ("shipping", "order o1 step shipping cancelled", None),
    ]


def test_cancelling_names_the_worker_that_held_the_step():
    sim = Sim(workers=1)
    sim.submit("o1")
    sim.start_next("w1")
    sim.apply(sim.core.cancel_order("o1", now=sim.now))
    assert story(sim, "task_cancelled", "order_cancelled") == [
        ("task_cancelled", "order o1 step payment cancelled", "w1", 1),
        ("task_cancelled", "order o1 step packing cancelled", None, 0),
        ("task_cancelled", "order o1 step shipping cancelled", None, 0),
        ("order_cancelled", "order o1 cancelled", None, 0),
    ]
    assert one(sim, "order_cancelled")["order_id"] == "o1"


def test_a_late_report_is_rejected_naming_the_task_the_worker_and_the_lease():
    sim = Sim(workers=1)
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.apply(sim.core.cancel_order("o1", now=sim.now))
    sim.succeed(d)
    sim.fail(d)
    rejected = sim.types(type="result_rejected")
    assert [(e["message"], e["worker_id"], e["order_id"], e["step"]) for e in rejected] == [
        (f"late success of o1:payment from w1 rejected (lease {d.lease} is no longer valid)",
         "w1", "o1", "payment"),
        (f"late failure of o1:payment from w1 rejected (lease {d.lease} is no longer valid)",
         "w1", "o1", "payment"),
    ]


def test_a_dead_workers_steps_move_naming_the_attempt_they_interrupt():
    sim = Sim(workers=1)
    sim.submit("o1", workflow="ecommerce_invoiced")
    d, _ = sim.start_next("w1")
    sim.succeed(d)
    sim.start_next("w1")  # packing runs; invoice waits in the queue
    sim.add_worker("w2")
    sim.core.heartbeat("w1", 0.5)  # its last sign of life
    sim.advance(2.75, beating=("w2",))
    dead = one(sim, "worker_dead")
    assert dead["message"] == "worker w1 declared dead: no heartbeat for 2.25s; 2 task(s) to move"
    assert dead["worker_id"] == "w1" and dead["tasks"] == ["o1:invoice", "o1:packing"]
    moved = {e["step"]: e for e in sim.types(type="task_reassigned")}
    assert moved["packing"]["message"] == (
        "order o1 step packing attempt 1 moved from w1 to w2 (worker dead)"
    )
    assert moved["invoice"]["message"] == (
        "order o1 step invoice (attempt 1 not started yet) moved from w1 to w2 (worker dead)"
    )
    for event in moved.values():
        assert (event["worker_id"], event["from_worker"], event["reason"]) == (
            "w2",
            "w1",
            "worker dead",
        )


def test_a_step_that_finds_no_live_worker_says_so_and_waits_unassigned():
    sim = Sim(workers=1)
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    fx = sim.advance(2.5, beating=())
    moved = one(sim, "task_reassigned")
    assert moved["message"] == (
        "order o1 step payment attempt 1 moved off w1; it waits for a free slot (worker dead)"
    )
    assert moved["worker_id"] is None and moved["from_worker"] == "w1"
    task = sim.task("o1", "payment")
    view = sim.core.task_record(task).view()
    assert view["worker"] is None and view["status"] == "ready"
    assert views.wait_reason(sim.core, task) == "no live worker"
    assert fx.departed == ["w1"]  # the shell stops what is left of it


def test_a_drain_is_announced_moves_the_queue_and_ends_with_the_worker_leaving():
    sim = Sim(workers=1)
    sim.submit("o1")
    sim.submit("o2")
    running, _ = sim.start_next("w1")
    sim.add_worker("w2")
    fx = sim.apply(sim.core.drain_worker("w1", now=sim.now))
    draining = one(sim, "worker_draining")
    assert draining["message"] == "worker w1 is draining; 1 queued task(s) to move"
    assert draining["worker_id"] == "w1" and draining["moving"] == 1
    moved = one(sim, "task_reassigned")
    assert (moved["worker_id"], moved["from_worker"], moved["reason"]) == ("w2", "w1", "drain")
    assert moved["cause"] == draining["seq"]  # the move points back at the drain
    assert moved["message"].endswith("moved from w1 to w2 (drain)")
    assert fx.departed == []
    fx = sim.succeed(running)
    removed = one(sim, "worker_removed")
    assert removed["message"] == "worker w1 drained and left" and removed["worker_id"] == "w1"
    assert fx.departed == ["w1"]


def test_a_poisoned_step_fails_naming_the_worker_that_died_under_it():
    sim = Sim(workers=2, max_reassignments=0)
    sim.submit("o1")
    holder = sim.task("o1", "payment").worker
    sim.start_next(holder)
    sim.advance(2.5, beating=tuple(w for w in sim.queues if w != holder))
    failed = one(sim, "task_failed")
    reason = "poison: its worker died under it 1 times"
    assert failed["message"] == f"order o1 step payment attempt 1 failed on {holder}: {reason}"
    assert failed["error"] == reason and failed["poison"] is True
    assert (failed["order_id"], failed["step"], failed["worker_id"]) == ("o1", "payment", holder)
    assert one(sim, "order_failed")["message"] == f"order o1 failed: step payment {reason}"


def test_workers_joining_and_orders_retried_by_hand_are_announced():
    sim = Sim(workers=0, retry=RetryPolicy(max_retries=0))
    sim.apply(sim.core.add_worker("p1", now=0, kind="process"))
    sim.queues["p1"] = deque()
    sim.add_worker("t1")
    assert story(sim, "worker_added") == [
        ("worker_added", "worker p1 (process, 8 slots) joined", "p1", 0),
        ("worker_added", "worker t1 (thread, 8 slots) joined", "t1", 0),
    ]
    sim.submit("o1")
    holder = sim.task("o1", "payment").worker
    d, _ = sim.start_next(holder)
    sim.fail(d)
    sim.apply(sim.core.retry_order("o1", now=sim.now))
    retried = one(sim, "order_retried")
    assert (retried["message"], retried["order_id"]) == ("order o1 retried by hand", "o1")


def test_event_times_are_the_stimulus_time_shifted_to_wall_clock():
    core = SchedulerCore(ClusterConfig(workers=0, seed=1), epoch_offset=1000.0)
    fx = core.add_worker("w1", now=2.5)
    fx.absorb(core.submit("o1", dict(ORDER), now=3.125))
    assert [e["ts"] for e in fx.events] == [1002.5, 1003.125]


def test_event_times_and_durations_are_given_to_the_microsecond():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=1, backoff_base=0.3, backoff_cap=0.3))
    sim.now = 1.00000012
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.now = 1.50000049
    sim.fail(d)
    due = sim.task("o1", "payment").due
    sim.advance(0.5)
    d, _ = sim.start_next("w1")
    started = sim.now
    sim.now += 0.25000031
    sim.succeed(d)
    for _ in range(2):
        d, _ = sim.start_next("w1")
        sim.succeed(d)
    truths = [
        (one(sim, "order_submitted")["ts"], 1.00000012),
        (one(sim, "task_failed")["ts"], 1.50000049),
        (one(sim, "task_retrying")["delay"], due - 1.50000049),
        (one(sim, "task_succeeded", step="payment")["duration"], sim.now - started),
        (one(sim, "order_completed")["duration"], sim.now - 1.00000012),
    ]
    for shown, exact in truths:
        assert shown == round(shown, 6) and abs(shown - exact) <= 5e-7, (shown, exact)
    assert all(e["ts"] == round(e["ts"], 6) for e in sim.events)


def test_an_orders_own_timeline_keeps_its_first_events_up_to_the_cap():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=10_000, backoff_base=0, backoff_cap=0))
    sim.submit("o1")
    while len(sim.types(order_id="o1")) <= ORDER_EVENT_CAP + 5:
        d, _ = sim.start_next("w1")
        sim.fail(d)
        sim.apply(sim.core.tick(now=sim.now))
    timeline = views.orders(sim.core)["o1"].events
    assert len(timeline) == ORDER_EVENT_CAP
    assert timeline == sim.types(order_id="o1")[:ORDER_EVENT_CAP]


def test_refusals_name_what_was_refused():
    sim = Sim(workers=1)
    sim.submit("o1")
    with pytest.raises(Conflict, match="^order o1 already exists$"):
        sim.core.submit("o1", dict(ORDER), now=0)
    with pytest.raises(UnknownWorkflow, match=r"\(known: ecommerce, ecommerce_invoiced\)$"):
        sim.core.submit("o2", dict(ORDER), now=0, workflow="nope")
    with pytest.raises(Conflict, match="^worker w1 is already a member$"):
        sim.core.add_worker("w1", now=0)
    with pytest.raises(UnknownOrder, match="^unknown order 'nope'$"):
        sim.core.retry_order("nope", now=0)
    with pytest.raises(UnknownWorker, match="^unknown worker 'ghost'$"):
        sim.core.drain_worker("ghost", now=0)
    sim.apply(sim.core.drain_worker("w1", now=0))
    with pytest.raises(Conflict, match="^worker w1 is removed; only an alive worker can drain$"):
        sim.core.drain_worker("w1", now=0)


def test_an_alert_raised_and_cleared_is_two_events_the_clearing_naming_the_raising():
    core = SchedulerCore(ClusterConfig(workers=0, seed=1), epoch_offset=1000.0)
    raised = core.alert_changed("failure_spike", "payment", True, "payment: 20 of 20 failed",
                                now=5.0).events
    assert [(e["type"], e["message"], e["alert"], e["subject"], e["ts"]) for e in raised] == [
        ("alert_raised", "payment: 20 of 20 failed", "failure_spike", "payment", 1005.0)]
    assert "cause" not in raised[0]
    cleared = core.alert_changed("failure_spike", "payment", False, "payment: 2 of 30 failed",
                                 now=6.0, cause=raised[0]["seq"]).events
    assert [(e["type"], e["message"], e["cause"]) for e in cleared] == [
        ("alert_cleared", "cleared: payment: 2 of 30 failed", raised[0]["seq"])]
    server = core.alert_changed("journal_failing", "", True, "the journal...", now=7.0)
    assert server.events[0]["subject"] is None


def test_a_worker_joins_under_its_process_name_when_it_has_one():
    core = SchedulerCore(ClusterConfig(workers=0, seed=1))
    named = core.add_worker("p-1", now=0.0, kind="process", meta={"name": "pay-1"})
    plain = core.add_worker("w-1", now=0.0)
    assert [e["name"] for e in named.events + plain.events if e["type"] == "worker_added"] == [
        "pay-1", None]


def test_a_drain_counts_only_the_queued_tasks_and_an_idle_worker_has_none_to_move():
    sim = Sim(workers=1, slots=4, prefetch=4)
    for i in range(3):
        sim.submit(f"o{i}")
    sim.start_next("w1")  # one runs, two wait in its queue
    sim.add_worker("w2")
    sim.apply(sim.core.drain_worker("w1", now=sim.now))
    assert one(sim, "worker_draining")["message"] == (
        "worker w1 is draining; 2 queued task(s) to move")
    idle = Sim(workers=1)
    idle.apply(idle.core.drain_worker("w1", now=idle.now))
    draining = one(idle, "worker_draining")
    assert (draining["message"], draining["moving"]) == ("worker w1 is draining", 0)
