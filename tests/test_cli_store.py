"""The CLI around the journal: `orderflow prune`, and clear errors for unusable files."""

from __future__ import annotations

import logging
import sqlite3

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
