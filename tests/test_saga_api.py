"""Sagas as the outside sees them: the order view and its OpenAPI schema, GET /api/workflows,
a failed compensation as a pinned incident with a retry, the events' log lines and
/metrics."""

from __future__ import annotations

import logging
import threading

import jsonschema_rs
from conftest import wait_for
from test_metrics import scrape
from web import FAST, app_over

from scheduler import App, Cluster, TaskContext, TaskError
from scheduler.runtime.incidents import IncidentLog

ORDER = {"customer": "ada", "items": [{"sku": "A1", "qty": 1, "price": 3.0}]}


def shop(refund_works: threading.Event) -> App:
    """charge, then pack (always out of stock); refund, which works once allowed."""
    app = App("shop")

    @app.step(compensate="refund")
    def payment(ctx: TaskContext):
        return {"charge": f"ch-{ctx.order_id}"}

    @app.step(retries=1, backoff=(0.01, 0.01))
    def refund(ctx: TaskContext):
        if not refund_works.is_set():
            raise TaskError("gateway down")
        return {"refunded": ctx.results["payment"]["charge"]}

    @app.step(retries=0)
    def packing(ctx: TaskContext):
        raise TaskError("out of stock")

    @app.step()
    def shipping(ctx: TaskContext):
        return {}

    app.workflow("checkout", ["payment", "packing", "shipping"])
    return app


def schema_of(document: dict, name: str) -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for({"$ref": f"#/components/schemas/{name}",
                                        "components": document["components"]})


def test_a_compensated_order_shows_its_undo_in_the_api_as_documented():
    works = threading.Event()
    works.set()
    with app_over(Cluster(workers=1, app=shop(works), **FAST)) as app:
        client = app.test_client()
        oid = client.post("/api/orders", json={**ORDER, "workflow": "checkout"}).get_json()["id"]
        cluster = app.extensions["orderflow"].cluster
        assert cluster.wait_until_idle(10)
        order = client.get(f"/api/orders/{oid}").get_json()
        document = client.get("/api/openapi.json").get_json()
        workflows = client.get("/api/workflows").get_json()["workflows"]
        listed = client.get("/api/orders?status=compensated").get_json()
    assert order["status"] == "compensated" and order["terminal"]
    assert order["tasks"]["refund"]["compensates"] == "payment"
    assert order["tasks"]["refund"]["result"] == {"refunded": f"ch-{oid}"}
    assert order["tasks"]["payment"]["compensates"] is None
    assert order["tasks"]["packing"]["status"] == "failed"
    schema_of(document, "Order").validate(order)
    assert "compensation_failed" in document["components"]["schemas"]["Order"][
        "properties"]["status"]["enum"]
    [checkout] = [w for w in workflows if w["name"] == "checkout"]
    assert checkout["compensations"] == {"payment": "refund"}
    assert {s["name"]: s["compensate"] for s in checkout["steps"]}["payment"] == "refund"
    schema_of(document, "Workflow").validate(checkout)
    assert [o["id"] for o in listed["orders"]] == [oid]


def test_a_failed_compensation_is_a_pinned_incident_an_error_line_and_retried_by_hand(caplog):
    works = threading.Event()
    caplog.set_level(logging.INFO, logger="orderflow")
    with app_over(Cluster(workers=1, app=shop(works), **FAST)) as app:
        client = app.test_client()
        cluster = app.extensions["orderflow"].cluster
        oid = client.post("/api/orders", json={**ORDER, "workflow": "checkout"}).get_json()["id"]
        wait_for(lambda: cluster.get_order(oid)["status"] == "compensation_failed", 10,
                 message="the refund ran out of retries")
        [incident] = [i for i in cluster.incidents() if i["kind"] == "compensation_failed"]
        assert incident["pinned"] and incident["order"] == oid
        assert "gateway down" in incident["title"] and oid in incident["title"]
        # The reporting thread logs its events after it released the lock: wait for it.
        wait_for(lambda: any("compensation failed" in r.getMessage() for r in caplog.records),
                 10, message="the ERROR line")
        failed = [r for r in caplog.records if "compensation failed" in r.getMessage()]
        assert [r.levelname for r in failed] == ["ERROR"]
        assert "step refund gave up after 2 attempts" in failed[0].getMessage()
        samples = scrape(client)
        assert samples[("orderflow_orders", (("status", "compensation_failed"),))] == 1
        works.set()
        assert client.post(f"/api/orders/{oid}/retry").status_code == 200
        wait_for(lambda: cluster.get_order(oid)["status"] == "compensated", 10,
                 message="the retried refund")
        again = client.post(f"/api/orders/{oid}/retry")
        assert again.status_code == 409 and "compensated" in again.get_json()["error"]["message"]
        samples = scrape(client)
    assert samples[("orderflow_orders", (("status", "compensated"),))] == 1
    assert samples[("orderflow_orders", (("status", "compensation_failed"),))] == 0
    assert samples[("orderflow_orders_by_stage", (("stage", "compensated"),))] == 1


def test_a_compensation_failure_opens_one_pinned_incident_naming_its_order():
    log = IncidentLog()
    log.observe([{"seq": 7, "ts": 1.0, "type": "order_compensation_failed", "order_id": "o-1",
                  "step": None, "worker_id": None, "attempt": 0,
                  "message": "order o-1 compensation failed: step refund gave up"}])
    [incident] = log.views()
    assert (incident["kind"], incident["pinned"], incident["order"]) == (
        "compensation_failed", True, "o-1")
    assert incident["title"] == "order o-1 compensation failed: step refund gave up"
    again = IncidentLog()
    again.load(log.take_unsaved()[0])
    assert again.views() == log.views()
