"""One error shape for HTTP and Socket.IO: `{"error": {"code", "message"}}` with a 4xx.

Views raise; this module decides the status. Scheduler errors map by class, so a view never
needs a try/except for the ordinary "unknown id" or "not now" answers.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from scheduler import (
    ConfigError,
    Conflict,
    Overloaded,
    UnknownOrder,
    UnknownStep,
    UnknownWorker,
    UnknownWorkflow,
)
from scheduler.engine.errors import (
    UnknownDefinition,
    UnknownSchedule,
    UnknownWait,
    UnstorableText,
)
from scheduler.engine.fields import MessageError
from scheduler.journal.base import CommitPending
from scheduler.journal.schema import StoreError
from scheduler.journal.writer import Deposed

from .codes import ErrorCode

log = logging.getLogger("orderflow.api")


class ApiError(Exception):
    """A request the API refuses, with the status and a stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def invalid(message: str) -> ApiError:
    """Well-formed JSON whose values are wrong (a missing field, a bad type, out of range)."""
    return ApiError(422, ErrorCode.VALIDATION_ERROR, message)


def bad_parameter(message: str) -> ApiError:
    """A query or path parameter that is wrong (not a number, out of range, unstorable text)."""
    return ApiError(400, ErrorCode.INVALID_PARAMETER, message)


# Most specific first: UnknownOrder is also a KeyError, UnknownWorkflow also a ValueError.
_SCHEDULER_ERRORS: list[tuple[type[Exception], int, ErrorCode]] = [
    (UnknownOrder, 404, ErrorCode.NOT_FOUND),
    (UnknownWorker, 404, ErrorCode.NOT_FOUND),
    (UnknownStep, 404, ErrorCode.NOT_FOUND),
    (UnknownSchedule, 404, ErrorCode.NOT_FOUND),
    (UnknownWorkflow, 422, ErrorCode.VALIDATION_ERROR),
    (UnknownDefinition, 404, ErrorCode.NOT_FOUND),
    # A signal the order never waits for (the message names the waits it has).
    (UnknownWait, 422, ErrorCode.VALIDATION_ERROR),
    # A body that does not fit its message (an order's: OrderValidationError).
    (MessageError, 422, ErrorCode.VALIDATION_ERROR),
    (ConfigError, 422, ErrorCode.VALIDATION_ERROR),
    (Conflict, 409, ErrorCode.CONFLICT),
    # A lookup with text no journal can hold (refused at the door first; boundary.py).
    (UnstorableText, 400, ErrorCode.INVALID_PARAMETER),
    # This server stopped leading (another one leads the database now): ask the leader.
    (Deposed, 503, ErrorCode.STANDBY),
    # An order accepted but not committed yet (an idempotency key re-posted meanwhile).
    (CommitPending, 503, ErrorCode.COMMIT_PENDING),
    # The journal cannot be written: nothing can be accepted durably until it is fixed.
    (StoreError, 503, ErrorCode.JOURNAL_UNAVAILABLE),
]

_HTTP_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
}


def describe(exc: BaseException) -> ApiError:
    """The API answer for any exception; unexpected ones become a logged, opaque 500."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, Overloaded):
        return ApiError(503, ErrorCode.OVERLOADED, str(exc),
                        {"Retry-After": str(exc.retry_after)})
    for cls, status, code in _SCHEDULER_ERRORS:
        if isinstance(exc, cls):
            # A 503 says when to ask again.
            retry = {"Retry-After": str(getattr(exc, "retry_after", 1))} if status == 503 else None
            return ApiError(status, code, str(exc), retry)
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        headers = {k: v for k, v in exc.get_headers() if k.lower() in ("allow", "www-authenticate")}
        code = _HTTP_CODES.get(status, exc.name.lower().replace(" ", "_"))
        return ApiError(status, code, exc.description or exc.name, headers)
    log.error("unexpected error while handling a request", exc_info=exc)
    return ApiError(500, ErrorCode.INTERNAL_ERROR,
                    "internal error; the server logged the details")


def error_body(error: ApiError) -> dict:
    return {"error": {"code": error.code, "message": error.message}}


def register(app: Flask) -> None:
    """Every error a request can raise is answered as JSON, never as an HTML page."""

    @app.errorhandler(Exception)
    def _any_error(exc: Exception):
        error = describe(exc)
        response = jsonify(error_body(error))
        response.status_code = error.status
        response.headers.update(error.headers)
        return response
