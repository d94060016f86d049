"""The network file: load (validate everything, then write in one transaction) and export.

A network file is YAML (or an already-parsed mapping) describing campaigns, buyers with their
targets, publishers and tracking numbers; ``docs/network-file.md`` documents every key.

:func:`load_network` checks the whole file first and collects *every* problem with its location
(``buyers[2].targets[0].area.zips[3]: 99999 is not a known ZIP code``). Any problem raises
:class:`~callbroker.network.parsing.NetworkError` and nothing is written. Otherwise every row is
upserted by its key (tracking numbers by number) inside one transaction; rows that did not change
are not saved at all, so loading the same file twice changes nothing (not even the network version).

:func:`export_network` writes the database back in the same format; loading an export gives the
same network again.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DatabaseError, transaction

from callbroker.network import models as m
from callbroker.network import parsing
from callbroker.network.choices import AskZip, FallbackChoices
from callbroker.network.parsing import NetworkError, Problem, did_you_mean, join_location, written_text
from callbroker.network.services import ensure_target_states, target_ids_with_calls
from callbroker.network.yamlfile import WrittenInt, read_yaml
from callbroker.words import counted as in_words

__all__ = [
    "FIELD_RULES",
    "KINDS",
    "LoadReport",
    "NetworkPlan",
    "counted",
    "dump_network",
    "export_network",
    "load_network",
    "not_a_tracking_number",
    "not_dialled",
    "read_network_file",
    "validate_network",
]

FORMAT_VERSION = 1
KINDS = ("campaigns", "buyers", "targets", "publishers", "tracking_numbers")
STATUSES = ("created", "updated", "unchanged", "pruned")


def counted(count: int, kind: str) -> str:
    """``1 campaign``, ``0 tracking numbers``: a count of one of :data:`KINDS` in words."""
    plural = kind.replace("_", " ")
    return in_words(count, plural.removesuffix("s"), plural)


TOP_KEYS = ("version", "campaigns", "buyers", "publishers", "tracking_numbers", "settings")
CAMPAIGN_KEYS = (
    "key", "name", "category", "active", "currency", "payout", "buffer_seconds", "duplicate_window",
    "ring_timeout", "recording", "recording_disclosure", "disclosure_text", "ivr", "whisper",
    "blocked_numbers", "blocked_prefixes", "velocity", "require_attestation", "missed_call_protection",
    "fallback",
)
BUYER_KEYS = ("key", "name", "timezone", "email", "active", "targets")
TARGET_KEYS = (
    "key", "campaign", "name", "number", "priority", "weight", "price", "min_talk_seconds", "area",
    "accepts_unknown_location", "hours", "caps", "paused", "blocked_prefixes",
)
PUBLISHER_KEYS = ("key", "name", "email", "active")
TRACKING_KEYS = ("number", "campaign", "publisher", "label", "active", "weight")
IVR_KEYS = ("ask_zip", "confirm_category")
VELOCITY_KEYS = ("limit", "window")
MISSED_KEYS = ("misses", "window", "cooldown")
FALLBACK_KEYS = ("kind", "number", "message")
CAPS_KEYS = ("hourly", "daily", "monthly", "concurrency")

_DEFAULT_DISCLOSURE = m.Campaign._meta.get_field("disclosure_text").default
_DEFAULT_FALLBACK_MESSAGE = m.Campaign._meta.get_field("fallback_message").default
_DEFAULT_BUYER_TZ = m.Buyer._meta.get_field("timezone").default


# --------------------------------------------------------------------------------------------------
# reading YAML
# --------------------------------------------------------------------------------------------------


def read_network_file(source: str | os.PathLike | Mapping) -> Mapping:
    """The parsed network file: a path is read as YAML; a mapping is returned as is.

    Raises :class:`NetworkError` when the file is missing, not YAML (with line and column), has a key
    twice in one mapping (every one listed) or is empty.
    """
    data, repeated = _read(source)
    if repeated:
        raise NetworkError(repeated)
    return data


def _read(source: str | os.PathLike | Mapping) -> tuple[Mapping, list[Problem]]:
    """The parsed file and the keys it gives twice in one mapping (problems that don't stop the
    checking: the rest of the file is checked too, as read with the last of each repeated key)."""
    if isinstance(source, Mapping):
        return source, []
    data, repeated = read_yaml(source)
    if data is None:
        raise NetworkError([*repeated, Problem("", "the file is empty (start with 'version: 1')")])
    if not isinstance(data, Mapping):
        shape = Problem("", "the file must be a mapping with version, campaigns, buyers, publishers and "
                            "tracking_numbers")
        raise NetworkError([*repeated, shape])
    return data, repeated


class _Dumper(yaml.SafeDumper):
    """Block style; lists inside mappings indented (reads like hand-written files)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)

    def represent_list(self, data: list) -> yaml.Node:
        """Lists of plain values (ZIPs, prefixes) on one line: ``zips: ['78701', '78702']``."""
        flow = all(isinstance(item, str | int) for item in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)

    def represent_text(self, data: str) -> yaml.Node:
        """Text holding a line break only YAML has (U+0085, U+2028, U+2029) in double quotes, where it is
        escaped (``\\N``): PyYAML would write it raw inside single quotes, read back as a space. The
        loader refuses such text, and says so, rather than loading a changed value."""
        if any(ch in data for ch in _CONTROL_NAMES):
            return self.represent_scalar("tag:yaml.org,2002:str", data, style='"')
        return self.represent_str(data)


_Dumper.add_representer(list, _Dumper.represent_list)
_Dumper.add_representer(str, _Dumper.represent_text)


def dump_network(data: Mapping) -> str:
    """The network as YAML text, keys in the documented order."""
    return yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110,
                     default_flow_style=False)


# --------------------------------------------------------------------------------------------------
# scalar readers: value -> parsed value, raising ValueError with a plain message
# --------------------------------------------------------------------------------------------------

