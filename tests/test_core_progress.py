"""What an operator reads at a glance, counted by the core as tasks move: unfinished orders by
stage (queued, running, retrying), their steps by state, the rates, and moves (one count per
`task_reassigned`, with its cause). Also the audit trail (`operator_action`) and the restart
marker. Pure: the fake-clock Sim; `validate()` recounts everything after every stimulus."""

from __future__ import annotations

import pytest
from sim import ORDER, Sim
from test_core_restore import fresh_core, point_of, records_of

from scheduler.engine import views
from scheduler.engine.config import ClusterConfig, RetryPolicy
from scheduler.engine.core import SchedulerCore
from scheduler.engine.progress import RATE_WINDOW, RateMeter
from scheduler.engine.states import OrderStage, TaskState, derive_order_stage
from scheduler.engine.workflow import DEFAULT_WORKFLOWS, Workflow

S = TaskState


def stages(sim: Sim) -> dict[str, int]:
    return views.progress(sim.core).by_stage(views.orders_by_status(sim.core))


def only(sim: Sim, stage: str, count: int = 1) -> None:
    expected = {s.value: 0 for s in OrderStage}
    expected[stage] = count
    assert stages(sim) == expected


def test_an_order_is_queued_then_running_then_retrying_then_completed():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=1, backoff_base=1.0, backoff_cap=1.0))
    sim.submit("o1")
    # Its payment is handed to w1's queue (assigned), not started: still queued.
    assert sim.task("o1", "payment").state is S.ASSIGNED
    only(sim, "queued")
    d, _ = sim.start_next("w1")
    only(sim, "running")
    sim.fail(d)
    only(sim, "retrying")
    sim.advance(1.5)
    only(sim, "queued")
    sim.run_all()
    only(sim, "completed")


def test_an_order_with_one_branch_running_and_one_backing_off_is_running():
    sim = Sim(workers=2, retry=RetryPolicy(max_retries=2, backoff_base=5.0, backoff_cap=5.0))
    sim.submit("o1", workflow="ecommerce_invoiced")
    d, _ = sim.start_next(sim.task("o1", "payment").worker)
    sim.succeed(d)
    first, _ = sim.start_next(sim.task("o1", "packing").worker)
    other = "invoice" if first.task_id.endswith("packing") else "packing"
    second, _ = sim.start_next(sim.task("o1", other).worker)
    sim.fail(second)
    assert {t.state for t in views.orders(sim.core)["o1"].tasks.values()} == {
        S.SUCCEEDED, S.RUNNING, S.RETRY_WAIT, S.PENDING}
    only(sim, "running")
    sim.succeed(first)
    only(sim, "retrying")


def test_the_stage_rule_is_one_function_of_the_task_states():
    assert derive_order_stage([S.PENDING, S.READY]) is OrderStage.QUEUED
    assert derive_order_stage([S.SUCCEEDED, S.ASSIGNED, S.PENDING]) is OrderStage.QUEUED
    assert derive_order_stage([S.SUCCEEDED, S.RETRY_WAIT, S.RUNNING]) is OrderStage.RUNNING
    assert derive_order_stage([S.SUCCEEDED, S.RETRY_WAIT, S.PENDING]) is OrderStage.RETRYING
    assert derive_order_stage([S.SUCCEEDED] * 3) is OrderStage.COMPLETED
    assert derive_order_stage([S.SUCCEEDED, S.FAILED, S.CANCELLED]) is OrderStage.FAILED
    assert derive_order_stage([S.CANCELLED] * 3) is OrderStage.CANCELLED


def test_steps_of_unfinished_orders_are_counted_by_state_and_leave_when_orders_finish():
    sim = Sim(workers=1, slots=1, prefetch=0)
    for i in range(3):
        sim.submit(f"o{i}")
    steps = views.progress(sim.core).unfinished_steps()
    assert steps["payment"]["assigned"] == 1 and steps["payment"]["ready"] == 2
    assert steps["packing"]["pending"] == 3 and steps["shipping"]["pending"] == 3
    d, _ = sim.start_next("w1")
    sim.succeed(d)
    steps = views.progress(sim.core).unfinished_steps()
    # A started order's later steps go first: o0's packing took the slot.
    assert (steps["payment"]["succeeded"], steps["payment"]["ready"]) == (1, 2)
    assert (steps["packing"]["assigned"], steps["packing"]["pending"]) == (1, 2)
    sim.run_all()
    assert views.progress(sim.core).unfinished_steps() == {}
    assert views.progress(sim.core).stages == {"queued": 0, "running": 0, "retrying": 0,
                                               "waiting": 0}


