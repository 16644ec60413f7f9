"""Cron expressions on their own (scheduler/engine/cron.py): every field feature, the
day-of-month / day-of-week rule, leap days, time zones and daylight-saving changes, with
times passed in."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.engine.cron import Cron, CronError, iso

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def ts(text: str, tz=UTC) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def walk(expr: str, start: str, count: int, tz=UTC) -> list[str]:
    """The next `count` times after `start` (wall clock in `tz`), as ISO text in `tz`."""
    cron, t, out = Cron.parse(expr), ts(start, tz), []
    for _ in range(count):
        t = cron.next_after(t, tz)
        out.append(iso(t, tz))
    return out


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize("expr,field,values", [
    ("*/15 * * * *", "minutes", (0, 15, 30, 45)),
    ("0 9-17/4 * * *", "hours", (9, 13, 17)),
    ("5,10-12 * * * *", "minutes", (5, 10, 11, 12)),
    ("50/5 * * * *", "minutes", (50, 55)),
    ("0 0 * JAN,mar-May *", "months", (1, 3, 4, 5)),
    ("0 0 * * MON-FRI", "weekdays", (1, 2, 3, 4, 5)),
    ("0 0 * * 7", "weekdays", (0,)),
    ("0 0 * * 5-7", "weekdays", (0, 5, 6)),
    ("*/20 * * * * *", "seconds", (0, 20, 40)),
    ("0 3 * * *", "seconds", (0,)),
])
def test_fields_parse_to_the_values_they_name(expr, field, values):
    assert getattr(Cron.parse(expr), field) == values


@pytest.mark.parametrize("macro,same_as", [
    ("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
])
def test_macros_are_their_expressions(macro, same_as):
    a, b = Cron.parse(macro), Cron.parse(same_as)
    assert (a.seconds, a.minutes, a.hours, a.days, a.months, a.weekdays) == (
        b.seconds, b.minutes, b.hours, b.days, b.months, b.weekdays)


@pytest.mark.parametrize("expr,message", [
    ("", "a cron expression is needed"),
    ("* * * *", "has 4 fields"),
    ("* * * * * * *", "has 7 fields"),
    ("60 * * * *", "minute: 60 is outside 0-59"),
    ("* 24 * * *", "hour: 24 is outside 0-23"),
    ("* * 0 * *", "day of month: 0 is outside 1-31"),
    ("* * * 13 *", "month: 13 is outside 1-12"),
    ("* * * * 8", "day of week: 8 is outside 0-7"),
    ("*/0 * * * *", "the step in '*/0' must be a number above 0"),
    ("5-2 * * * *", "the range '5-2' runs backwards"),
    ("1,,2 * * * *", "an empty item"),
    ("x * * * *", "minute: 'x' is not a number"),
    ("* * * FOO *", "or a name (JAN-DEC)"),
    ("@reboot", "unknown macro '@reboot'"),
    ("0 0 30 2 *", "never fires"),
    ("0 0 31 4,6,9,11 *", "never fires"),
])
def test_bad_expressions_are_refused_naming_the_field(expr, message):
    with pytest.raises(CronError, match=message.replace("*", r"\*").replace("(", r"\(")
                       .replace(")", r"\)")):
        Cron.parse(expr)


def test_february_30_fires_when_a_weekday_may_also_decide():
    # Both restricted: either decides (Vixie), so the weekday keeps it alive.
    assert walk("0 0 30 2 MON", "2026-02-01T00:00:00", 1) == ["2026-02-02T00:00:00+00:00"]


# ------------------------------------------------------------------ walking


def test_daily_at_three_fires_each_day_at_three():
    assert walk("0 3 * * *", "2026-12-07T02:59:59", 3) == [
        "2026-12-07T03:00:00+00:00", "2026-12-08T03:00:00+00:00", "2026-12-09T03:00:00+00:00"]


def test_next_after_is_strictly_after():
    cron = Cron.parse("0 3 * * *")
    at_three = ts("2026-12-07T03:00:00")
    assert cron.next_after(at_three) == ts("2026-12-08T03:00:00")
    assert cron.next_after(at_three - 0.5) == at_three


def test_steps_ranges_and_lists_walk_in_order():
    assert walk("10-20/5,50 8 * * *", "2026-12-07T00:00:00", 5) == [
        "2026-12-07T08:10:00+00:00", "2026-12-07T08:15:00+00:00", "2026-12-07T08:20:00+00:00",
        "2026-12-07T08:50:00+00:00", "2026-12-08T08:10:00+00:00"]


def test_seconds_field_fires_within_the_minute():
    assert walk("*/20 * * * * *", "2026-12-07T10:00:05", 4) == [
        "2026-12-07T10:00:20+00:00", "2026-12-07T10:00:40+00:00", "2026-12-07T10:01:00+00:00",
        "2026-12-07T10:01:20+00:00"]


def test_month_end_and_year_end_carry_over():
    assert walk("59 23 31 * *", "2026-11-30T00:00:00", 2) == [
        "2026-12-31T23:59:00+00:00", "2027-01-31T23:59:00+00:00"]


def test_weekdays_by_name_skip_the_weekend():
    # 2026-12-11 is a Friday.
    assert walk("0 9 * * MON-FRI", "2026-12-11T10:00:00", 2) == [
        "2026-12-14T09:00:00+00:00", "2026-12-15T09:00:00+00:00"]


def test_day_of_month_or_day_of_week_when_both_are_restricted():
    # The 13th, or any Friday: 2026-12-11 (Fri), 13 (Sun), 18 (Fri).
    assert walk("0 0 13 * FRI", "2026-12-10T00:00:00", 3) == [
        "2026-12-11T00:00:00+00:00", "2026-12-13T00:00:00+00:00", "2026-12-18T00:00:00+00:00"]


def test_a_starred_step_counts_as_a_star_in_the_day_rule():
    # `*/2` starts with `*` (Vixie): both must match, so odd days that are Mondays.
    assert walk("0 0 */2 * MON", "2026-12-07T00:00:00", 2) == [
        "2026-12-21T00:00:00+00:00", "2027-01-11T00:00:00+00:00"]


def test_leap_day_fires_only_in_leap_years_and_skips_2100():
    assert walk("0 0 29 2 *", "2026-01-01T00:00:00", 2) == [
        "2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]
    assert walk("0 0 29 2 *", "2097-01-01T00:00:00", 1) == ["2104-02-29T00:00:00+00:00"]


def test_last_at_or_before_includes_the_time_itself():
    cron = Cron.parse("0 3 * * *")
    assert cron.last_at_or_before(ts("2026-12-07T03:00:00")) == ts("2026-12-07T03:00:00")
    assert cron.last_at_or_before(ts("2026-12-07T02:59:59")) == ts("2026-12-06T03:00:00")
    assert cron.last_at_or_before(ts("2028-03-01T00:00:00"), UTC) == ts("2028-02-29T03:00:00")


def test_times_between_is_half_open_and_bounded():
    cron = Cron.parse("*/10 * * * *")
    got = cron.times_between(ts("2026-12-07T10:00:00"), ts("2026-12-07T10:30:00"))
    assert got == [ts("2026-12-07T10:10:00"), ts("2026-12-07T10:20:00"), ts("2026-12-07T10:30:00")]
    assert len(cron.times_between(0, ts("2026-12-07T10:30:00"), limit=7)) == 7


# ------------------------------------------------------------------ zones and daylight saving


def test_a_zone_fires_on_its_own_wall_clock():
    assert walk("0 3 * * *", "2026-12-07T00:00:00", 1, BERLIN) == ["2026-12-07T03:00:00+01:00"]
    assert walk("0 3 * * *", "2026-07-07T00:00:00", 1, BERLIN) == ["2026-07-07T03:00:00+02:00"]


def test_spring_forward_fires_a_skipped_time_once_after_the_gap():
    # Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    times = walk("30 2 * * *", "2026-03-28T00:00:00", 3, BERLIN)
    assert times == ["2026-03-28T02:30:00+01:00", "2026-03-29T03:30:00+02:00",
                     "2026-03-30T02:30:00+02:00"]


def test_spring_forward_with_an_hourly_schedule_never_fires_one_instant_twice():
    times = walk("30 * * * *", "2026-03-29T00:45:00", 3, BERLIN)
    assert times == ["2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00",
                     "2026-03-29T04:30:00+02:00"]


def test_a_real_time_just_after_the_gap_comes_before_a_shifted_one():
    # 02:45 (gap, lands at 03:45 CEST) comes after 03:15 CEST in time, though before it on
    # the wall clock.
    cron = Cron.parse("15,45 2,3 29 3 *")
    t = ts("2026-03-29T01:00:00", BERLIN)
    seen = cron.times_between(t, t + 6 * 3600, BERLIN)
    assert [iso(x, BERLIN) for x in seen] == [
        "2026-03-29T03:15:00+02:00", "2026-03-29T03:45:00+02:00"]
    assert seen == sorted(set(seen))


def test_fall_back_fires_a_repeated_time_once():
    # New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    times = walk("30 1 * * *", "2026-10-31T12:00:00", 3, NEW_YORK)
    assert times == ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00",
                     "2026-11-03T01:30:00-05:00"]


def test_last_at_or_before_across_a_gap_agrees_with_next_after():
    cron = Cron.parse("*/30 * * * *")
    t = ts("2026-03-29T04:10:00", BERLIN)
    back = cron.last_at_or_before(t, BERLIN)
    assert iso(back, BERLIN) == "2026-03-29T04:00:00+02:00"
    assert cron.next_after(back, BERLIN) > t


# ------------------------------------------------------------------ properties

def _field(values: list[int], star: bool) -> str:
    return "*" if star else ",".join(map(str, sorted(set(values))))


EXPRESSIONS = st.builds(
    lambda m, h, d, dom_star, w, dow_star: " ".join([
        _field(m, False), _field(h, False), _field(d, dom_star), "*", _field(w, dow_star)]),
    st.lists(st.integers(0, 59), min_size=1, max_size=4),
    st.lists(st.integers(0, 23), min_size=1, max_size=4),
    st.lists(st.integers(1, 28), min_size=1, max_size=3), st.booleans(),
    st.lists(st.integers(0, 6), min_size=1, max_size=3), st.booleans(),
)
TIMES = st.floats(ts("2020-01-01T00:00:00"), ts("2030-12-31T00:00:00"))


def _fires_at(expr: str, t: float, tz) -> bool:
    """The expression's own fields read from its text, apart from the parser (this test's
    expressions are lists or `*`; the day rule as Vixie cron words it)."""
    minute, hour, day, _, weekday = [None if f == "*" else set(map(int, f.split(",")))
                                     for f in expr.split()]
    local = datetime.fromtimestamp(t, tz)
    by_day = day is None or local.day in day
    by_weekday = weekday is None or (local.weekday() + 1) % 7 in weekday
    days = (by_day or by_weekday) if day is not None and weekday is not None else (
        by_day and by_weekday)
    return local.second == 0 and local.minute in minute and local.hour in hour and days


@settings(deadline=None)
@given(EXPRESSIONS, TIMES, st.sampled_from([UTC, BERLIN, NEW_YORK]))
def test_the_next_time_fires_and_nothing_fires_between_it_and_the_last(expr, t, tz):
    cron = Cron.parse(expr)
    following = cron.next_after(t, tz)
    assert following > t
    before = cron.last_at_or_before(t, tz)
    assert before <= t
    # Walked forward and backward by separate code, the two agree: nothing fires between.
    assert cron.next_after(before, tz) == following
    assert cron.last_at_or_before(following - 0.5, tz) == before
    assert cron.last_at_or_before(following, tz) == following
    # A time that exists on the wall clock fires on its fields (a gap's lands after it).
    if not _fires_at(expr, following, tz):
        gap = datetime.fromtimestamp(following - 3600, tz).utcoffset() != \
            datetime.fromtimestamp(following, tz).utcoffset()
        assert gap, (expr, iso(following, tz))


# ------------------------------------------------------------------ edges the mutation run found

LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # a daylight-saving change of 30 minutes


@pytest.mark.parametrize("expr,message", [
    ("", "a cron expression is needed, e.g. '0 3 * * *'"),
    ("x * * * *", "minute: 'x' is not a number"),
    ("1-2-3 * * * *", "minute: '2-3' is not a number"),
    ("* * *", "'* * *' has 3 fields; cron takes 5 (minute hour day-of-month month day-of-week) "
              "or 6 (seconds first)"),
    ("@reboot", "unknown macro '@reboot' (known: @yearly, @annually, @monthly, @weekly, @daily, "
                "@midnight, @hourly)"),
])
def test_a_refusal_says_exactly_what_is_wrong(expr, message):
    with pytest.raises(CronError) as refused:
        Cron.parse(expr)
    assert str(refused.value) == message


def test_a_range_of_one_value_is_that_value_and_the_text_is_kept_trimmed():
    cron = Cron.parse("  5-5 3 * * *  ")
    assert cron.minutes == (5,) and cron.text == "5-5 3 * * *"


def test_a_zone_behind_utc_fires_later_the_same_day():
    # 02:30 in New York is 07:30 UTC: 03:00 New York is still ahead that day.
    t = ts("2026-12-07T02:30:00", NEW_YORK)
    assert iso(Cron.parse("0 3 * * *").next_after(t, NEW_YORK), NEW_YORK) == \
        "2026-12-07T03:00:00-05:00"


def test_in_the_repeated_hour_the_times_of_its_first_pass_have_fired_already():
    # New York, 2026-11-01: 01:10 EST is in the second pass of 01:00-02:00; 01:20, 01:40
    # fired in the first (EDT) and do not fire again.
    t = datetime(2026, 11, 1, 1, 10, fold=1, tzinfo=NEW_YORK).timestamp()
    cron = Cron.parse("*/20 * * * *")
    assert iso(cron.next_after(t, NEW_YORK), NEW_YORK) == "2026-11-01T02:00:00-05:00"
    assert iso(cron.last_at_or_before(t, NEW_YORK), NEW_YORK) == "2026-11-01T01:40:00-04:00"


def test_looking_back_from_just_after_a_gap_skips_a_time_the_gap_moved_later():
    # Berlin, 2026-03-29 03:10 CEST: 02:30 that day fires at 03:30 CEST, still ahead.
    t = ts("2026-03-29T03:10:00", BERLIN)
    assert iso(Cron.parse("30 2 * * *").last_at_or_before(t, BERLIN), BERLIN) == \
        "2026-03-28T02:30:00+01:00"


def test_a_half_hour_gap_fires_a_real_time_before_a_skipped_one_it_moved_past_it():
    # Lord Howe, 2026-10-04: 02:00 (+10:30) jumps to 02:30 (+11:00). 02:10 and 02:20 are
    # skipped and land at 02:40 and 02:50; 02:30 is real and comes first.
    t = ts("2026-10-04T01:00:00", LORD_HOWE)
    cron = Cron.parse("10,20,30 2 * * *")
    assert iso(cron.next_after(t, LORD_HOWE), LORD_HOWE) == "2026-10-04T02:30:00+11:00"


def test_a_skipped_time_a_half_hour_gap_moved_past_a_real_one_still_fires_after_it():
    # The same day: 02:15 is skipped and lands at 02:45, after 02:30 fired; looking on from
    # 02:30 must find it (it was lost: the next time found was the next day's 02:15).
    cron = Cron.parse("15,30 2 * * *")
    first = cron.next_after(ts("2026-10-04T01:00:00", LORD_HOWE), LORD_HOWE)
    assert iso(first, LORD_HOWE) == "2026-10-04T02:30:00+11:00"
    second = cron.next_after(first, LORD_HOWE)
    assert iso(second, LORD_HOWE) == "2026-10-04T02:45:00+11:00"
    assert iso(cron.next_after(second, LORD_HOWE), LORD_HOWE) == "2026-10-05T02:15:00+11:00"
    assert [iso(x, LORD_HOWE) for x in cron.times_between(
        first - 1, first + 3600, LORD_HOWE)] == ["2026-10-04T02:30:00+11:00",
                                                  "2026-10-04T02:45:00+11:00"]
    assert cron.last_at_or_before(second + 60, LORD_HOWE) == second


def test_the_calendars_first_hours_have_no_gap_to_look_back_over():
    t = ts("0001-01-01T01:00:00")
    assert iso(Cron.parse("0 2 * * *").next_after(t)) == "0001-01-01T02:00:00+00:00"


def test_times_before_1970_round_down_to_their_second():
    cron = Cron.parse("* * * * * *")
    assert cron.next_after(-0.5) == 0.0
    assert iso(-0.5) == "1969-12-31T23:59:59+00:00"


def test_times_between_gives_at_most_a_thousand_unless_told():
    assert len(Cron.parse("* * * * * *").times_between(0, 5000)) == 1000


def test_looking_back_from_the_first_days_of_the_calendar():
    cron = Cron.parse("0 3 1 1 *")
    assert iso(cron.last_at_or_before(ts("0001-01-02T01:00:00"))) == "0001-01-01T03:00:00+00:00"
    assert cron.last_at_or_before(ts("0001-01-01T02:00:00")) is None


@pytest.mark.parametrize("clock,expected", [
    ("2026-12-07T10:05:00", "2026-12-07T09:30:40"),  # an earlier hour: its last minute
    ("2026-12-07T09:30:30", "2026-12-07T09:30:20"),  # this minute, up to this second
    ("2026-12-07T09:30:10", "2026-12-06T09:30:40"),  # this minute, none up to it yet
    ("2026-12-07T09:45:00", "2026-12-07T09:30:40"),  # a later minute of the hour
    ("2026-12-07T09:29:59", "2026-12-06T09:30:40"),  # before the first: the day before
])
def test_the_backward_walk_finds_the_latest_wall_clock_time_itself(clock, expected):
    # Walked back on the wall clock alone (before any zone is applied): the time is found
    # at once, not left to the forward walk to reach second by second.
    cron = Cron.parse("20,40 30 9 * * *")
    found = cron._last_at_or_before(datetime.fromisoformat(clock))
    assert found == datetime.fromisoformat(expected)
