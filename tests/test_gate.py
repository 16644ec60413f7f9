"""The Socket.IO gate and the frame check, driven by hand: no server, no threads."""

from __future__ import annotations

import json
import logging

import pytest

from dashboard.frames import OneLineErrors, printable, valid_frame
from dashboard.front import head_complete
from dashboard.gate import GateLimits, RefusalLog, SocketGate, presented_token
from dashboard.settings import ServeSettings, check_settings
from scheduler import ConfigError


def environ(address: str = "127.0.0.1", path: str = "/socket.io/", query: str = "",
            **headers: str) -> dict:
    return {"PATH_INFO": path, "QUERY_STRING": query, "REMOTE_ADDR": address,
            "REQUEST_METHOD": "GET", **headers}


class Answer:
    def __init__(self):
        self.status = None

    def __call__(self, status, headers, exc_info=None):
        self.status = int(status.split()[0])


def inner(environ, start_response):
    start_response("200 OK", [])
    return [b"ok"]


def gate(token=None, total=3, per_address=2, every=10.0, clock=lambda: 0.0):
    return SocketGate(inner, "socket.io", lambda: token, GateLimits(total, per_address),
                      RefusalLog(every, clock))


def call(g: SocketGate, env: dict) -> tuple[int, object]:
    answer = Answer()
    body = g(env, answer)
    return answer.status, body


def test_a_handshake_without_the_token_is_refused_with_401_json():
    g = gate(token="t")
    status, body = call(g, environ())
    assert status == 401
    assert json.loads(b"".join(body))["error"]["code"] == "unauthorized"
    assert call(g, environ(query="EIO=4&token=t"))[0] == 200
    assert call(g, environ(HTTP_AUTHORIZATION="Bearer t"))[0] == 200
    assert call(g, environ(HTTP_AUTHORIZATION="Bearer nope"))[0] == 401


def test_other_paths_pass_without_the_token_and_uncounted():
    g = gate(token="t", total=1, per_address=1)
    for _ in range(3):
        assert call(g, environ(path="/healthz"))[0] == 200
    assert g.open_connections() == 0


def test_open_connections_are_capped_per_address_then_in_total_and_freed_on_close():
    g = gate(total=3, per_address=2)
    first, second = call(g, environ("10.0.0.1")), call(g, environ("10.0.0.1"))
    assert call(g, environ("10.0.0.1"))[0] == 429
    third = call(g, environ("10.0.0.2"))
    status, body = call(g, environ("10.0.0.3"))
    assert status == 503
    assert json.loads(b"".join(body))["error"]["code"] == "server_busy"
    assert g.open_connections() == 3
    for _, response in (first, second, third):
        response.close()
        response.close()  # a second close does not count twice
    assert g.open_connections() == 0
    assert call(g, environ("10.0.0.1"))[0] == 200


def test_refusals_are_logged_once_per_interval_with_a_count(caplog):
    now = [0.0]
    log = RefusalLog(every=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="orderflow.gate"):
        for _ in range(50):
            log.refused("missing or wrong token", "127.0.0.1")
        now[0] = 10.0
        log.refused("missing or wrong token", "127.0.0.2")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "from 127.0.0.1" in messages[0]
    assert "refused 50 Socket.IO connections" in messages[1]


def test_the_token_comes_from_the_bearer_header_first_then_the_query():
    assert presented_token(environ(HTTP_AUTHORIZATION="Bearer a", query="token=b")) == "a"
    assert presented_token(environ(query="EIO=4&token=b")) == "b"
    assert presented_token(environ(HTTP_AUTHORIZATION="Basic a")) is None


def test_only_engineio_text_packets_pass_the_frame_check():
    assert valid_frame("2") and valid_frame('42["x"]') and valid_frame(b"\x00junk")
    assert not valid_frame("") and not valid_frame("x") and not valid_frame("9")


def test_a_logged_exception_becomes_one_escaped_line():
    try:
        raise ValueError("bad\npacket\x1b[31m")
    except ValueError as exc:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "message handler error",
                                   None, (type(exc), exc, exc.__traceback__))
    assert OneLineErrors().filter(record)
    assert record.exc_info is None
    line = record.getMessage()
    assert line == "message handler error (ValueError: bad\\npacket\\x1b[31m)"
    assert printable("y" * 300).endswith("...")


def test_a_request_head_ends_at_its_blank_line_even_across_reads():
    buffer = bytearray(b"GET / HTTP/1.1\r\nHost: a\r\n\r")
    assert not head_complete(buffer, 0)
    start = len(buffer)
    buffer += b"\n"
    assert head_complete(buffer, start)


@pytest.mark.parametrize("bad, match", [
    ({"max_sockets": 0}, "max-sockets"),
    ({"max_connections_per_address": 0}, "max-connections"),
    ({"max_connections": 90}, "threads \\+ max-sockets"),
    ({"header_timeout": 0}, "header-timeout"),
])
def test_connection_limits_are_checked_before_the_server_starts(bad, match):
    with pytest.raises(ConfigError, match=match):
        check_settings(ServeSettings(**bad))
    check_settings(ServeSettings(max_sockets=8))  # a per-address cap above it is fine
