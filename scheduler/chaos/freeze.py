"""Freezing a PostgreSQL server for a moment: SIGSTOP of its postmaster and of every process
it started (the backends, the WAL writer, the checkpointer), then SIGCONT.

To the orderflow servers on it, the database stops answering with every connection open,
as a hung machine or a stalled disk would: commits wait, the leader cannot renew its lease,
and nothing can take it over until the database answers again. Only a database on this
machine can be frozen (its processes must be ours to signal).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from ..journal.location import parse_location, read_connection


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _is_postgres(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"postgres" in command


def postmaster_of(url: str) -> int | None:
    """The pid of the postmaster serving the database at `url`, if it runs on this machine
    and this process may signal it; None otherwise (a remote database)."""
    with read_connection(parse_location(url)) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        # While the connection lasts: its backend process ends with it.
        postmaster = _parent(backend)
        if postmaster is None or not (_is_postgres(backend) and _is_postgres(postmaster)):
            return None
    try:
        os.kill(postmaster, 0)
    except OSError:
        return None
    return postmaster


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _parent(int(entry.name)) == pid:
            found.append(int(entry.name))
    return found


class DatabaseFreeze:
    """SIGSTOP and SIGCONT of one PostgreSQL server's processes. `thaw()` may be called any
    number of times (a run that fails midway must never leave the database stopped)."""

    def __init__(self, postmaster: int):
        self.postmaster = postmaster
        self._stopped: list[int] = []

    @property
    def frozen(self) -> bool:
        return bool(self._stopped)

    def freeze(self) -> None:
        # The postmaster first: once it is stopped it starts no new process.
        self._signal(self.postmaster, signal.SIGSTOP)
        self._stopped.append(self.postmaster)
        for child in children_of(self.postmaster):
            self._signal(child, signal.SIGSTOP)
            self._stopped.append(child)

    def thaw(self) -> None:
        stopped, self._stopped = self._stopped, []
        for pid in reversed(stopped):  # the backends first, the postmaster last
            self._signal(pid, signal.SIGCONT)

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass  # ended meanwhile
