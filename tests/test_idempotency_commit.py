"""An idempotency key is answered only once its order is committed (issue 19, finding 2).

A client that timed out posts again with the same key while the first request still waits
for the commit: it must not be answered 200 with an order the journal does not hold yet (a
crash or a failover would lose it, and the key would then make a new one). Here the commit
is held by a test hook on the journal's writer (SQLite and PostgreSQL), by a write lock on
the SQLite file under a real `orderflow serve` that is then SIGKILLed, and by a SIGSTOPped
PostgreSQL under two servers, one leading, the other standing by.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from conftest import wait_for
from ha import ha_app, leading, role
from web import ORDER, app_over, fast_cluster

from dashboard import services
from scheduler.chaos.freeze import DatabaseFreeze, postmaster_of
from scheduler.chaos.serve_process import ServeProcess
from scheduler.journal.location import open_journal, parse_location

KEY = {"Idempotency-Key": "checkout-7"}


class HeldCommits:
    """A hook on a journal's writer: while held, each group commit waits (as a commit to a
    stalled disk or database does); `committed` counts the commits that went through."""

    def __init__(self, journal):
        self.open = threading.Event()
        self.open.set()
        self.holding = threading.Event()  # a commit is waiting at the hook
        self.committed = 0
        self.waiting_for_key = threading.Event()  # a request waits for a commit, bounded
        writer = journal._writer
        write = writer._write

        def held_write(batch):
            if not self.open.is_set():
                self.holding.set()
                self.open.wait(60)
            write(batch)
            self.committed += 1

        writer._write = held_write
        wait = journal.wait

        def spied_wait(ticket, timeout=None):
            if timeout is not None:
                self.waiting_for_key.set()
            return wait(ticket, timeout)

        journal.wait = spied_wait

    def hold(self) -> None:
        self.open.clear()

    def release(self) -> None:
        self.open.set()


class Post(threading.Thread):
    """One POST on a thread of its own; remembers the answer and how many commits had gone
    through when it came."""

    def __init__(self, client, held: HeldCommits | None = None, headers=KEY):
        super().__init__(name="test-post")
        self.client, self.held, self.headers = client, held, headers
        self.response = None
        self.commits_when_answered: int | None = None
        self.start()

    def run(self) -> None:
        self.response = self.client.post("/api/orders", json=ORDER, headers=self.headers)
        if self.held is not None:
            self.commits_when_answered = self.held.committed


@contextmanager
def held_app(db, **settings):
    journal = open_journal(parse_location(str(db)))
    held = HeldCommits(journal)
    cluster = fast_cluster(workers=0, journal=journal, **settings)
    with app_over(cluster) as app:
        try:
            yield cluster, app.test_client(), held
        finally:
            held.release()  # before the cluster stops: it flushes the journal


def submitted_ids(cluster) -> list[str]:
    return [e["order_id"] for e in cluster.events() if e["type"] == "order_submitted"]


def test_a_key_posted_again_while_its_order_commits_is_answered_only_after_the_commit(
        journal_db):
    with held_app(journal_db, key_commit_wait=60) as (cluster, client, held):
        held.hold()
        first = Post(client, held)
        order_id = wait_for(lambda: submitted_ids(cluster), 10, message="the order accepted")[0]
        assert held.holding.wait(10), "its commit waits at the hook"
        # Accepted by the scheduler, not committed: not shown as if it existed.
        detail = client.get(f"/api/orders/{order_id}")
        assert detail.status_code == 503, detail.json
        assert detail.json["error"]["code"] == "commit_pending"
        assert order_id not in [o["id"] for o in client.get("/api/orders").json["orders"]]
        assert order_id not in [o["id"] for o in client.get(
            "/api/orders?customer=ada").json["orders"]]

        again = Post(client, held)  # the client timed out and posts again
        wait_for(lambda: held.waiting_for_key.is_set() or again.response is not None, 10,
                 message="the second request to wait for the commit")
        assert again.response is None, (
            f"answered {again.response.status_code} before the commit: {again.response.json}")
        held.release()
        first.join(30)
        again.join(30)
        assert first.response.status_code == 201 and first.response.json["id"] == order_id
        assert again.response.status_code == 200 and again.response.json["id"] == order_id
        assert again.commits_when_answered >= 1, "the key was answered before its commit"
        assert client.get(f"/api/orders/{order_id}").status_code == 200


def test_a_key_whose_commit_takes_longer_than_the_wait_is_refused_for_now_with_retry_after(
        journal_db):
    with held_app(journal_db, key_commit_wait=0.2) as (cluster, client, held):
        held.hold()
        first = Post(client, held)
        order_id = wait_for(lambda: submitted_ids(cluster), 10, message="the order accepted")[0]
        again = client.post("/api/orders", json=ORDER, headers=KEY)
        assert again.status_code == 503, again.json
        assert again.headers["Retry-After"] == "1"
        error = again.json["error"]
        assert error["code"] == "commit_pending"
        assert order_id in error["message"] and "still being committed" in error["message"]
        assert held.committed == 0
        # Nothing changed: the one order, still waiting for its commit.
        assert submitted_ids(cluster) == [order_id]
        held.release()
        first.join(30)
        assert first.response.status_code == 201
        replay = client.post("/api/orders", json=ORDER, headers=KEY)
        assert replay.status_code == 200 and replay.json["id"] == order_id


def test_a_cluster_asked_for_a_key_in_commit_waits_for_it_or_says_so(journal_db):
    """The Python API keeps the same promise: `find_by_idempotency_key` never names an
    order that is not committed."""
    from scheduler.journal.base import CommitPending

    with held_app(journal_db, key_commit_wait=0.1) as (cluster, _, held):
        held.hold()
        submitting = threading.Thread(
            target=lambda: cluster.submit(ORDER, idempotency_key="k"), name="test-submit")
        submitting.start()
        wait_for(lambda: submitted_ids(cluster), 10, message="the order accepted")
        with pytest.raises(CommitPending, match="still being committed"):
            cluster.find_by_idempotency_key("k")
        held.release()
        submitting.join(30)
        assert cluster.find_by_idempotency_key("k") == submitted_ids(cluster)[0]


def test_orders_are_shown_once_committed_and_the_bookkeeping_of_commits_does_not_grow(
        journal_db):
    with held_app(journal_db) as (cluster, client, held):
        ids = [client.post("/api/orders", json=ORDER).json["id"] for _ in range(30)]
        ids += cluster.submit_many([ORDER] * 500)
        listed = {o["id"] for o in client.get("/api/orders?limit=500").json["orders"]}
        assert set(ids[-500:]) <= listed
        client.post("/api/orders", json=ORDER)
        # Only what was accepted since the last commit is still tracked.
        assert len(cluster._unconfirmed) <= 1 and len(cluster._unconfirmed_tickets) <= 1


# ---------------------------------------------------------------- real crashes


def serve(db: Path) -> ServeProcess:
    """A persisted `orderflow serve` on the SQLite file `db`."""
    return ServeProcess("--db", str(db), "--log-file", str(db.parent / "orderflow.log"),
                        "--workers", "1", "--heartbeat-interval", "0.05",
                        "--heartbeat-timeout", "0.5", "--failure-rate", "0",
                        "--latency-ms", "1,2", "--log-level", "warning")


def post(server: ServeProcess, headers: dict) -> requests.Response:
    return requests.post(f"{server.url}/api/orders", json=ORDER, headers=headers, timeout=60)


def orders_total(server: ServeProcess) -> int:
    return requests.get(f"{server.url}/api/stats", timeout=10).json()["orders_total"]


class RemotePost(threading.Thread):
    """One POST to a server process, on a thread of its own."""

    def __init__(self, server: ServeProcess, headers: dict):
        super().__init__(name="test-remote-post")
        self.server, self.headers = server, headers
        self.response: requests.Response | None = None
        self.start()

    def run(self) -> None:
        try:
            self.response = post(self.server, self.headers)
        except requests.RequestException:
            pass  # the server was SIGKILLed under it: no answer


@contextmanager
def write_lock(db: Path):
    """Hold SQLite's write lock on the file: the server's commits wait (busy timeout)."""
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
    finally:
        conn.close()  # rolls back: the lock is gone


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sqlite_a_key_answered_survives_a_sigkill_and_one_never_committed_is_free_again(
        tmp_path):
    db = tmp_path / "of.db"
    server = serve(db)
    answered: dict[str, set[str]] = {}

    def note(key: str, response: requests.Response) -> None:
        if response.status_code in (200, 201):
            answered.setdefault(key, set()).add(response.json()["id"])
    try:
        # 1. A commit that never happens: the file is locked, the first request waits,
        # the key is posted again, then the server is SIGKILLed.
        lost = {"Idempotency-Key": "never-committed"}
        before = orders_total(server)
        with write_lock(db):
            first = RemotePost(server, lost)
            wait_for(lambda: orders_total(server) > before, 20, message="the order accepted")
            again = post(server, lost)
            note("never-committed", again)
            assert again.status_code == 503, f"answered {again.status_code} before the commit"
            assert again.json()["error"]["code"] == "commit_pending"
            assert again.headers["Retry-After"] == "1"
            server.kill()
        first.join(30)
        assert first.response is None or first.response.status_code == 503
        server = server.restarted()
        # Nothing was answered for the key, and nothing of it is left: the key is free.
        fresh = post(server, lost)
        note("never-committed", fresh)
        assert fresh.status_code == 201
        replay = post(server, lost)
        note("never-committed", replay)
        assert replay.status_code == 200 and replay.json()["id"] == fresh.json()["id"]

        # 2. A commit that happens while the key's second request waits for it: that one
        # is answered with the order once it is durable, and a SIGKILL right after loses
        # nothing.
        kept = {"Idempotency-Key": "committed-late"}
        before = orders_total(server)
        with write_lock(db):
            first = RemotePost(server, kept)
            wait_for(lambda: orders_total(server) > before, 20, message="the order accepted")
            again = RemotePost(server, kept)
        first.join(60)
        again.join(60)
        for request in (first, again):
            if request.response is not None:
                note("committed-late", request.response)
        # (Either may have been refused for now, had the lock outlasted a wait: ask again.)
        settled = wait_for(lambda: (r := post(server, kept)).status_code == 200 and r, 30,
                           message="the key answering once committed")
        note("committed-late", settled)
        server.kill()
        server = server.restarted()
        for key, ids in answered.items():
            assert len(ids) == 1, f"key {key} was answered with two orders: {ids}"
            (order_id,) = ids
            found = requests.get(f"{server.url}/api/orders/{order_id}", timeout=10)
            assert found.status_code == 200, f"{key}: order {order_id} was answered and lost"
            replay = post(server, {"Idempotency-Key": key})
            assert replay.status_code == 200 and replay.json()["id"] == order_id
    finally:
        server.kill()


# ---------------------------------------------------------------- a frozen PostgreSQL


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_postgresql_frozen_under_a_commit_answers_no_key_and_the_next_leader_keeps_every_answer(
        postgres, pg_url):
    postmaster = postmaster_of(pg_url)
    assert postmaster == postgres.pid and os.path.exists(f"/proc/{postmaster}")
    with ha_app(pg_url, "http://a") as a:
        leading(a)
        with ha_app(pg_url, "http://b") as b:
            wait_for(lambda: role(b)["leader"] == "http://a", 10, message="b naming a")
            clients = {"http://a": a.test_client(), "http://b": b.test_client()}
            warm = clients["http://a"].post("/api/orders", json=ORDER,
                                            headers={"Idempotency-Key": "warm"})
            assert warm.status_code == 201
            answers = {"warm": {warm.json["id"]}}
            cluster = services(a).cluster
            held = HeldCommits(cluster.journal)
            held.hold()
            first = Post(clients["http://a"], held)
            wait_for(lambda: len(submitted_ids(cluster)) == 2, 10,
                     message="the keyed order accepted")
            freeze = DatabaseFreeze(postmaster)
            freeze.freeze()
            try:
                # The database answers nothing: no commit can happen now. The client that
                # timed out posts again; the leader's term runs out (it cannot renew: its
                # elector's renewal waits for the database like everything else, and its
                # watchdog steps it down by its own clock meanwhile).
                again = Post(clients["http://a"], held)
                term = cluster.journal.term
                wait_for(lambda: not term.holds(time.monotonic()), 15,
                         message="the frozen leader's term to run out")
                for request in (first, again):
                    answer = request.response
                    assert answer is None or answer.status_code >= 500, (
                        f"answered {answer.status_code} while PostgreSQL was frozen, before "
                        f"any commit: {answer.json}")
            finally:
                freeze.thaw()
            try:
                # The commit stays held until the term is lost (by the watchdog, during the
                # freeze): the renewal's answer, sent before the term ran out and answered
                # after it, must not revive the term (it did: the leader then led epoch 1
                # on, and nobody a new epoch).
                wait_for(lambda: term.lost, 30, message="the leader to step down")
            finally:
                held.release()
            first.join(30)
            again.join(30)
            for request in (first, again):
                if request.response.status_code in (200, 201):  # after the commit, if so
                    answers.setdefault(KEY["Idempotency-Key"], set()).add(
                        request.response.json["id"])
            # One of the two leads the next epoch (the term ran out while it was frozen).
            def next_leader():
                # One view per server: between two reads a server may lose its term (its
                # role then names no epoch).
                for url, app in (("http://a", a), ("http://b", b)):
                    view = role(app)
                    if (services(app).leadership.leading and view["role"] == "leader"
                            and (view["epoch"] or 0) > 1):
                        return url
                return None
            new = wait_for(next_leader, 30, message="a server leading after the freeze")
            client = clients[new]
            fresh = client.post("/api/orders", json=ORDER, headers=KEY)
            assert fresh.status_code in (200, 201), fresh.json
            answers.setdefault(KEY["Idempotency-Key"], set()).add(fresh.json["id"])
            # Every answer holds on the next leader: the order exists, its key names it.
            for key, ids in answers.items():
                assert len(ids) == 1, f"key {key} was answered with two orders: {ids}"
                (order_id,) = ids
                assert client.get(f"/api/orders/{order_id}").status_code == 200
                replay = client.post("/api/orders", json=ORDER,
                                     headers={"Idempotency-Key": key})
                assert replay.status_code == 200 and replay.json["id"] == order_id
