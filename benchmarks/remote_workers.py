"""Remote workers: steps/s through `orderflow worker` processes against the server's own thread
workers, and what each step costs the server (issue 21, items 1 and 5).

Every configuration is a fresh `orderflow serve` (gunicorn, loopback, ephemeral port, demo
steps made no-ops: `--failure-rate 0 --latency-ms 0,0`), in memory (`--no-persist`) and with
the SQLite journal, in the same run of this script:
  threads    `--workers 4 --slots 8`: the baseline, 32 slots in the server's process
  remote-N   `--workers 0` and N `orderflow worker --slots 8` processes (the real command,
             each in a session of its own), N in --processes (4, then 16 and 64)
For each: --orders demo orders posted in bulks of 1,000 after a warm-up, timed until every
one has completed (polled on /api/stats); the server's CPU seconds (its gunicorn worker
process, user + system) over that time per step; the workers' CPU per step; then the
single-order latency: --latency-orders orders one at a time, each the server's own
submitted-to-completed duration (its `order_completed` event), p50 and max. Prints one
JSON line, with each remote figure's ratio to the thread workers' in the same storage mode.

    python benchmarks/remote_workers.py [--orders 5000] [--processes 4,16,64]
                                        [--modes memory,journal] [--latency-orders 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ORDER, emit, percentile  # noqa: E402
from fleet_scale import cpu_seconds, server_process  # noqa: E402
from server import Server  # noqa: E402

from scheduler.chaos.serve_process import orderflow_command  # noqa: E402

NOOP_FLAGS = ("--failure-rate", "0", "--latency-ms", "0,0")
SLOTS = 8
THREAD_WORKERS = 4


def wait_for(what: str, check, timeout: float, pause: float = 0.05):
    """Poll `check()` until it returns something true; raise naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(pause)
    raise RuntimeError(f"timed out waiting for {what}")


class Workers:
    """N `orderflow worker` processes, each in its own session; stopped by their pids."""

    def __init__(self, url: str, count: int, log: Path):
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if k != "ORDERFLOW_TOKEN"}
        self.procs = [
            subprocess.Popen(
                [*orderflow_command(), "worker", "--server", url, "--slots", str(SLOTS),
                 "--log-level", "warning"],
                stdout=subprocess.DEVNULL, stderr=self.log, env=env, start_new_session=True)
            for _ in range(count)
        ]

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs if p.poll() is None)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.log.close()


def _healthy(session: requests.Session, url: str) -> bool:
    try:
        return session.get(f"{url}/healthz", timeout=5).ok
    except requests.RequestException:
        return False


def stats(session: requests.Session, url: str) -> dict:
    return session.get(f"{url}/api/stats", timeout=30).json()


def throughput(session: requests.Session, url: str, orders: int, cpu_of) -> dict:
    """Post `orders` in bulks, wait until all have completed: tasks/s and CPU per step."""
    before = stats(session, url)
    done_before = before["orders"]["completed"]
    steps_before = before["tasks"]["succeeded"]
    cpu_before = cpu_of()
    start = time.perf_counter()
    for first in range(0, orders, 1000):
        session.post(f"{url}/api/orders/bulk", json={"count": min(1000, orders - first)},
                     timeout=60).raise_for_status()
    last = wait_for("the orders to complete",
                    lambda: (lambda s: s if s["orders"]["completed"] - done_before >= orders
                             else None)(stats(session, url)),
                    timeout=900, pause=0.2)
    elapsed = time.perf_counter() - start
    cpu_after = cpu_of()
    steps = last["tasks"]["succeeded"] - steps_before
    if last["orders"]["failed"]:
        raise RuntimeError(f"{last['orders']['failed']} orders failed")
    return {"steps": steps, "seconds": round(elapsed, 2),
            "tasks_per_s": round(steps / elapsed, 1),
            "server_cpu_s": round(cpu_after["server"] - cpu_before["server"], 2),
            "server_cpu_ms_per_step": round(
                1000 * (cpu_after["server"] - cpu_before["server"]) / steps, 3),
            "workers_cpu_ms_per_step": round(
                1000 * (cpu_after["workers"] - cpu_before["workers"]) / steps, 3),
            "server_cores": round((cpu_after["server"] - cpu_before["server"]) / elapsed, 2)}


