"""Thread workers with slots: async handlers on the worker's event loop, plain ones on its
runner threads, attempts that time out, and outcomes that end together reported together."""

from __future__ import annotations

import asyncio
import threading

import pytest
from conftest import wait_for
from hung import FakeClock, deaf_handlers, run_hung_attempts

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


# --------------------------------------------------------------------------- hung handlers


def runner_threads(prefix: str = "w-") -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and "-run-" in t.name]


def test_a_thread_worker_abandons_a_deaf_handler_and_runs_the_next_task_on_a_new_thread():
    port = RecordingPort()
    release = threading.Event()
    entered = threading.Semaphore(0)

    def payment(ctx: TaskContext):
        if ctx.order_id == "t1":
            entered.release()
            release.wait(60)  # deaf to ctx.cancelled
        return ctx.order_id

    worker = ThreadWorker("w-9", port, {"payment": payment}, heartbeat_interval=0.05, slots=1)
    worker.start()
    try:
        hung = Dispatch("w-9", "t1", 1)
        worker.deliver(hung)
        assert entered.acquire(timeout=5)
        worker.cancel(hung)  # its time limit: the handler does not listen
        worker.abandon(hung)
        port.expected = 1
        worker.deliver(Dispatch("w-9", "t2", 2))
        assert port.all_reported.wait(5), "the slot served t2 while t1 still hung"
        assert [value for _, _, value in port.reports[0]] == ["t2"]
        assert {t.name for t in runner_threads("w-9")} == {"w-9-run-1", "w-9-run-2"}
        port.all_reported.clear()
        port.expected = 2
        release.set()
        assert port.all_reported.wait(5), "the abandoned handler's outcome was reported"
        assert [value for _, _, value in port.reports[1]] == ["t1"]
        wait_for(lambda: [t.name for t in runner_threads("w-9")] == ["w-9-run-2"], 5,
                 message="the abandoned thread to end, the new one to stay")
        # Still one slot: the next task runs on the new thread, not on two at once.
        port.all_reported.clear()
        port.expected = 3
        worker.deliver(Dispatch("w-9", "t3", 3))
        assert port.all_reported.wait(5)
    finally:
        release.set()
        worker.stop()
        assert worker.join(5)


def test_an_async_handler_deaf_to_its_cancellation_gives_its_slot_back_when_abandoned():
    port = RecordingPort()
    release = threading.Event()
    entered = threading.Semaphore(0)

    async def payment(ctx: TaskContext):
        if ctx.order_id == "t1":
            entered.release()
            while not release.is_set():
                try:
                    await asyncio.sleep(0.01)
                except asyncio.CancelledError:
                    pass  # deaf to its cancellation
        return ctx.order_id

    worker = ThreadWorker("w-8", port, {"payment": payment}, heartbeat_interval=0.05, slots=1)
    worker.start()
    try:
        hung = Dispatch("w-8", "t1", 1)
        worker.deliver(hung)
        assert entered.acquire(timeout=5)
        worker.cancel(hung)
        worker.abandon(hung)
        port.expected = 1
        worker.deliver(Dispatch("w-8", "t2", 2))
        assert port.all_reported.wait(5), "the slot served t2 while t1 still hung"
        assert [value for _, _, value in port.reports[0]] == ["t2"]
        port.all_reported.clear()
        port.expected = 2
        release.set()
        assert port.all_reported.wait(5)
        assert [value for _, _, value in port.reports[1]] == ["t1"]
    finally:
        release.set()
        worker.stop()
        assert worker.join(5)


