"""Recurring schedules through the app API, the cluster and a real SQLite journal, on a fake
clock: a time fires once, its mark is journaled with its order, a restart fires a missed
time once (or skips it without catch_up), and the key keeps a time from firing twice even
when the mark is behind."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone

import pytest
from test_store import FAST, db_rows, journal_at

from scheduler import App, Cluster
from scheduler.journal.schema import StoreError
from scheduler.steps.app import AppError

ORDER = {"customer": "nightly", "items": [{"sku": "gateway", "qty": 1, "price": 0}]}


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


class Clock:
    def __init__(self, now: float):
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def set(self, now: float) -> None:
        with self._lock:
            self.now = now


def reconcile_app(catch_up: bool = True, cron: str = "*/10 * * * *") -> App:
    app = App("shop")
    app.add_step("reconcile", lambda ctx: {"checked": ctx.order_id})
    app.workflow("nightly", ["reconcile"])
    app.schedule("reconcile", cron=cron, workflow="nightly", data=ORDER, catch_up=catch_up)
    return app


@pytest.fixture
def run(tmp_path):
    """Start clusters on one journal with a fake wall clock; all stopped at the end."""
    started: list[Cluster] = []
    db = tmp_path / "orderflow.db"

    def start(clock: Clock, **app) -> Cluster:
        cluster = Cluster(workers=1, journal=journal_at(db), app=reconcile_app(**app),
                          clock=clock, **FAST).start()
        started.append(cluster)
        return cluster

    start.db = db
    yield start
    for cluster in started:
        cluster.stop()


def keys(db) -> list[str]:
    return [r[0] for r in db_rows(db, "SELECT idempotency_key FROM orders "
                                      "WHERE idempotency_key LIKE 'schedule:%' ORDER BY number")]


def mark_of(db) -> dict:
    import json
    (detail,) = db_rows(db, "SELECT detail FROM schedules WHERE name = 'reconcile'")[0]
    return json.loads(detail)


# --------------------------------------------------------------------------- the app API

def test_a_schedule_is_checked_when_declared():
    app = App("a")
    app.add_step("s", lambda ctx: 1)
    app.workflow("w", ["s"])
    with pytest.raises(AppError, match="schedule 'x': minute: 61 is outside 0-59"):
        app.schedule("x", cron="61 * * * *", workflow="w", data=ORDER)
    with pytest.raises(AppError, match="unknown time zone 'Mars/Olympus'"):
        app.schedule("x", cron="0 3 * * *", workflow="w", data=ORDER, tz="Mars/Olympus")
    with pytest.raises(AppError, match="its data is not an order: .*customer"):
        app.schedule("x", cron="0 3 * * *", workflow="w", data={"items": []})
    with pytest.raises(AppError, match="without ':'"):
        app.schedule("a:b", cron="0 3 * * *", workflow="w")
    app.schedule("x", cron="0 3 * * *", workflow="w")
    with pytest.raises(AppError, match="schedule 'x' is declared twice"):
        app.schedule("x", cron="0 4 * * *", workflow="w")
    app.schedule("y", cron="0 3 * * *", workflow="missing")
    with pytest.raises(AppError, match="submits workflow 'missing', which is not declared"):
        app.check()


def test_a_schedule_without_data_submits_an_order_named_after_it():
    app = App("a")
    app.add_step("s", lambda ctx: 1)
    app.workflow("w", ["s"])
    schedule = app.schedule("nightly", cron="@daily", workflow="w", tz="Europe/Berlin")
    assert schedule.data == {"customer": "schedule nightly",
                             "items": [{"sku": "nightly", "qty": 1, "price": 0}]}
    assert schedule.describe() == {"name": "nightly", "cron": "@daily", "tz": "Europe/Berlin",
                                   "workflow": "w", "catch_up": True}


# --------------------------------------------------------------------------- firing

def test_each_time_fires_once_and_its_mark_is_journaled_with_its_order(run):
    clock = Clock(ts("2026-12-07T10:00:00"))
    cluster = run(clock)
    cluster.run_schedules()
    assert keys(run.db) == []
    assert mark_of(run.db)["since"] == ts("2026-12-07T10:00:00")  # known from now on
    clock.set(ts("2026-12-07T10:10:00.5"))
    cluster.run_schedules()
    cluster.run_schedules()
    assert keys(run.db) == ["schedule:reconcile:2026-12-07T10:10:00+00:00"]
    mark = mark_of(run.db)
    order_id = mark["last_run"]["order_id"]
    assert mark["last"] == ts("2026-12-07T10:10:00") and mark["runs"] == 1
    assert db_rows(run.db, "SELECT id, workflow FROM orders") == [(order_id, "nightly")]
    fired = [e for e in cluster.story(order_id) if e["type"] == "schedule_fired"]
    assert [e["message"] for e in fired] == [
        f"schedule reconcile fired for 2026-12-07T10:10:00+00:00: order {order_id}"]
    assert cluster.wait_until_idle(10)
    assert cluster.get_order(order_id)["status"] == "completed"
    [view] = cluster.schedules()
    assert view["next_iso"] == "2026-12-07T10:20:00+00:00"
    assert view["last_run"]["order_id"] == order_id and view["runs"] == 1


def test_a_time_missed_while_down_fires_once_at_the_restart(run):
    clock = Clock(ts("2026-12-07T10:00:00"))
    first = run(clock)
    clock.set(ts("2026-12-07T10:10:00"))
    first.run_schedules(ts("2026-12-07T10:00:00"))
    first.run_schedules()
    first.stop()
    clock.set(ts("2026-12-07T10:35:00"))  # down over 10:20 and 10:30
    second = run(clock)
    second.run_schedules()
    second.run_schedules()
    assert keys(run.db) == ["schedule:reconcile:2026-12-07T10:10:00+00:00",
                            "schedule:reconcile:2026-12-07T10:30:00+00:00"]
    clock.set(ts("2026-12-07T10:40:00"))
    second.run_schedules()
    assert keys(run.db)[-1] == "schedule:reconcile:2026-12-07T10:40:00+00:00"
    assert mark_of(run.db)["runs"] == 3


def test_without_catch_up_a_time_missed_while_down_is_skipped(run):
    clock = Clock(ts("2026-12-07T10:00:00"))
    first = run(clock, catch_up=False)
    first.run_schedules()
    first.stop()
    clock.set(ts("2026-12-07T10:35:00"))
    second = run(clock, catch_up=False)
    second.run_schedules()
    assert keys(run.db) == []
    mark = mark_of(run.db)
    assert mark["skipped"] == 3 and mark["last"] == ts("2026-12-07T10:30:00")
    skipped = [e for e in second.events() if e["type"] == "schedule_skipped"]
    assert [e["message"] for e in skipped] == [
        "schedule reconcile skipped 3 time(s) missed while no server ran, "
        "2026-12-07T10:10:00+00:00 to 2026-12-07T10:30:00+00:00 (catch_up is off)"]
    clock.set(ts("2026-12-07T10:40:01"))
    second.run_schedules()
    assert keys(run.db) == ["schedule:reconcile:2026-12-07T10:40:00+00:00"]


def test_a_mark_left_behind_never_fires_a_time_twice(run):
    clock = Clock(ts("2026-12-07T10:00:00"))
    first = run(clock)
    first.run_schedules()
    clock.set(ts("2026-12-07T10:10:00"))
    first.run_schedules()
    first.stop()
    # As if the mark had not moved with its order: the restart sees 10:10 as missed.
    import sqlite3
    conn = sqlite3.connect(run.db)
    with conn:
        conn.execute("UPDATE schedules SET detail = ? WHERE name = 'reconcile'",
                     (f'{{"since": {ts("2026-12-07T10:00:00")}, "last": null, '
                      '"last_run": null, "runs": 0, "skipped": 0}',))
    conn.close()
    clock.set(ts("2026-12-07T10:15:00"))
    second = run(clock)
    second.run_schedules()
    assert keys(run.db) == ["schedule:reconcile:2026-12-07T10:10:00+00:00"]
    assert mark_of(run.db)["last"] is None  # nothing new committed: the key answered
    [view] = second.schedules()
    assert view["last_run"]["at_iso"] == "2026-12-07T10:10:00+00:00"


def test_a_cluster_that_is_never_started_fires_nothing(tmp_path):
    clock = Clock(ts("2026-12-07T10:00:00"))
    cluster = Cluster(workers=0, app=reconcile_app(), clock=clock, **FAST)
    try:
        [view] = cluster.schedules()
        assert view["runs"] == 0 and view["last_run"] is None
        assert view["next_iso"] == "2026-12-07T10:10:00+00:00"
        assert cluster.events() == []
    finally:
        cluster.stop()


def test_a_fire_the_journal_cannot_take_now_is_logged_shown_late_and_fired_once_later(
        tmp_path, caplog, monkeypatch):
    db = tmp_path / "orderflow.db"
    clock = Clock(ts("2026-12-07T10:00:00"))
    journal = journal_at(db)
    cluster = Cluster(workers=1, journal=journal, app=reconcile_app(), clock=clock,
                      **FAST).start()
    try:
        cluster.run_schedules()

        def unwritable() -> None:
            raise StoreError("the disk is full")

        monkeypatch.setattr(journal, "check", unwritable)
        clock.set(ts("2026-12-07T10:10:00"))
        with caplog.at_level(logging.WARNING, logger="orderflow.schedules"):
            again_at = cluster.run_schedules()
        assert again_at == ts("2026-12-07T10:10:01")  # tried again a second later
        assert keys(db) == []
        # (The schedule thread may have looked too, on the same fake clock: the same line.)
        lines = {r.getMessage() for r in caplog.records if r.name == "orderflow.schedules"}
        assert lines == {"schedule reconcile: not fired yet (StoreError: the disk is full); "
                         "trying again in 1 s"}
        assert cluster.schedule("reconcile")["next_iso"] == "2026-12-07T10:10:00+00:00"
        monkeypatch.undo()
        clock.set(ts("2026-12-07T10:10:01"))
        cluster.run_schedules()
        cluster.run_schedules()
        assert keys(db) == ["schedule:reconcile:2026-12-07T10:10:00+00:00"]
        assert cluster.schedule("reconcile")["next_iso"] == "2026-12-07T10:20:00+00:00"
    finally:
        cluster.stop()
