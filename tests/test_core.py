"""The pure core driven by hand with a fake clock: no threads, no sleeps."""

import math
import random

import pytest
from sim import ORDER, Sim

from scheduler.engine import views
from scheduler.engine.config import RetryPolicy, StepPolicy
from scheduler.engine.errors import Conflict, UnknownOrder, UnknownWorker, UnknownWorkflow
from scheduler.engine.events import EVENT_TYPES
from scheduler.engine.model import Dispatch, Effects
from scheduler.engine.states import TaskState

S = TaskState
REQUIRED_EVENT_KEYS = {"seq", "ts", "type", "order_id", "step", "worker_id", "attempt", "message"}


def view(sim: Sim, task) -> dict:
    """The task as the API shows it (wall clock = core clock here: no epoch offset)."""
    return sim.core.task_record(task).view()


def home_worker(sim: Sim, oid: str) -> str:
    return sim.task(oid, "payment").worker


def test_steps_run_one_after_another_in_dependency_order():
    sim = Sim(workers=1)
    sim.submit("o1")
    assert [sim.task("o1", s).state for s in ("payment", "packing", "shipping")] == [
        S.ASSIGNED,
        S.PENDING,
        S.PENDING,
    ]
    for step in ("payment", "packing", "shipping"):
        d, ctx = sim.start_next("w1")
        assert ctx["step"] == step
        sim.succeed(d, {"done": step})
    assert sim.core.order_status(views.orders(sim.core)["o1"]).value == "completed"
    assert [e["step"] for e in sim.types(type="task_started")] == ["payment", "packing", "shipping"]


def test_handler_context_carries_dependency_results_and_a_stable_idempotency_key():
    sim = Sim(workers=1)
    sim.submit("o1")
    d, ctx = sim.start_next("w1")
    assert ctx["idempotency_key"] == "o1:payment" and ctx["attempt"] == 1
    assert ctx["order_id"] == "o1" and ctx["step"] == "payment"
    assert ctx["order"] == ORDER and ctx["worker_id"] == "w1" and ctx["results"] == {}
    sim.succeed(d, {"charge_id": "ch_1"})
    _, ctx = sim.start_next("w1")
    assert ctx["results"] == {"payment": {"charge_id": "ch_1"}}


def test_fan_in_step_waits_for_every_dependency():
    sim = Sim(workers=1)
    sim.submit("o1", workflow="ecommerce_invoiced")
    d, _ = sim.start_next("w1")
    sim.succeed(d)  # payment -> packing and invoice both ready
    assert {sim.task("o1", s).state for s in ("packing", "invoice")} == {S.ASSIGNED}
    first, ctx = sim.start_next("w1")
    sim.succeed(first)
    assert sim.task("o1", "shipping").state is S.PENDING
    second, _ = sim.start_next("w1")
    sim.succeed(second)
    assert sim.task("o1", "shipping").state is S.ASSIGNED


def test_an_order_with_an_unknown_workflow_is_refused_and_leaves_nothing_behind():
    sim = Sim()
    with pytest.raises(UnknownWorkflow, match="unknown workflow 'nope'"):
        sim.core.submit("o1", dict(ORDER), now=0, workflow="nope")
    assert views.orders(sim.core) == {} and views.order_number(sim.core) == 0


def test_every_event_has_the_required_fields_and_increasing_seq():
    sim = Sim(workers=2)
    for i in range(5):
        sim.submit(f"o{i}")
    sim.run_all()
    seqs = [e["seq"] for e in sim.events]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1
    assert all(REQUIRED_EVENT_KEYS <= set(e) for e in sim.events)
    assert {e["type"] for e in sim.events} <= EVENT_TYPES


def test_worker_is_alive_until_its_heartbeat_is_older_than_the_timeout():
    sim = Sim(workers=2, heartbeat_interval=0.5, heartbeat_timeout=2.0)
    sim.advance(2.0, beating=("w2",))  # w1 silent for exactly the timeout: still alive
    assert views.workers(sim.core)["w1"].status == "alive"
    sim.advance(0.001, beating=("w2",))
    assert views.workers(sim.core)["w1"].status == "dead"
    assert sim.types(type="worker_dead", worker_id="w1")


def test_a_worker_missing_two_heartbeats_is_suspect_before_it_is_dead():
    sim = Sim(workers=1, heartbeat_interval=0.5, heartbeat_timeout=2.0)
    worker = views.workers(sim.core)["w1"]
    assert views.worker_status(sim.core, worker, 0.9) == "alive"
    assert views.worker_status(sim.core, worker, 1.1) == "suspect"


def test_tasks_of_a_dead_worker_move_to_the_next_live_worker_with_a_new_lease():
    sim = Sim(workers=3)
    sim.submit("o1")
    victim = home_worker(sim, "o1")
    d, _ = sim.start_next(victim)
    survivors = tuple(w for w in sim.queues if w != victim)
    sim.advance(2.5, beating=survivors)
    task = sim.task("o1", "payment")
    assert task.state is S.ASSIGNED and task.worker in survivors and task.lease != d.lease
    assert task.reassignments == 1 and task.attempt == 1  # a move, not a retry
    moved = sim.types(type="task_reassigned", order_id="o1")
    assert moved[0]["from_worker"] == victim and moved[0]["worker_id"] == task.worker


