"""Safe deploys (engine/definitions.py, issue 23): an order keeps the workflow definition it
was submitted under, whatever is deployed later; orders of a definition the running app
lacks come back all the same and wait for a worker that offers it, saying so."""

from __future__ import annotations

from collections import deque

import pytest
from sim import ORDER

from scheduler.engine import views
from scheduler.engine.config import ClusterConfig
from scheduler.engine.core import SchedulerCore
from scheduler.engine.definitions import DefinitionConflict
from scheduler.engine.records import ResumePoint
from scheduler.engine.states import TaskState
from scheduler.engine.workflow import Workflow, WorkflowError
from scheduler.steps.app import App, AppError

S = TaskState
V1 = Workflow.define("checkout", [("payment", []), ("packing", ["payment"])], version="v1")
# The same name, a new shape: a fraud check inserted before the payment.
V2 = Workflow.define("checkout", [("fraud", []), ("payment", ["fraud"]),
                                  ("packing", ["payment"])], version="v2")


class Driver:
    """A core with workers whose dispatches are kept in queues (no threads, fake time)."""

    def __init__(self, workflow: Workflow):
        self.core = SchedulerCore(ClusterConfig(workers=0, seed=7), {workflow.name: workflow})
        self.now = 0.0
        self.queues: dict[str, deque] = {}
        self.events: list[dict] = []

    def apply(self, fx):
        self.events.extend(fx.events)
        for d in fx.dispatches:
            self.queues.setdefault(d.worker_id, deque()).append(d)
        self.core.validate()
        return fx

    def add_worker(self, wid: str, definitions=None):
        self.queues.setdefault(wid, deque())
        return self.apply(self.core.add_worker(wid, self.now, definitions=definitions))

    def run(self, wid: str) -> list[str]:
        """Run everything queued on `wid` to success; the steps it ran, in order."""
        ran = []
        while self.queues[wid]:
            d = self.queues[wid].popleft()
            fx, ctx = self.core.start_task(d.task_id, wid, d.lease, now=self.now)
            self.apply(fx)
            if ctx is not None:
                ran.append(d.task_id)
                self.apply(self.core.task_succeeded(d.task_id, wid, d.lease, {}, now=self.now))
        return ran


def restarted_with(old: Driver, workflow: Workflow, learn=(V1,)) -> Driver:
    """A new core running `workflow`, continuing from what `old` would have journaled."""
    new = Driver(workflow)
    new.core.definitions.learn(learn)
    records = [old.core.order_record(o, with_events=True)
               for o in views.orders(old.core).values()]
    point = ResumePoint(
        seq=views.last_seq(old.core), order_number=views.order_number(old.core),
        lease_counter=views.lease_counter(old.core),
        orders_by_status=dict(views.orders_by_status(old.core)),
        tasks_by_state=dict(views.tasks_by_state(old.core)))
    new.apply(new.core.restore(point, records, now=0.0))
    return new


# ------------------------------------------------------------------ versions


def test_a_workflow_key_names_its_version_and_a_bad_version_is_refused():
    assert V1.key == "checkout@v1" and V1.label() == "checkout version v1"
    unversioned = Workflow.define("checkout", [("payment", [])])
    assert unversioned.key == "checkout" and unversioned.label() == "checkout"
    for bad in ("a@b", " v1", "x" * 65, "v\n1"):
        with pytest.raises(WorkflowError, match="version"):
            Workflow.define("checkout", [("payment", [])], version=bad)


def test_a_definition_comes_back_from_its_journaled_body_with_the_same_shape():
    saga = Workflow.define("saga", [("payment", []), ("packing", ["payment"])],
                           {"payment": "refund"}, version="7")
    back = Workflow.from_body("saga", "7", saga.body())
    assert back == saga and back.same_shape(saga) and back.key == "saga@7"
    assert not V1.same_shape(V2)


