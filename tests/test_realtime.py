"""Socket.IO: the snapshot/events/workers contract, commands with acknowledgements, a live
server with a real python-socketio client, and a client that never reads."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
import socketio
import websocket
from conftest import wait_for
from web import LIVE_CONFIG, ORDER, LiveServer, app_over, fast_cluster

SNAPSHOT_KEYS = {"stats", "workers", "ring", "orders", "events", "last_seq", "chaos", "config",
                 "limits", "workflows", "workflow_details", "server", "app", "incidents"}
TERMINAL_EVENTS = {"order_completed", "order_failed"}


# ---------------------------------------------------------------- Socket.IO test client


@pytest.fixture
def connected():
    with app_over(fast_cluster(workers=2)) as app:
        # Through Flask's test client, so the connection has an address (127.0.0.1).
        client = app.extensions["orderflow"].socketio.test_client(
            app, flask_test_client=app.test_client())
        yield app, client
        if client.is_connected():
            client.disconnect()


def received_until(client, predicate, timeout: float = 5.0) -> list[dict]:
    """Everything the test client got, polling until `predicate(messages)` holds."""
    messages: list[dict] = []

    def done() -> bool:
        messages.extend(client.get_received())
        return predicate(messages)

    wait_for(done, timeout, message="expected Socket.IO messages")
    return messages


def named(messages: list[dict], name: str) -> list:
    return [m["args"][0] for m in messages if m["name"] == name]


def test_connecting_client_gets_a_snapshot_of_the_documented_shape(connected):
    _, client = connected
    messages = received_until(client, lambda ms: named(ms, "snapshot"))
    snapshot = named(messages, "snapshot")[0]
    assert set(snapshot) == SNAPSHOT_KEYS
    assert [w["id"] for w in snapshot["workers"]] == ["w-1", "w-2"]
    assert snapshot["last_seq"] == snapshot["events"][-1]["seq"]
    assert set(snapshot["config"]) == {"heartbeat_interval", "heartbeat_timeout", "max_retries",
                                       "workers_interval"}
    assert snapshot["chaos"] == {"failure_rate": 0.0, "latency_ms": [0.0, 0.0], "hang_rate": 0.0,
                                 "stuck_rate": 0.0}


def test_submitted_orders_come_back_as_batched_events(connected):
    app, client = connected
    received_until(client, lambda ms: named(ms, "snapshot"))
    ack = client.emit("submit_order", ORDER, callback=True)
    order_id = ack["order"]["id"]
    app.test_client().post("/api/orders/bulk", json={"count": 20})
    messages = received_until(client, lambda ms: any(
        e["type"] == "order_completed" and e["order_id"] == order_id
        for batch in named(ms, "events") for e in batch))
    batches = named(messages, "events")
    assert max(len(batch) for batch in batches) > 1  # several events per message
    seqs = [e["seq"] for batch in batches for e in batch]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))


def test_workers_message_keeps_heartbeat_ages_live(connected):
    _, client = connected
    message = named(received_until(client, lambda ms: named(ms, "workers")), "workers")[0]
    assert set(message) == {"workers", "stats", "chaos"}
    assert all("heartbeat_age" in w for w in message["workers"])


def test_worker_commands_are_acknowledged(connected):
    app, client = connected
    assert client.emit("add_worker", {"count": 2}, callback=True) == {"ids": ["w-3", "w-4"]}
    assert client.emit("add_worker", callback=True) == {"ids": ["w-5"]}
    assert client.emit("drain_worker", "w-3", callback=True)["action"] == "drain"
    assert client.emit("kill_worker", {"id": "w-4"}, callback=True)["action"] == "kill"
    cluster = app.extensions["orderflow"].cluster
    wait_for(lambda: {w["id"]: w["status"] for w in cluster.workers()}["w-4"] == "dead", 5)
    # Each command is audited, naming the socket's client as HTTP names a request's.
    audited = [(e["action"], e["target"], e["who"]) for e in cluster.events(after=0)
               if e["type"] == "operator_action"]
    assert [a[:2] for a in audited] == [("add", "w-3, w-4"), ("add", "w-5"), ("drain", "w-3"),
                                        ("kill", "w-4")]
    assert {a[2] for a in audited} == {"127.0.0.1"}


@pytest.mark.parametrize(
    ("event", "args", "status", "code"),
    [
        ("submit_order", ({"customer": "ada"},), 422, "validation_error"),
        ("submit_order", (), 422, "validation_error"),
        ("submit_order", ({**ORDER, "workflow": "nope"},), 422, "validation_error"),
        ("kill_worker", ("w-99",), 404, "not_found"),
        ("kill_worker", ({"id": 5},), 422, "validation_error"),
        ("kill_worker", ({"id": "w-1", "force": True},), 422, "validation_error"),
        ("drain_worker", (None,), 422, "validation_error"),
        ("add_worker", ({"count": 99},), 422, "validation_error"),
        ("add_worker", ({"count": 1}, "extra"), 422, "validation_error"),
    ],
)
def test_refused_commands_acknowledge_the_http_error_shape(connected, event, args, status, code):
    app, client = connected
    ack = client.emit(event, *args, callback=True)
    assert ack["status"] == status and ack["error"]["code"] == code and ack["error"]["message"]
    cluster = app.extensions["orderflow"].cluster
    assert cluster.stats()["orders_total"] == 0 and len(cluster.workers()) == 2


def test_drain_twice_is_a_conflict(connected):
    _, client = connected
    client.emit("drain_worker", "w-1", callback=True)
    assert client.emit("drain_worker", "w-1", callback=True)["status"] == 409


def test_resync_sends_a_fresh_snapshot(connected):
    _, client = connected
    received_until(client, lambda ms: named(ms, "snapshot"))
    assert client.emit("resync", callback=True) == {"ok": True}
    received_until(client, lambda ms: named(ms, "snapshot"))


# ---------------------------------------------------------------- live server, real clients


class Listener:
    """A python-socketio client that records what it receives (handlers run on many
    threads, so everything is kept under a lock and ordered by seq when read)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.snapshots: list[dict] = []
        self.batches: list[list[dict]] = []
        self.workers_messages = 0
        self.client = socketio.Client(reconnection=False)
        self.client.on("snapshot", self._on_snapshot)
        self.client.on("events", self._on_events)
        self.client.on("workers", self._on_workers)

    def _on_snapshot(self, data):
        with self.lock:
            self.snapshots.append(data)

    def _on_events(self, data):
        with self.lock:
            self.batches.append(data)

    def _on_workers(self, data):
        with self.lock:
            self.workers_messages += 1

    def events(self) -> list[dict]:
        with self.lock:
            return sorted((e for batch in self.batches for e in batch), key=lambda e: e["seq"])

    def types(self) -> set[str]:
        return {e["type"] for e in self.events()}


