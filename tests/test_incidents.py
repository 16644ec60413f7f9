"""Incidents as records of their own (issue 24, item 1): opened by a death, a drain, a restart
or a new leader, counting what they caused, bounded, journaled with the events that changed
them, and carried whole by every dashboard snapshot however many events followed them."""

from __future__ import annotations

from conftest import wait_for
from web import ORDER, fast_cluster

from dashboard.stream.push import StreamSettings, build_snapshot
from scheduler import Cluster, TaskContext
from scheduler.journal.location import open_journal, parse_location
from scheduler.runtime.incidents import MAX_CAUSED, IncidentLog

FAST = {"heartbeat_interval": 0.05, "heartbeat_timeout": 0.5}


def event(seq: int, kind: str, **fields) -> dict:
    return {"seq": seq, "ts": 1000.0 + seq, "type": kind, "order_id": None, "step": None,
            "worker_id": None, "attempt": 0, "message": f"{kind} #{seq}", **fields}


def moved(seq: int, cause: int, order: str = "o-1") -> dict:
    return event(seq, "task_reassigned", order_id=order, step="payment", worker_id=None,
                 from_worker="w-3", reason="worker dead", cause=cause)


# ---------------------------------------------------------------- the log, pure

def test_a_death_is_one_incident_that_counts_every_move_it_caused_and_keeps_the_first():
    log = IncidentLog()
    changed = log.observe([event(10, "worker_dead", worker_id="w-3"),
                           *(moved(11 + i, cause=10, order=f"o-{i}") for i in range(80)),
                           moved(200, cause=99)])  # another cause: not this incident's
    assert changed
    [death] = log.views()
    assert (death["id"], death["kind"], death["worker"], death["pinned"]) == (
        10, "worker_dead", "w-3", True)
    assert death["title"] == "w-3 died: 80 tasks moved"
    assert death["counts"] == {"moved": 80} and death["caused_total"] == 80
    assert len(death["caused"]) == MAX_CAUSED
    assert death["caused"][0] == {"seq": 11, "ts": 1011.0, "type": "task_reassigned",
                                  "order_id": "o-0", "step": "payment", "from_worker": "w-3",
                                  "reason": "worker dead", "attempt": 0,
                                  "message": "task_reassigned #11"}
    assert not log.observe([event(300, "task_succeeded", order_id="o-1")])


def test_a_restart_counts_its_recovered_steps_and_under_a_leadership_term_is_a_failover():
    for epoch, kind, title in ((0, "server_restarted", "server restarted"),
                               (7, "failover", "leadership taken over (epoch 7)")):
        log = IncidentLog(epoch=epoch)
        log.observe([event(5, "server_restarted", orders=3, steps=4, unconfirmed=0),
                     *(event(6 + i, "task_recovered", order_id=f"o-{i}", cause=5)
                       for i in range(4))])
        [restart] = log.views()
        assert restart["kind"] == kind and restart["epoch"] == epoch and restart["pinned"]
        assert restart["title"] == f"{title}: 3 orders recovered, 4 steps to run again"
        assert restart["counts"] == {"recovered": 4}


def test_a_drain_is_an_incident_but_not_pinned():
    log = IncidentLog()
    log.observe([event(1, "worker_draining", worker_id="w-2", moving=1), moved(2, cause=1)])
    [drain] = log.views()
    assert (drain["kind"], drain["pinned"], drain["title"]) == (
        "worker_drained", False, "w-2 drained: 1 queued task moved")


def test_the_log_keeps_the_latest_incidents_and_tells_the_journal_which_to_forget():
    log = IncidentLog(limit=3)
    log.observe([event(i, "worker_dead", worker_id=f"w-{i}") for i in range(1, 6)])
    assert [v["id"] for v in log.views()] == [5, 4, 3]  # newest first
    unsaved, keep_from = log.take_unsaved()
    assert [v["id"] for v in unsaved] == [3, 4, 5] and keep_from == 3
    assert log.take_unsaved() == ([], None)
    log.observe([moved(6, cause=4)])
    unsaved, keep_from = log.take_unsaved()
    assert [(v["id"], v["counts"]) for v in unsaved] == [(4, {"moved": 1})] and keep_from == 3


def test_changed_since_hands_out_only_what_changed_after_a_version():
    log = IncidentLog()
    log.observe([event(1, "worker_dead", worker_id="w-1"), event(2, "worker_dead",
                                                                  worker_id="w-2")])
    version, changed = log.changed_since(0)
    assert [v["id"] for v in changed] == [2, 1]
    assert log.changed_since(version) == (version, [])
    log.observe([moved(3, cause=1)])
    later, changed = log.changed_since(version)
    assert later > version and [v["id"] for v in changed] == [1]


