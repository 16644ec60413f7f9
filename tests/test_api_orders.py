"""HTTP API for orders through the Flask test client: every route and every error path."""

from __future__ import annotations

import json

import pytest
from conftest import wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web import FAST, ORDER, app_over, fast_cluster

from scheduler import App, Cluster
from scheduler.engine import views


@pytest.fixture
def idle():
    """An app over a cluster that is not started: orders wait, nothing changes under a test."""
    with app_over(fast_cluster(), start=False) as app:
        yield app.test_client(), app.extensions["orderflow"].cluster


@pytest.fixture
def running():
    with app_over(fast_cluster(workers=2)) as app:
        yield app.test_client(), app.extensions["orderflow"].cluster


def error_of(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return body["error"]


def test_submitted_order_is_returned_with_its_tasks(idle):
    client, _ = idle
    response = client.post("/api/orders", json=ORDER)
    assert response.status_code == 201
    order = response.get_json()
    assert order["id"].startswith("o-") and order["status"] in ("pending", "in_progress")
    assert list(order["tasks"]) == ["payment", "packing", "shipping"]
    assert response.headers["Location"].endswith(f"/api/orders/{order['id']}")


def test_order_runs_to_completion_and_shows_its_events(running):
    client, cluster = running
    order_id = client.post("/api/orders", json=ORDER).get_json()["id"]
    assert cluster.wait_until_idle(10)
    detail = client.get(f"/api/orders/{order_id}").get_json()
    assert detail["status"] == "completed"
    assert all(task["status"] == "succeeded" and task["attempts"] == 1 and task["worker"]
               for task in detail["tasks"].values())
    types = [event["type"] for event in detail["events"]]
    assert types[0] == "order_submitted" and types[-1] == "order_completed"


def test_workflow_can_be_chosen(idle):
    client, _ = idle
    response = client.post("/api/orders", json={**ORDER, "workflow": "ecommerce_invoiced"})
    assert response.status_code == 201
    assert "invoice" in response.get_json()["tasks"]


def test_repeated_idempotency_key_returns_the_same_order(idle):
    client, cluster = idle
    first = client.post("/api/orders", json=ORDER, headers={"Idempotency-Key": "k-1"})
    again = client.post("/api/orders", json=ORDER, headers={"Idempotency-Key": "k-1"})
    other = client.post("/api/orders", json=ORDER, headers={"Idempotency-Key": "k-2"})
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert first.get_json()["id"] == again.get_json()["id"] != other.get_json()["id"]
    assert cluster.stats()["orders_total"] == 2


@pytest.mark.parametrize("key", ["", " ", "k" * 201])
def test_bad_idempotency_key_is_refused(idle, key):
    client, cluster = idle
    response = client.post("/api/orders", json=ORDER, headers={"Idempotency-Key": key})
    assert response.status_code == 422
    assert cluster.stats()["orders_total"] == 0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"items": ORDER["items"]}, "customer"),
        ({"customer": "ada"}, "items"),
        ({"customer": "ada", "items": []}, "items"),
        ({"customer": 5, "items": ORDER["items"]}, "customer"),
        ({"customer": "ada", "items": [{"sku": "A", "qty": 0, "price": 1}]}, "qty"),
        ({"customer": "ada", "items": [{"sku": "A", "qty": 1.5, "price": 1}]}, "qty"),
        ({"customer": "ada", "items": [{"sku": "A", "qty": True, "price": 1}]}, "qty"),
        ({"customer": "ada", "items": [{"sku": "A", "qty": 1, "price": -1}]}, "price"),
        ({"customer": "ada", "items": [{"sku": "A", "qty": 1, "price": "1"}]}, "price"),
        ({"customer": "ada", "items": [{"sku": "", "qty": 1, "price": 1}]}, "sku"),
        ({"customer": "ada", "items": ["A"]}, "items[0]"),
        ({**ORDER, "coupon": "X"}, "coupon"),
        ({**ORDER, "workflow": ["ecommerce"]}, "workflow"),
        ({**ORDER, "workflow": "nope"}, "nope"),
        ([ORDER], "object"),
        ("ada", "object"),
    ],
)
def test_invalid_order_is_refused_with_a_message_and_not_created(idle, body, fragment):
    client, cluster = idle
    response = client.post("/api/orders", json=body)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error" and fragment in error["message"]
    assert cluster.stats()["orders_total"] == 0


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        ('{"customer": ', "application/json", 400, "invalid_json"),
        ('{"customer": NaN}', "application/json", 400, "invalid_json"),
        (b"\xff\xfe{}", "application/json", 400, "invalid_json"),
        ("[" * 100_000 + "]" * 100_000, "application/json", 400, "invalid_json"),
        ("", "application/json", 400, "bad_request"),
        (json.dumps(ORDER), "text/plain", 415, "unsupported_media_type"),
        ("customer=ada", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ("x" * (1024 * 1024 + 1), "application/json", 413, "payload_too_large"),
    ],
)
def test_unreadable_body_gets_a_4xx_json_error(idle, data, content_type, status, code):
    client, cluster = idle
    response = client.post("/api/orders", data=data, content_type=content_type)
    assert response.status_code == status
    assert error_of(response)["code"] == code
    assert cluster.stats()["orders_total"] == 0


