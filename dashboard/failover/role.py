"""What a server says about its role: whether it leads, and which server does.

One value, `ServerRole`, for every place that says it: /healthz, the `server` of a dashboard's
snapshot, a standby's refusals (of the API, of Socket.IO handshakes and connections, of worker
registrations) and the standby's journal. `as_dict()` is the JSON they carry; `refusal()` is a
standby's answer in the API's error shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from scheduler.journal.election import LEADER, STANDBY

from ..door.codes import ErrorCode


class Role(StrEnum):
    """A server's role (JSON carries the plain word)."""

    LEADER = LEADER  # serves everything
    STARTING = "starting"  # elected, recovering the term's state: not serving yet
    STANDBY = STANDBY  # another server leads, or none does (a failover is under way)


@dataclass(frozen=True)
class ServerRole:
    """This server's role and what it knows of the leader. A server alone on its journal
    (SQLite, or no journal) is `SOLE`: the leader, with the rest unknown (None)."""

    role: Role
    epoch: int | None = None  # the leader's leadership term
    leader: str | None = None  # the leader's URL
    leader_name: str | None = None  # the leader's holder name (host and pid)
    server: str | None = None  # this server's URL

    @classmethod
    def of(cls, view: Mapping[str, Any]) -> ServerRole:
        """From an elector's view (scheduler/journal/election.py), a dict of the same keys."""
        return cls(Role(view["role"]), view.get("epoch"), view.get("leader"),
                   view.get("leader_name"), view.get("server"))

    def as_dict(self) -> dict:
        """{"role", "epoch", "leader", "leader_name", "server"}, in this order."""
        return {"role": self.role.value, "epoch": self.epoch, "leader": self.leader,
                "leader_name": self.leader_name, "server": self.server}

    def standby_message(self) -> str:
        """What a server that does not serve answers instead of doing anything."""
        if self.role == Role.STARTING:
            return (f"this server was just elected leader (epoch {self.epoch}) and is "
                    "recovering its state; try again in a moment")
        if self.leader:
            return (f"this server is a standby; the leader is {self.leader} (epoch "
                    f"{self.epoch}); send requests there (or through the load balancer)")
        return ("this server is a standby and no server leads right now (a failover is under "
                "way); try again in a moment")

    def refusal(self) -> dict:
        """The JSON body of a standby's refusal: the API's error shape plus the role, the
        leader and its epoch."""
        return {"error": {"code": ErrorCode.STANDBY.value, "message": self.standby_message()},
                "role": self.role.value, "leader": self.leader, "epoch": self.epoch}


SOLE = ServerRole(Role.LEADER)
