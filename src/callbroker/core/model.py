"""The values the rest of callbroker speaks: frozen dataclasses and enums, no Django.

Everything here is immutable and cheap to build. The Django shell maps its rows to these
values once (``to_core()``), the core decides, and the shell stores the decision.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum


class ZipSource(StrEnum):
    """Where the caller's ZIP code came from, most trustworthy first."""

    IVR = "ivr"  # the caller typed it
    CARRIER = "carrier"  # the carrier's FromZip / CallerZip (rate centre of the number)
    AREA_CODE = "area_code"  # guessed from the caller's area code
    UNKNOWN = "unknown"


class FallbackKind(StrEnum):
    """What happens to a caller when no target can take the call."""

    CALLBACK = "callback"  # capture a next-day callback request (record name + number)
    VOICEMAIL = "voicemail"  # record a voicemail for the campaign
    FORWARD = "forward"  # forward to a fallback phone number
    MESSAGE = "message"  # say a message with the opening hours, then hang up


class Exclusion(StrEnum):
    """Why a target was left out of the ring list. Stable codes: stored and shown in the API."""

    PAUSED = "paused"
    CALLER_BLOCKED = "caller_blocked"
    OUT_OF_AREA = "out_of_area"
    CLOSED = "closed"
    HOURLY_CAP = "hourly_cap"
    DAILY_CAP = "daily_cap"
    MONTHLY_CAP = "monthly_cap"
    CONCURRENCY_FULL = "concurrency_full"


class Reason(StrEnum):
    """Why a finished call is not billable. Stable codes: stored and shown in the API."""

    NOT_CONNECTED = "not_connected"
    BELOW_BUFFER = "below_buffer"
    DUPLICATE = "duplicate"
    OUT_OF_AREA = "out_of_area"
    WRONG_CATEGORY = "wrong_category"
    BLOCKED_NUMBER = "blocked_number"
    ANONYMOUS_CALLER = "anonymous_caller"
    FAILED_ATTESTATION = "failed_attestation"
    CALLER_VELOCITY = "caller_velocity"
    #: Given by no rule (``qualification`` never returns it): staff judged the call not billable by hand, an
    #: ended call no campaign could judge (its campaign left the network while it went on). Whether a buyer
    #: talked to it is in the call's record; that no rule judged it is what this says.
    JUDGED_BY_STAFF = "judged_by_staff"


@dataclass(frozen=True, slots=True)
class Fallback:
    """A campaign's after-hours / nothing-eligible handling."""

    kind: FallbackKind = FallbackKind.MESSAGE
    number: str | None = None  # E.164, for FORWARD
    message: str = ""  # spoken text; for MESSAGE the shell appends the opening hours


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling and where they are, as far as we know."""

    number: str | None  # E.164, or None when anonymous / invalid
    zip_code: str | None = None
    zip_source: ZipSource = ZipSource.UNKNOWN
    # For a ZIP guessed from the area code: every ZIP of that area code. Routing then takes the caller as
    # of unknown location near them (``routing``), not as being in the one ZIP guessed.
    near_zips: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class TargetCounters:
    """Live counters for one target at decision time (maintained atomically by the shell)."""

    active: int = 0  # calls connected or ringing right now
    hour: int = 0  # calls routed in the current hour (target's local time)
    day: int = 0  # … current local day
    month: int = 0  # … current local month


@dataclass(frozen=True, slots=True)
class Target:
    """One buyer destination in a campaign, with everything routing needs.

    ``area_zips`` is the service area already resolved to ZIP codes (``geo.ServiceArea.resolve``);
    ``None`` means the target takes calls from anywhere. ``schedule`` is a
    ``schedule.Schedule`` (``None`` = always open). Caps of ``None`` are unlimited.
    """

    id: int
    buyer_id: int
    name: str
    number: str  # E.164
    priority: int = 1  # lower rings first
    weight: int = 1  # share of traffic within a priority (>= 1)
    area_zips: frozenset[str] | None = None
    accepts_unknown_location: bool = True  # route callers whose ZIP is unknown here?
    schedule: object | None = None  # callbroker.core.schedule.Schedule
    hourly_cap: int | None = None
    daily_cap: int | None = None
    monthly_cap: int | None = None
    concurrency_limit: int | None = None
    paused: bool = False
    blocked_prefixes: tuple[str, ...] = ()  # E.164 prefixes this buyer refuses
    price: Decimal = Decimal("0.00")  # what the buyer pays per billable call
    min_talk_seconds: int | None = None  # overrides the campaign's buffer when set


@dataclass(frozen=True, slots=True)
class Campaign:
    """The routing and qualification rules of one offer (one service category in one market)."""

    id: int
    name: str
    category: str = ""
    buffer_seconds: int = 60  # billable buffer: bridged talk time needed
    duplicate_window: dt.timedelta = dt.timedelta(days=30)
    payout: Decimal = Decimal("0.00")  # what the publisher earns per billable call
    blocked_numbers: frozenset[str] = frozenset()  # E.164
    blocked_prefixes: tuple[str, ...] = ()  # E.164 prefixes, e.g. "+1900"
    velocity_limit: int = 5  # more than this many calls …
    velocity_window: dt.timedelta = dt.timedelta(minutes=10)  # … inside this window is spam
    require_attestation: bool = False  # reject TN-Validation-Failed-* when True
    fallback: Fallback = field(default_factory=Fallback)


@dataclass(frozen=True, slots=True)
class RoutingContext:
    """Everything about the caller's history that the shell looked up for routing."""

    caller: Caller
    now: dt.datetime  # aware
    sticky_target_id: int | None = None  # target reached last inside the duplicate window
    sticky_buyer_id: int | None = None  # its buyer (None: the buyer of sticky_target_id among the targets)


@dataclass(frozen=True, slots=True)
class Decision:
    """The ordered ring list plus why every other target was left out."""

    ring: tuple[int, ...]  # target ids, in dialling order
    excluded: tuple[tuple[int, Exclusion], ...]  # (target id, first reason that applied)
    fallback: Fallback | None  # set when ``ring`` is empty
    sticky: bool = False  # True when ring[0] was chosen because the caller is a repeat caller (its buyer's)

    @property
    def routed(self) -> bool:
        return bool(self.ring)


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What we know about a finished call, gathered by the shell for qualification."""

    caller: Caller
    connected: bool  # the caller was bridged to a buyer (DialBridged=true)
    talk_seconds: int  # bridged talk time with the buyer only (never IVR or ring time)
    started_at: dt.datetime  # aware; the duplicate and velocity windows are measured from it, start to start
    in_area: bool | None = None  # None = unknown location
    category_confirmed: bool | None = None  # IVR press-1 answer; None = not asked
    stir_verstat: str | None = None  # e.g. "TN-Validation-Passed-A"
    previous_billable_at: dt.datetime | None = None  # same caller, same campaign: last billable call's start
    recent_call_times: tuple[dt.datetime, ...] = ()  # same caller, any campaign: starts of the calls before
    target_min_talk_seconds: int | None = None  # the connected target's override
    target_price: Decimal = Decimal("0.00")


@dataclass(frozen=True, slots=True)
class Verdict:
    """Billable or not, with every reason that applies, and the money that follows."""

    billable: bool
    reasons: tuple[Reason, ...]
    revenue: Decimal  # charged to the buyer
    payout: Decimal  # paid to the publisher
