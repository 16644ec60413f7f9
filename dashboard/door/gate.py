"""The door to Socket.IO: the token on the handshake, and caps on open connections.

A Socket.IO connection holds a server thread for as long as it is open (a WebSocket) or
for up to a ping interval per poll (long-polling). So before a request to /socket.io/
reaches Engine.IO, and before any upgrade, this WSGI middleware

* with a token configured, refuses a request that does not present it (401): in an
  `Authorization: Bearer` header (python clients, `orderflow worker`) or a `token` query
  parameter (browsers, which cannot set headers on a WebSocket); a HEAD request asks only
  that (the page's probe after a failed connection) and is answered 204 when it passes;
* refuses every handshake while this server is a standby (503, with `role` and `leader`
  beside the error: workers and browsers go to the leader; see leadership.py);
* counts a connection as a worker's when its handshake says so (`X-Orderflow-Role:
  worker`, which `orderflow worker` sends), any other as a dashboard's, and refuses one
  beyond `workers` worker connections (503), or beyond `dashboards_per_address` dashboard
  connections from one client address (429) or `dashboards` in all (503). Workers and
  dashboards never take each other's places, and neither takes the threads the HTTP API
  needs (the server sizes its pool as HTTP threads + `workers` + `dashboards`). Worker
  connections have no cap per address: one machine may run many worker processes.

Refusals are JSON in the API's error shape. They are logged as one line per reason at most
every LOG_EVERY seconds, with a count: a flood of refusals is not a flood of log lines.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qs

from scheduler.remote.protocol import ROLE_HEADER

from .auth import AUTHENTICATED, token_matches
from .codes import ErrorCode

log = logging.getLogger("orderflow.gate")

LOG_EVERY = 10.0  # seconds between two log lines about the same kind of refusal
ROLE_ENVIRON = "HTTP_" + ROLE_HEADER.upper().replace("-", "_")


class SocketKind(StrEnum):
    """Whose Socket.IO connection it is: each kind has caps of its own."""

    WORKER = "worker"  # an `orderflow worker` process (its handshake says so: ROLE_HEADER)
    DASHBOARD = "dashboard"  # any other: a browser, a script


@dataclass(frozen=True)
class GateLimits:
    """Caps on Socket.IO requests open at once (WebSockets for their whole life), by kind."""

    workers: int = 256
    dashboards: int = 64
    dashboards_per_address: int = 32


def socket_kind(environ: dict) -> SocketKind:
    """WORKER for a worker's handshake, DASHBOARD for any other."""
    if environ.get(ROLE_ENVIRON, "").lower() == SocketKind.WORKER:
        return SocketKind.WORKER
    return SocketKind.DASHBOARD


def presented_token(environ: dict) -> str | None:
    """The token a handshake carries: bearer header first, then the `token` query value."""
    scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    values = parse_qs(environ.get("QUERY_STRING", "")).get("token")
    return values[0] if values else None


class RefusalLog:
    """One log line per reason and interval, with how many were refused since the last.
    `action` names what was done to them ("refused", "cut", "shed"), `what` what they are."""

    def __init__(self, every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic,
                 action: str = "refused", what: str = "Socket.IO connection",
                 logger: logging.Logger = log):
        self.every, self.clock, self.action, self.what = every, clock, action, what
        self.log = logger
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._since: Counter[str] = Counter()

    def refused(self, reason: str, address: str) -> None:
        with self._lock:
            self._since[reason] += 1
            now = self.clock()
            if now - self._last.get(reason, -self.every) < self.every:
                return
            self._last[reason] = now
            count, self._since[reason] = self._since[reason], 0
        if count == 1:
            self.log.warning("%s a %s from %s: %s", self.action, self.what, address, reason)
        else:
            self.log.warning("%s %d %ss since the last report: %s (the latest from %s)",
                             self.action, count, self.what, reason, address)


