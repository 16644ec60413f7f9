"""`orderflow worker`: the I/O shell around the worker session (session.py decides).

Threads, each a one-iteration loop that feeds the session under one lock and carries out
the effects it returns after the lock: the main thread ticks (connect, register, drain,
deliver, time limits, exit) and handles signals; a heartbeat thread beats, so a long handler
never makes the process look dead; `slots` runner threads run plain handlers (if the module
has any) and one event loop runs `async def` handlers, so an async attempt holds no thread
while it waits; the session hands out at most `slots` handlers at once, both kinds together.
Each attempt has its own cancellation signal (`TaskContext.cancelled`; an async attempt's
task is cancelled too). A connection attempt runs on a thread of its own, so a signal is
handled at once even while connecting; python-socketio's own threads deliver the server's
messages and acknowledgements on the thread that reads the connection, in their order.
Wire contract: protocol.py.
"""

from __future__ import annotations

import asyncio
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

import engineio
import socketio

from ..demo.handlers import Chaos, demo_handlers
from ..runtime.worker import LoopThread
from ..steps.context import Cancellation, Handler, TaskContext, is_async
from ..steps.failure import failure_of
from ..steps.run import run_handler, run_handler_async
from .effects import Assignment, Cancel, Connect, Effect, Exit, Log, Run, Send
from .options import Identity, WorkerOptions, reconnect_delay
from .packets import TextPacket
from .protocol import (
    NAMESPACE,
    connect_refusal,
    handshake_headers,
    handshake_refusal,
    handshake_standby,
)
from .session import WorkerSession

log = logging.getLogger("orderflow.worker")

__all__ = ["HandlerSpecError", "WorkerOptions", "WorkerProcess", "load_handlers",
           "reconnect_delay"]

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# The longest the main loop sleeps: a signal is noticed within this.
SIGNAL_POLL = 0.1
# How often a connection attempt looks whether the last connection is torn down.
TEARDOWN_POLL = 0.005


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


class _Handle:
    """One running handler: its cancellation signal and, for `async def`, its task."""

    __slots__ = ("cancelled", "task")

    def __init__(self) -> None:
        self.cancelled = Cancellation()
        self.task: asyncio.Task | None = None


class _InlineEngineIO(engineio.Client):
    """python-engineio's client, handing each message to its handler on the thread that
    read it rather than on a thread started per message: the handlers here only feed the
    session (under its lock, briefly) and queue what it decides, and a thread per message
    (an assignment, each acknowledgement) cost more than the handling itself. Messages are
    then handled in the order they arrived, too."""

    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "message":
            kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class _Client(socketio.Client):
    """python-socketio's client over _InlineEngineIO."""

    def _engineio_client_class(self) -> type[engineio.Client]:
        return _InlineEngineIO


