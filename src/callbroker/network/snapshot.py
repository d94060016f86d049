"""An in-memory, read-only picture of the network for the call path.

Building it resolves every service area to a ZIP set and every schedule once, so a routing decision
is pure set lookups. Each app process keeps one snapshot and rebuilds it when ``NetworkVersion``
changes. The snapshot is also what keeps calls flowing when the database is slow or away.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import pickle
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from django.conf import settings

from callbroker import db
from callbroker.core import model as core
from callbroker.core.geo import ZipDirectory
from callbroker.core.routing import prepare_targets
from callbroker.network import models as m
from callbroker.network.parsing import parse_area, parse_hours

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """What the call path needs about a target beside its core value."""

    core: core.Target
    label: str  # "Buyer / Target"
    buyer_name: str
    timezone: str  # the buyer's (caps are counted in it)


@dataclass(frozen=True, slots=True)
class CampaignInfo:
    """A campaign's core rules plus the call-flow settings the carrier adapter needs."""

    core: core.Campaign
    key: str
    name: str
    active: bool
    recording: bool
    recording_disclosure: bool
    disclosure_text: str
    ask_zip: str
    confirm_category: str
    whisper_text: str
    ring_timeout: int
    missed_calls_limit: int
    missed_calls_window_s: int
    missed_calls_cooldown_s: int
    targets: tuple[core.Target, ...]  # a routing.PreparedTargets: lookup tables built once per snapshot
    target_names: dict[str, str]  # target id (as text) -> "Buyer / Target"; the ring's are stored with each decision
    hours_text: str  # opening hours of the campaign's targets, for the after-hours message


@dataclass(frozen=True, slots=True)
class TrackingInfo:
    id: int
    number: str
    campaign_id: int
    publisher_id: int
    active: bool


@dataclass(frozen=True)
class NetworkSnapshot:
    version: int
    campaigns: dict[int, CampaignInfo] = field(default_factory=dict)
    targets: dict[int, TargetInfo] = field(default_factory=dict)
    tracking: dict[str, TrackingInfo] = field(default_factory=dict)
    timezones: dict[int, str] = field(default_factory=dict)  # target id -> the buyer's time zone

    @cached_property
    def longest_window(self) -> dt.timedelta:
        """The longest duplicate or velocity window of any campaign: how far back a call's verdict looks."""
        return max((max(c.core.duplicate_window, c.core.velocity_window) for c in self.campaigns.values()),
                   default=dt.timedelta(0))


def build_snapshot(directory: ZipDirectory | None = None) -> NetworkSnapshot:
    """Read the whole network from the database and resolve it into core values."""
    directory = ZipDirectory.default() if directory is None else directory
    version = m.NetworkVersion.objects.filter(pk=1).values_list("version", flat=True).first() or 0
    targets_by_campaign: dict[int, list[core.Target]] = {}
    targets: dict[int, TargetInfo] = {}
    hours_by_campaign: dict[int, list[str | None]] = {}  # per active target: its hours in words (None: always open)
    for row in m.Target.objects.select_related("buyer").order_by("priority", "id"):
        try:
            area = parse_area(row.area).resolve(directory)
            schedule = parse_hours(row.hours, row.buyer.timezone)
            if row.price < 0:  # the loader and the admin refuse it; a negative charge can't be billed
                raise ValueError(f"price {row.price} is negative")
        except ValueError:
            # The loader validates everything; a row edited badly by hand must not stop all routing.
            log.exception("target %s has an invalid area, hours or price; it is left out of routing", row.pk)
            continue
        value = core.Target(
            id=row.pk,
            buyer_id=row.buyer_id,
            name=f"{row.buyer.name} / {row.name}",
            number=row.number,
            priority=row.priority,
            weight=max(1, row.weight),
            area_zips=area,
            accepts_unknown_location=row.accepts_unknown_location,
            schedule=schedule,
            hourly_cap=row.hourly_cap,
            daily_cap=row.daily_cap,
            monthly_cap=row.monthly_cap,
            concurrency_limit=row.concurrency_limit,
            paused=row.paused or not row.buyer.active,
            blocked_prefixes=tuple(row.blocked_prefixes or ()),
            price=row.price,
            min_talk_seconds=row.min_talk_seconds,
        )
        targets[row.pk] = TargetInfo(core=value, label=value.name, buyer_name=row.buyer.name,
                                     timezone=row.buyer.timezone)
        targets_by_campaign.setdefault(row.campaign_id, []).append(value)
        if not value.paused:
            hours_by_campaign.setdefault(row.campaign_id, []).append(
                None if schedule is None or schedule.always_open else schedule.describe())

    campaigns: dict[int, CampaignInfo] = {}
    for row in m.Campaign.objects.all():
        active = row.active
        if row.payout < 0:  # the loader and the admin refuse it; a negative payout can't be paid
            log.error("campaign %s has a negative payout (%s); its calls go to the fallback until fixed",
                      row.pk, row.payout)
            active = False
        rules = core.Campaign(
            id=row.pk,
            name=row.name,
            category=row.category,
            buffer_seconds=row.buffer_seconds,
            duplicate_window=row.duplicate_window,
            payout=row.payout,
            blocked_numbers=frozenset(row.blocked_numbers or ()),
            blocked_prefixes=tuple(row.blocked_prefixes or ()),
            velocity_limit=row.velocity_limit,
            velocity_window=row.velocity_window,
            require_attestation=row.require_attestation,
            fallback=core.Fallback(
                kind=core.FallbackKind(row.fallback_kind),
                number=row.fallback_number or None,
                message=row.fallback_message,
            ),
        )
        campaigns[row.pk] = CampaignInfo(
            core=rules,
            key=row.key,
            name=row.name,
            active=active,
            recording=row.recording,
            recording_disclosure=row.recording_disclosure,
            disclosure_text=row.disclosure_text,
            ask_zip=row.ask_zip,
            confirm_category=row.confirm_category,
            whisper_text=row.whisper_text or f"Call from {row.name}.",
            ring_timeout=row.ring_timeout,
            missed_calls_limit=row.missed_calls_limit,
            missed_calls_window_s=int(row.missed_calls_window.total_seconds()),
            missed_calls_cooldown_s=int(row.missed_calls_cooldown.total_seconds()),
            targets=prepare_targets(targets_by_campaign.get(row.pk, ())),
            target_names={str(t.id): t.name for t in targets_by_campaign.get(row.pk, ())},
            hours_text=campaign_hours(hours_by_campaign.get(row.pk, [])),
        )
    tracking = {
        row.number: TrackingInfo(row.pk, row.number, row.campaign_id, row.publisher_id, row.active)
        for row in m.TrackingNumber.objects.all()
    }
    timezones = {target_id: info.timezone for target_id, info in targets.items()}
    return NetworkSnapshot(version=version, campaigns=campaigns, targets=targets, tracking=tracking,
                           timezones=timezones)


