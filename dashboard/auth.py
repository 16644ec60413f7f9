"""Bearer-token access control for HTTP and Socket.IO.

With no token configured (the loopback default) everything is open. With one, every
mutating call and every Socket.IO connection must present it, and reads too unless
TOKEN_FOR_READS is off; a few endpoints that reveal nothing stay open for probes.
"""

from __future__ import annotations

import hmac

from flask import Flask, current_app, request

from .errors import ApiError

# Liveness probes, the page shell, its libraries and the API description carry no order data.
OPEN_ENDPOINTS = frozenset({"system.healthz", "system.openapi", "pages.index", "pages.vendor",
                            "static"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token_matches(expected: str, presented: object) -> bool:
    if not isinstance(presented, str):
        return False
    # Constant time, so the token cannot be guessed byte by byte from response times.
    return hmac.compare_digest(expected.encode(), presented.encode())


def bearer_token() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def socket_auth_ok(auth: object) -> bool:
    """Socket.IO clients send `{"token": ...}` as their auth payload."""
    expected = current_app.config.get("ORDERFLOW_TOKEN")
    if not expected:
        return True
    return isinstance(auth, dict) and token_matches(expected, auth.get("token"))


def register(app: Flask) -> None:
    @app.before_request
    def _require_token() -> None:
        expected = app.config.get("ORDERFLOW_TOKEN")
        if not expected or request.endpoint in OPEN_ENDPOINTS:
            return
        if request.method in SAFE_METHODS and not app.config.get("TOKEN_FOR_READS"):
            return
        if not token_matches(expected, bearer_token()):
            raise ApiError(401, "unauthorized",
                           "a valid 'Authorization: Bearer <token>' header is required",
                           {"WWW-Authenticate": 'Bearer realm="orderflow"'})