_SLUG_RE = re.compile(r"^[-a-zA-Z0-9_]+$")


def _got(value: object) -> str:
    return parsing.type_name(value)


def _key(value: object) -> str:
    if not isinstance(value, str) or not _SLUG_RE.match(value) or len(value) > 64:
        number = isinstance(value, int | Decimal) and not isinstance(value, bool)
        quote = (f": YAML reads it as a number, write it in quotes (\"{written_text(value)}\")"
                 if number and _SLUG_RE.match(written_text(value)) else "")  # 0123, not YAML's 83
        raise ValueError(f"{_got(value)} is not a key (letters, digits, '-' and '_', at most 64 characters, "
                         f"e.g. austin-plumbing){quote}")
    return value


#: Characters XML 1.0 can't hold (tab, line feed and carriage return it can), and the line breaks only
#: YAML has (next line, line and paragraph separators): in a plain or single-quoted value YAML reads
#: them as a space or a new line, so a text holding one would not survive an edit of the file.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x85\u2028\u2029\ud800-\udfff\ufffe\uffff]")
_CONTROL_NAMES = {"\x85": "next line", "\u2028": "line separator", "\u2029": "paragraph separator"}


def _text(max_length: int, *, required: bool = False) -> Callable[[object], str]:
    def read(value: object) -> str:
        if isinstance(value, int | Decimal) and not isinstance(value, bool):
            value = written_text(value)  # ``label: 0123`` is '0123', not YAML's octal 83
        if not isinstance(value, str):
            raise ValueError(f"expected text, got {_got(value)}")
        text = value.strip()
        if required and not text:
            raise ValueError("must not be empty")
        odd = _CONTROL.search(text)
        if odd:  # e.g. a vertical tab pasted from a word processor: no carrier could read the TwiML
            name = _CONTROL_NAMES.get(odd.group())
            raise ValueError(f"holds the control character U+{ord(odd.group()):04X}"
                             f"{f' ({name})' if name else ''}; remove it")
        if len(text) > max_length:
            raise ValueError(f"is {len(text)} characters long; at most {max_length} are allowed")
        return text

    return read


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_got(value)}")
    return value


def _whole(value: object) -> object:
    """A ``Decimal`` that is a whole number as an ``int`` (``1e+999999999`` refused before it is made),
    keeping the text it was written as (a problem quotes ``2000.0``)."""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        if value.adjusted() > 18:
            raise ValueError(f"{written_text(value)} is too large")
        written = getattr(value, "written", None)
        return WrittenInt(int(value), written) if written else int(value)
    return value


def _int(minimum: int = 0, maximum: int | None = None, unit: str = "") -> Callable[[object], int]:
    def read(value: object) -> int:
        value = _whole(parsing.plain_number(value))
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number{unit}, got {_got(value)}")
        if value < minimum:
            raise ValueError(f"{written_text(value)} is too small (at least {minimum})")
        if maximum is not None and value > maximum:
            raise ValueError(f"{written_text(value)} is too large (at most {maximum})")
        return int(value)

    return read


def _optional(read: Callable[[object], Any]) -> Callable[[object], Any]:
    return lambda value: None if value is None else read(value)


def _duration(minimum: dt.timedelta = dt.timedelta(0)) -> Callable[[object], dt.timedelta]:
    def read(value: object) -> dt.timedelta:
        duration = parsing.parse_duration(_whole(value))
        if duration < minimum:
            raise ValueError(f"{parsing.format_duration(duration)} is too short "
                             f"(at least {parsing.format_duration(minimum)})")
        return duration

    return read


def _email(max_length: int) -> Callable[[object], str]:
    def read(value: object) -> str:
        if value is None or value == "":
            return ""
        if not isinstance(value, str):
            raise ValueError(f"expected an email address, got {_got(value)}")
        address = value.strip()
        if len(address) > max_length:  # the column's limit (PostgreSQL refuses longer), not validate_email's
            raise ValueError(f"is {len(address)} characters long; at most {max_length} are allowed")
        try:
            validate_email(address)
        except ValidationError:
            raise ValueError(f"{value!r} is not an email address") from None
        return address

    return read


