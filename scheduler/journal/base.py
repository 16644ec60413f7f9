"""Where events go to become durable. The in-memory default keeps nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..engine.model import Effects
from .schema import StoreError

if TYPE_CHECKING:
    from ..engine.records import OrderQuery, OrderRecord
    from .recovery import Recovered


class CommitPending(StoreError):
    """An order is accepted but not committed yet (its commit is under way, or failed and
    is being tried again): nothing may be answered for it as if it existed. HTTP 503 with
    Retry-After."""

    # Seconds a client should wait before asking again.
    retry_after = 1


class Journal(Protocol):
    """`record` runs under the scheduler lock and must only snapshot and enqueue; `wait`
    blocks until everything recorded up to `ticket` is durable (True), or until `timeout`
    seconds passed (False), and runs outside the lock."""

    persistent: bool

    def attach(self, core, lock) -> None: ...
    def record(self, fx: Effects, on_commit=None) -> object: ...
    # Incidents (runtime/incidents.py) to write in the commit of the next `record`, and the
    # id of the oldest one kept; under the scheduler lock, like `record`.
    def note_incidents(self, views: list[dict], keep_from: int | None) -> None: ...
    # Steps' controls (SchedulerCore.control_view) to write in that same commit.
    def note_controls(self, views: list[dict]) -> None: ...
    # Schedules' marks (engine/schedules.py) to write in that same commit.
    def note_schedules(self, views: list[dict]) -> None: ...
    def wait(self, ticket: object, timeout: float | None = None) -> bool: ...
    def committed(self, ticket: object) -> bool: ...
    def check(self) -> None: ...
    # Seconds (at `now`, time.monotonic) the work being written has waited for a commit
    # since an attempt to commit it failed; 0 while nothing failed (the journal alert).
    def stalled_for(self, now: float) -> float: ...
    def close(self) -> None: ...

    # What the journal still knows beyond memory: None (or nothing) when it keeps nothing.
    def recover(self, finished_orders: int, recent_events: int) -> Recovered | None: ...
    def find_order(self, order_id: str) -> dict | None: ...
    def load_order(self, order_id: str) -> OrderRecord | None: ...
    def story(self, order_id: str) -> list[dict]: ...
    def find_idempotency_key(self, key: str) -> str | None: ...
    # Orders matching `query` with a number below `before`, newest first, at most `limit`,
    # with their tasks (not their events); `finished_only`: finished orders only (memory
    # holds every unfinished one). Read through connection(s) of the search's own, never
    # the writer's.
    def search_orders(
        self, query: OrderQuery, before: int | None, limit: int, finished_only: bool = False
    ) -> list[OrderRecord]: ...


class NullJournal:
    """No persistence (`--no-persist`): events live only in the bounded in-memory history."""

    persistent = False

    def attach(self, core, lock) -> None:
        return None

    def record(self, fx: Effects, on_commit=None) -> object:
        return None

    def note_incidents(self, views: list[dict], keep_from: int | None) -> None:
        return None

    def note_controls(self, views: list[dict]) -> None:
        return None

    def note_schedules(self, views: list[dict]) -> None:
        return None

    def wait(self, ticket: object, timeout: float | None = None) -> bool:
        return True

    def committed(self, ticket: object) -> bool:
        return True

    def check(self) -> None:
        return None

    def stalled_for(self, now: float) -> float:
        return 0.0

    def close(self) -> None:
        return None

    def recover(self, finished_orders: int = 0, recent_events: int = 0) -> None:
        return None

    def find_order(self, order_id: str) -> None:
        return None

    def load_order(self, order_id: str) -> None:
        return None

    def story(self, order_id: str) -> list[dict]:
        return []

    def find_idempotency_key(self, key: str) -> None:
        return None

    def search_orders(self, query: OrderQuery, before: int | None, limit: int,
                      finished_only: bool = False) -> list:
        return []