def test_a_late_result_from_a_dead_worker_is_rejected_and_the_step_commits_once():
    sim = Sim(workers=2)
    sim.submit("o1")
    victim = home_worker(sim, "o1")
    stale, _ = sim.start_next(victim)
    other = next(w for w in sim.queues if w != victim)
    sim.advance(2.5, beating=(other,))
    fresh, _ = sim.start_next(other)
    sim.succeed(fresh, "second")
    sim.succeed(stale, "first, too late")
    sim.fail(stale, "late failure")
    assert sim.task("o1", "payment").result == "second"
    assert len(sim.types(type="task_succeeded", order_id="o1", step="payment")) == 1
    assert len(sim.types(type="result_rejected", order_id="o1")) == 2
    assert views.counters(sim.core)["rejected_results"] == 2


def test_a_dead_worker_that_heartbeats_again_is_told_it_is_dead():
    sim = Sim(workers=2)
    sim.advance(2.5, beating=("w2",))
    assert sim.core.heartbeat("w1", sim.now) is False
    assert sim.core.heartbeat("w2", sim.now) is True


def test_a_failed_attempt_waits_for_its_backoff_then_retries():
    sim = Sim(workers=1, seed=3)
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.fail(d, "card declined")
    task = sim.task("o1", "payment")
    assert task.state is S.RETRY_WAIT and 0 <= task.due <= 0.1  # first backoff ceiling: base
    retrying = sim.types(type="task_retrying")[0]
    assert retrying["attempt"] == 2 and retrying["delay"] == pytest.approx(task.due, abs=1e-6)
    sim.now = task.due - 1e-6
    sim.apply(sim.core.tick(now=sim.now))
    assert task.state is S.RETRY_WAIT
    sim.now = task.due
    sim.apply(sim.core.tick(now=sim.now))
    assert task.state is S.ASSIGNED
    _, ctx = sim.start_next("w1")
    assert ctx["attempt"] == 2 and ctx["idempotency_key"] == "o1:payment"


def test_a_step_failing_four_times_fails_its_order_and_cancels_what_would_follow():
    sim = Sim(workers=1)
    sim.submit("o1")
    for _ in range(4):
        d, _ = sim.start_next("w1")
        sim.fail(d)
        sim.advance(5.0)
    assert sim.task("o1", "payment").state is S.FAILED
    assert sim.task("o1", "payment").attempt == 4
    assert [sim.task("o1", s).state for s in ("packing", "shipping")] == [S.CANCELLED] * 2
    assert sim.core.order_status(views.orders(sim.core)["o1"]).value == "failed"
    assert len(sim.types(type="task_failed")) == 4 and len(sim.types(type="task_retrying")) == 3
    assert sim.types(type="order_failed")[0]["order_id"] == "o1"
    assert views.active_orders(sim.core) == 0


def test_max_retries_zero_means_a_single_attempt():
    sim = Sim(workers=1, retry=__import__("scheduler").RetryPolicy(max_retries=0))
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.fail(d)
    assert sim.task("o1", "payment").state is S.FAILED


def test_a_task_whose_workers_keep_dying_fails_as_poison():
    sim = Sim(workers=7, max_reassignments=2)
    sim.submit("o1")
    for _ in range(3):
        holder = sim.task("o1", "payment").worker
        sim.start_next(holder)
        survivors = tuple(
            w for w in sim.queues if views.workers(sim.core)[w].status == "alive" and w != holder
        )
        sim.advance(2.5, beating=survivors)
    task = sim.task("o1", "payment")
    assert task.state is S.FAILED and "poison" in task.error and task.reassignments == 3
    assert sim.core.order_status(views.orders(sim.core)["o1"]).value == "failed"


def test_draining_moves_queued_tasks_now_and_lets_the_running_one_finish():
    sim = Sim(workers=2)
    for i in range(6):
        sim.submit(f"o{i}")
    busy = max(sim.queues, key=lambda w: len(views.workers(sim.core)[w].tasks))
    other = next(w for w in sim.queues if w != busy)
    running, _ = sim.start_next(busy)
    sim.apply(sim.core.drain_worker(busy, now=sim.now))
    worker = views.workers(sim.core)[busy]
    assert worker.status == "draining" and worker.tasks == {running.task_id}
    assert busy not in views.ring(sim.core)
    sim.submit("late")
    assert sim.task("late", "payment").worker == other
    sim.succeed(running)
    assert worker.status == "removed" and sim.types(type="worker_removed", worker_id=busy)
    # The packing step of the finished payment goes elsewhere too.
    assert views.tasks(sim.core)[running.task_id.replace("payment", "packing")].worker == other


def test_an_idle_worker_drains_at_once_and_cannot_drain_twice():
    sim = Sim(workers=2)
    sim.apply(sim.core.drain_worker("w1", now=0))
    assert views.workers(sim.core)["w1"].status == "removed"
    with pytest.raises(Conflict):
        sim.core.drain_worker("w1", now=0)
    with pytest.raises(UnknownWorker):
        sim.core.drain_worker("nobody", now=0)


def test_orders_wait_for_a_worker_and_start_when_one_joins():
    sim = Sim(workers=0)
    sim.submit("o1")
    assert sim.task("o1", "payment").state is S.READY
    assert sim.core.order_status(views.orders(sim.core)["o1"]).value == "pending"
    sim.add_worker("w1")
    assert sim.task("o1", "payment").state is S.ASSIGNED


def test_losing_the_last_worker_parks_its_tasks_until_a_worker_joins():
    sim = Sim(workers=1)
    sim.submit("o1")
    sim.advance(2.5, beating=())
    assert sim.task("o1", "payment").state is S.READY
    sim.add_worker("w2")
    assert sim.task("o1", "payment").worker == "w2"


