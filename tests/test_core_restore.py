"""The core continues from records: what a journal kept comes back through `restore()` and
the transition table, with wall-clock times converted in one place."""

from __future__ import annotations

import random

import pytest
from sim import ORDER, Sim

from scheduler.engine.config import ClusterConfig, RetryPolicy
from scheduler.engine.core import SchedulerCore
from scheduler.engine.errors import Conflict
from scheduler.engine.records import ResumePoint
from scheduler.engine.states import TaskState

S = TaskState
OFFSET = 1_700_000_000.0  # wall clock = core clock + OFFSET


def fresh_core(**settings) -> SchedulerCore:
    settings.setdefault("seed", 7)
    return SchedulerCore(ClusterConfig(workers=0, **settings), epoch_offset=OFFSET)


def records_of(core: SchedulerCore):
    return [core.order_record(o, with_events=True) for o in core.orders.values()]


def point_of(core: SchedulerCore) -> ResumePoint:
    return ResumePoint(
        seq=core.seq,
        order_number=core.order_number,
        lease_counter=core.lease_counter,
        counters=dict(core.counters),
        orders_by_status=dict(core.orders_by_status),
        tasks_by_state=dict(core.tasks_by_state),
    )


def test_records_are_stamped_in_wall_time_including_retry_at():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=3, backoff_base=2.0, backoff_cap=2.0))
    sim.core.epoch_offset = OFFSET
    sim.submit("o1")
    sim.now = 5.0
    d, _ = sim.start_next("w1")
    sim.fail(d)
    task = sim.task("o1", "payment")
    record = sim.core.task_record(task)
    assert task.state is S.RETRY_WAIT and task.due is not None
    assert record.retry_at == pytest.approx(OFFSET + task.due)
    order = sim.core.order_record(sim.core.orders["o1"])
    assert order.submitted_at == pytest.approx(OFFSET)
    assert order.view()["tasks"]["payment"]["retry_at"] == pytest.approx(OFFSET + task.due)


def test_a_restored_running_step_comes_back_ready_through_the_transition_table():
    sim = Sim(workers=1)
    sim.core.epoch_offset = OFFSET
    sim.submit("o1")
    sim.start_next("w1")  # payment running on w1 when the "server stops"
    core = fresh_core()
    fx = core.restore(point_of(sim.core), records_of(sim.core), now=100.0)
    payment = core.tasks["o1:payment"]
    assert payment.state is S.READY and payment.history[-1] is S.RUNNING
    assert (payment, S.RUNNING, S.READY) in fx.moves
    assert payment.attempt == 1 and payment.attempt_open  # the same attempt runs again
    [recovered] = [e for e in fx.events if e["type"] == "task_recovered"]
    assert "running on w1" in recovered["message"]
    core.add_worker("w9", now=100.0)
    core.validate()
    assert core.tasks["o1:payment"].worker == "w9"


def test_a_step_waiting_out_a_retry_keeps_its_backoff_across_a_restart():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=3, backoff_base=8.0, backoff_cap=8.0))
    sim.core.rng = random.Random(1)
    sim.core.epoch_offset = OFFSET
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.fail(d)
    due_wall = sim.core.task_record(sim.task("o1", "payment")).retry_at
    # The new process's clock starts elsewhere; only wall time is shared.
    core = SchedulerCore(ClusterConfig(workers=0, seed=7), epoch_offset=OFFSET - 50.0)
    restart = 50.0  # core time; wall = OFFSET, the moment the attempt failed
    core.restore(point_of(sim.core), records_of(sim.core), now=restart)
    core.add_worker("w9", now=restart)
    task = core.tasks["o1:payment"]
    assert task.state is S.RETRY_WAIT
    due_here = due_wall - core.epoch_offset
    assert due_here > restart
    core.tick(now=due_here - 0.01)
    assert task.state is S.RETRY_WAIT
    core.heartbeat("w9", due_here)
    core.tick(now=due_here)
    assert task.state is S.ASSIGNED
    core.validate()


def test_restored_counts_match_the_tasks_and_orders_that_came_back():
    sim = Sim(workers=2)
    for i in range(6):
        sim.submit(f"o{i}")
    sim.run_all()
    sim.submit("live1")
    sim.submit("live2")
    sim.start_next("w1")
    core = fresh_core()
    fx = core.restore(point_of(sim.core), records_of(sim.core), now=1.0)
    core.validate()  # counts are checked against the records while nothing is forgotten
    assert core.orders_by_status["completed"] == 6
    assert core.active_orders == 2
    # Numbering continues: the restart's own events follow the last one kept.
    assert [e["seq"] for e in fx.events] == list(range(sim.core.seq + 1, core.seq + 1))
    assert core.order_number == 8


def test_restore_refuses_a_core_that_has_already_run():
    sim = Sim(workers=1)
    sim.submit("o1")
    with pytest.raises(Conflict):
        sim.core.restore(point_of(sim.core), records_of(sim.core), now=1.0)


def test_only_a_finished_order_can_be_adopted_back_into_memory():
    sim = Sim(workers=1)
    sim.submit("o1")
    record = sim.core.order_record(sim.core.orders["o1"])
    core = fresh_core()
    with pytest.raises(Conflict):
        core.adopt(record)


def test_idempotency_keys_come_back_with_their_orders():
    sim = Sim(workers=1)
    sim.apply(sim.core.submit("o1", dict(ORDER), now=0.0, idempotency_key="K"))
    core = fresh_core()
    core.restore(point_of(sim.core), records_of(sim.core), now=1.0)
    with pytest.raises(Conflict, match="o1"):
        core.submit("o2", dict(ORDER), now=1.0, idempotency_key="K")
