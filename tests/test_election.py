"""The leadership lease's rules (scheduler/journal/lease.py) and the elector's decisions
(election.py), with a fake clock and an in-memory lease row: no database, no threads."""

from __future__ import annotations

import logging

import pytest

from scheduler.engine.config import ConfigError
from scheduler.journal.election import LEADER, STANDBY, Elector
from scheduler.journal.lease import LeaseSettings, LeaseView, Term
from scheduler.journal.schema import StoreError
from scheduler.journal.writer import Deposed

SETTINGS = LeaseSettings()  # the defaults: what `orderflow serve` runs with


class FakeLease:
    """The lease row in memory, with the database's clock as `now`; `session` says whether
    each server's lease session is alive."""

    def __init__(self):
        self.now = 0.0
        self.epoch, self.holder, self.url, self.expires = 0, "", None, -1.0
        self.sessions: dict[str, bool] = {}

    def view(self) -> LeaseView:
        gone = bool(self.holder) and not self.sessions.get(self.holder, False)
        return LeaseView(self.epoch, self.holder, self.url, self.expires < self.now, gone,
                         max(0.0, self.expires - self.now))


class Store:
    """One server's LeaseStore on a FakeLease; `down` makes every call fail."""

    def __init__(self, lease: FakeLease, holder: str, url: str):
        self.lease, self.holder, self.url = lease, holder, url
        self.down = False
        self.look_takes = 0.0  # seconds a look waits for the database (a frozen one)
        self.renew_takes = 0.0  # seconds a renewal waits for its answer (a frozen one)
        # What happens elsewhere while a renewal waits for the database (the watchdog's
        # thread, other servers), run before the database runs the renewal.
        self.while_renewing = lambda: None
        self.released: list[int] = []
        lease.sessions[holder] = True

    def _call(self):
        if self.down:
            raise StoreError("connection refused")

    def look(self) -> LeaseView:
        self._call()
        self.lease.now += self.look_takes
        return self.lease.view()

    def take(self, seen_epoch: int) -> int | None:
        self._call()
        lease = self.lease
        if lease.epoch != seen_epoch or not lease.view().free:
            return None
        lease.epoch += 1
        lease.holder, lease.url = self.holder, self.url
        lease.expires = lease.now + SETTINGS.ttl
        self.lease.sessions[self.holder] = True
        return lease.epoch

    def renew(self, epoch: int) -> bool:
        self._call()
        self.while_renewing()
        self._call()
        lease = self.lease
        if lease.epoch != epoch or lease.holder != self.holder:
            return False
        if not lease.sessions.get(self.holder):
            raise StoreError("server closed the connection unexpectedly")
        # The database runs the update once it answers: the lease counts from then.
        lease.now += self.renew_takes
        lease.expires = lease.now + SETTINGS.ttl
        return True

    def release(self, epoch: int) -> None:
        self._call()
        self.released.append(epoch)
        if self.lease.epoch == epoch and self.lease.holder == self.holder:
            self.lease.expires = self.lease.now - 1

    def close(self) -> None:
        pass


class Server:
    """An elector on a Store, stepped by hand on the shared clock."""

    def __init__(self, lease: FakeLease, name: str, stand_by: bool = True):
        self.lease = lease
        self.store = Store(lease, f"orderflow pid 1 on {name}", f"http://{name}:5000")
        self.changes: list[Term | None] = []
        self.changed_at: list[float] = []  # on the shared clock
        self.elector = Elector(self.store, SETTINGS, on_change=self._changed,
                               clock=lambda: lease.now, stand_by=stand_by)

    def _changed(self, term: Term | None) -> None:
        self.changes.append(term)
        self.changed_at.append(self.lease.now)

    def step(self) -> float:
        wait = self.elector.step(self.lease.now)
        assert wait > 0, "the elector's loop must never spin"
        return wait


def run(lease: FakeLease, servers: list[Server], seconds: float, tick: float = 0.05,
        paused: tuple[Server, ...] = ()) -> None:
    """Advance the clock by `seconds`, stepping every server that is not paused."""
    end = lease.now + seconds
    while lease.now < end - 1e-9:
        lease.now = round(lease.now + tick, 6)
        for server in servers:
            if server not in paused:
                server.step()


@pytest.fixture
def lease():
    return FakeLease()


# ---------------------------------------------------------------- settings and terms


