"""Thread workers with slots: async handlers on the worker's event loop, plain ones on its
runner threads, attempts that time out, and outcomes that end together reported together."""

from __future__ import annotations

import asyncio
import threading

import pytest
from conftest import wait_for

from scheduler import Cluster, RetryPolicy
from scheduler.engine.config import StepPolicy
from scheduler.engine.model import Dispatch
from scheduler.runtime.worker import ThreadWorker
from scheduler.steps.context import TaskContext

ORDER = {"customer": "ada", "items": [{"sku": "A1", "qty": 2, "price": 9.5}]}
FAST = {"heartbeat_interval": 0.05, "heartbeat_timeout": 0.3, "seed": 3}
STEPS = ("payment", "packing", "shipping")


@pytest.fixture
def make_cluster():
    made = []

    def make(**kwargs):
        cluster = Cluster(**{**FAST, **kwargs}).start()
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


class Gauge:
    """How many handlers run at once, and the most ever seen."""

    def __init__(self):
        self.now = self.most = 0
        self._lock = threading.Lock()

    def __enter__(self):
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc):
        with self._lock:
            self.now -= 1


def test_async_handlers_run_up_to_the_slots_at_once_and_finish_every_order(make_cluster):
    gauge = Gauge()

    async def step(ctx: TaskContext):
        with gauge:
            await ctx.asleep(0.01)
        return ctx.worker_id

    cluster = make_cluster(workers=2, slots=5, handlers=dict.fromkeys(STEPS, step))
    ids = cluster.submit_many([ORDER] * 60)
    assert cluster.wait_until_idle(20)
    assert all(cluster.get_order(o)["status"] == "completed" for o in ids)
    assert 5 < gauge.most <= 10  # both workers ran several at once, never more than slots
    cluster.validate()


def test_a_worker_with_async_and_plain_handlers_runs_each_where_it_belongs(make_cluster):
    # Payment and shipping are async, packing is plain: whichever thread takes a task from
    # the worker's queue, each handler runs on its own kind of thread.
    threads: dict[str, set[str]] = {s: set() for s in STEPS}

    async def on_loop(ctx: TaskContext):
        threads[ctx.step].add(threading.current_thread().name)
        await asyncio.sleep(0.002)

    def on_runner(ctx: TaskContext):
        threads[ctx.step].add(threading.current_thread().name)
        ctx.sleep(0.002)

    handlers = {"payment": on_loop, "packing": on_runner, "shipping": on_loop}
    cluster = make_cluster(workers=1, slots=4, handlers=handlers)
    ids = cluster.submit_many([ORDER] * 40)
    assert cluster.wait_until_idle(20)
    assert all(cluster.get_order(o)["status"] == "completed" for o in ids)
    assert threads["payment"] == threads["shipping"] == {"w-1-loop"}
    assert threads["packing"] and all("-run-" in name for name in threads["packing"])


def test_an_async_handler_past_its_time_limit_is_cancelled_and_retried(make_cluster):
    cancelled = threading.Event()

    async def payment(ctx: TaskContext):
        if ctx.attempt == 1:
            try:
                await ctx.asleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return "paid"

    cluster = make_cluster(
        workers=1,
        slots=2,
        step_timeout=0.2,
        handlers={"payment": payment, "packing": lambda c: 1, "shipping": lambda c: 1},
        retry=RetryPolicy(max_retries=1, backoff_base=0.001, backoff_cap=0.001),
    )
    oid = cluster.submit(ORDER)
    assert cluster.wait_until_idle(10)
    assert cancelled.wait(5)
    payment_task = cluster.get_order(oid)["tasks"]["payment"]
    assert (payment_task["result"], payment_task["attempts"]) == ("paid", 2)
    failures = [e for e in cluster.story(oid) if e["type"] == "task_failed"]
    assert [e["error"] for e in failures] == ["timed out after 0.2 s"]
    # The cancelled handler returned, so its slot is free again (not left stuck).
    wait_for(lambda: cluster.stats()["slots"]["stuck"] == 0, 5, message="the slot freed")