@pytest.mark.slow
def test_live_client_follows_200_orders_and_a_worker_killed_through_the_api():
    cluster = fast_cluster(workers=4, latency_ms=(2.0, 6.0))
    with app_over(cluster, LIVE_CONFIG) as app, LiveServer(app) as server:
        listener = Listener()
        listener.client.connect(server.url, transports=["websocket"], wait_timeout=5)
        try:
            wait_for(lambda: listener.snapshots, 5, message="snapshot")
            snapshot = listener.snapshots[0]
            assert set(snapshot) == SNAPSHOT_KEYS
            http = requests.Session()
            ids = http.post(f"{server.url}/api/orders/bulk", json={"count": 200},
                            timeout=10).json()["ids"]
            workers = http.get(f"{server.url}/api/workers", timeout=5).json()["workers"]
            victim = max(workers, key=lambda w: w["busy"] + w["queued"])["id"]
            assert http.post(f"{server.url}/api/workers/{victim}/kill",
                             timeout=5).status_code == 202

            def finished() -> set[str]:
                return {e["order_id"] for e in listener.events() if e["type"] in TERMINAL_EVENTS}

            wait_for(lambda: finished() >= set(ids) and {"worker_dead", "task_reassigned"}
                     <= listener.types(), 60, message="all orders finished, death seen")
            # The workers message comes every half second, whatever the events.
            wait_for(lambda: listener.workers_messages >= 1, 30, message="a workers message")
            http.close()
        finally:
            # From the server side: a client-side disconnect waits 3 s on Werkzeug.
            app.extensions["orderflow"].disconnect_clients()
            # Generous: the client's reader thread may wait long on a busy machine.
            wait_for(lambda: not listener.client.connected, 30, message="client disconnected")
        events = listener.events()
        dead = [e for e in events if e["type"] == "worker_dead"]
        assert [e["worker_id"] for e in dead] == [victim]
        moved = [e for e in events if e["type"] == "task_reassigned"]
        assert moved and all(e["from_worker"] == victim for e in moved)
        # Nothing was lost or repeated: seqs after the snapshot are contiguous.
        seqs = [e["seq"] for e in events if e["seq"] > snapshot["last_seq"]]
        assert seqs == list(range(snapshot["last_seq"] + 1, seqs[-1] + 1))
        # Batched: far fewer messages than events.
        assert len(listener.batches) * 5 < len(events)
        assert listener.workers_messages >= 1
        assert all(cluster.get_order(i)["status"] in ("completed", "failed") for i in ids)