def test_the_default_timings_renew_well_within_the_lease():
    assert SETTINGS.ttl == 4.0 and SETTINGS.renew_every == 0.5 and SETTINGS.poll_every == 0.25
    assert SETTINGS.hold == 3.5  # the leader stops before its lease can expire


@pytest.mark.parametrize("bad", [{"ttl": 0}, {"renew_every": -1}, {"poll_every": True},
                                 {"ttl": 1.0, "renew_every": 0.5}])
def test_bad_lease_timings_are_refused_naming_the_setting(bad):
    with pytest.raises(ConfigError, match="lease"):
        LeaseSettings(**bad)


def test_a_term_holds_until_its_last_renewal_plus_the_hold_and_not_after_it_is_lost():
    term = Term(3, SETTINGS, sent_at=10.0)
    assert term.holds(13.49) and not term.holds(13.5)
    assert term.renewed(sent_at=12.0, answered_at=12.1)
    assert term.holds(15.49) and not term.holds(15.5)
    assert term.renewed(sent_at=11.0, answered_at=12.2)  # an older one changes nothing
    assert term.valid_until() == 15.5
    heard = []
    term.on_lost(heard.append)
    assert term.lose("the lease moved") and not term.lose("again")
    assert heard == ["the lease moved"] and not term.holds(12.0)
    with pytest.raises(Deposed, match="epoch 3 is over \\(the lease moved\\)"):
        term.check(12.0)


def test_a_renewal_answered_after_the_term_ran_out_does_not_revive_it():
    """Sent in time (10.5, while the term held until 13.5) but answered at 13.6, after a
    frozen database woke: whoever checked the term at 13.5 was told it is over, so it stays
    over (before, it held again until 14.0, and a leader that any check had not yet lost
    went on leading epoch 1 after the freeze)."""
    term = Term(1, SETTINGS, sent_at=10.0)
    assert not term.renewed(sent_at=10.5, answered_at=13.6)
    assert term.valid_until() == 13.5 and not term.holds(13.6)
    assert term.renewed(sent_at=10.5, answered_at=13.49), "answered in time: it counts"
    assert term.valid_until() == 14.0
    term.lose("the lease moved")
    assert not term.renewed(sent_at=13.9, answered_at=13.95), "a lost term stays lost"
    assert term.valid_until() == 14.0


def test_a_write_after_the_hold_ran_out_loses_the_term():
    term = Term(1, SETTINGS, sent_at=0.0)
    term.check(3.4)
    with pytest.raises(Deposed, match="no renewal of epoch 1 for 3.5 s"):
        term.check(3.5)
    assert term.lost is not None and not term.holds(0.0)


def test_a_lease_is_free_when_never_taken_expired_or_its_holder_gone():
    assert LeaseView(0, "", None, False, False).free
    assert LeaseView(4, "a", None, True, False).free
    assert LeaseView(4, "a", None, False, True).free
    held = LeaseView(4, "a", "http://a", False, False, 3.0)
    assert not held.free and held.hint() == {"epoch": 4, "leader": "http://a",
                                             "leader_name": "a"}
    assert LeaseView(4, "a", "http://a", True, False).hint()["leader"] is None


# ---------------------------------------------------------------- the elector


def test_the_first_server_takes_the_free_lease_and_the_second_stands_by(lease, caplog):
    a, b = Server(lease, "a"), Server(lease, "b")
    with caplog.at_level(logging.INFO, logger="orderflow.leader"):
        a.step()
        b.step()
        run(lease, [a, b], 10)
    assert a.elector.role == LEADER and b.elector.role == STANDBY
    assert [t.epoch for t in a.changes] == [1] and b.changes == []
    assert lease.epoch == 1, "renewals keep the lease; nobody takes it over"
    assert b.elector.view() == {"role": STANDBY, "epoch": 1, "leader": "http://a:5000",
                                "leader_name": "orderflow pid 1 on a",
                                "server": "http://b:5000"}
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "leading: orderflow pid 1 on a took the lease at epoch 1 as http://a:5000 (nobody "
        "led this database before)",
        "standing by (orderflow pid 1 on b): epoch 1 is led by orderflow pid 1 on a at "
        "http://a:5000",
    ], "one line per change of leadership, naming the epoch and the server"


