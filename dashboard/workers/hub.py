"""Remote worker processes: the "/workers" Socket.IO namespace (contract: remote/protocol.py).

The hub is an adapter between sockets and the cluster's worker port. Each registration of
a process is a `RemoteExecutor` on the ring, keyed by its worker id, never by sid: a sid
changes on every reconnect. A connection may speak only for ids its own process registered.
Ids carry a random tag drawn at each server start, so a restarted server does not hand a
process an id an earlier server gave it (and retired). A process that refuses an assignment
has that worker id drained, which moves the task, and any other queued on it, at once.

A dropped connection is not a death by itself: a process that registers again within the
reconnect grace (WORKER_RECONNECT_GRACE, 0.5 s) resumes under its id. One that does not
has its alive and draining ids declared dead then (`Cluster.worker_lost`), so a process
that died moves its tasks within the grace instead of the heartbeat timeout; a watcher
thread checks the deadlines (`declare_lost(now)` decides, with time passed in). A process
that is silent on an open connection is still the heartbeat monitor's call.

With several servers on one database, only the leader takes workers: a standby refuses the
connection (the gate answers the handshake 503 with the leader's URL, which `orderflow
worker --server URL1,URL2` follows) and any registration. A new term starts the hub afresh
(`follow`): new ids (a new tag), no peers; the connections were dropped, and each process
registers again, joining under a new id. Its results for leases of an earlier term name ids
this term never gave out, so they are refused (404) and never reach the scheduler: the
recovered term runs those steps again, under leases above any earlier one.

Each registration says what the process still runs (`running`, under which of its ids) and
which ids it worked under (`ids`): the hub hands that to the cluster, which keeps those
handlers counted in their steps' max_in_flight and stops counting any other attempt of those
ids. A process that was not resumed and still runs handlers is not joined yet: it stops them
first (the protocol's contract) and registers again. An id the hub gave another process is
left out of a report; one it never gave out (an earlier term's) is taken at its word. When
the server reaps a worker process it started, that process's ids run nothing any more.

Limits keep one token holder from taking over placement: a connection speaks for one
process, a process holds a few ids at most, joins are rate-limited (429 beyond), and
departed ids and gone processes are remembered only up to a bound.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from flask import Flask, request
from flask_socketio import ConnectionRefusedError, SocketIO

from scheduler import Cluster, Conflict, UnknownWorker
from scheduler.engine.model import Dispatch
from scheduler.engine.text import escape_all
from scheduler.remote.protocol import (
    ID_PREFIX,
    MAX_BATCH,
    MAX_REPORTED_IDS,
    MAX_SLOTS,
    MAX_TEXT,
    NAMESPACE,
    PROTOCOL_VERSION,
)
from scheduler.remote.supervisor import ProcessPool
from scheduler.runtime.worker import LoopThread
from scheduler.steps.failure import Failure

from ..config import DefaultConfig
from ..door.auth import socket_auth_ok
from ..door.codes import ErrorCode
from ..door.errors import ApiError, describe, error_body, invalid
from ..door.parsing import expect_object, int_field
from ..door.rate_limit import TokenBucket
from ..failover.leadership import refusal_of
from ..parts import Part
from .peers import JoinLimits, Peer, RemoteExecutor

log = logging.getLogger("orderflow.workers")

EXTENSION = "orderflow.workers"
# Processes remembered after they went away, so their late results still reach fencing.
PEER_HISTORY = 1024
# Worker ids remembered after they left the ring (dead or removed), for the same reason.
DEPARTED_HISTORY = 1024
# What `worker_dead` says of a process whose connection closed for good.
CONNECTION_LOST = "its connection closed and it did not come back"


def new_id_tag() -> str:
    """Drawn once per server start and put in its remote worker ids ("p-<tag>-<n>")."""
    return secrets.token_hex(3)


class WorkerHub(Part):
    """Registrations, connections and messages of remote workers; owns the process pool."""

    def __init__(self, cluster: Cluster, socketio: SocketIO, pool: ProcessPool,
                 limits: JoinLimits | None = None, clock: Callable[[], float] = time.monotonic,
                 reconnect_grace: float = DefaultConfig.WORKER_RECONNECT_GRACE,
                 standby: Callable[[], dict | None] = lambda: None):
        self.cluster = cluster
        self.standby = standby  # the refusal to answer while this server does not lead
        self.socketio = socketio
        self.pool = pool
        self.limits = limits or JoinLimits()
        self.reconnect_grace = reconnect_grace
        self._clock = clock
        self._joins = TokenBucket(self.limits.per_second, self.limits.burst)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a connection closed
        # Processes whose connection closed: by session, the time they are given up.
        self._closed: dict[str, float] = {}
        self._stop = threading.Event()
        self._watcher: LoopThread | None = None
        self._peers: OrderedDict[str, Peer] = OrderedDict()  # by session
        self._by_sid: dict[str, Peer] = {}
        self._executors: dict[str, RemoteExecutor] = {}
        self._departed: OrderedDict[str, None] = OrderedDict()  # executors that left, oldest first
        # Unique across server lifetimes: a process may still hold ids from earlier servers.
        self.id_prefix = f"{ID_PREFIX}-{new_id_tag()}"

    # ------------------------------------------------------------------ lifecycle

    def process_exited(self, spawn_id: str) -> None:
        """A worker process this server started exited (reaped): its handlers are gone."""
        with self._lock:
            ids = sorted(w for peer in self._peers.values() if peer.spawn_id == spawn_id
                         for w in peer.worker_ids)
        if ids:
            self.cluster.workers_gone(ids)

    def start(self) -> WorkerHub:
        """Start the watcher that gives up on processes whose connection closed."""
        if self._watcher is None:
            self._watcher = LoopThread("orderflow-connections", self._watch_once, self._stop)
            self._watcher.start()
        return self

    def stop(self) -> None:
        """Stop and reap the processes this server started, then the watcher."""
        self.pool.stop()
        self._stop.set()
        with self._lock:
            self._changed.notify_all()
        if self._watcher is not None:
            self._watcher.join(5)

    def follow(self, cluster: Cluster) -> None:
        """A new leadership term (or standing by): forget every process and id of the last
        one (their connections were dropped; they register again) and draw a new tag."""
        with self._lock:
            self.cluster = cluster
            self._peers.clear()
            self._by_sid.clear()
            self._executors.clear()
            self._departed.clear()
            self._closed.clear()
            self.id_prefix = f"{ID_PREFIX}-{new_id_tag()}"

    def stop_processes(self) -> None:
        """Stop the worker processes this server started (they drain); more may be started
        later."""
        self.pool.terminate()

    def spawn(self, count: int) -> dict:
        """Start `count` local worker processes running the server's app (409 when the
        server's app was given as an object, so a process could not load it)."""
        if self.pool.app() is None and not runs_demo(self.cluster):
            raise Conflict("this server's app was given as an object, not as MODULE:ATTR "
                           "(serve --app, or ORDERFLOW_APP), so a worker process could not "
                           "load it: start workers with `orderflow worker --app MODULE:ATTR`")
        started = self.pool.spawn(count)
        return {
            "kind": "process",
            "processes": [{"pid": p["pid"], "name": p["name"]} for p in started],
            "message": f"started {count} worker process(es); each joins the cluster "
                       "as soon as it has connected",
        }

    # ------------------------------------------------------------------ connections

    def refuse(self, remote: str | None) -> None:
        log.warning("refused a worker connection from %s: missing or wrong token",
                    remote or "an unknown address")
        raise ConnectionRefusedError("unauthorized: a valid token is required")

    def disconnected(self, sid: str, reason: Any = None) -> None:
        with self._lock:
            peer = self._by_sid.pop(sid, None)
            if peer is not None and peer.sid == sid:
                peer.sid = None
                # Not a death yet: the process may be back in a moment.
                self._closed[peer.session] = self._clock() + self.reconnect_grace
                self._changed.notify_all()
        if peer is not None:
            log.info("worker process %s (pid %s, %s) disconnected (%s)",
                     peer.name, peer.pid, peer.current or "no worker id", reason)

    def declare_lost(self, now: float) -> list[str]:
        """Processes whose connection closed at least the grace before `now` and that have
        not registered again: their alive and draining worker ids are declared dead, so
        their tasks move now. Returns those ids. (Drained and removed ids stay as they are.)"""
        with self._lock:
            due = [session for session, deadline in self._closed.items() if deadline <= now]
            peers = [self._peers.get(session) for session in due]
            for session in due:
                del self._closed[session]
            ids = sorted(w for peer in peers if peer is not None and peer.sid is None
                         for w in peer.worker_ids)
        lost = []
        for worker_id in ids:
            if self._status(worker_id) not in ("alive", "suspect", "draining"):
                continue
            try:
                self.cluster.worker_lost(worker_id, CONNECTION_LOST)
            except UnknownWorker:
                continue  # forgotten meanwhile
            lost.append(worker_id)
        return lost

    def _watch_once(self) -> None:
        with self._lock:
            now = self._clock()
            if not any(deadline <= now for deadline in self._closed.values()):
                ahead = [deadline - now for deadline in self._closed.values()]
                self._changed.wait(min([0.5, *ahead]))
                return
        self.declare_lost(now)

    def drop_connection(self, worker_id: str) -> bool:
        """Cut a worker's connection from this side (it reconnects and resumes)."""
        with self._lock:
            executor = self._executors.get(worker_id)
            sid = executor.peer.sid if executor is not None else None
        if sid is None:
            return False
        eio_sid = self.socketio.server.manager.eio_sid_from_sid(sid, NAMESPACE)
        sock = self.socketio.server.eio.sockets.get(eio_sid) if eio_sid else None
        if sock is None:
            return False
        sock.close(wait=False, abort=True)
        return True

    # ------------------------------------------------------------------ messages

    @property
    def closing(self) -> int:
        """Processes whose connection closed, within their grace to come back."""
        with self._lock:
            return len(self._closed)

    @property
    def remembered(self) -> int:
        """Worker ids the hub holds an executor for (alive, or departed and remembered)."""
        with self._lock:
            return len(self._executors)

    def register(self, sid: str, data: Any) -> dict:
        fields = _parse_register(data)
        refusal = self.standby()
        if refusal is not None:
            raise ApiError(503, ErrorCode.STANDBY, refusal["error"]["message"])
        with self._lock:
            bound = self._by_sid.get(sid)
            if bound is not None and bound.session != fields["session"]:
                raise ApiError(409, ErrorCode.ONE_PROCESS_PER_CONNECTION,
                               "this connection already registered another worker process "
                               "(session); each process registers on a connection of its own")
            peer = self._peers.get(fields["session"])
            if peer is None:
                peer = Peer(**{k: fields[k] for k in
                               ("session", "name", "host", "pid", "slots", "spawn_id",
                                "steps", "tags", "definitions")})
                self._peers[peer.session] = peer
                self._forget_old_peers()
            self._peers.move_to_end(peer.session)
            if peer.sid is not None and peer.sid != sid:
                self._by_sid.pop(peer.sid, None)
            peer.sid = sid
            self._by_sid[sid] = peer
            self._closed.pop(peer.session, None)  # back within the grace
            resume = fields["resume"]
            executor = self._executors.get(resume) if resume else None
            resumable = (executor is not None and executor.peer is peer
                         and peer.current == resume)
            # Ids it may speak for: its own, or ones this server never gave out.
            claimed = {*fields["ids"], *(w for w, _, _ in fields["running"]),
                       *([resume] if resume else [])}
            mine = sorted(w for w in claimed
                          if w not in self._executors or self._executors[w].peer is peer)
        running = [r for r in fields["running"] if r[0] in mine]
        if fields["reports"] and (mine or running):
            self.cluster.workers_report(mine, running)
        if resumable and self.cluster.beat(resume):
            executor.resend()
            log.info("worker %s (%s pid %s) reconnected and resumed", resume, peer.host,
                     peer.pid)
            return self._welcome(resume, resumed=True)
        with self._lock:
            abandoned = self._executors.get(peer.current) if peer.current else None
        if abandoned is not None:
            # Its process registers without it (the answer naming it was lost): free it now
            # rather than after the heartbeat timeout.
            self.retire(abandoned, "its process registered again without it")
        if not fields["join"]:
            return self._welcome(None, resumed=False)
        if running:
            # Not resumed, yet it runs handlers under ids that are dead here (or unknown):
            # it stops them first, then registers again to join.
            log.info("worker process %s (%s pid %s) still runs %d handler(s) of an earlier "
                     "id; it joins once they have stopped", peer.name, peer.host, peer.pid,
                     len(running))
            return self._welcome(None, resumed=False)
        self._check_join(peer)
        worker_id = self.cluster.new_worker_id(self.id_prefix)
        executor = RemoteExecutor(worker_id, peer, self)
        with self._lock:
            self._executors[worker_id] = executor
            peer.worker_ids.add(worker_id)
            peer.current = worker_id
        self.cluster.join_worker(worker_id, executor, meta=peer.meta())
        log.info("worker process %s (%s pid %s, %d slots) joined as %s%s", peer.name,
                 peer.host, peer.pid, peer.slots, worker_id,
                 f" (was {resume})" if resume else "")
        return self._welcome(worker_id, resumed=False)

    def heartbeat(self, sid: str, data: Any) -> dict:
        executor = self._executor(sid, data)
        return {"alive": self.cluster.beat(executor.id), "chaos": self.cluster.chaos.view()}

    def begin(self, sid: str, data: Any) -> dict:
        executor = self._executor(sid, data)
        task_id, lease = _task_ref(data)
        return {"context": executor.begin(task_id, lease)}

    def result(self, sid: str, data: Any) -> dict:
        executor = self._executor(sid, data)
        executor.report(*_outcome(data))
        return {"ok": True}

    def work(self, sid: str, data: Any) -> dict:
        """Many results and begins in one frame (protocol 2); every entry is checked
        before any is applied, so a malformed frame changes nothing."""
        executor = self._executor(sid, data)
        results = [_outcome(item) for item in _batch(data, "results")]
        begins = [_task_ref(_pair(item)) for item in _batch(data, "begin")]
        take = int_field(data, "take", 0, MAX_SLOTS) if "take" in data else 0
        contexts, started = executor.work(results, begins, take)
        return {"contexts": contexts, "started": started}

    def drain(self, sid: str, data: Any) -> dict:
        executor = self._executor(sid, data)
        self.cluster.drain_worker(executor.id)
        return {"ok": True}

    def refuse_assignment(self, sid: str, data: Any) -> dict:
        executor = self._executor(sid, data)
        task_id, lease = _task_ref(data)
        reason = data.get("reason", "no reason given")
        if not isinstance(reason, str) or len(reason) > MAX_TEXT:
            raise invalid(f"reason must be a string of at most {MAX_TEXT} characters")
        return {"ok": True, "moved": executor.refuse(task_id, lease, reason)}

    def retire(self, executor: RemoteExecutor, why: str) -> bool:
        """Drain a worker id its process no longer works under, if it is still alive: its
        queued tasks move now and it leaves once nothing runs there. True if drained."""
        if self._status(executor.id) != "alive":
            return False  # dead, draining or gone: its tasks have moved or will
        try:
            self.cluster.drain_worker(executor.id)
        except (Conflict, UnknownWorker):
            return False  # it left meanwhile
        log.warning("worker %s (%s pid %s): %s; draining it so its tasks move now",
                    executor.id, executor.peer.host, executor.peer.pid, why)
        return True

    # ------------------------------------------------------------------ executor callbacks

    def send_assign(self, executor: RemoteExecutor, tasks: list[list]) -> None:
        sid = executor.peer.sid
        if sid is None:
            return  # sent again when the process reconnects and resumes
        self.socketio.emit("assign", {"worker_id": executor.id, "tasks": tasks}, to=sid,
                           namespace=NAMESPACE)

    def send_cancel(self, executor: RemoteExecutor, dispatch: Dispatch) -> None:
        sid = executor.peer.sid
        if sid is not None:
            self.socketio.emit("cancel", {"worker_id": executor.id, "task_id": dispatch.task_id,
                                          "lease": dispatch.lease}, to=sid, namespace=NAMESPACE)

    def worker_left(self, executor: RemoteExecutor) -> None:
        status = self._status(executor.id)
        peer = executor.peer
        with self._lock:
            if peer.current == executor.id and status in ("dead", "removed"):
                peer.current = None
            sid = peer.sid
            self._forget_departed(executor.id)
        if sid is not None and status in ("dead", "removed"):
            self.socketio.emit("left", {"worker_id": executor.id, "status": status}, to=sid,
                               namespace=NAMESPACE)

    def kill(self, executor: RemoteExecutor) -> None:
        peer = executor.peer
        pid = self.pool.kill(peer.spawn_id) if peer.spawn_id else None
        if pid is not None:
            log.warning("worker %s: SIGKILL sent to its process (pid %d)", executor.id, pid)
            return
        if peer.sid is None:
            log.warning("worker %s: cannot reach its process to kill it; if it is gone, "
                        "the heartbeat monitor will declare it dead", executor.id)
            return
        log.warning("worker %s: told its process (%s pid %s) to SIGKILL itself", executor.id,
                    peer.host, peer.pid)
        self.socketio.emit("kill", {"worker_id": executor.id}, to=peer.sid, namespace=NAMESPACE)

    # ------------------------------------------------------------------ internals

    def _welcome(self, worker_id: str | None, resumed: bool) -> dict:
        config = self.cluster.config
        return {"worker_id": worker_id, "resumed": resumed,
                "heartbeat_interval": config.heartbeat_interval,
                "heartbeat_timeout": config.heartbeat_timeout,
                "chaos": self.cluster.chaos.view(),
                # A bigger message closes the connection (engine.io's max_http_buffer_size).
                "max_message_bytes": self.socketio.server.eio.max_http_buffer_size,
                "protocol": PROTOCOL_VERSION}

    def _executor(self, sid: str, data: Any) -> RemoteExecutor:
        """The executor `data["worker_id"]` names, if this connection's process owns it."""
        data = expect_object(data, "the message")
        worker_id = data.get("worker_id")
        if not isinstance(worker_id, str):
            raise invalid("worker_id must be a string")
        # Without the lock: every heartbeat, begin and result asks this, and hundreds of them
        # queued on the lock while 256 workers joined (heartbeats were answered seconds
        # late). One dict lookup is atomic, and a connection rebound between the two fails
        # the check below, as it would a moment later.
        peer = self._by_sid.get(sid)
        executor = self._executors.get(worker_id)
        if peer is None:
            raise ApiError(409, ErrorCode.NOT_REGISTERED, "register this connection first")
        if executor is None or executor.peer is not peer:
            raise UnknownWorker(worker_id)
        return executor

    def _status(self, worker_id: str) -> str | None:
        for worker in self.cluster.workers():
            if worker["id"] == worker_id:
                return worker["status"]
        return None

    def _check_join(self, peer: Peer) -> None:
        """Refuse (429) a join beyond the limits: one token holder must not be able to fill
        the ring with ids (and /api/workers with entries) that take placement from others."""
        statuses = {w["id"]: w["status"] for w in self.cluster.workers()}
        with self._lock:
            held = sorted(w for w in peer.worker_ids if statuses.get(w) in ("alive", "draining"))
            if len(held) >= self.limits.ids_per_process:
                raise ApiError(429, ErrorCode.TOO_MANY_WORKER_IDS,
                               f"this process already holds {len(held)} worker ids "
                               f"({', '.join(held)}); at most {self.limits.ids_per_process} "
                               "may be alive or draining at once")
            if not self._joins.take(self._clock()):
                wait = self._joins.retry_after()
                log.warning("refused a worker registration from %s (pid %s): more than %g "
                            "joins per second", peer.host, peer.pid, self.limits.per_second)
                raise ApiError(429, ErrorCode.TOO_MANY_REGISTRATIONS,
                               f"more than {self.limits.per_second:g} workers joined per "
                               f"second; try again in {wait:.1f}s")

    def _forget_departed(self, worker_id: str) -> None:
        """Under the lock: remember a bounded number of departed worker ids."""
        self._departed[worker_id] = None
        while len(self._departed) > DEPARTED_HISTORY:
            old, _ = self._departed.popitem(last=False)
            executor = self._executors.get(old)
            if executor is not None and executor.stopped:
                del self._executors[old]
                executor.peer.worker_ids.discard(old)

    def _forget_old_peers(self) -> None:
        """Under the lock: keep memory bounded by forgetting long-gone processes."""
        while len(self._peers) > PEER_HISTORY:
            gone = next((p for p in self._peers.values() if p.sid is None), None)
            if gone is None:
                return
            del self._peers[gone.session]
            for worker_id in gone.worker_ids:
                executor = self._executors.get(worker_id)
                if executor is not None and executor.stopped:
                    del self._executors[worker_id]


