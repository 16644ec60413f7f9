"""Access control for HTTP and Socket.IO: bearer tokens, and what a browser may do.

With no token configured (the loopback default) the API is open to this machine. With one,
every mutating call and every Socket.IO connection must present it, and reads too unless
TOKEN_FOR_READS is off; a few endpoints that reveal nothing stay open for probes.

Whatever the token, two browser attacks are refused: a page on another site posting to the
API (cross-site request forgery: browsers send a body-less POST without asking first), and,
without a token, a page whose own host name was rebound to 127.0.0.1 (DNS rebinding), which
would otherwise look same-origin.
"""

from __future__ import annotations

import hmac
import json

from flask import Flask, current_app, request

from .codes import ErrorCode
from .errors import ApiError

# Liveness probes, the page shell, its libraries and the API description carry no order data.
OPEN_ENDPOINTS = frozenset({"system.healthz", "system.openapi", "pages.index", "pages.vendor",
                            "static"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Set in the environ of a Socket.IO handshake that presented the right token (gate.py).
AUTHENTICATED = "orderflow.authenticated"
# What a server without a token answers to a foreign host name (421).
MISDIRECTED = json.dumps({"error": {
    "code": ErrorCode.MISDIRECTED_REQUEST, "message": "this server has no token, so it answers "
    "only to 127.0.0.1, localhost or [::1]"}}).encode()


def token_matches(expected: str, presented: object) -> bool:
    if not isinstance(presented, str):
        return False
    # Constant time, so the token cannot be guessed byte by byte from response times;
    # surrogatepass, so a string JSON allows but UTF-8 does not is refused, not a crash.
    return hmac.compare_digest(expected.strip().encode("utf-8", "surrogatepass"),
                               presented.strip().encode("utf-8", "surrogatepass"))


def host_name(host_header: str) -> str:
    """'127.0.0.1:5000' -> '127.0.0.1', '[::1]:5000' -> '::1'."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


def cross_site(origin: str | None, fetch_site: str | None, host_url: str,
               allowed: object) -> bool:
    """True for a request a browser sent on behalf of another site."""
    if origin:
        if origin.rstrip("/") == host_url.rstrip("/"):
            return False
        return not (isinstance(allowed, list | tuple) and origin in allowed) and allowed != "*"
    return fetch_site == "cross-site"


class LoopbackHostGuard:
    """WSGI middleware for a server without a token: only loopback host names are served.

    It sits in front of Socket.IO too (whose requests never reach Flask's hooks)."""

    def __init__(self, wsgi_app, enabled):
        self.wsgi_app, self.enabled = wsgi_app, enabled

    def __call__(self, environ, start_response):
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        if self.enabled() and host_name(host).lower() not in LOOPBACK_HOSTS:
            body = MISDIRECTED
            start_response("421 Misdirected Request",
                           [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
            return [body]
        return self.wsgi_app(environ, start_response)


def bearer_token() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def socket_auth_ok(auth: object) -> bool:
    """The token came with the connection's handshake (checked by the gate), or as
    `{"token": ...}` in the Socket.IO auth payload."""
    expected = current_app.config.get("ORDERFLOW_TOKEN")
    if not expected or request.environ.get(AUTHENTICATED):
        return True
    return isinstance(auth, dict) and token_matches(expected, auth.get("token"))


def register(app: Flask) -> None:
    # Installed around the whole app (Socket.IO included) by create_app, after SocketIO.
    app.extensions["orderflow_host_guard"] = lambda: not app.config.get("ORDERFLOW_TOKEN")

    @app.before_request
    def _refuse_cross_site_commands() -> None:
        if request.method in SAFE_METHODS:
            return
        if cross_site(request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"),
                      request.host_url, app.config.get("CORS_ORIGINS")):
            raise ApiError(403, ErrorCode.CROSS_SITE_REQUEST,
                           "commands are accepted from this server's own pages and from "
                           "non-browser clients only")

    @app.before_request
    def _require_token() -> None:
        expected = app.config.get("ORDERFLOW_TOKEN")
        if not expected or request.endpoint in OPEN_ENDPOINTS:
            return
        if request.method in SAFE_METHODS and not app.config.get("TOKEN_FOR_READS"):
            return
        if not token_matches(expected, bearer_token()):
            raise ApiError(401, ErrorCode.UNAUTHORIZED,
                           "a valid 'Authorization: Bearer <token>' header is required",
                           {"WWW-Authenticate": 'Bearer realm="orderflow"'})
