"""Denial of service without a token: latency of /healthz, /api/stats, / and a dashboard's
authenticated Socket.IO connect while idle sockets, partial requests or a spread-out
connection flood are held open.

Starts `orderflow serve --token` (gunicorn), measures the four targets with no attack
(baseline), then with N Engine.IO websockets that answer pings but never send the Socket.IO
CONNECT (so never present the token), then with M connections that each sent one partial
header line, then with a flood spread over many addresses (100 x 10 connections from
127.0.0.2..101, half idle, half mid-header, each reopened as soon as the server closes it).
The same again without --token. Every request has a timeout; one that times out counts at
that timeout. Prints one JSON line.

    python benchmarks/dos.py [--sockets 500] [--partial 100] [--spread-addresses 100]
                             [--spread-per-address 10] [--samples 60]
"""

from __future__ import annotations

import argparse
import selectors
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import requests
import socketio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, percentile  # noqa: E402
from server import Server  # noqa: E402

TOKEN = "bench-token"
TIMEOUT = 3.0  # per request: a target that does not answer in this time is "down"
ENGINEIO = "/socket.io/?EIO=4&transport=websocket"


class IdleSockets:
    """N raw websockets driven by one selector thread: each answers Engine.IO pings ("2" ->
    "3") so the server keeps it, and never sends a Socket.IO CONNECT."""

    def __init__(self, port: int, count: int):
        self.port, self.count = port, count
        self.selector = selectors.DefaultSelector()
        self.stop = threading.Event()
        self.accepted = self.refused = self.closed = 0
        self.statuses: dict[int, int] = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="idle-sockets", daemon=True)
        self.socks: list[socket.socket] = []

    def open(self) -> IdleSockets:
        for _ in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.setblocking(False)
            ws = WSConnection(ConnectionType.CLIENT)
            sock.send(ws.send(Request(host=f"127.0.0.1:{self.port}", target=ENGINEIO)))
            self.selector.register(sock, selectors.EVENT_READ, ws)
            self.socks.append(sock)
        self.thread.start()
        return self

    def settled(self) -> int:
        with self.lock:
            return self.accepted + self.refused + self.closed

    def _run(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.selector.select(0.2):
                self._readable(key.fileobj, key.data)

    def _readable(self, sock: socket.socket, ws: WSConnection) -> None:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(sock)
            with self.lock:
                self.closed += 1
            return
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                with self.lock:
                    self.accepted += 1
            elif isinstance(event, RejectConnection):
                with self.lock:
                    self.refused += 1
                    self.statuses[event.status_code] = self.statuses.get(event.status_code, 0) + 1
                self.selector.unregister(sock)
                return
            elif isinstance(event, RejectData):
                pass
            elif isinstance(event, TextMessage) and event.data == "2":
                sock.send(ws.send(Message(data="3")))
            elif isinstance(event, CloseConnection):
                self.selector.unregister(sock)
                with self.lock:
                    self.closed += 1
                return

    def close(self) -> dict:
        self.stop.set()
        self.thread.join(5)
        for sock in self.socks:
            sock.close()
        self.selector.close()
        return {"opened": self.count, "upgraded": self.accepted, "refused": self.refused,
                "refused_statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "closed_by_server": self.closed,
                "no_answer": self.count - self.accepted - self.refused - self.closed}


class PartialRequests:
    """M connections that each sent one header line and no end of headers."""

    def __init__(self, port: int, count: int):
        self.port, self.count = port, count
        self.socks: list[socket.socket] = []

    def open(self) -> PartialRequests:
        for i in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(f"GET /healthz?partial={i} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
            self.socks.append(sock)
        return self

    def close(self) -> dict:
        cut = 0
        for sock in self.socks:
            sock.setblocking(False)
            try:
                cut += sock.recv(1) == b""  # the server closed it
            except BlockingIOError:
                pass  # still open
            except OSError:
                cut += 1
            sock.close()
        return {"opened": self.count, "closed_by_server": cut}


class SpreadFlood:
    """`addresses` client addresses (127.0.0.2, .3, ...: all of 127/8 is loopback on Linux)
    with `per_address` connections each, half that never send a byte and half that sent one
    header line; one the server closes (or answers) is opened again at once, by a thread,
    so the flood stays whole for the whole measurement."""

    def __init__(self, port: int, addresses: int, per_address: int):
        self.port, self.addresses, self.per_address = port, addresses, per_address
        self.selector = selectors.DefaultSelector()
        self.stop = threading.Event()
        self.opened = self.reopened = self.failed = 0
        self.thread = threading.Thread(target=self._run, name="spread-flood", daemon=True)

    def _open(self, address: str, partial: bool) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5,
                                            source_address=(address, 0))
            if partial:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        except OSError:
            self.failed += 1
            return
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, (address, partial))
        self.opened += 1

    def open(self) -> SpreadFlood:
        for i in range(self.addresses):
            for j in range(self.per_address):
                self._open(f"127.0.0.{2 + i}", j % 2 == 1)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.selector.select(0.2):
                self.selector.unregister(key.fileobj)
                key.fileobj.close()
                if not self.stop.is_set():
                    self._open(*key.data)
                    self.reopened += 1

    def close(self) -> dict:
        self.stop.set()
        self.thread.join(5)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()
        return {"addresses": self.addresses, "per_address": self.per_address,
                "opened": self.opened, "reopened_after_the_server_closed_them": self.reopened,
                "could_not_connect": self.failed}