def _parse_register(data: Any) -> dict:
    data = expect_object(data, "the registration")
    unknown = set(data) - {"session", "name", "host", "pid", "slots", "concurrency", "resume",
                           "join", "spawn_id", "steps", "tags", "running", "ids",
                           "definitions"}
    if unknown:
        raise invalid(f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
    fields: dict[str, Any] = {}
    for name in ("session", "name", "host"):
        value = data.get(name)
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
            raise invalid(f"{name} must be a non-empty string of at most {MAX_TEXT} characters")
        fields[name] = value
    for name in ("resume", "spawn_id"):
        value = data.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
            raise invalid(f"{name} must be a string or null")
        fields[name] = value
    fields["pid"] = int_field(data, "pid", 1, 2**31)
    # `concurrency`: what clients sent before slots (same meaning), still accepted.
    word = "slots" if "slots" in data or "concurrency" not in data else "concurrency"
    fields["slots"] = int_field(data, word, 1, MAX_SLOTS)
    join = data.get("join", True)
    if not isinstance(join, bool):
        raise invalid("join must be true or false")
    fields["join"] = join
    steps = data.get("steps")
    fields["steps"] = None if steps is None else _names(steps, "steps", MAX_NAMES)
    fields["tags"] = _names(data.get("tags", []), "tags", MAX_TAGS)
    # The workflow definitions its app has (absent or null: any, as before versions).
    definitions = data.get("definitions")
    fields["definitions"] = (None if definitions is None
                             else _names(definitions, "definitions", MAX_NAMES))
    # What it still runs, and under which ids (optional: older clients do not say).
    fields["reports"] = "running" in data
    fields["ids"] = _names(data.get("ids", []), "ids", MAX_REPORTED_IDS)
    fields["running"] = _running(data.get("running", []))
    return fields


def _running(value: Any) -> list[tuple[str, str, int]]:
    """A registration's `running`: [[worker_id, task_id, lease], ...], at most MAX_SLOTS."""
    if not isinstance(value, list) or len(value) > MAX_SLOTS:
        raise invalid(f"running must be a list of at most {MAX_SLOTS} [worker_id, task_id, "
                      "lease] entries")
    entries = []
    for item in value:
        if not isinstance(item, list) or len(item) != 3:
            raise invalid("each running entry must be [worker_id, task_id, lease]")
        worker_id, task_id, lease = item
        if not isinstance(worker_id, str) or not worker_id or len(worker_id) > MAX_TEXT:
            raise invalid("a running entry's worker_id must be a non-empty string")
        ref = _task_ref({"task_id": task_id, "lease": lease})
        entries.append((worker_id, *ref))
    return entries


# What one registration may list: steps it has handlers for, capability tags it offers.
MAX_NAMES, MAX_TAGS = 1000, 64


def _names(value: Any, field: str, most: int) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or len(value) > most
        or not all(isinstance(v, str) and v.strip() and len(v) <= MAX_TEXT for v in value)
    ):
        raise invalid(f"{field} must be a list of at most {most} non-empty names")
    return tuple(dict.fromkeys(value))