def _phone_or_blank(value: object) -> str:
    """A phone number, or none: null or empty text is ``""`` (what the admin's empty box gives too)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    return parsing.parse_e164(value)


def _choice(choices: type[AskZip] | type[FallbackChoices]) -> Callable[[object], str]:
    values = [c.value for c in choices]

    def read(value: object) -> str:
        if value not in values:
            hint = did_you_mean(str(value), values)
            raise ValueError(f"{_got(value)} is not one of {', '.join(values)}{hint}")
        return str(value)

    return read


# --------------------------------------------------------------------------------------------------
# the rule of each column, shared with the admin
# --------------------------------------------------------------------------------------------------


def _text_of(model: type, column: str, *, required: bool = False) -> Callable[[object], str]:
    """Text as long as the column holds (its ``max_length``)."""
    return _text(model._meta.get_field(column).max_length, required=required)


def _email_of(model: type) -> Callable[[object], str]:
    return _email(model._meta.get_field("email").max_length)


_SECONDS, _CALLS = " of seconds", " of calls"
_CAP = _optional(_int(0, 1_000_000, _CALLS))
_POSITIVE_DURATION = _duration(dt.timedelta(seconds=1))

#: How each column that a network file gives is checked, by model: the loader reads the file's values
#: with these, and the admin's forms check their fields with the very same functions
#: (``callbroker.network.admin``), so a value one accepts the other accepts too, with the same message.
#: Each takes the value as YAML or a form gives it and returns it as stored, or raises ``ValueError``.
#: (Areas, hours and the lists of blocked numbers have their functions in ``parsing``, shared the same way.)
FIELD_RULES: dict[type, dict[str, Callable[[object], Any]]] = {
    m.Campaign: {
        "key": _key,
        "name": _text_of(m.Campaign, "name", required=True),
        "category": _text_of(m.Campaign, "category"),
        "currency": parsing.parse_currency,
        "payout": parsing.parse_money,
        "buffer_seconds": _int(0, 7200, _SECONDS),
        "duplicate_window": _duration(),
        "ring_timeout": _int(5, 600, _SECONDS),
        "disclosure_text": _text_of(m.Campaign, "disclosure_text", required=True),
        "ask_zip": _choice(AskZip),
        "confirm_category": _text_of(m.Campaign, "confirm_category"),
        "whisper_text": _text_of(m.Campaign, "whisper_text"),
        "velocity_limit": _int(1, 10_000, _CALLS),
        "velocity_window": _POSITIVE_DURATION,
        "missed_calls_limit": _int(0, 1000, _CALLS),
        "missed_calls_window": _POSITIVE_DURATION,
        "missed_calls_cooldown": _duration(),
        "fallback_kind": _choice(FallbackChoices),
        "fallback_number": _phone_or_blank,
        "fallback_message": _text_of(m.Campaign, "fallback_message"),
    },
    m.Buyer: {
        "key": _key,
        "name": _text_of(m.Buyer, "name", required=True),
        "timezone": parsing.parse_timezone,
        "email": _email_of(m.Buyer),
    },
    m.Target: {
        "key": _key,
        "name": _text_of(m.Target, "name", required=True),
        "number": parsing.parse_e164,
        "priority": _int(0, 1000),
        "weight": _int(1, 1000),
        "price": parsing.parse_money,
        "min_talk_seconds": _optional(_int(0, 7200, _SECONDS)),
        "hourly_cap": _CAP,
        "daily_cap": _CAP,
        "monthly_cap": _CAP,
        "concurrency_limit": _CAP,
    },
    m.Publisher: {
        "key": _key,
        "name": _text_of(m.Publisher, "name", required=True),
        "email": _email_of(m.Publisher),
    },
    m.TrackingNumber: {
        "number": parsing.parse_e164,
        "label": _text_of(m.TrackingNumber, "label"),
    },
}


# --------------------------------------------------------------------------------------------------
# the checker: walks the file, collecting problems
# --------------------------------------------------------------------------------------------------

_MISSING = object()
_BAD = object()


def _loose_name(name: object) -> str:
    """A name as a key would most likely spell it: ``"Austin Plumbing "`` -> ``"austin-plumbing"``."""
    return re.sub(r"[^a-z0-9_]+", "-", written_text(name).lower()).strip("-")


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        # keys of every campaign/publisher in the file, even one with problems of its own (so that
        # a typo in a campaign does not also make every reference to it "unknown")
        self.declared: dict[str, set[str]] = {"campaign": set(), "publisher": set()}
        # the names given as keys that are not valid keys (``key: austin plumbing``), as _loose_name
        # spells them: that entry's own problem is reported; a reference meaning it (``austin-plumbing``)
        # is not also "unknown", a reference to a name that is nowhere (``denvr-roofing``) is
        self.misnamed: dict[str, set[str]] = {"campaign": set(), "publisher": set()}
        # kinds with an entry that has no name at all (no key, a null, a list, not a mapping): any
        # reference may mean that entry, so references to that kind are not checked ("unknown campaign"
        # on every target would only be noise; the entry's own problem is the one to fix)
        self.unreadable: set[str] = set()

    def declare(self, kind: str, key: object, data: Mapping | None) -> None:
        """Note the name a campaign or publisher entry gives itself, for the reference checks."""
        written = None if data is None else data.get("key")
        if key is not _BAD:
            self.declared[kind].add(key)
        elif isinstance(written, str | int) and not isinstance(written, bool) and _loose_name(written):
            self.misnamed[kind].add(_loose_name(written))
        else:
            self.unreadable.add(kind)

    def is_misnamed(self, kind: str, reference: str) -> bool:
        """Whether ``reference`` means an entry of ``kind`` whose key was reported as invalid."""
        return _loose_name(reference) in self.misnamed[kind]

    def add(self, location: str, message: str) -> None:
        self.problems.append(Problem(location, message))

    def run(self, location: str, read: Callable[[object], Any], value: object) -> Any:
        try:
            return read(value)
        except NetworkError as exc:
            self.problems.extend(p.under(location) for p in exc.problems)
        except (ValueError, TypeError) as exc:
            self.add(location, str(exc))
        return _BAD

    def mapping(self, value: object, location: str, allowed: Sequence[str], example: str) -> Mapping | None:
        if not isinstance(value, Mapping):
            self.add(location, f"expected a mapping like {example}, got {_got(value)}")
            return None
        for key in value:
            if key not in allowed:
                name = written_text(key)  # 0x1F, not YAML's 31
                self.add(join_location(location, name), f"unknown key '{name}'{did_you_mean(name, allowed)}")
        return value

    def section(self, data: Mapping, key: str, location: str, allowed: Sequence[str],
                example: str) -> Mapping:
        """An optional nested mapping (``ivr``, ``fallback`` …); absent or null reads as ``{}``."""
        value = data.get(key)
        if value is None:
            return {}
        return self.mapping(value, join_location(location, key), allowed, example) or {}

    def get(self, data: Mapping, key: str, location: str, read: Callable[[object], Any],
            default: Any = _MISSING) -> Any:
        where = join_location(location, key)
        if key not in data:
            if default is _MISSING:
                self.add(where, "missing")
                return _BAD
            return default
        return self.run(where, read, data[key])

    def items(self, data: Mapping, key: str, location: str) -> list[tuple[str, Any]]:
        """The entries of an optional list, each with its location (``buyers[2]``)."""
        value = data.get(key)
        if value is None:
            return []
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
            self.add(join_location(location, key), f"expected a list, got {_got(value)}")
            return []
        return [(f"{join_location(location, key)}[{i}]", item) for i, item in enumerate(value)]

    def list_of(self, data: Mapping, key: str, location: str, read: Callable[[object], Any]) -> list:
        out = []
        for where, item in self.items(data, key, location):
            value = self.run(where, read, item)
            if value is not _BAD:
                out.append(value)
        return out


# --------------------------------------------------------------------------------------------------
# the plan: what the file asks for, checked
# --------------------------------------------------------------------------------------------------


@dataclass
class _Row:
    """One entry of the file. While the file is checked, an entry with problems is kept too (its
    unreadable values are ``_BAD``), so the checks across the file see every entry; a plan that
    :func:`validate_network` returns has no ``_BAD`` left."""

    key: Any  # the upsert key (the number for tracking numbers), or _BAD
    location: str
    values: dict[str, Any]
    refs: dict[str, Any] = field(default_factory=dict)  # e.g. {"campaign": "austin-plumbing"}, or _BAD


@dataclass
class NetworkPlan:
    """A checked network file: the rows to upsert, by kind, in file order."""

    campaigns: list[_Row] = field(default_factory=list)
    buyers: list[_Row] = field(default_factory=list)
    targets: list[_Row] = field(default_factory=list)
    publishers: list[_Row] = field(default_factory=list)
    tracking_numbers: list[_Row] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return len(getattr(self, kind))


def _check_campaign(c: _Checker, data: object, where: str) -> _Row | None:
    data = c.mapping(data, where, CAMPAIGN_KEYS, "{key: austin-plumbing, name: Austin Plumbing, …}")
    if data is None:
        c.unreadable.add("campaign")
        return None
    r = FIELD_RULES[m.Campaign]
    key = c.get(data, "key", where, r["key"])
    c.declare("campaign", key, data)  # and go on with a bad key: its other values may have problems too
    v: dict[str, Any] = {
        "name": c.get(data, "name", where, r["name"], default=None),
        "category": c.get(data, "category", where, r["category"], ""),
        "active": c.get(data, "active", where, _bool, True),
        "currency": c.get(data, "currency", where, r["currency"], "USD"),
        "payout": c.get(data, "payout", where, r["payout"], Decimal("0.00")),
        "buffer_seconds": c.get(data, "buffer_seconds", where, r["buffer_seconds"], 60),
        "duplicate_window": c.get(data, "duplicate_window", where, r["duplicate_window"],
                                  dt.timedelta(days=30)),
        "ring_timeout": c.get(data, "ring_timeout", where, r["ring_timeout"], 30),
        "recording": c.get(data, "recording", where, _bool, True),
        "recording_disclosure": c.get(data, "recording_disclosure", where, _bool, False),
        "disclosure_text": c.get(data, "disclosure_text", where, r["disclosure_text"], _DEFAULT_DISCLOSURE),
        "whisper_text": c.get(data, "whisper", where, r["whisper_text"], ""),
        "blocked_numbers": c.list_of(data, "blocked_numbers", where, parsing.parse_e164),
        "blocked_prefixes": c.list_of(data, "blocked_prefixes", where, parsing.parse_prefix),
        "require_attestation": c.get(data, "require_attestation", where, _bool, False),
    }
    if v["name"] is None and key is not _BAD:
        v["name"] = key
    ivr_at = join_location(where, "ivr")
    ivr = c.section(data, "ivr", where, IVR_KEYS, "{ask_zip: when_missing, confirm_category: \"…\"}")
    v["ask_zip"] = c.get(ivr, "ask_zip", ivr_at, r["ask_zip"], AskZip.WHEN_MISSING.value)
    v["confirm_category"] = c.get(ivr, "confirm_category", ivr_at, r["confirm_category"], "")
    vel_at = join_location(where, "velocity")
    velocity = c.section(data, "velocity", where, VELOCITY_KEYS, "{limit: 5, window: 10m}")
    v["velocity_limit"] = c.get(velocity, "limit", vel_at, r["velocity_limit"], 5)
    v["velocity_window"] = c.get(velocity, "window", vel_at, r["velocity_window"], dt.timedelta(minutes=10))
    mis_at = join_location(where, "missed_call_protection")
    missed = c.section(data, "missed_call_protection", where, MISSED_KEYS,
                       "{misses: 3, window: 1h, cooldown: 30m}")
    v["missed_calls_limit"] = c.get(missed, "misses", mis_at, r["missed_calls_limit"], 3)
    v["missed_calls_window"] = c.get(missed, "window", mis_at, r["missed_calls_window"],
                                     dt.timedelta(hours=1))
    v["missed_calls_cooldown"] = c.get(missed, "cooldown", mis_at, r["missed_calls_cooldown"],
                                       dt.timedelta(minutes=30))
    fb_at = join_location(where, "fallback")
    fallback = c.section(data, "fallback", where, FALLBACK_KEYS,
                         "{kind: forward, number: \"+15125550100\", message: \"…\"}")
    v["fallback_kind"] = c.get(fallback, "kind", fb_at, r["fallback_kind"], FallbackChoices.MESSAGE.value)
    v["fallback_number"] = c.get(fallback, "number", fb_at, r["fallback_number"], "")
    v["fallback_message"] = c.get(fallback, "message", fb_at, r["fallback_message"],
                                  _DEFAULT_FALLBACK_MESSAGE)
    if v["fallback_kind"] == FallbackChoices.FORWARD and v["fallback_number"] == "":
        c.add(join_location(fb_at, "number"), "missing: a forward fallback needs the number to forward to")
    return _Row(key, where, v)


def _check_target(c: _Checker, data: object, where: str, buyer_tz: str | None,
                  directory: Callable[[], Any]) -> _Row | None:
    data = c.mapping(data, where, TARGET_KEYS, "{key: acme-austin-main, campaign: austin-plumbing, …}")
    if data is None:
        return None
    r = FIELD_RULES[m.Target]
    key = c.get(data, "key", where, r["key"])
    campaign = c.get(data, "campaign", where, _key)
    v: dict[str, Any] = {
        "name": c.get(data, "name", where, r["name"], default=None),
        "number": c.get(data, "number", where, r["number"]),
        "priority": c.get(data, "priority", where, r["priority"], 1),
        "weight": c.get(data, "weight", where, r["weight"], 1),
        "price": c.get(data, "price", where, r["price"], Decimal("0.00")),
        "min_talk_seconds": c.get(data, "min_talk_seconds", where, r["min_talk_seconds"], None),
        "accepts_unknown_location": c.get(data, "accepts_unknown_location", where, _bool, True),
        "paused": c.get(data, "paused", where, _bool, False),
        "blocked_prefixes": c.list_of(data, "blocked_prefixes", where, parsing.parse_prefix),
    }
    if v["name"] is None and key is not _BAD:
        v["name"] = key
    v["area"] = c.get(data, "area", where, lambda a: parsing.read_area(a, directory() if a else None)[0], {})
    hours = c.get(data, "hours", where, parsing.normalize_hours, None)
    if hours not in (None, _BAD) and (buyer_tz or "timezone" in hours):
        c.run(join_location(where, "hours"), lambda h: parsing.parse_hours(h, buyer_tz or ""), hours)
    v["hours"] = hours
    caps_at = join_location(where, "caps")
    caps = c.section(data, "caps", where, CAPS_KEYS, "{hourly: 5, daily: 20, monthly: 300, concurrency: 2}")
    for name, column in (("hourly", "hourly_cap"), ("daily", "daily_cap"), ("monthly", "monthly_cap"),
                         ("concurrency", "concurrency_limit")):
        v[column] = c.get(caps, name, caps_at, r[column], None)
    return _Row(key, where, v, {"campaign": campaign})


def _check_buyer(c: _Checker, data: object, where: str, plan: NetworkPlan,
                 directory: Callable[[], Any]) -> None:
    data = c.mapping(data, where, BUYER_KEYS, "{key: acme-plumbing, name: ACME Plumbing, targets: […]}")
    if data is None:
        return
    r = FIELD_RULES[m.Buyer]
    key = c.get(data, "key", where, r["key"])
    v = {
        "name": c.get(data, "name", where, r["name"], default=None),
        "timezone": c.get(data, "timezone", where, r["timezone"], _DEFAULT_BUYER_TZ),
        "email": c.get(data, "email", where, r["email"], ""),
        "active": c.get(data, "active", where, _bool, True),
    }
    if v["name"] is None and key is not _BAD:
        v["name"] = key
    timezone = None if v["timezone"] is _BAD else v["timezone"]
    for target_at, item in c.items(data, "targets", where):
        row = _check_target(c, item, target_at, timezone, directory)
        if row is not None:
            row.refs["buyer"] = key
            plan.targets.append(row)
    plan.buyers.append(_Row(key, where, v))


def _check_publisher(c: _Checker, data: object, where: str) -> _Row | None:
    data = c.mapping(data, where, PUBLISHER_KEYS, "{key: metro-search, name: Metro Search Ads}")
    if data is None:
        c.unreadable.add("publisher")
        return None
    r = FIELD_RULES[m.Publisher]
    key = c.get(data, "key", where, r["key"])
    c.declare("publisher", key, data)
    v = {
        "name": c.get(data, "name", where, r["name"], default=None),
        "email": c.get(data, "email", where, r["email"], ""),
        "active": c.get(data, "active", where, _bool, True),
    }
    if v["name"] is None and key is not _BAD:
        v["name"] = key
    return _Row(key, where, v)


def _check_tracking_number(c: _Checker, data: object, where: str) -> _Row | None:
    data = c.mapping(data, where, TRACKING_KEYS,
                     "{number: \"+15125550001\", campaign: austin-plumbing, publisher: metro-search}")
    if data is None:
        return None
    r = FIELD_RULES[m.TrackingNumber]
    number = c.get(data, "number", where, r["number"])
    campaign = c.get(data, "campaign", where, _key)
    publisher = c.get(data, "publisher", where, _key)
    v = {
        "label": c.get(data, "label", where, r["label"], ""),
        "active": c.get(data, "active", where, _bool, True),
    }
    # The emulator's share of simulated calls (``sim traffic --network``): checked by its rule, not kept (no
    # call is routed by it); refused as an unknown key, a file written for the emulator could not be loaded.
    c.get(data, "weight", where, _optional(parsing.parse_traffic_weight), None)
    return _Row(number, where, v, {"campaign": campaign, "publisher": publisher})


def _known(names: Iterable[str]) -> str:
    names = sorted(set(names))
    if not names:
        return "none defined"
    shown = ", ".join(names[:10])
    return f"known: {shown}, …" if len(names) > 10 else f"known: {shown}"


def _cross_check(c: _Checker, plan: NetworkPlan, *, prune: bool) -> None:
    """Duplicates, references and numbers that would ring back into the platform."""
    for kind, what in (("campaigns", "key"), ("buyers", "key"), ("targets", "key"), ("publishers", "key"),
                       ("tracking_numbers", "number")):
        first: dict[str, str] = {}
        for row in getattr(plan, kind):
            if row.key is _BAD:
                continue
            if row.key in first:
                label = f"duplicate {what} '{row.key}'" if what == "key" else f"{row.key} is listed twice"
                c.add(join_location(row.location, what), f"{label} (also {first[row.key]})")
            else:
                first[row.key] = row.location

    # References may point at rows already in the database, except when pruning (those would be
    # deactivated by the same load).
    campaigns = set(c.declared["campaign"])
    publishers = set(c.declared["publisher"])
    if not prune:
        try:
            campaigns |= set(m.Campaign.objects.values_list("key", flat=True))
            publishers |= set(m.Publisher.objects.values_list("key", flat=True))
        except DatabaseError:  # no tables yet (a --check before migrate): the file must stand alone
            pass
    for row in plan.targets + plan.tracking_numbers:
        for ref, known in (("campaign", campaigns), ("publisher", publishers)):
            name = row.refs.get(ref, _BAD)
            if name is _BAD or ref in c.unreadable or name in known or c.is_misnamed(ref, name):
                continue
            c.add(join_location(row.location, ref), f"unknown {ref} '{name}' ({_known(known)})")

    tracking: dict[str, str] = {}
    for row in plan.tracking_numbers:
        if row.key is not _BAD:
            tracking.setdefault(row.key, row.location)  # a number listed twice: named where it is first
    try:  # a file may leave out tracking numbers loaded before (without --prune they stay)
        for number in m.TrackingNumber.objects.values_list("number", flat=True):
            tracking.setdefault(number, "already in the database")
    except DatabaseError:  # no tables yet (a --check before migrate)
        pass
    for row in plan.targets:
        if row.values["number"] in tracking:
            c.add(join_location(row.location, "number"),
                  _rings_back(row.values["number"], f"a tracking number ({tracking[row.values['number']]})"))
    for row in plan.campaigns:
        if row.values["fallback_number"] in tracking:
            c.add(join_location(row.location, "fallback.number"),
                  _rings_back(row.values["fallback_number"],
                              f"a tracking number ({tracking[row.values['fallback_number']]})"))
    # The other way round: a tracking number of the file that a target or a fallback already in the
    # database (and not in the file) dials. What this load keeps counts, paused or deactivated: it is
    # exported with its number, and the file check above would refuse that export.
    try:
        dialled = _dialled_in_database(
            skip_targets={row.key for row in plan.targets if row.key is not _BAD},
            skip_campaigns={row.key for row in plan.campaigns if row.key is not _BAD}, prune=prune)
    except DatabaseError:  # no tables yet (a --check before migrate)
        dialled = {}
    for row in plan.tracking_numbers:
        if row.key in dialled:
            c.add(join_location(row.location, "number"), _rings_back(row.key, dialled[row.key]))


# --------------------------------------------------------------------------------------------------
# numbers that would ring back into the platform (shared with the admin)
# --------------------------------------------------------------------------------------------------


def _rings_back(number: str, what: str) -> str:
    return f"{number} is {what}; calls would ring back into the platform"


def _dialled_in_database(number: str | None = None, *, skip_targets: set[str] = frozenset(),
                         skip_campaigns: set[str] = frozenset(), prune: bool = False) -> dict[str, str]:
    """The numbers the database holds for the platform to dial -> which row dials it.

    Every target's number, a paused target's too, and every campaign's fallback number, whatever its kind
    and an inactive campaign's too: all of them are exported, and a network file refuses any of them being
    a tracking number (a paused target can be unpaused, a campaign reactivated, a fallback turned into a
    forward). Rows the caller's file replaces (``skip_*``) are left out, and so, with ``prune``, are the
    targets that load deletes (no call refers to them; the others it pauses and keeps). ``number`` asks
    about that one number only.
    """
    targets = m.Target.objects.all()  # the keys to skip compared here: NOT IN them may not fit a statement
    campaigns = m.Campaign.objects.exclude(fallback_number="")
    if number is not None:
        targets, campaigns = targets.filter(number=number), campaigns.filter(fallback_number=number)
    rows = [row for row in targets.values_list("pk", "key", "number", "paused") if row[1] not in skip_targets]
    kept = target_ids_with_calls(row[0] for row in rows) if prune else set()
    dialled: dict[str, str] = {}
    for pk, key, target_number, paused in rows:
        if prune and pk not in kept:
            continue  # deleted by the same load
        note = (" (--prune pauses it but keeps it: calls refer to it)" if prune
                else " (paused, but it keeps its number and can be unpaused)" if paused else "")
        dialled.setdefault(target_number, f"the number of target '{key}', already in the database{note}")
    for key, fallback_number in campaigns.values_list("key", "fallback_number"):
        if key not in skip_campaigns:
            dialled.setdefault(fallback_number,
                               f"the fallback number of campaign '{key}', already in the database")
    return dialled


def not_a_tracking_number(number: str) -> str:
    """``number``, which a target or a fallback would dial; ``ValueError`` when a tracking number in the
    database is the same number (what the loader says of such a number in a file)."""
    if number and m.TrackingNumber.objects.filter(number=number).exists():
        raise ValueError(_rings_back(number, "a tracking number (already in the database)"))
    return number


def not_dialled(number: str) -> str:
    """``number``, to be a tracking number; ``ValueError`` when a target or a fallback in the database
    dials it (what the loader says of such a tracking number in a file)."""
    dialled = _dialled_in_database(number)
    if number in dialled:
        raise ValueError(_rings_back(number, dialled[number]))
    return number


def validate_network(source: str | os.PathLike | Mapping, *, prune: bool = False,
                     directory: Any = None) -> NetworkPlan:
    """Check a network file completely; return the plan, or raise :class:`NetworkError` with every problem.

    Reads the database only to resolve references to campaigns and publishers that the file does not
    define (allowed unless ``prune``). ``directory`` is the ``geo.ZipDirectory`` to check areas
    against (default: ``ZipDirectory.default()``, loaded only if some target has an area).
    """
    data, repeated = _read(source)
    c = _Checker()
    c.problems.extend(repeated)
    plan = NetworkPlan()
    zip_directory = directory

    def get_directory():
        nonlocal zip_directory
        if zip_directory is None:
            from callbroker.core.geo import ZipDirectory

            zip_directory = ZipDirectory.default()
        return zip_directory

    c.mapping(data, "", TOP_KEYS, "{version: 1, campaigns: […], buyers: […]}")
    if "version" not in data:
        c.add("version", f"missing (add 'version: {FORMAT_VERSION}' at the top)")
    else:
        version = c.run("version", parsing.plain_number, data["version"])  # 0x1 is not 1
        if version is not _BAD and (version != FORMAT_VERSION or isinstance(version, bool)):
            c.add("version", f"{_got(version)} is not a version this callbroker reads (use {FORMAT_VERSION})")
    for kind in ("campaign", "publisher"):
        section = data.get(f"{kind}s")
        if section is not None and (isinstance(section, str | Mapping) or not isinstance(section, Sequence)):
            c.unreadable.add(kind)
    for where, item in c.items(data, "campaigns", ""):
        row = _check_campaign(c, item, where)
        if row is not None:
            plan.campaigns.append(row)
    for where, item in c.items(data, "buyers", ""):
        _check_buyer(c, item, where, plan, get_directory)
    for where, item in c.items(data, "publishers", ""):
        row = _check_publisher(c, item, where)
        if row is not None:
            plan.publishers.append(row)
    for where, item in c.items(data, "tracking_numbers", ""):
        row = _check_tracking_number(c, item, where)
        if row is not None:
            plan.tracking_numbers.append(row)
    settings = data.get("settings")
    if settings is not None:
        if not isinstance(settings, Mapping):
            c.add("settings", f"expected a mapping (reserved; leave it empty), got {_got(settings)}")
        else:
            for key in settings:
                name = written_text(key)
                c.add(f"settings.{name}", f"unknown key '{name}' (settings is reserved for later versions; "
                                          f"leave it empty)")
    _cross_check(c, plan, prune=prune)
    if c.problems:
        raise NetworkError(c.problems)
    return plan  # every _BAD value came with a problem: none is left in it


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What a load did, per kind (campaigns, buyers, targets, publishers, tracking_numbers)."""

    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {kind: dict.fromkeys(STATUSES, 0) for kind in KINDS})
    written: bool = True  # False for a check (--check): nothing was written
    notes: list[str] = field(default_factory=list)  # e.g. targets kept (paused) because calls used them

    def add(self, kind: str, status: str, n: int = 1) -> None:
        self.counts[kind][status] += n

    def total(self, status: str) -> int:
        return sum(by_status[status] for by_status in self.counts.values())

    @property
    def changed(self) -> bool:
        return any(self.total(s) for s in ("created", "updated", "pruned"))

    def lines(self) -> list[str]:
        width = max(len(k) for k in KINDS)
        out = []
        for kind in KINDS:
            by_status = self.counts[kind]
            out.append(f"{kind.replace('_', ' '):<{width}}  "
                       + "  ".join(f"{status} {by_status[status]:>3}" for status in STATUSES))
        return out + self.notes

    def __str__(self) -> str:
        return "\n".join(self.lines())


