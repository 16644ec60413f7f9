"""The door for a client's text: what a journal cannot hold is refused before any view runs.

The rule is scheduler/engine/text.py's: no NUL character and no lone surrogate. Here it is
applied to what a request carries outside its body, on every route at once: the path (its
parameters, such as an order id) and the query string (every parameter). A path or query
string that is not UTF-8 at all (the bytes of an encoded lone surrogate, say) is refused too,
instead of being read with replacement characters. JSON bodies are checked by the message
that reads them (scheduler/engine/fields.py), the `Idempotency-Key` header with its order
(scheduler/engine/orders.py), Socket.IO commands where they arrive
(`realtime.acknowledged`). Each refusal names the parameter.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes, urlsplit

from flask import Flask, request

from scheduler.engine.text import problem

from .errors import ApiError, bad_parameter


def _refuse(message: str) -> ApiError:
    return bad_parameter(message)


def _utf8(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _raw_path() -> bytes:
    """The path as the client sent it, percent-decoded: from the request line when the
    server keeps it (RAW_URI; PATH_INFO may already hold replacement characters)."""
    environ = request.environ
    uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if uri:
        path = urlsplit(uri).path if "://" in uri.split("?", 1)[0] else uri.split("?", 1)[0]
        return unquote_to_bytes(path.encode("latin-1", "replace"))
    return environ.get("PATH_INFO", "").encode("latin-1", "replace")


def check_path() -> None:
    """The path's parameters (`/api/orders/<order_id>`), and the path as UTF-8."""
    if _utf8(_raw_path()) is None:
        raise _refuse("the path is not valid UTF-8 text (an encoded lone surrogate, or "
                      "bytes that are not text)")
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and (why := problem(value)) is not None:
            raise _refuse(f"path parameter {name} {why}")


def check_query() -> None:
    """Every query parameter, name and value, read from the raw query string (werkzeug
    would read bytes that are not UTF-8 as replacement characters)."""
    query = request.environ.get("QUERY_STRING", "")
    for pair in query.split("&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition("=")
        name = _utf8(unquote_to_bytes(raw_name.replace("+", " ").encode("latin-1", "replace")))
        value = _utf8(unquote_to_bytes(raw_value.replace("+", " ").encode("latin-1",
                                                                          "replace")))
        if name is None or problem(name) is not None:
            raise _refuse("a query parameter's name is not storable text: "
                          f"{problem(name) if name is not None else 'it is not UTF-8'}")
        if value is None:
            raise _refuse(f"query parameter {name} is not valid UTF-8 text (an encoded "
                          "lone surrogate, or bytes that are not text)")
        if (why := problem(value)) is not None:
            raise _refuse(f"query parameter {name} {why}")


def register(app: Flask) -> None:
    """Refuse unstorable text in a request's path and query (after the token and standby
    checks, so an unauthorised caller learns nothing from it)."""

    @app.before_request
    def _text_at_the_door() -> None:
        check_path()
        check_query()
