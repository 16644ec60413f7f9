"""Thread workers: a queue, a runner thread and a separate heartbeat thread each.

The heartbeat has its own thread so that a long handler never makes a healthy worker look
dead. A killed worker stops heartbeating and reports nothing, as a crashed process would.
A runner whose handler ignored its cancellation is abandoned when the scheduler says so: a
new runner takes its slot, and the old one reports the late outcome and ends when (if) the
handler returns.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Protocol

from ..engine.model import Dispatch
from ..steps.context import Cancellation, Handler, TaskContext, is_async
from ..steps.failure import failure_of
from ..steps.run import run_handler, run_handler_async

log = logging.getLogger("orderflow.worker")


class WorkerPort(Protocol):
    """What a worker may ask of the cluster; implemented by `Cluster`."""

    def begin_task(self, worker_id: str, dispatch: Dispatch) -> dict | None: ...
    def report_many(
        self,
        worker_id: str,
        outcomes: list[tuple[Dispatch, bool, object]],
        following: list[Dispatch],
        take: int = 0,
    ) -> list[tuple[Dispatch, dict | None]]: ...
    def beat(self, worker_id: str) -> bool: ...
    def attempts_ended(self, worker_id: str, ended: list[tuple[str, int]]) -> None: ...


class Executor(Protocol):
    """Whatever carries out a worker's assignments: a thread here, or a remote process."""

    kind: str
    slots: int
    steps: frozenset[str] | None  # the steps it has handlers for (None: any)
    tags: frozenset[str]  # capabilities it offers
    definitions: frozenset[str] | None  # the workflow definitions it runs (None: any)

    def start(self) -> None: ...
    def deliver(self, dispatch: Dispatch) -> None: ...
    def cancel(self, dispatch: Dispatch) -> None: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...
    def join(self, timeout: float) -> bool: ...


class LoopThread(threading.Thread):
    """Runs `step()` until `stop` is set; an unexpected exception is logged and the loop goes on."""

    def __init__(self, name: str, step: Callable[[], None], stop: threading.Event):
        super().__init__(name=name, daemon=True)
        self._step, self._halt = step, stop
        # Set by its own step to leave the loop for good (a runner whose slot was given to
        # a new runner while its handler hung).
        self.retired = False

    def run(self) -> None:
        while not self._halt.is_set() and not self.retired:
            try:
                self._step()
            except Exception:  # noqa: BLE001 - a loop that dies silently loses work
                log.exception("%s: unexpected error; the loop continues", self.name)


class _Attempt:
    """One running attempt: its dispatch, cancellation signal and (async) task."""

    __slots__ = ("dispatch", "cancelled", "task", "on_thread", "abandoned")

    def __init__(self, dispatch: Dispatch, on_thread: bool):
        self.dispatch = dispatch
        self.cancelled = Cancellation()
        self.task: asyncio.Task | None = None  # set on the event loop
        self.on_thread = on_thread  # a plain handler, holding its runner thread
        # Its slot was given back while the handler still ran (it ignored its cancellation):
        # its outcome is reported without a slot to free or hand on. Under the worker's lock.
        self.abandoned = False


