"""Read the values a network file shares with the database's JSON columns: areas, hours, durations.

The network loader, the admin forms and the routing snapshot all read service areas and business
hours through these functions, so a value means the same thing everywhere. Nothing here touches the
database; the geography and the calendar come from ``callbroker.core``.

Every problem is a :class:`Problem` whose ``location`` is a path *inside the value given*
(``"zips[3]"``, ``"weekly.mon"``); the caller puts its own prefix in front with
:meth:`Problem.under` (``"buyers[0].targets[1].area"``). Functions that can find several problems
collect them all and raise one :class:`NetworkError`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache

from callbroker.core import geo, phone, schedule

__all__ = [
    "AREA_KEYS",
    "HOURS_KEYS",
    "NetworkError",
    "Problem",
    "check_area",
    "did_you_mean",
    "format_duration",
    "join_location",
    "normalize_area",
    "normalize_hours",
    "parse_area",
    "parse_duration",
    "parse_e164",
    "parse_hours",
    "parse_money",
    "parse_prefix",
    "parse_timezone",
    "parse_traffic_weight",
    "parse_zip",
    "plain_number",
    "read_area",
    "written_text",
]

AREA_KEYS = ("zips", "radius", "counties", "states", "exclude_zips")
HOURS_KEYS = ("timezone", "weekly", "holidays", "exceptions")
RADIUS_KEYS = ("zip", "miles")
EXCEPTION_KEYS = ("date", "hours", "closed")
#: A radius larger than this is almost certainly a typo (and would cover several states).
MAX_RADIUS_MILES = 250


# --------------------------------------------------------------------------------------------------
# problems
# --------------------------------------------------------------------------------------------------


def join_location(prefix: str, location: str) -> str:
    """``join_location("area", "zips[3]") == "area.zips[3]"``; list indexes attach without a dot."""
    if not prefix:
        return location
    if not location:
        return prefix
    return f"{prefix}{location}" if location.startswith("[") else f"{prefix}.{location}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a network file (or a form value), and where it is."""

    location: str  # e.g. "buyers[2].targets[0].area.zips[3]"; "" for the value as a whole
    message: str  # e.g. "99999 is not a known ZIP code"

    def under(self, prefix: str) -> Problem:
        """The same problem seen from one level up: ``Problem("zips[3]", m).under("area")``."""
        return Problem(join_location(prefix, self.location), self.message)

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class NetworkError(ValueError):
    """A network file (or part of one) is wrong; ``problems`` lists every problem found."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid network")

    def under(self, prefix: str) -> NetworkError:
        return NetworkError(p.under(prefix) for p in self.problems)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'priority'?)"`` when a close match exists, else ``""``."""
    matches = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def _unknown_keys(data: Mapping, allowed: Sequence[str]) -> list[Problem]:
    problems = []
    for key in data:
        if key not in allowed:
            name = written_text(key)
            problems.append(Problem(name, f"unknown key '{name}'{did_you_mean(name, allowed)}"))
    return problems


def written_text(value: object) -> str:
    """A value as the file wrote it: a number keeps the text YAML read it from (``010``, not 8: see
    ``yamlfile.WrittenInt``), so a problem quotes what the reader can find in the file; anything else, and
    a number that didn't come from a file (a form, a mapping), is ``str(value)``."""
    return getattr(value, "written", None) or str(value)


