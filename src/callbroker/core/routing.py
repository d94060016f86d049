"""Routing: which of a campaign's targets may take this call, and in which order to ring them.

:func:`route` is the hot path of every inbound call. It is one pass over the targets, checks in a
fixed order, and records for each target left out the *first* reason that applied:

1. ``PAUSED``            the target is paused;
2. ``CALLER_BLOCKED``    the caller's number is blocked by the campaign (exact number or prefix) or
                         by the target (prefix). An anonymous caller (no number) is never blocked
                         here; qualification deals with anonymous calls;
3. ``OUT_OF_AREA``       the target has a service area and the caller's ZIP is outside it, or the
                         ZIP is unknown and the target refuses callers of unknown location. A ZIP
                         guessed from the area code (``Caller.near_zips`` given) is not taken as where
                         the caller is: such a caller is of unknown location near those ZIPs, out of
                         the area of a target that refuses unknown locations or serves none of them;
4. ``CLOSED``            the target's schedule is closed at ``context.now``;
5. ``HOURLY_CAP`` / ``DAILY_CAP`` / ``MONTHLY_CAP``  the counter has reached the cap
                         (``None`` = unlimited, ``0`` = never);
6. ``CONCURRENCY_FULL``  ``active`` has reached the concurrency limit.

Eligible targets ring by priority (lower first); inside one priority the order is a weighted
shuffle (Efraimidis–Spirakis: key ``u ** (1 / weight)``, largest key first), so a weight-3 target
is first three times as often as a weight-1 one. A repeat caller goes back to the buyer it reached
last: the target it reached rings before all others when it is eligible, then that buyer's other
eligible targets (in the order above), then everyone else's; when none of the buyer's targets is
eligible the caller rings the others as any caller would. The buyer is
``RoutingContext.sticky_buyer_id``, or else the buyer of ``sticky_target_id`` among the targets. When
nothing is eligible the decision carries the campaign's fallback.

Speed. ``route`` accepts any sequence of targets and then walks them one by one. For big campaigns
(hundreds of targets with large service areas) hand it :func:`prepare_targets` instead: the same
targets plus precomputed tables (a ZIP -> targets index, paused and blocked-prefix sets, targets
grouped by schedule), kept as bitsets so most targets are decided with a few integer operations.
Preparing costs time (about a second for 1,000 targets x 2,000 ZIPs), so the shell builds it once
per campaign version and caches it. It also keeps, as calls come in, the shortlists of callers whose
location decides nothing (unknown, or a ZIP no target serves): those are the widest decisions, and
their shortlist changes only when a schedule opens or closes. When every schedule can say how long
its answer holds (``steady_span``, as ``schedule.Schedule`` does), which targets are closed is kept per
such window too, so a call asks no schedule at all unless one opened or closed since it was last asked.
Both paths return identical decisions (tested).

Live counters. A decision reads the counters of the targets still in the running after reasons 1-4
only; :func:`counted_targets` names them before the decision, so the shell reads those counters alone
(a few percent of a big campaign for a caller with a known ZIP) instead of every target's.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right, insort
from collections.abc import Collection, Iterable, Mapping, Sequence
from itertools import compress
from operator import getitem, itemgetter

from callbroker.core.model import (
    Campaign,
    Decision,
    Exclusion,
    FallbackKind,
    RoutingContext,
    Target,
    TargetCounters,
)

__all__ = ["EXCLUSION_LABELS", "PreparedTargets", "counted_targets", "explain", "prepare_targets", "route"]

# Used when the caller passes no rng. Seeded from the OS once, at import; that is not a side effect
# anyone can observe, and it keeps route() free of per-call allocation.
_RNG = random.Random()

_NO_COUNTS = TargetCounters()
_NO_IDS: frozenset[int] = frozenset()

# Module constants: a global lookup is cheaper than ``Exclusion.PAUSED`` (an enum class attribute).
_PAUSED = Exclusion.PAUSED
_CALLER_BLOCKED = Exclusion.CALLER_BLOCKED
_OUT_OF_AREA = Exclusion.OUT_OF_AREA
_CLOSED = Exclusion.CLOSED
_HOURLY_CAP = Exclusion.HOURLY_CAP
_DAILY_CAP = Exclusion.DAILY_CAP
_MONTHLY_CAP = Exclusion.MONTHLY_CAP
_CONCURRENCY_FULL = Exclusion.CONCURRENCY_FULL


def route(
    campaign: Campaign,
    targets: Sequence[Target],
    context: RoutingContext,
    counters: Mapping[int, TargetCounters],
    rng: random.Random | None = None,
    paused_ids: Collection[int] = (),
) -> Decision:
    """Decide the ring list for one call.

    ``paused_ids`` are targets paused right now on top of ``Target.paused`` (e.g. auto-paused by
    missed-call protection): live state that changes without rebuilding prepared targets.

    ``counters`` maps target id to its live counters; a missing id counts as all zeros.
    ``rng`` makes the weighted order reproducible (tests, simulations); ``None`` uses a shared
    module-level ``random.Random``. Target ids are expected to be unique; ``Decision.excluded``
    follows the input order of ``targets``.

    A target's ``schedule`` only needs an ``is_open(at: datetime) -> bool`` method; with a
    ``steady_span(at) -> (since, until)`` method as well (POSIX seconds between which ``is_open``
    answers as at ``at``, as ``schedule.Schedule`` has), prepared targets ask it once per such window.
    """
    number, zip_code, campaign_blocks = _caller_facts(campaign, context)
    draw = (_RNG if rng is None else rng).random
    if isinstance(targets, PreparedTargets):
        ring, excluded, sticky_hit = _route_prepared(
            targets, number, campaign_blocks, zip_code, context, counters, draw, paused_ids
        )
    else:
        ring, excluded, sticky_hit = _route_plain(
            targets, number, campaign_blocks, zip_code, context, counters, draw, paused_ids
        )
    return Decision(
        ring=ring,
        excluded=excluded,
        fallback=None if ring else campaign.fallback,
        sticky=sticky_hit,
    )


def counted_targets(campaign: Campaign, targets: Sequence[Target], context: RoutingContext,
                    paused_ids: Collection[int] = ()) -> tuple[Target, ...]:
    """The targets whose live counters :func:`route` reads for this call, in input order.

    They are the ones neither paused (``Target.paused`` or ``paused_ids``), nor blocking the caller, nor
    out of area, nor closed at ``context.now``: the others are excluded before their counters matter.
    ``route`` with ``counters`` holding only these decides exactly as with every target's (tested), so a
    shell can read the live counters of these alone: for a caller with a known ZIP, usually a few percent
    of a big campaign. Costs about what the decision does before its counters (the tables are shared).
    """
    number, zip_code, campaign_blocks = _caller_facts(campaign, context)
    if isinstance(targets, PreparedTargets):
        _left, shortlist, _exclusions = _shortlist(targets, number, campaign_blocks, zip_code, context, paused_ids)
        return tuple(map(targets.__getitem__, map(_POSITION, shortlist)))
    now = context.now
    near = context.caller.near_zips
    return tuple(t for t in targets
                 if _first_reason(t, number, campaign_blocks, zip_code, now, paused_ids, near) is None)


def _caller_facts(campaign: Campaign, context: RoutingContext) -> tuple[str | None, str | None, bool]:
    """The caller's number, ZIP (None when unknown, or only near ``near_zips``) and whether the campaign
    blocks the number."""
    number = context.caller.number
    zip_code = context.caller.zip_code or None  # "" is as unknown as None
    if context.caller.near_zips is not None:
        zip_code = None  # a guess from the area code: of unknown location, near those ZIPs
    if number is None:
        return None, zip_code, False
    prefixes = campaign.blocked_prefixes
    return number, zip_code, number in campaign.blocked_numbers or bool(prefixes) and number.startswith(prefixes)


def _first_reason(target: Target, number, campaign_blocks, zip_code, now, paused_ids, near=None
                  ) -> Exclusion | None:
    """The first of reasons 1-4 (paused, caller blocked, out of area, closed) that excludes ``target``."""
    if target.paused or target.id in paused_ids:
        return _PAUSED
    if number is not None:
        if campaign_blocks:
            return _CALLER_BLOCKED
        own_prefixes = target.blocked_prefixes
        if own_prefixes and number.startswith(own_prefixes):
            return _CALLER_BLOCKED
    zips = target.area_zips
    if zips is not None:
        if zip_code is None:
            if not target.accepts_unknown_location or near is not None and zips.isdisjoint(near):
                return _OUT_OF_AREA
        elif zip_code not in zips:
            return _OUT_OF_AREA
    schedule = target.schedule
    if schedule is not None and not schedule.is_open(now):  # type: ignore[attr-defined]
        return _CLOSED
    return None


def _route_plain(targets, number, campaign_blocks, zip_code, context, counters, draw, paused_ids=()):
    """One pass over plain ``Target`` values; the readable reference for the prepared path."""
    now = context.now
    near = context.caller.near_zips
    sticky_id = context.sticky_target_id
    sticky_buyer = context.sticky_buyer_id
    if sticky_buyer is None and sticky_id is not None:
        sticky_buyer = next((t.buyer_id for t in targets if t.id == sticky_id), None)
    get_counts = counters.get
    no_counts = _NO_COUNTS

    excluded: list[tuple[int, Exclusion]] = []
    exclude = excluded.append
    keys: list[float] = []  # ring-order keys of the eligible targets (see _order_key)
    chosen: list[int] = []  # their ids, in input order
    sticky_hit = False

    for target in targets:
        tid = target.id
        reason = _first_reason(target, number, campaign_blocks, zip_code, now, paused_ids, near)
        if reason is not None:
            exclude((tid, reason))
            continue
        counts = get_counts(tid, no_counts)
        cap = target.hourly_cap
        if cap is not None and counts.hour >= cap:
            exclude((tid, _HOURLY_CAP))
            continue
        cap = target.daily_cap
        if cap is not None and counts.day >= cap:
            exclude((tid, _DAILY_CAP))
            continue
        cap = target.monthly_cap
        if cap is not None and counts.month >= cap:
            exclude((tid, _MONTHLY_CAP))
            continue
        cap = target.concurrency_limit
        if cap is not None and counts.active >= cap:
            exclude((tid, _CONCURRENCY_FULL))
            continue
        # Eligible.
        if tid == sticky_id and not sticky_hit:
            sticky_hit = True
            continue
        keys.append(2.0 * target.priority - draw() ** _inverse(target.weight))
        chosen.append(tid)

    theirs = _NO_IDS if sticky_buyer is None else frozenset(t.id for t in targets if t.buyer_id == sticky_buyer)
    ring, first = _ring(keys, chosen, sticky_id if sticky_hit else None, theirs)
    return ring, tuple(excluded), sticky_hit or first


# Ring order. Within one priority, Efraimidis–Spirakis: each target draws u in [0, 1) and the
# largest u ** (1 / weight) goes first, which makes P(first) = weight / sum of weights and, drawn
# without replacement, a weighted shuffle. Priority and that key are folded into one float,
# 2 * priority - u ** (1 / weight): each priority owns the interval (2p - 1, 2p], so priorities never
# mix, and sorting plain floats is several times cheaper than sorting tuples. Python's sort is
# stable, so exact ties keep input order. A weight of 0 or less (not expected) gets key 0: last in
# its priority, instead of a ZeroDivisionError in the middle of a call.


def _inverse(weight: int) -> float:
    return 1.0 / weight if weight > 0 else math.inf


def _ring(keys: list[float], chosen: list[int], sticky_id: int | None = None, theirs: frozenset[int] = _NO_IDS
          ) -> tuple[tuple[int, ...], bool]:
    """The ring: ``sticky_id`` (the target a repeat caller reached last) when given, then the eligible
    targets of that caller's buyer (those in ``theirs``), then the others, each group in key order; and
    whether any of that buyer's targets rings before the others for that reason."""
    if len(keys) > 1:
        ring = itemgetter(*sorted(range(len(keys)), key=keys.__getitem__))(chosen)
    else:
        ring = tuple(chosen)
    first = bool(theirs) and not theirs.isdisjoint(ring)
    if first:
        ring = (*(tid for tid in ring if tid in theirs), *(tid for tid in ring if tid not in theirs))
    return (ring if sticky_id is None else (sticky_id, *ring)), first


