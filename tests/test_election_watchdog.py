"""A leader whose lease renewal hangs (a frozen PostgreSQL, a partition that drops packets)
steps down by its own clock, without waiting for the renewal's answer (election.py:
`Elector.watch`, the watchdog's one iteration; `Term.over`, its decision). Before, the
elector's thread sat in the renewal until the database answered, and the server went on
reporting itself the leader (its writes already refused) for the whole freeze, or until TCP
gave up. The decision with a fake clock and the in-memory lease of test_election; the
threads on a store whose renewal blocks; then two servers on a PostgreSQL frozen past the
lease; and the lease session's client-side timeouts."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import pytest
from conftest import wait_for
from ha import ha_app, leading, role
from test_election import SETTINGS, FakeLease, Server, Store, run
from web import ORDER

from dashboard import services
from scheduler.journal.election import LEADER, STANDBY, Elector
from scheduler.journal.lease import LeaseSettings, Term
from scheduler.journal.postgres_lease import lease_connection_options, lease_statement_timeout
from scheduler.journal.writer import Deposed

STORE_CALLS = ("look", "take", "renew", "release")


@pytest.fixture
def lease():
    return FakeLease()


def hang_renewal(server: Server, lease: FakeLease, seconds: float, tick: float = 0.05,
                 then=lambda: None) -> list[tuple[float, str]]:
    """The database stops answering under `server`'s next renewal for `seconds`: meanwhile
    the clock runs and the watchdog looks every tick, as its thread would (no other call
    on the store may come: it would hang too). Returns (time, role) at every tick; `then`
    runs when the database answers again, before the renewal runs."""
    seen: list[tuple[float, str]] = []

    def frozen() -> None:
        server.store.while_renewing = lambda: None
        touched: list[str] = []
        for name in STORE_CALLS:
            setattr(server.store, name, lambda *args, name=name: touched.append(name))
        try:
            end = lease.now + seconds
            while lease.now < end - 1e-9:
                lease.now = round(lease.now + tick, 6)
                assert server.elector.watch(lease.now) > 0, "the watchdog must never spin"
                seen.append((lease.now, server.elector.view()["role"]))
        finally:
            for name in STORE_CALLS:
                delattr(server.store, name)
        assert touched == [], "the watchdog used the lease store while a renewal hung in it"
        then()

    server.store.while_renewing = frozen
    return seen


def step_downs(caplog) -> list[str]:
    """The log's step-down lines."""
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("stepped down")]


# ---------------------------------------------------------------- the decision


def test_a_term_is_over_once_lost_or_once_no_renewal_was_answered_for_the_hold():
    term = Term(1, SETTINGS, sent_at=10.0)
    assert term.over(13.49) is None
    assert term.over(13.5) == "no renewal of epoch 1 for 3.5 s"
    assert term.renewed(sent_at=12.0, answered_at=12.1)
    assert term.over(15.49) is None and term.over(15.5) is not None
    term.lose("epoch 2 is led by b")
    assert term.over(12.5) == "epoch 2 is led by b"


def test_the_watchdog_sleeps_until_the_term_can_run_out_and_watches_nothing_standing_by(
        lease):
    a, b = Server(lease, "a"), Server(lease, "b")
    a.step()  # leads from 0: its term holds until 3.5
    b.step()
    assert a.elector.watch(0.0) == SETTINGS.hold
    assert a.elector.watch(1.0) == SETTINGS.hold - 1.0
    lease.now = SETTINGS.renew_every
    a.step()  # renewed at 0.5: it holds until 4.0
    assert a.elector.watch(1.0) == SETTINGS.renew_every + SETTINGS.hold - 1.0
    assert b.elector.watch(1.0) == SETTINGS.ttl and b.changes == []
    assert a.elector.role == LEADER and a.changes == [a.elector.term]


def test_a_leader_whose_renewal_hangs_on_a_frozen_database_steps_down_when_its_term_runs_out(
        lease, caplog):
    """The renewal due at 0.5 is sent as PostgreSQL freezes (SIGSTOP) and is answered at
    4.5, after the thaw. The watchdog steps the leader down at 3.5, when its term runs out
    by its own clock, while the renewal still hangs: its role says standby from then on.
    The late answer revives nothing, and the elector frees the lease it extended, so the
    standby leads at its next look; exactly one server leads after it."""
    a, b = Server(lease, "a"), Server(lease, "b")
    a.step()
    b.step()
    term = a.changes[0]
    lease.now = SETTINGS.renew_every
    roles = hang_renewal(a, lease, SETTINGS.hold + 0.5)  # answered at 4.5
    with caplog.at_level(logging.WARNING, logger="orderflow.leader"):
        a.step()
    stepped_down = a.changed_at[1]
    assert a.changes == [term, None], "one step-down, and nothing revived by the answer"
    assert SETTINGS.hold <= stepped_down < SETTINGS.hold + 0.05 + 1e-9
    assert [r for t, r in roles if t < SETTINGS.hold] == [LEADER] * 59
    assert {r for t, r in roles if t >= SETTINGS.hold} == {STANDBY}, (
        "standby from the term's end until the renewal's answer")
    assert term.lost == a.elector.last_reason == "no renewal of epoch 1 for 3.5 s"
    with pytest.raises(Deposed):
        term.check(stepped_down)  # the writer's fencing
    assert term.valid_until() == SETTINGS.hold, "the late answer did not extend the term"
    assert a.store.released == [1] and lease.view().free, "it freed what the answer kept"
    assert step_downs(caplog) == ["stepped down: orderflow pid 1 on a left epoch 1 (no "
                                  "renewal of epoch 1 for 3.5 s); standing by"]
    run(lease, [a, b], SETTINGS.poll_every + 0.05)
    assert b.elector.role == LEADER and lease.epoch == 2
    run(lease, [a, b], SETTINGS.holdoff + 2 * SETTINGS.ttl)
    assert a.elector.role == STANDBY and b.elector.role == LEADER and lease.epoch == 2
    assert a.changes == [term, None] and a.elector.view()["leader"] == "http://b:5000"


