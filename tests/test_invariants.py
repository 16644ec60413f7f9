"""The chaos checker: a clean history passes, and each kind of violation is caught."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from sim import Sim

from scheduler.chaos.invariants import History, check_history, format_report, remote_work
from scheduler.engine import views
from scheduler.engine.config import RetryPolicy, StepPolicy
from scheduler.engine.workflow import Workflow


def history_of(sim: Sim) -> History:
    core = sim.core
    return History(list(sim.events),
                   {o.id: core.order_record(o) for o in views.orders(core).values()})


@pytest.fixture
def clean():
    """Ten orders; a worker dies with work on it; one order fails after four attempts."""
    sim = Sim(workers=3)
    ids = [sim.submit(f"o{i}") for i in range(10)]
    victim = sim.task("o0", "payment").worker
    sim.start_next(victim)
    sim.advance(2.5, beating=tuple(w for w in sim.queues if w != victim))
    holder = sim.task("o9", "payment").worker
    for _ in range(4):
        d, _ = sim.start_next(holder)
        while d is not None and d.task_id != "o9:payment":
            sim.succeed(d)
            d, _ = sim.start_next(holder)
        sim.fail(d, "declined")
        sim.advance(5.0, beating=tuple(w for w in sim.queues if w != victim))
        holder = sim.task("o9", "payment").worker or holder
    sim.queues.pop(victim)
    sim.run_all()
    return sim, ids


def test_a_clean_history_passes_with_its_figures(clean):
    sim, ids = clean
    report = check_history(history_of(sim), ids, max_retries=3)
    assert report["ok"], report["examples"]
    assert (report["submitted"], report["completed"], report["failed"]) == (10, 9, 1)
    assert report["worker_deaths"] == 1 and report["dead_worker_tasks_not_moved"] == 0
    assert report["recovery_p50_s"] is not None
    assert "OK: no invariant violated" in format_report(report)


def test_threads_abandoned_to_deaf_handlers_are_counted_and_break_no_invariant():
    sim = Sim(workers=1, slots=1, prefetch=0, step_timeout=5.0, abandon_after=1.0)
    ids = [sim.submit("o1")]
    hung, _ = sim.start_next("w1")
    sim.advance(6.0)  # timed out, and its handler still deaf 1 s later: abandoned
    sim.run_all()
    sim.succeed(hung, "late")  # rejected
    report = check_history(history_of(sim), ids, max_retries=3)
    assert report["ok"], report["examples"]
    assert (report["completed"], report["timed_out_attempts"]) == (1, 1)
    assert (report["abandoned_threads"], report["workers_hung"]) == (1, 0)
    assert "abandoned_threads" in format_report(report)


def test_an_acknowledged_order_missing_from_the_journal_is_lost(clean):
    sim, ids = clean
    report = check_history(history_of(sim), [*ids, "o-ghost"], max_retries=3)
    assert not report["ok"] and report["lost"] == 1


def test_an_unfinished_order_is_stuck(clean):
    sim, ids = clean
    history = history_of(sim)
    history.orders["o1"] = dataclasses.replace(history.orders["o1"], status="in_progress")
    assert check_history(history, ids, max_retries=3)["stuck"] == 1


def test_a_step_recorded_as_succeeded_twice_is_caught(clean):
    sim, ids = clean
    history = history_of(sim)
    again = copy.deepcopy(next(e for e in history.events if e["type"] == "task_succeeded"))
    again["seq"] = history.events[-1]["seq"] + 1
    history.events.append(again)
    assert check_history(history, ids, max_retries=3)["succeeded_twice"] == 1


def test_a_step_started_before_its_dependency_succeeded_is_caught(clean):
    sim, ids = clean
    history = history_of(sim)
    packing = next(
        e for e in history.events if e["type"] == "task_started" and e["step"] == "packing"
    )
    packing["seq"] = 0  # as if it started before anything else happened
    history.events.sort(key=lambda e: e["seq"])
    assert check_history(history, ids, max_retries=3)["dependency_order_violations"] >= 1


def test_more_attempts_than_the_budget_are_caught(clean):
    sim, ids = clean
    # The failed order used all four attempts; with a budget of two that is too many.
    report = check_history(history_of(sim), ids, max_retries=1)
    assert report["too_many_attempts"] >= 1 and report["failed_without_exhausting_retries"] == 1


def test_a_task_left_on_a_dead_worker_is_caught(clean):
    sim, ids = clean
    history = history_of(sim)
    history.events = [
        e
        for e in history.events
        if not (e["type"] == "task_reassigned" and e.get("reason") == "worker dead")
    ]
    assert check_history(history, ids, max_retries=3)["dead_worker_tasks_not_moved"] >= 1


def test_server_errors_and_unordered_seq_are_violations(clean):
    sim, ids = clean
    history = history_of(sim)
    history.events[3]["seq"] = history.events[2]["seq"]
    report = check_history(history, ids, max_retries=3, server_errors=2)
    assert not report["ok"] and report["server_5xx"] == 2
    assert "seq_not_increasing" in report["examples"]


def keyed(history: History, keys: dict[str, str]) -> History:
    """The history with each order in `keys` submitted under that idempotency key."""
    for oid, key in keys.items():
        history.orders[oid] = dataclasses.replace(history.orders[oid], idempotency_key=key)
    return history


def test_every_key_answered_with_an_order_the_journal_holds_under_it_passes(clean):
    sim, ids = clean
    history = keyed(history_of(sim), {"o1": "k1", "o2": "k2"})
    answers = [("k1", "o1"), ("k2", "o2"), ("k1", "o1")]  # asked twice, the same answer
    report = check_history(history, ids, max_retries=3, answers=answers)
    assert report["ok"], report["examples"]
    assert report["keys_answered"] == 2 and report["keys_answered_before_commit"] == 0


def test_a_key_answered_with_an_order_the_journal_never_got_was_answered_before_its_commit(
        clean):
    sim, ids = clean
    # k1 was answered 200 with o-lost, which a crash took; the key later made o1.
    history = keyed(history_of(sim), {"o1": "k1"})
    report = check_history(history, ids, max_retries=3,
                           answers=[("k1", "o-lost"), ("k1", "o1")])
    assert not report["ok"]
    assert report["keys_answered_before_commit"] == 1
    assert report["keys_answered_with_two_orders"] == 1
    assert report["examples"]["key_answered_before_commit"] == [("k1", "o-lost", "o1")]
    assert "keys_answered_before_commit" in format_report(report)


def test_a_key_answered_with_an_order_kept_under_another_key_is_caught(clean):
    sim, ids = clean
    history = keyed(history_of(sim), {"o1": "k1"})
    report = check_history(history, ids, max_retries=3, answers=[("k2", "o1")])
    assert report["examples"]["key_answered_before_commit"] == [("k2", "o1", None)]


def test_remote_work_counts_steps_by_server_start_and_late_results_fenced():
    events = [
        {"type": "task_succeeded", "worker_id": "p-a-1"},
        {"type": "task_succeeded", "worker_id": "p-a-1"},
        {"type": "task_succeeded", "worker_id": "w-1"},  # not a remote worker of the driver
        {"type": "result_rejected", "worker_id": "p-a-1"},
        {"type": "task_succeeded", "worker_id": "p-b-3"},
        {"type": "result_rejected", "worker_id": "p-b-3", "count": 4},  # summed up
    ]
    found = remote_work(events, {"p-a-1": 0, "p-b-3": 2}, starts=3)
    assert found == {"worker_ids": 2, "steps_done_by_server_start": [2, 0, 1],
                     "late_results_rejected": 5}



def test_remote_work_counts_every_workers_steps_by_the_start_their_time_falls_in():
    events = [
        {"type": "task_succeeded", "worker_id": "w-1", "ts": 5.0},
        {"type": "task_succeeded", "worker_id": "p-a-1", "ts": 9.9},
        {"type": "task_started", "worker_id": "w-1", "ts": 11.0},  # not a step done
        {"type": "task_succeeded", "worker_id": "w-1", "ts": 20.5},  # under the third start
        {"type": "task_succeeded", "worker_id": "p-b-3", "ts": 21.0},
    ]
    # Started again at 10 and 20 (wall time of the kills): the second start got nothing done.
    found = remote_work(events, {"p-a-1": 0, "p-b-3": 2}, starts=3, began=[10.0, 20.0])
    assert found["all_steps_done_by_server_start"] == [2, 0, 2]
    assert found["steps_done_by_server_start"] == [1, 0, 1]
    assert "all_steps_done_by_server_start" not in remote_work(events, {}, starts=3)


# ------------------------------------------------------------------ max_in_flight

LIMITS = {"payment": (2, 10.0)}  # (max_in_flight, time limit s)


def ev(seq: int, ts: float, kind: str, order: str | None = None, worker: str | None = None,
       **extra) -> dict:
    return {"seq": seq, "ts": ts, "type": kind, "order_id": order,
            "step": "payment" if order else None, "worker_id": worker, "attempt": 1,
            "message": "", **extra}


def joined(seq: int, worker: str, kind: str = "process") -> dict:
    return ev(seq, 0.0, "worker_added", worker=worker, worker_kind=kind)


def test_a_start_while_a_dead_workers_handlers_may_still_run_exceeds_the_limit():
    events = [joined(1, "p-1"), joined(2, "p-2"),
              ev(3, 1.0, "task_started", "o1", "p-1"), ev(4, 1.0, "task_started", "o2", "p-1"),
              ev(5, 4.0, "worker_dead", worker="p-1"),
              ev(6, 5.0, "task_started", "o1", "p-2")]  # p-1 may still run both
    report = check_history(History(events, {}), [], max_retries=3, limits=LIMITS, grace=5.0)
    assert not report["ok"] and report["max_in_flight_exceeded"] == 1
    assert report["examples"]["max_in_flight_exceeded"] == [("o1", "payment", "p-2", 3)]
    assert report["peak_in_flight"] == {"payment": [3, 2]}


@pytest.mark.parametrize("ending", [
    ev(6, 5.0, "result_rejected", "o1", "p-1"),  # its late result: the handler ended
    ev(6, 5.0, "task_failed", "o1", "p-1", error="cancelled"),
    ev(6, 5.0, "attempt_ended", "o1", "p-1", reason="reported"),
    ev(6, 5.0, "attempt_ended", "o1", "p-1", reason="exited"),
])
def test_a_handler_its_worker_says_ended_frees_its_place(ending):
    events = [joined(1, "p-1"), joined(2, "p-2"),
              ev(3, 1.0, "task_started", "o1", "p-1"), ev(4, 1.0, "task_started", "o2", "p-1"),
              ev(5, 4.0, "worker_dead", worker="p-1"), ending,
              ev(7, 5.5, "task_started", "o1", "p-2")]
    report = check_history(History(events, {}), [], max_retries=3, limits=LIMITS, grace=5.0)
    assert report["max_in_flight_exceeded"] == 0, report["examples"]
    assert report["peak_in_flight"] == {"payment": [2, 2]}


def test_a_written_off_workers_handler_counts_until_its_time_limit_plus_the_grace():
    def run(at: float) -> int:
        events = [joined(1, "p-1"), joined(2, "p-2"),
                  ev(3, 1.0, "task_started", "o1", "p-1"),
                  ev(4, 1.0, "task_started", "o2", "p-1"),
                  ev(5, 4.0, "worker_dead", worker="p-1"),
                  # The server's own word that the bound passed is not the worker's.
                  ev(6, at, "attempt_ended", "o1", "p-1", reason="bound"),
                  ev(7, at, "task_started", "o1", "p-2")]
        return check_history(History(events, {}), [], max_retries=3, limits=LIMITS,
                             grace=5.0)["max_in_flight_exceeded"]

    assert run(15.9) == 1  # started at 1, its limit ends at 11, plus 5 s
    assert run(16.0) == 0


def test_a_restart_ends_thread_workers_handlers_but_not_remote_ones():
    events = [joined(1, "w-1", kind="thread"), joined(2, "p-1"), joined(3, "p-2"),
              ev(4, 1.0, "task_started", "o1", "w-1"), ev(5, 1.0, "task_started", "o2", "p-1"),
              ev(6, 2.0, "server_restarted"),
              ev(7, 3.0, "task_started", "o1", "p-2"),  # w-1's handler died with its server
              ev(8, 3.0, "task_started", "o3", "p-2")]  # but p-1's may still run
    report = check_history(History(events, {}), [], max_retries=3, limits=LIMITS, grace=5.0)
    assert report["examples"]["max_in_flight_exceeded"] == [("o3", "payment", "p-2", 3)]


def test_a_history_of_the_core_through_a_stall_keeps_the_limit():
    sim = Sim(workers=0, slots=2, prefetch=0, step_timeout=10.0, zombie_grace=5.0,
              steps={"payment": StepPolicy(max_in_flight=2)})
    sim.add_worker("p-1", kind="process")
    ids = [sim.submit(f"o{i}") for i in range(6)]
    sim.start_next("p-1")
    sim.start_next("p-1")
    sim.add_worker("p-2", kind="process")
    sim.advance(20.0, beating=("p-2",))  # p-1 stalls and is declared dead
    sim.queues.pop("p-1")
    sim.run_all()
    report = check_history(history_of(sim), ids, max_retries=3,
                           limits={"payment": (2, 10.0)}, grace=5.0)
    assert report["ok"], report["examples"]
    assert report["peak_in_flight"] == {"payment": [2, 2]}


# ---------------------------------------------------------------- sagas

SAGA_FLOWS = {"checkout": Workflow.define(
    "checkout", [("payment", []), ("packing", ["payment"]), ("invoice", ["payment"]),
                 ("shipping", ["packing", "invoice"])],
    compensations={"payment": "refund", "packing": "unpack", "invoice": "void"})}


@pytest.fixture
def sagas():
    """o1 compensated (three undos), o2 cancelled after its charge and compensated, o3
    completed, o4 compensation_failed (its refund declined)."""
    sim = Sim(workers=1, slots=3, workflows=SAGA_FLOWS, retry=RetryPolicy(max_retries=0))

    def run(step: str, ok: bool = True):
        d, ctx = sim.start_next("w1")
        assert ctx["step"] == step, ctx
        (sim.succeed(d, step) if ok else sim.fail(d, "no"))

    for oid in ("o1", "o2", "o3", "o4"):
        sim.submit(oid, "checkout")
        run("payment")
        if oid == "o2":
            sim.apply(sim.core.cancel_order(oid, now=sim.now))
            run("refund")
            continue
        run("packing")
        run("invoice")
        run("shipping", ok=oid == "o3")
        for undo in ("void", "unpack", "refund") if oid != "o3" else ():
            run(undo, ok=oid != "o4" or undo != "refund")
    return sim


def test_sagas_that_keep_their_promises_pass_with_their_figures(sagas):
    report = check_history(history_of(sagas), ["o1", "o2", "o3", "o4"], max_retries=0,
                           workflows=SAGA_FLOWS)
    assert report["ok"], report["examples"]
    assert (report["compensated"], report["compensation_failed"], report["completed"]) == (
        2, 1, 1)
    assert report["compensations_run"] == 3 + 1 + 2
    assert "compensations_run" in format_report(report)


def saga_history(sim: Sim, order: str, **changes) -> History:
    """The history with task records of `order` changed: {step: {field: value}}."""
    history = history_of(sim)
    record = history.orders[order]
    tasks = tuple(t._replace(**changes.get(t.step, {})) for t in record.tasks)
    history.orders[order] = dataclasses.replace(record, tasks=tasks)
    return history


def violations(history: History, kind: str) -> list:
    report = check_history(history, ["o1", "o2", "o3", "o4"], max_retries=0,
                           workflows=SAGA_FLOWS)
    assert not report["ok"] and report[kind] >= 1, report
    return report["examples"][kind]


def test_an_undo_started_before_its_step_succeeded_is_caught(sagas):
    history = history_of(sagas)
    # The refund's start moved before the payment's success.
    start = next(e for e in history.events if e["type"] == "task_started"
                 and e["order_id"] == "o2" and e["step"] == "refund")
    paid = next(e for e in history.events if e["type"] == "task_succeeded"
                and e["order_id"] == "o2" and e["step"] == "payment")
    history.events.remove(start)
    history.events.insert(history.events.index(paid), {**start, "seq": paid["seq"] - 0.5})
    assert violations(history, "undo_of_unsucceeded_step") == [("o2", "refund", "payment")]


def test_undos_out_of_the_reverse_order_of_success_are_caught(sagas):
    history = history_of(sagas)
    starts = [e for e in history.events if e["type"] == "task_started"
              and e["order_id"] == "o1" and e["step"] in ("void", "refund")]
    starts[0]["step"], starts[1]["step"] = "refund", "void"  # refund first, then void
    assert violations(history, "undos_out_of_order") == [("o1", ["refund", "unpack", "void"])]


def test_a_compensated_order_with_an_undo_not_done_is_caught(sagas):
    history = saga_history(sagas, "o1", unpack={"state": "failed"})
    assert violations(history, "compensated_incompletely") == ["o1"]
    missing = history_of(sagas)
    record = missing.orders["o1"]
    missing.orders["o1"] = dataclasses.replace(
        record, tasks=tuple(t for t in record.tasks if t.step != "void"))
    assert violations(missing, "compensated_incompletely") == ["o1"]


def test_a_failed_order_with_a_step_left_to_undo_is_caught(sagas):
    history = history_of(sagas)
    record = history.orders["o1"]
    history.orders["o1"] = dataclasses.replace(
        record, status="failed",
        tasks=tuple(t for t in record.tasks if t.compensates is None))
    assert violations(history, "left_uncompensated") == [("o1", ["refund", "unpack", "void"])]


# ---------------------------------------------------------------- safe deploys

V1 = Workflow.define("checkout", [("payment", []), ("packing", ["payment"])], version="v1")
V2 = Workflow.define("checkout", [("fraud", []), ("payment", ["fraud"]),
                                  ("packing", ["payment"])], version="v2")


def pinned_history() -> tuple[History, list[str]]:
    """Orders of checkout v1 run to the end; the journal keeps v1 and v2."""
    sim = Sim(workers=2, workflows={"checkout": V1})
    ids = [sim.submit(f"o{i}", workflow="checkout") for i in range(3)]
    sim.run_all()
    history = history_of(sim)
    history.definitions = {V1.key: V1, V2.key: V2}
    return history, ids


def test_orders_that_ran_the_steps_of_their_pinned_definition_pass():
    history, ids = pinned_history()
    report = check_history(history, ids, max_retries=3, workflows={"checkout": V2})
    assert report["ok"], report["examples"]
    assert report["steps_of_another_definition"] == 0
    assert report["dependency_order_violations"] == 0  # judged by v1's DAG, not v2's


def test_a_step_of_another_version_of_the_workflow_is_caught():
    history, ids = pinned_history()
    fraud = copy.deepcopy(next(e for e in history.events if e["type"] == "task_started"))
    fraud.update(step="fraud", seq=history.events[-1]["seq"] + 1)
    history.events.append(fraud)
    report = check_history(history, ids, max_retries=3)
    assert report["steps_of_another_definition"] == 1 and not report["ok"]
    assert "steps_of_another_definition" in format_report(report)


def test_an_order_pinned_to_a_definition_the_journal_lacks_is_caught():
    history, ids = pinned_history()
    history.definitions = {V2.key: V2}
    report = check_history(history, ids, max_retries=3)
    assert report["steps_of_another_definition"] == 12  # 2 steps of 3 orders, started, succeeded



V3 = Workflow.define("checkout", [("payment", []), ("fraud", ["payment"]),
                                  ("packing", ["fraud"])], version="v3")


def migrated_history(*targets: Workflow) -> tuple[History, list[str]]:
    """Orders of checkout v1 paid, then moved to each of `targets` in turn, run to the
    end."""
    sim = Sim(workers=1, workflows={"checkout": V1})
    sim.core.definitions.learn([V2, V3])
    ids = [sim.submit(f"o{i}", workflow="checkout") for i in range(2)]
    for _ in ids:
        d, _ = sim.start_next("w1")
        sim.succeed(d)
    sim.queues["w1"].clear()
    sim.apply(sim.core.worker_lost("w1", sim.now, reason="gone"))  # packing waits
    source = V1
    for target in targets:
        sim.apply(sim.core.migrate_orders(source.key, target.key, sim.now)[0])
        source = target
    sim.add_worker("w2")
    sim.run_all()
    history = history_of(sim)
    history.definitions = {V1.key: V1, V2.key: V2, V3.key: V3}
    return history, ids


def test_steps_run_under_definitions_a_recorded_migration_moved_the_order_through_pass():
    # To v2, fraud is skipped (added before the payment); to v3, where it comes after the
    # payment and before packing, which has not run, it runs.
    history, ids = migrated_history(V2, V3)
    assert {o.version for o in history.orders.values()} == {"v3"}
    assert [e["step"] for e in history.events if e["type"] == "task_started"
            and e["order_id"] == "o0"] == ["payment", "fraud", "packing"]
    report = check_history(history, ids, max_retries=3)
    assert report["ok"], report["examples"]
    assert report["steps_of_another_definition"] == 0
    assert report["dependency_order_violations"] == 0


def test_without_its_migration_recorded_an_order_on_another_definition_is_caught():
    history, ids = migrated_history(V2)
    assert check_history(history, ids, max_retries=3)["ok"]
    history.events = [e for e in history.events if e["type"] != "order_migrated"]
    report = check_history(history, ids, max_retries=3)
    # Judged by v2 alone, each payment started before its fraud check ran.
    assert report["dependency_order_violations"] == 2 and not report["ok"]
    history, ids = migrated_history(V3)
    history.events = [e for e in history.events if e["type"] != "order_migrated"]
    history.definitions = {V1.key: V1, V3.key: V3}
    history.orders = {k: dataclasses.replace(o, version="v1")
                      for k, o in history.orders.items()}
    # Judged by v1 alone, the fraud checks are of another definition.
    assert check_history(history, ids, max_retries=3)["steps_of_another_definition"] == 4


def test_a_step_run_again_by_hand_may_succeed_again_but_not_twice_by_itself():
    sim = Sim(workers=1)
    ids = [sim.submit("o1")]
    sim.run_all()
    sim.apply(sim.core.rerun_order("o1", "packing", sim.now)[0])
    sim.run_all()
    history = history_of(sim)
    report = check_history(history, ids, max_retries=3)
    assert report["ok"], report["examples"]
    twice = copy.deepcopy(next(e for e in history.events if e["type"] == "task_succeeded"
                               and e["step"] == "payment"))
    twice["seq"] = history.events[-1]["seq"] + 1
    history.events.append(twice)
    assert violations(history, "succeeded_twice") == [("o1", "payment")]
    history.events = [e for e in history.events if e["type"] != "order_retried"]
    assert sorted(violations(history, "succeeded_twice")) == [
        ("o1", "packing"), ("o1", "payment"), ("o1", "shipping")]
