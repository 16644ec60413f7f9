"""Denial of service without a token, on the real server (`orderflow serve`, gunicorn):
Socket.IO connections are capped and refused clearly, a token-less handshake is refused
before the upgrade, partial requests wait without a thread and are cut after the header
timeout, a chunked body over the limit is a 413, a request line over the limit a 414 (the
longest query the API documents passes), and malformed frames log one line each."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
import requests
import websocket
from conftest import wait_for

from scheduler.chaos.serve_process import ServeProcess

pytestmark = pytest.mark.slow

TOKEN = "dos-token"
def quiet(tmp_path: Path) -> tuple[str, ...]:
    """A server without a journal, its log file in the test's own folder (never the
    repository's logs/)."""
    return ("--no-persist", "--log-file", str(tmp_path / "orderflow.log"), "--failure-rate",
            "0", "--latency-ms", "0,0", "--workers", "1")
HANDSHAKE = "/socket.io/?EIO=4&transport=websocket"


def ws_url(server: ServeProcess) -> str:
    return server.url.replace("http", "ws") + HANDSHAKE


def open_engineio(server: ServeProcess, **options) -> websocket.WebSocket:
    """A WebSocket past the Engine.IO open packet (it never sends a Socket.IO CONNECT)."""
    ws = websocket.create_connection(ws_url(server), timeout=5, **options)
    assert ws.recv().startswith("0")
    return ws


def healthz_answers(server: ServeProcess) -> bool:
    return requests.get(f"{server.url}/healthz", timeout=1).status_code == 200


def refusal(error: websocket.WebSocketBadStatusException) -> dict:
    return json.loads(error.resp_body)["error"]


def test_sockets_beyond_the_per_address_cap_are_refused_while_healthz_answers(tmp_path: Path):
    # The defaults: 32 HTTP threads, 32 Socket.IO connections per address. The sockets
    # never send a Socket.IO CONNECT and nothing answers their pings.
    with ServeProcess(*quiet(tmp_path)) as server:
        held = [open_engineio(server) for _ in range(32)]
        try:
            with pytest.raises(websocket.WebSocketBadStatusException) as refused:
                websocket.create_connection(ws_url(server), timeout=5)
            assert refused.value.status_code == 429
            error = refusal(refused.value)
            assert error["code"] == "too_many_connections"
            assert "127.0.0.1" in error["message"] and "at most 32" in error["message"]
            # The sockets hold threads of their own: the HTTP threads are free.
            assert healthz_answers(server)
            assert requests.get(f"{server.url}/api/stats", timeout=1).ok
        finally:
            for ws in held:
                ws.close()
        # A closed socket gives its place back.
        wait_for(lambda: _upgrades(server), 10, message="a socket once others closed")


def _upgrades(server: ServeProcess) -> bool:
    try:
        open_engineio(server).close()
        return True
    except websocket.WebSocketBadStatusException:
        return False


def test_a_handshake_without_the_token_is_refused_before_the_upgrade(tmp_path: Path):
    with ServeProcess(*quiet(tmp_path), "--token", TOKEN) as server:
        # More than the server has threads (32) and socket places: each one is answered
        # 401 at once, and none keeps a place or a thread.
        for query in ["", f"&token=not-{TOKEN}"] * 20:
            with pytest.raises(websocket.WebSocketBadStatusException) as refused:
                websocket.create_connection(ws_url(server) + query, timeout=5)
            assert refused.value.status_code == 401
            assert refusal(refused.value)["code"] == "unauthorized"
        assert healthz_answers(server)
        # The token in a header (python clients) or the query (browsers) is let through.
        open_engineio(server, header=[f"Authorization: Bearer {TOKEN}"]).close()
        ws = websocket.create_connection(ws_url(server) + f"&token={TOKEN}", timeout=5)
        assert ws.recv().startswith("0")
        ws.close()


def partial_requests(server: ServeProcess, count: int) -> list[socket.socket]:
    """Connections that each sent one header line and will send nothing more."""
    opened = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(f"GET /healthz?n={i} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ".encode())
        opened.append(sock)
    return opened


def test_partial_requests_hold_no_thread(tmp_path: Path):
    with ServeProcess(*quiet(tmp_path)) as server:
        partial = partial_requests(server, 40)  # more than the 32 HTTP threads
        try:
            assert healthz_answers(server)
            assert requests.get(f"{server.url}/", timeout=1).ok
        finally:
            for sock in partial:
                sock.close()


def test_a_partial_request_behind_a_whole_one_holds_no_thread_either(tmp_path: Path):
    """Pipelined: the second request's head arrives with the first and is incomplete."""
    with ServeProcess(*quiet(tmp_path), "--threads", "2", "--max-worker-sockets", "2",
                      "--max-dashboard-sockets", "2") as server:
        opened = []
        try:
            for _ in range(10):  # more than the 6 threads of the pool
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                             b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ")
                opened.append(sock)
            for sock in opened:  # each first request is answered ...
                assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
            assert healthz_answers(server)  # ... and no thread waits on a second one
        finally:
            for sock in opened:
                sock.close()


