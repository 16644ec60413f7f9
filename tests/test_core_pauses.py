"""Pausing a step, its circuit breaker and its limits changed while running, through the pure
core with a fake clock (tests/sim.py)."""

from __future__ import annotations

import pytest
from sim import Sim

from scheduler.engine import views
from scheduler.engine.config import BreakerPolicy, ConfigError, RetryPolicy, StepPolicy
from scheduler.engine.errors import Conflict, UnknownStep
from scheduler.engine.pauses import BREAKER, Pause
from scheduler.engine.states import TaskState

S = TaskState
BREAKER_POLICY = BreakerPolicy(share=0.5, min_attempts=4, window=60.0, probe_after=10.0)


def payments(sim: Sim, count: int) -> list:
    return [sim.task(f"o{i}", "payment") for i in range(count)]


def start_all(sim: Sim) -> list:
    """Start every dispatch waiting on every worker: the started dispatches."""
    started = []
    for wid in list(sim.queues):
        while True:
            d, _ = sim.start_next(wid)
            if d is None:
                break
            started.append(d)
    return started


def test_a_paused_step_holds_its_ready_tasks_with_the_reason_and_resuming_runs_them():
    sim = Sim(workers=1, slots=2, prefetch=0)
    sim.submit("o0")
    sim.submit("o1")
    running = start_all(sim)
    assert len(running) == 2
    sim.apply(sim.core.pause_step("payment", "alice", "gateway down", now=sim.now))
    for i in range(2, 5):
        sim.submit(f"o{i}")
    waiting = payments(sim, 5)[2:]
    assert all(t.state is S.READY for t in waiting)
    reason = views.wait_reason(sim.core, waiting[0])
    assert reason == ("payment is paused by alice since 1970-01-01 00:00:00 UTC: "
                      "gateway down")
    # Attempts on workers finish; the free slots take nothing of the paused step.
    for d in running:
        sim.succeed(d)
    assert all(t.state is S.READY for t in waiting)
    assert not [d for d in sim.queues["w1"] if d.task_id.endswith(":payment")]
    # The other steps of those orders go on.
    assert sim.task("o0", "packing").state is S.ASSIGNED
    sim.now = 5.0
    fx = sim.apply(sim.core.resume_step("payment", "bob", now=sim.now))
    resumed = [e for e in fx.events if e["type"] == "step_resumed"]
    assert resumed[0]["step"] == "payment" and resumed[0]["who"] == "bob"
    assert resumed[0]["paused_by"] == "alice" and resumed[0]["paused_for"] == 5.0
    assert resumed[0]["held"] == 3
    assert resumed[0]["message"] == ("step payment resumed by bob, paused 5 s by alice; "
                                     "3 ready task(s) go back in line")
    sim.run_all()
    assert all(sim.core.order_status(o).value == "completed"
               for o in views.orders(sim.core).values())
    assert all(t.attempt == 1 for t in payments(sim, 5))


def test_a_queued_task_of_a_paused_step_says_it_is_paused_even_before_a_slot_looks_at_it():
    sim = Sim(workers=0)
    sim.submit("o0")
    task = sim.task("o0", "payment")
    assert views.wait_reason(sim.core, task) == "no live worker"
    sim.apply(sim.core.pause_step("payment", "alice", "", now=0.0))
    assert views.wait_reason(sim.core, task).startswith("payment is paused by alice")
    assert views.wait_reason(sim.core, sim.task("o0", "packing")) is None  # pending, not ready


def test_a_retry_whose_backoff_ends_while_paused_waits_without_spending_an_attempt():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=1, backoff_base=0.1, backoff_cap=0.1))
    sim.submit("o0")
    d, _ = sim.start_next("w1")
    sim.apply(sim.core.pause_step("payment", "alice", "", now=sim.now))
    sim.fail(d, "gateway answered 503")  # the attempt in flight ends, and fails
    task = sim.task("o0", "payment")
    assert task.state is S.RETRY_WAIT and task.attempt == 1
    sim.advance(60.0)  # the backoff ended long ago
    assert task.state is S.READY and task.attempt == 1
    assert views.wait_reason(sim.core, task).startswith("payment is paused by alice")
    assert not sim.types(type="task_started", attempt=2)
    sim.apply(sim.core.resume_step("payment", "alice", now=sim.now))
    d, ctx = sim.start_next("w1")
    assert ctx["attempt"] == 2  # its last retry is still there
    sim.succeed(d)
    assert task.state is S.SUCCEEDED


