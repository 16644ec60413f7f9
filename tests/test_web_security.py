"""Web-layer security and robustness, from a review: cross-site commands, DNS rebinding, a
token that is valid JSON but not UTF-8, a number too large for a float, and commands on orders
only the journal still has. Every helper stops what it starts."""

from __future__ import annotations

import logging

import pytest
import websocket
from web import FAST, LIVE_CONFIG, ORDER, STEADY, LiveServer, app_over, fast_cluster

from scheduler import Chaos, Cluster
from scheduler.engine import views
from scheduler.journal.sqlite import SQLiteJournal

TOKEN = "s3cret-token"
HUGE_INT = "1" + "0" * 400  # valid JSON; Python's json turns it into an int, not a float


# ----------------------------------------------------------------- 5xx from bad input


def test_chaos_latency_with_a_huge_integer_is_a_4xx_not_a_500():
    """PUT /api/chaos {"latency_ms": [0, 10**400]} is valid JSON whose number overflows a
    float: it must be refused as out of range (422), never answered 500."""
    with app_over(fast_cluster(), start=False) as app:
        cluster = app.extensions["orderflow"].cluster
        before = cluster.chaos.view()
        for body in (f'{{"latency_ms": [0, {HUGE_INT}]}}',
                     f'{{"failure_rate": 0.5, "latency_ms": [{HUGE_INT}, {HUGE_INT}]}}'):
            response = app.test_client().put("/api/chaos", data=body,
                                              content_type="application/json")
            assert response.status_code == 422, (body[:40], response.status_code,
                                                 response.get_json())
        assert cluster.chaos.view() == before


@pytest.mark.parametrize("namespace", ["/", "/workers"])
def test_socketio_token_with_a_lone_surrogate_is_refused_not_an_exception(namespace):
    """auth={"token": "\\ud800"} is valid JSON; token_matches() calls presented.encode()
    (dashboard/auth.py:26), which raises UnicodeEncodeError inside the connect handler.
    python-socketio then neither accepts nor refuses: the connection hangs in
    pending_connect forever (a per-attempt leak any unauthenticated client can trigger)."""
    with app_over(fast_cluster(), {"ORDERFLOW_TOKEN": TOKEN}, start=False) as app:
        socketio = app.extensions["orderflow"].socketio
        client = socketio.test_client(app, namespace=namespace, auth={"token": "\ud800"})
        assert not client.is_connected(namespace)
        assert socketio.server.manager.pending_connect.get(namespace, []) == []


@pytest.mark.slow
@pytest.mark.parametrize("query", ["", "&token=%ED%A0%80", "&token=wrong"])
def test_a_handshake_without_the_token_is_refused_before_the_upgrade(query, caplog):
    """A real WebSocket handshake with no token, a lone surrogate or a wrong one: refused
    with 401 JSON before the upgrade (so it never holds a thread), and no traceback."""
    caplog.set_level(logging.ERROR)
    config = {**LIVE_CONFIG, "ORDERFLOW_TOKEN": TOKEN}
    with app_over(fast_cluster(), config, start=False) as app, LiveServer(app) as server:
        endpoint = (server.url.replace("http", "ws")
                    + "/socket.io/?EIO=4&transport=websocket" + query)
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(endpoint, origin=server.url, timeout=3)
        assert refused.value.status_code == 401
        assert b'"code": "unauthorized"' in refused.value.resp_body
        assert app.extensions["orderflow"].socketio.server.eio.sockets == {}
    assert not [r for r in caplog.records if r.exc_info], "traceback logged"


# ----------------------------------------------------------------- same-origin protection


EVIL = {"Origin": "http://evil.example"}


def test_cross_site_simple_post_cannot_add_or_kill_workers():
    """Without a token (the loopback default) every command that takes an optional body
    accepts an empty, content-type-less POST (parsing.json_body(required=False) returns {}
    before the Content-Type check). That is a CORS "simple request": any web page the user
    visits can kill/drain/add workers and cancel/retry orders with <form method=post> or
    fetch(..., {mode: "no-cors"}). The Socket.IO side checks Origin; the HTTP API does not."""
    # Heartbeats no busy machine can miss: "alive" below means "not killed", never "a beat
    # was late" (at the fast ones a loaded machine showed it "suspect").
    with app_over(fast_cluster(workers=1, **STEADY)) as app:
        cluster = app.extensions["orderflow"].cluster
        client = app.test_client()
        added = client.post("/api/workers", headers=EVIL, data="", content_type="text/plain")
        killed = client.post("/api/workers/w-1/kill", headers=EVIL)
        assert (added.status_code, killed.status_code) == (403, 403), (
            added.status_code, killed.status_code)
        assert len(cluster.workers()) == 1
        assert cluster.workers()[0]["status"] == "alive"


def test_cross_site_simple_post_cannot_cancel_an_order():
    with app_over(fast_cluster(workers=0), start=False) as app:
        cluster = app.extensions["orderflow"].cluster
        order_id = cluster.submit(ORDER)  # no workers: it stays pending
        response = app.test_client().post(f"/api/orders/{order_id}/cancel", headers=EVIL)
        assert response.status_code == 403, response.status_code
        assert cluster.get_order(order_id)["status"] == "pending"


def test_dns_rebinding_host_is_refused_when_no_token_protects_the_api():
    """With no token the only protection is that the server listens on loopback. A DNS
    rebinding page (evil.example resolving to 127.0.0.1) is same-origin with itself, so
    both the HTTP API and Engine.IO's same-origin check (which compares Origin with the
    Host header) accept it. Nothing validates the Host header."""
    with app_over(fast_cluster(), start=False) as app:
        client = app.test_client()
        response = client.get("/api/orders", base_url="http://evil.example:5000")
        assert response.status_code in (400, 403, 421), response.status_code


# ----------------------------------------------------------------- rejected request changes state


def test_a_refused_cancel_of_a_forgotten_order_leaves_the_listing_as_it_was(tmp_path):
    """POST /api/orders/<id>/cancel on a finished order that only the journal still has
    answers 409 and changes nothing: the order is not brought back into memory, so the
    listing (newest first) and paging by its cursor stay as they were."""
    cluster = Cluster(workers=2, chaos=Chaos(seed=7), seed=7, finished_order_history=2,
                      journal=SQLiteJournal(str(tmp_path / "j.db")), **FAST)
    with app_over(cluster) as app:
        client = app.test_client()
        ids = []
        for _ in range(4):  # one at a time, so they finish in the order they were submitted
            ids.append(client.post("/api/orders", json=ORDER).get_json()["id"])
            assert cluster.wait_until_idle(30)
        # The 2 newest are in memory, the 2 oldest only in the journal: listed all the same.
        assert set(views.orders(cluster._core)) == set(ids[2:])
        before = client.get("/api/orders?limit=10").get_json()
        assert [o["id"] for o in before["orders"]] == ids[::-1]
        assert client.post(f"/api/orders/{ids[0]}/cancel").status_code == 409
        assert ids[0] not in views.orders(cluster._core)  # not brought back into memory
        after = client.get("/api/orders?limit=10").get_json()
        assert [o["id"] for o in after["orders"]] == [o["id"] for o in before["orders"]], (
            "a refused cancel changed what GET /api/orders returns",
            [(o["number"], o["id"]) for o in after["orders"]])
