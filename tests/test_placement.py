"""Where work goes (engine/placement.py): who can run a step, and a ready task's home."""

from __future__ import annotations

from scheduler.engine.config import ClusterConfig, StepPolicy
from scheduler.engine.definitions import Definitions
from scheduler.engine.dispatch import ReadyQueues
from scheduler.engine.model import WorkerRecord
from scheduler.engine.placement import Placement
from scheduler.engine.ring import HashRing


def world(workflows=None, **settings):
    config = ClusterConfig(workers=0, **settings)
    workers: dict[str, WorkerRecord] = {}
    queue = ReadyQueues()
    placement = Placement(HashRing(config.vnodes), workers, queue, config,
                          Definitions(workflows or {}))
    return placement, workers, queue


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


# --------------------------------------------------------------------------- tail and speed


def test_the_tail_begins_at_the_slots_on_the_ring_times_tail_share():
    placement, workers, queue = world(tail_share=0.5)
    joined(placement, workers, "w1", slots=8)
    joined(placement, workers, "w2", slots=4)
    assert queue.tail_at == 6.0
    placement.leave("w1")
    assert queue.tail_at == 2.0
    placement.leave("w1")  # twice: counted once
    assert queue.tail_at == 2.0


def measured(placement, speeds_by_worker: dict[str, float], now: float = 0.0) -> None:
    """Give each worker a factor: the step's average is set by a first measurement of 1."""
    placement.speeds.observed("ref", "payment", 1.0, now)
    placement.speeds.forget("ref")
    for _ in range(60):  # long enough for the moving averages to settle
        for worker, took in speeds_by_worker.items():
            placement.speeds.observed(worker, "payment", took, now)


def slow_world(**settings):
    from scheduler.engine.workflow import DEFAULT_WORKFLOWS
    placement, workers, queue = world(DEFAULT_WORKFLOWS, **settings)
    slow = joined(placement, workers, "slow", slots=4)
    joined(placement, workers, "fast", slots=4)
    measured(placement, {"slow": 10.0, "fast": 1.0})
    return placement, workers, slow


def test_a_slow_worker_leaves_a_lane_to_faster_workers_that_would_end_its_work_sooner():
    placement, workers, slow = slow_world()
    assert placement.speeds.is_slow("slow", 0.0)
    lane = ("shipping", "ecommerce")  # a last step: nothing follows it
    mine = placement.speeds.long_factor("slow", 0.0)
    theirs = placement.speeds.factor("fast", 0.0)
    # The fast worker's 4 slots end 4 / theirs tasks per step-average: it would end n
    # waiting tasks at n / (4 / theirs) + theirs, against `mine` here.
    enough = int((mine - theirs) * 4 / theirs) + 1
    runs = placement.unless_faster(slow, lambda lane: True, enough - 1, now=0.0)
    assert not runs(lane) and placement.idled == {"slow"}
    placement.idled.clear()
    runs = placement.unless_faster(slow, lambda lane: True, enough, now=0.0)
    assert runs(lane) and placement.idled == set()


def test_the_steps_after_a_lane_count_against_the_slow_worker():
    placement, _, slow = slow_world()
    mine = placement.speeds.long_factor("slow", 0.0)
    theirs = placement.speeds.factor("fast", 0.0)
    ahead = int((mine - theirs) * 4 / theirs) + 1  # enough for a last step
    runs = placement.unless_faster(slow, lambda lane: True, ahead, now=0.0)
    assert runs(("shipping", "ecommerce"))
    assert not runs(("payment", "ecommerce"))  # two steps follow it, on top
    assert runs(("payment", "ecommerce")) is False  # the same answer asked again
    ahead = int((mine + theirs) * 4 / theirs) + 1  # mine + 2 * theirs > ahead / 4 * theirs + theirs
    assert placement.unless_faster(slow, lambda lane: True, ahead, 0.0)(("payment", "ecommerce"))


def test_a_slow_worker_takes_what_no_faster_worker_can_run_or_has_a_free_slot_for():
    placement, workers, slow = slow_world(steps={"payment": StepPolicy(tags=frozenset({"pay"}))})
    pay, ship = ("payment", "ecommerce"), ("shipping", "ecommerce")
    slow.tags = frozenset({"pay"})
    placement.leave("slow")
    placement.join("slow", weight=0.5)  # its tags count from its next join
    measured(placement, {"slow": 10.0, "fast": 1.0})
    runs = placement.unless_faster(slow, lambda lane: True, 0, now=0.0)
    assert runs(pay)  # only it offers the tag
    assert not runs(ship)
    workers["fast"].stuck = {(f"t{i}", i) for i in range(4)}  # every fast slot hung
    assert placement.unless_faster(slow, lambda lane: True, 0, now=0.0)(ship)
    assert not placement.unless_faster(slow, lambda lane: False, 0, now=0.0)(ship)