def shop(version=None, retries=3, steps=("payment", "packing")) -> App:
    app = App("shop", version=version)
    for step in steps:
        app.add_step(step, lambda ctx: {}, retries=retries)
    app.workflow("checkout", list(steps))
    return app


def test_an_apps_version_is_derived_from_shape_and_policies_unless_given():
    derived = shop().workflows["checkout"].version
    assert len(derived) == 8 and derived == shop().workflows["checkout"].version  # stable
    assert shop(retries=5).workflows["checkout"].version != derived  # a policy changed
    assert shop(steps=("fraud", "payment", "packing")).workflows["checkout"].version != derived
    assert shop(version="2026.12.1").workflows["checkout"].version == "2026.12.1"
    assert shop(version="2026.12.1").definitions == {"checkout@2026.12.1"}
    with pytest.raises(AppError, match="version"):
        shop(version="1@2")


def test_an_app_describes_the_version_its_new_orders_are_pinned_to():
    assert shop(version="9").describe()[0]["version"] == "9"


# ------------------------------------------------------------------ pinned


def test_an_order_is_pinned_to_its_definition_and_the_journal_gets_it_once():
    d = Driver(V1)
    first = d.apply(d.core.submit("o1", dict(ORDER), 0.0, workflow="checkout"))
    second = d.apply(d.core.submit("o2", dict(ORDER), 0.0, workflow="checkout"))
    assert first.definitions == [V1] and second.definitions == []
    assert first.events[0]["message"] == (
        "order o1 accepted (checkout version v1: payment -> packing)")
    assert d.core.order_record(views.orders(d.core)["o1"]).version == "v1"
    assert d.core.definitions.unfinished["checkout@v1"] == 2


def test_a_definition_the_journal_holds_is_not_written_again():
    d = Driver(V1)
    d.core.definitions.learn([V1])
    assert d.apply(d.core.submit("o1", dict(ORDER), 0.0, workflow="checkout")).definitions == []


def test_an_order_keeps_its_dag_when_its_workflow_changes_shape_across_a_restart():
    old = Driver(V1)
    old.add_worker("w1")
    old.apply(old.core.submit("o1", dict(ORDER), 0.0, workflow="checkout"))
    d = old.queues["w1"].popleft()
    old.apply(old.core.start_task(d.task_id, "w1", d.lease, now=0.0)[0])
    old.apply(old.core.task_succeeded(d.task_id, "w1", d.lease, {}, now=0.0))
    new = restarted_with(old, V2)
    order = views.orders(new.core)["o1"]
    # No fraud check inserted before a payment that already succeeded.
    assert order.workflow is not V2 and order.workflow.key == "checkout@v1"
    assert list(order.tasks) == ["payment", "packing"]
    assert order.tasks["payment"].state is S.SUCCEEDED
    assert order.tasks["packing"].state is S.READY
    new.add_worker("old", definitions={"checkout@v1"})
    assert new.run("old") == ["o1:packing"]
    assert new.core.order_status(order).value == "completed"


