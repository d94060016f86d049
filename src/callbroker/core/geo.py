"""US ZIP codes: where they are, what county and state they belong to, and service areas built from them.

The directory is an in-memory table of about 41,000 ZIPs, built offline by ``scripts/build_zipdata.py`` and
shipped as ``core/data/zips.csv.gz`` (``docs/geo-data.md`` says what each field means and where it comes
from). Nothing is loaded at import time: ``ZipDirectory.default()`` reads the packaged table on first use,
once per process. Tests build small directories with ``ZipDirectory.from_rows``.

Service areas are resolved to ZIP sets when a network loads, never on the routing path, so the routing code
only ever asks ``zip in target.area_zips``.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import io
import math
import re
import threading
import unicodedata
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DATA_FILE",
    "EARTH_RADIUS_MILES",
    "ServiceArea",
    "UnknownCounty",
    "UnknownState",
    "UnknownZip",
    "ZipDirectory",
    "ZipInfo",
    "haversine_miles",
]

DATA_FILE = Path(__file__).resolve().parent / "data" / "zips.csv.gz"

# Mean Earth radius (IUGG, 6,371.0088 km) in statute miles.
EARTH_RADIUS_MILES = 3958.7613

# ZIP kinds, as the USPS-derived source spells them.
STANDARD, PO_BOX, UNIQUE, MILITARY = "STANDARD", "PO BOX", "UNIQUE", "MILITARY"

# USPS state codes: 50 states, DC, the territories and freely associated states, and the military "states".
# A known code with no ZIP in a (test) directory resolves to an empty set instead of an error.
_STATE_CODES = """
    AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC
    ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY AS GU MP PR VI FM MH PW AA AE AP
"""
USPS_STATES = frozenset(_STATE_CODES.split())

_ZIP_RE = re.compile(r"\d{5}")
_FIPS_RE = re.compile(r"\d{5}")
_GRID_DEGREES = 0.5  # grid cell size for radius searches (about 35 miles north-south)
_LON_CELLS = int(360 / _GRID_DEGREES)
_LAT_CELLS = int(180 / _GRID_DEGREES)


class UnknownZip(ValueError):
    """A ZIP code the directory does not know (or that is not five digits)."""


class UnknownCounty(ValueError):
    """A county reference that names no county, or more than one."""


class UnknownState(ValueError):
    """Not a two-letter USPS state code."""


@dataclass(frozen=True, slots=True)
class ZipInfo:
    """One ZIP code.

    ``population`` is the ZIP's own ZCTA population (ACS 2019-2023, else the 2020 census) and is set only when
    ``is_zcta``; a PO-box or unique ZIP has no population of its own. ``median_income`` is the ACS 2018-2022
    median household income of ``zcta`` (the containing ZCTA for a PO-box ZIP), ``None`` where the Census
    suppressed it; 250001 means "250,000 or more" and 2499 "2,499 or less". ``county_fips`` is "" for the
    handful of Pacific ZIPs that have no county.
    """

    zip: str
    kind: str  # STANDARD, PO BOX, UNIQUE or MILITARY
    city: str
    state: str  # USPS two-letter code
    county_fips: str  # five digits, state FIPS + county code
    county_name: str  # e.g. "Travis County", "City of Baltimore", "Orleans Parish"
    timezone: str  # IANA name
    lat: float
    lon: float
    is_zcta: bool  # the ZIP is itself a Census ZIP Code Tabulation Area
    zcta: str | None  # the ZCTA that contains it (itself when is_zcta); None when unknown
    population: int | None
    median_income: int | None
    area_codes: tuple[str, ...]  # NANP area codes serving the ZIP, e.g. ("512", "737")


def haversine_miles(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in miles between two points given in degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    lam1, lam2 = math.radians(lon1), math.radians(lon2)
    return _distance(_hav(phi1, lam1, math.cos(phi1), phi2, lam2, math.cos(phi2)))


def _hav(phi1: float, lam1: float, cos1: float, phi2: float, lam2: float, cos2: float) -> float:
    # The one formula both the public function and the grid search use, so they agree to the last bit.
    return math.sin((phi2 - phi1) / 2) ** 2 + cos1 * cos2 * math.sin((lam2 - lam1) / 2) ** 2


def _distance(hav: float) -> float:
    return 2 * EARTH_RADIUS_MILES * math.asin(math.sqrt(min(1.0, hav)))


def _county_words(name: str) -> list[str]:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").casefold()
    words = re.findall(r"[a-z0-9]+", text)
    return ["st" if w == "saint" else "ste" if w == "sainte" else w for w in words]


_COUNTY_SUFFIXES = (
    ["city", "and", "borough"],
    ["census", "area"],
    ["planning", "region"],
    ["county"],
    ["parish"],
    ["borough"],
    ["municipality"],
    ["municipio"],
    ["district"],
)


def _county_aliases(name: str) -> tuple[str, set[str]]:
    """The exact key of a county's full name, and the shorter keys people also use for it."""
    words = _county_words(name)
    exact = "".join(words)
    aliases: set[str] = set()
    if words[:2] == ["city", "of"] and len(words) > 2:  # "City of Baltimore" is also "Baltimore city"
        aliases |= {"".join(words[2:]), "".join(words[2:]) + "city"}
    for suffix in _COUNTY_SUFFIXES:
        if len(words) > len(suffix) and words[-len(suffix) :] == suffix:
            aliases.add("".join(words[: -len(suffix)]))
            break
    aliases.discard(exact)
    return exact, aliases