def _outcome(data: Any) -> tuple[str, int, bool, object]:
    """A result, as `result` sends it ({"task_id", "lease", "ok", "value", "traceback"?})
    or as one entry of a `work` frame's results ([task_id, lease, ok, value, traceback?]).
    A failure's value becomes a Failure with its traceback. The cluster checks the outcome
    (JSON, size; the traceback's size too) as it does for thread workers."""
    if isinstance(data, list):
        if len(data) not in (4, 5):
            raise invalid("each result must be [task_id, lease, ok, value, traceback?]")
        data = dict(zip(("task_id", "lease", "ok", "value", "traceback"), data, strict=False))
    task_id, lease = _task_ref(data)
    ok = data.get("ok")
    if not isinstance(ok, bool):
        raise invalid("ok must be true or false")
    value = data.get("value")
    if not ok and not isinstance(value, str):
        raise invalid("a failed result carries its error message as value")
    trace = data.get("traceback")
    if trace is not None and not isinstance(trace, str):
        raise invalid("traceback must be a string or absent")
    if not ok:
        value = Failure(value, trace or None)
    return task_id, lease, ok, value


def _batch(data: dict, field: str) -> list:
    value = data.get(field, [])
    if not isinstance(value, list) or len(value) > MAX_BATCH:
        raise invalid(f"{field} must be a list of at most {MAX_BATCH} entries")
    return value