class RecordingPort:
    """A cluster stand-in: every task starts, every report is recorded."""

    def __init__(self):
        self.reports: list[list[tuple[Dispatch, bool, object]]] = []
        self.all_reported = threading.Event()
        self.expected = 0

    def begin_task(self, worker_id: str, dispatch: Dispatch) -> dict:
        return {
            "order_id": dispatch.task_id, "order": {}, "step": "payment", "attempt": 1,
            "worker_id": worker_id, "results": {}, "idempotency_key": dispatch.task_id,
        }

    def report_many(self, worker_id, outcomes, following, take=0):
        self.reports.append(list(outcomes))
        if sum(map(len, self.reports)) >= self.expected:
            self.all_reported.set()
        return [(d, self.begin_task(worker_id, d)) for d in following]

    def beat(self, worker_id: str) -> bool:
        return True

    def attempts_ended(self, worker_id: str, ended: list[tuple[str, int]]) -> None:
        self.ended = [*getattr(self, "ended", []), *ended]


def test_async_attempts_that_end_together_are_reported_in_one_hand_over():
    port = RecordingPort()
    port.expected = 5
    gate: asyncio.Event | None = None
    waiting = threading.Semaphore(0)

    async def payment(ctx: TaskContext):
        nonlocal gate
        gate = gate or asyncio.Event()
        waiting.release()
        await gate.wait()
        return ctx.order_id

    worker = ThreadWorker("w-1", port, {"payment": payment}, heartbeat_interval=0.05, slots=5)
    worker.start()
    try:
        for lease in range(1, 6):
            worker.deliver(Dispatch("w-1", f"t{lease}", lease))
        for _ in range(5):
            assert waiting.acquire(timeout=5)
        worker._loop.call_soon_threadsafe(gate.set)  # all five end in one pass of the loop
        assert port.all_reported.wait(5)
    finally:
        worker.stop()
        worker.join(5)
    assert [len(batch) for batch in port.reports] == [5]
    assert sorted(value for _, _, value in port.reports[0]) == [f"t{i}" for i in range(1, 6)]


def test_a_killed_workers_payment_keeps_its_place_in_the_limit_until_its_thread_returns(
        make_cluster):
    # A killed (or fenced-off) thread worker's handler runs on until it returns; the step's
    # max_in_flight counts it until then, however long after the worker's death.
    gate, began = threading.Event(), threading.Semaphore(0)

    def payment(ctx: TaskContext) -> str:
        began.release()
        gate.wait(30)  # deaf to its cancellation until the test lets it go
        return "paid"

    cluster = make_cluster(
        workers=2, slots=2, step_timeout=60.0,
        handlers={"payment": payment, "packing": lambda c: 1, "shipping": lambda c: 1},
        steps={"payment": StepPolicy(max_in_flight=1)},
    )
    first, second = cluster.submit(ORDER), cluster.submit(ORDER)
    assert began.acquire(timeout=10)
    holder = next(w["id"] for w in cluster.workers() if w["running"])
    cluster.kill_worker(holder)
    wait_for(lambda: cluster.get_order(first)["tasks"]["payment"]["status"] == "ready"
             or cluster.get_order(second)["tasks"]["payment"]["status"] != "ready", 10,
             message="the killed worker declared dead")
    # Both payments wait: the one that moved and the other; nothing else started.
    assert cluster.stats()["held_by_limits"] == {"payment": 2}
    assert not began.acquire(timeout=0)
    gate.set()  # its thread returns: the place is free
    assert cluster.wait_until_idle(20)
    ended = [e for e in cluster.events() if e["type"] == "attempt_ended"]
    assert [(e["order_id"], e["worker_id"]) for e in ended] == [(first, holder)]
    assert {cluster.get_order(o)["status"] for o in (first, second)} == {"completed"}
