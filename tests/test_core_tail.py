"""Issue 21, item 3, through the pure core on a fake clock: the tail (first steps first once
few orders wait to start) and speed-aware placement (a slow worker's slot left idle when a
faster worker will end the task sooner)."""

from __future__ import annotations

from sim import Sim

from scheduler.engine import views
from scheduler.engine.states import TaskState as S
from scheduler.engine.workflow import Workflow

ONE_STEP = {"one": Workflow.define("one", [("payment", ())])}


def next_for_the_freed_slot(tail_share: float, orders: int) -> str:
    """One worker of 2 slots (the tail begins at 2 x tail_share orders waiting to start):
    o1 and o2 start, o1's payment succeeds; what does its slot take next?"""
    sim = Sim(workers=1, slots=2, prefetch=0, tail_share=tail_share)
    for i in range(1, orders + 1):
        sim.submit(f"o{i}")
    first, _ = sim.start_next("w1")
    sim.start_next("w1")
    assert first.task_id == "o1:payment"
    sim.succeed(first)
    dispatch = sim.queues["w1"][-1]
    return dispatch.task_id


def test_in_the_tail_a_freed_slot_takes_a_new_orders_payment_before_a_started_packing():
    # o3 and o4 wait to start: no more than the 2 slots.
    assert next_for_the_freed_slot(tail_share=1.0, orders=4) == "o3:payment"


def test_before_the_tail_a_freed_slot_finishes_the_started_order_first():
    assert next_for_the_freed_slot(tail_share=1.0, orders=5) == "o1:packing"  # 3 wait
    assert next_for_the_freed_slot(tail_share=0.0, orders=4) == "o1:packing"  # no tail


def test_the_tail_follows_the_slots_that_join_and_leave():
    sim = Sim(workers=1, slots=2, prefetch=0)
    assert sim.core.queue.tail_at == 2.0
    sim.add_worker("w2", slots=6)
    assert sim.core.queue.tail_at == 8.0
    sim.apply(sim.core.drain_worker("w2", now=sim.now))
    assert sim.core.queue.tail_at == 2.0


# --------------------------------------------------------------------------- speed


def measured_cluster(**settings) -> Sim:
    """w1 and w2, one slot each and no prefetch; w1 has taken 10 s for a payment that
    took w2 1 s: w1 is slow."""
    sim = Sim(workers=2, slots=1, prefetch=0, workflows=ONE_STEP, **settings)
    sim.submit("m1", "one")
    sim.submit("m2", "one")
    slow, _ = sim.start_next("w1")
    fast, _ = sim.start_next("w2")
    sim.now = 1.0
    sim.succeed(fast)
    sim.now = 10.0
    sim.succeed(slow)
    assert views.active_orders(sim.core) == 0
    return sim


def test_a_slow_worker_leaves_the_last_task_to_a_faster_worker_that_frees_up_sooner():
    sim = measured_cluster()
    sim.submit("busy", "one")  # the fast worker takes it
    busy, _ = sim.start_next("w2")
    assert busy.task_id == "busy:payment"
    sim.submit("last", "one")  # w1 is free, but w2 will end it sooner
    last = sim.task("last", "payment")
    assert last.state is S.READY and not sim.queues["w1"]
    sim.now += 1.0
    sim.succeed(busy)
    assert last.state is S.ASSIGNED and last.worker == "w2"


def test_workers_of_alike_speed_take_the_last_task_at_once():
    sim = measured_cluster(slow_factor=20.0)  # 10 x slower is alike here
    sim.submit("busy", "one")
    sim.start_next("w2")
    sim.submit("last", "one")
    assert sim.task("last", "payment").worker == "w1"


def test_a_slow_worker_takes_work_while_more_waits_than_the_fast_ones_end_sooner():
    sim = measured_cluster()
    sim.submit("busy", "one")
    sim.start_next("w2")
    for i in range(8):  # 8 waiting: the fast worker would need about 8 s for them
        sim.submit(f"o{i}", "one")
    taken = [d.task_id for d in sim.queues["w1"]]
    assert taken == ["o0:payment"]


def test_a_slow_worker_takes_the_task_once_the_fast_one_drains():
    sim = measured_cluster()
    sim.submit("busy", "one")
    sim.start_next("w2")
    sim.submit("last", "one")
    assert sim.task("last", "payment").state is S.READY
    sim.apply(sim.core.drain_worker("w2", now=sim.now))
    assert sim.task("last", "payment").worker == "w1"


def test_a_slow_worker_that_idled_does_not_stop_a_faster_one_from_stealing():
    # The waiting order's home is the slow w1, asked first (its name sorts first): it leaves
    # the task, and w2, with nothing at home, steals it when its slot frees.
    sim = measured_cluster()
    sim.submit("busy", "one")
    busy, _ = sim.start_next("w2")
    ring = sim.core._placement.ring
    oid = next(f"o{i}" for i in range(100) if next(ring.preference(f"o{i}")) == "w1")
    sim.submit(oid, "one")
    assert sim.core.queue.home_load("w1") == 1 and sim.task(oid, "payment").state is S.READY
    sim.now += 1.0
    sim.succeed(busy)
    assert sim.task(oid, "payment").worker == "w2"


def test_a_slow_worker_recovers_its_share_once_its_speed_is_forgotten():
    sim = measured_cluster(speed_memory=30.0)
    sim.submit("busy", "one")
    sim.start_next("w2")
    sim.now += 31.0  # w1's last step ended 31 s ago: its speed no longer counts
    sim.submit("last", "one")
    assert sim.task("last", "payment").worker == "w1"
