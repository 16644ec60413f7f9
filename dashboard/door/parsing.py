"""Strict parsing of request bodies and query strings into plain values, or an ApiError.

A body is parsed here and read by its message (scheduler/engine/fields.py): the order's in
the engine, the others in the actions, which Socket.IO handlers share, so both refuse the
same input the same way. A query string is read here by its message (`read_query`).
"""

from __future__ import annotations

import json
from typing import Any

from flask import request

from scheduler.engine.fields import Field, Kind, Message, MessageError
from scheduler.engine.text import find_unstorable

from .codes import ErrorCode
from .errors import ApiError, bad_parameter, invalid

_MISSING: Any = object()


def _no_constants(name: str) -> None:
    # Python's json accepts NaN and Infinity; JSON does not, and neither do we.
    raise ValueError(f"{name} is not valid JSON")


def json_body(required: bool = True) -> Any:
    """The request's JSON value, parsed once; its message checks it (an object, its fields,
    its text). An empty body is {} when the body is optional."""
    data = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH: 413 from werkzeug
    limit = request.max_content_length
    if limit is not None and request.content_length is None and len(data) >= limit:
        # A chunked body: werkzeug stops reading at the limit without a word, which would
        # be parsed as truncated JSON. One more byte on the wire means it was too large.
        if request.environ["wsgi.input"].read(1):
            raise ApiError(413, ErrorCode.PAYLOAD_TOO_LARGE,
                           f"the request body exceeds {limit} bytes")
    if not data:
        if required:
            raise ApiError(400, ErrorCode.BAD_REQUEST, "a JSON object body is required")
        return {}
    if not request.is_json:
        raise ApiError(
            415, ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"expected Content-Type: application/json, got {request.mimetype or 'none'!r}",
        )
    try:
        value = json.loads(data, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, ErrorCode.INVALID_JSON, f"malformed JSON: {exc}") from None
    return value


def refuse_unstorable(value: Any) -> None:
    """A client's JSON (a body, a Socket.IO command) holding text no journal can store (a
    NUL, a lone surrogate; scheduler/engine/text.py) anywhere is refused with a 422 that
    names the field ("items[0].sku contains a NUL character ...")."""
    found = find_unstorable(value, "" if isinstance(value, dict) else "the value")
    if found is not None:
        raise invalid(found)


def expect_object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise invalid(f"{what} must be a JSON object")
    return value


def int_field(body: dict, name: str, low: int, high: int, default: int = _MISSING) -> int:
    """An integer field within [low, high]; booleans and floats are refused."""
    value = body.get(name, default)
    if value is _MISSING:
        raise invalid(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"{name} must be an integer from {low} to {high}")
    return value


def read_query(message: Message) -> dict:
    """The query string read by its message: each field's text as its type (blank: absent,
    so its default), checked by its rules; 400 naming the parameter. Its text is storable
    already (boundary.py refuses any parameter that is not, on every route)."""
    values = {}
    for field in message.fields:
        raw = request.args.get(field.name)
        value = None if raw is None else _query_value(field, raw)
        if value is not None:
            values[field.name] = value
    try:
        return message.check(values, "")
    except MessageError as exc:
        raise bad_parameter(str(exc)) from None


def _query_value(field: Field, raw: str) -> Any:
    """A parameter's text as its field's type (None: blank); integers in decimal, numbers as
    float() reads them, text stripped."""
    text = raw.strip()
    if text == "":
        return None
    try:
        if field.kind is Kind.INTEGER:
            return int(text)
        if field.kind is Kind.NUMBER:
            return float(text)
    except ValueError:
        raise bad_parameter(f"{field.name} must be {field.rule()}") from None
    return text