def test_a_standby_takes_over_within_its_poll_once_the_leaders_session_is_gone(lease):
    a, b = Server(lease, "a"), Server(lease, "b")
    run(lease, [a, b], 1)
    lease.sessions[a.store.holder] = False  # SIGKILL: PostgreSQL ends its session at once
    died = lease.now
    run(lease, [b], 1, paused=(a,))
    assert b.elector.role == LEADER and lease.epoch == 2
    assert b.changes[0].epoch == 2
    # b took it at its first look after the death, long before the lease would expire.
    assert b.changed_at[0] - died <= SETTINGS.poll_every + 0.05


def test_a_paused_leader_is_replaced_once_its_lease_expires_and_steps_down_when_it_wakes(
        lease, caplog):
    a, b = Server(lease, "a"), Server(lease, "b")
    run(lease, [a, b], 1)
    paused_at = lease.now
    run(lease, [b], SETTINGS.ttl + 1, paused=(a,))  # SIGSTOP: its session lives on
    assert b.elector.role == LEADER and lease.epoch == 2
    assert b.changed_at[0] - paused_at <= SETTINGS.ttl + SETTINGS.poll_every + 0.05
    term = a.changes[0]
    with caplog.at_level(logging.WARNING, logger="orderflow.leader"):
        a.step()  # SIGCONT: its own clock says the lease may have run out
    assert a.elector.role == STANDBY and a.changes[-1] is None and term.lost
    assert "stepped down: orderflow pid 1 on a left epoch 1" in caplog.text
    assert a.store.released == [1], "it frees the lease it may still hold"
    assert lease.epoch == 2 and lease.holder == b.store.holder, "releasing is by epoch"


def test_a_leader_whose_renewal_finds_the_lease_moved_steps_down_at_once(lease):
    a = Server(lease, "a")
    a.step()
    lease.epoch, lease.holder = 7, "thief"  # stolen
    lease.now += SETTINGS.renew_every
    a.step()
    assert a.elector.role == STANDBY and a.changes[-1] is None
    assert a.elector.last_reason == "the lease moved to another server"


def test_a_leader_whose_lease_session_was_killed_steps_down_at_its_next_renewal(lease):
    a = Server(lease, "a")
    a.step()
    lease.sessions[a.store.holder] = False  # pg_terminate_backend
    lease.now += SETTINGS.renew_every
    a.step()
    assert a.elector.role == STANDBY and "lease session was lost" in a.elector.last_reason


def test_a_write_that_found_the_epoch_moved_steps_the_leader_down_at_its_next_step(lease):
    a = Server(lease, "a")
    a.step()
    a.changes[0].lose("epoch 2 is led by b")  # what the journal's write transaction does
    a.step()
    assert a.elector.role == STANDBY and a.elector.last_reason == "epoch 2 is led by b"


def test_a_leader_cut_off_from_the_database_stops_before_its_lease_can_expire(lease):
    a, b = Server(lease, "a"), Server(lease, "b")
    run(lease, [a, b], 1)
    a.store.down = True  # partitioned: renewals fail, its session lives on
    cut_at = lease.now
    while a.elector.role == LEADER:
        run(lease, [a, b], 0.05)
    stopped = lease.now
    while b.elector.role != LEADER:
        run(lease, [a, b], 0.05)
    assert stopped < b.changed_at[0], "the old leader stopped first"
    assert stopped - cut_at <= SETTINGS.hold + 0.1


def test_a_server_that_stepped_down_leaves_the_lease_to_the_others_for_the_holdoff(lease):
    a = Server(lease, "a")
    a.step()
    lease.epoch, lease.holder, lease.expires = 2, "thief", lease.now  # stolen, then let go
    lease.now += SETTINGS.renew_every
    a.step()
    assert a.elector.role == STANDBY
    run(lease, [a], SETTINGS.holdoff - 0.1)
    assert a.elector.role == STANDBY, "no campaign during the holdoff"
    run(lease, [a], 0.5)
    assert a.elector.role == LEADER and lease.epoch == 3


def test_a_standby_whose_look_waited_on_a_frozen_database_takes_a_term_that_holds(lease):
    """The database froze under a standby's look (SIGSTOP of PostgreSQL, 7 s) and the
    leader's lease expired meanwhile: the term it takes once the database answers counts from
    the take, not from the step that began before the freeze (it was born expired, and the
    new leader stepped down at once, leaving the database leaderless for its holdoff)."""
    a, b = Server(lease, "a"), Server(lease, "b")
    run(lease, [a, b], 1)
    b.store.look_takes = 7.0  # the freeze, from b's side; a's renewals wait as long
    b.step()
    b.store.look_takes = 0.0
    run(lease, [b], 0.5, paused=(a,))
    assert b.elector.role == LEADER and lease.epoch == 2
    assert b.changes == [b.changes[0]] and b.changes[0].holds(lease.now), (
        "the new leader must not step down right after taking the lease")


