"""`make example`: the shop on loopback: the gateway, `orderflow serve --app` and two
`orderflow worker --app --tags payments` processes. Ctrl-C stops them all.

    python -m examples.shop.run [--port 5000] [--gateway-port 8700] [--db logs/shop.db]
    make example ARGS='--port 5001'

If anything fails to start (a taken port, say), everything started so far is stopped.

The server's own thread workers offer no tags, so the payment step (tagged `payments`) runs
only on the two worker processes, as it would in a shop where only machines in the payments
network zone may reach the gateway; packing and shipping run anywhere.

An `order_life` order waits for its payment to be confirmed and its parcel delivered: send
them as the payment provider's and the carrier's webhooks would (or from the order view):

    curl -X POST localhost:5000/api/orders/$ID/signals/payment_confirmed --json '{}'
"""

from __future__ import annotations

import argparse
import os
import re
import select
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = "examples.shop.app:app"


class Shop:
    """The example's processes, each in a process group of its own, stopped by PID."""

    def __init__(self, db: str, port: int = 0, gateway_port: int = 0, fail: float = 0.1,
                 slow: float = 0.05, workers: int = 2, seed: int | None = None,
                 settings: dict[str, str] | None = None):
        # settings: the app's SHOP_* variables for the server and workers alike (a test
        # shortens the payment window and the review delay to seconds).
        self.db, self.port, self.settings = db, port, dict(settings or {})
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        try:
            self._start_all(gateway_port, fail, slow, workers, seed)
        except BaseException:
            self.stop()  # whatever failed (a taken port, Ctrl-C): nothing is left running
            raise

    def _start_all(self, gateway_port: int, fail: float, slow: float, workers: int,
                   seed: int | None) -> None:
        gateway_args = ["--port", str(gateway_port), "--fail", str(fail), "--slow", str(slow)]
        if seed is not None:
            gateway_args += ["--seed", str(seed)]
        self.gateway = self._start([sys.executable, "-m", "examples.shop.gateway",
                                    *gateway_args])
        self.gateway_url = self._wait_for_url(self.gateway, "gateway")
        self.env = {**os.environ, **self.settings, "SHOP_GATEWAY": self.gateway_url}
        self.env.pop("ORDERFLOW_TOKEN", None)
        self.server = self.start_server()
        for _ in range(workers):
            self.add_worker()

    def start_server(self) -> subprocess.Popen:
        server = self._start([sys.executable, "-m", "scheduler", "serve", "--app", APP,
                              "--db", self.db, "--port", str(self.port), "--workers", "2",
                              "--log-level", "warning"], env=self.env)
        self.server_url = self._wait_for_url(server, "server")
        self.port = int(self.server_url.rsplit(":", 1)[1])
        self.server = server
        return server

    def add_worker(self) -> subprocess.Popen:
        worker = self._start([sys.executable, "-m", "scheduler", "worker", "--app", APP,
                              "--tags", "payments", "--server", self.server_url,
                              "--slots", "8", "--log-level", "warning"],
                             env=self.env, quiet=True)
        self.workers.append(worker)
        return worker

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL a process's whole group: a crash, nothing runs on the way out."""
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()

    def _start(self, command: list[str], env: dict | None = None,
               quiet: bool = False) -> subprocess.Popen:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, text=True, start_new_session=True,
            stdout=subprocess.DEVNULL if quiet else subprocess.PIPE,
            stderr=None if not quiet else subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    @staticmethod
    def _wait_for_url(proc: subprocess.Popen, what: str, timeout: float = 30.0) -> str:
        """The first http://127.0.0.1:PORT the process prints (it listens from then on)."""
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            line = proc.stdout.readline() if ready else ""
            if not line:
                raise RuntimeError(f"the {what} did not start")
            match = re.search(r"http://127\.0\.0\.1:\d+", line)
            if match:
                return match.group(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--gateway-port", type=int, default=8700)
    parser.add_argument("--db", default="logs/shop.db")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C
    try:
        shop = Shop(args.db, args.port, args.gateway_port)
    except RuntimeError as exc:
        # The process that failed said why on stderr (a taken port names its flag).
        print(f"make example: {exc}; nothing is left running. Ports: ARGS='--port N "
              "--gateway-port N'", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    try:
        print(f"gateway {shop.gateway_url}; dashboard {shop.server_url}; 2 payment workers. "
              "Ctrl-C stops everything.", flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        shop.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
