"""orderflow's Flask-SocketIO layer: HTTP API, live event stream and the dashboard page."""

from .app import create_app, services

__all__ = ["create_app", "services"]
