"""One scheduler per SQLite journal: an exclusive lock on a file beside the database.

`fcntl.flock` on `<database>.lock`, which records the holder's pid. The kernel releases the
lock when the last descriptor of the holder closes, which includes every way a process can die
(SIGKILL too), so a crash never leaves a stale lock and nothing has to be cleaned up by hand.
A lock taken before a fork is shared with the child (gunicorn's worker inherits the lock of
`orderflow serve`), and held until both have ended.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .schema import StoreError


class JournalLocked(StoreError):
    """Another process is the scheduler of this journal; `holder` says which."""

    def __init__(self, message: str, holder: str):
        super().__init__(message)
        self.holder = holder


def lock_path(database: Path) -> Path:
    return Path(f"{database}.lock")


class FileLock:
    """An exclusive lock on one journal, held until `release()` or the end of the process."""

    def __init__(self, database: Path, fd: int):
        self.database = database
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, database: str | os.PathLike) -> FileLock:
        """Take the lock of `database` (the folder must exist); JournalLocked, naming the
        holder's pid, when another process has it."""
        database = Path(database)
        path = lock_path(database)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(
                f"cannot open the lock file {path} of {database}: {exc.strerror}. Fix the "
                "folder's permissions or point --db at another file."
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise JournalLocked(
                f"{database} is already used by another orderflow process (pid {holder}, "
                f"per {path}): one scheduler per journal. Stop that process first, or point "
                "--db at another file.",
                holder=f"pid {holder} holds it",
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(database, fd)

    def covers(self, database: str | os.PathLike) -> FileLock:
        """This lock, checked to be held (by this process or the parent it was inherited
        from) and to be the lock of `database`; StoreError otherwise."""
        if Path(database).resolve() != self.database.resolve():
            raise StoreError(f"the lock of {self.database} does not cover {database}")
        if self._fd is None:
            raise StoreError(f"the lock of {self.database} was released")
        # Locking again through the descriptor that holds the lock changes nothing and
        # succeeds; it fails if the lock was lost.
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return self

    def release(self) -> None:
        """Give the lock up (closing our descriptor). The file stays: removing it could let
        two processes lock two different files of the same name."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"

