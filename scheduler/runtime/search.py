"""Order search (`GET /api/orders`) beside the scheduler, never in its way.

A search reads the orders in memory through their index (order_index.py) without the
scheduler lock, and takes the lock only for the few orders it returns: to check them again
and build their views, a batch at a time. The orders memory forgot come from the journal,
through the journal's own search connection(s), never the ones its writer commits on. At
most `max_searches` searches with filters run at once; another is refused at once
(`SearchBusy`: HTTP 503 with Retry-After) rather than queued behind them. A listing without
filters is not counted: it reads the newest orders and stops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from itertools import islice

from ..engine import views
from ..engine.core import SchedulerCore
from ..engine.errors import Overloaded
from ..engine.model import Order
from ..engine.records import FINISHED_STATUSES, OrderQuery
from ..journal.base import Journal
from .order_index import OrderIndex

# Orders checked and viewed per hold of the scheduler lock.
VIEW_BATCH = 32
_EVERYTHING = OrderQuery()


class SearchBusy(Overloaded):
    """As many searches as allowed are running: try again shortly (HTTP 503)."""

    retry_after = 1


class OrderSearch:
    """Searches of one cluster's orders: its memory through `index`, then its journal."""

    def __init__(
        self,
        core: SchedulerCore,
        lock: threading.Lock,
        journal: Journal,
        index: OrderIndex,
        view: Callable[[Order], dict],
        confirmed: Callable[[str], bool],
        max_searches: int,
    ):
        """`view(order)` and `confirmed(order_id)` are the cluster's, called under `lock`."""
        self._core, self._lock, self._journal, self._index = core, lock, journal, index
        self._view, self._confirmed = view, confirmed
        self.max_searches = max_searches
        self._slots = threading.BoundedSemaphore(max_searches)
        # True while every unfinished order the journal holds is in memory too (always,
        # unless a restart found orders of a workflow this app lacks): the journal is then
        # asked only for finished orders.
        self.unfinished_all_in_memory = True

    def search(self, query: OrderQuery, limit: int, before: int | None) -> list[dict]:
        """Orders matching `query`, newest first, numbered below `before`: those in memory as
        they are now, the rest from the journal, merged by number. SearchBusy when
        `max_searches` searches with filters are running already."""
        if query == _EVERYTHING:
            return self._search(query, limit, before)
        if not self._slots.acquire(blocking=False):
            raise SearchBusy(
                f"too many order searches at once (at most {self.max_searches}); try again "
                f"in {SearchBusy.retry_after} s")
        try:
            return self._search(query, limit, before)
        finally:
            self._slots.release()

    def _search(self, query: OrderQuery, limit: int, before: int | None) -> list[dict]:
        found = self._from_memory(query, limit + 1, before)
        if not self._journal.persistent:
            return [view for _, view in found[:limit]]
        return self._with_journal(query, limit, before, found)

    def _from_memory(self, query: OrderQuery, wanted: int, before: int | None
                     ) -> list[tuple[int, dict]]:
        """Up to `wanted` matches in memory: found without the lock, then each checked
        again (it may have changed since) and viewed under it, VIEW_BATCH at a time."""
        core, index = self._core, self._index
        found: list[tuple[int, dict]] = []
        scan = index.scan(query, before)
        while len(found) < wanted:
            batch = list(islice(scan, min(VIEW_BATCH, wanted - len(found))))
            if not batch:
                break
            with self._lock:
                for entry in batch:
                    order = views.find_order(core, entry.id)
                    if (order is entry.order and entry.alive and entry.matches(query)
                            and self._confirmed(order.id)):
                        found.append((order.number, self._view(order)))
        return found

    def _with_journal(self, query: OrderQuery, limit: int, before: int | None,
                      found: list[tuple[int, dict]]) -> list[dict]:
        """Add what only the journal still has. Memory's matches go down to `floor`; the
        journal may hold matches it forgot, newer than that. Its rows of orders the memory
        search covered are skipped (memory is newer)."""
        core = self._core
        finished_only = self.unfinished_all_in_memory
        if finished_only and query.status is not None and query.status not in FINISHED_STATUSES:
            return [view for _, view in found[:limit]]  # memory has every one of these
        floor = found[-1][0] if len(found) > limit else None
        shown = {view["id"] for _, view in found}
        cursor, page = before, limit + 1 + len(found)
        while True:
            records = self._journal.search_orders(query, cursor, page,
                                                  finished_only=finished_only)
            with self._lock:
                for record in records:
                    order = views.find_order(core, record.id)
                    if record.id in shown or (order is not None and self._index.holds(order)):
                        continue
                    found.append((record.number, record.view(with_results=False)))
                    shown.add(record.id)
            if len(records) < page:
                break  # the journal has no more
            cursor = records[-1].number
            # Later pages are older than `cursor`: done once the first `limit` are above it.
            if (floor is not None and cursor <= floor) or sum(
                    1 for n, _ in found if n >= cursor) > limit:
                break
        found.sort(key=lambda item: -item[0])
        return [view for _, view in found[:limit]]


__all__ = ["VIEW_BATCH", "OrderSearch", "SearchBusy"]
