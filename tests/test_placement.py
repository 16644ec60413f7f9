"""Where work goes (engine/placement.py): who can run a step, and a ready task's home."""

from __future__ import annotations

from scheduler.engine.config import ClusterConfig, StepPolicy
from scheduler.engine.dispatch import ReadyQueues
from scheduler.engine.model import WorkerRecord
from scheduler.engine.placement import Placement
from scheduler.engine.ring import HashRing


def world(**settings):
    config = ClusterConfig(workers=0, **settings)
    workers: dict[str, WorkerRecord] = {}
    queue = ReadyQueues()
    return Placement(HashRing(config.vnodes), workers, queue, config), workers, queue


def joined(placement, workers, worker_id, steps=None, tags=frozenset(), slots=8,
           definitions=None):
    workers[worker_id] = WorkerRecord(worker_id, "thread", "alive", 0.0, 0.0, slots=slots,
                                      steps=steps, tags=frozenset(tags),
                                      definitions=definitions)
    placement.join(worker_id, weight=slots / 8)
    return workers[worker_id]


def test_a_worker_can_run_a_step_it_has_a_handler_for_and_offers_every_tag_of():
    placement, workers, _ = world(steps={"payment": StepPolicy(tags=frozenset({"pay", "eu"}))})
    anything = joined(placement, workers, "any", tags={"pay", "eu", "more"})
    partial = joined(placement, workers, "partial", tags={"pay"})
    packer = joined(placement, workers, "packer", steps={"packing"}, tags={"pay", "eu"})
    pay, pack = ("payment", "wf"), ("packing", "wf")
    assert placement.can_run(anything, pay) and placement.can_run(anything, pack)
    assert not placement.can_run(partial, pay) and placement.can_run(partial, pack)
    assert not placement.can_run(packer, pay) and placement.can_run(packer, pack)
    assert not placement.can_run(packer, ("shipping", "wf"))
    assert placement.capable_of(("payment", "wf")) == {"any"}
    assert placement.capable_of(("packing", "wf")) == {"any", "partial", "packer"}


def test_who_can_run_a_step_is_asked_again_once_the_ring_changes():
    placement, workers, _ = world(steps={"payment": StepPolicy(tags=frozenset({"pay"}))})
    assert placement.capable_of(("payment", "wf")) == frozenset()
    joined(placement, workers, "p1", tags={"pay"})
    assert placement.capable_of(("payment", "wf")) == {"p1"}
    joined(placement, workers, "w1")
    assert placement.capable_of(("payment", "wf")) == {"p1"}
    placement.leave("p1")
    assert placement.capable_of(("payment", "wf")) == frozenset()
    assert placement.capable_of(("packing", "wf")) == {"w1"}


def test_a_home_is_among_the_workers_that_can_run_the_step_or_none_while_none_can():
    placement, workers, _ = world(steps={"payment": StepPolicy(tags=frozenset({"pay"}))})
    assert placement.home("o1", ("packing", "wf"), held=0) == ""  # an empty ring
    joined(placement, workers, "w1")
    assert placement.home("o1", ("payment", "wf"), held=0) == ""  # nobody offers "pay"
    assert placement.home("o1", ("packing", "wf"), held=0) == "w1"
    joined(placement, workers, "p1", tags={"pay"})
    joined(placement, workers, "w2")
    homes = {placement.home(f"o{i}", ("payment", "wf"), held=0) for i in range(50)}
    assert homes == {"p1"}
    packing_homes = {placement.home(f"o{i}", ("packing", "wf"), held=0) for i in range(50)}
    assert packing_homes == {"w1", "w2", "p1"}


def test_a_workers_load_is_what_it_holds_and_what_waits_for_it():
    placement, workers, queue = world()
    w1 = joined(placement, workers, "w1")
    w1.tasks.update({"o1:payment", "o2:payment"})
    queue.push("o3:payment", ("payment", "wf"), "w1", False, 0, 3, 0)
    assert placement.load_of("w1") == 3
    joined(placement, workers, "w2")
    assert placement.load_of("w2") == 0


def test_the_bound_on_load_moves_a_home_off_a_full_worker_by_the_total_held():
    placement, workers, _ = world(load_epsilon=0.25)
    w1 = joined(placement, workers, "w1")
    w2 = joined(placement, workers, "w2")
    pay = ("payment", "wf")
    first = next(f"o{i}" for i in range(100) if placement.home(f"o{i}", pay, 0) == "w1")
    w1.tasks.update(f"x{i}" for i in range(3))
    w2.tasks.update(f"y{i}" for i in range(7))
    # Ten held in all, three by w1: under its bound (ceil(1.25 * 11 / 2) = 7), it keeps it.
    assert placement.home(first, ("payment", "wf"), held=10) == "w1"
    w1.tasks.update(f"x{i}" for i in range(3, 10))
    w2.tasks.clear()
    # Ten held, all by w1: past its bound (7 again), the order goes to w2.
    assert placement.home(first, ("payment", "wf"), held=10) == "w2"


def test_a_dispatchs_can_run_answers_like_can_run_and_asks_once_per_lane():
    placement, workers, _ = world(steps={"payment": StepPolicy(tags=frozenset({"pay"}))})
    worker = joined(placement, workers, "w1", steps={"payment", "packing"})
    asked = []
    real = placement.can_run
    placement.can_run = lambda w, lane: asked.append(lane[0]) or real(w, lane)
    can_run = placement.can_run_cache(worker)
    steps = ("payment", "packing", "shipping", "payment", "packing")
    assert [can_run((s, "wf")) for s in steps] == [False, True, False, False, True]
    assert asked == ["payment", "packing", "shipping"]


def test_a_worker_runs_only_the_workflow_definitions_it_offers():
    placement, workers, _ = world()
    old = joined(placement, workers, "old", definitions={"checkout@v1"})
    new = joined(placement, workers, "new", definitions={"checkout@v2"})
    anything = joined(placement, workers, "any")  # offers no list: runs any definition
    assert placement.can_run(old, ("packing", "checkout@v1"))
    assert not placement.can_run(old, ("packing", "checkout@v2"))
    assert placement.can_run(new, ("packing", "checkout@v2"))
    assert placement.can_run(anything, ("packing", "checkout@v1"))
    assert placement.capable_of(("packing", "checkout@v1")) == {"old", "any"}
    assert placement.offered("checkout@v1") and placement.offered("checkout@v3")
    placement.leave("any")
    assert placement.offered("checkout@v1") and not placement.offered("checkout@v3")
    assert placement.capable_of(("packing", "checkout@v1")) == {"old"}


def test_what_a_worker_can_run_is_remembered_while_its_record_stands():
    placement, workers, _ = world()
    worker = joined(placement, workers, "w1", steps={"payment"})
    asked = []
    real = placement.can_run
    placement.can_run = lambda w, lane: asked.append(lane[0]) or real(w, lane)
    assert placement.can_run_cache(worker)(("payment", "wf")) is True
    assert placement.can_run_cache(worker)(("payment", "wf")) is True  # another dispatch
    assert asked == ["payment"]
    # Another record under the same id (it joined again with other handlers): asked anew,
    # whether or not its leaving was seen.
    again = joined(placement, workers, "w1", steps={"packing"})
    assert placement.can_run_cache(again)(("payment", "wf")) is False
    placement.leave("w1")
    third = joined(placement, workers, "w1", steps={"payment"})
    assert placement.can_run_cache(third)(("payment", "wf")) is True
    assert asked == ["payment", "payment", "payment"]
    # A worker gone is not remembered.
    placement.leave("w1")
    assert "w1" not in placement._can_run_of
