"""The chaos run's hostile worker (scheduler/chaos/hostile.py): a remote worker whose name,
tags, attempt errors and results hold a NUL and a lone surrogate. Planned once in every run,
and the checker finds any such text that reached the journal unescaped."""

from __future__ import annotations

import random

import pytest
from web import LIVE_CONFIG, ORDER, LiveServer, app_over, fast_cluster

from scheduler.chaos.hostile import HostileWorker
from scheduler.chaos.invariants import History, check_history, load_journal
from scheduler.chaos.schedule import HANG_BURST, HOSTILE_TEXT, RESTART, fault_plan
from scheduler.journal.sqlite import SQLiteJournal


@pytest.mark.parametrize("restart_every", [15, 0])
def test_one_hostile_worker_is_planned_after_the_hang_burst_and_before_the_first_restart(
        restart_every):
    for seed in range(20):
        plan = fault_plan(60, restart_every, 20, random.Random(seed), hang_burst=True,
                          hostile_text=True)
        (hostile,) = [p.at for p in plan if p.kind == HOSTILE_TEXT]
        (burst,) = [p.at for p in plan if p.kind == HANG_BURST]
        restarts = [p.at for p in plan if p.kind == RESTART] or [60]
        assert burst < hostile < restarts[0]
        # The other faults are where they were without it (drawn before it).
        without = fault_plan(60, restart_every, 20, random.Random(seed), hang_burst=True)
        assert [p for p in plan if p.kind != HOSTILE_TEXT] == without


def event(seq: int, **fields) -> dict:
    return {"seq": seq, "ts": float(seq), "type": "task_failed", "order_id": "o-1",
            "step": "payment", "worker_id": "w-1", "attempt": 1, "message": "m", **fields}


def test_the_checker_counts_escaped_text_and_finds_text_that_was_not():
    escaped = History([event(1, error="body\\x00"), event(2, error="\\ud800 x"),
                       event(3, error="caf\\u00e9")], {})
    report = check_history(escaped, [], max_retries=3)
    assert report["ok"] and report["escaped_texts"] == 2 and report["unstorable_texts"] == 0
    raw = History([event(1, error="body\x00"), event(2, message="\udfff")], {})
    report = check_history(raw, [], max_retries=3)
    assert not report["ok"] and report["unstorable_texts"] == 2
    assert report["examples"]["unstorable_text"][0][0] == 1


@pytest.mark.slow
def test_a_hostile_worker_is_recorded_escaped_and_the_server_goes_on(tmp_path):
    db = tmp_path / "hostile.db"
    cluster = fast_cluster(workers=0, journal=SQLiteJournal(db), heartbeat_timeout=2.0)
    with app_over(cluster, LIVE_CONFIG) as app, LiveServer(app) as server:
        order_ids = [cluster.submit(ORDER) for _ in range(3)]
        report = HostileWorker(server.url).run(attempts=4, timeout=20)
        assert report.problems == [] and report.worker_id is not None
        assert report.failed == 2 and report.succeeded == 2
        (shown,) = [w for w in cluster.workers() if w["id"] == report.worker_id]
        assert shown["name"] == "chaos-hostile\\x00\\ud83d" and shown["host"] == "host\\udfff"
        assert shown["tags"] == ["\\ud800lone", "nul\\x00tag"]
        cluster.add_worker()  # someone to finish the orders
        assert cluster.wait_until_idle(20)
        assert all(cluster.get_order(oid)["status"] == "completed" for oid in order_ids)
        cluster.journal.check()  # the journal took every commit
    history = load_journal(db)
    report = check_history(history, order_ids, max_retries=3)
    assert report["ok"], report
    assert report["escaped_texts"] >= 3  # the worker joining, two errors (and results)
    errors = [e["error"] for e in history.events if e["type"] == "task_failed"]
    assert errors == ["gateway answered 502: <html>502 Bad Gateway\\x00\\x00 \\ud800</html>"] * 2
    results = [t.result for t in history.tasks() if t.result and "raw" in t.result]
    assert results and all("\x00" not in r["raw"] for r in results)
