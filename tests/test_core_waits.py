"""Waits and timers in the pure core: a wait holds no slot until its signal (or timeout),
a step's delay and an order's not_before hold it back, and all of it comes back after a
restart and fires once. Fake clock, no threads."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sim import ORDER, Sim

from scheduler.engine import views, waits
from scheduler.engine.config import ClusterConfig, ConfigError, RetryPolicy, StepPolicy
from scheduler.engine.core import SchedulerCore
from scheduler.engine.errors import UnknownOrder, UnknownWait
from scheduler.engine.records import ResumePoint
from scheduler.engine.states import (
    OrderStage,
    OrderStatus,
    TaskState,
    derive_order_stage,
    derive_order_status,
)
from scheduler.engine.workflow import Wait, Workflow, WorkflowError

S = TaskState
NO_RETRY = RetryPolicy(max_retries=0)


def paying(on_timeout: str = "cancel", timeout: float | None = 1800.0) -> Workflow:
    """reserve -> wait for payment_confirmed -> charge; release undoes reserve."""
    return Workflow.define(
        f"pay_{on_timeout}",
        [("reserve", []), ("payment_confirmed", ["reserve"]), ("charge", ["payment_confirmed"])],
        compensations={"reserve": "release"},
        waits=[Wait("payment_confirmed", timeout=timeout, on_timeout=on_timeout)],
    )


WORKFLOWS = {
    "pay_cancel": paying("cancel"),
    "pay_fail": paying("fail"),
    "pay_continue": paying("continue"),
}
WORKFLOWS["forever"] = Workflow.define(
    "forever", [("reserve", []), ("payment_confirmed", ["reserve"]),
                ("charge", ["payment_confirmed"])],
    waits=[Wait("payment_confirmed")])
# Delivery, then a review request a week later.
WORKFLOWS["review"] = Workflow.define("review", [("ship", []), ("ask_review", ["ship"])])
WEEK = 7 * 86400.0


def wait_sim(**settings) -> Sim:
    settings.setdefault("retry", NO_RETRY)
    return Sim(workers=1, workflows=WORKFLOWS, **settings)


def run(sim: Sim, step: str, result=None, ok: bool = True) -> dict:
    """Start the next dispatch on w1, check it is `step`, and finish it."""
    d, ctx = sim.start_next("w1")
    assert d is not None and ctx["step"] == step, (d, ctx)
    if ok:
        sim.succeed(d, result)
    else:
        sim.fail(d)
    return ctx


def submit(sim: Sim, workflow: str, oid: str = "o1", **options) -> None:
    sim.apply(sim.core.submit(oid, dict(ORDER), now=sim.now, workflow=workflow, **options))


def signal(sim: Sim, name: str = "payment_confirmed", data=None, oid: str = "o1",
           key: str | None = None, who: str | None = None) -> str:
    fx, outcome = sim.core.signal(oid, name, data, now=sim.now, key=key, who=who)
    sim.apply(fx)
    return outcome


def status(sim: Sim, oid: str = "o1") -> str:
    return views.orders(sim.core)[oid].reported_status


def jump(sim: Sim, seconds: float) -> None:
    """Move time on by `seconds` in one tick, the workers beating (a long, quiet wait)."""
    sim.now += seconds
    for wid in sim.queues:
        sim.core.heartbeat(wid, sim.now)
    sim.apply(sim.core.tick(now=sim.now))


def idle(sim: Sim) -> bool:
    """Nothing is queued for or running on w1."""
    return sim.start_next("w1")[0] is None


# --------------------------------------------------------------------------- definitions

def test_a_wait_is_a_step_of_the_workflow_and_bad_waits_are_refused():
    wf = WORKFLOWS["pay_cancel"]
    assert wf.waits["payment_confirmed"] == Wait("payment_confirmed", 1800.0, "cancel")
    with pytest.raises(WorkflowError, match="'nope' is not one of its steps"):
        Workflow.define("w", [("a", [])], waits=[Wait("nope")])
    with pytest.raises(WorkflowError, match="given twice"):
        Workflow.define("w", [("a", [])], waits=[Wait("a"), Wait("a")])
    with pytest.raises(WorkflowError, match="cannot have an undo"):
        Workflow.define("w", [("a", [])], compensations={"a": "u"}, waits=[Wait("a")])
    with pytest.raises(WorkflowError, match="on_timeout must be one of"):
        Wait("a", 10, "explode")
    for bad in (0, -1, float("inf"), True, "30m"):
        with pytest.raises(WorkflowError, match="timeout must be"):
            Wait("a", bad)
    with pytest.raises(WorkflowError, match="non-empty name"):
        Wait("")


def test_a_delay_must_be_a_finite_number_of_seconds():
    assert StepPolicy(delay=0).delay == 0
    for bad in (-1, float("inf"), True, "7d"):
        with pytest.raises(ConfigError, match="delay must be"):
            StepPolicy(delay=bad)
    config = ClusterConfig(workers=0, steps={"a": StepPolicy(delay=5)})
    assert config.delay("a") == 5 and config.delay("b") == 0


def test_an_orders_status_is_waiting_only_while_nothing_of_it_is_queued_or_running():
    assert derive_order_status([S.SUCCEEDED, S.WAITING, S.PENDING]) is OrderStatus.WAITING
    assert derive_order_status([S.WAITING, S.PENDING]) is OrderStatus.WAITING
    assert derive_order_status([S.WAITING, S.READY]) is OrderStatus.IN_PROGRESS
    for busy in (S.ASSIGNED, S.RUNNING, S.RETRY_WAIT):
        assert derive_order_status([S.WAITING, busy]) is OrderStatus.IN_PROGRESS, busy
    assert derive_order_status([S.WAITING, S.CANCELLED]) is OrderStatus.CANCELLED


def test_an_order_with_a_step_waiting_and_none_queued_is_waiting():
    assert derive_order_stage([S.SUCCEEDED, S.WAITING, S.PENDING]) is OrderStage.WAITING
    assert derive_order_stage([S.WAITING, S.READY]) is OrderStage.QUEUED
    assert derive_order_stage([S.WAITING, S.ASSIGNED]) is OrderStage.QUEUED
    assert derive_order_stage([S.WAITING, S.RUNNING]) is OrderStage.RUNNING
    assert derive_order_stage([S.WAITING, S.RETRY_WAIT]) is OrderStage.RETRYING


# --------------------------------------------------------------------------- signals

def test_a_waiting_order_holds_no_slot_and_its_signal_is_the_next_steps_result():
    sim = wait_sim()
    submit(sim, "pay_cancel")
    run(sim, "reserve", "held")
    task = sim.task("o1", "payment_confirmed")
    assert task.state is S.WAITING and status(sim) == "waiting"
    assert views.orders(sim.core)["o1"].stage == "waiting"
    worker = views.workers(sim.core)["w1"]
    assert not worker.tasks and idle(sim)
    assert task.due == pytest.approx(1800.0) and len(sim.core.timers) == 1
    [started] = sim.types(type="wait_started")
    assert started["until"] == pytest.approx(1800.0) and started["on_timeout"] == "cancel"
    assert started["message"] == ("order o1 waits for signal payment_confirmed for 1800s, "
                                  "then cancels its order")
    assert signal(sim, data={"txn": "t-1"}) == waits.DELIVERED
    assert task.state is S.SUCCEEDED and task.result == {"txn": "t-1"}
    assert task.due is None and sim.core.task_record(task).retry_at is None
    assert len(sim.core.timers) == 0 and sim.core.timers.next_due() is None
    ctx = run(sim, "charge")
    assert ctx["results"] == {"payment_confirmed": {"txn": "t-1"}}
    assert status(sim) == "completed"
    [done] = sim.types(type="wait_completed")
    assert done["step"] == "payment_confirmed" and done["how"] == "its signal"


def test_a_signal_before_the_wait_is_kept_and_taken_when_the_order_gets_there():
    sim = wait_sim()
    submit(sim, "pay_cancel")
    assert signal(sim, data="early", key="k1") == waits.KEPT
    assert sim.task("o1", "payment_confirmed").state is S.PENDING
    assert status(sim) == "in_progress"  # reserve is on w1
    run(sim, "reserve")
    assert sim.task("o1", "payment_confirmed").state is S.SUCCEEDED
    assert not sim.types(type="wait_started") and len(sim.core.timers) == 0
    ctx = run(sim, "charge")
    assert ctx["results"] == {"payment_confirmed": "early"}


def test_a_second_signal_is_refused_and_recorded_unless_it_repeats_the_first_key():
    sim = wait_sim()
    submit(sim, "pay_cancel")
    run(sim, "reserve")
    assert signal(sim, data=1, key="k1") == waits.DELIVERED
    assert signal(sim, data=1, key="k1") == waits.REPEATED
    assert signal(sim, data=2, key="k2", who="ops") == waits.REFUSED
    assert signal(sim, data=2) == waits.REFUSED
    refused = sim.types(type="signal_refused")
    assert len(refused) == 2 and refused[0]["who"] == "ops"
    assert "one came already" in refused[0]["message"]
    assert sim.task("o1", "payment_confirmed").result == 1
    assert len(sim.types(type="signal_received")) == 1


def test_a_second_early_signal_is_refused_too():
    sim = wait_sim()
    submit(sim, "pay_cancel")
    assert signal(sim, data=1) == waits.KEPT
    assert signal(sim, data=2) == waits.REFUSED
    run(sim, "reserve")
    assert sim.task("o1", "payment_confirmed").result == 1


def test_a_signal_for_a_name_the_order_never_waits_for_names_its_waits():
    sim = wait_sim()
    submit(sim, "pay_cancel")
    with pytest.raises(UnknownWait, match="never waits for signal 'delivered'; its waits: "
                                           "payment_confirmed"):
        signal(sim, "delivered")
    with pytest.raises(UnknownWait, match="its waits: none"):
        submit(sim, "review", oid="o2")
        signal(sim, "delivered", oid="o2")
    with pytest.raises(UnknownOrder):
        signal(sim, oid="nope")
    assert not sim.types(type="signal_refused")


def test_a_signal_for_a_cancelled_order_is_refused():
    sim = wait_sim()
    submit(sim, "forever")
    run(sim, "reserve")
    sim.apply(sim.core.cancel_order("o1", now=sim.now))
    assert status(sim) == "cancelled"
    assert signal(sim) == waits.REFUSED
    assert "the wait is cancelled" in sim.types(type="signal_refused")[0]["message"]


# --------------------------------------------------------------------------- timeouts

def test_a_wait_times_out_at_its_timeout_and_not_before():
    sim = wait_sim()
    submit(sim, "pay_continue")
    run(sim, "reserve")
    sim.advance(1799.0)
    assert sim.task("o1", "payment_confirmed").state is S.WAITING
    fx = sim.advance(1.0)
    assert fx.wake_at is None or fx.wake_at > sim.now
    assert sim.task("o1", "payment_confirmed").state is S.SUCCEEDED
    assert status(sim) == "in_progress"  # charge is in line: no longer waiting
    [timed_out] = sim.types(type="wait_timed_out")
    assert timed_out["on_timeout"] == "continue" and "continuing" in timed_out["message"]


def test_the_shell_is_woken_when_a_timer_is_due():
    sim = wait_sim()
    submit(sim, "pay_continue")
    d, _ = sim.start_next("w1")
    fx = sim.succeed(d)
    assert fx.wake_at == pytest.approx(1800.0)


def test_a_timeout_that_continues_gives_the_next_step_no_payload():
    sim = wait_sim()
    submit(sim, "pay_continue")
    run(sim, "reserve")
    sim.advance(1800.0)
    ctx = run(sim, "charge")
    assert ctx["results"] == {"payment_confirmed": None}
    assert status(sim) == "completed"
    assert signal(sim) == waits.REFUSED  # too late


def test_a_timeout_that_fails_fails_the_order_and_undoes_what_has_an_undo():
    sim = wait_sim()
    submit(sim, "pay_fail")
    run(sim, "reserve", "stock")
    sim.advance(1800.0)
    task = sim.task("o1", "payment_confirmed")
    assert task.state is S.FAILED and "no signal payment_confirmed within 1800s" in task.error
    assert task.due is None
    assert sim.task("o1", "charge").state is S.CANCELLED
    ctx = run(sim, "release")
    assert ctx["results"] == {"reserve": "stock"}
    assert status(sim) == "compensated"


def test_a_timeout_that_cancels_cancels_the_order_and_undoes_what_has_an_undo():
    sim = wait_sim()
    submit(sim, "pay_cancel")
    run(sim, "reserve", "stock")
    sim.advance(1800.0)
    assert sim.task("o1", "payment_confirmed").state is S.CANCELLED
    assert status(sim) == "compensating"
    run(sim, "release")
    assert status(sim) == "compensated"
    assert "cancelling the order" in sim.types(type="wait_timed_out")[0]["message"]


def test_a_timeout_that_cancels_an_order_with_nothing_to_undo_cancels_it():
    sim = wait_sim()
    submit(sim, "pay_cancel")
    assert signal(sim, "payment_confirmed") == waits.KEPT
    sim.apply(sim.core.cancel_order("o1", now=sim.now))
    assert status(sim) == "cancelled"


def test_a_wait_with_no_timeout_waits_for_ever_without_a_timer():
    sim = wait_sim()
    submit(sim, "forever")
    run(sim, "reserve")
    assert len(sim.core.timers) == 0 and sim.task("o1", "payment_confirmed").due is None
    jump(sim, 10 * 86400.0)
    assert status(sim) == "waiting"
    assert signal(sim) == waits.DELIVERED


def test_cancelling_a_waiting_order_clears_its_timer():
    sim = wait_sim()
    submit(sim, "pay_continue")
    run(sim, "reserve")
    sim.apply(sim.core.cancel_order("o1", now=sim.now))
    assert len(sim.core.timers) == 0 and sim.core.timers.next_due() is None
    sim.advance(1800.0)
    assert not sim.types(type="wait_timed_out")


def test_retrying_an_order_whose_wait_timed_out_waits_again_from_now():
    sim = wait_sim()
    submit(sim, "pay_fail")
    run(sim, "reserve")
    sim.advance(1800.0)
    run(sim, "release")
    assert status(sim) == "compensated"
    # A plain fail without undos can be retried: a workflow whose reserve has no undo.
    sim2 = wait_sim()
    wf = Workflow.define("plain", [("reserve", []), ("payment_confirmed", ["reserve"])],
                         waits=[Wait("payment_confirmed", 60.0, "fail")])
    sim2.core._workflows["plain"] = wf
    submit(sim2, "plain")
    run(sim2, "reserve")
    sim2.advance(60.0)
    assert status(sim2) == "failed"
    sim2.apply(sim2.core.retry_order("o1", now=sim2.now))
    task = sim2.task("o1", "payment_confirmed")
    assert task.state is S.WAITING and task.due == pytest.approx(sim2.now + 60.0)
    assert status(sim2) == "waiting"
    assert signal(sim2, data="ok") == waits.DELIVERED
    assert status(sim2) == "completed"


# --------------------------------------------------------------------------- timers

def delayed_sim(delay: float = WEEK, **settings) -> Sim:
    return wait_sim(steps={"ask_review": StepPolicy(delay=delay)}, **settings)


def test_a_delayed_step_starts_no_earlier_than_its_delay_after_its_dependencies():
    sim = delayed_sim()
    submit(sim, "review")
    sim.advance(5.0)
    run(sim, "ship")
    task = sim.task("o1", "ask_review")
    assert task.state is S.WAITING and task.due == pytest.approx(5.0 + WEEK)
    assert status(sim) == "waiting" and idle(sim)
    [delayed] = sim.types(type="task_delayed")
    assert delayed["until"] == pytest.approx(5.0 + WEEK)
    jump(sim, WEEK - 1.0)
    assert task.state is S.WAITING and idle(sim)
    jump(sim, 1.0)
    assert task.due is None  # its time came: it no longer has one
    run(sim, "ask_review")
    assert status(sim) == "completed"


def test_a_delay_of_zero_is_no_delay():
    sim = delayed_sim(0.0)
    submit(sim, "review")
    run(sim, "ship")
    assert sim.task("o1", "ask_review").state in (S.READY, S.ASSIGNED)


def test_an_order_submitted_for_later_starts_nothing_before_its_time():
    sim = wait_sim()
    submit(sim, "review", not_before=100.0)
    assert sim.task("o1", "ship").state is S.WAITING and status(sim) == "waiting"
    [submitted] = sim.types(type="order_submitted")
    assert submitted["not_before"] == pytest.approx(100.0)
    sim.advance(99.0)
    assert idle(sim)
    sim.advance(1.0)
    run(sim, "ship")
    run(sim, "ask_review")


def test_not_before_in_the_past_starts_at_once():
    sim = wait_sim()
    sim.advance(10.0)
    submit(sim, "review", not_before=5.0)
    assert views.orders(sim.core)["o1"].not_before is None
    assert "not_before" not in sim.types(type="order_submitted")[0]
    run(sim, "ship")


def test_a_signal_before_not_before_does_not_let_the_steps_after_it_start_early():
    sim = wait_sim()
    submit(sim, "forever", not_before=100.0)
    assert signal(sim) == waits.KEPT
    sim.advance(100.0)
    run(sim, "reserve")  # the wait takes its kept signal at once...
    assert sim.task("o1", "payment_confirmed").state is S.SUCCEEDED
    run(sim, "charge")
    # ...and, with the wait reached before not_before, the step after it still waits.
    sim2 = wait_sim()
    wf = Workflow.define("wait_first", [("w", []), ("after", ["w"])], waits=[Wait("w")])
    sim2.core._workflows["wait_first"] = wf
    submit(sim2, "wait_first", not_before=100.0)
    assert sim2.task("o1", "w").state is S.WAITING
    assert signal(sim2, "w", data="x") == waits.DELIVERED
    after = sim2.task("o1", "after")
    assert after.state is S.WAITING and after.due == pytest.approx(100.0)
    sim2.advance(100.0)
    assert run(sim2, "after")["results"] == {"w": "x"}


def test_many_timers_due_together_fire_a_bounded_batch_per_tick_earliest_first():
    sim = delayed_sim(60.0, timers_per_tick=20)
    for i in range(50):
        submit(sim, "review", oid=f"o{i}", not_before=10.0 + i / 100)
    assert len(sim.core.timers) == 50
    fx = sim.apply(sim.core.tick(now=11.0))
    fired = [i for i in range(50) if sim.task(f"o{i}", "ship").state is not S.WAITING]
    assert fired == list(range(20)) and len(sim.core.timers) == 30
    assert fx.wake_at == pytest.approx(10.2)  # due already: the shell wakes at once
    sim.apply(sim.core.tick(now=11.0))
    sim.apply(sim.core.tick(now=11.0))
    assert len(sim.core.timers) == 0 and sim.core.timers.next_due() is None


# --------------------------------------------------------------------------- restarts

def restart(sim: Sim, records=None, now: float | None = None, totals: Sim | None = None,
            **settings) -> Sim:
    """The server stops and a new core continues from what a journal kept, at `now`
    (`totals`: a core whose finished totals the journal had, default `sim`'s)."""
    core = sim.core
    point = ResumePoint(
        seq=views.last_seq(core), order_number=views.order_number(core),
        lease_counter=views.lease_counter(core), counters=dict(views.counters(core)),
        orders_by_status=dict(views.orders_by_status((totals or sim).core)),
        tasks_by_state=dict(views.tasks_by_state((totals or sim).core)),
    )
    if records is None:
        records = [core.order_record(o, with_events=True) for o in views.orders(core).values()]
    new = Sim(workers=0, workflows=WORKFLOWS, retry=NO_RETRY, **settings)
    new.now = sim.now if now is None else now
    new.apply(new.core.restore(point, records, now=new.now))
    new.add_worker("w1")
    return new


def test_a_restart_mid_wait_keeps_waiting_with_the_same_timeout():
    sim = wait_sim()
    submit(sim, "pay_continue")
    run(sim, "reserve")
    sim.advance(100.0)
    sim = restart(sim)
    task = sim.task("o1", "payment_confirmed")
    assert task.state is S.WAITING and task.due == pytest.approx(1800.0)
    assert status(sim) == "waiting" and views.orders(sim.core)["o1"].stage == "waiting"
    sim.advance(1699.0)
    assert task.state is S.WAITING
    sim.advance(1.0)
    assert task.state is S.SUCCEEDED
    assert len(sim.types(type="wait_timed_out")) == 1


def test_a_signal_journaled_before_a_restart_is_not_lost():
    sim = wait_sim()
    submit(sim, "pay_cancel")
    assert signal(sim, data="early", key="k") == waits.KEPT
    sim = restart(sim)
    assert signal(sim, data="early", key="k") == waits.REPEATED
    assert signal(sim, data="other") == waits.REFUSED
    run(sim, "reserve")
    assert run(sim, "charge")["results"] == {"payment_confirmed": "early"}


def test_a_signal_journaled_but_not_taken_before_a_restart_is_taken_at_the_restart():
    sim = wait_sim()
    submit(sim, "pay_cancel")
    run(sim, "reserve")
    [record] = [sim.core.order_record(o, with_events=True)
                for o in views.orders(sim.core).values()]
    before = restart(sim)
    assert signal(sim, data="late") == waits.DELIVERED
    # The journal has the signal's event but the wait's row still waiting.
    [later] = [sim.core.order_record(o, with_events=True)
               for o in views.orders(sim.core).values()]
    received = [e for e in later.events if e["type"] == "signal_received"]
    record = replace(record, events=(*record.events, *received))
    sim = restart(sim, [record], totals=before)
    assert sim.task("o1", "payment_confirmed").state is S.SUCCEEDED
    assert run(sim, "charge")["results"] == {"payment_confirmed": "late"}


def test_a_timeout_due_while_the_server_was_down_fires_at_the_restart_once():
    sim = wait_sim()
    submit(sim, "pay_cancel")
    run(sim, "reserve")
    sim = restart(sim, now=5000.0)
    assert sim.task("o1", "payment_confirmed").state is S.WAITING
    sim.advance(1.0)
    assert sim.task("o1", "payment_confirmed").state is S.CANCELLED
    run(sim, "release")
    sim.advance(100.0)
    assert len(sim.types(type="wait_timed_out")) == 1 and status(sim) == "compensated"


def test_a_delay_due_while_the_server_was_down_starts_the_step_at_the_restart_once():
    sim = delayed_sim(60.0)
    submit(sim, "review")
    run(sim, "ship")
    sim = restart(sim, now=500.0, steps={"ask_review": StepPolicy(delay=60.0)})
    assert sim.task("o1", "ask_review").state is S.WAITING
    sim.advance(1.0)
    run(sim, "ask_review")
    assert idle(sim) and status(sim) == "completed"


def test_a_restart_mid_delay_keeps_its_due_time():
    sim = delayed_sim(60.0)
    submit(sim, "review")
    run(sim, "ship")
    sim = restart(sim, now=30.0, steps={"ask_review": StepPolicy(delay=60.0)})
    sim.advance(29.0)
    assert idle(sim)
    sim.advance(1.0)
    run(sim, "ask_review")


def test_not_before_survives_a_restart():
    sim = wait_sim()
    wf = Workflow.define("wait_first", [("w", []), ("after", ["w"])], waits=[Wait("w")])
    WORKFLOWS["wait_first"] = wf
    try:
        sim = Sim(workers=1, workflows=WORKFLOWS, retry=NO_RETRY)
        submit(sim, "wait_first", not_before=100.0)
        sim = restart(sim)
        assert views.orders(sim.core)["o1"].not_before == pytest.approx(100.0)
        assert signal(sim, "w") == waits.DELIVERED
        assert sim.task("o1", "after").due == pytest.approx(100.0)
    finally:
        del WORKFLOWS["wait_first"]


def test_a_pending_step_whose_dependency_finished_before_a_restart_waits_its_delay():
    sim = delayed_sim(60.0)
    submit(sim, "review")
    run(sim, "ship")
    [record] = [sim.core.order_record(o, with_events=True)
                for o in views.orders(sim.core).values()]
    # The journal kept ship's success but not ask_review's move to waiting.
    tasks = tuple(t._replace(state="pending", retry_at=None) if t.step == "ask_review" else t
                  for t in record.tasks)
    sim = restart(sim, [replace(record, tasks=tasks)], now=10.0,
                  steps={"ask_review": StepPolicy(delay=60.0)})
    task = sim.task("o1", "ask_review")
    assert task.state is S.WAITING and task.due == pytest.approx(70.0)


def test_the_core_counts_waiting_orders_and_timers():
    core = SchedulerCore(ClusterConfig(workers=0, seed=1), WORKFLOWS)
    core.submit("o1", dict(ORDER), now=0.0, workflow="review", not_before=50.0)
    assert views.orders_by_status(core)["waiting"] == 1
    assert views.progress(core).stages["waiting"] == 1
    assert len(core.timers) == 1
    core.validate()
    assert OrderStatus.WAITING.value == "waiting"


def test_a_delayed_step_whose_due_time_was_not_written_down_starts_after_a_restart():
    sim = delayed_sim(60.0)
    submit(sim, "review")
    run(sim, "ship")
    [record] = [sim.core.order_record(o, with_events=True)
                for o in views.orders(sim.core).values()]
    tasks = tuple(t._replace(retry_at=None) if t.step == "ask_review" else t
                  for t in record.tasks)
    sim = restart(sim, [replace(record, tasks=tasks)], now=10.0,
                  steps={"ask_review": StepPolicy(delay=60.0)})
    assert sim.task("o1", "ask_review").due == pytest.approx(10.0)
    sim.advance(0.5)
    run(sim, "ask_review")


def test_validate_catches_a_waiting_task_without_its_timer_and_a_stray_timer():
    sim = wait_sim()
    submit(sim, "pay_continue")
    run(sim, "reserve")
    task = sim.task("o1", "payment_confirmed")
    sim.core.timers.clear(task.id)
    with pytest.raises(AssertionError):
        sim.core.validate()
    sim.core.timers.set(task.id, task.due)
    sim.core.validate()
    sim.core.timers.set("o1:charge", 5.0)
    with pytest.raises(AssertionError):
        sim.core.validate()


# --------------------------------------------------------------------------- what the log says


def test_a_signal_says_who_sent_it_and_whether_its_wait_took_it_or_keeps_it():
    sim = wait_sim()
    submit(sim, "pay_cancel")
    submit(sim, "pay_cancel", oid="o2")
    assert signal(sim, data="early", oid="o2") == waits.KEPT
    run(sim, "reserve")
    assert signal(sim, data="paid", who="psp") == waits.DELIVERED
    received = {e["order_id"]: e for e in sim.types(type="signal_received")}
    assert received["o2"]["message"] == (
        "order o2 signal payment_confirmed received; kept until the order reaches its wait")
    assert received["o1"]["message"] == "order o1 signal payment_confirmed received from psp"
    assert (received["o1"]["who"], received["o1"]["step"]) == ("psp", "payment_confirmed")
    assert received["o2"]["who"] is None
    [completed] = sim.types(type="wait_completed", order_id="o1")
    assert completed["message"] == "order o1 wait payment_confirmed completed by its signal"


def test_a_refused_signal_says_why_on_the_wait_it_was_for():
    sim = wait_sim()
    submit(sim, "pay_cancel")
    run(sim, "reserve")
    signal(sim, data=1)
    assert signal(sim, data=2, who="ops") == waits.REFUSED
    assert signal(sim, data=3) == waits.REFUSED
    first, second = sim.types(type="signal_refused")
    assert first["message"] == ("order o1 signal payment_confirmed from ops refused: "
                                "one came already")
    assert (first["step"], first["reason"], first["who"]) == (
        "payment_confirmed", "one came already", "ops")
    assert second["message"] == "order o1 signal payment_confirmed refused: one came already"


def test_an_unknown_signal_names_every_wait_of_the_order():
    two = Workflow.define("two_waits", [("reserve", []), ("paid", ["reserve"]),
                                        ("shipped", ["paid"])],
                          waits=[Wait("paid"), Wait("shipped")])
    sim = Sim(workers=1, workflows={"two_waits": two}, retry=NO_RETRY)
    submit(sim, "two_waits")
    with pytest.raises(UnknownWait) as refused:
        signal(sim, "delivered")
    assert str(refused.value) == ("order o1 (two_waits) never waits for signal 'delivered'; "
                                  "its waits: paid, shipped")


def test_a_timed_out_wait_is_logged_on_its_step():
    sim = wait_sim()
    submit(sim, "pay_continue")
    run(sim, "reserve")
    sim.advance(1800.0)
    [timed_out] = sim.types(type="wait_timed_out")
    assert (timed_out["order_id"], timed_out["step"]) == ("o1", "payment_confirmed")
    assert timed_out["message"] == ("order o1 wait payment_confirmed: no signal "
                                    "payment_confirmed within 1800s; continuing with no signal")


def test_a_signal_taken_at_a_restart_says_so():
    sim = wait_sim()
    submit(sim, "pay_cancel")
    run(sim, "reserve")
    [record] = [sim.core.order_record(o, with_events=True)
                for o in views.orders(sim.core).values()]
    before = restart(sim)
    signal(sim, data="late")
    [later] = [sim.core.order_record(o, with_events=True)
               for o in views.orders(sim.core).values()]
    received = [e for e in later.events if e["type"] == "signal_received"]
    sim = restart(sim, [replace(record, events=(*record.events, *received))], totals=before)
    [completed] = sim.types(type="wait_completed")
    assert completed["message"] == ("order o1 wait payment_confirmed completed by a signal "
                                    "that came before a restart")


def test_a_wait_says_what_it_waits_for_and_how_it_ended():
    sim = wait_sim()
    submit(sim, "forever")
    submit(sim, "pay_cancel", oid="o2")
    signal(sim, oid="o2", data="early")
    run(sim, "reserve")
    run(sim, "reserve")
    [started] = sim.types(type="wait_started")
    assert started["message"] == "order o1 waits for signal payment_confirmed"
    assert (started["step"], started["until"]) == ("payment_confirmed", None)
    [early] = sim.types(type="wait_completed", order_id="o2")
    assert early["message"] == ("order o2 wait payment_confirmed completed by a signal that "
                                "came before it")


ENDS_WAITING = Workflow.define(
    "ends_waiting", [("ship", []), ("delivered", ["ship"])],
    waits=[Wait("delivered", timeout=60.0, on_timeout="continue")])
PAID_FIRST = Workflow.define(
    "paid_first", [("paid", []), ("charge", ["paid"])],
    waits=[Wait("paid", timeout=60.0, on_timeout="cancel")])


def test_timeouts_that_end_an_order_finish_it_at_their_time():
    sim = Sim(workers=1, workflows={"ends_waiting": ENDS_WAITING, "paid_first": PAID_FIRST},
              retry=NO_RETRY)
    sim.core.epoch_offset = 1_700_000_000.0
    submit(sim, "paid_first")  # its wait comes first: nothing to undo when it cancels
    sim.advance(0.25)
    submit(sim, "ends_waiting", oid="o2")  # its wait comes last: its timeout completes it
    run(sim, "ship")
    [started] = sim.types(type="wait_started", order_id="o2")
    assert started["message"] == "order o2 waits for signal delivered for 60s, then continues"
    assert started["until"] == 1_700_000_060.25
    sim.advance(61.0)
    orders = views.orders(sim.core)
    for oid, status_now in (("o1", "cancelled"), ("o2", "completed")):
        [timed_out] = sim.types(type="wait_timed_out", order_id=oid)
        assert status(sim, oid) == status_now
        assert orders[oid].finished_at == pytest.approx(timed_out["ts"] - 1_700_000_000.0)
    [completed] = sim.types(type="wait_completed", order_id="o2")
    assert completed["message"] == "order o2 wait delivered completed by its timeout"


def test_a_delayed_step_says_how_long_it_waits_and_until_when():
    sim = delayed_sim(100.0)
    sim.core.epoch_offset = 1_700_000_000.0
    submit(sim, "review")
    sim.advance(5.25)
    run(sim, "ship")
    [delayed] = sim.types(type="task_delayed")
    assert delayed["message"] == ("order o1 step ask_review waits 100.000s before it may "
                                  "start")
    assert (delayed["step"], delayed["until"]) == ("ask_review", 1_700_000_105.25)


# --------------------------------------------------------------------------- the order view

def test_the_order_view_says_what_each_waiting_step_waits_for_and_until_when():
    sim = delayed_sim(delay=WEEK)
    sim.core.epoch_offset = 1_000.0  # the view shows wall times: the core's clock shifted
    submit(sim, "pay_cancel", "o1")
    submit(sim, "review", "o2")
    submit(sim, "forever", "o3")
    for _ in range(3):
        d, ctx = sim.start_next("w1")
        sim.succeed(d)
    paying, reviewing, forever = (views.order_view(sim.core, views.orders(sim.core)[oid])
                                  for oid in ("o1", "o2", "o3"))
    assert paying["waits"] == [{
        "step": "payment_confirmed", "signal": "payment_confirmed",
        "until": round(1_000.0 + 1800.0, 3), "what": "the signal payment_confirmed"}]
    assert paying["tasks"]["payment_confirmed"]["waiting_for"] == "the signal payment_confirmed"
    assert reviewing["waits"] == [{
        "step": "ask_review", "signal": None, "until": round(1_000.0 + WEEK, 3),
        "what": "its time (a delay, or its order's not_before)"}]
    # A wait with no timeout waits with no end; a step not waiting has no entry.
    assert forever["waits"] == [{"step": "payment_confirmed", "signal": "payment_confirmed",
                                 "until": None, "what": "the signal payment_confirmed"}]
    assert "reserve" not in {w["step"] for w in paying["waits"]}


def test_a_schedule_event_names_its_schedule_and_joins_its_orders_timeline():
    sim = wait_sim()
    submit(sim, "review", "o1")
    sim.now = 7.0
    fx = sim.core.schedule_event("schedule_fired", "nightly", "schedule nightly fired",
                                 sim.now, order_id="o1", due=5.0)
    [event] = fx.events
    assert (event["type"], event["schedule"], event["order_id"], event["due"]) == (
        "schedule_fired", "nightly", "o1", 5.0)
    assert event["message"] == "schedule nightly fired" and event["ts"] == 7.0
    assert views.orders(sim.core)["o1"].events[-1] is event
    [alone] = sim.core.schedule_event("schedule_skipped", "nightly", "skipped", 8.0).events
    assert alone["order_id"] is None and alone["schedule"] == "nightly"
    assert alone["seq"] == event["seq"] + 1