def test_cancelling_an_order_fences_its_running_step():
    sim = Sim(workers=1)
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.apply(sim.core.cancel_order("o1", now=0))
    assert {t.state for t in views.orders(sim.core)["o1"].tasks.values()} == {S.CANCELLED}
    sim.succeed(d)
    assert sim.task("o1", "payment").state is S.CANCELLED
    assert sim.types(type="order_cancelled") and sim.types(type="result_rejected")
    with pytest.raises(Conflict, match="cancelled and cannot be cancelled"):
        sim.core.cancel_order("o1", now=0)
    with pytest.raises(UnknownOrder):
        sim.core.cancel_order("nope", now=0)


def test_retrying_a_failed_order_resumes_from_the_failed_step():
    sim = Sim(workers=1, retry=__import__("scheduler").RetryPolicy(max_retries=0))
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.succeed(d, "paid")
    d, _ = sim.start_next("w1")
    sim.fail(d)
    assert sim.core.order_status(views.orders(sim.core)["o1"]).value == "failed"
    sim.apply(sim.core.retry_order("o1", now=0))
    assert sim.task("o1", "payment").result == "paid"
    assert sim.task("o1", "packing").state is S.ASSIGNED
    assert sim.task("o1", "shipping").state is S.PENDING
    sim.run_all()
    assert sim.core.order_status(views.orders(sim.core)["o1"]).value == "completed"
    assert len(sim.types(type="task_started", step="payment")) == 1
    with pytest.raises(Conflict, match="only a failed order"):
        sim.core.retry_order("o1", now=0)


def test_core_placement_keeps_every_worker_under_the_bounded_load():
    sim = Sim(workers=4)
    for i in range(400):
        sim.submit(f"o{i}")
        loads = views.loads(sim.core)
        cap = math.ceil(1.25 * sum(loads.values()) / len(loads))
        assert max(loads.values()) <= cap


def test_an_order_keeps_its_steps_on_its_home_worker_when_there_is_room():
    sim = Sim(workers=4)
    sim.submit("o1")
    home = home_worker(sim, "o1")
    for _ in range(3):
        d, _ = sim.start_next(home)
        sim.succeed(d)
    assert {e["worker_id"] for e in sim.types(type="task_started", order_id="o1")} == {home}


def test_finished_orders_beyond_the_cap_are_forgotten_and_history_is_capped():
    sim = Sim(workers=2, finished_order_history=10, event_history=100)
    for i in range(50):
        sim.submit(f"o{i}")
    sim.run_all()
    orders = views.orders(sim.core)
    assert len(orders) == 10 and "o49" in orders and "o0" not in orders
    assert len(views.tasks(sim.core)) == 30
    assert views.orders_by_status(sim.core)["completed"] == 50  # counters keep the totals
    assert len(views.events_after(sim.core, 0)) < 200
    assert views.event_bounds(sim.core)[1] == sim.events[-1]["seq"]


def test_the_effects_name_each_order_forgotten_from_memory():
    # What an index of memory (the search's) drops: every order forgotten, once, and only
    # those.
    forgotten = []

    class Recording(Sim):
        def apply(self, fx):
            forgotten.extend(fx.forgotten)
            return super().apply(fx)

    sim = Recording(workers=2, finished_order_history=10)
    for i in range(30):
        sim.submit(f"o{i}")
    sim.run_all()
    assert len(forgotten) == len(set(forgotten)) == 20
    assert set(forgotten) == {f"o{i}" for i in range(30)} - set(views.orders(sim.core))


def test_throughput_counts_completions_over_the_last_minute():
    sim = Sim(workers=1)
    for i in range(6):
        sim.submit(f"o{i}")
    sim.run_all()
    assert views.throughput(sim.core, sim.now) == pytest.approx(6 / 60)
    assert views.throughput(sim.core, sim.now + 61) == 0


def test_a_stalled_monitor_gives_workers_one_more_interval_before_judging_them():
    sim = Sim(workers=2, heartbeat_interval=0.5, heartbeat_timeout=2.0)
    sim.apply(sim.core.tick(now=0.0))
    # The monitor did not run for 10 s (say the process was paused): nobody could be heard.
    sim.now = 10.0
    sim.apply(sim.core.tick(now=sim.now))
    assert {w.status for w in views.workers(sim.core).values()} == {"alive"}
    # From here on silence counts again: w1 keeps beating, w2 does not.
    sim.advance(2.0, beating=("w1",))
    workers = views.workers(sim.core)
    assert workers["w1"].status == "alive" and workers["w2"].status == "dead"


def test_each_failed_attempt_keeps_its_own_traceback_on_its_event():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=2, backoff_base=0.01, backoff_cap=0.01))
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.fail(d, "RuntimeError: first", traceback="Traceback ...\nRuntimeError: first")
    sim.advance(0.1)
    d, _ = sim.start_next("w1")
    sim.fail(d, "gateway answered 503")  # a TaskError: no traceback
    failed = sim.types(type="task_failed", order_id="o1")
    assert [(e["attempt"], e["error"], e.get("traceback")) for e in failed] == [
        (1, "RuntimeError: first", "Traceback ...\nRuntimeError: first"),
        (2, "gateway answered 503", None)]
    assert "traceback" not in failed[1]  # absent, not null: the journal stores no column
    # The order's own story (what the order view reads) holds the same events.
    assert [e.get("traceback") for e in views.find_order(sim.core, "o1").events
            if e["type"] == "task_failed"] == ["Traceback ...\nRuntimeError: first", None]


def test_poison_is_recorded_as_a_failed_attempt_naming_the_dead_worker():
    sim = Sim(workers=3, max_reassignments=0)
    sim.submit("o1")
    holder = sim.task("o1", "payment").worker
    sim.start_next(holder)
    sim.advance(2.5, beating=tuple(w for w in sim.queues if w != holder))
    failed = sim.types(type="task_failed", order_id="o1")
    assert len(failed) == 1 and failed[0]["poison"] and failed[0]["worker_id"] == holder


