"""A remote worker that says what no journal can hold: a fault of a chaos run.

It speaks the worker protocol (scheduler/remote/protocol.py) over Socket.IO, as
`orderflow worker` does, but its name, host and tags hold a NUL and a lone surrogate, and
every attempt it takes ends with an error quoting a gateway's response body as it came (a
NUL, a lone surrogate), or, one in two, with such a body in its result. Before the boundary
escaped such text, one of these stopped every commit of a PostgreSQL journal (and a lone
surrogate, of SQLite's too) for good. The run must go on as if it were any other worker.
"""

from __future__ import annotations

import queue
import time
import uuid
from dataclasses import dataclass, field

import socketio

# The protocol's namespace (scheduler/remote/protocol.py: the chaos room may not import the
# remote room; the value is part of the wire contract).
NAMESPACE = "/workers"
# What a careless gateway answers, quoted in full by a careless handler.
BODY = "<html>502 Bad Gateway\x00\x00 \ud800</html>"
NAME = "chaos-hostile\x00\ud83d"  # a lone half of an emoji


@dataclass
class HostileReport:
    """What the hostile worker did: the id it got, the attempts it ended, its view in
    /api/workers as the server showed it."""

    worker_id: str | None = None
    failed: int = 0
    succeeded: int = 0
    problems: list[str] = field(default_factory=list)


class HostileWorker:
    """Joins the server at `url`, takes up to `attempts` attempts, then disconnects."""

    def __init__(self, url: str, token: str | None = None, heartbeat_every: float = 0.2):
        self.url, self.token, self.heartbeat_every = url, token, heartbeat_every
        self.sio = socketio.Client(reconnection=False, handle_sigint=False)
        self._assigned: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
        self.sio.on("assign", self._on_assign, namespace=NAMESPACE)

    def _on_assign(self, data) -> None:
        # The client's receiving thread: only queue (a call from here would wait forever).
        for task_id, lease in (data or {}).get("tasks", []):
            self._assigned.put((task_id, lease))

    def run(self, attempts: int, timeout: float) -> HostileReport:
        report = HostileReport()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            self.sio.connect(self.url, headers=headers, transports=["websocket"],
                             namespaces=[NAMESPACE], wait_timeout=5)
            welcome = self._call("register", {
                "session": f"hostile-{uuid.uuid4().hex}\x00", "name": NAME,
                "host": "host\udfff", "pid": 1, "slots": 2, "steps": None,
                "tags": ["nul\x00tag", "\ud800lone"]})
            report.worker_id = welcome.get("worker_id") if isinstance(welcome, dict) else None
            if report.worker_id is None:
                report.problems.append(f"its registration was refused: {welcome!r}")
                return report
            self._work(report, attempts, time.monotonic() + timeout)
        except (socketio.exceptions.SocketIOError, OSError) as exc:
            report.problems.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.sio.disconnect()
        return report

    def _call(self, event: str, data: dict):
        return self.sio.call(event, data, namespace=NAMESPACE, timeout=10)

    def _work(self, report: HostileReport, attempts: int, deadline: float) -> None:
        beat_at = 0.0
        while report.failed + report.succeeded < attempts and time.monotonic() < deadline:
            if time.monotonic() >= beat_at:
                self._call("heartbeat", {"worker_id": report.worker_id})
                beat_at = time.monotonic() + self.heartbeat_every
            try:
                task_id, lease = self._assigned.get(timeout=self.heartbeat_every)
            except queue.Empty:
                continue
            ref = {"worker_id": report.worker_id, "task_id": task_id, "lease": lease}
            if not (self._call("begin", ref) or {}).get("context"):
                continue  # stale: moved meanwhile
            if report.failed <= report.succeeded:
                self._call("result", {**ref, "ok": False,
                                      "value": f"gateway answered 502: {BODY}"})
                report.failed += 1
            else:
                self._call("result", {**ref, "ok": True, "value": {"raw": BODY}})
                report.succeeded += 1