# --- prepared targets ------------------------------------------------------------------------------
#
# Target at position i owns hexadecimal digit i of a Python int (bit 4*i). Sets of targets are
# ints with digit 0 or 1, combined with & | ^ at C speed. Pausing, blocking, the service area and
# the schedules give every target a reason code 0..4 (0 = still in the running) as one such int;
# each distinct schedule is asked once per decision (or per steady window, see ``closed_spans``).
# That int, read as one byte per target in input order, picks every target's prebuilt
# ``(id, Exclusion)`` pair (the *exclusions*, ``None`` for those still in the running) and the
# *shortlist*: the rows of the targets still in the running,
# the only ones visited one by one, to read their counters (usually a few percent of the targets;
# for a caller of unknown location, up to half). The exclusions, patched with the cap reasons, are
# the decision's ``excluded`` once the ``None`` are filtered out.
#
# A caller of unknown location, or from a ZIP that no target serves, is decided by the clock alone:
# the reason codes depend only on which schedules are open (and on pauses and blocks), so the same
# few dozen shortlists come back all day. ``PreparedTargets.shortlists`` keeps them (shortlist and
# exclusions), keyed by the reason-code int, up to ``_SHORTLISTS_KEPT`` (then it starts afresh).
# A caller from a served ZIP differs from a caller from a ZIP nobody serves only at the targets
# serving that ZIP (a few percent): the kept shortlist of the latter is corrected at those targets.
#
# Memory: the ZIP index holds one int of ``len(targets)`` bits per distinct ZIP (about 5 MB for
# 1,000 targets over 40,000 ZIPs); a kept shortlist about 10 KB for 1,000 targets (the benchmark's
# week of calls keeps 125 of them, 1.3 MB); ``PreparedTargets`` holds the targets too, so it is
# safe to cache.

