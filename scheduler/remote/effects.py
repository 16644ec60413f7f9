"""What the worker session asks its shell to do, as small values (see session.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Assignment:
    """One task handed to one of this process's worker ids, under a lease."""

    worker_id: str
    task_id: str
    lease: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.task_id, self.lease)

    def ref(self) -> dict:
        """How messages about it name it."""
        return {"worker_id": self.worker_id, "task_id": self.task_id, "lease": self.lease}


@dataclass(frozen=True)
class Connect:
    """Start one connection attempt to `url`; report `connected`/`connect_ended` or
    `connect_failed`."""

    url: str


@dataclass(frozen=True)
class Send:
    """Emit `event` with `payload`; report the acknowledgement as `answered(rid, reply)`, or
    `unanswered(rid)` if it could not be sent."""

    rid: int
    event: str
    payload: dict


@dataclass(frozen=True)
class Run:
    """Run the assignment's handler with the context the server's `begin` answered (plain
    functions on a runner thread, `async def` ones on the event loop); report the outcome
    as `finished`, or `abandoned` after a forced exit. The session has given it a slot."""

    assignment: Assignment
    context: dict


@dataclass(frozen=True)
class Cancel:
    """Tell a running handler to give up: set its `TaskContext.cancelled`, and cancel its
    task if it is `async def`. It still reports how it ended."""

    assignment: Assignment


@dataclass(frozen=True)
class Log:
    level: str  # "info" | "warning" | "error"
    message: str


@dataclass(frozen=True)
class Exit:
    """End the process with `status`. `cancel`: running handlers should give up (a forced
    exit); `notice`: a line for stderr, for whoever started the process."""

    status: int
    cancel: bool = False
    notice: str | None = None


Effect = Connect | Send | Run | Cancel | Log | Exit
