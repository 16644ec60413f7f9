"""What the server records itself, with text no journal can hold in it, is written escaped
and the journal keeps committing: a step whose error quotes a gateway's response body with a
NUL (PostgreSQL's text refuses it: every group commit failed, for good) or a lone surrogate
(neither driver can encode it), and a remote worker registering with them in its name and
tags. On SQLite and on PostgreSQL."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from conftest import wait_for
from web import FAST, ORDER, app_over

from scheduler import App, Cluster, TaskError
from scheduler.chaos.invariants import load_journal
from scheduler.journal.location import open_journal, parse_location
from scheduler.remote.protocol import NAMESPACE

# What a careless gateway answers, quoted in an error: a NUL, a lone surrogate, or both.
BODIES = {"nul": ("<html>502\x00\x00</html>", "<html>502\\x00\\x00</html>"),
          "surrogate": ("<html>502 \ud800</html>", "<html>502 \\ud800</html>"),
          "both": ("\x00 \udfff", "\\x00 \\udfff")}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def db(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "recorded.db")
    return request.getfixturevalue("pg_url")


def gateway_app(body: str) -> App:
    """payment fails its first attempt quoting `body` (and succeeds with it in its
    result); `declined` always fails quoting it."""
    app = App("gateway")

    @app.step(retries=1, backoff=(0.001, 0.001))
    def payment(ctx):
        if ctx.attempt == 1:
            raise TaskError(f"gateway answered 502: {body}")
        return {"charge": "ch_1", "raw": body}

    @app.step(retries=1, backoff=(0.001, 0.001))
    def declined(ctx):
        raise TaskError(f"gateway answered 402: {body}")

    @app.step(retries=0)
    def crashed(ctx):
        raise RuntimeError(f"renderer crashed on {body}")

    @app.step()
    def shipping(ctx):
        return None

    app.workflow("checkout", ["payment", "shipping"])
    app.workflow("refused", ["declined", "shipping"])
    app.workflow("crashing", ["crashed", "shipping"])
    return app


@contextmanager
def served(db: str, app: App | None = None, config: dict | None = None, **settings):
    journal = open_journal(parse_location(db))
    cluster = Cluster(app=app, journal=journal, **{"workers": 2, **FAST, **settings})
    with app_over(cluster, config) as web:
        yield web, cluster


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_a_step_error_quoting_a_body_with_a_nul_is_recorded_escaped_and_nothing_wedges(
        db, kind):
    body, escaped = BODIES[kind]
    with served(db, gateway_app(body)) as (web, cluster):
        client = web.test_client()
        paid = client.post("/api/orders", json={**ORDER, "workflow": "checkout"})
        refused = client.post("/api/orders", json={**ORDER, "workflow": "refused"})
        assert paid.status_code == refused.status_code == 201
        assert cluster.wait_until_idle(20)
        # Each order ends as it should: the journal took every commit.
        assert client.get("/healthz").status_code == 200
        journal = cluster.journal

        def committed(order_id: str, status: str) -> dict | None:
            found = journal.find_order(order_id)  # read from the database
            return found if found["status"] == status else None

        done = wait_for(lambda: committed(paid.json["id"], "completed"), 10)
        assert done["tasks"]["payment"]["result"] == {"charge": "ch_1", "raw": escaped}
        failed = wait_for(lambda: committed(refused.json["id"], "failed"), 10)
        assert failed["tasks"]["declined"]["error"].endswith(f"gateway answered 402: {escaped}")
        story = journal.story(paid.json["id"])
        (first,) = [e for e in story if e["type"] == "task_failed"]
        assert first["error"] == f"gateway answered 502: {escaped}"
        assert escaped in first["message"]
        # And it goes on accepting orders.
        assert client.post("/api/orders", json={**ORDER, "workflow": "checkout"}).status_code == 201


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_a_traceback_quoting_a_nul_is_journaled_escaped_and_read_back(db, kind):
    body, escaped = BODIES[kind]
    with served(db, gateway_app(body)) as (web, cluster):
        client = web.test_client()
        order_id = client.post("/api/orders", json={**ORDER, "workflow": "crashing"}).json["id"]
        assert cluster.wait_until_idle(20)
        journal = cluster.journal
        wait_for(lambda: journal.find_order(order_id)["status"] == "failed", 10)
        (failed,) = [e for e in journal.story(order_id) if e["type"] == "task_failed"]
    assert failed["error"] == f"RuntimeError: renderer crashed on {escaped}"
    trace = failed["traceback"]
    assert trace.startswith("Traceback (most recent call last):") and "in crashed" in trace
    assert trace.endswith(f"RuntimeError: renderer crashed on {escaped}")
    # And a server started on the journal afterwards shows it in the order's view.
    with served(db, gateway_app(body), workers=0) as (web, _):
        shown = web.test_client().get(f"/api/orders/{order_id}").json
    (event,) = [e for e in shown["events"] if e["type"] == "task_failed"]
    assert event["traceback"] == trace


def test_a_remote_worker_with_a_nul_in_its_name_and_tags_is_recorded_escaped(db):
    config = {"ORDERFLOW_TOKEN": "t"}
    with served(db, config=config, workers=0, heartbeat_interval=10.0,
                heartbeat_timeout=30.0) as (web, cluster):
        socketio = web.extensions["orderflow"].socketio
        worker = socketio.test_client(web, namespace=NAMESPACE, auth={"token": "t"})
        try:
            welcome = worker.emit("register", {
                "session": "s\x00", "name": "evil\x00worker", "host": "h\ud800", "pid": 7,
                "slots": 1, "tags": ["pay\x00ments", "\udc80"], "steps": ["payment"],
            }, namespace=NAMESPACE, callback=True)
            worker_id = welcome["worker_id"]
            assert worker_id is not None
            # A result for a task id no task has is rejected and recorded, escaped too.
            answer = worker.emit("result", {"worker_id": worker_id, "task_id": "o\x00:x",
                                            "lease": 1, "ok": False, "value": "e"},
                                 namespace=NAMESPACE, callback=True)
            assert answer == {"ok": True}
            (shown,) = web.test_client().get(
                "/api/workers", headers={"Authorization": "Bearer t"}).json["workers"]
            assert shown["name"] == "evil\\x00worker" and shown["host"] == "h\\ud800"
            assert shown["tags"] == sorted(["pay\\x00ments", "\\udc80"])
            # The journal keeps committing: an order is acknowledged, the events are there.
            created = web.test_client().post("/api/orders", json=ORDER,
                                             headers={"Authorization": "Bearer t"})
            assert created.status_code == 201
        finally:
            worker.disconnect(namespace=NAMESPACE)
        events = wait_for(lambda: [e for e in load_journal(db).events
                                   if e["type"] in ("worker_added", "result_rejected")], 10)
        added = next(e for e in events if e["type"] == "worker_added")
        assert added["tags"] == sorted(["pay\\x00ments", "\\udc80"])
        assert "pay\\x00ments" in added["message"]
        rejected = next(e for e in events if e["type"] == "result_rejected")
        assert "o\\x00:x" in rejected["message"]


def test_the_shop_examples_error_quoting_a_gateway_body_is_recorded_escaped(monkeypatch):
    """examples/shop/app.py quotes `response.text[:200]` in its errors, as real handlers do:
    whatever the gateway answered, what is recorded is storable text."""
    import requests

    from examples.shop import app as shop
    from scheduler.engine.text import storable
    from scheduler.steps.run import check_outcome

    def send(ctx, path, body):
        response = requests.Response()
        response.status_code, response.encoding = 502, "utf-8"
        response._content = b"<h1>Bad\x00Gateway</h1>\xed\xa0\x80"
        return response

    monkeypatch.setattr(shop, "_send", send)

    class Ctx:
        idempotency_key = "o-1:payment"

        def sleep(self, seconds: float) -> bool:
            return True

    with pytest.raises(TaskError) as raised:
        shop._post(Ctx(), "/charges", {})
    assert "\x00" in str(raised.value)  # the handler quotes it as it came
    ok, error = check_outcome(False, str(raised.value), 65536, 2000)
    assert not ok and storable(error)
    assert error.startswith("/charges answered 502: <h1>Bad\\x00Gateway</h1>")