_CODES = (None, _PAUSED, _CALLER_BLOCKED, _OUT_OF_AREA, _CLOSED, _HOURLY_CAP, _DAILY_CAP, _MONTHLY_CAP,
          _CONCURRENCY_FULL)
_FIRST_CAP_CODE = 5  # codes 1-4 are decided on bitsets, 5-8 (the caps) target by target
_CAP_REASONS = _CODES[_FIRST_CAP_CODE:]
_HEX_DIGIT_VALUE = bytes.maketrans(b"0123456789abcdef", bytes(range(16)))
_ZERO_TO_ONE = bytes([1] + [0] * 255)  # translate table: still-eligible (0) -> selected (1)
_OUT_OF_AREA_CODE = _CODES.index(_OUT_OF_AREA)
_CLOSED_CODE = _CODES.index(_CLOSED)
_SHORTLISTS_KEPT = 256
_CLOSED_SPANS_KEPT = 4096  # a week of ~40 distinct schedules makes about 1,000 windows
_POSITION = itemgetter(7)  # a row's position (see the loop in _route_prepared)
# A cap of None. The largest int CPython compares on its fast path (one 30-bit digit), where
# sys.maxsize would take the slow path on every check; a counter that reaches it anyway is let
# through by the ``None`` that stands for the missing exclusion pair (see _route_prepared).
_UNLIMITED = 2**30 - 1


