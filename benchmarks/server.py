"""Run `orderflow serve` (gunicorn, the production server) as a subprocess for benchmarks."""

from __future__ import annotations

import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path


class Server:
    def __init__(self, *flags: str, timeout: float = 30.0):
        script = Path(sys.executable).parent / "orderflow"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "dashboard.cli"]
        self.proc = subprocess.Popen([*command, "serve", "--port", "0", *flags],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + timeout
        self.url = ""
        while not self.url:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                self.stop()
                raise RuntimeError("orderflow serve did not print its URL")
            match = re.search(r"(http://[\d.:]+)", self.proc.stdout.readline())
            if match:
                self.url = match.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stdout.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
