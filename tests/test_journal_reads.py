"""A read of the journal never fails as an unexpected error (500): a value looked up that no
journal can hold is UnstorableText (400: nothing stored can match it), and anything the
database answers instead of rows (a broken table, a stored row it cannot convert, an outage)
is a StoreError (503). On SQLite and PostgreSQL, through the journal, the Python API and
HTTP."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import wait_for
from ha import sql
from web import ORDER, app_over, fast_cluster

from scheduler.engine.errors import UnstorableText
from scheduler.engine.records import OrderQuery
from scheduler.journal.location import open_journal, parse_location
from scheduler.journal.schema import StoreError


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def db(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "reads.db")
    return request.getfixturevalue("pg_url")


def lookups(journal, value: str) -> dict:
    return {
        "load_order": lambda: journal.load_order(value),
        "find_idempotency_key": lambda: journal.find_idempotency_key(value),
        "story": lambda: journal.story(value),
        "search by customer": lambda: journal.search_orders(OrderQuery(customer=value),
                                                            None, 10),
        "search by error": lambda: journal.search_orders(OrderQuery(error=value), None, 10),
    }


def test_looking_up_a_lone_surrogate_is_unstorable_text_not_a_driver_error(db):
    journal = open_journal(parse_location(db))
    try:
        for read in lookups(journal, "o-\ud800").values():
            with pytest.raises(UnstorableText, match="nothing stored can match"):
                read()
    finally:
        journal.close()


@pytest.mark.slow
def test_looking_up_a_nul_in_postgresql_is_unstorable_text_and_the_api_answers_400(pg_url):
    cluster = fast_cluster(workers=0, journal=open_journal(parse_location(pg_url)))
    with app_over(cluster) as app:
        for read in lookups(cluster.journal, "o-\x00").values():
            with pytest.raises(UnstorableText):
                read()
        for call in (lambda: cluster.get_order("a\x00b"),
                     lambda: cluster.story("a\x00b"),
                     lambda: cluster.cancel_order("a\x00b")):
            with pytest.raises(UnstorableText):
                call()
        # Through HTTP the door refuses it first (boundary.py); what it maps to is 400.
        from dashboard.door.errors import describe
        assert describe(UnstorableText("x")).status == 400
        assert app.test_client().get("/api/orders/a%00b").status_code == 400


def break_tasks_table(db: str) -> None:
    """The journal's tasks table goes away behind the server's back."""
    if db.startswith("postgresql"):
        sql(db, "ALTER TABLE tasks RENAME TO tasks_gone")
        return
    conn = sqlite3.connect(db)
    try:
        conn.execute("ALTER TABLE tasks RENAME TO tasks_gone")
        conn.commit()
    finally:
        conn.close()


def test_a_read_the_database_cannot_answer_is_a_503_naming_the_journal_never_a_500(db):
    cluster = fast_cluster(workers=1, journal=open_journal(parse_location(db)))
    with app_over(cluster) as app:
        client = app.test_client()
        created = client.post("/api/orders", json=ORDER)
        assert created.status_code == 201
        # Finished and committed: a search reads unfinished orders from memory and asks the
        # journal only for finished ones, so this one makes each search read its tasks.
        order_id = created.json["id"]
        wait_for(lambda: getattr(cluster.journal.load_order(order_id), "status", None)
                 in ("completed", "failed"), 30, message="the order committed as finished")
        break_tasks_table(db)
        for url in ("/api/orders?customer=ada", "/api/orders?error=declined",
                    "/api/orders?status=completed"):
            response = client.get(url)
            assert response.status_code == 503, (url, response.get_data(True))
            assert response.json["error"]["code"] == "journal_unavailable"
            assert "could not read" in response.json["error"]["message"]
        with pytest.raises(StoreError, match="could not read"):
            cluster.journal.load_order(created.json["id"])


@pytest.mark.slow
def test_a_stored_customer_postgresql_json_cannot_convert_makes_searches_503_not_500(pg_url):
    """A row accepted before the door refused such text (or written behind its back): its
    customer's JSON escape \\u0000 cannot be converted to text, so a customer search fails
    in the database, for every customer searched. An outage of that search, said so."""
    cluster = fast_cluster(workers=0, journal=open_journal(parse_location(pg_url)))
    with app_over(cluster) as app:
        sql(pg_url, "INSERT INTO orders (id, number, workflow, data, idempotency_key, "
                    "submitted_at, status, finished_at, priority) VALUES ('o-old', 1, "
                    "'ecommerce', %s, NULL, 0, 'completed', 0, 0)",
            '{"customer": "\\u0000x", "items": []}')
        response = app.test_client().get("/api/orders?customer=zzz")
        assert response.status_code == 503, response.get_data(True)
        assert response.json["error"]["code"] == "journal_unavailable"
        assert "\\u0000 cannot be converted to text" in response.json["error"]["message"]


def test_an_sqlite_read_whose_closing_commit_fails_is_a_store_error():
    # A read that filled a temp table (the ids it loads tasks by) ends its transaction when
    # it is done; a commit the file refuses there is a failed read too (503), never a
    # driver error (500).
    from scheduler.journal.sqlite import _Reading

    class RefusingCommit:
        in_transaction = True

        def commit(self):
            raise sqlite3.OperationalError("disk I/O error")

        def rollback(self):
            self.in_transaction = False

    conn = RefusingCommit()
    with pytest.raises(StoreError, match="could not read of.db: disk I/O error"):
        with _Reading(conn, "of.db"):
            pass
    assert not conn.in_transaction  # rolled back
