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
    OrderValidationError,
    Overloaded,
    UnknownOrder,
    UnknownWorker,
    UnknownWorkflow,
)
from scheduler.engine.errors import UnstorableText
from scheduler.journal.base import CommitPending
from scheduler.journal.schema import StoreError
from scheduler.journal.writer import Deposed

log = logging.getLogger("orderflow.api")


class ApiError(Exception):
    """A request the API refuses, with the status and a stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def invalid(message: str) -> ApiError:
    """Well-formed JSON whose values are wrong (a missing field, a bad type, out of range)."""
    return ApiError(422, "validation_error", message)


# Most specific first: UnknownOrder is also a KeyError, UnknownWorkflow also a ValueError.
_SCHEDULER_ERRORS: list[tuple[type[Exception], int, str]] = [
    (UnknownOrder, 404, "not_found"),
    (UnknownWorker, 404, "not_found"),
    (UnknownWorkflow, 422, "validation_error"),
    (OrderValidationError, 422, "validation_error"),
    (ConfigError, 422, "validation_error"),
    (Conflict, 409, "conflict"),
    # A lookup with text no journal can hold (refused at the door first; boundary.py).
    (UnstorableText, 400, "invalid_parameter"),
    # This server stopped leading (another one leads the database now): ask the leader.
    (Deposed, 503, "standby"),
    # An order accepted but not committed yet (an idempotency key re-posted meanwhile).
    (CommitPending, 503, "commit_pending"),
    # The journal cannot be written: nothing can be accepted durably until it is fixed.
    (StoreError, 503, "journal_unavailable"),
]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def describe(exc: BaseException) -> ApiError:
    """The API answer for any exception; unexpected ones become a logged, opaque 500."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, Overloaded):
        return ApiError(503, "overloaded", str(exc), {"Retry-After": str(exc.retry_after)})
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
    return ApiError(500, "internal_error", "internal error; the server logged the details")


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
