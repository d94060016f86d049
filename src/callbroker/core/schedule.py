"""Opening hours: is a target open at a given instant, when does it open next, and how to say its hours.

The rules, in the target's local time zone:

* ``weekly[d]`` lists the open intervals of weekday ``d`` (0 = Monday … 6 = Sunday) as ``(start, end)``
  pairs of ``datetime.time``. An interval whose end is at or before its start runs past midnight: on a
  Friday, ``22:00-06:00`` is open from Friday 22:00 to Saturday 06:00, and that Saturday-morning part belongs
  to Friday (a holiday or exception on Friday removes it; one on Saturday does not). ``(00:00, 00:00)`` is
  the whole day, and ``parse_hours`` reads a closing time of ``24:00`` as midnight, ``time(0, 0)``.
* ``exceptions[date]`` replaces that date's hours (an empty tuple closes it all day).
* With ``holiday_country`` set, the public holidays of the ``holidays`` package (observed days included)
  are closed, unless an exception gives hours for the date.
* Times are exact to the second.

Daylight saving time: the hours are read off the local wall clock, and an opening or closing happens the
first time the clock reaches its time. So on the spring-forward day a time that does not exist (02:30 in
New York) takes effect when the clock jumps past it (at 03:00), and an interval lying wholly inside the gap
never opens; on the fall-back day a time that occurs twice takes effect at its first occurrence, and the
repeated hour then keeps the state the schedule had when the clock first reached the end of that hour (a
line that closes at 01:30 does not reopen when the clock shows 01:00 again). Put differently: a schedule
is open at an instant when the latest wall-clock time shown so far lies inside an interval.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Hours", "Schedule", "edges_around", "parse_hours", "parse_weekly", "steady_window"]

Hours = tuple[tuple[dt.time, dt.time], ...]  # one day's open intervals, (start, end) pairs

_DAY = 86_400
_UTC = dt.timezone.utc
_MIDNIGHT = dt.time(0, 0)
_NEXT_OPEN_HORIZON = dt.timedelta(days=14)
_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Compiled hours of one day: the [start, end) second ranges within the day (end may be 86400, sorted and
# merged), and how far into the next day its overnight intervals run (0 = not at all).
_Compiled = tuple[tuple[tuple[int, int], ...], int]
_CLOSED: _Compiled = ((), 0)


class _FrozenMap(Mapping[Any, Any]):
    """A read-only, hashable, picklable dict for the mapping fields of the frozen Schedule."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[Any, Any]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return repr(self._data)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._data,))


# -- holidays ----------------------------------------------------------------------------------------------

_holiday_cache: dict[tuple[str, str | None, int], frozenset[dt.date]] = {}


def _holiday_dates(country: str, subdivision: str | None, year: int) -> frozenset[dt.date]:
    """Public holidays of one year, computed once per (country, subdivision, year) and process."""
    key = (country, subdivision, year)
    dates = _holiday_cache.get(key)
    if dates is None:
        import holidays  # imported on first use: it is large and most schedules have no holidays

        dates = frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year))
        _holiday_cache[key] = dates
    return dates


def _check_holidays(country: str, subdivision: str | None) -> None:
    import holidays

    try:
        holidays.country_holidays(country, subdiv=subdivision)
    except NotImplementedError as exc:
        where = f"{country}" + (f" / {subdivision}" if subdivision else "")
        raise ValueError(f"no public holiday calendar for {where!r}: {exc}") from None


# -- compiling hours ---------------------------------------------------------------------------------------


def _seconds(value: dt.time, what: str) -> int:
    if not isinstance(value, dt.time):
        raise ValueError(f"{what}: expected a datetime.time, got {value!r}")
    if value.tzinfo is not None or value.microsecond:
        raise ValueError(f"{what}: opening hours are local whole-second times, got {value!r}")
    return value.hour * 3600 + value.minute * 60 + value.second


def _normalize_hours(hours: Any, what: str) -> Hours:
    if isinstance(hours, str):
        raise ValueError(
            f"{what}: expected (start, end) time pairs, got the text {hours!r} (use parse_hours)"
        )
    result = []
    for pair in hours:
        try:
            start, end = pair
        except (TypeError, ValueError):
            raise ValueError(f"{what}: expected (start, end) time pairs, got {pair!r}") from None
        _seconds(start, what), _seconds(end, what)
        result.append((start, end))
    return tuple(result)


