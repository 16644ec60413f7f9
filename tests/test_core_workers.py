"""Workers as the pure core sees them: joining, heartbeats, the monitor's judgement, leaving.

Driven with the fake-clock Sim: time is a parameter, no threads, no sleeps.
"""

from __future__ import annotations

import pytest
from sim import Sim

from scheduler.engine import views
from scheduler.engine.config import ConfigError, StepPolicy
from scheduler.engine.core import DEPARTED_WORKER_CAP
from scheduler.engine.errors import Conflict
from scheduler.engine.states import TaskState

S = TaskState


def test_a_worker_joins_with_its_kind_its_time_and_its_metadata():
    sim = Sim(workers=0)
    sim.apply(sim.core.add_worker("t1", now=1.5))
    sim.apply(sim.core.add_worker("p1", now=2.5, kind="process", meta={"pid": 42}))
    thread, process = views.workers(sim.core)["t1"], views.workers(sim.core)["p1"]
    assert (thread.kind, thread.joined_at, thread.last_heartbeat, thread.meta) == (
        "thread",
        1.5,
        1.5,
        {},
    )
    assert (process.kind, process.joined_at, process.meta) == ("process", 2.5, {"pid": 42})
    assert thread.meta is not process.meta


@pytest.mark.parametrize("leave", ["dead", "removed"])
def test_a_worker_that_left_may_join_again_under_its_name(leave):
    sim = Sim(workers=2)
    if leave == "dead":
        sim.advance(2.5, beating=("w2",))
    else:
        sim.apply(sim.core.drain_worker("w1", now=sim.now))
    assert views.workers(sim.core)["w1"].status == leave
    sim.add_worker("w1")
    assert views.workers(sim.core)["w1"].status == "alive" and "w1" in views.ring(sim.core)


def test_a_member_cannot_join_twice_even_while_draining():
    sim = Sim(workers=1)
    sim.submit("o1")
    sim.start_next("w1")
    sim.apply(sim.core.drain_worker("w1", now=0))
    assert views.workers(sim.core)["w1"].status == "draining"
    with pytest.raises(Conflict, match="already a member"):
        sim.core.add_worker("w1", now=0)


def test_a_draining_worker_keeps_beating_and_is_judged_by_its_heartbeats():
    sim = Sim(workers=2)
    sim.submit("o1")
    holder = sim.task("o1", "payment").worker
    other = next(w for w in sim.queues if w != holder)
    sim.start_next(holder)
    sim.apply(sim.core.drain_worker(holder, now=sim.now))
    assert sim.core.heartbeat(holder, sim.now) is True
    sim.advance(5.0)  # it keeps beating while it finishes: not dead
    assert views.workers(sim.core)[holder].status == "draining"
    sim.advance(2.5, beating=(other,))  # it falls silent: dead, and its step moves on
    assert views.workers(sim.core)[holder].status == "dead"
    assert sim.task("o1", "payment").worker == other


def test_a_heartbeat_that_arrives_late_does_not_turn_back_the_clock():
    sim = Sim(workers=1)
    sim.core.heartbeat("w1", 5.0)
    sim.core.heartbeat("w1", 3.0)  # delayed on the way
    assert views.workers(sim.core)["w1"].last_heartbeat == 5.0


def test_a_worker_is_suspect_only_after_more_than_two_intervals_of_silence():
    sim = Sim(workers=0, heartbeat_interval=0.5, heartbeat_timeout=2.0)
    sim.now = 10.0
    sim.add_worker("w1")
    worker = views.workers(sim.core)["w1"]
    assert views.worker_status(sim.core, worker, 11.0) == "alive"  # exactly two intervals
    assert views.worker_status(sim.core, worker, 11.01) == "suspect"
    sim.apply(sim.core.drain_worker("w1", now=11.5))
    assert views.worker_status(sim.core, worker, 20.0) == "removed"  # only the alive are suspected


@pytest.mark.parametrize(
    "gap,judged",
    [
        (1.0, True),  # half the timeout: the monitor ran often enough, silence counts
        (1.5, False),  # longer: the monitor itself stalled, everyone gets another interval
        (3.0, False),
    ],
)
def test_the_monitor_counts_a_pause_longer_than_half_the_timeout_as_its_own_stall(gap, judged):
    sim = Sim(workers=2, heartbeat_interval=0.5, heartbeat_timeout=2.0)
    sim.apply(sim.core.tick(now=0.0))
    for n in range(1, 4):
        sim.now = n * gap
        sim.core.heartbeat("w1", sim.now)  # w2 stays silent from 0
        sim.apply(sim.core.tick(now=sim.now))
    assert (views.workers(sim.core)["w2"].status == "dead") is judged


def test_departed_workers_are_kept_for_display_up_to_a_cap_oldest_forgotten_first():
    sim = Sim(workers=0)
    names = [f"x{i}" for i in range(DEPARTED_WORKER_CAP + 6)]
    for name in [*names, "keeper"]:
        sim.add_worker(name)
    sim.advance(2.5, beating=("keeper", *names[3:]))  # x0, x1, x2 die
    sim.add_worker("x1")  # and x1 comes back
    for name in names[3:]:
        sim.apply(sim.core.drain_worker(name, now=sim.now))  # the rest leave in order
    # Departed in the order of `names`; the six oldest go (x1 only its departed record).
    assert [n for n in names if n in views.workers(sim.core)] == ["x1", *names[6:]]
    assert views.workers(sim.core)["x1"].status == "alive" and "keeper" in views.workers(sim.core)