def _pair(item: Any) -> dict:
    if not isinstance(item, list) or len(item) != 2:
        raise invalid("each begin must be [task_id, lease]")
    return {"task_id": item[0], "lease": item[1]}


def _task_ref(data: dict) -> tuple[str, int]:
    task_id = data.get("task_id")
    if not isinstance(task_id, str) or not task_id or len(task_id) > 2 * MAX_TEXT:
        raise invalid("task_id must be a non-empty string")
    return task_id, int_field(data, "lease", 1, 2**62)


def acknowledged(method: Callable[[str, Any], dict]) -> Callable[..., dict]:
    """A Socket.IO handler for `method(sid, data)` that answers every error in the HTTP
    API's shape, `{"error": {"code", "message"}, "status"}`, instead of raising.

    The door for a remote worker's text: every string it sends (its name, host and tags,
    task ids, errors and results, reasons) is escaped here where no journal could hold it
    (a NUL, a lone surrogate: scheduler/engine/text.py), as the server records it."""

    @functools.wraps(method)
    def handler(*args: Any) -> dict:
        return answer(method, request.sid, args)

    return handler


def answer(method: Callable[[str, Any], dict], sid: str, args: tuple | list) -> dict:
    """`method(sid, the one argument)`, or the error it raised in the HTTP API's shape."""
    try:
        if len(args) > 1:
            raise invalid("send one JSON argument")
        return method(sid, escape_all(args[0]) if args else None)
    except Exception as exc:  # noqa: BLE001 - every failure is answered, none crashes
        error = describe(exc)
        return {**error_body(error), "status": error.status}


