#!/usr/bin/env python3
"""Build the packaged ZIP table ``src/callbroker/core/data/zips.csv.gz`` from the raw reference files.

Usage::

    python scripts/build_zipdata.py [DATA_DIR] [--out PATH]

``DATA_DIR`` defaults to ``../shared/data`` next to the repository (the files described in that folder's
README.md). The output is deterministic (sorted rows, gzip without a timestamp), so a rebuild from the same
inputs gives the same bytes and a clean diff. Standard library only; ``docs/geo-data.md`` explains every
column and where it comes from.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import sys
import zoneinfo
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "src" / "callbroker" / "core" / "data" / "zips.csv.gz"

COLUMNS = (
    "zip",
    "kind",
    "city",
    "state",
    "county_fips",
    "county_name",
    "timezone",
    "lat",
    "lon",
    "is_zcta",
    "zcta",
    "population",
    "median_income",
    "area_codes",
)

# UDS Mapper's zip_type -> the zipcodes package's vocabulary (only used for ZIPs the package lacks).
UDS_KINDS = {"Zip Code Area": "STANDARD", "Post Office or large volume customer": "PO BOX"}
KINDS = {"STANDARD", "PO BOX", "UNIQUE", "MILITARY"}
COORD_DECIMALS = 5  # about one metre; more is noise for radius searches

#: Every raw file ``load_sources`` reads (docs/geo-data.md gives each one's origin). All are checked before
#: any is read: a folder holding some of them (put together from that table) ended in a traceback naming
#: the first one missing, where the docs promise a one-line refusal.
RAW_FILES = (
    "zip_codes_zipcodes_pkg_2026-06.csv.gz",
    "zip_zcta_crosswalk_uds2022.csv.gz",
    "geonames_us_postal_codes_2024-04.txt.gz",
    "zcta_gazetteer_2025.txt.gz",
    "zcta_summary_usgeo.csv.gz",
    "zcta_county_overlap_usgeo.csv.gz",
    "county_timezones_usgeo.csv",
    "zcta_acs2023_population_housing.json.gz",
    "zcta_population_dhc2020_p1.csv.gz",
    "zcta_median_household_income_acs2022.json.gz",
)


@dataclass
class Sources:
    zipcodes: dict[str, dict[str, str]]  # zipcodes package rows by ZIP
    uds: dict[str, dict[str, str]]  # UDS crosswalk rows by ZIP
    geonames: dict[str, list[str]]  # GeoNames rows by ZIP (first row wins)
    gazetteer: dict[str, tuple[float, float]]  # ZCTA -> internal point
    primary_county: dict[str, str]  # ZCTA -> county FIPS holding most of its land
    current_counties: set[str]  # county FIPS codes of the 2020 ZCTA/county relationship
    counties: dict[str, dict[str, str]]  # county FIPS -> county_timezones row
    state_fips: dict[str, str]  # "TX" -> "48"
    county_by_name: dict[tuple[str, str], str]  # ("UT", "utah county") -> "49049"
    acs_population: dict[str, int]
    dhc_population: dict[str, int]
    income: dict[str, int]


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def load_sources(data: Path) -> Sources:
    with _open_text(data / "zip_codes_zipcodes_pkg_2026-06.csv.gz") as fh:
        zipcodes = {row["zip_code"]: row for row in csv.DictReader(fh)}
    with _open_text(data / "zip_zcta_crosswalk_uds2022.csv.gz") as fh:
        uds = {row["zip"]: row for row in csv.DictReader(fh)}
    geonames: dict[str, list[str]] = {}
    with _open_text(data / "geonames_us_postal_codes_2024-04.txt.gz") as fh:
        for line in fh:
            fields = line.rstrip("\r\n").split("\t")
            geonames.setdefault(fields[1], fields)
    with _open_text(data / "zcta_gazetteer_2025.txt.gz") as fh:
        gazetteer = {
            row["GEOID"]: (float(row["INTPTLAT"]), float(row["INTPTLONG"]))
            for row in csv.DictReader(fh, delimiter="|")
        }
    with _open_text(data / "zcta_summary_usgeo.csv.gz") as fh:
        primary_county = {row["ZCTA5"]: row["Primary County"] for row in csv.DictReader(fh)}
    with _open_text(data / "zcta_county_overlap_usgeo.csv.gz") as fh:
        current_counties = {row["County GEOID"] for row in csv.DictReader(fh)}
    with _open_text(data / "county_timezones_usgeo.csv") as fh:
        counties = {row["GEOID"]: row for row in csv.DictReader(fh)}
    state_fips = {row["State"]: fips[:2] for fips, row in counties.items()}
    county_by_name = {
        (row["State"], row["Full Name"].casefold()): fips
        for fips, row in counties.items()
        if fips in current_counties
    }
    with _open_text(data / "zcta_acs2023_population_housing.json.gz") as fh:
        acs_rows = json.load(fh)
    header = acs_rows[0]
    pop_col, zcta_col = header.index("B01003_001E"), header.index("zip code tabulation area")
    acs_population = {row[zcta_col]: int(row[pop_col]) for row in acs_rows[1:] if int(row[pop_col]) >= 0}
    with _open_text(data / "zcta_population_dhc2020_p1.csv.gz") as fh:
        reader = csv.reader(fh)
        next(reader), next(reader)  # two header rows: codes, then labels
        dhc_population = {geo_id[-5:]: int(value) for geo_id, _name, value in reader}
    with _open_text(data / "zcta_median_household_income_acs2022.json.gz") as fh:
        income = {zcta: int(value) for zcta, value in json.load(fh).items() if int(value) > 0}
    return Sources(
        zipcodes=zipcodes,
        uds=uds,
        geonames=geonames,
        gazetteer=gazetteer,
        primary_county=primary_county,
        current_counties=current_counties,
        counties=counties,
        state_fips=state_fips,
        county_by_name=county_by_name,
        acs_population=acs_population,
        dhc_population=dhc_population,
        income=income,
    )


def _valid_zone(name: str) -> str:
    """The IANA zone name if the tz database knows it (the zipcodes file has a stray "Napakiak")."""
    if not name or "/" not in name:
        return ""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return ""
    return name


def _point(lat: str, lon: str) -> tuple[float, float] | None:
    try:
        la, lo = float(lat), float(lon)
    except ValueError:
        return None
    if (la == 0.0 and lo == 0.0) or not (-90 <= la <= 90 and -180 <= lo <= 180):
        return None
    return la, lo


def zip_universe(src: Sources) -> list[str]:
    """Active ZIPs of the zipcodes package, plus retired ones the Census or UDS Mapper still use."""
    codes = {z for z, row in src.zipcodes.items() if row["active"] == "true"}
    codes |= set(src.gazetteer)  # every ZCTA is (or was) a ZIP
    codes |= {z for z, row in src.uds.items() if row["zcta"] != "NA"}
    return sorted(codes)


def build_rows(src: Sources, stats: Counter[str]) -> list[dict[str, str]]:
    rows = []
    for code in zip_universe(src):
        zp = src.zipcodes.get(code)
        uds = src.uds.get(code)
        gn = src.geonames.get(code)
        is_zcta = code in src.gazetteer
        zcta = code if is_zcta else None
        if zcta is None and uds is not None and uds["zcta"] in src.gazetteer:
            zcta = uds["zcta"]

        # Coordinates: the ZCTA's internal point, else the package's point, else GeoNames', else the
        # containing ZCTA's internal point.
        point = src.gazetteer[code] if is_zcta else None
        if point is None and zp is not None:
            point = _point(zp["lat"], zp["long"])
        if point is None and gn is not None:
            point = _point(gn[9], gn[10])
        if point is None and zcta is not None:
            point = src.gazetteer[zcta]
            stats["coords from containing ZCTA"] += 1
        if point is None:
            stats["skipped: no coordinates"] += 1
            continue

        kind = (
            zp["zip_code_type"] if zp else UDS_KINDS.get(uds["zip_type"], "STANDARD") if uds else "STANDARD"
        )
        assert kind in KINDS, (code, kind)
        city = (zp and zp["city"]) or (uds and uds["po_name"]) or (gn and gn[2]) or ""
        state = (zp and zp["state"]) or (uds and uds["state"]) or (gn and gn[4]) or ""

        # County: GeoNames (state FIPS + county code) when it names a current county, else the primary
        # county of the ZIP's ZCTA (GeoNames still uses a few retired codes, e.g. 02261 Valdez-Cordova).
        county = ""
        if gn is not None and gn[6] and gn[4] in src.state_fips:
            candidate = src.state_fips[gn[4]] + gn[6]
            if candidate in src.current_counties:
                county = candidate
                stats["county from GeoNames"] += 1
            else:
                stats["GeoNames county retired"] += 1
        if not county and zcta is not None:
            county = src.primary_county.get(zcta, "")
            if county:
                stats["county from ZCTA primary county"] += 1
        if not county and zp is not None and zp["county"]:
            county = src.county_by_name.get((state, zp["county"].casefold()), "")
            if county:
                stats["county from the package's county name"] += 1
        if not county:
            stats["no county"] += 1
        county_row = src.counties.get(county)
        county_name = county_row["Full Name"] if county_row else (zp["county"] if zp else "")

        timezone = _valid_zone(zp["timezone"]) if zp else ""
        if not timezone and county_row:
            timezone = _valid_zone(county_row["Time Zone"])
            stats["timezone from county"] += 1
        if not timezone:
            stats["skipped: no timezone"] += 1
            continue

        population = None
        if is_zcta:
            population = src.acs_population.get(code, src.dhc_population.get(code))
        income = src.income.get(zcta) if zcta else None
        area_codes = "|".join(sorted({a for a in (zp["area_codes"] if zp else "").split("|") if a}))

        stats[f"kind {kind}"] += 1
        rows.append(
            {
                "zip": code,
                "kind": kind,
                "city": city,
                "state": state,
                "county_fips": county,
                "county_name": county_name,
                "timezone": timezone,
                "lat": f"{point[0]:.{COORD_DECIMALS}f}",
                "lon": f"{point[1]:.{COORD_DECIMALS}f}",
                "is_zcta": "1" if is_zcta else "0",
                "zcta": zcta or "",
                "population": "" if population is None else str(population),
                "median_income": "" if income is None else str(income),
                "area_codes": area_codes,
            }
        )
    return rows


def write_rows(rows: list[dict[str, str]], out: Path) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(text.getvalue().encode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA, help="folder of raw files")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .csv.gz")
    args = parser.parse_args(argv)
    missing = [name for name in RAW_FILES if not (args.data / name).is_file()]
    if len(missing) == len(RAW_FILES):
        parser.error(f"{args.data} does not hold the raw ZIP files (see docs/geo-data.md)")
    if missing:
        parser.error(f"{args.data} lacks {len(missing)} of the raw ZIP files: {', '.join(missing)} "
                     "(see docs/geo-data.md)")
    stats: Counter[str] = Counter()
    rows = build_rows(load_sources(args.data), stats)
    write_rows(rows, args.out)
    print(f"wrote {len(rows)} ZIPs to {args.out} ({args.out.stat().st_size:,} bytes)")
    for key, count in sorted(stats.items()):
        print(f"  {key}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