def test_validate_finds_a_task_its_worker_does_not_list():
    sim = Sim(workers=1)
    sim.submit("o1")
    sim.core.validate()
    views.workers(sim.core)["w1"].tasks.clear()
    with pytest.raises(AssertionError):
        sim.core.validate()


def test_validate_finds_a_worker_listing_a_task_held_by_another():
    sim = Sim(workers=2)
    sim.submit("o1")
    task = sim.task("o1", "payment")
    other = next(w for w in sim.queues if w != task.worker)
    views.workers(sim.core)[other].tasks.add(task.id)
    with pytest.raises(AssertionError):
        sim.core.validate()


@pytest.mark.parametrize("status", ["dead", "removed"])
def test_validate_finds_a_departed_worker_still_on_the_ring(status):
    sim = Sim(workers=1)
    views.workers(sim.core)["w1"].status = status
    with pytest.raises(AssertionError):
        sim.core.validate()


# Each corruption below keeps every other invariant true, so only the one named can catch it.


def test_validate_finds_a_task_its_worker_does_not_list_even_when_the_counts_agree():
    sim = Sim(workers=1)
    sim.submit("o1")
    views.workers(sim.core)["w1"].tasks.clear()
    sim.core._held -= 1
    with pytest.raises(AssertionError):
        sim.core.validate()


def test_validate_finds_a_worker_listing_another_workers_task_even_when_the_counts_agree():
    sim = Sim(workers=2)
    sim.submit("o1")
    task = sim.task("o1", "payment")
    other = next(w for w in sim.queues if w != task.worker)
    views.workers(sim.core)[other].tasks.add(task.id)
    sim.core._held += 1
    with pytest.raises(AssertionError):
        sim.core.validate()


@pytest.mark.parametrize("status", ["dead", "removed"])
def test_validate_finds_a_departed_worker_still_on_the_ring_though_nothing_else_is_wrong(status):
    sim = Sim(workers=1)
    views.workers(sim.core)["w1"].status = status
    sim.core._hungry.discard("w1")
    with pytest.raises(AssertionError):
        sim.core.validate()


def test_validate_finds_a_departed_worker_still_stuck_on_a_slot():
    sim = Sim(workers=1)
    worker = views.workers(sim.core)["w1"]
    sim.apply(sim.core.worker_lost("w1", now=0.0, reason="gone"))
    worker.stuck.add(("o1:payment", 1))
    with pytest.raises(AssertionError):
        sim.core.validate()


def test_validate_finds_a_worker_running_and_stuck_on_more_than_its_slots():
    sim = Sim(workers=1, slots=1, prefetch=1)
    sim.submit("o1")
    sim.start_next("w1")
    views.workers(sim.core)["w1"].stuck.add(("o0:payment", 1))
    sim.core._hungry.discard("w1")
    with pytest.raises(AssertionError):
        sim.core.validate()


def test_validate_finds_a_step_over_its_concurrency_limit():
    sim = Sim(workers=1, steps={"payment": StepPolicy(max_in_flight=1)})
    sim.submit("o1")
    sim.core.limits.started("payment", 0.0)
    with pytest.raises(AssertionError):
        sim.core.validate()


def test_a_worker_known_to_be_gone_is_declared_dead_at_once_and_its_tasks_move():
    sim = Sim(workers=2)
    sim.submit("o1")
    holder = sim.task("o1", "payment").worker
    sim.start_next(holder)
    fx = sim.apply(sim.core.worker_lost(holder, now=sim.now, reason="its connection closed"))
    dead = [e for e in fx.events if e["type"] == "worker_dead"]
    assert len(dead) == 1 and "its connection closed" in dead[0]["message"]
    assert views.workers(sim.core)[holder].status == "dead"
    task = sim.task("o1", "payment")
    assert task.worker != holder and task.reassignments == 1
    again = sim.apply(sim.core.worker_lost(holder, now=sim.now, reason="again"))
    assert not [e for e in again.events if e["type"] == "worker_dead"]  # dead only once


@pytest.mark.parametrize("slots", [0, 1.5, True, "2"])
def test_a_worker_with_a_bad_number_of_slots_is_refused_saying_why(slots):
    sim = Sim(workers=0)
    with pytest.raises(ConfigError, match=rf"^slots must be an integer >= 1, got {slots!r}$"):
        sim.core.add_worker("w1", now=0.0, slots=slots)
    assert "w1" not in views.workers(sim.core) and not views.ring(sim.core)


def test_a_worker_joins_the_ring_with_its_share_and_announces_its_slots_and_tags():
    sim = Sim(workers=0, slots=4)
    sim.add_worker("one", slots=1)
    sim.add_worker("four", tags={"payments", "eu"})
    assert views.ring(sim.core).members == {"one", "four"}
    shares = views.ring(sim.core).shares()
    assert 0.1 < shares["one"] < 0.3  # a quarter of the slots of the other
    one, four = sim.types(type="worker_added")
    assert one["message"] == "worker one (thread, 1 slot) joined"
    assert (one["worker_id"], one["slots"], one["tags"]) == ("one", 1, [])
    assert four["message"] == "worker four (thread, 4 slots, tags eu, payments) joined"
    assert (four["worker_id"], four["slots"], four["tags"]) == ("four", 4, ["eu", "payments"])
