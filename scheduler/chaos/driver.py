"""`orderflow chaos`: drive a server with a steady stream of orders while injecting faults,
then check from the journal that nothing was lost, stuck or done twice.

By default it starts and owns an `orderflow serve` (persisted, in its own process group) so it
can also SIGKILL and restart the whole server, on the same database and port, several times
during the run. With `--server URL` it drives an existing server (no restarts; give `--db` to
check that server's journal). With `--ha` it starts two servers on one PostgreSQL database
and kills the leader instead: the standby must take over, and the orders (re-posted with
their key), the remote workers and the driver's own requests follow the leader.

Workers: the server's thread workers, worker processes the server starts (they die with it),
and the driver's own `orderflow worker` processes (fleet.py), which outlive every server
restart: they must reconnect and join the new server and keep working.

Faults (faults.py), planned from the seed (schedule.py): server SIGKILL + restart (sometimes
with a remote worker SIGSTOPped across it), and long stalls: a remote worker SIGSTOPped
until the server has declared it dead, then SIGCONT: it must notice and join again under a
new id (its late results are fenced). Drawn as the run goes: kills of thread workers
(simulated crash) and process workers (SIGKILL), SIGKILL of a remote worker (replaced),
short stalls below the heartbeat timeout (no death allowed), failure and latency spikes
through `PUT /api/chaos`, adds and drains. With --ha and PostgreSQL on this machine, the
database itself is frozen now and then (SIGSTOP, then SIGCONT: freeze.py). Orders are posted
with an Idempotency-Key and re-posted with the same key after a connection error, so an order
whose acknowledgement was lost in a crash is neither lost nor doubled; some clients are
impatient (their first request gives up within a fraction of a second and they post again at
once, while it may still wait for its commit). Every 200/201 is kept with its key: the
checker finds each such order in the journal, under that key.
"""

from __future__ import annotations

import heapq
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import requests

from ..engine.config import ClusterConfig
from ..engine.workflow import DEFAULT_WORKFLOWS
from ..journal.location import parse_location
from .app import CONFIRM_TIMEOUT, RECONCILE, SAGA, WAITS
from .faults import CHAOS_APP, Faults, wait_until
from .fleet import NAME_PREFIX, Fleet, RemoteWorker
from .freeze import DatabaseFreeze, postmaster_of
from .invariants import check_history, format_report, load_journal, percentile, remote_work
from .serve_process import ServeProcess, health
from .settings import CALM, ChaosSettings

# The app the owned servers schedule: the demo with a payment quota.

__all__ = ["ChaosSettings", "Driver", "run_chaos"]


def owned_server(settings: ChaosSettings, db: str, log_file: Path, port: int = 0) -> ServeProcess:
    """The persisted server this run owns (and may SIGKILL); it schedules the demo with a
    concurrency limit on payment (chaos/app.py), which the checker holds it to."""
    return ServeProcess(
        "--db", db, "--log-file", str(log_file), "--app", CHAOS_APP,
        "--workers", str(settings.thread_workers),
        "--heartbeat-interval", str(settings.heartbeat_interval),
        "--heartbeat-timeout", str(settings.heartbeat_timeout),
        "--max-retries", str(settings.max_retries),
        "--failure-rate", str(CALM["failure_rate"]),
        "--step-timeout", str(settings.step_timeout),
        "--latency-ms", ",".join(map(str, CALM["latency_ms"])), "--log-level", "error",
        port=port)


