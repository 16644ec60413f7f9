"""A step's max_in_flight holds across stalled and dead workers and restarts: an attempt counts
until its worker confirms that it ended or it can no longer be running (engine/zombies.py).
Pure core, fake clock."""

from __future__ import annotations

import dataclasses

import pytest
from sim import Sim

from scheduler.engine import views
from scheduler.engine.config import ClusterConfig, RetryPolicy, StepPolicy
from scheduler.engine.core import SchedulerCore
from scheduler.engine.records import ResumePoint
from scheduler.engine.states import TaskState
from scheduler.engine.zombies import Zombie, Zombies

S = TaskState
OFFSET = 1_700_000_000.0
LIMIT = {"payment": StepPolicy(max_in_flight=4)}


def started(sim: Sim, wid: str, count: int) -> list:
    out = []
    for _ in range(count):
        d, _ = sim.start_next(wid)
        assert d is not None
        out.append(d)
    return out


def payments_on_workers(core: SchedulerCore) -> int:
    return sum(1 for t in views.tasks(core).values() if t.step == "payment"
               and t.state in (S.ASSIGNED, S.RUNNING))


def restarted(old: SchedulerCore, now: float, **settings) -> SchedulerCore:
    """A new server's core on what the old one's journal holds (every event, every row)."""
    settings.setdefault("seed", 7)
    core = SchedulerCore(ClusterConfig(workers=0, **settings), epoch_offset=OFFSET)
    point = ResumePoint(**views.totals(old))
    records = [old.order_record(o, with_events=True) for o in views.orders(old).values()]
    core.restore(point, records, now=now)
    core.validate()
    return core


# ------------------------------------------------------------------ a stalled worker


def test_a_stalled_worker_declared_dead_keeps_its_running_payments_counted_until_their_bound():
    # Found by an attack: limit 4, a worker stalled past the heartbeat timeout kept running
    # its 4 payments while the server started 4 more elsewhere (peak 6-7 at once).
    sim = Sim(workers=0, slots=4, prefetch=0, steps=LIMIT, step_timeout=10.0, zombie_grace=5.0)
    sim.add_worker("p-stalled", kind="process")
    for i in range(8):
        sim.submit(f"o{i}")
    running = started(sim, "p-stalled", 4)
    sim.add_worker("p-healthy", kind="process")
    assert payments_on_workers(sim.core) == 4 and not sim.queues["p-healthy"]
    sim.advance(3.0, beating=("p-healthy",))  # p-stalled is silent: declared dead
    assert views.workers(sim.core)["p-stalled"].status == "dead"
    [death] = sim.types(type="worker_dead")
    assert "4 attempt(s) it may still be running keep their place" in death["message"]
    # Its 4 payments moved (progress goes on) but none starts: the limit is still taken.
    assert payments_on_workers(sim.core) == 0
    assert sim.core.limits.in_flight("payment") == 4
    assert views.held_by_limits(sim.core) == {"payment": 8}
    # The bound: the attempts' time limit (10 s from their start at 0) plus the grace.
    sim.advance(14.9 - sim.now, beating=("p-healthy",))
    assert payments_on_workers(sim.core) == 0
    sim.advance(0.2, beating=("p-healthy",))
    ended = sim.types(type="attempt_ended")
    assert sorted(e["order_id"] for e in ended) == sorted(d.task_id.split(":")[0]
                                                           for d in running)
    assert all(e["worker_id"] == "p-stalled" for e in ended)
    assert payments_on_workers(sim.core) == 4  # now, and no more than the limit
    assert sim.core.limits.in_flight("payment") == 4


def test_each_late_result_of_a_dead_worker_frees_exactly_one_place_at_once():
    sim = Sim(workers=0, slots=4, prefetch=0, steps=LIMIT, step_timeout=10.0, zombie_grace=5.0)
    sim.add_worker("p-stalled", kind="process")
    for i in range(8):
        sim.submit(f"o{i}")
    running = started(sim, "p-stalled", 4)
    sim.add_worker("p-healthy", kind="process")
    sim.advance(3.0, beating=("p-healthy",))
    assert payments_on_workers(sim.core) == 0
    sim.fail(running[0], "cancelled")  # told it is dead, it stopped a handler: rejected
    [rejected] = sim.types(type="result_rejected")
    assert "no longer counts towards step payment's limit" in rejected["message"]
    assert payments_on_workers(sim.core) == 1
    for d in running[1:]:
        sim.succeed(d, "late")
    assert payments_on_workers(sim.core) == 4
    assert sim.core.limits.in_flight("payment") == 4 and not sim.core.zombies


