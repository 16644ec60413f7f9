"""The durable journal: restarts, crashes (real SIGKILL), recovery rules and clear failures."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from pathlib import Path

import journal_history
import pytest
from conftest import wait_for
from sim import Sim

from scheduler import Cluster, Conflict, RetryPolicy, TaskContext
from scheduler.engine import views
from scheduler.engine.config import ClusterConfig
from scheduler.engine.core import SchedulerCore
from scheduler.engine.states import TaskState
from scheduler.journal.location import open_journal, parse_location, read_connection
from scheduler.journal.recovery import recover_into
from scheduler.journal.retention import Pruner, parse_duration
from scheduler.journal.schema import StoreError
from scheduler.journal.sqlite import SCHEMA_VERSION, SQLiteJournal

ORDER = {"customer": "ada", "items": [{"sku": "A1", "qty": 1, "price": 3.0}]}
FAST = {"heartbeat_interval": 0.05, "heartbeat_timeout": 0.5}
HERE = Path(__file__).parent


def noop(ctx: TaskContext):
    return {"by": ctx.worker_id}


NOOP = {s: noop for s in ("payment", "packing", "shipping")}


def journal_at(db):
    """The journal at `db`: a file (SQLite) or a postgresql:// URL."""
    return open_journal(parse_location(str(db)))


def open_cluster(db, handlers=NOOP, workers=2, **kw) -> Cluster:
    return Cluster(
        workers=workers, journal=journal_at(db), handlers=handlers, **FAST, **kw
    ).start()


def db_rows(db, sql, *args):
    """Rows of `sql` (with `?` parameters) from either backend's database."""
    location = parse_location(str(db))
    if location.is_url:
        sql = sql.replace("?", "%s")
    with read_connection(location) as conn:
        return [tuple(row) for row in conn.execute(sql, args).fetchall()]


class JournaledSim(Sim):
    """The fake-clock Sim with every stimulus's effects recorded in a real SQLiteJournal and
    committed before the next stimulus: "crashing" at any point recovers exactly the committed
    prefix. The core's clock is wall time here (no epoch offset), so `now` sets `finished_at`."""

    def __init__(self, db, workers: int = 0, **settings):
        self.journal = journal_at(db)
        self.lock = threading.Lock()
        self._settings = dict(settings)
        super().__init__(workers=0, **settings)
        self.journal.attach(self.core, self.lock)
        for i in range(1, workers + 1):
            self.add_worker(f"w{i}")

    def apply(self, fx):
        if getattr(self, "journal", None) is not None and (fx.events or fx.moves):
            with self.lock:
                ticket = self.journal.record(fx)
            self.journal.wait(ticket)
        return super().apply(fx)

    def crash_and_recover(self, db) -> SchedulerCore:
        """Close the journal (everything recorded is committed) and rebuild a fresh core."""
        self.journal.close()
        journal = journal_at(db)
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
    counts = Counter(t.state.value for t in views.tasks(core).values())
    return {s.value: counts.get(s.value, 0) for s in TaskState}


def true_order_counts(core: SchedulerCore) -> dict[str, int]:
    counts = Counter(core.order_status(o).value for o in views.orders(core).values())
    return {k: counts.get(k, 0) for k in views.orders_by_status(core)}


def assert_journal_consistent(db):
    """No step recorded as succeeded twice; seq is 1..N without gaps or repeats."""
    succeeded = db_rows(
        db,
        "SELECT order_id, step, COUNT(*) FROM events WHERE type = 'task_succeeded' "
        "GROUP BY order_id, step HAVING COUNT(*) > 1",
    )
    assert succeeded == []
    # In the order written (SQLite's rowid), seq must run 1..N.
    order = "seq" if parse_location(str(db)).is_url else "rowid"
    seqs = [r[0] for r in db_rows(db, f"SELECT seq FROM events ORDER BY {order}")]
    assert seqs == list(range(1, len(seqs) + 1))


