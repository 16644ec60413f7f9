"""The Journal protocol over the query layer, for both engines.

An engine (`sqlite.py`, `postgres.py`) supplies its `Queries`, its connections for each kind
of read (`_reading`), its write transaction for pruning (`_transaction`) and its commits; the
reads themselves are here, once.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from ..engine.records import OrderQuery, OrderRecord
from .queries import Queries
from .recovery import Recovered
from .writer import GroupWrittenJournal

# The kinds of read an engine hands a connection for (`_reading(kind)`):
LOOKUP = "lookup"  # one statement
LOAD = "load"  # several statements that must agree (an order and its tasks)
SEARCH = "search"  # as LOAD, on the searches' own connection(s): never the other reads'
RECOVER = "recover"  # everything a restart needs, in one snapshot


class SQLJournal(GroupWrittenJournal):
    """What the SQLite and PostgreSQL journals share beyond the writer: every read."""

    persistent = True
    _queries: Queries
    prune_chunk: int  # finished orders removed per transaction when pruning

    def _reading(self, kind: str) -> AbstractContextManager[Any]:
        """A connection for a read of `kind`; a failed read raises UnstorableText (a value
        looked up that no journal can hold) or StoreError (the database did not answer)."""
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[Any]:
        """A write transaction (committed at the end of the `with`) for pruning."""
        raise NotImplementedError

    def find_idempotency_key(self, key: str) -> str | None:
        """The order that used `key`, for keys older than the in-memory window."""
        with self._reading(LOOKUP) as conn:
            return self._queries.find_idempotency_key(conn, key)

    def load_order(self, order_id: str, with_events: bool = True) -> OrderRecord | None:
        """One order with its tasks (and events), e.g. to bring it back into memory."""
        with self._reading(LOAD) as conn:
            return self._queries.load_order(conn, order_id, with_events)

    def story(self, order_id: str) -> list[dict]:
        """One order's events, in seq order."""
        with self._reading(LOOKUP) as conn:
            return self._queries.story(conn, order_id)

    def events_after(self, seq: int, limit: int) -> list[dict]:
        """At most `limit` events after `seq`, in seq order."""
        with self._reading(LOOKUP) as conn:
            return self._queries.events_after(conn, seq, limit)

    def search_orders(self, query: OrderQuery, before: int | None, limit: int,
                      finished_only: bool = False) -> list[OrderRecord]:
        """Orders matching `query` numbered below `before`, newest first, with their tasks,
        on the searches' own connection(s): a long search delays neither commits nor the
        lookups a submit makes."""
        with self._reading(SEARCH) as conn:
            return self._queries.search_orders(conn, query, before, limit, finished_only)

    def recover(self, finished_orders: int = 20_000, recent_events: int = 2_000) -> Recovered:
        """What the engine needs to continue: every unfinished order, the `finished_orders`
        most recent finished ones and the `recent_events` latest events."""
        with self._reading(RECOVER) as conn:
            return self._queries.recover(conn, finished_orders, recent_events)

    def prune(self, before_wall: float) -> dict:
        """Delete finished orders (and their tasks and events) that finished before the
        cutoff, on the writer's thread between commits."""
        return self._writer.run_job(
            lambda: self._queries.prune(self._transaction, before_wall, self.prune_chunk), 120)

