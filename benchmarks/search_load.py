"""Searches that match nothing, and what they do to submits: submit latency with clients
searching `GET /api/orders?customer=zzz` next to the same server idle, in the same run.

For each journal (none: `--no-persist`; SQLite; PostgreSQL on a throwaway local server with
its durable defaults, when the server binaries are there), starts `orderflow serve` with no
workers, fills it with `--orders` unfinished demo orders (bulks of 10,000; nothing runs, so
all stay in memory and in the journal), then measures one client submitting orders one at a
time (POST /api/orders: `--submits` of them, or as many as `--budget` seconds allow) in
phases: nobody else asking (idle, the baseline, measured once first and once last), 8 and
then 16 other clients searching for a customer no order has, each as fast as it is answered,
and as a control 16 clients asking for `/healthz` (which does nothing) as fast: what that
much traffic of any kind costs the submits on this machine. A client told 503 with
Retry-After waits that long, as a client should. The other clients run in a process of their
own, so their client-side work does not delay the submitting client's. Prints one JSON line:
submit p50/p99 per phase, their ratios to the baseline, and how the others were answered.
Target: with 16 clients searching, submit p99 <= 2 x the baseline's. `--search` asks another
search that must match nothing: `--search '/api/orders?text=zzz'` is the dashboard's search
box (a part of an id, customer, SKU, error or workflow), `?sku=zzz` a SKU.

    python benchmarks/search_load.py [--orders 40000] [--submits 300] [--budget 120]
                                     [--modes none,sqlite,postgresql] [--search PATH]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' throwaway PostgreSQL server
from common import ORDER, emit, percentile  # noqa: E402
from server import Server  # noqa: E402

TARGET = 2.0  # submit p99 with 16 searching clients <= 2 x the idle baseline's
SEARCH = "/api/orders?customer=zzz"
TIMEOUT = 60.0


def ready(url: str, timeout: float = 60.0) -> None:
    """Wait for the app to answer (the master prints its URL before the worker built it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"{url}/healthz", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer /healthz within {timeout:.0f} s")
        time.sleep(0.1)


def fill(url: str, orders: int) -> float:
    """Submit `orders` demo orders in bulks; returns the seconds it took."""
    started = time.perf_counter()
    left = orders
    with requests.Session() as session:
        while left:
            count = min(10_000, left)
            response = session.post(f"{url}/api/orders/bulk", json={"count": count},
                                    timeout=600)
            response.raise_for_status()
            left -= count
    return time.perf_counter() - started


def submits(url: str, count: int, budget: float) -> list[float]:
    """Latency (s) of `count` submits, one at a time, on one keep-alive connection; fewer
    if `budget` seconds run out first."""
    times: list[float] = []
    deadline = time.monotonic() + budget
    with requests.Session() as session:
        while len(times) < count and time.monotonic() < deadline:
            started = time.perf_counter()
            response = session.post(f"{url}/api/orders", json=ORDER, timeout=TIMEOUT)
            response.raise_for_status()
            times.append(time.perf_counter() - started)
    return times


def _client(url: str, path: str, stop: threading.Event, tally: Counter, times: list[float],
            lock: threading.Lock) -> None:
    with requests.Session() as session:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                response = session.get(f"{url}{path}", timeout=TIMEOUT)
                status = response.status_code
            except requests.RequestException as exc:
                status, response = type(exc).__name__, None
            took = time.perf_counter() - started
            with lock:
                tally[str(status)] += 1
                if status == 200:
                    times.append(took)
            if status == 200 and path.startswith("/api/orders") and response.json()["orders"]:
                raise AssertionError(f"{path} found orders: it must match nothing")
            if response is not None and status in (429, 503):
                stop.wait(float(response.headers.get("Retry-After", "1")))


def load_process(url: str, path: str, clients: int, ready, done, results) -> None:
    """Child process: `clients` threads asking for `path` until `done` is set; reports the
    answers."""
    stop = threading.Event()
    tally: Counter = Counter()
    times: list[float] = []
    lock = threading.Lock()
    threads = [threading.Thread(target=_client, args=(url, path, stop, tally, times, lock),
                                daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    ready.set()
    done.wait()
    stop.set()
    for thread in threads:
        thread.join(TIMEOUT)
    results.put({"answers": dict(tally), "answered_200": len(times),
                 "answer_p50_ms": round(percentile(times, 50) * 1000, 1)})


def phase(url: str, path: str | None, clients: int, count: int, budget: float
          ) -> tuple[dict, list[float]]:
    """Submit latency while `clients` clients ask for `path` (None: nobody does)."""
    figures: dict = {}
    if path:
        context = multiprocessing.get_context("spawn")
        ready, done, results = context.Event(), context.Event(), context.Queue()
        child = context.Process(target=load_process,
                                args=(url, path, clients, ready, done, results))
        child.start()
        ready.wait(60)
        time.sleep(1.0)  # the clients are under way before the first submit is timed
    started = time.perf_counter()
    try:
        times = submits(url, count, budget)
    finally:
        elapsed = time.perf_counter() - started
        if path:
            done.set()
            figures = results.get(timeout=120)
            child.join(60)
    figures.update({
        "submits": len(times),
        "submit_p50_ms": round(percentile(times, 50) * 1000, 1),
        "submit_p99_ms": round(percentile(times, 99) * 1000, 1),
        "answers_per_s": round(figures.get("answered_200", 0) / elapsed, 1),
    })
    return figures, times


# (name, path asked for by the other clients, how many clients); the baseline is both idle
# phases together, one before and one after (so drift of a shared machine shows). The last
# loaded phase is a control: as many clients asking for /healthz, which does nothing, show
# what that much traffic of any kind costs the submits.
def phases(search: str) -> tuple:
    return (("idle", None, 0), ("searching_8", search, 8), ("searching_16", search, 16),
            ("healthz_16", "/healthz", 16), ("idle_again", None, 0))


def run_mode(mode: str, args: argparse.Namespace, folder: str, pg) -> dict:
    flags = ["--workers", "0", "--failure-rate", "0", "--log-file", f"{folder}/{mode}.log"]
    if mode == "none":
        flags.append("--no-persist")
    elif mode == "sqlite":
        flags += ["--db", f"{folder}/search.db"]
    else:
        flags += ["--db", pg.emptied_database("search_bench")]
    result: dict = {}
    idle: list[float] = []
    with Server(*flags, timeout=60) as server:
        ready(server.url)
        result["fill_s"] = round(fill(server.url, args.orders), 1)
        for name, path, clients in phases(args.search):
            result[name], times = phase(server.url, path, clients, args.submits, args.budget)
            if path is None:
                idle += times
            print(mode, name, result[name], file=sys.stderr, flush=True)
    result["baseline"] = {"submit_p50_ms": round(percentile(idle, 50) * 1000, 1),
                          "submit_p99_ms": round(percentile(idle, 99) * 1000, 1)}
    for name, path, _ in phases(args.search):
        if path is not None:
            for q in ("p50", "p99"):
                result[name][f"{q}_ratio"] = round(
                    result[name][f"submit_{q}_ms"] / result["baseline"][f"submit_{q}_ms"], 2)
    result["met"] = result["searching_16"]["p99_ratio"] <= TARGET
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=40_000)
    parser.add_argument("--submits", type=int, default=300, help="timed submits per phase")
    parser.add_argument("--budget", type=float, default=120.0,
                        help="seconds per phase at most (fewer submits if they are slow)")
    parser.add_argument("--modes", default="none,sqlite,postgresql")
    parser.add_argument("--search", default=SEARCH,
                        help="the search the other clients ask for (it must match nothing)")
    args = parser.parse_args()
    modes = args.modes.split(",")
    out: dict = {"benchmark": "search_load", "date": time.strftime("%Y-%m-%d"),
                 "orders": args.orders, "submits": args.submits, "search": args.search,
                 "target_p99_ratio": TARGET}
    pg = None
    if "postgresql" in modes:
        from pg import PostgresServer, missing

        reason = missing()
        if reason is None:
            pg = PostgresServer().start()  # PostgreSQL's defaults: fsync and sync commit on
        else:
            modes.remove("postgresql")
            out["postgresql"] = {"skipped": reason}
    try:
        with tempfile.TemporaryDirectory() as folder:
            for mode in modes:
                out[mode] = run_mode(mode, args, folder, pg)
    finally:
        if pg is not None:
            pg.stop()
    emit(out)


if __name__ == "__main__":
    main()