def test_a_limited_step_pauses_and_resumes_within_its_limits():
    sim = Sim(workers=1, slots=8, steps={"payment": StepPolicy(max_in_flight=2)})
    sim.apply(sim.core.pause_step("payment", "alice", "", now=0.0))
    for i in range(5):
        sim.submit(f"o{i}")
    assert all(t.state is S.READY for t in payments(sim, 5))
    assert views.held_by_limits(sim.core) == {"payment": 5}
    sim.apply(sim.core.resume_step("payment", "alice", now=0.0))
    assert sum(t.state is S.ASSIGNED for t in payments(sim, 5)) == 2
    assert sim.core.limits.in_flight("payment") == 2


def test_pausing_and_resuming_name_the_step_and_refuse_what_makes_no_sense():
    sim = Sim(workers=1)
    with pytest.raises(UnknownStep, match="unknown step 'nope'"):
        sim.core.pause_step("nope", "alice", "", now=0.0)
    with pytest.raises(UnknownStep):
        sim.core.resume_step("nope", "alice", now=0.0)
    with pytest.raises(Conflict, match="step payment is not paused"):
        sim.core.resume_step("payment", "alice", now=0.0)
    fx = sim.apply(sim.core.pause_step("payment", "alice", "gateway down", now=0.0))
    (event,) = fx.events
    assert event["type"] == "step_paused" and event["step"] == "payment"
    assert event["message"] == "step payment paused by alice: gateway down"
    assert (event["who"], event["why"], event["by_breaker"]) == ("alice", "gateway down", False)
    with pytest.raises(Conflict, match="already paused"):
        sim.core.pause_step("payment", "bob", "", now=1.0)
    fx = sim.apply(sim.core.pause_step("packing", "bob", "", now=1.0))
    assert fx.events[0]["message"] == "step packing paused by bob"


def breaker_sim(**settings) -> Sim:
    settings.setdefault("retry", RetryPolicy(max_retries=3, backoff_base=0.1, backoff_cap=0.1))
    return Sim(workers=1, slots=8,
               steps={"payment": StepPolicy(breaker=BREAKER_POLICY)}, **settings)


def test_a_breaker_trips_on_a_failure_spike_and_a_probe_resumes_the_step():
    sim = breaker_sim()
    for i in range(6):
        sim.submit(f"o{i}")
    started = start_all(sim)
    assert len(started) == 6
    for d in started[:4]:
        sim.fail(d, "gateway answered 503")
    (trip,) = sim.types(type="breaker_tripped")
    assert trip["step"] == "payment" and trip["who"] == BREAKER and trip["by_breaker"]
    assert trip["message"].startswith("step payment paused by the circuit breaker: 4 of its "
                                      "last 4 attempts in 60 s failed with: gateway answered")
    # The two attempts still in flight finish (one fails, one succeeds): no evidence.
    sim.fail(started[4], "gateway answered 503")
    sim.succeed(started[5])
    assert "payment" in sim.core.limits.pauses
    sim.advance(5.0)  # backoffs over: ready, held, no attempt spent
    held = [t for t in payments(sim, 6) if t.state is S.READY]
    assert len(held) == 5 and all(t.attempt == 1 for t in held)
    assert views.wait_reason(sim.core, held[0]).startswith(
        "payment is paused by the circuit breaker since")
    fx = sim.advance(0.0)
    assert fx.wake_at == 10.0  # the probe's time
    sim.advance(5.0)
    probes = [d for d in start_all(sim) if d.task_id.endswith(":payment")]
    assert len(probes) == 1  # one probe only
    sim.succeed(probes[0])
    (resumed,) = sim.types(type="step_resumed")
    assert resumed["who"] == BREAKER and resumed["paused_by"] == BREAKER
    assert "after probe order" in resumed["message"] and "succeeded" in resumed["message"]
    sim.run_all()
    assert all(sim.core.order_status(o).value == "completed"
               for o in views.orders(sim.core).values())
    assert sorted(t.attempt for t in payments(sim, 6)) == [1, 2, 2, 2, 2, 2]


