"""A failed attempt as its worker saw it: the error message, and the traceback of where it
was raised, so an operator reads the line of code that failed, not only its last words.

A failure travels as its message (a `str`, as it always has: every reader of an error is a
reader of its message) that also carries its traceback. The worker that caught it formats
the traceback (`failure_of`), bounded; the server's door (`check_outcome` in run.py) escapes
and bounds it again, whoever reported it; the engine records it on the attempt's
`task_failed` event, which the journal keeps and the order view shows.
"""

from __future__ import annotations

import re
import traceback as tb

from .context import TaskError

# A worker's own bound on a traceback it sends (the server cuts it again to its
# `max_traceback_chars`): a recursion error's thousand frames are not worth a message.
TRACEBACK_CHARS = 8_000


class Failure(str):
    """An attempt's error message carrying `traceback`: where it was raised (None when a
    handler failed on purpose with TaskError, or nothing was raised: a timeout)."""

    traceback: str | None

    def __new__(cls, message: str, traceback: str | None = None) -> Failure:
        failure = super().__new__(cls, message)
        failure.traceback = traceback
        return failure



def traceback_of(error: object) -> str | None:
    """The traceback a failure value carries (None for a plain message)."""
    return getattr(error, "traceback", None)


def failure_of(exc: BaseException, skip: int = 0, limit: int = TRACEBACK_CHARS) -> Failure:
    """`exc` as a failed attempt: "RuntimeError: message" (a TaskError's message alone) with
    its traceback, bounded to `limit` characters. `skip`: the innermost frames of the
    caller's own to leave out (the runner that called the handler), so the traceback starts
    at the handler. A TaskError is a failure the handler chose and worded: it carries a
    traceback only when it was raised from another exception (`raise TaskError(...) from
    exc`), whose traceback is the one that matters."""
    if isinstance(exc, TaskError):
        message = str(exc)
        chained = exc.__cause__ is not None or (
            exc.__context__ is not None and not exc.__suppress_context__)
        if not chained:
            return Failure(message)
    else:
        message = f"{type(exc).__name__}: {exc}"
    frames = exc.__traceback__
    for _ in range(skip):
        if frames is None or frames.tb_next is None:
            break
        frames = frames.tb_next
    text = "".join(tb.format_exception(type(exc), exc, frames)).rstrip("\n")
    return Failure(message, bound_traceback(text, limit))


def bound_traceback(text: str, limit: int) -> str:
    """`text` cut to about `limit` characters, keeping its end (the innermost frames and the
    exception, what a reader looks for first) and saying how much was cut."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    return f"... ({cut} characters cut)\n{text[cut:]}"


# A frame's line in a traceback: '  File "shop.py", line 57, in invoice'.
_FRAME = re.compile(r'^\s*File "([^"]*)", line (\d+), in (.+)$', re.MULTILINE)


def raised_at(traceback: str | None) -> str | None:
    """Where a traceback's exception was raised, as "shop.py:57 in invoice" (the innermost
    frame, its file's base name): what a one-line log names. None if it names no frame."""
    if not traceback:
        return None
    frames = _FRAME.findall(traceback)
    if not frames:
        return None
    path, line, function = frames[-1]
    name = re.split(r"[/\\]", path)[-1]
    return f"{name}:{line} in {function}"


__all__ = ["TRACEBACK_CHARS", "Failure", "bound_traceback", "failure_of", "raised_at",
           "traceback_of"]