def test_a_leader_whose_renewal_ends_in_a_dropped_connection_resumes_as_a_candidate(lease):
    """A partition drops the renewal's packets: the watchdog steps the leader down at 3.5;
    at 6.5 the lease session's tcp_user_timeout ends the connection (a StoreError). Nothing
    more happens to the ended term, and once the database answers again and the holdoff is
    over, the server campaigns like any standby: alone, it leads the next epoch."""
    a = Server(lease, "a")
    a.step()
    term = a.changes[0]
    lease.now = SETTINGS.renew_every
    hang_renewal(a, lease, 6.0, then=lambda: setattr(a.store, "down", True))
    a.step()
    a.store.down = False
    assert a.changes == [term, None] and a.changed_at[1] == pytest.approx(SETTINGS.hold)
    assert term.lost == "no renewal of epoch 1 for 3.5 s"
    run(lease, [a], SETTINGS.hold + SETTINGS.holdoff - lease.now - 0.1)
    assert a.elector.role == STANDBY, "no campaign during the holdoff"
    run(lease, [a], SETTINGS.poll_every + 0.15)
    assert a.elector.role == LEADER and lease.epoch == 2 and a.changes[-1].epoch == 2
    assert not a.changes[-1].lost and term.valid_until() == SETTINGS.hold


def test_a_term_lost_by_a_write_while_the_renewal_hangs_ends_at_the_watchdogs_next_look(
        lease):
    a = Server(lease, "a")
    a.step()
    term = a.changes[0]
    term.lose("epoch 2 is led by b")  # a journal write found the epoch moved
    assert a.elector.watch(1.0) > 0
    assert a.elector.role == STANDBY and a.changes == [term, None]
    assert a.elector.last_reason == "epoch 2 is led by b"
    assert a.store.released == [], "the watchdog leaves the store to the elector's thread"
    lease.now = 1.0
    a.step()
    assert a.store.released == [1] and a.changes == [term, None]


def test_the_elector_and_the_watchdog_finding_the_term_over_together_step_down_once(
        lease, caplog):
    a = Server(lease, "a")
    a.step()
    lease.now = SETTINGS.hold  # the elector's thread was paused (SIGSTOP) until now
    with caplog.at_level(logging.WARNING, logger="orderflow.leader"):
        a.elector.watch(lease.now)
        a.step()
        a.elector.watch(lease.now)
    assert a.changes == [a.changes[0], None] and a.store.released == [1]
    assert len(step_downs(caplog)) == 1


# ---------------------------------------------------------------- the threads


class BlockingStore(Store):
    """A lease store whose renewals block while `frozen` is set, as on a frozen database."""

    def __init__(self, lease: FakeLease):
        super().__init__(lease, "orderflow pid 1 on a", "http://a:5000")
        self.frozen = threading.Event()
        self.thawed = threading.Event()
        self.hung_on: int | None = None  # the epoch whose renewal waits for the thaw

    def renew(self, epoch: int) -> bool:
        if self.frozen.is_set():
            self.hung_on = epoch
            assert self.thawed.wait(60), "the test never thawed the database"
        return super().renew(epoch)


def test_the_watchdogs_thread_steps_down_while_the_electors_thread_hangs_in_a_renewal():
    """The threads of `Elector.start` on the real clock, with short lease timings: the
    database freezes under a renewal; the server stops leading while the renewal still
    hangs, and once the database answers it frees the lease and leads again (alone)."""
    lease = FakeLease()
    lease.now = time.monotonic()
    store = BlockingStore(lease)
    settings = LeaseSettings(ttl=1.2, renew_every=0.3, poll_every=0.05, holdoff=0.3)
    changes: list[Term | None] = []

    def clock() -> float:
        lease.now = time.monotonic()  # the database's clock follows ours
        return lease.now

    elector = Elector(store, settings, on_change=changes.append, clock=clock).start()
    try:
        wait_for(lambda: elector.role == LEADER, 10, message="the elector to lead")
        store.frozen.set()
        hung = wait_for(lambda: store.hung_on, 10, message="a renewal to hang")
        (term,) = [c for c in changes if c is not None and c.epoch == hung]
        wait_for(lambda: term.lost, 10,
                 message="the server to step down while its renewal hangs")
        assert elector.role == STANDBY and changes[-1] is None
        assert not store.thawed.is_set()
        assert term.lost == "no renewal of epoch %d for 0.9 s" % hung
        assert hung not in store.released, "only the elector's thread may use the store"
        store.frozen.clear()
        store.thawed.set()
        wait_for(lambda: hung in store.released, 10, message="the lease freed after the thaw")
        wait_for(lambda: elector.role == LEADER, 10, message="leading again after the thaw")
        assert elector.term.epoch == lease.epoch > hung and term.lost
    finally:
        store.thawed.set()
        elector.stop()


