"""The engine's field tables (scheduler/engine/fields.py) written out for clients: as JSON
Schema for the OpenAPI document, and as the limits of the page's form inputs.

Nothing here decides a rule; each is translated from the one declaration, so the document,
the page and the server's checks say the same thing. Text patterns use only what Python's
`re`, ECMA-262 (JSON Schema's and HTML's regular expressions) and Rust's `regex` (the JSON
Schema validator the fuzz tests use) read alike: character classes of escaped code points.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from scheduler.engine.fields import BLANK, ISO_TIME, Field, Kind, Message

# Workflow names and other closed sets only the running server knows (Field.one_of).
Sets = Mapping[str, Sequence[str]]

def _char_class(chars: str) -> str:
    """The inside of a regular expression's character class matching `chars`: escaped code
    points, runs written as ranges."""
    points = sorted(ord(c) for c in chars)
    parts, start = [], 0
    for i in range(1, len(points) + 1):
        if i == len(points) or points[i] != points[i - 1] + 1:
            first, last = points[start], points[i - 1]
            parts.append(f"\\u{first:04x}" if first == last
                         else f"\\u{first:04x}-\\u{last:04x}")
            start = i
    return "".join(parts)


_BLANK_CLASS = _char_class(BLANK)
# No NUL (nor a lone surrogate, which no JSON Schema string can hold): what a journal stores.
STORABLE = "^[^\\x00]*$"
# Storable, with at least one character that is not blank.
NOT_BLANK = f"^[^\\x00]*[^\\x00{_BLANK_CLASS}][^\\x00]*$"
# The same for an HTML input, whose pattern must match the whole value (and holds no NUL).
HTML_NOT_BLANK = f".*[^{_BLANK_CLASS}].*"


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def field_schema(field: Field, sets: Sets) -> dict:
    """The JSON Schema of one field's value."""
    if isinstance(field.of, Message) and field.kind is Kind.OBJECT:
        return ref(field.of.name)
    if field.kind in (Kind.TIME, Kind.ANY):
        return _special(field)
    schema: dict = {"type": field.kind.value}
    if field.description:
        schema["description"] = field.description
    closed = field.choices is not None or (field.one_of and field.one_of in sets)
    if field.kind is Kind.TEXT and not closed:
        _put(schema, "minLength", field.min_length)
        _put(schema, "maxLength", field.max_length)
        schema["pattern"] = NOT_BLANK if field.not_blank else STORABLE
    elif field.kind in (Kind.INTEGER, Kind.NUMBER):
        _put(schema, "minimum", field.minimum)
        _put(schema, "maximum", field.maximum)
    elif field.kind is Kind.LIST:
        if isinstance(field.of, Message):
            schema["items"] = ref(field.of.name)
        elif field.of is not None:
            schema["items"] = field_schema(field.of, sets)
        _put(schema, "minItems", field.min_items)
        _put(schema, "maxItems", field.max_items)
    if field.choices is not None:
        schema["enum"] = list(field.choices)
    elif field.one_of and field.one_of in sets:
        schema["enum"] = list(sets[field.one_of])
    _put(schema, "default", field.default)
    return schema


# Any JSON value a journal can hold: no NUL in its text, keys included (a lone surrogate no
# JSON Schema string can hold anyway). Recursive: components/schemas/StorableJson.
STORABLE_JSON = {
    "description": "any JSON value with no NUL character in its text (strings and keys)",
    "anyOf": [
        {"type": ["null", "boolean", "number"]},
        {"type": "string", "pattern": STORABLE},
        {"type": "array", "items": ref("StorableJson")},
        {"type": "object", "propertyNames": {"pattern": STORABLE},
         "additionalProperties": ref("StorableJson")},
    ],
}


def _special(field: Field) -> dict:
    """A time (ISO-8601 text or bounded Unix seconds) or any JSON value a journal can hold
    (STORABLE_JSON)."""
    schema: dict = {}
    if field.kind is Kind.ANY:
        schema = ref("StorableJson")
    if field.description:
        schema["description"] = field.description
    if field.kind is Kind.TIME:
        seconds = {"type": "number"}
        _put(seconds, "minimum", field.minimum)
        _put(seconds, "maximum", field.maximum)
        schema["oneOf"] = [{"type": "string", "pattern": ISO_TIME}, seconds]
    return schema


def message_schema(message: Message, sets: Sets) -> dict:
    """The JSON Schema of a message: an object of its fields and no others."""
    schema: dict = {"type": "object"}
    if message.description:
        schema["description"] = message.description
    required = [f.name for f in message.fields if f.required]
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    schema["properties"] = {f.name: field_schema(f, sets) for f in message.fields}
    if message.min_fields:
        schema["minProperties"] = message.min_fields
    return schema


def messages_in(message: Message) -> Iterator[Message]:
    """`message` and every message nested in it (an order's items), each once."""
    yield message
    for field in message.fields:
        inner = field.of
        while isinstance(inner, Field):
            inner = inner.of
        if isinstance(inner, Message):
            yield from messages_in(inner)


def parameters(message: Message, where: str, sets: Sets) -> list[dict]:
    """A message read from the query string (or headers) as OpenAPI parameters."""
    return [{"name": f.name, "in": where, "required": f.required,
             "schema": field_schema(f, sets), **({"description": f.description}
                                                 if f.description else {})}
            for f in message.fields]


def form_limits(field: Field) -> dict[str, str]:
    """The HTML attributes that hold an input to `field`'s rules (for Jinja's xmlattr):
    required, maxlength and pattern for text; min, max and step for numbers."""
    attributes: dict[str, str] = {}
    if field.required:
        attributes["required"] = ""
    if field.kind is Kind.TEXT:
        if field.max_length is not None:
            attributes["maxlength"] = str(field.max_length)
        if field.not_blank:
            attributes["pattern"] = HTML_NOT_BLANK
    elif field.kind in (Kind.INTEGER, Kind.NUMBER):
        if field.minimum is not None:
            attributes["min"] = _html_number(field.minimum)
        if field.maximum is not None:
            attributes["max"] = _html_number(field.maximum)
        if field.kind is Kind.INTEGER:
            attributes["step"] = "1"
    return attributes


def _html_number(value: float) -> str:
    """1000000000, not 1e+09 (both are valid HTML numbers; the first reads better)."""
    if float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(float(value))


def _put(schema: dict, key: str, value: object) -> None:
    if value is not None:
        schema[key] = value
