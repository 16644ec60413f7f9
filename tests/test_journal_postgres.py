"""The journal in PostgreSQL: its schema, one scheduler per database (a lease of its own), the
fence in every write transaction, outages, clear errors, pruning and the invariant checker.
(The behaviour both backends share runs on both in test_store.py and test_journal_writer.py;
several servers on one database, failover and fencing: test_failover.py.)"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import journal_history
import pytest

try:
    import psycopg
except ImportError:  # only `.[dev]` installed: the PostgreSQL tests need the postgres extra
    pytest.skip("psycopg is not installed (pip install -e '.[dev,postgres]')",
                allow_module_level=True)
from conftest import TEST_SERVER_SETTINGS, wait_for
from ha import FAST, NOOP, ha_app, leading, role, sql
from pg import PostgresServer, free_port, missing
from web import ORDER, app_over, fast_cluster

from dashboard import services
from scheduler import Cluster
from scheduler.chaos.invariants import check_history, load_journal
from scheduler.cli import main
from scheduler.journal import rows
from scheduler.journal.lock import JournalLocked
from scheduler.journal.postgres import SCHEMA_VERSION, PostgresJournal
from scheduler.journal.schema import StoreError
from scheduler.journal.writer import Deposed


def lease_session(url: str) -> int:
    """The backend pid of the leader's lease session."""
    (pid,) = sql(url, "SELECT pid FROM leader")[0]
    assert sql(url, "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = %s", pid) == [(1,)]
    return pid


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
    # ...and each event's epoch: the leadership term that committed it.
    assert columns("events") == (*rows.EVENT_FIELDS, "duration", "extra", "epoch")
    assert sql(pg_url, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)]


def test_a_version_1_database_gains_moves_and_its_tasks_still_load(pg_url):
    journal_history.postgresql_at(pg_url, 1)
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
    assert sql(pg_url, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)]


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
        assert first.epoch == 1
        with pytest.raises(JournalLocked) as refused:
            PostgresJournal(pg_url)
        message = str(refused.value)
        assert "one scheduler per database" in message and "\n" not in message
        assert f"epoch 1: orderflow pid {__import__('os').getpid()}" in message
        # Pruning and reading need no lease.
        PostgresJournal(pg_url, claim=False).close()
    finally:
        first.close()
    again = PostgresJournal(pg_url)  # closing the first handed its lease back
    assert again.epoch == 2
    again.close()


def test_a_journal_whose_lease_was_taken_over_writes_nothing_more(pg_url, caplog):
    journal = PostgresJournal(pg_url)
    with app_over(fast_cluster(workers=1, journal=journal)) as app:
        client = app.test_client()
        assert client.post("/api/orders", json=ORDER).status_code == 201
        # Another server takes the lease (what a takeover writes: the epoch goes up).
        sql(pg_url, "UPDATE leader SET epoch = epoch + 1, holder = 'another server', "
            "pid = NULL, expires_at = now() + interval '1 hour'")
        before = count_orders(pg_url)
        with caplog.at_level(logging.INFO, logger="orderflow"):
            refused = client.post("/api/orders", json=ORDER)
            assert refused.status_code == 503
            assert "epoch 2 is led by another server" in refused.json["error"]["message"]
            wait_for(lambda: any("stepped down" in r.getMessage() and "epoch 1" in
                                 r.getMessage() for r in caplog.records), 10,
                     message="the step-down logged, naming the epoch")
        assert client.get("/healthz").status_code == 503
        assert count_orders(pg_url) == before  # the refused order was never committed
        assert not any("JOURNAL LOST" in r.getMessage() for r in caplog.records)


def test_a_journal_whose_lease_session_is_killed_writes_nothing_more(pg_url):
    journal = PostgresJournal(pg_url)
    cluster = Cluster(workers=1, journal=journal, handlers=NOOP, **FAST).start()
    try:
        cluster.submit(ORDER)
        sql(pg_url, "SELECT pg_terminate_backend(%s)", lease_session(pg_url))
        # The lease is bound to its session: it cannot be renewed from another.
        wait_for(lambda: _refused(cluster), 10, message="the journal refusing orders")
        before = count_orders(pg_url)
        assert _refused(cluster) and count_orders(pg_url) == before
        # Its holder's session is gone: another journal leads at once, at the next epoch.
        successor = PostgresJournal(pg_url)
        assert successor.epoch == 2
        successor.close()
    finally:
        cluster.stop()


