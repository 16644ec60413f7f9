"""Waits and timers through the app API, the runtime and a real journal: `app.wait()` and
`@app.step(delay=)` are checked when the app is; a waiting order, a signal kept for later, a
delay and a not_before survive a crash; a timer due while the server was down fires once at
the restart."""

from __future__ import annotations

import threading

import pytest
from conftest import wait_for
from test_store import FAST, JournaledSim, assert_journal_consistent, db_rows, journal_at

from scheduler import App, Cluster, RetryPolicy, TaskContext
from scheduler.engine import views, waits
from scheduler.engine.config import ClusterConfig, ConfigError, duration
from scheduler.engine.core import SchedulerCore
from scheduler.engine.errors import Conflict, UnknownWait
from scheduler.engine.fields import MessageError, iso_seconds
from scheduler.engine.orders import OrderValidationError, read_order
from scheduler.engine.states import TaskState
from scheduler.engine.workflow import Wait
from scheduler.journal.recovery import recover_into
from scheduler.steps.app import AppError

S = TaskState
ORDER = {"customer": "ada", "items": [{"sku": "A1", "qty": 1, "price": 3.0}]}


def noop(ctx: TaskContext):
    return {"step": ctx.step}


def shop(timeout: str | float | None = "30m", on_timeout: str = "cancel",
         charge=noop, delay: str | float | None = "7d") -> App:
    """reserve -> wait for payment_confirmed -> charge -> (a week later) review."""
    app = App("shop")
    app.add_step("reserve", noop, compensate="release")
    app.add_step("release", noop)
    app.add_step("charge", charge)
    app.add_step("review", noop, delay=delay)
    app.wait("payment_confirmed", timeout=timeout, on_timeout=on_timeout)
    app.workflow("checkout", ["reserve", "payment_confirmed", "charge", "review"])
    return app


# --------------------------------------------------------------------------- app API

def test_a_wait_and_a_delay_are_declared_in_the_app_and_carried_by_its_workflow():
    app = shop()
    wf = app.workflows["checkout"]
    assert wf.waits == {"payment_confirmed": Wait("payment_confirmed", 1800.0, "cancel")}
    assert app.policies["review"].delay == 7 * 86400
    assert "payment_confirmed" not in app.handlers  # a wait has no handler to run
    [described] = app.describe()
    steps = {s["name"]: s for s in described["steps"]}
    assert steps["payment_confirmed"] == {"name": "payment_confirmed", "wait": True,
                                          "timeout": 1800.0, "on_timeout": "cancel",
                                          "deps": ["reserve"]}
    assert steps["review"]["delay"] == 7 * 86400 and steps["charge"]["delay"] is None


def test_durations_are_seconds_or_a_number_with_a_unit():
    assert duration(90) == 90.0 and duration("30m") == 1800.0 and duration("1.5h") == 5400.0
    assert duration(" 2w ") == 14 * 86400.0
    for bad in ("soon", "5y", "-3m", True, None):
        with pytest.raises(ConfigError, match="seconds or a duration such as"):
            duration(bad)


def test_bad_waits_and_delays_are_refused_when_the_app_is_built():
    app = App("a")
    app.add_step("a", noop)
    with pytest.raises(AppError, match="wait 'w': timeout must be seconds or a duration"):
        app.wait("w", timeout="whenever")
    with pytest.raises(AppError, match="on_timeout must be one of cancel, fail, continue"):
        app.wait("w", on_timeout="shrug")
    with pytest.raises(AppError, match="step 'a' is declared twice"):
        app.wait("a")
    with pytest.raises(AppError, match="a wait needs a name"):
        app.wait(" ")
    app.wait("w")
    with pytest.raises(AppError, match="step 'w' is declared twice"):
        app.add_step("w", noop)
    with pytest.raises(AppError, match="delay must be"):
        app.add_step("b", noop, delay=-1)
    with pytest.raises(AppError, match="step 'c': delay must be seconds or a duration"):
        app.add_step("c", noop, delay="later")


