"""A realistic day of calls for a network, and a paced, concurrent run of them through a Carrier.

:func:`generate_day` reads a parsed network file (campaigns, buyers with targets and service
areas, tracking numbers) and plans ``calls`` inbound calls, deterministically for a seed:

* arrival times follow the hour of day (business-hours peak, evening tail, little at night);
* each call picks an active tracking number (its ``weight`` if the file has one, else a seeded
  weight); inactive campaigns, buyers and targets are left out;
* the caller's ZIP is drawn by population from the campaign's metro: the union of its target areas
  other than whole states (a state-wide line takes the metro's callers too; whole states only when no
  line has a narrower area), about 10 % from just outside it (same state first, then the nearest ZIPs
  beyond);
* about 60 % of callers come with the carrier's ``FromZip``; the others leave it empty and type
  their ZIP when the IVR asks (5 % of them type an invalid ZIP first);
* about 5 % are spam (anonymous, a blocked prefix, or ``StirVerstat=TN-Validation-Failed-C``; they
  otherwise behave like anyone else, so the server's spam rules are what stops them), 8 % call again
  from an earlier caller's number, 7 % press 2 at a category confirmation;
* every buyer number gets a seeded profile (answer rate 75–95 %, typical ring 3–20 s) and each
  call draws its own behaviour from it (talk time lognormal, median 150 s, 20 % under 60 s;
  3 % busy, 2 % decline the whisper).

:func:`run_traffic` places the planned calls at a given rate with a bounded number in flight
and returns :class:`TrafficStats`; with ``follow_day`` the day is compressed onto the run, so the calls
of the busy hours come closer together than the night's at the same average rate. One failing call
never stops a run.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import itertools
import math
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from callbroker.sim.emulator import (
    BuyerBehaviour,
    CallerScript,
    CallRecord,
    Carrier,
    Delivery,
)
from callbroker.words import counted

# Shares of the day's calls (DOMAIN.md and the brief's traffic mix).
SPAM_SHARE = 0.05
REPEAT_SHARE = 0.08
OUT_OF_AREA_SHARE = 0.10
CARRIER_ZIP_SHARE = 0.60
INVALID_ZIP_FIRST_SHARE = 0.05
WRONG_CATEGORY_SHARE = 0.07
BUSY_SHARE = 0.03
DECLINE_WHISPER_SHARE = 0.02

# Relative call volume by local hour of day, 00 … 23.
HOURLY_WEIGHTS = (
    0.3, 0.2, 0.15, 0.15, 0.2, 0.4, 0.9, 1.8, 3.6, 5.5, 6.4, 6.5,
    5.6, 6.0, 6.2, 5.9, 5.4, 4.4, 3.2, 2.4, 1.8, 1.2, 0.8, 0.5,
)  # fmt: skip

# Attestation of legitimate callers: mostly full attestation, some partial, a few unsigned.
STIR_MIX = (
    ("TN-Validation-Passed-A", 0.78),
    ("TN-Validation-Passed-B", 0.08),
    ("TN-Validation-Passed-C", 0.04),
    ("No-TN-Validation", 0.06),
    (None, 0.04),  # the parameter is missing altogether
)

TALK_MEDIAN_SECONDS = 150.0
TALK_SIGMA = 1.089  # ln(60/150) / Φ⁻¹(0.20): one talk in five is under a minute
INVALID_ZIPS = ("00000", "99999", "12")
SPAM_KINDS = ("anonymous", "blocked_prefix", "failed_attestation")


@dataclass(frozen=True)
class PlannedCall:
    """One call of the plan: who calls which number, when, and how everyone behaves."""

    index: int
    at_seconds: int  # seconds after local midnight
    tracking_number: str
    campaign: str  # campaign key
    publisher: str
    label: str
    caller: str | None  # E.164, None = anonymous
    caller_zip: str | None  # where the caller really is
    params: Mapping[str, str]  # extra inbound parameters (FromZip …, StirVerstat)
    script: CallerScript
    buyers: Mapping[str, BuyerBehaviour]  # behaviour of every buyer number this call may ring
    tags: tuple[str, ...] = ()  # out_of_area, no_carrier_zip, invalid_zip_first, spam:…, repeat, wrong_category
    delivery: Delivery = field(default_factory=Delivery)

    @property
    def clock(self) -> str:
        return str(dt.timedelta(seconds=self.at_seconds)).zfill(8)

    @property
    def is_spam(self) -> bool:
        return any(tag.startswith("spam:") for tag in self.tags)


@dataclass
class TrafficStats:
    """What a traffic run did, seen from the carrier."""

    calls: int = 0
    completed: int = 0  # final CallStatus completed (answered by the app)
    bridged: int = 0  # calls where a buyer talked to the caller
    errors: int = 0  # calls with an error code, an application error or an emulator exception
    fallbacks: int = 0  # calls that needed the Fallback URL
    latencies_ms: list[float] = field(default_factory=list)  # every webhook, every call
    wall_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # the first few error messages

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 0.50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 0.99)

    def summary(self) -> str:
        return (
            f"{counted(self.calls, 'call')} in {self.wall_seconds:.1f} s ({self.calls_per_second:.1f}/s): "
            f"{self.completed} completed, {self.bridged} bridged, {counted(self.fallbacks, 'fallback')}, "
            f"{self.errors} with errors; {counted(len(self.latencies_ms), 'webhook')}, "
            f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms"
        )

    def as_dict(self) -> dict:
        return {
            "calls": self.calls,
            "completed": self.completed,
            "bridged": self.bridged,
            "errors": self.errors,
            "fallbacks": self.fallbacks,
            "webhooks": len(self.latencies_ms),
            "wall_seconds": round(self.wall_seconds, 3),
            "calls_per_second": round(self.calls_per_second, 2),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "problems": list(self.problems),
        }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# ---------------------------------------------------------------------------------------------
# Planning


@dataclass
class _Campaign:
    key: str
    ask_zip: str
    confirm: bool
    blocked_prefixes: tuple[str, ...]
    numbers: tuple[str, ...]  # buyer numbers of its targets
    zips: tuple[str, ...] = ()  # callers' ZIPs inside the area …
    cum_weights: tuple[float, ...] = ()  # … with cumulative population weights
    outside: tuple[str, ...] = ()  # ZIPs just outside the area
    outside_cum: tuple[float, ...] = ()


def generate_day(network: Mapping, *, calls: int, seed: int, directory=None) -> list[PlannedCall]:
    """Plan ``calls`` calls for one day of ``network`` (a parsed network YAML), sorted by time.

    Raises :class:`~callbroker.network.parsing.NetworkError` listing every problem, each at its place, when
    the parts of the file the plan reads are wrong (``sim.network_file.check_network``).
    """
    from callbroker.core import geo
    from callbroker.network.parsing import NetworkError
    from callbroker.sim.network_file import check_network

    directory = directory if directory is not None else geo.ZipDirectory.default()
    problems = check_network(network, directory)
    if problems:
        raise NetworkError(problems)
    rng = random.Random(seed)
    inactive = {c.get("key") for c in network.get("campaigns") or () if c.get("active") is False}
    tracking = [
        tn
        for tn in network.get("tracking_numbers") or ()
        if tn.get("number") and tn.get("active") is not False and tn.get("campaign") not in inactive
    ]
    if not tracking or calls <= 0:
        return []
    campaigns = _campaigns(network, tracking, directory)
    profiles = _buyer_profiles(network, seed)
    tn_weights = [
        float(tn["weight"]) if tn.get("weight") is not None else rng.uniform(0.5, 3.0) for tn in tracking
    ]
    times = sorted(_arrival_seconds(rng) for _ in range(calls))

    planned: list[PlannedCall] = []
    earlier: dict[str, list[PlannedCall]] = {}  # campaign -> legitimate callers so far
    # Repeat callers copy an earlier caller, so new callers carry the out-of-area share alone.
    out_of_area_share = OUT_OF_AREA_SHARE / (1 - REPEAT_SHARE)
    for index, at in enumerate(times):
        tn = rng.choices(tracking, weights=tn_weights)[0]
        campaign = campaigns[tn["campaign"]]
        tags: list[str] = []
        buyers = {number: _behaviour(profiles[number], rng) for number in campaign.numbers}
        roll = rng.random()
        if roll < REPEAT_SHARE and earlier.get(campaign.key):
            first = rng.choice(earlier[campaign.key])
            script = _script(campaign, first.caller_zip, bool(first.params.get("FromZip")), rng, tags)
            inherited = tuple(t for t in first.tags if t in ("out_of_area", "no_carrier_zip"))
            call = replace(
                first,
                index=index,
                at_seconds=at,
                tracking_number=tn["number"],
                publisher=tn.get("publisher", ""),
                label=tn.get("label", ""),
                script=script,
                buyers=buyers,
                tags=(*inherited, "repeat", *tags),
            )
            planned.append(call)
            continue

        if rng.random() < out_of_area_share and campaign.outside:
            zip_code = rng.choices(campaign.outside, cum_weights=campaign.outside_cum)[0]
            tags.append("out_of_area")
        else:
            zip_code = rng.choices(campaign.zips, cum_weights=campaign.cum_weights)[0]
        info = directory.get(zip_code)
        caller: str | None = nanp_number(_area_codes(info, tn["number"]), rng)
        stir = _stir(rng)
        has_carrier_zip = rng.random() < CARRIER_ZIP_SHARE
        spam = None
        if rng.random() < SPAM_SHARE:
            spam = rng.choice([k for k in SPAM_KINDS if k != "blocked_prefix" or campaign.blocked_prefixes])
            tags.append(f"spam:{spam}")
            if spam == "anonymous":
                caller, stir, has_carrier_zip = None, None, False  # no number, no rate centre
            elif spam == "blocked_prefix":
                caller = _number_with_prefix(rng.choice(campaign.blocked_prefixes), rng)
            else:
                stir = "TN-Validation-Failed-C"
        if not has_carrier_zip:
            tags.append("no_carrier_zip")
        script = _script(campaign, zip_code, has_carrier_zip, rng, tags)
        call = PlannedCall(
            index=index,
            at_seconds=at,
            tracking_number=tn["number"],
            campaign=campaign.key,
            publisher=tn.get("publisher", ""),
            label=tn.get("label", ""),
            caller=caller,
            caller_zip=zip_code,
            params=_location(info, has_carrier_zip, stir),
            script=script,
            buyers=buyers,
            tags=tuple(tags),
        )
        if spam is None:
            earlier.setdefault(campaign.key, []).append(call)
        planned.append(call)
    return planned


def _campaigns(network: Mapping, tracking: list[Mapping], directory) -> dict[str, _Campaign]:
    from callbroker.network.parsing import parse_area

    numbers: dict[str, list[str]] = {}
    areas: dict[str, list[frozenset[str] | None]] = {}
    metro: dict[str, list[frozenset[str]]] = {}  # the areas other than whole states
    for buyer in network.get("buyers") or ():
        if buyer.get("active") is False:
            continue
        for target in buyer.get("targets") or ():
            if target.get("active") is False:
                continue
            key = target.get("campaign")
            if target.get("number"):
                numbers.setdefault(key, []).append(str(target["number"]))
            area = parse_area(target.get("area")).resolve(directory)
            areas.setdefault(key, []).append(area)
            if area is not None and not (target.get("area") or {}).get("states"):
                metro.setdefault(key, []).append(area)

    result: dict[str, _Campaign] = {}
    for c in network.get("campaigns") or ():
        ivr = c.get("ivr") or {}
        result[c["key"]] = _Campaign(
            key=c["key"],
            ask_zip=str(ivr.get("ask_zip") or "when_missing"),
            confirm=bool(ivr.get("confirm_category")),
            blocked_prefixes=tuple(str(p) for p in c.get("blocked_prefixes") or ()),
            numbers=tuple(dict.fromkeys(numbers.get(c["key"], ()))),
        )
    for tn in tracking:  # a tracking number for a campaign the file does not describe
        result.setdefault(tn["campaign"], _Campaign(tn["campaign"], "when_missing", False, (), ()))

    for key, campaign in result.items():
        inside = _union(metro.get(key) or areas.get(key, ()))
        if inside is None:  # every target takes calls from anywhere: callers near the number
            numbers_of = [tn["number"] for tn in tracking if tn["campaign"] == key]
            inside = _zips_for_area_codes(directory, {_area_code(n) for n in numbers_of})
        campaign.zips, campaign.cum_weights = _weighted(directory, inside)
        if not campaign.zips:
            campaign.zips, campaign.cum_weights = _weighted(directory, frozenset(directory))
        outside = _just_outside(directory, inside)
        campaign.outside, campaign.outside_cum = _weighted(directory, outside)
    return result


def _union(areas: Iterable[frozenset[str] | None]) -> frozenset[str] | None:
    """The union of resolved areas; None when there are none or all are "everywhere"."""
    sets = [a for a in areas if a is not None]
    return frozenset().union(*sets) if sets else None


def _weighted(directory, zips: Iterable[str]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """ZIPs that people live in, sorted, with cumulative population weights."""
    rows = []
    for code in sorted(zips):
        info = directory.get(code)
        if info is not None and info.population:
            rows.append((code, float(info.population)))
    return tuple(c for c, _ in rows), tuple(itertools.accumulate(w for _, w in rows))


def _just_outside(directory, inside: frozenset[str]) -> frozenset[str]:
    """ZIPs near the area but not in it: the rest of its states, else the nearest beyond."""
    infos = [directory.get(z) for z in inside]
    infos = [i for i in infos if i is not None]
    if not infos:
        return frozenset()
    states = {i.state for i in infos}
    same_state = frozenset().union(*(directory.in_state(s) for s in states)) - inside
    if _weighted(directory, same_state)[0]:
        return same_state
    center = max(infos, key=lambda i: (i.population or 0, i.zip)).zip
    for miles in (50, 100, 200, 400, 800):
        nearby = directory.within_radius(center, miles) - inside
        if _weighted(directory, nearby)[0]:
            return nearby
    return frozenset()


def _zips_for_area_codes(directory, codes: set[str]) -> frozenset[str]:
    return frozenset(z for z in directory if set(directory.get(z).area_codes) & codes)


def _area_code(number: str) -> str:
    digits = "".join(ch for ch in number if ch.isdigit())
    return digits[1:4] if len(digits) == 11 and digits.startswith("1") else digits[:3]


def _area_codes(info, tracking_number: str) -> tuple[str, ...]:
    if info is not None and info.area_codes:
        return tuple(info.area_codes)
    return (_area_code(tracking_number),)


def nanp_number(area_codes: Sequence[str], rng: random.Random) -> str:
    """A plausible NANP number in one of ``area_codes``: no N11 exchange, no 555."""
    while True:
        exchange = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
        if exchange[1:] != "11" and exchange != "555":
            break
    return f"+1{rng.choice(list(area_codes))}{exchange}{rng.randint(0, 9999):04d}"


def _number_with_prefix(prefix: str, rng: random.Random) -> str:
    """A caller number starting with ``prefix`` that is a valid number (so the server judges it by its
    prefix, not as an invalid caller ID), when the prefix has any; else the last one tried."""
    from callbroker.core.phone import VALID, classify_caller

    for _ in range(50):
        number = prefix + "".join(str(rng.randint(0, 9)) for _ in range(max(4, 12 - len(prefix))))
        if classify_caller(number)[1] == VALID:
            break
    return number


def _arrival_seconds(rng: random.Random) -> int:
    hour = rng.choices(range(24), weights=HOURLY_WEIGHTS)[0]
    return hour * 3600 + rng.randrange(3600)


def _stir(rng: random.Random) -> str | None:
    values, weights = zip(*STIR_MIX, strict=True)
    return rng.choices(values, weights=weights)[0]


def _location(info, has_carrier_zip: bool, stir: str | None) -> dict[str, str]:
    """Carrier location parameters: the rate centre when known, present-but-empty otherwise."""
    params = {
        "FromZip": info.zip if has_carrier_zip and info is not None else "",
        "FromCity": info.city if has_carrier_zip and info is not None else "",
        "FromState": info.state if has_carrier_zip and info is not None else "",
        "FromCountry": "US",
    }
    if stir is not None:
        params["StirVerstat"] = stir
    return params


def _script(
    campaign: _Campaign, zip_code: str | None, has_carrier_zip: bool, rng: random.Random, tags: list[str]
) -> CallerScript:
    """The caller's keypad answers for this campaign's IVR: ZIP (maybe a bad one first), then 1 or 2."""
    digits: list[str] = []
    asks = campaign.ask_zip == "always" or (campaign.ask_zip == "when_missing" and not has_carrier_zip)
    if asks and zip_code:
        if rng.random() < INVALID_ZIP_FIRST_SHARE:
            digits.append(rng.choice(INVALID_ZIPS))
            tags.append("invalid_zip_first")
        digits.append(zip_code)
    if campaign.confirm:
        if rng.random() < WRONG_CATEGORY_SHARE:
            digits.append("2")
            tags.append("wrong_category")
        else:
            digits.append("1")
    return CallerScript(digits=tuple(digits), message_seconds=rng.choice((0, 8, 15, 25)))


@dataclass(frozen=True)
class _Profile:
    answer_rate: float
    ring_seconds: float


def _buyer_profiles(network: Mapping, seed: int) -> dict[str, _Profile]:
    profiles: dict[str, _Profile] = {}
    for buyer in network.get("buyers") or ():
        for target in buyer.get("targets") or ():
            number = str(target.get("number") or "")
            if number and number not in profiles:
                rng = random.Random(f"{seed}:{number}")
                profiles[number] = _Profile(rng.uniform(0.75, 0.95), rng.uniform(3, 20))
    return profiles


def _behaviour(profile: _Profile, rng: random.Random) -> BuyerBehaviour:
    talk = math.exp(math.log(TALK_MEDIAN_SECONDS) + TALK_SIGMA * rng.gauss(0, 1))
    roll = rng.random()
    return BuyerBehaviour(
        answers=rng.random() < profile.answer_rate,
        ring_seconds=max(1, round(rng.gauss(profile.ring_seconds, 2))),
        busy=roll < BUSY_SHARE,
        declines_whisper=BUSY_SHARE <= roll < BUSY_SHARE + DECLINE_WHISPER_SHARE,
        talk_seconds=int(min(3600, max(5, round(talk)))),
    )


# ---------------------------------------------------------------------------------------------
# Running


def run_traffic(
    carrier: Carrier,
    planned: Sequence[PlannedCall],
    *,
    rate: float | None,
    concurrency: int,
    on_done: Callable[[PlannedCall, CallRecord], None] | None = None,
    delivery: Delivery | None = None,
    stop: threading.Event | None = None,
    follow_day: bool = False,
) -> TrafficStats:
    """Place ``planned`` calls at ``rate`` calls/s (None = as fast as possible), ``concurrency`` at once.

    ``follow_day`` (with a ``rate``): the plan's day (``at_seconds``, in time order) is compressed onto
    the run, ``rate`` calls/s on average: the busy hours' calls come closer together, the night's further
    apart, as the plan has them. Otherwise calls come evenly, one every 1/``rate`` s.

    ``on_done`` is called once per finished call, one call at a time (under a lock), from a worker
    thread; an exception in it is counted as an error, never raised. ``delivery`` overrides every
    plan's. Setting ``stop`` ends the run after the calls in flight. Ctrl-C cancels the calls not
    yet started and re-raises.
    """
    concurrency = max(1, int(concurrency))
    stats = TrafficStats()
    lock = threading.Lock()
    slots = threading.BoundedSemaphore(concurrency)
    stop = stop or threading.Event()

    def one(call: PlannedCall) -> None:
        try:
            record = carrier.place_call(
                call.tracking_number,
                call.caller,
                caller=call.script,
                params=call.params,
                delivery=delivery or call.delivery,
                buyers=call.buyers,
            )
            with lock:
                stats.calls += 1
                stats.completed += record.final_status == "completed"
                stats.bridged += record.bridged
                stats.fallbacks += record.used_fallback
                stats.latencies_ms.extend(record.webhook_latencies_ms)
                if not record.ok:
                    stats.errors += 1
                    if len(stats.problems) < 20:
                        stats.problems.extend(
                            f"{record.call_sid}: {p}" for p in (record.errors or ["application error"])[:2]
                        )
                if on_done is not None:
                    try:
                        on_done(call, record)
                    except Exception as exc:  # noqa: BLE001 - a reporting bug must not stop traffic
                        stats.errors += 1
                        if len(stats.problems) < 20:
                            stats.problems.append(f"on_done: {exc.__class__.__name__}: {exc}")
        finally:
            slots.release()

    due = _day_offsets(planned, rate) if rate and follow_day else None
    started = time.perf_counter()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sim-call")
    try:
        for i, call in enumerate(planned):
            if stop.is_set():
                break
            if rate:
                delay = started + (due[i] if due else i / rate) - time.perf_counter()
                if delay > 0:
                    stop.wait(delay)
                    if stop.is_set():
                        break
            slots.acquire()  # may wait for a call in flight to end: the stop may come meanwhile
            if stop.is_set():
                slots.release()
                break
            pool.submit(one, call)
        pool.shutdown(wait=True)
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        stats.wall_seconds = time.perf_counter() - started
    return stats


def set_from_signal_handler(event: threading.Event) -> None:
    """``event.set()`` for a signal handler: done by another thread, since the handler may run in the main
    thread right where it holds the event's own lock (inside ``event.wait()``, which ``run_traffic`` does
    between calls), and setting it there would wait for that lock for ever."""
    if not event.is_set():
        threading.Thread(target=event.set, name="set-on-signal", daemon=True).start()


def _day_offsets(planned: Sequence[PlannedCall], rate: float) -> list[float]:
    """When each call is placed, in seconds after the first, for ``rate`` calls/s on average: the plan's
    day from its first call to its last compressed onto the time evenly paced calls would take."""
    first, last = planned[0].at_seconds if planned else 0, planned[-1].at_seconds if planned else 0
    if last <= first:
        return [i / rate for i in range(len(planned))]
    stretch = (len(planned) - 1) / rate / (last - first)
    return [max(0.0, (call.at_seconds - first) * stretch) for call in planned]


def run_traffic_processes(
    make_carrier: Callable[[int], Carrier],
    planned: Sequence[PlannedCall],
    *,
    concurrency: int,
    processes: int,
    rate: float | None = None,
) -> TrafficStats:
    """``run_traffic`` split over ``processes`` forked processes, ``concurrency`` calls in flight in all.

    One Python process placing calls from many threads spends most of its time waiting for its own
    interpreter lock (each webhook's answer must wait for the lock before it is read), so a single
    process can't keep a fast server busy; a real carrier is many machines. Process ``i`` gets
    ``make_carrier(i)`` and every ``processes``-th call starting at ``i``; the stats are merged and the
    wall time is the whole run's. ``processes <= 1`` runs in this process. Linux (``fork``) only.
    """
    import multiprocessing

    processes = max(1, min(int(processes), len(planned) or 1))
    concurrency = max(1, int(concurrency))
    if processes == 1:
        return run_traffic(make_carrier(0), planned, rate=rate, concurrency=concurrency)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    shares = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]

    def child(i: int) -> None:
        # This process only waits on sockets: hand the interpreter lock over sooner than every 5 ms, so a
        # thread whose answer has arrived isn't kept waiting behind one that is building a request.
        sys.setswitchinterval(0.0005)
        try:
            stats = run_traffic(make_carrier(i), planned[i::processes], rate=rate / processes if rate else None,
                                concurrency=max(1, shares[i]))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, never lost
            stats = TrafficStats(errors=len(planned[i::processes]), problems=[f"traffic process {i}: {exc!r}"])
        results.put((i, stats))

    started = time.perf_counter()
    workers = [context.Process(target=child, args=(i,), name=f"sim-traffic-{i}") for i in range(processes)]
    for worker in workers:
        worker.start()
    merged = TrafficStats()
    for stats in _results(results, workers, planned, processes):
        merged.calls += stats.calls
        merged.completed += stats.completed
        merged.bridged += stats.bridged
        merged.errors += stats.errors
        merged.fallbacks += stats.fallbacks
        merged.latencies_ms.extend(stats.latencies_ms)
        merged.problems.extend(stats.problems[: max(0, 20 - len(merged.problems))])
    for worker in workers:
        worker.join()
    merged.wall_seconds = time.perf_counter() - started
    return merged


def _results(results, workers, planned: Sequence[PlannedCall], processes: int) -> Iterable[TrafficStats]:
    """Each process's stats as they arrive; a process that died without reporting (killed, crashed in
    C, ``os._exit``) counts its calls as errors instead of leaving the parent waiting for ever."""
    import queue

    waiting = set(range(len(workers)))
    while waiting:
        try:
            i, stats = results.get(timeout=0.5)
        except queue.Empty:
            dead = [i for i in waiting if workers[i].exitcode is not None]
            if not dead:
                continue
            try:  # a result put just before its process exited is in the pipe already: take it first
                i, stats = results.get(timeout=0.5)
            except queue.Empty:
                i = dead[0]
                code = workers[i].exitcode
                stats = TrafficStats(errors=len(planned[i::processes]),
                                     problems=[f"traffic process {i} ended (exit code {code}) without reporting"])
        waiting.discard(i)
        yield stats
