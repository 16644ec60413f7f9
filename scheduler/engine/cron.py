"""Cron expressions, parsed and walked in a time zone: pure, time passed in.

Five fields (minute hour day-of-month month day-of-week), or six with seconds first
(`*/5 * * * * *`, as Quartz and Spring write it: what a test needs to fire within seconds).
Each field takes `*`, numbers, ranges `a-b`, steps `*/n`, `a-b/n` and `a/n` (a to the field's
end), lists `a,b-c`, and names (JAN-DEC, SUN-SAT; 7 is Sunday too), plus the macros @yearly
(@annually), @monthly, @weekly, @daily (@midnight) and @hourly.

Day of month and day of week follow Vixie cron's rule: when both are restricted (neither
starts with `*`), a day matches if either does; otherwise the restricted one decides.

Times are matched on the zone's wall clock (`tz`, any `tzinfo`; UTC by default) and returned
as POSIX seconds. Across a daylight-saving change every wall-clock time fires once: a time
the spring-forward gap skips (02:30 when clocks jump from 02:00 to 03:00) fires at the
instant the gap maps it to (03:30 new time), and one the fall-back fold repeats fires at its
first occurrence only. The zone is a parameter, not looked up here (no file is read in the
engine): `scheduler/steps/app.py` builds it with zoneinfo.
"""

from __future__ import annotations

