"""The chaos driver's own `orderflow worker` processes: remote workers that outlive servers.

Unlike the worker processes a server starts (which exit with it), these belong to the
driver: each runs in a process group of its own, so the driver can stall it (SIGSTOP, then
SIGCONT), crash it (SIGKILL) and, at the end, stop every one of them by pid. Across a server
SIGKILL and restart on the same port they reconnect and join the new server. Their logs go
to files (never a pipe: a full pipe would block a process and stop its heartbeats).
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .serve_process import orderflow_command

# The name prefix of the driver's workers, as /api/workers shows it ("chaos-remote-3").
NAME_PREFIX = "chaos-remote-"


@dataclass
class RemoteWorker:
    name: str
    process: subprocess.Popen
    log_path: Path
    stopped: bool = False  # SIGSTOPped and not yet continued

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class Fleet:
    """Starts, stalls, kills and finally stops the driver's remote worker processes."""

    url: str
    log_dir: Path
    token: str | None = None
    concurrency: int = 2
    # More `orderflow worker` arguments (the app whose handlers it runs).
    args: tuple[str, ...] = ()
    workers: list[RemoteWorker] = field(default_factory=list)
    _numbers: int = 0

    def start(self, count: int = 1, args: tuple[str, ...] | None = None) -> list[RemoteWorker]:
        """`count` more workers, with `args` instead of the fleet's (an older app's)."""
        started = []
        env = {k: v for k, v in os.environ.items() if k != "ORDERFLOW_TOKEN"}
        if self.token:
            env["ORDERFLOW_TOKEN"] = self.token  # through the environment: never in `ps`
        for _ in range(count):
            self._numbers += 1
            name = f"{NAME_PREFIX}{self._numbers}"
            path = self.log_dir / f"{name}.log"
            with path.open("w") as log:
                process = subprocess.Popen(
                    [*orderflow_command(), "worker", "--server", self.url, "--name", name,
                     "--slots", str(self.concurrency),
                     *(self.args if args is None else args)],
                    env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            worker = RemoteWorker(name, process, path)
            self.workers.append(worker)
            started.append(worker)
        return started

    def running(self) -> list[RemoteWorker]:
        return [w for w in self.workers if w.process.poll() is None]

    def exited(self) -> list[RemoteWorker]:
        return [w for w in self.workers if w.process.poll() is not None]

    def by_name(self, name: str) -> RemoteWorker | None:
        return next((w for w in self.workers if w.name == name), None)

    def stall(self, worker: RemoteWorker) -> None:
        """SIGSTOP: the process, its heartbeats and its handlers freeze."""
        _signal(worker, signal.SIGSTOP)
        worker.stopped = True

    def resume(self, worker: RemoteWorker) -> None:
        _signal(worker, signal.SIGCONT)
        worker.stopped = False

    def kill(self, worker: RemoteWorker) -> None:
        """SIGKILL: a crash. The process is reaped here (no zombie)."""
        _signal(worker, signal.SIGKILL)
        worker.process.wait(10)

    def stop_all(self) -> None:
        """SIGKILL every process still running, by pid (a stopped one too), and reap it."""
        for worker in self.workers:
            if worker.process.poll() is None:
                _signal(worker, signal.SIGKILL)
            try:
                worker.process.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignored
                pass


def _signal(worker: RemoteWorker, sig: int) -> None:
    """Send `sig` by pid, only to a process not yet reaped (so the pid is still ours)."""
    if worker.process.poll() is None:
        try:
            os.kill(worker.pid, sig)
        except ProcessLookupError:
            pass
