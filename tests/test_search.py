"""Order search beside the scheduler (runtime/search.py): a search in progress holds neither
the scheduler lock nor a connection a commit or a submit's lookup needs, and searches beyond
the bound are answered 503 with Retry-After at once. Each test blocks a search where it
scans (a hook that waits for the test's word) and checks what still gets through."""

from __future__ import annotations

import threading
from collections.abc import Callable

from web import ORDER, app_over, fast_cluster

from scheduler import Cluster
from scheduler.engine.records import OrderQuery
from scheduler.journal.postgres import PostgresJournal
from scheduler.journal.queries import Queries
from scheduler.journal.sqlite import SQLiteJournal

WAIT = 20.0  # seconds a test waits for what must happen (far more than it takes)


class Hold:
    """Wraps a function so that its first `count` calls wait for `release` (each says it
    arrived), and every later call goes straight through."""

    def __init__(self, function: Callable, count: int = 1):
        self.function, self.count = function, count
        self.arrived = threading.Semaphore(0)
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self._lock:
            held, self.count = self.count > 0, self.count - 1
        if held:
            self.arrived.release()
            self.release.wait(WAIT * 3)
        return self.function(*args, **kwargs)

    def all_arrived(self, count: int) -> bool:
        return all(self.arrived.acquire(timeout=WAIT) for _ in range(count))


def in_thread(call: Callable) -> tuple[threading.Thread, threading.Event, list]:
    """Run `call` on a thread of its own: (thread, done, [its result or exception])."""
    done, out = threading.Event(), []

    def run():
        try:
            out.append(call())
        except Exception as exc:  # noqa: BLE001 - handed to the test
            out.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run, name="test-search-caller")
    thread.start()
    return thread, done, out


def test_a_submit_goes_through_while_a_search_is_scanning(monkeypatch):
    # The scan is held inside its first order check; before, it held the scheduler lock
    # there, and the submit waited for the whole scan.
    cluster = fast_cluster(workers=0)
    first = cluster.submit(ORDER)
    hold = Hold(OrderQuery.matches)
    monkeypatch.setattr(OrderQuery, "matches", lambda query, *a, **kw: hold(query, *a, **kw))
    searcher, searched, found = in_thread(
        lambda: cluster.search_orders(OrderQuery(customer="ADA")))
    try:
        assert hold.all_arrived(1)
        submitter, submitted, second = in_thread(lambda: cluster.submit(ORDER))
        went_through = submitted.wait(WAIT)
    finally:
        hold.release.set()
        searcher.join(WAIT)
    submitter.join(WAIT)
    assert went_through, "a submit waited for a search to end"
    assert isinstance(second[0], str) and cluster.get_order(second[0])["status"] == "pending"
    assert searched.is_set() and first in [o["id"] for o in found[0]]


def test_searches_beyond_the_bound_get_503_with_retry_after_at_once(monkeypatch):
    with app_over(fast_cluster(workers=0, max_searches=1), start=False) as app:
        cluster = app.extensions["orderflow"].cluster
        order = app.test_client().post("/api/orders", json=ORDER).get_json()["id"]
        hold = Hold(OrderQuery.matches)
        monkeypatch.setattr(OrderQuery, "matches", lambda query, *a, **kw: hold(query, *a, **kw))
        searcher, _, first = in_thread(
            lambda: app.test_client().get("/api/orders?customer=ada"))
        try:
            assert hold.all_arrived(1)
            # One more search, and a listing without filters (not a search: not counted).
            asker, asked, second = in_thread(
                lambda: app.test_client().get("/api/orders?customer=ada"))
            answered = asked.wait(WAIT)
            listing = app.test_client().get("/api/orders") if answered else None
        finally:
            hold.release.set()
            searcher.join(WAIT)
        asker.join(WAIT)
        assert answered, "a search beyond the bound waited instead of being refused"
        refused = second[0]
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert refused.get_json()["error"]["code"] == "overloaded"
        assert "at most 1" in refused.get_json()["error"]["message"]
        assert listing.status_code == 200
        assert [o["id"] for o in listing.get_json()["orders"]] == [order]
        assert [o["id"] for o in first[0].get_json()["orders"]] == [order]
        # The slot is free again.
        again = app.test_client().get("/api/orders?customer=ada")
        assert again.status_code == 200 and cluster.search_orders(OrderQuery(customer="x")) == []


def open_journal(location: str):
    """The journal at `location`; PostgreSQL's with a pool of two (the writer's and one)."""
    if location.startswith("postgresql://"):
        return PostgresJournal(location, pool_size=2)
    return SQLiteJournal(location)


def test_searches_held_in_the_journal_delay_neither_commits_nor_key_lookups(
        journal_db, monkeypatch):
    # Searches held while they read the journal: on PostgreSQL two, as many as its pool has
    # connections; on SQLite one (they take turns on their connection). Before, they held
    # the pool's connections (PostgreSQL) or the journal's read connection (SQLite): the
    # submit below, whose key is looked up in the journal and whose order must be committed,
    # failed with 503 or waited.
    held = 2 if journal_db.startswith("postgresql://") else 1
    cluster = Cluster(workers=0, handlers={}, journal=open_journal(journal_db),
                      heartbeat_interval=0.05, heartbeat_timeout=0.5).start()
    try:
        first = cluster.submit(ORDER)
        hold = Hold(Queries.with_tasks_and_events, count=held)
        monkeypatch.setattr(Queries, "with_tasks_and_events",
                            lambda queries, *args, **kw: hold(queries, *args, **kw))
        searchers = [in_thread(lambda: cluster.search_orders(OrderQuery(customer="ada")))
                     for _ in range(held)]
        try:
            assert hold.all_arrived(held)
            submitter, submitted, second = in_thread(
                lambda: cluster.submit(ORDER, idempotency_key="key-1"))
            went_through = submitted.wait(WAIT)
        finally:
            hold.release.set()
            for thread, _, _ in searchers:
                thread.join(WAIT)
        submitter.join(WAIT)
        assert went_through, "a submit waited for searches reading the journal"
        assert isinstance(second[0], str), second[0]
        assert cluster.journal.load_order(second[0]) is not None  # committed
        for _, done, found in searchers:
            assert done.is_set() and [o["id"] for o in found[0]] == [first]
    finally:
        cluster.stop()
