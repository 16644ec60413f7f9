"""The readable log file: one line per order accepted, finished or failed, per failed
attempt, retry, reassignment and worker change, so `grep <order id>` tells an order's story."""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

from ..engine.text import escape

# Where `orderflow serve` writes its readable log unless told otherwise.
DEFAULT_LOG = "logs/orderflow.log"
FORMAT = "%(asctime)s %(levelname)-7s %(message)s"


# Control characters (and Unicode line breaks) as visible escapes: a newline inside an
# error message a handler wrote, or inside a customer's name, must not start a line of its own
# that reads like "order ... completed".
_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(32), 0x7F, 0x85)}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t",
                 0x2028: "\\u2028", 0x2029: "\\u2029"})


def escape_controls(text: str) -> str:
    """`text` on one line, its control characters escaped, and lone surrogates too (as the
    journal's rule writes them, engine/text.py): a UTF-8 log file cannot hold those."""
    return escape(text.translate(_ESCAPES))


class SafeFormatter(logging.Formatter):
    """A formatter whose message part is one line whatever it holds (a traceback, from our
    own code, still follows on lines of its own)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


class LogFileError(RuntimeError):
    pass


class SizedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """The standard rotating file, made cheap enough for a line per order: Python 3.11's
    handler formats each line twice (once to measure it) and asks the file system twice
    whether the log is a regular file and once where its end is, on every line; at a few
    hundred orders a second that cost more CPU than the orders' steps. This one formats a
    line once and counts the bytes it wrote. Whether the file may rotate (a regular file,
    not /dev/null or a pipe: bpo-45401) is asked when it is opened, as is its size; when
    the count says the next line would reach maxBytes, the file's real size is asked once
    more, as another tool may have truncated it meanwhile (logrotate's copytruncate). As
    documented for the standard handler, a maxBytes or backupCount of 0 never rotates;
    nor is an empty file rotated, however long the line."""

    _size = 0
    _regular = True

    def _open(self):  # noqa: ANN202 - logging's own signature
        stream = super()._open()
        self._regular = Path(self.baseFilename).is_file()
        self._size = os.fstat(stream.fileno()).st_size if self._regular else 0
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            if self.stream is None:  # opened lazily (delay), or closed by a rollover
                self.stream = self._open()
            size = len(line) if line.isascii() else len(
                line.encode(self.encoding or "utf-8", "replace"))
            if self._full(size):
                self.doRollover()  # opens the new file again, unless delay is set
                if self.stream is None:
                    self.stream = self._open()
            self.stream.write(line)
            self.stream.flush()
            self._size += size
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's rule: a log line never raises
            self.handleError(record)

    def _full(self, size: int) -> bool:
        """Whether a line of `size` bytes goes to a new file: the count first, then (only
        when it says so) the file's real size."""
        if (self.maxBytes <= 0 or self.backupCount <= 0 or not self._regular
                or self._size + size < self.maxBytes):
            return False
        self._size = os.fstat(self.stream.fileno()).st_size  # flushed after every line
        return 0 < self._size and self._size + size >= self.maxBytes


def configure_logging(
    path: str | Path, level: int = logging.INFO, max_bytes: int = 10_000_000, backups: int = 5
) -> logging.Handler:
    """Send orderflow's log lines to a rotating file (10 MB x 5 by default)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = SizedRotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
    except OSError as exc:
        raise LogFileError(
            f"cannot write the log file {path}: {exc.strerror}. "
            "Fix the folder's permissions or run from another directory."
        ) from None
    handler.setFormatter(SafeFormatter(FORMAT))
    logger = logging.getLogger("orderflow")
    logger.addHandler(handler)
    logger.setLevel(min(logger.level or level, level))
    return handler
