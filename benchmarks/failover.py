"""Failover latency of remote workers: from SIGKILL of an `orderflow worker` process to its
in-flight task running on another worker.

`orderflow serve` (gunicorn, no thread workers, no persistence) and --workers `orderflow
worker` processes, all real processes. Each round submits one order, waits until its payment
runs on some process, SIGKILLs that process and reads when the payment started again on
another one: the `ts` of that `task_started` event minus the moment of the kill (both wall
clock, same machine). The server finds the killed process by its closed connection: it is
declared dead once it has not come back within the reconnect grace (WORKER_RECONNECT_GRACE,
0.5 s), well before its heartbeats run out. A replacement process then joins. Prints one
JSON line: p50/p99/max over --kills rounds and whether p99 is within the grace + 0.5 s
(exit status 1 if not); before the grace, the bound was heartbeat_timeout + 2 x
heartbeat_interval.

    python benchmarks/failover.py [--kills 20] [--heartbeat-interval 0.5] [--heartbeat-timeout 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = {"customer": "failover", "items": [{"sku": "SKU-1", "qty": 1, "price": 1.0}]}
# The server's WORKER_RECONNECT_GRACE (dashboard/config.py; not imported: no Flask here).
RECONNECT_GRACE = 0.5
# The payment runs this long, so it is surely still in flight when its process is killed.
PAYMENT_SECONDS = 1.0


def _hold(ctx):
    ctx.sleep(PAYMENT_SECONDS)
    return {"worker": ctx.worker_id}


def _quick(ctx):
    return {"worker": ctx.worker_id}


# What the worker processes run: `--handlers failover:HANDLERS` with this folder on the path.
HANDLERS = {"payment": _hold, "packing": _quick, "shipping": _quick}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 100]."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


class Bench:
    """The server, its worker processes and a reader of its event stream (HTTP)."""

    def __init__(self, args: argparse.Namespace, tmp: str):
        import requests
        from server import Server  # benchmarks/server.py: `orderflow serve` as a subprocess

        self.args = args
        self.server = Server(
            "--no-persist",
            "--workers",
            "0",
            "--log-file",
            f"{tmp}/of.log",
            "--heartbeat-interval",
            str(args.heartbeat_interval),
            "--heartbeat-timeout",
            str(args.heartbeat_timeout),
            "--failure-rate",
            "0",
            "--latency-ms",
            "0,0",
            "--log-level",
            "error",
        )
        self.http = requests.Session()
        self.procs: dict[int, subprocess.Popen] = {}
        self.seen: list[dict] = []
        self._after = 0

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        self.http.close()
        self.server.stop()

    def wait_event(self, predicate: Callable[[dict], bool], timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.seen:
                if predicate(event):
                    return event
            if time.monotonic() > deadline:
                raise TimeoutError("no matching event")
            page = self.http.get(
                f"{self.server.url}/api/events",
                params={"after": self._after, "limit": 5000},
                timeout=10,
            ).json()
            if page["events"]:
                self.seen += page["events"]
                self._after = page["events"][-1]["seq"]
            else:
                time.sleep(0.005)  # polling the server's event API; timing comes from `ts`

    def pid_of(self, worker_id: str) -> int | None:
        workers = self.http.get(f"{self.server.url}/api/workers", timeout=10).json()["workers"]
        return next((w.get("pid") for w in workers if w["id"] == worker_id), None)

    def start_worker(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH")])
            ),
        }
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scheduler",
                "worker",
                "--server",
                self.server.url,
                "--handlers",
                "failover:HANDLERS",
                "--slots",
                str(self.args.slots),
                "--log-level",
                "warning",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs[proc.pid] = proc
        self.wait_event(
            lambda e: e["type"] == "worker_added" and self.pid_of(e["worker_id"]) == proc.pid, 30
        )

    def one_kill(self) -> tuple[float, float]:
        """(seconds until the task ran elsewhere, seconds until the worker was declared dead)."""
        order_id = self.http.post(f"{self.server.url}/api/orders", json=ORDER, timeout=10).json()[
            "id"
        ]
        started = self.wait_event(
            lambda e: e["type"] == "task_started" and e["order_id"] == order_id, 30
        )
        victim = started["worker_id"]
        proc = self.procs.pop(self.pid_of(victim))
        killed = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        moved = self.wait_event(
            lambda e: (
                e["type"] == "task_started"
                and e["order_id"] == order_id
                and e["worker_id"] != victim
            ),
            60,
        )
        dead = self.wait_event(
            lambda e: e["type"] == "worker_dead" and e["worker_id"] == victim, 60
        )
        proc.wait(10)
        return moved["ts"] - killed, dead["ts"] - killed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--workers", type=int, default=3, help="worker processes at once")
    parser.add_argument("--slots", type=int, default=2, help="slots per worker process")
    parser.add_argument("--heartbeat-interval", type=float, default=0.5)
    parser.add_argument("--heartbeat-timeout", type=float, default=2.0)
    args = parser.parse_args()
    failover, detection = [], []
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args, tmp)
        try:
            for _ in range(args.workers):
                bench.start_worker()
            for _ in range(args.kills):
                moved, dead = bench.one_kill()
                failover.append(moved)
                detection.append(dead)
                bench.start_worker()  # keep the cluster at --workers processes
        finally:
            bench.close()
    bound = RECONNECT_GRACE + 0.5
    p99 = percentile(failover, 99)
    print(
        json.dumps(
            {
                "benchmark": "failover",
                "server": "orderflow serve (gunicorn gthread)",
                "kills": args.kills,
                "worker_processes": args.workers,
                "heartbeat_interval_s": args.heartbeat_interval,
                "heartbeat_timeout_s": args.heartbeat_timeout,
                "bound_s": round(bound, 3),
                "p50_s": round(percentile(failover, 50), 3),
                "p99_s": round(p99, 3),
                "min_s": round(min(failover), 3),
                "max_s": round(max(failover), 3),
                "detection_p50_s": round(percentile(detection, 50), 3),
                "within_bound": p99 <= bound,
            }
        ),
        flush=True,
    )
    return 0 if p99 <= bound else 1


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
