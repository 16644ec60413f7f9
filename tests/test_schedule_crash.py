"""Recurring schedules on the real server: `orderflow serve` SIGKILLed, a scheduled time
passes while it is down, and the restart fires that time once (or, with catch_up off,
skips it and says so). The journal is the judge."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from conftest import wait_for

from scheduler.chaos.serve_process import ServeProcess

pytestmark = pytest.mark.slow  # a real server process, SIGKILLed and restarted

APP = '''
import os
from scheduler import App

app = App("timed")
app.add_step("reconcile", lambda ctx: {"ok": True})
app.workflow("nightly", ["reconcile"])
app.schedule("tick", cron=os.environ["TEST_SCHEDULE_CRON"], workflow="nightly",
             catch_up=os.environ["TEST_SCHEDULE_CATCH_UP"] == "1")
'''
FAR_AWAY = "0 0 1 1 *"  # the first server only makes the schedule known


def rows(db: Path, sql: str, *args) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def serve(db: Path) -> ServeProcess:
    return ServeProcess("--db", str(db), "--log-file", str(db.parent / "orderflow.log"),
                        "--app", "timed_app:app", "--workers", "1",
                        "--heartbeat-interval", "0.05", "--heartbeat-timeout", "0.5",
                        "--log-level", "warning")


def scheduled_keys(db: Path) -> list[str]:
    return [r[0] for r in rows(db, "SELECT idempotency_key FROM orders "
                                   "WHERE idempotency_key LIKE 'schedule:%' ORDER BY number")]


@pytest.fixture
def servers(tmp_path, monkeypatch):
    (tmp_path / "timed_app.py").write_text(APP)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    started: list[ServeProcess] = []

    def start(cron: str, catch_up: bool) -> ServeProcess:
        monkeypatch.setenv("TEST_SCHEDULE_CRON", cron)
        monkeypatch.setenv("TEST_SCHEDULE_CATCH_UP", "1" if catch_up else "0")
        server = serve(tmp_path / "orderflow.db")
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.kill()


def down_over_a_time(db: Path, start, catch_up: bool) -> tuple[float, ServeProcess]:
    """Start, SIGKILL once the schedule is journaled, let a time of it pass, restart.
    Returns (that time, the restarted server)."""
    first = start(FAR_AWAY, catch_up)
    wait_for(lambda: rows(db, "SELECT detail FROM schedules WHERE name = 'tick'"), 30,
             message="the schedule journaled as known")
    first.kill()
    # A time one or two seconds from now (its cron: that second of every minute).
    at = math.floor(time.time()) + 2
    wait_for(lambda: time.time() > at + 0.5, 10, message="the time to pass while down")
    return at, start(f"{at % 60} * * * * *", catch_up)


def test_a_time_that_passed_during_a_sigkill_fires_once_at_the_restart(tmp_path, servers):
    db = tmp_path / "orderflow.db"
    at, second = down_over_a_time(db, servers, catch_up=True)
    key = f"schedule:tick:{datetime.fromtimestamp(at, timezone.utc).isoformat()}"
    wait_for(lambda: scheduled_keys(db) == [key], 30, message=f"{key} fired")
    listed = requests.get(f"{second.url}/api/schedules", timeout=10).json()["schedules"]
    assert [(s["name"], s["runs"], s["last_run"]["at"]) for s in listed] == [("tick", 1, at)]
    order_id = listed[0]["last_run"]["order_id"]
    wait_for(lambda: rows(db, "SELECT status FROM orders WHERE id = ?", order_id)
             == [("completed",)], 30, message="the scheduled order completed")
    fired = rows(db, "SELECT order_id FROM events WHERE type = 'schedule_fired'")
    assert fired == [(order_id,)]
    mark = json.loads(rows(db, "SELECT detail FROM schedules WHERE name = 'tick'")[0][0])
    assert mark["last"] == at and mark["runs"] == 1


def test_without_catch_up_a_time_that_passed_during_a_sigkill_is_skipped(tmp_path, servers):
    db = tmp_path / "orderflow.db"
    at, second = down_over_a_time(db, servers, catch_up=False)
    wait_for(lambda: rows(db, "SELECT message FROM events WHERE type = 'schedule_skipped'"),
             30, message="the skip journaled")
    assert scheduled_keys(db) == []
    [listed] = requests.get(f"{second.url}/api/schedules", timeout=10).json()["schedules"]
    assert listed["runs"] == 0 and listed["skipped"] == 1 and listed["last_run"] is None
    mark = json.loads(rows(db, "SELECT detail FROM schedules WHERE name = 'tick'")[0][0])
    assert mark["last"] == at