def test_a_task_that_only_waited_in_a_dead_workers_queue_does_not_count_towards_poison():
    sim = Sim(workers=3, max_reassignments=0)
    sim.submit("o1")
    holder = sim.task("o1", "payment").worker
    sim.advance(2.5, beating=tuple(w for w in sim.queues if w != holder))  # never started
    task = sim.task("o1", "payment")
    assert task.state is S.ASSIGNED and task.worker != holder and task.reassignments == 0
    assert views.counters(sim.core)["reassignments"] == 1  # the move itself is still counted


def test_submits_beyond_the_unfinished_cap_are_refused_until_orders_finish():
    from scheduler.engine.errors import Overloaded

    sim = Sim(workers=1, max_unfinished_orders=2)
    sim.submit("o1")
    sim.submit("o2")
    with pytest.raises(Overloaded) as refused:
        sim.submit("o3")
    assert str(refused.value) == (
        "2 orders are unfinished and at most 2 are accepted; 1 more would not fit. "
        "Try again once work has drained.")
    assert "o3" not in views.orders(sim.core) and views.order_number(sim.core) == 2
    sim.run_all()
    sim.submit("o3")  # room again once the first two finished
    assert views.active_orders(sim.core) == 1


def test_a_flood_of_late_results_from_one_worker_is_summed_up_not_recorded_one_by_one():
    from scheduler.engine.rejections import REJECTION_BURST, REJECTION_WINDOW

    sim = Sim(workers=1)
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.succeed(d)
    for _ in range(200):  # the same report again and again: each one is stale
        sim.succeed(d)
    assert views.counters(sim.core)["rejected_results"] == 200
    assert len(sim.types(type="result_rejected")) == REJECTION_BURST
    sim.advance(REJECTION_WINDOW)
    [summary] = [e for e in sim.types(type="result_rejected") if e.get("count")]
    assert summary["count"] == 200 - REJECTION_BURST and summary["worker_id"] == "w1"
    assert summary["order_id"] is None
    sim.succeed(d)  # a new window: recorded on its own again
    assert len(sim.types(type="result_rejected")) == REJECTION_BURST + 2


def late_reports(sim: Sim, count: int, now: float) -> None:
    """`count` reports from w1 under a lease that was never valid, at time `now`."""
    for _ in range(count):
        sim.apply(sim.core.task_succeeded("o1:payment", "w1", 999, None, now=now))


def summaries(sim: Sim) -> list[dict]:
    return [e for e in sim.types(type="result_rejected") if e.get("count")]


def test_a_window_of_late_results_lasts_ten_seconds_from_its_first_however_late_the_clock():
    sim = Sim(workers=1)
    sim.submit("o1")
    late_reports(sim, 6, now=100.0)  # five recorded, one counted
    assert len(sim.types(type="result_rejected")) == 5 and not summaries(sim)
    late_reports(sim, 1, now=109.9)  # still the same window
    assert len(sim.types(type="result_rejected")) == 5
    late_reports(sim, 1, now=110.0)  # a new window: the old one is summed up first
    [summary] = summaries(sim)
    assert summary["count"] == 2 and summary["ts"] == 110.0
    assert summary["message"] == (
        "2 more late results from w1 rejected within 10s (counted, not recorded one by one)")
    assert sim.events[-1]["type"] == "result_rejected" and not sim.events[-1].get("count")
    assert views.counters(sim.core)["rejected_results"] == 8


def test_the_monitor_sums_up_a_window_of_late_results_only_once_it_is_over():
    sim = Sim(workers=1)
    sim.submit("o1")
    late_reports(sim, 7, now=100.0)
    sim.core.heartbeat("w1", 105.0)
    sim.apply(sim.core.tick(now=105.0))
    assert not summaries(sim)
    sim.core.heartbeat("w1", 110.0)
    sim.apply(sim.core.tick(now=110.0))
    [summary] = summaries(sim)
    assert (summary["count"], summary["worker_id"]) == (2, "w1")
# --------------------------------------------------------------------------- fencing by lease


def retried_after_a_sibling_failed(sim: Sim):
    """One worker runs packing and invoice at once; invoice gives up, so the order fails and
    packing is cancelled under it; then the order is retried by hand. Returns the dispatch of
    packing's first run, whose worker is still busy with it."""
    sim.submit("o1", workflow="ecommerce_invoiced")
    payment, _ = sim.start_next("w1")
    sim.succeed(payment)
    packing, ctx = sim.start_next("w1")
    invoice, _ = sim.start_next("w1")
    assert ctx["step"] == "packing" and views.workers(sim.core)["w1"].tasks == {
        packing.task_id,
        invoice.task_id,
    }
    sim.fail(invoice)
    assert sim.task("o1", "packing").state is S.CANCELLED
    sim.apply(sim.core.retry_order("o1", now=sim.now))
    return packing


def test_a_report_of_a_run_from_before_a_manual_retry_does_not_count_for_the_new_run():
    sim = Sim(workers=1, retry=__import__("scheduler").RetryPolicy(max_retries=0))
    first = retried_after_a_sibling_failed(sim)
    second, ctx = sim.start_next("w1")
    assert ctx["step"] == "packing" and second.lease != first.lease
    # The worker finishes the first run now: same worker, same step, running again.
    sim.succeed(first, "from the cancelled run")
    task = sim.task("o1", "packing")
    assert task.state is S.RUNNING and task.result is None
    assert sim.events[-1]["type"] == "result_rejected"
    sim.succeed(second, "from the retried run")
    assert task.state is S.SUCCEEDED and task.result == "from the retried run"


