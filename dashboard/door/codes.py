"""The error codes of the web layer: one closed set, in `{"error": {"code", "message"}}`."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """The `error.code` of every refusal the web layer decides, over HTTP and Socket.IO alike
    (a client switches on it; JSON carries the plain word). An HTTP error werkzeug raises
    with no code here is named after its status (errors.describe)."""

    # The request itself.
    BAD_REQUEST = "bad_request"
    INVALID_JSON = "invalid_json"
    INVALID_PARAMETER = "invalid_parameter"  # a query or path parameter, or unstorable text
    VALIDATION_ERROR = "validation_error"  # well-formed JSON with wrong values
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    # The request's head, refused by the front server (server/front.py).
    REQUEST_TIMEOUT = "request_timeout"
    URI_TOO_LONG = "uri_too_long"
    HEADERS_TOO_LARGE = "headers_too_large"
    # Who may ask (auth.py).
    UNAUTHORIZED = "unauthorized"
    CROSS_SITE_REQUEST = "cross_site_request"
    MISDIRECTED_REQUEST = "misdirected_request"
    # What it asks about.
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    # Connections and joins beyond their caps (gate.py, server/front.py, the worker hub).
    TOO_MANY_CONNECTIONS = "too_many_connections"
    SERVER_BUSY = "server_busy"
    TOO_MANY_REGISTRATIONS = "too_many_registrations"
    TOO_MANY_WORKER_IDS = "too_many_worker_ids"
    # The worker protocol's order of messages (the worker hub).
    NOT_REGISTERED = "not_registered"
    ONE_PROCESS_PER_CONNECTION = "one_process_per_connection"
    # Ask again later, or elsewhere (each a 503 with Retry-After).
    OVERLOADED = "overloaded"  # too much unfinished work to accept more now
    STANDBY = "standby"  # this server does not lead: the leader is named
    COMMIT_PENDING = "commit_pending"  # accepted, not committed yet
    JOURNAL_UNAVAILABLE = "journal_unavailable"  # the journal cannot be written or read
    INTERNAL_ERROR = "internal_error"
