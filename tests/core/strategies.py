"""Hypothesis strategies for the core's values, shared by the core test modules.

The pools are deliberately small (a few ZIPs, prefixes and numbers) so that random values collide:
callers inside and outside areas, blocked and unblocked numbers, counters right at their caps.

Import as ``from tests.core import strategies as cs`` (or ``import strategies`` when
``tests/core`` itself is on ``sys.path``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from decimal import Decimal

from hypothesis import strategies as st

from callbroker.core.model import (
    CallFacts,
    Caller,
    Campaign,
    Fallback,
    FallbackKind,
    RoutingContext,
    Target,
    TargetCounters,
    ZipSource,
)

UTC = dt.UTC
BASE_TIME = dt.datetime(2025, 6, 2, 12, 0, tzinfo=UTC)  # a Monday, noon UTC

ZIPS = ("78701", "78702", "78703", "78704", "73301", "10001")
PREFIXES = ("+1900", "+1976", "+1512", "+1737")
NUMBERS = ("+19005550100", "+19765550101", "+15125550102", "+15125550103", "+17375550104", "+12125550105")


# --- fake schedules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HourSchedule:
    """A stand-in for ``schedule.Schedule``: open during the listed UTC hours (hashable value)."""

    hours: frozenset[int]

    def is_open(self, at: dt.datetime) -> bool:
        return at.astimezone(UTC).hour in self.hours

    def steady_span(self, at: dt.datetime) -> tuple[float, float]:
        """The UTC hour around ``at`` (the answer changes at most on the hour)."""
        start = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0).timestamp()
        return start, start + 3600


class ListHourSchedule:
    """The same, but unhashable (a mutable list inside), to exercise identity grouping; and without
    ``steady_span``, so routing asks it on every call."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, hours: list[int]) -> None:
        self.hours = list(hours)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ListHourSchedule) and self.hours == other.hours

    def is_open(self, at: dt.datetime) -> bool:
        return at.astimezone(UTC).hour in self.hours


ALWAYS_OPEN = HourSchedule(frozenset(range(24)))
NEVER_OPEN = HourSchedule(frozenset())


def schedules() -> st.SearchStrategy[object | None]:
    """None (always open), or an hour-set schedule; a few shared values so schedules repeat."""
    hour_sets = st.frozensets(st.integers(0, 23), max_size=24)
    return st.one_of(
        st.none(),
        st.sampled_from((ALWAYS_OPEN, NEVER_OPEN, HourSchedule(frozenset(range(9, 17))))),
        hour_sets.map(HourSchedule),
        hour_sets.map(lambda hours: ListHourSchedule(sorted(hours))),
    )


# --- small values ---------------------------------------------------------------------------------


def e164() -> st.SearchStrategy[str]:
    """US numbers in E.164, mostly from a small colliding pool."""
    return st.one_of(
        st.sampled_from(NUMBERS),
        st.integers(2_000_000_000, 9_999_999_999).map(lambda n: f"+1{n}"),
    )


def zip_codes() -> st.SearchStrategy[str]:
    return st.sampled_from(ZIPS)


def caps() -> st.SearchStrategy[int | None]:
    """None (unlimited) or a small cap, 0 included (0 = never)."""
    return st.one_of(st.none(), st.integers(0, 4))


def money() -> st.SearchStrategy[Decimal]:
    """Non-negative amounts with up to 4 places (to exercise rounding to cents)."""
    return st.decimals(min_value=0, max_value=10_000, places=4, allow_nan=False, allow_infinity=False)


def aware_datetimes() -> st.SearchStrategy[dt.datetime]:
    """Aware datetimes within a year of BASE_TIME, in UTC or a fixed offset."""
    return st.builds(
        lambda seconds, offset: (BASE_TIME + dt.timedelta(seconds=seconds)).astimezone(
            dt.timezone(dt.timedelta(hours=offset))
        ),
        st.integers(-365 * 86_400, 365 * 86_400),
        st.integers(-10, 10),
    )


def callers(number: st.SearchStrategy[str | None] | None = None) -> st.SearchStrategy[Caller]:
    return st.builds(
        Caller,
        number=number if number is not None else st.one_of(st.none(), e164()),
        zip_code=st.one_of(st.none(), zip_codes()),
        zip_source=st.sampled_from(ZipSource),
        near_zips=st.one_of(st.none(), st.frozensets(zip_codes(), max_size=5)),  # a guess from the area code
    )


def fallbacks() -> st.SearchStrategy[Fallback]:
    return st.builds(
        Fallback,
        kind=st.sampled_from(FallbackKind),
        number=st.one_of(st.none(), e164()),
        message=st.sampled_from(("", "We are closed. Please call back tomorrow.")),
    )


# --- campaigns and targets ------------------------------------------------------------------------


def campaigns() -> st.SearchStrategy[Campaign]:
    return st.builds(
        Campaign,
        id=st.integers(1, 1000),
        name=st.sampled_from(("Austin plumbing", "Dallas roofing")),
        category=st.sampled_from(("", "plumbing")),
        buffer_seconds=st.sampled_from((0, 30, 60, 90, 120)),
        duplicate_window=st.sampled_from(
            (dt.timedelta(hours=1), dt.timedelta(days=1), dt.timedelta(days=30))
        ),
        payout=money(),
        blocked_numbers=st.frozensets(e164(), max_size=3),
        blocked_prefixes=st.lists(st.sampled_from(PREFIXES), max_size=2, unique=True).map(tuple),
        velocity_limit=st.integers(0, 6),
        velocity_window=st.sampled_from((dt.timedelta(minutes=10), dt.timedelta(hours=1))),
        require_attestation=st.booleans(),
        fallback=fallbacks(),
    )