def test_a_failed_order_leaves_the_counts_and_a_manual_retry_brings_it_back():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=0))
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.fail(d)
    only(sim, "failed")
    assert views.progress(sim.core).unfinished_steps() == {}
    sim.apply(sim.core.retry_order("o1", now=sim.now))
    assert stages(sim)["queued"] == 1
    assert views.progress(sim.core).unfinished_steps()["payment"]["assigned"] == 1
    sim.apply(sim.core.cancel_order("o1", now=sim.now))
    assert stages(sim)["queued"] == 0 and views.progress(sim.core).unfinished_steps() == {}


def test_a_restart_counts_the_recovered_orders_again():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=2, backoff_base=5.0, backoff_cap=5.0))
    sim.submit("o1")
    sim.submit("o2")
    d, _ = sim.start_next("w1")
    sim.fail(d)
    core = fresh_core()
    core.restore(point_of(sim.core), records_of(sim.core), now=sim.now)
    core.validate()
    assert views.progress(core).by_stage(views.orders_by_status(core))["retrying"] == 1
    assert views.progress(core).by_stage(views.orders_by_status(core))["queued"] == 1


def test_a_rate_counts_the_last_window_of_whole_seconds():
    meter = RateMeter(window=10)
    meter.add(100.2)
    meter.add(100.9, count=3)
    meter.add(105.5)
    assert meter.rate(105.5) == pytest.approx(0.5)
    assert meter.rate(109.99) == pytest.approx(0.5)  # seconds 100..109
    assert meter.rate(110.0) == pytest.approx(0.1)  # second 100 has left the window
    assert meter.rate(116.0) == 0


def test_rates_count_completed_orders_succeeded_steps_and_failed_attempts():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=1, backoff_base=0.1, backoff_cap=0.1))
    sim.now = 50.0
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.fail(d)
    sim.advance(0.2)
    sim.run_all()
    rates = views.progress(sim.core).rates(sim.now)
    assert rates == {"orders_per_s": pytest.approx(1 / RATE_WINDOW),
                     "steps_per_s": pytest.approx(3 / RATE_WINDOW),
                     "failures_per_s": pytest.approx(1 / RATE_WINDOW), "window": RATE_WINDOW}
    assert views.progress(sim.core).rates(sim.now + RATE_WINDOW + 1)["steps_per_s"] == 0


# ---------------------------------------------------------------- moves


def test_a_drained_queued_task_is_a_move_but_not_a_death():
    sim = Sim(workers=1)
    sim.submit("o1")
    sim.submit("o2")
    running, _ = sim.start_next("w1")
    sim.add_worker("w2")
    sim.apply(sim.core.drain_worker("w1", now=sim.now))
    moved = sim.types(type="task_reassigned")
    assert len(moved) == 1
    task = views.tasks(sim.core)[f"{moved[0]['order_id']}:{moved[0]['step']}"]
    assert (task.moves, task.reassignments) == (1, 0)
    assert moved[0]["moves"] == 1
    counters = views.counters(sim.core)
    assert (counters["moves"], counters["moves_drain"], counters["moves_worker_dead"]) == (1, 1, 0)
    view = sim.core.task_record(task).view()
    assert (view["moves"], view["reassignments"]) == (1, 0)


