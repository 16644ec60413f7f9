"""What the core shows (engine/views.py): the numbers, workers and orders the shell serves.

Driven with the fake-clock Sim: each view is checked against what the stimuli made true.
"""

from __future__ import annotations

import dataclasses

from sim import ORDER, Sim

from scheduler.engine import views
from scheduler.engine.config import ClusterConfig, RetryPolicy, StepPolicy
from scheduler.engine.core import SchedulerCore
from scheduler.engine.events import EventHistory
from scheduler.engine.records import ResumePoint
from scheduler.engine.workflow import DEFAULT_WORKFLOWS, Workflow


def run_one(sim: Sim, worker: str, ok: bool = True) -> str:
    """Start the next task on `worker` and report it: its task id."""
    d, _ = sim.start_next(worker)
    assert d is not None
    if ok:
        sim.succeed(d)
    else:
        sim.fail(d)
    return d.task_id


def test_stats_count_retries_moves_by_reason_slots_and_statuses_as_they_happened():
    sim = Sim(workers=2, slots=2, prefetch=0,
              retry=RetryPolicy(max_retries=1, backoff_base=0.1, backoff_cap=0.1))
    for oid in ("a", "b", "c"):
        sim.submit(oid)
    holder = sim.task("a", "payment").worker
    other = "w2" if holder == "w1" else "w1"
    run_one(sim, holder, ok=False)                    # a failed attempt: one retry
    started, _ = sim.start_next(other)                # one running on the other worker
    assert started is not None
    stats = views.stats(sim.core, sim.now)
    assert stats["retries"] == 1 and stats["tasks"]["retry_wait"] == 1
    assert stats["slots"] == {"total": 4, "busy": 1, "stuck": 0, "abandoned": 0}
    assert stats["workers"] == {"alive": 2}
    assert stats["orders"]["in_progress"] + stats["orders"]["pending"] == 3
    assert stats["orders_total"] == 3
    assert stats["last_seq"] == sim.events[-1]["seq"]
    # The worker running a task dies: the task moves, counted by reason.
    sim.advance(2.5, beating=(holder,))
    stats = views.stats(sim.core, sim.now)
    assert stats["workers"] == {"alive": 1, "dead": 1}
    assert stats["reassignments"] >= 1
    assert stats["moves"] == stats["moves_by_reason"]["worker dead"] >= 1
    assert stats["moves_by_reason"]["drain"] == 0
    assert stats["slots"]["total"] == 2
    assert stats["moves"] == views.counters(sim.core)["moves"]
    assert stats["reassignments"] == views.counters(sim.core)["reassignments"]


def test_stats_count_drain_moves_apart_from_deaths():
    sim = Sim(workers=1, slots=1, prefetch=1)
    sim.submit("a")
    sim.submit("b")  # queued on w1 behind a (prefetch)
    sim.add_worker("w2", slots=1)
    sim.start_next("w1")
    sim.apply(sim.core.drain_worker("w1", now=sim.now))
    stats = views.stats(sim.core, sim.now)
    moved = [e for e in sim.events if e["type"] == "task_reassigned"]
    assert stats["moves_by_reason"] == {"worker dead": 0, "drain": len(moved)}
    assert stats["moves"] == len(moved) >= 1
    assert stats["workers"] == {"draining": 1, "alive": 1}
    assert stats["rejected_results"] == 0


def test_stats_show_completions_failures_throughput_and_the_time_on_the_wall():
    core = SchedulerCore(ClusterConfig(workers=0, seed=1, retry=RetryPolicy(max_retries=0)),
                         epoch_offset=1000.0)
    sim = Sim(workers=0)
    sim.core = core
    sim.add_worker("w1")
    sim.submit("ok")
    sim.run_all()
    sim.submit("bad")
    stats = views.stats(core, 0.0)
    assert stats["orders"]["completed"] == 1
    assert stats["throughput"] == round(1 / 60, 3)
    assert stats["now"] == 1000.0
    assert stats["rates"]["orders_per_s"] > 0
    d, _ = sim.start_next("w1")
    sim.fail(d)
    stats = views.stats(core, 0.0)
    assert stats["orders"]["failed"] == 1 and stats["tasks"]["failed"] == 1
    assert stats["progress"]["failed"] == 1 and stats["progress"]["completed"] == 1
    assert stats["steps"] == {}  # nothing unfinished
    assert stats["held_by_limits"] == {} and stats["unroutable"] == {}
    # A minute later the completion has left the window.
    assert views.stats(core, 61.0)["throughput"] == 0


