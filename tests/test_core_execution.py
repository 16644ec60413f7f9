"""The execution model of the core, with a fake clock: slots, the ready queue (finish what
was started, priorities, oldest first), work stealing, time limits and per-step limits."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim import ORDER, Sim

from scheduler.engine.config import RetryPolicy, StepPolicy
from scheduler.engine.states import TaskState

S = TaskState


def held(sim: Sim, wid: str) -> int:
    return len(sim.core.workers[wid].tasks)


def submit(sim: Sim, oid: str, priority: int = 0) -> str:
    sim.apply(sim.core.submit(oid, dict(ORDER), now=sim.now, priority=priority))
    return oid


# --------------------------------------------------------------------------- slots


def test_a_worker_holds_at_most_its_slots_plus_the_prefetch_and_the_rest_waits_ready():
    sim = Sim(workers=1, slots=2, prefetch=1)
    for i in range(6):
        sim.submit(f"o{i}")
    assert held(sim, "w1") == 3
    waiting = [t for t in sim.core.tasks.values() if t.state is S.READY]
    assert len(waiting) == 3 and len(sim.core.queue) == 3
    assert sim.core.wait_reason(waiting[0]) == "waiting for a free slot"
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
    assert len(sim.core.workers["w1"].running) == 2


def test_a_worker_with_more_slots_gets_a_larger_share_of_the_ring():
    sim = Sim(workers=0, slots=8)
    sim.apply(sim.core.add_worker("big", now=0, slots=32))
    sim.apply(sim.core.add_worker("small", now=0, slots=8))
    shares = sim.core.ring.shares()
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
    finished = [o for o in sim.core.orders.values()
                if sim.core.order_status(o).value == "completed"]
    assert len(finished) >= 6  # the fast worker took the slow one's share too


def test_ready_tasks_wait_with_a_reason_while_no_worker_is_alive_and_run_when_one_joins():
    sim = Sim(workers=0)
    sim.submit("o1")
    task = sim.task("o1", "payment")
    assert task.state is S.READY and sim.core.wait_reason(task) == "no live worker"
    sim.add_worker("w1")
    assert task.state is S.ASSIGNED and sim.core.wait_reason(task) is None


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
    worker = sim.core.workers["w1"]
    assert worker.stuck == {(d.task_id, d.lease)} and sim.core.free_slots(worker) == 0
    assert sim.task("o2", "payment").state is S.READY  # the stuck slot takes nothing new
    sim.succeed(d, "late")  # the handler returns at last: rejected, and the slot is free
    rejected = sim.types(type="result_rejected")
    assert rejected and "had timed out" in rejected[-1]["message"]
    assert worker.stuck == set() and sim.task("o1", "payment").result is None
    sim.run_all()
    assert sim.task("o1", "payment").attempt == 2  # retried under the retry policy
    assert sim.core.order_status(sim.core.orders["o1"]).value == "completed"


def test_a_step_policy_sets_its_own_time_limit():
    sim = Sim(workers=1, step_timeout=60.0, steps={"payment": StepPolicy(timeout=2.0)},
              retry=RetryPolicy(max_retries=0))
    sim.submit("o1")
    sim.start_next("w1")
    fx = sim.advance(1.5)
    assert fx.wake_at is not None and fx.wake_at <= 2.0  # the timer wakes for the deadline
    sim.advance(1.0)
    order = sim.core.orders["o1"]
    assert sim.core.order_status(order).value == "failed"
    assert "timed out after 2 s" in sim.task("o1", "payment").error


def test_a_worker_that_dies_with_a_stuck_slot_frees_it():
    sim = Sim(workers=2, slots=1, step_timeout=1.0)
    sim.submit("o1")
    holder = sim.task("o1", "payment").worker
    sim.start_next(holder)
    sim.advance(1.2)
    assert sim.core.workers[holder].stuck
    sim.advance(2.5, beating=tuple(w for w in sim.queues if w != holder))
    assert sim.core.workers[holder].status == "dead" and not sim.core.workers[holder].stuck


# --------------------------------------------------------------------------- per-step limits


def test_a_step_at_its_concurrency_limit_waits_ready_with_the_reason_and_goes_when_one_ends():
    sim = Sim(workers=2, slots=4, steps={"payment": StepPolicy(max_in_flight=2)})
    for i in range(5):
        sim.submit(f"o{i}")
    payments = [sim.task(f"o{i}", "payment") for i in range(5)]
    assert sum(t.state is S.ASSIGNED for t in payments) == 2
    waiting = [t for t in payments if t.state is S.READY]
    assert len(waiting) == 3
    assert sim.core.wait_reason(waiting[0]) == "step payment is at its limit of 2 in flight"
    d, _ = sim.start_next(payments[0].worker)
    sim.succeed(d)
    assert sum(t.state is S.ASSIGNED for t in payments) == 2  # one more went
    assert sim.core.limits.in_flight("payment") == 2


def test_a_rate_limited_step_starts_at_most_its_rate_as_time_passes():
    sim = Sim(workers=1, slots=20, steps={"payment": StepPolicy(rate=2.0, burst=2)})
    for i in range(6):
        sim.submit(f"o{i}")
    assigned = [t for t in sim.core.tasks.values() if t.state is S.ASSIGNED]
    assert len(assigned) == 2  # the burst
    fx = sim.advance(0.0)
    assert fx.wake_at == 0.5  # one token every half second
    sim.advance(1.0)
    assigned = [t for t in sim.core.tasks.values() if t.state is S.ASSIGNED]
    assert len(assigned) == 4
    blocked = next(t for t in sim.core.tasks.values() if t.state is S.READY)
    assert "rate limit of 2 starts/s" in sim.core.wait_reason(blocked)


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
        in_flight = sum(1 for t in sim.core.tasks.values()
                        if t.step == "packing" and t.state in (S.ASSIGNED, S.RUNNING))
        assert in_flight <= limit
        for worker in sim.core.workers.values():
            assert len(worker.running) + len(worker.stuck) <= worker.slots
            assert len(worker.tasks) + len(worker.stuck) <= worker.slots + prefetch


# --------------------------------------------------------------------------- routing


def test_a_step_with_tags_waits_until_a_worker_offering_them_joins():
    sim = Sim(workers=2, steps={"payment": StepPolicy(tags=frozenset({"payments"}))})
    sim.submit("o1")
    payment = sim.task("o1", "payment")
    assert payment.state is S.READY
    assert sim.core.wait_reason(payment) == (
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
    held = {w: {sim.core.tasks[t].step for t in sim.core.workers[w].tasks}
            for w in ("payer", "packer")}
    assert held == {"payer": {"payment"}, "packer": set()}  # idle, yet it steals no payment
    sim.run_all()
    for order in sim.core.orders.values():
        assert {t.step: t.worker for t in order.tasks.values()} == {
            "payment": "payer", "packing": "packer", "shipping": "packer"}


def test_ready_tasks_no_live_worker_can_run_are_counted_by_step():
    sim = Sim(workers=1, steps={"payment": StepPolicy(tags=frozenset({"payments"}))})
    sim.submit("o1")
    sim.submit("o2")
    assert sim.core.unroutable() == {"payment": 2}
    sim.add_worker("pay", tags={"payments"})
    assert sim.core.unroutable() == {}
