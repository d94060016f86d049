"""Carrier-neutral values for what a carrier tells us about a call (parsed by the carrier adapters)."""

from __future__ import annotations

import re
from dataclasses import dataclass

TERMINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})

#: The longest duration taken from a carrier: a day (carriers end calls long before; Twilio's default limit is 4 hours).
MAX_SECONDS = 86_400
_SECONDS = re.compile(r"[0-9]{1,9}")


def parse_seconds(raw: str) -> int:
    """A carrier's duration field (``CallDuration``, ``DialCallDuration``, ``RecordingDuration``): ASCII
    digits only (``int()`` would also take ``1_0``, ``+5`` and other scripts' digits), at most
    :data:`MAX_SECONDS`. Raises ``ValueError`` naming the problem."""
    if not _SECONDS.fullmatch(raw):
        raise ValueError(f"{raw[:20]!r} is not a whole number of seconds")
    value = int(raw)
    if value > MAX_SECONDS:
        raise ValueError(f"{value} is out of range (at most {MAX_SECONDS:,} seconds)")
    return value


@dataclass(frozen=True, slots=True)
class InboundCall:
    call_sid: str
    account_sid: str
    from_raw: str
    to: str
    from_zip: str = ""
    from_state: str = ""
    from_city: str = ""
    stir_verstat: str = ""


@dataclass(frozen=True, slots=True)
class DialOutcome:
    """The result of ringing one target (Twilio's Dial action callback)."""

    status: str  # completed answered busy no-answer failed canceled
    bridged: bool  # the caller and the buyer actually talked
    duration: int  # DialCallDuration (s)
    dial_call_sid: str = ""
    recording_sid: str = ""
    recording_url: str = ""
    caller_gone: bool = False  # the caller's call had ended when the carrier posted this (CallStatus final)


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    status: str
    duration: int | None
    sequence: str = ""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class RecordingUpdate:
    recording_sid: str
    url: str
    status: str
    duration: int | None


@dataclass(frozen=True, slots=True)
class EventIn:
    """One webhook as received: the key that makes its handling idempotent and its raw parameters."""

    call_sid: str
    kind: str
    dedupe_key: str
    params: dict