def test_a_failed_probe_keeps_the_step_paused_until_the_next_probe_succeeds():
    sim = breaker_sim()
    for i in range(4):
        sim.submit(f"o{i}")
    for d in start_all(sim):
        sim.fail(d, "gateway answered 503")
    sim.advance(10.0)
    (probe,) = start_all(sim)
    sim.fail(probe, "gateway answered 503")
    assert "payment" in sim.core.limits.pauses
    sim.advance(9.5)
    assert start_all(sim) == []
    sim.advance(0.5)
    (probe,) = start_all(sim)
    sim.succeed(probe)
    assert "payment" not in sim.core.limits.pauses


def test_resuming_a_tripped_step_by_hand_runs_its_tasks_at_once():
    sim = breaker_sim()
    for i in range(4):
        sim.submit(f"o{i}")
    for d in start_all(sim):
        sim.fail(d, "gateway answered 503")
    sim.advance(1.0)
    sim.apply(sim.core.resume_step("payment", "alice", now=sim.now))
    assert len(start_all(sim)) == 4


def test_a_step_without_a_breaker_fails_its_orders_instead():
    sim = Sim(workers=1, slots=8, retry=RetryPolicy(max_retries=0))
    for i in range(6):
        sim.submit(f"o{i}")
    for d in start_all(sim):
        sim.fail(d, "gateway answered 503")
    assert not sim.types(type="breaker_tripped")
    assert all(sim.core.order_status(o).value == "failed" for o in views.orders(sim.core).values())


def test_a_timed_out_attempt_counts_for_the_breaker():
    sim = breaker_sim(step_timeout=1.0)
    for i in range(4):
        sim.submit(f"o{i}")
    start_all(sim)
    sim.advance(1.5)
    assert len(sim.types(type="breaker_tripped")) == 1
    assert "timed out after 1 s" in sim.types(type="breaker_tripped")[0]["why"]


# ------------------------------------------------------------------ limits while running


def test_limiting_a_running_step_counts_its_attempts_on_workers_at_once():
    sim = Sim(workers=1, slots=8)
    for i in range(4):
        sim.submit(f"o{i}")
    running = start_all(sim)
    assert len(running) == 4
    fx = sim.apply(sim.core.set_limits("payment", "alice", now=0.0, max_in_flight=2, rate=None))
    (event,) = fx.events
    assert event["type"] == "step_limits_changed" and event["step"] == "payment"
    assert event["message"] == ("step payment limits set by alice: no limits → "
                                "at most 2 in flight")
    assert sim.core.limits.in_flight("payment") == 4
    assert sim.core.config.policy("payment").max_in_flight == 2
    sim.submit("o4")
    assert sim.task("o4", "payment").state is S.READY
    for d in running[:2]:
        sim.succeed(d)
    assert sim.task("o4", "payment").state is S.READY  # still 2 in flight
    sim.succeed(running[2])
    assert sim.task("o4", "payment").state is S.ASSIGNED


def test_raising_a_limit_lets_held_tasks_go_at_once():
    sim = Sim(workers=1, slots=8, steps={"payment": StepPolicy(max_in_flight=1, rate=5.0,
                                                               burst=5)})
    for i in range(3):
        sim.submit(f"o{i}")
    assert sum(t.state is S.ASSIGNED for t in payments(sim, 3)) == 1
    fx = sim.apply(sim.core.set_limits("payment", "alice", now=0.0, max_in_flight=None,
                                       rate=None))
    assert fx.events[0]["message"].endswith(
        "at most 1 in flight, 5 starts/s → no limits")
    assert all(t.state is S.ASSIGNED for t in payments(sim, 3))
    assert sim.core.config.policy("payment").burst is None


def test_a_rate_set_while_running_keeps_the_declared_burst():
    sim = Sim(workers=1, steps={"payment": StepPolicy(rate=5.0, burst=3)})
    sim.apply(sim.core.set_limits("payment", "a", now=0.0, max_in_flight=None, rate=2.0))
    assert sim.core.config.policy("payment").burst == 3


def test_limits_refuse_an_unknown_step_and_bad_values_changing_nothing():
    sim = Sim(workers=1)
    with pytest.raises(UnknownStep):
        sim.core.set_limits("nope", "a", now=0.0, max_in_flight=1, rate=None)
    with pytest.raises(ConfigError, match="max_in_flight must be an integer >= 1"):
        sim.core.set_limits("payment", "a", now=0.0, max_in_flight=0, rate=None)
    with pytest.raises(ConfigError, match="rate must be > 0"):
        sim.core.set_limits("payment", "a", now=0.0, max_in_flight=None, rate=-1.0)
    assert sim.core.config.policy("payment") == StepPolicy()
    assert views.control_view(sim.core, "payment")["limits"] is None


