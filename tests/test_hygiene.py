"""The guard that keeps tests out of the user's own files (conftest.leaves_the_users_logs_alone,
hygiene.py): what it compares, and whom it blames, shown on a folder of the test's own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hygiene import REPO_LOGS, LogsGuard, files_under, process_tree


def test_the_guard_sees_a_file_made_changed_or_removed(tmp_path):
    assert files_under(tmp_path / "missing") == {}
    before = files_under(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "orderflow.log").write_text("one line\n")
    made = files_under(tmp_path)
    assert set(made) - set(before) == {os.path.join("sub", "orderflow.log")}
    with open(tmp_path / "sub" / "orderflow.log", "a") as log:
        log.write("another line\n")
    assert files_under(tmp_path) != made
    (tmp_path / "sub" / "orderflow.log").unlink()
    assert files_under(tmp_path) == before


def test_the_guarded_folder_is_the_repositorys_logs():
    assert REPO_LOGS.name == "logs" and (REPO_LOGS.parent / "pyproject.toml").is_file()


# A process outside the test run, as `make run` is: it forks and its parent exits at once, so
# it is nobody's descendant here. It opens server.log, prints its pid, appends a line for each
# line it reads, and removes its file and exits when its input ends (as a server's -wal goes).
OUTSIDER = """
import os, sys
if os.fork():
    os._exit(0)
log = open(sys.argv[1], "a")
print(os.getpid(), flush=True)
for line in sys.stdin:
    log.write(line)
    log.flush()
    print("written", flush=True)
log.close()
os.remove(sys.argv[1])
print("gone", flush=True)
"""


def test_the_test_run_is_this_process_and_its_descendants_only():
    tree = process_tree(os.getpid())
    assert os.getpid() in tree and os.getppid() not in tree


@pytest.mark.slow
def test_the_guard_blames_what_the_test_run_wrote_not_what_another_process_writes(tmp_path):
    guard = LogsGuard(tmp_path, look_again_after=0)  # a fresh look at every change
    outsider = subprocess.Popen([sys.executable, "-c", OUTSIDER, str(tmp_path / "server.log")],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert outsider.wait(10) == 0  # the parent; its child carries on, reparented
    pid = int(outsider.stdout.readline())
    try:
        assert pid not in process_tree(os.getpid())
        before = guard.snapshot()
        outsider.stdin.write("a line of the server's own\n")
        outsider.stdin.flush()
        assert outsider.stdout.readline() == "written\n"
        (tmp_path / "mine.log").write_text("a line of the test's\n")
        assert guard.blamed(before) == ["mine.log"]

        before = guard.snapshot()
        outsider.stdin.close()  # the server stops, and removes its file
        assert outsider.stdout.readline() == "gone\n"
        assert "server.log" not in guard.snapshot()
        assert guard.blamed(before) == [], "removed by the server that held it"

        before = guard.snapshot()
        (tmp_path / "server.log").write_text("the server is gone; this is the test's\n")
        assert guard.blamed(before) == ["server.log"]
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it had ended
        outsider.stdout.close()


COSTLY = '''
import subprocess, sys
import pytest

def test_fast_but_starts_a_process():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

@pytest.mark.slow
def test_marked_and_starts_a_process():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

def test_fast_and_starts_nothing():
    assert sum([1, 2]) == 3
'''


@pytest.mark.slow
def test_a_test_that_starts_a_process_without_the_slow_marker_fails_naming_it(tmp_path):
    (tmp_path / "test_costly.py").write_text(COSTLY)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: costly\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "cost_guard", "-p", "no:cacheprovider", "-rf",
         "test_costly.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout
    assert "1 failed, 2 passed" in done.stdout, done.stdout
    assert "FAILED test_costly.py::test_fast_but_starts_a_process" in done.stdout
    assert "starts a process (subprocess.Popen" in done.stdout
    assert "is not marked slow" in done.stdout
