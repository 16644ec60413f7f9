"""The execution model of the core, with a fake clock: slots, the ready queue (finish what
was started, priorities, oldest first), work stealing, time limits and per-step limits."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim import ORDER, Sim

from scheduler.engine import views
from scheduler.engine.config import RetryPolicy, StepPolicy
from scheduler.engine.states import TaskState
from scheduler.engine.workflow import Workflow

S = TaskState


def held(sim: Sim, wid: str) -> int:
    return len(views.workers(sim.core)[wid].tasks)


def submit(sim: Sim, oid: str, priority: int = 0) -> str:
    sim.apply(sim.core.submit(oid, dict(ORDER), now=sim.now, priority=priority))
    return oid


# --------------------------------------------------------------------------- slots


def test_a_worker_holds_at_most_its_slots_plus_the_prefetch_and_the_rest_waits_ready():
    sim = Sim(workers=1, slots=2, prefetch=1)
    for i in range(6):
        sim.submit(f"o{i}")
    assert held(sim, "w1") == 3
    waiting = [t for t in views.tasks(sim.core).values() if t.state is S.READY]
    assert len(waiting) == 3 and len(sim.core.queue) == 3
    assert views.wait_reason(sim.core, waiting[0]) == "waiting for a free slot"
    d, _ = sim.start_next("w1")
    sim.succeed(d)  # a slot frees: the started order's next step takes it, not a new order
    assert held(sim, "w1") == 3
    assert sim.task("o0", "packing").state is S.ASSIGNED
    assert sim.task("o3", "payment").state is S.READY


def test_a_worker_never_starts_more_than_its_slots_at_once():
    sim = Sim(workers=1, slots=2, prefetch=3)
    for i in range(5):
        sim.submit(f"o{i}")
    started = [sim.start_next("w1")[0] for _ in range(4)]
    assert sum(d is not None for d in started) == 2
    assert len(views.workers(sim.core)["w1"].running) == 2


def test_a_worker_with_more_slots_gets_a_larger_share_of_the_ring():
    sim = Sim(workers=0, slots=8)
    sim.apply(sim.core.add_worker("big", now=0, slots=32))
    sim.apply(sim.core.add_worker("small", now=0, slots=8))
    shares = views.ring(sim.core).shares()
    assert 0.7 < shares["big"] < 0.9


# --------------------------------------------------------------------------- the ready queue


def test_later_steps_of_started_orders_go_before_first_steps_of_new_orders():
    sim = Sim(workers=1, slots=1, prefetch=0)
    submit(sim, "old")
    d, _ = sim.start_next("w1")
    for i in range(3):
        submit(sim, f"new{i}")  # all wait: the one slot is busy
    sim.succeed(d)  # old's packing becomes ready behind three new payments
    assert sim.task("old", "packing").state is S.ASSIGNED
    assert all(sim.task(f"new{i}", "payment").state is S.READY for i in range(3))


def test_a_higher_priority_order_goes_first_then_the_oldest():
    sim = Sim(workers=1, slots=1, prefetch=0)
    submit(sim, "first")
    d, _ = sim.start_next("w1")
    submit(sim, "plain1")
    submit(sim, "express", priority=10)
    submit(sim, "plain2")
    order = []
    sim.succeed(d)
    for _ in range(6):
        d, _ = sim.start_next("w1")
        order.append(d.task_id)
        sim.succeed(d)
    # The started order finishes first, then express (its later steps before any new
    # order), then the oldest of the rest.
    assert order == ["first:packing", "first:shipping", "express:payment", "express:packing",
                     "express:shipping", "plain1:payment"]


def test_an_idle_worker_steals_from_a_busy_one_and_a_slow_worker_keeps_little():
    sim = Sim(workers=2, slots=1, prefetch=1)
    for i in range(8):
        sim.submit(f"o{i}")
    slow = "w1"
    # The fast worker runs everything it can; the slow one never finishes its first task.
    stuck, _ = sim.start_next(slow)
    for _ in range(40):
        d, _ = sim.start_next("w2")
        if d is None:
            break
        sim.succeed(d)
    assert held(sim, slow) == 2  # the one it runs and one prefetched, nothing more
    finished = [o for o in views.orders(sim.core).values()
                if sim.core.order_status(o).value == "completed"]
    assert len(finished) >= 6  # the fast worker took the slow one's share too


def test_ready_tasks_wait_with_a_reason_while_no_worker_is_alive_and_run_when_one_joins():
    sim = Sim(workers=0)
    sim.submit("o1")
    task = sim.task("o1", "payment")
    assert task.state is S.READY and views.wait_reason(sim.core, task) == "no live worker"
    sim.add_worker("w1")
    assert task.state is S.ASSIGNED and views.wait_reason(sim.core, task) is None


# --------------------------------------------------------------------------- time limits


def test_an_attempt_past_its_time_limit_fails_is_cancelled_and_keeps_its_slot_until_it_returns():
    sim = Sim(workers=1, slots=1, prefetch=0, step_timeout=5.0,
              retry=RetryPolicy(max_retries=1, backoff_base=0.001, backoff_cap=0.001))
    sim.submit("o1")
    sim.submit("o2")
    d, ctx = sim.start_next("w1")
    assert ctx["timeout"] == 5.0
    fx = sim.advance(5.5)
    [failed] = sim.types(type="task_failed")
    assert failed["error"] == "timed out after 5 s" and failed["timed_out"] is True
    assert [(c.task_id, c.lease) for c in fx.cancels] == [(d.task_id, d.lease)]
    worker = views.workers(sim.core)["w1"]
    assert worker.stuck == {(d.task_id, d.lease)} and sim.core.free_slots(worker) == 0
    assert sim.task("o2", "payment").state is S.READY  # the stuck slot takes nothing new
    sim.succeed(d, "late")  # the handler returns at last: rejected, and the slot is free
    rejected = sim.types(type="result_rejected")
    assert rejected and "had timed out" in rejected[-1]["message"]
    assert worker.stuck == set() and sim.task("o1", "payment").result is None
    sim.run_all()
    assert sim.task("o1", "payment").attempt == 2  # retried under the retry policy
    assert sim.core.order_status(views.orders(sim.core)["o1"]).value == "completed"


def test_a_step_policy_sets_its_own_time_limit():
    sim = Sim(workers=1, step_timeout=60.0, steps={"payment": StepPolicy(timeout=2.0)},
              retry=RetryPolicy(max_retries=0))
    sim.submit("o1")
    sim.start_next("w1")
    fx = sim.advance(1.5)
    assert fx.wake_at is not None and fx.wake_at <= 2.0  # the timer wakes for the deadline
    sim.advance(1.0)
    order = views.orders(sim.core)["o1"]
    assert sim.core.order_status(order).value == "failed"
    assert "timed out after 2 s" in sim.task("o1", "payment").error


def test_a_worker_that_dies_with_a_stuck_slot_frees_it():
    sim = Sim(workers=2, slots=1, step_timeout=1.0)
    sim.submit("o1")
    holder = sim.task("o1", "payment").worker
    sim.start_next(holder)
    sim.advance(1.2)
    assert views.workers(sim.core)[holder].stuck
    sim.advance(2.5, beating=tuple(w for w in sim.queues if w != holder))
    gone = views.workers(sim.core)[holder]
    assert gone.status == "dead" and not gone.stuck


def test_a_thread_whose_handler_ignores_its_cancellation_is_abandoned_and_its_slot_serves_again():
    # Depth-first to the end (no tail), so the freed slot takes o1's retry before o2.
    sim = Sim(workers=1, slots=1, prefetch=0, step_timeout=5.0, abandon_after=1.0,
              tail_share=0,
              retry=RetryPolicy(max_retries=1, backoff_base=0.001, backoff_cap=0.001))
    sim.submit("o1")
    sim.submit("o2")
    hung, _ = sim.start_next("w1")
    worker = views.workers(sim.core)["w1"]
    fx = sim.advance(5.0)  # timed out: stuck, the handler asked to stop
    assert worker.stuck == {(hung.task_id, hung.lease)} and not fx.abandons
    fx = sim.advance(0.25)
    assert fx.wake_at == 6.0  # the timer wakes when the handler's grace ends
    assert fx.abandons == [] and sim.advance(0.5).abandons == []  # still within its grace
    assert sim.core.free_slots(worker) == 0 and sim.task("o2", "payment").state is S.READY
    fx = sim.advance(0.25)  # 1 s past its time limit, the handler has not returned
    assert [(a.worker_id, a.task_id, a.lease) for a in fx.abandons] == [
        ("w1", hung.task_id, hung.lease)]
    assert worker.stuck == set() and worker.abandoned == {(hung.task_id, hung.lease)}
    [abandoned] = sim.types(type="thread_abandoned")
    assert abandoned["message"] == (
        "order o1 step payment attempt 1 ignored its cancellation 1 s past its time limit on "
        "w1: its thread is abandoned and a new one takes the slot (1 abandoned of at most 2)")
    assert (abandoned["order_id"], abandoned["step"], abandoned["worker_id"]) == (
        "o1", "payment", "w1")
    assert views.counters(sim.core)["abandoned_threads"] == 1
    assert views.counters(sim.core)["timed_out_attempts"] == 1
    # The slot serves again while the abandoned handler still hangs: here for the retry.
    following, ctx = sim.start_next("w1")
    assert (following.task_id, ctx["attempt"]) == (hung.task_id, 2)
    sim.succeed(hung, "late")  # it returns at last: rejected, and no longer counted
    assert "had timed out" in sim.types(type="result_rejected")[-1]["message"]
    assert worker.abandoned == set() and sim.task("o1", "payment").result is None
    sim.succeed(following)
    sim.run_all()
    assert all(sim.core.order_status(o).value == "completed"
               for o in views.orders(sim.core).values())


def test_a_handler_that_returns_within_its_grace_keeps_its_thread():
    sim = Sim(workers=1, slots=1, prefetch=0, step_timeout=5.0, abandon_after=1.0)
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.advance(5.5)
    sim.fail(d, "cancelled")  # it heard its cancellation: rejected, the slot is free
    fx = sim.advance(2.0)
    assert fx.abandons == [] and not sim.types(type="thread_abandoned")
    assert views.counters(sim.core)["abandoned_threads"] == 0
    # It ran past its time limit all the same: one attempt timed out, counted.
    assert views.counters(sim.core)["timed_out_attempts"] == 1


def test_a_worker_process_is_never_told_to_abandon_a_thread():
    # A process whose slots are all stuck exits, to be restarted by its supervisor.
    sim = Sim(workers=0, step_timeout=1.0, abandon_after=0.5)
    sim.add_worker("p1", kind="process", slots=1)
    sim.submit("o1")
    d, _ = sim.start_next("p1")
    fx = sim.advance(5.0, beating=("p1",))
    assert fx.abandons == [] and views.workers(sim.core)["p1"].stuck == {(d.task_id, d.lease)}


def test_an_abandoned_handler_still_counts_against_its_steps_concurrency_limit():
    # The slot serves again, but the gateway call may still be running: the step's limit
    # counts it until the handler returns.
    sim = Sim(workers=1, slots=2, prefetch=0, step_timeout=5.0, abandon_after=1.0,
              steps={"payment": StepPolicy(max_in_flight=1)},
              retry=RetryPolicy(max_retries=0))
    sim.submit("o1")
    sim.submit("o2")
    hung, _ = sim.start_next("w1")
    sim.advance(6.0)
    assert views.workers(sim.core)["w1"].abandoned
    waiting = sim.task("o2", "payment")
    assert views.wait_reason(sim.core, waiting) == "step payment is at its limit of 1 in flight"
    sim.fail(hung, "returned at last")
    assert waiting.state is S.ASSIGNED


@pytest.mark.parametrize("after", [5.5, 6.0])  # stuck, or its thread already abandoned
def test_a_worker_drained_while_its_handler_hangs_hands_it_to_the_zombies(after):
    # A worker that left holds no slot (validate() checks a departed worker holds nothing),
    # but its hung handler keeps its step's place until its thread says it returned.
    sim = Sim(workers=2, slots=1, prefetch=0, step_timeout=5.0, abandon_after=1.0,
              steps={"payment": StepPolicy(max_in_flight=1)}, retry=RetryPolicy(max_retries=0))
    sim.submit("o1")
    holder = sim.task("o1", "payment").worker
    hung, _ = sim.start_next(holder)
    sim.advance(after)
    worker = views.workers(sim.core)[holder]
    assert worker.stuck or worker.abandoned
    sim.apply(sim.core.drain_worker(holder, now=sim.now))
    assert worker.status == "removed" and not worker.stuck and not worker.abandoned
    assert sim.core.limits.in_flight("payment") == 1
    sim.advance(120.0)  # a thread worker's zombie has no bound: only its return ends it
    assert sim.core.limits.in_flight("payment") == 1
    sim.apply(sim.core.attempts_ended(holder, [(hung.task_id, hung.lease)], now=sim.now))
    assert sim.core.limits.in_flight("payment") == 0


def test_a_worker_declared_dead_past_its_bound_leaves_its_hung_handlers_counted_as_zombies():
    sim = Sim(workers=1, slots=1, prefetch=0, step_timeout=5.0, abandon_after=1.0,
              max_abandoned=1, steps={"payment": StepPolicy(max_in_flight=2)},
              retry=RetryPolicy(max_retries=3, backoff_base=0.001, backoff_cap=0.001))
    sim.submit("o1")
    first, _ = sim.start_next("w1")
    sim.advance(6.0)  # abandoned, 1 of at most 1
    second, _ = sim.start_next("w1")
    sim.advance(6.0)  # stuck past its grace too: the worker is declared dead
    assert views.workers(sim.core)["w1"].status == "dead"
    assert sim.core.limits.in_flight("payment") == 2  # both handlers may still run
    sim.apply(sim.core.attempts_ended("w1", [(first.task_id, first.lease)], now=sim.now))
    assert sim.core.limits.in_flight("payment") == 1


def test_past_its_bound_of_abandoned_threads_a_worker_is_declared_dead_and_its_work_moves():
    sim = Sim(workers=1, slots=1, prefetch=0, step_timeout=5.0, abandon_after=1.0,
              max_abandoned=1, tail_share=0,  # depth-first: o1's retry before o2
              retry=RetryPolicy(max_retries=3, backoff_base=0.001, backoff_cap=0.001))
    sim.submit("o1")
    sim.submit("o2")
    first, _ = sim.start_next("w1")
    sim.advance(6.0)  # its thread abandoned: 1 of at most 1
    second, _ = sim.start_next("w1")
    assert second is not None
    sim.advance(6.0)  # this one hangs too: one more than the worker may abandon
    worker = views.workers(sim.core)["w1"]
    assert worker.status == "dead" and worker.abandoned == worker.stuck == set()
    [hung] = sim.types(type="worker_hung")
    assert second.task_id == first.task_id == "o1:payment"  # its retry hung as well
    assert (hung["worker_id"], hung["order_id"], hung["step"], hung["attempt"]) == (
        "w1", "o1", "payment", 2)
    assert (hung["abandoned"], hung["limit"]) == (1, 1)
    assert hung["message"] == (
        "worker w1: the handler of order o1 step payment attempt 2 ignored its cancellation "
        "1 s past its time limit, and 1 of its threads are already abandoned in such handlers "
        "(at most 1); the worker is declared dead so its work moves")
    [dead] = sim.types(type="worker_dead")
    assert dead["seq"] > hung["seq"] and dead["message"] == (
        "worker w1 declared dead: 2 of its threads are held by handlers that ignored their "
        "cancellation; 0 task(s) to move")
    [abandoned] = sim.types(type="thread_abandoned")  # no thread beyond the bound
    assert (abandoned["attempt"], abandoned["abandoned"], abandoned["limit"]) == (1, 1, 1)
    assert views.counters(sim.core)["workers_hung"] == 1
    # Its work waits for another worker, and runs there.
    assert all(t.state in (S.READY, S.RETRY_WAIT) for t in views.tasks(sim.core).values()
               if t.step == "payment")
    sim.add_worker("w2")
    sim.run_all()
    assert all(sim.core.order_status(o).value == "completed"
               for o in views.orders(sim.core).values())


# --------------------------------------------------------------------------- per-step limits


def test_a_step_at_its_concurrency_limit_waits_ready_with_the_reason_and_goes_when_one_ends():
    sim = Sim(workers=2, slots=4, steps={"payment": StepPolicy(max_in_flight=2)})
    for i in range(5):
        sim.submit(f"o{i}")
    payments = [sim.task(f"o{i}", "payment") for i in range(5)]
    assert sum(t.state is S.ASSIGNED for t in payments) == 2
    waiting = [t for t in payments if t.state is S.READY]
    assert len(waiting) == 3
    assert views.wait_reason(sim.core, waiting[0]) == "step payment is at its limit of 2 in flight"
    d, _ = sim.start_next(payments[0].worker)
    sim.succeed(d)
    assert sum(t.state is S.ASSIGNED for t in payments) == 2  # one more went
    assert sim.core.limits.in_flight("payment") == 2


def test_a_rate_limited_step_starts_at_most_its_rate_as_time_passes():
    sim = Sim(workers=1, slots=20, steps={"payment": StepPolicy(rate=2.0, burst=2)})
    for i in range(6):
        sim.submit(f"o{i}")
    assigned = [t for t in views.tasks(sim.core).values() if t.state is S.ASSIGNED]
    assert len(assigned) == 2  # the burst
    fx = sim.advance(0.0)
    assert fx.wake_at == 0.5  # one token every half second
    sim.advance(1.0)
    assigned = [t for t in views.tasks(sim.core).values() if t.state is S.ASSIGNED]
    assert len(assigned) == 4
    blocked = next(t for t in views.tasks(sim.core).values() if t.state is S.READY)
    assert "rate limit of 2 starts/s" in views.wait_reason(sim.core, blocked)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    slots=st.integers(1, 3),
    prefetch=st.integers(0, 2),
    limit=st.integers(1, 3),
    orders=st.integers(1, 8),
    script=st.lists(st.tuples(st.sampled_from(["run", "fail", "tick", "kill"]),
                              st.integers(0, 5)), max_size=80),
)
def test_no_worker_runs_more_than_its_slots_and_no_step_more_than_its_limit(
    slots, prefetch, limit, orders, script
):
    sim = Sim(workers=3, slots=slots, prefetch=prefetch, step_timeout=2.0,
              steps={"packing": StepPolicy(max_in_flight=limit)},
              retry=RetryPolicy(max_retries=1, backoff_base=0.1, backoff_cap=0.2))
    for i in range(orders):
        sim.submit(f"o{i}")
    running, dead = [], set()
    for action, arg in script:
        live = sorted(w for w in sim.queues if w not in dead)
        if action == "run" and live:
            d, _ = sim.start_next(live[arg % len(live)])
            if d is not None:
                running.append(d)
        elif action == "fail" and running:
            d = running.pop(arg % len(running))
            (sim.fail if arg % 2 else sim.succeed)(d)
        elif action == "tick":
            sim.advance(arg * 0.5, beating=tuple(w for w in sim.queues if w not in dead))
        elif action == "kill" and len(live) > 1:
            dead.add(live[arg % len(live)])
        # Sim.apply runs core.validate(): running <= slots and in flight <= limit, always.
        in_flight = sum(1 for t in views.tasks(sim.core).values()
                        if t.step == "packing" and t.state in (S.ASSIGNED, S.RUNNING))
        assert in_flight <= limit
        for worker in views.workers(sim.core).values():
            assert len(worker.running) + len(worker.stuck) <= worker.slots
            assert len(worker.tasks) + len(worker.stuck) <= worker.slots + prefetch


# --------------------------------------------------------------------------- routing


def test_a_step_with_tags_waits_until_a_worker_offering_them_joins():
    sim = Sim(workers=2, steps={"payment": StepPolicy(tags=frozenset({"payments"}))})
    sim.submit("o1")
    payment = sim.task("o1", "payment")
    assert payment.state is S.READY
    assert views.wait_reason(sim.core, payment) == (
        "no live worker can run step payment (it needs tags: payments)")
    sim.add_worker("pay", tags={"payments", "eu"})
    assert payment.state is S.ASSIGNED and payment.worker == "pay"
    d, _ = sim.start_next("pay")
    sim.succeed(d)
    packing = sim.task("o1", "packing")
    assert packing.state is S.ASSIGNED  # untagged steps run anywhere


def test_a_worker_is_only_given_steps_it_has_handlers_for_and_never_steals_others():
    sim = Sim(workers=0, slots=1, prefetch=0)
    sim.add_worker("payer", steps={"payment"})
    sim.add_worker("packer", steps={"packing", "shipping"})
    for i in range(4):
        sim.submit(f"o{i}")
    held = {w: {views.tasks(sim.core)[t].step for t in views.workers(sim.core)[w].tasks}
            for w in ("payer", "packer")}
    assert held == {"payer": {"payment"}, "packer": set()}  # idle, yet it steals no payment
    sim.run_all()
    for order in views.orders(sim.core).values():
        assert {t.step: t.worker for t in order.tasks.values()} == {
            "payment": "payer", "packing": "packer", "shipping": "packer"}


def test_ready_tasks_no_live_worker_can_run_are_counted_by_step():
    sim = Sim(workers=1, steps={"payment": StepPolicy(tags=frozenset({"payments"}))})
    sim.submit("o1")
    sim.submit("o2")
    assert views.unroutable(sim.core) == {"payment": 2}
    sim.add_worker("pay", tags={"payments"})
    assert views.unroutable(sim.core) == {}


# ---------------------------------------------------------------------- placement after a loss


def orders_preferring(sim: Sim, first: str, then: str, count: int) -> list[str]:
    """Order ids whose ring preference starts with `first`, then `then`."""
    found = []
    for i in range(10_000):
        oid = f"o{i}"
        if list(views.ring(sim.core).preference(oid))[:2] == [first, then]:
            found.append(oid)
            if len(found) == count:
                return found
    raise AssertionError("no such order ids")


def three_on_w1(w2_slots: int) -> tuple[Sim, list[str]]:
    """w1 holds three queued payments; w2 (`w2_slots`) comes next for them on the ring; w3
    is idle with room for three."""
    sim = Sim(workers=0, slots=3, prefetch=0, load_epsilon=100.0)
    sim.add_worker("w1")
    sim.add_worker("w2", slots=w2_slots)
    sim.add_worker("w3")
    oids = orders_preferring(sim, "w1", "w2", 3)
    for oid in oids:
        sim.submit(oid)
    assert all(sim.task(o, "payment").worker == "w1" for o in oids)
    sim.apply(sim.core.worker_lost("w1", now=sim.now, reason="connection closed"))
    return sim, oids


def test_a_lost_workers_tasks_go_to_their_next_home_while_it_has_room_and_none_is_stolen():
    sim, oids = three_on_w1(w2_slots=3)
    assert [sim.task(o, "payment").worker for o in oids] == ["w2", "w2", "w2"]
    assert sim.core.queue.home_load("w1") == 0


def test_an_idle_worker_steals_all_it_has_room_for_in_one_stimulus():
    sim, oids = three_on_w1(w2_slots=1)
    workers = sorted(sim.task(o, "payment").worker for o in oids)
    assert workers == ["w2", "w3", "w3"]
    assert len(sim.core.queue) == 0


def test_ready_tasks_queued_under_a_dead_workers_home_get_a_live_home():
    sim = Sim(workers=2, slots=1, prefetch=0)
    for i in range(6):
        sim.submit(f"o{i}")
    assert len(sim.core.queue) == 4 and sim.core.queue.home_load("w1") > 0
    sim.apply(sim.core.worker_lost("w1", now=sim.now, reason="gone"))
    assert sim.core.queue.home_load("w1") == 0
    # w1's own queued payment joins them: five wait for w2's one slot.
    assert sim.core.queue.home_load("w2") == len(sim.core.queue) == 5


def test_ready_tasks_queued_under_a_draining_workers_home_get_a_live_home():
    sim = Sim(workers=2, slots=1, prefetch=0)
    for i in range(6):
        sim.submit(f"o{i}")
    assert sim.core.queue.home_load("w1") > 0
    sim.apply(sim.core.drain_worker("w1", now=sim.now))
    assert sim.core.queue.home_load("w1") == 0
    assert sim.core.queue.home_load("w2") == len(sim.core.queue)


# ----------------------------------------------------------------------- time limits, exactly


def test_an_attempt_times_out_exactly_at_its_deadline_not_before():
    sim = Sim(workers=1, step_timeout=5.0, retry=RetryPolicy(max_retries=0))
    sim.submit("o1")
    sim.start_next("w1")
    sim.advance(4.75)
    assert sim.task("o1", "payment").state is S.RUNNING
    sim.advance(0.25)
    assert sim.now == 5.0 and sim.task("o1", "payment").state is S.FAILED


def test_a_timed_out_attempt_is_a_failure_of_its_worker_which_is_told_to_cancel_it():
    sim = Sim(workers=1, step_timeout=2.0,
              retry=RetryPolicy(max_retries=1, backoff_base=1.0, backoff_cap=1.0))
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    fx = sim.advance(2.0)
    assert fx.cancels == [d]
    worker = views.workers(sim.core)["w1"]
    assert (worker.failed, worker.done) == (1, 0)
    [failed] = sim.types(type="task_failed")
    assert (failed["worker_id"], failed["step"], failed["attempt"]) == ("w1", "payment", 1)
    [retrying] = sim.types(type="task_retrying")
    assert retrying["worker_id"] == "w1"
    sim.succeed(d, "late")
    [rejected] = sim.types(type="result_rejected")
    assert rejected["message"] == (
        "late success of o1:payment from w1 rejected (the attempt had timed out)")
    sim.advance(1.0)  # the retry is due
    sim.start_next("w1")
    sim.advance(2.0)  # and times out too: a second failure of the same worker
    assert (worker.failed, worker.done) == (2, 0)


def test_attempts_that_ended_before_their_deadline_are_not_timed_out_later():
    sim = Sim(workers=1, slots=2, step_timeout=5.0, retry=RetryPolicy(max_retries=0))
    sim.submit("o1")
    sim.submit("o2")
    first, _ = sim.start_next("w1")
    sim.now = 0.1
    second, _ = sim.start_next("w1")
    sim.now = 1.0
    sim.succeed(second)  # its deadline (5.1) stays queued behind the first one's (5.0)
    sim.core.heartbeat("w1", 6.0)
    sim.apply(sim.core.tick(now=6.0))  # one tick finds both deadlines due
    assert sim.task("o1", "payment").state is S.FAILED
    assert sim.task("o2", "payment").state is S.SUCCEEDED
    assert [e["order_id"] for e in sim.types(type="task_failed")] == ["o1"]


def test_a_timed_out_attempt_keeps_its_steps_limit_until_its_handler_returns():
    # An order id with a colon: the step is what follows the last one.
    sim = Sim(workers=1, slots=2, step_timeout=1.0, retry=RetryPolicy(max_retries=0),
              steps={"payment": StepPolicy(max_in_flight=1)})
    sim.submit("shop:1")
    d, _ = sim.start_next("w1")
    sim.submit("shop:2")
    waiting = sim.task("shop:2", "payment")
    assert waiting.state is S.READY
    sim.advance(1.0)  # timed out, but its handler still runs: the limit stays taken
    assert sim.task("shop:1", "payment").state is S.FAILED
    assert sim.core.limits.in_flight("payment") == 1 and waiting.state is S.READY
    sim.succeed(d, "late")  # the handler returns: the waiting payment goes at once
    assert sim.core.limits.in_flight("payment") == 1
    assert waiting.state is S.ASSIGNED
    assert views.held_by_limits(sim.core) == {}


# ------------------------------------------------------------------- per-step limits, released


def test_a_limited_step_on_a_lost_worker_moves_but_keeps_its_place_until_its_handler_ends():
    # Found by an attack: the lost worker may still be running the handler (a stall is not a
    # crash), so the step's limit stays taken; the task moves, and goes on once the handler
    # is known to have ended (here its late result, rejected by its lease).
    sim = Sim(workers=2, slots=2, steps={"payment": StepPolicy(max_in_flight=1)})
    sim.submit("o1")
    payment = sim.task("o1", "payment")
    holder = payment.worker
    other = next(w for w in sim.queues if w != holder)
    d, _ = sim.start_next(holder)
    sim.apply(sim.core.worker_lost(holder, now=sim.now, reason="gone"))
    assert payment.state is S.READY and sim.core.limits.in_flight("payment") == 1
    assert "is at its limit of 1 in flight" in views.wait_reason(sim.core, payment)
    sim.succeed(d, "late")
    assert sim.types(type="result_rejected")[-1]["worker_id"] == holder
    assert payment.state is S.ASSIGNED and payment.worker == other
    assert sim.core.limits.in_flight("payment") == 1


def test_a_poisoned_limited_step_keeps_its_place_until_its_lost_workers_handler_ends():
    sim = Sim(workers=2, slots=2, max_reassignments=0,
              steps={"payment": StepPolicy(max_in_flight=1)})
    sim.submit("o1")
    sim.submit("o2")
    first, second = sim.task("o1", "payment"), sim.task("o2", "payment")
    assert second.state is S.READY
    assert views.held_by_limits(sim.core) == {"payment": 1}
    lost = first.worker
    d, _ = sim.start_next(lost)
    sim.apply(sim.core.worker_lost(lost, now=sim.now, reason="gone"))
    assert first.state is S.FAILED  # poison; but its handler may still run on
    assert second.state is S.READY
    sim.apply(sim.core.attempts_ended(lost, [(d.task_id, d.lease)], now=sim.now))
    [ended] = sim.types(type="attempt_ended")
    assert (ended["order_id"], ended["step"], ended["worker_id"]) == ("o1", "payment", lost)
    assert second.state is S.ASSIGNED
    assert views.held_by_limits(sim.core) == {}


def test_each_finished_task_lets_exactly_one_held_task_of_its_step_go():
    sim = Sim(workers=1, slots=8, steps={"payment": StepPolicy(max_in_flight=2)})
    for i in range(5):
        sim.submit(f"o{i}")
    assert views.held_by_limits(sim.core) == {"payment": 3}
    d, _ = sim.start_next("w1")
    sim.succeed(d)
    assert views.held_by_limits(sim.core) == {"payment": 2}
    assert [sim.task(f"o{i}", "payment").state for i in range(5)] == [
        S.SUCCEEDED, S.ASSIGNED, S.ASSIGNED, S.READY, S.READY]
    assert sim.core.limits.in_flight("payment") == 2
    waiting = sim.task("o3", "payment")
    assert views.wait_reason(sim.core, waiting) == "step payment is at its limit of 2 in flight"


def test_held_tasks_of_a_cancelled_order_are_not_counted_or_released():
    sim = Sim(workers=1, slots=8, steps={"payment": StepPolicy(max_in_flight=1)})
    for i in range(3):
        sim.submit(f"o{i}")
    sim.apply(sim.core.cancel_order("o1", now=sim.now))
    assert views.held_by_limits(sim.core) == {"payment": 1}
    d, _ = sim.start_next("w1")
    sim.succeed(d)
    assert sim.task("o2", "payment").state is S.ASSIGNED
    assert sim.task("o1", "payment").state is S.CANCELLED
    assert views.held_by_limits(sim.core) == {}


def test_a_rate_limited_step_lets_waiting_tasks_go_as_tokens_come_back():
    sim = Sim(workers=1, slots=20, steps={"payment": StepPolicy(rate=4.0, burst=1)})
    for i in range(4):
        sim.submit(f"o{i}")

    def states():
        return [sim.task(f"o{i}", "payment").state is S.ASSIGNED for i in range(4)]

    assert states() == [True, False, False, False]
    assert views.held_by_limits(sim.core) == {"payment": 3}
    sim.advance(0.25)
    assert states() == [True, True, False, False]
    sim.advance(0.5)
    assert states() == [True, True, True, True]


# --------------------------------------------------------------------------- homes


def test_steps_that_waited_for_any_worker_get_the_first_one_as_their_home():
    sim = Sim(workers=0, slots=1, prefetch=0)
    for i in range(3):
        sim.submit(f"o{i}")
    assert sim.core.queue.home_load("") == 3
    sim.add_worker("w1")
    assert sim.core.queue.home_load("") == 0
    assert sim.core.queue.home_load("w1") == 2 and held(sim, "w1") == 1


def test_steps_that_waited_for_a_capable_worker_get_it_as_their_home_when_it_joins():
    sim = Sim(workers=1, slots=1, prefetch=0,
              steps={"payment": StepPolicy(tags=frozenset({"payments"}))})
    for i in range(3):
        sim.submit(f"o{i}")
    assert sim.core.queue.home_load("") == 3
    sim.add_worker("pay", tags={"payments"})
    assert sim.core.queue.home_load("") == 0 and sim.core.queue.home_load("pay") == 2


def test_queued_steps_are_homed_only_at_workers_that_can_run_them():
    sim = Sim(workers=0, slots=1, prefetch=0, load_epsilon=100.0)
    sim.add_worker("payer", steps={"payment"})
    sim.add_worker("packer", steps={"packing", "shipping"})
    for i in range(10):
        sim.submit(f"o{i}")
    assert sim.core.queue.home_load("payer") == 9
    assert sim.core.queue.home_load("packer") == 0


def test_queued_steps_count_towards_their_homes_load_so_a_popular_home_spills_over():
    sim = Sim(workers=0, slots=1, prefetch=0)
    sim.add_worker("w1")
    sim.add_worker("w2")
    oids = orders_preferring(sim, "w1", "w2", 12)
    for oid in oids:
        sim.submit(oid)
    # Each placement keeps w1 under ceil(1.25 * (placed + 1) / 2) of what it holds and what
    # waits for it: the rest goes to w2 although the ring prefers w1 for every one.
    w1 = held(sim, "w1") + sim.core.queue.home_load("w1")
    w2 = held(sim, "w2") + sim.core.queue.home_load("w2")
    assert (w1, w2) == (8, 4)


@pytest.mark.parametrize("worker_steps,tags,reason", [
    ({"packing"}, frozenset(), "no live worker can run step payment"),
    (None, frozenset({"pci", "eu"}),
     "no live worker can run step payment (it needs tags: eu, pci)"),
])
def test_a_step_no_live_worker_can_run_says_what_it_needs(worker_steps, tags, reason):
    sim = Sim(workers=0, steps={"payment": StepPolicy(tags=tags)})
    sim.add_worker("w1", steps=worker_steps)
    sim.submit("o1")
    assert views.wait_reason(sim.core, sim.task("o1", "payment")) == reason


def test_tokens_that_came_back_together_let_as_many_waiting_tasks_go_at_once():
    sim = Sim(workers=1, slots=20, steps={"payment": StepPolicy(rate=2.0, burst=2)})
    for i in range(5):
        sim.submit(f"o{i}")
    assert views.held_by_limits(sim.core) == {"payment": 3}
    sim.core.heartbeat("w1", 1.0)
    sim.apply(sim.core.tick(now=1.0))  # two tokens back in one go
    assert views.held_by_limits(sim.core) == {"payment": 1}
    assert sum(t.state is S.ASSIGNED for t in views.tasks(sim.core).values()) == 4


def test_a_finished_task_releases_only_as_many_held_tasks_as_its_limit_has_room_for():
    sim = Sim(workers=1, slots=2, prefetch=0, steps={"payment": StepPolicy(max_in_flight=1)})
    for i in range(3):
        sim.submit(f"o{i}")
    assert views.held_by_limits(sim.core) == {"payment": 2}
    d, _ = sim.start_next("w1")
    sim.succeed(d)  # o0's packing and one payment take the two slots
    assert sim.task("o0", "packing").state is S.ASSIGNED
    assert sim.task("o1", "payment").state is S.ASSIGNED
    waiting = sim.task("o2", "payment")
    assert views.held_by_limits(sim.core) == {"payment": 1}
    assert views.wait_reason(sim.core, waiting) == "step payment is at its limit of 1 in flight"


def test_a_thief_skips_a_cancelled_step_at_another_home_and_takes_the_next_one_there():
    sim = Sim(workers=0, slots=1, prefetch=0, load_epsilon=100.0,
              retry=RetryPolicy(max_retries=0))
    sim.add_worker("w1")
    sim.add_worker("w2")
    busy = orders_preferring(sim, "w2", "w1", 1)[0]
    first, cancelled, waiting = orders_preferring(sim, "w1", "w2", 3)
    for oid in (busy, first, cancelled, waiting):
        sim.submit(oid)
    assert sim.core.queue.home_load("w1") == 2  # both workers are busy
    sim.apply(sim.core.cancel_order(cancelled, now=sim.now))
    d, _ = sim.start_next("w2")
    sim.fail(d)  # w2 is free and has nothing at home: it steals from w1's
    assert sim.task(waiting, "payment").worker == "w2"


def test_tasks_moved_off_a_lost_worker_keep_the_order_in_which_their_orders_came():
    sim = Sim(workers=0, slots=2, prefetch=0)
    sim.add_worker("w1")
    sim.submit("b")  # first, though its name sorts last
    sim.submit("a")
    assert held(sim, "w1") == 2
    sim.add_worker("w2", slots=1)
    sim.apply(sim.core.worker_lost("w1", now=sim.now, reason="gone"))
    assert sim.task("b", "payment").worker == "w2"
    assert sim.task("a", "payment").state is S.READY


def test_a_popular_home_among_the_capable_workers_spills_over_to_the_next_capable_one():
    sim = Sim(workers=0, slots=1, prefetch=0,
              steps={"payment": StepPolicy(tags=frozenset({"pay"}))})
    sim.add_worker("w0")  # offers no tags: never a home for a payment
    sim.add_worker("p1", tags={"pay"})
    sim.add_worker("p2", tags={"pay"})
    oids = [f"o{i}" for i in range(2000)
            if [m for m in views.ring(sim.core).preference(f"o{i}") if m != "w0"][0] == "p1"][:12]
    for oid in oids:
        sim.submit(oid)
    load = {w: held(sim, w) + sim.core.queue.home_load(w) for w in ("w0", "p1", "p2")}
    assert load == {"w0": 0, "p1": 8, "p2": 4}


@pytest.mark.parametrize("payment_tags", [frozenset(), frozenset({"pay"})])
def test_steps_no_worker_can_run_yet_count_in_the_total_that_bounds_every_home(payment_tags):
    # Each order has two independent steps: an audit no live worker can run (it waits with
    # no home) and a payment. The waiting audits are part of the load the bound is taken
    # of, so a popular home keeps more payments than it would without them.
    sim = Sim(workers=0, slots=1, prefetch=0,
              steps={"audit": StepPolicy(tags=frozenset({"auditors"})),
                     "payment": StepPolicy(tags=payment_tags)},
              workflows={"pair": Workflow.define("pair", [("audit", []), ("payment", [])])})
    sim.add_worker("w0")
    sim.add_worker("p1", tags={"pay"})
    sim.add_worker("p2", tags={"pay"})
    capable = ("p1", "p2") if payment_tags else ("w0", "p1", "p2")
    oids = [f"o{i}" for i in range(5000)
            if [m for m in views.ring(sim.core).preference(f"o{i}")
                if m in capable][0] == "p1"][:12]
    for oid in oids:
        sim.submit(oid, workflow="pair")
    assert sim.core.queue.home_load("") == 12
    load = {w: held(sim, w) + sim.core.queue.home_load(w) for w in ("w0", "p1", "p2")}
    # Without the audits in the total, p1 would keep fewer and pass more on.
    assert load == ({"w0": 0, "p1": 11, "p2": 1} if payment_tags
                    else {"w0": 1, "p1": 10, "p2": 1})


def test_hung_handlers_are_named_by_their_own_attempt_while_the_step_runs_on_elsewhere():
    # The hung attempt is not the task's latest any more: its retry already runs on another
    # worker. An order id may hold a colon: the step is what follows the last one.
    sim = Sim(workers=0, slots=1, prefetch=0, step_timeout=5.0, abandon_after=1.0,
              retry=RetryPolicy(max_retries=3, backoff_base=0.001, backoff_cap=0.001))
    sim.add_worker("w1")
    sim.submit("shop:1")
    first, _ = sim.start_next("w1")
    sim.add_worker("w2")
    sim.advance(5.25)  # timed out on w1 and retried: the retry goes to w2
    second, ctx = sim.start_next("w2")
    assert (second.task_id, ctx["attempt"]) == (first.task_id, 2)
    sim.advance(0.75)  # w1's handler ignored its cancellation for 1 s
    [abandoned] = sim.types(type="thread_abandoned")
    assert (abandoned["order_id"], abandoned["step"], abandoned["attempt"]) == (
        "shop:1", "payment", 1)
    assert abandoned["message"].startswith("order shop:1 step payment attempt 1 ignored")


def test_each_worker_hung_in_a_handler_is_counted_and_named_with_the_attempt_that_hung():
    sim = Sim(workers=0, slots=1, prefetch=0, step_timeout=5.0, abandon_after=1.0,
              max_abandoned=0,
              retry=RetryPolicy(max_retries=3, backoff_base=0.001, backoff_cap=0.001))
    sim.add_worker("w1")
    sim.submit("o1")
    sim.start_next("w1")
    sim.add_worker("w2")
    sim.advance(5.25)
    sim.start_next("w2")  # attempt 2, while attempt 1 hangs on w1
    sim.advance(0.75)  # w1 may abandon no thread: it is declared dead instead
    sim.add_worker("w3")
    sim.advance(4.5, beating=("w2", "w3"))  # attempt 2 times out on w2 and is retried
    third, ctx = sim.start_next("w3")
    assert ctx["attempt"] == 3
    sim.advance(1.0, beating=("w2", "w3"))
    hung = sim.types(type="worker_hung")
    assert [(e["worker_id"], e["attempt"]) for e in hung] == [("w1", 1), ("w2", 2)]
    assert all(e["message"].startswith(f"worker {e['worker_id']}: the handler of order o1 "
                                       f"step payment attempt {e['attempt']} ignored")
               for e in hung)
    assert views.counters(sim.core)["workers_hung"] == 2


def test_every_attempt_past_its_time_limit_is_counted_as_timed_out():
    sim = Sim(workers=1, slots=2, prefetch=0, step_timeout=5.0, abandon_after=1.0)
    sim.submit("o1")
    sim.submit("o2")
    first, _ = sim.start_next("w1")
    second, _ = sim.start_next("w1")
    sim.advance(5.5)  # both past their limit
    sim.fail(first, "cancelled")
    sim.fail(second, "cancelled")
    assert views.counters(sim.core)["timed_out_attempts"] == 2
    assert views.stats(sim.core, sim.now)["timed_out_attempts"] == 2
    assert len(sim.types(type="task_failed")) == 2


def test_the_core_refuses_a_move_its_table_does_not_allow_and_changes_nothing():
    from scheduler.engine.states import InvalidTransition

    sim = Sim(workers=1)
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.succeed(d)
    task = sim.task("o1", "payment")
    task.history.extend([S.RETRY_WAIT, S.READY, S.ASSIGNED, S.RUNNING] * 4)  # a long life
    before = (list(task.history), views.stats(sim.core, sim.now)["tasks"])
    with pytest.raises(InvalidTransition) as refused:
        sim.core._move(task, S.RUNNING)  # a succeeded step never runs again
    error = refused.value
    assert (error.task_id, error.start, error.finish) == ("o1:payment", S.SUCCEEDED, S.RUNNING)
    assert error.history == before[0][-12:]  # its last twelve moves, for the log
    assert task.state is S.SUCCEEDED
    assert (task.history, views.stats(sim.core, sim.now)["tasks"]) == before
