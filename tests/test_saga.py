"""Sagas through the app API, the runtime and a real SQLite journal: `@app.step(compensate=)`
is checked when the app is, an undo gets the original step's result, and a compensation
survives a server restart at any point without an undo running twice."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from conftest import wait_for
from test_store import FAST, JournaledSim, assert_journal_consistent, db_rows, journal_at

from scheduler import App, Cluster, RetryPolicy, TaskContext, TaskError
from scheduler.engine import views
from scheduler.engine.config import ClusterConfig
from scheduler.engine.core import SchedulerCore
from scheduler.journal.recovery import recover_into
from scheduler.steps.app import AppError

ORDER = {"customer": "ada", "items": [{"sku": "A1", "qty": 1, "price": 3.0}]}


def noop(ctx: TaskContext):
    return {"step": ctx.step}


def shop(packing=noop, refund=noop) -> App:
    """charge, then pack; refund if packing fails for good."""
    app = App("shop")
    app.add_step("payment", lambda ctx: {"charge": f"ch-{ctx.order_id}"}, compensate="refund")
    app.add_step("refund", refund, retries=2, backoff=(0.01, 0.01))
    app.add_step("packing", packing, retries=0)
    app.add_step("shipping", noop)
    app.workflow("checkout", ["payment", "packing", "shipping"])
    return app


# --------------------------------------------------------------------------- app API

def test_a_step_names_its_undo_and_the_workflow_carries_it():
    app = App("a")

    @app.step(compensate="refund")
    def payment(ctx):
        return 1

    @app.step()
    def refund(ctx):
        return 2

    wf = app.workflow("w", ["payment"])
    assert wf.compensations == {"payment": "refund"}
    assert app.steps["payment"].compensate == "refund"
    assert app.check() is app
    assert "refund" in app.handlers  # an undo is an ordinary step: workers run it


def test_an_undo_that_is_not_a_declared_step_is_refused():
    app = App("a")
    app.add_step("payment", noop, compensate="refund")
    with pytest.raises(AppError, match="undone by 'refund', which is not a declared step"):
        app.workflow("w", ["payment"])
    app.workflows["w"] = None  # as if declared before: check() still catches it
    with pytest.raises(AppError, match="'refund', which is not a declared step"):
        app.check()


def test_undos_that_undo_each_other_are_refused():
    app = App("a")
    app.add_step("payment", noop, compensate="refund")
    app.add_step("refund", noop, compensate="payment")
    with pytest.raises(AppError, match="an undo is not undone"):
        app.workflow("w", ["payment"])
    app.workflows["w"] = None
    with pytest.raises(AppError, match="has an undo of its own"):
        app.check()


def test_a_step_cannot_undo_itself_nor_be_its_workflows_own_undo():
    app = App("a")
    with pytest.raises(AppError, match="another step's name"):
        app.add_step("payment", noop, compensate="payment")
    app.add_step("pay", noop, compensate="ship")
    app.add_step("ship", noop)
    with pytest.raises(AppError, match="outside the workflow"):
        app.workflow("w", ["pay", "ship"])


def test_a_workflow_defined_elsewhere_must_agree_with_its_steps_undos():
    from scheduler.engine.workflow import Workflow

    app = App("a")
    app.add_step("payment", noop)
    app.add_step("refund", noop)
    elsewhere = Workflow.define("w", [("payment", [])], compensations={"payment": "refund"})
    with pytest.raises(AppError, match="declare it as @app.step"):
        app.add_workflow(elsewhere)
    agreeing = App("b")
    agreeing.add_step("payment", noop, compensate="refund")
    agreeing.add_step("refund", noop)
    assert agreeing.add_workflow(elsewhere).compensations == {"payment": "refund"}


# --------------------------------------------------------------------------- journal

class SagaSim(JournaledSim):
    """A journaled fake-clock sim of the shop's workflow, crashed and recovered at will."""

    def __init__(self, db):
        super().__init__(db, workers=1, workflows=shop().workflows,
                         retry=RetryPolicy(max_retries=0))

    def recover(self, db) -> SagaSim:
        self.journal.close()
        journal = journal_at(db)
        try:
            state = journal.recover()
        finally:
            journal.close()
        again = SagaSim.__new__(SagaSim)
        JournaledSim.__init__(again, db, workers=0, workflows=shop().workflows,
                              retry=RetryPolicy(max_retries=0))
        again.core = SchedulerCore(ClusterConfig(workers=0, seed=7,
                                                 retry=RetryPolicy(max_retries=0)),
                                   shop().workflows)
        again.journal.attach(again.core, again.lock)
        again.now = self.now
        again.apply(recover_into(again.core, state, now=self.now))
        again.add_worker("w9")
        return again

    def step(self, worker: str, ok: bool = True):
        d, ctx = self.start_next(worker)
        assert d is not None
        (self.succeed(d, {"did": ctx["step"]}) if ok else self.fail(d, "out of stock"))
        return ctx


