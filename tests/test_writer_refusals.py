"""A group commit the database refuses for something in it (a value it cannot hold) must not
wedge the writer (scheduler/journal/writer.py): before, it retried the same batch forever,
every submit and /healthz answered 503 and nothing was dispatched. Now one CRITICAL line
names what was refused, the rest of the batch is written (the offending text escaped, or a
row that still cannot be written left out), and the writer goes on. Rows are poisoned here
behind the boundary's back (which keeps such text out), as a bug would."""

from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import contextmanager

import psycopg
import pytest
from conftest import wait_for
from web import FAST, ORDER

import scheduler.runtime.cluster as cluster_module
from scheduler import App, Cluster, TaskError
from scheduler.chaos.invariants import load_journal
from scheduler.engine import views
from scheduler.engine.core import SchedulerCore
from scheduler.engine.model import Effects
from scheduler.journal import postgres, sqlite
from scheduler.journal.location import open_journal, parse_location
from scheduler.journal.schema import StoreError

CASES = [
    pytest.param("sqlite", "\ud800", id="sqlite-surrogate"),  # SQLite would keep a NUL
    pytest.param("postgresql", "\x00", id="postgresql-nul", marks=pytest.mark.slow),
    pytest.param("postgresql", "\udc80", id="postgresql-surrogate", marks=pytest.mark.slow),
]


def escaped(poison: str) -> str:
    return "\\x00" if poison == "\x00" else f"\\u{ord(poison):04x}"


@pytest.fixture
def where(request, tmp_path):
    """The database of a case: a file, or an emptied PostgreSQL database."""
    def locate(kind: str) -> str:
        if kind == "sqlite":
            return str(tmp_path / "refusals.db")
        return request.getfixturevalue("pg_url")
    return locate


@contextmanager
def stepped_journal(db: str):
    """A journal whose writer is stepped by hand (`write_once`), over a core of its own."""
    journal = open_journal(parse_location(db))
    core, lock = SchedulerCore(), threading.Lock()
    journal._writer._core, journal._writer._core_lock = core, lock
    try:
        yield journal, core, lock
    finally:
        journal.close()


def criticals(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]


@pytest.mark.parametrize(("kind", "poison"), CASES)
def test_a_poisoned_row_is_one_critical_line_and_every_other_row_is_committed(
        where, kind, poison, caplog):
    db = where(kind)
    with stepped_journal(db) as (journal, core, lock):
        with lock:
            fx = Effects()
            for i in range(3):
                fx.absorb(core.submit(f"o-{i}", ORDER, now=1.0))
            fx.absorb(core.operator_action(f"ops{poison}", "kill", f"killed w-{poison}",
                                           now=1.0, target="w-1"))
            poisoned_seq = views.last_seq(core)
            ticket = journal.record(fx)
        with caplog.at_level(logging.INFO, logger="orderflow.store"):
            assert journal._writer.write_once()
        assert journal.committed(ticket)
        (line,) = criticals(caplog)
        assert "refused a group commit" in line
        assert f"event {poisoned_seq} (operator_action)" in line
        # A clean batch after it commits as usual, and says nothing.
        with lock:
            ticket = journal.record(core.submit("o-later", ORDER, now=2.0))
        assert journal._writer.write_once() and journal.committed(ticket)
        assert len(criticals(caplog)) == 1
    history = load_journal(db)
    assert set(history.orders) == {"o-0", "o-1", "o-2", "o-later"}
    (action,) = [e for e in history.events if e["type"] == "operator_action"]
    assert action["who"] == f"ops{escaped(poison)}"
    assert action["message"] == f"ops{escaped(poison)}: killed w-{escaped(poison)}"
    assert [e["seq"] for e in history.events] == list(range(1, len(history.events) + 1))


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql",
                                                         marks=pytest.mark.slow)])
def test_a_row_the_database_refuses_for_another_reason_is_left_out_alone(where, kind, caplog):
    """Not text: a number too large for the column. Escaping cannot cure it, so the batch
    is written row by row and only that row is left out, named."""
    db = where(kind)
    with stepped_journal(db) as (journal, core, lock):
        with lock:
            fx = core.submit("o-1", ORDER, now=1.0)
            fx.absorb(core.operator_action("ops", "chaos", "set chaos", now=1.0))
            fx.events[-1]["attempt"] = 2**70  # a bug: no integer column holds this
            bad_seq = fx.events[-1]["seq"]
            fx.absorb(core.submit("o-2", ORDER, now=1.0))
            ticket = journal.record(fx)
        with caplog.at_level(logging.INFO, logger="orderflow.store"):
            assert journal._writer.write_once()
        assert journal.committed(ticket)
        (line,) = criticals(caplog)
        assert "row by row" in line and f"event {bad_seq} (operator_action)" in line
    history = load_journal(db)
    assert set(history.orders) == {"o-1", "o-2"}
    seqs = [e["seq"] for e in history.events]
    assert bad_seq not in seqs and len(seqs) == views.last_seq(core) - 1