def test_orders_of_a_definition_nobody_offers_wait_saying_which_and_count_as_stranded():
    old = Driver(V1)
    for i in range(3):
        old.apply(old.core.submit(f"o{i}", dict(ORDER), 0.0, workflow="checkout"))
    new = restarted_with(old, V2)
    missing = [e for e in new.events if e["type"] == "definitions_missing"]
    assert len(missing) == 1 and missing[0]["definitions"] == {"checkout@v1": 3}
    assert "3 orders need workflow checkout version v1" in missing[0]["message"]
    new.add_worker("w-new", definitions=new.core.definitions.current_keys())
    new.apply(new.core.submit("fresh", dict(ORDER), 0.0, workflow="checkout"))
    # The new version's worker runs the new order, never a step of the old ones.
    assert new.run("w-new") == ["fresh:fraud", "fresh:payment", "fresh:packing"]
    payment = views.tasks(new.core)["o0:payment"]
    assert payment.state is S.READY
    assert views.wait_reason(new.core, payment) == (
        "needs workflow checkout version v1: no live worker offers it")
    stats = views.stats(new.core, 0.0)
    assert stats["stranded"] == {"checkout@v1": 3}
    assert stats["unroutable"] == {"payment": 3}
    by_key = {d["key"]: d for d in stats["definitions"]}
    assert by_key["checkout@v1"] == {"key": "checkout@v1", "workflow": "checkout",
                                     "version": "v1", "unfinished": 3, "current": False,
                                     "offered": False}
    assert by_key["checkout@v2"]["current"] and by_key["checkout@v2"]["offered"]
    # A worker of the old version joins: the orders run there, on the code they began with.
    new.add_worker("w-old", definitions={"checkout@v1"})
    assert views.stats(new.core, 0.0)["stranded"] == {}
    assert sorted(new.run("w-old")) == [f"o{i}:{s}" for i in range(3)
                                        for s in ("packing", "payment")]
    assert new.core.definitions.unfinished["checkout@v1"] == 0
    left = {d["key"]: d["unfinished"] for d in views.stats(new.core, 0.0)["definitions"]}
    assert left == {"checkout@v2": 0}  # the old version has no orders left: its workers may go


def test_a_restart_with_the_same_definition_announces_nothing_missing():
    old = Driver(V1)
    old.apply(old.core.submit("o1", dict(ORDER), 0.0, workflow="checkout"))
    new = restarted_with(old, V1)
    assert not [e for e in new.events if e["type"] == "definitions_missing"]
    assert views.stats(new.core, 0.0)["stranded"] == {}


def test_orders_of_definitions_missing_or_unknown_are_announced_in_one_event():
    old = SchedulerCore(ClusterConfig(workers=0, seed=7), {"checkout": V1, "a": A, "b": B})
    for i, workflow in enumerate(["checkout", "a", "b", "b"]):
        old.submit(f"o{i}", dict(ORDER), 0.0, workflow=workflow)
    driver = Driver(V1)
    driver.core = old
    new = restarted_with(driver, V2, learn=(V1,))  # a and b: no definition kept
    (missing,) = [e for e in new.events if e["type"] == "definitions_missing"]
    assert missing["unknown"] == {"a": 1, "b": 2} and missing["orders"] == 4
    assert missing["definitions"] == {"checkout@v1": 1}
    assert missing["message"] == (
        "after the restart, 1 order needs workflow checkout version v1, which this server's "
        "app lacks: they wait for a worker that offers it (orderflow worker --app <that "
        "version's module:app>); unfinished orders 1 of workflow a, 2 of workflow b stay in "
        "the journal only: no definition of their workflow is known (deploy an app that "
        "has it)")
    assert "o1" not in views.orders(new.core) and "o0" in views.orders(new.core)


A = Workflow.define("a", [("x", [])], version="1")
B = Workflow.define("b", [("x", []), ("y", []), ("z", ["x", "y"])], version="1")


def test_a_conflict_names_each_steps_dependencies():
    d = Driver(B)
    changed = Workflow.define("b", [("x", []), ("y", ["x"]), ("z", ["y"])], version="1")
    with pytest.raises(DefinitionConflict, match=r"\(x; y; z after x, y and x; y after x; "
                                                 r"z after y\)"):
        d.core.definitions.learn([changed])


UNVERSIONED = Workflow.define("checkout", [("payment", []), ("packing", ["payment"])])


def test_a_journal_written_before_versions_runs_the_current_definition_of_the_name():
    old = Driver(UNVERSIONED)
    old.apply(old.core.submit("o1", dict(ORDER), 0.0, workflow="checkout"))
    same_shape = Workflow.define("checkout", [("payment", []), ("packing", ["payment"])],
                                 version="v3")
    new = restarted_with(old, same_shape, learn=())
    assert views.orders(new.core)["o1"].workflow is same_shape