def type_name(value: object) -> str:
    """A value as a problem names it: ``nothing (null)``, ``a list``, ``'text'``, ``42`` (a number as
    written: ``0x1F``)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value) if isinstance(value, str) else written_text(value)


#: The ways of writing a number that YAML 1.1 reads as another number than a person does (and YAML 1.2
#: as no number at all), checked in this order, each with the name a problem gives it.
_YAML_NUMBER_FORMS = (
    ("binary", re.compile(r"[-+]?0b[0-1_]+")),
    ("hexadecimal", re.compile(r"[-+]?0x[0-9a-fA-F_]+")),
    ("base 60", re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")),
    ("octal", re.compile(r"[-+]?0[0-7_]+")),
    ("underscores ignored", re.compile(r".*_.*")),
)


def plain_number(value: object, *, advice: str | None = None, seconds: bool = False) -> object:
    """``value``, unless it is a number the file wrote in a form YAML reads as another number than a
    person does: ``010`` is 8 (octal), ``1:30`` is 90 (base 60), ``0x1F`` is 31, ``0b11`` is 3, and
    ``1_000`` is 1000 (read right, but ``1_00`` is as likely a typo of 100 as of 1000, and YAML 1.2 reads it
    as text). A number field written so is almost always a typo or a misunderstanding, so it is refused
    (``ValueError``) naming what was written, what YAML read, and what to write instead: ``advice`` when
    given (``write ZIP codes in quotes …``), else the plain spellings (``write 10, or 8``); ``seconds``
    adds the units of a duration (``1:30``: ``write 90 (seconds), or 1h30m, or 1m30s``).

    Plain decimal numbers (``10``, ``-3``, ``+5``, ``12.50``, ``.5``, ``5.``, ``1.5e+3``) are read as
    written and returned; so is anything that isn't a number from a file (no ``written`` text).
    """
    written = getattr(value, "written", None)
    if written is None:
        return value
    form = next((name for name, pattern in _YAML_NUMBER_FORMS if pattern.fullmatch(written)), None)
    if form is None:
        return value
    if advice is None:
        spellings = [str(value)]
        if form == "octal":  # the digits as a person reads them: 010 is 10
            digits = written.lstrip("+-").replace("_", "").lstrip("0") or "0"
            spellings.insert(0, f"-{digits}" if written.startswith("-") and digits != "0" else digits)
        spellings = list(dict.fromkeys(spellings))
        if seconds:
            spellings = [f"{spelling} (seconds)" for spelling in spellings]
            if form == "base 60":
                spellings += _with_units(written)
        advice = "write " + ", or ".join(spellings)
    raise ValueError(f"{written} is read by YAML as {value} ({form}): {advice}")


#: The largest tracking-number ``weight``: any number of them still adds up to a finite total.
MAX_TRAFFIC_WEIGHT = 1_000_000


def parse_traffic_weight(value: object) -> float:
    """A tracking number's ``weight``: its share of the calls ``callbroker sim traffic --network`` places on
    it. The platform routes no call by it and keeps nothing of it, but ``callbroker network load`` checks it
    by this same rule (it refused the key as unknown, so a file written for the emulator could not be
    loaded). ``0x10`` is 16 to YAML: refused, as in every number field."""
    plain_number(value)
    try:
        ok = (isinstance(value, int | float | Decimal) and not isinstance(value, bool)
              and 0 < value <= MAX_TRAFFIC_WEIGHT)
    except ArithmeticError:  # a Decimal NaN can't be compared
        ok = False
    if not ok:
        got = type_name(value)
        raise ValueError(f"expected a number above 0 and at most {MAX_TRAFFIC_WEIGHT:,} (a share of the "
                         f"calls), got {got if len(got) <= 60 else got[:57] + '...'}")
    return float(value)


def _with_units(written: str) -> list[str]:
    """What a duration written in base 60 may have meant: ``1:30`` is ``1h30m`` or ``1m30s``,
    ``1:00:00`` is ``1h``; nothing for a signed one or one with a fraction."""
    if not re.fullmatch(r"[0-9_]+(:[0-9]+){1,2}", written):
        return []
    parts = [int(part.replace("_", "")) for part in written.split(":")]
    readings = [("h", "m", "s")] if len(parts) == 3 else [("h", "m"), ("m", "s")]
    return [("".join(f"{n}{unit}" for n, unit in zip(parts, units) if n) or "0s") for units in readings]


# --------------------------------------------------------------------------------------------------
# scalars
# --------------------------------------------------------------------------------------------------

_ZIP_RE = re.compile(r"^\d{5}$")
_PREFIX_RE = re.compile(r"^\+\d{1,15}$")


def parse_zip(value: object) -> str:
    """A five-digit ZIP code as a string. YAML reads ``78701`` as a number: that is accepted; a
    number below 10000 (``02134`` read as octal or with its zero lost) is refused with a hint."""
    if isinstance(value, bool):
        raise ValueError(f"expected a ZIP code, got {type_name(value)}")
    if isinstance(value, int):
        plain_number(value, advice=_in_quotes(value, "ZIP codes", "02134"))
        if 10000 <= value <= 99999:
            return str(value)
        raise ValueError(f"{written_text(value)} is not a ZIP code "
                         f"(write ZIP codes in quotes, e.g. \"02134\")")
    if isinstance(value, str) and _ZIP_RE.match(value.strip()):
        return value.strip()
    raise ValueError(f"{type_name(value)} is not a ZIP code (five digits, e.g. \"78701\")")


def _in_quotes(value: object, codes: str, example: str) -> str:
    """How to write a code YAML read as a number: in quotes, as written when that is a code's five digits
    (``02134``), else as the example."""
    digits = written_text(value).replace("_", "")
    shown = digits if re.fullmatch(r"[0-9]{5}", digits) else example
    return f"write {codes} in quotes, e.g. \"{shown}\""


def parse_e164(value: object) -> str:
    """A phone number in E.164 (``+15125550101``), checked by ``callbroker.core.phone``."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"{written_text(value)} is a number, not an E.164 phone number: write phone numbers in "
                         f"quotes with + and the country code, e.g. \"+15125550100\"")
    if not isinstance(value, str):
        raise ValueError(f"expected an E.164 phone number in quotes, got {type_name(value)}")
    return phone.validate_e164(value)


