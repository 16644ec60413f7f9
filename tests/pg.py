"""A throwaway PostgreSQL server for tests and benchmarks, from Debian's `postgresql` package.

`initdb -A trust` into a temporary folder, `pg_ctl start` listening on 127.0.0.1 at a free
port (and a unix socket in that folder), stopped by the postmaster's PID (from
postmaster.pid) and the folder removed. As root (CI), initdb refuses to run, so the server
runs as the `postgres` system user (`runuser -u postgres`), owning its folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

# Debian puts the server binaries here (not on PATH); elsewhere, PATH.
BIN_GLOB = "/usr/lib/postgresql/*/bin"
TOOLS = ("initdb", "pg_ctl", "postgres")


def bin_dir() -> Path | None:
    """The newest folder with initdb, pg_ctl and postgres, or None."""
    candidates = sorted(glob.glob(BIN_GLOB), key=lambda p: int(Path(p).parent.name)
                        if Path(p).parent.name.isdigit() else 0, reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).parent))
    for folder in candidates:
        if all((Path(folder) / tool).exists() for tool in TOOLS):
            return Path(folder)
    return None


def missing() -> str | None:
    """Why no throwaway server can start here (None: it can)."""
    if bin_dir() is None:
        return ("PostgreSQL server binaries (initdb, pg_ctl) not found in "
                f"{BIN_GLOB} or on PATH: apt-get install postgresql")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no postgres system user to run initdb as"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One server in a folder of its own. `settings`: postgres -c options (the tests turn
    fsync off for speed; the benchmark keeps PostgreSQL's durable defaults)."""

    def __init__(self, settings: dict[str, str] | None = None):
        self.settings = settings or {}
        self.bin = bin_dir()
        self.folder: Path | None = None
        self.port = 0
        self.pid: int | None = None

    def _run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL, cwd="/")

    def start(self) -> PostgresServer:
        self.folder = Path(tempfile.mkdtemp(prefix="orderflow-pg-"))
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        data = self.folder / "data"
        done = self._run("initdb", "-A", "trust", "-U", "postgres", "-E", "UTF8",
                         "--no-sync", "-D", str(data))
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"initdb failed: {done.stderr.strip()}")
        for _ in range(3):  # a port picked free may be taken before the server binds it
            self.port = free_port()
            done = self._pg_ctl_start()
            if done.returncode == 0:
                return self
        log = (self.folder / "server.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"PostgreSQL did not start: {done.stderr.strip()}\n{log}")

    def _pg_ctl_start(self) -> subprocess.CompletedProcess:
        options = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
        done = self._run(
            "pg_ctl", "-D", str(self.folder / "data"), "-l", str(self.folder / "server.log"),
            "-w", "-t", "30", "-o", f"-h 127.0.0.1 -p {self.port} -k {self.folder} {options}",
            "start")
        self.pid = self._postmaster_pid()
        return done

    def start_again(self) -> None:
        """Start the same server (data, port) after `shutdown()`: an outage that ends."""
        done = self._pg_ctl_start()
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start again: {done.stderr.strip()}")

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.folder / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []

    def create_database(self) -> str:
        """A fresh empty database; returns its URL. (About a second here: tests use
        `emptied_database` instead.)"""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def emptied_database(self, name: str = "orderflow_test") -> str:
        """The database `name`, created on first use, otherwise emptied: every other session
        on it ended (so no claim is left over) and its tables dropped. Milliseconds, where
        creating a database takes about a second; returns its URL."""
        if not self.sql("SELECT 1 FROM pg_database WHERE datname = %s" % _quote(name)):
            self.sql(f"CREATE DATABASE {name}")
            return self.url(name)
        self.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 f"WHERE datname = {_quote(name)} AND pid <> pg_backend_pid()")
        self.sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public", database=name)
        return self.url(name)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Fast shutdown by PID (SIGINT: sessions are cut, nothing waits), SIGKILL if that
        takes longer than `timeout`. The data stay (`start_again`)."""
        pid = self.pid or (self._postmaster_pid() if self.folder else None)
        self.pid = None
        if pid:
            _signal(pid, signal.SIGINT)
            if not _gone_within(pid, timeout):
                _signal(pid, signal.SIGKILL)
                _gone_within(pid, 10)

    def stop(self, timeout: float = 30.0) -> None:
        """`shutdown()`, then the folder goes."""
        self.shutdown(timeout)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    """Running (a zombie, ended but not yet reaped by its new parent, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _gone_within(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)  # polling a process that is not our child: nothing to wait on
    return True
