"""docs/alerts.yml: Prometheus rules over the metrics the server really exposes, valid for
promtool, and firing on the series they are written for."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import wait_for
from prometheus_client.parser import text_string_to_metric_families
from test_metrics import scrape
from web import STEADY, app_over, fast_cluster

from scheduler.runtime.alerts import ALERTS, AlertSettings

RULES = Path(__file__).resolve().parent.parent / "docs" / "alerts.yml"
METRIC = re.compile(r"\borderflow_[a-z_]+\b")


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


def test_every_rule_names_an_alert_a_severity_and_a_summary():
    found = rules()
    assert len(found) >= 5
    for rule in found:
        assert rule["alert"].startswith("Orderflow"), rule
        assert rule["labels"]["severity"] in ("page", "ticket"), rule
        assert rule["annotations"]["summary"], rule


def test_every_metric_a_rule_reads_is_one_the_server_exposes():
    # Every alert raised once (a cluster with every alert at its lowest), so the labelled
    # gauges have samples too; and one attempt of each outcome for the counters.
    settings = AlertSettings(failure_min_attempts=1, failure_share=0.01, unroutable_after=0,
                             every=0.02)
    cluster = fast_cluster(workers=2, failure_rate=0.5, max_retries=5, alerts=settings,
                           **STEADY)
    with app_over(cluster) as app:
        client = app.test_client()
        client.post("/api/orders/bulk", json={"count": 20})
        assert cluster.wait_until_idle(10)
        wait_for(cluster.alerts, 10, message="an alert")
        wait_for(lambda: {n for n, _ in scrape(client)} >= {"orderflow_step_attempts_total"},
                 5, message="the attempts counted")
        text = client.get("/metrics").get_data(as_text=True)
    # Every family the server declares (one without samples now, e.g. no step unroutable,
    # is still one a rule may read), and every sample name (a counter's `_total`).
    exposed = set()
    for family in text_string_to_metric_families(text):
        exposed |= {family.name} | {sample.name for sample in family.samples}
    read = {name for rule in rules() for name in METRIC.findall(rule["expr"])}
    assert read, "the rules read no metric"
    assert read <= exposed, sorted(read - exposed)
    # The alerts the server raises by name are the ones it has.
    named = {m for rule in rules() for m in re.findall(r'alert="([a-z_]+)"', rule["expr"])}
    assert named <= set(ALERTS), sorted(named - set(ALERTS))


PROMTOOL = shutil.which("promtool")
if PROMTOOL is None and os.environ.get("CI") == "true":
    raise RuntimeError("promtool is missing in CI: .ci/run installs Debian's prometheus")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool (Debian's prometheus package; .ci/run installs it)")


@pytest.mark.slow
@needs_promtool
def test_promtool_accepts_the_rules():
    done = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


@pytest.mark.slow
@needs_promtool
def test_the_failure_spike_fires_on_a_failing_step_and_not_on_a_quiet_one(tmp_path):
    # promtool's own rule tests: series in, alerts out. Payment fails 30 of 40 attempts a
    # minute; packing fails 1 of 40; shipping fails every one of its 5 (too few to judge).
    cases = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",
            "input_series": [
                {"series": 'orderflow_step_attempts_total{step="payment",outcome="failed",'
                           'instance="a"}', "values": "0+7.5x8"},
                {"series": 'orderflow_step_attempts_total{step="payment",outcome="succeeded",'
                           'instance="a"}', "values": "0+2.5x8"},
                {"series": 'orderflow_step_attempts_total{step="packing",outcome="failed",'
                           'instance="a"}', "values": "0+0.25x8"},
                {"series": 'orderflow_step_attempts_total{step="packing",outcome="succeeded",'
                           'instance="a"}', "values": "0+9.75x8"},
                {"series": 'orderflow_step_attempts_total{step="shipping",outcome="failed",'
                           'instance="a"}', "values": "0+1.25x8"},
                {"series": 'orderflow_step_attempts_total{step="shipping",outcome="succeeded",'
                           'instance="a"}', "values": "0+0x8"},
                {"series": 'orderflow_journal_stalled_seconds{instance="a"}',
                 "values": "0 0 4 8 12 16 0 0 0"},
            ],
            "alert_rule_test": [
                {"eval_time": "2m", "alertname": "OrderflowFailureSpike",
                 "exp_alerts": [{
                     "exp_labels": {"severity": "page", "step": "payment", "instance": "a"},
                     "exp_annotations": {
                         "summary": "payment: half of its attempts failed in the last minute",
                         "description": rules()[0]["annotations"]["description"].replace(
                             "{{ $labels.step }}", "payment"),
                     }}]},
                {"eval_time": "60s", "alertname": "OrderflowJournalFailing",
                 "exp_alerts": [{"exp_labels": {"severity": "page", "instance": "a"},
                                 "exp_annotations": {
                                     "summary": "The journal has not committed for 12 s",
                                     "description": rules()[4]["annotations"]["description"],
                                 }}]},
                {"eval_time": "2m", "alertname": "OrderflowJournalFailing", "exp_alerts": []},
            ],
        }],
    }
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump(cases))
    done = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.slow
@needs_promtool
def test_a_schedule_late_by_five_minutes_fires_and_one_that_moves_on_does_not(tmp_path):
    # "stuck" was due at 60 s and never fired; "ticking" fires every 15 s (its next moves).
    [late] = [r for r in rules() if r["alert"] == "OrderflowScheduleLate"]
    cases = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",
            "input_series": [
                {"series": 'orderflow_schedule_next_run_timestamp_seconds{schedule="stuck",'
                           'instance="a"}', "values": "60x40"},
                {"series": 'orderflow_schedule_next_run_timestamp_seconds{schedule="ticking",'
                           'instance="a"}', "values": "15+15x40"},
            ],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "OrderflowScheduleLate", "exp_alerts": []},
                {"eval_time": "7m", "alertname": "OrderflowScheduleLate",
                 "exp_alerts": [{
                     "exp_labels": {"severity": "page", "schedule": "stuck", "instance": "a"},
                     "exp_annotations": {
                         "summary": "schedule stuck has not fired for a time 5 minutes past",
                         "description": late["annotations"]["description"],
                     }}]},
            ],
        }],
    }
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump(cases))
    done = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
