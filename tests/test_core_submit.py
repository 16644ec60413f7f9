"""Accepting orders: one on the definition it names, or a batch at once, whole or not at
all and dispatched in one round."""

import pytest
from sim import ORDER, Sim

from scheduler.engine import views
from scheduler.engine.errors import Conflict, Overloaded, UnknownWorkflow
from scheduler.engine.states import TaskState as S
from scheduler.engine.workflow import Workflow


def batch(*ids: str) -> list[tuple[str, dict]]:
    return [(oid, dict(ORDER, customer=oid)) for oid in ids]


def snapshot(sim: Sim) -> tuple:
    """What a refused batch must leave as it was."""
    return (sorted(views.orders(sim.core)), views.order_number(sim.core),
            views.active_orders(sim.core), dict(views.stats(sim.core, sim.now)["tasks"]))


def test_a_batch_opens_every_order_in_its_order_and_hands_first_steps_to_free_slots():
    sim = Sim(workers=2, slots=2, prefetch=0)  # room for 4 of the 6 payments
    fx = sim.apply(sim.core.submit_many(batch(*(f"o{i}" for i in range(6))), now=0.0))
    submitted = [e for e in fx.events if e["type"] == "order_submitted"]
    assert [e["order_id"] for e in submitted] == [f"o{i}" for i in range(6)]
    assert [e["customer"] for e in submitted] == [f"o{i}" for i in range(6)]
    assert [views.orders(sim.core)[f"o{i}"].number for i in range(6)] == list(range(1, 7))
    assert {views.orders(sim.core)[f"o{i}"].priority for i in range(6)} == {0}
    assert len(fx.dispatches) == 4
    assert {d.task_id for d in fx.dispatches} <= {f"o{i}:payment" for i in range(6)}
    states = [sim.task(f"o{i}", "payment").state for i in range(6)]
    assert states.count(S.ASSIGNED) == 4 and states.count(S.READY) == 2
    assert views.active_orders(sim.core) == 6
    sim.run_all()
    assert all(views.orders(sim.core)[f"o{i}"].tasks["shipping"].state is S.SUCCEEDED
               for i in range(6))


def test_a_batch_dispatches_as_many_first_steps_as_one_submit_after_another():
    one_by_one, at_once = Sim(workers=3, slots=2), Sim(workers=3, slots=2)
    ids = [f"o{i}" for i in range(20)]
    for oid in ids:
        one_by_one.submit(oid)
    at_once.apply(at_once.core.submit_many(batch(*ids), now=0.0))
    for sim in (one_by_one, at_once):
        held = {wid: len(w.tasks) for wid, w in views.workers(sim.core).items()}
        assert held == {"w1": 3, "w2": 3, "w3": 3}  # 2 slots and 1 prefetched each


@pytest.mark.parametrize("ids, error, message", [
    (("o1", "o2", "o1"), Conflict, "^an order id appears twice in the batch$"),
    (("o5", "old"), Conflict, "^order old already exists$"),
])
def test_a_batch_with_a_repeated_or_known_id_is_refused_whole(ids, error, message):
    sim = Sim()
    sim.submit("old")
    before = snapshot(sim)
    with pytest.raises(error, match=message):
        sim.core.submit_many(batch(*ids), now=0.0)
    assert snapshot(sim) == before
    sim.core.validate()


def test_a_batch_of_an_unknown_workflow_is_refused_whole():
    sim = Sim()
    before = snapshot(sim)
    with pytest.raises(UnknownWorkflow, match="unknown workflow 'nope'"):
        sim.core.submit_many(batch("o1", "o2"), now=0.0, workflow="nope")
    assert snapshot(sim) == before


def test_a_batch_fits_under_the_unfinished_cap_whole_or_not_at_all():
    sim = Sim(workers=1, max_unfinished_orders=3)
    sim.submit("o0")
    before = snapshot(sim)
    with pytest.raises(Overloaded, match="1 orders are unfinished and at most 3 are accepted; "
                                         "3 more would not fit"):
        sim.core.submit_many(batch("o1", "o2", "o3"), now=0.0)
    assert snapshot(sim) == before
    sim.apply(sim.core.submit_many(batch("o1", "o2"), now=0.0))  # exactly fills the cap
    assert views.active_orders(sim.core) == 3


def test_an_empty_batch_changes_nothing():
    sim = Sim()
    before = snapshot(sim)
    fx = sim.apply(sim.core.submit_many([], now=0.0))
    assert fx.events == [] and fx.dispatches == [] and snapshot(sim) == before


def test_a_batch_runs_the_workflow_it_names():
    sim = Sim(workers=1)
    sim.apply(sim.core.submit_many(batch("d1"), now=0.0, workflow="ecommerce_invoiced"))
    order = views.orders(sim.core)["d1"]
    assert order.workflow.name == "ecommerce_invoiced"
    assert list(order.tasks) == list(order.workflow.steps)


def test_an_order_may_name_a_known_definition_by_its_key_and_runs_that_one():
    old = Workflow.define("checkout", [("payment", []), ("packing", ["payment"])], version="1")
    new = Workflow.define("checkout", [("payment", [])], version="2")
    sim = Sim(workers=1, workflows={"checkout": new})
    sim.core.definitions.learn([old])  # kept by the journal from before a deploy
    sim.apply(sim.core.submit("o1", dict(ORDER), now=0.0, workflow="checkout@1"))
    sim.apply(sim.core.submit("o2", dict(ORDER), now=0.0, workflow="checkout"))
    assert views.orders(sim.core)["o1"].workflow is old
    assert views.orders(sim.core)["o2"].workflow is new
    with pytest.raises(UnknownWorkflow, match="unknown workflow 'checkout@9'"):
        sim.core.submit("o3", dict(ORDER), now=0.0, workflow="checkout@9")


def test_an_order_due_now_starts_at_once_and_one_due_later_waits_with_its_exact_time():
    sim = Sim(workers=1)
    sim.now = 5.0
    due_now = sim.apply(sim.core.submit("o1", dict(ORDER), now=5.0, not_before=5.0))
    event = next(e for e in due_now.events if e["type"] == "order_submitted")
    assert "not_before" not in event and sim.task("o1", "payment").state is S.ASSIGNED
    later = 5.0 + 1.2345678  # stamped to the microsecond, as every event time
    fx = sim.apply(sim.core.submit("o2", dict(ORDER), now=5.0, not_before=later))
    event = next(e for e in fx.events if e["type"] == "order_submitted")
    assert event["not_before"] == round(sim.core.wall(later), 6)
    assert event["not_before"] != round(sim.core.wall(later), 7)
    assert sim.task("o2", "payment").state is S.WAITING
