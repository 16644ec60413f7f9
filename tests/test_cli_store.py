"""The CLI around the journal: `orderflow prune`, and clear errors for unusable files."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys

import pytest
from conftest import wait_for

from scheduler import Cluster
from scheduler.cli import main
from scheduler.journal.sqlite import SQLiteJournal

ORDER = {"customer": "ada", "items": [{"sku": "A1", "qty": 1, "price": 3.0}]}
NOOP = {s: (lambda ctx: None) for s in ("payment", "packing", "shipping")}


def test_prune_removes_finished_orders_older_than_the_age(tmp_path, capsys):
    db = tmp_path / "of.db"
    cluster = Cluster(workers=1, journal=SQLiteJournal(db), handlers=NOOP,
                      heartbeat_interval=0.05, heartbeat_timeout=0.5).start()
    try:
        for _ in range(5):
            cluster.submit(ORDER)
        assert cluster.wait_until_idle(10)
    finally:
        cluster.stop()
    assert main(["prune", "--older-than", "30d", "--db", str(db)]) == 0
    assert "removed 0 finished orders" in capsys.readouterr().out

    def orders_left():
        conn = sqlite3.connect(db)
        try:
            return conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
        finally:
            conn.close()

    assert orders_left() == 5
    # Everything finished at least a millisecond ago is older than 0.001 s.
    wait_for(lambda: main(["prune", "--older-than", "0.001s", "--db", str(db)]) == 0
             and orders_left() == 0, 5)
    assert "removed 5 finished orders" in capsys.readouterr().out


def test_prune_refuses_a_bad_age_with_the_accepted_forms(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["prune", "--older-than", "a week"])
    assert exit_info.value.code == 2
    assert "for example 7d" in capsys.readouterr().err


@pytest.fixture
def restore_log_handlers():
    """`serve` adds its log file handler to the orderflow logger; take it off again."""
    logger = logging.getLogger("orderflow")
    before = list(logger.handlers)
    yield
    for handler in logger.handlers[:]:
        if handler not in before:
            logger.removeHandler(handler)
            handler.close()


@pytest.mark.usefixtures("restore_log_handlers")
@pytest.mark.parametrize("command", ["prune", "serve"])
def test_a_corrupt_database_is_a_message_and_exit_status_2_not_a_traceback(tmp_path, capsys,
                                                                          command):
    db = tmp_path / "bad.db"
    db.write_bytes(b"not sqlite at all" * 200)
    argv = [command, "--db", str(db)]
    argv += ["--older-than", "7d"] if command == "prune" else [
        "--port", "0", "--log-file", str(tmp_path / "of.log")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "bad.db is not a usable orderflow database" in err and "Traceback" not in err


def a_journal_with_orders(db) -> None:
    from scheduler import Cluster

    cluster = Cluster(workers=0, journal=SQLiteJournal(db)).start()
    cluster.submit_many([{"customer": "ada", "items": [{"sku": "A", "qty": 1, "price": 1}]}]
                        * 300)
    cluster.stop()


@pytest.mark.usefixtures("restore_log_handlers")
def test_a_damaged_data_page_stops_serve_at_start_with_one_line(tmp_path, capsys):
    db = tmp_path / "of.db"
    a_journal_with_orders(db)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page, pages = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count"))
    conn.close()
    assert pages > 4
    with open(db, "r+b") as f:  # the header is fine; a page in the middle is garbage
        f.seek(page * (pages // 2))
        f.write(b"\xde\xad\xbe\xef" * (page // 4))
    argv = ["serve", "--db", str(db), "--port", "0", "--log-file", str(tmp_path / "of.log")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "of.db is damaged" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


@pytest.mark.slow  # the server as a process of its own (run as another user)
def test_a_read_only_database_refuses_to_start_instead_of_answering_503(tmp_path):
    db = tmp_path / "of.db"
    a_journal_with_orders(db)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{db}{suffix}"):
            os.chmod(f"{db}{suffix}", 0o444)
    command = [sys.executable, "-m", "scheduler", "serve", "--db", str(db), "--port", "0",
               "--log-file", str(tmp_path / "of.log")]
    if os.geteuid() == 0:
        # Root writes read-only files anyway: drop that power, as an ordinary user lacks it.
        command = ["setpriv", "--bounding-set=-dac_override", "--inh-caps=-dac_override", "--",
                   *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "of.db cannot be written" in done.stderr and "Traceback" not in done.stderr
    assert "listening" not in done.stdout


def test_a_newline_in_a_handler_error_cannot_forge_a_line_in_the_log_file(tmp_path):
    from scheduler import RetryPolicy, TaskError
    from scheduler.runtime.logfile import configure_logging

    forged = "declined\n2026-12-01 10:00:00,000 INFO    order o-fake completed in 0.1s"

    def lying(ctx):
        raise TaskError(forged)

    handler = configure_logging(tmp_path / "of.log")
    try:
        cluster = Cluster(workers=1, handlers={"payment": lying},
                          retry=RetryPolicy(max_retries=0)).start()
        cluster.submit({"customer": "eve\r\nINFO x", "items": [{"sku": "A", "qty": 1,
                                                               "price": 1}]})
        assert cluster.wait_until_idle(10)
        cluster.stop()
    finally:
        logging.getLogger("orderflow").removeHandler(handler)
        handler.close()
    lines = (tmp_path / "of.log").read_text().splitlines()
    assert lines and all(line[:4].isdigit() for line in lines)  # each line a real entry
    assert not any("o-fake" in line and "declined" not in line for line in lines)
    assert any("declined\\n2026-12-01" in line for line in lines)
