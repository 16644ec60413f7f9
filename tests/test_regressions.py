"""Regression tests for bugs found in review: idempotency keys outliving in-memory orders,
recovery's counters, a retried order whose rows were pruned, waiting on a closed journal, and
a worker heartbeating before its join completed.

Pure tests drive SchedulerCore with the fake-clock Sim; journal tests drive a real
SQLiteJournal from the test thread (record under a lock, wait for the ticket), so every
"crash" is an exact committed prefix; no sleeps are used to synchronise.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sim import ORDER, Sim

from scheduler import Cluster, TaskContext
from scheduler.engine.config import ClusterConfig, RetryPolicy
from scheduler.engine.core import SchedulerCore
from scheduler.engine.errors import Conflict
from scheduler.engine.states import TaskState
from scheduler.journal.recovery import recover_into
from scheduler.journal.schema import StoreError
from scheduler.journal.sqlite import SQLiteJournal

S = TaskState
FAST = {"heartbeat_interval": 0.05, "heartbeat_timeout": 0.5}


def noop(ctx: TaskContext):
    return {"by": ctx.worker_id}


NOOP = {s: noop for s in ("payment", "packing", "shipping")}


class JournaledSim(Sim):
    """The Sim, with every stimulus's effects recorded in a real SQLiteJournal and committed
    before the next stimulus: "crashing" at any point recovers exactly the committed prefix."""

    def __init__(self, db, workers: int = 0, **settings):
        self.journal = SQLiteJournal(db)
        self.lock = threading.Lock()
        self._settings = dict(settings)
        super().__init__(workers=0, **settings)
        self.journal.attach(self.core, self.lock)
        for i in range(1, workers + 1):
            self.add_worker(f"w{i}")

    def apply(self, fx):
        if getattr(self, "journal", None) is not None and (fx.events or fx.tasks):
            with self.lock:
                ticket = self.journal.record(fx)
            self.journal.wait(ticket)
        return super().apply(fx)

    def crash_and_recover(self, db) -> SchedulerCore:
        """Close the journal (everything recorded is committed) and rebuild a fresh core."""
        self.journal.close()
        journal = SQLiteJournal(db)
        try:
            state = journal.recover()
        finally:
            journal.close()
        settings = dict(self._settings)
        settings.setdefault("seed", 7)
        core = SchedulerCore(ClusterConfig(workers=0, **settings))
        recover_into(core, state, now=self.now)
        return core


def true_task_counts(core: SchedulerCore) -> dict[str, int]:
    counts = Counter(t.state.value for t in core.tasks.values())
    return {s.value: counts.get(s.value, 0) for s in TaskState}


def true_order_counts(core: SchedulerCore) -> dict[str, int]:
    counts = Counter(core.order_status(o).value for o in core.orders.values())
    return {k: counts.get(k, 0) for k in core.orders_by_status}


# --------------------------------------------------------------------------- 1. idempotency


def test_idempotency_key_of_an_evicted_order_is_accepted_again_as_a_new_order():
    """README: a repeated Idempotency-Key returns the same order. Once the order is evicted
    from memory (finished_order_history), the key is forgotten and a second order is made:
    the customer is charged twice."""
    sim = Sim(workers=1, finished_order_history=1)
    sim.apply(sim.core.submit("o1", dict(ORDER), now=sim.now, idempotency_key="K"))
    sim.run_all()
    sim.submit("o2")
    sim.run_all()  # o1 is evicted from memory here, and its key with it
    with pytest.raises(Conflict):
        sim.apply(sim.core.submit("o3", dict(ORDER), now=sim.now, idempotency_key="K"))


def test_reused_idempotency_key_kills_the_journal_writer_and_stalls_all_later_work(tmp_path):
    """orders.idempotency_key is UNIQUE in SQLite. The evicted key is accepted again in
    memory, the INSERT fails with IntegrityError, the writer thread exits, and from then on
    every durable submit raises StoreError while the order is already placed in the core,
    and no dispatch is ever delivered again (on_commit actions never run)."""
    cluster = Cluster(
        workers=1,
        journal=SQLiteJournal(tmp_path / "of.db"),
        handlers=NOOP,
        finished_order_history=1,
        **FAST,
    ).start()
    try:
        first = cluster.submit(ORDER, idempotency_key="K")
        assert cluster.wait_until_idle(10)
        cluster.submit(ORDER)
        assert cluster.wait_until_idle(10)
        # Expected: the same order back (or a Conflict) -- never a second order.
        problems = []
        try:
            again = cluster.submit(ORDER, idempotency_key="K")
            if again != first:
                problems.append(f"a second order {again} was made for key K")
        except Conflict:
            pass
        except StoreError as exc:
            problems.append(f"repeated key broke the journal: {exc}")
            stuck = [o for o in cluster.orders() if not o["terminal"]]
            problems.append(f"the refused order is live in memory anyway: {stuck}")
        # ...and the cluster keeps working afterwards.
        try:
            cluster.submit(ORDER)
        except StoreError as exc:
            problems.append(f"every later submit fails too: {exc}")
        if not cluster.wait_until_idle(3):
            problems.append("unfinished orders never complete (dispatches not delivered)")
        assert not problems, "\n".join(problems)
    finally:
        cluster.stop()


# --------------------------------------------------------------------------- 2. recovery counters


def test_tasks_by_state_drift_after_recovery_of_unjournaled_moves(tmp_path):
    """The counters snapshot (meta.counters) counts every move, but UNJOURNALED_MOVES leave task
    rows behind (or absent). restore() then adjusts from the stale row state
    (recovery.py:_requeue), so `tasks_by_state` no longer matches the tasks."""
    db = tmp_path / "of.db"
    sim = JournaledSim(db, workers=1)
    sim.submit("o1")  # payment pending->ready->assigned: no task row at all
    d, _ = sim.start_next("w1")  # assigned->running: still no row; task_started commits counters
    assert d is not None
    core = sim.crash_and_recover(db)
    core.add_worker("w9", now=sim.now)
    assert core.tasks_by_state == true_task_counts(core)


def test_tasks_by_state_drift_after_recovery_without_any_worker(tmp_path):
    db = tmp_path / "of.db"
    sim = JournaledSim(db, workers=0)
    sim.submit("o1")  # payment ready (unplaced); row never written
    core = sim.crash_and_recover(db)
    assert core.tasks_by_state == true_task_counts(core)


def test_orders_by_status_drift_after_recovery(tmp_path):
    """The order row keeps the status of its first snapshot ("pending") while the counters
    snapshot says in_progress; after restore the order is counted as in_progress twice and
    `pending` goes negative once a worker takes it."""
    db = tmp_path / "of.db"
    sim = JournaledSim(db, workers=0)
    sim.submit("o1")  # row: status pending
    sim.add_worker("w1")  # order now in_progress; row not updated (not terminal)
    core = sim.crash_and_recover(db)
    core.add_worker("w9", now=sim.now)
    assert core.orders_by_status == true_order_counts(core)
    assert min(core.orders_by_status.values()) >= 0


# --------------------------------------------------------------------------- 3. journal after close


def test_journal_wait_after_close_hangs_forever(tmp_path):
    """After close() (Cluster.stop), a late durable caller (an HTTP submit racing shutdown)
    records into buffers no writer will ever commit; wait() loops forever because it only
    gives up on `_failure`, never on a stopped writer."""
    journal = SQLiteJournal(tmp_path / "of.db")
    core, lock = SchedulerCore(ClusterConfig(workers=0)), threading.Lock()
    journal.attach(core, lock)
    journal.close()
    with lock:
        fx = core.submit("late", dict(ORDER), now=0.0)
        ticket = journal.record(fx)
    outcome: list[object] = []

    def waiter():
        try:
            journal.wait(ticket)
            outcome.append("returned")
        except StoreError as exc:
            outcome.append(exc)

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    t.join(3.0)
    hung = t.is_alive()
    if hung:  # release the waiter so the test leaves no thread behind
        with journal._writer._done:
            journal._writer._failure = RuntimeError("released by the test")
            journal._writer._done.notify_all()
        t.join(5)
    assert not hung, "journal.wait() after close() never returns"
    assert isinstance(outcome[0], StoreError), "a record after close must not look durable"


# --------------------------------------------------------------------------- 4. retry after prune


def test_retry_of_a_pruned_order_is_not_durable(tmp_path):
    """Prune deletes a finished order's rows while the order stays in memory. retry_order then
    writes an UPDATE that matches no row (o.journaled is True) and task rows with no order
    row; after a restart the accepted retry is gone (tasks with no order are never loaded)."""
    db = tmp_path / "of.db"
    sim = JournaledSim(db, workers=1, retry=RetryPolicy(max_retries=0))
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.fail(d)  # o1 failed
    assert sim.core.orders["o1"].reported_status == "failed"
    sim.journal.prune(before_wall=1e18)  # the operator's retention removes it from disk
    sim.apply(sim.core.retry_order("o1", now=sim.now))  # accepted: in_progress again
    core = sim.crash_and_recover(db)
    assert "o1" in core.orders, "a retried, unfinished order vanished after a restart"


# --------------------------------------------------------------------------- 5. join race


def test_a_worker_whose_first_heartbeat_beats_its_join_stops_itself_for_good():
    """join_worker starts the executor (cluster.py:205) before the core knows the worker
    (cluster.py:207). If the join's `_call` waits on the lock for longer than one heartbeat
    interval (a bulk submit, a journal swap), the first beat gets False ("unknown worker"),
    the worker stops itself, and is then added to the ring anyway: tasks are placed on a
    worker with no runner until the monitor declares it dead."""
    from scheduler.runtime.worker import ThreadWorker

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
        workers=0, handlers=NOOP, heartbeat_interval=0.05, heartbeat_timeout=30.0
    ).start()
    try:
        executor = SlowToJoin("wj", cluster, NOOP, 0.05)
        cluster.join_worker("wj", executor)
        status = {w["id"]: w["status"] for w in cluster.workers()}["wj"]
        assert status == "alive"
        assert not executor.stopping.is_set(), "a freshly joined, 'alive' worker has stopped"
    finally:
        cluster.stop()
