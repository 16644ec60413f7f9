"""Recurring schedules on several servers sharing one PostgreSQL database: only the leader
fires, a standby never does, and a failover fires each time once: the times missed while no
server led collapse into one fire (catch_up), and none fires twice. The journal is judged
by the invariant checker's schedule rules."""

from __future__ import annotations

import json

import pytest

try:
    import psycopg  # noqa: F401
except ImportError:  # only `.[dev]` installed: the PostgreSQL tests need the postgres extra
    pytest.skip("psycopg is not installed (pip install -e '.[dev,postgres]')",
                allow_module_level=True)
from conftest import wait_for
from ha import ha_app, leading, role, sql

from dashboard import services
from scheduler.chaos.invariants import load_journal
from scheduler.chaos.schedule_checks import check_schedules

pytestmark = pytest.mark.slow  # a PostgreSQL server, two servers' threads for seconds

TICKING = {"app": "schedule_app:app", "workers": 1}


def fires(url: str, epoch: int | None = None) -> int:
    where = "" if epoch is None else f" AND epoch = {int(epoch)}"
    return sql(url, f"SELECT COUNT(*) FROM events WHERE type = 'schedule_fired'{where}")[0][0]


def test_only_the_leader_fires_and_a_failover_fires_each_time_once(pg_url):
    with ha_app(pg_url, "http://a", **TICKING) as a:
        leading(a)
        with ha_app(pg_url, "http://b", **TICKING) as b:
            wait_for(lambda: role(b)["leader"] == "http://a", 10, message="b naming a")
            wait_for(lambda: fires(pg_url) >= 3, 30, message="the leader firing")
            standby = services(b)
            assert standby.cluster is standby.leadership.placeholder  # never started
            b_client = b.test_client()
            assert b_client.get("/api/schedules").status_code == 503  # names the leader
            sql(pg_url, "SELECT pg_terminate_backend(pid) FROM leader")
            new = wait_for(lambda: standby.leadership.leading and role(b), 15,
                           message="the standby leading")["epoch"]
            wait_for(lambda: fires(pg_url, new) >= 3, 30, message="the new leader firing")
            [listed] = b_client.get("/api/schedules").get_json()["schedules"]
    history = load_journal(pg_url)
    found, count = check_schedules(history)
    assert {k: v for k, v in found.items() if v} == {}
    fired = [(e["at"], epoch) for e, epoch in zip(history.events, history.epochs, strict=True)
             if e["type"] == "schedule_fired"]
    assert {epoch for _, epoch in fired} == {1, new}
    times = [at for at, _ in fired]
    assert times == sorted(set(times))
    # Every second fired while a server led; one gap at most, where the failover's missed
    # seconds collapsed into one fire.
    gaps = [(a, b) for a, b in zip(times, times[1:], strict=False) if b - a != 1]
    assert len(gaps) <= 1
    if gaps:
        first_of_new = next(at for at, epoch in fired if epoch == new)
        assert gaps[0][1] == first_of_new
    # The schedule's mark moved with each fire, across both terms.
    (detail,) = sql(pg_url, "SELECT detail FROM schedules WHERE name = 'tick'")[0]
    mark = json.loads(detail)
    assert mark["runs"] == count and mark["last"] == times[-1]
    assert listed["runs"] <= count and listed["last_run"]["at"] in times
