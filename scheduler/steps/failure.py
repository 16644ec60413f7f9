"""A failed attempt as its worker saw it: the error message, and the traceback of where it
was raised, so an operator reads the line of code that failed, not only its last words.

A failure travels as its message (a `str`, as it always has: every reader of an error is a
reader of its message) that also carries its traceback. The worker that caught it formats
the traceback (`failure_of`), bounded; the server's door (`check_outcome` in run.py) escapes
and bounds it again, whoever reported it; the engine records it on the attempt's
`task_failed` event, which the journal keeps and the order view shows.
"""

from __future__ import annotations

import linecache
import re
import traceback as tb
from types import TracebackType

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
    return Failure(message, bound_traceback("".join(_formatted(exc, frames)).rstrip("\n"), limit))


# How Python joins a chain of exceptions in a traceback.
_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def _formatted(exc: BaseException, frames: TracebackType | None,
               seen: set[int] | None = None) -> list[str]:
    """`exc`'s traceback as Python prints it, its chain first, without the `^^^` marks under
    each line: `traceback.format_exception` finds those by parsing every line (300-400 µs a
    failure here, against 20-40 µs), and checks every file's time on disk."""
    seen = set() if seen is None else seen
    seen.add(id(exc))
    lines: list[str] = []
    cause, context = exc.__cause__, exc.__context__
    if cause is not None and id(cause) not in seen:
        lines += [*_formatted(cause, cause.__traceback__, seen), _CAUSE]
    elif context is not None and not exc.__suppress_context__ and id(context) not in seen:
        lines += [*_formatted(context, context.__traceback__, seen), _CONTEXT]
    if frames is not None:
        lines.append("Traceback (most recent call last):\n")
        for frame, number in tb.walk_tb(frames):
            code = frame.f_code
            lines.append(f'  File "{code.co_filename}", line {number}, in {code.co_name}\n')
            source = linecache.getline(code.co_filename, number, frame.f_globals).strip()
            if source:
                lines.append(f"    {source}\n")
    lines.append(_last_line(exc))
    return lines


def _last_line(exc: BaseException) -> str:
    """The traceback's last line, "module.Name: message", as Python writes it (and the
    exception's notes, a line each)."""
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the failure
        text = "<exception str() failed>"
    notes = getattr(exc, "__notes__", None)
    notes = "".join(f"{note}\n" for note in notes) if isinstance(notes, list) else ""
    return (f"{name}: {text}\n" if text else f"{name}\n") + notes


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