def test_a_dispatch_superseded_by_a_manual_retry_does_not_start():
    sim = Sim(workers=1, retry=__import__("scheduler").RetryPolicy(max_retries=0))
    sim.submit("o1", workflow="ecommerce_invoiced")
    payment, _ = sim.start_next("w1")
    sim.succeed(payment)
    queue = sim.queues["w1"]
    packing = next(d for d in queue if d.task_id == "o1:packing")
    queue.remove(packing)  # still waiting in the worker's queue while invoice runs
    invoice, _ = sim.start_next("w1")
    sim.fail(invoice)
    sim.apply(sim.core.retry_order("o1", now=sim.now))
    assert sim.task("o1", "packing").state is S.ASSIGNED
    fx, ctx = sim.core.start_task(packing.task_id, "w1", packing.lease, now=sim.now)
    sim.apply(fx)
    assert ctx is None and sim.task("o1", "packing").state is S.ASSIGNED
    sim.run_all()
    assert sim.core.order_status(views.orders(sim.core)["o1"]).value == "completed"
    after_retry = sim.types(type="order_retried")[0]["seq"]
    started = [e["step"] for e in sim.types(type="task_started") if e["seq"] > after_retry]
    assert sorted(started) == ["invoice", "packing", "shipping"]


# --------------------------------------------------------------------------- draining


@pytest.mark.parametrize("max_retries", [0, 3], ids=["given-up", "retried"])
def test_a_draining_worker_leaves_once_its_running_attempt_fails(max_retries):
    sim = Sim(workers=2, retry=__import__("scheduler").RetryPolicy(max_retries=max_retries))
    sim.submit("o1")
    holder = home_worker(sim, "o1")
    running, _ = sim.start_next(holder)
    sim.apply(sim.core.drain_worker(holder, now=sim.now))
    assert views.workers(sim.core)[holder].status == "draining"
    fx = sim.fail(running, "card declined")
    assert views.workers(sim.core)[holder].status == "removed" and holder in fx.departed
    assert sim.types(type="worker_removed", worker_id=holder)
    if max_retries:
        sim.advance(1.0)
        assert sim.task("o1", "payment").worker != holder


def test_a_draining_worker_leaves_once_its_running_order_is_cancelled():
    sim = Sim(workers=2)
    sim.submit("o1")
    holder = home_worker(sim, "o1")
    running, _ = sim.start_next(holder)
    sim.apply(sim.core.drain_worker(holder, now=sim.now))
    fx = sim.apply(sim.core.cancel_order("o1", now=sim.now))
    assert views.workers(sim.core)[holder].status == "removed" and holder in fx.departed
    types = [e["type"] for e in fx.events]
    assert types.index("task_cancelled") < types.index("worker_removed")
    sim.succeed(running)  # the handler's late answer changes nothing
    assert sim.task("o1", "payment").state is S.CANCELLED


def test_a_draining_worker_leaves_once_a_sibling_failure_cancels_its_running_step():
    sim = Sim(workers=1, retry=__import__("scheduler").RetryPolicy(max_retries=0))
    sim.submit("o1", workflow="ecommerce_invoiced")
    payment, _ = sim.start_next("w1")
    sim.succeed(payment)
    packing, ctx = sim.start_next("w1")
    assert ctx["step"] == "packing"
    sim.apply(sim.core.drain_worker("w1", now=sim.now))  # invoice leaves w1's queue
    sim.add_worker("w2")
    invoice, ctx = sim.start_next("w2")
    assert ctx["step"] == "invoice"
    fx = sim.fail(invoice)
    assert sim.task("o1", "packing").state is S.CANCELLED
    assert views.workers(sim.core)["w1"].status == "removed" and "w1" in fx.departed


# --------------------------------------------------------------------------- idempotency keys


def test_the_core_remembers_the_newest_idempotency_keys_up_to_its_cap():
    sim = Sim(workers=1, idempotency_history=2)
    for n, key in enumerate(("a", "b", "c")):
        sim.apply(sim.core.submit(f"o{n}", dict(ORDER), now=sim.now, idempotency_key=key))
    assert views.idempotency_keys(sim.core) == ["b", "c"]  # memory stays bounded; oldest out first
    for key in ("b", "c"):
        with pytest.raises(Conflict, match="idempotency key already used"):
            sim.core.submit("again", dict(ORDER), now=sim.now, idempotency_key=key)
    # The oldest key is for the journal to answer now; the core alone takes it as new.
    sim.apply(sim.core.submit("o3", dict(ORDER), now=sim.now, idempotency_key="a"))
    assert views.orders(sim.core)["o3"].idempotency_key == "a"


def test_an_idempotency_key_outlives_its_order_in_memory():
    sim = Sim(workers=1, finished_order_history=1)
    sim.apply(sim.core.submit("o1", dict(ORDER), now=sim.now, idempotency_key="K"))
    sim.run_all()
    sim.submit("o2")
    sim.run_all()
    assert "o1" not in views.orders(sim.core)  # forgotten, but its key is not
    with pytest.raises(Conflict, match="already used by o1"):
        sim.core.submit("o3", dict(ORDER), now=sim.now, idempotency_key="K")


# --------------------------------------------------------------------------- bookkeeping


def test_a_dispatch_delivered_twice_starts_its_task_once():
    sim = Sim(workers=1)
    sim.submit("o1")
    d = sim.queues["w1"][0]
    first = sim.core.start_task(d.task_id, "w1", d.lease, now=0)[1]
    again = sim.core.start_task(d.task_id, "w1", d.lease, now=0)[1]
    assert first is not None and again is None
    assert sim.task("o1", "payment").runs == 1


