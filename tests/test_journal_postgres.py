"""The journal in PostgreSQL: its schema, one scheduler per database, the fence in every write
transaction, outages, clear errors, pruning and the invariant checker. (The behaviour both
backends share runs on both in test_store.py and test_journal_writer.py.)"""

from __future__ import annotations

import logging
import threading

import psycopg
import pytest
from conftest import TEST_SERVER_SETTINGS, wait_for
from pg import PostgresServer, free_port, missing
from web import ORDER, app_over, fast_cluster

from scheduler import Cluster
from scheduler.chaos.invariants import check_history, load_journal
from scheduler.cli import main
from scheduler.journal import rows
from scheduler.journal.lock import JournalLocked
from scheduler.journal.postgres import SCHEDULER_LOCK, PostgresJournal
from scheduler.journal.postgres_schema import SCHEMA_VERSION
from scheduler.journal.schema import StoreError

NOOP = {s: (lambda ctx: None) for s in ("payment", "packing", "shipping")}
FAST = {"heartbeat_interval": 0.05, "heartbeat_timeout": 0.5}


def sql(url: str, statement: str, *args) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, args)
        return cur.fetchall() if cur.description else []


def claim_session(url: str) -> int:
    """The backend pid of the session holding the scheduler lock."""
    found = sql(url, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND objid = %s", SCHEDULER_LOCK)
    assert len(found) == 1
    return found[0][0]


def count_orders(url: str) -> int:
    return sql(url, "SELECT COUNT(*) FROM orders")[0][0]


def test_the_schema_holds_exactly_the_columns_the_row_encoder_writes(pg_url):
    PostgresJournal(pg_url).close()

    def columns(table):
        return tuple(r[0] for r in sql(
            pg_url, "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "ORDER BY ordinal_position", table))

    assert columns("tasks") == rows.TASK_FIELDS
    assert columns("orders") == rows.ORDER_FIELDS
    assert columns("events") == (*rows.EVENT_FIELDS, "duration", "extra")
    assert sql(pg_url, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)]


def test_a_version_1_database_gains_moves_and_its_tasks_still_load(pg_url):
    from scheduler.journal.postgres_schema import MIGRATIONS

    sql(pg_url, "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for statement in MIGRATIONS[1]:
        sql(pg_url, statement)
    sql(pg_url, "INSERT INTO meta VALUES ('schema_version', '1')")
    sql(pg_url, "INSERT INTO orders VALUES ('o-1', 1, 'ecommerce', %s, NULL, 1.0, 'completed', "
        "2.0, 0)", '{"customer": "ada", "items": []}')
    sql(pg_url, "INSERT INTO tasks VALUES ('o-1:payment', 'o-1', 'payment', 'succeeded', 1, 0, "
        "1, 2, 'w-1', NULL, NULL, NULL)")
    journal = PostgresJournal(pg_url)
    try:
        task = journal.find_order("o-1")["tasks"]["payment"]
    finally:
        journal.close()
    assert (task["moves"], task["reassignments"], task["runs"]) == (0, 1, 2)
    assert sql(pg_url, "SELECT value FROM meta WHERE key = 'schema_version'") == [("2",)]


def test_a_database_from_a_newer_orderflow_is_refused_with_advice(pg_url):
    PostgresJournal(pg_url).close()
    sql(pg_url, "UPDATE meta SET value = %s WHERE key = 'schema_version'",
        str(SCHEMA_VERSION + 1))
    with pytest.raises(StoreError, match=r"schema version \d+, newer .* Upgrade orderflow"):
        PostgresJournal(pg_url)


def test_a_database_with_other_tables_of_the_same_names_is_refused_naming_it(pg_url):
    sql(pg_url, "CREATE TABLE orders (sku TEXT)")
    with pytest.raises(StoreError, match="is not a usable orderflow database"):
        PostgresJournal(pg_url)


def test_a_second_journal_on_one_database_is_refused_naming_the_first(pg_url):
    first = PostgresJournal(pg_url)
    try:
        with pytest.raises(JournalLocked) as refused:
            PostgresJournal(pg_url)
        message = str(refused.value)
        assert "one scheduler per database" in message and "\n" not in message
        assert f"orderflow pid {__import__('os').getpid()}" in message
        # Pruning and reading need no claim.
        PostgresJournal(pg_url, claim=False).close()
    finally:
        first.close()
    PostgresJournal(pg_url).close()  # closing the first ended its claim


def test_a_journal_whose_claim_was_taken_over_writes_nothing_more(pg_url, caplog):
    journal = PostgresJournal(pg_url)
    with app_over(fast_cluster(workers=1, journal=journal)) as app:
        client = app.test_client()
        assert client.post("/api/orders", json=ORDER).status_code == 201
        # Another server's claim: its token replaces ours (the row a takeover writes).
        sql(pg_url, "UPDATE meta SET value = 'another-server' WHERE key = 'scheduler'")
        before = count_orders(pg_url)
        with caplog.at_level(logging.CRITICAL, logger="orderflow"):
            refused = client.post("/api/orders", json=ORDER)
            assert refused.status_code == 503
            assert "took" in refused.json["error"]["message"]
        assert client.get("/healthz").status_code == 503
        assert count_orders(pg_url) == before  # the refused order was never committed
        assert any("JOURNAL LOST" in r.getMessage() for r in caplog.records)


def test_a_takeover_while_the_claim_session_is_cut_stops_the_old_journal(pg_url):
    journal = PostgresJournal(pg_url)
    cluster = Cluster(workers=1, journal=journal, handlers=NOOP, **FAST).start()
    taker = psycopg.connect(pg_url, autocommit=True)
    try:
        cluster.submit(ORDER)
        # The taker queues for the lock first, so it gets it the moment the session ends.
        waiting = threading.Thread(target=lambda: taker.execute(
            "SELECT pg_advisory_lock(%s)", (SCHEDULER_LOCK,)), daemon=True)
        waiting.start()
        wait_for(lambda: sql(pg_url, "SELECT COUNT(*) FROM pg_locks WHERE locktype = "
                             "'advisory' AND NOT granted")[0][0] == 1, 10,
                 message="the taker queued for the lock")
        sql(pg_url, "SELECT pg_terminate_backend(%s)", claim_session(pg_url))
        waiting.join(10)
        taker.execute("UPDATE meta SET value = 'taker' WHERE key = 'scheduler'")
        before = count_orders(pg_url)
        wait_for(lambda: _refused(cluster), 10, message="the old journal refusing orders")
        assert count_orders(pg_url) == before
    finally:
        cluster.stop()
        taker.close()


def _refused(cluster: Cluster) -> bool:
    try:
        cluster.submit(ORDER)
    except StoreError:
        return True
    return False


def test_a_cut_claim_session_is_claimed_again_when_nobody_took_over(pg_url, caplog):
    cluster = Cluster(workers=1, journal=PostgresJournal(pg_url), handlers=NOOP, **FAST).start()
    try:
        first = claim_session(pg_url)
        with caplog.at_level(logging.WARNING, logger="orderflow.store"):
            sql(pg_url, "SELECT pg_terminate_backend(%s)", first)
            wait_for(lambda: any("claimed" in r.getMessage() and "again" in r.getMessage()
                                 for r in caplog.records), 10, message="claimed again")
        assert claim_session(pg_url) != first
        oid = cluster.submit(ORDER)
        assert cluster.wait_until_idle(10)
        wait_for(lambda: cluster.journal.find_order(oid)["status"] == "completed", 10,
                 message="the order committed as completed")
    finally:
        cluster.stop()


@pytest.mark.slow
@pytest.mark.skipif(missing() is not None, reason=missing() or "")
def test_a_database_outage_answers_503_and_writing_resumes_when_it_is_back():
    server = PostgresServer(TEST_SERVER_SETTINGS).start()
    try:
        url = server.create_database()
        with app_over(fast_cluster(workers=2, journal=PostgresJournal(url))) as app:
            client = app.test_client()
            cluster = app.extensions["orderflow"].cluster
            assert client.post("/api/orders", json=ORDER).status_code == 201
            server.shutdown()  # every session is cut; nothing answers on the port
            wait_for(lambda: client.post("/api/orders", json=ORDER).status_code == 503, 15,
                     message="503 while the database is down")
            assert client.get("/healthz").status_code == 503
            server.start_again()
            wait_for(lambda: client.get("/healthz").status_code == 200, 20,
                     message="healthz 200 once the database is back")
            created = client.post("/api/orders", json=ORDER)
            assert created.status_code == 201
            assert cluster.wait_until_idle(20)
            wait_for(lambda: cluster.journal.find_order(created.json["id"])["status"]
                     == "completed", 10, message="committed after the outage")
            orders = cluster.stats()["orders"]
            assert orders["pending"] == orders["in_progress"] == 0
    finally:
        server.stop()


def test_an_unreachable_database_is_one_line_naming_it_without_the_password(capsys, tmp_path):
    url = f"postgresql://shop:s3cret@127.0.0.1:{free_port()}/shop"
    with pytest.raises(StoreError, match="cannot connect to postgresql://shop:\\*\\*\\*@"):
        PostgresJournal(url)
    for argv in (["prune", "--older-than", "7d", "--db", url],
                 ["serve", "--port", "0", "--db", url, "--log-file", str(tmp_path / "x.log")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert "cannot connect to postgresql://shop:***@127.0.0.1" in err
        assert "s3cret" not in err


def test_a_database_that_does_not_exist_is_named(postgres):
    with pytest.raises(StoreError, match='database "no_such_db" does not exist'):
        PostgresJournal(postgres.url("no_such_db"))


def test_prune_cli_on_a_postgresql_journal_a_server_holds(pg_url, capsys):
    cluster = Cluster(workers=1, journal=PostgresJournal(pg_url), handlers=NOOP, **FAST).start()
    try:
        ids = cluster.submit_many([ORDER] * 4)
        assert cluster.wait_until_idle(10)
        wait_for(lambda: all(cluster.journal.find_order(o)["status"] == "completed"
                             for o in ids), 10, message="the orders written as completed")
        assert main(["prune", "--older-than", "0.001s", "--db", pg_url]) == 0
        assert "removed 4 finished orders" in capsys.readouterr().out
        assert count_orders(pg_url) == 0
        assert sql(pg_url, "SELECT COUNT(*) FROM events WHERE order_id IS NOT NULL") == [(0,)]
        later = cluster.submit(ORDER)  # the server goes on writing
        assert cluster.wait_until_idle(10)
        wait_for(lambda: cluster.journal.find_order(later)["status"] == "completed", 10,
                 message="written after the prune")
    finally:
        cluster.stop()


def test_the_invariant_checker_reads_a_postgresql_journal_by_url(pg_url):
    cluster = Cluster(workers=2, journal=PostgresJournal(pg_url), handlers=NOOP, **FAST).start()
    try:
        ids = cluster.submit_many([ORDER] * 20)
        assert cluster.wait_until_idle(10)
    finally:
        cluster.stop()
    history = load_journal(pg_url)
    assert set(history.orders) == set(ids)
    report = check_history(history, ids, max_retries=3)
    assert report["ok"] and report["completed"] == 20
    seqs = [e["seq"] for e in history.events]
    assert seqs == list(range(1, len(seqs) + 1))
    # Something wrong in the journal is found there too.
    sql(pg_url, "DELETE FROM orders WHERE id = %s", ids[0])
    assert check_history(load_journal(pg_url), ids, max_retries=3)["lost"] == 1


@pytest.mark.slow
def test_serve_on_postgresql_one_server_per_database_and_a_restart_keeps_the_orders(
    pg_url, monkeypatch, tmp_path
):
    import subprocess

    import requests

    from scheduler.chaos.serve_process import ServeProcess, orderflow_command

    monkeypatch.setenv("ORDERFLOW_DB", pg_url)  # instead of --db
    flags = ("--workers", "0", "--log-file", str(tmp_path / "of.log"), "--log-level", "warning")
    first = ServeProcess(*flags)
    try:
        created = requests.post(f"{first.url}/api/orders", json=ORDER, timeout=10)
        assert created.status_code == 201
        second = subprocess.run([*orderflow_command(), "serve", "--port", "0", *flags],
                                capture_output=True, text=True, timeout=60,
                                stdin=subprocess.DEVNULL)
        assert second.returncode == 2
        err = second.stderr.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert "one scheduler per database" in err and "orderflow pid" in err
        first.kill()  # SIGKILL: PostgreSQL ends its sessions, and with them the claim
        third = ServeProcess(*flags)
        try:
            oid = created.json()["id"]
            order = requests.get(f"{third.url}/api/orders/{oid}", timeout=10).json()
            assert order["status"] == "pending"  # recovered, waiting for a worker
        finally:
            third.stop()
    finally:
        first.kill()
