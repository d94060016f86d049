"""The ZIP directory (packaged data and small fakes), radius search and service areas."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callbroker.core.geo import (
    ServiceArea,
    UnknownCounty,
    UnknownState,
    UnknownZip,
    ZipDirectory,
    ZipInfo,
    haversine_miles,
)


@pytest.fixture(scope="module")
def directory() -> ZipDirectory:
    return ZipDirectory.default()


@pytest.fixture(scope="module")
def all_rows(directory: ZipDirectory) -> list[ZipInfo]:
    return [info for code in sorted(directory) if (info := directory.get(code)) is not None]


def make_zip(code: str, lat: float, lon: float, **overrides: object) -> ZipInfo:
    values: dict[str, object] = dict(
        zip=code, kind="STANDARD", city="Town", state="TX", county_fips="48453", county_name="Travis County",
        timezone="America/Chicago", lat=lat, lon=lon, is_zcta=True, zcta=code, population=1000,
        median_income=None, area_codes=("512",),
    )  # fmt: skip
    values.update(overrides)
    return ZipInfo(**values)  # type: ignore[arg-type]


def brute_radius(rows: list[ZipInfo], center: ZipInfo, miles: float) -> frozenset[str]:
    lat, lon = center.lat, center.lon
    return frozenset(r.zip for r in rows if haversine_miles(lat, lon, r.lat, r.lon) <= miles)


# -- the packaged table --------------------------------------------------------------------------------------


class TestPackagedTable:
    def test_size(self, directory: ZipDirectory) -> None:
        assert 40_000 < len(directory) < 44_000

    def test_default_is_loaded_once(self, directory: ZipDirectory) -> None:
        assert ZipDirectory.default() is directory

    @pytest.mark.parametrize(
        "code, kind, zcta, lat, lon, population, income, county, tz",
        [
            ("10001", "STANDARD", "10001", 40.750649, -73.997298, 29079, 106509, "36061", "America/New_York"),
            ("90210", "STANDARD", "90210", 34.100517, -118.41463, 19652, 172285, "06037", "America/Los_Angeles"),  # noqa: E501
            ("60614", "STANDARD", "60614", 41.922747, -87.647153, 70444, 135364, "17031", "America/Chicago"),
            ("99501", "STANDARD", "99501", 61.219998, -149.85784, 16563, 73540, "02020", "America/Anchorage"),
        ],
    )  # fmt: skip
    def test_readme_spot_checks(
        self, directory: ZipDirectory, code: str, kind: str, zcta: str, lat: float, lon: float,
        population: int, income: int, county: str, tz: str,
    ) -> None:  # fmt: skip
        info = directory.get(code)
        assert info is not None
        assert (info.kind, info.is_zcta, info.zcta) == (kind, True, zcta)
        assert info.lat == pytest.approx(lat, abs=1e-5) and info.lon == pytest.approx(lon, abs=1e-5)
        assert (info.population, info.median_income, info.county_fips, info.timezone) == (
            population, income, county, tz,
        )  # fmt: skip

    def test_po_box_zip_uses_its_containing_zcta(self, directory: ZipDirectory) -> None:
        info = directory.get("30301")
        assert info is not None
        assert (info.kind, info.is_zcta, info.zcta) == ("PO BOX", False, "30303")
        assert info.population is None  # no population of its own
        assert info.median_income is None  # 30303's income is suppressed
        assert (info.county_fips, info.county_name, info.state) == ("13121", "Fulton County", "GA")
        assert info.timezone == "America/New_York"
        zcta = directory.get("30303")
        assert zcta is not None and zcta.population == 6_474

    def test_fields_are_well_formed(self, all_rows: list[ZipInfo]) -> None:
        for info in all_rows:
            assert len(info.zip) == 5 and info.zip.isdigit()
            assert info.kind in {"STANDARD", "PO BOX", "UNIQUE", "MILITARY"}
            assert len(info.state) == 2
            assert info.county_fips == "" or (len(info.county_fips) == 5 and info.county_fips.isdigit())
            assert "/" in info.timezone
            assert -90 <= info.lat <= 90 and -180 <= info.lon <= 180 and (info.lat, info.lon) != (0, 0)
            assert info.is_zcta == (info.zcta == info.zip)
            assert info.population is None or info.is_zcta
            assert all(len(a) == 3 and a.isdigit() for a in info.area_codes)
        assert sum(1 for i in all_rows if not i.county_fips) < 20

    def test_lookup_accepts_zip_plus_four(self, directory: ZipDirectory) -> None:
        assert directory.get(" 78701-1234 ") == directory.get("78701")
        assert "78701" in directory and "00000" not in directory and 78701 not in directory
        assert directory.get("00000") is None

    def test_area_code_guess_is_the_most_populous_zip(
        self, directory: ZipDirectory, all_rows: list[ZipInfo]
    ) -> None:
        for area_code in ("212", "512", "907", "787"):
            guess = directory.zip_for_area_code(area_code)
            assert guess is not None
            listing = [r for r in all_rows if area_code in r.area_codes]
            best = max(r.population or 0 for r in listing)
            info = directory.get(guess)
            assert info is not None and area_code in info.area_codes and info.population == best
        assert directory.zip_for_area_code("555") is None

    def test_import_loads_nothing_and_core_stays_free_of_django(self) -> None:
        code = (
            "import sys, callbroker.core.geo as g, callbroker.core.phone, callbroker.core.schedule\n"
            "assert not g._default, 'the ZIP table was loaded at import time'\n"
            "assert 'django' not in sys.modules, 'core imported Django'\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True)


# -- counties and states -------------------------------------------------------------------------------------


class TestCountiesAndStates:
    @pytest.mark.parametrize(
        "text", ["48453", "Travis County, TX", "travis county, tx", "TX:Travis", "tx:travis", " Travis , TX "]
    )
    def test_county_spellings(self, directory: ZipDirectory, text: str) -> None:
        assert directory.resolve_county(text) == "48453"

    def test_in_county(self, directory: ZipDirectory, all_rows: list[ZipInfo]) -> None:
        travis = directory.in_county("Travis County, TX")
        assert travis == {r.zip for r in all_rows if r.county_fips == "48453"}
        assert "78701" in travis and len(travis) > 50

    @pytest.mark.parametrize(
        "text, fips",
        [
            ("Baltimore County, MD", "24005"),
            ("Baltimore city, MD", "24510"),
            ("City of Baltimore, MD", "24510"),
            ("St. Louis County, MO", "29189"),
            ("Saint Louis City, MO", "29510"),
            ("Doña Ana County, NM", "35013"),
            ("Dona Ana, NM", "35013"),
            ("Orleans Parish, LA", "22071"),
            ("Anchorage, AK", "02020"),
            ("PR:Adjuntas", "72001"),
            ("New York County, NY", "36061"),
        ],
    )
    def test_county_names(self, directory: ZipDirectory, text: str, fips: str) -> None:
        assert directory.resolve_county(text) == fips

    def test_ambiguous_county_lists_the_options(self, directory: ZipDirectory) -> None:
        with pytest.raises(UnknownCounty, match=r"ambiguous.*29189.*29510"):
            directory.resolve_county("St. Louis, MO")

    @pytest.mark.parametrize(
        "text, message",
        [
            ("TX:Travs", r"unknown county 'Travs' in TX; did you mean .*Travis County"),
            ("Travis County", r"expected a FIPS code"),
            ("Travis County, XX", r"unknown state 'XX'"),
            ("99999", r"unknown county FIPS code '99999'"),
            ("Capitol Planning Region, CT", r"historical counties"),
        ],
    )
    def test_unknown_county_messages(self, directory: ZipDirectory, text: str, message: str) -> None:
        with pytest.raises(UnknownCounty, match=message):
            directory.in_county(text)

    def test_in_state(self, directory: ZipDirectory, all_rows: list[ZipInfo]) -> None:
        assert directory.in_state("tx") == {r.zip for r in all_rows if r.state == "TX"}
        assert len(directory.in_state("DC")) > 20
        with pytest.raises(UnknownState, match="'Texas'"):
            directory.in_state("Texas")

    def test_known_state_without_zips_is_empty(self) -> None:
        small = ZipDirectory.from_rows([make_zip("78701", 30.27, -97.74)])
        assert small.in_state("CA") == frozenset()
        with pytest.raises(UnknownState):
            small.in_state("ZZ")


# -- radius search -------------------------------------------------------------------------------------------


class TestRadius:
    def test_haversine_known_distances(self) -> None:
        assert haversine_miles(0, 0, 0, 1) == pytest.approx(69.093, abs=0.01)
        assert haversine_miles(40.7128, -74.0060, 34.0522, -118.2437) == pytest.approx(2445.6, abs=1)
        assert haversine_miles(51.5, 179.5, 51.5, -179.5) == pytest.approx(43.0, abs=0.2)  # across 180°
        assert haversine_miles(10, 20, 10, 20) == 0

    def test_unknown_centre(self, directory: ZipDirectory) -> None:
        with pytest.raises(UnknownZip, match="'00000'"):
            directory.within_radius("00000", 10)
        with pytest.raises(ValueError, match="miles"):
            directory.within_radius("78701", -1)

    def test_zero_radius_is_the_centre(self, directory: ZipDirectory) -> None:
        assert "78701" in directory.within_radius("78701", 0)

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data(), miles=st.floats(0, 120))
    def test_matches_brute_force_on_real_data(
        self, directory: ZipDirectory, all_rows: list[ZipInfo], data: st.DataObject, miles: float
    ) -> None:
        center = data.draw(st.sampled_from(all_rows))
        found = directory.within_radius(center.zip, miles)
        assert found == brute_radius(all_rows, center, miles)
        assert center.zip in found

    @settings(max_examples=150, deadline=None)
    @given(
        points=st.lists(
            st.tuples(st.floats(-89.99, 89.99), st.floats(-180, 180, exclude_max=True)),
            min_size=1,
            max_size=60,
        ),
        miles=st.floats(0, 3000),
        pick=st.integers(0, 59),
    )
    def test_matches_brute_force_anywhere_on_earth(
        self, points: list[tuple[float, float]], miles: float, pick: int
    ) -> None:
        # Fake ZIPs anywhere, including near the poles and both sides of the antimeridian.
        rows = [make_zip(f"{i:05d}", lat, lon) for i, (lat, lon) in enumerate(points)]
        small = ZipDirectory.from_rows(rows)
        center = rows[pick % len(rows)]
        assert small.within_radius(center.zip, miles) == brute_radius(rows, center, miles)

    @settings(max_examples=150, deadline=None)
    @given(
        center=st.tuples(st.floats(-89.99, 89.99), st.floats(-180, 180, exclude_max=True)),
        other=st.tuples(st.floats(-89.99, 89.99), st.floats(-180, 180, exclude_max=True)),
    )
    def test_a_zip_exactly_the_radius_away_is_inside(
        self, center: tuple[float, float], other: tuple[float, float]
    ) -> None:
        # "At most ``miles``": the boundary belongs to the circle, to the last bit of haversine_miles.
        small = ZipDirectory.from_rows([make_zip("00001", *center), make_zip("00002", *other)])
        miles = haversine_miles(*center, *other)
        assert "00002" in small.within_radius("00001", miles)

    def test_a_circle_around_a_pole_takes_every_longitude(self) -> None:
        # 89°N 0° and 89°N 180° are 2° (138 miles) apart, across the pole.
        small = ZipDirectory.from_rows([make_zip("00001", 89.0, 0.0), make_zip("00002", 89.0, 180 - 1e-9)])
        assert small.within_radius("00001", 150) == {"00001", "00002"}
        assert small.within_radius("00002", 150) == {"00001", "00002"}

    def test_across_the_antimeridian(self) -> None:
        adak = make_zip("99546", 51.88, -176.66)
        shemya = make_zip("99500", 52.72, 174.11)
        attu = make_zip("99501", 52.9, 172.9)
        small = ZipDirectory.from_rows([adak, shemya, attu])
        assert haversine_miles(adak.lat, adak.lon, shemya.lat, shemya.lon) < 400
        assert small.within_radius("99546", 400) == {"99546", "99500"}
        assert small.within_radius("99500", 400) == {"99546", "99500", "99501"}

    def test_a_thousand_radius_areas_load_in_seconds(self, directory: ZipDirectory) -> None:
        centres = sorted(directory)[:: len(directory) // 1000][:1000]
        started = time.perf_counter()
        for code in centres:
            directory.within_radius(code, 50)
        assert time.perf_counter() - started < 15  # ~0.5 s on a developer machine


# -- service areas -------------------------------------------------------------------------------------------

FAKE_ROWS = [
    make_zip("10001", 40.0, -100.0, state="TX", county_fips="48001", county_name="Anderson County"),
    make_zip("10002", 40.1, -100.0, state="TX", county_fips="48001", county_name="Anderson County"),
    make_zip("10003", 40.5, -100.2, state="TX", county_fips="48003", county_name="Andrews County"),
    make_zip("10004", 41.0, -100.0, state="OK", county_fips="40001", county_name="Adair County"),
    make_zip("10005", 41.2, -101.0, state="OK", county_fips="40001", county_name="Adair County"),
    make_zip("10006", 39.0, -99.0, state="KS", county_fips="20001", county_name="Allen County"),
    make_zip("10007", 39.1, -99.5, state="KS", county_fips="20003", county_name="Anderson County"),
    make_zip("10008", 45.0, -90.0, state="WI", county_fips="55001", county_name="Adams County"),
]
FAKE = ZipDirectory.from_rows(FAKE_ROWS)
FAKE_CODES = [r.zip for r in FAKE_ROWS]
COUNTY_REFS = {
    "48001": "48001", "Anderson County, TX": "48001", "TX:Andrews": "48003", "ok:adair": "40001",
    "Allen County, KS": "20001", "KS:Anderson": "20003", "55001": "55001",
}  # fmt: skip


class TestServiceArea:
    @settings(max_examples=200, deadline=None)
    @given(
        zips=st.frozensets(st.sampled_from([*FAKE_CODES, "99999"])),
        radii=st.lists(st.tuples(st.sampled_from(FAKE_CODES), st.floats(0, 150)), max_size=3),
        counties=st.frozensets(st.sampled_from(sorted(COUNTY_REFS)), max_size=3),
        states=st.frozensets(st.sampled_from(["TX", "ok", "KS", "WI", "CA"]), max_size=3),
        exclude=st.frozensets(st.sampled_from(FAKE_CODES), max_size=4),
    )
    def test_resolve_is_union_minus_exclusions(
        self, zips: frozenset[str], radii: list[tuple[str, float]], counties: frozenset[str],
        states: frozenset[str], exclude: frozenset[str],
    ) -> None:  # fmt: skip
        area = ServiceArea(
            zips=zips, radii=tuple(radii), counties=counties, states=states, exclude_zips=exclude
        )
        by_zip = {r.zip: r for r in FAKE_ROWS}
        included: set[str] = set(zips)
        for center, miles in radii:
            c = by_zip[center]
            included |= {r.zip for r in FAKE_ROWS if haversine_miles(c.lat, c.lon, r.lat, r.lon) <= miles}
        included |= {r.zip for r in FAKE_ROWS if r.county_fips in {COUNTY_REFS[c] for c in counties}}
        included |= {r.zip for r in FAKE_ROWS if r.state in {s.upper() for s in states}}
        nothing_included = not (zips or radii or counties or states)
        if nothing_included and not exclude:
            assert area.is_everywhere() and area.resolve(FAKE) is None
        elif nothing_included:
            assert area.resolve(FAKE) == set(FAKE_CODES) - exclude
        else:
            assert area.resolve(FAKE) == included - exclude

    def test_everywhere(self) -> None:
        assert ServiceArea().is_everywhere()
        assert ServiceArea().resolve(FAKE) is None
        assert not ServiceArea(exclude_zips=frozenset({"10001"})).is_everywhere()

    def test_accepts_lists_and_cleans_them(self) -> None:
        area = ServiceArea(zips=[" 10001"], radii=[("10002", 5)], states=["tx"], counties=["TX:Andrews"])  # type: ignore[arg-type]
        assert area.zips == {"10001"} and area.radii == (("10002", 5.0),) and area.states == {"TX"}
        assert area == ServiceArea(
            zips=frozenset({"10001"}), radii=(("10002", 5.0),), states=frozenset({"TX"}),
            counties=frozenset({"TX:Andrews"}),
        )  # fmt: skip
        hash(area)

    @pytest.mark.parametrize(
        "kwargs, error",
        [
            (dict(zips=frozenset({"1234"})), "'1234' is not a 5-digit ZIP code"),
            (dict(exclude_zips=frozenset({"ABCDE"})), "'ABCDE' is not a 5-digit ZIP code"),
            (dict(radii=(("10001", -5),)), "miles >= 0"),
            (dict(radii=(("10001", float("nan")),)), "miles >= 0"),
            (dict(zips="10001"), "single string"),
        ],
    )
    def test_malformed_parts(self, kwargs: dict[str, object], error: str) -> None:
        with pytest.raises((ValueError, TypeError), match=error):
            ServiceArea(**kwargs)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "area, error",
        [
            (ServiceArea(radii=(("99999", 10.0),)), UnknownZip),
            (ServiceArea(counties=frozenset({"Nowhere County, TX"})), UnknownCounty),
            (ServiceArea(states=frozenset({"XX"})), UnknownState),
        ],
    )
    def test_bad_references_raise_on_resolve(self, area: ServiceArea, error: type[Exception]) -> None:
        with pytest.raises(error):
            area.resolve(FAKE)

    def test_only_exclusions_is_every_known_zip_but_those(self) -> None:
        area = ServiceArea(exclude_zips=frozenset({"10001", "10008", "99999"}))
        assert area.resolve(FAKE) == set(FAKE_CODES) - {"10001", "10008"}

    def test_listed_zips_unknown_to_the_table_are_kept(self) -> None:
        assert ServiceArea(zips=frozenset({"99999"})).resolve(FAKE) == {"99999"}

    def test_real_area(self, directory: ZipDirectory) -> None:
        area = ServiceArea(
            radii=(("78701", 10.0),), counties=frozenset({"TX:Williamson"}), exclude_zips=frozenset({"78701"})
        )
        resolved = area.resolve(directory)
        assert resolved is not None
        assert "78701" not in resolved and "78702" in resolved and "78626" in resolved  # 78626 Georgetown


def test_every_zip_of_an_area_code_and_the_same_set_each_time():
    from callbroker.core.geo import ZipDirectory

    directory = ZipDirectory.default()
    zips = directory.zips_for_area_code("512")
    assert {"78701", "78660", directory.zip_for_area_code("512")} <= zips and "75201" not in zips
    assert directory.zips_for_area_code(" 512") is zips  # routing keeps its tables per set object
    assert directory.zips_for_area_code("000") == frozenset()