class ThreadWorker:
    """A worker inside the server process with `slots` slots: plain handlers run on up to
    `slots` runner threads, `async def` handlers on one event loop; together never more
    than `slots` at once. One heartbeat thread, whatever the slots."""

    kind = "thread"

    def __init__(
        self,
        worker_id: str,
        port: WorkerPort,
        handlers: Mapping[str, Handler],
        heartbeat_interval: float,
        slots: int = 1,
        tags: frozenset[str] = frozenset(),
        definitions: frozenset[str] | None = None,
    ):
        self.id = worker_id
        self.slots = slots
        self.steps = frozenset(handlers)
        self.tags = frozenset(tags)
        # The server's thread workers run the server's app: its workflow definitions.
        self.definitions = None if definitions is None else frozenset(definitions)
        self._port = port
        self._handlers = handlers
        self._interval = heartbeat_interval
        # queue.Queue, not SimpleQueue: several runners wait on it (SimpleQueue.get with a
        # timeout was seen to hang for good with many waiting threads).
        self._queue: queue.Queue[Dispatch] = queue.Queue()
        self._free = threading.Semaphore(slots)  # a slot per running attempt
        self._attempts: dict[tuple[str, int], _Attempt] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()  # stop taking work (drained, stopped or killed)
        self.killed = threading.Event()  # crashed: no heartbeats, no reports
        handlers_async = [is_async(h) for h in handlers.values()]
        # Async handlers do not hold a thread while they wait: one feeder is enough then,
        # and the event loop itself starts the next task when one ends.
        self._chain_on_loop = bool(handlers_async) and all(handlers_async)
        runners = 1 if self._chain_on_loop else slots
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner_numbers = itertools.count(1)
        self._threads = [self._new_runner() for _ in range(runners)]
        self._threads.append(
            LoopThread(f"{worker_id}-heartbeat", self.heartbeat_once, self.stopping)
        )
        if any(handlers_async):
            self._loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(
                target=self._loop.run_forever, name=f"{worker_id}-loop", daemon=True
            )
            self._threads.append(self._loop_thread)
        self._local = threading.local()  # per runner: the next task, already started
        # Async attempts that ended in this pass of the event loop, to report together.
        self._ended: list[tuple[_Attempt, bool, object]] = []

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _new_runner(self) -> LoopThread:
        return LoopThread(f"{self.id}-run-{next(self._runner_numbers)}", self.run_once,
                          self.stopping)

    def deliver(self, dispatch: Dispatch) -> None:
        self._queue.put(dispatch)

    def cancel(self, dispatch: Dispatch) -> None:
        """The attempt under this lease timed out: tell its handler to give up."""
        with self._lock:
            attempt = self._attempts.get((dispatch.task_id, dispatch.lease))
        if attempt is not None:
            self._cancel(attempt)

    def abandon(self, dispatch: Dispatch) -> None:
        """The attempt under this lease timed out and its handler ignored the cancellation:
        its slot serves again at once, on a new runner thread if the handler holds one. The
        old thread is never reused: when the handler returns it reports the outcome (which
        the scheduler rejects) and ends. Nothing to do if the handler returned meanwhile."""
        with self._lock:
            attempt = self._attempts.get((dispatch.task_id, dispatch.lease))
            if attempt is None or attempt.abandoned:
                return
            attempt.abandoned = True
            if attempt.on_thread and not self.stopping.is_set():
                # Under the lock, so `join` sees every runner started before the stop.
                self._threads = [t for t in self._threads
                                 if t.is_alive() or not getattr(t, "retired", False)]
                runner = self._new_runner()
                self._threads.append(runner)
                runner.start()
            self._free.release()

    def run_once(self) -> None:
        """Take the next task when a slot is free, start it, run it (or hand it to the event
        loop), report it; hand the slot straight to the next task when one is waiting."""
        started = getattr(self._local, "started", None)
        if started is not None:
            self._local.started = None
            dispatch, context = started  # already holds a slot
        else:
            if not self._free.acquire(timeout=0.05):
                return
            try:
                dispatch = self._queue.get(timeout=0.05)
            except queue.Empty:
                self._free.release()
                return
            if self.stopping.is_set():
                self._free.release()
                return
            context = self._port.begin_task(self.id, dispatch)
        opened = self._open(dispatch, context)
        if opened is None:
            return
        attempt, ctx = opened
        if not attempt.on_thread:
            self._loop.call_soon_threadsafe(self._spawn, attempt, ctx)
            return
        # Unchecked: the cluster's door checks the outcome (one serialisation per step).
        ok, value = run_handler(self._handlers, ctx, check=False)
        self._local.started = self._finish(attempt, ok, value)
        if attempt.abandoned:  # final once reported: a new runner has its slot
            thread = threading.current_thread()
            if isinstance(thread, LoopThread):
                thread.retired = True

    def _is_async(self, step: str) -> bool:
        handler = self._handlers.get(step)
        return handler is not None and self._loop is not None and is_async(handler)

    def _open(
        self, dispatch: Dispatch, context: dict | None
    ) -> tuple[_Attempt, TaskContext] | None:
        """Register a started attempt; None, and its slot freed, if its lease was stale (the
        task moved elsewhere or was cancelled meanwhile)."""
        if context is None:
            self._free.release()
            return None
        attempt = _Attempt(dispatch, on_thread=not self._is_async(context["step"]))
        ctx = TaskContext(**context, cancelled=attempt.cancelled)
        with self._lock:
            self._attempts[(dispatch.task_id, dispatch.lease)] = attempt
        return attempt, ctx

    def _spawn(self, attempt: _Attempt, ctx: TaskContext) -> None:
        """On the event loop: run an async handler as a task of its own."""
        task = self._loop.create_task(run_handler_async(self._handlers, ctx))
        attempt.task = task
        if attempt.cancelled.is_set():
            task.cancel()  # timed out or stopped before it began
        task.add_done_callback(lambda done: self._finished_async(attempt, done))

    def _finished_async(self, attempt: _Attempt, task: asyncio.Task) -> None:
        """On the event loop: an async attempt ended. The outcomes of one pass of the loop
        are reported together, right after it (one hand-over with the cluster for all)."""
        self._ended.append((attempt, *_outcome(task)))
        if len(self._ended) == 1:
            self._loop.call_soon(self._report_ended)

    def _report_ended(self) -> None:
        """On the event loop: report what ended. When every handler is async, start as many
        waiting tasks in the same hand-over, on the loop itself (no thread hop); otherwise
        the runner threads take them."""
        ended, self._ended = self._ended, []
        for dispatch, context in self._finish_many(ended, chain=self._chain_on_loop):
            opened = self._open(dispatch, context)
            if opened is not None:
                self._spawn(*opened)

    def _finish(
        self, attempt: _Attempt, ok: bool, value: object
    ) -> tuple[Dispatch, dict | None] | None:
        """Report an attempt; its slot goes straight to the next waiting task, started in
        the same hand-over: returned as (dispatch, context) for the caller to run, or None
        when the slot was freed instead."""
        started = self._finish_many([(attempt, ok, value)], chain=True)
        return started[0] if started else None

    def _finish_many(
        self, ended: list[tuple[_Attempt, bool, object]], chain: bool
    ) -> list[tuple[Dispatch, dict | None]]:
        """Report ended attempts (unless the worker crashed or stopped) in one hand-over;
        with `chain`, it also starts up to as many tasks, each keeping a slot of an ended
        one: first those waiting in this worker's queue, then those the report itself hands
        to this worker. Returned as (dispatch, context), the context None if that lease was
        stale. The other slots are freed. An abandoned attempt's slot was given back
        already: it is reported, and neither frees nor hands on a slot."""
        with self._lock:
            slots = len(ended)
            for attempt, _, _ in ended:
                dispatch = attempt.dispatch
                self._attempts.pop((dispatch.task_id, dispatch.lease), None)
                slots -= attempt.abandoned
        if self.stopping.is_set():
            # Killed: a crashed worker reports nothing and the monitor moves its task.
            # Stopped: the attempt was cut short, which is not the handler's failure.
            if slots:
                self._free.release(slots)
            # But the handlers have ended, which the server sees for itself: a step's
            # limit may be holding their places until they did.
            self._port.attempts_ended(
                self.id, [(a.dispatch.task_id, a.dispatch.lease) for a, _, _ in ended])
            return []
        following: list[Dispatch] = []
        while chain and len(following) < slots:
            try:
                following.append(self._queue.get_nowait())
            except queue.Empty:
                break
        outcomes = [(attempt.dispatch, ok, value) for attempt, ok, value in ended]
        take = slots - len(following) if chain else 0
        try:
            started = self._port.report_many(self.id, outcomes, following, take)
        except BaseException:
            for dispatch in following:
                self._queue.put(dispatch)  # not lost with the failed report
            if slots:
                self._free.release(slots)
            raise
        if slots > len(started):
            self._free.release(slots - len(started))
        return started  # each keeps an ended one's slot

    def _cancel(self, attempt: _Attempt) -> None:
        attempt.cancelled.set()
        task = attempt.task
        if task is not None:
            try:
                self._loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass  # the loop is closed: the worker has stopped

    def heartbeat_once(self) -> None:
        if self.stopping.wait(self._interval) or self.killed.is_set():
            return
        if not self._port.beat(self.id):
            # The cluster declared this worker dead: like a fenced-off process, stop working.
            self.stop()

    def kill(self) -> None:
        """Simulated crash: the cluster is not told; only missing heartbeats give it away."""
        self.killed.set()
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            attempts = list(self._attempts.values())
        for attempt in attempts:
            self._cancel(attempt)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    def join(self, timeout: float) -> bool:
        with self._lock:
            threads = list(self._threads)  # abandoned runners included
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        if self._loop is not None and not self._loop_thread.is_alive():
            self._loop.close()
        return not any(t.is_alive() for t in threads)


def _outcome(task: asyncio.Task) -> tuple[bool, object]:
    if task.cancelled():
        return False, "cancelled"  # before its handler began
    error = task.exception()
    if error is not None:  # only a BaseException gets past run_handler_async
        return False, failure_of(error)
    return task.result()
