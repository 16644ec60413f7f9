"""Sagas in the pure core: a step's undo runs when its order fails or is cancelled after the
step succeeded, newest success first, each undo a task of its own with retries; the order
ends compensated, or compensation_failed. Fake clock, no threads."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sim import Sim

from scheduler.engine import views
from scheduler.engine.config import ClusterConfig, RetryPolicy
from scheduler.engine.core import SchedulerCore
from scheduler.engine.errors import Conflict
from scheduler.engine.records import ResumePoint
from scheduler.engine.states import (
    TERMINAL_ORDER,
    OrderStage,
    OrderStatus,
    TaskState,
    derive_compensation_status,
    derive_order_stage,
)
from scheduler.engine.workflow import Workflow, WorkflowError

S = TaskState
# charge, then pack; refund if packing fails for good.
CHECKOUT = Workflow.define(
    "checkout", [("payment", []), ("packing", ["payment"]), ("shipping", ["packing"])],
    compensations={"payment": "refund", "packing": "unpack"},
)
# packing and invoice run side by side; which finished last is undone first.
FANOUT = Workflow.define(
    "fanout",
    [("payment", []), ("packing", ["payment"]), ("invoice", ["payment"]),
     ("shipping", ["packing", "invoice"])],
    compensations={"payment": "refund", "packing": "unpack", "invoice": "void"},
)
WORKFLOWS = {w.name: w for w in (CHECKOUT, FANOUT)}
NO_RETRY = RetryPolicy(max_retries=0)


def saga_sim(retry: RetryPolicy = NO_RETRY, **settings) -> Sim:
    return Sim(workers=1, workflows=WORKFLOWS, retry=retry, **settings)


def run(sim: Sim, step: str, result=None, ok: bool = True, error: str = "boom"):
    """Start the next dispatch on w1, check it is `step`, and finish it."""
    d, ctx = sim.start_next("w1")
    assert d is not None and ctx["step"] == step, (d, ctx)
    if ok:
        sim.succeed(d, result)
    else:
        sim.fail(d, error)
    return ctx


def status(sim: Sim, oid: str = "o1") -> str:
    return views.orders(sim.core)[oid].reported_status


def test_a_workflow_names_each_steps_undo_and_refuses_bad_ones():
    assert CHECKOUT.compensations == {"payment": "refund", "packing": "unpack"}
    assert CHECKOUT.undo_of("refund") == "payment" and CHECKOUT.undo_of("payment") is None
    with pytest.raises(WorkflowError, match="unknown step 'nope'"):
        Workflow.define("w", [("a", [])], compensations={"nope": "undo"})
    with pytest.raises(WorkflowError, match="outside the workflow"):
        Workflow.define("w", [("a", []), ("b", ["a"])], compensations={"a": "b"})
    with pytest.raises(WorkflowError, match="outside the workflow"):
        Workflow.define("w", [("a", [])], compensations={"a": ""})
    with pytest.raises(WorkflowError, match="undoes both 'a' and 'b'"):
        Workflow.define("w", [("a", []), ("b", [])], compensations={"a": "u", "b": "u"})


def test_a_compensating_orders_stage_follows_its_undos_not_its_failed_step():
    states = [S.SUCCEEDED, S.FAILED, S.CANCELLED, S.RETRY_WAIT]
    assert derive_order_stage(states) is OrderStage.FAILED
    assert derive_order_stage(states, OrderStatus.COMPENSATING) is OrderStage.RETRYING
    assert derive_order_stage(states, OrderStatus.COMPENSATED) is OrderStage.COMPENSATED


def test_compensation_status_follows_the_undos():
    assert derive_compensation_status([S.SUCCEEDED, S.SUCCEEDED]) is OrderStatus.COMPENSATED
    assert derive_compensation_status([S.SUCCEEDED, S.READY]) is OrderStatus.COMPENSATING
    assert derive_compensation_status([S.PENDING, S.SUCCEEDED]) is OrderStatus.COMPENSATING
    assert derive_compensation_status([S.SUCCEEDED, S.FAILED, S.CANCELLED]) is (
        OrderStatus.COMPENSATION_FAILED)
    assert OrderStatus.COMPENSATED in TERMINAL_ORDER
    assert OrderStatus.COMPENSATION_FAILED in TERMINAL_ORDER
    assert OrderStatus.COMPENSATING not in TERMINAL_ORDER


def test_packing_failing_for_good_refunds_the_charge_with_its_result_and_key():
    sim = saga_sim()
    sim.submit("o1", "checkout")
    run(sim, "payment", {"charge": "ch_1"})
    run(sim, "packing", ok=False, error="out of stock")
    assert status(sim) == "compensating"
    [started] = sim.types(type="order_compensating")
    assert started["undo"] == ["refund"] and "out of stock" in started["message"]
    assert not sim.types(type="order_failed")
    assert "unpack" not in views.orders(sim.core)["o1"].tasks  # packing never succeeded
    assert sim.task("o1", "shipping").state is S.CANCELLED
    ctx = run(sim, "refund", {"refunded": "ch_1"})
    assert ctx["results"] == {"payment": {"charge": "ch_1"}}
    assert ctx["idempotency_key"] == "o1:payment:compensate"
    assert ctx["compensates"] == "payment"
    assert status(sim) == "compensated"
    [done] = sim.types(type="order_compensated")
    assert "refund" in done["message"] and done["order_id"] == "o1"
    assert done in views.orders(sim.core)["o1"].events
    assert views.orders_by_status(sim.core)["compensated"] == 1
    assert views.active_orders(sim.core) == 0


def test_undos_run_one_at_a_time_newest_success_first():
    sim = saga_sim(slots=2)
    sim.submit("o1", "fanout")
    run(sim, "payment", "paid")
    started = {}
    for _ in range(2):  # packing and invoice run side by side
        d, ctx = sim.start_next("w1")
        started[ctx["step"]] = d
    # invoice finishes first, though the workflow lists packing first.
    sim.succeed(started["invoice"])
    sim.succeed(started["packing"])
    run(sim, "shipping", ok=False)
    order = views.orders(sim.core)["o1"]
    assert order.undoing == ["unpack", "void", "refund"]
    # One at a time: the later undos wait for the one before.
    assert [order.tasks[u].state for u in order.undoing][1:] == [S.PENDING, S.PENDING]
    assert order.tasks["void"].waiting_on == {"unpack"}
    assert [run(sim, u)["step"] for u in ("unpack", "void", "refund")]
    assert status(sim) == "compensated"


def test_an_order_that_fails_before_anything_succeeded_just_fails():
    sim = saga_sim()
    sim.submit("o1", "checkout")
    run(sim, "payment", ok=False)
    assert status(sim) == "failed"
    assert not views.orders(sim.core)["o1"].undoing
    assert not sim.types(type="order_compensating")


def test_a_step_without_an_undo_is_not_compensated():
    sim = saga_sim()
    sim.submit("o1", "checkout")
    run(sim, "payment")
    run(sim, "packing")
    run(sim, "shipping", ok=False)
    assert views.orders(sim.core)["o1"].undoing == ["unpack", "refund"]


def test_cancelling_after_the_charge_refunds_it():
    sim = saga_sim()
    sim.submit("o1", "checkout")
    run(sim, "payment", "paid")
    sim.apply(sim.core.cancel_order("o1", now=sim.now))
    assert status(sim) == "compensating"
    assert "cancelled" in sim.types(type="order_compensating")[0]["message"]
    assert not sim.types(type="order_cancelled")
    with pytest.raises(Conflict, match="compensating"):
        sim.core.cancel_order("o1", now=sim.now)
    run(sim, "refund")
    assert status(sim) == "compensated"


def test_cancelling_before_anything_succeeded_just_cancels():
    sim = saga_sim()
    sim.submit("o1", "checkout")
    sim.apply(sim.core.cancel_order("o1", now=sim.now))
    assert status(sim) == "cancelled"
    assert not views.orders(sim.core)["o1"].undoing


def test_an_undo_is_retried_like_any_step():
    sim = saga_sim(retry=RetryPolicy(max_retries=2, backoff_base=1.0, backoff_cap=1.0))
    sim.submit("o1", "checkout")
    run(sim, "payment")
    for _ in range(3):
        run(sim, "packing", ok=False)
        sim.advance(1.0)
    assert status(sim) == "compensating"
    run(sim, "refund", ok=False, error="gateway down")
    assert sim.task("o1", "refund").state is S.RETRY_WAIT
    assert views.orders(sim.core)["o1"].stage == OrderStage.RETRYING.value
    sim.advance(1.0)
    ctx = run(sim, "refund")
    assert ctx["attempt"] == 2 and ctx["idempotency_key"] == "o1:payment:compensate"
    assert status(sim) == "compensated"


def compensation_failed_sim() -> Sim:
    """packing and payment succeeded, shipping failed; unpack ran out of retries."""
    sim = saga_sim()
    sim.submit("o1", "checkout")
    run(sim, "payment")
    run(sim, "packing")
    run(sim, "shipping", ok=False)
    run(sim, "unpack", ok=False, error="shelf jammed")
    return sim


def test_an_undo_out_of_retries_fails_the_compensation_and_stops_the_others():
    sim = compensation_failed_sim()
    assert status(sim) == "compensation_failed"
    assert sim.task("o1", "refund").state is S.CANCELLED
    [failed] = sim.types(type="order_compensation_failed")
    assert "unpack" in failed["message"] and "shelf jammed" in failed["message"]
    assert failed["order_id"] == "o1" and failed in views.orders(sim.core)["o1"].events
    assert views.orders_by_status(sim.core)["compensation_failed"] == 1
    assert views.active_orders(sim.core) == 0


def test_retrying_a_failed_compensation_reruns_the_undos_not_the_steps():
    sim = compensation_failed_sim()
    sim.apply(sim.core.retry_order("o1", now=sim.now))
    assert status(sim) == "compensating"
    assert sim.task("o1", "shipping").state is S.FAILED  # the failed step stays failed
    assert sim.task("o1", "refund").state is S.PENDING
    [retried] = sim.types(type="order_retried")
    assert "undos retried" in retried["message"] and retried["undos"] == ["unpack", "refund"]
    ctx = run(sim, "unpack")
    assert ctx["attempt"] == 1
    run(sim, "refund")
    assert status(sim) == "compensated"
    assert views.orders_by_status(sim.core)["compensation_failed"] == 0


def test_a_compensated_order_cannot_be_retried_so_nothing_is_undone_twice():
    sim = saga_sim()
    sim.submit("o1", "checkout")
    run(sim, "payment")
    run(sim, "packing", ok=False)
    d, _ = sim.start_next("w1")
    sim.succeed(d)
    with pytest.raises(Conflict, match="compensated"):
        sim.core.retry_order("o1", now=sim.now)
    # A late success of the same undo under its old lease is rejected.
    sim.succeed(d)
    assert len(sim.types(type="task_succeeded", step="refund")) == 1
    assert sim.types(type="result_rejected")


def test_a_worker_dying_under_an_undo_moves_it_like_any_step():
    sim = Sim(workers=2, workflows=WORKFLOWS, retry=NO_RETRY)
    sim.submit("o1", "checkout")
    d, _ = sim.start_next("w1") if sim.queues["w1"] else sim.start_next("w2")
    sim.succeed(d)
    d, _ = sim.start_next(d.worker_id)
    sim.fail(d)
    refund = sim.task("o1", "refund")
    holder = refund.worker
    d, _ = sim.start_next(holder)
    sim.advance(sim.core.config.heartbeat_timeout + 1,
                beating=tuple(w for w in sim.queues if w != holder))
    assert refund.state is S.ASSIGNED and refund.worker != holder
    assert refund.attempt == 1 and refund.attempt_open  # the same attempt runs again


# --------------------------------------------------------------------------- restarts

def fresh_core() -> SchedulerCore:
    return SchedulerCore(ClusterConfig(workers=0, seed=7, retry=NO_RETRY), WORKFLOWS)


def restart(sim: Sim, records=None) -> Sim:
    """The server stops and a new core continues from what a journal kept."""
    core = sim.core
    point = ResumePoint(
        seq=views.last_seq(core), order_number=views.order_number(core),
        lease_counter=views.lease_counter(core), counters=dict(views.counters(core)),
        orders_by_status=dict(views.orders_by_status(core)),
        tasks_by_state=dict(views.tasks_by_state(core)),
    )
    if records is None:
        records = [core.order_record(o, with_events=True) for o in views.orders(core).values()]
    new = Sim(workers=0, workflows=WORKFLOWS, retry=NO_RETRY)
    new.now = sim.now
    new.apply(new.core.restore(point, records, now=sim.now))
    new.add_worker("w1")
    return new


def test_a_restart_in_the_middle_runs_the_rest_of_the_undos_once():
    sim = saga_sim()
    sim.submit("o1", "checkout")
    run(sim, "payment", "paid")
    run(sim, "packing", "packed")
    run(sim, "shipping", ok=False)
    run(sim, "unpack")
    sim.start_next("w1")  # refund running when the server stops
    sim = restart(sim)
    order = views.orders(sim.core)["o1"]
    assert order.undoing == ["unpack", "refund"] and status(sim) == "compensating"
    assert order.tasks["unpack"].state is S.SUCCEEDED  # never runs again
    ctx = run(sim, "refund")
    assert ctx["results"] == {"payment": "paid"} and ctx["attempt"] == 1
    assert ctx["idempotency_key"] == "o1:payment:compensate"
    assert status(sim) == "compensated"
    assert not sim.start_next("w1")[0]


def test_a_restart_before_the_undos_were_written_starts_them():
    sim = saga_sim()
    sim.submit("o1", "checkout")
    run(sim, "payment", "paid")
    run(sim, "packing", ok=False)
    [record] = [sim.core.order_record(o) for o in views.orders(sim.core).values()]
    # The journal had the failure but neither the undo's row nor the new status.
    steps = set(CHECKOUT.steps)
    record = replace(record, status="in_progress",
                     tasks=tuple(t for t in record.tasks if t.step in steps))
    sim = restart(sim, [record])
    assert status(sim) == "compensating"
    assert views.orders(sim.core)["o1"].undoing == ["refund"]
    run(sim, "refund")
    assert status(sim) == "compensated"


def test_a_restart_of_a_finished_compensation_leaves_it_finished():
    sim = compensation_failed_sim()
    sim = restart(sim)
    assert status(sim) == "compensation_failed"
    assert sim.task("o1", "refund").state is S.CANCELLED
    assert not sim.start_next("w1")[0]
    sim.apply(sim.core.retry_order("o1", now=sim.now))
    run(sim, "unpack")
    run(sim, "refund")
    assert status(sim) == "compensated"


def test_a_restart_of_an_order_still_running_undoes_nothing():
    sim = saga_sim()
    sim.submit("o1", "checkout")
    run(sim, "payment", "paid")
    sim = restart(sim)
    assert status(sim) == "in_progress" and not views.orders(sim.core)["o1"].undoing
    run(sim, "packing")
    run(sim, "shipping")
    assert status(sim) == "completed"


def test_steps_from_a_journal_older_than_completed_are_undone_latest_step_first():
    sim = saga_sim()
    sim.submit("o1", "checkout")
    run(sim, "payment")
    run(sim, "packing")
    [record] = [sim.core.order_record(o) for o in views.orders(sim.core).values()]
    old = replace(record, tasks=tuple(t._replace(completed=0) for t in record.tasks))
    sim = restart(sim, [old])
    run(sim, "shipping", ok=False)
    assert views.orders(sim.core)["o1"].undoing == ["unpack", "refund"]


def test_a_retry_says_what_it_reruns_and_a_refused_one_says_what_may_be_retried():
    sim = compensation_failed_sim()
    sim.apply(sim.core.retry_order("o1", now=sim.now))
    [undos] = sim.types(type="order_retried")
    assert undos["message"] == "order o1 its undos retried by hand"
    plain = saga_sim()
    plain.submit("o1")  # the plain workflow: no undo, it just fails
    run(plain, "payment", ok=False)
    plain.apply(plain.core.retry_order("o1", now=plain.now))
    [retried] = plain.types(type="order_retried")
    assert retried["message"] == "order o1 retried by hand" and "undos" not in retried
    with pytest.raises(Conflict) as refused:
        plain.core.retry_order("o1", now=plain.now)
    assert str(refused.value) == ("order o1 is in_progress; only a failed order (or one "
                                  "whose compensation failed) can be retried")


def test_a_bad_undo_is_refused_naming_its_workflow_and_why():
    with pytest.raises(WorkflowError) as refused:
        Workflow.define("shop", [("a", []), ("b", ["a"])], compensations={"a": "b"})
    assert str(refused.value) == ("workflow 'shop': step 'a' is undone by 'b', which must be "
                                  "a step outside the workflow")
    with pytest.raises(WorkflowError, match="^workflow 'shop': compensation for unknown step"):
        Workflow.define("shop", [("a", [])], compensations={"nope": "undo"})


def test_a_compensation_is_announced_in_full_in_the_orders_timeline_and_counted_per_undo():
    sim = saga_sim()
    for oid in ("o1", "o2"):
        sim.submit(oid, "fanout")
    for step in ("payment", "payment", "packing", "invoice", "packing", "invoice"):
        run(sim, step)
    d, _ = sim.start_next("w1")
    fx = sim.fail(d, "carrier down")  # o1's shipping gives up
    [started] = [e for e in fx.events if e["type"] == "order_compensating"]
    why = "step shipping gave up after 1 attempts: carrier down"
    assert started["message"] == (f"order o1: {why}; undoing invoice by void, packing by "
                                  "unpack, payment by refund")
    assert (started["order_id"], started["reason"], started["undoes"]) == (
        "o1", why, {"void": "invoice", "unpack": "packing", "refund": "payment"})
    assert started in views.orders(sim.core)["o1"].events
    assert fx.orders["o1"].undoing == ["void", "unpack", "refund"]  # the journal writes them
    d, _ = sim.start_next("w1")
    assert d.task_id == "o2:shipping"
    sim.fail(d, "carrier down")
    steps = views.progress(sim.core).unfinished_steps()
    assert (steps["refund"]["pending"], steps["unpack"]["pending"]) == (2, 2)


def test_undos_a_restart_starts_say_the_steps_finished_before_it():
    sim = saga_sim()
    sim.submit("o1", "checkout")
    run(sim, "payment", "paid")
    run(sim, "packing", ok=False)
    [record] = [sim.core.order_record(o) for o in views.orders(sim.core).values()]
    steps = set(CHECKOUT.steps)
    record = replace(record, status="in_progress",
                     tasks=tuple(t for t in record.tasks if t.step in steps))
    sim = restart(sim, [record])
    [started] = [e for e in views.events_after(sim.core, 0) if e["type"] == "order_compensating"]
    assert started["reason"] == "its steps finished before a restart"
    assert started["message"] == ("order o1: its steps finished before a restart; undoing "
                                  "payment by refund")


def test_undos_of_a_cancelled_order_say_it_was_cancelled():
    sim = saga_sim()
    sim.submit("o1", "checkout")
    run(sim, "payment")
    sim.apply(sim.core.cancel_order("o1", now=sim.now))
    [started] = sim.types(type="order_compensating")
    assert started["reason"] == "it was cancelled"
    assert started["message"] == "order o1: it was cancelled; undoing payment by refund"
