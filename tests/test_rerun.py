"""Running a finished order again from a chosen step (engine/rerun.py, issue 23 item 5): the
step and those after it run again, and every step that did not succeed; under the same
idempotency keys unless new keys are asked for, so a charge does not repeat by accident."""

from __future__ import annotations

import pytest
from sim import Sim
from test_definitions import Driver, restarted_with

from scheduler.engine import views
from scheduler.engine.config import RetryPolicy
from scheduler.engine.errors import Conflict, UnknownStep
from scheduler.engine.rerun import key_of, rerun_steps
from scheduler.engine.states import TaskState
from scheduler.engine.workflow import ECOMMERCE, ECOMMERCE_INVOICED, Wait, Workflow

S = TaskState
SAGA = Workflow.define("saga", [("payment", []), ("packing", ["payment"])],
                       {"payment": "refund"})


def finished(workflow: str = "ecommerce", fail: str | None = None) -> Sim:
    """One order o1 run to the end (its step `fail` failing for good)."""
    sim = Sim(workers=1, workflows={"saga": SAGA}, retry=RetryPolicy(max_retries=0))
    sim.submit("o1", workflow=workflow)
    while True:
        d, _ = sim.start_next("w1")
        if d is None:
            break
        step = d.task_id.split(":")[1]
        if step == fail:
            sim.fail(d)
        else:
            sim.succeed(d, {"ran": step})
    return sim


def keys_started(sim: Sim) -> list[tuple[str, str]]:
    """(step, idempotency key) of every start from now on, running the order to the end."""
    keys = []
    while True:
        d, ctx = sim.start_next("w1")
        if d is None:
            return keys
        keys.append((ctx["step"], ctx["idempotency_key"]))
        sim.succeed(d, {"ran": ctx["step"]})


def status(sim: Sim) -> str:
    return sim.core.order_status(views.orders(sim.core)["o1"]).value


def test_a_completed_order_runs_again_from_a_step_under_the_same_keys():
    sim = finished()
    fx, again = sim.core.rerun_order("o1", "packing", sim.now)
    sim.apply(fx)
    assert again == ["packing", "shipping"]
    order = views.orders(sim.core)["o1"]
    assert order.tasks["payment"].state is S.SUCCEEDED
    assert order.tasks["payment"].result == {"ran": "payment"}
    assert order.tasks["packing"].state in (S.READY, S.ASSIGNED)
    assert order.tasks["shipping"].waiting_on == {"packing"}
    (event,) = [e for e in fx.events if e["type"] == "order_retried"]
    assert event["message"] == ("order o1 runs again from step packing by hand (packing, "
                                "shipping; the same idempotency keys)")
    assert event["rerun"] == ["packing", "shipping"] and event["new_keys"] is False
    assert status(sim) == "in_progress"
    assert keys_started(sim) == [("packing", "o1:packing"), ("shipping", "o1:shipping")]
    assert status(sim) == "completed"
    assert views.stats(sim.core, sim.now)["orders"]["completed"] == 1


def test_new_keys_give_each_step_run_again_a_key_of_its_own_round_after_round():
    sim = finished()
    sim.apply(sim.core.rerun_order("o1", "shipping", sim.now, new_keys=True)[0])
    assert keys_started(sim) == [("shipping", "o1:shipping:rerun-1")]
    sim.apply(sim.core.rerun_order("o1", "packing", sim.now, new_keys=True)[0])
    assert keys_started(sim) == [("packing", "o1:packing:rerun-1"),
                                 ("shipping", "o1:shipping:rerun-2")]
    sim.apply(sim.core.rerun_order("o1", "packing", sim.now)[0])  # the same keys again
    assert keys_started(sim) == [("packing", "o1:packing:rerun-1"),
                                 ("shipping", "o1:shipping:rerun-2")]


def test_a_failed_order_runs_again_with_its_failed_and_cancelled_steps_too():
    sim = finished("ecommerce_invoiced", fail="invoice")
    assert status(sim) == "failed"
    order = views.orders(sim.core)["o1"]
    states = {s: order.tasks[s].state for s in order.workflow.steps}
    assert states["invoice"] is S.FAILED
    assert rerun_steps(ECOMMERCE_INVOICED, states, "packing") == ["packing", "invoice",
                                                                    "shipping"]
    fx, again = sim.core.rerun_order("o1", "packing", sim.now)
    sim.apply(fx)
    assert again == rerun_steps(ECOMMERCE_INVOICED, states, "packing")
    assert order.tasks["invoice"].attempt == 0 and order.tasks["invoice"].error is None
    assert sorted(s for s, _ in keys_started(sim)) == ["invoice", "packing", "shipping"]
    assert status(sim) == "completed"