class PreparedTargets(tuple):
    """A campaign's targets (still a ``tuple`` of ``Target``) plus the tables ``route`` uses to decide
    quickly. Build with :func:`prepare_targets`; immutable like the targets it was built from, apart
    from a cache of shortlists that never changes a decision."""

    # tuple subclasses cannot have non-empty __slots__; the tables live in the instance __dict__.
    everyone: int
    bit_of: Mapping[int, int]  # target id -> its bit (for paused_ids)
    paused: int
    block_groups: tuple[tuple[tuple[str, ...], int], ...]
    area: int
    refuse_unknown: int
    zip_sets: Mapping[str, int]  # ZIP -> targets serving it, one *bit* per target (compact)
    schedule_groups: tuple[tuple[object, int], ...]
    rows: tuple[tuple, ...]  # per target: id, caps, ring-order terms, position, cap pairs (see the loop)
    pairs: tuple[tuple, ...]  # per target: None, then its (id, reason) pair for reason codes 1-4
    no_such_id: int  # an int that is no target's id (stands for "no sticky target")
    buyer_of: Mapping[int, int]  # target id -> its buyer's id
    targets_of_buyer: Mapping[int, frozenset[int]]  # buyer id -> the ids of its targets
    shortlists: dict[int, tuple[tuple, tuple]]  # reason-code int -> (shortlist, exclusions)
    near: dict[frozenset, int]  # ZIPs of an area code -> the targets serving one of them (see _serving_any)
    # (since, until, closed): the targets closed from POSIX second ``since`` until ``until``, sorted;
    # None when no target has a schedule, or one has no ``steady_span`` (then a decision asks them all)
    closed_spans: list[tuple[float, float, int]] | None

    def __getstate__(self) -> dict:  # caches: rebuilt where they are used, not shipped
        return {**self.__dict__, "shortlists": {}, "near": {},
                "closed_spans": None if self.closed_spans is None else []}


