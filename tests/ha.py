"""Helpers for the tests of several servers on one PostgreSQL database: apps that lead or
stand by (in this process), and what they answer about it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from conftest import wait_for

from dashboard import create_app, services
from dashboard.settings import ServeSettings

# Quiet, quick demo steps and short heartbeats.
QUICK = {"workers": 2, "failure_rate": 0.0, "latency_ms": (0.0, 1.0),
         "heartbeat_interval": 0.05, "heartbeat_timeout": 0.5}


@contextmanager
def ha_app(url: str, name: str = "http://server-a", config: dict | None = None,
           **settings) -> Iterator:
    """An app over the PostgreSQL database `url`, advertised as `name`, with its services
    running: it leads or stands by. Everything it started is stopped at the end."""
    serve = ServeSettings(db=url, **{**QUICK, **settings})
    app = create_app({"CLUSTER_SETTINGS": serve, "ORDERFLOW_URL": name, **(config or {})})
    running = services(app).start()
    try:
        yield app
    finally:
        running.stop()


def role(app) -> dict:
    return services(app).role().as_dict()


def leading(app, timeout: float = 15.0) -> dict:
    """Wait until `app` leads; returns its role."""
    return wait_for(lambda: services(app).leadership.leading and role(app), timeout,
                    message="the server to lead")


# Steps that do nothing, and short heartbeats: for tests of the journal, not of the steps.
NOOP = {s: (lambda ctx: None) for s in ("payment", "packing", "shipping")}
FAST = {"heartbeat_interval": 0.05, "heartbeat_timeout": 0.5}


def sql(url: str, statement: str, *args) -> list[tuple]:
    """Run one statement on its own connection; its rows, if it returns any."""
    import psycopg  # only where PostgreSQL tests run

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, args)
        return cur.fetchall() if cur.description else []
