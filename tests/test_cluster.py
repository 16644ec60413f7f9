"""The threaded cluster end to end: real worker threads, short heartbeats, no sleeps."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter, defaultdict

import pytest
from conftest import wait_for

from scheduler import (
    Chaos,
    Cluster,
    Conflict,
    OrderValidationError,
    RetryPolicy,
    UnknownOrder,
    UnknownWorker,
)
from scheduler.demo.handlers import demo_handlers
from scheduler.engine.model import Dispatch
from scheduler.steps.context import TaskContext

ORDER = {"customer": "ada", "items": [{"sku": "A1", "qty": 2, "price": 9.5}]}
FAST = {"heartbeat_interval": 0.05, "heartbeat_timeout": 0.3}


@pytest.fixture
def make_cluster():
    made = []

    def make(**kwargs):
        options = {**FAST, "seed": 11, **kwargs}
        cluster = Cluster(**options).start()
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


def started_on(events, task_key):
    return [
        e["worker_id"]
        for e in events
        if e["type"] == "task_started" and (e["order_id"], e["step"]) == task_key
    ]


def test_orders_flow_through_all_steps(make_cluster):
    cluster = make_cluster(workers=2)
    ids = [cluster.submit(ORDER) for _ in range(50)]
    assert cluster.wait_until_idle(timeout=20)
    for oid in ids:
        order = cluster.get_order(oid)
        assert order["status"] == "completed"
        assert order["tasks"]["payment"]["result"]["charge_id"].startswith("ch_")
    cluster.validate()


def test_invalid_order_is_refused_before_anything_is_recorded(make_cluster):
    cluster = make_cluster(workers=1)
    with pytest.raises(OrderValidationError, match=r"items\[0\].qty"):
        cluster.submit({"customer": "x", "items": [{"sku": "A", "qty": 0, "price": 1}]})
    assert cluster.stats()["orders_total"] == 0 and cluster.events() == [
        e for e in cluster.events() if e["type"] == "worker_added"
    ]


def test_chaos_integration_every_order_ends_and_no_step_commits_twice(make_cluster):
    """500 orders, 4 workers, 20% failures, two workers killed mid-flight, one added."""
    chaos = Chaos(failure_rate=0.2, latency_ms=(0, 2), seed=5)
    cluster = make_cluster(workers=4, chaos=chaos, handlers=demo_handlers(chaos))
    ids = [cluster.submit(ORDER) for _ in range(500)]
    victims = ["w-1", "w-2"]
    wait_for(lambda: cluster.stats()["orders"]["completed"] >= 50, 20, message="first completions")
    for victim in victims:
        cluster.kill_worker(victim)
    cluster.add_worker()
    assert cluster.wait_until_idle(timeout=60), cluster.stats()
    events = cluster.events(after=0)
    assert {e["worker_id"] for e in events if e["type"] == "worker_dead"} == set(victims)

    statuses = Counter(cluster.get_order(oid)["status"] for oid in ids)
    assert set(statuses) <= {"completed", "failed"} and sum(statuses.values()) == 500
    succeeded = Counter((e["order_id"], e["step"]) for e in events if e["type"] == "task_succeeded")
    assert max(succeeded.values()) == 1
    succeeded_at = {
        (e["order_id"], e["step"]): e["seq"] for e in events if e["type"] == "task_succeeded"
    }
    deps = {"payment": [], "packing": ["payment"], "shipping": ["packing"]}
    for e in events:
        if e["type"] == "task_started":
            for dep in deps[e["step"]]:
                assert succeeded_at[(e["order_id"], dep)] < e["seq"]
    attempts = Counter((e["order_id"], e["step"]) for e in events if e["type"] == "task_failed")
    assert max(attempts.values(), default=0) <= 4
    for oid in ids:
        for task in cluster.get_order(oid)["tasks"].values():
            assert task["attempts"] <= 4
    # Every task that was on a killed worker when it died finished on another worker.
    moved = [e for e in events if e["type"] == "task_reassigned" and e["from_worker"] in victims]
    assert moved, "the kills happened while work was in flight"
    for e in moved:
        order = cluster.get_order(e["order_id"])
        task = order["tasks"][e["step"]]
        if order["status"] == "completed":
            assert task["status"] == "succeeded" and task["worker"] not in victims
    assert sum(1 for oid in ids if cluster.get_order(oid)["status"] == "failed") < 25
    cluster.validate()


def test_a_killed_worker_is_detected_by_heartbeat_and_its_task_finishes_elsewhere(make_cluster):
    gate = threading.Event()
    started = threading.Event()

    def slow_payment(ctx: TaskContext):
        if ctx.worker_id == "w-1":
            started.set()
            ctx.sleep(30)  # hangs until the worker is killed (the context is cancelled)
        return {"paid_by": ctx.worker_id}

    handlers = {"payment": slow_payment, "packing": lambda c: None, "shipping": lambda c: None}
    cluster = make_cluster(workers=0, handlers=handlers)
    cluster.add_worker("w-1")
    oid = cluster.submit(ORDER)
    assert started.wait(10)
    cluster.add_worker("w-2")
    cluster.kill_worker("w-1")
    # The kill alone tells the scheduler nothing: the worker is still a member.
    assert cluster.get_order(oid)["tasks"]["payment"]["worker"] == "w-1"
    wait_for(
        lambda: any(e["type"] == "worker_dead" for e in cluster.events()), 10, message="worker_dead"
    )
    assert cluster.wait_until_idle(10)
    order = cluster.get_order(oid)
    assert order["status"] == "completed"
    assert order["tasks"]["payment"]["result"] == {"paid_by": "w-2"}
    assert order["tasks"]["payment"]["reassignments"] == 1
    assert [w["status"] for w in cluster.workers() if w["id"] == "w-1"] == ["dead"]
    gate.set()


def test_a_stale_report_through_the_worker_port_is_fenced_by_its_lease(make_cluster):
    # The stale report comes from the same worker, for the same step, while that step runs
    # there again: only the lease tells the two runs apart.
    release = threading.Event()

    def payment(ctx: TaskContext):
        if ctx.attempt == 1:
            raise RuntimeError("card declined")
        release.wait(30)
        return "second run"

    cluster = make_cluster(
        workers=0,
        handlers={"payment": payment, "packing": lambda c: 1, "shipping": lambda c: 1},
        retry=RetryPolicy(max_retries=1, backoff_base=0.001, backoff_cap=0.001),
    )
    cluster.add_worker("w-1")
    oid = cluster.submit(ORDER)

    def second_attempt_running() -> bool:
        task = cluster.get_order(oid)["tasks"]["payment"]
        return task["status"] == "running" and task["attempts"] == 2

    try:
        wait_for(second_attempt_running, 10, message="the second attempt running")
        # The first attempt's report arrives again (a worker resending after a reconnect). Its
        # lease was 1: the first assignment of this cluster.
        cluster.report("w-1", Dispatch("w-1", f"{oid}:payment", 1), True, "first run")
        assert cluster.stats()["rejected_results"] == 1
        assert cluster.get_order(oid)["tasks"]["payment"]["status"] == "running"
    finally:
        release.set()
    assert cluster.wait_until_idle(10)
    assert cluster.get_order(oid)["tasks"]["payment"]["result"] == "second run"


def test_draining_a_worker_finishes_its_task_then_removes_it(make_cluster):
    cluster = make_cluster(workers=2)
    ids = [cluster.submit(ORDER) for _ in range(100)]
    cluster.drain_worker("w-1")
    wait_for(
        lambda: [w["status"] for w in cluster.workers() if w["id"] == "w-1"] == ["removed"], 10
    )
    assert cluster.wait_until_idle(20)
    assert all(cluster.get_order(o)["status"] == "completed" for o in ids)
    with pytest.raises(Conflict):
        cluster.drain_worker("w-1")
    with pytest.raises(Conflict):
        cluster.kill_worker("w-1")


def test_an_added_worker_takes_new_work(make_cluster):
    cluster = make_cluster(workers=1)
    new = cluster.add_worker()
    ids = [cluster.submit(ORDER) for _ in range(60)]
    assert cluster.wait_until_idle(20)
    per_worker = Counter(cluster.get_order(o)["tasks"]["payment"]["worker"] for o in ids)
    assert per_worker[new] > 0 and per_worker["w-1"] > 0


def test_unknown_ids_raise_clear_errors(make_cluster):
    cluster = make_cluster(workers=1)
    with pytest.raises(UnknownWorker, match="unknown worker 'nope'"):
        cluster.kill_worker("nope")
    with pytest.raises(UnknownOrder):
        cluster.get_order("nope")
    with pytest.raises(UnknownOrder):
        cluster.story("nope")


def test_story_lists_an_orders_events_in_order(make_cluster):
    cluster = make_cluster(workers=1)
    oid = cluster.submit(ORDER)
    assert cluster.wait_until_idle(10)
    story = cluster.story(oid)
    assert [e["type"] for e in story][0] == "order_submitted"
    assert story[-1]["type"] == "order_completed"
    assert [e["seq"] for e in story] == sorted(e["seq"] for e in story)
    assert {e["order_id"] for e in story} == {oid}


def test_idempotency_key_maps_to_the_first_order(make_cluster):
    cluster = make_cluster(workers=1)
    oid = cluster.submit(ORDER, idempotency_key="k1")
    assert cluster.find_by_idempotency_key("k1") == oid
    with pytest.raises(Conflict):
        cluster.submit(ORDER, idempotency_key="k1")


def test_a_stuck_subscriber_does_not_stall_the_cluster(make_cluster):
    cluster = make_cluster(workers=2)
    blocked = threading.Event()
    seen = defaultdict(int)

    def stuck(events):
        seen["calls"] += 1
        blocked.wait(30)

    sub = cluster.subscribe(stuck, maxsize=2, name="stuck")
    ids = [cluster.submit(ORDER) for _ in range(200)]
    assert cluster.wait_until_idle(20)
    assert all(cluster.get_order(o)["status"] == "completed" for o in ids)
    assert sub.dropped > 0
    blocked.set()


def test_a_broken_subscriber_is_logged_and_others_still_receive(make_cluster, caplog):
    cluster = make_cluster(workers=1)
    got = []
    cluster.subscribe(lambda events: 1 / 0, name="broken")
    cluster.subscribe(got.extend, name="good")
    cluster.submit(ORDER)
    assert cluster.wait_until_idle(10)
    wait_for(lambda: any(e["type"] == "order_completed" for e in got), 5)
    wait_for(lambda: "subscriber broken failed" in caplog.text, 5)


def test_failures_and_retries_are_logged_naming_order_step_attempt_and_worker(make_cluster, caplog):
    calls = Counter()

    def flaky(ctx: TaskContext):
        calls[ctx.order_id] += 1
        if ctx.attempt == 1:
            raise RuntimeError("gateway timeout")
        return "ok"

    cluster = make_cluster(
        workers=1, handlers={"payment": flaky, "packing": lambda c: 1, "shipping": lambda c: 1}
    )
    caplog.set_level("INFO", logger="orderflow")
    oid = cluster.submit(ORDER)
    assert cluster.wait_until_idle(10)
    failed = [r.getMessage() for r in caplog.records if "failed on" in r.getMessage()]
    retry = [r.getMessage() for r in caplog.records if "will retry" in r.getMessage()]
    assert len(failed) == 1 and oid in failed[0] and "payment" in failed[0]
    assert "attempt 1" in failed[0] and "w-1" in failed[0] and "gateway timeout" in failed[0]
    assert len(retry) == 1 and "attempt 2" in retry[0]


def test_a_result_that_is_not_valid_json_is_a_failed_attempt(make_cluster):
    results = iter([float("nan"), {"ok": True}])
    handlers = {"payment": lambda c: next(results), "packing": lambda c: 1, "shipping": lambda c: 1}
    cluster = make_cluster(workers=1, handlers=handlers)
    oid = cluster.submit(ORDER)
    assert cluster.wait_until_idle(10)
    payment = cluster.get_order(oid)["tasks"]["payment"]
    assert payment["status"] == "succeeded" and payment["attempts"] == 2
    assert payment["result"] == {"ok": True}
    failed = [e for e in cluster.story(oid) if e["type"] == "task_failed"]
    assert len(failed) == 1 and "NaN" in failed[0]["error"]


@pytest.mark.slow  # a fresh interpreter
def test_a_cluster_used_as_a_library_prints_nothing_unless_logging_is_configured():
    # A fresh interpreter: no logging configured, as in an application that uses Cluster.
    code = (
        "from scheduler import Cluster, RetryPolicy\n"
        "def boom(ctx):\n"
        "    raise RuntimeError('declined')\n"
        "c = Cluster(workers=1, handlers={'payment': boom}, retry=RetryPolicy(max_retries=1,"
        " backoff_base=0.001, backoff_cap=0.001)).start()\n"
        "c.submit({'customer': 'ada', 'items': [{'sku': 'A', 'qty': 1, 'price': 1}]})\n"
        "assert c.wait_until_idle(10)\n"
        "assert c.stats()['orders']['failed'] == 1\n"
        "c.stop()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout == ""


def test_a_result_over_the_size_limit_is_a_failed_attempt_saying_so(make_cluster):
    def bloated(ctx: TaskContext):
        return {"blob": "x" * 5000}

    cluster = make_cluster(handlers={"payment": bloated}, max_result_bytes=4096, max_retries=0)
    oid = cluster.submit(ORDER)
    assert cluster.wait_until_idle(10)
    payment = cluster.get_order(oid)["tasks"]["payment"]
    assert payment["status"] == "failed" and payment["result"] is None
    assert "too large" in payment["error"] and "at most 4096" in payment["error"]


def test_a_long_error_message_is_cut_to_the_limit(make_cluster):
    def verbose(ctx: TaskContext):
        raise RuntimeError("e" * 10_000)

    cluster = make_cluster(handlers={"payment": verbose}, max_error_chars=100, max_retries=0)
    oid = cluster.submit(ORDER)
    assert cluster.wait_until_idle(10)
    error = cluster.get_order(oid)["tasks"]["payment"]["error"]
    assert len(error) < 300 and "characters cut" in error
def test_a_worker_whose_first_heartbeat_comes_before_its_join_stays_alive():
    """The executor starts before the core knows the worker: if the join waits on the lock
    for longer than a heartbeat interval (a bulk submit, a journal swap), its first beat
    arrives while the worker is still unknown. It must not stop itself for that."""
    from scheduler.runtime.worker import ThreadWorker

    noop = {s: (lambda ctx: ctx.worker_id) for s in ("payment", "packing", "shipping")}

    class SlowToJoin(ThreadWorker):
        """Models lock contention: the join's `_call` runs only after the first beat."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.first_beat = threading.Event()

        def heartbeat_once(self):
            super().heartbeat_once()
            self.first_beat.set()

        def start(self):
            super().start()
            self.first_beat.wait(5)

    cluster = Cluster(
        workers=0, handlers=noop, heartbeat_interval=0.05, heartbeat_timeout=30.0
    ).start()
    try:
        executor = SlowToJoin("wj", cluster, noop, 0.05)
        cluster.join_worker("wj", executor)
        assert {w["id"]: w["status"] for w in cluster.workers()}["wj"] == "alive"
        assert not executor.stopping.is_set(), "a freshly joined, 'alive' worker has stopped"
    finally:
        cluster.stop()