def parse_prefix(value: object) -> str:
    """A caller-number prefix in E.164 form: ``+1900``, ``+1512555``."""
    if isinstance(value, str) and _PREFIX_RE.match(value.strip()):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML reads an unquoted +1900 as a number: "+1900 is not a number prefix (a + and digits)" quoted
        # the file's own spelling back as wrong, without saying what is.
        raise ValueError(f"{written_text(value)} is a number, not a number prefix: write prefixes in quotes, "
                         f"e.g. \"+1900\"")
    raise ValueError(f"{type_name(value)} is not a number prefix (a + and digits, e.g. \"+1900\")")


@cache
def _timezone_names() -> frozenset[str]:
    """The IANA names, without the machine's own ``localtime`` (another zone on every host)."""
    return frozenset(zoneinfo.available_timezones()) - {"localtime"}


def parse_timezone(value: object) -> str:
    """An IANA time zone name (``America/Chicago``)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected an IANA time zone name like America/Chicago, got {type_name(value)}")
    name = value.strip()
    try:
        if name not in _timezone_names():  # not a file path either: "posix/…", "right/…", 300 characters
            raise zoneinfo.ZoneInfoNotFoundError(name)
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        hint = did_you_mean(name, _timezone_names()) or " (use an IANA name like America/Chicago)"
        raise ValueError(f"'{name}' is not a time zone{hint}") from None
    return name


def parse_money(value: object) -> Decimal:
    """An amount of money: ``"45.00"``, ``45``, ``45.5``; non-negative, at most two decimal places.

    A float (from JSON) is read through its shortest ``repr``, which is the text that was written,
    so no binary rounding ever reaches the amount.
    """
    if isinstance(value, bool) or value is None or isinstance(value, Mapping | list | tuple):
        raise ValueError(f"expected an amount like \"45.00\", got {type_name(value)}")
    plain_number(value)
    text = repr(value) if isinstance(value, float) else str(value).strip()
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{type_name(value)} is not an amount of money (e.g. \"45.00\")") from None
    shown = text if isinstance(value, str | float) else written_text(value)
    if not amount.is_finite():
        raise ValueError(f"{shown} is not an amount of money")
    if amount < 0:
        raise ValueError(f"{shown} is negative; amounts must be 0 or more")
    if amount >= Decimal("1e10"):  # before rounding: a 30-digit amount can't be rounded to cents
        raise ValueError(f"{shown} is too large (at most 9999999999.99)")
    if amount != amount.quantize(Decimal("0.01")):
        raise ValueError(f"{shown} has more than two decimal places")
    return amount.quantize(Decimal("0.01"))


def parse_currency(value: object) -> str:
    """A currency code: three letters, given in any case, kept upper case (``"usd"`` is ``USD``)."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{3}", value.strip()):
        raise ValueError(f"{type_name(value)} is not a currency code (three letters, e.g. USD)")
    return value.strip().upper()


_DURATION_RE = re.compile(r"(\d+)\s*([wdhms])")
#: The longest duration a network file may give (windows, cool-downs): ten years.
MAX_DURATION = dt.timedelta(days=3650)
_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_HINT = "use e.g. 30d, 2w, 1h, 90m, 45s or a number of seconds"