@pytest.mark.slow
def test_socketio_accepts_only_same_origin_browsers_by_default():
    with app_over(fast_cluster(), LIVE_CONFIG, start=False) as app, LiveServer(app) as server:
        endpoint = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        with pytest.raises(websocket.WebSocketBadStatusException):
            websocket.create_connection(endpoint, origin="http://evil.example", timeout=5)
        same = websocket.create_connection(endpoint, origin=server.url, timeout=5)
        assert same.recv().startswith("0")  # Engine.IO open: accepted
        same.shutdown()


def run_orders(cluster, count: int) -> float:
    """Seconds for `count` orders to finish."""
    started = time.perf_counter()
    for _ in range(count):
        cluster.submit(ORDER)
    assert cluster.wait_until_idle(30)
    return time.perf_counter() - started


@pytest.mark.slow
def test_client_that_never_reads_does_not_slow_the_cluster():
    cluster = fast_cluster(workers=4, latency_ms=(1.0, 3.0))
    # A long ping timeout keeps the stuck client connected for the whole test.
    config = {**LIVE_CONFIG, "PING_TIMEOUT": 10.0, "STREAM_BACKLOG_LIMIT": 5}
    with app_over(cluster, config) as app, LiveServer(app, send_buffer=4096) as server:
        stream = app.extensions["orderflow"].stream
        baseline = run_orders(cluster, 300)
        # A raw WebSocket that speaks just enough Engine.IO/Socket.IO to be a client,
        # then never reads again; its tiny receive buffer fills at once.
        stuck = websocket.create_connection(
            server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
            sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),), timeout=5)
        try:
            assert stuck.recv().startswith("0")  # Engine.IO open
            stuck.send("40")  # Socket.IO connect to "/"
            wait_for(lambda: sum(stream.clients.counts().values()) == 1, 5, message="connected")
            with_stuck_client = run_orders(cluster, 300)
            wait_for(lambda: stream.clients.fell_behind >= 1, 10, message="client found behind")
            assert stream.clients.counts() == {"live": 0, "resyncing": 1}
            [sock] = app.extensions["orderflow"].socketio.server.eio.sockets.values()
            # Bounded: what was queued before it was found behind, plus a ping or two.
            assert sock.queue.qsize() <= config["STREAM_BACKLOG_LIMIT"] + 3
        finally:
            stuck.shutdown()  # abrupt close, so the server's blocked writer fails at once
    print(f"300 orders: {baseline:.3f}s alone, {with_stuck_client:.3f}s with a stuck client")
    assert with_stuck_client < 2 * baseline + 0.5, (baseline, with_stuck_client)