def prepare_targets(targets: Iterable[Target]) -> PreparedTargets:
    """Precompute routing tables for these targets (order kept). Pass the result to :func:`route`.

    Schedules are grouped by equality when they are hashable (by identity otherwise) and each
    group's ``is_open`` is asked once per decision, so equal schedules must answer alike. When every
    schedule has ``steady_span``, the targets closed are kept per window in which no schedule opens or
    closes (at most ``_CLOSED_SPANS_KEPT`` windows, then it starts afresh): calls arriving in time order
    ask the schedules only when one of them opens or closes.
    """
    prepared = PreparedTargets(targets)
    n = len(prepared)
    bits = [1 << (4 * position) for position in range(n)]
    paused = area = refuse_unknown = 0
    block_masks: dict[tuple[str, ...], int] = {}
    schedule_masks: dict[object, list] = {}
    by_zip: dict[str, list[int]] = {}
    rows = []
    pairs = []
    for position, target in enumerate(prepared):
        bit = bits[position]
        tid = target.id
        if target.paused:
            paused |= bit
        if target.blocked_prefixes:
            prefixes = tuple(target.blocked_prefixes)
            block_masks[prefixes] = block_masks.get(prefixes, 0) | bit
        if target.area_zips is not None:
            area |= bit
            if not target.accepts_unknown_location:
                refuse_unknown |= bit
            for zip_code in target.area_zips:
                positions = by_zip.get(zip_code)
                if positions is None:
                    by_zip[zip_code] = [position]
                else:
                    positions.append(position)
        schedule = target.schedule
        if schedule is not None:
            try:
                key: object = schedule
                hash(key)
            except TypeError:
                key = ("id", id(schedule))
            group = schedule_masks.get(key)
            if group is None:
                schedule_masks[key] = [schedule, bit]
            else:
                group[1] |= bit
        pairs.append((None, *((tid, reason) for reason in _CODES[1:_FIRST_CAP_CODE])))
        caps = (target.hourly_cap, target.daily_cap, target.monthly_cap, target.concurrency_limit)
        rows.append(
            (
                tid,
                *(_UNLIMITED if cap is None else cap for cap in caps),
                2.0 * target.priority,
                _inverse(target.weight),
                position,
                *(None if cap is None else (tid, reason) for cap, reason in zip(caps, _CAP_REASONS)),
            )
        )

    blank = bytearray(b"0" * n)
    zip_sets = {}
    for zip_code, positions in by_zip.items():
        digits = blank[:]
        for position in positions:
            digits[position] = 0x31  # "1"
        digits.reverse()
        zip_sets[zip_code] = int(digits, 2)  # compact: bit i, not digit i (a quarter of the memory)

    prepared.everyone = sum(bits)
    prepared.bit_of = {target.id: bits[position] for position, target in enumerate(prepared)}
    prepared.paused = paused
    prepared.block_groups = tuple(block_masks.items())
    prepared.area = area
    prepared.refuse_unknown = refuse_unknown
    prepared.zip_sets = zip_sets
    prepared.schedule_groups = tuple((schedule, mask) for schedule, mask in schedule_masks.values())
    prepared.rows = tuple(rows)
    prepared.pairs = tuple(pairs)
    prepared.no_such_id = min(prepared.bit_of, default=0) - 1
    prepared.buyer_of, prepared.targets_of_buyer = _buyer_tables(prepared)
    prepared.shortlists = {}
    prepared.near = {}
    groups = prepared.schedule_groups
    steady = bool(groups) and all(hasattr(schedule, "steady_span") for schedule, _ in groups)
    prepared.closed_spans = [] if steady else None
    return prepared