def test_a_stuck_attempt_of_a_worker_declared_dead_stays_counted_until_its_bound():
    sim = Sim(workers=0, slots=2, prefetch=0, steps={"payment": StepPolicy(max_in_flight=1)},
              step_timeout=1.0, zombie_grace=4.0)
    sim.add_worker("p-1", kind="process")
    sim.submit("o1")
    sim.submit("o2")
    [d] = started(sim, "p-1", 1)
    sim.advance(1.0)  # timed out: its handler ignores it (stuck), the limit stays taken
    assert views.workers(sim.core)["p-1"].stuck
    sim.add_worker("p-2", kind="process")
    sim.advance(2.5, beating=("p-2",))  # p-1 dies: its stuck attempt becomes a zombie
    assert views.workers(sim.core)["p-1"].status == "dead" and len(sim.core.zombies) == 1
    waiting = [t for t in (sim.task("o1", "payment"), sim.task("o2", "payment"))
               if t.state is S.READY]
    assert waiting and sim.core.limits.in_flight("payment") == 1
    death_at = next(e for e in sim.types(type="worker_dead"))["ts"]
    sim.advance(death_at + 3.9 - sim.now, beating=("p-2",))
    assert payments_on_workers(sim.core) == 0
    sim.advance(0.3, beating=("p-2",))
    assert payments_on_workers(sim.core) == 1 and not sim.core.zombies
    assert sim.core.limits.in_flight("payment") == 1


def test_a_thread_workers_zombie_has_no_bound_and_ends_when_its_handler_returns():
    sim = Sim(workers=1, slots=1, prefetch=0, steps={"payment": StepPolicy(max_in_flight=1)},
              step_timeout=1.0, zombie_grace=1.0)
    sim.submit("o1")
    [d] = started(sim, "w1", 1)
    sim.add_worker("w2")
    sim.advance(60.0, beating=("w2",))  # a killed thread worker: its thread still runs
    assert views.workers(sim.core)["w1"].status == "dead"
    assert payments_on_workers(sim.core) == 0 and len(sim.core.zombies) == 1
    sim.apply(sim.core.attempts_ended("w1", [(d.task_id, d.lease)], now=sim.now))
    assert payments_on_workers(sim.core) == 1 and not sim.core.zombies


def test_a_running_payment_of_a_cancelled_order_keeps_its_place_until_its_handler_returns():
    sim = Sim(workers=1, slots=4, steps={"payment": StepPolicy(max_in_flight=1)})
    sim.submit("o1")
    sim.submit("o2")
    [d] = started(sim, "w1", 1)
    sim.apply(sim.core.cancel_order("o1", now=sim.now))
    assert sim.task("o2", "payment").state is S.READY
    assert sim.core.limits.in_flight("payment") == 1
    sim.succeed(d, "charged anyway")  # rejected: the order was cancelled; the handler ended
    assert sim.task("o2", "payment").state is S.ASSIGNED


def test_a_rejoining_process_confirms_what_it_no_longer_runs_and_what_it_still_runs():
    sim = Sim(workers=0, slots=4, prefetch=0, steps=LIMIT, step_timeout=30.0)
    sim.add_worker("p-1", kind="process")
    for i in range(6):
        sim.submit(f"o{i}")
    running = started(sim, "p-1", 4)
    sim.add_worker("p-2", kind="process")
    sim.advance(3.0, beating=("p-2",))
    assert payments_on_workers(sim.core) == 0
    # p-1's process registers again: it still runs two of them.
    still = [("p-1", d.task_id, d.lease) for d in running[:2]]
    sim.apply(sim.core.workers_report(["p-1"], still, now=sim.now))
    assert len(sim.types(type="attempt_ended")) == 2
    assert payments_on_workers(sim.core) == 2
    sim.apply(sim.core.workers_report(["p-1"], [], now=sim.now))
    assert payments_on_workers(sim.core) == 4 and not sim.core.zombies


# ------------------------------------------------------------------ a restart


def test_a_restarted_server_counts_what_the_old_one_started_until_workers_report_it_ended():
    # Found by an attack: after a SIGKILL and restart the count started from zero while the
    # old handlers still ran (peak 8 with a limit of 4; 4 payments ran twice).
    sim = Sim(workers=0, slots=4, prefetch=0, steps=LIMIT, step_timeout=30.0)
    sim.core.epoch_offset = OFFSET
    sim.add_worker("p-old", kind="process")
    for i in range(8):
        sim.submit(f"o{i}")
    running = started(sim, "p-old", 4)
    core = restarted(sim.core, now=1.0, steps=LIMIT, step_timeout=30.0, zombie_grace=5.0,
                     heartbeat_timeout=2.0)
    [restart] = [e for e in views.events_after(core, views.last_seq(sim.core))
                  if e["type"] == "server_restarted"]
    assert restart["unconfirmed"] == 4
    assert len(core.zombies) == 4 and core.limits.in_flight("payment") == 4
    core.add_worker("p-new", kind="process", now=1.0)
    core.validate()
    assert payments_on_workers(core) == 0  # held: the old handlers may still run
    # The old worker's process registers again: two of them still run.
    still = [("p-old", d.task_id, d.lease) for d in running[:2]]
    core.workers_report(["p-old"], still, now=2.0)
    core.heartbeat("p-new", 4.9)
    core.tick(now=4.9)  # the hold after a restart (2 x the heartbeat timeout) is not over
    assert payments_on_workers(core) == 0
    core.heartbeat("p-new", 5.1)
    core.tick(now=5.1)
    assert payments_on_workers(core) == 2  # never more than the limit, the 2 zombies with
    core.validate()
    core.workers_report(["p-old"], [], now=6.0)  # they ended
    assert payments_on_workers(core) == 4 and not core.zombies
    core.validate()