def test_an_order_from_before_versions_never_runs_a_step_inserted_before_one_that_ran():
    old = Driver(UNVERSIONED)
    old.apply(old.core.submit("o1", dict(ORDER), 0.0, workflow="checkout"))  # payment ready
    new = restarted_with(old, V2, learn=())
    assert "o1" not in views.orders(new.core)  # left in the journal, not run out of order
    missing = [e for e in new.events if e["type"] == "definitions_missing"]
    assert missing[0]["unknown"] == {"checkout": 1}


def test_one_version_with_two_shapes_is_refused_naming_it():
    d = Driver(V1)
    changed = Workflow.define("checkout", [("fraud", []), ("payment", ["fraud"])],
                              version="v1")
    with pytest.raises(DefinitionConflict) as refused:
        d.core.definitions.learn([changed])
    assert str(refused.value) == (
        "workflow checkout version v1 is defined twice with different steps (payment; "
        "packing after payment and fraud; payment after fraud); a changed workflow needs a "
        "new version (App(..., version=...)), or none, to derive one")
    d.core.definitions.learn([V1])  # the same shape again is no conflict


def test_orders_of_several_missing_definitions_are_announced_each_with_its_count():
    other = Workflow.define("returns", [("refund", [])], version="r1")
    old = SchedulerCore(ClusterConfig(workers=0, seed=7), {"checkout": V1, "returns": other})
    for i, workflow in enumerate(["checkout", "checkout", "returns"]):
        old.submit(f"o{i}", dict(ORDER), 0.0, workflow=workflow)
    driver = Driver(V1)
    driver.core = old
    new = restarted_with(driver, V2, learn=(V1, other))
    (missing,) = [e for e in new.events if e["type"] == "definitions_missing"]
    assert missing["message"].startswith(
        "after the restart, 2 orders need workflow checkout version v1, 1 order needs "
        "workflow returns version r1, which this server's app lacks")


def test_an_order_of_a_journaled_definition_without_a_version_keeps_it():
    old = Driver(UNVERSIONED)
    old.apply(old.core.submit("o1", dict(ORDER), 0.0, workflow="checkout"))
    new = restarted_with(old, V2, learn=(UNVERSIONED,))
    assert views.orders(new.core)["o1"].workflow is not V2
    assert list(views.orders(new.core)["o1"].tasks) == ["payment", "packing"]


def test_an_order_from_before_versions_with_a_step_the_workflow_lost_stays_in_the_journal():
    old = Driver(Workflow.define("checkout", [("fraud", []), ("payment", ["fraud"])]))
    old.apply(old.core.submit("o1", dict(ORDER), 0.0, workflow="checkout"))
    new = restarted_with(old, UNVERSIONED, learn=())  # no fraud step any more
    assert "o1" not in views.orders(new.core)


def test_a_definition_with_waits_comes_back_from_its_body_with_them():
    from scheduler.engine.workflow import Wait

    shape = [("payment", []), ("confirmed", ["payment"]), ("packing", ["confirmed"])]
    waiting = Workflow.define("checkout", shape, waits=[Wait("confirmed", 30.0, "fail")],
                              version="v4")
    back = Workflow.from_body("checkout", "v4", waiting.body())
    assert back.waits == {"confirmed": Wait("confirmed", 30.0, "fail")}
    assert back.same_shape(waiting)
    assert not back.same_shape(Workflow.define("checkout", shape, version="v4"))


def test_steps_after_a_step_count_its_longest_chain_of_dependents():
    diamond = Workflow.define("diamond", [
        ("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["c"]), ("e", ["b", "d"])])
    core = SchedulerCore(ClusterConfig(workers=0), {"diamond": diamond})
    after = core.definitions.steps_after
    assert [after("diamond", s) for s in "abcde"] == [3, 1, 2, 1, 0]
    assert after("diamond", "refund") == 0 and after("nowhere@v9", "a") == 0
