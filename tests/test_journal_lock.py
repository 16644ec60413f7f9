"""One scheduler per journal: the SQLite file's lock, `--db` values that are not journals, and
`orderflow prune` beside a running server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from conftest import wait_for

from scheduler import Cluster
from scheduler.chaos.serve_process import ServeProcess, orderflow_command
from scheduler.cli import main
from scheduler.journal.location import BadLocation, parse_location, redact
from scheduler.journal.lock import FileLock, JournalLocked
from scheduler.journal.sqlite import SQLiteJournal

ORDER = {"customer": "ada", "items": [{"sku": "A1", "qty": 1, "price": 3.0}]}
NOOP = {s: (lambda ctx: None) for s in ("payment", "packing", "shipping")}


def test_a_second_journal_on_the_same_file_is_refused_naming_the_holders_pid(tmp_path):
    db = tmp_path / "of.db"
    first = SQLiteJournal(db)
    try:
        with pytest.raises(JournalLocked) as refused:
            SQLiteJournal(db)
        message = str(refused.value)
        assert str(db) in message and f"pid {os.getpid()}" in message
        assert "\n" not in message
    finally:
        first.close()
    SQLiteJournal(db).close()  # closing the first gave the lock up


def test_a_refused_journal_leaves_the_holder_working(tmp_path):
    db = tmp_path / "of.db"
    cluster = Cluster(workers=1, journal=SQLiteJournal(db), handlers=NOOP).start()
    try:
        with pytest.raises(JournalLocked):
            SQLiteJournal(db)
        oid = cluster.submit(ORDER)
        assert cluster.wait_until_idle(10)
        assert cluster.get_order(oid)["status"] == "completed"
    finally:
        cluster.stop()


def test_a_lock_passed_in_is_checked_to_cover_the_file_and_kept_at_close(tmp_path):
    db = tmp_path / "of.db"
    lock = FileLock.acquire(db)
    try:
        SQLiteJournal(db, lock=lock).close()
        with pytest.raises(JournalLocked):  # still ours: the journal did not release it
            FileLock.acquire(db)
        with pytest.raises(Exception, match="does not cover"):
            SQLiteJournal(tmp_path / "other.db", lock=lock)
    finally:
        lock.release()
    FileLock.acquire(db).release()


HOLDER = """
import sys
from scheduler.journal.sqlite import SQLiteJournal
journal = SQLiteJournal(sys.argv[1])
print("holding", flush=True)
sys.stdin.read()  # until killed
"""


@pytest.mark.slow  # the lock's holder is a process of its own
def test_the_lock_of_a_process_killed_with_sigkill_is_free_at_once(tmp_path):
    db = tmp_path / "of.db"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(JournalLocked, match=f"pid {holder.pid}"):
            SQLiteJournal(db)
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        SQLiteJournal(db).close()  # no stale lock: the kernel released it with the process
        assert (tmp_path / "of.db.lock").exists()  # the file stays; only the lock went
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
        holder.stdin.close()
        holder.stdout.close()


@pytest.mark.slow
def test_a_second_server_on_one_database_refuses_with_the_file_and_pid_until_the_first_dies(
    tmp_path,
):
    db = tmp_path / "shop.db"
    flags = ("--db", str(db), "--workers", "1", "--log-level", "warning")
    first = ServeProcess(*flags)
    try:
        # Refused at once: a second server waiting for the lock would run into the timeout.
        second = subprocess.run(
            [*orderflow_command(), "serve", "--port", "0", *flags], capture_output=True,
            text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert second.returncode == 2
        err = second.stderr.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert str(db) in err and f"pid {first.proc.pid}" in err
        first.kill()  # SIGKILL of the server's whole process group: no shutdown code runs
        third = ServeProcess(*flags)
        third.stop()
    finally:
        first.kill()


@pytest.mark.parametrize("command", ["serve", "prune"])
def test_a_db_url_of_an_unknown_scheme_is_an_error_naming_the_supported_ones(
    tmp_path, capsys, monkeypatch, command
):
    monkeypatch.chdir(tmp_path)
    argv = [command, "--db", "mysql://shop:secret@db.example/orders"]
    argv += ["--older-than", "7d"] if command == "prune" else ["--port", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "mysql://" in err and "postgresql://" in err and "file path" in err
    assert "secret" not in err
    assert list(tmp_path.iterdir()) == []  # no folder named "mysql:" and no database in it


@pytest.mark.parametrize(
    "text,kind",
    [("logs/of.db", "sqlite"), ("/abs/of.db", "sqlite"), ("C:of.db", "sqlite"),
     ("postgresql://u@h:5432/db", "postgresql"), ("postgres://h/db", "postgresql"),
     ("PostgreSQL://h/db", "postgresql")],
)
def test_db_values_are_files_or_postgresql_urls(text, kind):
    assert parse_location(text).kind == kind


@pytest.mark.parametrize("text", ["", "  ", "sqlite:///x.db", "http://h/x", "mysql://h/db"])
def test_other_db_values_are_refused(text):
    with pytest.raises(BadLocation):
        parse_location(text)


def test_passwords_never_reach_a_message():
    assert redact("postgresql://shop:s3cret@h:5432/db") == "postgresql://shop:***@h:5432/db"
    assert redact("postgresql://h/db?user=u&password=s3cret&x=1") == (
        "postgresql://h/db?user=u&password=***&x=1")
    assert redact("postgresql://shop@h/db") == "postgresql://shop@h/db"


def test_prune_works_on_a_journal_a_running_server_holds(tmp_path, capsys):
    db = tmp_path / "of.db"
    cluster = Cluster(workers=1, journal=SQLiteJournal(db), handlers=NOOP).start()
    try:
        ids = [cluster.submit(ORDER) for _ in range(5)]
        assert cluster.wait_until_idle(10)
        wait_for(lambda: all(cluster.journal.find_order(o)["status"] == "completed"
                             for o in ids), 10, message="the orders written as completed")
        # The server is still running and holds the file.
        assert main(["prune", "--older-than", "0.001s", "--db", str(db)]) == 0
        assert "removed 5 finished orders" in capsys.readouterr().out
        # The server keeps working and writing after the prune.
        new = cluster.submit(ORDER)
        assert cluster.wait_until_idle(10)
        assert cluster.get_order(new)["status"] == "completed"
        assert cluster.journal.find_order(ids[0]) is None
        wait_for(lambda: cluster.journal.find_order(new)["status"] == "completed", 10,
                 message="the new order written as completed")
    finally:
        cluster.stop()


def test_prune_says_it_went_beside_the_server(tmp_path, capsys):
    db = tmp_path / "of.db"
    journal = SQLiteJournal(db)
    try:
        assert main(["prune", "--older-than", "1d", "--db", str(db)]) == 0
        out = capsys.readouterr().out
        assert "second connection" in out and f"pid {os.getpid()}" in out
    finally:
        journal.close()
    assert main(["prune", "--older-than", "1d", "--db", str(db)]) == 0
    assert "second connection" not in capsys.readouterr().out


def test_a_postgresql_url_without_psycopg_says_how_to_install_it(monkeypatch, capsys):
    import scheduler.journal

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the extra were not installed
    monkeypatch.delitem(sys.modules, "scheduler.journal.postgres", raising=False)
    monkeypatch.delattr(scheduler.journal, "postgres", raising=False)
    assert main(["prune", "--older-than", "7d", "--db", "postgresql://127.0.0.1/shop"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "pip install 'orderflow[postgres]'" in err
