"""Waits over HTTP: POST /api/orders/<id>/signals/<name> (200, 404, 409 recorded, 422 naming
the waits), not_before in the submit body, GET /api/orders?status=waiting with what each
waits for and until when, /api/workflows, /metrics and the OpenAPI document."""

from __future__ import annotations

import pytest
from conftest import wait_for
from test_waits import ORDER, shop
from web import app_over

from scheduler import Cluster
from scheduler.engine.fields import iso_seconds

FAST = {"heartbeat_interval": 0.05, "heartbeat_timeout": 0.5}


@pytest.fixture
def app():
    with app_over(Cluster(workers=1, app=shop(delay="1h"), **FAST)) as app:
        yield app


def waiting_order(client) -> str:
    oid = client.post("/api/orders", json={**ORDER, "workflow": "checkout"}).get_json()["id"]
    wait_for(lambda: client.get(f"/api/orders/{oid}").get_json()["status"] == "waiting", 10,
             message="the order to wait for payment_confirmed")
    return oid


def test_a_signal_completes_the_wait_and_the_answer_says_so(app):
    client = app.test_client()
    oid = waiting_order(client)
    response = client.post(f"/api/orders/{oid}/signals/payment_confirmed",
                           json={"data": {"txn": "t-1"}}, headers={"Idempotency-Key": "gw-1"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["signal"] == "payment_confirmed" and body["outcome"] == "delivered"
    assert body["order"]["tasks"]["payment_confirmed"]["status"] == "succeeded"
    assert body["order"]["tasks"]["payment_confirmed"]["result"] == {"txn": "t-1"}
    again = client.post(f"/api/orders/{oid}/signals/payment_confirmed",
                        json={"data": {"txn": "t-1"}}, headers={"Idempotency-Key": "gw-1"})
    assert again.status_code == 200 and again.get_json()["outcome"] == "repeated"
    # charge ran; review waits an hour after it (a delay: waiting for a time).
    wait_for(lambda: client.get(f"/api/orders/{oid}").get_json()["tasks"]["review"]["status"]
             == "waiting", 10, message="review to wait out its delay")
    order = client.get(f"/api/orders/{oid}").get_json()
    [review] = order["waits"]
    assert review["step"] == "review" and review["signal"] is None and review["until"] > 0
    assert order["tasks"]["review"]["waiting_for"].startswith("its time")


def test_a_second_signal_is_refused_409_and_recorded_with_who_sent_it(app):
    client = app.test_client()
    oid = waiting_order(client)
    assert client.post(f"/api/orders/{oid}/signals/payment_confirmed").status_code == 200
    refused = client.post(f"/api/orders/{oid}/signals/payment_confirmed", json={"data": 2})
    assert refused.status_code == 409
    assert "one came already" in refused.get_json()["error"]["message"]
    story = client.get(f"/api/orders/{oid}").get_json()["events"]
    [event] = [e for e in story if e["type"] == "signal_refused"]
    assert event["who"] == "127.0.0.1" and event["step"] == "payment_confirmed"
    [received] = [e for e in story if e["type"] == "signal_received"]
    assert received["data"] is None and received["who"] == "127.0.0.1"


def test_unknown_orders_names_and_bodies_are_refused_and_change_nothing(app):
    client = app.test_client()
    oid = waiting_order(client)
    missing = client.post("/api/orders/nope/signals/payment_confirmed", json={})
    assert missing.status_code == 404
    # A bad body is refused before the order is looked up: a JSON null is no body.
    for order in ("nope", oid):
        null = client.post(f"/api/orders/{order}/signals/payment_confirmed", data="null",
                           content_type="application/json")
        assert null.status_code == 422 and "JSON object" in null.get_json()["error"]["message"]
    unknown = client.post(f"/api/orders/{oid}/signals/delivered", json={"data": 1})
    assert unknown.status_code == 422
    assert unknown.get_json()["error"]["message"].endswith("its waits: payment_confirmed")
    for bad in ({"payload": 1}, [1], {"data": "nul\x00"}):
        response = client.post(f"/api/orders/{oid}/signals/payment_confirmed", json=bad)
        assert response.status_code == 422, bad
    key = client.post(f"/api/orders/{oid}/signals/payment_confirmed",
                      headers={"Idempotency-Key": " "})
    assert key.status_code == 422
    assert client.get(f"/api/orders/{oid}").get_json()["status"] == "waiting"
    story = client.get(f"/api/orders/{oid}").get_json()["events"]
    assert not [e for e in story if e["type"].startswith("signal_")]


def test_waiting_orders_are_listed_with_what_they_wait_for_and_until_when(app):
    client = app.test_client()
    oids = {waiting_order(client) for _ in range(3)}
    later = client.post("/api/orders", json={**ORDER, "workflow": "checkout",
                                             "not_before": "2099-01-01T00:00:00Z"})
    assert later.status_code == 201 and later.get_json()["status"] == "waiting"
    listed = client.get("/api/orders?status=waiting").get_json()["orders"]
    assert {o["id"] for o in listed} == oids | {later.get_json()["id"]}
    for order in listed:
        [waiting] = order["waits"]
        if order["id"] in oids:
            assert waiting["signal"] == "payment_confirmed"
        else:
            assert waiting == {"step": "reserve", "signal": None,
                               "until": iso_seconds("2099-01-01T00:00:00Z"),
                               "what": "its time (a delay, or its order's not_before)"}
    stats = client.get("/api/stats").get_json()
    assert stats["orders"]["waiting"] == 4 and stats["progress"]["waiting"] == 4
    assert stats["timers_pending"] == 4
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "orderflow_orders_waiting 4.0" in metrics
    assert "orderflow_timers_pending 4.0" in metrics


def test_a_past_bound_not_before_is_refused_clearly_and_nothing_is_submitted(app):
    client = app.test_client()
    before = client.get("/api/stats").get_json()["orders_total"]
    for bad in (-1, "next tuesday", "1970-01-01T00:00:00Z"):
        response = client.post("/api/orders", json={**ORDER, "workflow": "checkout",
                                                     "not_before": bad})
        assert response.status_code == 422
        assert "not_before must be an ISO-8601 time" in response.get_json()["error"]["message"]
    assert client.get("/api/stats").get_json()["orders_total"] == before


def test_workflows_and_the_openapi_document_describe_waits_and_signals(app):
    client = app.test_client()
    [workflow] = client.get("/api/workflows").get_json()["workflows"]
    steps = {s["name"]: s for s in workflow["steps"]}
    assert steps["payment_confirmed"]["wait"] is True
    assert steps["payment_confirmed"]["on_timeout"] == "cancel"
    assert steps["review"]["delay"] == 3600
    document = client.get("/api/openapi.json").get_json()
    operation = document["paths"]["/api/orders/{order_id}/signals/{name}"]["post"]
    assert {"200", "404", "409", "422"} <= set(operation["responses"])
    schemas = document["components"]["schemas"]
    assert "waiting" in schemas["Order"]["properties"]["status"]["enum"]
    assert "waiting" in schemas["Task"]["properties"]["status"]["enum"]
    assert schemas["OrderInput"]["properties"]["not_before"]["oneOf"][1] == {
        "type": "number", "minimum": 946_684_800, "maximum": 4_102_444_800}
    assert set(schemas["Signal"]["properties"]) == {"data"}