def test_finished_orders_and_counters_survive_a_restart(journal_db):
    db = journal_db
    cluster = open_cluster(db)
    ids = [cluster.submit(ORDER) for _ in range(30)]
    assert cluster.wait_until_idle(20)
    before = cluster.stats()
    last_seq = before["last_seq"]
    cluster.stop()

    again = open_cluster(db)
    try:
        after = again.stats()
        assert after["orders"]["completed"] == 30 and after["orders_total"] == 30
        assert all(again.get_order(o)["status"] == "completed" for o in ids)
        assert [e["type"] for e in again.story(ids[0])][-1] == "order_completed"
        new = again.submit(ORDER)
        assert again.wait_until_idle(10)
        assert min(e["seq"] for e in again.story(new)) > last_seq
        assert again.stats()["orders_total"] == 31
    finally:
        again.stop()
    assert_journal_consistent(db)


def test_steps_in_flight_at_shutdown_run_again_as_the_same_attempt(journal_db):
    db = journal_db
    gate = threading.Event()

    def stuck_packing(ctx: TaskContext):
        ctx.sleep(30)  # still running when the cluster stops
        return "never"

    handlers = {"payment": noop, "packing": stuck_packing, "shipping": noop}
    cluster = open_cluster(db, handlers=handlers)
    ids = cluster.submit_many([ORDER] * 5)
    # Every order's payment done and its packing running (5 fit the workers' slots at once).
    wait_for(lambda: all(cluster.get_order(o)["tasks"]["packing"]["status"] == "running"
                         for o in ids), 10, message="every packing running")
    cluster.stop()

    again = open_cluster(db)
    try:
        assert again.wait_until_idle(20)
        for oid in ids:
            order = again.get_order(oid)
            assert order["status"] == "completed"
            assert order["tasks"]["packing"]["attempts"] == 1
        recovered = [e for e in again.events() if e["type"] == "task_recovered"]
        assert {e["step"] for e in recovered} <= {"packing"} and recovered
        # Payment ran once: finished steps are not repeated.
        runs = Counter(
            (e["order_id"], e["step"]) for e in again.story(ids[0]) if e["type"] == "task_started"
        )
        assert runs[(ids[0], "payment")] == 1
    finally:
        again.stop()
        gate.set()
    assert_journal_consistent(db)


def test_a_step_that_failed_twice_before_a_restart_gets_at_most_two_more_attempts(journal_db):
    db = journal_db

    def always_fails(ctx: TaskContext):
        raise RuntimeError(f"declined (attempt {ctx.attempt})")

    handlers = {"payment": always_fails, "packing": noop, "shipping": noop}
    # A long backoff keeps the step waiting after its second failure.
    from scheduler import RetryPolicy

    cluster = Cluster(
        workers=1,
        journal=journal_at(db),
        handlers=handlers,
        retry=RetryPolicy(max_retries=3, backoff_base=0.001, backoff_cap=0.001),
        **FAST,
    )
    gate = {"n": 0}

    def fails_twice_then_blocks(ctx: TaskContext):
        gate["n"] += 1
        if gate["n"] <= 2:
            raise RuntimeError(f"declined (attempt {ctx.attempt})")
        ctx.sleep(30)

    cluster.handlers["payment"] = fails_twice_then_blocks
    cluster.start()
    oid = cluster.submit(ORDER)
    wait_for(lambda: sum(e["type"] == "task_failed" for e in cluster.story(oid)) == 2, 10)
    wait_for(lambda: cluster.get_order(oid)["tasks"]["payment"]["status"] == "running", 10)
    cluster.stop()

    again = open_cluster(
        db,
        handlers=handlers,
        workers=1,
        retry=RetryPolicy(max_retries=3, backoff_base=0.001, backoff_cap=0.001),
    )
    try:
        assert again.wait_until_idle(10)
        order = again.get_order(oid)
        assert order["status"] == "failed"
        failures = [e["attempt"] for e in again.story(oid) if e["type"] == "task_failed"]
        assert failures == [1, 2, 3, 4]
    finally:
        again.stop()


def test_orders_forgotten_from_memory_are_read_back_from_the_journal(journal_db):
    db = journal_db
    cluster = open_cluster(db, finished_order_history=5)
    try:
        ids = [cluster.submit(ORDER) for _ in range(20)]
        assert cluster.wait_until_idle(10)
        wait_for(
            lambda: db_rows(db, "SELECT COUNT(*) FROM orders WHERE status='completed'")[0][0] == 20,
            5,
        )
        oldest = cluster.get_order(ids[0])
        assert (
            oldest["status"] == "completed" and oldest["tasks"]["shipping"]["status"] == "succeeded"
        )
        assert [e["type"] for e in cluster.story(ids[0])][0] == "order_submitted"
    finally:
        cluster.stop()


