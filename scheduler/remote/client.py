"""`orderflow worker`: a worker process that joins a cluster over Socket.IO.

Threads: the main thread connects (with backoff), registers, re-registers and drains; a
heartbeat thread beats every heartbeat_interval, so a long handler never makes the process
look dead; N runner threads take assignments from the local queue, run the handlers and
report; python-socketio's own threads deliver the server's messages (one thread each, so
nothing here depends on their order). Wire contract: worker_protocol.py.

What the server does not acknowledge is kept and sent again: a result whose answer was lost
with the connection goes out after the process registered again. The scheduler's fencing
makes that safe: a result under a lease that is no longer current is rejected, so nothing
commits twice.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import queue
import random
import signal
import socket
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import socketio

from ..demo.handlers import Chaos, demo_handlers
from ..steps.context import Handler, TaskContext
from ..steps.run import run_handler
from .protocol import EXIT_REFUSED, NAMESPACE, handshake_headers, handshake_refusal

log = logging.getLogger("orderflow.worker")

SEEN_MEMORY = 100_000  # assignments remembered, so one sent again is not run twice


class Refused(Exception):
    """The server refused this process (a wrong token): retrying cannot help."""


class Unavailable(Exception):
    """Not connected, or no answer in time: try again once connected."""


class HandlerSpecError(ValueError):
    """`--handlers module:attr` does not name a dict of step -> callable."""


@dataclass(frozen=True)
class WorkerOptions:
    """Settings of one worker process; every default is what `orderflow worker` gets."""

    server: str
    token: str | None = None
    # Handlers run at once; more assignments wait in the local queue.
    concurrency: int = 2
    name: str = ""
    # Reconnect backoff: the first wait, doubled per failure up to the max (seconds).
    reconnect_delay: float = 0.5
    reconnect_delay_max: float = 5.0
    # How long a request (register, begin, result) waits for its answer (seconds).
    request_timeout: float = 5.0
    # After SIGTERM without a connection: how long to keep trying to deliver results.
    drain_grace: float = 5.0
    # Set for processes the server started: exit when that process is gone.
    parent_pid: int | None = None
    spawn_id: str | None = None


def reconnect_delay(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """Backoff before the next connection attempt: "equal jitter" over min(cap, base * 2^n),
    so many workers that lost one server do not come back in a single wave."""
    ceiling = min(cap, base * 2 ** min(failures, 30))
    return rng.uniform(ceiling / 2, ceiling)


def load_handlers(spec: str | None, chaos: Chaos) -> dict[str, Handler]:
    """The demo handlers, or the dict named by "module:attr"."""
    if spec is None:
        return demo_handlers(chaos)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise HandlerSpecError(f"--handlers expects module:attr, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerSpecError(f"cannot import {module_name!r}: {exc}") from None
    value = getattr(module, attr, None)
    if not isinstance(value, Mapping) or not value or not all(
        isinstance(step, str) and callable(fn) for step, fn in value.items()
    ):
        raise HandlerSpecError(f"{spec} must be a non-empty dict of step name -> callable")
    return dict(value)


class _Pending:
    """A request waiting for its acknowledgement; failed when the connection drops."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.failed = False
        self.reply: Any = None

    def resolve(self, *args: Any) -> None:
        self.reply = args[0] if args else None
        self.done.set()


class _Attempt(threading.Thread):
    """One connection attempt; `error` is None when it connected."""

    def __init__(self, connect: Callable[[], None], done: threading.Event):
        super().__init__(name="connect", daemon=True)
        self._connect, self._done = connect, done
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self._connect()
        except (Refused, Unavailable) as exc:
            self.error = exc
        except Exception as exc:  # noqa: BLE001 - any failure to connect is retried
            self.error = Unavailable(f"{type(exc).__name__}: {exc}")
        finally:
            self._done.set()


