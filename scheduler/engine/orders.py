"""Validation of incoming order data, shared by the Python API, the CLI and HTTP."""

from __future__ import annotations

import math
from typing import Any

from .text import find_unstorable

MAX_ITEMS = 1000
MAX_TEXT = 200


class OrderValidationError(ValueError):
    """The order data is malformed; the message names the field."""


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise OrderValidationError(f"{field} must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise OrderValidationError(f"{field} must be at most {MAX_TEXT} characters")
    return value


MAX_PRIORITY = 100


def validate_priority(value: Any) -> int:
    """An order's priority: an integer from -100 to 100, higher first; 0 when absent."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_PRIORITY:
        raise OrderValidationError(
            f"priority must be an integer from {-MAX_PRIORITY} to {MAX_PRIORITY}"
        )
    return value


def validate_order(data: Any) -> dict:
    """Return a clean copy of `data`: {"customer": str, "items": [{"sku", "qty", "price"}]}."""
    if not isinstance(data, dict):
        raise OrderValidationError("an order must be a JSON object")
    found = find_unstorable(data, "")  # a NUL or a lone surrogate, named: no journal holds it
    if found is not None:
        raise OrderValidationError(found)
    unknown = set(data) - {"customer", "items", "workflow", "priority"}
    if unknown:
        raise OrderValidationError(f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
    validate_priority(data.get("priority"))
    customer = _text(data.get("customer"), "customer")
    items = data.get("items")
    if not isinstance(items, list) or not items:
        raise OrderValidationError("items must be a non-empty list")
    if len(items) > MAX_ITEMS:
        raise OrderValidationError(f"items may hold at most {MAX_ITEMS} entries")
    clean_items = []
    for i, item in enumerate(items):
        where = f"items[{i}]"
        if not isinstance(item, dict):
            raise OrderValidationError(f"{where} must be an object")
        extra = set(item) - {"sku", "qty", "price"}
        if extra:
            raise OrderValidationError(f"{where} has unknown field(s): {', '.join(sorted(extra))}")
        sku = _text(item.get("sku"), f"{where}.sku")
        qty = item.get("qty")
        if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= 1_000_000:
            raise OrderValidationError(f"{where}.qty must be an integer from 1 to 1000000")
        price = item.get("price")
        if (
            isinstance(price, bool)
            or not isinstance(price, int | float)
            or not math.isfinite(price)
            or not 0 <= price <= 1e9
        ):
            raise OrderValidationError(f"{where}.price must be a number from 0 to 1e9")
        clean_items.append({"sku": sku, "qty": qty, "price": price})
    return {"customer": customer, "items": clean_items}


def validate_key(key: str | None) -> None:
    """An idempotency key a journal can store (it is kept with its order), or
    OrderValidationError naming what it holds."""
    if key is not None:
        found = find_unstorable(key, "the idempotency key")
        if found is not None:
            raise OrderValidationError(found)


def order_total(data: dict) -> float:
    return round(sum(i["qty"] * i["price"] for i in data.get("items", [])), 2)
