"""A leader whose journal cannot commit for longer than its lease stops renewing and steps
down, so a standby can try (election.py, writer.stalled_for). Before, a leader wedged on its
journal (a batch refused forever, a table it could not write) kept renewing its lease: every
submit and /healthz answered 503 and the standby never took over. The elector with a fake
clock, then two servers on one PostgreSQL whose leader's writes hang on a locked table."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from conftest import wait_for
from ha import ha_app, leading, role, sql
from test_election import SETTINGS, FakeLease, Server, run
from web import ORDER

from dashboard import services
from scheduler.chaos.invariants import check_history, load_journal
from scheduler.engine.core import SchedulerCore
from scheduler.journal.election import LEADER, STANDBY
from scheduler.journal.lease import LeaseSettings
from scheduler.journal.writer import GroupWriter

# ---------------------------------------------------------------- the elector


def test_a_leader_whose_journal_cannot_commit_for_longer_than_its_lease_steps_down():
    lease = FakeLease()
    a, b = Server(lease, "a"), Server(lease, "b")
    run(lease, [a, b], 1)
    term = a.changes[0]
    stuck_since = lease.now  # from here on, nothing a commits
    term.watch_commits(lambda now: max(0.0, now - stuck_since))
    run(lease, [a, b], SETTINGS.ttl - 0.1)
    assert a.elector.role == LEADER, "a commit slower than the lease is not yet a step-down"
    while b.elector.role != LEADER:
        run(lease, [a, b], 0.05)
    assert a.elector.role == STANDBY and term.lost
    assert a.elector.last_reason.startswith("its journal could not commit for 4.0 s")
    assert a.store.released == [1], "it handed the lease back instead of letting it expire"
    assert lease.epoch == 2 and lease.holder == b.store.holder
    # The standby took over at its next look after the step-down, not at the lease's expiry.
    assert b.changed_at[0] - (stuck_since + SETTINGS.ttl) <= SETTINGS.poll_every + 0.1


def test_a_leader_whose_journal_catches_up_within_its_lease_keeps_leading():
    lease = FakeLease()
    a, b = Server(lease, "a"), Server(lease, "b")
    run(lease, [a, b], 1)
    slow_from, slow_until = lease.now, lease.now + SETTINGS.ttl - 0.5
    a.changes[0].watch_commits(
        lambda now: now - slow_from if slow_from <= now < slow_until else 0.0)
    run(lease, [a, b], 3 * SETTINGS.ttl)
    assert a.elector.role == LEADER and b.elector.role == STANDBY and lease.epoch == 1


def test_a_journal_of_its_own_keeps_its_one_term_through_a_stall_and_writes_once_it_can():
    """A journal opened on its own (the Python API) leads one term and could never lead
    again: stepping down would lose it for good, so it keeps trying, as before."""
    lease = FakeLease()
    a = Server(lease, "a", stand_by=False)
    a.step()
    a.changes[0].watch_commits(lambda now: 100.0)
    run(lease, [a], 2 * SETTINGS.ttl)
    assert a.elector.role == LEADER and not a.changes[0].lost


# ---------------------------------------------------------------- the writer's clock


def test_the_writer_says_how_long_its_work_has_waited_for_a_commit_that_failed():
    failing = [True]
    during_first_attempt = []

    def write(batch) -> None:
        # A write in progress (slow, or hanging until a timeout) is not a stall yet.
        during_first_attempt.append(writer.stalled_for(time.monotonic() + 100))
        if failing[0]:
            raise OSError("the disk is not there")

    writer = GroupWriter("test", write)
    core, lock = SchedulerCore(), threading.Lock()
    writer._core, writer._core_lock = core, lock  # stepped by hand: no thread
    assert writer.stalled_for(time.monotonic()) == 0.0, "nothing waits"
    before = time.monotonic()
    with lock:
        writer.record(core.submit("o-1", ORDER, now=1.0))
    assert writer.write_once()  # fails, kept for the next attempt
    assert writer.write_once()  # fails again: still counted from the first attempt
    after = time.monotonic()
    assert during_first_attempt[0] == 0.0
    assert 100 - (after - before) <= writer.stalled_for(before + 100) <= 100
    failing[0] = False
    assert writer.write_once()
    assert writer.stalled_for(time.monotonic() + 100) == 0.0, "committed: nothing waits"


# ---------------------------------------------------------------- two servers, PostgreSQL

# A short lease, so the test takes seconds rather than tens of seconds.
LEASE = LeaseSettings(ttl=2.0, renew_every=0.25, poll_every=0.1, holdoff=2.0)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_leader_whose_writes_hang_on_a_locked_table_steps_down_and_the_standby_leads(
        pg_url, caplog):
    config = {"LEASE_SETTINGS": LEASE}
    with ha_app(pg_url, "http://a", config) as a:
        leading(a)
        with ha_app(pg_url, "http://b", config) as b:
            wait_for(lambda: role(b)["leader"] == "http://a", 10, message="b naming a")
            client_a = a.test_client()
            acked = []
            for i in range(5):
                created = client_a.post("/api/orders", json=ORDER,
                                        headers={"Idempotency-Key": f"before-{i}"})
                assert created.status_code == 201
                acked.append(created.json["id"])
            # Another session locks the events table against writes (reads still work):
            # every commit of the leader hangs on it until its lock timeout (10 s) fails
            # it, and again, while its lease session renews.
            locker = psycopg.connect(pg_url)
            locker.execute("LOCK TABLE events IN EXCLUSIVE MODE")
            answers = []
            waiting = threading.Thread(target=lambda: answers.append(client_a.post(
                "/api/orders", json=ORDER, headers={"Idempotency-Key": "during"})))
            try:
                waiting.start()
                # The leader steps down once its work waited longer than its lease for a
                # commit that failed; a write of it still hanging is cancelled, so the
                # standby can lock the lease row and take it.
                wait_for(lambda: role(b)["role"] in ("starting", "leader")
                         and role(b)["epoch"] > 1, 60, message="the standby to take the lease")
            finally:
                locker.close()  # the lock goes, and with it what held every writer
                waiting.join(30)
            wait_for(lambda: services(b).leadership.leading, 30, message="the standby to lead")
            assert not services(a).leadership.leading
            # The order that waited for the old leader's commit was never acknowledged.
            (answer,) = answers
            assert answer.status_code == 503
            assert answer.json["error"]["code"] in ("journal_unavailable", "standby")
            assert any("stepped down" in r.getMessage()
                       and "its journal could not commit for" in r.getMessage()
                       for r in caplog.records)
            # Re-posted with its key to the new leader, it is accepted once; everything
            # the old leader acknowledged is there and runs to its end.
            client_b = b.test_client()
            again = client_b.post("/api/orders", json=ORDER,
                                  headers={"Idempotency-Key": "during"})
            assert again.status_code == 201
            acked.append(again.json["id"])
            for i, order_id in enumerate(acked[:5]):
                repeat = client_b.post("/api/orders", json=ORDER,
                                       headers={"Idempotency-Key": f"before-{i}"})
                assert repeat.status_code == 200 and repeat.json["id"] == order_id
            cluster = services(b).cluster
            assert cluster.wait_until_idle(30)
            assert {cluster.get_order(oid)["status"] for oid in acked} == {"completed"}
            assert client_b.get("/healthz").status_code == 200
    report = check_history(load_journal(pg_url), acked, max_retries=3)
    assert report["ok"], report
    epochs = [row[0] for row in sql(pg_url, "SELECT DISTINCT epoch FROM events ORDER BY 1")]
    assert epochs[0] == 1 and epochs[-1] >= 2
