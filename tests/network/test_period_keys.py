"""Cap periods: the hour, day and month keys of an instant in a buyer's time zone."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from callbroker.network.live import period_keys, period_keys_at

ZONES = ("America/New_York", "America/Chicago", "America/Phoenix", "Pacific/Honolulu", "Australia/Lord_Howe", "UTC")


def test_keys_are_the_local_hour_day_and_month():
    at = dt.datetime(2026, 11, 28, 3, 30, tzinfo=dt.UTC)  # 21:30 the day before in Chicago
    assert period_keys(at, "America/Chicago") == ("H2026112721", "D20261127", "M202611")
    assert period_keys(at, "UTC") == ("H2026112803", "D20261128", "M202611")


@given(st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)),
       st.lists(st.sampled_from(ZONES), min_size=1, max_size=12))
def test_keys_worked_out_once_per_zone_are_the_keys_of_each_zone(at, zones):
    keys_in = period_keys_at(at)
    assert [keys_in(zone) for zone in zones] == [period_keys(at, zone) for zone in zones]
    assert all(keys_in(zone) is keys_in(zone) for zone in zones)  # each zone worked out once