def parse_duration(value: object) -> dt.timedelta:
    """``"30d"``, ``"2w"``, ``"1h"``, ``"90m"``, ``"45s"``, ``"1h30m"`` or whole seconds (``90``, ``"90"``).

    A ``timedelta`` (what the admin's form gives) is checked the same way: whole seconds, 0 or more, at
    most :data:`MAX_DURATION` (a longer one would not fit the database column either).

    Raises ``ValueError`` with a plain message for anything else (negative, fractional, unknown unit).
    """
    if isinstance(value, dt.timedelta):
        if value % dt.timedelta(seconds=1):
            raise ValueError(f"{value} is not a whole number of seconds")
        if value < dt.timedelta(0):
            raise ValueError(f"{format_duration(-value)} before zero is not a duration")
        if value > MAX_DURATION:
            raise ValueError(f"{format_duration(value)} is too long "
                             f"(at most {format_duration(MAX_DURATION)})")
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a duration ({_DURATION_HINT}), got {type_name(value)}")
    plain_number(value, seconds=True)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{written_text(value)} is negative; durations must be 0 or more")
        return _at_most_max(value, written_text(value))
    if isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit():
            return _at_most_max(int(text), value)
        compact = text.replace(" ", "")
        parts = _DURATION_RE.findall(compact)
        if parts and "".join(n + u for n, u in parts) == compact:
            units = [u for _, u in parts]
            if len(set(units)) == len(units):
                return _at_most_max(sum(int(n) * _UNITS[u] for n, u in parts), value)
    raise ValueError(f"{type_name(value)} is not a duration ({_DURATION_HINT})")


def _at_most_max(seconds: int, given: object) -> dt.timedelta:
    """``seconds`` as a duration, refused when longer than ``MAX_DURATION`` (checked before the
    ``timedelta`` is made: a huge number would overflow it, or the database column)."""
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{given} is too long (at most {format_duration(MAX_DURATION)})")
    return dt.timedelta(seconds=seconds)


def format_duration(value: dt.timedelta) -> str:
    """The shortest exact spelling: 30 days -> ``"30d"``, 14 days -> ``"2w"``, 5400 s -> ``"90m"``."""
    seconds = int(value.total_seconds())
    if seconds != value.total_seconds():
        raise ValueError(f"{value} is not a whole number of seconds")
    if seconds == 0:
        return "0s"
    for unit, size in _UNITS.items():
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable: every whole number of seconds divides by 1")


# --------------------------------------------------------------------------------------------------
# service areas
# --------------------------------------------------------------------------------------------------


def _list_of(data: Mapping, key: str, problems: list[Problem]) -> list:
    value = data.get(key)
    if value is None:
        return []
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        problems.append(Problem(key, f"expected a list, got {type_name(value)}"))
        return []
    return list(value)


def _miles(value: object) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError(f"expected a number of miles, got {type_name(value)}")
    plain_number(value)
    if not 0 < value <= MAX_RADIUS_MILES:
        raise ValueError(f"{written_text(value)} miles is out of range "
                         f"(more than 0, at most {MAX_RADIUS_MILES})")
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    miles = int(number) if number == number.to_integral_value() else float(number)
    if miles <= 0:  # e.g. 1e-400: more than 0 as written, 0.0 once stored
        raise ValueError(f"{written_text(value)} miles is too small to draw a circle with "
                         f"(more than 0, at most {MAX_RADIUS_MILES})")
    return miles


