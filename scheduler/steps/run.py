"""Running one step's handler: its outcome as (ok, value), never an exception."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping

from ..engine.text import escape, escape_all
from .context import Handler, TaskContext, resolve_handler
from .failure import TRACEBACK_CHARS, Failure, bound_traceback, failure_of, traceback_of


def run_handler(
    handlers: Mapping[str, Handler], ctx: TaskContext, *, check: bool = True
) -> tuple[bool, object]:
    """Run the step's handler: (True, result) or (False, an error message: a `Failure`
    carrying its traceback, which starts at the handler). A result that is not JSON fails
    here, where it was made (a remote worker could not even send it); the scheduler checks
    every outcome again (`check_outcome`) whoever reports it. `check=False`: a thread
    worker's, whose outcome goes straight to that door, which fails it alike: the result
    is serialised once per step instead of twice."""
    try:
        result = resolve_handler(handlers, ctx.step)(ctx)
    except Exception as exc:  # noqa: BLE001 - any handler bug is a failed attempt, not a crash
        return False, failure_of(exc, skip=1)
    return check_result(result) if check else (True, result)


async def run_handler_async(
    handlers: Mapping[str, Handler], ctx: TaskContext
) -> tuple[bool, object]:
    """`run_handler` for an `async def` handler, on an event loop."""
    try:
        result = await resolve_handler(handlers, ctx.step)(ctx)
    except asyncio.CancelledError:
        return False, "cancelled"  # timed out or stopped; reported so the slot frees
    except Exception as exc:  # noqa: BLE001 - any handler bug is a failed attempt, not a crash
        return False, failure_of(exc, skip=1)
    return check_result(result)


def check_result(result: object) -> tuple[bool, object]:
    """Results are journaled and served as JSON: anything else is a failed attempt."""
    try:
        json.dumps(result, allow_nan=False)
    except ValueError:
        return False, "the result is not valid JSON (NaN or infinity)"
    except TypeError as exc:
        return False, f"the result is not JSON: {exc}"
    return True, result


# In a result as JSON (ASCII): the escapes of a NUL and of surrogates (a pair, one
# non-BMP character, matches too; escaping then finds nothing to change).
_MAYBE_UNSTORABLE = re.compile(r"\\u(?:0000|d[89a-f])")


def check_outcome(
    ok: bool, value: object, max_result_bytes: int, max_error_chars: int,
    max_traceback_chars: int = TRACEBACK_CHARS,
) -> tuple[bool, object]:
    """What may be recorded of an attempt: a result that is JSON within `max_result_bytes`
    (journaled and served as JSON; anything else is a failed attempt saying why), or an
    error message of at most `max_error_chars` characters, a `Failure` whose traceback (if
    it has one) is at most about `max_traceback_chars`.

    The one door for what any worker (a thread or a remote process) reports: text a
    journal cannot hold (a NUL, a lone surrogate: an error quoting a gateway's response
    body, say) is escaped visibly here (engine/text.py), so it never reaches the journal."""
    if ok:
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            # Says which, as the error it is (the same as a worker that checked it first).
            ok, value = check_result(value)
        else:
            if _MAYBE_UNSTORABLE.search(text) is not None:
                value = escape_all(value)
                text = json.dumps(value)
            size = len(text.encode())
            if size > max_result_bytes:
                return False, (f"the result is too large: {size} bytes "
                               f"(at most {max_result_bytes})")
            return True, value
    error = escape(str(value))
    if len(error) > max_error_chars:
        cut = len(error) - max_error_chars
        error = f"{error[:max_error_chars]}... ({cut} more characters cut)"
    trace = traceback_of(value)
    if isinstance(trace, str) and trace:
        # Escaped like the message: a frame may quote a line holding a NUL.
        return False, Failure(error, bound_traceback(escape(trace), max_traceback_chars))
    return False, Failure(error)
