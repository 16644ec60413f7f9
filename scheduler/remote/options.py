"""The settings and identity of an `orderflow worker` process, and its reconnect backoff."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..engine.config import ClusterConfig


def reconnect_delay(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """Backoff before the next connection attempt: "equal jitter" over min(cap, base * 2^n),
    so many workers that lost one server do not come back in a single wave."""
    ceiling = min(cap, base * 2 ** min(failures, 30))
    return rng.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class WorkerOptions:
    """Settings of one worker process; every default is what `orderflow worker` gets."""

    # The server's URL, or several separated by commas (servers sharing one PostgreSQL
    # database: the worker works for whichever leads).
    server: str
    token: str | None = None
    # Slots: handlers run at once, sync and async together (the server's word and default);
    # more assignments wait in the local queue.
    slots: int = ClusterConfig.slots
    name: str = ""
    # What it can run, as its registrations say: the steps it has handlers for (None: any)
    # and the capability tags it offers (`--tags payments`).
    steps: tuple[str, ...] | None = None
    tags: tuple[str, ...] = ()
    # The workflow definitions its app has ("checkout@1a2b3c4d"; None: any, a worker
    # without `--app`): the server gives it steps only of orders pinned to one of them.
    definitions: tuple[str, ...] | None = None
    # Reconnect backoff: the first wait, doubled per failure up to the max (seconds).
    reconnect_delay: float = 0.5
    reconnect_delay_max: float = 5.0
    # How long a request (register, begin, result, ...) waits for its answer (seconds).
    request_timeout: float = 5.0
    # A cancelled handler (past its time limit) not returned this long after is stuck: its
    # slot stays taken; all slots stuck, the process exits with EXIT_STUCK (seconds).
    cancel_grace: float = 1.0
    # After SIGTERM without a connection: how long to keep trying to deliver results.
    drain_grace: float = 5.0
    # Set for processes the server started: exit when that process is gone.
    parent_pid: int | None = None
    spawn_id: str | None = None

    @property
    def servers(self) -> tuple[str, ...]:
        """Every server URL given, in order."""
        found = tuple(url.strip().rstrip("/") for url in self.server.split(",") if url.strip())
        return found or (self.server,)


@dataclass(frozen=True)
class Identity:
    """Who the process is, as its registrations say: `session` ties its connections and
    worker ids together on the server."""

    session: str
    name: str
    host: str
    pid: int
