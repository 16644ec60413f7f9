"""Health, stats, the event log, chaos settings, the OpenAPI document and generic errors."""

from __future__ import annotations

import re

import pytest
from web import ORDER, STEADY, app_over, fast_cluster


@pytest.fixture
def idle():
    with app_over(fast_cluster(), start=False) as app:
        yield app.test_client(), app


@pytest.fixture
def running():
    # Heartbeats no busy machine can miss: these tests count workers alive and no moves, and
    # at the fast ones (dead after 0.3 s of silence) a starved heartbeat thread is a death.
    with app_over(fast_cluster(workers=2, **STEADY)) as app:
        yield app.test_client(), app.extensions["orderflow"].cluster


def test_healthz_says_ok(idle):
    client, _ = idle
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "role": "leader", "epoch": None, "leader": None,
                                   "leader_name": None, "server": None}


def test_stats_count_orders_tasks_workers_and_throughput(running):
    client, cluster = running
    client.post("/api/orders/bulk", json={"count": 5})
    assert cluster.wait_until_idle(10)
    stats = client.get("/api/stats").get_json()
    assert stats["orders"]["completed"] == 5 and stats["orders_total"] == 5
    assert stats["tasks"]["succeeded"] == 15
    assert stats["workers"] == {"alive": 2}
    assert stats["throughput"] > 0
    assert {"retries", "reassignments", "last_seq"} <= set(stats)


def test_events_page_in_seq_order_after_a_cursor(idle):
    client, _ = idle
    client.post("/api/orders/bulk", json={"count": 10})
    page = client.get("/api/events?after=0&limit=4").get_json()
    seqs = [e["seq"] for e in page["events"]]
    assert seqs == sorted(seqs) and len(seqs) == 4
    rest = client.get(f"/api/events?after={seqs[-1]}").get_json()
    assert [e["seq"] for e in rest["events"]][0] == seqs[-1] + 1
    assert rest["last_seq"] == rest["events"][-1]["seq"] and rest["oldest_seq"] == 1
    assert {"seq", "ts", "type", "order_id", "step", "worker_id", "attempt", "message"} <= set(
        page["events"][0])