def test_attempts_the_old_server_started_end_by_their_bound_if_no_worker_reports():
    sim = Sim(workers=0, slots=4, prefetch=0, steps=LIMIT, step_timeout=10.0)
    sim.core.epoch_offset = OFFSET
    sim.add_worker("p-old", kind="process")
    for i in range(4):
        sim.submit(f"o{i}")
    sim.now = 2.0
    started(sim, "p-old", 3)  # started at 2.0 (core time of the old server): limit ends at 12
    sim.now = 4.0
    started(sim, "p-old", 1)  # ends at 14
    # The new server's clock starts elsewhere; only wall time is shared.
    core = SchedulerCore(ClusterConfig(workers=0, seed=7, steps=LIMIT, step_timeout=10.0,
                                       zombie_grace=5.0, heartbeat_timeout=1.0),
                         epoch_offset=OFFSET - 100.0)
    point = ResumePoint(seq=views.last_seq(sim.core), order_number=4,
                        lease_counter=views.lease_counter(sim.core))
    core.restore(point, [sim.core.order_record(o, with_events=True)
                         for o in views.orders(sim.core).values()], now=104.0)
    core.add_worker("p-new", kind="process", now=104.0)
    assert len(core.zombies) == 4
    # Bound: the time limit or the restart, whichever is later, plus the grace (a worker
    # learns that its id is dead here only once it is back).
    core.heartbeat("p-new", 116.9)
    core.tick(now=116.9)
    assert payments_on_workers(core) == 0
    core.heartbeat("p-new", 117.0)
    core.tick(now=117.0)
    assert payments_on_workers(core) == 3
    core.heartbeat("p-new", 119.0)
    core.tick(now=119.0)
    assert payments_on_workers(core) == 4 and not core.zombies
    assert {e["reason"] for e in views.events_after(core, 0) if e["type"] == "attempt_ended"} == {
        "bound"}
    core.validate()


def test_a_restart_soon_after_another_does_not_bound_the_attempts_it_inherits_again():
    # Found in the chaos --ha run: a leader's 4 payments in flight when it was paused were
    # inherited by the next leader (bound: that takeover plus the grace), killed 0.5 s later,
    # and inherited again by the one after it with a new bound; 4 of 4 places, so no order
    # moved for 10 s under the third leader, 20 s after those attempts' time limit.
    sim = Sim(workers=0, slots=4, prefetch=0, steps=LIMIT, step_timeout=2.0)
    sim.core.epoch_offset = OFFSET
    sim.add_worker("p-old", kind="process")  # a worker process that died with its server
    for i in range(6):
        sim.submit(f"o{i}")
    started(sim, "p-old", 4)  # at 0: time limit 2
    settings = {"steps": LIMIT, "step_timeout": 2.0, "zombie_grace": 10.0,
                "heartbeat_timeout": 1.0}
    first = restarted(sim.core, now=3.0, **settings)  # wrote them off: bound 3 + 10
    assert sorted(z.bound for z in first.zombies) == [13.0] * 4
    second = restarted(first, now=6.0, **settings)  # before that bound
    assert sorted(z.bound for z in second.zombies) == [13.0] * 4
    second.add_worker("p-new", kind="process", now=6.0)
    second.heartbeat("p-new", 12.9)
    second.tick(now=12.9)  # its own hold (2 s) is over, the places are not
    assert payments_on_workers(second) == 0
    second.heartbeat("p-new", 13.0)
    second.tick(now=13.0)
    assert payments_on_workers(second) == 4 and not second.zombies
    second.validate()
    # A restart on the same journal past that bound inherits none of them.
    third = restarted(first, now=14.0, **settings)
    assert not third.zombies and third.limits.in_flight("payment") == 0


