"""Where events go to become durable. The in-memory default keeps nothing."""

from __future__ import annotations

from typing import Protocol

from .model import Effects


class Journal(Protocol):
    """`record` runs under the scheduler lock and must only snapshot and enqueue; `wait`
    blocks until everything recorded up to `ticket` is durable and runs outside the lock."""

    persistent: bool

    def attach(self, core, lock) -> None: ...
    def record(self, fx: Effects, on_commit=None) -> object: ...
    def wait(self, ticket: object) -> None: ...
    def check(self) -> None: ...
    def close(self) -> None: ...


class NullJournal:
    """No persistence (`--no-persist`): events live only in the bounded in-memory history."""

    persistent = False

    def attach(self, core, lock) -> None:
        return None

    def record(self, fx: Effects, on_commit=None) -> object:
        return None

    def wait(self, ticket: object) -> None:
        return None

    def check(self) -> None:
        return None

    def close(self) -> None:
        return None
