"""Where events go to become durable. The in-memory default keeps nothing."""

from __future__ import annotations

from typing import Protocol


class Journal(Protocol):
    """`record` runs under the scheduler lock and must only enqueue; `wait` blocks until
    everything recorded up to `ticket` is durable and runs outside the lock."""

    def record(self, events: list[dict]) -> object: ...
    def wait(self, ticket: object) -> None: ...
    def close(self) -> None: ...


class NullJournal:
    """No persistence (`--no-persist`): events live only in the bounded in-memory history."""

    def record(self, events: list[dict]) -> object:
        return None

    def wait(self, ticket: object) -> None:
        return None

    def close(self) -> None:
        return None