def test_a_workflow_defined_elsewhere_must_declare_its_waits_in_the_app():
    from scheduler.engine.workflow import Workflow

    elsewhere = Workflow.define("w", [("a", []), ("w", ["a"])], waits=[Wait("w", 10.0)])
    app = App("a")
    app.add_step("a", noop)
    app.wait("w", timeout=20)
    with pytest.raises(AppError, match="waits for 'w'; declare it as app.wait"):
        app.add_workflow(elsewhere)
    agreeing = App("b")
    agreeing.add_step("a", noop)
    agreeing.wait("w", timeout=10)
    assert agreeing.add_workflow(elsewhere).waits == elsewhere.waits


def test_not_before_is_iso_8601_or_unix_seconds_and_nonsense_is_refused():
    assert read_order({**ORDER, "not_before": 1_800_000_000}).not_before == 1_800_000_000
    assert read_order({**ORDER, "not_before": "2026-12-24T09:00:00Z"}).not_before == \
        iso_seconds("2026-12-24T09:00:00+00:00") == 1_798_102_800
    assert iso_seconds("2026-12-24 10:00+01:00") == 1_798_102_800
    assert iso_seconds("2026-02-30T00:00") == iso_seconds("2026-03-02T00:00")
    assert read_order(ORDER).not_before is None
    for bad in (-5, 0, 1e12, "tomorrow", "1999-12-31T00:00Z", "2026-12-24", True,
                "2026-12-24T09:00Z\n", float("nan")):
        with pytest.raises(OrderValidationError, match="not_before must be an ISO-8601 time"):
            read_order({**ORDER, "not_before": bad})


# --------------------------------------------------------------------------- journal

class WaitSim(JournaledSim):
    """A journaled fake-clock sim of the shop's workflow, crashed and recovered at will."""

    def __init__(self, db, workers: int = 1, app: App | None = None):
        self.app = app or shop(delay=60)
        super().__init__(db, workers=workers, workflows=self.app.workflows,
                         retry=RetryPolicy(max_retries=0), steps=self.app.policies)

    def recover(self, db, now: float | None = None) -> WaitSim:
        self.journal.close()
        journal = journal_at(db)
        try:
            state = journal.recover()
        finally:
            journal.close()
        again = WaitSim.__new__(WaitSim)
        again.app = self.app
        JournaledSim.__init__(again, db, workers=0, workflows=self.app.workflows,
                              retry=RetryPolicy(max_retries=0), steps=self.app.policies)
        again.core = SchedulerCore(ClusterConfig(workers=0, seed=7,
                                                 retry=RetryPolicy(max_retries=0),
                                                 steps=self.app.policies),
                                   self.app.workflows)
        again.journal.attach(again.core, again.lock)
        again.now = self.now if now is None else now
        again.apply(recover_into(again.core, state, now=again.now))
        again.add_worker("w9")
        return again

    def step(self, worker: str, step: str):
        d, ctx = self.start_next(worker)
        assert d is not None and ctx["step"] == step, ctx
        self.succeed(d, {"did": step})
        return ctx

    def signal(self, data=None, key=None) -> str:
        fx, outcome = self.core.signal("o1", "payment_confirmed", data, now=self.now, key=key)
        self.apply(fx)
        return outcome


def test_a_waiting_order_survives_a_crash_and_its_timeout_fires_once_after_it(journal_db):
    sim = WaitSim(journal_db)
    sim.now = 1000.0
    sim.submit("o1", "checkout")
    sim.step("w1", "reserve")
    assert db_rows(journal_db, "SELECT state, retry_at FROM tasks "
                               "WHERE id = 'o1:payment_confirmed'") == [("waiting", 2800.0)]
    sim = sim.recover(journal_db, now=5000.0)  # down past the timeout
    assert sim.task("o1", "payment_confirmed").state is S.WAITING
    sim.advance(1.0)
    assert sim.task("o1", "payment_confirmed").state is S.CANCELLED
    sim.step("w9", "release")
    sim = sim.recover(journal_db)  # and once more: nothing fires again
    sim.advance(10.0)
    assert views.orders(sim.core)["o1"].reported_status == "compensated"
    assert not sim.start_next("w9")[0]
    sim.journal.close()
    assert db_rows(journal_db, "SELECT COUNT(*) FROM events WHERE type = 'wait_timed_out'") \
        == [(1,)]
    assert db_rows(journal_db, "SELECT status FROM orders WHERE id = 'o1'") == [("compensated",)]
    assert_journal_consistent(journal_db)