def _compile(hours: Hours) -> _Compiled:
    ranges: list[tuple[int, int]] = []
    spill = 0
    for start, end in hours:
        s, e = _seconds(start, ""), _seconds(end, "")
        if e <= s:  # runs past midnight (or, when equal, for 24 hours)
            ranges.append((s, _DAY))
            spill = max(spill, e)
        else:
            ranges.append((s, e))
    merged: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return tuple(merged), spill


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything ``is_open`` needs, precomputed when the schedule is built."""

    zone: zoneinfo.ZoneInfo
    week: tuple[_Compiled, ...]
    exceptions: dict[dt.date, _Compiled]
    holidays: tuple[str, str | None] | None
    max_spill: int  # no day runs further into the next one than this
    always: bool

    def day(self, date: dt.date) -> _Compiled:
        exception = self.exceptions.get(date)
        if exception is not None:
            return exception
        if self.holidays is not None and date in _holiday_dates(*self.holidays, date.year):
            return _CLOSED
        return self.week[date.weekday()]

    def open_at_wall(self, date: dt.date, second: int) -> bool:
        """Open at this local wall-clock time (the latest shown so far)?"""
        for start, end in self.day(date)[0]:
            if second < start:
                break
            if second < end:
                return True
        if second < self.max_spill:
            return second < self.day(date - dt.timedelta(days=1))[1]
        return False


# -- wall-clock helpers for DST ----------------------------------------------------------------------------


def _wall(instant: dt.datetime, zone: zoneinfo.ZoneInfo) -> tuple[dt.datetime, bool]:
    """Local wall time of an instant (naive) and whether it is the second pass through a repeated hour."""
    local = instant.astimezone(zone)
    return local.replace(tzinfo=None), bool(local.fold)


def _latest_wall(instant: dt.datetime, zone: zoneinfo.ZoneInfo) -> tuple[dt.date, int]:
    """The latest wall-clock time shown at or before ``instant``, as (date, second of day)."""
    local = instant.astimezone(zone)
    if not local.fold:
        return local.date(), local.hour * 3600 + local.minute * 60 + local.second
    # Second pass through a repeated hour: the clock had already shown the end of that hour, T, just
    # before the transition U. Find U (to the second) between the first pass of this wall time and now.
    old_offset = local.replace(fold=0).utcoffset()
    new_offset = local.utcoffset()
    assert old_offset is not None and new_offset is not None
    now = int(instant.timestamp())
    lo = now - int((old_offset - new_offset).total_seconds())  # the offset is old at lo, new at now
    hi = _first_second(lo, now, lambda second: _offset_at(second, zone) == new_offset)
    last = dt.datetime.fromtimestamp(hi, _UTC).replace(tzinfo=None) + old_offset - dt.timedelta(seconds=1)
    return last.date(), last.hour * 3600 + last.minute * 60 + last.second


def _first_instant(wall: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The first instant (UTC) at which the local clock shows ``wall`` or a later time."""
    candidate = wall.replace(tzinfo=zone, fold=0).astimezone(_UTC)  # fold=0: the first of two occurrences
    if _wall(candidate, zone)[0] == wall:
        return candidate
    # ``wall`` falls in a spring-forward gap: the answer is the moment of the jump, between the readings
    # of ``wall`` with the offset after the jump (too early) and before it (too late).
    lo = int(wall.replace(tzinfo=zone, fold=1).astimezone(_UTC).timestamp())
    hi = _first_second(lo, int(candidate.timestamp()),
                       lambda second: _wall(dt.datetime.fromtimestamp(second, _UTC), zone)[0] >= wall)
    return dt.datetime.fromtimestamp(hi, _UTC)


def edges_around(value: int, edges: Iterable[int], lo: int, hi: int) -> tuple[int, int]:
    """The last of ``edges`` at or before ``value`` and the first after it, kept within ``[lo, hi]``:
    where a day's answer last changed and next changes (opening and closing times as edges)."""
    for edge in edges:
        if edge <= value:
            lo = max(lo, edge)
        else:
            hi = min(hi, edge)
    return lo, hi