class RecordingExecutor:
    """An executor that runs nothing: it records what the cluster hands it."""

    kind = "thread"
    slots = 1
    steps = None  # any step
    tags = frozenset()

    def __init__(self):
        self.delivered: list[Dispatch] = []

    def start(self): ...
    def deliver(self, dispatch):
        self.delivered.append(dispatch)

    def cancel(self, dispatch): ...
    def stop(self): ...
    def kill(self): ...
    def join(self, timeout):
        return True


@pytest.mark.parametrize("persistent", [False, True])
def test_a_report_can_start_the_next_task_it_hands_to_the_same_worker(tmp_path, persistent):
    # In memory the reporter takes its worker's next task in the same hand-over, so no
    # thread is woken for it; with a journal that task is handed over only once the report
    # is durable, as every dispatch is.
    from scheduler.journal.sqlite import SQLiteJournal

    journal = SQLiteJournal(tmp_path / "j.db") if persistent else None
    cluster = Cluster(workers=0, handlers={}, journal=journal, **FAST).start()
    try:
        executor = RecordingExecutor()
        cluster.join_worker("w-1", executor)
        oid = cluster.submit(ORDER)
        wait_for(lambda: executor.delivered, 5, message="the payment delivered")
        payment = executor.delivered.pop()
        assert cluster.begin_task("w-1", payment)["step"] == "payment"
        started = cluster.report_many("w-1", [(payment, True, "paid")], [], take=1)
        if persistent:
            assert started == []
            wait_for(lambda: executor.delivered, 5, message="the packing delivered")
            assert executor.delivered[0].task_id == f"{oid}:packing"
        else:
            [(packing, context)] = started
            assert (packing.task_id, context["step"]) == (f"{oid}:packing", "packing")
            assert context["results"] == {"payment": "paid"}
            assert executor.delivered == []
            assert cluster.get_order(oid)["tasks"]["packing"]["status"] == "running"
    finally:
        cluster.stop()
