"""Frame limits on live Socket.IO connections (dashboard/frames.py): a heartbeat flood is
dropped and its connection cut with one log line while another worker goes on; other frames
beyond their rate wait their turn and none is lost."""

from __future__ import annotations

import json
import logging

import pytest
import socketio
import websocket
from conftest import wait_for
from hung import FakeClock
from web import LIVE_CONFIG, LiveServer, app_over, fast_cluster

from scheduler.remote.protocol import NAMESPACE

pytestmark = pytest.mark.slow

HANDSHAKE = "/socket.io/?EIO=4&transport=websocket"
# Heartbeats every 0.2 s: five a second, so twenty a second are allowed (bursts of 20).
CLUSTER = {"heartbeat_interval": 0.2, "heartbeat_timeout": 5.0}


def registration(name: str) -> dict:
    return {"session": f"session-{name}", "name": name, "host": "test", "pid": 4242,
            "slots": 1, "resume": None, "join": True, "spawn_id": None, "steps": [],
            "tags": []}


def raw_worker(server: LiveServer, name: str) -> tuple[websocket.WebSocket, str]:
    """A WebSocket registered on "/workers" by hand (as a flooding client would)."""
    ws = websocket.create_connection(server.url.replace("http", "ws") + HANDSHAKE, timeout=10)
    assert ws.recv().startswith("0")
    ws.send(f"40{NAMESPACE},{{}}")
    while not ws.recv().startswith(f"40{NAMESPACE},"):
        pass
    ws.send(f'42{NAMESPACE},1{json.dumps(["register", registration(name)])}')
    while not (answer := ws.recv()).startswith(f"43{NAMESPACE},1"):
        pass
    return ws, json.loads(answer[len(f"43{NAMESPACE},1"):])[0]["worker_id"]


def answers_until_closed(ws: websocket.WebSocket) -> int:
    """Acknowledgements received until the server closes the connection."""
    answered = 0
    while True:
        try:
            message = ws.recv()
        except (websocket.WebSocketException, OSError):
            return answered
        if message == "2":
            ws.send("3")
        elif message.startswith(f"43{NAMESPACE},"):
            answered += 1


def frames(texts: list[str]) -> bytes:
    return b"".join(websocket.ABNF.create_frame(t, websocket.ABNF.OPCODE_TEXT).format()
                    for t in texts)


def honest_worker(server: LiveServer) -> socketio.Client:
    client = socketio.Client(reconnection=False)
    client.connect(server.url, namespaces=[NAMESPACE], transports=["websocket"])
    return client


def test_a_heartbeat_flood_is_dropped_and_cut_with_one_line_while_another_worker_goes_on(
        caplog):
    config = {**LIVE_CONFIG, "SOCKET_CUT_PAUSE": 0.2}
    with app_over(fast_cluster(**CLUSTER), config) as app, LiveServer(app) as server:
        cluster = app.extensions["orderflow"].cluster
        honest = honest_worker(server)
        try:
            welcome = honest.call("register", registration("honest"), namespace=NAMESPACE,
                                  timeout=10)
            ws, flooder = raw_worker(server, "flooder")
            flood = [f'42{NAMESPACE},{2 + i}["heartbeat",{{"worker_id":"{flooder}"}}]'
                     for i in range(3000)]
            with caplog.at_level(logging.WARNING, logger="orderflow.gate"):
                ws.sock.sendall(frames(flood))
                answered = answers_until_closed(ws)
            ws.close()
            # Before the limits, every one of the 3,000 was answered (each a thread, a
            # lock and an answer). Now a burst's worth, and the connection is cut.
            assert answered <= 40, answered
            stats = app.extensions["orderflow_frames"].stats.view()
            assert stats["connections_cut"] == 1
            assert stats["heartbeats_dropped"] >= 32
            cut = [r.getMessage() for r in caplog.records if "cut a Socket.IO" in r.getMessage()]
            assert cut == [f"cut a Socket.IO connection from 127.0.0.1: worker {flooder} sent "
                           f"heartbeats far more often than 20 a second "
                           f"({stats['heartbeats_dropped']} dropped)"]
            scraped = app.test_client().get("/metrics").get_data(as_text=True)
            assert "orderflow_socket_connections_cut_total 1.0" in scraped
            # The other worker's heartbeats are answered as before.
            beat = honest.call("heartbeat", {"worker_id": welcome["worker_id"]},
                               namespace=NAMESPACE, timeout=10)
            assert beat["alive"] is True
            alive = {w["id"]: w["status"] for w in cluster.workers()}
            assert alive[welcome["worker_id"]] == "alive"
            assert not [e for e in cluster.events(after=0) if e["type"] == "worker_dead"
                        and e["worker_id"] == welcome["worker_id"]]
        finally:
            honest.disconnect()