# ---------------------------------------------------------------- the lease session


def test_the_lease_session_gives_up_on_a_silent_database_within_a_few_ttls():
    """Client-side libpq options (a dropped-packet partition ends the session: an error,
    not a wait until TCP gives up) and a statement timeout of the ttl, from the timings."""
    options = lease_connection_options(LeaseSettings())
    assert options == {"keepalives": 1, "keepalives_idle": 4, "keepalives_interval": 1,
                       "keepalives_count": 3, "tcp_user_timeout": 4000}
    unacknowledged = options["tcp_user_timeout"] / 1000
    unanswered = options["keepalives_idle"] + (
        options["keepalives_interval"] * options["keepalives_count"])
    assert max(unacknowledged, unanswered) <= 2 * LeaseSettings().ttl
    assert lease_statement_timeout(LeaseSettings(ttl=2.5, renew_every=0.5)) == "2500ms"
    assert lease_connection_options(LeaseSettings(ttl=2.5, renew_every=0.5))[
        "keepalives_idle"] == 3


@pytest.mark.slow
def test_the_lease_session_connects_with_the_client_side_timeouts(pg_url):
    from scheduler.journal.postgres import lease_store

    store = lease_store(pg_url, LeaseSettings())
    try:
        store.look()
        conn = store._session()
        params = conn.info.get_parameters()
        assert params["tcp_user_timeout"] == "4000" and params["keepalives"] == "1"
        assert params["keepalives_idle"] == "4" and params["keepalives_count"] == "3"
        # As the kernel holds them for this connection's socket:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 4000
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 4
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
        finally:
            sock.close()
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "4s"
        # The database's end keeps its keepalives too.
        assert conn.execute("SHOW tcp_keepalives_idle").fetchone()[0] == "10"
    finally:
        store.close()


# ---------------------------------------------------------------- a frozen PostgreSQL


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_leader_on_a_postgresql_frozen_past_its_lease_stands_by_before_the_thaw(
        postgres, pg_url, caplog):
    from scheduler.chaos.freeze import DatabaseFreeze, postmaster_of

    postmaster = postmaster_of(pg_url)
    assert postmaster == postgres.pid and os.path.exists(f"/proc/{postmaster}")
    with ha_app(pg_url, "http://a") as a, caplog.at_level(logging.WARNING,
                                                           logger="orderflow.leader"):
        leading(a)
        with ha_app(pg_url, "http://b") as b:
            wait_for(lambda: role(b)["leader"] == "http://a", 10, message="b naming a")
            client = a.test_client()
            assert client.get("/healthz").status_code == 200
            term = services(a).cluster.journal.term
            freeze = DatabaseFreeze(postmaster)
            freeze.freeze()
            try:
                # Nothing on the database answers now: the elector's renewal hangs in it
                # (the kernel holds its bytes; the connection stays up). Its term runs
                # out by its own clock, and the server stands by while still frozen.
                wait_for(lambda: role(a)["role"] != "leader", 30,
                         message="the frozen leader to stop saying it leads")
                assert freeze.frozen
                health = client.get("/healthz")
                assert health.status_code == 503 and health.json["role"] == "standby"
                refused = client.post("/api/orders", json=ORDER)
                assert refused.status_code == 503
                assert refused.json["error"]["code"] == "standby"
                handshake = client.get("/socket.io/?EIO=4&transport=polling")
                assert handshake.status_code == 503 and handshake.json["role"] == "standby"
                assert not services(a).leadership.leading
                assert term.lost == "no renewal of epoch 1 for 3.5 s"
                assert freeze.frozen, "all of it before the thaw"
            finally:
                freeze.thaw()

            def one_leader():
                views = {"http://a": role(a), "http://b": role(b)}
                leaders = [url for url, view in views.items()
                           if view["role"] == "leader" and (view["epoch"] or 0) > 1]
                return leaders[0] if leaders else None

            new = wait_for(one_leader, 30, message="a server leading after the thaw")
            other = b if new == "http://a" else a
            assert role(other)["role"] != "leader"
            wait_for(lambda: role(other)["leader"] == new, 30,
                     message="the other server naming the new leader")
            assert role(other)["role"] == "standby" and not services(other).leadership.leading
            assert term.lost and not term.holds(time.monotonic()), "epoch 1 stays over"
    assert [line for line in step_downs(caplog) if "epoch 1 " in line] == [
        f"stepped down: {term.holder} left epoch 1 (no renewal of epoch 1 for 3.5 s); "
        "standing by"]
