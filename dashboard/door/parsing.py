"""Strict parsing of request bodies and query strings into plain values, or an ApiError.

Shared by HTTP views and Socket.IO handlers, so both refuse the same input the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from flask import request

from scheduler.engine.text import find_unstorable

from .codes import ErrorCode
from .errors import ApiError, bad_parameter, invalid

_MISSING: Any = object()


def _no_constants(name: str) -> None:
    # Python's json accepts NaN and Infinity; JSON does not, and neither do we.
    raise ValueError(f"{name} is not valid JSON")


def json_body(required: bool = True) -> dict:
    """The request's JSON object. An empty body is {} when the body is optional."""
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
    refuse_unstorable(value)
    return expect_object(value, "the body")


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


def only_fields(body: dict, allowed: Iterable[str]) -> None:
    unknown = set(body) - set(allowed)
    if unknown:
        raise invalid(f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")


def int_field(body: dict, name: str, low: int, high: int, default: int = _MISSING) -> int:
    """An integer field within [low, high]; booleans and floats are refused."""
    value = body.get(name, default)
    if value is _MISSING:
        raise invalid(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"{name} must be an integer from {low} to {high}")
    return value


def optional_text(body: dict, name: str, max_len: int = 200) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise invalid(f"{name} must be a non-empty string of at most {max_len} characters")
    return value


def optional_list(body: dict, name: str, max_items: int, item_max: int = 200) -> list[str]:
    """A list of non-empty strings (at most `max_items`, each at most `item_max` long);
    [] when absent."""
    value = body.get(name, [])
    if not isinstance(value, list) or len(value) > max_items or not all(
        isinstance(v, str) and v and len(v) <= item_max for v in value
    ):
        raise invalid(f"{name} must be a list of at most {max_items} non-empty strings of at "
                      f"most {item_max} characters")
    return value


def number_arg(name: str) -> float | None:
    """A finite number query parameter (e.g. a Unix time), or None when absent."""
    raw = request.args.get(name, "")
    if raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise bad_parameter(f"{name} must be a number")
    return value


def text_arg(name: str, max_len: int = 200) -> str | None:
    """A non-blank text query parameter of at most `max_len` characters, or None."""
    raw = request.args.get(name, "")
    if raw.strip() == "":
        return None
    if len(raw) > max_len:
        raise bad_parameter(f"{name} must be at most {max_len} characters")
    return raw.strip()


def int_arg(name: str, default: int | None, low: int, high: int) -> int | None:
    """An integer query parameter within [low, high], or `default` when absent."""
    raw = request.args.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_parameter(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise bad_parameter(f"{name} must be from {low} to {high}")
    return value


def choice_arg(name: str, choices: Iterable[str]) -> str | None:
    raw = request.args.get(name, "")
    if raw == "":
        return None
    options = sorted(choices)
    if raw not in options:
        raise bad_parameter(f"{name} must be one of {', '.join(options)}")
    return raw