import bisect
import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from datetime import time as wall_time

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Walking the days gives up after this many: the rarest expression that can fire (29
# February, with the day-of-week star) recurs within 8 years (2096, then 2104).
MAX_DAYS = 366 * 9
# A spring-forward gap is at most this long (3 h covers every zone's history of changes).
MAX_SHIFT = timedelta(hours=3)
ONE_SECOND = timedelta(seconds=1)


class CronError(ValueError):
    """An expression that cannot be a schedule; the message names the field at fault."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0


_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DAY = _Field("day of month", 1, 31)
_MONTH = _Field("month", 1, 12, MONTHS, 1)
_WEEKDAY = _Field("day of week", 0, 7, WEEKDAYS, 0)


def _value(text: str, field: _Field) -> int:
    upper = text.upper()
    if upper in field.names:
        return field.names.index(upper) + field.name_base
    if not text.isdigit():
        raise CronError(f"{field.name}: {text!r} is not a number"
                        + (f" or a name ({field.names[0]}-{field.names[-1]})"
                           if field.names else ""))
    number = int(text)
    if not field.low <= number <= field.high:
        raise CronError(f"{field.name}: {number} is outside {field.low}-{field.high}")
    return number


def _parse_field(text: str, field: _Field) -> tuple[int, ...]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field.name}: an empty item in {text!r}")
        span, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field.name}: the step in {part!r} must be a number above 0")
            step = int(step_text)
        if span == "*":
            low, high = field.low, field.high
        elif "-" in span:
            first, _, last = span.partition("-")
            low, high = _value(first, field), _value(last, field)
            if low > high:
                raise CronError(f"{field.name}: the range {span!r} runs backwards")
        else:
            low = _value(span, field)
            high = field.high if slash else low
        values.update(range(low, high + 1, step))
    return tuple(sorted(values))


@dataclass(frozen=True)
class Cron:
    """A parsed expression: the values each field allows, sorted."""

    text: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 = Sunday
    days_restricted: bool  # the day-of-month field does not start with `*`
    weekdays_restricted: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        """The expression `text`; CronError naming the field that is wrong."""
        if not isinstance(text, str) or not text.strip():
            raise CronError("a cron expression is needed, e.g. '0 3 * * *'")
        spelled = MACROS.get(text.strip().lower(), text)
        if spelled.startswith("@"):
            raise CronError(f"unknown macro {text.strip()!r} (known: {', '.join(MACROS)})")
        fields = spelled.split()
        if len(fields) == 5:
            fields = ["0", *fields]
        if len(fields) != 6:
            raise CronError(f"{text!r} has {len(fields)} fields; cron takes 5 (minute hour "
                            "day-of-month month day-of-week) or 6 (seconds first)")
        second, minute, hour, day, month, weekday = fields
        weekdays = {d % 7 for d in _parse_field(weekday, _WEEKDAY)}
        cron = cls(text.strip(), _parse_field(second, _SECOND), _parse_field(minute, _MINUTE),
                   _parse_field(hour, _HOUR), _parse_field(day, _DAY),
                   _parse_field(month, _MONTH), tuple(sorted(weekdays)),
                   not day.startswith("*"), not weekday.startswith("*"))
        if cron.days_restricted and not cron.weekdays_restricted and not any(
                d <= _longest(m) for m in cron.months for d in cron.days):
            raise CronError(f"{text!r} never fires: no month it names has those days")
        return cron

    # ---------------------------------------------------------------- matching

    def day_matches(self, day: date) -> bool:
        """`day` is one the expression fires on (its month, and the day-of-month /
        day-of-week rule)."""
        if day.month not in self.months:
            return False
        by_day = day.day in self.days
        by_weekday = (day.weekday() + 1) % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return by_day or by_weekday
        return by_day and by_weekday

    def _first_at_or_after(self, local: datetime) -> datetime | None:
        """The earliest naive wall-clock time ≥ `local` the fields allow."""
        day, clock = local.date(), (local.hour, local.minute, local.second)
        for _ in range(MAX_DAYS):
            if self.day_matches(day):
                found = _first_time(self, clock)
                if found is not None:
                    return datetime.combine(day, found)
            day, clock = day + timedelta(days=1), (0, 0, 0)
        return None

    def _last_at_or_before(self, local: datetime) -> datetime | None:
        """The latest naive wall-clock time ≤ `local` the fields allow."""
        day, clock = local.date(), (local.hour, local.minute, local.second)
        for _ in range(MAX_DAYS):
            if self.day_matches(day):
                found = _last_time(self, clock)
                if found is not None:
                    return datetime.combine(day, found)
            if day == date.min:
                return None
            day, clock = day - timedelta(days=1), (23, 59, 59)
        return None

    # ---------------------------------------------------------------- walking in a zone

    def next_after(self, t: float, tz: tzinfo = timezone.utc) -> float | None:
        """The first time strictly after `t` (POSIX seconds) the expression fires in `tz`;
        None if it never does again."""
        local = _floor(t, tz) + ONE_SECOND
        # A time in a spring-forward gap lands later than its wall-clock place, so one on
        # the wall clock before `t`'s may still be ahead of `t` (a 30-minute gap moves a
        # skipped 02:15 to 02:45, after a real 02:30 that fired).
        moved = (self._instants_between(local - MAX_SHIFT, local, t, tz)
                 if _gap_within(t - MAX_SHIFT.total_seconds(), t, tz) else [])
        for _ in range(4 * 3600):  # a fold's repeated hour is the longest walk past `t`
            found = self._first_at_or_after(local)
            if found is None:
                return min(moved, default=None)
            instant = _instant(found, tz)
            if instant > t:
                if _exists(found, tz):
                    return min([instant, *moved])
                # A real time just after the gap may come first.
                return min([instant, *moved, *self._instants_between(
                    found + ONE_SECOND, found + MAX_SHIFT, t, tz)])
            local = found + ONE_SECOND
        return min(moved, default=None)

    def _instants_between(self, start: datetime, stop: datetime, t: float,
                          tz: tzinfo) -> list[float]:
        found, out = self._first_at_or_after(start), []
        while found is not None and found < stop:
            instant = _instant(found, tz)
            if instant > t:
                out.append(instant)
            found = self._first_at_or_after(found + ONE_SECOND)
        return out

    def last_at_or_before(self, t: float, tz: tzinfo = timezone.utc) -> float | None:
        """The latest time at or before `t` the expression fired in `tz` (None: none)."""
        local = _floor(t, tz)
        for _ in range(4 * 3600):
            found = self._last_at_or_before(local)
            if found is None:
                return None
            instant = _instant(found, tz)
            if instant <= t:
                break
            local = found - ONE_SECOND
        else:
            return None
        # Around a gap the wall-clock order is not the instants' order: walk forward.
        while True:
            following = self.next_after(instant, tz)
            if following is None or following > t:
                return instant
            instant = following

    def times_between(self, after: float, until: float, tz: tzinfo = timezone.utc,
                      limit: int = 1000) -> list[float]:
        """The times in (`after`, `until`], oldest first, at most `limit` of them."""
        out: list[float] = []
        cursor = self.next_after(after, tz)
        while cursor is not None and cursor <= until and len(out) < limit:
            out.append(cursor)
            cursor = self.next_after(cursor, tz)
        return out


def _longest(month: int) -> int:
    return 29 if month == 2 else calendar.monthrange(2001, month)[1]


def _first_time(cron: Cron, clock: tuple[int, int, int]) -> wall_time | None:
    """The earliest (h, m, s) ≥ `clock` the fields allow, as a time, or None."""
    hour, minute, second = clock
    for h in cron.hours[bisect.bisect_left(cron.hours, hour):]:
        m_from = minute if h == hour else 0
        for m in cron.minutes[bisect.bisect_left(cron.minutes, m_from):]:
            s_from = second if (h, m) == (hour, minute) else 0
            i = bisect.bisect_left(cron.seconds, s_from)
            if i < len(cron.seconds):
                return wall_time(h, m, cron.seconds[i])
    return None


def _last_time(cron: Cron, clock: tuple[int, int, int]) -> wall_time | None:
    """The latest (h, m, s) ≤ `clock` the fields allow, as a time, or None."""
    hour, minute, second = clock
    for h in reversed(cron.hours[:bisect.bisect_right(cron.hours, hour)]):
        m_to = minute if h == hour else 59
        for m in reversed(cron.minutes[:bisect.bisect_right(cron.minutes, m_to)]):
            s_to = second if (h, m) == (hour, minute) else 59
            i = bisect.bisect_right(cron.seconds, s_to)
            if i > 0:
                return wall_time(h, m, cron.seconds[i - 1])
    return None


def _floor(t: float, tz: tzinfo) -> datetime:
    """`t` on `tz`'s wall clock, to the second, naive."""
    return datetime.fromtimestamp(int(t // 1), tz).replace(tzinfo=None)


def _instant(local: datetime, tz: tzinfo) -> float:
    """A naive wall-clock time in `tz` as POSIX seconds: its first occurrence in a fold,
    and in a gap the instant the zone's earlier offset gives it (after the gap)."""
    return local.replace(tzinfo=tz, fold=0).timestamp()


def _gap_within(start: float, end: float, tz: tzinfo) -> bool:
    """Whether `tz` springs forward between the instants `start` and `end` (its offset at
    the end is larger): only then can a wall-clock time before `end`'s land after it."""
    try:
        return (datetime.fromtimestamp(end, tz).utcoffset()
                > datetime.fromtimestamp(start, tz).utcoffset())
    except (OverflowError, ValueError, OSError):  # before the calendar's first day
        return False


def _exists(local: datetime, tz: tzinfo) -> bool:
    """`local` is a wall-clock time `tz` has (not one a spring-forward gap skips)."""
    return datetime.fromtimestamp(_instant(local, tz), tz).replace(tzinfo=None) == local


def iso(t: float, tz: tzinfo = timezone.utc) -> str:
    """`t` as ISO 8601 in `tz`, to the second (with its offset)."""
    return datetime.fromtimestamp(int(t // 1), tz).isoformat()


__all__ = ["Cron", "CronError", "iso"]