def steady_window(at: dt.datetime, zone: zoneinfo.ZoneInfo, back: int, ahead: int) -> tuple[float, float]:
    """The instants ``[whole - back, whole + ahead)`` as POSIX seconds, where ``whole`` is ``at`` cut to
    its second, narrowed to the part where ``zone``'s UTC offset is the one at ``at``.

    Inside that part the local wall clock moves one second per second, so a caller that knows its answer
    depends only on the wall clock, and does not change for ``back`` seconds of wall time before ``at``'s
    second nor ``ahead`` after it, gets an exact window. Windows are meant to stay within a day (a zone
    never changes its offset twice in a day, which is what the narrowing assumes).
    """
    whole = math.floor(at.timestamp())
    offset = at.astimezone(zone).utcoffset()
    since, until = whole - back, whole + ahead
    if _offset_at(since, zone) != offset:  # a change between since and now: start at its moment
        since = _first_second(since, whole, lambda second: _offset_at(second, zone) == offset)
    if until - 1 > whole and _offset_at(until - 1, zone) != offset:  # a change ahead: stop at its moment
        until = _first_second(whole, until - 1, lambda second: _offset_at(second, zone) != offset)
    return float(since), float(until)


def _offset_at(second: int, zone: zoneinfo.ZoneInfo) -> dt.timedelta | None:
    return dt.datetime.fromtimestamp(second, zone).utcoffset()


