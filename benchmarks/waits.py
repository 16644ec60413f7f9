"""Waits and timers at scale (issue 22, items 2 and 3), each figure against a baseline of the
same run:

1. `park`: a server's state (a `Cluster` in a fresh interpreter, in memory, no workers)
   holding N (100,000) orders parked in a wait (each with its timeout: a timer) against N
   idle orders of the same shape (two steps, the first queued: nothing has run; no worker
   could run it), each kind in its own
   child: RSS per order, the bytes a waiting order costs beyond an idle one (target <= 1 KB),
   and the time to list them (`GET /api/orders?status=...` through the cluster's search,
   pages of 500, every order) against listing the idle ones.
2. `timers`: N (100,000) orders submitted for the same second (`not_before`) on a cluster
   whose clock is moved to it: seconds from the due time until the monitor thread has fired
   every timer (target: within 5 s), and the pure core's one tick that fires them.
3. `http`: `orderflow serve` with its SQLite journal and 2 thread workers, parked orders
   filled in bulks; submit latency of one client alone (the baseline, before and after);
   8 clients submitting as fast as they are answered, then 8 clients signalling parked orders
   as fast (target: a signal's p50/p99 <= a submit's under the same load); and one client's
   submits while the 8 signal (target: p99 <= 2 x the baseline's), and, as the control, while
   the 8 submit instead (what 8 clients as fast as they can cost, whatever they ask).

    python benchmarks/waits.py [--orders 100000] [--parked 20000] [--seconds 20]
                               [--parts park,timers,http]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import ORDER, current_rss_mb, emit, percentile, run_child  # noqa: E402

from scheduler import App  # noqa: E402

PAGE = 500
CLIENTS = 8


def _noop(ctx):
    return None


def bench_app() -> App:
    """ship (a no-op), after a wait for `confirmed` (a day's timeout) in `park`, after a
    no-op `prep` in `idle` (the same shape: two steps, the first holding the order); `plain`
    ships at once."""
    app = App("waits_bench")
    app.add_step("prep", _noop)
    app.add_step("ship", _noop)
    app.wait("confirmed", timeout="1d", on_timeout="cancel")
    app.workflow("park", ["confirmed", "ship"])
    app.workflow("idle", ["prep", "ship"])
    app.workflow("plain", ["ship"])
    return app


app = bench_app()  # `orderflow serve --app waits:app`


# ------------------------------------------------------------------ 1. park (a child each)

def park_child(kind: str, orders: int) -> dict:
    """RSS of N orders of `kind` (park: waiting; idle: queued) and the time to list them."""
    from scheduler import Cluster
    from scheduler.engine.records import OrderQuery

    cluster = Cluster(workers=0, app=bench_app(), max_unfinished_orders=orders + 1000)
    cluster.start()
    try:
        workflow, status = ("park", "waiting") if kind == "park" else ("idle", "pending")
        cluster.submit_many([ORDER] * 10, workflow)  # warm: first-use allocations
        gc.collect()
        before = current_rss_mb()
        started = time.perf_counter()
        for first in range(0, orders, 10_000):
            cluster.submit_many([ORDER] * min(10_000, orders - first), workflow)
        submit_s = time.perf_counter() - started
        gc.collect()
        after = current_rss_mb()
        stats = cluster.stats()
        assert stats["orders"][status] == orders + 10, stats["orders"]
        started = time.perf_counter()
        listed, cursor = 0, None
        while True:
            page = cluster.search_orders(OrderQuery(status=status), limit=PAGE, before=cursor)
            listed += len(page)
            if len(page) < PAGE:
                break
            cursor = page[-1]["number"]
        list_s = time.perf_counter() - started
        assert listed == orders + 10, listed
        first_page = page_time(cluster, OrderQuery(status=status))
        return {"rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1),
                "bytes_per_order": round((after - before) * 1024 * 1024 / orders),
                "submit_s": round(submit_s, 2), "list_all_s": round(list_s, 2),
                "first_page_ms": round(first_page * 1000, 2),
                "timers_pending": stats["timers_pending"]}
    finally:
        cluster.stop()


def page_time(cluster, query, rounds: int = 20) -> float:
    """Median time of the first page of `query`."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        cluster.search_orders(query, limit=PAGE)
        times.append(time.perf_counter() - started)
    return percentile(times, 50)


def park(orders: int) -> dict:
    idle = run_child("waits.py", "--child", "idle", "--orders", str(orders))
    parked = run_child("waits.py", "--child", "park", "--orders", str(orders))
    extra = parked["bytes_per_order"] - idle["bytes_per_order"]
    return {"orders": orders, "idle": idle, "parked": parked,
            "extra_bytes_per_waiting_order": extra,
            "rss_ratio": round(parked["bytes_per_order"] / idle["bytes_per_order"], 2),
            "list_all_ratio": round(parked["list_all_s"] / idle["list_all_s"], 2),
            "first_page_ratio": round(parked["first_page_ms"] / idle["first_page_ms"], 2),
            "met": extra <= 1024}


# ------------------------------------------------------------------ 2. timers (a child)

class FakeClock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def timers_child(orders: int) -> dict:
    """N orders due in the same second: the cluster's monitor fires them all; and the pure
    core's one tick for the same N."""
    from scheduler import Cluster
    from scheduler.engine.config import ClusterConfig
    from scheduler.engine.core import SchedulerCore

    due = 2_000_000_000.0
    clock = FakeClock(due - 3600)
    cluster = Cluster(workers=0, app=bench_app(), clock=clock,
                      max_unfinished_orders=orders + 1000, heartbeat_interval=0.5)
    cluster.start()
    try:
        core = cluster._core  # noqa: SLF001 - the benchmark submits below the HTTP door
        with cluster._lock:  # noqa: SLF001
            for i in range(orders):
                core.submit(f"t{i}", dict(ORDER), now=clock.now, workflow="plain",
                            not_before=due + (i % 1000) / 1000)
        assert cluster.stats()["timers_pending"] == orders
        clock.now = due + 1.0  # the second is over: every timer is due
        started = time.perf_counter()
        while cluster.stats()["timers_pending"]:
            time.sleep(0.05)
        fired_s = time.perf_counter() - started
        ready = cluster.stats()["tasks"]["ready"]
    finally:
        cluster.stop()
    pure = SchedulerCore(ClusterConfig(workers=0, max_unfinished_orders=orders + 1000),
                         bench_app().workflows)
    for i in range(orders):
        pure.submit(f"t{i}", dict(ORDER), now=0.0, workflow="plain",
                    not_before=100.0 + (i % 1000) / 1000)
    started = time.perf_counter()
    ticks = 0
    while len(pure.timers):
        pure.tick(101.0)
        ticks += 1
    tick_s = time.perf_counter() - started
    return {"timers": orders, "ready_after": ready, "all_fired_s": round(fired_s, 3),
            "core_ticks_s": round(tick_s, 3), "core_ticks": ticks,
            "met": fired_s <= 5.0 and ready == orders}


# ------------------------------------------------------------------ 3. http

def _post_loop(url: str, paths, body: dict, stop: threading.Event,
               times: list[float], lock: threading.Lock, statuses: dict) -> None:
    import requests

    with requests.Session() as session:
        for path in paths:
            if stop.is_set():
                return
            started = time.perf_counter()
            response = session.post(f"{url}{path}", json=body, timeout=60)
            took = time.perf_counter() - started
            with lock:
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code in (200, 201):
                    times.append(took)


def load(url: str, paths_per_client: list, body: dict, seconds: float
         ) -> tuple[list[float], dict]:
    """Clients each posting their paths one at a time for `seconds` (or until done)."""
    stop, lock = threading.Event(), threading.Lock()
    times: list[float] = []
    statuses: dict = {}
    threads = [threading.Thread(target=_post_loop, args=(url, paths, body, stop, times, lock,
                                                         statuses), daemon=True)
               for paths in paths_per_client]
    for thread in threads:
        thread.start()
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join(120)
    return times, statuses


def figures(times: list[float], seconds: float) -> dict:
    return {"count": len(times), "per_s": round(len(times) / seconds, 1),
            "p50_ms": round(percentile(times, 50) * 1000, 1),
            "p99_ms": round(percentile(times, 99) * 1000, 1)}


def http(parked: int, seconds: float) -> dict:
    import requests
    from search_load import ready
    from server import Server

    body = {**ORDER, "workflow": "plain"}
    submit_path = itertools.repeat("/api/orders")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])
        flags = ["--app", "waits:app", "--workers", "2", "--failure-rate", "0",
                 "--db", f"{folder}/waits.db", "--log-file", f"{folder}/waits.log"]
        with Server(*flags, timeout=60) as server:
            url = server.url
            ready(url)
            with requests.Session() as session:
                left = parked
                while left:
                    count = min(10_000, left)
                    session.post(f"{url}/api/orders/bulk",
                                 json={"count": count, "workflow": "park"},
                                 timeout=600).raise_for_status()
                    left -= count
                ids = []
                cursor = None
                while len(ids) < parked:
                    query = f"/api/orders?status=waiting&limit={PAGE}"
                    if cursor:
                        query += f"&cursor={cursor}"
                    page = session.get(url + query, timeout=60).json()
                    ids += [o["id"] for o in page["orders"]]
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
            idle_before, _ = load(url, [submit_path], body, seconds)
            submits_8, submit_codes = load(
                url, [itertools.repeat("/api/orders")] * CLIENTS, body, seconds)
            # Each parked order is signalled once: half of them in the first phase, the
            # other half while one client submits.
            half = len(ids) // 2

            def paths(part: list[str]) -> list[list[str]]:
                return [[f"/api/orders/{oid}/signals/confirmed" for oid in part[i::CLIENTS]]
                        for i in range(CLIENTS)]

            signals_8, signal_codes = load(url, paths(ids[:half]), {"data": {"ok": True}},
                                           seconds)
            beside: dict = {}

            def one_submitter():
                beside["times"], _ = load(url, [itertools.repeat("/api/orders")], body,
                                          seconds)

            submitter = threading.Thread(target=one_submitter)
            submitter.start()
            signals_beside, beside_codes = load(url, paths(ids[half:]), {"data": 1}, seconds)
            submitter.join(180)
            # The control: the same 8 clients submitting instead, beside the one submitter
            # (what 8 clients as fast as they can cost a submit, whatever they ask).
            control: dict = {}

            def control_submitter():
                control["times"], _ = load(url, [itertools.repeat("/api/orders")], body,
                                           seconds)

            submitter = threading.Thread(target=control_submitter)
            submitter.start()
            load(url, [itertools.repeat("/api/orders")] * CLIENTS, body, seconds)
            submitter.join(180)
            idle_after, _ = load(url, [itertools.repeat("/api/orders")], body, seconds)
    baseline = idle_before + idle_after
    result = {
        "parked": len(ids),
        "idle_submits": figures(baseline, 2 * seconds),
        "submits_8_clients": {**figures(submits_8, seconds), "statuses": submit_codes},
        "signals_8_clients": {**figures(signals_8, seconds), "statuses": signal_codes},
        "submits_beside_8_signalling": figures(beside["times"], seconds),
        "signals_beside": {**figures(signals_beside, seconds), "statuses": beside_codes},
        "submits_beside_8_submitting": figures(control["times"], seconds),
    }
    result["signal_to_submit_p50"] = round(
        result["signals_8_clients"]["p50_ms"] / result["submits_8_clients"]["p50_ms"], 2)
    result["signal_to_submit_p99"] = round(
        result["signals_8_clients"]["p99_ms"] / result["submits_8_clients"]["p99_ms"], 2)
    result["beside_p99_ratio"] = round(
        result["submits_beside_8_signalling"]["p99_ms"] / result["idle_submits"]["p99_ms"], 2)
    result["control_p99_ratio"] = round(
        result["submits_beside_8_submitting"]["p99_ms"] / result["idle_submits"]["p99_ms"], 2)
    result["met"] = (result["signal_to_submit_p50"] <= 1.0
                     and result["beside_p99_ratio"] <= 2.0)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--parked", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--parts", default="park,timers,http")
    parser.add_argument("--child", choices=("park", "idle", "timers"))
    args = parser.parse_args()
    if args.child == "timers":
        emit(timers_child(args.orders))
        return
    if args.child:
        emit(park_child(args.child, args.orders))
        return
    result: dict = {"date": time.strftime("%Y-%m-%d")}
    parts = args.parts.split(",")
    if "park" in parts:
        result["park"] = park(args.orders)
        print("park", result["park"], file=sys.stderr, flush=True)
    if "timers" in parts:
        result["timers"] = run_child("waits.py", "--child", "timers", "--orders",
                                     str(args.orders))
        print("timers", result["timers"], file=sys.stderr, flush=True)
    if "http" in parts:
        result["http"] = http(args.parked, args.seconds)
    emit(result)


if __name__ == "__main__":
    main()
