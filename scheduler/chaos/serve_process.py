"""`orderflow serve` as a child process, in a process group of its own, for the chaos driver,
the crash tests and the benchmarks: SIGKILL of the group takes the gunicorn master and its
worker at once, as a crash of the server would. Worker processes the server started run in
sessions of their own and follow within about a heartbeat, when they see their parent gone."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import requests


def orderflow_command() -> list[str]:
    """The `orderflow` console script next to this interpreter (or the module as fallback)."""
    script = Path(sys.executable).parent / "orderflow"
    return [str(script)] if script.exists() else [sys.executable, "-m", "scheduler"]


def health(url: str) -> tuple[int | None, dict]:
    """A server's /healthz: (status, body); (None, {}) when it cannot be reached."""
    try:
        response = requests.get(f"{url}/healthz", timeout=2)
        return response.status_code, response.json()
    except (requests.RequestException, ValueError):
        return None, {}


class ServeProcess:
    def __init__(self, *flags: str, port: int = 0, timeout: float = 30.0,
                 stderr: int | IO[str] = subprocess.DEVNULL):
        """`stderr`: where the server's console log goes (a file to read it afterwards)."""
        self.flags = flags
        env = {k: v for k, v in os.environ.items() if k != "ORDERFLOW_TOKEN"}
        self.proc = subprocess.Popen(
            [*orderflow_command(), "serve", "--port", str(port), *flags],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        match = None
        while match is None:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, remaining))
            line = self.proc.stdout.readline() if ready else ""
            if not line:  # timed out, or the server exited before it listened
                self.kill()
                raise RuntimeError(f"orderflow serve {' '.join(flags)} did not start")
            match = re.search(r"http://[\d.]+:(\d+)", line)
        self.url, self.port = match.group(0), int(match.group(1))

    def restarted(self, attempts: int = 10, pause: float = 0.5,
                  flags: tuple[str, ...] | None = None) -> ServeProcess:
        """Start again with the same flags (or `flags`: a deploy) on the same port (clients
        know only that URL), once this one has ended. The port may be busy for a moment:
        try a few times."""
        for attempt in range(attempts):
            try:
                return ServeProcess(*(self.flags if flags is None else flags), port=self.port)
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                time.sleep(pause)
        raise AssertionError("unreachable")

    def pause(self) -> None:
        """SIGSTOP the whole group: the server freezes, its connections stay open."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the whole group."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the whole group: no shutdown code runs anywhere."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc.stdout.close()

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (a clean shutdown); SIGKILL if it does not end in time. Returns the code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()
