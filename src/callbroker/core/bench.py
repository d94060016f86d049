"""Micro-benchmark of :func:`callbroker.core.routing.route` on a large synthetic campaign.

``callbroker bench`` reports these figures; the goal is p99 <= 200 µs per decision with 1,000
targets on a 2-core machine. Everything is built from one seed, so runs are comparable.

The synthetic campaign: a universe of 40,000 five-digit ZIP codes; 1,000 targets, about 10%
nationwide and the rest serving a random set of up to ``zips_per_area`` ZIPs (resolved frozensets,
as ``geo`` would give); about 70% with a weekly schedule in one of the US time zones; caps and
concurrency limits on some targets with live counters near them; priorities 1–3 and weights 1–5;
a few paused targets and blocked prefixes. Targets belong to buyers of 1–6 targets sharing one
schedule, drawn from 8 weekly patterns x 5 zones (about 40 distinct schedules).

Callers: 80% with a carrier ZIP and 12% with an area-code ZIP from the universe, 3% with a typed
ZIP that may lie outside it, 5% with no known location (these see the most eligible targets and
make the slowest decisions); 3% anonymous, 2% on the block list, 20% repeat callers with a sticky
target; call times spread over one week, in random order (live calls come in time order, which
keeps fewer windows of closed targets than this). ``route`` runs on :func:`prepare_targets` tables (the
way the shell should call it) unless ``prepared=False``.
"""

from __future__ import annotations

import datetime as dt
import gc
import itertools
import random
import time
from zoneinfo import ZoneInfo

from callbroker.core.model import Caller, Campaign, RoutingContext, Target, TargetCounters, ZipSource
from callbroker.core.routing import prepare_targets, route
from callbroker.core.schedule import edges_around, steady_window

__all__ = ["bench_core"]

_ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles")

# Weekly opening hours as minutes after local midnight, Monday first: the handful of patterns
# buyers actually use (business hours, extended hours, lunch break, weekends, every day, late).
_H = 60


def _days(weekday, saturday=(), sunday=()):
    return (weekday,) * 5 + (saturday, sunday)


_HOURS_TEMPLATES = (
    _days(((9 * _H, 17 * _H),)),
    _days(((8 * _H, 18 * _H),)),
    _days(((8 * _H, 20 * _H),), ((9 * _H, 14 * _H),)),
    _days(((8 * _H, 12 * _H), (13 * _H, 18 * _H))),
    _days(((7 * _H, 22 * _H),), ((7 * _H, 22 * _H),), ((7 * _H, 22 * _H),)),
    _days(((7 * _H, 19 * _H),), ((8 * _H, 17 * _H),)),
    _days(((10 * _H, 24 * _H),), ((10 * _H, 24 * _H),), ((12 * _H, 20 * _H),)),
    _days(((6 * _H, 15 * _H + 30),)),
)


class BenchSchedule:
    """A schedule-like object doing what a real one does per check: convert ``at`` to the
    target's time zone, then look the minute up in that weekday's opening intervals.

    Equal hours in the same zone compare (and hash) equal, as a frozen ``Schedule`` value would.
    """

    __slots__ = ("tz", "week")

    def __init__(self, tz: dt.tzinfo, week: tuple[tuple[tuple[int, int], ...], ...]) -> None:
        self.tz = tz
        self.week = week

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BenchSchedule) and (self.tz, self.week) == (other.tz, other.week)

    def __hash__(self) -> int:
        return hash((self.tz, self.week))

    def is_open(self, at: dt.datetime) -> bool:
        local = at.astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        for start, end in self.week[local.weekday()]:
            if start <= minute < end:
                return True
        return False

    def steady_span(self, at: dt.datetime) -> tuple[float, float]:
        """The window around ``at`` with the same answer, as ``Schedule.steady_span`` gives it."""
        local = at.astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        lo, hi = edges_around(minute, itertools.chain.from_iterable(self.week[local.weekday()]), 0, 24 * 60)
        back, ahead = (minute - lo) * 60 + local.second, (hi - minute) * 60 - local.second
        return steady_window(at, self.tz, back, ahead)


