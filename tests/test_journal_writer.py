"""The journal's writer under failure: no acknowledgement before durability, a full disk
that answers 503 and then resumes by itself, a journal deleted under a running server."""

from __future__ import annotations

import logging
import os
import sqlite3
from contextlib import contextmanager

from conftest import wait_for
from web import ORDER, app_over, fast_cluster

from scheduler import Cluster
from scheduler.journal.location import open_journal, parse_location
from scheduler.journal.sqlite import SQLiteJournal

FULL = "database or disk is full"


def page_count(db) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA page_count").fetchone()[0]
    finally:
        conn.close()


@contextmanager
def journaled_app(db, **settings):
    journal = open_journal(parse_location(str(db)))
    with app_over(fast_cluster(workers=2, journal=journal, **settings)) as app:
        yield app, app.test_client(), journal, db


def fill_the_disk(journal, db) -> None:
    """Writes fail from now on, with the error a full disk gives. SQLite: its own limit on
    the file's size ("database or disk is full"); PostgreSQL: a trigger that raises what the
    server says when it cannot extend a file (the tables and the pool stay as they are)."""
    if isinstance(journal, SQLiteJournal):
        journal._write.execute(f"PRAGMA max_page_count = {page_count(db) + 1}")
        return
    import psycopg  # only the PostgreSQL variant comes here (skipped without psycopg)

    with psycopg.connect(str(db), autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'could not extend file: No space left on device (%)', "
            f"'{FULL}'; END $$"
        )
        conn.execute("CREATE TRIGGER disk_full BEFORE INSERT OR UPDATE ON orders "
                     "FOR EACH STATEMENT EXECUTE FUNCTION disk_full()")


def free_the_disk(journal, db) -> None:
    if isinstance(journal, SQLiteJournal):
        journal._write.execute("PRAGMA max_page_count = 1073741823")
        return
    import psycopg  # only the PostgreSQL variant comes here (skipped without psycopg)

    with psycopg.connect(str(db), autocommit=True) as conn:
        conn.execute("DROP TRIGGER disk_full ON orders")


def test_a_full_disk_answers_503_and_writing_resumes_by_itself_when_space_returns(journal_db):
    with journaled_app(journal_db) as (app, client, journal, db):
        cluster = app.extensions["orderflow"].cluster
        assert client.post("/api/orders", json=ORDER).status_code == 201
        assert cluster.wait_until_idle(10)
        fill_the_disk(journal, db)
        refused = client.post("/api/orders/bulk", json={"count": 300})
        assert refused.status_code == 503 and FULL in refused.json["error"]["message"]
        assert client.get("/healthz").status_code == 503
        assert client.post("/api/orders", json=ORDER).status_code == 503
        free_the_disk(journal, db)
        # Nobody restarts anything: the writer tries again and gets through.
        wait_for(lambda: client.get("/healthz").status_code == 200, 10, message="healthz 200")
        assert client.post("/api/orders", json=ORDER).status_code == 201
        # The work that waited for the journal (the refused bulk was queued, not lost) runs.
        assert cluster.wait_until_idle(20)
        orders = cluster.stats()["orders"]
        assert orders["pending"] == orders["in_progress"] == 0


def test_a_key_whose_order_was_not_committed_is_never_answered_as_accepted(journal_db):
    with journaled_app(journal_db) as (app, client, journal, db):
        headers = {"Idempotency-Key": "checkout-42"}
        fill_the_disk(journal, db)
        # A large order needs new pages: its commit fails.
        big = {"customer": "ada", "items": [{"sku": f"S{i}", "qty": 1, "price": 1.0}
                                             for i in range(1000)]}
        first = client.post("/api/orders", json=big, headers=headers)
        assert first.status_code == 503
        again = client.post("/api/orders", json=big, headers=headers)
        assert again.status_code == 503, again.json  # never 200 for an uncommitted order
        listed = client.get("/api/orders").json["orders"]
        assert all(o["customer"] != "ada" or len(o["data"]["items"]) < 1000 for o in listed)
        free_the_disk(journal, db)
        wait_for(lambda: client.get("/healthz").status_code == 200, 10, message="healthz 200")
        # Committed now: the key answers with the one order, and only that one.
        replay = client.post("/api/orders", json=big, headers=headers)
        assert replay.status_code == 200
        oid = replay.json["id"]
        assert client.get(f"/api/orders/{oid}").status_code == 200
    again = Cluster(workers=0, journal=open_journal(parse_location(str(db)))).start()
    try:
        assert again.find_by_idempotency_key("checkout-42") == oid
        assert again.get_order(oid)["id"] == oid
    finally:
        again.stop()


def test_a_journal_deleted_under_a_running_server_is_noticed_and_nothing_more_is_accepted(
    tmp_path, caplog
):
    with journaled_app(tmp_path / "of.db") as (app, client, journal, db):
        assert client.post("/api/orders", json=ORDER).status_code == 201
        with caplog.at_level(logging.CRITICAL, logger="orderflow"):
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(f"{db}{suffix}"):
                    os.remove(f"{db}{suffix}")
            # Noticed within a second without any request to provoke it.
            wait_for(lambda: client.get("/healthz").status_code == 503, 1.5,
                     message="healthz 503 after the journal was deleted")
        refused = client.post("/api/orders", json=ORDER)
        assert refused.status_code == 503 and "deleted" in refused.json["error"]["message"]
        lost = [r for r in caplog.records if r.levelno == logging.CRITICAL]
        assert len(lost) == 1 and "JOURNAL LOST" in lost[0].getMessage()
        assert str(db) in lost[0].getMessage()


def test_a_journal_replaced_by_another_file_is_noticed(tmp_path):
    with journaled_app(tmp_path / "of.db") as (app, client, journal, db):
        assert client.post("/api/orders", json=ORDER).status_code == 201
        replacement = tmp_path / "other.db"
        SQLiteJournal(replacement).close()
        os.replace(replacement, db)
        wait_for(lambda: client.get("/healthz").status_code == 503, 1.5,
                 message="healthz 503 after the journal was replaced")
        assert "replaced" in client.post("/api/orders", json=ORDER).json["error"]["message"]
