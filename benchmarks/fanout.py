"""Dashboard fan-out: events/s delivered to 0, 1 and 10 Socket.IO clients, and how much
the clients slow the cluster.

Starts `orderflow serve --no-persist` (gunicorn), connects K python-socketio clients over
WebSocket that count the events they receive, submits N demo orders in bulk and times how
long the cluster takes to finish them. Prints one JSON line.

    python benchmarks/fanout.py [--orders 5000]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import requests
import socketio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402
from server import Server  # noqa: E402


class CountingClient:
    def __init__(self, url: str):
        self.count = 0
        self.snapshots = 0
        self._lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("events", self._on_events)
        self.sio.on("snapshot", self._on_snapshot)
        self.sio.connect(url, transports=["websocket"], wait_timeout=10)

    def _on_events(self, events):
        with self._lock:
            self.count += len(events)

    def _on_snapshot(self, _snapshot):
        with self._lock:
            self.snapshots += 1


def run(clients: int, orders: int) -> dict:
    with Server(
        "--no-persist",
        "--failure-rate",
        "0",
        "--latency-ms",
        "0,0",
        "--workers",
        "4",
        "--threads",
        "64",
    ) as server:
        connected = [CountingClient(server.url) for _ in range(clients)]
        try:
            session = requests.Session()
            start = time.perf_counter()
            for first in range(0, orders, 1000):
                session.post(
                    f"{server.url}/api/orders/bulk",
                    json={"count": min(1000, orders - first)},
                    timeout=60,
                ).raise_for_status()
            while True:
                stats = session.get(f"{server.url}/api/stats", timeout=10).json()
                if stats["orders"]["completed"] + stats["orders"]["failed"] >= orders:
                    break
                threading.Event().wait(0.02)
            cluster_seconds = time.perf_counter() - start
            last_seq = stats["last_seq"]
            # Let the stream deliver what is left (it flushes every 100 ms).
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(c.count < last_seq * 0.9 for c in connected):
                threading.Event().wait(0.05)
            delivered_seconds = time.perf_counter() - start
        finally:
            for client in connected:
                client.sio.disconnect()
    per_client = [c.count for c in connected]
    return {
        "clients": clients,
        "cluster_seconds": round(cluster_seconds, 3),
        "events": last_seq,
        "events_per_s_per_client": round(min(per_client) / delivered_seconds, 1)
        if per_client
        else 0,
        "events_per_s_total": round(sum(per_client) / delivered_seconds, 1) if per_client else 0,
        "snapshots": sum(c.snapshots for c in connected),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5000)
    args = parser.parse_args()
    results = [run(k, args.orders) for k in (0, 1, 10)]
    base = results[0]["cluster_seconds"]
    for result in results:
        result["slowdown"] = round(result["cluster_seconds"] / base, 2)
    emit({"benchmark": "fanout", "orders": args.orders, "runs": results})


if __name__ == "__main__":
    main()