def test_prune_removes_only_finished_orders_older_than_the_cutoff(journal_db):
    db = journal_db
    day = 86400.0
    sim = JournaledSim(db, workers=1)
    try:
        sim.now = 1000 * day  # wall-clock seconds, as the journal stores them
        sim.submit("old")
        sim.run_all()
        sim.now = 1002 * day  # finishes six days before the prune: inside the window
        sim.submit("recent")
        sim.run_all()
        sim.submit("open")  # never finishes
        pruner = Pruner(sim.journal, older_than=parse_duration("7d"), clock=lambda: 1008 * day)
        removed = pruner.prune_once()
        assert removed["orders"] == 1
        assert {r[0] for r in db_rows(db, "SELECT id FROM orders")} == {"recent", "open"}
        assert {r[0] for r in db_rows(db, "SELECT DISTINCT order_id FROM tasks")} == {"recent"}
        assert db_rows(db, "SELECT COUNT(*) FROM events WHERE order_id = 'old'") == [(0,)]
        assert db_rows(db, "SELECT COUNT(*) FROM events WHERE order_id = 'recent'")[0][0] > 0
    finally:
        sim.journal.close()


def test_prune_goes_chunk_by_chunk_until_every_old_finished_order_is_gone(journal_db):
    db = journal_db
    old = {f"old{i}" for i in range(5)}

    def per_order(table: str) -> dict[str, int]:
        return {oid: n for oid, n in db_rows(db, f"SELECT order_id, COUNT(*) FROM {table} "
                                                 "GROUP BY order_id") if oid is not None}

    sim = JournaledSim(db, workers=1)
    try:
        for oid in sorted(old):
            sim.submit(oid)
        sim.run_all()
        sim.submit("open")  # never finishes
        events = sum(n for oid, n in per_order("events").items() if oid in old)
        sim.journal.prune_chunk = 2  # three chunks: 2, 2 and 1
        removed = sim.journal.prune(before_wall=sim.now + 1)
        assert removed == {"orders": 5, "events": events} and events > 0
        assert {r[0] for r in db_rows(db, "SELECT id FROM orders")} == {"open"}
        assert set(per_order("tasks")) <= {"open"} and set(per_order("events")) == {"open"}
    finally:
        sim.journal.close()


def test_the_journal_hands_out_events_after_a_seq_in_order_and_at_most_the_limit(journal_db):
    sim = JournaledSim(journal_db, workers=1)
    try:
        sim.submit("o1")
        sim.submit("o2")
        sim.run_all()
        every = sim.journal.events_after(0, 10_000)
        assert [e["seq"] for e in every] == list(range(1, len(every) + 1))
        assert [e for e in every if e["order_id"] == "o1"] == sim.journal.story("o1")
        assert sim.journal.events_after(3, 2) == every[3:5]
        assert sim.journal.events_after(len(every), 10) == []
    finally:
        sim.journal.close()


@pytest.mark.parametrize(
    "text,seconds", [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800), ("2w", 1209600)]
)
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "-1d", "0d", "7 days", "d"])
def test_bad_durations_are_refused_with_the_accepted_forms(text):
    with pytest.raises(ValueError, match="for example 7d"):
        parse_duration(text)


def test_a_database_from_a_newer_orderflow_is_refused_with_advice(tmp_path):
    db = tmp_path / "new.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(
        StoreError, match=r"new.db has schema version \d+, newer .* Upgrade orderflow"
    ):
        SQLiteJournal(db)


def test_a_corrupt_database_is_refused_naming_the_file(tmp_path):
    db = tmp_path / "bad.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"bad.db is not a usable orderflow database"):
        SQLiteJournal(db)


def test_a_database_path_that_cannot_be_created_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the folder"):
        SQLiteJournal(blocker / "sub" / "of.db")