def test_a_signal_kept_before_the_wait_survives_a_crash_and_is_taken_once(journal_db):
    sim = WaitSim(journal_db)
    sim.submit("o1", "checkout")
    assert sim.signal({"txn": "t1"}, key="gw-1") == waits.KEPT
    sim = sim.recover(journal_db)
    assert sim.signal({"txn": "t1"}, key="gw-1") == waits.REPEATED
    assert sim.signal({"txn": "t2"}) == waits.REFUSED
    sim.step("w9", "reserve")
    ctx = sim.step("w9", "charge")
    assert ctx["results"] == {"payment_confirmed": {"txn": "t1"}}
    sim = sim.recover(journal_db)
    assert sim.task("o1", "payment_confirmed").result == {"txn": "t1"}
    sim.journal.close()
    assert db_rows(journal_db, "SELECT COUNT(*) FROM events WHERE type = 'wait_completed'") \
        == [(1,)]
    assert_journal_consistent(journal_db)


def test_a_delay_and_not_before_survive_a_crash_and_start_once(journal_db):
    sim = WaitSim(journal_db)
    sim.now = 100.0
    sim.apply(sim.core.submit("o1", dict(ORDER), now=sim.now, workflow="checkout",
                              not_before=200.0))
    sim = sim.recover(journal_db, now=150.0)
    assert views.orders(sim.core)["o1"].not_before == 200.0
    sim.advance(49.0)
    assert not sim.start_next("w9")[0]
    sim.advance(1.0)
    sim.step("w9", "reserve")
    assert sim.signal("paid") == waits.DELIVERED
    sim.step("w9", "charge")
    review = sim.task("o1", "review")
    assert review.state is S.WAITING and review.due == pytest.approx(sim.now + 60)
    sim = sim.recover(journal_db, now=sim.now + 500)  # down past the delay
    sim.advance(1.0)
    sim.step("w9", "review")
    assert views.orders(sim.core)["o1"].reported_status == "completed"
    sim = sim.recover(journal_db)
    assert not sim.start_next("w9")[0]
    sim.journal.close()
    assert db_rows(journal_db, "SELECT COUNT(*) FROM events WHERE type = 'task_started' "
                               "AND step = 'review'") == [(1,)]
    assert_journal_consistent(journal_db)


# --------------------------------------------------------------------------- runtime

class FakeClock:
    """The cluster's clock, moved by the test (time is a parameter)."""

    def __init__(self, now: float):
        self.now = now
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def set(self, now: float) -> None:
        with self.lock:
            self.now = now


def test_a_cluster_delivers_a_signal_and_the_next_step_gets_its_data(tmp_path):
    charged: list = []

    def charge(ctx):
        charged.append(ctx.results["payment_confirmed"])
        return "charged"

    cluster = Cluster(workers=1, app=shop(charge=charge, delay=None),
                      journal=journal_at(tmp_path / "of.db"), **FAST).start()
    try:
        oid = cluster.submit(ORDER, workflow="checkout")
        wait_for(lambda: cluster.get_order(oid)["status"] == "waiting", 10,
                 message="the order to wait for its signal")
        order = cluster.get_order(oid)
        [waiting] = order["waits"]
        assert waiting["signal"] == "payment_confirmed" and waiting["until"] > 0
        with pytest.raises(UnknownWait, match="its waits: payment_confirmed"):
            cluster.signal(oid, "delivered")
        with pytest.raises(MessageError, match="unknown field"):
            cluster.signal(oid, "payment_confirmed", {"payload": 1})
        assert cluster.signal(oid, "payment_confirmed", {"data": {"txn": 7}}, key="k",
                              who="gateway") == waits.DELIVERED
        assert cluster.signal(oid, "payment_confirmed", {"data": {"txn": 7}},
                              key="k") == waits.REPEATED
        with pytest.raises(Conflict, match="one came already"):
            cluster.signal(oid, "payment_confirmed", {"data": 8})
        assert cluster.wait_until_idle(10)
        assert charged == [{"txn": 7}]
        story = cluster.story(oid)
        [received] = [e for e in story if e["type"] == "signal_received"]
        assert received["who"] == "gateway" and received["data"] == {"txn": 7}
        assert len([e for e in story if e["type"] == "signal_refused"]) == 1
    finally:
        cluster.stop()