def test_every_move_off_a_dead_worker_is_counted_once_and_points_at_the_death():
    sim = Sim(workers=2)
    for i in range(4):
        sim.submit(f"o{i}")
    victim = "w1"
    held = sorted(views.workers(sim.core)[victim].tasks)
    sim.start_next(victim)
    sim.advance(2.5, beating=("w2",))
    dead = sim.types(type="worker_dead")[0]
    moved = sim.types(type="task_reassigned")
    assert sorted(f"{e['order_id']}:{e['step']}" for e in moved) == held
    assert {e["cause"] for e in moved} == {dead["seq"]}
    counters = views.counters(sim.core)
    assert counters["moves"] == counters["moves_worker_dead"] == len(held)
    assert sum(t.moves for t in views.tasks(sim.core).values()) == len(held)
    # Only the one that ran counts towards poison.
    assert sum(t.reassignments for t in views.tasks(sim.core).values()) == 1


def test_a_poisoned_task_is_not_a_move():
    sim = Sim(workers=2, max_reassignments=0)
    sim.submit("o1")
    holder = sim.task("o1", "payment").worker
    sim.start_next(holder)
    sim.advance(2.5, beating=tuple(w for w in sim.queues if w != holder))
    assert sim.task("o1", "payment").state is S.FAILED
    assert views.counters(sim.core)["moves"] == 0 and sim.task("o1", "payment").moves == 0
    assert views.counters(sim.core)["reassignments"] == 1
    assert views.progress(sim.core).rates(sim.now)["failures_per_s"] > 0


def test_moves_survive_a_restart_in_the_record():
    sim = Sim(workers=2)
    sim.submit("o1")
    holder = sim.task("o1", "payment").worker
    sim.advance(2.5, beating=tuple(w for w in sim.queues if w != holder))
    assert sim.task("o1", "payment").moves == 1
    core = fresh_core()
    core.restore(point_of(sim.core), records_of(sim.core), now=sim.now)
    assert views.tasks(core)["o1:payment"].moves == 1
    assert views.counters(core)["moves"] == 1


# ---------------------------------------------------------------- restarts and operators


def test_a_restart_is_one_event_that_the_requeued_steps_point_back_to():
    sim = Sim(workers=1)
    sim.submit("o1")
    sim.submit("o2")
    sim.run_all()
    sim.submit("o3")
    core = fresh_core()
    fx = core.restore(point_of(sim.core), records_of(sim.core), now=sim.now)
    restarted = [e for e in fx.events if e["type"] == "server_restarted"]
    assert len(restarted) == 1
    assert restarted[0]["message"] == ("restarted from the journal: 1 unfinished order(s) "
                                       "recovered, 3 step(s) to run again; 2 finished order(s) "
                                       "kept")
    assert (restarted[0]["orders"], restarted[0]["steps"]) == (1, 3)
    recovered = [e for e in fx.events if e["type"] == "task_recovered"]
    assert recovered and {e["cause"] for e in recovered} == {restarted[0]["seq"]}
    assert restarted[0]["seq"] == views.last_seq(sim.core) + 1  # numbering continues


def test_a_first_start_on_an_empty_journal_is_not_a_restart():
    core = fresh_core()
    fx = core.restore(point_of(fresh_core()), [], now=0.0)
    assert fx.events == []


def test_an_operator_action_is_an_event_naming_who_and_what():
    sim = Sim(workers=1)
    sim.submit("o1")
    fx = sim.apply(sim.core.operator_action("127.0.0.1", "retry", "retried order o1",
                                            now=sim.now, target="o1", order_id="o1"))
    [event] = fx.events
    assert event["type"] == "operator_action"
    assert event["message"] == "127.0.0.1: retried order o1"
    assert (event["who"], event["action"], event["order_id"], event["target"]) == (
        "127.0.0.1", "retry", "o1", "o1")
    assert views.orders(sim.core)["o1"].events[-1] == event  # in the order's own timeline
    fx = sim.apply(sim.core.operator_action("token at 10.0.0.2", "kill", "killed worker w1",
                                            now=sim.now, worker="w1"))
    assert fx.events[0]["worker_id"] == "w1" and fx.events[0]["order_id"] is None
    # An order the core no longer holds is still named, not an error.
    fx = sim.apply(sim.core.operator_action("x", "retry", "retried order gone", now=sim.now,
                                            target="gone", order_id="gone"))
    assert fx.events[0]["order_id"] is None and fx.events[0]["target"] == "gone"