def runs_demo(cluster: Cluster) -> bool:
    """Whether the cluster runs the built-in demo's handlers (an app built on them turns
    the demo's chaos knobs), which a worker process runs without an app."""
    return cluster.app is not None and cluster.app.chaos is not None


def hub_of(app: Flask) -> WorkerHub | None:
    return app.extensions.get(EXTENSION)


def install_worker_hub(app: Flask, socketio: SocketIO, cluster: Cluster) -> WorkerHub:
    """Add the "/workers" namespace and the process pool to an app built by create_app
    (which registers the hub among the app's parts)."""
    pool = ProcessPool(url=lambda: app.config.get("ORDERFLOW_URL"),
                       token=lambda: app.config.get("ORDERFLOW_TOKEN"),
                       limit=lambda: app.config["WORKER_PROCESS_LIMIT"],
                       app=lambda: app.config.get("ORDERFLOW_APP"))
    limits = JoinLimits(per_second=app.config["WORKER_JOINS_PER_SECOND"],
                        burst=app.config["WORKER_JOIN_BURST"],
                        ids_per_process=app.config["WORKER_IDS_PER_PROCESS"])
    hub = WorkerHub(cluster, socketio, pool, limits,
                    reconnect_grace=app.config["WORKER_RECONNECT_GRACE"],
                    standby=lambda: refusal_of(app.extensions["orderflow"].leadership))
    pool.on_exit = hub.process_exited
    app.extensions[EXTENSION] = hub

    @socketio.on("connect", namespace=NAMESPACE)
    def on_connect(auth: Any = None) -> None:
        if not socket_auth_ok(auth):
            hub.refuse(request.remote_addr)
        refusal = hub.standby()
        if refusal is not None:  # the gate refuses most; this is for one let in just before
            # Two arguments: python-socketio sends {"message": first, "data": second} (one
            # dict alone would arrive as its repr in "message", and the worker would take a
            # standby's refusal for a final one).
            raise ConnectionRefusedError(refusal["error"]["message"],
                                         {"role": refusal["role"], "leader": refusal["leader"]})

    @socketio.on("disconnect", namespace=NAMESPACE)
    def on_disconnect(reason: Any = None) -> None:
        hub.disconnected(request.sid, reason)

    for event, method in (("register", hub.register), ("heartbeat", hub.heartbeat),
                          ("begin", hub.begin), ("result", hub.result), ("work", hub.work),
                          ("drain", hub.drain),
                          ("refuse", hub.refuse_assignment)):
        socketio.on_event(event, acknowledged(method), namespace=NAMESPACE)
    # Heartbeats (two a second per worker) and `work` frames (one per round trip) are
    # answered on their connection's own thread, not on a thread started per message
    # (dashboard/door/frames.py).
    frame_guard = app.extensions.get("orderflow_frames")
    if frame_guard is not None:
        for event, method in (("heartbeat", hub.heartbeat), ("work", hub.work)):
            frame_guard.answer_inline(NAMESPACE, event, functools.partial(answer, method))
    return hub
