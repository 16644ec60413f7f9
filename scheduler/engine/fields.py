"""One declaration per message: a small table of fields that a message is checked against.

A message a client sends (an order, a chaos setting, a query string) is declared once, as a
`Message` of `Field`s: its type, whether it is required, its bounds. The engine checks data
with it (`Message.read`), for Python callers of `Cluster` as for HTTP; the web layer writes
the OpenAPI document's JSON Schema and the page's form limits from the same table
(dashboard/api/schema.py), so the three cannot drift apart. Standard library only, like the
rest of the engine.

Each rule here is one JSON Schema can state exactly, so what the document allows is what
`read` accepts, and the reverse (tests/test_api_schema.py holds the two to each other on
generated data): an integer is any JSON number without a fraction (1.0 is 1), text is
counted in code points and holds no NUL or lone surrogate (scheduler/engine/text.py), and
"blank" means made only of the characters in BLANK, the whitespace of Python and of JSON
Schema's regular expressions (ECMA-262) together. A null is a value, never an absent field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from functools import cached_property
from typing import Any

from .text import find_unstorable, storable

_ABSENT: Any = object()


class MessageError(ValueError):
    """Data that does not fit its message; the text names the field ("items[0].qty must
    be an integer from 1 to 1000000")."""


class Kind(StrEnum):
    """A field's JSON type (its value is JSON Schema's name for it)."""

    TEXT = "string"
    INTEGER = "integer"
    NUMBER = "number"
    LIST = "array"
    OBJECT = "object"
    # A point in time: ISO-8601 text (ISO_TIME) or Unix seconds, both within the field's
    # bounds (Unix seconds); read as Unix seconds.
    TIME = "time"
    # Any JSON value a journal can hold (a signal's payload).
    ANY = "any"
    BOOLEAN = "boolean"  # true or false (a command's switch: dry_run)


# ISO-8601 as a time is read: date, T (or a space), hours and minutes, optional seconds and
# fraction, an optional zone (none: UTC). Years 2000 to 2099; a day past its month's end
# (Feb 30) runs on into the next month, so every text this matches is a time.
ISO_TIME = ("^(20[0-9][0-9])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[T ]([01][0-9]|2[0-3])"
            ":([0-5][0-9])(?::([0-5][0-9])(?:[.]([0-9]{1,6}))?)?"
            "(Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?$")
_ISO_TIME = re.compile(ISO_TIME)


def iso_seconds(text: str) -> float | None:
    """Unix seconds of `text` if it matches ISO_TIME, else None."""
    match = _ISO_TIME.fullmatch(text)  # `$` alone would let a final newline through
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    tz = timezone.utc
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    start = datetime(int(year), int(month), 1, int(hour), int(minute), int(second or 0),
                     int((fraction or "0").ljust(6, "0")), tzinfo=tz)
    return (start + timedelta(days=int(day) - 1)).timestamp()


# Whitespace to Python (str.isspace) and to ECMA-262's \s, the regular expressions of JSON
# Schema and HTML: text made only of these is blank, here and in every pattern derived.
BLANK = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
         "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")


def _text_rule(field: Field) -> str:
    what = "a non-blank string" if field.not_blank else "a string"
    low, high = field.min_length, field.max_length
    if low is not None and low > 1 and high is not None:
        return f"{what} of {low} to {high} characters"
    if low == 1 and not field.not_blank:
        what = "a non-empty string"
    return f"{what} of at most {high} characters" if high is not None else what


def _number_text(value: float) -> str:
    """1000000000 rather than 1e+09; 0.5 as it is."""
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e16):
        return str(int(value))
    return f"{value:g}"