def _route_prepared(plan: PreparedTargets, number, campaign_blocks, zip_code, context, counters, draw,
                    paused_ids=()):
    """The same decision as :func:`_route_plain`, computed on bitsets (see the comment above)."""
    left, shortlist, exclusions = _shortlist(plan, number, campaign_blocks, zip_code, context, paused_ids)

    keys: list[float] = []
    chosen: list[int] = []
    sticky_id = context.sticky_target_id
    sticky_buyer = context.sticky_buyer_id
    sticky_hit = False
    if left:
        get_counts = counters.get
        no_counts = _NO_COUNTS
        add_key = keys.append
        add_id = chosen.append
        repeat_id = plan.no_such_id if sticky_id is None else sticky_id  # an int compares faster than None
        # A missing cap reads _UNLIMITED with no exclusion pair (None): a counter that reaches it goes on.
        for (tid, hourly, daily, monthly, concurrency, double_priority, inverse, position,
             at_hourly_cap, at_daily_cap, at_monthly_cap, at_concurrency_limit) in shortlist:
            counts = get_counts(tid, no_counts)
            if counts.hour >= hourly and at_hourly_cap:
                exclusions[position] = at_hourly_cap
            elif counts.day >= daily and at_daily_cap:
                exclusions[position] = at_daily_cap
            elif counts.month >= monthly and at_monthly_cap:
                exclusions[position] = at_monthly_cap
            elif counts.active >= concurrency and at_concurrency_limit:
                exclusions[position] = at_concurrency_limit
            elif tid == repeat_id and not sticky_hit:
                sticky_hit = True
            else:
                add_key(double_priority - draw() ** inverse)
                add_id(tid)

    excluded = tuple(filter(None, exclusions))
    theirs = _NO_IDS if sticky_id is None and sticky_buyer is None else _buyers_targets(plan, sticky_id, sticky_buyer)
    ring, first = _ring(keys, chosen, sticky_id if sticky_hit else None, theirs)
    return ring, excluded, sticky_hit or first


def _buyer_tables(targets: Iterable[Target]) -> tuple[dict[int, int], dict[int, frozenset[int]]]:
    """Each target's buyer, and each buyer's targets (``PreparedTargets.buyer_of``, ``targets_of_buyer``)."""
    buyer_of = {target.id: target.buyer_id for target in targets}
    by_buyer: dict[int, set[int]] = {}
    for tid, buyer in buyer_of.items():
        by_buyer.setdefault(buyer, set()).add(tid)
    return buyer_of, {buyer: frozenset(ids) for buyer, ids in by_buyer.items()}


def _buyers_targets(plan: PreparedTargets, sticky_id: int | None, sticky_buyer: int | None) -> frozenset[int]:
    """The targets of a repeat caller's buyer: ``sticky_buyer``, or else the buyer of ``sticky_id``."""
    by_buyer = plan.__dict__.get("targets_of_buyer")
    if by_buyer is None:  # tables pickled before these existed (a node's saved snapshot)
        plan.buyer_of, plan.targets_of_buyer = _buyer_tables(plan)
        by_buyer = plan.targets_of_buyer
    if sticky_buyer is None:
        sticky_buyer = plan.buyer_of.get(sticky_id)
    return by_buyer.get(sticky_buyer, _NO_IDS)


