"""What a step handler sees: its context, the error it raises to fail an attempt."""

from __future__ import annotations

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
    # Set when the worker is stopped or killed, so a slow handler can give up early.
    cancelled: threading.Event = field(default_factory=threading.Event)

    def sleep(self, seconds: float) -> bool:
        """Wait like a slow external call; returns False if the worker was stopped meanwhile."""
        return not self.cancelled.wait(seconds)


Handler = Callable[[TaskContext], Any]


def resolve_handler(handlers: Mapping[str, Handler], step: str) -> Handler:
    handler = handlers.get(step)
    if handler is None:
        raise TaskError(f"no handler registered for step {step!r}")
    return handler