def dashboard_connect(url: str, token: str | None) -> None:
    """One dashboard connection as the browser makes it: token at the handshake and in the
    CONNECT; waits for the connect to be acknowledged, then leaves."""
    client = socketio.Client(reconnection=False)
    try:
        client.connect(url + (f"?token={token}" if token else ""), transports=["websocket"],
                       auth={"token": token} if token else None, wait_timeout=TIMEOUT)
    finally:
        client.disconnect()


def measure(url: str, token: str | None, samples: int, budget: float) -> dict:
    """p50/p99 (ms) of each target, requests round-robin, within `budget` seconds."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    targets = {
        "healthz": lambda: requests.get(f"{url}/healthz", timeout=TIMEOUT).raise_for_status(),
        "api_stats": lambda: requests.get(f"{url}/api/stats", headers=headers,
                                          timeout=TIMEOUT).raise_for_status(),
        "page": lambda: requests.get(f"{url}/", timeout=TIMEOUT).raise_for_status(),
        "dashboard_connect": lambda: dashboard_connect(url, token),
    }
    times: dict[str, list[float]] = {name: [] for name in targets}
    failures: dict[str, int] = {name: 0 for name in targets}
    errors: Counter[str] = Counter()
    deadline = time.monotonic() + budget
    for _ in range(samples):
        if time.monotonic() > deadline:
            break
        for name, call in targets.items():
            started = time.perf_counter()
            try:
                call()
                elapsed = time.perf_counter() - started
            except Exception as exc:  # noqa: BLE001 - a refusal or a timeout counts as down
                failures[name] += 1
                kind = getattr(getattr(exc, "response", None), "status_code", None)
                errors[f"{name}: {kind or type(exc).__name__}"] += 1
                elapsed = max(TIMEOUT, time.perf_counter() - started)
            times[name].append(elapsed)
    result: dict = {name: {"n": len(values), "failed": failures[name],
                           "p50_ms": round(percentile(values, 50) * 1000, 1),
                           "p99_ms": round(percentile(values, 99) * 1000, 1)}
                    for name, values in times.items()}
    result["errors"] = dict(errors)
    return result


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=TIMEOUT).ok
    except requests.RequestException:
        return False


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def run_mode(token: str | None, args: argparse.Namespace) -> dict:
    flags = ["--no-persist", "--failure-rate", "0", "--latency-ms", "0,0",
             *args.serve_flags.split()]
    if token:
        flags += ["--token", token]
    with Server(*flags) as server:
        port = server.port
        # The master prints its URL before the worker has built the app: wait for it.
        wait_until(lambda: _answers(f"{server.url}/healthz"), 30)
        result = {"baseline": measure(server.url, token, args.samples, args.budget)}
        if "sockets" in args.attacks:
            idle = IdleSockets(port, args.sockets).open()
            # Let every handshake be answered (or queue up for good) before measuring.
            wait_until(lambda: idle.settled() >= args.sockets, 10)
            result["sockets"] = measure(server.url, token, args.samples, args.budget)
            result["sockets"]["attack"] = idle.close()
        if "partial" in args.attacks:
            partial = PartialRequests(port, args.partial).open()
            result["partial"] = measure(server.url, token, args.samples, args.budget)
            result["partial"]["attack"] = partial.close()
        if "spread" in args.attacks and args.spread_addresses:
            spread = SpreadFlood(port, args.spread_addresses, args.spread_per_address).open()
            result["spread"] = measure(server.url, token, args.samples, args.budget)
            result["spread"]["attack"] = spread.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--partial", type=int, default=100)
    parser.add_argument("--spread-addresses", type=int, default=100,
                        help="addresses of the spread flood (0: none)")
    parser.add_argument("--spread-per-address", type=int, default=10,
                        help="connections of the spread flood per address")
    parser.add_argument("--attacks", type=lambda t: t.split(","),
                        default=["sockets", "partial", "spread"],
                        help="which to run, of sockets,partial,spread")
    parser.add_argument("--samples", type=int, default=60, help="requests per target")
    parser.add_argument("--budget", type=float, default=30.0,
                        help="seconds per measurement at most (a down server times out)")
    parser.add_argument("--serve-flags", default="",
                        help="more `orderflow serve` flags, e.g. '--threads 700'")
    args = parser.parse_args()
    emit({"sockets": args.sockets, "partial": args.partial,
          "spread": f"{args.spread_addresses} x {args.spread_per_address}",
          "timeout_ms": TIMEOUT * 1000,
          "serve_flags": args.serve_flags,
          "with_token": run_mode(TOKEN, args), "without_token": run_mode(None, args)})


if __name__ == "__main__":
    main()
