"""The opening hours a campaign's closed message speaks (``Our hours are …``).

They are the campaign's hours, the same on every node and after every restart: every different set of
hours its active lines keep (the most common first, ties in priority order, at most three), never one
line's picked at random, never "closed" when some line opens, and none at all when a line is always
open (a caller turned away then was turned away by caps, not by the hours) or no line ever opens.
"""

from __future__ import annotations

import pytest

from callbroker.network.loader import load_network
from callbroker.network.snapshot import campaign_hours, current_snapshot, reset_snapshot

WEEKDAYS = "Monday to Friday 8 AM to 6 PM Central time"
WEEKEND = "Saturday and Sunday 9 AM to 1 PM Central time"


def test_every_different_set_of_hours_most_common_first_ties_in_priority_order():
    assert campaign_hours([WEEKDAYS, WEEKEND]) == f"{WEEKDAYS}; also {WEEKEND}"
    assert campaign_hours([WEEKEND, WEEKDAYS, WEEKDAYS]) == f"{WEEKDAYS}; also {WEEKEND}"
    assert campaign_hours(["a", "b", "c", "d", "d"]) == "d; also a; also b"  # at most three


def test_lines_that_never_open_are_left_out_and_an_always_open_line_means_no_hours():
    assert campaign_hours(["closed", WEEKDAYS, "closed"]) == WEEKDAYS
    assert campaign_hours(["closed"]) == campaign_hours([]) == ""
    assert campaign_hours([WEEKDAYS, None]) == ""


NETWORK = {
    "version": 1,
    "campaigns": [{"key": "hvac", "name": "HVAC", "payout": "10.00",
                   "fallback": {"kind": "message", "message": "We are closed."}}],
    "buyers": [{"key": "cool", "name": "Cool Air", "timezone": "America/Chicago", "targets": [
        {"key": "week", "campaign": "hvac", "number": "+15125550150", "hours": {"weekly": {"weekdays": "08:00-18:00"}}},
        {"key": "weekend", "campaign": "hvac", "number": "+15125550151", "priority": 2,
         "hours": {"weekly": {"weekend": "09:00-13:00"}}},
        {"key": "never", "campaign": "hvac", "number": "+15125550152", "priority": 3,
         "hours": {"weekly": {"daily": "closed"}}},
        {"key": "paused", "campaign": "hvac", "number": "+15125550153", "paused": True,
         "hours": {"weekly": {"daily": "10:00-11:00"}}},
    ]}],
    "publishers": [{"key": "pub", "name": "Publisher"}],
    "tracking_numbers": [{"number": "+15125550001", "campaign": "hvac", "publisher": "pub"}],
}


@pytest.mark.django_db
def test_a_campaign_speaks_the_hours_of_its_active_lines(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    reset_snapshot()
    load_network(NETWORK)
    (campaign,) = current_snapshot().campaigns.values()
    assert campaign.hours_text == f"{WEEKDAYS}; also {WEEKEND}"
    always = {**NETWORK["buyers"][0]["targets"][0], "key": "always", "number": "+15125550154",
              "hours": {"weekly": {"daily": "00:00-24:00"}}}  # hours that never close: as no hours at all
    load_network({**NETWORK, "buyers": [{**NETWORK["buyers"][0], "targets": [*NETWORK["buyers"][0]["targets"], always]}]})
    (campaign,) = current_snapshot().campaigns.values()
    assert campaign.hours_text == ""
    reset_snapshot()