def test_attempts_that_ended_before_the_restart_are_not_inherited():
    sim = Sim(workers=0, slots=4, prefetch=0, steps=LIMIT, step_timeout=10.0)
    sim.core.epoch_offset = OFFSET
    sim.add_worker("p-old", kind="process")
    for i in range(3):
        sim.submit(f"o{i}")
    a, b, c = started(sim, "p-old", 3)
    sim.succeed(a)
    sim.fail(b, "gateway said no")
    core = restarted(sim.core, now=1.0, steps=LIMIT, step_timeout=10.0)
    assert [z.task_id for z in core.zombies] == [c.task_id]


def test_a_rate_limited_step_starts_with_an_empty_bucket_after_a_restart():
    steps = {"payment": StepPolicy(rate=2.0, burst=4)}
    sim = Sim(workers=1, slots=8, steps=steps)
    sim.submit("o0")
    core = restarted(sim.core, now=10.0, steps=steps)
    assert core.limits.room("payment", 10.0) == 0  # the old server may have spent it all
    assert core.limits.room("payment", 10.5) == 1
    assert core.limits.room("payment", 12.0) == 4


def test_a_first_start_on_an_empty_journal_holds_nothing():
    core = SchedulerCore(ClusterConfig(workers=0, steps=LIMIT))
    core.restore(ResumePoint(seq=0, order_number=0, lease_counter=0), [], now=0.0)
    assert core.limits.room("payment", 0.0) == 4


# ------------------------------------------------------------------ the registry


def test_a_zombie_of_unknown_lease_matches_any_lease_and_bounds_come_out_in_order():
    zombies = Zombies()
    assert zombies.add(Zombie("p-1", "o1:payment", 0, "payment", 1, None, 9.0))
    assert zombies.add(Zombie("p-1", "o2:payment", 7, "payment", 1, None, 5.0))
    assert not zombies.add(Zombie("p-1", "o1:payment", 3, "payment", 1, None, 12.0))
    assert zombies.find("p-1", "o1:payment", 42) is not None
    assert zombies.find("p-2", "o1:payment", 42) is None
    assert zombies.next_bound() == 5.0
    assert zombies.expired(4.9) == []
    assert [z.task_id for z in zombies.expired(12.0)] == ["o2:payment", "o1:payment"]
    assert len(zombies) == 0 and zombies.next_bound() is None


@pytest.mark.parametrize("field,value", [("zombie_grace", -1.0), ("restart_hold", -0.5)])
def test_negative_graces_are_refused_by_name(field, value):
    from scheduler.engine.config import ConfigError

    with pytest.raises(ConfigError, match=field):
        ClusterConfig(**{field: value})


# ------------------------------------------------------------------ what a journal shows

PAY = {"payment": StepPolicy(max_in_flight=4, timeout=30.0)}  # its own time limit


def record_showing(events: list[dict]):
    """Order o0 as a journal holds it (payment queued), with `events` as its story."""
    sim = Sim(workers=0, steps=PAY)
    sim.submit("o0")
    record = sim.core.order_record(views.orders(sim.core)["o0"], with_events=True)
    return dataclasses.replace(record, events=tuple(events))


def event(kind: str, worker: str, attempt: int, at: float, step: str = "payment", **extra):
    return {"type": kind, "step": step, "worker_id": worker, "attempt": attempt,
            "ts": OFFSET + at, **extra}


def inherited(events: list[dict], now: float) -> list[tuple]:
    """The zombies a restart at `now` keeps from `events`, as (worker, attempt, lease,
    deadline, bound)."""
    core = SchedulerCore(ClusterConfig(workers=0, steps=PAY, zombie_grace=10.0),
                         epoch_offset=OFFSET)
    core.restore(ResumePoint(seq=1000, order_number=1), [record_showing(events)], now=now)
    assert core.limits.in_flight("payment") == len(core.zombies)
    return sorted((z.worker_id, z.attempt, z.lease, z.deadline, z.bound) for z in core.zombies)


def test_an_inherited_attempt_ends_with_a_failure_it_reported_but_not_with_a_verdict():
    events = [
        event("task_started", "p-other", 1, 0.0, step="packing"),  # a step without a limit
        event("task_started", "p-plain", 1, 1.0),
        event("task_failed", "p-plain", 1, 2.0),  # its handler said so: it ended
        event("task_started", "p-slow", 2, 3.0),
        event("task_failed", "p-slow", 2, 33.0, timed_out=True),  # the server's verdict
        event("task_started", "p-poison", 3, 34.0),
        event("task_failed", "p-poison", 3, 35.0, poison=True),  # its worker died under it
    ]
    # The time limit is the step's own (30 s); the bound is the later of it and the
    # restart (at 40), plus the grace.
    assert inherited(events, now=40.0) == [
        ("p-poison", 3, 0, 64.0, 74.0),
        ("p-slow", 2, 0, 33.0, 50.0),
    ]