def _build(n_targets: int, zips_per_area: int, rnd: random.Random, shared_schedules: bool = True):
    universe = [f"{z:05d}" for z in rnd.sample(range(100_000), 40_000)]
    zones = [ZoneInfo(name) for name in _ZONES]
    targets = []
    counters: dict[int, TargetCounters] = {}
    buyer_id = 0
    buyer_left = 0
    buyer_schedule = None
    for i in range(n_targets):
        tid = 1000 + i
        if buyer_left == 0:  # a new buyer with 1-6 targets, one schedule for all of them (or none)
            buyer_id += 1
            buyer_left = rnd.randint(1, 6)
            buyer_schedule = None
            if rnd.random() < 0.70:
                buyer_schedule = BenchSchedule(rnd.choice(zones), rnd.choice(_HOURS_TEMPLATES))
        buyer_left -= 1
        schedule = buyer_schedule
        if schedule is not None and not shared_schedules:  # worst case: every schedule unique
            schedule = BenchSchedule(schedule.tz, schedule.week + ((i,),))
        if rnd.random() < 0.10:
            area = None
        else:
            area = frozenset(rnd.sample(universe, rnd.randint(max(1, zips_per_area // 10), zips_per_area)))
        targets.append(
            Target(
                id=tid,
                buyer_id=buyer_id,
                name=f"Buyer {buyer_id} line {i}",
                number=f"+1512555{i % 10_000:04d}",
                priority=rnd.randint(1, 3),
                weight=rnd.randint(1, 5),
                area_zips=area,
                accepts_unknown_location=rnd.random() < 0.6,
                schedule=schedule,
                hourly_cap=rnd.choice((None, None, 5, 10, 20)),
                daily_cap=rnd.choice((None, 30, 60, 100)),
                monthly_cap=rnd.choice((None, None, 500, 2000)),
                concurrency_limit=rnd.choice((None, 1, 2, 3, 5)),
                paused=rnd.random() < 0.05,
                blocked_prefixes=("+1900", "+1976") if rnd.random() < 0.10 else (),
            )
        )
        # Live counters: most targets well inside their caps, some right at them.
        counters[tid] = TargetCounters(
            active=rnd.randint(0, 3),
            hour=rnd.randint(0, 12),
            day=rnd.randint(0, 80),
            month=rnd.randint(0, 1500),
        )
    blocked = frozenset(f"+1{rnd.randint(200_000_0000, 999_999_9999)}" for _ in range(500))
    campaign = Campaign(id=1, name="Bench plumbing", blocked_numbers=blocked, blocked_prefixes=("+1900",))
    return universe, tuple(targets), counters, campaign, sorted(blocked)


def _contexts(n: int, universe, targets, blocked, rnd: random.Random) -> list[RoutingContext]:
    start = dt.datetime(2025, 3, 3, tzinfo=dt.UTC)  # a Monday
    ids = [t.id for t in targets]
    contexts = []
    for _ in range(n):
        roll = rnd.random()
        if roll < 0.03:
            number = None
        elif roll < 0.05:
            number = rnd.choice(blocked)
        else:
            number = f"+1{rnd.randint(200_000_0000, 999_999_9999)}"
        roll = rnd.random()
        if roll < 0.80:
            caller = Caller(number, rnd.choice(universe), ZipSource.CARRIER)
        elif roll < 0.92:
            caller = Caller(number, rnd.choice(universe), ZipSource.AREA_CODE)
        elif roll < 0.95:
            caller = Caller(number, f"{rnd.randint(0, 99_999):05d}", ZipSource.IVR)  # maybe outside
        else:
            caller = Caller(number)  # unknown location: the widest, slowest decisions
        now = start + dt.timedelta(seconds=rnd.randint(0, 7 * 86_400 - 1))
        sticky = rnd.choice(ids) if rnd.random() < 0.20 else None
        contexts.append(RoutingContext(caller=caller, now=now, sticky_target_id=sticky))
    return contexts


def bench_core(
    n_targets: int = 1000,
    zips_per_area: int = 2000,
    decisions: int = 20000,
    seed: int = 1,
    *,
    prepared: bool = True,
    shared_schedules: bool = True,
) -> dict:
    """Time ``decisions`` calls of ``route()`` over ``n_targets`` targets; figures in microseconds.

    Returns ``{"decisions", "per_second", "p50_us", "p99_us", "max_us"}`` (``per_second`` counts
    the timed ``route()`` calls only) plus ``p90_us``, ``p99_known_location_us``, ``n_targets``,
    ``prepared``, ``prepare_ms`` (building the tables, once per campaign version),
    ``schedule_groups``, ``mean_ring`` (average ring length) and ``routed_share`` (decisions with a
    non-empty ring). ``prepared=False`` times the plain path (a bare tuple of targets);
    ``shared_schedules=False`` gives every target its own schedule (the worst case, since each
    distinct schedule is asked whenever the routing tables have not kept the moment's closed targets).
    Set-up and a short warm-up are not timed.
    """
    rnd = random.Random(seed)
    universe, plain, counters, campaign, blocked = _build(n_targets, zips_per_area, rnd, shared_schedules)
    began = time.perf_counter_ns()
    targets = prepare_targets(plain) if prepared else plain
    prepare_ms = (time.perf_counter_ns() - began) / 1e6 if prepared else 0.0
    schedules = {t.schedule for t in plain if t.schedule is not None}
    warmup = min(1000, max(1, decisions // 10))
    contexts = _contexts(decisions + warmup, universe, targets, blocked, rnd)
    route_rng = random.Random(seed)
    for context in contexts[:warmup]:
        route(campaign, targets, context, counters, route_rng)

    gc.collect()
    clock = time.perf_counter_ns
    timings = [0] * decisions
    ring_total = 0
    routed = 0
    for i, context in enumerate(contexts[warmup:]):
        began = clock()
        decision = route(campaign, targets, context, counters, route_rng)
        timings[i] = clock() - began
        ring_total += len(decision.ring)
        routed += bool(decision.ring)

    total_ns = sum(timings)
    known = sorted(t for t, c in zip(timings, contexts[warmup:]) if c.caller.zip_code is not None)
    timings.sort()

    def pct(p: float, values: list[int] = timings) -> float:
        return round(values[min(len(values) - 1, int(p * len(values)))] / 1000, 1) if values else 0.0

    return {
        "decisions": decisions,
        "per_second": round(decisions / (total_ns / 1e9), 1) if total_ns else float("inf"),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "max_us": round(timings[-1] / 1000, 1),
        "p90_us": pct(0.90),
        "p99_known_location_us": pct(0.99, known),
        "n_targets": n_targets,
        "prepared": prepared,
        "prepare_ms": round(prepare_ms, 1),
        "schedule_groups": len(schedules),
        "mean_ring": round(ring_total / decisions, 2),
        "routed_share": round(routed / decisions, 3),
    }


if __name__ == "__main__":  # pragma: no cover - manual runs: python -m callbroker.core.bench
    print(bench_core())
    print(bench_core(decisions=5000, shared_schedules=False))
    print(bench_core(decisions=2000, prepared=False))
