"""Helpers for the remote-worker tests: a live server with no thread workers, and
`orderflow worker` processes that are always cleaned up (SIGKILL by pid, then reaped)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from conftest import wait_for
from web import LiveServer, app_over, fast_cluster

from dashboard.workers.hub import WorkerHub, hub_of

TOKEN = "remote-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TESTS = Path(__file__).resolve().parent
# Short heartbeats: a silent worker process is declared dead 0.6 s after its last beat.
HEARTBEATS = {"heartbeat_interval": 0.1, "heartbeat_timeout": 0.6}


class RemoteCluster:
    """A live server over a cluster without thread workers, plus its worker processes.

    `restart()` replaces the server and its cluster with new ones on the same address, as
    a server restart does: the processes stay and reconnect."""

    def __init__(self, log_dir: Path, settings: dict, config: dict | None = None):
        self.log_dir = log_dir
        self.settings = settings
        self.config = config or {}
        self.procs: list[subprocess.Popen] = []
        self._stack: ExitStack | None = None
        self._open(port=0)

    def _open(self, port: int) -> None:
        cluster = fast_cluster(workers=0, **{**HEARTBEATS, **self.settings})
        config = {"ORDERFLOW_TOKEN": TOKEN, "PING_INTERVAL": 0.5, "PING_TIMEOUT": 2.0,
                  **self.config}
        with ExitStack() as stack:
            app = stack.enter_context(app_over(cluster, config))
            live = LiveServer(app, port=port)
            # As gunicorn does for `orderflow serve`: without it, an ack written right after
            # an `assign` waits for a delayed ACK (~40 ms per task).
            live.server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            app.config["ORDERFLOW_URL"] = live.url
            stack.enter_context(live)
            self._stack = stack.pop_all()
        self.app, self.cluster, self.live, self.url = app, cluster, live, live.url

    def restart(self) -> None:
        """Stop the server and its cluster; start new ones on the same port."""
        self.close()
        self._open(port=self.live.port)

    @property
    def hub(self) -> WorkerHub:
        return hub_of(self.app)

    def close(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()

    def start_worker(self, *args: str, token: str | None = TOKEN, slots: int = 2,
                     handlers: str | None = None) -> subprocess.Popen:
        """`orderflow worker` against this server; its log goes to a file, never a pipe
        (a full pipe would block the process and stop its heartbeats)."""
        command = [sys.executable, "-m", "scheduler", "worker", "--server", self.url,
                   "--slots", str(slots), *args]
        if token is not None:
            command += ["--token", token]
        if handlers is not None:
            command += ["--handlers", handlers]
        env = {k: v for k, v in os.environ.items() if k != "ORDERFLOW_TOKEN"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
        path = self.log_dir / f"worker-{len(self.procs) + 1}.log"
        with path.open("w") as log:
            proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT)
        proc.log_path = path
        self.procs.append(proc)
        return proc

    def joined(self, proc: subprocess.Popen, timeout: float = 15.0,
               other_than: str | None = None) -> str:
        """The id under which `proc` is an alive member of the ring."""

        def member():
            for worker in self.cluster.workers():
                if (worker.get("pid") == proc.pid and worker["status"] == "alive"
                        and worker["id"] != other_than):
                    return worker["id"]
            assert proc.poll() is None, f"worker exited with {proc.returncode}: {log_of(proc)}"
            return None

        return wait_for(member, timeout, message=f"worker pid {proc.pid} to join")

    def status(self, worker_id: str) -> str | None:
        return next((w["status"] for w in self.cluster.workers() if w["id"] == worker_id), None)

    def events(self, kind: str | None = None) -> list[dict]:
        return [e for e in self.cluster.events() if kind is None or e["type"] == kind]

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, 9)  # SIGKILL by pid; SIGCONT not needed for a stopped one
                except ProcessLookupError:
                    pass
            proc.wait(10)


def log_of(proc: subprocess.Popen) -> str:
    return proc.log_path.read_text() if proc.log_path.exists() else ""


@contextmanager
def remote_cluster(log_dir: Path, config: dict | None = None,
                   **settings) -> Iterator[RemoteCluster]:
    """Server (token required; more Flask `config` if given) + cluster (no thread workers);
    every process and thread it started is gone when the block ends."""
    remote = RemoteCluster(log_dir, settings, config)
    try:
        yield remote
    finally:
        remote.kill_all()
        remote.close()