def test_a_new_database_is_created_at_the_current_schema_version(tmp_path):
    db = tmp_path / "fresh.db"
    SQLiteJournal(db).close()
    assert db_rows(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert db_rows(db, "PRAGMA journal_mode") == [("wal",)]


def test_a_broken_journal_refuses_new_orders_with_503_and_healthz_says_so(tmp_path):
    from dashboard import create_app

    journal = SQLiteJournal(tmp_path / "of.db")
    cluster = Cluster(workers=1, journal=journal, handlers=NOOP, **FAST)
    app = create_app(cluster=cluster)
    client = app.test_client()
    try:
        cluster.start()
        assert client.get("/healthz").status_code == 200
        journal.close()  # as good as a disk that stopped accepting writes
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json["error"]["code"] == "journal_unavailable"
        before = cluster.stats()["orders_total"]
        refused = client.post("/api/orders", json=ORDER)
        assert refused.status_code == 503 and "closed" in refused.json["error"]["message"]
        assert cluster.stats()["orders_total"] == before  # refused before anything changed
    finally:
        cluster.stop()


def test_a_failed_order_forgotten_from_memory_can_still_be_retried(journal_db):
    db = journal_db
    declined = {"payment": True}

    def payment(ctx: TaskContext):
        if declined["payment"]:
            raise RuntimeError("card declined")
        return "paid"

    handlers = {**NOOP, "payment": payment}
    cluster = Cluster(workers=1, journal=journal_at(db), handlers=handlers,
                      finished_order_history=2, max_retries=0, **FAST).start()
    try:
        failed = cluster.submit(ORDER)
        assert cluster.wait_until_idle(10)
        declined["payment"] = False
        for _ in range(3):
            cluster.submit(ORDER)
        assert cluster.wait_until_idle(10)
        assert failed not in views.orders(cluster._core)  # forgotten; only the journal has it
        with pytest.raises(Conflict, match="failed and cannot be cancelled"):
            cluster.cancel_order(failed)
        cluster.retry_order(failed)
        assert cluster.wait_until_idle(10)
        order = cluster.get_order(failed)
        assert order["status"] == "completed" and order["tasks"]["payment"]["result"] == "paid"
    finally:
        cluster.stop()


def test_a_key_whose_order_left_memory_is_refused_and_the_journal_keeps_working(journal_db):
    cluster = Cluster(
        workers=1,
        journal=journal_at(journal_db),
        handlers=NOOP,
        finished_order_history=1,
        **FAST,
    ).start()
    try:
        first = cluster.submit(ORDER, idempotency_key="K")
        assert cluster.wait_until_idle(10)
        cluster.submit(ORDER)
        assert cluster.wait_until_idle(10)  # the first order is forgotten from memory here
        with pytest.raises(Conflict, match=first):
            cluster.submit(ORDER, idempotency_key="K")
        later = cluster.submit(ORDER)
        assert cluster.wait_until_idle(10)
        assert cluster.get_order(later)["status"] == "completed"
        assert cluster.stats()["orders_total"] == 3
    finally:
        cluster.stop()


def test_task_counts_match_the_tasks_after_recovering_moves_the_journal_does_not_record(
    journal_db,
):
    db = journal_db
    sim = JournaledSim(db, workers=1)
    sim.submit("o1")  # payment pending -> ready -> assigned: no task row at all
    d, _ = sim.start_next("w1")  # assigned -> running: still no row; the counters are written
    assert d is not None
    core = sim.crash_and_recover(db)
    core.add_worker("w9", now=sim.now)
    assert views.tasks_by_state(core) == true_task_counts(core)


def test_task_counts_match_the_tasks_after_recovering_a_step_that_never_found_a_worker(
    tmp_path,
):
    db = tmp_path / "of.db"
    sim = JournaledSim(db, workers=0)
    sim.submit("o1")  # payment ready but unplaced; its row is never written
    core = sim.crash_and_recover(db)
    assert views.tasks_by_state(core) == true_task_counts(core)


def test_order_counts_match_the_orders_after_recovering_an_order_that_started_since_its_row(
    journal_db,
):
    db = journal_db
    sim = JournaledSim(db, workers=0)
    sim.submit("o1")  # row: status pending
    sim.add_worker("w1")  # the order is in progress now; its row is not rewritten for that
    core = sim.crash_and_recover(db)
    core.add_worker("w9", now=sim.now)
    assert views.orders_by_status(core) == true_order_counts(core)
    assert min(views.orders_by_status(core).values()) >= 0


def test_waiting_for_a_record_made_after_the_journal_closed_fails_instead_of_hanging(tmp_path):
    journal = SQLiteJournal(tmp_path / "of.db")
    core, lock = SchedulerCore(ClusterConfig(workers=0)), threading.Lock()
    journal.attach(core, lock)
    journal.close()
    with lock:  # a late durable caller, such as an HTTP submit racing shutdown
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


def test_a_retried_order_whose_rows_were_pruned_survives_a_restart(journal_db):
    db = journal_db
    sim = JournaledSim(db, workers=1, retry=RetryPolicy(max_retries=0))
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.fail(d)
    assert views.orders(sim.core)["o1"].reported_status == "failed"
    sim.journal.prune(before_wall=1e18)  # the operator's retention removes it from disk
    sim.apply(sim.core.retry_order("o1", now=sim.now))  # accepted: in progress again
    core = sim.crash_and_recover(db)
    assert "o1" in views.orders(core), "a retried, unfinished order vanished after a restart"
    assert views.active_orders(core) == 1  # to be finished, not finished already


def table_columns(db, table) -> tuple[str, ...]:
    return tuple(r[1] for r in db_rows(db, f"PRAGMA table_info({table})"))


def test_the_schema_holds_exactly_the_columns_the_row_encoder_writes(tmp_path):
    from scheduler.journal import rows

    db = tmp_path / "of.db"
    SQLiteJournal(db).close()
    assert table_columns(db, "tasks") == rows.TASK_FIELDS
    assert table_columns(db, "orders") == rows.ORDER_FIELDS
    assert table_columns(db, "events") == (*rows.EVENT_FIELDS, "duration", "extra")


def test_a_version_1_database_is_migrated_and_its_orders_still_load(tmp_path):
    db = tmp_path / "old.db"
    journal_history.sqlite_at(db, 1)
    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO orders VALUES ('o-old', 1, 'ecommerce', ?, NULL, 1.0, 'completed', 2.0)",
        ('{"customer": "ada", "items": []}',),
    )
    conn.execute(
        "INSERT INTO tasks VALUES ('o-old:payment', 'o-old', 'payment', 'succeeded', 1, 0, 0, "
        "1, 'w-1', '{\"charge_id\": \"ch_1\"}', NULL)"
    )
    conn.commit()
    conn.close()
    journal = SQLiteJournal(db)
    try:
        order = journal.find_order("o-old")
    finally:
        journal.close()
    assert db_rows(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert order["tasks"]["payment"]["result"] == {"charge_id": "ch_1"}
    assert order["tasks"]["payment"]["retry_at"] is None


def test_retry_at_is_served_in_wall_clock_seconds_like_every_other_timestamp(tmp_path):
    import time

    from scheduler import RetryPolicy

    def declines(ctx: TaskContext):
        raise RuntimeError("declined")

    cluster = Cluster(
        workers=1,
        handlers={"payment": declines, "packing": noop, "shipping": noop},
        retry=RetryPolicy(max_retries=1, backoff_base=30.0, backoff_cap=30.0),
        **FAST,
    ).start()
    try:
        oid = cluster.submit(ORDER)
        wait_for(lambda: cluster.get_order(oid)["tasks"]["payment"]["status"] == "retry_wait", 10)
        order = cluster.get_order(oid)
        retry_at = order["tasks"]["payment"]["retry_at"]
        assert order["submitted_at"] <= retry_at <= time.time() + 30.0
    finally:
        cluster.stop()


def test_a_restart_loads_only_as_many_finished_orders_as_memory_keeps(journal_db):
    db = journal_db
    cluster = open_cluster(db, finished_order_history=3, event_history=100)
    cluster.submit_many([ORDER] * 8)
    assert cluster.wait_until_idle(10)
    cluster.stop()

    asked = []
    spy = journal_at(db)
    recover = spy.recover

    def recover_and_note(finished_orders, recent_events):
        asked.append((finished_orders, recent_events))
        return recover(finished_orders, recent_events)

    spy.recover = recover_and_note
    again = Cluster(workers=0, journal=spy, handlers=NOOP, finished_order_history=3,
                    event_history=100, **FAST).start()
    try:
        assert asked == [(3, 100)]
        assert len(again.orders(limit=50)) == 3
        assert again.stats()["orders"]["completed"] == 8
    finally:
        again.stop()


def test_an_orders_priority_survives_a_restart(journal_db):
    db = journal_db
    cluster = open_cluster(db, workers=0)
    oid = cluster.submit({**ORDER, "priority": 9})
    cluster.stop()
    again = open_cluster(db, workers=0)
    try:
        assert again.get_order(oid)["priority"] == 9
    finally:
        again.stop()


def test_a_tasks_moves_are_journaled_and_come_back_after_a_restart(journal_db):
    sim = JournaledSim(journal_db, workers=2)
    sim.submit("o1")
    holder = sim.task("o1", "payment").worker
    sim.advance(2.5, beating=tuple(w for w in sim.queues if w != holder))
    assert sim.task("o1", "payment").moves == 1
    core = sim.crash_and_recover(journal_db)
    assert views.tasks(core)["o1:payment"].moves == 1
    assert views.counters(core)["moves"] == views.counters(core)["moves_worker_dead"] == 1
    (moves,) = db_rows(journal_db, "SELECT moves FROM tasks WHERE id = 'o1:payment'")[0]
    assert moves == 1


def test_a_version_3_database_gains_moves_and_its_tasks_still_load(tmp_path):
    db = tmp_path / "v3.db"
    journal_history.sqlite_at(db, 3)
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO orders VALUES ('o-3', 1, 'ecommerce', ?, NULL, 1.0, 'completed', "
                 "2.0, 0)", ('{"customer": "ada", "items": []}',))
    conn.execute("INSERT INTO tasks VALUES ('o-3:payment', 'o-3', 'payment', 'succeeded', 1, 0, "
                 "1, 2, 'w-1', NULL, NULL, NULL)")
    conn.commit()
    conn.close()
    journal = SQLiteJournal(db)
    try:
        order = journal.find_order("o-3")
    finally:
        journal.close()
    assert db_rows(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)] == [(11,)]
    assert (order["tasks"]["payment"]["moves"], order["tasks"]["payment"]["reassignments"]) == (
        0, 1)
    assert ("orders_by_number",) in db_rows(
        db, "SELECT name FROM sqlite_master WHERE type = 'index'")