class Driver:
    """Posts orders, asks the server about its workers, counts what it answered, and
    keeps the record of faults and problems (the faults themselves: faults.py).

    With `--ha`, `servers` are the two servers sharing the database and `url` is the
    leader's: a request the server at `url` cannot answer, or answers as a standby (503,
    code "standby"), sends the driver looking for the leader, and is not counted as a 5xx."""

    def __init__(self, settings: ChaosSettings, url: str, out=sys.stdout,
                 fleet: Fleet | None = None, server: ServeProcess | None = None,
                 servers: list[ServeProcess] | None = None,
                 freezer: DatabaseFreeze | None = None):
        self.settings, self.url, self.out = settings, url, out
        self.fleet, self.server = fleet, server  # the server is replaced at each restart
        self.servers = servers or []  # --ha: both, each replaced when restarted
        self.freezer = freezer  # --ha with PostgreSQL on this machine: it can be frozen
        self.standby_answers = 0  # 503s of a server that did not lead (not violations)
        # 503s that say "not now" as the API promises (not violations): a key whose order
        # is still being committed (commit_pending), and any 503 of a request made while
        # the database was frozen or had just been thawed (`frozen_until`, monotonic).
        self.pending_answers = 0
        self.frozen_answers = 0
        self.frozen_until = 0.0
        self._leader_lock = threading.Lock()
        self.rng = random.Random(settings.seed)
        self.http = requests.Session()
        if settings.token:
            self.http.headers["Authorization"] = f"Bearer {settings.token}"
        self.acked: list[str] = []
        self.answers: list[tuple[str, str]] = []  # (key, order id) of every 200/201
        self.repeats_answered = 0  # 200s: a key posted again, answered with its order
        self.server_errors = 0
        self.refused: str | None = None  # set if the server refused a valid order
        self.faults: dict[str, int] = {}
        self.process_supported = True
        # Remote workers: each id of theirs -> the server start that gave it (0: the first).
        self.server_start = 0
        self.remote_ids: dict[str, int] = {}
        # The wall time each server start after the first began (the kill before it), and
        # server start -> the longest time one leader led in it (see lead_began).
        self.start_walls: list[float] = []
        self.led: dict[int, float] = {}
        self._lead_began: float | None = None
        self.killed: set[str] = set()  # fleet workers the driver SIGKILLed on purpose
        # A rolling deploy (faults.py): whether the second version is deployed, and the
        # fleet workers that run the first one (kept until its orders are done).
        self.deployed = False
        self.old_workers: set[str] = set()
        # Steps with a concurrency limit, as the server describes them: {step: (max in
        # flight, time limit s)}, for the checker.
        self.limits: dict[str, tuple[int, float]] = {}
        self.saga = False  # the server schedules the saga workflow (read_limits says)
        self.waits = False  # ... and the waits workflow
        # Signals to send: (when, order id, idempotency key), earliest first; and what
        # became of those sent (their answers' outcomes, 409 for a wait over).
        self._signals: list[tuple[float, str, str]] = []
        self.signal_answers: dict[str, int] = defaultdict(int)
        self.problems: dict[str, list[str]] = defaultdict(list)  # the driver's own checks
        self.timings: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()
        self._stop_orders = threading.Event()
        self._url_ready = threading.Event()
        self._url_ready.set()
        self._closed = threading.Event()
        self._submitters = [
            threading.Thread(target=self.submit_loop, args=(n,), name=f"chaos-orders-{n}",
                             daemon=True)
            for n in range(max(1, settings.clients))]
        self._signaller = threading.Thread(target=self.signal_loop, name="chaos-signals",
                                           daemon=True)

    # -------------------------------------------------------------- requests

    def call(self, method: str, path: str, timeout: float = 10, **kw) -> requests.Response | None:
        """One request; None when the server cannot be reached (it may be restarting) or,
        with --ha, does not lead (the driver looks for the leader then)."""
        url = self.url
        sent = time.monotonic()
        try:
            response = self.http.request(method, url + path, timeout=timeout, **kw)
        except requests.RequestException:
            self.find_leader(url)
            return None
        if response.status_code == 503 and self.settings.ha and _code(response) == "standby":
            with self._lock:
                self.standby_answers += 1
            self.find_leader(url)
            return None
        if response.status_code == 503 and (_code(response) == "commit_pending"
                                            or sent < self.frozen_until):
            with self._lock:
                if _code(response) == "commit_pending":
                    self.pending_answers += 1
                else:
                    self.frozen_answers += 1
            return response
        if response.status_code >= 500:
            with self._lock:
                self.server_errors += 1
        return response

    def find_leader(self, lost: str) -> str | None:
        """--ha: the server at `lost` does not lead (now); follow whichever does."""
        if not self.settings.ha:
            return None
        with self._leader_lock:
            if self.url != lost:
                return self.url  # found meanwhile
            for server in self.servers:
                if health(server.url)[0] == 200:
                    self.url = server.url
                    return self.url
        return None

    def leading_server(self) -> ServeProcess | None:
        """--ha: the server that leads now, by its /healthz."""
        for server in self.servers:
            if health(server.url)[0] == 200:
                with self._leader_lock:
                    self.url = server.url
                return server
        return None

    def submit_loop(self, client: int = 0) -> None:
        """One client's steady stream of orders; each is re-posted with its key until
        acknowledged."""
        clients = len(self._submitters)
        interval = clients / self.settings.rate
        rng = random.Random((self.settings.seed + 1) * 1000 + client)
        self._stop_orders.wait(interval * client / clients)  # spread the clients' posts
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
            draw = rng.random()
            if self.saga and draw < self.settings.saga_share:
                order["workflow"] = SAGA.name
            elif self.waits and draw < self.settings.saga_share + self.settings.waits_share:
                order["workflow"] = WAITS.name
            give_up_at = None
            # An impatient client gives up on its first request at once, and posts again.
            impatient = rng.random() < self.settings.impatient_share
            while True:
                self._url_ready.wait(30)
                timeout = (rng.uniform(*self.settings.impatient_timeout) if impatient
                           else self.settings.order_timeout)
                impatient = False
                response = self.call(
                    "POST", "/api/orders", json=order, headers={"Idempotency-Key": key},
                    timeout=timeout,
                )
                if response is not None and response.status_code in (200, 201):
                    with self._lock:
                        order_id = response.json()["id"]
                        self.acked.append(order_id)
                        self.answers.append((key, order_id))
                        self.repeats_answered += response.status_code == 200
                        if (order.get("workflow") == WAITS.name
                                and rng.random() < self.settings.signal_share):
                            pause = rng.uniform(0, 1.5 * CONFIRM_TIMEOUT)
                            heapq.heappush(self._signals,
                                           (time.monotonic() + pause, order_id, key))
                    break
                if response is not None and response.status_code < 500:
                    # A well-formed order refused is a bug in the server: stop and say so.
                    self.refused = f"order refused: {response.status_code} {response.text[:200]}"
                    return
                if self._stop_orders.is_set():
                    # The run is over: an order never acknowledged was never accepted.
                    give_up_at = give_up_at or time.monotonic() + 30
                    if time.monotonic() > give_up_at or self._closed.is_set():
                        break
                self._closed.wait(0.1)

    def signal_loop(self) -> None:
        """Send each order's payment_confirmed when its time comes, posting it again with
        its key until answered (200; or 409: its wait timed out meanwhile)."""
        while not self._closed.is_set():
            with self._lock:
                due = self._signals and self._signals[0][0] <= time.monotonic()
                item = heapq.heappop(self._signals) if due else None
                left = len(self._signals)
            if item is None:
                if self._stop_orders.is_set() and not left:
                    return
                self._closed.wait(0.02)
                continue
            _, order_id, key = item
            give_up_at = time.monotonic() + 60
            while not self._closed.is_set() and time.monotonic() < give_up_at:
                self._url_ready.wait(30)
                response = self.call(
                    "POST", f"/api/orders/{order_id}/signals/payment_confirmed",
                    json={"data": {"confirmed_by": "chaos"}},
                    headers={"Idempotency-Key": f"{key}:confirmed"})
                if response is not None and response.status_code in (200, 409):
                    outcome = (response.json().get("outcome", "?")
                               if response.status_code == 200 else "too late (409)")
                    with self._lock:
                        self.signal_answers[outcome] += 1
                    break
                if response is not None and response.status_code < 500 and not (
                        response.status_code == 503):
                    self.problem("signal_refused", f"{order_id}: {response.status_code} "
                                                   f"{response.text[:200]}")
                    break
                self._closed.wait(0.1)

    # -------------------------------------------------------------- workers

    def workers(self) -> list[dict]:
        """The server's workers; the ids of the driver's remote workers are remembered."""
        response = self.call("GET", "/api/workers")
        if response is None or response.status_code != 200:
            return []
        body = response.json()
        workers = body["workers"] if isinstance(body, dict) else body
        for w in workers:
            if str(w.get("name", "")).startswith(NAME_PREFIX):
                self.remote_ids.setdefault(w["id"], self.server_start)
        return workers

    def alive(self) -> list[dict]:
        return [w for w in self.workers() if w["status"] in ("alive", "suspect")]

    def read_limits(self) -> None:
        """The steps with a concurrency limit and their time limits (GET /api/workflows)."""
        response = self.call("GET", "/api/workflows")
        if response is None or response.status_code != 200:
            return
        for workflow in response.json()["workflows"]:
            self.saga = self.saga or workflow["name"] == SAGA.name
            self.waits = self.waits or workflow["name"] == WAITS.name
            for step in workflow["steps"]:
                if step.get("max_in_flight"):
                    timeout = step.get("timeout") or self.settings.step_timeout
                    self.limits[step["name"]] = (step["max_in_flight"], float(timeout))

    def member(self, worker: RemoteWorker) -> str | None:
        """The id under which a remote worker is an alive member of the ring, if any."""
        return next((w["id"] for w in self.alive() if w.get("name") == worker.name), None)

    def status(self, worker_id: str) -> str | None:
        return next((w["status"] for w in self.workers() if w["id"] == worker_id), None)

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

    def pause_orders(self) -> None:
        """The server is going away: orders wait (they are re-posted once it is back)."""
        self._url_ready.clear()

    def resume_orders(self) -> None:
        self._url_ready.set()

    def lead_began(self, at: float) -> None:
        """A leader (or the one server) answered as such at `at` (monotonic)."""
        self._lead_began = at

    def lead_ended(self, at: float) -> None:
        """The leader stopped leading at `at`: killed, paused, its term lost in a database
        freeze, or the run is over. Each server start keeps its longest lead (a start's
        leader may lose its term in a freeze to the other server)."""
        if self._lead_began is not None:
            start = self.server_start
            self.led[start] = max(self.led.get(start, 0.0), at - self._lead_began)
        self._lead_began = None

    def note(self, fault: str, detail: str = "") -> None:
        self.faults[fault] = self.faults.get(fault, 0) + 1
        print(f"  fault: {fault}{': ' + detail if detail else ''}", file=self.out, flush=True)

    def problem(self, kind: str, detail: str) -> None:
        self.problems[kind].append(detail)
        print(f"  PROBLEM {kind}: {detail}", file=self.out, flush=True)

    # -------------------------------------------------------------- the run

    def run(self) -> bool:
        """Workers, then orders and faults for the duration, then the drain. True if every
        order finished in time."""
        settings = self.settings
        print(f"chaos: {settings.duration:.0f}s against {self.url}, seed {settings.seed}",
              file=self.out)
        self.read_limits()
        for _ in range(settings.process_workers):
            self.add_worker("process")
        if self.fleet is not None:
            self.fleet.start(settings.remote_workers)
            for worker in self.fleet.running():
                if not wait_until(lambda w=worker: self.member(w), settings.rejoin_timeout):
                    raise RuntimeError(f"remote worker {worker.name} did not join "
                                       f"(log: {worker.log_path})")
        for submitter in self._submitters:
            submitter.start()
        self._signaller.start()
        faults = Faults(self)
        self.lead_began(time.monotonic())
        faults.run(settings.duration)
        faults.keep_old_version()  # its last orders finish on a worker of it
        self._stop_orders.set()
        for submitter in self._submitters:
            submitter.join(60)
        if self._signaller.is_alive():
            self._signaller.join(60)
        self.call("PUT", "/api/chaos", json=CALM)
        settled = self.wait_until_settled(settings.drain_timeout)
        self.lead_ended(time.monotonic())
        faults.check_fleet()
        self.workers()  # the last ids of the remote workers
        return settled

    def close(self) -> None:
        """Stop everything the run started: orders, remote workers (by pid), the server;
        a database the run froze is thawed first."""
        if self.freezer is not None:
            self.freezer.thaw()
        self._stop_orders.set()
        self._closed.set()
        self._url_ready.set()
        if self.fleet is not None:
            self.fleet.stop_all()
        if self.server is not None:
            self.server.stop()
        for server in self.servers:
            server.resume()  # one left SIGSTOPped by a failed run must be able to stop
            server.stop()
        for thread in [*self._submitters, self._signaller]:
            if thread.is_alive():
                thread.join(15)  # at most one request (10 s) in flight
        self.http.close()

    def stats(self) -> dict | None:
        """The server's GET /api/stats; None when it does not answer that now."""
        response = self.call("GET", "/api/stats")
        return response.json() if response is not None and response.status_code == 200 else None

    def wait_until_settled(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.stats()
            if stats is not None:
                orders = stats["orders"]
                if (orders["pending"] == 0 and orders["in_progress"] == 0
                        and orders.get("waiting", 0) == 0):
                    return True
            self.ensure_workers()
            threading.Event().wait(0.2)
        return False


def _code(response: requests.Response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def ha_servers(settings: ChaosSettings, db: str, folder: Path) -> list[ServeProcess]:
    """--ha: two servers on the database; the first leads once it answers so."""
    first = owned_server(settings, db, folder / "chaos-a.log")
    try:
        if not wait_until(lambda: health(first.url)[0] == 200, 30):
            raise RuntimeError(f"the first server on {parse_location(db).name} did not lead "
                               f"within 30 s (log: {folder / 'chaos-a.log'})")
        return [first, owned_server(settings, db, folder / "chaos-b.log")]
    except BaseException:
        first.kill()
        raise


def run_chaos(settings: ChaosSettings, out=sys.stdout) -> dict:
    """Run the whole experiment; returns the checker's report (plus what was injected).

    Every process it started (the servers, the remote workers) is gone when it returns or
    raises."""
    if settings.server is not None and settings.db is None:
        raise ValueError("give --db with --server: the checker reads that server's journal")
    if settings.ha and (settings.server is not None or not settings.db
                        or not parse_location(settings.db).is_url):
        raise ValueError("--ha starts two servers on one PostgreSQL database: give --db "
                         "postgresql://... (and no --server)")
    with tempfile.TemporaryDirectory(prefix="orderflow-chaos-") as folder:
        # The journal: a file (by default in the run's folder) or a postgresql:// URL.
        db = settings.db or str(Path(folder) / "chaos.db")
        if parse_location(db).is_url:
            logs, log_file = Path(folder), Path(folder) / "chaos.log"
        else:
            logs, log_file = Path(db).parent, Path(db).with_suffix(".log")
        servers = ha_servers(settings, db, Path(folder)) if settings.ha else []
        server = None
        if settings.server is None and not settings.ha:
            server = owned_server(settings, db, log_file)
        url = (servers[0].url if servers else server.url if server
               else settings.server.rstrip("/"))
        # With --ha the remote workers know both servers and work for the leader.
        urls = ",".join(s.url for s in servers) or url
        try:
            freezer = _freezer(settings, db, out) if settings.ha else None
            fleet = (Fleet(urls, logs, token=settings.token, args=("--app", CHAOS_APP))
                     if settings.remote_workers else None)
        except BaseException:
            for owned in [*servers, *filter(None, [server])]:
                owned.kill()
            raise
        driver = Driver(settings, url, out, fleet=fleet, server=server, servers=servers,
                        freezer=freezer)
        try:
            settled = driver.run()
        finally:
            driver.close()
        history = load_journal(db)
    report = check_history(
        history, driver.acked, settings.max_retries, server_errors=driver.server_errors,
        answers=driver.answers,
        workflows={**DEFAULT_WORKFLOWS, SAGA.name: SAGA, WAITS.name: WAITS,
                   RECONCILE.name: RECONCILE},
        limits=driver.limits, grace=ClusterConfig().zombie_grace,
    )
    report["commit_pending_answers"] = driver.pending_answers
    report["repeats_answered"] = driver.repeats_answered
    report["signals_answered"] = dict(driver.signal_answers)
    report["settled"] = settled
    report["url"] = url
    report["urls"] = urls.split(",")
    report["faults"] = driver.faults
    report["server_restarts"] = driver.faults.get("server_sigkill_and_restart", 0)
    if settings.ha:
        report["failovers"] = (driver.faults.get("leader_sigkill", 0)
                               + driver.faults.get("leader_sigstop", 0))
        report["standby_answers"] = driver.standby_answers
        report["database_freezes"] = driver.faults.get("database_freeze", 0)
        report["frozen_database_503s"] = driver.frozen_answers
    timings = {name: values for name, values in driver.timings.items()
               if not name.startswith("failover_")}
    report["remote"] = {
        **remote_work(history.events, driver.remote_ids, driver.server_start + 1,
                      began=driver.start_walls),
        # How long the leader of each server start led (its longest lead, if several): a
        # new one starts no limited step for a while (its restart hold, the attempts in
        # flight under the old one), so one killed soon after it led may get nothing done.
        "seconds_led_by_server_start": [round(driver.led.get(start, 0.0), 1)
                                        for start in range(driver.server_start + 1)],
        "pids": [w.pid for w in fleet.workers] if fleet else [],
        **_summary(timings),
    }
    if settings.ha:
        report["failover"] = _summary({name: values for name, values in driver.timings.items()
                                       if name.startswith("failover_")})
    if driver.problems:
        report["ok"] = False
        report["problems"] = dict(driver.problems)
        report["violations"] += sum(len(found) for found in driver.problems.values())
    if driver.refused:
        report["ok"] = False
        report["refused"] = driver.refused
    report["process_workers"] = driver.process_supported
    if not settled:
        report["ok"] = False
    return report


def _freezer(settings: ChaosSettings, db: str, out) -> DatabaseFreeze | None:
    """--ha: the database's freezer, if it runs on this machine and freezes are wanted."""
    if settings.freeze_every <= 0:
        return None
    postmaster = postmaster_of(db)
    if postmaster is None:
        print("  (PostgreSQL is not on this machine, or not ours to signal: no database "
              "freezes)", file=out)
        return None
    return DatabaseFreeze(postmaster)


def _summary(timings: dict[str, list[float]]) -> dict:
    return {**{f"{name}_p50": _round(percentile(values, 50)) for name, values in timings.items()},
            **{f"{name}_max": _round(max(values)) for name, values in timings.items()}}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def format_chaos(report: dict) -> str:
    """The lines about restarts, stalls and remote workers, after the checker's."""
    if "failovers" in report:  # --ha: no server is restarted in place
        lines = [f"  {'failovers (leader killed)':<36} {report['failovers']}",
                 f"  {'503s of a server not leading':<36} {report['standby_answers']}",
                 f"  {'database freezes':<36} {report['database_freezes']}",
                 f"  {'503s around a database freeze':<36} {report['frozen_database_503s']}"]
    else:
        lines = [f"  {'server restarts':<36} {report['server_restarts']}"]
    lines.append(f"  {'keys posted again, answered 200':<36} {report['repeats_answered']}")
    lines.append(f"  {'503s of a key still committing':<36} {report['commit_pending_answers']}")
    lines += [f"  failover: {key:<26} {value}" for key, value in
              report.get("failover", {}).items()]
    lines += [f"  remote: {key:<28} {value}" for key, value in report["remote"].items()
              if key != "pids"]
    lines.append(f"  faults injected: {json.dumps(report['faults'])}")
    for kind, details in report.get("problems", {}).items():
        lines += [f"  PROBLEM {kind}: {detail}" for detail in details]
    if not report["settled"]:
        lines.append("  NOT SETTLED: orders still pending or in progress at the end")
    return "\n".join(lines)


def main(args) -> int:
    settings = ChaosSettings(
        duration=args.duration,
        seed=args.seed,
        server=args.server,
        db=args.db,
        token=args.token,
        rate=args.rate,
        remote_workers=args.remote_workers,
        restart_every=0.0 if args.no_restart else args.restart_every,
        long_stall_every=args.stall_every,
        ha=args.ha,
        freeze_every=args.freeze_every,
    )
    try:
        report = run_chaos(settings)
    except (ValueError, RuntimeError) as exc:
        print(f"orderflow chaos: error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    print(format_chaos(report))
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1