def _first_second(lo: int, hi: int, reached: Callable[[int], bool]) -> int:
    """The first second after ``lo`` at which ``reached`` holds, knowing it does not at ``lo`` and does at
    ``hi`` (and, in between, holds from some second on)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if reached(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _require_aware(value: dt.datetime, name: str) -> None:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got the naive datetime {value.isoformat()}")


# -- the schedule ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schedule:
    """A target's opening hours (see the module docstring for the exact rules)."""

    timezone: str
    weekly: Mapping[int, Hours]
    exceptions: Mapping[dt.date, Hours] = field(default_factory=dict)
    holiday_country: str | None = None
    holiday_subdivision: str | None = None
    _plan: _Plan = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        try:
            zone = zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):  # OSError: a name too long
            raise ValueError(
                f"unknown time zone {self.timezone!r} (expected an IANA name such as 'America/Chicago')"
            ) from None
        weekly: dict[int, Hours] = {}
        for day, hours in self.weekly.items():
            if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= 6:
                raise ValueError(f"weekly keys are weekdays 0 (Monday) to 6 (Sunday), got {day!r}")
            weekly[day] = _normalize_hours(hours, _WEEKDAY_NAMES[day])
        weekly = {day: weekly.get(day, ()) for day in range(7)}
        exceptions = {}
        for date, hours in self.exceptions.items():
            if isinstance(date, dt.datetime) or not isinstance(date, dt.date):
                raise ValueError(f"exception keys are dates, got {date!r}")
            exceptions[date] = _normalize_hours(hours, date.isoformat())
        if self.holiday_subdivision is not None and self.holiday_country is None:
            raise ValueError("holiday_subdivision needs a holiday_country")
        if self.holiday_country is not None:
            _check_holidays(self.holiday_country, self.holiday_subdivision)
        week = tuple(_compile(weekly[day]) for day in range(7))
        compiled_exceptions = {date: _compile(hours) for date, hours in exceptions.items()}
        object.__setattr__(self, "weekly", _FrozenMap(weekly))
        object.__setattr__(self, "exceptions", _FrozenMap(exceptions))
        object.__setattr__(
            self,
            "_plan",
            _Plan(
                zone=zone,
                week=week,
                exceptions=compiled_exceptions,
                holidays=(self.holiday_country, self.holiday_subdivision) if self.holiday_country else None,
                max_spill=max(spill for _, spill in (*week, *compiled_exceptions.values(), _CLOSED)),
                always=(
                    not exceptions
                    and self.holiday_country is None
                    and all(ranges == ((0, _DAY),) for ranges, _ in week)
                ),
            ),
        )

    def __hash__(self) -> int:
        return hash(
            (self.timezone, self.weekly, self.exceptions, self.holiday_country, self.holiday_subdivision)
        )

    @classmethod
    def always(cls, timezone: str = "UTC") -> Schedule:
        """Open every second of every day."""
        return cls(timezone=timezone, weekly={day: ((_MIDNIGHT, _MIDNIGHT),) for day in range(7)})

    @property
    def always_open(self) -> bool:
        """Open every second: 24 hours every day, no exception date, no holiday calendar."""
        return self._plan.always

    def is_open(self, at: dt.datetime) -> bool:
        """Open at this instant? ``at`` must be timezone-aware (any zone)."""
        if at.tzinfo is None or at.utcoffset() is None:
            _require_aware(at, "at")
        plan = self._plan
        if plan.always:
            return True
        local = at.astimezone(plan.zone)
        if local.fold:
            return plan.open_at_wall(*_latest_wall(at, plan.zone))
        return plan.open_at_wall(local.date(), local.hour * 3600 + local.minute * 60 + local.second)

    def steady_span(self, at: dt.datetime) -> tuple[float, float]:
        """A window ``[since, until)`` of POSIX seconds around ``at`` in which :meth:`is_open` gives the
        same answer as at ``at``. Routing keeps which targets are closed per such window instead of asking
        every schedule on every call. The window never crosses local midnight, an opening or closing time
        or a change of the zone's UTC offset; in the repeated hour of a fall-back day it is one second."""
        if at.tzinfo is None or at.utcoffset() is None:
            _require_aware(at, "at")
        plan = self._plan
        if plan.always:
            return -math.inf, math.inf
        local = at.astimezone(plan.zone)
        if local.fold:  # second pass through a repeated hour: rare, kept simple
            whole = math.floor(at.timestamp())
            return float(whole), float(whole + 1)
        date = local.date()
        second = local.hour * 3600 + local.minute * 60 + local.second
        lo, hi = edges_around(second, itertools.chain.from_iterable(plan.day(date)[0]), 0, _DAY)  # midnights
        try:
            spill = plan.day(date - dt.timedelta(days=1))[1]  # yesterday's overnight hours end here
            lo, hi = edges_around(second, (spill,), lo, hi)
            return steady_window(at, plan.zone, second - lo, hi - second)
        except (OverflowError, ValueError):  # at the ends of the calendar (years 1 and 9999): one second
            whole = math.floor(at.timestamp())
            return float(whole), float(whole + 1)

    def next_open(self, after: dt.datetime) -> dt.datetime | None:
        """The first instant at or after ``after`` at which the schedule is open, in UTC; ``after`` itself
        when open now; ``None`` when closed for the next 14 days."""
        _require_aware(after, "after")
        if self.is_open(after):
            return after.astimezone(_UTC)
        plan = self._plan
        date, second = _latest_wall(after, plan.zone)
        now_wall = dt.datetime.combine(date, _MIDNIGHT) + dt.timedelta(seconds=second)
        limit = after + _NEXT_OPEN_HORIZON
        for offset in range(-1, _NEXT_OPEN_HORIZON.days + 2):
            day = date + dt.timedelta(days=offset)
            for start, _end in plan.day(day)[0]:
                wall = dt.datetime.combine(day, _MIDNIGHT) + dt.timedelta(seconds=start)
                if wall <= now_wall:
                    continue
                instant = _first_instant(wall, plan.zone)
                if instant > limit:
                    return None
                if self.is_open(instant):  # false only for an interval lost in a spring-forward gap
                    return instant
        return None

    def describe(self) -> str:
        """The weekly hours in words, for a spoken message:
        "Monday to Friday 8 AM to 6 PM, Saturday 9 AM to 1 PM Central time"."""
        groups: dict[Hours, list[int]] = {}
        for day in range(7):
            hours = tuple(sorted(self.weekly[day]))
            if hours:
                groups.setdefault(hours, []).append(day)
        zone = _zone_words(self.timezone)
        if not groups:
            return "closed"
        if list(groups.values()) == [list(range(7))] and self._plan.week[0][0] == ((0, _DAY),):
            text = "24 hours a day, 7 days a week"
        else:
            text = ", ".join(f"{_days_words(days)} {_hours_words(hours)}" for hours, days in groups.items())
            text = f"{text} {zone}"
        if self.holiday_country:
            text += ", closed on public holidays"
        return text


# -- describing ----------------------------------------------------------------------------------------------