# ------------------------------------------------------------------ journal and restarts


def test_a_step_control_view_holds_its_pause_and_its_live_limits():
    sim = Sim(workers=1)
    assert views.control_view(sim.core, "payment") == {"step": "payment", "pause": None,
                                                "limits": None}
    sim.apply(sim.core.pause_step("payment", "alice", "down", now=3.0))
    sim.apply(sim.core.set_limits("payment", "alice", now=3.0, max_in_flight=5, rate=2.0))
    assert views.control_view(sim.core, "payment") == {
        "step": "payment",
        "pause": {"who": "alice", "since": 3.0, "why": "down", "by_breaker": False},
        "limits": {"max_in_flight": 5, "rate": 2.0, "burst": None},
    }


def test_restored_controls_pause_and_limit_a_fresh_core_before_its_orders_return():
    sim = Sim(workers=0, steps={"payment": StepPolicy(breaker=BREAKER_POLICY)})
    sim.core.restore_controls(
        [Pause("payment", BREAKER, 1.0, "why", by_breaker=True), Pause("gone", "a", 1.0)],
        {"packing": {"max_in_flight": 1, "rate": None, "burst": None},
         "gone": {"max_in_flight": 1, "rate": None, "burst": None}},
        now=100.0)
    assert sim.core.limits.pauses.get("payment").by_breaker
    assert sim.core.limits.pauses.get("gone") is None  # a step this app lacks
    assert sim.core.config.policy("packing").max_in_flight == 1
    assert "gone" not in sim.core.config.steps
    assert views.control_view(sim.core, "packing")["limits"]["max_in_flight"] == 1
    assert sim.core.limits.pauses.free_at("payment", 100.0) == 110.0


def test_step_views_list_every_step_with_its_limits_and_pause():
    sim = Sim(workers=0, steps={"payment": StepPolicy(max_in_flight=2,
                                                      breaker=BREAKER_POLICY)})
    sim.submit("o0")
    sim.apply(sim.core.pause_step("payment", "alice", "", now=0.0))
    listed = {v["name"]: v for v in views.steps(sim.core)}
    assert set(listed) == {"payment", "packing", "shipping", "invoice"}
    pay = listed["payment"]
    assert (pay["max_in_flight"], pay["rate"], pay["in_flight"], pay["breaker"]) == (
        2, None, 0, True)
    assert pay["ready"] == 1 and pay["held"] == 0
    assert pay["paused"]["who"] == "alice"
    assert pay["paused"]["reason"].startswith("payment is paused by alice since")
    assert listed["packing"]["paused"] is None and not listed["packing"]["breaker"]


def test_a_limit_set_while_running_counts_stuck_handlers_and_zombies_too():
    sim = Sim(workers=0, step_timeout=1.0, steps={"payment": StepPolicy(max_in_flight=5)})
    sim.add_worker("t1")
    sim.add_worker("p1", kind="process")
    for i in range(4):
        sim.submit(f"o{i}")
    started = start_all(sim)
    on_process = [d for d in started if d.worker_id == "p1"]
    on_thread = [d for d in started if d.worker_id == "t1"]
    assert on_process and on_thread
    sim.advance(1.2, beating=("t1",))  # time limits pass: t1's handlers are stuck
    assert views.workers(sim.core)["t1"].stuck
    sim.advance(3.0, beating=("t1",))  # p1 is declared dead: its attempts are zombies
    assert len(sim.core.zombies) >= 1
    sim.apply(sim.core.set_limits("payment", "a", now=sim.now, max_in_flight=None, rate=None))
    assert sim.core.limits.in_flight("payment") == 0
    # Limited again: everything that may still run counts (validate() checks it too).
    sim.apply(sim.core.set_limits("payment", "a", now=sim.now, max_in_flight=1, rate=None))
    core = sim.core
    on_workers = sum(1 for t in views.tasks(core).values() if t.state in (S.ASSIGNED, S.RUNNING))
    stuck = len(views.workers(core)["t1"].stuck | views.workers(core)["t1"].abandoned)
    assert stuck and len(core.zombies)
    assert core.limits.in_flight("payment") == on_workers + stuck + len(core.zombies)


