"""`orderflow worker`: the I/O shell around the worker session (session.py decides).

Threads, each a one-iteration loop that feeds the session under one lock and carries out
the effects it returns after the lock: the main thread ticks (connect, register, drain,
deliver, exit) and handles signals; a heartbeat thread beats, so a long handler never makes
the process look dead; N runner threads take assignments from the local queue, ask to
begin, run the handler (outside any lock) and report; a connection attempt runs on a thread
of its own, so a signal is handled at once even while connecting; python-socketio's own
threads deliver the server's messages and acknowledgements (one thread each, so nothing here
depends on their order). Wire contract: protocol.py.
"""

from __future__ import annotations

import functools
import importlib
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
from collections.abc import Callable, Mapping
from typing import Any

import socketio

from ..demo.handlers import Chaos, demo_handlers
from ..runtime.worker import LoopThread
from ..steps.context import Handler, TaskContext
from ..steps.run import run_handler
from .effects import Assignment, Connect, Effect, Exit, Log, Run, Send
from .options import Identity, WorkerOptions, reconnect_delay
from .protocol import NAMESPACE, handshake_headers, handshake_refusal
from .session import BeginAction, WorkerSession

log = logging.getLogger("orderflow.worker")

__all__ = ["HandlerSpecError", "WorkerOptions", "WorkerProcess", "load_handlers",
           "reconnect_delay"]

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# The longest the main loop sleeps: a signal is noticed within this.
SIGNAL_POLL = 0.1