def test_an_attempt_two_restarts_wrote_off_is_bounded_from_the_first_of_them():
    events = [
        event("task_started", "p-1", 1, 100.0),  # time limit at 130
        {"type": "task_recovered", "step": "packing", "worker_id": None, "attempt": 0,
         "ts": OFFSET + 125.0},  # a restart wrote it off at 125 ...
        {"type": "task_recovered", "step": "packing", "worker_id": None, "attempt": 0,
         "ts": OFFSET + 138.0},  # ... and another at 138: no news to the worker
    ]
    assert inherited(events, now=139.0) == [("p-1", 1, 0, 130.0, 140.0)]
    assert inherited(events, now=140.0) == []  # its bound has passed: nothing to hold


# ------------------------------------------------------------------ what a worker says it runs


def test_a_worker_reports_attempts_no_count_holds_and_each_counts_once_until_its_bound():
    sim = Sim(workers=0, slots=2, prefetch=0, steps=PAY, zombie_grace=10.0)
    sim.add_worker("p-live", kind="process")
    for i in range(3):
        sim.submit(f"o{i}")
    live = started(sim, "p-live", 2)
    core = sim.core
    assert core.limits.in_flight("payment") == 2
    sim.now = 5.0
    sim.apply(core.workers_report(["p-gone"], [
        ("p-gone", "o9:packing", 7),        # a step without a limit: not counted
        ("p-gone", "o2:payment", 3),        # a restart forgot it: counted from now
        ("p-gone", "o2:payment", 3),        # said twice: counted once
        ("p-gone", "lost:payment", 4),      # an order memory no longer holds
        ("p-live", live[0].task_id, live[0].lease),  # on its live worker: counted there
        ("p-live", live[1].task_id, live[1].lease + 50),  # another lease: an old attempt
    ], now=5.0))
    assert sorted((z.worker_id, z.task_id, z.lease, z.attempt, z.bound)
                  for z in core.zombies) == [
        ("p-gone", "lost:payment", 4, 0, 45.0),
        ("p-gone", "o2:payment", 3, 0, 45.0),
        ("p-live", live[1].task_id, live[1].lease + 50, 1, 45.0),
    ]
    assert core.limits.in_flight("payment") == 5
    sim.advance(39.5)
    assert len(core.zombies) == 3  # their bound is not reached yet
    sim.advance(0.5)
    assert not core.zombies and core.limits.in_flight("payment") == 2
    ended = [e for e in sim.events if e["type"] == "attempt_ended"]
    assert sorted(e["task_id"] for e in ended) == sorted(
        ["lost:payment", "o2:payment", live[1].task_id])


def test_a_reported_attempt_stuck_or_running_on_its_live_worker_is_not_counted_twice():
    sim = Sim(workers=0, slots=2, prefetch=0, steps=PAY, step_timeout=10.0)
    sim.add_worker("t1")  # a thread worker: its timed-out handler stays stuck
    sim.submit("o0")
    sim.submit("o1")
    first, second = started(sim, "t1", 2)
    sim.advance(30.0)  # both time out: stuck
    worker = views.workers(sim.core)["t1"]
    assert worker.stuck == {(first.task_id, first.lease), (second.task_id, second.lease)}
    sim.advance(1.0)  # past the grace: their threads are abandoned
    assert len(worker.abandoned) == 2
    counted = sim.core.limits.in_flight("payment")
    sim.apply(sim.core.workers_report(["t1"], [("t1", d.task_id, d.lease)
                                               for d in (first, second)], now=sim.now))
    assert not sim.core.zombies and sim.core.limits.in_flight("payment") == counted


def test_a_reaped_process_ends_every_attempt_it_ran_at_once_saying_it_exited():
    sim = Sim(workers=0, slots=4, prefetch=0, steps=LIMIT, step_timeout=30.0, zombie_grace=5.0)
    sim.core.epoch_offset = OFFSET
    sim.add_worker("p-1", kind="process")
    for i in range(6):
        sim.submit(f"o{i}")
    running = started(sim, "p-1", 4)
    sim.add_worker("p-2", kind="process")
    sim.advance(3.0, beating=("p-2",))  # p-1 stalls and is declared dead
    assert len(sim.core.zombies) == 4 and payments_on_workers(sim.core) == 0
    sim.now += 1.0
    sim.apply(sim.core.workers_gone(["p-1"], now=sim.now))  # the server reaped its process
    assert not sim.core.zombies and payments_on_workers(sim.core) == 4  # the limit, at once
    ended = sim.types(type="attempt_ended")
    assert sorted(e["task_id"] for e in ended) == sorted(d.task_id for d in running)
    assert {(e["reason"], e["worker_id"], e["ts"]) for e in ended} == {
        ("exited", "p-1", OFFSET + sim.now)}
    assert all(e["message"].endswith("its process exited") for e in ended)


