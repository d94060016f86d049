"""Phone numbers: E.164 normalisation, withheld caller IDs, NANP area codes.

Validity rule (used everywhere here): a number is accepted when ``phonenumbers`` says it is a valid number,
or when it is a NANP number in the 555-0100..555-0199 range that the North American Numbering Plan reserves
for fiction (e.g. +15125550101) in an area code that is in service (some ordinary number in it is valid:
512 passes, 555 and 211 do not). With the ``phonenumbers`` metadata of 2025/2026 (9.0.x) such numbers already
pass ``is_valid_number`` for area codes in service; the explicit rule keeps the demo network and the test
fixtures working if a future metadata release marks them invalid.
"""

from __future__ import annotations

import functools
import re
from typing import Final, Literal

import phonenumbers

__all__ = [
    "ANONYMOUS",
    "INVALID",
    "VALID",
    "CallerStatus",
    "area_code",
    "classify_caller",
    "is_anonymous",
    "normalize",
    "validate_e164",
]

CallerStatus = Literal["valid", "anonymous", "invalid"]
VALID: Final = "valid"
ANONYMOUS: Final = "anonymous"
INVALID: Final = "invalid"

_KEYPAD = {letter: digit for digit, letters in {
    "2": "ABC", "3": "DEF", "4": "GHI", "5": "JKL", "6": "MNO", "7": "PQRS", "8": "TUV", "9": "WXYZ",
}.items() for letter in letters}  # fmt: skip

# What carriers put in the caller ID when the caller withheld it. Twilio passes the words on (since its
# 2022-11-16 change "Upcoming changes to withheld caller ID behavior for <Dial> calls", which says it used
# to translate "ANONYMOUS, RESTRICTED, etc." into digits), and older calls, other legs and other carriers
# still show the keypad spelling of the word as a number: +266696687 is "ANONYMOUS", +7378742833
# "RESTRICTED", +86282452253 "UNAVAILABLE", +2562533 "BLOCKED", +8656696 "UNKNOWN" — see Twilio's help
# article "Why am I getting calls from these strange numbers?" (help.twilio.com/articles/223179988), cited
# in somleng/somleng#1820 and bmlt-enabled/yap#125 (which blocks "+266696687").
WITHHELD_WORDS: Final = frozenset(
    {"anonymous", "restricted", "unavailable", "blocked", "unknown", "private", "withheld"}
)
WITHHELD_DIGITS: Final = frozenset("".join(_KEYPAD[c] for c in word.upper()) for word in WITHHELD_WORDS)
# "No caller ID" spellings that are not keypad words.
_WITHHELD_TEXT: Final = frozenset({"", "none", "null", "no caller id", "nocallerid", "private number"})

_E164_RE = re.compile(r"\+[1-9][0-9]{1,14}")  # ASCII digits: ``\d`` takes any script's, and they never match
_NANP_FICTIONAL_RE = re.compile(r"\+1[2-9]\d{2}55501\d{2}")
_NANP_E164_RE = re.compile(r"\+1[2-9][0-9]{9}")  # ASCII digits: ``\d`` would match any script's


def _acceptable(number: phonenumbers.PhoneNumber) -> bool:
    if phonenumbers.is_valid_number(number):
        return True
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return bool(_NANP_FICTIONAL_RE.fullmatch(e164)) and _area_code_in_use(e164[2:5])


# Ordinary subscriber numbers tried to tell whether an area code is in service. (phonenumbers' geocoder
# would answer directly, but importing it costs about 100 MB.)
_PROBES = ("2345678", "4567890", "7654321", "7121234")


@functools.lru_cache(maxsize=1024)
def _area_code_in_use(npa: str) -> bool:
    """The region check: some ordinary number in this NANP area code is valid (512 yes, 555 no)."""
    return any(phonenumbers.is_valid_number(phonenumbers.parse(f"+1{npa}{probe}")) for probe in _PROBES)


def _parse(raw: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    if _NANP_E164_RE.fullmatch(raw):
        # What ``parse`` makes of "+1NPANXXXXXX" (tested equal), without its generic work: every caller
        # ID a US carrier sends has this form, and parsing was 3–5 % of an inbound webhook's CPU.
        return phonenumbers.PhoneNumber(country_code=1, national_number=int(raw[2:]))
    try:
        return phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None


def normalize(raw: str | None, region: str = "US") -> str | None:
    """E.164 form of a number written any usual way ("(512) 555-0100", "+1 512…"), or None if not valid.

    ``region`` is the country assumed for numbers written without a country code.
    """
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    number = _parse(text, region)
    if number is None or not _acceptable(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def is_anonymous(raw: str | None) -> bool:
    """True for the caller IDs carriers send when the caller withheld the number (or sent nothing)."""
    if raw is None:
        return True
    text = str(raw).strip().casefold()
    if text.startswith("sip:"):  # "sip:anonymous@anonymous.invalid" (RFC 3323)
        text = text[4:].split("@", 1)[0]
    if text in _WITHHELD_TEXT or text in WITHHELD_WORDS:
        return True
    digits = text[1:] if text.startswith("+") else text
    return digits in WITHHELD_DIGITS


def classify_caller(raw: str | None, region: str = "US") -> tuple[str | None, str]:
    """``(e164, "valid")``, ``(None, "anonymous")`` or ``(None, "invalid")``."""
    if is_anonymous(raw):
        return None, ANONYMOUS
    e164 = normalize(raw, region)
    return (e164, VALID) if e164 else (None, INVALID)


def area_code(e164: str | None) -> str | None:
    """The three-digit NANP area code of "+1NPANXXXXXX", else None."""
    if e164 and len(e164) == 12 and e164.startswith("+1") and e164[1:].isdigit() and e164[2] in "23456789":
        return e164[2:5]
    return None


def validate_e164(value: str) -> str:
    """Return ``value`` unchanged if it is already a valid E.164 number; raise ValueError otherwise.

    For numbers typed into configuration (the network file): unlike ``normalize`` nothing is guessed, so
    "5125550100" and "+1 512 555 0100" are rejected with a message saying what is expected.
    """
    hint = "(expected +<country><number>, e.g. +15125550100)"
    if not isinstance(value, str) or not _E164_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not an E.164 phone number {hint}")
    number = _parse(value, None)
    if number is None or not _acceptable(number):
        raise ValueError(f"{value!r} is not a valid phone number {hint}")
    return value
