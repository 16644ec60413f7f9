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
    cancelled: threading.Event = field(default_factory=threading.Event)
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