@pytest.mark.parametrize("crash_after", ["failure", "refund_started", "refund_done"])
def test_a_compensation_survives_a_crash_at_any_point_and_refunds_once(journal_db, crash_after):
    db = journal_db
    sim = SagaSim(db)
    sim.submit("o1", "checkout")
    sim.step("w1")  # payment
    sim.step("w1", ok=False)  # packing fails for good: refund due
    assert db_rows(db, "SELECT status FROM orders WHERE id = 'o1'") == [("compensating",)]
    if crash_after != "failure":
        d, ctx = sim.start_next("w1")
        assert ctx["step"] == "refund"
        if crash_after == "refund_done":
            sim.succeed(d, {"refunded": True})
    sim = sim.recover(db)
    order = views.orders(sim.core)["o1"]
    assert order.undoing == ["refund"]
    if crash_after != "refund_done":
        ctx = sim.step("w9")
        assert ctx["results"] == {"payment": {"did": "payment"}}
        assert ctx["idempotency_key"] == "o1:payment:compensate"
    assert order.reported_status == "compensated"
    assert not sim.start_next("w9")[0]  # nothing left to run: the refund never runs twice
    sim.journal.close()
    assert db_rows(db, "SELECT status FROM orders WHERE id = 'o1'") == [("compensated",)]
    assert db_rows(db, "SELECT state FROM tasks WHERE id = 'o1:refund'") == [("succeeded",)]
    succeeded = db_rows(db, "SELECT COUNT(*) FROM events WHERE type = 'task_succeeded' "
                            "AND step = 'refund'")
    assert succeeded == [(1,)]
    assert_journal_consistent(db)


# --------------------------------------------------------------------------- runtime

def test_a_cluster_refunds_a_charge_when_packing_fails_and_a_restart_keeps_it(tmp_path):
    db = tmp_path / "of.db"
    refunds: list[tuple] = []

    def out_of_stock(ctx):
        raise TaskError("out of stock")

    def refund(ctx):
        refunds.append((ctx.results["payment"], ctx.idempotency_key, ctx.compensates))
        return {"refunded": ctx.results["payment"]["charge"]}

    cluster = Cluster(workers=1, app=shop(packing=out_of_stock, refund=refund),
                      journal=journal_at(db), **FAST).start()
    try:
        oid = cluster.submit(ORDER, workflow="checkout")
        assert cluster.wait_until_idle(20)
        order = cluster.get_order(oid)
        assert order["status"] == "compensated"
        assert refunds == [({"charge": f"ch-{oid}"}, f"{oid}:payment:compensate", "payment")]
        assert order["tasks"]["refund"]["result"] == {"refunded": f"ch-{oid}"}
    finally:
        cluster.stop()
    again = Cluster(workers=1, app=shop(packing=out_of_stock, refund=refund),
                    journal=journal_at(db), **FAST).start()
    try:
        assert again.get_order(oid)["status"] == "compensated"
        assert again.wait_until_idle(5)
        assert len(refunds) == 1
    finally:
        again.stop()
    assert_journal_consistent(db)


def test_an_undo_running_when_the_server_stops_runs_again_after_the_restart(tmp_path):
    db = tmp_path / "of.db"
    running = threading.Event()
    keys: list[str] = []

    def out_of_stock(ctx):
        raise TaskError("out of stock")

    def stuck_refund(ctx):
        keys.append(ctx.idempotency_key)
        running.set()
        ctx.sleep(30)  # still running when the cluster stops
        raise TaskError("never returned")

    cluster = Cluster(workers=1, app=shop(packing=out_of_stock, refund=stuck_refund),
                      journal=journal_at(db), **FAST).start()
    try:
        oid = cluster.submit(ORDER, workflow="checkout")
        assert running.wait(10)
        assert cluster.get_order(oid)["status"] == "compensating"
    finally:
        cluster.stop()

    def refund(ctx):
        keys.append(ctx.idempotency_key)
        return "refunded"

    again = Cluster(workers=1, app=shop(packing=out_of_stock, refund=refund),
                    journal=journal_at(db), **FAST).start()
    try:
        wait_for(lambda: again.get_order(oid)["status"] == "compensated", 10,
                 message="the refund ran again after the restart")
        assert keys == [f"{oid}:payment:compensate"] * 2  # the same key, for the same undo
        story = again.story(oid)
        assert Counter(e["type"] for e in story)["order_compensated"] == 1
        assert [e["step"] for e in story if e["type"] == "task_succeeded"] == ["payment",
                                                                               "refund"]
    finally:
        again.stop()
    assert_journal_consistent(db)