def test_the_journal_searches_orders_newest_first_by_every_filter(journal_db):
    from scheduler.engine.records import OrderQuery

    sim = JournaledSim(journal_db, workers=1, retry=RetryPolicy(max_retries=0))
    for i, customer in enumerate(["Ada 100%", "ada_b", "bob"]):
        sim.apply(sim.core.submit(f"o{i}", {**ORDER, "customer": customer}, now=sim.now + i,
                                  workflow="ecommerce_invoiced" if i == 1 else "ecommerce"))
    d, _ = sim.start_next("w1")
    sim.fail(d, "Card DECLINED by the 100% rule")  # o0 fails for good
    journal = sim.journal

    def ids(before=None, limit=10, **query) -> list[str]:
        return [r.id for r in journal.search_orders(OrderQuery(**query), before, limit)]

    try:
        assert ids() == ["o2", "o1", "o0"]
        assert ids(limit=2) == ["o2", "o1"] and ids(before=2) == ["o0"]  # by number
        assert ids(customer="ADA") == ["o1", "o0"]
        assert ids(customer="a_b") == ["o1"] and ids(customer="%") == ["o0"]  # no wildcards
        assert ids(workflow="ecommerce_invoiced") == ["o1"]
        assert ids(status="failed") == ["o0"] and ids(error="card declined") == ["o0"]
        assert ids(since=sim.now + 1, until=sim.now + 2) == ["o1"]
        [found] = journal.search_orders(OrderQuery(error="100%"), None, 10)
        assert found.tasks[0].error == "gave up after 1 attempts: Card DECLINED by the 100% rule"
    finally:
        journal.close()


