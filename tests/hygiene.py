"""What the guard that keeps tests out of the user's logs/ compares (conftest's
leaves_the_users_logs_alone, tested in test_hygiene.py).

A test run must never create, change or delete a file under the repository's logs/, where
`make run` keeps the user's journal and log file. But `make run` may be up in the same
checkout while the tests run, writing those files itself: a change is blamed on the test only
if no process outside the test run (the pytest process and its descendants) holds the file
open, now or at the guard's previous look (a server that stops deletes its -wal and -shm
files; looks are at most LOOK_AGAIN_AFTER seconds apart while only such files change). Where
/proc cannot be read, every change is blamed.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

# The repository's own logs/ folder: where `make run` writes the user's journal and log file.
REPO_LOGS = Path(__file__).resolve().parent.parent / "logs"
PROC = Path("/proc")


def files_under(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` (recursively) with its size and modification time."""
    found = {}
    for path in folder.rglob("*") if folder.is_dir() else ():
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue  # removed while we looked (a server's -shm at its shutdown)
        if path.is_file():
            found[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return found


def process_tree(root: int, proc: Path = PROC) -> set[int]:
    """`root` and every process descended from it, by parent pid (as /proc says)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in _pids(proc):
        try:
            stat = (proc / str(entry) / "stat").read_text()
        except OSError:
            continue  # ended while we looked
        # "pid (name) state ppid ...": the name may hold spaces and parentheses.
        children[int(stat.rpartition(")")[2].split()[1])].append(entry)
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children[pid])
    return tree


def held_by_others(folder: Path, proc: Path = PROC) -> set[str]:
    """Files under `folder` that a process outside this test run has open."""
    ours = process_tree(os.getpid(), proc)
    folder = folder.resolve()
    held = set()
    for pid in _pids(proc):
        if pid in ours:
            continue
        fds = proc / str(pid) / "fd"
        try:
            targets = [os.readlink(fds / fd) for fd in os.listdir(fds)]
        except OSError:
            continue  # ended while we looked, or another user's
        held.update(str(Path(t).relative_to(folder)) for t in targets
                    if Path(t).is_relative_to(folder))
    return held


def _pids(proc: Path) -> list[int]:
    try:
        return [int(name) for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return []  # no /proc here: nothing is excused


# A look at /proc costs tens of milliseconds on a busy machine, and `make run` changes its
# files during nearly every test: between two looks this long apart, the last one stands.
LOOK_AGAIN_AFTER = 5.0


class LogsGuard:
    """Which files under `folder` a test changed, leaving out those another process writes."""

    def __init__(self, folder: Path, proc: Path = PROC, look_again_after: float = LOOK_AGAIN_AFTER):
        self.folder = folder
        self.proc = proc
        self.look_again_after = look_again_after
        # Looked at once at the start, then again whenever something changed.
        self._held_before = held_by_others(folder, proc)
        self._looked_at = time.monotonic()

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return files_under(self.folder)

    def blamed(self, before: dict[str, tuple[int, int]]) -> list[str]:
        """The files changed since `before` that only this test run can have changed."""
        after = self.snapshot()
        changed = {name for name in before.keys() | after.keys()
                   if before.get(name) != after.get(name)}
        if not changed:
            return []
        recent = time.monotonic() - self._looked_at < self.look_again_after
        if recent and changed <= self._held_before:
            return []  # what another process held a moment ago, as in the tests before
        held_now = held_by_others(self.folder, self.proc)
        excused = held_now | self._held_before
        self._held_before, self._looked_at = held_now, time.monotonic()
        return sorted(changed - excused)
