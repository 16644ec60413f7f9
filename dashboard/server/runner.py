"""`orderflow serve` on gunicorn: one process, threaded worker, started from Python.

Why this shape (see Flask-SocketIO's deployment notes and ../shared/notes/flask-socketio.md):
one worker process, because the cluster lives in memory; the gthread worker, because every
WebSocket holds a thread, with a front door (front.py) that reads request heads in its event
loop, so a connection costs a thread only once its request is whole; a pool of HTTP threads
plus one per allowed Socket.IO connection (gate.py caps those), so sockets never starve the
API; the app (and so the cluster's threads) is built in `load()`, which
gunicorn calls in the worker after the fork, never in the master, whose threads would not
survive it. On SIGTERM or Ctrl-C the worker drops Socket.IO connections at once (they never
end by themselves), then `worker_exit` stops the stream and the cluster.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from typing import IO, Any

from gunicorn.app.base import BaseApplication

from scheduler.journal.lock import FileLock
from scheduler.remote.supervisor import own_url

from ..app import Services, create_app, services
from ..config import MAX_REQUEST_LINE
from ..settings import ServeSettings, flask_config, reserved_threads, sockets
from .front import FrontLimits, FrontWorker

log = logging.getLogger("orderflow.server")


class OrderflowWorker(FrontWorker):
    """The front-door gthread worker, with the limits of `orderflow serve`'s settings; it
    closes Socket.IO connections as soon as a graceful stop begins, so shutdown does not
    wait out the graceful timeout on WebSockets."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        s: ServeSettings = self.app.settings
        self.limits = FrontLimits(
            s.max_connections, s.max_connections_per_address, s.header_timeout,
            s.request_timeout,
            anyone_threads=s.threads - reserved_threads(s) if s.token else None,
            token=s.token)

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        # Idle kept-alive connections are closed at once too, not after gunicorn's 2 s
        # linger: a client that keeps one open would otherwise hold up every shutdown.
        self.method_queue.defer(self.murder_keepalived, True)
        running: Services | None = getattr(self.app, "services", None)
        if running is not None:
            # Not inside the signal handler: closing takes locks the interrupted code may hold.
            threading.Thread(target=running.disconnect_clients, name="orderflow-drop-clients",
                             daemon=True).start()


def bind_address(host: str, port: int) -> str:
    """gunicorn's bind syntax; IPv6 addresses need brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class OrderflowServer(BaseApplication):
    """A gunicorn application whose configuration comes from ServeSettings, not argv."""

    def __init__(self, settings: ServeSettings, out: IO[str] | None = None,
                 lock: FileLock | None = None, listener: socket.socket | None = None):
        self.settings = settings
        self.out = out or sys.stdout
        self.lock = lock  # the journal's lock, inherited by the worker process
        # Bound by `orderflow serve` (listener.py): gunicorn takes its descriptor over.
        self.listener_fd = None if listener is None else listener.detach()
        self.services: Services | None = None
        self.url: str | None = None  # known in when_ready, before the worker is forked
        super().__init__(prog="orderflow serve")

    def load_config(self) -> None:
        s = self.settings
        options = {
            "bind": [bind_address(s.host, s.port) if self.listener_fd is None
                     else f"fd://{self.listener_fd}"],
            "workers": 1,
            # HTTP threads plus one per Socket.IO connection the gate lets in.
            "threads": s.threads + sockets(s),
            # The front door refuses beyond max_connections itself (with a 503), so gunicorn
            # must never stop accepting before that.
            "worker_connections": s.max_connections + 1,
            "worker_class": OrderflowWorker,
            # The front door refuses a longer request line first, with the API's 414, so
            # gunicorn's own (an HTML page, at 4094 bytes by default) never comes.
            "limit_request_line": MAX_REQUEST_LINE,
            "graceful_timeout": s.graceful_timeout,
            "preload_app": False,
            "proc_name": "orderflow",
            "errorlog": "-",
            "loglevel": "warning",
            "when_ready": self.when_ready,
            "worker_exit": self.worker_exit,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """Runs in the worker process: build the app and start the cluster there."""
        # The URL lets the app start `orderflow worker` processes that connect back to it.
        app = create_app({**flask_config(self.settings), "ORDERFLOW_URL": self.url,
                          "JOURNAL_LOCK": self.lock})
        self.services = services(app).start()
        return app

    def when_ready(self, arbiter: Any) -> None:
        """In the master, once the socket is bound: the port is known even with --port 0."""
        for listener in arbiter.LISTENERS:
            print(f"orderflow listening on {listener}", file=self.out, flush=True)
        host, port = arbiter.LISTENERS[0].sock.getsockname()[:2]
        self.url = own_url(host, port)

    def worker_exit(self, arbiter: Any, worker: Any) -> None:
        if self.services is not None:
            self.services.stop()
            log.info("cluster stopped")


def serve(settings: ServeSettings, out: IO[str] | None = None,
          lock: FileLock | None = None, listener: socket.socket | None = None) -> int:
    """Run until SIGTERM or Ctrl-C; returns the exit status. `lock`: the SQLite journal's
    lock, held by this process (and so by gunicorn's worker) until it ends; `listener`: the
    socket to serve on, already bound (gunicorn binds settings' address without it)."""
    OrderflowServer(settings, out, lock, listener).run()
    return 0