def test_the_journal_searches_by_sku_and_by_text_anywhere_taking_quotes_as_text(journal_db):
    from scheduler.engine.records import OrderQuery

    sim = JournaledSim(journal_db, workers=1, retry=RetryPolicy(max_retries=0))
    skus = [["BOOK-001", "MUG-7"], ["o'reilly'); DROP TABLE orders; --"], ["50%_OFF"]]
    for i, items in enumerate(skus):
        sim.apply(sim.core.submit(f"o{i}", {"customer": f"cust-{i}", "items": [
            {"sku": sku, "qty": 1, "price": 1.0} for sku in items]}, now=sim.now + i,
            workflow="ecommerce_invoiced" if i == 2 else "ecommerce"))
    d, _ = sim.start_next("w1")
    sim.fail(d, "gateway answered 503 for mug")  # o0 fails for good
    journal = sim.journal

    def ids(**query) -> list[str]:
        return [r.id for r in journal.search_orders(OrderQuery(**query), None, 10)]

    try:
        assert ids(sku="mug") == ["o0"] and ids(sku="book-00") == ["o0"]
        assert ids(sku="'); DROP TABLE") == ["o1"]  # a value, never SQL
        assert ids(sku="%") == ["o2"] and ids(sku="_") == ["o2"]  # no wildcards either
        assert ids(sku="cust") == []  # the customer is not a SKU
        # text: the id, the customer, a SKU, a step's error or the workflow.
        assert ids(text="o1") == ["o1"]
        assert ids(text="CUST-2") == ["o2"]
        assert ids(text="drop table") == ["o1"]
        assert ids(text="503") == ["o0"]
        assert ids(text="invoiced") == ["o2"]
        assert ids(text="mug") == ["o0"]  # its SKU and its error: once
        assert ids(text="zzz") == []
        assert ids(text="o", status="failed") == ["o0"]  # and the other filters still hold
        assert journal.search_orders(OrderQuery(), None, 10)  # the table is still there
    finally:
        journal.close()