def test_zombies_are_counted_per_step():
    zombies = Zombies()
    zombies.add(Zombie("p-1", "o1:payment", 1, "payment", 1, None, None))
    zombies.add(Zombie("p-1", "o2:payment", 2, "payment", 1, None, None))
    zombies.add(Zombie("p-2", "o3:packing", 3, "packing", 1, None, None))
    assert (zombies.count("payment"), zombies.count("packing"), zombies.count("shipping")) == (
        2, 1, 0)


def test_a_zombie_counted_again_keeps_the_later_bound_and_an_unbounded_one_stays_unbounded():
    zombies = Zombies()
    zombies.add(Zombie("p-1", "o1:payment", 1, "payment", 1, None, 5.0))
    assert not zombies.add(Zombie("p-1", "o1:payment", 1, "payment", 1, None, 9.0))
    assert zombies.find("p-1", "o1:payment", 1).bound == 9.0
    assert not zombies.add(Zombie("p-1", "o1:payment", 1, "payment", 1, None, 3.0))
    assert zombies.find("p-1", "o1:payment", 1).bound == 9.0
    assert not zombies.add(Zombie("p-1", "o1:payment", 1, "payment", 1, None, None))
    assert zombies.find("p-1", "o1:payment", 1).bound is None  # only a confirmation ends it
    zombies.add(Zombie("p-1", "o2:payment", 2, "payment", 1, None, None))
    assert not zombies.add(Zombie("p-1", "o2:payment", 2, "payment", 1, None, 7.0))
    assert zombies.find("p-1", "o2:payment", 2).bound is None


def test_an_unknown_lease_finds_the_zombie_of_that_worker_and_task_whatever_its_lease():
    zombies = Zombies()
    zombie = Zombie("p-1", "o1:payment", 7, "payment", 1, None, None)
    zombies.add(zombie)
    assert zombies.find("p-1", "o1:payment", 0) is zombie
    assert zombies.find("p-2", "o1:payment", 0) is None
    assert zombies.find("p-1", "o2:payment", 0) is None


def test_removing_the_zombie_with_the_earliest_bound_moves_the_next_bound_on():
    zombies = Zombies()
    early = Zombie("p-1", "o1:payment", 1, "payment", 1, None, 5.0)
    late = Zombie("p-1", "o2:payment", 2, "payment", 1, None, 9.0)
    later = Zombie("p-1", "o3:payment", 3, "payment", 1, None, 12.0)
    for zombie in (early, late, later):
        zombies.add(zombie)
    zombies.remove(late)
    assert zombies.next_bound() == 5.0
    zombies.remove(early)
    assert zombies.next_bound() == 12.0
    assert zombies.expired(11.0) == [] and zombies.expired(12.0) == [later]


def test_binding_bounds_only_the_unbounded_zombies_of_that_worker():
    zombies = Zombies()
    mine = Zombie("p-1", "o1:payment", 1, "payment", 1, 10.0, None)
    bounded = Zombie("p-1", "o2:payment", 2, "payment", 1, 20.0, 30.0)
    other = Zombie("p-2", "o3:payment", 3, "payment", 1, 5.0, None)
    for zombie in (mine, bounded, other):
        zombies.add(zombie)
    zombies.bind("p-1", lambda z: z.deadline + 2.0)
    assert (mine.bound, bounded.bound, other.bound) == (12.0, 30.0, None)
    assert zombies.next_bound() == 12.0
    assert zombies.expired(12.0) == [mine]


def test_a_zombie_its_process_still_runs_keeps_its_bound_and_counts_once():
    sim = Sim(workers=0, slots=4, prefetch=0, steps=LIMIT, step_timeout=30.0, zombie_grace=5.0)
    sim.add_worker("p-1", kind="process")
    for i in range(6):
        sim.submit(f"o{i}")
    [first, *_] = started(sim, "p-1", 4)
    sim.add_worker("p-2", kind="process")
    sim.advance(3.0, beating=("p-2",))  # p-1 is declared dead: 4 zombies, bound at 35 s
    bound = sim.core.zombies.find("p-1", first.task_id, first.lease).bound
    sim.now = 20.0  # its process registers again: it still runs the first one
    sim.apply(sim.core.workers_report(["p-1"], [("p-1", first.task_id, first.lease)],
                                      now=sim.now))
    assert [(z.task_id, z.bound) for z in sim.core.zombies] == [(first.task_id, bound)]
    assert sim.core.limits.in_flight("payment") == 4  # 3 moved to p-2, the zombie


def test_a_draining_workers_report_of_what_it_runs_counts_nothing_twice():
    sim = Sim(workers=0, slots=2, prefetch=0, steps=PAY, step_timeout=10.0)
    sim.add_worker("p-1", kind="process")
    sim.submit("o0")
    [running] = started(sim, "p-1", 1)
    sim.apply(sim.core.drain_worker("p-1", now=sim.now))
    assert views.workers(sim.core)["p-1"].status == "draining"
    sim.apply(sim.core.workers_report(["p-1"], [("p-1", running.task_id, running.lease)],
                                      now=sim.now))
    assert not sim.core.zombies and sim.core.limits.in_flight("payment") == 1


