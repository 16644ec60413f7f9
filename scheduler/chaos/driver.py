"""`orderflow chaos`: drive a server with a steady stream of orders while injecting faults,
then check from the journal that nothing was lost, stuck or done twice.

By default it starts and owns an `orderflow serve` (persisted, in its own process group) so it
can also SIGKILL and restart the whole server in the middle of the run. With `--server URL`
it drives an existing server (no restart; give `--db` to check that server's journal).

Faults: worker kills (thread workers: simulated crash; process workers: SIGKILL), handler
failure and latency spikes through `PUT /api/chaos`, adds and drains, and the server restart.
Orders are posted with an Idempotency-Key and re-posted with the same key after a connection
error, so an order whose acknowledgement was lost in a crash is neither lost nor doubled.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests

from .invariants import check_history, format_report, load_journal
from .serve_process import ServeProcess

CALM = {"failure_rate": 0.05, "latency_ms": [2, 20]}
SPIKE = {"failure_rate": 0.4, "latency_ms": [50, 300]}


@dataclass(frozen=True)
class ChaosSettings:
    duration: float = 60.0
    seed: int = 1
    # Existing server to drive; None = start and own one (which allows the restart fault).
    server: str | None = None
    # The journal to check; default: the owned server's temporary database.
    db: str | None = None
    token: str | None = None
    rate: float = 25.0  # orders per second
    thread_workers: int = 3
    process_workers: int = 2
    heartbeat_interval: float = 0.2
    heartbeat_timeout: float = 1.0
    max_retries: int = 3
    fault_interval: float = 1.0  # mean seconds between faults
    restart: bool = True  # SIGKILL and restart an owned server halfway through
    drain_timeout: float = 120.0  # how long to wait for the last orders to finish


def owned_server(settings: ChaosSettings, db: Path, port: int = 0) -> ServeProcess:
    """The persisted server this run owns (and may SIGKILL)."""
    return ServeProcess(
        "--db", str(db), "--log-file", str(db.with_suffix(".log")),
        "--workers", str(settings.thread_workers),
        "--heartbeat-interval", str(settings.heartbeat_interval),
        "--heartbeat-timeout", str(settings.heartbeat_timeout),
        "--max-retries", str(settings.max_retries),
        "--failure-rate", str(CALM["failure_rate"]),
        "--latency-ms", ",".join(map(str, CALM["latency_ms"])), "--log-level", "error",
        port=port)


class Driver:
    """Posts orders, injects faults and counts what the server answered."""

    def __init__(self, settings: ChaosSettings, url: str, out=sys.stdout):
        self.settings, self.url, self.out = settings, url, out
        self.rng = random.Random(settings.seed)
        self.http = requests.Session()
        if settings.token:
            self.http.headers["Authorization"] = f"Bearer {settings.token}"
        self.acked: list[str] = []
        self.server_errors = 0
        self.refused: str | None = None  # set if the server refused a valid order
        self.faults: dict[str, int] = {}
        self.process_supported = True
        self._lock = threading.Lock()
        self._stop_orders = threading.Event()
        self._url_ready = threading.Event()
        self._url_ready.set()

    # -------------------------------------------------------------- requests

    def call(self, method: str, path: str, **kw) -> requests.Response | None:
        """One request; None when the server cannot be reached (it may be restarting)."""
        try:
            response = self.http.request(method, self.url + path, timeout=10, **kw)
        except requests.RequestException:
            return None
        if response.status_code >= 500:
            with self._lock:
                self.server_errors += 1
        return response

    def submit_loop(self) -> None:
        """A steady stream of orders; each is re-posted with its key until acknowledged."""
        interval = 1.0 / self.settings.rate
        rng = random.Random(self.settings.seed + 1)
        while not self._stop_orders.wait(interval):
            key = str(uuid.UUID(int=rng.getrandbits(128)))
            order = {
                "customer": f"chaos-{rng.randrange(10_000)}",
                "items": [
                    {
                        "sku": f"SKU-{rng.randrange(50)}",
                        "qty": rng.randint(1, 3),
                        "price": round(rng.uniform(1, 90), 2),
                    }
                ],
            }
            give_up_at = None
            while True:
                self._url_ready.wait(30)
                response = self.call(
                    "POST", "/api/orders", json=order, headers={"Idempotency-Key": key}
                )
                if response is not None and response.status_code in (200, 201):
                    with self._lock:
                        self.acked.append(response.json()["id"])
                    break
                if response is not None and response.status_code < 500:
                    # A well-formed order refused is a bug in the server: stop and say so.
                    self.refused = f"order refused: {response.status_code} {response.text[:200]}"
                    return
                if self._stop_orders.is_set():
                    # The run is over: an order never acknowledged was never accepted.
                    give_up_at = give_up_at or time.monotonic() + 30
                    if time.monotonic() > give_up_at:
                        break
                threading.Event().wait(0.1)

    # -------------------------------------------------------------- faults

    def workers(self) -> list[dict]:
        response = self.call("GET", "/api/workers")
        if response is None or response.status_code != 200:
            return []
        body = response.json()
        return body["workers"] if isinstance(body, dict) else body

    def alive(self) -> list[dict]:
        return [w for w in self.workers() if w["status"] in ("alive", "suspect")]

    def add_worker(self, kind: str) -> None:
        body = {"count": 1}
        if kind == "process":
            if not self.process_supported:
                return
            body["kind"] = "process"
        response = self.call("POST", "/api/workers", json=body)
        if kind == "process" and response is not None and 400 <= response.status_code < 500:
            self.process_supported = False  # this server has no process workers
            return
        self.note(f"add_{kind}_worker")

    def ensure_workers(self, minimum: int = 2) -> None:
        alive = self.alive()
        for _ in range(max(0, minimum - len(alive))):
            self.add_worker("thread")

    def one_fault(self) -> None:
        alive = self.alive()
        choice = self.rng.choices(["kill", "add", "drain", "spike"], weights=[5, 4, 1, 2])[0]
        if choice == "kill" and len(alive) > 2:
            victim = self.rng.choice(alive)
            self.call("POST", f"/api/workers/{victim['id']}/kill")
            self.note(f"kill_{victim.get('kind', 'thread')}_worker")
        elif choice == "drain" and len(alive) > 2:
            victim = self.rng.choice(alive)
            self.call("POST", f"/api/workers/{victim['id']}/drain")
            self.note("drain_worker")
        elif choice == "spike":
            self.call("PUT", "/api/chaos", json=SPIKE)
            self.note("failure_and_latency_spike")
            calm_again = threading.Timer(1.0, lambda: self.call("PUT", "/api/chaos", json=CALM))
            calm_again.daemon = True
            calm_again.start()
        else:
            self.add_worker(self.rng.choice(["thread", "process"]))
        self.ensure_workers()

    def note(self, fault: str) -> None:
        self.faults[fault] = self.faults.get(fault, 0) + 1
        print(f"  fault: {fault}", file=self.out, flush=True)

    # -------------------------------------------------------------- ending

    def wait_until_settled(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.call("GET", "/api/stats")
            if response is not None and response.status_code == 200:
                orders = response.json()["orders"]
                if orders["pending"] == 0 and orders["in_progress"] == 0:
                    return True
            self.ensure_workers()
            threading.Event().wait(0.2)
        return False


def run_chaos(settings: ChaosSettings, out=sys.stdout) -> dict:
    """Run the whole experiment; returns the checker's report (plus what was injected)."""
    if settings.server is not None and settings.db is None:
        raise ValueError("give --db with --server: the checker reads that server's journal")
    with tempfile.TemporaryDirectory(prefix="orderflow-chaos-") as folder:
        db = Path(settings.db) if settings.db else Path(folder) / "chaos.db"
        server = owned_server(settings, db) if settings.server is None else None
        url = server.url if server else settings.server.rstrip("/")
        driver = Driver(settings, url, out)
        print(f"chaos: {settings.duration:.0f}s against {url}, seed {settings.seed}", file=out)
        restarted = False
        submitter = threading.Thread(target=driver.submit_loop, name="chaos-orders", daemon=True)
        try:
            for _ in range(settings.process_workers):
                driver.add_worker("process")
            submitter.start()
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < settings.duration:
                threading.Event().wait(driver.rng.expovariate(1 / settings.fault_interval))
                if (
                    server
                    and settings.restart
                    and not restarted
                    and elapsed >= settings.duration / 2
                ):
                    driver._url_ready.clear()
                    server.kill()
                    driver.note("server_sigkill_and_restart")
                    server = _restart(settings, db, server.port)
                    driver.url = server.url
                    driver._url_ready.set()
                    restarted = True
                    for _ in range(settings.process_workers):
                        driver.add_worker("process")
                    continue
                driver.one_fault()
            driver._stop_orders.set()
            submitter.join(60)
            driver.call("PUT", "/api/chaos", json=CALM)
            settled = driver.wait_until_settled(settings.drain_timeout)
        finally:
            driver._stop_orders.set()
            if server is not None:
                server.stop()
        report = check_history(
            load_journal(db), driver.acked, settings.max_retries, server_errors=driver.server_errors
        )
    report["settled"] = settled
    report["faults"] = driver.faults
    if driver.refused:
        report["ok"] = False
        report["refused"] = driver.refused
    report["process_workers"] = driver.process_supported
    if not settled:
        report["ok"] = False
    return report


def _restart(settings: ChaosSettings, db: Path, port: int) -> ServeProcess:
    """Start again on the same database, on the same port when it is free again."""
    try:
        return owned_server(settings, db, port)
    except RuntimeError:
        return owned_server(settings, db, 0)


def main(args) -> int:
    settings = ChaosSettings(
        duration=args.duration,
        seed=args.seed,
        server=args.server,
        db=args.db,
        token=args.token,
        rate=args.rate,
        restart=not args.no_restart,
    )
    try:
        report = run_chaos(settings)
    except (ValueError, RuntimeError) as exc:
        print(f"orderflow chaos: error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    print(f"  faults injected: {json.dumps(report['faults'])}")
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1
