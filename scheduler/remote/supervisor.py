"""Local `orderflow worker` processes started by the server (POST /api/workers kind=process).

Each child gets the server's own URL, the server's app (`--app MODULE:ATTR`, so it runs the
server's steps and offers the server's workflow definitions, not the demo's handlers for any
definition), the token (through the environment, so it never shows in `ps`), a spawn id to
recognise it when it registers, and the server's pid so it exits if the server dies without
reaping it. A reaper thread collects exited children (no zombies);
`stop()` sends SIGTERM to the rest (they drain), SIGKILL after a grace period, and waits for
every one of them (no orphans).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ..engine.errors import Conflict
from ..runtime.worker import LoopThread
from .protocol import ENV_PARENT_PID, ENV_SPAWN_ID

log = logging.getLogger("orderflow.workers")

REAP_INTERVAL = 0.2


def own_url(host: str, port: int) -> str:
    """The URL a local worker uses to reach a server bound to (host, port)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{port}"  # a host name
    if address.is_unspecified:  # 0.0.0.0 or ::: every interface, loopback included
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{shown}:{port}"


@dataclass
class Child:
    spawn_id: str
    name: str
    process: subprocess.Popen
    returncode: int | None = None

    def view(self) -> dict:
        return {"pid": self.process.pid, "name": self.name, "spawn_id": self.spawn_id,
                "returncode": self.returncode}


class ProcessPool:
    """Starts, kills and reaps this server's worker processes. Thread-safe."""

    def __init__(
        self,
        url: Callable[[], str | None],
        token: Callable[[], str | None],
        limit: Callable[[], int] = lambda: 16,
        command: Callable[[str, str, str | None], list[str]] | None = None,
        app: Callable[[], str | None] = lambda: None,
    ):
        # Read at each spawn, so they follow the app's config. `app`: the server's app as
        # MODULE:ATTR (None: the built-in demo, whose handlers a worker runs without one).
        self._url, self._token, self._limit, self._app = url, token, limit, app
        self._command = command or default_command
        self._lock = threading.Lock()
        self._children: dict[str, Child] = {}
        self._numbers = 0
        self._stop = threading.Event()
        self._reaper: LoopThread | None = None
        self._closed = False
        # Told the spawn id of each child found exited (its handlers are gone with it).
        self.on_exit: Callable[[str], None] | None = None

    def spawn(self, count: int) -> list[dict]:
        """Start `count` workers; they join the cluster once they have connected."""
        url = self._url()
        if not url:
            raise Conflict("this server does not know its own URL (ORDERFLOW_URL), so it "
                           "cannot start worker processes")
        app = self.app()
        env = {**os.environ, ENV_PARENT_PID: str(os.getpid())}
        token = self._token()
        if token:
            env["ORDERFLOW_TOKEN"] = token
        started = []
        with self._lock:
            if self._closed:
                raise Conflict("the server is shutting down")
            alive = sum(1 for c in self._children.values() if c.process.poll() is None)
            limit = self._limit()
            if alive + count > limit:
                raise Conflict(f"at most {limit} worker processes may run at once "
                               f"({alive} running)")
            for _ in range(count):
                self._numbers += 1
                spawn_id = uuid.uuid4().hex
                name = f"local-{self._numbers}"
                process = subprocess.Popen(
                    self._command(url, name, app), env={**env, ENV_SPAWN_ID: spawn_id},
                    stdin=subprocess.DEVNULL, start_new_session=True)
                child = Child(spawn_id, name, process)
                self._children[spawn_id] = child
                started.append(child.view())
                log.info("started worker process %s (pid %d)", name, process.pid)
            if self._reaper is None:
                self._reaper = LoopThread("orderflow-reaper", self._reap_once, self._stop)
                self._reaper.start()
        return started

    def app(self) -> str | None:
        """The app (MODULE:ATTR) the next processes run; None: the demo's handlers."""
        return self._app()

    def kill(self, spawn_id: str) -> int | None:
        """SIGKILL one of our children: a real crash. Returns its pid, or None if not ours."""
        with self._lock:
            child = self._children.get(spawn_id)
            if child is None or child.returncode is not None:
                return None
            # Not yet reaped, so the pid cannot belong to another process.
            child.process.kill()
            return child.process.pid

    def processes(self) -> list[dict]:
        self.reap()
        with self._lock:
            return [c.view() for c in self._children.values()]

    def reap(self) -> None:
        exited = []
        with self._lock:
            for child in self._children.values():
                if child.returncode is None and child.process.poll() is not None:
                    child.returncode = child.process.returncode
                    exited.append(child.spawn_id)
                    log.info("worker process %s (pid %d) exited with status %s",
                             child.name, child.process.pid, child.returncode)
        if exited and self.on_exit is not None:
            for spawn_id in exited:
                self.on_exit(spawn_id)

    def stop(self, grace: float = 2.0) -> None:
        """SIGTERM every child (they drain), SIGKILL what is left after `grace`, reap all.

        The grace stays under gunicorn's graceful timeout (3 s), which bounds this too."""
        with self._lock:
            self._closed = True
        self.terminate(grace)
        self._stop.set()
        if self._reaper is not None:
            self._reaper.join(5)
        self.reap()

    def terminate(self, grace: float = 2.0) -> None:
        """SIGTERM every running child, SIGKILL what is left after `grace`, and reap them;
        more may be started afterwards (unless the pool was stopped)."""
        with self._lock:
            children = list(self._children.values())
        running = [c for c in children if c.process.poll() is None]
        for child in running:
            _signal(child.process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in running:
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker process %s (pid %d) did not drain in %.1fs: SIGKILL",
                            child.name, child.process.pid, grace)
                child.process.kill()
                child.process.wait()
        self.reap()

    def _reap_once(self) -> None:
        if not self._stop.wait(REAP_INTERVAL):
            self.reap()


def default_command(url: str, name: str, app: str | None = None) -> list[str]:
    """`orderflow worker` run by this interpreter, so it works without the console script;
    with the server's `app` (MODULE:ATTR, found from the server's working directory, which
    the child shares), or the demo's handlers without one."""
    # A short drain grace: when this server goes away, so should its children.
    command = [sys.executable, "-m", "scheduler", "worker", "--server", url, "--name", name,
               "--drain-grace", "1"]
    return command if app is None else [*command, "--app", app]


def _signal(process: subprocess.Popen, sig: int) -> None:
    try:
        process.send_signal(sig)
    except ProcessLookupError:
        pass  # exited meanwhile