def test_a_timer_due_while_the_server_was_down_fires_at_the_restart_once(tmp_path):
    db = tmp_path / "of.db"
    clock = FakeClock(10_000.0)
    cluster = Cluster(workers=1, app=shop(timeout=60, delay=None), journal=journal_at(db),
                      clock=clock, **FAST).start()
    try:
        oid = cluster.submit(ORDER, workflow="checkout")
        wait_for(lambda: cluster.get_order(oid)["status"] == "waiting", 10,
                 message="the order to wait for its signal")
        assert cluster.get_order(oid)["waits"][0]["until"] == 10_060.0
    finally:
        cluster.stop()
    clock.set(20_000.0)  # the server was down past the timeout
    again = Cluster(workers=1, app=shop(timeout=60, delay=None), journal=journal_at(db),
                    clock=clock, **FAST).start()
    try:
        wait_for(lambda: again.get_order(oid)["status"] == "compensated", 10,
                 message="the timeout to cancel the order and release its stock")
    finally:
        again.stop()
    third = Cluster(workers=1, app=shop(timeout=60, delay=None), journal=journal_at(db),
                    clock=clock, **FAST).start()
    try:
        assert third.wait_until_idle(5)
        assert third.get_order(oid)["status"] == "compensated"
    finally:
        third.stop()
    assert db_rows(db, "SELECT COUNT(*) FROM events WHERE type = 'wait_timed_out'") == [(1,)]
    assert db_rows(db, "SELECT COUNT(*) FROM events WHERE type = 'task_succeeded' "
                       "AND step = 'release'") == [(1,)]
    assert_journal_consistent(db)


def test_an_order_submitted_for_later_waits_and_starts_at_its_time(tmp_path):
    clock = FakeClock(1_799_000_000.0)
    cluster = Cluster(workers=1, app=shop(delay=None), clock=clock, **FAST).start()
    try:
        oid = cluster.submit_idempotent({**ORDER, "workflow": "checkout",
                                         "not_before": "2027-01-15T08:00:00Z"})[0]
        order = cluster.get_order(oid)
        assert order["status"] == "waiting"
        assert order["waits"] == [{"step": "reserve", "signal": None,
                                   "until": iso_seconds("2027-01-15T08:00:00Z"),
                                   "what": "its time (a delay, or its order's not_before)"}]
        clock.set(iso_seconds("2027-01-15T08:00:00Z"))
        wait_for(lambda: cluster.get_order(oid)["status"] == "waiting"
                 and cluster.get_order(oid)["tasks"]["reserve"]["status"] == "succeeded", 10,
                 message="reserve to run at its time, then the order to wait for its signal")
    finally:
        cluster.stop()


def test_a_signal_for_a_finished_order_only_the_journal_holds_is_refused(tmp_path):
    cluster = Cluster(workers=1, app=shop(timeout=None, delay=None), journal=journal_at(
        tmp_path / "of.db"), finished_order_history=1, **FAST).start()
    try:
        first = cluster.submit(ORDER, workflow="checkout")
        wait_for(lambda: cluster.get_order(first)["status"] == "waiting", 10,
                 message="the first order to wait")
        cluster.cancel_order(first)
        second = cluster.submit(ORDER, workflow="checkout")
        wait_for(lambda: cluster.get_order(second)["status"] == "waiting", 10,
                 message="the second order to wait")
        cluster.cancel_order(second)
        wait_for(lambda: cluster.get_order(second)["status"] == "compensated", 10,
                 message="the second order's stock to be released")
        # One finished order is kept in memory: the first is only in the journal now.
        assert views.find_order(cluster._core, first) is None  # noqa: SLF001
        with pytest.raises(Conflict, match=f"order {first} is compensated: signal "
                                           "payment_confirmed refused"):
            cluster.signal(first, "payment_confirmed")
        with pytest.raises(UnknownWait, match="its waits: payment_confirmed"):
            cluster.signal(first, "delivered")
    finally:
        cluster.stop()
