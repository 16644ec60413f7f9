"""Token access: required off loopback; Bearer for HTTP, the auth payload for Socket.IO."""

from __future__ import annotations

import pytest
from web import ORDER, app_over, fast_cluster

from dashboard.settings import ServeSettings, check_settings, is_loopback
from scheduler import ConfigError

TOKEN = "s3cret-token"


@pytest.fixture
def guarded():
    with app_over(fast_cluster(), {"ORDERFLOW_TOKEN": TOKEN}, start=False) as app:
        yield app


def bearer(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/orders", ORDER),
        ("post", "/api/orders/bulk", {"count": 1}),
        ("post", "/api/workers", {"count": 1}),
        ("post", "/api/workers/w-1/kill", None),
        ("post", "/api/workers/w-1/drain", None),
        ("put", "/api/chaos", {"failure_rate": 0.5}),
        ("get", "/api/orders", None),
        ("get", "/api/stats", None),
        ("get", "/api/workflows", None),
        ("get", "/api/events", None),
        ("get", "/metrics", None),
    ],
)
def test_calls_without_the_token_get_401_and_change_nothing(guarded, method, path, body):
    client = guarded.test_client()
    cluster = guarded.extensions["orderflow"].cluster
    for headers in ({}, bearer("wrong"), {"Authorization": TOKEN}, {"Authorization": "Basic x"}):
        response = getattr(client, method)(path, json=body, headers=headers)
        assert response.status_code == 401, (path, headers)
        assert response.get_json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert cluster.stats()["orders_total"] == 0
    assert cluster.chaos.view()["failure_rate"] == 0.0


def test_calls_with_the_token_succeed(guarded):
    client = guarded.test_client()
    assert client.post("/api/orders", json=ORDER, headers=bearer()).status_code == 201
    assert client.get("/api/orders", headers=bearer()).status_code == 200
    assert client.put("/api/chaos", json={"failure_rate": 0.5}, headers=bearer()).status_code == 200


def test_health_page_and_api_description_stay_open(guarded):
    client = guarded.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/").status_code == 200
    doc = client.get("/api/openapi.json").get_json()
    assert doc["security"] == [{"bearer": []}]


def test_reads_can_be_left_open_by_config():
    config = {"ORDERFLOW_TOKEN": TOKEN, "TOKEN_FOR_READS": False}
    with app_over(fast_cluster(), config, start=False) as app:
        client = app.test_client()
        assert client.get("/api/orders").status_code == 200
        assert client.post("/api/orders", json=ORDER).status_code == 401


def test_socketio_connection_needs_the_token(guarded):
    socketio = guarded.extensions["orderflow"].socketio
    assert not socketio.test_client(guarded).is_connected()
    assert not socketio.test_client(guarded, auth={"token": "wrong"}).is_connected()
    assert not socketio.test_client(guarded, auth={"token": 5}).is_connected()
    client = socketio.test_client(guarded, auth={"token": TOKEN})
    assert client.is_connected()
    client.disconnect()


def test_the_pages_token_probe_is_answered_without_an_error(guarded, caplog):
    """After a failed connection the page asks with a HEAD whether its token is refused;
    any other answer than 401 must be a success (a 4xx/5xx is an error on its console)."""
    client = guarded.test_client()
    probe = "/socket.io/?EIO=4&transport=polling"
    assert client.head(probe).status_code == 401
    assert client.head(f"{probe}&token=wrong").status_code == 401
    assert client.head(f"{probe}&token={TOKEN}").status_code == 204
    assert not [r for r in caplog.records if "not supported" in r.getMessage()]
    with app_over(fast_cluster(), start=False) as open_app:
        assert open_app.test_client().head(probe).status_code == 204


def test_without_a_token_everything_is_open():
    with app_over(fast_cluster(), start=False) as app:
        assert app.test_client().post("/api/orders", json=ORDER).status_code == 201
        client = app.extensions["orderflow"].socketio.test_client(app)
        assert client.is_connected()
        client.disconnect()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_need_no_token(host):
    assert is_loopback(host)
    check_settings(ServeSettings(host=host))


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.test"])
def test_other_hosts_require_a_token(host):
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match="--token"):
        check_settings(ServeSettings(host=host))
    check_settings(ServeSettings(host=host, token=TOKEN))