@pytest.mark.parametrize("query", ["after=-1", "after=x", "limit=0", "limit=5001"])
def test_bad_event_query_is_400(idle, query):
    client, _ = idle
    response = client.get(f"/api/events?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_parameter"


def test_chaos_can_be_read_and_changed(idle):
    client, _ = idle
    calm = {"failure_rate": 0.0, "latency_ms": [0.0, 0.0], "hang_rate": 0.0, "stuck_rate": 0.0}
    assert client.get("/api/chaos").get_json() == calm
    response = client.put("/api/chaos", json={"failure_rate": 0.25, "latency_ms": [5, 10]})
    assert response.status_code == 200
    assert response.get_json() == {**calm, "failure_rate": 0.25, "latency_ms": [5.0, 10.0]}
    client.put("/api/chaos", json={"latency_ms": [1, 2], "hang_rate": 0.1, "stuck_rate": 0.05})
    assert client.get("/api/chaos").get_json() == {"failure_rate": 0.25, "latency_ms": [1.0, 2.0],
                                                   "hang_rate": 0.1, "stuck_rate": 0.05}


def test_a_latency_range_may_name_its_ends_in_either_order(idle):
    """The documented pair is two numbers; JSON Schema cannot say "the first is the smaller",
    so the server does not ask it: [5, 1] is the range from 1 to 5."""
    client, _ = idle
    response = client.put("/api/chaos", json={"latency_ms": [5, 1]})
    assert response.status_code == 200
    assert response.get_json()["latency_ms"] == [1.0, 5.0]


@pytest.mark.parametrize(
    "body",
    [
        {"failure_rate": 1.5, "latency_ms": [1, 2]},
        {"failure_rate": 0.5, "latency_ms": [1]},
        {"failure_rate": "0.5"},
        {"failure_rate": True},
        {"failure_rate": None},
        {"latency_ms": [1, 70_000]},
        {"failure_rate": 0.5, "seed": 1},
        {"failure_rate": 0.5, "hang_rate": 2},
        {"failure_rate": 0.5, "stuck_rate": -0.1},
        {"stuck_rate": None},
        {},
    ],
)
def test_bad_chaos_change_applies_nothing(idle, body):
    client, _ = idle
    response = client.put("/api/chaos", json=body)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_error"
    assert client.get("/api/chaos").get_json() == {"failure_rate": 0.0, "latency_ms": [0.0, 0.0],
                                                   "hang_rate": 0.0, "stuck_rate": 0.0}


def test_unknown_route_and_wrong_method_are_json_errors(idle):
    client, _ = idle
    missing = client.get("/api/nothing")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    wrong = client.delete("/api/orders")
    assert wrong.status_code == 405
    assert wrong.get_json()["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["Allow"]


def test_unexpected_failure_is_an_opaque_500_and_the_server_goes_on(idle, monkeypatch):
    client, app = idle
    cluster = app.extensions["orderflow"].cluster

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(cluster, "stats", broken)
    response = client.get("/api/stats")
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    assert "secret" not in response.get_data(as_text=True)
    assert client.get("/healthz").status_code == 200


def test_index_serves_a_page(idle):
    client, _ = idle
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"


def test_openapi_document_describes_every_route_and_method(idle):
    client, app = idle
    doc = client.get("/api/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        routes.setdefault(path, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    described = {path: set(ops) for path, ops in doc["paths"].items()}
    assert described == routes


def test_openapi_references_resolve(idle):
    client, _ = idle
    doc = client.get("/api/openapi.json").get_json()
    refs = set(re.findall(r'"\$ref": "#/components/schemas/(\w+)"', str(doc).replace("'", '"')))
    assert refs and refs <= set(doc["components"]["schemas"])


def test_order_detail_response_matches_the_documented_fields(idle):
    client, _ = idle
    doc = client.get("/api/openapi.json").get_json()
    order = client.post("/api/orders", json=ORDER).get_json()
    assert set(doc["components"]["schemas"]["Order"]["properties"]) == set(order)
    task = order["tasks"]["payment"]
    assert set(doc["components"]["schemas"]["Task"]["properties"]) == set(task)


# ---------------------------------------------------------------- progress, history, failures


def test_stats_say_where_orders_stand_and_how_fast_they_go(running):
    client, cluster = running
    cluster.chaos.update(failure_rate=1.0)
    client.post("/api/orders/bulk", json={"count": 2})
    assert cluster.wait_until_idle(10)
    cluster.chaos.update(failure_rate=0.0)
    client.post("/api/orders/bulk", json={"count": 3})
    assert cluster.wait_until_idle(10)
    stats = client.get("/api/stats").get_json()
    assert stats["progress"] == {"queued": 0, "running": 0, "retrying": 0, "waiting": 0,
                                 "completed": 3,
                                 "failed": 2, "cancelled": 0,
                                 "compensated": 0, "compensation_failed": 0}
    assert stats["steps"] == {}  # no unfinished order left
    # Per second over the last 10 s (exact figures in test_core_progress; here the machine
    # may be slow enough for a few to have left the window).
    rates = stats["rates"]
    assert rates["window"] == 10 and 0 < rates["orders_per_s"] <= 0.3
    assert 0 < rates["steps_per_s"] <= 0.9
    assert 0 < rates["failures_per_s"] <= 0.8  # 2 orders x 4 attempts
    assert stats["moves"] == 0 and stats["moves_by_reason"] == {"worker dead": 0, "drain": 0}


def test_unfinished_orders_are_counted_by_stage_and_their_steps_by_state(idle):
    client, app = idle
    client.post("/api/orders/bulk", json={"count": 2})
    stats = client.get("/api/stats").get_json()
    assert stats["progress"]["queued"] == 2
    assert stats["steps"]["payment"]["ready"] == 2 and stats["steps"]["shipping"]["pending"] == 2


def test_chaos_changes_are_audited_saying_what_they_were(idle):
    client, app = idle
    cluster = app.extensions["orderflow"].cluster
    client.put("/api/chaos", json={"failure_rate": 0.6})
    client.put("/api/chaos", json={"latency_ms": [20, 60], "failure_rate": 0.6})
    client.put("/api/chaos", json={"failure_rate": 0.6})
    client.put("/api/chaos", json={"hang_rate": 0.02})
    client.put("/api/chaos", json={"stuck_rate": 0.5})
    messages = [e["message"] for e in cluster.events(after=0) if e["type"] == "operator_action"]
    assert messages == [
        "127.0.0.1: set chaos: failure rate 0% → 60%",
        "127.0.0.1: set chaos: latency 0 ms → 20–60 ms",
        "127.0.0.1: set chaos: unchanged (failure rate 60%, latency 20–60 ms)",
        "127.0.0.1: set chaos: hang rate 0% → 2%",
        "127.0.0.1: set chaos: stuck rate 0% → 50%",
    ]


def test_the_history_serves_sampled_points_as_columns(idle):
    client, app = idle
    history = app.extensions["orderflow"].history
    assert client.get("/api/history").get_json()["t"] == []
    stats = {"rates": {"orders_per_s": 1.5, "steps_per_s": 4.5, "failures_per_s": 0.1},
             "tasks": {"ready": 3, "assigned": 2, "retry_wait": 1}}
    history.sample(1000.0, stats)
    history.sample(1001.0, stats)  # within the interval: skipped
    history.sample(1002.0, {**stats, "tasks": {}})
    body = client.get("/api/history").get_json()
    assert body == {"interval": 2.0, "span": 3600.0, "t": [1000.0, 1002.0],
                    "orders_per_s": [1.5, 1.5], "steps_per_s": [4.5, 4.5],
                    "failures_per_s": [0.1, 0.1], "queued": [5, 0], "retrying": [1, 0]}


def test_the_history_keeps_only_the_last_span(idle):
    from dashboard.stream.history import History

    history = History(interval=1.0, span=10.0)
    for t in range(30):
        history.sample(float(t), {})
    assert history.view()["t"] == [float(t) for t in range(19, 30)]


def test_failed_orders_are_grouped_by_step_and_reason(running):
    client, cluster = running
    cluster.chaos.update(failure_rate=1.0)
    ids = client.post("/api/orders/bulk", json={"count": 3}).get_json()["ids"]
    assert cluster.wait_until_idle(10)
    body = client.get("/api/failures").get_json()
    assert body["total"] == 3
    [group] = body["groups"]
    assert group["step"] == "payment" and group["count"] == 3
    assert group["reason"] == ("gave up after # attempts: payment gateway declined the charge "
                               "(simulated, attempt #)")
    assert group["example"].startswith("gave up after 4 attempts: payment gateway declined")
    assert sorted(group["orders"]) == sorted(ids)