@pytest.mark.parametrize(("kind", "poison"), CASES)
def test_a_step_error_past_the_door_is_one_critical_and_the_order_completes(
        where, kind, poison, caplog, monkeypatch):
    """The door that escapes attempt outcomes (check_outcome) is skipped, as a bug would:
    the task's row is refused once, rescued, and its later rows are escaped before they are
    written (no second refusal, no second line)."""
    db = where(kind)
    monkeypatch.setattr(cluster_module, "check_outcome", lambda ok, value, *limits: (ok, value))
    app = App("bypass")

    @app.step(retries=1, backoff=(0.001, 0.001))
    def payment(ctx):
        if ctx.attempt == 1:
            raise TaskError(f"gateway said {poison}")
        return {"ok": True}

    app.workflow("pay", ["payment"])
    cluster = Cluster(app=app, journal=open_journal(parse_location(db)), workers=1, **FAST)
    with caplog.at_level(logging.INFO, logger="orderflow.store"), cluster:
        order_id = cluster.submit({**ORDER, "workflow": "pay"})
        assert cluster.wait_until_idle(20)
        wait_for(lambda: cluster.journal.find_order(order_id)["status"] == "completed", 10)
        cluster.journal.check()
        assert cluster.submit({**ORDER, "workflow": "pay"})  # still accepting, durably
    # One line for this order's task (the second order's first attempt fails alike).
    (line,) = [line for line in criticals(caplog) if order_id in line]
    assert f"order {order_id} step payment" in line
    failed = [e for e in load_journal(db).events
              if e["type"] == "task_failed" and e["order_id"] == order_id]
    assert [e["error"] for e in failed] == [f"gateway said {escaped(poison)}"]


def test_what_counts_as_a_refusal_and_what_as_an_outage():
    assert sqlite.refused(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates"))
    assert sqlite.refused(OverflowError("Python int too large to convert to SQLite INTEGER"))
    assert sqlite.refused(sqlite3.IntegrityError("UNIQUE constraint failed"))
    assert not sqlite.refused(sqlite3.OperationalError("database is locked"))
    assert not sqlite.refused(sqlite3.OperationalError("database or disk is full"))
    assert not sqlite.refused(sqlite3.ProgrammingError("Cannot operate on a closed database."))
    assert postgres.refused(psycopg.DataError("PostgreSQL text fields cannot contain NUL"))
    assert postgres.refused(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates"))
    assert postgres.refused(psycopg.errors.NumericValueOutOfRange("integer out of range"))
    assert not postgres.refused(psycopg.OperationalError("server closed the connection"))
    assert not postgres.refused(psycopg.errors.LockNotAvailable("lock timeout"))
    assert not postgres.refused(psycopg.errors.QueryCanceled("statement timeout"))


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql",
                                                         marks=pytest.mark.slow)])
def test_a_commit_that_left_an_order_out_acknowledges_none_of_its_submissions(where, kind):
    """An order whose row the database refused is not durable: its submission must not be
    answered as accepted (it waits on the same commit as the others of its batch, which
    are answered 503 too: a client posts again with its key and finds its order)."""
    db = where(kind)
    with stepped_journal(db) as (journal, core, lock):
        with lock:
            fx = core.submit("o-1", ORDER, now=1.0)
            fx.absorb(core.submit("o-2", ORDER, now=1.0))
            views.orders(core)["o-2"].priority = 2**70  # a bug: no integer column holds this
            ticket = journal.record(fx)
        assert journal._writer.write_once()
        with pytest.raises(StoreError, match="refused an order of this commit"):
            journal.wait(ticket)
        with lock:
            later = journal.record(core.submit("o-3", ORDER, now=2.0))
        assert journal._writer.write_once()
        journal.wait(later)  # later commits are acknowledged as usual
    assert set(load_journal(db).orders) == {"o-1", "o-3"}
