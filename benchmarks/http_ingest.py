"""HTTP ingest: orders/s accepted by POST /api/orders and /api/orders/bulk on loopback.

Starts `orderflow serve` (gunicorn; journal on, and again with --no-persist), then 8 client
threads with keep-alive sessions post single orders for a fixed count, then bulk requests of
1,000 demo orders. Prints one JSON line.

    python benchmarks/http_ingest.py [--orders 3000] [--clients 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ORDER, emit, percentile  # noqa: E402
from server import Server  # noqa: E402


def post_orders(url: str, orders: int, clients: int) -> dict:
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = orders // clients

    def client(_: int) -> None:
        with requests.Session() as session:
            for _ in range(per_client):
                started = time.perf_counter()
                response = session.post(f"{url}/api/orders", json=ORDER, timeout=30)
                response.raise_for_status()
                with lock:
                    latencies.append(time.perf_counter() - started)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    elapsed = time.perf_counter() - start
    return {
        "orders_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
    }


def post_bulk(url: str, requests_count: int, size: int) -> dict:
    with requests.Session() as session:
        start = time.perf_counter()
        for _ in range(requests_count):
            session.post(
                f"{url}/api/orders/bulk", json={"count": size}, timeout=60
            ).raise_for_status()
        elapsed = time.perf_counter() - start
    return {"orders_per_s": round(requests_count * size / elapsed, 1)}


def measure(flags: list[str], args: argparse.Namespace) -> dict:
    with Server("--failure-rate", "0", "--latency-ms", "0,0", "--workers", "4", *flags) as server:
        single = post_orders(server.url, args.orders, args.clients)
        bulk = post_bulk(server.url, args.bulk_requests, 1000)
    return {"single": single, "bulk": bulk}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--bulk-requests", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        journal = measure(
            [
                "--db",
                str(Path(folder) / "ingest.db"),
                "--log-file",
                str(Path(folder) / "orderflow.log"),
            ],
            args,
        )
    memory = measure(["--no-persist"], args)
    emit(
        {"benchmark": "http_ingest", "clients": args.clients, "journal": journal, "memory": memory}
    )


if __name__ == "__main__":
    main()