def test_a_leader_whose_renewal_was_answered_after_its_term_ran_out_steps_down_and_frees_it(
        lease, caplog):
    """PostgreSQL frozen (SIGSTOP) under the leader's renewal for longer than the hold: the
    renewal, sent in time, is answered after the thaw, and the database ran it then (its
    lease counts from the thaw). The leader's term ran out meanwhile by its own clock, so it
    steps down once the answer comes and releases the lease that answer just extended: the
    standby leads at its next look instead of never (a revived term renews on for good)."""
    a, b = Server(lease, "a"), Server(lease, "b")
    a.step()  # leads from 0: its term holds until 0 + hold = 3.5
    b.step()
    term = a.changes[0]
    lease.now += SETTINGS.renew_every  # 0.5: the renewal is due, and the database freezes
    a.store.renew_takes = SETTINGS.hold - SETTINGS.renew_every + 0.1  # answered at 3.6
    with caplog.at_level(logging.WARNING, logger="orderflow.leader"):
        a.step()
    a.store.renew_takes = 0.0
    assert a.elector.role == STANDBY and a.changes[-1] is None and term.lost
    assert not term.holds(lease.now) and term.valid_until() == SETTINGS.hold
    assert a.elector.last_reason.startswith("its renewal was answered 3.1 s after it was sent")
    assert "stepped down: orderflow pid 1 on a left epoch 1" in caplog.text
    assert a.store.released == [1] and lease.view().free, "it frees what the renewal kept"
    thawed = lease.now
    run(lease, [a, b], SETTINGS.poll_every + 0.05)
    assert b.elector.role == LEADER and lease.epoch == 2
    assert b.changed_at[0] - thawed <= SETTINGS.poll_every + 0.05


def test_a_renewal_answered_slowly_but_within_the_term_keeps_the_leader(lease):
    a, b = Server(lease, "a"), Server(lease, "b")
    a.step()
    b.step()
    lease.now += SETTINGS.renew_every
    a.store.renew_takes = SETTINGS.hold - SETTINGS.renew_every - 0.1  # answered at 3.4
    a.step()
    a.store.renew_takes = 0.0
    assert a.changes[0].valid_until() == SETTINGS.renew_every + SETTINGS.hold
    run(lease, [a, b], 3 * SETTINGS.ttl)
    assert a.elector.role == LEADER and not a.changes[0].lost and lease.epoch == 1
    assert b.elector.role == STANDBY


def test_two_standbys_never_both_take_one_expired_lease(lease):
    a, b, c = Server(lease, "a"), Server(lease, "b"), Server(lease, "c")
    run(lease, [a, b, c], 1)
    lease.sessions[a.store.holder] = False
    run(lease, [b, c], 2, paused=(a,))
    leaders = [s for s in (b, c) if s.elector.role == LEADER]
    assert len(leaders) == 1 and lease.epoch == 2


def test_a_standby_that_cannot_reach_the_database_keeps_looking_and_says_so_once(lease,
                                                                                  caplog):
    a = Server(lease, "a")
    a.store.down = True
    with caplog.at_level(logging.WARNING, logger="orderflow.leader"):
        run(lease, [a], 2)
    assert a.elector.role == STANDBY
    assert sum("cannot look at the lease" in r.getMessage() for r in caplog.records) == 1
    a.store.down = False
    run(lease, [a], 0.3)
    assert a.elector.role == LEADER


def test_a_journal_of_its_own_leads_one_term_and_never_campaigns_again(lease):
    a = Server(lease, "a", stand_by=False)
    a.step()
    lease.epoch, lease.holder, lease.expires = 2, "thief", -1.0
    lease.now += SETTINGS.renew_every
    a.step()
    run(lease, [a], SETTINGS.holdoff + 2)
    assert a.elector.role == STANDBY and lease.epoch == 2


def test_stopping_a_leader_hands_its_lease_back(lease):
    a, b = Server(lease, "a"), Server(lease, "b")
    run(lease, [a, b], 1)
    a.elector.stop(resign=True)
    assert a.store.released == [1] and a.changes[0].lost == "this server stopped"
    run(lease, [b], 0.3, paused=(a,))
    assert b.elector.role == LEADER, "the standby took over at its next look"
