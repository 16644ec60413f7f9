"""The firing decision on its own (scheduler/engine/schedules.py): times that come while the
scheduler runs fire each once; times missed while none ran fire once (catch_up) or are
skipped; the mark moves on. Time is passed in."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.engine.cron import Cron
from scheduler.engine.schedules import Due, Mark, Schedule, decide

UTC = timezone.utc
ORDER = {"customer": "nightly", "items": [{"sku": "reconcile", "qty": 1, "price": 0}]}


def ts(text: str, tz=UTC) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def schedule(cron: str = "0 3 * * *", catch_up: bool = True, tz=UTC) -> Schedule:
    return Schedule("reconcile", Cron.parse(cron), "checkout", ORDER, catch_up, tz, str(tz))


def test_nothing_fires_before_the_first_time():
    mark = Mark("reconcile", since=ts("2026-12-07T01:00:00"))
    due = decide(schedule(), mark, now=ts("2026-12-07T02:59:59"), started=mark.since)
    assert due == Due((), None, ts("2026-12-07T03:00:00"))


def test_a_time_that_came_while_running_fires_once_and_the_mark_moves_on():
    start = ts("2026-12-07T01:00:00")
    mark = Mark("reconcile", since=start)
    due = decide(schedule(), mark, now=ts("2026-12-07T03:00:00.4"), started=start)
    assert due.fire == (ts("2026-12-07T03:00:00"),)
    assert due.next_at == ts("2026-12-08T03:00:00")
    mark = mark.fired(due.fire[0], "o-1", ts("2026-12-07T03:00:00.4"))
    again = decide(schedule(), mark, now=ts("2026-12-07T03:00:01"), started=start)
    assert again.fire == ()
    assert mark.runs == 1 and mark.last_run["order_id"] == "o-1"


def test_a_late_loop_fires_every_time_that_came_while_running():
    start = ts("2026-12-07T10:00:00")
    mark = Mark("reconcile", since=start)
    due = decide(schedule("*/10 * * * *"), mark, now=ts("2026-12-07T10:35:00"), started=start)
    assert due.fire == (ts("2026-12-07T10:10:00"), ts("2026-12-07T10:20:00"),
                        ts("2026-12-07T10:30:00"))


def test_times_before_the_schedule_was_known_never_fire():
    mark = Mark("reconcile", since=ts("2026-12-07T04:00:00"))
    due = decide(schedule(), mark, now=ts("2026-12-07T05:00:00"),
                 started=ts("2026-12-07T04:59:00"))
    assert due.fire == () and due.skipped is None


def test_missed_times_fire_once_at_the_restart_with_catch_up():
    # Last fired on the 5th; down from the 5th at noon until the 7th at 09:00.
    mark = Mark("reconcile", since=ts("2026-12-01T00:00:00"), last=ts("2026-12-05T03:00:00"))
    restart = ts("2026-12-07T09:00:00")
    due = decide(schedule(), mark, now=restart + 0.2, started=restart)
    assert due.fire == (ts("2026-12-07T03:00:00"),)  # the latest missed, once
    assert due.skipped is None
    fired = mark.fired(due.fire[0], "o-9", restart + 0.2)
    assert decide(schedule(), fired, now=restart + 5, started=restart).fire == ()


def test_missed_times_are_skipped_without_catch_up():
    mark = Mark("reconcile", since=ts("2026-12-01T00:00:00"), last=ts("2026-12-05T03:00:00"))
    restart = ts("2026-12-07T09:00:00")
    due = decide(schedule(catch_up=False), mark, now=restart + 0.2, started=restart)
    assert due.fire == ()
    assert due.skipped == (ts("2026-12-06T03:00:00"), ts("2026-12-07T03:00:00"), 2)
    assert due.next_at == ts("2026-12-08T03:00:00")
    skipped = mark.skipped_until(due.skipped[1], due.skipped[2])
    assert skipped.skipped == 2 and skipped.runs == 0
    # Once skipped, the next restart does not count them again.
    later = decide(schedule(catch_up=False), skipped, now=restart + 60, started=restart + 50)
    assert later.skipped is None and later.fire == ()


def test_after_a_restart_the_times_that_follow_fire_as_usual():
    mark = Mark("reconcile", since=ts("2026-12-07T10:00:00"), last=ts("2026-12-07T10:10:00"))
    restart = ts("2026-12-07T10:25:00")
    due = decide(schedule("*/10 * * * *"), mark, now=ts("2026-12-07T10:41:00"), started=restart)
    # 10:20 was missed (down): fires once; 10:30 and 10:40 came while running.
    assert due.fire == (ts("2026-12-07T10:20:00"), ts("2026-12-07T10:30:00"),
                        ts("2026-12-07T10:40:00"))
    no_catch_up = decide(schedule("*/10 * * * *", catch_up=False), mark,
                         now=ts("2026-12-07T10:41:00"), started=restart)
    assert no_catch_up.fire == (ts("2026-12-07T10:30:00"), ts("2026-12-07T10:40:00"))
    assert no_catch_up.skipped == (ts("2026-12-07T10:20:00"), ts("2026-12-07T10:20:00"), 1)


def test_a_long_stall_fires_at_most_the_limit_and_asks_to_look_again_at_once():
    start = ts("2026-12-07T10:00:00")
    mark = Mark("reconcile", since=start)
    now = ts("2026-12-07T10:00:30")
    due = decide(schedule("* * * * * *"), mark, now=now, started=start, limit=10)
    assert len(due.fire) == 10 and due.next_at == now
    rest = decide(schedule("* * * * * *"), mark.fired(due.fire[-1], "o", now), now=now,
                  started=start, limit=100)
    assert rest.fire[0] == due.fire[-1] + 1 and rest.fire[-1] == now


def test_a_daylight_saving_day_fires_its_skipped_time_once():
    berlin = ZoneInfo("Europe/Berlin")
    sched = schedule("30 2 * * *", tz=berlin)
    start = ts("2026-03-28T12:00:00", berlin)
    mark = Mark("reconcile", since=start)
    fired = []
    now = start
    while now < ts("2026-03-30T12:00:00", berlin):
        now += 600
        due = decide(sched, mark, now=now, started=start)
        for at in due.fire:
            fired.append(at)
            mark = mark.fired(at, "o", now)
    assert fired == [ts("2026-03-29T03:30:00", berlin), ts("2026-03-30T02:30:00", berlin)]


def test_a_leap_day_schedule_fires_once_in_four_years():
    sched = schedule("0 12 29 2 *")
    start = ts("2027-01-01T00:00:00")
    mark = Mark("reconcile", since=start)
    due = decide(sched, mark, now=ts("2029-01-01T00:00:00"), started=start)
    assert due.fire == (ts("2028-02-29T12:00:00"),)
    assert due.next_at == ts("2032-02-29T12:00:00")


def test_the_key_names_the_schedule_and_its_time():
    assert schedule().key(ts("2026-12-07T03:00:00")) == \
        "schedule:reconcile:2026-12-07T03:00:00+00:00"


def test_a_mark_round_trips_through_its_view():
    mark = Mark("reconcile", 1.0, 2.0, {"at": 2.0, "order_id": "o", "fired_at": 2.5}, 3, 4)
    assert Mark.from_view(mark.view()) == mark


# ------------------------------------------------------------------ a property

@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(1, 900), st.booleans()), min_size=1, max_size=40),
       st.booleans())
def test_through_any_restarts_each_time_fires_at_most_once_and_none_while_running_is_lost(
        steps, catch_up):
    sched = schedule("*/5 * * * *", catch_up=catch_up)
    start = ts("2026-12-07T10:00:00")
    mark, started, now = Mark("reconcile", since=start), start, start
    fired: list[float] = []
    for gap, restart in steps:
        now += gap
        if restart:  # down for `gap` seconds: this loop is the new server's first look
            started = now
        due = decide(sched, mark, now, started)
        if due.skipped is not None:
            assert not catch_up
            mark = mark.skipped_until(due.skipped[1], due.skipped[2])
        for at in due.fire:
            fired.append(at)
            mark = mark.fired(at, "o", now)
        # Every time that came while this server ran has fired by now.
        came = sched.cron.times_between(started, now)
        assert set(came) <= set(fired)
        assert due.next_at > now
    assert fired == sorted(set(fired))  # each at most once, in order
    everything = set(sched.cron.times_between(start, now, limit=100_000))
    assert set(fired) <= everything
    if not catch_up:  # a skipped time never fires later
        assert mark.runs + mark.skipped == len(everything)


# ------------------------------------------------------------------ what is shown and kept

BERLIN = ZoneInfo("Europe/Berlin")


def test_a_schedule_describes_itself_for_the_page_and_the_api():
    assert schedule("0 3 * * *", catch_up=False).describe() == {
        "name": "reconcile", "cron": "0 3 * * *", "tz": "UTC", "workflow": "checkout",
        "catch_up": False}


def test_a_fired_mark_remembers_its_latest_run_by_name():
    mark = Mark("reconcile", since=1.0).fired(5.0, "o-5", now=5.25)
    assert mark.last_run == {"at": 5.0, "order_id": "o-5", "fired_at": 5.25}
    assert (mark.last, mark.runs, mark.skipped) == (5.0, 1, 0)


def test_a_view_from_before_runs_were_counted_reads_as_none():
    # An older row: no runs or skipped counts written.
    mark = Mark.from_view({"name": "reconcile", "since": 1, "last": 2.0})
    assert (mark.runs, mark.skipped, mark.last_run) == (0, 0, None)
    assert mark.since == 1.0 and isinstance(mark.since, float)


# ------------------------------------------------------------------ in a zone, at the limit


def test_a_restart_catches_up_on_the_zones_wall_clock():
    # Down from the 5th to the 7th at 02:30 UTC (03:30 in Berlin): 03:00 Berlin on the 7th
    # (02:00 UTC) was missed; 03:00 UTC was not reached yet.
    sched = schedule(tz=BERLIN)
    mark = Mark("reconcile", since=ts("2026-12-01T00:00:00"), last=ts("2026-12-05T03:00:00",
                                                                      BERLIN))
    restart = ts("2026-12-07T02:30:00")
    due = decide(sched, mark, now=restart, started=restart)
    assert due.fire == (ts("2026-12-07T03:00:00", BERLIN),)
    assert due.next_at == ts("2026-12-08T03:00:00", BERLIN)


def test_missed_times_are_counted_on_the_zones_wall_clock():
    sched = schedule(catch_up=False, tz=BERLIN)
    mark = Mark("reconcile", since=ts("2026-12-01T00:00:00"),
                last=ts("2026-12-05T03:00:00", BERLIN))
    restart = ts("2026-12-07T02:30:00")
    due = decide(sched, mark, now=restart, started=restart)
    assert due.skipped == (ts("2026-12-06T03:00:00", BERLIN), ts("2026-12-07T03:00:00", BERLIN),
                           2)


def test_more_than_a_thousand_missed_times_are_all_counted():
    mark = Mark("reconcile", since=ts("2026-12-01T00:00:00"), last=ts("2026-12-05T00:00:00"))
    restart = ts("2026-12-06T00:00:00")  # a day of every minute: 1,440 missed
    due = decide(schedule("* * * * *", catch_up=False), mark, now=restart, started=restart)
    assert due.skipped == (ts("2026-12-05T00:01:00"), restart, 1440)


def test_a_caught_up_time_takes_one_of_the_limit():
    start = ts("2026-12-07T10:00:00")
    mark = Mark("reconcile", since=start - 3600, last=start - 60)
    # Missed until 10:00 (one fires, the latest); then 10:01-10:10 come while running.
    due = decide(schedule("* * * * *"), mark, now=start + 600, started=start, limit=4)
    assert due.fire == (start, start + 60, start + 120, start + 180)
    assert due.next_at == start + 600  # more are due: look again at once


def test_skipped_times_are_reported_even_when_the_limit_is_reached():
    start = ts("2026-12-07T10:00:00")
    mark = Mark("reconcile", since=start - 3600, last=start - 180)
    due = decide(schedule("* * * * *", catch_up=False), mark, now=start + 600, started=start,
                 limit=3)
    assert due.skipped == (start - 120, start, 3)
    assert due.fire == (start + 60, start + 120, start + 180) and due.next_at == start + 600


def test_an_unknown_schedule_is_named_in_its_error():
    from scheduler.engine.errors import UnknownSchedule

    assert str(UnknownSchedule("nightly")) == "unknown schedule 'nightly'"
    assert isinstance(UnknownSchedule("nightly"), KeyError)  # a lookup that found nothing