def test_a_worker_only_somewhat_slower_is_no_faster_worker_to_leave_work_to():
    placement, workers, slow = slow_world(slow_factor=20.0)
    assert not placement.speeds.is_slow("slow", 0.0)
    assert placement.unless_faster(slow, lambda lane: True, 0, now=0.0)(("shipping", "ecommerce"))


def test_a_slow_worker_whose_steps_vary_counts_its_long_duration():
    placement, workers, slow = slow_world()
    steady = placement.speeds.long_factor("slow", 0.0)
    ahead = int((steady - placement.speeds.factor("fast", 0.0)) * 4
                / placement.speeds.factor("fast", 0.0)) + 1
    lane = ("shipping", "ecommerce")
    assert placement.unless_faster(slow, lambda lane: True, ahead, 0.0)(lane)
    for took in (5.0, 15.0) * 10:  # as slow on average, but half its steps last 15
        placement.speeds.observed("slow", "payment", took, 0.0)
    assert placement.speeds.long_factor("slow", 0.0) > steady
    assert not placement.unless_faster(slow, lambda lane: True, ahead, 0.0)(lane)


def test_a_worker_that_leaves_the_ring_leaves_its_speed_behind():
    placement, workers, slow = slow_world()
    assert placement.speeds.factor("slow", 0.0) > 1.5
    placement.leave("slow")
    assert placement.speeds.factor("slow", 0.0) == 1.0


def two_fast(a_slots: int, a_took: float):
    from scheduler.engine.workflow import DEFAULT_WORKFLOWS
    placement, workers, _ = world(DEFAULT_WORKFLOWS)
    slow = joined(placement, workers, "slow", slots=4)
    joined(placement, workers, "a", slots=a_slots)
    joined(placement, workers, "b", slots=4)
    measured(placement, {"slow": 10.0, "a": a_took, "b": 1.0})
    return placement, workers, slow


def test_every_faster_workers_slots_count_in_how_soon_the_work_ahead_ends():
    placement, workers, slow = two_fast(a_slots=4, a_took=1.0)
    speeds = placement.speeds
    mine, theirs = speeds.long_factor("slow", 0.0), speeds.factor("b", 0.0)
    rate = 4 / speeds.factor("a", 0.0) + 4 / theirs  # both fast workers' slots
    lane = ("shipping", "ecommerce")
    ahead = int((mine - theirs) * rate) + 1  # enough for both together, not for one alone
    assert ahead / (4 / theirs) > mine  # one alone would end later than the slow worker
    assert placement.unless_faster(slow, lambda lane: True, ahead, 0.0)(lane)
    assert not placement.unless_faster(slow, lambda lane: True, ahead - 2, 0.0)(lane)


def test_a_faster_worker_with_every_slot_hung_sets_no_pace():
    # "a" is the fastest, but all its slots are stuck: "b" alone sets how soon work ends.
    import math
    placement, workers, slow = two_fast(a_slots=4, a_took=0.1)
    workers["a"].stuck = {(f"t{i}", i) for i in range(4)}
    speeds = placement.speeds
    mine, theirs = speeds.long_factor("slow", 0.0), speeds.factor("b", 0.0)
    rate = 4 / theirs
    lane = ("shipping", "ecommerce")
    ahead = math.ceil((mine - theirs) * rate)  # b ends it no sooner than the slow worker
    assert ahead / rate + speeds.factor("a", 0.0) < mine  # at a's pace it would
    assert placement.unless_faster(slow, lambda lane: True, ahead, 0.0)(lane)
    assert not placement.unless_faster(slow, lambda lane: True, ahead - 1, 0.0)(lane)


def test_a_worker_as_slow_does_not_hide_a_faster_one_behind_it():
    from scheduler.engine.workflow import DEFAULT_WORKFLOWS
    placement, workers, _ = world(DEFAULT_WORKFLOWS)
    slow = joined(placement, workers, "a-slow", slots=4)
    joined(placement, workers, "b-slow", slots=4)
    joined(placement, workers, "fast", slots=4)
    measured(placement, {"a-slow": 10.0, "b-slow": 10.0, "fast": 1.0})
    assert not placement.unless_faster(slow, lambda lane: True, 0, 0.0)(("shipping", "ecommerce"))