class WorkerProcess:
    """One `orderflow worker`: `run()` returns the exit status."""

    def __init__(self, options: WorkerOptions, handlers: Mapping[str, Handler],
                 chaos: Chaos | None = None):
        self.options = options
        self.session = uuid.uuid4().hex
        self.name = options.name or f"{socket.gethostname()}-{os.getpid()}"
        self._handlers = handlers
        self._chaos = chaos or Chaos()
        self._rng = random.Random()
        self.sio = socketio.Client(reconnection=False, handle_sigint=False)
        self._lock = threading.Lock()
        self._wake = threading.Event()  # the main loop has something to look at
        self._stopping = threading.Event()  # threads end
        self._cancel = threading.Event()  # running handlers should give up (forced exit)
        self._session_ready = threading.Event()  # registered on the current connection
        self.draining = threading.Event()  # SIGTERM: no new tasks, leave the ring, exit 0
        self._left = threading.Event()  # the server removed this worker after a drain
        self._beat_now = threading.Event()  # wakes the heartbeat thread early
        self._forced: tuple[int, str] | None = None  # exit at once: (status, reason)
        self._refusal: str | None = None
        self.worker_id: str | None = None
        self._retired: set[str] = set()  # ids the server declared dead or removed
        self._connection = 0  # counts connections; a registration belongs to one
        self._registered_on = -1
        self._drain_sent = False
        self._drain_deadline: float | None = None
        self._interval = 0.5
        self._max_result = 1_000_000 - 4096  # updated from the server at registration
        self._queue: queue.SimpleQueue[tuple[str, str, int]] = queue.SimpleQueue()
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._results: dict[tuple[str, int], dict] = {}  # not yet acknowledged
        self._sending: set[tuple[str, int]] = set()
        self._busy = 0  # runners between taking an assignment and handing in its result
        self._inflight: set[_Pending] = set()
        self._threads = [threading.Thread(target=self._heartbeat_loop, daemon=True,
                                          name="heartbeat")]
        self._threads += [threading.Thread(target=self._runner_loop, daemon=True,
                                           name=f"runner-{i + 1}")
                          for i in range(options.concurrency)]
        self._bind_events()

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        for thread in self._threads:
            thread.start()
        failures = 0
        attempt: _Attempt | None = None  # a connection attempt runs on its own thread,
        next_attempt = 0.0  # so a signal is handled at once, even while connecting
        try:
            while True:
                status = self._exit_status()
                if status is not None:
                    return status
                if attempt is not None and self.sio.failed_namespaces:
                    # Refused: no need to wait while the client closes the socket.
                    return self._refused(self._refusal or "refused")
                if attempt is not None and not attempt.is_alive():
                    error, attempt = attempt.error, None
                    if isinstance(error, Refused):
                        return self._refused(str(error))
                    if error is not None:
                        delay = reconnect_delay(failures, self.options.reconnect_delay,
                                                self.options.reconnect_delay_max, self._rng)
                        failures += 1
                        next_attempt = time.monotonic() + delay
                        log.warning("cannot reach %s (%s); next attempt in %.1fs",
                                    self.options.server, error, delay)
                    else:
                        failures = 0
                now = time.monotonic()
                if attempt is None and not self.sio.connected:
                    if now < next_attempt:
                        self._pause(min(0.5, next_attempt - now))
                        continue
                    attempt = _Attempt(self._connect, self._wake)
                    attempt.start()
                if attempt is None:
                    try:
                        self._register_if_needed()
                        self._flush_results()
                        self._drain_if_asked()
                    except Unavailable:
                        pass  # lost the connection or an answer; the next round sees which
                self._pause(0.5)
        finally:
            self._shutdown()

    def _refused(self, reason: str) -> int:
        print(f"orderflow worker: error: the server at {self.options.server} refused the "
              f"connection: {reason}. Check --token or ORDERFLOW_TOKEN.", file=sys.stderr,
              flush=True)
        return EXIT_REFUSED

    def _exit_status(self) -> int | None:
        """None while there is work to do; otherwise the status to exit with."""
        if self._forced is not None:
            status, reason = self._forced
            log.warning("exiting at once: %s", reason)
            return status
        with self._lock:
            idle = self._busy == 0
            undelivered = len(self._results)
            current = self.worker_id
        if self._left.is_set() and idle:
            log.info("drained and removed from the ring; exiting")
            return 0
        if not self.draining.is_set() or not idle:
            return None
        if undelivered == 0 and (current is None or not self._session_ready.is_set()):
            # Never joined, declared dead while draining, or not connected: there is
            # nothing to hand over (without a connection, the server moves this worker's
            # queued tasks when it declares it dead).
            log.info("drained; exiting")
            return 0
        if not self._session_ready.is_set() and self._past_drain_deadline():
            log.warning("could not reach the server to leave the ring; exiting with %d "
                        "result(s) undelivered (the server moves those tasks when it "
                        "declares this worker dead)", undelivered)
            return 0
        return None

    def _past_drain_deadline(self) -> bool:
        return self._drain_deadline is not None and time.monotonic() > self._drain_deadline

    def _pause(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _connect(self) -> None:
        self._refusal = None
        auth = {"token": self.options.token} if self.options.token else None
        try:
            self.sio.connect(self.options.server, auth=auth, transports=["websocket"],
                             headers=handshake_headers(self.options.token),
                             namespaces=[NAMESPACE], wait_timeout=self.options.request_timeout)
        except socketio.exceptions.ConnectionError as exc:
            refusal = handshake_refusal(exc)
            if self.sio.failed_namespaces or refusal:
                raise Refused(refusal or self._refusal or str(exc)) from None
            raise Unavailable(str(exc)) from None
        except ValueError as exc:  # the previous connection has not finished closing
            raise Unavailable(str(exc)) from None

    def _register_if_needed(self) -> None:
        with self._lock:
            fresh = self._registered_on != self._connection
            current = self.worker_id
        draining = self.draining.is_set()
        if not fresh and (current is not None or draining):
            return
        reply = self._request("register", {
            "session": self.session, "name": self.name, "host": socket.gethostname(),
            "pid": os.getpid(), "concurrency": self.options.concurrency,
            "resume": current, "join": not draining, "spawn_id": self.options.spawn_id,
        })
        if not isinstance(reply, dict) or "error" in reply:
            error = reply.get("error", {}) if isinstance(reply, dict) else {}
            if isinstance(reply, dict) and reply.get("status") == 422:
                self._force(f"the server refused the registration: {error.get('message')}", 2)
            log.error("registration refused: %s", reply)
            raise Unavailable("registration refused")
        worker_id = reply["worker_id"]
        with self._lock:
            if current is not None and worker_id != current:
                self._retired.add(current)
            self.worker_id = worker_id
            self._interval = float(reply["heartbeat_interval"])
            # Leave room for the rest of the message around the value.
            self._max_result = int(reply.get("max_message_bytes", 1_000_000)) - 4096
            self._registered_on = self._connection
            if not reply["resumed"]:
                self._drain_sent = False
        self._apply_chaos(reply.get("chaos"))
        self._session_ready.set()
        self._beat_now.set()  # the first beat now, not an old interval from now
        if reply["resumed"]:
            log.info("reconnected and resumed as %s", worker_id)
        elif worker_id is not None:
            log.info("joined the cluster as %s (%s, concurrency %d, heartbeat every %.2fs)",
                     worker_id, self.name, self.options.concurrency, self._interval)

    def _drain_if_asked(self) -> None:
        if not self.draining.is_set() or self._drain_sent or not self._session_ready.is_set():
            return
        worker_id = self.worker_id
        if worker_id is None:
            return
        reply = self._request("drain", {"worker_id": worker_id})
        self._drain_sent = True
        if isinstance(reply, dict) and "error" in reply:
            if reply.get("status") == 409:
                return  # already draining; the removal follows
            # Unknown or already gone: nothing to leave.
            log.info("drain of %s: %s", worker_id, reply["error"]["message"])
            self._forget_current(worker_id)
        else:
            log.info("draining %s: finishing running tasks, then leaving", worker_id)

    # ------------------------------------------------------------------ requests

    def _request(self, event: str, data: dict) -> Any:
        """Emit and wait for the acknowledgement; Unavailable if the connection drops."""
        pending = _Pending()
        with self._lock:
            self._inflight.add(pending)
        try:
            try:
                self.sio.emit(event, data, namespace=NAMESPACE, callback=pending.resolve)
            except (socketio.exceptions.SocketIOError, OSError) as exc:
                raise Unavailable(str(exc)) from None
            if not pending.done.wait(self.options.request_timeout) or pending.failed:
                raise Unavailable(f"no answer to {event}")
            return pending.reply
        finally:
            with self._lock:
                self._inflight.discard(pending)

    def _send_result(self, key: tuple[str, int]) -> None:
        with self._lock:
            payload = self._results.get(key)
            if payload is None or key in self._sending:
                return
            self._sending.add(key)
        try:
            reply = self._request("result", payload)
        except Unavailable:
            return  # kept; sent again after the next registration
        finally:
            with self._lock:
                self._sending.discard(key)
        if isinstance(reply, dict) and "error" in reply:
            log.error("result for %s lease %s refused: %s", *key, reply["error"]["message"])
        with self._lock:
            self._results.pop(key, None)
        self._wake.set()

    def _flush_results(self) -> None:
        if not self._session_ready.is_set():
            return
        with self._lock:
            keys = [k for k in self._results if k not in self._sending]
        for key in keys:
            self._send_result(key)

    # ------------------------------------------------------------------ runners

    def _runner_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                worker_id, task_id, lease = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            with self._lock:
                if self.draining.is_set() or worker_id in self._retired:
                    continue  # the server moves it elsewhere
                self._busy += 1
            try:
                self._run_one(worker_id, task_id, lease)
            except Exception:  # noqa: BLE001 - a runner that dies silently loses work
                log.exception("runner: unexpected error on %s", task_id)
            finally:
                with self._lock:
                    self._busy -= 1
                self._wake.set()

    def _run_one(self, worker_id: str, task_id: str, lease: int) -> None:
        context = self._begin(worker_id, task_id, lease)
        if context is None:
            return
        ok, value = run_handler(self._handlers, TaskContext(**context, cancelled=self._cancel))
        if self._cancel.is_set():
            return  # forced exit: like a crash, report nothing
        size = len(json.dumps(value))
        if size > self._max_result:
            # The server would drop the connection over it, again after every reconnect.
            ok, value = False, (f"result too large to send: {size} bytes "
                                f"(the server accepts about {self._max_result})")
        key = (task_id, lease)
        with self._lock:
            self._results[key] = {"worker_id": worker_id, "task_id": task_id, "lease": lease,
                                  "ok": ok, "value": value}
        if self._session_ready.is_set():
            self._send_result(key)

    def _begin(self, worker_id: str, task_id: str, lease: int) -> dict | None:
        """Ask to start; asked again until answered, as the server answers a repeat alike."""
        data = {"worker_id": worker_id, "task_id": task_id, "lease": lease}
        asked = False
        while not self._stopping.is_set():
            with self._lock:
                if worker_id in self._retired:
                    return None  # declared dead: the task has moved on
                if self.draining.is_set() and not asked:
                    return None  # never started here: the drain moves it
            if not self._session_ready.wait(0.2):
                continue
            try:
                asked = True  # from now on the server may have started it for us
                reply = self._request("begin", data)
            except Unavailable:
                continue
            if not isinstance(reply, dict) or "error" in reply:
                log.warning("begin %s refused: %s", task_id, reply)
                return None
            return reply.get("context")
        return None

    # ------------------------------------------------------------------ heartbeats

    def _heartbeat_loop(self) -> None:
        while not self._stopping.is_set():
            self._beat_now.wait(self._interval)
            self._beat_now.clear()
            if self._stopping.is_set():
                return
            parent = self.options.parent_pid
            if parent is not None and os.getppid() != parent:
                self._force("the server process that started this worker is gone", 0)
                return
            worker_id = self.worker_id
            if worker_id is None or not self._session_ready.is_set():
                continue
            try:
                self.sio.emit("heartbeat", {"worker_id": worker_id}, namespace=NAMESPACE,
                              callback=functools.partial(self._on_beat, worker_id))
            except (socketio.exceptions.SocketIOError, OSError):
                pass  # disconnected: the main loop reconnects

    def _on_beat(self, worker_id: str, reply: Any = None) -> None:
        if not isinstance(reply, dict):
            return
        if reply.get("alive") is False or reply.get("status") == 404:
            self._declared_dead(worker_id)
        self._apply_chaos(reply.get("chaos"))

    def _declared_dead(self, worker_id: str) -> None:
        with self._lock:
            if self.worker_id != worker_id:
                return
        log.warning("the server declared %s dead (missed heartbeats); %s", worker_id,
                    "leaving" if self.draining.is_set() else "joining again under a new id")
        self._forget_current(worker_id)

    def _forget_current(self, worker_id: str) -> None:
        with self._lock:
            self._retired.add(worker_id)
            if self.worker_id == worker_id:
                self.worker_id = None
        self._wake.set()

    def _apply_chaos(self, view: Any) -> None:
        if isinstance(view, dict) and view != self._chaos.view():
            try:
                self._chaos.update(view.get("failure_rate"), view.get("latency_ms"))
            except ValueError:
                log.warning("ignoring bad chaos settings from the server: %r", view)

    # ------------------------------------------------------------------ server messages

    def _bind_events(self) -> None:
        on = functools.partial(self.sio.on, namespace=NAMESPACE)
        on("connect")(self._on_connect)
        on("connect_error")(self._on_connect_error)
        on("disconnect")(self._on_disconnect)
        on("assign")(self._on_assign)
        on("left")(self._on_left)
        on("kill")(self._on_kill)

    def _on_connect(self) -> None:
        with self._lock:
            self._connection += 1
        log.info("connected to %s", self.options.server)
        self._wake.set()

    def _on_connect_error(self, data: Any = None) -> None:
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            self._refusal = data["message"]
        self._wake.set()

    def _on_disconnect(self, reason: Any = None) -> None:
        self._session_ready.clear()
        with self._lock:
            pending, self._inflight = self._inflight, set()
            if self.draining.is_set() and self._drain_deadline is None:
                self._drain_deadline = time.monotonic() + self.options.drain_grace
        for request in pending:
            request.failed = True
            request.done.set()
        if not self._stopping.is_set():
            log.warning("lost the connection to %s (%s); reconnecting", self.options.server,
                        reason)
        self._wake.set()

    def _on_assign(self, data: Any = None) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
            return
        worker_id = data.get("worker_id")
        with self._lock:
            if worker_id in self._retired:
                return
            for task_id, lease in data["tasks"]:
                key = (task_id, lease)
                if key in self._seen:
                    continue  # sent again after a reconnect; already queued or done
                self._seen[key] = None
                if len(self._seen) > SEEN_MEMORY:
                    self._seen.popitem(last=False)
                self._queue.put((worker_id, task_id, lease))

    def _on_left(self, data: Any = None) -> None:
        if not isinstance(data, dict):
            return
        worker_id, status = data.get("worker_id"), data.get("status")
        if status == "dead":
            self._declared_dead(worker_id)
        elif status == "removed":
            log.info("%s drained: it left the ring", worker_id)
            self._forget_current(worker_id)
            self._left.set()
            self._wake.set()

    def _on_kill(self, data: Any = None) -> None:
        log.warning("killed from the dashboard: SIGKILL")
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)

    # ------------------------------------------------------------------ signals and exit

    def on_signal(self, signum: int, frame: Any = None) -> None:
        """First SIGTERM/SIGINT drains; a second one exits at once."""
        if self.draining.is_set():
            self._force("a second signal", 1)
            return
        with self._lock:
            if not self._session_ready.is_set():
                self._drain_deadline = time.monotonic() + self.options.drain_grace
        self.draining.set()
        self._wake.set()

    def _force(self, reason: str, status: int) -> None:
        self._forced = (status, reason)
        self._cancel.set()
        self._wake.set()

    def _shutdown(self) -> None:
        self._stopping.set()
        self._cancel.set()
        self._beat_now.set()
        deadline = time.monotonic() + 2.0
        for thread in self._threads:
            # Daemon threads: one stuck in a handler that ignores cancellation ends with us.
            thread.join(max(0.0, deadline - time.monotonic()))
        if self.sio.connected:
            # Closing from this side waits up to 3 s for a close frame some servers never
            # send; the process ends either way, and its socket with it.
            closer = threading.Thread(target=self.sio.disconnect, daemon=True)
            closer.start()
            closer.join(0.5)
