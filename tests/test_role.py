"""What a server says about its role (dashboard/failover/role.py): one value behind /healthz, the
snapshot's `server` and a standby's refusals, whose JSON keeps the words and the key order the
elector's view has. The elector runs on test_election's fake clock and lease: no database."""

from __future__ import annotations

import json

import pytest
from test_election import FakeLease, Server, run

from dashboard.failover.leadership import Leadership, refusal_of
from dashboard.failover.role import SOLE, Role, ServerRole
from scheduler import Cluster

KEYS = ["role", "epoch", "leader", "leader_name", "server"]


@pytest.fixture
def lease():
    return FakeLease()


class Parts:
    """Leadership's view of the app's parts; never called here (no change is carried out)."""

    cluster = None

    def follow(self, cluster: Cluster) -> None:
        raise AssertionError("not expected")

    def stop_worker_processes(self) -> None:
        raise AssertionError("not expected")


def test_a_server_alone_on_its_journal_leads_and_knows_nothing_else():
    assert SOLE.as_dict() == {"role": "leader", "epoch": None, "leader": None,
                              "leader_name": None, "server": None}
    assert list(SOLE.as_dict()) == KEYS


def test_the_electors_view_of_a_leader_and_of_a_standby_is_carried_as_it_is(lease):
    a, b = Server(lease, "a"), Server(lease, "b")
    run(lease, [a, b], 1.0)
    for server in (a, b):
        view = server.elector.view()
        said = ServerRole.of(view).as_dict()
        assert said == view and list(said) == list(view) == KEYS
    assert [ServerRole.of(s.elector.view()).role for s in (a, b)] == [Role.LEADER, Role.STANDBY]
    assert ServerRole.of(b.elector.view()).leader == "http://a:5000"


def test_its_json_carries_plain_words():
    role = ServerRole(Role.STARTING, epoch=2, leader="http://a:5000", leader_name="a",
                      server="http://a:5000")
    assert json.loads(json.dumps(role.as_dict())) == role.as_dict()
    assert type(role.as_dict()["role"]) is str and type(role.refusal()["role"]) is str
    assert type(role.refusal()["error"]["code"]) is str


def test_a_standby_refuses_in_the_apis_error_shape_naming_the_leader():
    role = ServerRole(Role.STANDBY, epoch=3, leader="http://a:5000", leader_name="a",
                      server="http://b:5000")
    assert role.refusal() == {
        "error": {"code": "standby",
                  "message": "this server is a standby; the leader is http://a:5000 (epoch 3); "
                             "send requests there (or through the load balancer)"},
        "role": "standby", "leader": "http://a:5000", "epoch": 3}


def test_a_standby_with_no_leader_and_a_server_still_starting_say_to_try_again():
    nobody = ServerRole(Role.STANDBY, server="http://b:5000").refusal()
    assert (nobody["leader"], nobody["epoch"]) == (None, None)
    assert "no server leads right now" in nobody["error"]["message"]
    starting = ServerRole(Role.STARTING, epoch=4).standby_message()
    assert "just elected leader (epoch 4)" in starting and "recovering" in starting


def test_a_server_elected_but_not_yet_leading_says_it_is_starting_and_refuses(lease):
    a = Server(lease, "a")
    run(lease, [a], 1.0)
    assert a.elector.view()["role"] == "leader"
    # The elector took the lease; the term is not carried out (its cluster not recovered).
    lead = Leadership(Parts(), a.elector, build_term=lambda term: None, placeholder=None)
    assert not lead.leading
    assert lead.view() == ServerRole(Role.STARTING, 1, "http://a:5000", a.store.holder,
                                     "http://a:5000")
    body = refusal_of(lead)
    assert (body["error"]["code"], body["role"], body["epoch"]) == ("standby", "starting", 1)
    assert refusal_of(None) is None  # a server alone never refuses


class Recovered:
    """A term's cluster that recovers at once, with nothing in it."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        raise AssertionError("not expected: the step-down is not carried out here")

    def stats(self) -> dict:
        return {"orders": {}}


class Following(Parts):
    def follow(self, cluster) -> None:
        self.cluster = cluster


def test_a_term_the_elector_ended_is_not_served_before_its_step_down_is_carried_out(
        lease, monkeypatch):
    from types import SimpleNamespace

    import dashboard.failover.leadership as leadership

    monkeypatch.setattr(leadership, "time", SimpleNamespace(monotonic=lambda: lease.now))
    a = Server(lease, "a")
    run(lease, [a], 1.0)
    lead = Leadership(Following(), a.elector, build_term=lambda term: Recovered(),
                      placeholder=None)
    lead._lead(a.elector.term)  # what the part's thread does with the elector's new term
    assert lead.leading and refusal_of(lead) is None
    # The database stops answering: no renewal, and the elector ends the term by its own
    # clock. Its step-down waits in the part's queue (no thread runs it here), as it may
    # for a moment on a busy machine: the API and handshakes must be refused meanwhile.
    a.store.down = True
    run(lease, [a], 5.0)
    assert a.elector.term is None
    assert not lead.leading
    body = refusal_of(lead)
    assert body is not None and body["role"] == "standby"