def test_a_step_counts_its_runs_and_attempts_and_when_the_latest_began():
    sim = Sim(workers=2)
    sim.submit("o1")
    holder = home_worker(sim, "o1")
    other = next(w for w in sim.queues if w != holder)
    sim.start_next(holder)
    sim.advance(2.5, beating=(other,))  # the holder dies under it: the same attempt again
    sim.now = 3.0
    d, ctx = sim.start_next(other)
    task = sim.task("o1", "payment")
    assert (task.runs, task.attempt, ctx["attempt"], task.started_at) == (2, 1, 1, 3.0)
    sim.fail(d)
    sim.advance(1.0, beating=(other,))
    sim.now = 5.0
    _, ctx = sim.start_next(other)
    assert (task.runs, task.attempt, ctx["attempt"], task.started_at) == (3, 2, 2, 5.0)
    assert view(sim, task)["runs"] == 3 and view(sim, task)["attempts"] == 2


def test_a_workers_running_task_is_shown_while_it_runs_and_only_then():
    sim = Sim(workers=2)
    sim.submit("o1")
    sim.submit("o2")
    holder = home_worker(sim, "o1")
    worker = views.workers(sim.core)[holder]
    d, _ = sim.start_next(holder)
    assert worker.running == {d.task_id}
    sim.succeed(d)
    assert worker.running == set()
    d, _ = sim.start_next(holder)
    assert worker.running == {d.task_id}
    sim.apply(sim.core.cancel_order(d.task_id.split(":")[0], now=sim.now))
    assert worker.running == set()
    d, _ = sim.start_next(holder)
    assert worker.running == {d.task_id}
    sim.advance(2.5, beating=tuple(w for w in sim.queues if w != holder))
    assert worker.status == "dead" and worker.running == set()


def test_workers_count_the_attempts_they_finished_and_the_ones_that_failed():
    sim = Sim(workers=1)
    for i in range(3):
        sim.submit(f"o{i}")
    for outcome in ("ok", "fail", "ok", "fail", "fail"):
        d, _ = sim.start_next("w1")
        if d is None:
            sim.advance(1.0)
            d, _ = sim.start_next("w1")
        (sim.succeed if outcome == "ok" else sim.fail)(d)
    worker = views.workers(sim.core)["w1"]
    assert (worker.done, worker.failed) == (2, 3)


def test_failures_retries_and_moves_are_counted():
    sim = Sim(workers=2)
    sim.submit("o1")
    sim.submit("o2")
    for _ in range(2):
        holder = home_worker(sim, "o1")
        d, _ = sim.start_next(holder)
        while d.task_id != "o1:payment":
            sim.succeed(d)
            d, _ = sim.start_next(holder)
        sim.fail(d)
        sim.advance(1.0)
    assert views.counters(sim.core)["retries"] == 2
    assert views.counters(sim.core)["reassignments"] == 0
    victim = home_worker(sim, "o1")
    queued = len(views.workers(sim.core)[victim].tasks)
    sim.advance(2.5, beating=tuple(w for w in sim.queues if w != victim))
    assert queued >= 1 and views.counters(sim.core)["reassignments"] == queued


def test_the_last_error_is_kept_until_the_step_succeeds():
    sim = Sim(workers=1)
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.fail(d, "card declined")
    task = sim.task("o1", "payment")
    assert task.error == "card declined" and view(sim, task)["error"] == "card declined"
    sim.advance(1.0)
    d, _ = sim.start_next("w1")
    sim.succeed(d, "paid")
    assert task.error is None and view(sim, task)["error"] is None


def test_a_step_shows_when_it_will_be_retried_until_it_is_ready_or_cancelled():
    sim = Sim(workers=1, seed=2)
    sim.submit("o1")
    sim.submit("o2")
    for oid in ("o1", "o2"):
        d, _ = sim.start_next("w1")
        assert d.task_id == f"{oid}:payment"
        fx = sim.fail(d)
    first, second = sim.task("o1", "payment"), sim.task("o2", "payment")
    assert fx.wake_at == min(first.due, second.due)  # the shell's timer sleeps until then
    assert view(sim, first)["retry_at"] == round(first.due, 6) and first.due > 0
    sim.apply(sim.core.cancel_order("o2", now=sim.now))
    assert second.due is None and view(sim, second)["retry_at"] is None
    sim.now = first.due
    fx = sim.apply(sim.core.tick(now=sim.now))
    assert first.state is S.ASSIGNED and first.due is None and view(sim, first)["retry_at"] is None
    assert fx.wake_at is None  # nothing left to wait for


def test_a_cancelled_step_due_for_retry_in_a_forgotten_order_is_dropped_quietly():
    sim = Sim(workers=1, finished_order_history=1)
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.fail(d)  # o1's payment waits for its retry
    sim.apply(sim.core.cancel_order("o1", now=sim.now))
    sim.submit("o2")
    sim.run_all()  # o2 finishes and o1 is forgotten
    assert "o1" not in views.orders(sim.core)
    sim.advance(5.0)  # o1's stale retry entry comes due
    assert views.active_orders(sim.core) == 0


def test_a_worker_joining_after_parked_steps_were_cancelled_and_forgotten_just_joins():
    sim = Sim(workers=0, finished_order_history=1)
    sim.submit("o1")  # parked: no worker yet
    sim.apply(sim.core.cancel_order("o1", now=0))
    sim.submit("o2")
    sim.apply(sim.core.cancel_order("o2", now=0))  # o1 is forgotten
    assert "o1" not in views.orders(sim.core)
    sim.add_worker("w1")
    sim.submit("o3")
    sim.run_all()
    assert sim.core.order_status(views.orders(sim.core)["o3"]).value == "completed"


