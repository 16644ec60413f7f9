"""New order ids: time-ordered and unique across restarts, without a counter to persist."""

from __future__ import annotations

import secrets
import time

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(number: int) -> str:
    digits = []
    while number:
        number, digit = divmod(number, 36)
        digits.append(_BASE36[digit])
    return "".join(reversed(digits)) or "0"


def new_order_id() -> str:
    """A time-ordered id, unique across restarts without a counter to persist.

    Microseconds first, then 24 random bits: ids sort by creation time, and the database's
    indexes grow at their right edge instead of taking inserts at random pages.
    """
    return f"o-{_base36(time.time_ns() // 1000)}{secrets.token_hex(3)}"