def _upsert(model: type, lookup: dict[str, Any], values: dict[str, Any], existing: Any) -> tuple[Any, str]:
    if existing is None:
        return model.objects.create(**lookup, **values), "created"
    changed = [name for name, value in values.items() if getattr(existing, name) != value]
    if not changed:
        return existing, "unchanged"
    for name in changed:
        setattr(existing, name, values[name])
    existing.save()
    return existing, "updated"


def _write(plan: NetworkPlan, *, prune: bool) -> LoadReport:
    report = LoadReport()
    by_key: dict[str, dict[str, Any]] = {}
    for kind, model in (("campaigns", m.Campaign), ("buyers", m.Buyer), ("publishers", m.Publisher)):
        rows = getattr(plan, kind)
        existing = model.objects.in_bulk([r.key for r in rows], field_name="key")
        objects = {}
        for row in rows:
            obj, status = _upsert(model, {"key": row.key}, row.values, existing.get(row.key))
            objects[row.key] = obj
            report.add(kind, status)
        by_key[kind] = objects
    # references to rows the file does not define (allowed without --prune)
    referenced = {r.refs["campaign"] for r in plan.targets + plan.tracking_numbers} - set(by_key["campaigns"])
    by_key["campaigns"].update(m.Campaign.objects.in_bulk(referenced, field_name="key"))
    referenced = {r.refs["publisher"] for r in plan.tracking_numbers} - set(by_key["publishers"])
    by_key["publishers"].update(m.Publisher.objects.in_bulk(referenced, field_name="key"))

    existing_targets = m.Target.objects.in_bulk([r.key for r in plan.targets], field_name="key")
    target_ids = []
    for row in plan.targets:
        values = dict(row.values, campaign_id=by_key["campaigns"][row.refs["campaign"]].pk,
                      buyer_id=by_key["buyers"][row.refs["buyer"]].pk)
        obj, status = _upsert(m.Target, {"key": row.key}, values, existing_targets.get(row.key))
        target_ids.append(obj.pk)
        report.add("targets", status)
    ensure_target_states(target_ids)

    existing_numbers = m.TrackingNumber.objects.in_bulk([r.key for r in plan.tracking_numbers],
                                                        field_name="number")
    for row in plan.tracking_numbers:
        values = dict(row.values, campaign_id=by_key["campaigns"][row.refs["campaign"]].pk,
                      publisher_id=by_key["publishers"][row.refs["publisher"]].pk)
        _, status = _upsert(m.TrackingNumber, {"number": row.key}, values, existing_numbers.get(row.key))
        report.add("tracking_numbers", status)

    if prune:
        _prune(plan, report, target_ids)
    return report


