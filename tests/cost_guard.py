"""Tests honest about their cost: a test that starts a process is marked `slow`.

`make test-fast` (`-m "not slow"`) must be fast and need nothing but Python: no subprocess,
no browser, no database server. A marker is easy to forget, so it is checked: while a test
without the marker runs (its fixtures included), starting a process raises at once, naming
the test, and the test fails. Python's audit hooks see every way a process starts
(subprocess, os.fork, os.exec*, os.posix_spawn, os.system). A test on the PostgreSQL server
is marked slow by conftest.py (the server starts once, in whichever test first asks).
"""

from __future__ import annotations

import sys

import pytest

PROCESS_EVENTS = frozenset({
    "subprocess.Popen", "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn",
    "os.system",
})


class StartedAProcess(RuntimeError):
    """A test not marked slow started a process."""


_running: list[str] = []  # the node id of the test without the slow marker that is running


def _audit(event: str, args: tuple) -> None:
    if _running and event in PROCESS_EVENTS:
        raise StartedAProcess(
            f"{_running[0]} starts a process ({event} {str(args[:1])[:80]}) but is not "
            "marked slow: add @pytest.mark.slow (make test-fast leaves it out)")


sys.addaudithook(_audit)  # for the whole process: an audit hook cannot be removed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    fast = item.get_closest_marker("slow") is None
    if fast:
        _running.append(item.nodeid)
    try:
        yield
    finally:
        if fast:
            _running.clear()