def test_hung_handlers_that_ignore_cancellation_leave_the_other_orders_running(make_cluster):
    # Issue 19, finding 5: 2 workers x 4 slots; 3 orders whose payment hangs in every
    # attempt, deaf to its cancellation. Before, their 4 attempts each took 8 of 8 slots for
    # good and later orders waited "for a free slot" forever. (The default bound: 16
    # abandoned threads per worker, 4 slots x 4 attempts.)
    clock, release, entered = FakeClock(), threading.Event(), threading.Semaphore(0)
    cluster = make_cluster(
        workers=2, slots=4, clock=clock, heartbeat_timeout=60.0, handlers=deaf_handlers(
            entered, release), step_timeout=5.0, abandon_after=1.0,
        retry=RetryPolicy(max_retries=3, backoff_base=0.01, backoff_cap=0.01))
    try:
        hung = [cluster.submit({**ORDER, "customer": "hang"}) for _ in range(3)]
        for attempt in range(1, 5):
            run_hung_attempts(cluster, clock, entered, 3, timeout=5.0, grace=1.0)
            wait_for(lambda a=attempt: cluster.stats()["slots"]["abandoned"] == 3 * a, 10,
                     message=f"the threads of attempt {attempt} abandoned")
        assert all(cluster.get_order(o)["status"] == "failed" for o in hung)
        assert "gave up after 4 attempts: timed out after 5 s" in (
            cluster.get_order(hung[0])["tasks"]["payment"]["error"])
        # Every slot serves: the later orders complete while 12 handlers still hang.
        later = cluster.submit_many([ORDER] * 40)
        assert cluster.wait_until_idle(30)
        assert all(cluster.get_order(o)["status"] == "completed" for o in later)
        stats = cluster.stats()
        assert stats["slots"] == {"total": 8, "busy": 0, "stuck": 0, "abandoned": 12}
        assert stats["abandoned_threads"] == 12 and stats["workers_hung"] == 0
        workers = cluster.workers()
        assert sum(w["abandoned"] for w in workers) == 12 and all(w["stuck"] == 0
                                                                  for w in workers)
        assert len(runner_threads()) == 8 + 12
        abandoned = [e for e in cluster.events() if e["type"] == "thread_abandoned"]
        assert len(abandoned) == 12 and {e["order_id"] for e in abandoned} == set(hung)
        rejected = stats["rejected_results"]
    finally:
        release.set()
    # The abandoned handlers return: their late results are rejected, their threads end.
    wait_for(lambda: cluster.stats()["slots"]["abandoned"] == 0, 10,
             message="the abandoned handlers reported")
    assert cluster.stats()["rejected_results"] == rejected + 12
    wait_for(lambda: len(runner_threads()) == 8, 10, message="the abandoned threads to end")
    cluster.validate()


def test_past_its_bound_a_worker_with_deaf_handlers_is_declared_dead_once_and_says_why(
        make_cluster, caplog):
    clock, release, entered = FakeClock(), threading.Event(), threading.Semaphore(0)
    cluster = make_cluster(
        workers=1, slots=2, clock=clock, heartbeat_timeout=60.0, handlers=deaf_handlers(
            entered, release), step_timeout=5.0, abandon_after=1.0, max_abandoned=2,
        retry=RetryPolicy(max_retries=3, backoff_base=0.01, backoff_cap=0.01))
    try:
        for _ in range(2):
            cluster.submit({**ORDER, "customer": "hang"})
        run_hung_attempts(cluster, clock, entered, 2, timeout=5.0, grace=1.0)
        wait_for(lambda: cluster.stats()["slots"]["abandoned"] == 2, 10,
                 message="two threads abandoned, as many as it may")
        caplog.set_level("WARNING", logger="orderflow")
        run_hung_attempts(cluster, clock, entered, 2, timeout=5.0, grace=1.0)
        wait_for(lambda: cluster.workers()[0]["status"] == "dead", 10,
                 message="the worker declared dead past its bound")
        stats = cluster.stats()
        assert stats["workers_hung"] == 1 and stats["abandoned_threads"] == 2
        assert stats["workers"] == {"dead": 1}
        # No thread beyond the bound: 2 runners and 2 abandoned, nothing started since.
        assert len(runner_threads()) == 4
    finally:
        release.set()
    wait_for(lambda: not runner_threads(), 10, message="the dead worker's threads to end")
    # One ERROR line, naming the worker and the step (the threads ended without another).
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, errors
    assert errors[0].startswith("worker w-1: the handler of order ")
    assert " step payment attempt 2 " in errors[0] and "(at most 2)" in errors[0]