def test_an_order_submitted_with_data_is_queued_first():
    core = fresh_core()
    core.submit("o1", dict(ORDER), now=0.0)
    assert views.progress(core).by_stage(views.orders_by_status(core))["queued"] == 1
    assert views.orders(core)["o1"].stage == "queued"


def test_a_rate_meters_memory_is_one_bucket_a_second_at_any_rate():
    meter = RateMeter(window=10)
    for i in range(5000):
        meter.add(200.0 + i / 100)  # 100 a second for 50 seconds
    assert meter.rate(249.99) == pytest.approx(100.0)
    assert len(meter._buckets) <= 10


FAN = Workflow.define("fan3", [("a", []), ("b", []), ("c", []), ("d", ["a", "b", "c"])])


def fan_sim(**settings) -> Sim:
    return Sim(workers=1, slots=3, prefetch=0, workflows={"fan3": FAN}, **settings)


def fan_core(**settings) -> SchedulerCore:
    """A restarted server's core that knows the fan3 workflow, on the same wall clock."""
    return SchedulerCore(ClusterConfig(workers=0, seed=7, **settings),
                         {**DEFAULT_WORKFLOWS, "fan3": FAN})  # the clock of Sim's core


def test_an_order_with_two_branches_backing_off_is_retrying_until_both_are_back():
    sim = fan_sim(retry=RetryPolicy(max_retries=2, backoff_base=100.0, backoff_cap=100.0))
    sim.submit("o1", "fan3")
    started = {ctx["step"]: d for d, ctx in (sim.start_next("w1") for _ in range(3))}
    sim.fail(started["a"])
    sim.fail(started["b"])
    sim.succeed(started["c"])
    order = views.orders(sim.core)["o1"]
    assert order.stage == OrderStage.RETRYING.value
    while all(sim.task("o1", s).state is TaskState.RETRY_WAIT for s in ("a", "b")):
        sim.advance(1.0)
    assert order.stage == OrderStage.RETRYING.value  # the other one still backs off


def test_a_restored_order_whose_branches_were_running_is_queued_again():
    sim = fan_sim()
    sim.submit("o1", "fan3")
    for _ in range(3):
        sim.start_next("w1")  # its three branches run when the server stops
    core = fan_core()
    core.restore(point_of(sim.core), records_of(sim.core), now=0.0)
    core.validate()  # the running steps were counted, then queued again
    assert views.orders(core)["o1"].stage == OrderStage.QUEUED.value


def test_a_restored_order_with_two_branches_backing_off_is_retrying_until_both_are_back():
    retry = RetryPolicy(max_retries=2, backoff_base=100.0, backoff_cap=100.0)
    sim = fan_sim(retry=retry)
    sim.submit("o1", "fan3")
    started = {ctx["step"]: d for d, ctx in (sim.start_next("w1") for _ in range(3))}
    sim.fail(started["a"])
    sim.fail(started["b"])
    sim.succeed(started["c"])
    core = fan_core(retry=retry)
    core.restore(point_of(sim.core), records_of(sim.core), now=0.0)
    order = views.orders(core)["o1"]
    assert order.stage == OrderStage.RETRYING.value
    now = 0.0
    while all(order.tasks[s].state is TaskState.RETRY_WAIT for s in ("a", "b")):
        now += 1.0
        core.tick(now=now)
    core.validate()
    assert order.stage == OrderStage.RETRYING.value  # the other one still backs off


@pytest.mark.parametrize("counter", ["running", "retrying", "waiting", "queued"])
def test_validation_recounts_each_stage_counter_not_only_the_stage_it_gives(counter):
    sim = Sim(workers=1, slots=1, prefetch=0)
    sim.submit("o1")
    sim.submit("o2")
    sim.start_next("w1")  # o1 running, o2 queued
    sim.core.validate()
    order = views.orders(sim.core)["o1"]
    setattr(order, counter, getattr(order, counter) + 1)  # the stage may not change
    with pytest.raises(AssertionError, match="o1"):
        sim.core.validate()
