"""Thread workers: a queue, a runner thread and a separate heartbeat thread each.

The heartbeat has its own thread so that a long handler never makes a healthy worker look
dead. A killed worker stops heartbeating and reports nothing, as a crashed process would.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Protocol

from ..engine.model import Dispatch
from ..steps.context import Handler, TaskContext
from ..steps.run import run_handler

log = logging.getLogger("orderflow.worker")


class WorkerPort(Protocol):
    """What a worker may ask of the cluster; implemented by `Cluster`."""

    def begin_task(self, worker_id: str, dispatch: Dispatch) -> dict | None: ...
    def report(
        self,
        worker_id: str,
        dispatch: Dispatch,
        ok: bool,
        value: object,
        following: Dispatch | None = None,
    ) -> dict | None: ...
    def beat(self, worker_id: str) -> bool: ...


class Executor(Protocol):
    """Whatever carries out a worker's assignments: a thread here, or a remote process."""

    kind: str

    def start(self) -> None: ...
    def deliver(self, dispatch: Dispatch) -> None: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...
    def join(self, timeout: float) -> bool: ...


class LoopThread(threading.Thread):
    """Runs `step()` until `stop` is set; an unexpected exception is logged and the loop goes on."""

    def __init__(self, name: str, step: Callable[[], None], stop: threading.Event):
        super().__init__(name=name, daemon=True)
        self._step, self._halt = step, stop

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self._step()
            except Exception:  # noqa: BLE001 - a loop that dies silently loses work
                log.exception("%s: unexpected error; the loop continues", self.name)


class ThreadWorker:
    kind = "thread"

    def __init__(
        self,
        worker_id: str,
        port: WorkerPort,
        handlers: Mapping[str, Handler],
        heartbeat_interval: float,
    ):
        self.id = worker_id
        self._port = port
        self._handlers = handlers
        self._interval = heartbeat_interval
        self._queue: queue.SimpleQueue[Dispatch] = queue.SimpleQueue()
        self.stopping = threading.Event()  # stop taking work (drained, stopped or killed)
        self.killed = threading.Event()  # crashed: no heartbeats, no reports
        self.cancel = threading.Event()  # tells a running handler to give up
        # The next task, already started in the same call that reported the previous one.
        self._started: tuple[Dispatch, dict | None] | None = None
        self._threads = [
            LoopThread(f"{worker_id}-run", self.run_once, self.stopping),
            LoopThread(f"{worker_id}-heartbeat", self.heartbeat_once, self.stopping),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def deliver(self, dispatch: Dispatch) -> None:
        self._queue.put(dispatch)

    def run_once(self) -> None:
        if self._started is not None:
            dispatch, context = self._started
            self._started = None
        else:
            try:
                dispatch = self._queue.get(timeout=0.05)
            except queue.Empty:
                return
            if self.stopping.is_set():
                return
            context = self._port.begin_task(self.id, dispatch)
        if context is None:
            return  # stale: the task moved elsewhere or was cancelled
        ok, value = run_handler(self._handlers, TaskContext(**context, cancelled=self.cancel))
        if self.cancel.is_set():
            # Killed: a crashed worker reports nothing and the monitor moves its task.
            # Stopped: the attempt was cut short, which is not the handler's failure.
            return
        try:
            following = self._queue.get_nowait()
        except queue.Empty:
            following = None
        try:
            next_context = self._port.report(self.id, dispatch, ok, value, following)
        except BaseException:
            if following is not None:
                self._queue.put(following)  # not lost with the failed report
            raise
        if following is not None:
            self._started = (following, next_context)

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
        self.cancel.set()

    def join(self, timeout: float) -> bool:
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        return not any(t.is_alive() for t in self._threads)