def test_frames_beyond_their_rate_wait_their_turn_and_none_is_lost():
    # Liveness is not what this test is about: with LIVE_CONFIG's 2 s ping timeout, a busy
    # machine answering 40 resyncs at once sometimes read the pong too late, and the
    # connection was closed with half of them unanswered.
    config = {**LIVE_CONFIG, "PING_TIMEOUT": 30.0, "SOCKET_FRAMES_PER_SECOND": 20.0,
              "SOCKET_FRAME_BURST": 5}
    with app_over(fast_cluster(**CLUSTER), config) as app, LiveServer(app) as server:
        guard = app.extensions["orderflow_frames"]
        # The limiter's time passes by exactly the waits it asks for, and only then: on the
        # real clock, a reading thread that a busy machine wakes up 50 ms late finds the
        # next token there and fewer frames wait; and a pong queued behind 36 frames held
        # for longer than 1/20 s each misses the ping timeout.
        clock, waits = FakeClock(), []

        def pause(closed, seconds: float) -> bool:
            waits.append(seconds)
            clock.advance(seconds)
            return closed.is_set()

        guard.clock, guard.pause = clock, pause
        ws = websocket.create_connection(server.url.replace("http", "ws") + HANDSHAKE,
                                         timeout=10)
        pongs = 0
        try:
            assert ws.recv().startswith("0")
            ws.send("40")
            # 40 `resync` requests at once, each with an acknowledgement id.
            ws.sock.sendall(frames([f'42{i}["resync"]' for i in range(1, 41)]))
            acks: set[int] = set()

            def all_answered() -> bool:
                nonlocal pongs
                message = ws.recv()
                if message == "2":
                    ws.send("3")
                    pongs += 1
                elif message.startswith("43"):
                    acks.add(int(message[2:message.index("[")]))
                return len(acks) == 40

            wait_for(all_answered, 30, interval=0, message="every resync answered")
            assert acks == set(range(1, 41))
            # The CONNECT and four requests were the burst of 5; the other 36 waited their
            # turn, one every 1/20 s (and so did any pong sent meanwhile, once read).
            stats = guard.stats.view()
            assert 36 <= stats["frames_delayed"] <= 36 + pongs, (stats, pongs)
            held = list(waits)
            assert held == pytest.approx([1 / 20] * len(held))
            assert stats["connections_cut"] == 0 and stats["heartbeats_dropped"] == 0
        finally:
            ws.close()


def test_heartbeats_are_answered_on_their_connections_thread_not_one_started_per_message():
    with app_over(fast_cluster(**CLUSTER), LIVE_CONFIG) as app, LiveServer(app) as server:
        sio_server = app.extensions["orderflow"].socketio.server
        started = []
        start = sio_server.start_background_task

        def counted(target, *args, **kwargs):
            started.append(getattr(target, "__name__", repr(target)))
            return start(target, *args, **kwargs)

        sio_server.start_background_task = counted
        ws, worker_id = raw_worker(server, "steady")
        try:
            before = len(started)
            beats = [f'42{NAMESPACE},{100 + i}["heartbeat",{{"worker_id":"{worker_id}"}}]'
                     for i in range(10)]
            ws.sock.sendall(frames(beats))
            answers = []
            while len(answers) < 10:
                message = ws.recv()
                if message.startswith(f"43{NAMESPACE},1"):
                    answers.append(json.loads(message[message.index("["):])[0])
            assert all(a["alive"] is True for a in answers)
            # Before, each was handed to a thread started for it (python-socketio's way).
            assert len(started) == before
            # Any other event still is (which is what the count above would have seen).
            ws.send(f'42{NAMESPACE},200["begin",{{"worker_id":"{worker_id}",'
                    f'"task_id":"none:payment","lease":1}}]')
            while not ws.recv().startswith(f"43{NAMESPACE},200"):
                pass
            assert len(started) == before + 1
        finally:
            ws.close()
