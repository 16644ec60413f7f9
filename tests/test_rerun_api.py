"""Running an order again from a step, and replaying it as a new order, through the API on
either journal (issue 23 item 5): the same idempotency keys unless new ones are asked for,
audited, and a re-run asked with new keys hands them again after a restart."""

from __future__ import annotations

from conftest import wait_for
from test_deploys import FAST, ORDER
from test_store import journal_at
from web import app_over

from scheduler import App, Cluster, TaskContext


def shop(charges: list) -> App:
    """payment keeps the idempotency key it was handed, as a gateway would."""
    app = App("shop", version="v1")

    @app.step()
    def payment(ctx: TaskContext) -> dict:
        charges.append(ctx.idempotency_key)
        return {"charged": ctx.idempotency_key}

    @app.step()
    def packing(ctx: TaskContext) -> dict:
        return {}

    app.workflow("checkout", ["payment", "packing"])
    return app


def completed(cluster: Cluster, order_id: str) -> None:
    wait_for(lambda: cluster.get_order(order_id)["status"] == "completed",
             message=f"order {order_id} completed")


def test_an_order_runs_again_from_a_step_with_the_same_keys_unless_asked(journal_db):
    charges: list = []
    cluster = Cluster(workers=1, app=shop(charges), journal=journal_at(journal_db), **FAST)
    with app_over(cluster) as app:
        client = app.test_client()
        oid = cluster.submit(ORDER, "checkout")
        completed(cluster, oid)
        again = client.post(f"/api/orders/{oid}/rerun", json={"step": "payment"})
        assert again.status_code == 200 and again.get_json()["rerun"] == ["payment", "packing"]
        completed(cluster, oid)
        assert charges == [f"{oid}:payment", f"{oid}:payment"]  # the gateway sees a repeat
        fresh = client.post(f"/api/orders/{oid}/rerun", json={"step": "payment",
                                                               "new_keys": True})
        assert fresh.status_code == 200
        completed(cluster, oid)
        assert charges[-1] == f"{oid}:payment:rerun-1"
        assert cluster.get_order(oid)["tasks"]["payment"]["result"] == {
            "charged": f"{oid}:payment:rerun-1"}
        audit = [e for e in cluster.events() if e["type"] == "operator_action"]
        assert [e["action"] for e in audit] == ["rerun", "rerun"]
        assert audit[1]["message"].endswith(f"ran order {oid} again from step payment "
                                            "(payment, packing; new idempotency keys)")
        story = [e["type"] for e in client.get(f"/api/orders/{oid}").get_json()["events"]]
        assert story.count("order_retried") == 2 and story.count("order_completed") == 3


def test_a_rerun_refused_or_misnamed_is_a_4xx_that_changes_nothing(tmp_path):
    cluster = Cluster(workers=0, app=shop([]), journal=journal_at(str(tmp_path / "of.db")),
                      **FAST)
    with app_over(cluster) as app:
        client = app.test_client()
        oid = cluster.submit(ORDER, "checkout")
        busy = client.post(f"/api/orders/{oid}/rerun", json={"step": "payment"})
        assert busy.status_code == 409
        assert busy.get_json()["error"]["message"].startswith(f"order {oid} is pending; only")
        assert client.post("/api/orders/o-nope/rerun", json={"step": "payment"}
                           ).status_code == 404
        bad = client.post(f"/api/orders/{oid}/rerun", json={"step": "payment", "new_keys": 1})
        assert bad.status_code == 422
        assert bad.get_json()["error"]["message"] == "new_keys must be true or false"
        assert client.post(f"/api/orders/{oid}/rerun", json={}).status_code == 422
        assert not [e for e in cluster.events() if e["type"] in ("operator_action",
                                                                 "order_retried")]


def test_an_order_replayed_as_new_runs_again_under_a_new_id(journal_db):
    charges: list = []
    cluster = Cluster(workers=1, app=shop(charges), journal=journal_at(journal_db), **FAST)
    with app_over(cluster) as app:
        client = app.test_client()
        oid = cluster.submit(ORDER, "checkout")
        completed(cluster, oid)
        replayed = client.post(f"/api/orders/{oid}/replay")
        assert replayed.status_code == 201
        copy = replayed.get_json()
        assert copy["id"] != oid and replayed.headers["Location"].endswith(copy["id"])
        assert (copy["data"], copy["workflow"], copy["version"]) == (
            cluster.get_order(oid)["data"], "checkout", "v1")
        completed(cluster, copy["id"])
        assert charges == [f"{oid}:payment", f"{copy['id']}:payment"]
        pinned = client.post(f"/api/orders/{oid}/replay", json={"pinned": True})
        assert pinned.status_code == 201 and pinned.get_json()["version"] == "v1"
        urgent = cluster.submit({**ORDER, "priority": 5}, "checkout")
        again = client.post(f"/api/orders/{urgent}/replay").get_json()
        assert again["priority"] == 5  # a copy keeps its place among orders
        audit = [e for e in cluster.events() if e["type"] == "operator_action"]
        assert {e["order_id"] for e in audit[:2]} == {oid, copy["id"]}
        assert audit[0]["message"].endswith(f"replayed order {oid} as new order {copy['id']} "
                                            "(on the current definition)")
        assert client.post("/api/orders/o-nope/replay").status_code == 404
        assert client.post(f"/api/orders/{oid}/replay", data="null",
                           content_type="application/json").status_code == 422


def test_new_keys_asked_before_a_restart_are_handed_after_it(journal_db):
    charges: list = []
    first = Cluster(workers=1, app=shop(charges), journal=journal_at(journal_db), **FAST)
    first.start()
    try:
        oid = first.submit(ORDER, "checkout")
        completed(first, oid)
    finally:
        first.stop()
    second = Cluster(workers=0, app=shop(charges), journal=journal_at(journal_db), **FAST)
    second.start()
    try:  # a finished order back from the journal, run again before any worker can take it
        assert second.rerun_order(oid, "payment", new_keys=True) == ["payment", "packing"]
    finally:
        second.stop()
    third = Cluster(workers=1, app=shop(charges), journal=journal_at(journal_db), **FAST)
    third.start()
    try:
        completed(third, oid)
        assert charges == [f"{oid}:payment", f"{oid}:payment:rerun-1"]
    finally:
        third.stop()