def read_area(
    data: Mapping | None, directory: geo.ZipDirectory | None = None
) -> tuple[dict, frozenset[str] | None]:
    """Check a service area and return ``(canonical mapping, ZIP codes it covers)``.

    Canonical: only the non-empty keys, in the order of :data:`AREA_KEYS`; ZIPs as 5-digit strings,
    states upper case, miles as int (or float when fractional). ``None`` and ``{}`` give ``({}, None)``
    (everywhere). Without a ``directory`` only the shape is checked and the ZIP set is ``None``; with one,
    every ZIP, county and state must exist, and an area that covers no ZIP at all is a problem (a target
    that could never take a located call). Raises :class:`NetworkError` listing every problem, each at
    its place in the value given (``zips[3]``).
    """
    if data is None:
        return {}, None
    if not isinstance(data, Mapping):
        raise NetworkError([Problem("", f"expected a mapping with {', '.join(AREA_KEYS)}, "
                                        f"got {type_name(data)}")])
    problems = _unknown_keys(data, AREA_KEYS)
    result: dict[str, list] = {}

    def known_zip(value: object) -> str:
        code = parse_zip(value)
        if directory is not None and directory.get(code) is None:
            raise ValueError(f"{code} is not a known ZIP code")
        return code

    def zips_of(key: str) -> list[str]:
        out = []
        for i, item in enumerate(_list_of(data, key, problems)):
            try:
                out.append(known_zip(item))
            except ValueError as exc:
                problems.append(Problem(f"{key}[{i}]", str(exc)))
        return out

    result["zips"] = zips_of("zips")
    radii = []
    for i, item in enumerate(_list_of(data, "radius", problems)):
        where = f"radius[{i}]"
        if not isinstance(item, Mapping):
            problems.append(Problem(where, f"expected {{zip: \"78701\", miles: 15}}, got {type_name(item)}"))
            continue
        problems.extend(p.under(where) for p in _unknown_keys(item, RADIUS_KEYS))
        entry: dict = {}
        for key, parse in (("zip", known_zip), ("miles", _miles)):
            if key not in item:
                problems.append(Problem(f"{where}.{key}", "missing"))
                continue
            try:
                entry[key] = parse(item[key])
            except ValueError as exc:
                problems.append(Problem(f"{where}.{key}", str(exc)))
        if len(entry) == 2:
            radii.append(entry)
    result["radius"] = radii
    counties = []
    for i, item in enumerate(_list_of(data, "counties", problems)):
        if isinstance(item, int) and not isinstance(item, bool):
            try:
                plain_number(item, advice=_in_quotes(item, "FIPS codes", "04017"))
            except ValueError as exc:  # 04017 is read as octal (2063): another county
                problems.append(Problem(f"counties[{i}]", str(exc)))
                continue
            if not 10000 <= item <= 99999:  # lost its leading zero
                problems.append(Problem(f"counties[{i}]", f"{written_text(item)} is not a county FIPS code "
                                                          f"(write FIPS codes in quotes, e.g. \"04017\")"))
                continue
            item = str(item)  # a FIPS code YAML read as a number, no leading zero to lose
        if not isinstance(item, str) or not item.strip():
            problems.append(Problem(f"counties[{i}]", f"expected a county like \"Travis County, TX\", "
                                                      f"\"TX:Travis\" or \"48453\", got {type_name(item)}"))
            continue
        if directory is not None:
            try:
                directory.resolve_county(item)
            except ValueError as exc:
                problems.append(Problem(f"counties[{i}]", str(exc)))
                continue
        counties.append(item.strip())
    result["counties"] = counties
    states = []
    for i, item in enumerate(_list_of(data, "states", problems)):
        if not isinstance(item, str) or not re.fullmatch(r"[A-Za-z]{2}", item.strip()):
            problems.append(Problem(f"states[{i}]", f"expected a two-letter state code like \"TX\", "
                                                    f"got {type_name(item)}"))
            continue
        if directory is not None:
            try:
                directory.in_state(item)
            except ValueError as exc:
                problems.append(Problem(f"states[{i}]", str(exc)))
                continue
        states.append(item.strip().upper())
    result["states"] = states
    result["exclude_zips"] = zips_of("exclude_zips")
    if problems:
        raise NetworkError(problems)
    area = {key: value for key, value in result.items() if value}
    if directory is None or not area:
        return area, None
    try:
        zips = _service_area(area).resolve(directory)
    except ValueError as exc:  # anything the per-item checks above did not catch
        raise NetworkError([Problem("", str(exc))]) from None
    if zips is not None and not zips:
        raise NetworkError([Problem("", "this area covers no ZIP code at all (check exclude_zips)")])
    return area, zips


def normalize_area(data: Mapping | None) -> dict:
    """The canonical form of a service area (what the database stores); checks the shape only."""
    return read_area(data)[0]


def _service_area(area: Mapping) -> geo.ServiceArea:
    return geo.ServiceArea(
        zips=tuple(area.get("zips", ())),
        radii=tuple((r["zip"], r["miles"]) for r in area.get("radius", ())),
        counties=tuple(area.get("counties", ())),
        states=tuple(area.get("states", ())),
        exclude_zips=tuple(area.get("exclude_zips", ())),
    )


