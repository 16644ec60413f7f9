"""Running one step's handler: its outcome as (ok, value), never an exception."""

from __future__ import annotations

import json
from collections.abc import Mapping

from .context import Handler, TaskContext, TaskError, resolve_handler


def run_handler(handlers: Mapping[str, Handler], ctx: TaskContext) -> tuple[bool, object]:
    """Run the step's handler: (True, result) or (False, a one-line error message)."""
    try:
        result = resolve_handler(handlers, ctx.step)(ctx)
    except TaskError as exc:
        return False, str(exc)
    except Exception as exc:  # noqa: BLE001 - any handler bug is a failed attempt, not a crash
        return False, f"{type(exc).__name__}: {exc}"
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