def targets(target_id: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[Target]:
    return st.builds(
        Target,
        id=target_id if target_id is not None else st.integers(1, 10_000),
        buyer_id=st.integers(1, 5),
        name=st.sampled_from(("Acme Plumbing", "Bolt Rooter", "Crest Pipes")),
        number=st.sampled_from(NUMBERS),
        priority=st.integers(1, 3),
        weight=st.integers(1, 5),
        area_zips=st.one_of(st.none(), st.frozensets(zip_codes(), max_size=4)),
        accepts_unknown_location=st.booleans(),
        schedule=schedules(),
        hourly_cap=caps(),
        daily_cap=caps(),
        monthly_cap=caps(),
        concurrency_limit=caps(),
        paused=st.sampled_from((False, False, False, True)),  # mostly active
        blocked_prefixes=st.lists(st.sampled_from(PREFIXES), max_size=2, unique=True).map(tuple),
        price=st.sampled_from((Decimal("0.00"), Decimal("45.00"), Decimal("12.345"))),
        min_talk_seconds=st.one_of(st.none(), st.sampled_from((0, 30, 90))),
    )


_ANY_TARGET = targets()
_COUNTS = st.builds(
    TargetCounters,
    active=st.integers(0, 5),
    hour=st.integers(0, 5),
    day=st.integers(0, 5),
    month=st.integers(0, 5),
)


@st.composite
def target_lists(draw: st.DrawFn, min_size: int = 0, max_size: int = 12) -> tuple[Target, ...]:
    """Targets with unique ids, in a random input order."""
    drawn = draw(st.lists(_ANY_TARGET, min_size=min_size, max_size=max_size))
    ids = draw(st.lists(st.integers(1, 10_000), min_size=len(drawn), max_size=len(drawn), unique=True))
    return tuple(replace(target, id=target_id) for target, target_id in zip(drawn, ids))


def counters_for(target_list: tuple[Target, ...]) -> st.SearchStrategy[dict[int, TargetCounters]]:
    """Live counters for some of the targets (a missing id means all zeros)."""
    ids = [target.id for target in target_list]
    if not ids:
        return st.just({})
    return st.dictionaries(st.sampled_from(ids), _COUNTS, max_size=len(ids))


def routing_contexts(target_list: tuple[Target, ...]) -> st.SearchStrategy[RoutingContext]:
    """A caller at some hour, sometimes a repeat caller (sticky id of a target, or an unknown id; its buyer
    given or left for the router to find)."""
    ids = [target.id for target in target_list]
    sticky = st.one_of(st.none(), st.integers(1, 10_000))
    if ids:
        sticky = st.one_of(sticky, st.sampled_from(ids))
    buyer = st.one_of(st.none(), st.integers(1, 6))
    return st.builds(RoutingContext, caller=callers(), now=aware_datetimes(), sticky_target_id=sticky,
                     sticky_buyer_id=buyer)


_ANY_CAMPAIGN = campaigns()


@st.composite
def routing_cases(draw: st.DrawFn, max_targets: int = 12):
    """``(campaign, targets, context, counters)`` ready for ``route``."""
    target_list = draw(target_lists(max_size=max_targets))
    return (
        draw(_ANY_CAMPAIGN),
        target_list,
        draw(routing_contexts(target_list)),
        draw(counters_for(target_list)),
    )


# --- qualification --------------------------------------------------------------------------------

VERSTATS = (
    None,
    "",
    "TN-Validation-Passed-A",
    "TN-Validation-Passed-B",
    "TN-Validation-Passed-C",
    "TN-Validation-Failed-A",
    "TN-Validation-Failed-C",
    "No-TN-Validation",
)


def _near(window: dt.timedelta) -> st.SearchStrategy[dt.timedelta]:
    """Offsets that hit a window's edges as well as anywhere around it (negative = in the future)."""
    second = dt.timedelta(seconds=1)
    return st.one_of(
        st.sampled_from((window - second, window, window + second, dt.timedelta(0), -second)),
        st.integers(-3_600, int(window.total_seconds() * 2)).map(lambda s: dt.timedelta(seconds=s)),
    )


@st.composite
def qualification_cases(draw: st.DrawFn) -> tuple[Campaign, CallFacts]:
    """``(campaign, facts)`` with times placed around the campaign's windows and buffer."""
    campaign = draw(_ANY_CAMPAIGN)
    started_at = draw(aware_datetimes())
    buffer = draw(st.one_of(st.none(), st.sampled_from((0, 30, 90))))
    needed = campaign.buffer_seconds if buffer is None else buffer
    talk = draw(st.one_of(st.sampled_from((0, max(needed - 1, 0), needed, needed + 1)), st.integers(0, 600)))
    previous = draw(st.one_of(st.none(), _near(campaign.duplicate_window).map(lambda d: started_at - d)))
    recent = draw(st.lists(_near(campaign.velocity_window).map(lambda d: started_at - d), max_size=8))
    number = draw(st.one_of(st.none(), e164(), st.sampled_from(sorted(campaign.blocked_numbers) or [None])))
    facts = CallFacts(
        caller=draw(callers(st.just(number))),
        connected=draw(st.booleans()),
        talk_seconds=talk,
        started_at=started_at,
        in_area=draw(st.sampled_from((None, True, False))),
        category_confirmed=draw(st.sampled_from((None, True, False))),
        stir_verstat=draw(st.sampled_from(VERSTATS)),
        previous_billable_at=previous,
        recent_call_times=tuple(recent),
        target_min_talk_seconds=buffer,
        target_price=draw(money()),
    )
    return campaign, facts