def _refused(cluster: Cluster) -> bool:
    try:
        cluster.submit(ORDER)
    except StoreError:
        return True
    return False


@pytest.mark.slow
@pytest.mark.skipif(missing() is not None, reason=missing() or "")
def test_a_database_outage_answers_503_and_the_server_leads_again_when_it_is_back(caplog):
    server = PostgresServer(TEST_SERVER_SETTINGS).start()
    try:
        url = server.create_database()
        with ha_app(url) as app:
            client = app.test_client()
            leading(app)
            acked = client.post("/api/orders", json=ORDER)
            assert acked.status_code == 201
            server.shutdown()  # every session is cut (the lease's too); nothing answers
            wait_for(lambda: client.post("/api/orders", json=ORDER).status_code == 503, 15,
                     message="503 while the database is down")
            assert client.get("/healthz").status_code == 503
            server.start_again()
            # Its lease session was cut: it stepped down, and takes the lease again (a new
            # epoch) once the database answers, recovering what was committed.
            wait_for(lambda: client.get("/healthz").status_code == 200, 30,
                     message="healthz 200 once the database is back")
            assert role(app)["epoch"] == 2
            created = client.post("/api/orders", json=ORDER)
            assert created.status_code == 201
            cluster = services(app).cluster
            assert cluster.wait_until_idle(20)
            for oid in (acked.json["id"], created.json["id"]):
                wait_for(lambda oid=oid: cluster.journal.find_order(oid)["status"]
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
def test_serve_on_postgresql_a_second_server_stands_by_and_takes_over_with_the_orders(
    pg_url, monkeypatch, tmp_path
):
    import requests

    from scheduler.chaos.serve_process import ServeProcess

    monkeypatch.setenv("ORDERFLOW_DB", pg_url)  # instead of --db
    flags = ("--workers", "0", "--log-file", str(tmp_path / "of.log"), "--log-level", "warning")
    first = ServeProcess(*flags)
    second = None
    try:
        wait_for(lambda: requests.get(f"{first.url}/healthz", timeout=5).status_code == 200,
                 30, message="the first server leading")
        created = requests.post(f"{first.url}/api/orders", json=ORDER, timeout=10)
        assert created.status_code == 201
        second = ServeProcess(*flags)
        status, standby = wait_for(
            lambda: (r := requests.get(f"{second.url}/healthz", timeout=10)).json()["leader"]
            and (r.status_code, r.json()), 30, message="the standby naming the leader")
        assert status == 503
        assert standby["role"] == "standby" and standby["leader"] == first.url
        refused = requests.post(f"{second.url}/api/orders", json=ORDER, timeout=10)
        assert refused.status_code == 503 and first.url in refused.json()["error"]["message"]
        first.kill()  # SIGKILL: PostgreSQL ends its sessions, the lease's among them
        wait_for(lambda: requests.get(f"{second.url}/healthz", timeout=5).status_code == 200,
                 30, message="the second server leading")
        oid = created.json()["id"]
        order = requests.get(f"{second.url}/api/orders/{oid}", timeout=10).json()
        assert order["status"] == "pending"  # recovered, waiting for a worker
    finally:
        first.kill()
        if second is not None:
            second.stop()


def test_a_write_that_fails_once_the_term_is_over_is_a_step_down_not_an_outage(
        pg_url, monkeypatch):
    """A leader paused past its lease wakes to find its write transaction ended by the new
    leader: that is Deposed (its callers go to the leader, answered 503 `standby`), not an
    outage of the database (503 `journal_unavailable`, retried)."""
    journal = PostgresJournal(pg_url)
    paused = []  # set: the term runs out while the transaction is open

    @contextmanager
    def ended_by_the_taker(term, first):
        if paused:
            term.lose("its lease expired while it was paused")
        raise psycopg.OperationalError("terminating connection due to administrator command")
        yield  # pragma: no cover - a generator, as the real one

    monkeypatch.setattr(journal, "_write_transaction_checked", ended_by_the_taker)
    try:
        with pytest.raises(psycopg.OperationalError), journal._write_transaction():
            pass  # the term holds: an outage, retried by the writer
        paused.append(True)
        with pytest.raises(Deposed, match="paused"), journal._write_transaction():
            pass
    finally:
        monkeypatch.undo()
        journal.close()
