"""Who asked: the name an operator action is recorded under (`operator_action` events).

A server with a token knows only that the caller holds it, so it says so and adds where the
request came from; an open (loopback) server has only the address. Behind a proxy that is
the proxy's address: forwarded headers are not trusted, since any client can send them.
"""

from __future__ import annotations

from flask import current_app, request


def actor() -> str:
    """The caller of the current HTTP request or Socket.IO event, for the audit trail."""
    address = request.remote_addr or "an unknown address"
    if current_app.config.get("ORDERFLOW_TOKEN"):
        return f"token holder at {address}"
    return address
