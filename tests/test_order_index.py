"""The index searches read without the scheduler lock: it finds what a walk over every order in
memory finds, in the same order, through submits, failures, retries, cancellations and
orders forgotten (blocks rebuilt, merged and dropped); and it passes whole blocks over."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim import ORDER, Sim

from scheduler.engine import views
from scheduler.engine.config import ClusterConfig, RetryPolicy
from scheduler.engine.core import SchedulerCore
from scheduler.engine.records import OrderQuery
from scheduler.runtime import order_index
from scheduler.runtime.order_index import OrderIndex

CUSTOMERS = ["Ada Lovelace", "ada byron", "GRACE", "Straße 9", "bob", "b\u00f6b"]
NEEDLES = ["ada", "A", "ss", "Ö", "zzz", "e 9", "bob", "b"]
WORKFLOWS = ["ecommerce", "ecommerce_invoiced"]
SKUS = ["BOOK-1", "book-2", "MUG"]
STATUSES = ["pending", "in_progress", "completed", "failed", "cancelled"]


class IndexedSim(Sim):
    """A core with an index kept as the cluster keeps it: every stimulus's effects applied."""

    def __init__(self, **settings):
        self.index = None
        super().__init__(**settings)
        self.index = OrderIndex(self.core.wall)

    def apply(self, fx):
        fx = super().apply(fx)
        if self.index is not None:
            self.index.apply(fx)
        return fx

    def submit_as(self, oid: str, customer: str, workflow: str, sku: str = "A1") -> None:
        order = {**ORDER, "customer": customer, "items": [{"sku": sku, "qty": 1, "price": 1}]}
        self.apply(self.core.submit(oid, order, now=self.now, workflow=workflow))


def walked(core, query: OrderQuery, before: int | None) -> list[str]:
    """What a search finds by walking every order in memory (the search as it was)."""
    return [o.id for o in sorted(views.orders(core).values(), key=lambda o: -o.number)
            if (before is None or o.number < before) and query.matches(
                o.reported_status, o.workflow.name, o.data.get("customer"),
                core.wall(o.submitted_at), (t.error for t in o.tasks.values()),
                order_id=o.id, skus=[item["sku"] for item in o.data["items"]])]


def scanned(index: OrderIndex, query: OrderQuery, before: int | None) -> list[str]:
    return [e.id for e in index.scan(query, before)]


queries = st.builds(
    OrderQuery,
    status=st.none() | st.sampled_from(STATUSES),
    workflow=st.none() | st.sampled_from([*WORKFLOWS, "nope"]),
    customer=st.none() | st.sampled_from(NEEDLES),
    error=st.none() | st.sampled_from(["boom", "BOOM 1", "gave up", "zzz"]),
    since=st.none() | st.integers(0, 40).map(float),
    until=st.none() | st.integers(0, 40).map(float),
    sku=st.none() | st.sampled_from(SKUS + ["zzz", "-"]),
    text=st.none() | st.sampled_from(["o1", "ada", "BOOK", "boom", "invoiced", "zzz"]),
)
steps = st.lists(st.tuples(
    st.sampled_from(["submit", "submit", "submit", "succeed", "succeed", "succeed", "fail",
                     "cancel", "retry", "time"]),
    st.integers(0, 10_000)), max_size=120)