@dataclass(frozen=True)
class Field:
    """One field of a message: its name, JSON type and the rules its value follows."""

    name: str
    kind: Kind
    required: bool = False
    # The value an absent field takes (None: it stays absent).
    default: Any = None
    description: str = ""
    # Text: bounds on its length in code points; not_blank: some character not in BLANK.
    min_length: int | None = None
    max_length: int | None = None
    not_blank: bool = False
    # Numbers: inclusive bounds.
    minimum: float | None = None
    maximum: float | None = None
    # A closed set of values known here.
    choices: tuple[Any, ...] | None = None
    # A closed set known only where the server runs (e.g. "workflows": its app's workflow
    # names): not checked here (the core refuses an unknown workflow), named in documents.
    one_of: str = ""
    # A list's items (a Field) or an object's fields (a Message); a list's bounds.
    of: Field | Message | None = None
    min_items: int | None = None
    max_items: int | None = None

    def rule(self) -> str:
        """What a value must be, in words, for error messages ("an integer from 1 to 32")."""
        if self.choices is not None:
            return "one of " + ", ".join(f'"{c}"' if isinstance(c, str) else str(c)
                                         for c in self.choices)
        if self.kind is Kind.TEXT:
            return _text_rule(self)
        if self.kind is Kind.TIME:
            return ("an ISO-8601 time (2026-12-24T09:00:00Z; no zone: UTC) from year 2000 to "
                    f"2099, or Unix seconds from {_number_text(self.minimum)} to "
                    f"{_number_text(self.maximum)}")
        if self.kind is Kind.ANY:
            return "a JSON value"
        if self.kind is Kind.BOOLEAN:
            return "true or false"
        if self.kind in (Kind.INTEGER, Kind.NUMBER):
            what = "an integer" if self.kind is Kind.INTEGER else "a number"
            low, high = self.minimum, self.maximum
            if low is not None and high is not None:
                return f"{what} from {_number_text(low)} to {_number_text(high)}"
            if low is not None:
                return f"{what} >= {_number_text(low)}"
            return f"{what} <= {_number_text(high)}" if high is not None else what
        if self.kind is Kind.LIST:
            low, high = self.min_items or 0, self.max_items
            if low == high:
                return f"a list of {low} items"
            if high is None:
                return f"a list of at least {low} items" if low else "a list"
            return f"a list of {low} to {high} items" if low else f"a list of at most {high} items"
        return "a JSON object"

    def check(self, value: Any, where: str) -> Any:
        """The clean value, or MessageError naming `where` (text no journal can hold is
        refused too; `read` says why)."""
        kind = self.kind
        if kind is Kind.TEXT:
            ok = isinstance(value, str) and storable(value) and self._text_fits(value)
        elif kind is Kind.INTEGER:
            value = _integer(value)
            ok = value is not None and self._in_bounds(value)
        elif kind is Kind.NUMBER:
            ok = _is_number(value) and self._in_bounds(value)
        elif kind is Kind.TIME:
            if isinstance(value, str):
                value = iso_seconds(value)
                ok = value is not None
            else:
                ok = _is_number(value) and self._in_bounds(value)
        elif kind is Kind.ANY:
            ok = find_unstorable(value, where) is None
        elif kind is Kind.BOOLEAN:
            ok = isinstance(value, bool)
        elif kind is Kind.LIST:
            ok = isinstance(value, list) and self._length_fits(value)
            if ok and self.of is not None:
                value = [self.of.check(item, f"{where}[{i}]") for i, item in enumerate(value)]
        elif isinstance(self.of, Message):
            return self.of.check(value, where)
        else:
            ok = isinstance(value, dict) and find_unstorable(value, where) is None
        if not ok or (self.choices is not None and value not in self.choices):
            raise MessageError(f"{where} must be {self.rule()}")
        return value

    def read(self, value: Any, error: type[Exception] = MessageError) -> Any:
        """A lone value (a header) checked once; `error` says what is wrong with it, text a
        journal cannot hold before any other rule."""
        try:
            return self.check(value, self.name)
        except MessageError as exc:
            raise error(find_unstorable(value, self.name) or str(exc)) from None

    def _text_fits(self, value: str) -> bool:
        if self.min_length is not None and len(value) < self.min_length:
            return False
        if self.max_length is not None and len(value) > self.max_length:
            return False
        return not self.not_blank or not is_blank(value)

    def _in_bounds(self, value: float) -> bool:
        # Compared as they are: a 400-digit integer is valid JSON and would overflow float().
        return ((self.minimum is None or value >= self.minimum)
                and (self.maximum is None or value <= self.maximum))

    def _length_fits(self, value: list) -> bool:
        return ((self.min_items is None or len(value) >= self.min_items)
                and (self.max_items is None or len(value) <= self.max_items))


def is_blank(text: str) -> bool:
    """True if `text` holds no character outside BLANK (so "" is blank)."""
    return not text.strip(BLANK)


def _integer(value: Any) -> int | None:
    """A JSON integer: an int, or a float without a fraction (JSON Schema counts 1.0 as an
    integer); never a bool."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


@dataclass(frozen=True)
class Message:
    """A JSON object a client sends: its fields, each at most once, and no others."""

    # Its name in the API description (components/schemas/<name>).
    name: str
    fields: tuple[Field, ...]
    # How an error names the whole ("an order must be a JSON object").
    what: str = "the body"
    description: str = ""
    # At least this many fields must be given (PUT /api/chaos changes one or more).
    min_fields: int = 0
    # The error raised (a subclass of ValueError the caller maps; MessageError by default).
    error: type[Exception] = MessageError

    def field(self, name: str) -> Field:
        """The field called `name` (KeyError if there is none)."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def read(self, data: Any) -> dict:
        """`data` checked once, whole. Returns a clean copy: the fields given, and the
        defaults of those absent. Raises `self.error` naming the field at fault: the first
        text a journal cannot hold anywhere in `data` (keys too), else the first rule
        broken."""
        try:
            return self.check(data, "")
        except MessageError as exc:
            found = find_unstorable(data, "" if isinstance(data, dict) else self.what)
            raise self.error(found or str(exc)) from None

    @cached_property
    def _names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)

    def check(self, data: Any, where: str) -> dict:
        """The rules; MessageError naming the field."""
        if not isinstance(data, dict):
            raise MessageError(f"{where or self.what} must be a JSON object")
        if not self._names.issuperset(data):
            unknown = [str(name) for name in data if name not in self._names]
            names = ", ".join(sorted(unknown))
            raise MessageError(f"{where} has unknown field(s): {names}" if where
                               else f"unknown field(s): {names}")
        if len(data) < self.min_fields:
            raise MessageError(f"{where or self.what} must give at least {self.min_fields} of "
                               + ", ".join(f.name for f in self.fields))
        clean = {}
        for f in self.fields:
            name = f.name
            value = data.get(name, _ABSENT)
            if value is not _ABSENT:
                clean[name] = f.check(value, f"{where}.{name}" if where else name)
            elif f.required:
                raise MessageError(f"{where}.{name} is required" if where
                                   else f"{name} is required")
            elif f.default is not None:
                clean[name] = f.default
        return clean
