"""What a step handler sees: its context, the error it raises to fail an attempt."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class TaskError(Exception):
    """Raised by a handler to fail an attempt with a readable message."""


class Cancellation:
    """An attempt's cancellation signal, with `threading.Event`'s `is_set`, `wait` and
    `set`. The Event behind `wait` is made only if a handler waits: one per attempt (a
    Condition and its locks) was 7 % of a no-op step's CPU, and most handlers never wait.

    Why a `set` racing the first `wait` is never missed: `set` writes the flag, then reads
    whether an Event exists; `wait` makes the Event, then reads the flag. Of two threads
    doing that, at least one sees the other's write."""

    __slots__ = ("_set", "_event")
    _making = threading.Lock()  # one Event per signal, whichever threads wait first

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until set or `timeout` seconds pass; whether it is set."""
        if self._set:
            return True
        with Cancellation._making:
            if self._event is None:
                self._event = threading.Event()
        if self._set:
            self._event.set()
        return self._event.wait(timeout)


@dataclass
class TaskContext:
    """Everything a handler may use. `idempotency_key` is the same across retries and moves."""

    order_id: str
    order: dict
    step: str
    attempt: int
    worker_id: str
    results: dict[str, Any]
    idempotency_key: str
    # Seconds this attempt may run; past it the attempt has failed ("timed out") and
    # `cancelled` is set (an async handler is cancelled outright).
    timeout: float | None = None
    # Set when the attempt is cancelled (timed out) or its worker stopped, so a slow
    # handler can give up early.
    cancelled: Cancellation = field(default_factory=Cancellation)
    # Of an undo (a saga's compensation): the step it undoes, whose result is in `results`;
    # `idempotency_key` is then "<order id>:<step>:compensate".
    compensates: str | None = None

    def sleep(self, seconds: float) -> bool:
        """Wait like a slow external call; False if the attempt was cancelled meanwhile."""
        return not self.cancelled.wait(seconds)

    async def asleep(self, seconds: float) -> bool:
        """`sleep` for async handlers (the attempt's own cancellation interrupts it too)."""
        await asyncio.sleep(seconds)
        return not self.cancelled.is_set()


Handler = Callable[[TaskContext], Any]


def is_async(handler: Handler) -> bool:
    """An `async def` handler (or a callable object whose __call__ is one)."""
    if inspect.iscoroutinefunction(handler):
        return True
    return not inspect.isroutine(handler) and inspect.iscoroutinefunction(type(handler).__call__)


def resolve_handler(handlers: Mapping[str, Handler], step: str) -> Handler:
    handler = handlers.get(step)
    if handler is None:
        raise TaskError(f"no handler registered for step {step!r}")
    return handler