def _shortlist(plan: PreparedTargets, number, campaign_blocks, zip_code, context, paused_ids=()
               ) -> tuple[int, Iterable[tuple], list]:
    """Reasons 1-4 on bitsets: the targets left in the running (an int, see the comment above), their rows
    (the shortlist) and every target's exclusion pair so far (``None`` for those left), in input order."""
    everyone = plan.everyone
    paused = plan.paused
    if paused_ids:
        bit_of = plan.bit_of
        for tid in paused_ids:
            paused |= bit_of.get(tid, 0)

    if number is None:
        blocked = 0
    elif campaign_blocks:
        blocked = everyone
    else:
        blocked = 0
        for prefixes, mask in plan.block_groups:
            if number.startswith(prefixes):
                blocked |= mask
    served = None if zip_code is None else plan.zip_sets.get(zip_code)
    if served:  # spread bit i to hex digit i: read the binary digits as hexadecimal ones
        served = int(f"{served:b}", 16)
        outside = plan.area ^ served  # every ZIP set lies inside ``area``
    elif zip_code is None:
        outside = plan.refuse_unknown
        near = context.caller.near_zips
        if near is not None:  # of unknown location near these ZIPs: out of the areas serving none of them
            outside |= plan.area ^ _serving_any(plan, near)
    else:
        outside = plan.area

    # Make the reasons disjoint, first reason wins.
    if blocked:
        blocked &= ~paused
    gone = paused | blocked
    if outside:
        outside &= ~gone
        gone |= outside
    left = everyone ^ gone

    closed = 0
    if left:
        now = context.now
        if plan.closed_spans is not None and now.tzinfo is not None:
            closed = _closed_at(plan, now)
        else:
            for schedule, mask in plan.schedule_groups:
                if mask & left and not schedule.is_open(now):  # type: ignore[attr-defined]
                    closed |= mask
        closed &= left
        left ^= closed

    code = paused + 2 * blocked + 3 * outside + 4 * closed  # digit i: target i's reason code 0..4
    if served:
        shortlist, exclusions = _served_shortlist(plan, code, served & ~gone, closed)
    else:
        shortlist, exclusions = _kept_shortlist(plan, code)
    return left, shortlist, exclusions


def _serving_any(plan: PreparedTargets, zips: frozenset[str]) -> int:
    """The targets (one hex digit each) whose area holds one of ``zips`` at least; kept per set of ZIPs (the
    shell hands the same set object for an area code each time)."""
    cache = plan.__dict__.get("near")
    if cache is None:  # tables pickled before this cache existed (a node's saved snapshot)
        cache = plan.near = {}
    kept = cache.get(zips)
    if kept is None:
        compact = 0
        zip_sets = plan.zip_sets
        for zip_code in zips:
            compact |= zip_sets.get(zip_code, 0)
        kept = int(f"{compact:b}", 16) if compact else 0
        if len(cache) >= _SHORTLISTS_KEPT:
            cache.clear()
        cache[zips] = kept
    return kept


def _closed_at(plan: PreparedTargets, now) -> int:
    """Every target whose schedule is closed at ``now``, kept per window in which no schedule opens or
    closes (see ``closed_spans``); a moment outside every kept window asks each schedule once."""
    spans = plan.closed_spans
    moment = now.timestamp()
    found = bisect_right(spans, (moment, math.inf))  # the last window starting at or before the moment
    if found:
        since, until, closed = spans[found - 1]
        if moment < until:
            return closed
    since, until, closed = -math.inf, math.inf, 0
    for schedule, mask in plan.schedule_groups:
        opened_at, closes_at = schedule.steady_span(now)  # type: ignore[attr-defined]
        since, until = max(since, opened_at), min(until, closes_at)
        if not schedule.is_open(now):  # type: ignore[attr-defined]
            closed |= mask
    if len(spans) >= _CLOSED_SPANS_KEPT:
        plan.closed_spans = [(since, until, closed)]  # a new list: a thread reading the old one is unharmed
    else:
        insort(spans, (since, until, closed))
    return closed