def _prune(plan: NetworkPlan, report: LoadReport, kept_target_ids: list[int]) -> None:
    """Remove what the file no longer mentions, without losing any call's history.

    Targets no call ever rang are deleted; targets with calls are paused instead (deleting them would
    cut the link from those calls to the target). Campaigns, buyers, publishers and tracking numbers
    are deactivated (``active: false``), never deleted.
    """
    for kind, model, lookup in (("campaigns", m.Campaign, "key"), ("buyers", m.Buyer, "key"),
                                ("publishers", m.Publisher, "key"),
                                ("tracking_numbers", m.TrackingNumber, "number")):
        keep = {r.key for r in getattr(plan, kind)}  # compared here: NOT IN every key may not fit a statement
        for obj in model.objects.filter(active=True):
            if getattr(obj, lookup) not in keep:
                obj.active = False
                obj.save()
                report.add(kind, "pruned")
    kept = set(kept_target_ids)
    gone = [target for target in m.Target.objects.all() if target.pk not in kept]
    with_calls = target_ids_with_calls(target.pk for target in gone)
    kept_paused = []
    for target in gone:
        if target.pk in with_calls:
            if not target.paused:
                target.paused = True
                target.save()
                kept_paused.append(target.key)
                report.add("targets", "pruned")
        else:
            target.delete()
            report.add("targets", "pruned")
    if kept_paused:
        report.notes.append("paused instead of deleted (calls refer to them): "
                            + ", ".join(sorted(kept_paused)))


