"""What the call flow asks the carrier to do next, independent of any carrier's markup.

Services return a tuple of these; each carrier adapter renders them (Twilio: TwiML).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class AskZip:
    """Collect a 5-digit ZIP; post the digits (possibly empty) to the ZIP step ``attempt``."""

    prompt: str
    attempt: int


@dataclass(frozen=True, slots=True)
class AskCategory:
    """Collect one digit confirming the service category ("1" = yes).

    ``typed_zip``: the ZIP the caller typed at the prompt before, carried in the callback URL so that an
    answer handled while the database is unreachable is routed with it, as live routes it.
    """

    prompt: str
    typed_zip: str = ""


@dataclass(frozen=True, slots=True)
class DialTarget:
    """Ring one target; the carrier reports the result to the dial step ``sequence``.

    ``rest`` is the rest of the ring list (target ids), carried in the callback URL so that the ring
    tree can go on from memory when the database is unreachable; so is ``target_id``, the target rung,
    so that a leg which ends while the database is unreachable gives its concurrency slot back at once.
    ``network_version``: the version of the network the call was routed by (0: unknown), carried in the
    whisper's URL so that the worker answering the whisper, maybe not the one that routed, says the
    campaign's text of that version at least, not an older one it still holds. ``counted_periods``: the
    periods the leg's reservation counted a cap unit in (``CallAttempt.counted_periods``; ``None``: a leg
    degraded mode dialled, whose plan in Redis says what it took), carried in the Dial action's URL (``u``)
    so that a leg ending while the database is unreachable gives back those units, not those of the caps
    the line has by then.
    """

    number: str
    sequence: int
    timeout: int
    record: bool
    campaign_id: int
    rest: tuple[int, ...] = ()
    target_id: int = 0
    network_version: int = 0
    counted_periods: str | None = None


@dataclass(frozen=True, slots=True)
class Forward:
    """Forward to a number with no further routing (fallback)."""

    number: str
    timeout: int = 30


@dataclass(frozen=True, slots=True)
class TakeMessage:
    """Record the caller (voicemail or callback request) after ``prompt``."""

    prompt: str
    max_seconds: int = 120


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


Step = Say | AskZip | AskCategory | DialTarget | Forward | TakeMessage | Hangup
