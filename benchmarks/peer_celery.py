"""Peer: Celery with a Redis broker and result backend, on the peers' two workloads (run by
benchmarks/peers.py).

The child starts its own `redis-server` (loopback, a free port, no persistence) and one
`celery worker` process (`--pool threads`, `--concurrency` = the steps in flight, as
orderflow's slots), then submits each order as a `chain` of three tasks and waits for every
chain's last result.

  io    each task a `time.sleep` of the order's seeded 50-250 ms (io_workload.py's table)
  noop  each task returns at once

Prints one JSON line. Without `celery[redis]` (the `bench` extra) or without `redis-server`
on PATH (Debian: `apt-get install redis-server`), prints a skip line and exits 0.

    python benchmarks/peer_celery.py --workload io|noop [--orders 1000] [--in-flight 256]
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HERE, STEPS, emit, peer_arguments  # noqa: E402

# The worker process imports this module (`celery -A peer_celery`) and finds the app here;
# the broker's address comes from the child through the environment.
URL_VARIABLE = "ORDERFLOW_PEER_CELERY_URL"


def make_app(url: str):
    from celery import Celery

    app = Celery("peer_celery", broker=url, backend=url)
    app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True,
                    task_acks_late=False, worker_prefetch_multiplier=4)

    @app.task(name="peer.wait")
    def wait(previous, seconds):
        time.sleep(seconds)

    @app.task(name="peer.noop")
    def noop(previous=None):
        return None

    return app


try:
    app = make_app(os.environ.get(URL_VARIABLE, "redis://127.0.0.1:6379/0"))
except ImportError:  # celery absent: main() says so with a skip line
    app = None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _wait_until(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def run(workload: str, orders: int, in_flight: int, seed: int) -> dict:
    import redis
    from celery import chain
    from celery.result import ResultSet
    from io_workload import durations

    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryDirectory() as folder, open(Path(folder) / "worker.log", "w") as log:
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", folder],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        worker = None
        try:
            client = redis.Redis(host="127.0.0.1", port=port)
            _wait_until("redis-server", lambda: _answers(client), timeout=30)
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "peer_celery", "worker", "--pool",
                 "threads", "--concurrency", str(in_flight), "--loglevel", "WARNING",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=HERE, env={**os.environ, URL_VARIABLE: url}, stdout=subprocess.DEVNULL,
                stderr=log, start_new_session=True)
            app.conf.update(broker_url=url, result_backend=url)  # before its first use
            _wait_until("the celery worker", lambda: app.control.ping(timeout=0.5),
                        timeout=120)
            wait, noop = app.tasks["peer.wait"], app.tasks["peer.noop"]
            table = durations(orders, seed) if workload == "io" else None
            start = time.perf_counter()
            if table is not None:
                finals = [chain(wait.s(None, row[0]), *(wait.s(s) for s in row[1:]))
                          .apply_async() for row in table]
            else:
                finals = [chain(*(noop.s() for _ in STEPS)).apply_async()
                          for _ in range(orders)]
            ResultSet(finals).get(timeout=900)
            elapsed = time.perf_counter() - start
        finally:
            if worker is not None:
                _stop(worker)
            _stop(server)
    return {"peer": "celery", "workload": workload, "orders": orders, "in_flight": in_flight,
            "seconds": round(elapsed, 3),
            "tasks_per_s": round(orders * len(STEPS) / elapsed, 1)}


def _answers(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - any refusal means "not yet"
        return False


def main() -> None:
    args = peer_arguments(__doc__)
    skipped = None
    if app is None:
        skipped = "celery[redis] is not installed (pip install -e '.[bench]')"
    elif shutil.which("redis-server") is None:
        skipped = "redis-server is not on PATH (Debian: apt-get install redis-server)"
    if skipped:
        emit({"peer": "celery", "workload": args.workload, "skipped": skipped})
        return
    emit(run(args.workload, args.orders, args.in_flight, args.seed))


if __name__ == "__main__":
    main()