def test_an_ended_zombie_names_its_own_attempt_and_its_order_even_with_a_colon_in_its_id():
    sim = Sim(workers=0, slots=1, prefetch=0, steps=LIMIT, step_timeout=30.0, zombie_grace=5.0,
              retry=RetryPolicy(max_retries=2, backoff_base=0.001, backoff_cap=0.001))
    sim.add_worker("p-1", kind="process")
    sim.submit("shop:1")
    started(sim, "p-1", 1)
    sim.add_worker("p-2", kind="process")
    sim.advance(3.0, beating=("p-2",))  # p-1 is declared dead: its attempt 1 is a zombie
    [moved] = started(sim, "p-2", 1)  # the same attempt, moved
    sim.fail(moved, "declined")
    sim.advance(0.5, beating=("p-2",))
    [retry] = started(sim, "p-2", 1)
    assert sim.task("shop:1", "payment").attempt == 2
    sim.apply(sim.core.workers_gone(["p-1"], now=sim.now))
    [ended] = sim.types(type="attempt_ended")
    assert (ended["order_id"], ended["step"], ended["attempt"]) == ("shop:1", "payment", 1)
    assert ended["message"] == ("order shop:1 step payment attempt 1 on p-1 no longer counts "
                                "towards the step's limit: its process exited")
    # A process names an attempt of such an order that no count holds: it counts.
    sim.apply(sim.core.workers_report(["p-9"], [("p-9", "shop:9:payment", 7)], now=sim.now))
    assert [(z.task_id, z.step) for z in sim.core.zombies] == [("shop:9:payment", "payment")]


def test_a_report_keeps_an_inherited_attempt_it_still_runs_and_ends_one_of_another_lease():
    sim = Sim(workers=0, slots=4, prefetch=0, steps=LIMIT, step_timeout=30.0)
    sim.core.epoch_offset = OFFSET
    sim.add_worker("p-old", kind="process")
    for i in range(4):
        sim.submit(f"o{i}")
    running = started(sim, "p-old", 2)
    core = restarted(sim.core, now=1.0, steps=LIMIT, step_timeout=30.0, zombie_grace=5.0)
    assert {z.lease for z in core.zombies} == {0}  # the journal does not know their leases
    bounds = {z.task_id: z.bound for z in core.zombies}
    fx = core.workers_report(["p-old"], [("p-old", running[0].task_id, running[0].lease)],
                             now=2.0)
    ended = [e["task_id"] for e in fx.events if e["type"] == "attempt_ended"]
    assert ended == [running[1].task_id]
    [kept] = core.zombies
    assert (kept.task_id, kept.bound) == (running[0].task_id, bounds[running[0].task_id])
    # An inherited zombie (its lease unknown) is the attempt of any lease of its task; a
    # zombie of a known lease is not the attempt of another lease.
    fx = core.workers_report(["p-old"], [("p-old", running[0].task_id, 50)], now=3.0)
    assert [e["task_id"] for e in fx.events if e["type"] == "attempt_ended"] == []
    core.workers_report(["p-x"], [("p-x", "o9:payment", 3)], now=3.0)
    fx = core.workers_report(["p-x"], [("p-x", "o9:payment", 5)], now=4.0)
    assert [e["task_id"] for e in fx.events if e["type"] == "attempt_ended"] == ["o9:payment"]
    assert sorted((z.task_id, z.lease) for z in core.zombies if z.worker_id == "p-x") == [
        ("o9:payment", 5)]


def test_a_second_restart_inherits_what_started_after_the_first():
    sim = Sim(workers=0, slots=4, prefetch=0, steps=LIMIT, step_timeout=30.0)
    sim.core.epoch_offset = OFFSET
    sim.add_worker("p-old", kind="process")
    sim.submit("o1")
    started(sim, "p-old", 1)
    settings = dict(steps=LIMIT, step_timeout=30.0, zombie_grace=5.0)
    core = restarted(sim.core, now=1.0, **settings)
    assert [z.worker_id for z in core.zombies] == ["p-old"]
    core.add_worker("p-new", kind="process", now=1.0)
    core.heartbeat("p-new", 10.0)
    [dispatch] = core.tick(now=10.0).dispatches  # the hold after the restart is over
    _, ctx = core.start_task(dispatch.task_id, "p-new", dispatch.lease, now=10.0)
    assert ctx is not None
    again = restarted(core, now=11.0, **settings)
    assert sorted(z.worker_id for z in again.zombies) == ["p-new", "p-old"]