def test_incidents_loaded_from_a_journal_go_on_counting():
    first = IncidentLog()
    first.observe([event(1, "worker_dead", worker_id="w-1"), moved(2, cause=1)])
    again = IncidentLog()
    again.load(first.take_unsaved()[0])
    again.observe([moved(3, cause=1)])
    [death] = again.views()
    assert death["counts"] == {"moved": 2} and death["title"] == "w-1 died: 2 tasks moved"
    assert [c["seq"] for c in death["caused"]] == [2, 3]


# ---------------------------------------------------------------- in a cluster and a journal

def noop(ctx: TaskContext) -> dict:
    return {}


NOOP = {s: noop for s in ("payment", "packing", "shipping")}


def test_incidents_are_journaled_with_their_events_and_come_back_after_a_restart(journal_db):
    cluster = Cluster(workers=2, journal=open_journal(parse_location(journal_db)),
                      handlers=NOOP, **FAST).start()
    try:
        victim = cluster.workers()[0]["id"]
        cluster.kill_worker(victim)
        wait_for(lambda: any(i["kind"] == "worker_dead" for i in cluster.incidents()), 10,
                 message="the death declared")
        death = next(i for i in cluster.incidents() if i["kind"] == "worker_dead")
        cluster.submit(ORDER)
        assert cluster.wait_until_idle(10)
    finally:
        cluster.stop()
    again = Cluster(workers=0, journal=open_journal(parse_location(journal_db)),
                    handlers=NOOP, **FAST)
    again.start()
    try:
        kept = {i["id"]: i for i in again.incidents()}
        assert kept[death["id"]] == death  # as it was, title and all
        # On PostgreSQL every leader starts a term of the lease: its start takes over.
        kind = "failover" if journal_db.startswith("postgresql") else "server_restarted"
        [restart] = [i for i in kept.values() if i["kind"] == kind]
        assert restart["id"] > death["id"] and restart["pinned"]
    finally:
        again.stop()


def test_the_journal_keeps_only_the_incidents_the_log_keeps(tmp_path):
    db = str(tmp_path / "of.db")
    journal = open_journal(parse_location(db))
    # A small log, so that a few deaths overflow it.
    cluster = Cluster(workers=0, journal=journal, handlers=NOOP, incidents_kept=2, **FAST)
    cluster.start()
    try:
        for _ in range(4):
            cluster.kill_worker(cluster.add_worker())
        wait_for(lambda: len([i for i in cluster.incidents() if i["kind"] == "worker_dead"])
                 == 2 and cluster.stats()["workers"].get("dead", 0) == 4, 10,
                 message="four deaths")
        ids = [i["id"] for i in cluster.incidents()]
    finally:
        cluster.stop()
    reopened = open_journal(parse_location(db))
    try:
        assert [r["id"] for r in reopened.recover().incidents] == sorted(ids)
    finally:
        reopened.close()


def test_a_restart_mid_burst_is_in_every_snapshot_after_more_recoveries_than_it_carries(
        tmp_path):
    db = str(tmp_path / "of.db")
    # No workers: 1,000 orders wait unstarted, so the restart queues each again, one
    # task_recovered event each: twice the events a snapshot carries.
    cluster = Cluster(workers=0, journal=open_journal(parse_location(db)), handlers=NOOP,
                      **FAST).start()
    cluster.submit_many([ORDER] * 1000)
    cluster.stop()
    again = Cluster(workers=0, journal=open_journal(parse_location(db)), handlers=NOOP,
                    **FAST).start()
    try:
        snapshot = build_snapshot(again, StreamSettings())
        assert "server_restarted" not in {e["type"] for e in snapshot["events"]}
        [restart] = [i for i in snapshot["incidents"] if i["kind"] == "server_restarted"]
        # Three steps each to run; the first of each queued again (the others wait on it).
        assert restart["title"] == ("server restarted: 1,000 orders recovered, 3,000 steps "
                                    "to run again")
        assert restart["counts"] == {"recovered": 1000} and restart["pinned"]
    finally:
        again.stop()


def test_a_cluster_without_a_journal_keeps_its_incidents_in_memory():
    cluster = fast_cluster(workers=2).start()
    try:
        victim = cluster.workers()[0]["id"]
        cluster.kill_worker(victim)
        wait_for(lambda: [i["worker"] for i in cluster.incidents()] == [victim], 10,
                 message="the death as an incident")
    finally:
        cluster.stop()