@settings(deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(steps=steps, probes=st.lists(st.tuples(queries, st.none() | st.integers(1, 80)),
                                    min_size=1, max_size=12))
def test_the_index_finds_what_walking_every_order_finds(monkeypatch, steps, probes):
    monkeypatch.setattr(order_index, "BLOCK", 4)  # many blocks, rebuilt and merged often
    sim = IndexedSim(workers=2, finished_order_history=3,
                     retry=RetryPolicy(max_retries=1, backoff_base=0.1, backoff_cap=0.2))
    submitted = 0
    for action, pick in steps:
        if action == "submit":
            submitted += 1
            sim.submit_as(f"o{submitted}", CUSTOMERS[pick % len(CUSTOMERS)],
                          WORKFLOWS[pick % 2], SKUS[pick % len(SKUS)])
        elif action in ("succeed", "fail"):
            d, _ = sim.start_next(f"w{pick % 2 + 1}")
            if d is not None:
                if action == "succeed":
                    sim.succeed(d)
                else:
                    sim.fail(d, f"boom {pick % 3}")
        elif action in ("cancel", "retry") and views.orders(sim.core):
            order = list(views.orders(sim.core).values())[pick % len(views.orders(sim.core))]
            status = order.reported_status
            if action == "cancel" and status in ("pending", "in_progress"):
                sim.apply(sim.core.cancel_order(order.id, now=sim.now))
            elif action == "retry" and status == "failed":
                sim.apply(sim.core.retry_order(order.id, now=sim.now))
        else:
            sim.advance(0.5)
        sim.now += 0.25
    assert len(sim.index) == len(views.orders(sim.core))
    assert all(sim.index.holds(o) for o in views.orders(sim.core).values())
    for query, before in probes:
        assert scanned(sim.index, query, before) == walked(sim.core, query, before), query


def test_an_order_brought_back_below_the_newest_is_found_in_its_place(monkeypatch):
    # A failed order memory forgot comes back (a retry by hand) under its old number.
    monkeypatch.setattr(order_index, "BLOCK", 2)
    sim = IndexedSim(workers=0)
    for i in range(1, 8):
        sim.submit_as(f"o{i}", "ada", "ecommerce")
    index = OrderIndex(sim.core.wall)
    for order in views.orders(sim.core).values():
        if order.id != "o3":
            index.add(order)
    index.add(views.orders(sim.core)["o3"])
    assert scanned(index, OrderQuery(customer="ADA"), None) == [
        "o7", "o6", "o5", "o4", "o3", "o2", "o1"]
    assert scanned(index, OrderQuery(), 4) == ["o3", "o2", "o1"]


def test_a_search_that_matches_nothing_passes_every_full_block_over(monkeypatch):
    # A customer nobody has, a workflow no order uses, a status no order has, an error no
    # step had, a time after every order: no order is looked at, but the growing block's.
    core = SchedulerCore(ClusterConfig(workers=0))
    index = OrderIndex(core.wall)
    for i in range(3 * order_index.BLOCK + 5):
        index.apply(core.submit(f"o{i}", {**ORDER, "customer": CUSTOMERS[i % len(CUSTOMERS)]},
                                now=float(i), workflow=WORKFLOWS[i % 2]))
    looked = []
    monkeypatch.setattr(order_index.Entry, "matches",
                        lambda entry, query: looked.append(entry.id) or False)
    for query in (OrderQuery(customer="zzz"), OrderQuery(workflow="nope"),
                  OrderQuery(status="failed"), OrderQuery(error="declined"),
                  OrderQuery(since=10_000.0)):
        looked.clear()
        assert scanned(index, query, None) == []
        assert len(looked) <= 5, (query, len(looked))
    looked.clear()
    # A customer some have: only theirs are looked at in full blocks (every sixth order).
    assert scanned(index, OrderQuery(customer="GRACE"), None) == []  # matches refused all
    assert len(looked) == 3 * order_index.BLOCK // len(CUSTOMERS) + 5


@pytest.mark.parametrize("count", [1, 4, 9, 30])
def test_forgotten_orders_leave_no_block_behind(monkeypatch, count):
    monkeypatch.setattr(order_index, "BLOCK", 4)
    sim = IndexedSim(workers=1, finished_order_history=1)
    for i in range(count):
        sim.submit_as(f"o{i}", "ada", "ecommerce")
    sim.run_all()
    assert len(sim.index) == 1 and len(sim.index._blocks) == 1
    assert scanned(sim.index, OrderQuery(customer="ada"), None) == [f"o{count - 1}"]


def test_a_block_half_forgotten_moves_into_the_one_before_and_loses_nothing(monkeypatch):
    monkeypatch.setattr(order_index, "BLOCK", 4)
    sim = IndexedSim(workers=0, finished_order_history=1)
    for i in range(1, 10):
        sim.submit_as(f"o{i}", "ada", "ecommerce")
    # Finishing one forgets the one finished before: o1, o2 (block 1 keeps o3, o4), then
    # o5, o6 (block 2 keeps o7, o8, which fit beside o3, o4).
    for oid in ("o1", "o2", "o5", "o6", "o9"):
        sim.apply(sim.core.cancel_order(oid, now=sim.now))
    assert [b.items for b in sim.index._blocks][0] == [
        sim.index._by_id[o] for o in ("o3", "o4", "o7", "o8")]
    assert scanned(sim.index, OrderQuery(customer="ada"), None) == [
        "o9", "o8", "o7", "o4", "o3"] == walked(sim.core, OrderQuery(customer="ada"), None)


def test_a_block_whose_newest_order_is_exactly_at_since_is_not_passed_over():
    # `since` is compared with the time as shown (to the millisecond): the bound is half a
    # millisecond before it, and an order submitted exactly there is found.
    core = SchedulerCore(ClusterConfig(workers=0))
    index = OrderIndex(core.wall)
    bound = OrderQuery(since=1000.0).time_bounds()[0]
    for i in range(order_index.BLOCK):  # one full block, its newest exactly at the bound
        at = bound if i == order_index.BLOCK - 1 else 900.0 + i / order_index.BLOCK
        index.apply(core.submit(f"o{i}", dict(ORDER), now=at))
    index.apply(core.submit("late", dict(ORDER), now=2000.0))
    newest = f"o{order_index.BLOCK - 1}"
    assert scanned(index, OrderQuery(since=1000.0), None) == ["late", newest]
    assert scanned(index, OrderQuery(until=1000.0), None)[0] == f"o{order_index.BLOCK - 2}"