def test_finished_orders_record_when_they_finished_and_a_reopened_one_forgets_it():
    sim = Sim(workers=2, retry=RetryPolicy(max_retries=0), max_reassignments=0)
    for oid in ("done", "cancelled", "failed", "poisoned"):
        sim.submit(oid)
    sim.now = 1.0
    sim.apply(sim.core.cancel_order("cancelled", now=sim.now))
    sim.now = 2.0
    for oid in ("done", "failed"):
        holder = sim.task(oid, "payment").worker
        d, _ = sim.start_next(holder)
        while d.task_id != f"{oid}:payment":
            sim.succeed(d)
            d, _ = sim.start_next(holder)
        (sim.succeed if oid == "done" else sim.fail)(d)
    holder = sim.task("poisoned", "payment").worker
    while sim.task("poisoned", "payment").state is not S.RUNNING:
        sim.start_next(holder)
    sim.advance(2.5, beating=tuple(w for w in sim.queues if w != holder))
    finished = {oid: views.orders(sim.core)[oid].finished_at for oid in ("cancelled", "failed")}
    assert finished == {"cancelled": 1.0, "failed": 2.0}
    died = sim.types(type="worker_dead")[0]["ts"]
    assert 2.0 < died < sim.now and views.orders(sim.core)["poisoned"].finished_at == died
    # Packing and shipping are still to do.
    assert views.orders(sim.core)["done"].finished_at is None
    sim.apply(sim.core.retry_order("failed", now=sim.now))
    assert views.orders(sim.core)["failed"].finished_at is None


def test_a_reopened_order_is_not_forgotten_while_it_runs_again():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=0), finished_order_history=1)
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.fail(d)
    sim.submit("o2")
    sim.apply(sim.core.retry_order("o1", now=sim.now))
    assert views.active_orders(sim.core) == 2
    sim.run_all()  # o2 finishes first: the finished-order cap must not take the reopened o1
    assert sim.core.order_status(views.orders(sim.core)["o1"]).value == "completed"
    assert views.active_orders(sim.core) == 0


def test_a_manual_retry_starts_counting_attempts_and_worker_deaths_afresh():
    sim = Sim(workers=3, max_reassignments=1)
    sim.submit("o1")
    for _ in range(2):  # its worker dies under it twice: poison
        holder = sim.task("o1", "payment").worker
        sim.start_next(holder)
        alive = tuple(w for w, r in views.workers(sim.core).items() if r.status == "alive")
        sim.advance(2.5, beating=tuple(w for w in alive if w != holder))
    assert sim.core.order_status(views.orders(sim.core)["o1"]).value == "failed"
    sim.add_worker("w4")
    sim.add_worker("w5")
    sim.apply(sim.core.retry_order("o1", now=sim.now))
    task = sim.task("o1", "payment")
    assert (task.attempt, task.reassignments, task.error) == (0, 0, None)
    holder = task.worker
    _, ctx = sim.start_next(holder)
    assert ctx["attempt"] == 1
    alive = tuple(w for w, r in views.workers(sim.core).items() if r.status == "alive")
    sim.advance(2.5, beating=tuple(w for w in alive if w != holder))
    assert task.state is S.ASSIGNED and task.reassignments == 1  # one death: moved, not poison


def test_orders_are_numbered_in_submission_order():
    sim = Sim(workers=1)
    for oid in ("b", "a", "c"):
        sim.submit(oid)
    assert [views.orders(sim.core)[o].number for o in ("b", "a", "c")] == [1, 2, 3]
    assert views.adopted_out_of_order(sim.core) is False  # listings need no sorting


def test_orders_are_counted_by_status_as_they_go():
    sim = Sim(workers=0)
    sim.submit("o1")
    sim.submit("o2")
    assert views.orders_by_status(sim.core)["pending"] == 2
    sim.add_worker("w1")
    assert views.orders_by_status(sim.core)["pending"] == 0
    assert views.orders_by_status(sim.core)["in_progress"] == 2
    assert views.orders(sim.core)["o1"].reported_status == "in_progress"
    sim.submit("o3")  # a worker takes its first step at once
    assert views.orders(sim.core)["o3"].reported_status == "in_progress"
    assert views.orders_by_status(sim.core)["in_progress"] == 3


def test_the_same_seed_gives_the_same_retry_delays():
    def delays(seed):
        sim = Sim(workers=1, seed=seed)
        sim.submit("o1")
        d, _ = sim.start_next("w1")
        sim.fail(d)
        return sim.task("o1", "payment").due

    assert delays(11) == delays(11)
    assert len({delays(s) for s in range(5)}) == 5


def test_a_completion_exactly_a_minute_old_still_counts_towards_throughput():
    sim = Sim(workers=1)
    sim.submit("o1")
    sim.run_all()
    finished = views.orders(sim.core)["o1"].finished_at
    assert views.throughput(sim.core, finished + 60.0) == pytest.approx(1 / 60)
    assert views.throughput(sim.core, finished + 60.001) == 0


def test_a_tasks_history_of_states_stays_bounded_and_ends_with_the_latest():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=100, backoff_base=0, backoff_cap=0))
    sim.submit("o1")
    task = sim.task("o1", "payment")
    longest = 0
    for _ in range(20):
        d, _ = sim.start_next("w1")
        sim.fail(d)
        longest = max(longest, len(task.history))
        sim.apply(sim.core.tick(now=sim.now))
        longest = max(longest, len(task.history))
    assert longest == 32
    assert task.history[-4:] == [S.ASSIGNED, S.RUNNING, S.RETRY_WAIT, S.READY]