def test_a_cancelled_order_runs_again_from_its_first_step():
    sim = Sim(workers=0)
    sim.submit("o1")
    sim.apply(sim.core.cancel_order("o1", sim.now))
    sim.apply(sim.core.rerun_order("o1", "payment", sim.now)[0])
    assert status(sim) == "pending"
    sim.add_worker("w1")
    assert [s for s, _ in keys_started(sim)] == ["payment", "packing", "shipping"]


def test_an_unfinished_or_compensated_order_or_an_unknown_step_is_refused():
    sim = Sim(workers=0)
    sim.submit("o1")
    with pytest.raises(Conflict, match="order o1 is pending; only a completed, failed or "
                       "cancelled order"):
        sim.core.rerun_order("o1", "payment", sim.now)
    done = finished()
    with pytest.raises(UnknownStep):
        done.core.rerun_order("o1", "refund", done.now)
    saga = finished("saga", fail="packing")
    assert status(saga) == "compensated"
    with pytest.raises(Conflict, match="is compensated"):
        saga.core.rerun_order("o1", "payment", saga.now)


def test_a_task_key_is_its_id_until_a_rerun_with_new_keys():
    sim = finished()
    task = views.orders(sim.core)["o1"].tasks["payment"]
    assert key_of(task) == "o1:payment"
    task.key_round = 3
    assert key_of(task) == "o1:payment:rerun-3"


def test_a_new_key_round_survives_a_restart():
    d = Driver(ECOMMERCE)
    d.apply(d.core.submit("o1", {"customer": "ada", "items": []}, 0.0))
    d.add_worker("w1")
    d.run("w1")
    d.apply(d.core.rerun_order("o1", "shipping", 0.0, new_keys=True)[0])
    record = d.core.order_record(views.orders(d.core)["o1"])
    assert [t.key_round for t in record.tasks] == [0, 0, 1]
    new = restarted_with(d, ECOMMERCE, learn=())
    new.add_worker("w2")
    task = new.queues["w2"].popleft()
    _, ctx = new.core.start_task(task.task_id, "w2", task.lease, now=0.0)
    assert ctx["idempotency_key"] == "o1:shipping:rerun-1"


def test_everything_a_rerun_resets_and_says_is_exact():
    sim = finished()
    order = views.orders(sim.core)["o1"]
    payment = order.tasks["payment"]
    assert payment.completed > 0
    payment.reassignments = 2
    fx, _ = sim.core.rerun_order("o1", "payment", sim.now, new_keys=True)
    sim.apply(fx)
    assert (payment.attempt, payment.attempt_open, payment.reassignments, payment.error,
            payment.result, payment.completed) == (0, False, 0, None, None, 0)
    event = next(e for e in fx.events if e["type"] == "order_retried")
    assert event["message"] == ("order o1 runs again from step payment by hand (payment, "
                                "packing, shipping; new idempotency keys)")
    assert (event["from_step"], event["new_keys"]) == ("payment", True)
    assert event in order.events
    with pytest.raises(UnknownStep) as unknown:
        finished().core.rerun_order("o1", "gift", 0.0)
    assert "gift" in str(unknown.value)
    with pytest.raises(Conflict) as busy:
        sim.core.rerun_order("o1", "payment", sim.now)
    assert str(busy.value) == ("order o1 is in_progress; only a completed, failed or "
                               "cancelled order (whose undos did not run) can run again "
                               "from a step")


def test_a_wait_run_again_takes_the_signal_it_had_and_the_order_stays_completed():
    confirmed = Workflow.define("confirmed", [("payment", []), ("paid", ["payment"])],
                                waits=[Wait("paid")])
    sim = Sim(workers=1, workflows={"confirmed": confirmed})
    sim.submit("o1", workflow="confirmed")
    d, _ = sim.start_next("w1")
    sim.succeed(d)
    sim.apply(sim.core.signal("o1", "paid", {"txn": 1}, now=sim.now)[0])
    assert status(sim) == "completed"
    sim.now = 7.0
    fx, again = sim.core.rerun_order("o1", "paid", sim.now)
    sim.apply(fx)
    assert again == ["paid"] and status(sim) == "completed"
    assert [e["type"] for e in fx.events] == ["order_retried",
                                              "wait_completed"]
    assert views.orders(sim.core)["o1"].tasks["paid"].result == {"txn": 1}
