"""The recurring schedules' invariants (scheduler/chaos/schedule_checks.py) on hand-made
journals: each rule catches the history that breaks it, and a clean one passes."""

from __future__ import annotations

from scheduler.chaos.invariants import History, check_history
from scheduler.chaos.schedule_checks import check_schedules
from scheduler.engine.cron import iso
from scheduler.engine.records import OrderRecord

T = 1_796_637_600.0  # 2026-12-07T10:00:00Z


def order(oid: str, key: str | None) -> OrderRecord:
    return OrderRecord(oid, 1, "nightly", {}, key, T, T, "completed")


def fire(seq: int, at: float, oid: str, name: str = "tick") -> list[dict]:
    """An order's submission and its schedule's fire, as one commit writes them."""
    return [
        {"seq": seq, "ts": at, "type": "order_submitted", "order_id": oid, "step": None,
         "worker_id": None, "attempt": 0, "message": ""},
        {"seq": seq + 1, "ts": at, "type": "schedule_fired", "order_id": oid, "step": None,
         "worker_id": None, "attempt": 0, "message": "", "schedule": name, "at": at},
    ]


def journal(*fires: tuple[float, str], epochs: list[int] | None = None,
            extra_orders: tuple[OrderRecord, ...] = ()) -> History:
    events, orders = [], {}
    for i, (at, oid) in enumerate(fires):
        events += fire(2 * i + 1, at, oid)
        orders[oid] = order(oid, f"schedule:tick:{iso(at)}")
    for extra in extra_orders:
        orders[extra.id] = extra
    return History(events, orders, epochs)


def broken(history: History) -> dict[str, list]:
    found, _ = check_schedules(history)
    return {k: v for k, v in found.items() if v}


def test_a_clean_history_breaks_nothing_and_counts_its_fires():
    history = journal((T, "o1"), (T + 1, "o2"), epochs=[1, 1, 2, 2])
    assert broken(history) == {}
    assert check_schedules(history)[1] == 2
    report = check_history(history, [], max_retries=3)
    assert report["schedule_fires"] == 2 and report["schedule_time_fired_twice"] == 0


def test_a_time_fired_twice_is_caught():
    history = journal((T, "o1"), (T, "o2"))
    history.orders["o2"] = order("o2", "schedule:tick:other")
    assert list(broken(history)) == ["schedule_time_fired_twice", "schedule_times_out_of_order",
                                     "schedule_fire_without_its_order"]
    assert not check_history(history, [], max_retries=3)["ok"]


def test_times_fired_out_of_order_are_caught():
    assert list(broken(journal((T + 5, "o1"), (T, "o2")))) == ["schedule_times_out_of_order"]


def test_a_fire_whose_order_is_missing_and_an_order_without_its_fire_are_caught():
    history = journal((T, "o1"), extra_orders=(order("o9", "schedule:tick:x"),))
    del history.orders["o1"]
    assert broken(history) == {
        "schedule_fire_without_its_order": [("tick", iso(T), "o1")],
        "schedule_order_without_its_fire": [("schedule:tick:x", ["o9"])]}


def test_a_fire_by_a_deposed_leader_is_caught():
    # Epoch 2 wrote first; a fire of epoch 1 after it came from a server no longer leading.
    history = journal((T, "o1"), (T + 1, "o2"), epochs=[2, 2, 1, 1])
    assert broken(history) == {"schedule_fired_by_non_leader": [("tick", iso(T + 1), 1, 2)]}


def test_a_fire_in_another_term_than_its_order_is_caught():
    history = journal((T, "o1"), epochs=[1, 2])
    assert list(broken(history)) == ["schedule_fired_by_non_leader"]