_ZONE_WORDS = {
    "America/New_York": "Eastern time",
    "America/Detroit": "Eastern time",
    "America/Indiana/Indianapolis": "Eastern time",
    "America/Kentucky/Louisville": "Eastern time",
    "America/Chicago": "Central time",
    "America/Denver": "Mountain time",
    "America/Boise": "Mountain time",
    "America/Phoenix": "Arizona time",
    "America/Los_Angeles": "Pacific time",
    "America/Anchorage": "Alaska time",
    "Pacific/Honolulu": "Hawaii time",
    "America/Adak": "Hawaii-Aleutian time",  # Hawaii's standard offset, but with daylight saving time
    "America/Puerto_Rico": "Atlantic time",
    "UTC": "UTC",
    "Etc/UTC": "UTC",
}
#: Read only for a zone that keeps North America's summer time (``_zone_words``): Hawaii keeps none, so a zone at
#: its standard offset that does (Adak, also named America/Atka) is Hawaii-Aleutian time, an hour off Hawaii's
#: all summer.
_US_STANDARD_OFFSETS = {-4: "Atlantic time", -5: "Eastern time", -6: "Central time", -7: "Mountain time",
                        -8: "Pacific time", -9: "Alaska time", -10: "Hawaii-Aleutian time"}  # fmt: skip


def _zone_words(name: str) -> str:
    if name in _ZONE_WORDS:
        return _ZONE_WORDS[name]
    if name.startswith("America/"):
        # The smaller US zones (America/Indiana/Knox …) and Canada's by standard offset: those that keep
        # North America's summer time. Bogota, Lima or Cancun share Eastern time's offset but not its name.
        zone = zoneinfo.ZoneInfo(name)
        january = dt.datetime(2026, 1, 15, tzinfo=zone).utcoffset()
        july = dt.datetime(2026, 7, 15, tzinfo=zone).utcoffset()
        if january is not None and july == january + dt.timedelta(hours=1) and january.total_seconds() % 3600 == 0:
            words = _US_STANDARD_OFFSETS.get(int(january.total_seconds() // 3600))
            if words:
                return words
    return name.rsplit("/", 1)[-1].replace("_", " ") + " time"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _days_words(days: list[int]) -> str:
    if days == list(range(7)):
        return "every day"
    runs: list[list[int]] = []
    for day in days:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][-1] == 6:  # across the week's end: Saturday to Monday
        runs[0] = runs.pop() + runs[0]
        runs.sort(key=lambda run: run[0] if run[0] <= run[-1] else -1)  # that run first: Sunday, Monday, Wednesday
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{_WEEKDAY_NAMES[run[0]]} to {_WEEKDAY_NAMES[run[-1]]}")
        else:
            parts.extend(_WEEKDAY_NAMES[d] for d in run)
    return _and(parts)


def _time_words(value: dt.time) -> str:
    if value == _MIDNIGHT:
        return "midnight"
    if (value.hour, value.minute, value.second) == (12, 0, 0):
        return "noon"
    hour = value.hour % 12 or 12
    suffix = "AM" if value.hour < 12 else "PM"
    return f"{hour} {suffix}" if value.minute == 0 else f"{hour}:{value.minute:02d} {suffix}"


def _hours_words(hours: Hours) -> str:
    parts = []
    for start, end in hours:
        if start == end:
            parts.append("24 hours" if start == _MIDNIGHT else f"24 hours from {_time_words(start)}")
        else:
            parts.append(f"{_time_words(start)} to {_time_words(end)}")
    return _and(parts)


# -- parsing -----------------------------------------------------------------------------------------------

_ALWAYS_WORDS = frozenset({"24h", "24 h", "24/7", "24 hours", "open", "always", "all day"})
_CLOSED_WORDS = frozenset({"closed", "off", "none"})
_TIME_RE = re.compile(r"(\d{1,2}):(\d{2})")
_RANGE_SPLIT_RE = re.compile(r"\s*(?:-|\u2013|\u2014|\bto\b)\s*")  # hyphen, en dash, em dash, "to"


def _parse_time(text: str, whole: str, closing: bool) -> dt.time:
    match = _TIME_RE.fullmatch(text)
    if not match:
        raise ValueError(f"cannot read opening hours {whole!r}: {text!r} is not a time (expected HH:MM)")
    hour, minute = int(match[1]), int(match[2])
    if hour == 24 and minute == 0:
        if not closing:
            raise ValueError(f"cannot read opening hours {whole!r}: 24:00 can only be a closing time")
        return _MIDNIGHT
    if hour > 23 or minute > 59:
        raise ValueError(
            f"cannot read opening hours {whole!r}: {text!r} is not a time of day (00:00 to 24:00)"
        )
    return dt.time(hour, minute)


def parse_hours(text: str) -> Hours:
    """Read one day's hours: "08:00-18:00", "08:00-12:00, 13:00-17:00", "22:00-06:00" (overnight),
    "24h" / "open" (all day) or "closed". A closing time of 24:00 means midnight."""
    if not isinstance(text, str):
        raise ValueError(f"opening hours must be text such as '08:00-18:00', got {text!r}")
    cleaned = " ".join(text.split()).casefold()
    if cleaned in _ALWAYS_WORDS:
        return ((_MIDNIGHT, _MIDNIGHT),)
    if cleaned in _CLOSED_WORDS:
        return ()
    if not cleaned:
        raise ValueError("empty opening hours: write 'closed', '24h' or a range like '08:00-18:00'")
    intervals = []
    for part in cleaned.split(","):
        part = part.strip()
        pieces = _RANGE_SPLIT_RE.split(part)
        if not part or len(pieces) != 2:
            raise ValueError(
                f"cannot read opening hours {text!r}: {part!r} is not a range like '08:00-18:00'"
            )
        start, end = _parse_time(pieces[0], text, False), _parse_time(pieces[1], text, True)
        if start == end and pieces[1].strip() != "24:00":  # "00:00-24:00" is the whole day, spelled out
            raise ValueError(f"opening hours {text!r}: {part!r} starts and ends at the same time "
                             "(write '24h' for the whole day, or 'closed')")
        intervals.append((start, end))
    # Overlapping ranges are almost always a typo: refuse them rather than guess. A range that runs past
    # midnight runs into the *next* day's hours, which this text may not be ("mon: 05:00-07:00,
    # 22:00-06:00" is two periods): that is a union, as across two days' keys, not an overlap here.
    spans = []
    for start, end in intervals:
        s, e = _seconds(start, text), _seconds(end, text)
        spans.append((s, e if e > s else e + _DAY, start, end))
    spans.sort()
    for (_, end1, a1, b1), (start2, _, a2, b2) in itertools.pairwise(spans):
        if start2 < end1:
            raise ValueError(
                f"opening hours {text!r} overlap: {a1:%H:%M}-{b1:%H:%M} and {a2:%H:%M}-{b2:%H:%M}"
            )
    return tuple(intervals)


_DAY_KEYS = {
    **{name: i for i, name in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))},
    **{name.casefold(): i for i, name in enumerate(_WEEKDAY_NAMES)},
    "tues": 1,
    "thur": 3,
    "thurs": 3,
}
_GROUP_KEYS = {
    "daily": (0, range(7)),
    "everyday": (0, range(7)),
    "every day": (0, range(7)),
    "weekdays": (1, range(5)),
    "weekend": (1, range(5, 7)),
    "weekends": (1, range(5, 7)),
}