@dataclass(frozen=True, slots=True)
class _Cell:
    """The ZIPs of one grid cell, with their coordinates in radians, for radius searches."""

    zips: tuple[str, ...]
    phi: array
    lam: array
    cos: array

    @classmethod
    def of(cls, infos: list[ZipInfo]) -> _Cell:
        phi = array("d", [math.radians(i.lat) for i in infos])
        return cls(
            zips=tuple(i.zip for i in infos),
            phi=phi,
            lam=array("d", [math.radians(i.lon) for i in infos]),
            cos=array("d", map(math.cos, phi)),
        )


class ZipDirectory:
    """An immutable, indexed table of ``ZipInfo`` rows."""

    __slots__ = ("_alias", "_area", "_area_zips", "_by_county", "_by_state", "_by_zip", "_counties", "_exact",
                 "_grid")

    def __init__(self, rows: Iterable[ZipInfo]) -> None:
        by_zip: dict[str, ZipInfo] = {}
        for info in rows:
            by_zip[info.zip] = info
        self._by_zip = by_zip

        grid: dict[tuple[int, int], list[ZipInfo]] = defaultdict(list)
        by_state: dict[str, list[str]] = defaultdict(list)
        by_county: dict[str, list[str]] = defaultdict(list)
        county_names: dict[str, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
        best_for_area: dict[str, tuple[int, str]] = {}
        area_zips: dict[str, list[str]] = defaultdict(list)
        for code, info in by_zip.items():
            grid[_cell_of(info.lat, info.lon)].append(info)
            by_state[info.state].append(code)
            if info.county_fips:
                by_county[info.county_fips].append(code)
                county_names[info.county_fips][(info.county_name, info.state)] += 1
            rank = (-(info.population or 0), code)
            for area_code in info.area_codes:
                area_zips[area_code].append(code)
                if area_code not in best_for_area or rank < best_for_area[area_code]:
                    best_for_area[area_code] = rank
        self._grid = {key: _Cell.of(infos) for key, infos in grid.items()}
        self._by_state = {state: tuple(codes) for state, codes in by_state.items()}
        self._by_county = {fips: tuple(codes) for fips, codes in by_county.items()}
        self._area = {area_code: rank[1] for area_code, rank in best_for_area.items()}
        self._area_zips = {area_code: frozenset(codes) for area_code, codes in area_zips.items()}

        # County names: the most common (name, state) among the county's ZIPs; then lookup keys.
        self._counties: dict[str, tuple[str, str]] = {}
        exact: dict[tuple[str, str], set[str]] = defaultdict(set)
        alias: dict[tuple[str, str], set[str]] = defaultdict(set)
        for fips, names in county_names.items():
            name, state = max(names, key=lambda pair: (names[pair], pair))
            self._counties[fips] = (name, state)
            if not name:
                continue  # reachable by its FIPS code only
            key, others = _county_aliases(name)
            exact[(state, key)].add(fips)
            for other in others:
                alias[(state, other)].add(fips)
        self._exact = {key: tuple(sorted(v)) for key, v in exact.items()}
        self._alias = {key: tuple(sorted(v)) for key, v in alias.items()}

    # -- construction ---------------------------------------------------------------------------------

    @classmethod
    def default(cls) -> ZipDirectory:
        """The packaged table, loaded on first call and shared by the whole process."""
        return _default_directory()

    @classmethod
    def from_rows(cls, rows: Iterable[ZipInfo]) -> ZipDirectory:
        """A directory of the given rows (for tests and tools); a later row replaces an earlier same ZIP."""
        return cls(rows)

    @classmethod
    def from_file(cls, path: str | Path) -> ZipDirectory:
        """A directory read from a ``zips.csv.gz`` built by ``scripts/build_zipdata.py``."""
        return cls(read_zip_file(path))

    # -- lookups --------------------------------------------------------------------------------------

    def get(self, zip_code: str) -> ZipInfo | None:
        """The ZIP's row, or ``None``. Accepts ZIP+4 ("78701-1234") and surrounding blanks."""
        if not isinstance(zip_code, str):
            return None
        return self._by_zip.get(zip_code.strip()[:5])

    def __contains__(self, zip_code: object) -> bool:
        return isinstance(zip_code, str) and self.get(zip_code) is not None

    def __len__(self) -> int:
        return len(self._by_zip)

    def __iter__(self) -> Iterator[str]:
        """The ZIP codes, in no particular order."""
        return iter(self._by_zip)

    def within_radius(self, center_zip: str, miles: float) -> frozenset[str]:
        """Every ZIP whose point is at most ``miles`` from the centre ZIP's point (great-circle)."""
        center = self.get(center_zip)
        if center is None:
            raise UnknownZip(f"unknown ZIP code {center_zip!r} as the centre of a radius")
        if not (isinstance(miles, int | float) and math.isfinite(miles) and miles >= 0):
            raise ValueError(f"a radius must be a number of miles >= 0, not {miles!r}")
        angle = miles / EARTH_RADIUS_MILES  # radians
        if angle >= math.pi:
            return frozenset(self._by_zip)
        phi0, lam0 = math.radians(center.lat), math.radians(center.lon)
        cos0 = math.cos(phi0)
        limit = math.sin(angle / 2) ** 2
        low, high = limit * (1 - 1e-9), limit * (1 + 1e-9)

        sin = math.sin
        result: list[str] = []
        for key in self._cells_near(center.lat, center.lon, angle):
            cell = self._grid.get(key)
            if cell is None:
                continue
            phis, lams, coss = cell.phi, cell.lam, cell.cos
            for i, code in enumerate(cell.zips):
                # _hav() inlined (same operations in the same order): this loop is the hot part.
                hav = sin((phis[i] - phi0) / 2) ** 2 + cos0 * coss[i] * sin((lams[i] - lam0) / 2) ** 2
                if hav <= low or (hav <= high and _distance(hav) <= miles):
                    result.append(code)
        return frozenset(result)

    def _cells_near(self, lat: float, lon: float, angle: float) -> Iterator[tuple[int, int]]:
        """Grid cells that may hold a point within ``angle`` radians of (lat, lon)."""
        margin = 1e-9
        dlat = math.degrees(angle) + margin
        lat_lo = max(0, math.floor((lat - dlat + 90) / _GRID_DEGREES))
        lat_hi = min(_LAT_CELLS - 1, math.floor((lat + dlat + 90) / _GRID_DEGREES))
        phi = math.radians(lat)
        if abs(phi) + angle >= math.pi / 2 - margin:  # the cap holds a pole: every longitude
            lon_cells: Iterable[int] = range(_LON_CELLS)
        else:
            # Widest longitude span of a spherical cap (Matuschek, "Finding points within a distance").
            dlon = math.degrees(math.asin(min(1.0, math.sin(angle) / math.cos(phi)))) + margin
            lo = math.floor((lon - dlon + 180) / _GRID_DEGREES)
            hi = math.floor((lon + dlon + 180) / _GRID_DEGREES)
            if hi - lo + 1 >= _LON_CELLS:
                lon_cells = range(_LON_CELLS)
            else:  # wraps across the antimeridian (the Aleutians) through the modulo
                lon_cells = [j % _LON_CELLS for j in range(lo, hi + 1)]
        for i in range(lat_lo, lat_hi + 1):
            for j in lon_cells:
                yield (i, j)

    def resolve_county(self, county: str) -> str:
        """The five-digit FIPS code of "48453", "Travis County, TX", "TX:Travis" (any case)."""
        text = county.strip() if isinstance(county, str) else ""
        if _FIPS_RE.fullmatch(text):
            if text in self._counties:
                return text
            raise UnknownCounty(f"unknown county FIPS code {text!r}")
        if ":" in text:
            state, name = text.split(":", 1)
        elif "," in text:
            name, state = text.rsplit(",", 1)
        else:
            raise UnknownCounty(
                f"cannot read county {county!r}: expected a FIPS code ('48453'), "
                "'Travis County, TX' or 'TX:Travis'"
            )
        state = state.strip().upper()
        if state not in USPS_STATES and state not in self._by_state:
            raise UnknownCounty(f"unknown state {state!r} in county {county!r} (use a 2-letter code like TX)")
        key = "".join(_county_words(name))
        if not key:
            raise UnknownCounty(
                f"county {county!r} has no name (expected 'Travis County, TX' or 'TX:Travis')"
            )
        matches = self._exact.get((state, key)) or self._alias.get((state, key)) or ()
        if len(matches) == 1:
            return matches[0]
        if matches:
            options = " or ".join(f"{self._counties[f][0]}, {state} ({f})" for f in matches)
            raise UnknownCounty(f"county {county!r} is ambiguous: {options}")
        keys = {
            k: f
            for table in (self._alias, self._exact)
            for (s, k), fs in table.items()
            if s == state
            for f in fs
        }
        close = sorted({self._counties[keys[k]][0] for k in difflib.get_close_matches(key, keys, n=3)})
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        if "planning region" in name.casefold():
            hint = "; Connecticut ZIPs use the eight historical counties (e.g. 'Hartford County, CT')"
        raise UnknownCounty(f"unknown county {name.strip()!r} in {state}{hint}")

    def county_name(self, fips: str) -> str:
        """'Travis County, TX' for '48453'; raises UnknownCounty."""
        try:
            name, state = self._counties[fips]
        except KeyError:
            raise UnknownCounty(f"unknown county FIPS code {fips!r}") from None
        return f"{name}, {state}"

    def in_county(self, county: str) -> frozenset[str]:
        """The ZIPs of a county given as "48453", "Travis County, TX" or "TX:Travis"."""
        return frozenset(self._by_county[self.resolve_county(county)])

    def in_state(self, state: str) -> frozenset[str]:
        """The ZIPs of a state given as its two-letter USPS code (any case)."""
        code = state.strip().upper() if isinstance(state, str) else ""
        if code not in USPS_STATES and code not in self._by_state:
            raise UnknownState(f"unknown state {state!r} (expected a 2-letter USPS code such as TX)")
        return frozenset(self._by_state.get(code, ()))

    def zip_for_area_code(self, area_code: str) -> str | None:
        """The most populous ZIP that lists the area code (a guess at where an unknown caller is)."""
        return self._area.get(area_code.strip()) if isinstance(area_code, str) else None

    def zips_for_area_code(self, area_code: str) -> frozenset[str]:
        """Every ZIP that lists the area code (the same object each time: routing keeps tables per set)."""
        if not isinstance(area_code, str):
            return frozenset()
        return self._area_zips.get(area_code.strip(), frozenset())


def _cell_of(lat: float, lon: float) -> tuple[int, int]:
    i = min(_LAT_CELLS - 1, max(0, math.floor((lat + 90) / _GRID_DEGREES)))
    j = math.floor((lon + 180) / _GRID_DEGREES) % _LON_CELLS
    return (i, j)


def read_zip_file(path: str | Path) -> Iterator[ZipInfo]:
    """Rows of a ``zips.csv.gz`` (see ``scripts/build_zipdata.py`` for the columns)."""
    strings: dict[str, str] = {}  # share the many repeated values (cities, counties, zones)
    tuples: dict[str, tuple[str, ...]] = {}
    shared = strings.setdefault

    with gzip.open(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
        reader = csv.reader(text)
        header = next(reader)
        expected = list(ZipInfo.__dataclass_fields__)
        if header != expected:
            raise ValueError(f"{path}: unexpected columns {header} (expected {expected})")
        for row in reader:
            zip_code, kind, city, state, fips, county, tz, lat, lon, is_zcta, zcta, pop, income, codes = row
            area_codes = tuples.get(codes)
            if area_codes is None:
                area_codes = tuples[codes] = tuple(shared(a, a) for a in codes.split("|") if a)
            yield ZipInfo(
                zip_code,
                shared(kind, kind),
                shared(city, city),
                shared(state, state),
                shared(fips, fips),
                shared(county, county),
                shared(tz, tz),
                float(lat),
                float(lon),
                is_zcta == "1",
                (zip_code if zcta == zip_code else shared(zcta, zcta)) if zcta else None,
                int(pop) if pop else None,
                int(income) if income else None,
                area_codes,
            )


_default_lock = threading.Lock()
_default: list[ZipDirectory] = []


def _default_directory() -> ZipDirectory:
    if not _default:
        with _default_lock:
            if not _default:
                _default.append(ZipDirectory.from_file(DATA_FILE))
    return _default[0]


def _frozen_strings(values: Iterable[str] | str, what: str) -> frozenset[str]:
    if isinstance(values, str):
        raise TypeError(f"{what} must be a collection of strings, not the single string {values!r}")
    return frozenset(str(v).strip() for v in values)


@dataclass(frozen=True, slots=True)
class ServiceArea:
    """Where a target takes calls from: the union of its parts, minus ``exclude_zips``.

    ``radii`` are (centre ZIP, miles) pairs, ``counties`` anything ``ZipDirectory.resolve_county`` reads,
    ``states`` two-letter codes. Listed ZIPs need not be in the directory (USPS adds ZIPs faster than the
    table is rebuilt), but they must be five digits. An area with nothing at all is everywhere; an area with
    only exclusions is every known ZIP except those.
    """

    zips: frozenset[str] = frozenset()
    radii: tuple[tuple[str, float], ...] = ()
    counties: frozenset[str] = frozenset()
    states: frozenset[str] = frozenset()
    exclude_zips: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # Accept any iterables (lists from YAML, say) and store the frozen, cleaned-up form.
        zips = _frozen_strings(self.zips, "zips")
        exclude = _frozen_strings(self.exclude_zips, "exclude_zips")
        for code in sorted(zips | exclude):
            if not _ZIP_RE.fullmatch(code):
                raise UnknownZip(f"{code!r} is not a 5-digit ZIP code")
        radii = []
        for pair in self.radii:
            center, miles = pair
            center = str(center).strip()
            if not _ZIP_RE.fullmatch(center):
                raise UnknownZip(f"{center!r} is not a 5-digit ZIP code (radius centre)")
            if isinstance(miles, bool) or not isinstance(miles, int | float) or not 0 <= miles < math.inf:
                raise ValueError(f"radius around {center} must be a number of miles >= 0, not {miles!r}")
            radii.append((center, float(miles)))
        object.__setattr__(self, "zips", zips)
        object.__setattr__(self, "exclude_zips", exclude)
        object.__setattr__(self, "radii", tuple(radii))
        object.__setattr__(self, "counties", _frozen_strings(self.counties, "counties"))
        object.__setattr__(
            self, "states", frozenset(s.upper() for s in _frozen_strings(self.states, "states"))
        )

    def is_everywhere(self) -> bool:
        """True when nothing at all was given (no parts and no exclusions)."""
        return not (self.zips or self.radii or self.counties or self.states or self.exclude_zips)

    def resolve(self, directory: ZipDirectory) -> frozenset[str] | None:
        """The ZIP set, or ``None`` for everywhere. Raises UnknownZip/UnknownCounty/UnknownState."""
        if self.is_everywhere():
            return None
        result: set[str] = set(self.zips)
        for center, miles in self.radii:
            result |= directory.within_radius(center, miles)
        for county in sorted(self.counties):
            result |= directory.in_county(county)
        for state in sorted(self.states):
            result |= directory.in_state(state)
        if not (self.zips or self.radii or self.counties or self.states):
            result = set(directory)
        return frozenset(result - self.exclude_zips)