class SocketGate:
    """WSGI middleware in front of the whole app (see module docstring)."""

    def __init__(self, wsgi_app: Callable, path: str, token: Callable[[], str | None],
                 limits: GateLimits, refusals: RefusalLog | None = None,
                 standby: Callable[[], dict | None] = lambda: None):
        self.wsgi_app = wsgi_app
        self.prefix = "/" + path.strip("/")
        self.token, self.limits, self.standby = token, limits, standby
        self.refusals = refusals or RefusalLog()
        self._lock = threading.Lock()
        self._open: Counter[tuple[str, str]] = Counter()  # by (kind, address)
        self._totals: Counter[str] = Counter()  # by kind

    def open_connections(self, kind: SocketKind | None = None) -> int:
        """Socket.IO requests open now: of one kind, or all."""
        with self._lock:
            return self._totals[kind] if kind else sum(self._totals.values())

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path != self.prefix and not path.startswith(self.prefix + "/"):
            return self.wsgi_app(environ, start_response)
        address = environ.get("REMOTE_ADDR") or "?"
        expected = self.token()
        if expected:
            if not token_matches(expected, presented_token(environ)):
                self.refusals.refused("missing or wrong token", address)
                return _refuse(start_response, 401, ErrorCode.UNAUTHORIZED,
                               "unauthorized: a valid token is required (an 'Authorization: "
                               "Bearer' header or a 'token' query parameter)")
            environ[AUTHENTICATED] = True
        if environ.get("REQUEST_METHOD") == "HEAD":
            # The page's question after a failed connection, whose status a browser does not
            # see: is the token what is missing? Answered here (Engine.IO would say 405, an
            # error on the page's console), whatever the role and caps: it opens nothing.
            start_response("204 No Content", [("Cache-Control", "no-store")])
            return []
        standby = self.standby()
        if standby is not None:
            # Not logged: every worker and browser asks each server until it finds the leader.
            return _refuse(start_response, 503, ErrorCode.STANDBY, standby["error"]["message"],
                           {"Retry-After": "1"}, standby)
        key = (socket_kind(environ), address)
        refusal = self._enter(key)
        if refusal is not None:
            status, code, message = refusal
            self.refusals.refused(message, address)
            return _refuse(start_response, status, code, message, {"Retry-After": "5"})
        try:
            if environ.get("HTTP_UPGRADE", "").lower() == "websocket":
                _no_socket_timeout(environ)
            return _Closing(self.wsgi_app(environ, start_response), lambda: self._leave(key))
        except BaseException:
            self._leave(key)
            raise

    def _enter(self, key: tuple[str, str]) -> tuple[int, str, str] | None:
        kind, address = key
        limits = self.limits
        cap = limits.workers if kind == SocketKind.WORKER else limits.dashboards
        with self._lock:
            if kind == SocketKind.DASHBOARD and self._open[key] >= limits.dashboards_per_address:
                return (429, ErrorCode.TOO_MANY_CONNECTIONS,
                        f"too many dashboard connections from {address} "
                        f"(at most {limits.dashboards_per_address})")
            if self._totals[kind] >= cap:
                return (503, ErrorCode.SERVER_BUSY,
                        f"the server holds its maximum of {cap} {kind} connections; try "
                        "again later")
            self._open[key] += 1
            self._totals[kind] += 1
            return None

    def _leave(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._totals[key[0]] -= 1
            self._open[key] -= 1
            if not self._open[key]:
                del self._open[key]


class _Closing:
    """The app's response, calling `done` once when the server closes it (WSGI's end of
    a request), so a count covers the whole response, streamed or not."""

    def __init__(self, response: Iterable[bytes], done: Callable[[], None]):
        self._response, self._done = response, done
        self._closed = False

    def __iter__(self):
        return iter(self._response)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._response, "close", None)
            if close is not None:
                close()
        finally:
            self._done()


def _no_socket_timeout(environ: dict) -> None:
    # The server times out slow requests on the socket; an upgraded WebSocket is idle
    # between messages by design (Engine.IO's pings find a dead one).
    sock: Any = environ.get("gunicorn.socket")
    if sock is not None:
        sock.settimeout(None)


def _refuse(start_response: Callable, status: int, code: str, message: str,
            headers: dict | None = None, body: dict | None = None) -> list[bytes]:
    body = json.dumps(body or {"error": {"code": code, "message": message}}).encode()
    reason = {401: "Unauthorized", 429: "Too Many Requests", 503: "Service Unavailable"}
    start_response(f"{status} {reason[status]}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                    ("Connection", "close"), *(headers or {}).items()])
    return [body]
