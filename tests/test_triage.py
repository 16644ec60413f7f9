"""Failure triage: a failed step's error with what varies masked names its group."""

from __future__ import annotations

from scheduler.engine.triage import MAX_REASON, group_failures, reason_of


def test_numbers_and_ids_are_masked_so_one_failure_of_many_orders_is_one_reason():
    first = "gave up after 4 attempts: card declined (simulated, attempt 4)"
    other = "gave up after 2 attempts: card declined (simulated, attempt 2)"
    assert reason_of(first) == reason_of(other) == (
        "gave up after # attempts: card declined (simulated, attempt #)")
    assert reason_of("charge ch_3f9a1c2b77 refused") == reason_of("charge ch_0000aa11 refused")
    assert reason_of("timed out after 0.25 s") == "timed out after # s"
    assert reason_of("out of stock") == "out of stock"  # words stay
    assert reason_of("line one\n  line two") == "line one line two"


def test_a_missing_or_huge_error_still_names_a_group():
    assert reason_of(None) == reason_of("") == "(no error recorded)"
    long = reason_of("x" * 5000)
    assert len(long) == MAX_REASON and long.endswith("…")


def test_groups_are_by_step_and_reason_biggest_first_with_their_newest_orders():
    failed = [
        ("o-5", "payment", "declined (attempt 4)", 5.0),
        ("o-4", "shipping", "carrier down", 4.0),
        ("o-3", "payment", "declined (attempt 2)", 3.0),
        ("o-2", "packing", "declined (attempt 1)", 2.0),
        ("o-1", "payment", "declined (attempt 1)", 1.0),
    ]
    groups = group_failures(failed, max_ids=2)
    assert [(g["step"], g["reason"], g["count"]) for g in groups] == [
        ("payment", "declined (attempt #)", 3),
        ("shipping", "carrier down", 1),
        ("packing", "declined (attempt #)", 1),
    ]
    assert groups[0]["orders"] == ["o-5", "o-3"]  # capped, newest first
    assert groups[0]["example"] == "declined (attempt 4)" and groups[0]["last_at"] == 5.0


def test_a_reason_of_exactly_the_cap_is_kept_whole():
    assert reason_of("x" * MAX_REASON) == "x" * MAX_REASON
    assert reason_of("x" * (MAX_REASON + 1)) == "x" * (MAX_REASON - 1) + "…"


def test_a_group_gives_its_last_failure_to_the_millisecond_and_an_unrecorded_error_as_empty():
    [group] = group_failures([("o-1", "payment", None, 1234.56789)], max_ids=5)
    assert group["last_at"] == 1234.568
    assert (group["reason"], group["example"]) == ("(no error recorded)", "")
