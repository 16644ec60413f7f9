"""`orderflow demo`: a console demo of the cluster: orders flow, a worker is killed, its
work recovers. No server, no journal."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from ..demo.handlers import Chaos, demo_handlers
from ..runtime.cluster import Cluster

DEMO_ORDER = {"customer": "demo", "items": [{"sku": "BOOK-1", "qty": 1, "price": 12.5}]}


def run_demo(orders: int = 200, workers: int = 4, out=sys.stdout) -> int:
    """Run the demo to the end; exit status 0 when every order reached a final state."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    chaos = Chaos(failure_rate=0.1, latency_ms=(20, 60), seed=1)
    cluster = Cluster(workers=workers, chaos=chaos, handlers=demo_handlers(chaos), seed=1)
    with cluster:
        ids = [cluster.submit(dict(DEMO_ORDER)) for _ in range(orders)]
        print(f"submitted {len(ids)} orders to {workers} workers (10% failure rate)", file=out)
        victim = cluster.workers()[0]["id"]
        killed = False
        deadline = time.monotonic() + 120
        while not cluster.wait_until_idle(timeout=0.5) and time.monotonic() < deadline:
            stats = cluster.stats()
            done = stats["orders"]["completed"] + stats["orders"]["failed"]
            print(
                f"orders done {done}/{orders}  retries {stats['retries']}  "
                f"reassignments {stats['reassignments']}  workers {stats['workers']}",
                file=out,
            )
            if not killed and done >= orders // 4:
                print(f"*** killing worker {victim}; the heartbeat monitor must notice", file=out)
                cluster.kill_worker(victim)
                killed = True
        stats = cluster.stats()
        final = {s: n for s, n in stats["orders"].items() if n}
        print(
            f"finished: {final}; retries {stats['retries']}, "
            f"reassignments {stats['reassignments']}",
            file=out,
        )
        return 0 if stats["orders"]["completed"] + stats["orders"]["failed"] == orders else 1


HELP = "run a console demo: orders flow, a worker dies, work recovers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)


def run(args: argparse.Namespace) -> int:
    return run_demo(orders=args.orders, workers=args.workers)
