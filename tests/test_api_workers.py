"""HTTP API for workers: list, add, kill (detected by heartbeat), drain, and their errors."""

from __future__ import annotations

import pytest
from conftest import wait_for
from web import ORDER, STEADY, app_over, fast_cluster


@pytest.fixture
def running():
    with app_over(fast_cluster(workers=2)) as app:
        yield app.test_client(), app.extensions["orderflow"].cluster


def statuses(client) -> dict[str, str]:
    return {w["id"]: w["status"] for w in client.get("/api/workers").get_json()["workers"]}


def test_workers_are_listed_with_their_state(running):
    client, _ = running
    workers = client.get("/api/workers").get_json()["workers"]
    assert [w["id"] for w in workers] == ["w-1", "w-2"]
    assert {"status", "heartbeat_age", "current_task", "queued", "share"} <= set(workers[0])


@pytest.fixture
def steady():
    # Heartbeats no busy machine can miss. At the fast ones (suspect after 0.1 s of silence,
    # dead after 0.3 s), a worker thread starved for a moment on a loaded machine was no
    # longer alive, or declared dead and took no work. Joining is what is tested here; the
    # kill tests below are about heartbeats.
    with app_over(fast_cluster(workers=2, **STEADY)) as app:
        yield app.test_client(), app.extensions["orderflow"].cluster


def test_added_workers_join_and_take_work(steady):
    client, cluster = steady
    response = client.post("/api/workers", json={"count": 3})
    assert response.status_code == 201
    assert response.get_json() == {"ids": ["w-3", "w-4", "w-5"]}
    assert client.post("/api/workers").get_json() == {"ids": ["w-6"]}  # count defaults to 1
    assert statuses(client) == {f"w-{i}": "alive" for i in range(1, 7)}
    client.post("/api/orders/bulk", json={"count": 60})
    assert cluster.wait_until_idle(60)
    done = {w["id"]: w["tasks_done"] for w in client.get("/api/workers").get_json()["workers"]}
    assert sum(done.values()) == 180 and done["w-6"] > 0


@pytest.mark.parametrize(
    "body", [{"count": 0}, {"count": 33}, {"count": "2"}, {"count": None}, {"size": 2}, [1]]
)
def test_bad_add_request_adds_nobody(running, body):
    client, _ = running
    response = client.post("/api/workers", json=body)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_error"
    assert len(statuses(client)) == 2


def test_killed_worker_is_declared_dead_by_the_monitor_and_its_work_moves(running):
    client, cluster = running
    ids = client.post("/api/orders/bulk", json={"count": 30}).get_json()["ids"]
    response = client.post("/api/workers/w-1/kill")
    assert response.status_code == 202
    assert response.get_json()["action"] == "kill"
    wait_for(lambda: statuses(client)["w-1"] == "dead", 10, message="w-1 declared dead")
    assert cluster.wait_until_idle(10)
    assert all(cluster.get_order(i)["status"] == "completed" for i in ids)
    again = client.post("/api/workers/w-1/kill")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "conflict"


def test_drained_worker_finishes_and_leaves(running):
    client, cluster = running
    order_id = client.post("/api/orders", json=ORDER).get_json()["id"]
    response = client.post("/api/workers/w-2/drain")
    assert response.status_code == 202
    wait_for(lambda: statuses(client)["w-2"] == "removed", 10, message="w-2 removed")
    assert client.post("/api/workers/w-2/drain").status_code == 409
    assert cluster.wait_until_idle(10)
    assert cluster.get_order(order_id)["status"] == "completed"


@pytest.mark.parametrize("action", ["kill", "drain"])
def test_unknown_worker_is_404(running, action):
    client, _ = running
    response = client.post(f"/api/workers/w-99/{action}")
    assert response.status_code == 404
    assert response.get_json()["error"] == {"code": "not_found", "message": "unknown worker 'w-99'"}


@pytest.mark.parametrize("action", ["kill", "drain"])
def test_worker_command_with_a_bad_body_changes_nothing(steady, action):
    client, _ = steady
    assert client.post(f"/api/workers/w-1/{action}", json={"now": True}).status_code == 422
    assert client.post(f"/api/workers/w-1/{action}", data="x",
                       content_type="text/plain").status_code == 415
    assert statuses(client)["w-1"] == "alive"


def actions_of(cluster) -> list[tuple[str, str, str | None]]:
    return [(e["action"], e["message"], e["worker_id"]) for e in cluster.events(after=0)
            if e["type"] == "operator_action"]


def test_kill_drain_and_add_are_audited_with_who_and_what(running):
    client, cluster = running
    client.post("/api/workers")
    client.post("/api/workers/w-1/kill")
    client.post("/api/workers/w-2/drain")
    client.post("/api/workers/w-2/drain")  # refused (409): nothing done, nothing recorded
    assert actions_of(cluster) == [
        ("add", "127.0.0.1: added worker w-3", "w-3"),
        ("kill", "127.0.0.1: killed worker w-1 (thread)", "w-1"),
        ("drain", "127.0.0.1: drained worker w-2", "w-2"),
    ]