class HandlerSpecError(ValueError):
    """`--handlers module:attr` does not name a dict of step -> callable."""


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
    """A `begin` waiting for its acknowledgement; failed when the connection drops."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Any = None

    def resolve(self, reply: Any) -> None:
        self.reply = reply
        self.done.set()


class _Attempt(threading.Thread):
    """One connection attempt; its outcome goes to `report(error | None)`."""

    def __init__(self, connect: Callable[[], None], report: Callable[[str | None], None]):
        super().__init__(name="connect", daemon=True)
        self._connect, self._report = connect, report
        self.abandoned = False  # its outcome was already decided (refused)

    def run(self) -> None:
        try:
            self._connect()
        except Exception as exc:  # noqa: BLE001 - any failure to connect is retried
            error: str | None = str(exc) or type(exc).__name__
        else:
            error = None
        if not self.abandoned:
            self._report(error)


class WorkerProcess:
    """One `orderflow worker`: `run()` returns the exit status."""

    def __init__(self, options: WorkerOptions, handlers: Mapping[str, Handler],
                 chaos: Chaos | None = None, clock: Callable[[], float] = time.monotonic):
        self.options = options
        identity = Identity(session=uuid.uuid4().hex,
                            name=options.name or f"{socket.gethostname()}-{os.getpid()}",
                            host=socket.gethostname(), pid=os.getpid())
        self.session = WorkerSession(options, identity, random.Random())
        self._handlers = handlers
        self._chaos = chaos or Chaos()
        self._clock = clock
        self.sio = socketio.Client(reconnection=False, handle_sigint=False)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified after every stimulus
        self._stop = threading.Event()  # threads end
        self._cancel = threading.Event()  # running handlers should give up (forced exit)
        # Signal handlers only queue (SimpleQueue.put is reentrant): taking the lock there
        # could deadlock against the main thread they interrupt.
        self._signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._queue: queue.SimpleQueue[Assignment] = queue.SimpleQueue()
        self._begins: dict[int, _Pending] = {}
        self._attempt: _Attempt | None = None
        self._refusal: str | None = None
        self._handshake_refused = False
        self._threads = [LoopThread("heartbeat", self._beat_once, self._stop)]
        self._threads += [LoopThread(f"runner-{i + 1}", self._run_once, self._stop)
                          for i in range(options.slots)]
        self._bind_events()

    # ------------------------------------------------------------------ main thread

    def run(self) -> int:
        for thread in self._threads:
            thread.start()
        try:
            while True:
                status = self._main_once()
                if status is not None:
                    return status
        finally:
            self._shutdown()

    def on_signal(self, signum: int, frame: Any = None) -> None:
        """SIGTERM/SIGINT: the first drains, a second exits at once (see the session)."""
        self._signals.put(signum)

    def _main_once(self) -> int | None:
        while not self._signals.empty():
            name = signal.Signals(self._signals.get()).name
            self._feed(self.session.signal, name)
        attempt = self._attempt
        if attempt is not None and attempt.is_alive() and self.sio.failed_namespaces:
            # Refused: no need to wait while the client closes the socket.
            attempt.abandoned = True
            self._attempt = None
            self._feed(self.session.connect_failed, self._refusal or "refused", True)
        with self._lock:
            now = self._clock()
            effects = self.session.tick(now)
            if not effects:
                self._changed.wait(min(SIGNAL_POLL, self.session.wait_hint(now)))
                return None
        return self._carry_out(effects)

    def _connect(self) -> None:
        self._refusal = None
        self._handshake_refused = False
        auth = {"token": self.options.token} if self.options.token else None
        try:
            self.sio.connect(self.options.server, auth=auth, transports=["websocket"],
                             headers=handshake_headers(self.options.token),
                             namespaces=[NAMESPACE], wait_timeout=self.options.request_timeout)
        except socketio.exceptions.ConnectionError as exc:
            # A server with a token refuses a handshake without it before the WebSocket
            # opens (401): as final as a refused CONNECT.
            refusal = handshake_refusal(exc)
            if refusal:
                self._refusal, self._handshake_refused = refusal, True
            raise

    def _attempt_ended(self, error: str | None) -> None:
        if error is None:
            self._feed(self.session.connect_ended)
        else:
            refused = bool(self.sio.failed_namespaces) or self._handshake_refused
            self._feed(self.session.connect_failed, self._refusal or error, refused)

    # ------------------------------------------------------------------ effects

    def _feed(self, stimulus: Callable[..., list[Effect]], *args: Any) -> int | None:
        """One stimulus: decided under the lock, carried out after it."""
        with self._lock:
            effects = stimulus(*args, now=self._clock())
            self._changed.notify_all()
        return self._carry_out(effects)

    def _carry_out(self, effects: list[Effect]) -> int | None:
        """Do what the session decided; an Exit's status is returned (to the main loop)."""
        status = None
        for effect in effects:
            if isinstance(effect, Send):
                self._send(effect)
            elif isinstance(effect, Run):
                self._queue.put(effect.assignment)
            elif isinstance(effect, Log):
                log.log(_LEVELS.get(effect.level, logging.WARNING), effect.message)
            elif isinstance(effect, Connect):
                self._attempt = _Attempt(self._connect, self._attempt_ended)
                self._attempt.start()
            elif isinstance(effect, Exit):
                if effect.cancel:
                    self._cancel.set()
                if effect.notice:
                    print(effect.notice, file=sys.stderr, flush=True)
                status = effect.status
        return status

    def _send(self, send: Send, pending: _Pending | None = None) -> None:
        if pending is not None:
            with self._lock:
                self._begins[send.rid] = pending
        try:
            self.sio.emit(send.event, send.payload, namespace=NAMESPACE,
                          callback=functools.partial(self._answered, send.rid))
        except (socketio.exceptions.SocketIOError, OSError):
            if pending is not None:
                self._fail_begin(send.rid)
            else:
                self._feed(self.session.unanswered, send.rid)

    def _answered(self, rid: int, *args: Any) -> None:
        reply = args[0] if args else None
        if isinstance(reply, dict):
            self._apply_chaos(reply.get("chaos"))
        with self._lock:
            pending = self._begins.pop(rid, None)
        if pending is not None:
            pending.resolve(reply)
        else:
            self._feed(self.session.answered, rid, reply)

    def _fail_begin(self, rid: int) -> None:
        with self._lock:
            pending = self._begins.pop(rid, None)
        if pending is not None:
            pending.resolve(None)

    def _apply_chaos(self, view: Any) -> None:
        if isinstance(view, dict) and view != self._chaos.view():
            try:
                self._chaos.update(view.get("failure_rate"), view.get("latency_ms"))
            except ValueError:
                log.warning("ignoring bad chaos settings from the server: %r", view)

    # ------------------------------------------------------------------ runners

    def _run_once(self) -> None:
        try:
            assignment = self._queue.get(timeout=0.1)
        except queue.Empty:
            return
        context = self._begin(assignment)
        if context is None:
            return
        try:
            task = TaskContext(**context, cancelled=self._cancel)
        except TypeError as exc:
            ok, value = False, f"the server sent a context this worker cannot use: {exc}"
        else:
            ok, value = run_handler(self._handlers, task)
        if self._cancel.is_set():
            self._feed(self.session.abandoned, assignment)
            return  # forced exit: like a crash, report nothing
        self._feed(self.session.finished, assignment, ok, value)

    def _begin(self, assignment: Assignment) -> dict | None:
        """Ask to start; asked again until answered, as the server answers a repeat alike."""
        asked = False
        while not self._stop.is_set():
            with self._lock:
                step = self.session.begin_step(assignment, asked, self._clock())
                if step.action is BeginAction.WAIT:
                    self._changed.wait(0.2)
                    continue
            self._carry_out(step.effects)
            if step.action is BeginAction.SKIP or step.request is None:
                return None
            asked = True  # from now on the server may have started it for us
            pending = _Pending()
            self._send(step.request, pending)
            if not pending.done.wait(self.options.request_timeout):
                self._fail_begin(step.request.rid)
            if pending.reply is None:
                continue  # no answer: the connection dropped, or the server is slow
            with self._lock:
                context, effects = self.session.begun(assignment, pending.reply)
                self._changed.notify_all()
            self._carry_out(effects)
            return context
        return None

    # ------------------------------------------------------------------ heartbeats

    def _beat_once(self) -> None:
        parent = self.options.parent_pid
        if parent is not None and os.getppid() != parent:
            self._feed(self.session.parent_gone)
        with self._lock:
            now = self._clock()
            effects = self.session.beat(now)
            if not effects:
                self._changed.wait(min(0.5, self.session.beat_wait(now)))
                return
        self._carry_out(effects)

    # ------------------------------------------------------------------ server messages

    def _bind_events(self) -> None:
        on = functools.partial(self.sio.on, namespace=NAMESPACE)
        on("connect")(lambda: self._feed(self.session.connected))
        on("connect_error")(self._on_connect_error)
        on("disconnect")(self._on_disconnect)
        on("assign")(lambda data=None: self._feed(self.session.assigned, data))
        on("left")(lambda data=None: self._feed(self.session.left, data))
        on("kill")(self._on_kill)

    def _on_connect_error(self, data: Any = None) -> None:
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            self._refusal = data["message"]
        with self._lock:
            self._changed.notify_all()

    def _on_disconnect(self, reason: Any = None) -> None:
        with self._lock:
            waiting = list(self._begins)
        for rid in waiting:
            self._fail_begin(rid)
        self._feed(self.session.disconnected, reason)

    def _on_kill(self, data: Any = None) -> None:
        log.warning("killed from the dashboard: SIGKILL")
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)

    # ------------------------------------------------------------------ exit

    def _shutdown(self) -> None:
        self._stop.set()
        self._cancel.set()
        with self._lock:
            self._changed.notify_all()
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
