"""Failover latency of remote workers: from SIGKILL of an `orderflow worker` process to its
in-flight task running on another worker.

A live server (Werkzeug, in this process, TCP_NODELAY as gunicorn sets it) with no thread
workers and --workers worker processes. Each round submits one order, waits until its
payment runs on some process, SIGKILLs that process and times until the payment starts on
another one (the heartbeat monitor must notice the silence first), then starts a
replacement. Prints one JSON line: p50/p99/max over --kills rounds, and whether p99 is
within heartbeat_timeout + 2 x heartbeat_interval.

    python benchmarks/failover.py [--kills 20] [--heartbeat-interval 0.5] [--heartbeat-timeout 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = {"customer": "failover", "items": [{"sku": "SKU-1", "qty": 1, "price": 1.0}]}
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
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class Recorder:
    """Cluster events with the moment they reached this process (monotonic clock)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._seen: list[tuple[float, dict]] = []

    def __call__(self, events: list[dict]) -> None:
        now = time.monotonic()
        with self._cond:
            self._seen.extend((now, e) for e in events)
            self._cond.notify_all()

    def wait(self, predicate, timeout: float) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for arrived, event in self._seen:
                    if predicate(event):
                        return arrived, event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no matching event")
                self._cond.wait(left)


class Bench:
    def __init__(self, args: argparse.Namespace):
        sys.path.insert(0, str(HERE.parent))
        from werkzeug.serving import make_server

        from dashboard import create_app, services
        from scheduler import Cluster

        self.args = args
        self.cluster = Cluster(workers=0, heartbeat_interval=args.heartbeat_interval,
                               heartbeat_timeout=args.heartbeat_timeout)
        self.app = create_app({"PING_INTERVAL": 5.0, "PING_TIMEOUT": 5.0}, cluster=self.cluster)
        self.services = services(self.app)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.recorder = Recorder()
        self.procs: dict[int, subprocess.Popen] = {}
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Bench:
        self.cluster.start()
        self.services.start()
        self.cluster.subscribe(self.recorder, name="failover-bench")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        self.services.disconnect_clients()
        self.server.shutdown()
        self.server.server_close()
        self.services.stop()
        self.cluster.stop()

    def start_worker(self) -> str:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
            str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen(
            [sys.executable, "-m", "dashboard.cli", "worker", "--server", self.url,
             "--handlers", "failover:HANDLERS", "--concurrency", str(self.args.concurrency),
             "--log-level", "warning"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        self.procs[proc.pid] = proc
        _, event = self.recorder.wait(
            lambda e: e["type"] == "worker_added" and self._pid(e["worker_id"]) == proc.pid, 30)
        return event["worker_id"]

    def _pid(self, worker_id: str) -> int | None:
        return next((w.get("pid") for w in self.cluster.workers() if w["id"] == worker_id), None)

    def one_kill(self) -> tuple[float, float]:
        """(seconds until the task ran elsewhere, seconds until the worker was declared dead)."""
        order_id = self.cluster.submit(dict(ORDER))
        _, started = self.recorder.wait(
            lambda e: e["type"] == "task_started" and e["order_id"] == order_id, 30)
        victim = started["worker_id"]
        proc = self.procs.pop(self._pid(victim))
        killed = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        moved, _ = self.recorder.wait(
            lambda e: e["type"] == "task_started" and e["order_id"] == order_id
            and e["worker_id"] != victim, 60)
        dead, _ = self.recorder.wait(
            lambda e: e["type"] == "worker_dead" and e["worker_id"] == victim, 60)
        proc.wait(10)
        return moved - killed, dead - killed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--workers", type=int, default=3, help="worker processes at once")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--heartbeat-interval", type=float, default=0.5)
    parser.add_argument("--heartbeat-timeout", type=float, default=2.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    failover, detection = [], []
    with Bench(args) as bench:
        for _ in range(args.workers):
            bench.start_worker()
        for _ in range(args.kills):
            moved, dead = bench.one_kill()
            failover.append(moved)
            detection.append(dead)
            bench.start_worker()  # keep the cluster at --workers processes
    bound = args.heartbeat_timeout + 2 * args.heartbeat_interval
    p99 = percentile(failover, 99)
    print(json.dumps({
        "benchmark": "failover",
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
    }), flush=True)
    return 0 if p99 <= bound else 1


if __name__ == "__main__":
    sys.exit(main())
