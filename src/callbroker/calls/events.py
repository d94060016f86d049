"""Carrier-neutral values for what a carrier tells us about a call (parsed by the carrier adapters)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

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


#: The carriers a call can come from (``Call.carrier``): who signed its inbound webhook.
CARRIERS = frozenset({"twilio", "signalwire", "telnyx"})


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
    #: Who signed the webhook (``CARRIERS``). Kept out of :func:`inbound_fields` (the spool's and
    #: ``KeptStatus``'s ``inbound``): the previous release builds ``InboundCall(**inbound)`` and would fail on
    #: a key it doesn't know during a rolling upgrade or after a rollback. The spool keeps it beside (``carrier``).
    carrier: str = "twilio"


def inbound_fields(inbound: InboundCall) -> dict:
    """The call as the carrier described it, as the spool and ``KeptStatus`` store it: every field but the
    carrier, which a record keeps beside (``carrier``), so that any release reads it back."""
    fields = asdict(inbound)
    del fields["carrier"]
    return fields


def inbound_of(record: dict) -> InboundCall:
    """The ``InboundCall`` a spooled record describes: its ``inbound`` and, beside it, its ``carrier``. A record
    spooled by a release before 2026-12-08 names none: every call was read as Twilio's then."""
    fields = dict(record["inbound"])
    carrier = record.get("carrier") or fields.pop("carrier", None)  # in ``inbound``: a description made whole
    fields.pop("carrier", None)
    return InboundCall(**fields, carrier=carrier if carrier in CARRIERS else "twilio")


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