def test_stats_show_held_and_unroutable_steps_and_suspect_workers():
    sim = Sim(workers=0, steps={"payment": StepPolicy(max_in_flight=1),
                                "packing": StepPolicy(tags=frozenset({"boxes"}))})
    sim.add_worker("w1", slots=4)
    sim.submit("a")
    sim.submit("b")
    stats = views.stats(sim.core, sim.now)
    assert stats["held_by_limits"] == {"payment": 1}
    run_one(sim, "w1")
    assert views.stats(sim.core, sim.now)["unroutable"] == {"packing": 1}
    # Two heartbeats missed: suspect (still alive to the core).
    late = sim.now + 2 * sim.core.config.heartbeat_interval + 0.01
    assert views.stats(sim.core, late)["workers"] == {"suspect": 1}
    assert views.worker_status(sim.core, views.workers(sim.core)["w1"], late) == "suspect"


def test_worker_views_say_what_each_worker_holds_runs_and_offers():
    core = SchedulerCore(ClusterConfig(workers=0, seed=1, prefetch=1), epoch_offset=500.0)
    sim = Sim(workers=0)
    sim.core = core
    sim.now = 2.0
    sim.add_worker("w1", slots=1, tags={"pay", "box"}, meta={"pid": 7})
    sim.add_worker("w2", slots=1, steps={"shipping"})
    sim.submit("a")
    sim.submit("b")
    sim.start_next("w1")
    sim.now = 2.25
    [w1, w2] = sorted(views.worker_views(core, sim.now), key=lambda v: v["id"])
    running = sorted(views.workers(core)["w1"].running)
    assert w1 == {
        "id": "w1", "kind": "thread", "status": "alive", "heartbeat_age": 0.25,
        "current_task": running[0], "running": running, "slots": 1, "steps": None,
        "tags": ["box", "pay"], "busy": 1, "queued": 1, "stuck": 0, "abandoned": 0,
        "tasks_done": 0, "tasks_failed": 0,
        "share": round(views.ring(core).shares()["w1"], 4), "joined_at": 502.0, "pid": 7,
    }
    assert w2["steps"] == ["shipping"] and w2["current_task"] is None and w2["busy"] == 0
    assert w2["queued"] == 0 and w2["tags"] == []
    assert views.membership(core, "w1") == "alive" and views.membership(core, "nope") is None
    assert views.loads(core) == {"w1": 2, "w2": 0}
    ring = views.ring_view(core)
    assert {arc[2] for arc in ring["arcs"]} == {"w1", "w2"}
    assert ring["shares"] == views.ring(core).shares()
    assert all(0.0 <= arc[0] <= arc[1] <= 1.0 for arc in ring["arcs"])


def test_order_views_list_newest_first_and_say_why_a_step_waits():
    sim = Sim(workers=0, steps={"payment": StepPolicy(tags=frozenset({"pay"}))})
    for oid in ("a", "b", "c"):
        sim.submit(oid)
    assert [o.id for o in views.newest_first(sim.core)] == ["c", "b", "a"]
    order = views.find_order(sim.core, "a")
    assert order is views.orders(sim.core)["a"] and views.find_order(sim.core, "z") is None
    view = views.order_view(sim.core, order, with_results=False)
    assert view["tasks"]["payment"]["waiting_for"] == "no live worker"
    assert view["tasks"]["packing"]["waiting_for"] is None and "result" not in view["tasks"][
        "payment"]
    sim.add_worker("w1")
    view = views.order_view(sim.core, order)
    assert view["tasks"]["payment"]["waiting_for"] == (
        "no live worker can run step payment (it needs tags: pay)")
    assert view["tasks"]["payment"]["result"] is None
    assert view == sim.core.order_record(order).view(
        True, {"payment": view["tasks"]["payment"]["waiting_for"]})