def test_a_restart_says_how_many_attempts_may_still_run_and_a_backing_off_step_points_to_it():
    sim = Sim(workers=0, slots=4, prefetch=0, steps=LIMIT, step_timeout=30.0,
              retry=RetryPolicy(max_retries=2, backoff_base=100.0, backoff_cap=100.0))
    sim.core.epoch_offset = OFFSET
    sim.add_worker("p-old", kind="process")
    for i in range(3):
        sim.submit(f"o{i}")
    first, _, _ = started(sim, "p-old", 3)
    sim.fail(first, "declined")  # backing off when the server stops
    core = restarted(sim.core, now=1.0, steps=LIMIT, step_timeout=30.0, zombie_grace=5.0)
    events = views.events_after(core, views.last_seq(sim.core))
    [restart] = [e for e in events if e["type"] == "server_restarted"]
    assert restart["message"].endswith(
        "; 2 attempt(s) the old server started may still run and keep their step's place "
        "in flight")
    [recovered] = [e for e in events if e["type"] == "task_recovered"
                   and e["order_id"] == first.task_id.split(":")[0]]
    assert recovered["cause"] == restart["seq"] and "will retry as attempt 2" in (
        recovered["message"])


# ------------------------------------------------------------------ each zombie its own attempt
# A worker that dies holding two stuck attempts of one task leaves two zombies, each named by
# its own attempt number (not the task's latest).
PAY2 = {"payment": StepPolicy(max_in_flight=2)}
QUICK_RETRY = RetryPolicy(max_retries=3, backoff_base=0.001, backoff_cap=0.001)


def two_stuck_attempts(abandon_after: float) -> tuple[Sim, list]:
    """Thread worker t1 runs attempts 1 and 2 of o1's payment; both time out and hang."""
    sim = Sim(workers=0, slots=2, prefetch=0, steps=PAY2, step_timeout=1.0, retry=QUICK_RETRY,
              abandon_after=abandon_after, max_abandoned=2)
    sim.add_worker("t1")
    sim.submit("o1")
    hung = []
    for attempt in (1, 2):
        d, _ = sim.start_next("t1")
        assert d is not None and sim.task("o1", "payment").attempt == attempt
        hung.append(d)
        sim.advance(1.1)  # times out; its handler does not return; the retry is due
    worker = views.workers(sim.core)["t1"]
    assert {key for key in worker.stuck | worker.abandoned} == {
        (d.task_id, d.lease) for d in hung}
    return sim, hung


def zombie_attempts(sim: Sim) -> dict[int, int]:
    return {z.lease: z.attempt for z in sim.core.zombies}


def test_a_dead_thread_workers_two_stuck_attempts_of_one_task_keep_their_own_numbers():
    sim, (first, second) = two_stuck_attempts(abandon_after=60.0)
    assert sim.task("o1", "payment").attempt == 2  # the latest: the first hung before it
    sim.add_worker("t2")
    sim.advance(30.0, beating=("t2",))  # t1 is silent: declared dead
    assert views.workers(sim.core)["t1"].status == "dead"
    assert zombie_attempts(sim) == {first.lease: 1, second.lease: 2}
    sim.apply(sim.core.attempts_ended("t1", [(first.task_id, first.lease)], now=sim.now))
    [ended] = sim.types(type="attempt_ended")
    assert ended["attempt"] == 1
    assert "order o1 step payment attempt 1 on t1 no longer counts" in ended["message"]


def test_abandoned_threads_keep_their_attempts_own_numbers_when_the_worker_dies():
    sim, (first, second) = two_stuck_attempts(abandon_after=0.5)
    sim.advance(1.0)  # past the second one's grace too
    assert len(views.workers(sim.core)["t1"].abandoned) == 2  # both threads abandoned
    sim.add_worker("t2")
    sim.advance(30.0, beating=("t2",))
    assert views.workers(sim.core)["t1"].status == "dead"
    assert zombie_attempts(sim) == {first.lease: 1, second.lease: 2}
    sim.apply(sim.core.attempts_ended("t1", [(first.task_id, first.lease)], now=sim.now))
    [ended] = sim.types(type="attempt_ended")
    assert ended["attempt"] == 1 and zombie_attempts(sim) == {second.lease: 2}


def test_validate_finds_a_stuck_attempt_whose_number_is_not_kept():
    sim, (first, _) = two_stuck_attempts(abandon_after=60.0)
    del views.workers(sim.core)["t1"].stuck_attempts[(first.task_id, first.lease)]
    with pytest.raises(AssertionError):
        sim.core.validate()


def test_a_returned_stuck_handler_takes_its_number_with_it():
    sim, (first, second) = two_stuck_attempts(abandon_after=60.0)
    sim.succeed(first, "late")  # rejected (its lease was revoked), but its handler returned
    assert views.workers(sim.core)["t1"].stuck_attempts == {(second.task_id, second.lease): 2}