def parse_weekly(mapping: Mapping[str, Any]) -> dict[int, Hours]:
    """Read weekly hours keyed by day ("mon".."sun", or full names) and groups ("weekdays", "weekend",
    "daily"/"everyday"). A day key overrides a group, and "weekdays"/"weekend" override "daily", whatever
    the order. Days not mentioned are closed. YAML's ``off`` (False) means closed and True means 24h."""
    levels: dict[int, tuple[int, str]] = {}
    result: dict[int, Hours] = {day: () for day in range(7)}
    for key, value in mapping.items():
        name = " ".join(str(key).split()).casefold()
        if name in _DAY_KEYS:
            level, days = 2, range(_DAY_KEYS[name], _DAY_KEYS[name] + 1)
        elif name in _GROUP_KEYS:
            level, days = _GROUP_KEYS[name]
        else:
            raise ValueError(
                f"unknown day {key!r} in weekly hours (use mon..sun, weekdays, weekend or daily)"
            )
        if value is False:
            hours: Hours = ()
        elif value is True:
            hours = ((_MIDNIGHT, _MIDNIGHT),)
        else:
            try:
                hours = parse_hours(value)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        for day in days:
            if day in levels and levels[day][0] == level:
                raise ValueError(
                    f"weekly hours give {_WEEKDAY_NAMES[day]} twice ({levels[day][1]!r} and {key!r})"
                )
            if day not in levels or levels[day][0] < level:
                levels[day] = (level, str(key))
                result[day] = hours
    return result
