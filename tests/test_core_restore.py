"""The core continues from records: what a journal kept comes back through `restore()` and
the transition table, with wall-clock times converted in one place."""

from __future__ import annotations

import random

import pytest
from sim import ORDER, Sim

from scheduler.engine import views
from scheduler.engine.config import ClusterConfig, RetryPolicy
from scheduler.engine.core import SchedulerCore
from scheduler.engine.errors import Conflict, UnknownWorkflow
from scheduler.engine.records import OrderRecord, ResumePoint, TaskRecord, new_task_record
from scheduler.engine.states import TaskState

S = TaskState
OFFSET = 1_700_000_000.0  # wall clock = core clock + OFFSET


def fresh_core(**settings) -> SchedulerCore:
    settings.setdefault("seed", 7)
    return SchedulerCore(ClusterConfig(workers=0, **settings), epoch_offset=OFFSET)


def records_of(core: SchedulerCore):
    return [core.order_record(o, with_events=True) for o in views.orders(core).values()]


def point_of(core: SchedulerCore) -> ResumePoint:
    return ResumePoint(
        seq=views.last_seq(core),
        order_number=views.order_number(core),
        lease_counter=views.lease_counter(core),
        counters=dict(views.counters(core)),
        orders_by_status=dict(views.orders_by_status(core)),
        tasks_by_state=dict(views.tasks_by_state(core)),
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
    order = sim.core.order_record(views.orders(sim.core)["o1"])
    assert order.submitted_at == pytest.approx(OFFSET)
    assert order.view()["tasks"]["payment"]["retry_at"] == pytest.approx(OFFSET + task.due)


def test_a_restored_running_step_comes_back_ready_through_the_transition_table():
    sim = Sim(workers=1)
    sim.core.epoch_offset = OFFSET
    sim.submit("o1")
    sim.start_next("w1")  # payment running on w1 when the "server stops"
    core = fresh_core()
    fx = core.restore(point_of(sim.core), records_of(sim.core), now=100.0)
    payment = views.tasks(core)["o1:payment"]
    assert payment.state is S.READY and payment.history[-1] is S.RUNNING
    assert (payment, S.RUNNING, S.READY) in fx.moves
    assert payment.attempt == 1 and payment.attempt_open  # the same attempt runs again
    [recovered] = [e for e in fx.events if e["type"] == "task_recovered"]
    assert "running on w1" in recovered["message"]
    core.add_worker("w9", now=100.0)
    core.validate()
    assert views.tasks(core)["o1:payment"].worker == "w9"


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
    task = views.tasks(core)["o1:payment"]
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
    assert views.orders_by_status(core)["completed"] == 6
    assert views.active_orders(core) == 2
    # Numbering continues: the restart's own events follow the last one kept.
    assert [e["seq"] for e in fx.events] == list(
        range(views.last_seq(sim.core) + 1, views.last_seq(core) + 1))
    assert views.order_number(core) == 8


def test_restore_refuses_a_core_that_has_already_run():
    sim = Sim(workers=1)
    sim.submit("o1")
    with pytest.raises(Conflict):
        sim.core.restore(point_of(sim.core), records_of(sim.core), now=1.0)


def test_only_a_finished_order_can_be_adopted_back_into_memory():
    sim = Sim(workers=1)
    sim.submit("o1")
    record = sim.core.order_record(views.orders(sim.core)["o1"])
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


# --------------------------------------------------------------------------- edge cases


def restored(records, point: ResumePoint | None = None, now: float = 10.0, **settings):
    """A fresh core restored from `records`, with the effects of the restore."""
    core = fresh_core(**settings)
    fx = core.restore(point or ResumePoint(), records, now=now)
    return core, fx


def hand_record(oid: str = "o1", number: int = 1, status: str = "in_progress",
                tasks: tuple = (), **fields) -> OrderRecord:
    values = dict(id=oid, number=number, workflow="ecommerce", data=dict(ORDER),
                  idempotency_key=None, submitted_at=OFFSET + 1.0, finished_at=None,
                  status=status, tasks=tasks)
    values.update(fields)
    return OrderRecord(**values)


def row(oid: str, step: str, state: str, **fields) -> TaskRecord:
    return new_task_record(oid, step)._replace(state=state, **fields)


def recovered(fx) -> dict[str, str]:
    return {e["step"]: e["message"] for e in fx.events if e["type"] == "task_recovered"}


def test_steps_whose_rows_were_never_written_come_back_pending_under_their_own_ids():
    record = hand_record(tasks=(row("o1", "payment", "running", attempt=1, attempt_open=True,
                                    runs=1, worker="w1"),))
    core, _ = restored([record])
    assert [t.id for t in views.orders(core)["o1"].tasks.values()] == [
        "o1:payment", "o1:packing", "o1:shipping"]
    packing = views.tasks(core)["o1:packing"]
    assert (packing.order_id, packing.step, packing.state) == ("o1", "packing", S.PENDING)
    assert packing.waiting_on == {"payment"}
    assert core.task_record(packing) == new_task_record("o1", "packing")
    core.validate()


def test_an_order_comes_back_with_its_data_key_priority_and_submission_time():
    sim = Sim(workers=1)
    sim.core.epoch_offset = OFFSET
    sim.now = 3.0
    sim.apply(sim.core.submit("o1", dict(ORDER), now=sim.now, idempotency_key="K", priority=5))
    before = sim.core.order_record(views.orders(sim.core)["o1"])
    core, _ = restored(records_of(sim.core), point_of(sim.core))
    order = views.orders(core)["o1"]
    assert (order.id, order.number, order.data, order.idempotency_key, order.priority) == (
        "o1", 1, ORDER, "K", 5)
    assert order.submitted_at == 3.0  # the core clock of the same epoch offset
    after = core.order_record(order)
    assert (after.submitted_at, after.priority, after.idempotency_key) == (
        before.submitted_at, 5, "K")


def test_a_restored_order_that_had_started_goes_before_new_orders():
    sim = Sim(workers=1)
    sim.core.epoch_offset = OFFSET
    sim.submit("started")
    sim.start_next("w1")  # payment runs: the order has started, nothing has succeeded yet
    sim.submit("unstarted")
    core, _ = restored(records_of(sim.core), point_of(sim.core))
    assert views.orders(core)["started"].started is True
    assert views.orders(core)["unstarted"].started is False
    core.add_worker("w9", now=10.0, slots=1)
    assert views.tasks(core)["started:payment"].state is S.ASSIGNED


def test_an_order_with_a_succeeded_step_counts_as_started_even_without_recorded_runs():
    record = hand_record(tasks=(row("o1", "payment", "succeeded", attempt=1),))
    core, _ = restored([record])
    assert views.orders(core)["o1"].started is True
    assert views.tasks(core)["o1:packing"].state is S.READY


def test_a_pending_step_whose_dependencies_finished_is_queued_again_after_a_restart():
    # Its dependency's success was written, its own move to ready was not due yet.
    record = hand_record(tasks=(row("o1", "payment", "succeeded", attempt=1, runs=1,
                                    attempt_open=True, result={"ok": 1}),
                                row("o1", "packing", "pending")))
    core, fx = restored([record])
    packing = views.tasks(core)["o1:packing"]
    assert packing.state is S.READY and not packing.waiting_on
    assert (packing, S.PENDING, S.READY) in fx.moves
    assert recovered(fx) == {
        "packing": "order o1 step packing attempt 1 queued again after a restart"}
    assert views.tasks(core)["o1:shipping"].state is S.PENDING
    assert views.tasks(core)["o1:payment"].result == {"ok": 1}
    core.add_worker("w1", now=10.0)
    assert packing.state is S.ASSIGNED
    core.validate()


def test_a_queued_step_that_was_not_running_is_queued_again_without_naming_a_worker():
    sim = Sim(workers=0)
    sim.core.epoch_offset = OFFSET
    sim.submit("o1")  # payment ready, no worker to take it
    core, fx = restored(records_of(sim.core), point_of(sim.core))
    [event] = [e for e in fx.events if e["type"] == "task_recovered"]
    assert event["message"] == "order o1 step payment attempt 1 queued again after a restart"
    assert (event["order_id"], event["step"], event["attempt"]) == ("o1", "payment", 0)


def test_a_retry_wait_without_a_recorded_time_retries_at_once_after_a_restart():
    record = hand_record(tasks=(row("o1", "payment", "retry_wait", attempt=1, runs=1,
                                    error="boom"),))
    core, fx = restored([record], now=10.0)
    payment = views.tasks(core)["o1:payment"]
    assert payment.state is S.RETRY_WAIT and payment.due == 10.0
    [event] = [e for e in fx.events if e["type"] == "task_recovered"]
    assert event["message"] == (
        "order o1 step payment will retry as attempt 2 in 0.000s, after a restart")
    assert (event["order_id"], event["step"]) == ("o1", "payment")
    assert fx.wake_at == 10.0
    core.add_worker("w1", now=10.0)
    core.tick(now=10.0)
    assert payment.state is S.ASSIGNED and payment.error == "boom"
    core.validate()


def test_a_retry_wait_keeps_its_recorded_time_and_says_how_long_is_left():
    record = hand_record(tasks=(row("o1", "payment", "retry_wait", attempt=2, runs=2,
                                    retry_at=OFFSET + 13.25),))
    core, fx = restored([record], now=10.0)
    payment = views.tasks(core)["o1:payment"]
    assert payment.due == 13.25
    assert core.task_record(payment).retry_at == OFFSET + 13.25
    assert recovered(fx) == {
        "payment": "order o1 step payment will retry as attempt 3 in 3.250s, after a restart"}
    assert fx.wake_at == 13.25


def test_a_retry_already_due_at_the_restart_says_it_waits_no_time():
    record = hand_record(tasks=(row("o1", "payment", "retry_wait", attempt=1, runs=1,
                                    retry_at=OFFSET + 9.5),))
    _, fx = restored([record], now=10.0)
    assert recovered(fx)["payment"].endswith("in 0.000s, after a restart")


def half_done(oid: str = "o1", number: int = 1) -> OrderRecord:
    """An order whose payment succeeded and whose packing was running."""
    return hand_record(oid, number, tasks=(
        row(oid, "payment", "succeeded", attempt=1, runs=1, attempt_open=True),
        row(oid, "packing", "running", attempt=1, runs=1, attempt_open=True, worker="w1")))


def test_restore_starts_from_zero_where_the_resume_point_has_no_count():
    core, _ = restored([half_done()], ResumePoint())
    for status in ("completed", "failed", "cancelled"):
        assert views.orders_by_status(core)[status] == 0
    assert views.orders_by_status(core)["in_progress"] == 1
    # The succeeded payment is in the finished totals of the point (none here).
    assert views.tasks_by_state(core) == {**{s.value: 0 for s in S}, "ready": 1, "pending": 1}


def test_restored_unfinished_orders_are_each_counted_by_status():
    records = [half_done(f"o{i}", i) for i in range(1, 4)]
    core, _ = restored(records, ResumePoint(order_number=3, orders_by_status={"completed": 4}))
    assert views.orders_by_status(core)["in_progress"] == 3
    assert views.orders_by_status(core)["completed"] == 4
    assert views.active_orders(core) == 3


def test_an_order_whose_steps_all_succeeded_before_its_status_was_written_completes_on_restore():
    record = hand_record(tasks=tuple(row("o1", s, "succeeded", attempt=1, runs=1,
                                         attempt_open=True)
                                     for s in ("payment", "packing", "shipping")))
    core, fx = restored([record], now=12.0)
    order = views.orders(core)["o1"]
    assert order.reported_status == "completed" and order.finished_at == 12.0
    assert core.order_record(order).finished_at == OFFSET + 12.0
    assert [e["type"] for e in fx.events] == ["order_completed"]
    assert views.active_orders(core) == 0


def test_orders_of_an_unknown_workflow_are_left_out_of_a_restore():
    core, _ = restored([hand_record("old", 1, workflow="retired"), hand_record("o2", 2)])
    assert list(views.orders(core)) == ["o2"]
    assert views.active_orders(core) == 1


def test_restore_refuses_a_core_that_has_only_seen_a_worker_join():
    core = fresh_core()
    core.add_worker("w1", now=0.0)
    with pytest.raises(Conflict, match=r"^restore\(\) needs a core that has not run yet$"):
        core.restore(ResumePoint(), [], now=1.0)


def test_finished_orders_restored_beyond_the_memory_cap_are_forgotten_oldest_first():
    records = [hand_record(f"o{i}", i, status="completed", finished_at=OFFSET + i,
                           tasks=tuple(row(f"o{i}", s, "succeeded", attempt=1, runs=1)
                                       for s in ("payment", "packing", "shipping")))
               for i in range(1, 4)]
    core, _ = restored(records, finished_order_history=2)
    assert list(views.orders(core)) == ["o2", "o3"]
    assert "o1:payment" not in views.tasks(core)


# --------------------------------------------------------------------------- adopt


def finished_record(oid: str = "o1", number: int = 1, **fields) -> OrderRecord:
    values = dict(status="failed", finished_at=OFFSET + 7.5, idempotency_key="K1",
                  tasks=(row(oid, "payment", "failed", attempt=4, runs=4, error="declined"),
                         row(oid, "packing", "cancelled"), row(oid, "shipping", "cancelled")))
    values.update(fields)
    return hand_record(oid, number, **values)


def test_a_forgotten_failed_order_adopted_back_can_be_retried_by_hand():
    core = fresh_core()
    core.add_worker("w1", now=20.0)
    order = core.adopt(finished_record())
    assert views.orders(core)["o1"] is order
    assert (order.id, order.data, order.idempotency_key) == ("o1", ORDER, "K1")
    assert order.finished_at == 7.5
    assert core.order_record(order).finished_at == OFFSET + 7.5
    assert views.tasks(core)["o1:payment"].error == "declined"
    core.validate()
    core.retry_order("o1", now=21.0)
    assert views.tasks(core)["o1:payment"].state is S.ASSIGNED
    assert order.finished_at is None
    core.validate()


def test_adopting_an_order_already_in_memory_returns_it_unchanged():
    core = fresh_core()
    order = core.adopt(finished_record())
    order.priority = 9  # a sign that it is the very same object
    again = core.adopt(finished_record(data={"customer": "someone else"}))
    assert again is order and again.data == ORDER
    assert len(views.tasks(core)) == 3


def test_adopting_an_order_older_than_those_in_memory_marks_listings_unsorted():
    core, _ = restored([hand_record("o5", 5), hand_record("o6", 6)])
    assert views.adopted_out_of_order(core) is False
    core.adopt(finished_record("o7", 7))
    assert views.adopted_out_of_order(core) is False
    core.adopt(finished_record("o1", 1))
    assert views.adopted_out_of_order(core) is True


def test_an_unfinished_order_cannot_be_adopted_and_the_refusal_says_why():
    core = fresh_core()
    with pytest.raises(Conflict, match="^order o1 is in_progress; only finished orders return$"):
        core.adopt(hand_record())


def test_an_order_of_an_unknown_workflow_cannot_be_adopted():
    core = fresh_core()
    with pytest.raises(UnknownWorkflow, match="^order o1 uses unknown workflow 'retired'$"):
        core.adopt(finished_record(workflow="retired"))
    assert not views.orders(core)


def test_an_order_whose_first_step_was_running_stays_in_progress_across_a_restart():
    sim = Sim(workers=1)
    sim.core.epoch_offset = OFFSET
    sim.submit("o1")
    sim.start_next("w1")
    sim.advance(3.0, beating=())  # the worker dies: the live core keeps the order started
    assert views.orders(sim.core)["o1"].reported_status == "in_progress"
    core, _ = restored(records_of(sim.core), point_of(sim.core))
    assert views.orders(core)["o1"].reported_status == "in_progress"