def load_network(data_or_path: str | os.PathLike | Mapping, *, prune: bool = False, directory: Any = None,
                 check_only: bool = False) -> LoadReport:
    """Validate a network file completely, then write it in one transaction.

    Raises :class:`NetworkError` with every problem (nothing written) when anything is wrong.
    ``prune`` also removes what the file no longer mentions (see :func:`_prune`). ``check_only``
    validates and reports what *would* be in the file without writing anything.
    """
    plan = validate_network(data_or_path, prune=prune, directory=directory)
    if check_only:
        report = LoadReport(written=False)
        report.notes.append("checked: " + ", ".join(counted(plan.count(kind), kind) for kind in KINDS))
        return report
    with transaction.atomic():
        return _write(plan, prune=prune)


# --------------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------------


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def _export_duration(c: m.Campaign, column: str, path: str, problems: list[Problem]) -> str | None:
    """A stored duration in the file's spelling; one a file can't hold (a fraction of a second, stored
    before the admin refused it) is a problem to report, not a traceback."""
    value = getattr(c, column)
    try:
        return parsing.format_duration(value)
    except ValueError:
        problems.append(Problem(f"campaign '{c.key}'",
                                f"{path} is {value}, not a whole number of seconds, which a network file "
                                f"can't hold: change it in the admin"))
        return None