class _Attempt(threading.Thread):
    """One connection attempt; its outcome goes to `report(error | None)`."""

    def __init__(self, connect: Callable[[_Attempt], None],
                 report: Callable[[str | None], None]):
        super().__init__(name="connect", daemon=True)
        self._connect, self._report = connect, report
        self.abandoned = False  # its outcome was already decided (refused)
        # Set once its own CONNECT is under way: until then, a refused namespace the client
        # shows is the last connection's, not this one's.
        self.dialing = False

    def run(self) -> None:
        try:
            self._connect(self)
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
        # websocket-client checks every received frame's UTF-8 in pure Python (a tenth of
        # this process's CPU under load); the JSON decoder reads the text as UTF-8 anyway.
        self.sio = _Client(reconnection=False, handle_sigint=False, serializer=TextPacket,
                           websocket_extra_options={"skip_utf8_validation": True})
        self._lock = threading.Lock()
        # The main loop's and the heartbeat loop's wake-ups (see `_feed`).
        self._changed = threading.Condition(self._lock)
        self._beat_due = threading.Condition(self._lock)
        self._stop = threading.Event()  # threads end
        self._cancel = threading.Event()  # forced exit: handlers give up, nothing is reported
        # Signal handlers only queue (SimpleQueue.put is reentrant): taking the lock there
        # could deadlock against the main thread they interrupt.
        self._signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        # Plain handlers waiting for a runner (the session started at most `slots`).
        # queue.Queue: several runners wait on it (see runtime/worker.py).
        self._sync: queue.Queue[tuple[Assignment, TaskContext]] = queue.Queue()
        self._handles: dict[tuple[str, int], _Handle] = {}
        self._handles_lock = threading.Lock()
        self._in_handler: set[threading.Thread] = set()  # runners inside a handler
        self._attempt: _Attempt | None = None
        self._refusal: str | None = None
        self._handshake_refused = False
        self._standby: str | None = None  # a standby refused it: the leader it named, or ""
        kinds = [is_async(handler) for handler in handlers.values()]
        self._threads = [LoopThread("heartbeat", self._beat_once, self._stop)]
        if not all(kinds):
            self._threads += [LoopThread(f"runner-{i + 1}", self._run_once, self._stop)
                              for i in range(options.slots)]
        self._loop: asyncio.AbstractEventLoop | None = None
        if any(kinds):
            self._loop = asyncio.new_event_loop()
            self._threads.append(threading.Thread(target=self._loop.run_forever,
                                                  name="handler-loop", daemon=True))
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
        if (attempt is not None and attempt.is_alive() and attempt.dialing
                and self.sio.failed_namespaces):
            # Refused: no need to wait while the client closes the socket.
            attempt.abandoned = True
            self._attempt = None
            self._failed(self._refusal or "refused", True)
        with self._lock:
            now = self._clock()
            effects = self.session.tick(now)
            if not effects:
                self._changed.wait(min(SIGNAL_POLL, self.session.wait_hint(now)))
                return None
        return self._carry_out(effects)

    def _connect(self, url: str, attempt: _Attempt | None = None) -> None:
        self._await_teardown()
        self._refusal = None
        self._handshake_refused = False
        self._standby = None
        # Found under load: while this attempt waited for the last connection's teardown,
        # the main loop read that connection's refusal as this one's, gave this attempt up
        # and logged a standby that no longer was; the attempt then connected behind the
        # session's back. python-socketio clears the list only inside connect().
        self.sio.failed_namespaces = []
        if attempt is not None:
            attempt.dialing = True
        auth = {"token": self.options.token} if self.options.token else None
        try:
            self.sio.connect(url, auth=auth, transports=["websocket"],
                             headers=handshake_headers(self.options.token),
                             namespaces=[NAMESPACE], wait_timeout=self.options.request_timeout)
        except socketio.exceptions.ConnectionError as exc:
            # A server with a token refuses a handshake without it before the WebSocket
            # opens (401): as final as a refused CONNECT. A standby refuses it too (503),
            # naming the leader: not final, the session goes on to the leader.
            refusal = handshake_refusal(exc)
            if refusal:
                self._refusal, self._handshake_refused = refusal, True
            # Kept if the refused CONNECT already said so (`_on_connect_error`): this
            # exception then carries no status, and None here would make a standby's
            # refusal look final.
            standby = handshake_standby(exc)
            if standby is not None:
                self._standby = standby
            raise

    def _await_teardown(self) -> None:
        """Wait until the client has finished with its last connection. python-socketio calls
        our disconnect handler before it marks itself and its Engine.IO client disconnected,
        so an attempt started from that handler would fail ("Already connected") and wait
        out a backoff for nothing."""
        deadline = time.monotonic() + self.options.request_timeout
        while ((self.sio.connected or self.sio.eio.state != "disconnected")
               and time.monotonic() < deadline and not self._stop.is_set()):
            self._stop.wait(TEARDOWN_POLL)

    def _attempt_ended(self, error: str | None) -> None:
        if error is None:
            self._feed(self.session.connect_ended)
        else:
            refused = bool(self.sio.failed_namespaces) or self._handshake_refused
            self._failed(self._refusal or error, refused)

    def _failed(self, error: str, refused: bool) -> None:
        if self._standby is not None:
            self._feed(self.session.standby_answered, self._standby)
        else:
            self._feed(self.session.connect_failed, error, refused)

    # ------------------------------------------------------------------ effects

    def _feed(self, stimulus: Callable[..., list[Effect]], *args: Any,
              routine: bool = False) -> int | None:
        """One stimulus: decided under the lock, carried out after it. It wakes the main
        loop to tick, unless it is `routine` (an assignment, an answer, a handler's end: a
        few per step, whose effects it returns itself; whatever else they make due, the
        main loop finds within SIGNAL_POLL), and the heartbeat loop if a beat is due."""
        with self._lock:
            now = self._clock()
            effects = stimulus(*args, now=now)
            if not routine:
                self._changed.notify()
            if self.session.beat_wait(now) <= 0:
                self._beat_due.notify()
        return self._carry_out(effects)

    def _carry_out(self, effects: list[Effect]) -> int | None:
        """Do what the session decided; an Exit's status is returned (to the main loop)."""
        status = None
        for effect in effects:
            if isinstance(effect, Send):
                self._send(effect)
            elif isinstance(effect, Run):
                self._start(effect.assignment, effect.context)
            elif isinstance(effect, Cancel):
                self._cancel_handler(effect.assignment.key)
            elif isinstance(effect, Log):
                log.log(_LEVELS.get(effect.level, logging.WARNING), effect.message)
            elif isinstance(effect, Connect):
                self._attempt = _Attempt(functools.partial(self._connect, effect.url),
                                         self._attempt_ended)
                self._attempt.start()
            elif isinstance(effect, Exit):
                if effect.cancel:
                    self._cancel.set()
                    self._cancel_all()
                if effect.notice:
                    print(effect.notice, file=sys.stderr, flush=True)
                status = effect.status
        return status

    def _send(self, send: Send) -> None:
        try:
            self.sio.emit(send.event, send.payload, namespace=NAMESPACE,
                          callback=functools.partial(self._answered, send.rid))
        except (socketio.exceptions.SocketIOError, OSError):
            self._feed(self.session.unanswered, send.rid)

    def _answered(self, rid: int, *args: Any) -> None:
        reply = args[0] if args else None
        if isinstance(reply, dict):
            self._apply_chaos(reply.get("chaos"))
        self._feed(self.session.answered, rid, reply, routine=True)

    def _apply_chaos(self, view: Any) -> None:
        if isinstance(view, dict) and view != self._chaos.view():
            try:
                self._chaos.update(view.get("failure_rate"), view.get("latency_ms"),
                                   view.get("hang_rate"))
            except ValueError:
                log.warning("ignoring bad chaos settings from the server: %r", view)

    # ------------------------------------------------------------------ handlers

    def _start(self, assignment: Assignment, context: dict) -> None:
        """Run a handler the session started: plain on a runner, `async def` on the loop."""
        handle = _Handle()
        with self._handles_lock:
            self._handles[assignment.key] = handle
        with self._lock:
            # A Cancel carried out before the handle existed found nothing to cancel.
            if self.session.is_cancelled(assignment.key):
                handle.cancelled.set()
        try:
            task = TaskContext(**context, cancelled=handle.cancelled)
        except TypeError as exc:
            self._done(assignment, False,
                       f"the server sent a context this worker cannot use: {exc}")
            return
        handler = self._handlers.get(task.step)
        if handler is None:
            self._done(assignment, *run_handler(self._handlers, task))  # says so, at once
        elif is_async(handler) and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._spawn, assignment, task, handle)
            except RuntimeError:  # the loop is closed: the process is exiting
                self._feed(self.session.abandoned, assignment)
        else:
            self._sync.put((assignment, task))

    def _spawn(self, assignment: Assignment, task: TaskContext, handle: _Handle) -> None:
        """On the event loop: the attempt's task, cancelled if it was cancelled already."""
        assert self._loop is not None
        running = self._loop.create_task(run_handler_async(self._handlers, task))
        with self._handles_lock:
            handle.task = running
        if handle.cancelled.is_set():
            running.cancel()
        running.add_done_callback(functools.partial(self._async_done, assignment))

    def _async_done(self, assignment: Assignment, running: asyncio.Task) -> None:
        # Only when the task has really ended: one that ignores its cancellation keeps its
        # slot (stuck) until it returns.
        if running.cancelled():
            ok, value = False, "cancelled"  # before it started
        else:
            try:
                ok, value = running.result()
            except BaseException as exc:  # noqa: BLE001 - SystemExit in a handler, say
                ok, value = False, failure_of(exc)
        self._done(assignment, ok, value)

    def _run_once(self) -> None:
        try:
            assignment, task = self._sync.get(timeout=0.1)
        except queue.Empty:
            return
        me = threading.current_thread()
        with self._handles_lock:
            self._in_handler.add(me)
        try:
            outcome = run_handler(self._handlers, task)
        finally:
            with self._handles_lock:
                self._in_handler.discard(me)
        self._done(assignment, *outcome)

    def _done(self, assignment: Assignment, ok: bool, value: object) -> None:
        with self._handles_lock:
            self._handles.pop(assignment.key, None)
        if self._cancel.is_set():
            self._feed(self.session.abandoned, assignment)
            return  # forced exit: like a crash, report nothing
        self._feed(self.session.finished, assignment, ok, value, routine=True)

    def _cancel_handler(self, key: tuple[str, int]) -> None:
        """Set the attempt's cancellation signal; cancel its task if it is async."""
        with self._handles_lock:
            handle = self._handles.get(key)
        if handle is None:
            return  # returned already, or not started yet (`_start` asks the session)
        handle.cancelled.set()
        with self._handles_lock:
            running = handle.task
        if running is not None and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(running.cancel)
            except RuntimeError:
                pass  # the loop is closed: the process is exiting

    def _cancel_all(self) -> None:
        with self._handles_lock:
            keys = list(self._handles)
        for key in keys:
            self._cancel_handler(key)

    # ------------------------------------------------------------------ heartbeats

    def _beat_once(self) -> None:
        parent = self.options.parent_pid
        if parent is not None and os.getppid() != parent:
            self._feed(self.session.parent_gone)
        with self._lock:
            now = self._clock()
            effects = self.session.beat(now)
            if not effects:
                self._beat_due.wait(min(0.5, self.session.beat_wait(now)))
                return
        self._carry_out(effects)

    # ------------------------------------------------------------------ server messages

    def _bind_events(self) -> None:
        on = functools.partial(self.sio.on, namespace=NAMESPACE)
        on("connect")(lambda: self._feed(self.session.connected))
        on("connect_error")(self._on_connect_error)
        on("disconnect")(self._on_disconnect)
        on("assign")(lambda data=None: self._feed(self.session.assigned, data, routine=True))
        on("left")(lambda data=None: self._feed(self.session.left, data))
        on("cancel")(lambda data=None: self._feed(self.session.cancelled, data))
        on("kill")(self._on_kill)

    def _on_connect_error(self, data: Any = None) -> None:
        message, standby = connect_refusal(data)
        if message is not None:
            self._refusal = message
        if standby is not None:
            self._standby = standby
        with self._lock:
            self._changed.notify_all()
            self._beat_due.notify_all()

    def _on_disconnect(self, reason: Any = None) -> None:
        self._feed(self.session.disconnected, reason)

    def _on_kill(self, data: Any = None) -> None:
        log.warning("killed from the dashboard: SIGKILL")
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)

    # ------------------------------------------------------------------ exit

    def _shutdown(self) -> None:
        self._stop.set()
        self._cancel.set()
        self._cancel_all()
        with self._lock:
            self._changed.notify_all()
            self._beat_due.notify_all()
        if self.sio.connected:
            # First, so the server hears of it at once. Closing from this side waits up to
            # 3 s for a close frame some servers never send; the process ends either way,
            # and its socket with it.
            closer = threading.Thread(target=self.sio.disconnect, daemon=True)
            closer.start()
            closer.join(0.5)
        if self._loop is not None:
            # One more pass of the loop first, so that the cancelled tasks can end.
            self._loop.call_soon_threadsafe(self._loop.call_soon, self._loop.stop)
        with self._handles_lock:
            # Nothing waits for a runner still in a handler: an exit that leaves handlers
            # running reports nothing of them, and one deaf to its cancellation (stuck) may
            # never return. Daemon threads: they end with the process.
            busy = set(self._in_handler)
        deadline = time.monotonic() + 2.0
        for thread in self._threads:
            if thread.is_alive() and thread not in busy:
                thread.join(max(0.0, deadline - time.monotonic()))
        if self._loop is not None and not self._threads[-1].is_alive():
            self._loop.close()