def test_a_partial_request_is_cut_after_the_header_timeout(tmp_path: Path):
    with ServeProcess(*quiet(tmp_path), "--header-timeout", "1") as server:
        partial = partial_requests(server, 3)
        try:
            # Each is answered 408 and closed once the timeout passes (recv waits for it).
            for sock in partial:
                answer = _read_all(sock)
                assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
                assert b'"code": "request_timeout"' in answer
        finally:
            for sock in partial:
                sock.close()


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_a_body_over_the_limit_is_a_413_chunked_or_not(tmp_path: Path):
    too_big = 1024 * 1024 + 10
    with ServeProcess(*quiet(tmp_path)) as server:
        url = f"{server.url}/api/orders"
        headers = {"Content-Type": "application/json"}

        def chunks():
            yield b'{"customer": "'
            for _ in range(too_big // 65536 + 1):
                yield b"x" * 65536
            yield b'"}'

        chunked = requests.post(url, data=chunks(), headers=headers, timeout=10)
        assert chunked.request.headers.get("Transfer-Encoding") == "chunked"
        sized = requests.post(url, data=b"x" * too_big, headers=headers, timeout=10)
        for response in (chunked, sized):
            assert response.status_code == 413, response.text[:200]
            assert response.json()["error"]["code"] == "payload_too_large"
        # Just under the limit, chunked: parsed, not cut (a 422 for the missing items).
        small = requests.post(url, data=iter([b'{"customer": "a"}']), headers=headers,
                              timeout=10)
        assert small.status_code == 422


def test_a_request_line_over_the_limit_is_the_documented_414_and_every_documented_one_passes(
        tmp_path: Path):
    with ServeProcess(*quiet(tmp_path)) as server, requests.Session() as session:
        url = f"{server.url}/api/orders"
        # The longest search the document allows: each text filter at its 200 characters,
        # each a 4-byte character (12 bytes encoded); gunicorn's own limit was 4094 bytes.
        longest = "\U0001f600" * 200
        search = {"customer": longest, "workflow": longest, "error": longest,
                  "status": "in_progress", "since": 1e10, "until": 1e10, "limit": 500,
                  "cursor": 2**62}
        answered = session.get(url, params=search, timeout=10)
        assert answered.status_code == 200, answered.text[:200]
        assert len(answered.request.path_url) > 7000
        # Longer than any documented request: the API's 414 in its error shape, on the
        # search's kept-alive connection, then on a new one.
        for _ in range(2):
            refused = session.get(url, params={"customer": "x" * 9000}, timeout=10)
            assert refused.status_code == 414
            assert refused.json()["error"]["code"] == "uri_too_long"
        document = requests.get(f"{server.url}/api/openapi.json", timeout=10).json()
        assert "414" in document["paths"]["/api/orders"]["get"]["responses"]


# A text frame that is no Engine.IO packet, Socket.IO packets that do not decode, binary
# junk; on "/" and on "/workers".
BAD_FRAMES = ["x", "", "4", "4{bad", "42[bad json", "42/workers,[bad", "40/workers,{bad",
              "49", "4\x00\xff", b"\x00\x01\xff", b"", "42" + "[" * 5000, '42["x"',
              '45-["a"]', '451-["a",{"_placeholder":true,"num":9}]', "42/workers,\n[1]"]
LOG_LINE = re.compile(r"^\[?\d{4}-\d\d-\d\d")


def test_malformed_frames_log_one_line_each_and_no_traceback(tmp_path: Path):
    log_path = tmp_path / "stderr.txt"
    with open(log_path, "w") as stderr, ServeProcess(*quiet(tmp_path), stderr=stderr) as server:
        for frame in BAD_FRAMES:
            ws = open_engineio(server)
            ws.send("40")  # a dashboard on "/" ...
            ws.send("40/workers,")  # ... and one on "/workers" (refused or not)
            if isinstance(frame, bytes):
                ws.send_binary(frame)
            else:
                ws.send(frame)
            ws.close()
        # The server still serves, sockets included.
        assert healthz_answers(server)
        open_engineio(server).close()
        server.stop()
    lines = log_path.read_text().splitlines()
    assert not [line for line in lines if "Traceback" in line or not LOG_LINE.match(line)], \
        "\n".join(lines[:40])
    about_frames = [line for line in lines if "socketio" in line or "engineio" in line]
    assert about_frames, "the malformed frames were not logged at all"
    assert len(about_frames) <= len(BAD_FRAMES), "\n".join(about_frames)