def test_a_resume_says_how_long_the_step_was_paused_to_the_millisecond():
    sim = Sim(workers=1)
    sim.apply(sim.core.pause_step("payment", "alice", "", now=3.0))
    fx = sim.apply(sim.core.resume_step("payment", "bob", now=15.3456789))
    [resumed] = [e for e in fx.events if e["type"] == "step_resumed"]
    assert resumed["paused_for"] == 12.346
    assert "paused 12.346 s by alice" in resumed["message"]
    sim.apply(sim.core.pause_step("payment", "alice", "", now=20.0))
    fx = sim.apply(sim.core.resume_step("payment", "bob", now=20.0))  # at once
    [resumed] = [e for e in fx.events if e["type"] == "step_resumed"]
    assert resumed["paused_for"] == 0


def test_resuming_a_step_no_order_has_reached_holds_no_task():
    sim = Sim(workers=1)
    sim.apply(sim.core.pause_step("shipping", "alice", "", now=0.0))
    fx = sim.apply(sim.core.resume_step("shipping", "bob", now=1.0))
    [resumed] = [e for e in fx.events if e["type"] == "step_resumed"]
    assert resumed["held"] == 0 and resumed["message"].endswith("0 ready task(s) go back in line")
    [shipping] = [v for v in views.steps(sim.core) if v["name"] == "shipping"]
    assert shipping["ready"] == 0


def test_a_step_view_counts_its_attempts_in_flight_and_its_tasks_held_by_its_limits():
    sim = Sim(workers=1, slots=8, steps={"payment": StepPolicy(max_in_flight=1, rate=5.0,
                                                               burst=3)})
    sim.submit("o0")
    sim.submit("o1")
    [pay] = [v for v in views.steps(sim.core) if v["name"] == "payment"]
    assert (pay["in_flight"], pay["held"], pay["ready"]) == (1, 1, 1)
    assert (pay["max_in_flight"], pay["rate"], pay["burst"]) == (1, 5.0, 3)


def test_a_limit_change_names_who_set_it_and_what_it_set():
    sim = Sim(workers=1)
    fx = sim.apply(sim.core.set_limits("payment", "alice", now=0.0, max_in_flight=3, rate=2.5))
    [event] = fx.events
    assert (event["who"], event["max_in_flight"], event["rate"]) == ("alice", 3, 2.5)


def test_limiting_a_step_counts_its_own_attempts_only_even_of_an_order_id_with_a_colon():
    sim = Sim(workers=1, slots=8, prefetch=0, step_timeout=5.0, abandon_after=100.0,
              retry=RetryPolicy(max_retries=0), steps={"packing": StepPolicy(timeout=100.0)})
    sim.submit("o0")
    sim.submit("shop:1")
    first = start_all(sim)  # both payments
    sim.succeed(next(d for d in first if d.task_id == "o0:payment"))
    assert [d.task_id for d in start_all(sim)] == ["o0:packing"]  # on the worker
    sim.advance(5.0)  # shop:1's payment timed out; its handler still runs (stuck)
    assert views.workers(sim.core)["w1"].stuck == {("shop:1:payment", 2)}
    sim.apply(sim.core.set_limits("payment", "alice", now=sim.now, max_in_flight=1, rate=None))
    assert sim.core.limits.in_flight("payment") == 1  # the stuck one, not o0's packing


def test_restored_limits_keep_the_rest_of_a_steps_declared_policy():
    sim = Sim(workers=0, steps={"payment": StepPolicy(breaker=BREAKER_POLICY, timeout=7.0)})
    sim.core.restore_controls(
        [], {"payment": {"max_in_flight": 1, "rate": None, "burst": None}}, now=0.0)
    policy = sim.core.config.policy("payment")
    assert (policy.max_in_flight, policy.breaker, policy.timeout) == (1, BREAKER_POLICY, 7.0)


def test_lifting_the_limits_of_a_step_that_has_none_changes_nothing_and_says_so():
    sim = Sim(workers=1)
    fx = sim.apply(sim.core.set_limits("packing", "alice", now=0.0, max_in_flight=None,
                                       rate=None))
    [event] = fx.events
    assert event["message"] == "step packing limits set by alice: no limits → no limits"
    assert not sim.core.config.policy("packing").limited
