"""Routing: who may take a call, why the others may not, and in which order they ring."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle
import random
from collections import Counter
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbroker.core import routing
from callbroker.core.bench import bench_core
from callbroker.core.model import (
    Caller,
    Campaign,
    Exclusion,
    Fallback,
    FallbackKind,
    RoutingContext,
    Target,
    TargetCounters,
    ZipSource,
)
from callbroker.core.routing import PreparedTargets, explain, prepare_targets, route
from callbroker.core.schedule import Schedule, parse_weekly

try:
    from tests.core import strategies as cs
except ImportError:  # tests/core itself is on sys.path (pytest's default rootdir-less import mode)
    import strategies as cs  # type: ignore[no-redef]

NOON = dt.datetime(2025, 6, 2, 12, 0, tzinfo=dt.UTC)
seeds = st.integers(0, 2**32 - 1)


def applicable_exclusions(campaign, target, context, counters) -> list[Exclusion]:
    """Every exclusion that applies to ``target``, in the documented order (the test's own reference)."""
    found = []
    number = context.caller.number
    zip_code = context.caller.zip_code or None
    near = context.caller.near_zips
    if near is not None:  # a ZIP guessed from the area code: of unknown location, near those ZIPs
        zip_code = None
    if target.paused:
        found.append(Exclusion.PAUSED)
    if number is not None:
        prefixes = list(campaign.blocked_prefixes) + list(target.blocked_prefixes)
        if number in campaign.blocked_numbers or any(number.startswith(p) for p in prefixes):
            found.append(Exclusion.CALLER_BLOCKED)
    if target.area_zips is not None:
        if zip_code is None and not target.accepts_unknown_location:
            found.append(Exclusion.OUT_OF_AREA)
        elif zip_code is None and near is not None and not (near & target.area_zips):
            found.append(Exclusion.OUT_OF_AREA)  # serves none of the ZIPs the caller may be in
        if zip_code is not None and zip_code not in target.area_zips:
            found.append(Exclusion.OUT_OF_AREA)
    if target.schedule is not None and not target.schedule.is_open(context.now):
        found.append(Exclusion.CLOSED)
    counts = counters.get(target.id, TargetCounters())
    for cap, value, reason in (
        (target.hourly_cap, counts.hour, Exclusion.HOURLY_CAP),
        (target.daily_cap, counts.day, Exclusion.DAILY_CAP),
        (target.monthly_cap, counts.month, Exclusion.MONTHLY_CAP),
        (target.concurrency_limit, counts.active, Exclusion.CONCURRENCY_FULL),
    ):
        if cap is not None and value >= cap:
            found.append(reason)
    return found


def target(tid: int, **fields) -> Target:
    fields.setdefault("name", f"Target {tid}")
    fields.setdefault("buyer_id", 1)
    return Target(id=tid, number=f"+1512555{tid:04d}", **fields)


def context(number: str | None = "+15125550000", zip_code: str | None = "78701", **fields) -> RoutingContext:
    return RoutingContext(caller=Caller(number, zip_code), now=fields.pop("now", NOON), **fields)


CAMPAIGN = Campaign(id=1, name="Austin plumbing", fallback=Fallback(FallbackKind.CALLBACK))


# --- properties -----------------------------------------------------------------------------------


# One generated case feeds every invariant: generating cases is the slow part of these tests.
@given(cs.routing_cases(), seeds)
def test_decision_invariants(case, seed):
    campaign, targets, ctx, counters = case

    decision = route(campaign, targets, ctx, counters, random.Random(seed))

    assert_every_target_rung_or_excluded_once_with_its_first_reason(decision, case)
    assert_sticky_first_then_priority_order(decision, case)
    assert_fallback_only_when_nobody_can_take_the_call(decision, case)
    assert route(campaign, targets, ctx, counters, random.Random(seed)) == decision  # same seed, same order


def assert_every_target_rung_or_excluded_once_with_its_first_reason(decision, case):
    campaign, targets, ctx, counters = case
    ring_ids = list(decision.ring)
    excluded_ids = [tid for tid, _ in decision.excluded]
    assert sorted(ring_ids + excluded_ids) == sorted(t.id for t in targets)
    assert excluded_ids == [t.id for t in targets if t.id not in ring_ids]  # input order
    by_id = {t.id: t for t in targets}
    for tid, reason in decision.excluded:
        reasons = applicable_exclusions(campaign, by_id[tid], ctx, counters)
        assert reasons, f"#{tid} excluded for {reason} but nothing applies"
        assert reason == reasons[0]
    for tid in ring_ids:
        rung = by_id[tid]
        assert applicable_exclusions(campaign, rung, ctx, counters) == []
        assert not rung.paused
        assert rung.schedule is None or rung.schedule.is_open(ctx.now)


def assert_sticky_first_then_priority_order(decision, case):
    """A repeat caller's last target first (when eligible), then its buyer's other eligible targets, then the
    rest; each group by priority. Sticky exactly when the ring starts with that buyer's target."""
    _, targets, ctx, _ = case
    by_id = {t.id: t for t in targets}
    sticky_id = ctx.sticky_target_id
    buyer = ctx.sticky_buyer_id
    if buyer is None and sticky_id in by_id:
        buyer = by_id[sticky_id].buyer_id
    ring = list(decision.ring)
    if sticky_id is not None and sticky_id in ring:
        assert ring.pop(0) == sticky_id
    theirs = [tid for tid in ring if buyer is not None and by_id[tid].buyer_id == buyer]
    assert ring[:len(theirs)] == theirs
    assert decision.sticky == (len(ring) < len(decision.ring) or bool(theirs))
    for group in (theirs, ring[len(theirs):]):
        priorities = [by_id[tid].priority for tid in group]
        assert priorities == sorted(priorities)


def assert_fallback_only_when_nobody_can_take_the_call(decision, case):
    campaign = case[0]
    if decision.ring:
        assert decision.fallback is None
        assert decision.routed
    else:
        assert decision.fallback == campaign.fallback
        assert not decision.routed


@given(cs.routing_cases(), seeds)
def test_prepared_targets_decide_exactly_like_plain_targets(case, seed):
    campaign, targets, ctx, counters = case
    prepared = prepare_targets(targets)

    assert isinstance(prepared, PreparedTargets)
    assert prepared == targets
    assert route(campaign, prepared, ctx, counters, random.Random(seed)) == route(
        campaign, targets, ctx, counters, random.Random(seed)
    )


@given(st.data(), seeds)
def test_prepared_targets_decide_a_stream_of_calls_exactly_like_plain_targets(data, seed):
    """What one decision leaves in ``PreparedTargets`` (the kept shortlists of callers decided by the
    clock alone) never changes a later one: call after call, with repeated callers, changing
    counters and live pauses, the prepared path matches the plain one."""
    campaign, targets, _, _ = data.draw(cs.routing_cases())
    ids = [t.id for t in targets]
    callers = data.draw(st.lists(cs.routing_contexts(targets), min_size=1, max_size=3))
    pauses = st.frozensets(st.sampled_from(ids)) if ids else st.just(frozenset())
    calls = data.draw(
        st.lists(st.tuples(st.sampled_from(callers), cs.counters_for(targets), pauses), min_size=2, max_size=8)
    )
    prepared = prepare_targets(targets)
    prepared_rng, plain_rng = random.Random(seed), random.Random(seed)

    for ctx, counters, paused_ids in calls:
        assert route(campaign, prepared, ctx, counters, prepared_rng, paused_ids) == route(
            campaign, targets, ctx, counters, plain_rng, paused_ids
        )


# --- weights --------------------------------------------------------------------------------------


def first_counts(targets, draws: int, seed: int, prepared: bool = False) -> Counter:
    rng = random.Random(seed)
    pool = prepare_targets(targets) if prepared else targets
    return Counter(route(CAMPAIGN, pool, context(), {}, rng).ring[0] for _ in range(draws))


def test_weight_three_target_comes_first_about_three_times_as_often_as_weight_one():
    targets = (target(1, weight=1), target(2, weight=3), target(3, weight=5, priority=2))

    firsts = first_counts(targets, draws=4000, seed=20250602)

    assert firsts[3] == 0  # a lower priority never rings first
    ratio = firsts[2] / firsts[1]
    assert 2.4 <= ratio <= 3.75, firsts  # expected 3.0; 4,000 draws give about ±0.25


def test_weights_share_first_place_in_proportion():
    targets = (target(1, weight=1), target(2, weight=2), target(3, weight=5))

    firsts = first_counts(targets, draws=4000, seed=7, prepared=True)

    for tid, weight in ((1, 1), (2, 2), (3, 5)):
        share = firsts[tid] / 4000
        assert abs(share - weight / 8) < 0.03, firsts


def test_order_within_a_priority_varies_between_calls():
    targets = tuple(target(tid) for tid in range(1, 6))
    rng = random.Random(3)

    orders = {route(CAMPAIGN, targets, context(), {}, rng).ring for _ in range(50)}

    assert len(orders) > 10


def test_without_rng_route_uses_the_module_random():
    targets = (target(1), target(2, priority=2))

    decision = route(CAMPAIGN, targets, context(), {})

    assert decision.ring == (1, 2)


# --- the rules, one example each -------------------------------------------------------------------


def test_paused_comes_before_every_other_reason():
    closed_and_paused = target(1, paused=True, schedule=cs.NEVER_OPEN, hourly_cap=0)

    decision = route(CAMPAIGN, (closed_and_paused,), context(), {})

    assert decision.excluded == ((1, Exclusion.PAUSED),)


def test_caller_blocked_by_campaign_number_campaign_prefix_or_target_prefix():
    campaign = Campaign(
        id=1, name="c", blocked_numbers=frozenset({"+15125550000"}), blocked_prefixes=("+1900",)
    )
    targets = (target(1), target(2, blocked_prefixes=("+1737",)))

    assert route(campaign, targets, context("+15125550000"), {}).ring == ()
    assert route(campaign, targets, context("+19005551234"), {}).ring == ()
    assert route(campaign, targets, context("+17375551234"), {}).excluded == ((2, Exclusion.CALLER_BLOCKED),)


def test_anonymous_caller_is_never_blocked_by_routing():
    campaign = Campaign(id=1, name="c", blocked_prefixes=("",))  # "" would match any number
    decision = route(campaign, (target(1, blocked_prefixes=("",)),), context(number=None), {})

    assert decision.ring == (1,)


def test_service_area_and_unknown_location():
    austin = frozenset({"78701", "78702"})
    everywhere = target(1)
    local = target(2, area_zips=austin)
    local_known_only = target(3, area_zips=austin, accepts_unknown_location=False)
    targets = (everywhere, local, local_known_only)

    assert set(route(CAMPAIGN, targets, context(zip_code="78701"), {}).ring) == {1, 2, 3}
    outside = route(CAMPAIGN, targets, context(zip_code="10001"), {})
    assert outside.ring == (1,)
    assert outside.excluded == ((2, Exclusion.OUT_OF_AREA), (3, Exclusion.OUT_OF_AREA))
    unknown = route(CAMPAIGN, targets, context(zip_code=None), {})
    assert set(unknown.ring) == {1, 2}
    assert unknown.excluded == ((3, Exclusion.OUT_OF_AREA),)


@pytest.mark.parametrize("prepared", [False, True])
def test_an_empty_zip_is_an_unknown_location(prepared):
    austin = frozenset({"78701", "78702"})
    targets = (target(1, area_zips=austin), target(2, area_zips=austin, accepts_unknown_location=False))
    plan = prepare_targets(targets) if prepared else targets

    decision = route(CAMPAIGN, plan, context(zip_code=""), {})
    assert decision.ring == (1,)
    assert decision.excluded == ((2, Exclusion.OUT_OF_AREA),)
    assert routing.counted_targets(CAMPAIGN, plan, context(zip_code="")) == (targets[0],)


def test_closed_schedule_excludes_and_open_one_does_not():
    office = cs.HourSchedule(frozenset(range(9, 17)))  # UTC hours
    targets = (target(1, schedule=office),)

    assert route(CAMPAIGN, targets, context(now=NOON), {}).ring == (1,)
    evening = route(CAMPAIGN, targets, context(now=NOON.replace(hour=20)), {})
    assert evening.excluded == ((1, Exclusion.CLOSED),)
    assert evening.fallback == CAMPAIGN.fallback


def test_caps_none_is_unlimited_zero_is_never_and_counter_at_cap_excludes():
    busy = TargetCounters(active=3, hour=9, day=99, month=999)
    targets = (
        target(1),  # no caps at all
        target(2, hourly_cap=0),
        target(3, hourly_cap=10, daily_cap=99),
        target(4, monthly_cap=999),
        target(5, concurrency_limit=3),
        target(6, hourly_cap=10, daily_cap=100, monthly_cap=1000, concurrency_limit=4),
    )
    counters = {tid: busy for tid in range(1, 7)}

    decision = route(CAMPAIGN, targets, context(), counters)

    assert set(decision.ring) == {1, 6}
    assert decision.excluded == (
        (2, Exclusion.HOURLY_CAP),
        (3, Exclusion.DAILY_CAP),
        (4, Exclusion.MONTHLY_CAP),
        (5, Exclusion.CONCURRENCY_FULL),
    )


def test_a_cap_of_zero_excludes_even_without_counters():
    decision = route(CAMPAIGN, (target(1, concurrency_limit=0),), context(), {})

    assert decision.excluded == ((1, Exclusion.CONCURRENCY_FULL),)


def test_sticky_target_rings_first_even_from_a_lower_priority():
    targets = (target(1, priority=1), target(2, priority=3), target(3, priority=2))

    decision = route(CAMPAIGN, targets, context(sticky_target_id=2), {})

    assert decision.ring == (2, 1, 3)
    assert decision.sticky


def test_ineligible_sticky_target_is_simply_excluded():
    targets = (target(1, buyer_id=2), target(2, paused=True))

    decision = route(CAMPAIGN, targets, context(sticky_target_id=2), {})

    assert decision.ring == (1,)
    assert not decision.sticky
    assert decision.excluded == ((2, Exclusion.PAUSED),)


@pytest.mark.parametrize("prepared", [False, True])
def test_a_repeat_caller_goes_back_to_the_buyer_when_the_target_it_reached_is_full(prepared):
    """The issue: a repeat caller goes first to the *buyer* it reached last. Buyer 1's line 11 (which the
    caller reached) is full; its other line 12, of a lower priority, rings before buyer 2's line 21."""
    targets = (target(11, priority=1, concurrency_limit=1), target(12, priority=2), target(21, buyer_id=2, priority=1),
               target(22, buyer_id=2, priority=3))
    plan = prepare_targets(targets) if prepared else targets
    full = {11: TargetCounters(active=1)}

    decision = route(CAMPAIGN, plan, context(sticky_target_id=11), full)
    assert decision.ring == (12, 21, 22) and decision.sticky
    assert decision.excluded == ((11, Exclusion.CONCURRENCY_FULL),)
    # Its buyer given by the shell: the target it reached may have left the campaign since.
    assert route(CAMPAIGN, plan, context(sticky_target_id=99, sticky_buyer_id=2), full).ring == (21, 22, 12)
    # None of the buyer's targets eligible: the others, as for anyone.
    none_left = route(CAMPAIGN, plan, context(sticky_target_id=11), full, paused_ids={12})
    assert none_left.ring == (21, 22) and not none_left.sticky
    assert route(CAMPAIGN, plan, context(sticky_buyer_id=3), full) == route(CAMPAIGN, plan, context(), full)


def test_no_targets_means_fallback():
    decision = route(CAMPAIGN, (), context(), {})

    assert decision == route(CAMPAIGN, prepare_targets(()), context(), {})
    assert decision.ring == () and decision.excluded == ()
    assert decision.fallback == Fallback(FallbackKind.CALLBACK)


def test_prepared_targets_group_equal_schedules_and_accept_unhashable_ones():
    office = cs.HourSchedule(frozenset(range(9, 17)))
    same_hours = cs.HourSchedule(frozenset(range(9, 17)))
    unhashable = cs.ListHourSchedule([12])
    targets = (target(1, schedule=office), target(2, schedule=same_hours), target(3, schedule=unhashable))

    prepared = prepare_targets(targets)

    assert len(prepared.schedule_groups) == 2
    assert route(CAMPAIGN, prepared, context(now=NOON), {}, random.Random(1)) == route(
        CAMPAIGN, targets, context(now=NOON), {}, random.Random(1)
    )


OFFICE_HOURS = ("08:00-18:00", "09:00-17:00", "07:00-22:00", "22:00-06:00", "01:30-02:30", "00:00-01:30",
                "closed")


@st.composite
def scheduled_targets(draw) -> tuple[Target, ...]:
    """Targets with real opening hours in zones with clock changes (a few schedules shared)."""
    zones = st.sampled_from(("America/New_York", "America/Chicago", "America/Phoenix", "Europe/London"))
    week = st.fixed_dictionaries({day: st.sampled_from(OFFICE_HOURS) for day in ("weekdays", "sat", "sun")})
    pool = draw(st.lists(st.builds(lambda zone, hours: Schedule(zone, parse_weekly(hours)), zones, week),
                         min_size=1, max_size=4))
    schedules = st.one_of(st.none(), st.sampled_from(pool))
    count = draw(st.integers(1, 8))
    return tuple(target(tid, schedule=draw(schedules), hourly_cap=draw(cs.caps())) for tid in range(1, count + 1))


@given(scheduled_targets(), st.data(), seeds)
def test_closed_targets_kept_per_window_decide_exactly_like_asking_every_schedule(targets, data, seed):
    """Calls minutes or hours apart, in any order, around the clock changes of 2026 (and an ordinary
    week): what ``PreparedTargets`` keeps of which targets were closed when never changes a decision."""
    base = data.draw(st.sampled_from((dt.datetime(2026, 3, 8, 4, tzinfo=dt.UTC),
                                      dt.datetime(2026, 11, 1, 4, tzinfo=dt.UTC),
                                      dt.datetime(2026, 3, 29, 0, tzinfo=dt.UTC),
                                      dt.datetime(2026, 6, 3, 0, tzinfo=dt.UTC))))
    offsets = data.draw(st.lists(st.integers(-3 * 3600, 30 * 3600), min_size=2, max_size=25))
    calls = [unknown_location(base + dt.timedelta(seconds=offset)) for offset in offsets]
    counters = data.draw(cs.counters_for(targets))
    prepared = prepare_targets(targets)
    scheduled = any(t.schedule is not None for t in targets)
    assert prepared.closed_spans == ([] if scheduled else None)
    prepared_rng, plain_rng = random.Random(seed), random.Random(seed)

    for ctx in calls:
        assert route(CAMPAIGN, prepared, ctx, counters, prepared_rng) == route(
            CAMPAIGN, targets, ctx, counters, plain_rng
        )
    if scheduled:
        assert prepared.closed_spans


class CountingSchedule(cs.HourSchedule):
    asked: ClassVar[Counter] = Counter()  # hours -> times asked, over every instance

    def is_open(self, at: dt.datetime) -> bool:
        self.asked[self.hours] += 1
        return super().is_open(at)


def test_schedules_are_asked_once_per_window_in_which_none_opens_or_closes():
    office, evening = CountingSchedule(frozenset(range(9, 17))), CountingSchedule(frozenset(range(17, 23)))
    targets = (target(1, schedule=office), target(2, schedule=evening), target(3))
    prepared = prepare_targets(targets)
    CountingSchedule.asked.clear()

    rings = [route(CAMPAIGN, prepared, unknown_location(NOON + dt.timedelta(minutes=m)), {}).ring
             for m in (0, 10, 59, 5, 60, 61)]

    assert [set(ring) for ring in rings] == [{1, 3}] * 6
    assert CountingSchedule.asked == {office.hours: 2, evening.hours: 2}  # 12:xx and 13:xx
    assert len(prepared.closed_spans) == 2


def test_kept_windows_are_bounded(monkeypatch):
    monkeypatch.setattr(routing, "_CLOSED_SPANS_KEPT", 3)
    targets = tuple(target(hour, schedule=cs.HourSchedule(frozenset({hour}))) for hour in range(24))
    prepared = prepare_targets(targets)

    for hour in (*range(24), *range(23, -1, -1)):
        now = NOON.replace(hour=hour, minute=hour)
        assert route(CAMPAIGN, prepared, unknown_location(now), {}).ring == (hour,)
        assert len(prepared.closed_spans) <= 3


def test_a_schedule_that_cannot_say_how_long_it_holds_is_asked_on_every_call():
    unhashable = cs.ListHourSchedule([12])
    targets = (target(1, schedule=CountingSchedule(frozenset({12}))), target(2, schedule=unhashable))
    prepared = prepare_targets(targets)
    CountingSchedule.asked.clear()

    for minute in range(3):
        decision = route(CAMPAIGN, prepared, unknown_location(NOON.replace(minute=minute)), {})
        assert set(decision.ring) == {1, 2}

    assert prepared.closed_spans is None
    assert CountingSchedule.asked == {frozenset({12}): 3}


def test_prepared_targets_survive_a_cache_round_trip():
    targets = (target(1, area_zips=frozenset({"78701"}), schedule=cs.ALWAYS_OPEN), target(2, paused=True))

    cached = pickle.loads(pickle.dumps(prepare_targets(targets)))

    assert isinstance(cached, PreparedTargets)
    assert route(CAMPAIGN, cached, context(), {}) == route(CAMPAIGN, targets, context(), {})


def test_tables_saved_before_buyers_were_kept_still_route_a_repeat_caller_to_its_buyer():
    """A node's saved snapshot from before the buyers' tables existed: they are made when first needed."""
    targets = (target(1, priority=1), target(2, buyer_id=2, priority=2), target(3, buyer_id=2, priority=3))
    cached = pickle.loads(pickle.dumps(prepare_targets(targets)))
    del cached.buyer_of, cached.targets_of_buyer

    repeat = context(sticky_target_id=2)
    assert route(CAMPAIGN, cached, repeat, {2: TargetCounters(active=1)}, paused_ids={2}).ring == (3, 1)
    assert route(CAMPAIGN, cached, repeat, {}) == route(CAMPAIGN, targets, repeat, {})


def unknown_location(now: dt.datetime) -> RoutingContext:
    return RoutingContext(caller=Caller("+15125550000"), now=now)


def test_callers_of_unknown_location_share_one_kept_shortlist_per_schedule_state():
    office = cs.HourSchedule(frozenset(range(9, 17)))
    targets = (
        target(1, schedule=office, hourly_cap=2),
        target(2, area_zips=frozenset({"78701"}), accepts_unknown_location=False),
        target(3, weight=3, daily_cap=1),
        target(4, area_zips=frozenset({"78701"})),
    )
    prepared = prepare_targets(targets)
    rng, plain_rng = random.Random(5), random.Random(5)
    calls = [
        (NOON, {}),
        (NOON + dt.timedelta(minutes=30), {1: TargetCounters(hour=2), 3: TargetCounters(day=1)}),
        (NOON + dt.timedelta(hours=8), {}),  # the office is closed: another state
        (NOON + dt.timedelta(hours=1), {3: TargetCounters(day=1)}),
    ]

    decisions = [route(CAMPAIGN, prepared, unknown_location(now), counts, rng) for now, counts in calls]

    assert len(prepared.shortlists) == 2
    assert decisions == [route(CAMPAIGN, targets, unknown_location(now), counts, plain_rng) for now, counts in calls]
    assert decisions[1].excluded == ((1, Exclusion.HOURLY_CAP), (2, Exclusion.OUT_OF_AREA), (3, Exclusion.DAILY_CAP))
    assert decisions[3].excluded == ((2, Exclusion.OUT_OF_AREA), (3, Exclusion.DAILY_CAP))


def test_callers_from_served_and_unserved_zips_at_the_same_moment_share_one_kept_shortlist():
    office = cs.HourSchedule(frozenset(range(9, 17)))
    evening = cs.HourSchedule(frozenset(range(17, 23)))
    austin = frozenset({"78701", "78702"})
    targets = (
        target(1, area_zips=austin, schedule=office, hourly_cap=1),
        target(2),
        target(3, area_zips=austin, schedule=evening),
        target(4, area_zips=frozenset({"10001"})),
        target(5, area_zips=austin, paused=True),
        target(6, area_zips=austin, weight=2),
        target(7, schedule=evening),
    )
    prepared = prepare_targets(targets)
    calls = [
        (context(zip_code="99999"), {}),  # nobody serves 99999
        (context(zip_code="78701", sticky_target_id=6), {}),
        (context(zip_code="78702"), {1: TargetCounters(hour=1)}),
        (context(zip_code="10001"), {}),
    ]
    rng, plain_rng = random.Random(9), random.Random(9)

    decisions = [route(CAMPAIGN, prepared, ctx, counts, rng) for ctx, counts in calls]

    assert decisions == [route(CAMPAIGN, targets, ctx, counts, plain_rng) for ctx, counts in calls]
    assert len(prepared.shortlists) == 1
    assert decisions[1].ring[0] == 6 and set(decisions[1].ring) == {1, 2, 6}
    assert decisions[2].excluded == (
        (1, Exclusion.HOURLY_CAP),
        (3, Exclusion.CLOSED),
        (4, Exclusion.OUT_OF_AREA),
        (5, Exclusion.PAUSED),
        (7, Exclusion.CLOSED),
    )


def test_kept_shortlists_are_bounded(monkeypatch):
    monkeypatch.setattr(routing, "_SHORTLISTS_KEPT", 3)
    targets = tuple(target(hour, schedule=cs.HourSchedule(frozenset({hour}))) for hour in range(24))
    prepared = prepare_targets(targets)

    for hour in range(24):
        now = NOON.replace(hour=hour)
        decision = route(CAMPAIGN, prepared, unknown_location(now), {}, random.Random(hour))
        assert decision == route(CAMPAIGN, targets, unknown_location(now), {}, random.Random(hour))
        assert decision.ring == (hour,)
        assert len(prepared.shortlists) <= 3


def test_a_missing_cap_never_excludes_however_high_the_counter_and_a_huge_cap_still_does():
    huge = 2**40
    targets = (target(1), target(2, hourly_cap=huge), target(3, monthly_cap=2**30 - 1), target(4, daily_cap=2**30))
    counters = {tid: TargetCounters(active=huge, hour=huge, day=huge, month=huge) for tid in (1, 2, 3, 4)}

    for pool in (targets, prepare_targets(targets)):
        decision = route(CAMPAIGN, pool, context(), counters, random.Random(1))
        assert decision.ring == (1,)
        assert decision.excluded == (
            (2, Exclusion.HOURLY_CAP),
            (3, Exclusion.MONTHLY_CAP),
            (4, Exclusion.DAILY_CAP),
        )


def test_kept_shortlists_are_not_shipped_with_a_cached_plan():
    targets = (target(1, schedule=cs.HourSchedule(frozenset(range(9, 17)))), target(2, paused=True))
    prepared = prepare_targets(targets)
    route(CAMPAIGN, prepared, unknown_location(NOON), {})

    cached = pickle.loads(pickle.dumps(prepared))

    assert prepared.shortlists and not cached.shortlists
    assert prepared.closed_spans and cached.closed_spans == []
    assert route(CAMPAIGN, cached, unknown_location(NOON), {}) == route(CAMPAIGN, targets, unknown_location(NOON), {})


# --- explain --------------------------------------------------------------------------------------


def test_explain_names_every_target_and_the_fallback():
    targets = (target(12, name="Acme Plumbing", schedule=cs.NEVER_OPEN), target(13, name="Bolt Rooter"))

    routed = explain(route(CAMPAIGN, targets, context(sticky_target_id=13), {}), targets)
    nobody = explain(route(CAMPAIGN, targets[:1], context(), {}), {12: "Acme Plumbing"})

    assert routed == [
        "#13 Bolt Rooter: rings 1st (repeat caller: the buyer reached last time)",
        "#12 Acme Plumbing: closed",
    ]
    assert nobody == ["#12 Acme Plumbing: closed", "no target can take the call: offer a callback"]
    assert explain(route(CAMPAIGN, targets[:1], context(), {})) == [
        "#12: closed",
        "no target can take the call: offer a callback",
    ]


# --- benchmark smoke test -------------------------------------------------------------------------


def test_bench_core_reports_the_figures():
    figures = bench_core(n_targets=40, zips_per_area=50, decisions=200, seed=3)

    assert figures["decisions"] == 200
    assert figures["per_second"] > 0
    assert 0 < figures["p50_us"] <= figures["p99_us"] <= figures["max_us"]


@given(cs.routing_cases(), st.data())
def test_paused_ids_exclude_exactly_like_paused_targets_on_both_paths(case, data):
    """Live pauses passed as ``paused_ids`` act as ``Target.paused``, prepared or not."""
    campaign, targets, context, counters = case
    ids = [t.id for t in targets]
    paused_ids = frozenset(data.draw(st.sets(st.sampled_from(ids))) if ids else ())
    as_flags = [dataclasses.replace(t, paused=t.paused or t.id in paused_ids) for t in targets]
    expected = route(campaign, as_flags, context, counters, random.Random(3))
    plain = route(campaign, targets, context, counters, random.Random(3), paused_ids=paused_ids)
    prepared = route(campaign, prepare_targets(targets), context, counters, random.Random(3), paused_ids=paused_ids)
    assert plain == expected
    assert prepared == expected


class RecordingCounters(dict):
    """Counters that remember which targets a decision asked for."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.asked: list[int] = []

    def get(self, key, default=None):
        self.asked.append(key)
        return super().get(key, default)


@given(cs.routing_cases(), st.data(), seeds)
def test_counted_targets_are_exactly_those_whose_counters_a_decision_reads(case, data, seed):
    """A shell that reads the counters of ``counted_targets`` alone decides exactly as with all of them."""
    campaign, targets, context, counters = case
    ids = [t.id for t in targets]
    paused_ids = frozenset(data.draw(st.sets(st.sampled_from(ids))) if ids else ())
    for given_targets in (targets, prepare_targets(targets)):
        counted = routing.counted_targets(campaign, given_targets, context, paused_ids)
        recording = RecordingCounters(counters)
        full = route(campaign, given_targets, context, recording, random.Random(seed), paused_ids=paused_ids)
        assert [t.id for t in counted] == recording.asked  # the same targets, in input order
        assert all(t in targets for t in counted)
        only_counted = {t.id: counters[t.id] for t in counted if t.id in counters}
        assert route(campaign, given_targets, context, only_counted, random.Random(seed),
                     paused_ids=paused_ids) == full


def test_counted_targets_leave_out_paused_blocked_out_of_area_and_closed_ones():
    closed = Schedule(timezone="America/Chicago", weekly=parse_weekly({"sun": "09:00-10:00"}))
    targets = (
        target(1), target(2, paused=True), target(3, blocked_prefixes=("+1512",)),
        target(4, area_zips=frozenset({"10001"})), target(5, schedule=closed), target(6, area_zips=frozenset({"78701"})),
        target(7, hourly_cap=0),  # capped: its counters decide, so it is counted
    )
    campaign = Campaign(id=1, name="c")
    for given_targets in (targets, prepare_targets(targets)):
        counted = routing.counted_targets(campaign, given_targets, context(), paused_ids={6})
        assert [t.id for t in counted] == [1, 7]


@pytest.mark.parametrize("prepared", [False, True])
def test_a_caller_located_by_area_code_is_of_unknown_location_near_its_zips(prepared):
    near = frozenset({"78660", "78701", "78702"})  # the area code's ZIPs; 78660 the guess
    targets = (target(1, area_zips=frozenset({"78660"}), accepts_unknown_location=False),
               target(2, area_zips=frozenset({"78701"})),
               target(3, area_zips=frozenset({"75201"})),
               target(4))  # no area: takes anyone
    targets = prepare_targets(targets) if prepared else targets
    caller = Caller("+15124440199", "78660", ZipSource.AREA_CODE, near_zips=near)
    decision = route(Campaign(id=1, name="C"), targets, RoutingContext(caller=caller, now=NOON), {},
                     random.Random(1))
    assert sorted(decision.ring) == [2, 4]
    assert decision.excluded == ((1, Exclusion.OUT_OF_AREA), (3, Exclusion.OUT_OF_AREA))


def test_tables_pickled_before_the_area_code_cache_still_route_an_area_code_caller():
    """A node's saved snapshot (its routing tables pickled) may predate ``near``: read after an upgrade."""
    prepared = prepare_targets((target(1, area_zips=frozenset({"78701"})), target(2)))
    state = prepared.__getstate__()
    del state["near"]
    old = PreparedTargets(prepared)
    old.__dict__.update(state)
    caller = Caller("+15124440199", "78660", ZipSource.AREA_CODE, near_zips=frozenset({"78660", "78701"}))
    decision = route(Campaign(id=1, name="C"), old, RoutingContext(caller=caller, now=NOON), {}, random.Random(1))
    assert sorted(decision.ring) == [1, 2]