def _export_campaign(c: m.Campaign, problems: list[Problem]) -> dict:
    def duration(column: str, path: str) -> str | None:
        return _export_duration(c, column, path, problems)

    fallback: dict[str, Any] = {"kind": c.fallback_kind}
    if c.fallback_number:
        fallback["number"] = c.fallback_number
    fallback["message"] = c.fallback_message
    return {
        "key": c.key,
        "name": c.name,
        "category": c.category,
        "active": c.active,
        "currency": c.currency,
        "payout": _money(c.payout),
        "buffer_seconds": c.buffer_seconds,
        "duplicate_window": duration("duplicate_window", "duplicate_window"),
        "ring_timeout": c.ring_timeout,
        "recording": c.recording,
        "recording_disclosure": c.recording_disclosure,
        "disclosure_text": c.disclosure_text,
        "ivr": {"ask_zip": c.ask_zip, "confirm_category": c.confirm_category},
        "whisper": c.whisper_text,
        "blocked_numbers": list(c.blocked_numbers),
        "blocked_prefixes": list(c.blocked_prefixes),
        "velocity": {"limit": c.velocity_limit, "window": duration("velocity_window", "velocity.window")},
        "require_attestation": c.require_attestation,
        "missed_call_protection": {
            "misses": c.missed_calls_limit,
            "window": duration("missed_calls_window", "missed_call_protection.window"),
            "cooldown": duration("missed_calls_cooldown", "missed_call_protection.cooldown"),
        },
        "fallback": fallback,
    }


