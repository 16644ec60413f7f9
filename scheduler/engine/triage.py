"""Failure triage: failed orders grouped by the step that failed and why, so an operator works
through a few groups ("payment · card declined: 37 orders") instead of a list of thousands.

The reason is the step's last error with what varies from order to order (attempt numbers,
counts, ids) masked, so the same failure of many orders falls in one group. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# Runs of digits, and hex or base-36 tokens with a digit in them (ids, references).
_VARYING = re.compile(r"\b(?=[0-9a-z_-]*\d)[0-9a-z_-]{6,}\b|\d+(?:\.\d+)?", re.IGNORECASE)
MASK = "#"
MAX_REASON = 300  # characters of a reason shown for a group


def reason_of(error: str | None) -> str:
    """A failed step's error with what varies between orders masked: the group's name."""
    if not error:
        return "(no error recorded)"
    reason = _VARYING.sub(MASK, " ".join(error.split()))
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"


@dataclass
class FailureGroup:
    """Failed orders whose same step failed for the same reason, newest first."""

    step: str
    reason: str
    example: str  # the newest order's full error
    orders: list[str] = field(default_factory=list)
    last_at: float = 0.0  # wall clock of the newest failure

    def view(self, max_ids: int) -> dict:
        return {
            "step": self.step,
            "reason": self.reason,
            "count": len(self.orders),
            "example": self.example,
            "last_at": round(self.last_at, 3),
            "orders": self.orders[:max_ids],
        }


def group_failures(
    failed: Iterable[tuple[str, str, str | None, float]], max_ids: int
) -> list[dict]:
    """Group (order id, failed step, its error, finished at) newest first: the biggest
    groups first, each listing at most `max_ids` order ids (newest first)."""
    groups: dict[tuple[str, str], FailureGroup] = {}
    for order_id, step, error, finished_at in failed:
        key = (step, reason_of(error))
        group = groups.get(key)
        if group is None:
            group = groups[key] = FailureGroup(step, key[1], error or "", last_at=finished_at)
        group.orders.append(order_id)
    ordered = sorted(groups.values(), key=lambda g: (-len(g.orders), -g.last_at, g.step))
    return [g.view(max_ids) for g in ordered]