def test_a_time_bound_is_compared_with_the_time_as_shown_to_the_millisecond():
    from scheduler.engine.records import OrderQuery

    def found(exact: float, **bounds) -> bool:
        return OrderQuery(**bounds).matches("pending", "ecommerce", "ada", exact, [])

    # An order's own submitted_at, as the API shows it, finds it as `since` and leaves it
    # out as `until`, whichever way the exact time was rounded.
    for exact in (1_700_000_000.1232, 1_700_000_000.1228):  # both shown as ...0.123
        shown = round(exact, 3)
        assert found(exact, since=shown) and not found(exact, until=shown)
        assert found(exact, until=shown + 0.001) and not found(exact, since=shown + 0.001)


def test_the_journal_searches_finished_orders_only_when_asked_through_their_index(journal_db):
    # Memory holds every unfinished order, so a cluster asks the journal for finished ones
    # only: those it may have forgotten. They are read through their own index (SQLite's
    # plan says so), not by reading every order.
    from scheduler.engine.records import OrderQuery

    sim = JournaledSim(journal_db, workers=1, retry=RetryPolicy(max_retries=0))
    for i in range(3):
        sim.apply(sim.core.submit(f"o{i}", dict(ORDER), now=sim.now + i))
    d, _ = sim.start_next("w1")
    sim.fail(d, "declined")  # o0 fails for good; o1 and o2 wait
    journal = sim.journal
    try:
        def ids(**flags) -> list[str]:
            return [r.id for r in journal.search_orders(OrderQuery(), None, 10, **flags)]

        assert ids() == ["o2", "o1", "o0"] and ids(finished_only=True) == ["o0"]
        if not journal_db.startswith("postgresql://"):
            statements = []  # as SQLite ran them on the search connection, values inlined
            journal._search.set_trace_callback(statements.append)
            for query in (OrderQuery(), OrderQuery(customer="zzz"), OrderQuery(status="failed")):
                journal.search_orders(query, 5, 10, finished_only=True)
            journal._search.set_trace_callback(None)
            plans = [str(db_rows(journal_db, f"EXPLAIN QUERY PLAN {sql}")) for sql in statements
                     if sql.startswith("SELECT") and " FROM orders " in sql]
            assert len(plans) == 3, statements
            for plan, index in zip(plans, ["orders_finished_by_number"] * 2 + ["orders_by_status"],
                                   strict=True):
                assert index in plan and "TEMP B-TREE" not in plan, plan
    finally:
        journal.close()
    indexes = ("SELECT indexname FROM pg_indexes WHERE tablename = 'orders'"
               if journal_db.startswith("postgresql://")
               else "SELECT name FROM sqlite_master WHERE type = 'index'")
    names = {row[0] for row in db_rows(journal_db, indexes)}
    assert {"orders_finished_by_number", "orders_by_status"} <= names
