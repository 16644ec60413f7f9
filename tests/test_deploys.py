"""Safe deploys through a real journal (issue 23): a server restarted with other code keeps
every order it recovered on the workflow definition it began with; orders the new app cannot
run wait, counted and explained, until a worker of their version joins and finishes them."""

from __future__ import annotations

import logging
import sqlite3
import textwrap

import pytest
from conftest import wait_for

from scheduler import App, Cluster, TaskContext
from scheduler.cli import main
from scheduler.journal.sqlite import SQLiteJournal
from scheduler.runtime.worker import ThreadWorker

ORDER = {"customer": "ada", "items": [{"sku": "A1", "qty": 1, "price": 5.0}]}
FAST = {"heartbeat_interval": 0.05, "heartbeat_timeout": 0.5}


def shop(version: str, steps: list[str], workflow: str) -> App:
    """A shop whose steps record which version ran them."""
    app = App("shop", version=version)
    for step in steps:
        def handler(ctx: TaskContext, step=step) -> dict:
            return {"ran": f"{step}@{version}"}
        app.add_step(step, handler)
    app.workflow(workflow, steps)
    return app


SHOP_V1 = shop("v1", ["payment", "packing", "shipping"], "checkout")
SHOP_V2 = shop("v2", ["fraud", "payment", "packing", "shipping"], "checkout2")


def cluster_at(db, app: App, workers: int) -> Cluster:
    return Cluster(workers=workers, app=app, journal=SQLiteJournal(db), **FAST).start()


def test_orders_of_the_old_app_survive_a_deploy_and_finish_once_an_old_worker_joins(
        tmp_path, caplog):
    db = tmp_path / "v.db"
    v1 = cluster_at(db, SHOP_V1, workers=0)  # nobody runs them before the deploy
    try:
        ids = [v1.submit(ORDER, workflow="checkout") for _ in range(6)]
    finally:
        v1.stop()
    caplog.set_level(logging.WARNING)
    v2 = cluster_at(db, SHOP_V2, workers=1)
    try:
        stats = v2.stats()
        assert stats["orders_total"] == 6 and stats["stranded"] == {"checkout@v1": 6}
        order = v2.get_order(ids[0])
        assert order["version"] == "v1" and list(order["tasks"]) == [
            "payment", "packing", "shipping"]
        assert order["tasks"]["payment"]["waiting_for"] == (
            "needs workflow checkout version v1: no live worker offers it")
        pinned = [i for i in v2.incidents() if i["kind"] == "definitions_missing"]
        assert len(pinned) == 1 and pinned[0]["pinned"]
        assert "6 orders need workflow checkout version v1" in pinned[0]["message"]
        assert any("6 orders need workflow checkout version v1" in r.getMessage()
                   for r in caplog.records if r.levelno == logging.WARNING)
        # New orders run on the new code meanwhile.
        fresh = v2.submit(ORDER, workflow="checkout2")
        wait_for(lambda: v2.get_order(fresh)["status"] == "completed")
        assert v2.get_order(ids[0])["tasks"]["payment"]["status"] == "ready"
        # A worker of the old version joins (as `orderflow worker --app shopv1:app` would).
        old = ThreadWorker("old-1", v2, SHOP_V1.handlers, FAST["heartbeat_interval"], 2,
                           definitions=SHOP_V1.definitions)
        v2.join_worker("old-1", old)
        wait_for(lambda: all(v2.get_order(i)["status"] == "completed" for i in ids),
                 message="the old orders completed")
        done = v2.get_order(ids[0])["tasks"]
        assert {s: t["result"]["ran"] for s, t in done.items()} == {
            "payment": "payment@v1", "packing": "packing@v1", "shipping": "shipping@v1"}
        assert all(t["worker"] == "old-1" for t in done.values())
        remaining = {d["key"]: d["unfinished"] for d in v2.stats()["definitions"]}
        assert remaining == {"checkout2@v2": 0}  # the old worker may go
    finally:
        v2.stop()
    # Each definition was journaled once, with the first order pinned to it.
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT key, workflow, version FROM definitions ORDER BY key")
        assert rows.fetchall() == [("checkout2@v2", "checkout2", "v2"),
                                   ("checkout@v1", "checkout", "v1")]
    finally:
        conn.close()


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
def test_serve_refuses_an_app_that_changed_a_workflow_under_a_kept_version(
        tmp_path, monkeypatch, capsys):
    db = tmp_path / "v.db"
    v1 = cluster_at(db, SHOP_V1, workers=0)
    try:
        v1.submit(ORDER, workflow="checkout")
    finally:
        v1.stop()
    (tmp_path / "shop_same_version.py").write_text(textwrap.dedent('''
        from scheduler import App

        app = App("shop", version="v1")  # a fraud check added, the version kept
        for name in ("fraud", "payment", "packing", "shipping"):
            app.add_step(name, lambda ctx: {})
        app.workflow("checkout", ["fraud", "payment", "packing", "shipping"])
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["serve", "--app", "shop_same_version:app", "--db", str(db), "--port", "0",
            "--log-file", str(tmp_path / "of.log")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "workflow checkout version v1 is defined twice with different steps" in err
    assert "needs a new version" in err