def latency(session: requests.Session, url: str, count: int) -> dict:
    """Orders one at a time: each its server-side submitted-to-completed time."""
    durations = []
    for _ in range(count):
        after = stats(session, url)["last_seq"]
        response = session.post(f"{url}/api/orders", json=ORDER, timeout=30)
        response.raise_for_status()
        order_id = response.json()["id"]

        def completed(order_id=order_id, after=after):
            page = session.get(f"{url}/api/events", params={"after": after, "limit": 1000},
                               timeout=30).json()["events"]
            return next((e["duration"] for e in page if e["type"] == "order_completed"
                         and e.get("order_id") == order_id), None)

        durations.append(wait_for(f"order {order_id}", completed, timeout=60, pause=0.005))
    return {"latency_p50_ms": round(percentile(durations, 50) * 1000, 2),
            "latency_max_ms": round(max(durations) * 1000, 2)}


def measure(mode: str, processes: int, orders: int, latency_orders: int,
            folder: Path) -> dict:
    """One configuration: processes == 0 means the server's thread workers."""
    name = "threads" if processes == 0 else f"remote-{processes}"
    storage = (["--no-persist", "--log-file", str(folder / f"{name}-{mode}.log")]
               if mode == "memory" else ["--db", str(folder / f"{name}.db")])
    workers_flag = str(THREAD_WORKERS if processes == 0 else 0)
    with Server("--workers", workers_flag, "--slots", str(SLOTS), *NOOP_FLAGS, *storage,
                timeout=60) as server, requests.Session() as session:
        wait_for("the server to answer", lambda: _healthy(session, server.url), timeout=60)
        worker_pid = server_process(server.proc.pid)
        workers = (Workers(server.url, processes, folder / f"{name}-{mode}-workers.log")
                   if processes else None)
        try:
            expected = THREAD_WORKERS if processes == 0 else processes
            wait_for(f"{expected} workers alive",
                     lambda: stats(session, server.url)["workers"].get("alive", 0) >= expected,
                     timeout=120, pause=0.2)

            def cpu_of() -> dict:
                return {"server": cpu_seconds(worker_pid),
                        "workers": workers.cpu() if workers else 0.0}

            throughput(session, server.url, min(500, orders), cpu_of)  # warm-up
            figures = throughput(session, server.url, orders, cpu_of)
            figures.update(latency(session, server.url, latency_orders))
        finally:
            if workers:
                workers.stop()
    return {"config": name, "mode": mode, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--processes", default="4,16,64",
                        help="remote worker process counts, comma separated")
    parser.add_argument("--modes", default="memory,journal")
    parser.add_argument("--latency-orders", type=int, default=20)
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",") if n]
    modes = [m for m in args.modes.split(",") if m]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            base = measure(mode, 0, args.orders, args.latency_orders, Path(tmp))
            results[f"threads-{mode}"] = base
            print(base, file=sys.stderr, flush=True)
            for count in counts:
                figures = measure(mode, count, args.orders, args.latency_orders, Path(tmp))
                figures["vs_threads"] = round(figures["tasks_per_s"] / base["tasks_per_s"], 3)
                results[f"remote-{count}-{mode}"] = figures
                print(figures, file=sys.stderr, flush=True)
    emit({"benchmark": "remote_workers", "orders": args.orders, "slots": SLOTS,
          "thread_workers": THREAD_WORKERS, "results": results,
          "targets": {"remote-4 vs_threads": 0.5}})


if __name__ == "__main__":
    main()