def _export_target(t: m.Target) -> dict:
    return {
        "key": t.key,
        "campaign": t.campaign.key,
        "name": t.name,
        "number": t.number,
        "priority": t.priority,
        "weight": t.weight,
        "price": _money(t.price),
        "min_talk_seconds": t.min_talk_seconds,
        "area": t.area or {},
        "accepts_unknown_location": t.accepts_unknown_location,
        "hours": t.hours or None,
        "caps": {"hourly": t.hourly_cap, "daily": t.daily_cap, "monthly": t.monthly_cap,
                 "concurrency": t.concurrency_limit},
        "paused": t.paused,
        "blocked_prefixes": list(t.blocked_prefixes),
    }


def export_network() -> dict:
    """The whole network as a network-file mapping (every row, inactive ones too), ready for YAML.

    Money is written as strings ("45.00"), durations as "30d"/"1h"/"90m". Loading the result gives
    the same network, and exporting again gives the same mapping. Raises :class:`NetworkError` listing
    every stored value a network file can't hold (a duration with a fraction of a second).
    """
    targets_by_buyer: dict[int, list[dict]] = {}
    for target in m.Target.objects.select_related("campaign").order_by("buyer_id", "campaign__key",
                                                                       "priority", "key"):
        targets_by_buyer.setdefault(target.buyer_id, []).append(_export_target(target))
    problems: list[Problem] = []
    campaigns = [_export_campaign(c, problems) for c in m.Campaign.objects.order_by("key")]
    if problems:
        raise NetworkError(problems)
    return {
        "version": FORMAT_VERSION,
        "campaigns": campaigns,
        "buyers": [
            {"key": b.key, "name": b.name, "timezone": b.timezone, "email": b.email, "active": b.active,
             "targets": targets_by_buyer.get(b.pk, [])}
            for b in m.Buyer.objects.order_by("key")
        ],
        "publishers": [
            {"key": p.key, "name": p.name, "email": p.email, "active": p.active}
            for p in m.Publisher.objects.order_by("key")
        ],
        "tracking_numbers": [
            {"number": n.number, "campaign": n.campaign.key, "publisher": n.publisher.key, "label": n.label,
             "active": n.active}
            for n in m.TrackingNumber.objects.select_related("campaign", "publisher").order_by("number")
        ],
        "settings": {},
    }
