"""GET /metrics: Prometheus text with counts from the cluster and histograms from events."""

from __future__ import annotations

import threading

from conftest import wait_for
from hung import FakeClock, deaf_handlers, run_hung_attempts
from prometheus_client.parser import text_string_to_metric_families
from web import STEADY, app_over, fast_cluster

from scheduler import RetryPolicy

ORDER = {"customer": "ada", "items": [{"sku": "A1", "qty": 2, "price": 9.5}]}


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_orders_tasks_and_workers_and_time_completions():
    # Heartbeats no busy machine can miss: no reassignment is expected below.
    with app_over(fast_cluster(workers=2, failure_rate=0.2, max_retries=5, **STEADY)) as app:
        client = app.test_client()
        client.post("/api/orders/bulk", json={"count": 20})
        cluster = app.extensions["orderflow"].cluster
        assert cluster.wait_until_idle(10)
        stats = cluster.stats()
        # Histograms come from a subscription thread: wait until it has seen the last event.
        wait_for(lambda: scrape(client)[("orderflow_order_completion_seconds_count", ())]
                 == stats["orders"]["completed"], 5, message="histogram caught up")
        samples = scrape(client)
    assert samples[("orderflow_orders_submitted_total", ())] == 20
    assert samples[("orderflow_orders", (("status", "completed"),))] == stats["orders"]["completed"]
    assert samples[("orderflow_tasks", (("state", "succeeded"),))] == stats["tasks"]["succeeded"]
    assert samples[("orderflow_workers", (("status", "alive"),))] == 2
    assert samples[("orderflow_task_retries_total", ())] == stats["retries"] > 0
    assert samples[("orderflow_task_reassignments_total", ())] == 0
    assert samples[("orderflow_task_run_seconds_count", (("step", "payment"),))] > 0
    assert samples[("orderflow_events_total", (("type", "task_failed"),))] == stats["retries"] + (
        stats["orders"]["failed"])
    assert ("orderflow_throughput_orders_per_second", ()) in samples
    assert ("orderflow_stream_clients", (("state", "live"),)) in samples


def test_metrics_say_content_type_once_and_count_what_the_tiles_count():
    with app_over(fast_cluster(workers=2)) as app:
        client = app.test_client()
        client.post("/api/orders/bulk", json={"count": 4})
        cluster = app.extensions["orderflow"].cluster
        assert cluster.wait_until_idle(10)
        response = client.get("/metrics")
        assert response.headers["Content-Type"].count("charset") == 1
        stats = cluster.stats()
        samples = scrape(client)
    for stage, count in stats["progress"].items():
        assert samples[("orderflow_orders_by_stage", (("stage", stage),))] == count
    assert samples[("orderflow_orders_by_stage", (("stage", "completed"),))] == 4
    assert samples[("orderflow_steps_per_second", ())] == stats["rates"]["steps_per_s"] > 0
    assert samples[("orderflow_task_moves_total", (("reason", "drain"),))] == 0


def test_threads_abandoned_to_a_deaf_handler_are_shown_by_the_api_and_the_metrics():
    clock, release, entered = FakeClock(), threading.Event(), threading.Semaphore(0)
    cluster = fast_cluster(workers=1, slots=2, clock=clock, heartbeat_timeout=60.0,
                           handlers=deaf_handlers(entered, release), step_timeout=5.0,
                           abandon_after=1.0, retry=RetryPolicy(max_retries=0))
    with app_over(cluster) as app:
        client = app.test_client()
        try:
            assert client.post("/api/orders", json={**ORDER, "customer": "hang"}).status_code \
                == 201
            run_hung_attempts(cluster, clock, entered, 1, timeout=5.0, grace=1.0)
            wait_for(lambda: client.get("/api/stats").json["slots"]["abandoned"] == 1, 10,
                     message="the thread abandoned")
            stats = client.get("/api/stats").json
            assert stats["slots"] == {"total": 2, "busy": 0, "stuck": 0, "abandoned": 1}
            assert (stats["abandoned_threads"], stats["workers_hung"]) == (1, 0)
            assert stats["timed_out_attempts"] == 1
            [worker] = client.get("/api/workers").json["workers"]
            assert (worker["stuck"], worker["abandoned"]) == (0, 1)
            samples = scrape(client)
            assert samples[("orderflow_slots", (("use", "abandoned"),))] == 1
            assert samples[("orderflow_abandoned_threads_total", ())] == 1
            assert samples[("orderflow_workers_hung_total", ())] == 0
            assert samples[("orderflow_timed_out_attempts_total", ())] == 1
        finally:
            release.set()
        wait_for(lambda: scrape(client)[("orderflow_slots", (("use", "abandoned"),))] == 0, 10,
                 message="the abandoned handler returned")


def test_a_batch_of_events_is_counted_per_type_step_and_outcome_with_every_duration():
    from dashboard.metrics import Metrics

    metrics = Metrics(None, None)  # observe() needs neither the cluster nor the stream
    metrics.observe([
        {"type": "task_succeeded", "step": "payment", "duration": 0.2},
        {"type": "task_succeeded", "step": "payment", "duration": 3.0},
        {"type": "task_succeeded", "step": "packing", "duration": 0.01},
        {"type": "task_failed", "step": "payment"},
        {"type": "order_completed", "step": None, "duration": 4.5},
        {"type": "task_started", "step": "payment"},
    ])
    metrics.observe([{"type": "task_failed", "step": "payment"}])

    def values(metric) -> dict:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in metric.collect() for s in family.samples}

    events = values(metrics.events)
    assert {labels: v for (name, labels), v in events.items() if name == "orderflow_events_total"
            } == {(("type", "task_succeeded"),): 3, (("type", "task_failed"),): 2,
                  (("type", "order_completed"),): 1, (("type", "task_started"),): 1}
    attempts = values(metrics.attempts)
    assert {labels: v for (name, labels), v in attempts.items()
            if name == "orderflow_step_attempts_total"} == {
        (("outcome", "succeeded"), ("step", "payment")): 2,
        (("outcome", "succeeded"), ("step", "packing")): 1,
        (("outcome", "failed"), ("step", "payment")): 2}
    runs = values(metrics.task_seconds)
    assert runs[("orderflow_task_run_seconds_count", (("step", "payment"),))] == 2
    assert runs[("orderflow_task_run_seconds_sum", (("step", "payment"),))] == 3.2
    assert runs[("orderflow_task_run_seconds_sum", (("step", "packing"),))] == 0.01
    orders = values(metrics.order_seconds)
    assert orders[("orderflow_order_completion_seconds_count", ())] == 1
    assert orders[("orderflow_order_completion_seconds_sum", ())] == 4.5


def test_a_batch_looks_each_series_up_once_not_once_per_event(monkeypatch):
    from dashboard.metrics import Metrics

    metrics = Metrics(None, None)
    looked_up: list[tuple] = []
    for metric in (metrics.events, metrics.attempts, metrics.task_seconds):
        labels = metric.labels
        monkeypatch.setattr(metric, "labels",
                            lambda *names, labels=labels: looked_up.append(names) or labels(*names))
    metrics.observe([{"type": "task_succeeded", "step": "payment", "duration": 0.1}] * 50
                    + [{"type": "task_started", "step": "payment"}] * 50)
    assert sorted(looked_up) == [("payment",), ("payment", "succeeded"), ("task_started",),
                                 ("task_succeeded",)]
