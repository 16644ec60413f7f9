"""Shared fixtures: a thread-leak guard on every test, helpers for waiting on conditions, the
hypothesis profiles, and a throwaway PostgreSQL server for the journal's tests."""

from __future__ import annotations

import importlib.util
import os
import threading
import time

import pytest
from hygiene import REPO_LOGS, LogsGuard
from hypothesis import settings
from pg import PostgresServer, missing

# A test that starts a process and is not marked slow fails (tests/cost_guard.py).
pytest_plugins = ["cost_guard"]

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


@pytest.fixture(scope="session")
def logs_guard() -> LogsGuard:
    return LogsGuard(REPO_LOGS)


@pytest.fixture(autouse=True)
def leaves_the_users_logs_alone(logs_guard):
    """No test may create, change or delete a file under the repository's logs/: a test
    writes in its own tmp_path (a server started by a test gets --db and --log-file there).
    What `make run` writes there meanwhile is not the test's doing (see hygiene.py)."""
    before = logs_guard.snapshot()
    yield
    touched = logs_guard.blamed(before)
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


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(items):
    """A test on the PostgreSQL server is slow (the server is a process of its own), in
    whichever file it is written."""
    for item in items:
        if "postgres" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the whole run, started on first use and stopped by its PID
    at the end (also when tests fail). Skipped only where the server binaries or psycopg
    (the `postgres` extra) are missing."""
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("psycopg is not installed (pip install -e '.[dev,postgres]')")
    server = PostgresServer(TEST_SERVER_SETTINGS).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres):
    """An empty database for one test (emptied again for the next)."""
    return postgres.emptied_database()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def journal_db(request, tmp_path):
    """Where a test's journal lives, once per backend: a file path, or a database URL."""
    if request.param == "sqlite":
        return str(tmp_path / "of.db")
    return request.getfixturevalue("pg_url")
