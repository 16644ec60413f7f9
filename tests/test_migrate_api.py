"""Moving orders to another definition through the API, on either journal (issue 23 item 4):
the issue's scenario, where a deploy replaced `checkout` with `checkout2` (a fraud check
first) and the operator moves the old version's stranded orders instead of keeping an old
worker; the move is audited, journaled, and holds across a restart."""

from __future__ import annotations

from conftest import wait_for
from test_deploys import FAST, ORDER, SHOP_V1, SHOP_V2
from test_store import journal_at
from web import app_over

from scheduler import Cluster
from scheduler.runtime.worker import ThreadWorker

MOVE = {"from": "checkout@v1", "to": "checkout2"}


def paid_orders(db: str, count: int) -> list[str]:
    """`count` orders of SHOP_V1 whose payment succeeded, journaled at `db`; the rest of
    them waits for a worker nobody runs any more."""
    v1 = Cluster(workers=0, app=SHOP_V1, journal=journal_at(db), **FAST).start()
    try:
        ids = [v1.submit(ORDER, workflow="checkout") for _ in range(count)]
        payer = ThreadWorker("payer", v1, {"payment": SHOP_V1.handlers["payment"]},
                             FAST["heartbeat_interval"], 1, definitions=SHOP_V1.definitions)
        v1.join_worker("payer", payer)
        wait_for(lambda: all(v1.get_order(i)["tasks"]["payment"]["status"] == "succeeded"
                             for i in ids), message="the payments succeeded")
    finally:
        v1.stop()
    return ids


def test_an_operator_moves_the_stranded_orders_of_the_old_version(journal_db):
    ids = paid_orders(journal_db, 3)
    v2 = Cluster(workers=0, app=SHOP_V2, journal=journal_at(journal_db), **FAST)
    with app_over(v2) as app:
        client = app.test_client()
        assert v2.stats()["stranded"] == {"checkout@v1": 3}
        dry = client.post("/api/definitions/migrate", json={**MOVE, "dry_run": True})
        assert dry.status_code == 200
        body = dry.get_json()
        assert body["count"] == 3 and body["dry_run"] is True
        assert body["orders"][0] == {"order_id": ids[0], "kept": ["payment"],
                                     "skipped": ["fraud"], "dropped": [],
                                     "to_run": ["packing", "shipping"]}
        assert v2.get_order(ids[0])["version"] == "v1"  # a dry run changes nothing
        assert not [e for e in v2.events() if e["type"] == "operator_action"]
        moved = client.post("/api/definitions/migrate", json=MOVE)
        assert moved.status_code == 200 and moved.get_json()["count"] == 3
        order = v2.get_order(ids[0])
        assert (order["workflow"], order["version"]) == ("checkout2", "v2")
        assert order["tasks"]["fraud"]["status"] == "skipped"
        assert v2.stats()["tasks"]["skipped"] == 3 and v2.stats()["stranded"] == {}
        (action,) = [e for e in v2.events() if e["type"] == "operator_action"]
        assert action["action"] == "migrate" and action["target"] == "3 orders"
        assert action["message"].endswith(
            "moved 3 unfinished orders from checkout@v1 to checkout2 (3 steps skipped, "
            "0 dropped)")
        story = [e["type"] for e in client.get(f"/api/orders/{ids[0]}").get_json()["events"]]
        assert "order_migrated" in story and "task_skipped" in story
    # After a restart the orders run the new definition, from where they were moved.
    again = Cluster(workers=1, app=SHOP_V2, journal=journal_at(journal_db), **FAST).start()
    try:
        wait_for(lambda: all(again.get_order(i)["status"] == "completed" for i in ids),
                 message="the moved orders completed")
        tasks = again.get_order(ids[0])["tasks"]
        assert {s: t["status"] for s, t in tasks.items()} == {
            "fraud": "skipped", "payment": "succeeded", "packing": "succeeded",
            "shipping": "succeeded"}
        assert tasks["payment"]["result"] == {"ran": "payment@v1"}
        assert tasks["shipping"]["result"] == {"ran": "shipping@v2"}
        assert again.stats()["stranded"] == {}
    finally:
        again.stop()


def test_a_refused_or_unknown_move_is_a_4xx_that_changes_nothing(tmp_path):
    ids = paid_orders(str(tmp_path / "of.db"), 1)
    v2 = Cluster(workers=0, app=SHOP_V2, journal=journal_at(str(tmp_path / "of.db")), **FAST)
    with app_over(v2) as app:
        client = app.test_client()
        unknown = client.post("/api/definitions/migrate", json={"from": "checkout@v9",
                                                                "to": "checkout2"})
        assert unknown.status_code == 404
        assert "no workflow definition 'checkout@v9'" in unknown.get_json()["error"]["message"]
        same = client.post("/api/definitions/migrate", json={"from": "checkout2",
                                                             "to": "checkout2@v2"})
        assert same.status_code == 409 and same.get_json()["error"]["code"] == "conflict"
        bad = client.post("/api/definitions/migrate", json={**MOVE, "dry_run": "yes"})
        assert bad.status_code == 422
        assert bad.get_json()["error"]["message"] == "dry_run must be true or false"
        missing = client.post("/api/definitions/migrate", json={**MOVE, "orders": ["o-nope"]})
        assert missing.status_code == 404
        assert v2.get_order(ids[0])["version"] == "v1"
        assert not [e for e in v2.events() if e["type"] in ("operator_action",
                                                            "order_migrated")]
