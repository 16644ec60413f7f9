"""Connection caps that keep operators in (issue 19, finding 8), on live servers: a flood
spread over many addresses is shed, not obeyed, so a token holder's API call and dashboard
get in; requests without the token cannot take the threads kept for token holders; workers
and dashboards have Socket.IO places of their own."""

from __future__ import annotations

import json
import select
import socket
from pathlib import Path

import pytest
import requests
import socketio
import websocket
from conftest import wait_for
from remote import AUTH, TOKEN, remote_cluster

from scheduler.chaos.serve_process import ServeProcess

pytestmark = pytest.mark.slow

HANDSHAKE = "/socket.io/?EIO=4&transport=websocket"
# Small pools, so a test can fill them: 4 HTTP threads (1 kept for token holders), two
# Socket.IO places of each kind.
SMALL = ("--threads", "4", "--max-worker-sockets", "2", "--max-dashboard-sockets", "2")


def quiet(tmp_path: Path) -> tuple[str, ...]:
    return ("--no-persist", "--log-file", str(tmp_path / "orderflow.log"), "--failure-rate",
            "0", "--latency-ms", "0,0", "--workers", "1", "--token", TOKEN)


def flood(port: int, addresses: int, per_address: int) -> list[socket.socket]:
    """Connections from 127.0.0.2, .3, ... (all of 127/8 is loopback on Linux): half of
    them send nothing, half one header line."""
    opened = []
    for i in range(addresses):
        for j in range(per_address):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                            source_address=(f"127.0.0.{2 + i}", 0))
            if j % 2:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ")
            opened.append(sock)
    return opened


def answered(socks: list[socket.socket]) -> list[bytes]:
    """What the server sent to those it already answered or closed."""
    readable, _, _ = select.select(socks, [], [], 0)
    return [sock.recv(4096) for sock in readable]


def dashboard_connects(url: str) -> bool:
    client = socketio.Client(reconnection=False)
    try:
        client.connect(f"{url}?token={TOKEN}", transports=["websocket"],
                       auth={"token": TOKEN}, wait_timeout=20)
        return client.connected
    finally:
        client.disconnect()


def test_a_flood_from_many_addresses_is_shed_so_a_token_holder_and_a_dashboard_get_in(
        tmp_path: Path):
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "w") as stderr, ServeProcess(
            *quiet(tmp_path), *SMALL, "--max-connections", "40",
            "--max-connections-per-address", "10", "--header-timeout", "120",
            stderr=stderr) as server:
        held = flood(server.port, addresses=10, per_address=4)  # 40: the server's cap
        try:
            # The kernel hands connections to the server in the order they came, so these
            # find the cap full. Before, they were answered 503 at once, token or not.
            stats = requests.get(f"{server.url}/api/stats", headers=AUTH, timeout=20)
            assert stats.status_code == 200, stats.text
            assert dashboard_connects(server.url)
            # Each shed one idle flood connection to make room, and said why.
            shed = answered(held)
            assert 1 <= len(shed) <= 4, shed
            for answer in shed:
                assert answer.startswith(b"HTTP/1.1 503 "), answer
                assert b'"code": "server_busy"' in answer
            # The rest of the flood is still held: shed, not refused wholesale.
            assert len(held) - len(shed) >= 36
        finally:
            for sock in held:
                sock.close()
        server.stop()
    lines = [line for line in stderr_path.read_text().splitlines() if "shed" in line]
    assert lines, "the shed connections were not logged"
    assert "the server held its maximum of 40 connections; it was idle" in lines[0]
    assert len(lines) == 1, "one line per reason and 10 s, with a count"


def slow_bodies(port: int, count: int) -> list[socket.socket]:
    """Requests without the token whose head is whole and whose body never comes: each holds
    a thread after its answer (gunicorn reads the body it announced, for up to 5 s)."""
    opened = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Length: 100000\r\n\r\n")
        opened.append(sock)
    return opened


def test_requests_without_the_token_cannot_take_the_threads_kept_for_token_holders(
        tmp_path: Path):
    # 4 HTTP threads + 4 Socket.IO places: a pool of 8; requests without the token run on
    # at most 3 of them at once.
    with ServeProcess(*quiet(tmp_path), *SMALL) as server:
        held = slow_bodies(server.port, 10)  # more than the whole pool
        seen: set[socket.socket] = set()

        def answered_so_far() -> int:
            readable, _, _ = select.select([s for s in held if s not in seen], [], [], 0)
            for sock in readable:
                assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
                seen.add(sock)
            return len(seen)

        try:
            wait_for(lambda: answered_so_far() >= 3, 20, message="three slow requests")
            stats = requests.get(f"{server.url}/api/stats", headers=AUTH, timeout=20)
            assert stats.status_code == 200, stats.text
            # Before, the first eight took the whole pool at once, and the token holder
            # waited for one of them to give up its body. Now three run (a second three
            # only if that call took longer than their 5 s): the rest wait, with no thread.
            assert answered_so_far() <= 6
        finally:
            for sock in held:
                sock.close()


def raw_socket(url: str, worker: bool) -> websocket.WebSocket:
    """An Engine.IO WebSocket with the token: a worker's handshake or a dashboard's."""
    header = [f"Authorization: Bearer {TOKEN}"] + (["X-Orderflow-Role: worker"] if worker
                                                    else [])
    ws = websocket.create_connection(url.replace("http", "ws") + HANDSHAKE, timeout=10,
                                     header=header)
    assert ws.recv().startswith("0")
    return ws


def refusal(url: str, worker: bool) -> dict:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        raw_socket(url, worker)
    assert refused.value.status_code == 503
    return json.loads(refused.value.resp_body)["error"]


def test_workers_and_dashboards_have_socket_places_of_their_own(tmp_path: Path):
    config = {"WORKER_SOCKET_LIMIT": 2, "DASHBOARD_SOCKET_LIMIT": 1}
    with remote_cluster(tmp_path, config) as remote:
        dashboard = raw_socket(remote.url, worker=False)  # the one dashboard place
        held = [dashboard]
        try:
            assert "maximum of 1 dashboard connections" in refusal(remote.url, worker=False)[
                "message"]
            # `orderflow worker` says it is one: it joins while the dashboards' place is held.
            remote.joined(remote.start_worker())
            held.append(raw_socket(remote.url, worker=True))
            assert "maximum of 2 worker connections" in refusal(remote.url, worker=True)[
                "message"]
            # A dashboard leaving frees a dashboard's place, not a worker's.
            held.pop(0).close()
            wait_for(lambda: _opens(remote.url, held), 10, message="a dashboard's place")
            assert "maximum of 2 worker connections" in refusal(remote.url, worker=True)[
                "message"]
        finally:
            for ws in held:
                ws.close()


def _opens(url: str, held: list) -> bool:
    try:
        held.append(raw_socket(url, worker=False))
        return True
    except websocket.WebSocketBadStatusException:
        return False