def test_failed_orders_name_the_step_its_error_and_when_newest_first():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=0))
    sim.core.epoch_offset = 100.0
    sim.submit("a")
    sim.submit("b")
    sim.submit("c")
    sim.now = 1.0
    d, _ = sim.start_next("w1")
    sim.fail(d, "declined")
    sim.now = 2.0
    run_one(sim, "w1")  # b's payment succeeds
    d, _ = sim.start_next("w1")
    while d is not None and not d.task_id.startswith("c:"):
        sim.succeed(d)
        d, _ = sim.start_next("w1")
    sim.fail(d, "gone")
    failed = views.failed_orders(sim.core)
    assert failed == [
        ("c", "payment", "gave up after 1 attempts: gone", 102.0),
        ("a", "payment", "gave up after 1 attempts: declined", 101.0),
    ]


def test_totals_are_what_a_restart_resumes_from():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=1, backoff_base=0.1, backoff_cap=0.1))
    sim.submit("a")
    run_one(sim, "w1", ok=False)
    totals = views.totals(sim.core)
    assert totals == {
        "counters": views.counters(sim.core),
        "orders_by_status": views.orders_by_status(sim.core),
        "tasks_by_state": views.tasks_by_state(sim.core),
        "seq": views.last_seq(sim.core),
        "order_number": views.order_number(sim.core),
        "lease_counter": views.lease_counter(sim.core),
    }
    assert totals["counters"]["retries"] == 1 and totals["order_number"] == 1
    assert totals["lease_counter"] == 1 and totals["seq"] == sim.events[-1]["seq"]
    totals["counters"]["retries"] = 99  # a copy: the core's own count is untouched
    assert views.counters(sim.core)["retries"] == 1
    core = SchedulerCore(ClusterConfig(workers=0))
    core.restore(ResumePoint(**views.totals(sim.core)), [], now=0.0)
    assert views.counters(core)["retries"] == 1
    assert views.order_number(core) == 1 and views.lease_counter(core) == 1


def test_events_after_and_their_bounds_follow_the_history():
    sim = Sim(workers=1, event_history=100)
    for i in range(250):
        sim.submit(f"o{i}")
    first, last = views.event_bounds(sim.core)
    assert last == sim.events[-1]["seq"] == views.last_seq(sim.core)
    assert first > 1  # the oldest were trimmed
    assert [e["seq"] for e in views.events_after(sim.core, last - 2)] == [last - 1, last]
    assert [e["seq"] for e in views.events_after(sim.core, first - 1, limit=1)] == [first]


def test_workflows_idempotency_and_active_orders_are_shown_as_they_are():
    pair = Workflow.define("pair", [("audit", []), ("payment", [])])
    core = SchedulerCore(ClusterConfig(workers=0), {**DEFAULT_WORKFLOWS, "pair": pair})
    assert views.workflow_names(core) == sorted([*DEFAULT_WORKFLOWS, "pair"])
    assert views.workflows(core)["pair"] is pair
    core.submit("o1", dict(ORDER), now=0.0, idempotency_key="k1")
    core.submit("o2", dict(ORDER), now=0.0, workflow="pair")
    assert views.idempotency_owner(core, "k1") == "o1"
    assert views.idempotency_owner(core, "k2") is None
    assert views.idempotency_keys(core) == ["k1"]
    assert views.active_orders(core) == 2
    assert views.adopted_out_of_order(core) is False
    assert set(views.tasks(core)) == {f"o1:{s}" for s in DEFAULT_WORKFLOWS["ecommerce"].steps
                                      } | {"o2:audit", "o2:payment"}
    assert views.progress(core).stages["queued"] == 2


def test_an_order_brought_back_out_of_order_is_still_listed_newest_first():
    sim = Sim(workers=1)
    for oid in ("a", "b", "c"):
        sim.submit(oid)
    sim.run_all()
    records = {o.id: sim.core.order_record(o) for o in views.orders(sim.core).values()}
    core = SchedulerCore(ClusterConfig(workers=0))
    core.restore(ResumePoint(**views.totals(sim.core)), [records["b"], records["c"]], now=0.0)
    core.adopt(records["a"])  # the oldest comes back last
    assert list(views.orders(core)) == ["b", "c", "a"]
    assert views.adopted_out_of_order(core) is True
    assert [o.id for o in views.newest_first(core)] == ["c", "b", "a"]