# ----------------------------------------------------------------------- what the journal is handed


def test_a_stimulus_hands_over_the_orders_submitted_finished_or_reopened_and_no_others():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=0))
    fx = sim.apply(sim.core.submit("o1", {"customer": "ada"}, now=0.0))
    order = views.orders(sim.core)["o1"]
    assert fx.orders == {"o1": order}
    d, _ = sim.start_next("w1")
    assert sim.succeed(d).orders == {}  # still in progress
    d, _ = sim.start_next("w1")
    fx = sim.fail(d)
    assert fx.orders == {"o1": order} and order.reported_status == "failed"
    fx = sim.apply(sim.core.retry_order("o1", now=sim.now))
    assert fx.orders == {"o1": order} and order.reported_status == "in_progress"


# --------------------------------------------------------------------------- stale queue entries


def test_a_free_slot_skips_a_cancelled_step_still_in_the_queue_and_takes_the_next():
    sim = Sim(workers=1, slots=1, prefetch=0, retry=RetryPolicy(max_retries=0))
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.submit("o2")
    sim.submit("o3")
    sim.apply(sim.core.cancel_order("o2", now=sim.now))
    sim.fail(d)  # o1 fails: its slot frees
    assert sim.task("o2", "payment").state is S.CANCELLED
    assert sim.task("o3", "payment").state is S.ASSIGNED


def test_a_free_slot_skips_a_queued_step_of_an_order_already_forgotten():
    sim = Sim(workers=1, slots=1, prefetch=0, finished_order_history=1,
              retry=RetryPolicy(max_retries=0))
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.submit("o2")
    sim.submit("o3")
    sim.apply(sim.core.cancel_order("o2", now=sim.now))
    sim.fail(d)  # o1 finishes after o2: o2 is forgotten, its queue entry is left behind
    assert "o2" not in views.orders(sim.core)
    assert sim.task("o3", "payment").state is S.ASSIGNED


def test_a_retry_of_a_forgotten_order_due_with_a_live_one_is_dropped_quietly():
    sim = Sim(workers=1, slots=2, finished_order_history=1,
              retry=RetryPolicy(max_retries=1, backoff_base=1.0, backoff_cap=1.0))
    sim.core.rng = random.Random(4)
    sim.submit("o1")
    sim.submit("o2")
    first, _ = sim.start_next("w1")
    second, _ = sim.start_next("w1")
    sim.fail(first)
    sim.fail(second)
    due = {o: sim.task(o, "payment").due for o in ("o1", "o2")}
    later = max(due, key=due.get)
    sooner = min(due, key=due.get)
    sim.apply(sim.core.cancel_order(later, now=sim.now))
    sim.submit("o3")
    d, _ = sim.start_next("w1")
    sim.apply(sim.core.cancel_order("o3", now=sim.now))  # finished after it: it is forgotten
    assert later not in views.orders(sim.core)
    sim.core.heartbeat("w1", 1.0)
    sim.apply(sim.core.tick(now=1.0))  # both retries are due in this one tick
    assert sim.task(sooner, "payment").state is S.ASSIGNED


# --------------------------------------------------------------------------- policies per step


def test_a_step_with_its_own_retry_policy_is_retried_by_it_not_by_the_clusters():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=3),
              steps={"payment": StepPolicy(retry=RetryPolicy(max_retries=0))})
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.fail(d)
    assert sim.task("o1", "payment").state is S.FAILED
    assert views.orders(sim.core)["o1"].reported_status == "failed"


def test_a_failed_attempt_is_recorded_as_closed_so_a_restart_begins_the_next():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=2))
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    assert sim.core.task_record(sim.task("o1", "payment")).attempt_open is True
    sim.fail(d)
    record = sim.core.task_record(sim.task("o1", "payment"))
    assert record.attempt_open is False and record.state == "retry_wait"


def test_an_order_submitted_without_a_priority_has_none():
    sim = Sim(workers=1)
    sim.submit("o1")
    assert views.orders(sim.core)["o1"].priority == 0


def test_a_draining_worker_whose_connection_closes_is_declared_dead_and_its_step_moves():
    sim = Sim(workers=2)
    sim.submit("o1")
    task = sim.task("o1", "payment")
    holder = task.worker
    other = next(w for w in sim.queues if w != holder)
    sim.start_next(holder)
    sim.apply(sim.core.drain_worker(holder, now=sim.now))
    sim.apply(sim.core.worker_lost(holder, now=sim.now, reason="connection closed"))
    assert views.workers(sim.core)[holder].status == "dead"
    assert task.worker == other and task.reassignments == 1


def test_effects_of_several_stimuli_absorbed_keep_all_of_them_in_order():
    sim = Sim(workers=1, slots=4)
    first = sim.core.submit("o1", dict(ORDER), now=0.0)
    later = sim.core.submit("o2", dict(ORDER), now=0.0)
    moves = [t.id for t, _, _ in first.moves] + [t.id for t, _, _ in later.moves]
    merged = first.absorb(later)
    assert [d.task_id for d in merged.dispatches] == ["o1:payment", "o2:payment"]
    assert [t.id for t, _, _ in merged.moves] == moves and "o1:payment" in moves
    abandoned = Effects(abandons=[Dispatch("w1", "o1:payment", 1)], forgotten=["o0"])
    abandoned.absorb(Effects(abandons=[Dispatch("w1", "o2:payment", 2)], forgotten=["o9"]))
    assert [a.task_id for a in abandoned.abandons] == ["o1:payment", "o2:payment"]
    assert abandoned.forgotten == ["o0", "o9"]
