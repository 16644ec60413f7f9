"""The recurring schedules' invariants, checked from a journal (a History, invariants.py).

- each scheduled time fired at most once (one `schedule_fired` per schedule and time);
- a schedule's times fired in order along seq (a stale server firing late would not be);
- each fire and its order were committed together: the fired order is in the journal
  under the key `schedule:<name>:<time>`, and every order with such a key has its fire;
- no time fired by a non-leader: on a journal with leadership terms, a fire was committed
  under the highest epoch seen so far along seq, the epoch of its order's submission.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from ..engine.cron import iso

if TYPE_CHECKING:
    from .invariants import History

KINDS = ("schedule_time_fired_twice", "schedule_times_out_of_order",
         "schedule_fire_without_its_order", "schedule_order_without_its_fire",
         "schedule_fired_by_non_leader")


def check_schedules(history: History) -> tuple[dict[str, list], int]:
    """(the violations by kind, how many fires the journal holds)."""
    found: dict[str, list] = {kind: [] for kind in KINDS}
    epochs = history.epochs
    highest = 0
    submitted_epoch: dict[str, int] = {}
    seen: set[tuple[str, float]] = set()
    latest: dict[str, float] = {}
    fired_orders: set[str] = set()
    fires = 0
    for i, event in enumerate(history.events):
        epoch = epochs[i] if epochs else 0
        highest = max(highest, epoch)
        if event["type"] == "order_submitted":
            submitted_epoch[event["order_id"]] = epoch
        if event["type"] != "schedule_fired":
            continue
        fires += 1
        name, at, order_id = event["schedule"], event["at"], event["order_id"]
        fired_orders.add(order_id)
        if (name, at) in seen:
            found["schedule_time_fired_twice"].append((name, iso(at), event["seq"]))
        seen.add((name, at))
        if at <= latest.get(name, float("-inf")):
            found["schedule_times_out_of_order"].append((name, iso(at), event["seq"]))
        latest[name] = max(at, latest.get(name, at))
        order = history.orders.get(order_id)
        if order is None or order.idempotency_key != f"schedule:{name}:{iso(at)}":
            found["schedule_fire_without_its_order"].append((name, iso(at), order_id))
        if epochs and (epoch < highest or submitted_epoch.get(order_id) != epoch):
            found["schedule_fired_by_non_leader"].append((name, iso(at), epoch, highest))
    by_key = defaultdict(list)
    for order in history.orders.values():
        key = order.idempotency_key or ""
        if key.startswith("schedule:") and order.id not in fired_orders:
            by_key[key].append(order.id)
    found["schedule_order_without_its_fire"] = sorted(by_key.items())
    return found, fires


__all__ = ["KINDS", "check_schedules"]