def parse_area(data: Mapping | None) -> geo.ServiceArea:
    """A service area mapping as a ``geo.ServiceArea`` (``None``/``{}``: everywhere).

    Checks the shape only; whether the ZIPs and counties exist is :func:`check_area`'s job.
    Raises :class:`NetworkError` for wrong shapes.
    """
    return _service_area(normalize_area(data))


def check_area(data: Mapping | None, directory: geo.ZipDirectory) -> frozenset[str] | None:
    """The ZIP codes a service area covers (``None`` = everywhere), checked against the directory.

    Raises :class:`NetworkError` listing every problem (see :func:`read_area`).
    """
    return read_area(data, directory)[1]


# --------------------------------------------------------------------------------------------------
# business hours
# --------------------------------------------------------------------------------------------------


def _holidays(value: object) -> tuple[str, str | None] | None:
    """``"US"`` -> ``("US", None)``, ``"US-TX"`` -> ``("US", "TX")``; ``None``/``false`` -> no holidays."""
    if value is None or value is False:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{2}(-[A-Za-z0-9]{1,3})?", value.strip()):
        raise ValueError(f"{type_name(value)} is not a holiday calendar (a country like \"US\" or a "
                         f"country and subdivision like \"US-TX\")")
    country, _, subdivision = value.strip().upper().partition("-")
    supported = holiday_calendars()
    if country not in supported:
        raise ValueError(f"no holiday calendar for country '{country}'{did_you_mean(country, supported)}")
    if subdivision and subdivision not in supported[country]:
        raise ValueError(f"no holiday calendar for '{country}-{subdivision}' "
                         f"(subdivisions of {country}: {', '.join(sorted(supported[country])[:12])}, …)")
    return country, subdivision or None


@cache
def holiday_calendars() -> dict[str, frozenset[str]]:
    """Supported countries and their subdivisions (slow the first time: imports every country module)."""
    import holidays

    return {c: frozenset(s) for c, s in holidays.list_supported_countries().items()}


def _exception_date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{type_name(value)} is not a date (use YYYY-MM-DD)")


def _hours_text(value: object) -> str:
    """One day's hours as text, checked by ``schedule.parse_hours``; YAML's on/off read as 24h/closed."""
    if value is True:
        return "24h"
    if value is False:
        return "closed"
    if not isinstance(value, str):
        raise ValueError(f"expected hours like \"08:00-18:00\" or \"closed\", got {type_name(value)}")
    text = value.strip()
    schedule.parse_hours(text)  # raises ValueError with a plain message
    return text


#: The day names offered in "did you mean" hints (``schedule.parse_weekly`` reads a few more spellings).
WEEKLY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun", "monday", "tuesday", "wednesday", "thursday",
               "friday", "saturday", "sunday", "weekdays", "weekend", "daily")


def _weekly_key(key: object) -> str:
    day = written_text(key)
    try:
        schedule.parse_weekly({day: "closed"})
    except ValueError:
        hint = did_you_mean(day.lower(), WEEKLY_KEYS) or " (use mon..sun, weekdays, weekend or daily)"
        raise ValueError(f"unknown day '{day}'{hint}") from None
    return day


