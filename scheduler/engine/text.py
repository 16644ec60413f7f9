"""What text the journal can hold: the one rule, and one visible way to write what it cannot.

Neither journal can store two kinds of character: NUL (PostgreSQL's text type refuses
`\\x00`, and its JSON types refuse the escape `\\u0000`) and a lone surrogate (U+D800 to
U+DFFF on its own: not Unicode text, so neither driver can encode it to UTF-8; JSON decoding
of `"\\ud800"` makes one). SQLite would keep a NUL, but the rule is one for both journals.

Text crosses into the journal once, and each door applies the rule with this module:
- what a client sends is refused (`find_unstorable` names the field or parameter);
- what the server records itself (an attempt's error or result, a remote worker's name and
  tags, an operator's name) is escaped visibly (`escape`, `escape_all`): a NUL becomes the
  four characters `\\x00` and a lone surrogate `\\udXXX`, the notation log lines already use.
"""

from __future__ import annotations

import re
from typing import Any

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> bool:
    """True if a journal can hold `text` as it is."""
    if text.isascii():
        return "\x00" not in text
    return _UNSTORABLE.search(text) is None


def problem(text: str) -> str | None:
    """Why `text` cannot be stored ("contains a NUL character (\\x00)"), or None."""
    if storable(text):
        return None
    found = _UNSTORABLE.search(text).group()
    if found == "\x00":
        return "contains a NUL character (\\x00), which cannot be stored"
    return (f"contains a lone surrogate (\\u{ord(found):04x}), which is not Unicode text and "
            "cannot be stored")


def _visible(match: re.Match) -> str:
    found = match.group()
    return "\\x00" if found == "\x00" else f"\\u{ord(found):04x}"


def escape(text: str) -> str:
    """`text` with each NUL written as `\\x00` and each lone surrogate as `\\udXXX`."""
    if storable(text):
        return text
    return _UNSTORABLE.sub(_visible, text)


def escape_all(value: Any) -> Any:
    """A JSON-like value (dicts, lists, tuples and named tuples, strings, numbers) with every
    string in it, dict keys too, escaped; `value` itself when nothing needed it (no copy)."""
    return value if _clean(value) else _escaped(value)


def _clean(value: Any) -> bool:
    """No string in `value` needs escaping."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return all(_clean(k) and _clean(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_clean(v) for v in value)
    return True


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    if isinstance(value, tuple):  # a named tuple (a record) keeps its type
        items = [_escaped(v) for v in value]
        return value._make(items) if hasattr(value, "_make") else tuple(items)
    return value


def find_unstorable(value: Any, where: str) -> str | None:
    """The first string in a JSON-like `value` a journal cannot hold, as a message naming
    where it is ("items[0].sku contains a NUL character ..."); None if there is none.
    `where` names `value` itself ("customer", "Idempotency-Key"); "" for an object whose
    fields are named as they are ("customer", "items[0].sku")."""
    if isinstance(value, str):
        why = problem(value)
        return None if why is None else f"{where} {why}"
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and not storable(key):
                return f"a field name in {where or 'the object'} {problem(key)}"
            found = find_unstorable(item, name)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = find_unstorable(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


__all__ = ["escape", "escape_all", "find_unstorable", "problem", "storable"]
