"""Shared fixtures: a thread-leak guard on every test, helpers for waiting on conditions, the
hypothesis profiles, and a throwaway PostgreSQL server for the journal's tests."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import settings
from pg import PostgresServer, missing

# The property tests' example budget. `make mutation` reruns them against every mutant, so it
# picks the "mutation" profile (ORDERFLOW_HYPOTHESIS_PROFILE): fewer examples, and the same
# ones each time (derandomized), so a mutant's verdict does not depend on luck.
settings.register_profile("orderflow", max_examples=150)
settings.register_profile("mutation", max_examples=40, derandomize=True, database=None)
settings.load_profile(os.environ.get("ORDERFLOW_HYPOTHESIS_PROFILE", "orderflow"))


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.01, message: str = ""):
    """Poll `predicate` until it returns a truthy value or `timeout` passes (then fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message or predicate}")
        threading.Event().wait(interval)


# The repository's own logs/ folder: where `make run` writes the user's journal and log file.
REPO_LOGS = Path(__file__).resolve().parent.parent / "logs"


def files_under(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` (recursively) with its size and modification time."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(autouse=True)
def leaves_the_users_logs_alone():
    """No test may create, change or delete a file under the repository's logs/: a test
    writes in its own tmp_path (a server started by a test gets --db and --log-file there)."""
    before = files_under(REPO_LOGS)
    yield
    after = files_under(REPO_LOGS)
    touched = sorted(name for name in before.keys() | after.keys()
                     if before.get(name) != after.get(name))
    assert not touched, f"this test wrote under {REPO_LOGS}: {touched}"


@pytest.fixture(autouse=True)
def no_thread_leaks():
    """Every thread a test starts must be gone shortly after the test ends."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 10
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        extra[0].join(0.05)
    assert not extra, f"threads left running: {[t.name for t in extra]}"


# The throwaway server's settings: fsync off, since a test's data need not survive a power
# cut (what a commit waits for is the journal's business and stays as in production).
TEST_SERVER_SETTINGS = {"fsync": "off", "full_page_writes": "off", "max_connections": "200"}


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the whole run, started on first use and stopped by its PID
    at the end (also when tests fail). Skipped only where the server binaries are missing."""
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    server = PostgresServer(TEST_SERVER_SETTINGS).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres):
    """An empty database for one test (emptied again for the next)."""
    return postgres.emptied_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_db(request, tmp_path):
    """Where a test's journal lives, once per backend: a file path, or a database URL."""
    if request.param == "sqlite":
        return str(tmp_path / "of.db")
    return request.getfixturevalue("pg_url")