def normalize_hours(data: Mapping | None) -> dict | None:
    """Check the shape of business hours and return them in canonical form (what the database stores).

    ``None`` and ``{}`` give ``None`` (always open). Canonical: only the keys given, in the order of
    :data:`HOURS_KEYS`; exception dates as ISO strings. The time zone is checked but not defaulted
    (no ``timezone`` means "the buyer's"). Raises :class:`NetworkError` listing every problem.
    """
    if data is None or (isinstance(data, Mapping) and not data):
        return None
    if not isinstance(data, Mapping):
        raise NetworkError([Problem("", f"expected a mapping with {', '.join(HOURS_KEYS)}, "
                                        f"got {type_name(data)}")])
    problems = _unknown_keys(data, HOURS_KEYS)
    result: dict = {}
    if "timezone" in data:
        try:
            result["timezone"] = parse_timezone(data["timezone"])
        except ValueError as exc:
            problems.append(Problem("timezone", str(exc)))
    weekly = data.get("weekly")
    if weekly is None:
        problems.append(Problem("weekly", "missing (e.g. {weekdays: \"08:00-18:00\", sat: \"09:00-13:00\"}; "
                                          "leave hours out for always open)"))
    elif not isinstance(weekly, Mapping):
        problems.append(Problem("weekly", f"expected a mapping of days to hours, got {type_name(weekly)}"))
    else:
        clean: dict[str, str] = {}
        day_problems = []
        for day, text in weekly.items():
            try:
                clean[_weekly_key(day)] = _hours_text(text)
            except ValueError as exc:
                day_problems.append(Problem(f"weekly.{written_text(day)}", str(exc)))
        if not day_problems:
            try:
                schedule.parse_weekly(clean)  # a day given twice ("mon" and "Monday") …
            except ValueError as exc:
                day_problems.append(Problem("weekly", str(exc)))
        problems.extend(day_problems)
        result["weekly"] = clean
    if "holidays" in data:
        try:
            calendar = _holidays(data["holidays"])
        except ValueError as exc:
            problems.append(Problem("holidays", str(exc)))
        else:
            result["holidays"] = None if calendar is None else "-".join(p for p in calendar if p)
    exceptions = []
    seen: dict[dt.date, int] = {}
    for i, item in enumerate(_list_of(data, "exceptions", problems)):
        where = f"exceptions[{i}]"
        if not isinstance(item, Mapping):
            problems.append(Problem(where, f"expected {{date: 2026-12-24, hours: \"08:00-12:00\"}} or "
                                           f"{{date: 2026-12-31, closed: true}}, got {type_name(item)}"))
            continue
        problems.extend(p.under(where) for p in _unknown_keys(item, EXCEPTION_KEYS))
        entry: dict = {}
        if "date" not in item:
            problems.append(Problem(f"{where}.date", "missing"))
        else:
            try:
                day = _exception_date(item["date"])
            except ValueError as exc:
                problems.append(Problem(f"{where}.date", str(exc)))
            else:
                if day in seen:
                    problems.append(Problem(f"{where}.date",
                                            f"{day} is listed twice (also exceptions[{seen[day]}])"))
                seen[day] = i
                entry["date"] = day.isoformat()
        closed = item.get("closed", False)
        if not isinstance(closed, bool):
            problems.append(Problem(f"{where}.closed", f"expected true or false, got {type_name(closed)}"))
        elif closed and "hours" in item:
            problems.append(Problem(where, "give either hours or closed: true, not both"))
        elif closed:
            entry["closed"] = True
        elif "hours" not in item:
            problems.append(Problem(where, "give hours (e.g. \"08:00-12:00\") or closed: true"))
        else:
            try:
                entry["hours"] = _hours_text(item["hours"])
            except ValueError as exc:
                problems.append(Problem(f"{where}.hours", str(exc)))
        exceptions.append(entry)
    if exceptions:
        result["exceptions"] = exceptions
    if problems:
        raise NetworkError(problems)
    return result


def parse_hours(data: Mapping | None, default_timezone: str) -> schedule.Schedule | None:
    """Business hours as a ``schedule.Schedule`` (``None``/``{}``: always open, returns ``None``).

    The schedule's time zone is ``data["timezone"]`` when given, else ``default_timezone`` (the
    buyer's). Raises :class:`NetworkError` listing every problem.
    """
    hours = normalize_hours(data)
    if hours is None:
        return None
    timezone = hours.get("timezone", default_timezone)
    try:
        timezone = parse_timezone(timezone)
    except ValueError as exc:
        raise NetworkError([Problem("timezone", str(exc))]) from None
    calendar = _holidays(hours.get("holidays"))
    exceptions = {}
    for item in hours.get("exceptions", ()):
        day = dt.date.fromisoformat(item["date"])
        exceptions[day] = () if item.get("closed") else tuple(schedule.parse_hours(item["hours"]))
    try:
        return schedule.Schedule(
            timezone=timezone,
            weekly=schedule.parse_weekly(hours["weekly"]),
            exceptions=exceptions,
            holiday_country=calendar[0] if calendar else None,
            holiday_subdivision=calendar[1] if calendar else None,
        )
    except ValueError as exc:
        raise NetworkError([Problem("", str(exc))]) from None