def _kept_shortlist(plan: PreparedTargets, code: int) -> tuple[tuple[tuple, ...], list]:
    """The rows of the targets still in the running, and every target's exclusion pair for its
    reason code in ``code`` (``None`` for those still in the running), in input order; kept for the
    next caller with the same reason codes (see the comment above)."""
    kept = plan.shortlists.get(code)
    if kept is None:
        codes = f"{code:0{len(plan)}x}"[::-1].encode().translate(_HEX_DIGIT_VALUE)  # one byte per target
        kept = tuple(compress(plan.rows, codes.translate(_ZERO_TO_ONE))), tuple(map(getitem, plan.pairs, codes))
        if len(plan.shortlists) >= _SHORTLISTS_KEPT:
            plan.shortlists.clear()
        plan.shortlists[code] = kept
    return kept[0], list(kept[1])


def _served_shortlist(plan: PreparedTargets, code: int, serving: int, closed: int) -> tuple[Iterable[tuple], list]:
    """:func:`_kept_shortlist` for a caller from a ZIP served by the ``serving`` targets (those neither
    paused nor blocking the caller): the kept one of a caller from a ZIP nobody serves, for whom
    these targets are out of area, corrected at these targets (closed, or still in the running)."""
    closed &= serving
    shortlist, exclusions = _kept_shortlist(plan, code + _OUT_OF_AREA_CODE * serving - _CLOSED_CODE * closed)
    state = f"{serving + closed:0{len(plan)}x}"[::-1]  # one digit per target: 1 open, 2 closed
    find = state.find
    pairs = plan.pairs
    position = find("2")
    while position >= 0:
        exclusions[position] = pairs[position][_CLOSED_CODE]
        position = find("2", position + 1)
    rows = plan.rows
    opened = []
    position = find("1")
    while position >= 0:
        exclusions[position] = None
        opened.append(rows[position])
        position = find("1", position + 1)
    if opened:  # into input order: the ring's random draws follow it
        shortlist = sorted((*shortlist, *opened), key=_POSITION)
    return shortlist, exclusions


EXCLUSION_LABELS: Mapping[Exclusion, str] = {
    Exclusion.PAUSED: "paused",
    # Not "blocks this caller's number": said of a line, that blamed the buyer for the campaign's block list.
    Exclusion.CALLER_BLOCKED: "caller's number blocked by the campaign or this line",
    Exclusion.OUT_OF_AREA: "caller outside the service area",
    Exclusion.CLOSED: "closed",
    Exclusion.HOURLY_CAP: "hourly cap reached",
    Exclusion.DAILY_CAP: "daily cap reached",
    Exclusion.MONTHLY_CAP: "monthly cap reached",
    Exclusion.CONCURRENCY_FULL: "concurrency limit reached",
}

_FALLBACK_LABELS = {
    FallbackKind.CALLBACK: "offer a callback",
    FallbackKind.VOICEMAIL: "take a voicemail",
    FallbackKind.FORWARD: "forward the call",
    FallbackKind.MESSAGE: "play the closed message",
}


def explain(decision: Decision, targets: Iterable[Target] | Mapping[int, str] | None = None) -> list[str]:
    """Short human lines for a decision, ring order first, then every exclusion.

    Pass the targets (or an ``{id: name}`` mapping) to get names: ``"#12 Acme Plumbing: closed"``;
    without them the lines read ``"#12: closed"``.
    """
    if targets is None:
        names: Mapping[int, str] = {}
    elif isinstance(targets, Mapping):
        names = targets
    else:
        names = {target.id: target.name for target in targets}

    def label(tid: int) -> str:
        name = names.get(tid)
        return f"#{tid} {name}" if name else f"#{tid}"

    lines = []
    for place, tid in enumerate(decision.ring, start=1):
        line = f"{label(tid)}: rings {_ordinal(place)}"
        if place == 1 and decision.sticky:
            line += " (repeat caller: the buyer reached last time)"
        lines.append(line)
    for tid, reason in decision.excluded:
        lines.append(f"{label(tid)}: {EXCLUSION_LABELS.get(reason, str(reason))}")
    fallback = decision.fallback
    if not decision.ring:
        if fallback is None:
            lines.append("no target can take the call")
        else:
            action = _FALLBACK_LABELS.get(fallback.kind, str(fallback.kind))
            if fallback.kind == FallbackKind.FORWARD and fallback.number:
                action += f" to {fallback.number}"
            lines.append(f"no target can take the call: {action}")
    return lines


def _ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
