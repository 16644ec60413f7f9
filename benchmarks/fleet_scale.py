"""How many workers and dashboards one server holds: 256 worker connections and 64 dashboards
on one `orderflow serve`, heartbeats on time (issue 19, finding 8).

Starts `orderflow serve --token --workers 0` (SQLite journal in a temporary folder, no demo
latency, the default caps: 256 worker sockets, 64 dashboard sockets), measures POST
/api/orders one at a time for 20 s with nothing connected (the baseline: latency, the
server's RSS, threads and CPU), then connects --workers worker connections from --processes
processes and --dashboards dashboard connections from one more, lets them run the orders
the baseline left (reported apart: the catch-up), and measures again for --seconds while
they run every new order's steps. A thread that sleeps 10 ms at a time measures how late
the machine itself wakes threads, for context (it is shared with other work).

The workers are not `orderflow worker` processes (256 Python processes would not fit on 2
cores beside the server): each process holds many connections on one selector thread and
speaks the real worker protocol (scheduler/remote/protocol.py) by hand over wsproto: the
worker's handshake (token, X-Orderflow-Role: worker), CONNECT on "/workers", `register` with
2 slots, a `heartbeat` every heartbeat interval with its acknowledgement, and for each
`assign` a `begin` and a `result` (a no-op handler). The dashboards are what a browser is
to the server: a WebSocket with the token in the query, CONNECT on "/", and then `snapshot`,
`events` and `workers` read as they come; one of them reads every `workers` message for the
server's view of each worker: its status and heartbeat age. Prints one JSON line.

    python benchmarks/fleet_scale.py [--workers 256] [--dashboards 64] [--seconds 60]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import multiprocessing as mp
import os
import selectors
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ORDER, emit, percentile  # noqa: E402
from raw_socketio import ENGINEIO, WORKERS, event, parse, registration  # noqa: E402
from server import Server  # noqa: E402

TOKEN = "bench-token"


class Loop:
    """One selector thread driving many connections, with timers."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self.timers, (time.monotonic() + delay, next(self._seq), callback))

    def run_until(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                heapq.heappop(self.timers)[2]()
            wait = min(0.05, self.timers[0][0] - now) if self.timers else 0.05
            for key, mask in self.selector.select(max(0.0, wait)):
                key.data(mask)


class Connection:
    """A client WebSocket speaking Engine.IO; subclasses handle its Socket.IO packets."""

    def __init__(self, loop: Loop, port: int, target: str, headers: list[tuple[bytes, bytes]],
                 source: str = "127.0.0.1"):
        self.loop = loop
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                             source_address=(source, 0))
        self.sock.setblocking(False)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.out = bytearray()
        self.partial: list[str] = []
        self.closed = False
        self.refused: int | None = None
        self.received_bytes = 0
        loop.selector.register(self.sock, selectors.EVENT_READ, self._ready)
        self._send_bytes(self.ws.send(Request(host=f"127.0.0.1:{port}", target=target,
                                              extra_headers=headers)))

    def send(self, text: str) -> None:
        if not self.closed:
            self._send_bytes(self.ws.send(Message(data=text)))

    def _send_bytes(self, data: bytes) -> None:
        self.out += data
        self._flush()

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self.out) if self.out else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close()
            return
        del self.out[:sent]
        mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.out else 0)
        self.loop.selector.modify(self.sock, mask, self._ready)

    def _ready(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush()
        if not mask & selectors.EVENT_READ or self.closed:
            return
        try:
            data = self.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close()
            return
        self.received_bytes += len(data)
        self.ws.receive_data(data)
        for ev in self.ws.events():
            if isinstance(ev, TextMessage):
                self.partial.append(ev.data)
                if ev.message_finished:
                    text, self.partial = "".join(self.partial), []
                    self._message(text)
            elif isinstance(ev, Ping):
                self._send_bytes(self.ws.send(ev.response()))
            elif isinstance(ev, RejectConnection):
                self.refused = ev.status_code
                self._close()
                return
            elif isinstance(ev, CloseConnection):
                self._close()
                return
            elif isinstance(ev, AcceptConnection):
                pass

    def _message(self, text: str) -> None:
        if text == "2":
            self.send("3")  # Engine.IO pong
        elif text.startswith("0"):
            self.opened()
        elif text.startswith("4"):
            self.packet(text)

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.selector.unregister(self.sock)
            self.sock.close()
            self.on_closed()

    def opened(self) -> None: ...

    def packet(self, text: str) -> None: ...

    def on_closed(self) -> None: ...


class Worker(Connection):
    """A worker process, as far as the server can tell."""

    def __init__(self, loop: Loop, port: int, name: str, stats: dict):
        self.name, self.stats = name, stats
        self.session = f"{name}-{time.time_ns()}"
        self.worker_id: str | None = None
        self.interval = 0.5
        self.due = 0.0
        self.acks = itertools.count(1)
        self.waiting: dict[int, tuple[str, float, object]] = {}  # ack id -> (what, sent, key)
        self.last_answered: float | None = None
        super().__init__(loop, port, ENGINEIO, [
            (b"authorization", f"Bearer {TOKEN}".encode()),
            (b"x-orderflow-role", b"worker")])

    def opened(self) -> None:
        self.send(f"40{WORKERS},{json.dumps({'token': TOKEN})}")

    def request(self, name: str, data: dict, key: object = None) -> None:
        ack = next(self.acks)
        self.waiting[ack] = (name, time.monotonic(), key)
        self.send(event(WORKERS, name, data, ack))

    def packet(self, text: str) -> None:
        kind, namespace, ack, data = parse(text)
        if namespace != WORKERS:
            return
        if kind == "0":
            self.register()
        elif kind == "4":
            self.stats["refused"] += 1
        elif kind == "3" and ack in self.waiting:
            self.answered(*self.waiting.pop(ack), data[0] if data else None)
        elif kind == "2" and data and data[0] == "assign":
            # Under the id it names: an assignment may overtake the answer to `register`.
            worker_id = data[1]["worker_id"]
            for task_id, lease in data[1]["tasks"]:
                self.request("begin", {"worker_id": worker_id, "task_id": task_id,
                                       "lease": lease}, (worker_id, task_id, lease))

    def register(self) -> None:
        self.request("register", registration(self.name, steps=None, slots=2,
                                               session=self.session))

    def answered(self, what: str, sent: float, key: object, reply: object) -> None:
        now = time.monotonic()
        if what == "register" and "error" in reply:
            # Joins are rate-limited (429): try again a little later, as a worker does.
            self.stats["join_retries"] += 1
            self.loop.later(0.5 + hash((self.name, now)) % 1000 / 1000, self.register)
        elif what == "register":
            self.worker_id = reply["worker_id"]
            self.interval = reply["heartbeat_interval"]
            self.stats["registered"] += 1
            # Real workers start at different moments: spread the beats over an interval.
            first = hash(self.name) % 1000 / 1000 * self.interval
            self.due = now + first
            self.loop.later(first, self.beat)
        elif what == "heartbeat":
            self.stats["rtt"].append(now - sent)
            if self.last_answered is not None:
                self.stats["max_gap"] = max(self.stats["max_gap"], now - self.last_answered)
            self.last_answered = now
            if not reply.get("alive", True):
                self.stats["declared_dead"] += 1
        elif what == "begin" and reply.get("context") is not None:
            worker_id, task_id, lease = key
            self.request("result", {"worker_id": worker_id, "task_id": task_id,
                                    "lease": lease, "ok": True, "value": None})
        elif what == "begin" and "error" in reply:
            self.stats["begin_refused"] += 1
        elif what == "result":
            self.stats["steps"] += 1

    def beat(self) -> None:
        if self.closed:
            return
        # How late this process itself sends (a busy machine): not the server's doing.
        self.stats["send_late"].append(max(0.0, time.monotonic() - self.due))
        self.request("heartbeat", {"worker_id": self.worker_id})
        self.stats["beats"] += 1
        self.due += self.interval
        self.loop.later(max(0.0, self.due - time.monotonic()), self.beat)

    def on_closed(self) -> None:
        self.stats["closed"] += 1


class Dashboard(Connection):
    """A browser's live connection; the observer reads every `workers` message."""

    def __init__(self, loop: Loop, port: int, source: str, stats: dict, observer: bool):
        self.stats, self.observer = stats, observer
        super().__init__(loop, port, f"{ENGINEIO}&token={TOKEN}", [], source)

    def opened(self) -> None:
        self.send(f"40{json.dumps({'token': TOKEN})}")

    def packet(self, text: str) -> None:
        if text.startswith("40"):
            self.stats["connected"] += 1
        elif text.startswith("44"):
            self.stats["refused"] += 1
        elif self.observer and text.startswith('42["workers"'):
            workers = json.loads(text[2:])[1]["workers"]
            remote = [w for w in workers if w["id"].startswith("p-")]
            self.stats["snapshots_of_workers"] += 1
            self.stats["max_heartbeat_age"] = max(
                [self.stats["max_heartbeat_age"]] + [w["heartbeat_age"] for w in remote
                                                     if w["status"] != "dead"])
            for status in ("suspect", "dead"):
                self.stats[f"seen_{status}"] |= {w["id"] for w in remote
                                                 if w["status"] == status}
            self.stats["alive_now"] = sum(w["status"] == "alive" for w in remote)

    def on_closed(self) -> None:
        self.stats["closed"] += 1


def joined(loop: Loop, stats: dict, count: int, done: tuple[str, ...]) -> None:
    """Run until every connection is in (or out), 60 s at most."""
    deadline = time.monotonic() + 60
    while sum(stats[key] for key in done) < count and time.monotonic() < deadline:
        loop.run_until(min(deadline, time.monotonic() + 0.2))


def until_set(loop: Loop, event: mp.Event) -> None:
    while not event.is_set():
        loop.run_until(time.monotonic() + 0.2)


def heartbeat_figures(stats: dict) -> dict:
    """What the heartbeats looked like since the last call (which starts a new period)."""
    late, rtt = stats["send_late"], stats["rtt"]
    figures = {"send_late_p99_ms": round(percentile(late, 99) * 1000, 1),
               "send_late_max_ms": round(max(late, default=0) * 1000, 1),
               "rtt_p50_ms": round(percentile(rtt, 50) * 1000, 1),
               "rtt_p99_ms": round(percentile(rtt, 99) * 1000, 1),
               "rtt_max_ms": round(max(rtt, default=0) * 1000, 1),
               "answered_beats": len(rtt), "max_gap": stats["max_gap"],
               "declared_dead": stats["declared_dead"]}
    stats.update(send_late=[], rtt=[], max_gap=0.0, declared_dead=0)
    return figures


def before_the_server() -> None:
    """Run ahead of the server in the CPU queue (nice -10, if allowed): the real workers and
    browsers are elsewhere, so a shared machine's delays must not be theirs here."""
    try:
        os.nice(-10)
    except OSError:
        pass


def run_workers(port: int, count: int, index: int, seconds: float, ready: mp.Event,
                measure: mp.Event, out: mp.Queue) -> None:
    before_the_server()
    loop = Loop()
    stats = {"registered": 0, "refused": 0, "closed": 0, "beats": 0, "rtt": [],
             "max_gap": 0.0, "declared_dead": 0, "steps": 0, "join_retries": 0,
             "begin_refused": 0,
             "send_late": []}
    workers = [Worker(loop, port, f"fleet-{index}-{i}", stats) for i in range(count)]
    joined(loop, stats, count, ("registered", "refused", "closed"))
    ready.set()
    heartbeat_figures(stats)
    until_set(loop, measure)  # the backlog of the baseline is run meanwhile
    catch_up = heartbeat_figures(stats)
    cpu = time.process_time()
    loop.run_until(time.monotonic() + seconds)
    out.put({**{k: v for k, v in stats.items() if not isinstance(v, list)},
             **heartbeat_figures(stats), "catch_up": catch_up,
             "cpu_per_s": round((time.process_time() - cpu) / seconds, 2),
             "refused_handshakes": sum(1 for w in workers if w.refused is not None)})


def run_dashboards(port: int, count: int, seconds: float, ready: mp.Event,
                   measure: mp.Event, out: mp.Queue) -> None:
    before_the_server()
    loop = Loop()
    stats = {"connected": 0, "refused": 0, "closed": 0, "snapshots_of_workers": 0,
             "max_heartbeat_age": 0.0, "seen_suspect": set(), "seen_dead": set(),
             "alive_now": 0}
    # Browsers come from many addresses (one address may open 32 at most).
    dashboards = [Dashboard(loop, port, f"127.0.1.{1 + i // 16}", stats, observer=i == 0)
                  for i in range(count)]
    joined(loop, stats, count, ("connected", "refused", "closed"))
    ready.set()
    until_set(loop, measure)
    stats["catch_up"] = {"max_heartbeat_age": stats["max_heartbeat_age"],
                         "seen_suspect": len(stats["seen_suspect"]),
                         "seen_dead": len(stats["seen_dead"])}
    dead_before = stats["seen_dead"]
    stats.update(max_heartbeat_age=0.0, seen_suspect=set(), seen_dead=set())
    cpu = time.process_time()
    loop.run_until(time.monotonic() + seconds)
    stats["cpu_per_s"] = round((time.process_time() - cpu) / seconds, 2)
    # Only what happened while measuring: the dead stay dead (and listed).
    stats["seen_suspect"] = sorted(stats["seen_suspect"] - dead_before)
    stats["seen_dead"] = sorted(stats["seen_dead"] - dead_before)
    stats["received_mb"] = round(sum(d.received_bytes for d in dashboards) / 1e6, 1)
    stats["refused_handshakes"] = sum(1 for d in dashboards if d.refused is not None)
    out.put(stats)


def server_process(master_pid: int) -> int:
    """The gunicorn worker process under `orderflow serve` (the master's only child)."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return int(children[0])


def process_figures(pid: int) -> dict:
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
            "threads": int(fields["Threads"])}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


class WakeProbe:
    """How late a thread that sleeps 10 ms at a time wakes up: the machine's own delay (2
    cores shared with other work), which every figure above includes."""

    def __init__(self) -> None:
        self.late: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            time.sleep(0.01)
            self.late.append(time.monotonic() - started - 0.01)

    def __enter__(self) -> WakeProbe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)

    def figures(self) -> dict:
        return {"wake_late_p50_ms": round(percentile(self.late, 50) * 1000, 1),
                "wake_late_p99_ms": round(percentile(self.late, 99) * 1000, 1),
                "load_average": os.getloadavg()[0]}


def submits(url: str, seconds: float, sample: Callable[[], None] | None = None) -> dict:
    """p50/p99 (ms) of POST /api/orders, one at a time with the token, for `seconds`."""
    times: list[float] = []
    failed = 0
    headers = {"Authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + seconds
    next_sample = 0.0
    with requests.Session() as session:
        while time.monotonic() < deadline:
            if sample is not None and time.monotonic() >= next_sample:
                sample()
                next_sample = time.monotonic() + 1.0
            started = time.perf_counter()
            try:
                session.post(f"{url}/api/orders", json=ORDER, headers=headers,
                             timeout=10).raise_for_status()
            except requests.RequestException:
                failed += 1
            times.append(time.perf_counter() - started)
            time.sleep(0.02)  # a steady 30-50 orders a second, not a flood
    return {"n": len(times), "failed": failed,
            "p50_ms": round(percentile(times, 50) * 1000, 1),
            "p99_ms": round(percentile(times, 99) * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=256)
    parser.add_argument("--dashboards", type=int, default=64)
    parser.add_argument("--processes", type=int, default=4,
                        help="processes holding the worker connections")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--serve-flags", default="", help="more `orderflow serve` flags")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, Server(
            "--db", str(Path(folder) / "fleet.db"), "--token", TOKEN, "--workers", "0",
            "--failure-rate", "0", "--latency-ms", "0,0", *args.serve_flags.split(),
            timeout=60) as server:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{server.url}/healthz", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        pid = server_process(server.proc.pid)
        submits(server.url, 2)  # warm up
        idle = process_figures(pid)
        cpu, clock = cpu_seconds(pid), time.monotonic()
        with WakeProbe() as quiet_probe:
            baseline = submits(server.url, min(20.0, args.seconds))
        idle["cpu_per_s"] = round((cpu_seconds(pid) - cpu) / (time.monotonic() - clock), 2)
        out: mp.Queue = mp.Queue()
        per = [args.workers // args.processes + (i < args.workers % args.processes)
               for i in range(args.processes)]
        readies = [mp.Event() for _ in range(args.processes + 1)]
        measure = mp.Event()
        children = [mp.Process(target=run_workers,
                               args=(server.port, n, i, args.seconds, readies[i], measure,
                                     out))
                    for i, n in enumerate(per)]
        children.append(mp.Process(target=run_dashboards,
                                   args=(server.port, args.dashboards, args.seconds,
                                         readies[-1], measure, out)))
        started = time.monotonic()
        for child in children:
            child.start()
        for ready in readies:
            ready.wait(90)
        joined_in = time.monotonic() - started
        # The orders submitted while nothing could run them are run first (catching up).
        catch_up_peak = {k: v for k, v in idle.items() if k != "cpu_per_s"}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            figures = process_figures(pid)
            catch_up_peak["threads"] = max(catch_up_peak["threads"], figures["threads"])
            catch_up_peak["rss_mb"] = max(catch_up_peak["rss_mb"], figures["rss_mb"])
            progress = requests.get(f"{server.url}/api/stats", headers=headers,
                                    timeout=10).json()["orders"]
            if progress["completed"] + progress["failed"] >= baseline["n"]:
                break
            time.sleep(0.5)
        caught_up_in = time.monotonic() - started - joined_in
        measure.set()
        peak = dict(idle)

        def sample() -> None:
            figures = process_figures(pid)
            peak["rss_mb"] = max(peak["rss_mb"], figures["rss_mb"])
            peak["threads"] = max(peak["threads"], figures["threads"])

        cpu, clock = cpu_seconds(pid), time.monotonic()
        with WakeProbe() as fleet_probe:
            loaded = submits(server.url, args.seconds, sample)
        held = process_figures(pid)
        held["cpu_per_s"] = round((cpu_seconds(pid) - cpu) / (time.monotonic() - clock), 2)
        reports = [out.get(timeout=120) for _ in children]
        for child in children:
            child.join(30)
        stats = requests.get(f"{server.url}/api/stats", headers=headers, timeout=10).json()
    fleet = [r for r in reports if "registered" in r]
    dashboards = next(r for r in reports if "connected" in r)
    sockets = args.workers + args.dashboards
    emit({
        "workers": args.workers, "dashboards": args.dashboards,
        "worker_processes_simulated_by": f"{args.processes} processes x "
                                         f"{max(per)} connections (raw protocol)",
        "joined_in_s": round(joined_in, 1),
        "baseline_backlog_run_in_s": round(caught_up_in, 1),
        "while_joining_and_running_the_backlog": {
            "rtt_p99_ms": max(r["catch_up"]["rtt_p99_ms"] for r in fleet),
            "rtt_max_ms": max(r["catch_up"]["rtt_max_ms"] for r in fleet),
            "server_max_heartbeat_age_s": round(
                dashboards["catch_up"]["max_heartbeat_age"], 2),
            "workers_seen_suspect": dashboards["catch_up"]["seen_suspect"],
            "workers_seen_dead": dashboards["catch_up"]["seen_dead"],
            "server_peak": catch_up_peak},
        "workers_registered": sum(r["registered"] for r in fleet),
        "join_retries_429": sum(r["join_retries"] for r in fleet),
        "workers_refused": sum(r["refused"] + r["refused_handshakes"] for r in fleet),
        "workers_closed": sum(r["closed"] for r in fleet),
        "dashboards_connected": dashboards["connected"],
        "dashboards_refused": dashboards["refused"] + dashboards["refused_handshakes"],
        "heartbeat": {
            "answered": sum(r["answered_beats"] for r in fleet),
            "rtt_p50_ms": max(r["rtt_p50_ms"] for r in fleet),
            "rtt_p99_ms": max(r["rtt_p99_ms"] for r in fleet),
            "rtt_max_ms": max(r["rtt_max_ms"] for r in fleet),
            "max_gap_between_answers_s": round(max(r["max_gap"] for r in fleet), 2),
            "server_max_heartbeat_age_s": round(dashboards["max_heartbeat_age"], 2),
            "workers_seen_suspect": len(dashboards["seen_suspect"]),
            "workers_seen_dead": len(dashboards["seen_dead"]),
            "answers_alive_false": sum(r["declared_dead"] for r in fleet),
            "client_send_late_p99_ms": max(r["send_late_p99_ms"] for r in fleet),
            "client_send_late_max_ms": max(r["send_late_max_ms"] for r in fleet),
            "client_cpu_per_s": [r["cpu_per_s"] for r in fleet],
        },
        "steps_run_by_fleet": sum(r["steps"] for r in fleet),
        "begins_refused": sum(r["begin_refused"] for r in fleet),
        "submit_idle": baseline, "submit_with_fleet": loaded,
        "p50_ratio": round(loaded["p50_ms"] / baseline["p50_ms"], 2),
        "p99_ratio": round(loaded["p99_ms"] / baseline["p99_ms"], 2),
        "server_idle": idle, "server_with_fleet": held,
        "server_peak": {k: v for k, v in peak.items() if k != "cpu_per_s"},
        "per_socket": {
            "threads": round((held["threads"] - idle["threads"]) / sockets, 2),
            "rss_kb": round((held["rss_mb"] - idle["rss_mb"]) * 1024 / sockets, 1)},
        "dashboards_received_mb": dashboards["received_mb"],
        "dashboards_client_cpu_per_s": dashboards["cpu_per_s"],
        "orders_completed": stats["orders"]["completed"],
        "orders_total": stats["orders_total"],
        "machine_idle": quiet_probe.figures(), "machine_with_fleet": fleet_probe.figures(),
        "serve_flags": args.serve_flags,
    })


if __name__ == "__main__":
    main()
