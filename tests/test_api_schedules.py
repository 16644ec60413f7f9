"""HTTP API for recurring schedules: listed with their next and last runs, one by name, an
unknown one 404; counted in /metrics; described by the OpenAPI document."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import jsonschema_rs
import pytest
from test_schedule_runtime import Clock, reconcile_app
from web import FAST, LIVE_CONFIG, LiveServer, app_over

from scheduler import Cluster
from scheduler.cli import main


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


@pytest.fixture
def running():
    clock = Clock(ts("2026-12-07T10:00:00"))
    cluster = Cluster(workers=1, app=reconcile_app(), clock=clock, **FAST)
    with app_over(cluster) as app:
        yield app.test_client(), cluster, clock


def test_schedules_are_listed_with_their_next_and_last_runs(running):
    client, cluster, clock = running
    cluster.run_schedules()
    [listed] = client.get("/api/schedules").get_json()["schedules"]
    assert listed["name"] == "reconcile" and listed["cron"] == "*/10 * * * *"
    assert listed["workflow"] == "nightly" and listed["catch_up"] is True
    assert listed["tz"] == "UTC" and listed["last_run"] is None and listed["runs"] == 0
    assert listed["next_iso"] == "2026-12-07T10:10:00+00:00"
    clock.set(ts("2026-12-07T10:10:00.2"))
    cluster.run_schedules()
    one = client.get("/api/schedules/reconcile")
    assert one.status_code == 200
    body = one.get_json()
    assert body["runs"] == 1 and body["next_iso"] == "2026-12-07T10:20:00+00:00"
    assert body["last_run"]["at_iso"] == "2026-12-07T10:10:00+00:00"
    order = client.get(f"/api/orders/{body['last_run']['order_id']}").get_json()
    assert order["workflow"] == "nightly"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'orderflow_schedule_runs_total{schedule="reconcile"} 1.0' in metrics
    last = re.search(r'^orderflow_schedule_last_run_timestamp_seconds\{schedule="reconcile"\} '
                     r'(\S+)$', metrics, re.M)
    assert float(last.group(1)) == ts("2026-12-07T10:10:00")


def test_an_unknown_schedule_is_404_with_a_message(running):
    client, _, _ = running
    response = client.get("/api/schedules/nightly-export")
    assert response.status_code == 404
    assert response.get_json()["error"] == {
        "code": "not_found", "message": "unknown schedule 'nightly-export'"}


def test_a_schedule_name_no_journal_can_hold_is_400(running):
    client, _, _ = running
    response = client.get("/api/schedules/a%00b")
    assert response.status_code == 400
    assert "error" in response.get_json()


def test_an_app_without_schedules_lists_none(tmp_path):
    with app_over(Cluster(workers=1, **FAST)) as app:
        assert app.test_client().get("/api/schedules").get_json() == {"schedules": []}


def test_the_openapi_document_describes_the_schedules_as_they_are_answered(running):
    client, cluster, clock = running
    doc = client.get("/api/openapi.json").get_json()
    assert set(doc["paths"]["/api/schedules/{name}"]["get"]["responses"]) >= {"200", "404"}
    schedule = jsonschema_rs.validator_for({"$ref": "#/components/schemas/Schedule",
                                            "components": doc["components"]})
    cluster.run_schedules()
    before = client.get("/api/schedules/reconcile").get_json()
    clock.set(ts("2026-12-07T10:10:00"))
    cluster.run_schedules()
    after = client.get("/api/schedules/reconcile").get_json()
    for body in (before, after):
        schedule.validate(body)
    assert before["last_run"] is None and after["last_run"] is not None
    assert not schedule.is_valid({**after, "runs": "1"})


# --------------------------------------------------------------------------- the shell

def test_the_shell_lists_schedules_with_next_and_last_runs(capsys):
    clock = Clock(ts("2026-12-07T10:00:00"))
    cluster = Cluster(workers=1, app=reconcile_app(), clock=clock, **FAST)
    config = {**LIVE_CONFIG, "ORDERFLOW_TOKEN": "ops"}
    with app_over(cluster, config) as app, LiveServer(app) as live:
        cluster.run_schedules()
        clock.set(ts("2026-12-07T10:10:00"))
        cluster.run_schedules()
        assert main(["schedule", "list", "--server", live.url, "--token", "ops"]) == 0
        [line] = capsys.readouterr().out.splitlines()
        order_id = cluster.schedule("reconcile")["last_run"]["order_id"]
        assert line == ("reconcile: */10 * * * * (UTC) -> nightly; next "
                        "2026-12-07T10:20:00+00:00; last 2026-12-07T10:10:00+00:00 order "
                        f"{order_id} (1 runs)")
        assert main(["schedule", "list", "--server", live.url, "--token", "wrong"]) == 1
        assert capsys.readouterr().err.startswith("orderflow schedule: error: 401: ")
