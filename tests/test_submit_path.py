"""One submit parses its body once and checks each thing once: the order's fields, its
priority and idempotency key (scheduler/engine/orders.py), the key's lookup (one journal read
for a new key) and the capacity (issue 20, item 1). Counted with spies on the one place
each is done."""

from __future__ import annotations

from collections import Counter

import pytest
from web import ORDER, app_over, fast_cluster

from dashboard import services
from scheduler import Cluster
from scheduler.engine import fields
from scheduler.engine.core import SchedulerCore
from scheduler.journal.sqlite import SQLiteJournal

KEYED = {"Idempotency-Key": "k-1"}


@pytest.fixture
def journal_reads(tmp_path, monkeypatch):
    """An app over an SQLite journal whose idempotency-key reads are counted."""
    journal = SQLiteJournal(tmp_path / "submit.db")
    reads: list[str] = []
    read = journal.find_idempotency_key

    def counted(key: str):
        reads.append(key)
        return read(key)

    monkeypatch.setattr(journal, "find_idempotency_key", counted)
    with app_over(fast_cluster(workers=1, journal=journal)) as app:
        yield app.test_client(), reads


def test_a_new_idempotency_key_is_looked_up_in_the_journal_once(journal_reads):
    client, reads = journal_reads
    created = client.post("/api/orders", json=ORDER, headers=KEYED)
    assert created.status_code == 201
    assert reads == ["k-1"]
    # The same key again is answered from memory, without asking the journal.
    again = client.post("/api/orders", json=ORDER, headers=KEYED)
    assert (again.status_code, again.get_json()["id"]) == (200, created.get_json()["id"])
    assert reads == ["k-1"]


def test_a_submit_checks_the_capacity_once(monkeypatch):
    checks: list[int] = []
    check = SchedulerCore.check_capacity

    def counted(core, orders: int) -> None:
        checks.append(orders)
        check(core, orders)

    monkeypatch.setattr(SchedulerCore, "check_capacity", counted)
    with app_over(fast_cluster(workers=0), start=False) as app:
        client = app.test_client()
        assert client.post("/api/orders", json=ORDER, headers=KEYED).status_code == 201
        assert checks == [1]
        # A batch is checked once, whole (all or none), not again order by order.
        checks.clear()
        assert client.post("/api/orders/bulk", json={"count": 3}).status_code == 201
        assert checks == [3]


def test_a_submit_reads_each_field_its_priority_and_its_key_once_and_walks_no_text(
        monkeypatch):
    checked: Counter[str] = Counter()
    check = fields.Field.check

    def counted(field, value, where):
        checked[where] += 1
        return check(field, value, where)

    walks: list[object] = []
    walk = fields.find_unstorable

    def counted_walk(value, where):
        walks.append(where)
        return walk(value, where)

    with app_over(fast_cluster(workers=0), start=False) as app:
        monkeypatch.setattr(fields.Field, "check", counted)
        monkeypatch.setattr(fields, "find_unstorable", counted_walk)
        body = {**ORDER, "priority": 5, "workflow": "ecommerce"}
        response = app.test_client().post("/api/orders", json=body, headers=KEYED)
        assert response.status_code == 201, response.get_json()
    assert checked == {"customer": 1, "items": 1, "items[0].sku": 1, "items[0].qty": 1,
                       "items[0].price": 1, "workflow": 1, "priority": 1,
                       "Idempotency-Key": 1}
    # Text is checked with each field; a walk of the body only names what a refusal holds.
    assert walks == []


def test_a_bad_order_is_refused_even_when_its_key_is_known_and_asks_no_journal(
        journal_reads):
    client, reads = journal_reads
    assert client.post("/api/orders", json=ORDER, headers=KEYED).status_code == 201
    reads.clear()
    refused = client.post("/api/orders", json={**ORDER, "customer": " "}, headers=KEYED)
    assert refused.status_code == 422
    assert reads == []


def test_two_submits_racing_with_one_key_make_one_order_and_both_are_told_it():
    """The lookup missed (the other submit was not accepted yet); the core, under the
    cluster's lock, refuses the second, which then answers with the first's order."""
    cluster = Cluster(workers=0)
    first = cluster.submit(ORDER, idempotency_key="k-race")
    lookups: list[str] = []
    look_up = cluster.find_by_idempotency_key

    def late_then_true(key: str):
        lookups.append(key)
        return None if len(lookups) == 1 else look_up(key)

    cluster.find_by_idempotency_key = late_then_true
    assert cluster.submit_idempotent(ORDER, idempotency_key="k-race") == (first, False)
    assert lookups == ["k-race", "k-race"]
    assert cluster.stats()["orders_total"] == 1


def test_the_socket_command_and_the_http_route_submit_alike():
    with app_over(fast_cluster(workers=0), start=False) as app:
        socketio = services(app).socketio
        client = socketio.test_client(app)
        try:
            refused = client.emit("submit_order", {**ORDER, "customer": "\t"}, callback=True)
            assert refused["status"] == 422
            assert refused["error"]["message"].startswith("customer must be")
            made = client.emit("submit_order", {**ORDER, "priority": 3}, callback=True)
            assert made["order"]["priority"] == 3
        finally:
            client.disconnect()