def test_bulk_submits_generated_orders(running):
    client, cluster = running
    response = client.post("/api/orders/bulk", json={"count": 25})
    assert response.status_code == 201
    ids = response.get_json()["ids"]
    assert len(set(ids)) == 25
    assert cluster.wait_until_idle(10)
    assert all(cluster.get_order(i)["status"] == "completed" for i in ids)


@pytest.mark.parametrize(
    "body",
    [{}, {"count": 0}, {"count": 10_001}, {"count": "5"}, {"count": True}, {"count": 2.5},
     {"count": 5, "workflow": "nope"}, {"count": 5, "extra": 1}],
)
def test_bad_bulk_request_creates_nothing(idle, body):
    client, cluster = idle
    response = client.post("/api/orders/bulk", json=body)
    assert response.status_code == 422, response.get_json()
    error_of(response)
    assert cluster.stats()["orders_total"] == 0


def test_listing_pages_through_every_order_once_newest_first(idle):
    client, _ = idle
    ids = client.post("/api/orders/bulk", json={"count": 12}).get_json()["ids"]
    seen, cursor = [], None
    while True:
        query = "/api/orders?limit=5" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(query).get_json()
        seen += [order["id"] for order in page["orders"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def test_listing_filters_by_status(running):
    client, cluster = running
    client.post("/api/orders/bulk", json={"count": 3})
    assert cluster.wait_until_idle(10)
    assert len(client.get("/api/orders?status=completed").get_json()["orders"]) == 3
    assert client.get("/api/orders?status=failed").get_json() == {"orders": [], "next_cursor": None}


@pytest.mark.parametrize(
    "query", ["status=done", "limit=0", "limit=501", "limit=ten", "cursor=-1", "cursor=abc"]
)
def test_bad_listing_parameters_get_400(idle, query):
    client, _ = idle
    response = client.get(f"/api/orders?{query}")
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_parameter"


@pytest.mark.parametrize("path", ["/api/orders/o-nope", "/api/orders/o-nope/cancel",
                                  "/api/orders/o-nope/retry"])
def test_unknown_order_is_404(idle, path):
    client, _ = idle
    response = client.get(path) if path.count("/") == 3 else client.post(path)
    assert response.status_code == 404
    assert error_of(response) == {"code": "not_found", "message": "unknown order 'o-nope'"}


def test_unfinished_order_can_be_cancelled_once(idle):
    client, _ = idle
    order_id = client.post("/api/orders", json=ORDER).get_json()["id"]
    response = client.post(f"/api/orders/{order_id}/cancel")
    assert response.status_code == 200
    assert response.get_json()["status"] == "cancelled"
    again = client.post(f"/api/orders/{order_id}/cancel")
    assert again.status_code == 409 and error_of(again)["code"] == "conflict"


def test_cancel_refuses_a_body_with_fields(idle):
    client, _ = idle
    order_id = client.post("/api/orders", json=ORDER).get_json()["id"]
    response = client.post(f"/api/orders/{order_id}/cancel", json={"force": True})
    assert response.status_code == 422
    assert client.get(f"/api/orders/{order_id}").get_json()["status"] != "cancelled"


def test_failed_order_is_retried_from_the_failed_step(running):
    client, cluster = running
    cluster.chaos.update(failure_rate=1.0)
    order_id = client.post("/api/orders", json=ORDER).get_json()["id"]
    assert cluster.wait_until_idle(10)
    assert client.get(f"/api/orders/{order_id}").get_json()["status"] == "failed"
    cluster.chaos.update(failure_rate=0.0)
    response = client.post(f"/api/orders/{order_id}/retry")
    assert response.status_code == 200
    assert cluster.wait_until_idle(10)
    assert client.get(f"/api/orders/{order_id}").get_json()["status"] == "completed"


def test_retry_of_an_order_that_did_not_fail_is_409(running):
    client, cluster = running
    order_id = client.post("/api/orders", json=ORDER).get_json()["id"]
    wait_for(lambda: cluster.get_order(order_id)["terminal"], 10)
    response = client.post(f"/api/orders/{order_id}/retry")
    assert response.status_code == 409
    assert "only a failed order" in error_of(response)["message"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
order_like = st.fixed_dictionaries(
    {"customer": json_values, "items": st.lists(st.dictionaries(
        st.sampled_from(["sku", "qty", "price", "x"]), json_values, max_size=4), max_size=3)},
    optional={"workflow": json_values},
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values | order_like)
def test_no_json_body_ever_gets_a_5xx(idle, body):
    client, cluster = idle
    before = cluster.stats()["orders_total"]
    response = client.post("/api/orders", json=body)
    assert response.status_code == 201 or 400 <= response.status_code < 500, response.get_json()
    if response.status_code != 201:
        assert cluster.stats()["orders_total"] == before



def test_orders_beyond_the_unfinished_cap_get_503_with_retry_after_and_change_nothing():
    with app_over(fast_cluster(max_unfinished_orders=5), start=False) as app:
        client, cluster = app.test_client(), app.extensions["orderflow"].cluster
        assert client.post("/api/orders/bulk", json={"count": 4}).status_code == 201
        assert client.post("/api/orders", json=ORDER).status_code == 201  # the fifth fits
        refused = client.post("/api/orders", json=ORDER)
        assert refused.status_code == 503 and refused.headers["Retry-After"].isdigit()
        assert error_of(refused)["code"] == "overloaded"
        assert client.post("/api/orders/bulk", json={"count": 1}).status_code == 503
        assert cluster.stats()["orders_total"] == 5


def test_a_bulk_that_does_not_fit_under_the_cap_makes_no_order_at_all():
    with app_over(fast_cluster(max_unfinished_orders=5), start=False) as app:
        client, cluster = app.test_client(), app.extensions["orderflow"].cluster
        assert client.post("/api/orders/bulk", json={"count": 3}).status_code == 201
        refused = client.post("/api/orders/bulk", json={"count": 3})  # 6 > 5
        assert refused.status_code == 503 and "3 more" in error_of(refused)["message"]
        assert cluster.stats()["orders_total"] == 3


def test_room_under_the_cap_returns_once_orders_finish():
    with app_over(fast_cluster(workers=2, max_unfinished_orders=3)) as app:
        client, cluster = app.test_client(), app.extensions["orderflow"].cluster
        assert client.post("/api/orders/bulk", json={"count": 3}).status_code == 201
        assert cluster.wait_until_idle(10)
        assert client.post("/api/orders/bulk", json={"count": 3}).status_code == 201


@pytest.mark.parametrize("priority", ["high", 101, -101, True, 1.5])
def test_a_bad_priority_is_refused_and_nothing_is_made(idle, priority):
    client, cluster = idle
    response = client.post("/api/orders", json={**ORDER, "priority": priority})
    assert response.status_code == 422 and "priority" in error_of(response)["message"]
    assert cluster.stats()["orders_total"] == 0


def test_an_order_keeps_its_priority(idle):
    client, _ = idle
    order = client.post("/api/orders", json={**ORDER, "priority": 7}).get_json()
    assert order["priority"] == 7
    assert client.get(f"/api/orders/{order['id']}").get_json()["priority"] == 7


# ---------------------------------------------------------------- search, bulk commands, audit


def audits(cluster, action: str | None = None) -> list[dict]:
    return [e for e in cluster.events(after=0) if e["type"] == "operator_action"
            and (action is None or e["action"] == action)]


class HandOnlyWorker:
    """A worker that runs nothing: it keeps what the cluster hands it, for a test to start
    and report by hand through the cluster's worker port."""

    kind, slots, steps, tags = "thread", 1, None, frozenset()

    def __init__(self):
        self.delivered = []

    def deliver(self, dispatch):
        self.delivered.append(dispatch)

    def start(self): ...
    def cancel(self, dispatch): ...
    def stop(self): ...
    def kill(self): ...

    def join(self, timeout):
        return True


def test_orders_can_be_searched_by_customer_workflow_error_and_time():
    # Submitted a second apart (on a clock of the test's own), so a bound to the millisecond
    # (as shown) falls between them.
    now = [1000.0]
    with app_over(fast_cluster(workers=0, clock=lambda: now[0]), start=False) as app:
        client, cluster = app.test_client(), app.extensions["orderflow"].cluster
        ids = {}
        for customer, workflow in (("Ada Lovelace", "ecommerce"),
                                   ("grace", "ecommerce_invoiced"),
                                   ("ada byron", "ecommerce_invoiced")):
            ids[customer] = client.post("/api/orders", json={
                **ORDER, "customer": customer, "workflow": workflow}).get_json()["id"]
            now[0] += 1.0

        def found(query: str) -> list[str]:
            response = client.get(f"/api/orders?{query}")
            assert response.status_code == 200, response.get_json()
            return [o["customer"] for o in response.get_json()["orders"]]

        assert found("customer=ADA") == ["ada byron", "Ada Lovelace"]
        assert found("customer=ada&workflow=ecommerce_invoiced") == ["ada byron"]
        assert found("customer=nobody") == []
        assert found("workflow=ecommerce_invoiced&status=pending") == ["ada byron", "grace"]
        middle = cluster.get_order(ids["grace"])["submitted_at"]
        assert found(f"since={middle}") == ["ada byron", "grace"]
        assert found(f"until={middle}") == ["Ada Lovelace"]
        # A step's last error: an order whose payment failed once and now waits to retry.
        worker = HandOnlyWorker()
        cluster.join_worker("w-1", worker)
        payment = worker.delivered[0]
        assert cluster.begin_task("w-1", payment) is not None
        cluster.report("w-1", payment, False, "Card DECLINED (100% of 1 tries)")
        failed = next(c for c, i in ids.items() if payment.task_id == f"{i}:payment")
        assert found("error=card declined") == [failed]
        assert found("error=100%25") == [failed]  # % is a character, not a wildcard
        assert found("error=1_") == []  # and so is _


@pytest.mark.parametrize("query", ["since=soon", "until=nan", "customer=" + "x" * 201])
def test_bad_search_parameters_get_400(idle, query):
    client, _ = idle
    response = client.get(f"/api/orders?{query}")
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_parameter"


def test_search_reaches_orders_only_the_journal_still_has_with_cursors(journal_db):
    from scheduler import Chaos, Cluster
    from scheduler.journal.location import open_journal, parse_location

    cluster = Cluster(workers=2, chaos=Chaos(seed=7), seed=7, finished_order_history=3,
                      journal=open_journal(parse_location(journal_db)),
                      heartbeat_interval=0.05, heartbeat_timeout=0.5)
    with app_over(cluster) as app:
        client = app.test_client()
        names = [f"ada {i}" if i % 2 else f"bob {i}" for i in range(10)]
        ids = [client.post("/api/orders", json={**ORDER, "customer": n}).get_json()["id"]
               for n in names]
        assert cluster.wait_until_idle(10)
        assert len(views.orders(cluster._core)) == 3  # the rest only in the journal
        seen, cursor = [], None
        while True:
            page = client.get("/api/orders?customer=ada&limit=2"
                              + (f"&cursor={cursor}" if cursor else "")).get_json()
            seen += [o["id"] for o in page["orders"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [i for i, n in zip(ids, names, strict=True) if n.startswith("ada")][::-1]
        every = client.get("/api/orders?status=completed&limit=500").get_json()
        assert [o["id"] for o in every["orders"]] == ids[::-1]
        assert all(o["tasks"]["payment"]["status"] == "succeeded" for o in every["orders"])


def test_many_failed_orders_are_retried_in_one_request_and_audited(running):
    client, cluster = running
    cluster.chaos.update(failure_rate=1.0)
    ids = client.post("/api/orders/bulk", json={"count": 4}).get_json()["ids"]
    assert cluster.wait_until_idle(10)
    unfinished = client.post("/api/orders", json=ORDER).get_json()["id"]
    cluster.chaos.update(failure_rate=0.0)
    response = client.post("/api/orders/retry", json={"ids": [*ids, unfinished, "o-nope"]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["retried"] == ids
    assert [s["id"] for s in body["skipped"]] == [unfinished, "o-nope"]
    assert "only a failed order" in body["skipped"][0]["reason"]
    assert cluster.wait_until_idle(10)
    assert {cluster.get_order(i)["status"] for i in ids} == {"completed"}
    [audit] = audits(cluster, "bulk_retry")
    assert audit["message"] == "127.0.0.1: retried 4 of 6 selected orders (2 skipped)"
    assert (audit["who"], audit["count"], audit["skipped"]) == ("127.0.0.1", 4, 2)


def test_many_unfinished_orders_are_cancelled_in_one_request(idle):
    client, cluster = idle
    ids = client.post("/api/orders/bulk", json={"count": 3}).get_json()["ids"]
    response = client.post("/api/orders/cancel", json={"ids": ids + ids[:1]})
    assert response.get_json() == {"cancelled": ids, "skipped": []}
    assert {cluster.get_order(i)["status"] for i in ids} == {"cancelled"}
    again = client.post("/api/orders/cancel", json={"ids": ids[:1]}).get_json()
    assert again["cancelled"] == [] and "cannot be cancelled" in again["skipped"][0]["reason"]


@pytest.mark.parametrize("body", [{}, {"ids": []}, {"ids": "o-1"}, {"ids": [1]},
                                  {"ids": [""]}, {"ids": ["o-1"], "all": True},
                                  {"ids": ["o-1"] * 10_001}])
def test_a_bad_bulk_command_changes_nothing(idle, body):
    client, cluster = idle
    order_id = client.post("/api/orders", json=ORDER).get_json()["id"]
    response = client.post("/api/orders/cancel", json=body)
    assert response.status_code == 422, response.get_json()
    assert cluster.get_order(order_id)["status"] != "cancelled"
    assert audits(cluster) == []


def test_cancel_and_retry_of_one_order_name_who_asked_in_its_timeline(running):
    client, cluster = running
    cluster.chaos.update(failure_rate=1.0)
    order_id = client.post("/api/orders", json=ORDER).get_json()["id"]
    assert cluster.wait_until_idle(10)
    cluster.chaos.update(failure_rate=0.0)
    client.post(f"/api/orders/{order_id}/retry")
    [audit] = audits(cluster, "retry")
    assert audit["message"] == f"127.0.0.1: retried order {order_id}"
    assert audit["order_id"] == order_id and audit["target"] == order_id
    events = client.get(f"/api/orders/{order_id}").get_json()["events"]
    assert audit["seq"] in [e["seq"] for e in events]
    refused = client.post(f"/api/orders/{order_id}/cancel")  # may be done already: 409
    assert len(audits(cluster, "cancel")) == (1 if refused.status_code == 200 else 0)


def test_a_token_holder_is_named_as_such_with_the_address():
    with app_over(fast_cluster(), {"ORDERFLOW_TOKEN": "t0k3n"}, start=False) as app:
        client = app.test_client()
        token_cluster = app.extensions["orderflow"].cluster
        order_id = client.post("/api/orders", json=ORDER,
                               headers={"Authorization": "Bearer t0k3n"}).get_json()["id"]
        client.post(f"/api/orders/{order_id}/cancel", headers={"Authorization": "Bearer t0k3n"})
        [audit] = audits(token_cluster, "cancel")
        assert audit["who"] == "token holder at 127.0.0.1"


def render_invoice(ctx) -> dict:
    raise RuntimeError("invoice PDF renderer crashed")


async def render_invoice_async(ctx) -> dict:
    raise RuntimeError("invoice PDF renderer crashed")


@pytest.mark.parametrize("handler", [render_invoice, render_invoice_async],
                         ids=["thread", "async"])
def test_an_orders_view_shows_each_failed_attempts_error_with_its_traceback(handler, caplog):
    shop = App("shop")
    shop.step(name="payment")(lambda ctx: {"charge_id": "ch_1"})
    shop.step(name="invoice", retries=1, backoff=(0.001, 0.001))(handler)
    shop.workflow("checkout", ["payment", "invoice"])
    caplog.set_level("INFO", logger="orderflow")
    with app_over(Cluster(app=shop, workers=1, **FAST)) as web:
        client, cluster = web.test_client(), web.extensions["orderflow"].cluster
        order_id = client.post("/api/orders", json={**ORDER, "workflow": "checkout"}).json["id"]
        assert cluster.wait_until_idle(10)
        order = client.get(f"/api/orders/{order_id}").get_json()
    assert order["status"] == "failed"
    assert order["tasks"]["payment"]["result"] == {"charge_id": "ch_1"}
    failed = [e for e in order["events"] if e["type"] == "task_failed"]
    assert [e["attempt"] for e in failed] == [1, 2]
    line = handler.__code__.co_firstlineno + 1
    for event in failed:
        assert event["error"] == "RuntimeError: invoice PDF renderer crashed"
        trace = event["traceback"].splitlines()
        assert trace[0] == "Traceback (most recent call last):"
        assert trace[1].endswith(f'test_api_orders.py", line {line}, in {handler.__name__}')
        assert trace[-1] == "RuntimeError: invoice PDF renderer crashed"
    # The log's line for each failure is one line, naming where it was raised.
    logged = [r.getMessage() for r in caplog.records
              if r.levelname == "WARNING" and "failed on" in r.getMessage()]
    assert len(logged) == 2
    assert all(m.endswith(f"(raised at test_api_orders.py:{line} in {handler.__name__})")
               and "\n" not in m for m in logged)


def test_orders_can_be_searched_by_sku_and_by_text_in_any_field(idle):
    client, cluster = idle
    ids = {}
    for customer, sku, workflow in (("Ada", "BOOK-001", "ecommerce"),
                                    ("Grace", "MUG-7", "ecommerce_invoiced"),
                                    ("Linus", "50%_off'--", "ecommerce")):
        ids[customer] = client.post("/api/orders", json={
            "customer": customer, "workflow": workflow,
            "items": [{"sku": sku, "qty": 1, "price": 2.0}]}).get_json()["id"]

    def found(query: str) -> list[str]:
        response = client.get(f"/api/orders?{query}")
        assert response.status_code == 200, response.get_json()
        return [o["customer"] for o in response.get_json()["orders"]]

    assert found("sku=book") == ["Ada"] and found("sku=mug-7") == ["Grace"]
    assert found("sku=%25_OFF'--") == ["Linus"] and found("sku=%25") == ["Linus"]
    assert found("sku=ada") == []  # a customer is not a SKU
    assert found("text=grace") == ["Grace"]  # customer
    assert found("text=mug") == ["Grace"]  # SKU
    assert found("text=invoiced") == ["Grace"]  # workflow
    assert found(f"text={ids['Ada'][2:]}") == ["Ada"]  # a part of the id
    assert found("text=nobody") == []
    assert found("text=o&workflow=ecommerce_invoiced") == ["Grace"]  # with the other filters
    assert client.get("/api/orders?sku=" + "x" * 33).status_code == 400