#: At most this many different opening hours are spoken in a closed message; the most common first.
HOURS_SPOKEN = 3


def campaign_hours(described: list[str | None]) -> str:
    """The campaign's opening hours for its closed message, from each active line's hours in words (in
    priority order; None for a line that is always open): every different one, the most common first and
    ties in priority order, at most ``HOURS_SPOKEN`` of them; lines that never open left out. Nothing when
    a line is always open (a caller who hears the message was turned away by caps, not by the hours) or
    none ever opens."""
    if None in described:
        return ""
    counts = Counter(text for text in described if text != "closed")  # keeps first-seen order on ties
    return "; also ".join(text for text, _ in counts.most_common(HOURS_SPOKEN))


#: The current network version, as a scalar subquery (NULL before the network was first loaded: version 0).
VERSION_SQL = f"SELECT version FROM {m.NetworkVersion._meta.db_table} WHERE id = 1"


def network_version() -> int:
    """The current network version (hand-written SQL: it is read on every inbound call)."""
    row = db.fetchone(VERSION_SQL)
    return row[0] if row else 0


_lock = threading.Lock()
_current: NetworkSnapshot | None = None


def current_snapshot(*, check_version: bool = True, version: int | None = None) -> NetworkSnapshot:
    """The process's snapshot, rebuilt when the network version in the database moved on.

    With ``check_version=False`` (or when the database can't be read) the last snapshot is used.
    ``version``: the network version the caller has just read from the database itself (the inbound
    call reads it with its idempotency check, in one statement), instead of reading it here.
    """
    global _current
    snap = _current
    if snap is not None and not check_version:
        return snap
    if version is None:
        try:
            version = network_version()
        except Exception:  # database away: keep routing from what we have
            snap = snap or cached_snapshot()
            if snap is not None:
                log.warning("network version unreadable; routing from the snapshot of version %s", snap.version)
                return snap
            raise
    if snap is not None and snap.version == version:
        return snap
    with _lock:
        if _current is None or _current.version != version:
            _current = build_snapshot()
            _save(_current)
        return _current


def cached_snapshot() -> NetworkSnapshot | None:
    """The last snapshot this process built, without touching the database.

    A process that never built one (it started while the database was down) reads the copy the node
    last saved to its data directory, so it can still route.
    """
    global _current
    if _current is None:
        loaded = _load_saved()
        if loaded is not None:
            with _lock:
                _current = _current or loaded
    return _current


def _saved_path() -> Path:
    return Path(settings.DATA_DIR) / "network-snapshot.pickle"


def _save(snap: NetworkSnapshot) -> None:
    """Keep a copy on local disk for a process that starts while the database is down."""
    path = _saved_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(snap, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not save the network snapshot to %s: %s", path, exc)


def _load_saved() -> NetworkSnapshot | None:
    try:
        return pickle.loads(_saved_path().read_bytes())  # noqa: S301 - our own file in our data dir
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - a stale or torn copy is just not used
        log.warning("saved network snapshot unreadable: %s", exc)
        return None


def preload() -> None:
    """Before the server forks its workers: load what routing needs, so no worker pays for it on a call.

    The holiday calendars (the ``holidays`` package imports one module per country on first use, about
    half a second) and, when the database answers, the network snapshot; then the database connection
    is closed, since a connection must never be shared with forked workers. Never raises: a worker
    builds whatever is missing on its first call, as it would without this.
    """
    from django.db import connections

    from callbroker.network.parsing import holiday_calendars

    holiday_calendars()
    try:
        current_snapshot()
    except Exception as exc:  # noqa: BLE001 - e.g. not migrated yet, or the database is down
        log.warning("network snapshot not preloaded: %s", exc)
    finally:
        connections.close_all()


def reset_snapshot() -> None:
    """Forget the process's snapshot (tests)."""
    global _current
    with _lock:
        _current = None