def test_the_views_round_times_to_the_millisecond_and_arcs_to_five_places():
    core = SchedulerCore(ClusterConfig(workers=0, seed=1), epoch_offset=500.00049)
    core.add_worker("w1", now=2.0)
    core.add_worker("w2", now=2.0)
    core.tick(now=2.0)
    core.worker_lost("w2", now=2.0, reason="gone")
    [w1, w2] = sorted(views.worker_views(core, 2.12345), key=lambda v: v["id"])
    assert (w1["joined_at"], w1["heartbeat_age"]) == (502.0, 0.123)
    assert w2["status"] == "dead" and w2["share"] == 0.0  # off the ring: no share
    assert w1["share"] == 1.0
    assert views.stats(core, 2.12345)["now"] == 502.124
    arcs = views.ring_view(core)["arcs"]
    assert arcs and all(round(x, 5) == x for a, b, _ in arcs for x in (a, b))
    assert any(round(x, 4) != x for a, b, _ in arcs for x in (a, b))


def test_stats_sum_stuck_and_abandoned_slots_over_every_live_worker():
    sim = Sim(workers=2, slots=1, prefetch=0, step_timeout=5.0, abandon_after=1.0,
              retry=RetryPolicy(max_retries=3, backoff_base=0.001, backoff_cap=0.001))
    sim.submit("o1")
    sim.submit("o2")
    assert sim.start_next("w1")[0] is not None and sim.start_next("w2")[0] is not None
    sim.advance(5.0)  # both timed out and stuck: their handlers have not returned
    stats = views.stats(sim.core, sim.now)
    assert stats["slots"] == {"total": 2, "busy": 0, "stuck": 2, "abandoned": 0}
    sim.advance(1.0)  # past the grace: both threads abandoned, each slot serves again
    stats = views.stats(sim.core, sim.now)
    assert stats["slots"] == {"total": 2, "busy": 0, "stuck": 0, "abandoned": 2}
    assert stats["abandoned_threads"] == 2 == views.counters(sim.core)["abandoned_threads"]
    assert stats["workers_hung"] == 0 == views.counters(sim.core)["workers_hung"]


def test_stats_name_the_paused_steps_and_workers_show_when_they_joined_to_the_millisecond():
    sim = Sim(workers=0)
    sim.core.epoch_offset = 1000.0
    sim.now = 2.3456789
    sim.add_worker("w1")
    [worker] = views.worker_views(sim.core, sim.now)
    assert worker["joined_at"] == 1002.346
    sim.apply(sim.core.pause_step("payment", "alice", "gateway down", now=sim.now))
    paused = views.stats(sim.core, sim.now)["paused"]
    assert list(paused) == ["payment"] and paused["payment"]["who"] == "alice"


def test_a_failed_order_whose_finish_time_the_journal_lost_is_still_listed():
    sim = Sim(workers=1, retry=RetryPolicy(max_retries=0))
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.fail(d, "declined")
    [record] = [dataclasses.replace(sim.core.order_record(o, with_events=True),
                                    finished_at=None)
                for o in views.orders(sim.core).values()]
    core = SchedulerCore(ClusterConfig(workers=0, seed=7), epoch_offset=500.0)
    core.restore(ResumePoint(seq=views.last_seq(sim.core), order_number=1,
                             lease_counter=views.lease_counter(sim.core)), [record], now=0.0)
    assert views.failed_orders(core) == [
        ("o1", "payment", "gave up after 1 attempts: declined", 500.0)]  # at the epoch


def test_the_event_history_keeps_at_least_its_cap_and_trims_in_chunks_to_the_newest():
    history = EventHistory(cap=10)
    history.extend([{"seq": s} for s in range(1, 16)])
    assert history.first_seq == 1 and history.last_seq == 15  # under twice the cap: all kept
    history.extend([{"seq": s} for s in range(16, 41)])  # past it, in one go
    assert [e["seq"] for e in history.after(0)] == list(range(31, 41))
