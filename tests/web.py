"""Helpers for the web-layer tests: apps over fast clusters, and a live Werkzeug server.

Every helper is a context manager that stops every thread it started, so the conftest's
thread-leak guard stays quiet.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from werkzeug.serving import make_server

from dashboard import create_app, services
from scheduler import Chaos, Cluster

ORDER = {"customer": "ada", "items": [{"sku": "A1", "qty": 2, "price": 9.5}]}
# Heartbeats fast enough that a killed worker is declared dead within a fraction of a second.
FAST = {"heartbeat_interval": 0.05, "heartbeat_timeout": 0.3}
# Heartbeats no busy machine can miss, for tests that count on no worker being suspect or
# declared dead (at FAST ones a heartbeat thread starved for 0.3 s is a death).
STEADY = {"heartbeat_interval": 5.0, "heartbeat_timeout": 60.0}
# Engine.IO pings: short, because each connection keeps a thread asleep for one interval.
LIVE_CONFIG = {"PING_INTERVAL": 0.5, "PING_TIMEOUT": 2.0}


def fast_cluster(workers: int = 2, failure_rate: float = 0.0,
                 latency_ms: tuple[float, float] = (0.0, 0.0), **settings) -> Cluster:
    chaos = Chaos(failure_rate=failure_rate, latency_ms=latency_ms, seed=7)
    return Cluster(workers=workers, chaos=chaos, seed=7, **{**FAST, **settings})


@contextmanager
def app_over(cluster: Cluster, config: dict | None = None, start: bool = True) -> Iterator:
    """An app over `cluster`; with start=True the cluster, stream and metrics run."""
    app = create_app(config, cluster=cluster)
    if start:
        cluster.start()
        services(app).start()
    try:
        yield app
    finally:
        services(app).stop()
        cluster.stop()


class LiveServer:
    """The app on a real Werkzeug server at an ephemeral 127.0.0.1 port, in a thread."""

    def __init__(self, app, send_buffer: int | None = None, port: int = 0):
        self.app = app
        # port 0: the kernel picks one; a given port is for a restart on the same address.
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        if send_buffer is not None:
            # Linux hands a listening socket's buffer sizes to the sockets it accepts, so a
            # small one lets a client that never reads fill its buffers within a few KB.
            self.server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._connections: list[socket.socket] = []
        accept = self.server.get_request

        def get_request():
            conn, address = accept()
            self._connections.append(conn)
            return conn, address

        self.server.get_request = get_request
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, name="live-server")

    def __enter__(self) -> LiveServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Server-side disconnects are instant; a client-side one waits 3 s on Werkzeug.
        services(self.app).disconnect_clients()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
        # After a WebSocket ends, Werkzeug waits on the same connection for another HTTP
        # request that never comes; shutting the sockets down ends those request threads.
        for conn in self._connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer
