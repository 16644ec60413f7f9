"""The Socket.IO gate, the frame check and the front door's pure parts, driven by hand: no
server, no threads."""

from __future__ import annotations

import json
import logging

import pytest

from dashboard.door.frames import OneLineErrors, printable, valid_frame
from dashboard.door.gate import GateLimits, RefusalLog, SocketGate, presented_token, socket_kind
from dashboard.server.front import IdleConnections, head_complete, head_token
from dashboard.settings import ServeSettings, check_settings
from scheduler import ConfigError
from scheduler.remote.protocol import handshake_headers


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


def gate(token=None, total=3, per_address=2, workers=2, every=10.0, clock=lambda: 0.0):
    """A gate for `total` dashboards (`per_address` from one address) and `workers`."""
    return SocketGate(inner, "socket.io", lambda: token,
                      GateLimits(workers=workers, dashboards=total,
                                 dashboards_per_address=per_address),
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


def test_a_head_asks_only_whether_the_token_passes_and_opens_nothing():
    """The page's probe after a failed connection: Engine.IO answers HEAD 405 (an error on
    the page's console), so the gate answers it, whatever the role and caps."""
    reached = []

    def engineio(environ, start_response):
        reached.append(environ["REQUEST_METHOD"])
        return inner(environ, start_response)

    g = SocketGate(engineio, "socket.io", lambda: "t",
                   GateLimits(workers=1, dashboards=1, dashboards_per_address=1),
                   RefusalLog(10.0, lambda: 0.0),
                   standby=lambda: {"error": {"message": "the leader is elsewhere"}})
    head = {"REQUEST_METHOD": "HEAD"}
    assert call(g, {**environ(query="EIO=4&transport=polling"), **head})[0] == 401
    status, body = call(g, {**environ(query="EIO=4&transport=polling&token=t"), **head})
    assert (status, list(body)) == (204, [])
    assert call(g, {**environ(HTTP_AUTHORIZATION="Bearer t"), **head})[0] == 204
    assert call(g, environ(query="token=t"))[0] == 503, "a standby: a GET handshake is refused"
    assert reached == [] and g.open_connections() == 0


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
    ({"max_dashboard_sockets": 0}, "max-dashboard-sockets"),
    ({"max_worker_sockets": 0}, "max-worker-sockets"),
    ({"max_connections_per_address": 0}, "max-connections"),
    ({"max_connections": 350}, "threads \\+ max-worker-sockets \\+ max-dashboard-sockets"),
    ({"max_frame_rate": 0}, "max-frame-rate"),
    ({"header_timeout": 0}, "header-timeout"),
])
def test_connection_limits_are_checked_before_the_server_starts(bad, match):
    with pytest.raises(ConfigError, match=match):
        check_settings(ServeSettings(**bad))
    check_settings(ServeSettings(max_dashboard_sockets=8))  # a per-address cap above it: fine


def test_workers_and_dashboards_have_caps_of_their_own():
    g = gate(total=2, per_address=1, workers=3)
    worker = {"HTTP_X_ORDERFLOW_ROLE": "worker"}
    # Workers: no cap per address (a machine may run many), 3 in all.
    held = [call(g, environ("10.0.0.1", **worker)) for _ in range(3)]
    assert [status for status, _ in held] == [200, 200, 200]
    status, body = call(g, environ("10.0.0.2", **worker))
    assert status == 503
    assert "maximum of 3 worker connections" in json.loads(b"".join(body))["error"]["message"]
    # Dashboards keep their own places while the workers' are full ...
    assert call(g, environ("10.0.0.1"))[0] == 200
    assert call(g, environ("10.0.0.1"))[0] == 429  # one per address here
    assert call(g, environ("10.0.0.3"))[0] == 200
    status, body = call(g, environ("10.0.0.4"))
    assert status == 503
    assert "2 dashboard connections" in json.loads(b"".join(body))["error"]["message"]
    assert g.open_connections("worker") == 3 and g.open_connections("dashboard") == 2
    # ... and a worker that leaves frees a worker's place.
    held[0][1].close()
    assert call(g, environ("10.0.0.2", **worker))[0] == 200


def test_a_worker_says_so_on_its_handshake():
    headers = handshake_headers("t")
    assert headers["Authorization"] == "Bearer t"
    environ_of_worker = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    assert socket_kind(environ_of_worker) == "worker"
    assert socket_kind(environ()) == "dashboard"
    assert socket_kind(environ(query="role=worker")) == "dashboard"


def test_a_request_head_carries_its_token_in_a_bearer_header_or_the_query():
    assert head_token(b"GET /api/stats HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t1\r\n"
                      b"\r\n") == "t1"
    assert head_token(b"GET /socket.io/?EIO=4&token=t2&transport=websocket HTTP/1.1\r\n"
                      b"Host: a\r\n\r\n") == "t2"
    assert head_token(b"GET /?x=1 HTTP/1.1\nauthorization:   bearer t3\n\n") == "t3"
    assert head_token(b"GET / HTTP/1.1\r\nAuthorization: Basic dDp0\r\n\r\n") is None
    assert head_token(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nAuthorization: Bearer body") is None
    assert head_token(b"garbage") is None


def test_the_connection_to_shed_is_the_oldest_idle_one_of_the_address_holding_the_most():
    idle = IdleConnections()
    assert idle.victim() is None
    idle.add("operator", "op-1")
    for i in range(3):
        idle.add("flood-a", f"a-{i}")
        idle.add("flood-b", f"b-{i}")
    idle.add("flood-b", "b-3")
    assert idle.victim() == "b-0"
    idle.discard("flood-b", "b-0")
    idle.discard("flood-b", "b-1")
    assert idle.victim() == "a-0", "now flood-a holds the most"
    assert idle.victim("operator") == "op-1" and idle.victim("nobody") is None
    assert idle.count() == 6 and idle.count("flood-b") == 2
    idle.discard("operator", "op-1")
    idle.discard("operator", "op-1")  # twice: no harm
    assert idle.count("operator") == 0


def test_an_idle_connection_that_carried_the_token_is_shed_only_when_no_other_is_idle():
    idle = IdleConnections()
    for i in range(3):
        idle.add("10.0.0.1", f"holder-{i}", trusted=True)
    idle.add("10.0.0.2", "anyone")
    assert idle.victim() == "anyone", "not the address with the most"
    assert idle.victim("10.0.0.1") == "holder-0"
    idle.discard("10.0.0.2", "anyone")
    assert idle.victim() == "holder-0" and idle.count() == 3
    idle.discard("10.0.0.1", "holder-0")
    assert idle.count("10.0.0.1") == 2
