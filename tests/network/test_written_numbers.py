"""Numbers in a network file are read as written, or refused: YAML 1.1 reads an unquoted ``010`` as 8
(octal), ``1:30`` as 90 (base 60), ``0x1F`` as 31, ``0b11`` as 3 and ``1_000`` as 1000, and a cap, a
duration or a price written so loaded as another number without a word. A problem that quotes a number
quotes it as it was written: ``83 is not a key`` sent the reader looking for an 83 the file doesn't hold.

Each case writes one value of the valid base network (``conftest.BASE_NETWORK``) as raw YAML text and
expects exactly one problem, at its location, and nothing written.
"""

from __future__ import annotations

import textwrap
from decimal import Decimal

import pytest
import yaml

from callbroker.network import models as m
from callbroker.network.loader import dump_network, export_network
from tests.network.test_network_file_problems import T0, change

pytestmark = pytest.mark.django_db

#: Put where the raw text goes: a value (or a key) of the network, dumped, then replaced by the text.
HERE = "WRITTEN-HERE"


@pytest.fixture
def written(network, tmp_path):
    """``written(path, text)`` -> a network file: the base network with the value at ``path`` written as
    ``text``, unquoted (``path`` ending in ``HERE`` writes ``text`` as a key, with the value 3)."""

    def write(path: str, text: str):
        change(network, path, 3 if path.endswith(HERE) else HERE)
        dumped = yaml.safe_dump(network, sort_keys=False, width=1000)
        assert dumped.count(HERE) == 1
        file = tmp_path / "network.yaml"
        file.write_text(dumped.replace(HERE, text))
        return file

    return write


# (test id, path, the text written, expected problem: the exact "location: message")
REFUSED = [
    # every number field, each odd form
    ("cap-octal", "buyers.0.targets.0.caps", "{daily: 010}",
     f"{T0}.caps.daily: 010 is read by YAML as 8 (octal): write 10, or 8"),
    ("concurrency-octal-same-value", "buyers.0.targets.0.caps", "{concurrency: 02}",
     f"{T0}.caps.concurrency: 02 is read by YAML as 2 (octal): write 2"),
    ("buffer-octal-with-underscore", "campaigns.0.buffer_seconds", "0_60",
     "campaigns[0].buffer_seconds: 0_60 is read by YAML as 48 (octal): write 60, or 48"),
    ("min-talk-negative-octal", "buyers.0.targets.0.min_talk_seconds", "-010",
     f"{T0}.min_talk_seconds: -010 is read by YAML as -8 (octal): write -10, or -8"),
    ("duplicate-window-base-60", "campaigns.0.duplicate_window", "1:30",
     "campaigns[0].duplicate_window: 1:30 is read by YAML as 90 (base 60): write 90 (seconds), or 1h30m, "
     "or 1m30s"),
    ("cooldown-base-60-hours", "campaigns.0.missed_call_protection", "{cooldown: 1:00:00}",
     "campaigns[0].missed_call_protection.cooldown: 1:00:00 is read by YAML as 3600 (base 60): "
     "write 3600 (seconds), or 1h"),
    ("velocity-window-octal", "campaigns.0.velocity", "{window: 0600}",
     "campaigns[0].velocity.window: 0600 is read by YAML as 384 (octal): write 600 (seconds), or 384 (seconds)"),
    ("priority-underscores", "buyers.0.targets.0.priority", "1_0",
     f"{T0}.priority: 1_0 is read by YAML as 10 (underscores ignored): write 10"),
    ("weight-hexadecimal", "buyers.0.targets.0.weight", "0x1F",
     f"{T0}.weight: 0x1F is read by YAML as 31 (hexadecimal): write 31"),
    ("ring-timeout-binary", "campaigns.0.ring_timeout", "0b11110",
     "campaigns[0].ring_timeout: 0b11110 is read by YAML as 30 (binary): write 30"),
    ("velocity-limit-signed-hexadecimal", "campaigns.0.velocity", "{limit: +0x05}",
     "campaigns[0].velocity.limit: +0x05 is read by YAML as 5 (hexadecimal): write 5"),
    ("misses-whole-decimal-underscores", "campaigns.0.missed_call_protection", "{misses: 1_0.0}",
     "campaigns[0].missed_call_protection.misses: 1_0.0 is read by YAML as 10.0 (underscores ignored): "
     "write 10.0"),
    ("price-underscores", "buyers.0.targets.0.price", "1_000.50",
     f"{T0}.price: 1_000.50 is read by YAML as 1000.50 (underscores ignored): write 1000.50"),
    ("payout-base-60", "campaigns.0.payout", "1:30.5",
     "campaigns[0].payout: 1:30.5 is read by YAML as 90.5 (base 60): write 90.5"),
    ("payout-octal", "campaigns.0.payout", "010",
     "campaigns[0].payout: 010 is read by YAML as 8 (octal): write 10, or 8"),
    ("radius-miles-hexadecimal", "buyers.0.targets.0.area", "{radius: [{zip: \"78701\", miles: 0x0F}]}",
     f"{T0}.area.radius[0].miles: 0x0F is read by YAML as 15 (hexadecimal): write 15"),
    ("version-hexadecimal", "version", "0x1", "version: 0x1 is read by YAML as 1 (hexadecimal): write 1"),
    ("version-octal", "version", "01", "version: 01 is read by YAML as 1 (octal): write 1"),
    # codes YAML reads as numbers: the fix is quotes
    ("zip-octal", "buyers.0.targets.0.area", "{zips: [02134]}",
     f"{T0}.area.zips[0]: 02134 is read by YAML as 1116 (octal): write ZIP codes in quotes, e.g. \"02134\""),
    ("zip-underscores", "buyers.0.targets.0.area", "{zips: [\"78701\", 7_8702]}",
     f"{T0}.area.zips[1]: 7_8702 is read by YAML as 78702 (underscores ignored): write ZIP codes in quotes, "
     f"e.g. \"78702\""),
    ("excluded-zip-base-60", "buyers.0.targets.0.area", "{states: [TX], exclude_zips: [13:07]}",
     f"{T0}.area.exclude_zips[0]: 13:07 is read by YAML as 787 (base 60): write ZIP codes in quotes, "
     f"e.g. \"02134\""),
    ("county-underscores", "buyers.0.targets.0.area", "{counties: [48_453]}",
     f"{T0}.area.counties[0]: 48_453 is read by YAML as 48453 (underscores ignored): write FIPS codes in quotes, "
     f"e.g. \"48453\""),
    ("county-octal", "buyers.0.targets.0.area", "{counties: [04017]}",
     f"{T0}.area.counties[0]: 04017 is read by YAML as 2063 (octal): write FIPS codes in quotes, e.g. \"04017\""),
]

QUOTED = [
    # other problems quote the number as written
    ("key-octal", "buyers.0.targets.0.key", "0123",
     f"{T0}.key: 0123 is not a key (letters, digits, '-' and '_', at most 64 characters, e.g. austin-plumbing): "
     f"YAML reads it as a number, write it in quotes (\"0123\")"),
    ("unknown-key-hexadecimal", f"buyers.0.targets.0.{HERE}", "0x1F", f"{T0}.0x1F: unknown key '0x1F'"),
    ("choice-octal", "campaigns.0.ivr", "{ask_zip: 010}",
     "campaigns[0].ivr.ask_zip: 010 is not one of never, when_missing, always"),
    ("boolean-hexadecimal", "buyers.0.targets.0.paused", "0x0", f"{T0}.paused: expected true or false, got 0x0"),
    ("phone-number-unquoted", "buyers.0.targets.0.number", "+15125550150",
     f"{T0}.number: +15125550150 is a number, not an E.164 phone number: write phone numbers in quotes with + "
     f"and the country code, e.g. \"+15125550100\""),
    ("prefix-unquoted", "campaigns.0.blocked_prefixes", "[+1900]",
     "campaigns[0].blocked_prefixes[0]: +1900 is a number, not a number prefix: write prefixes in quotes, "
     "e.g. \"+1900\""),
    ("weekly-day-octal", "buyers.0.targets.0.hours", "{weekly: {010: \"08:00-10:00\"}}",
     f"{T0}.hours.weekly.010: unknown day '010' (use mon..sun, weekdays, weekend or daily)"),
    ("hours-base-60", "buyers.0.targets.0.hours", "{weekly: {mon: 8:00}}",
     f"{T0}.hours.weekly.mon: expected hours like \"08:00-18:00\" or \"closed\", got 8:00"),
    ("plain-too-large-with-sign", "buyers.0.targets.0.priority", "+2000",
     f"{T0}.priority: +2000 is too large (at most 1000)"),
    ("plain-fraction-for-a-whole-number", "buyers.0.targets.0.priority", ".5",
     f"{T0}.priority: expected a whole number, got .5"),
    ("plain-whole-decimal-too-large", "buyers.0.targets.0.weight", "2000.0",
     f"{T0}.weight: 2000.0 is too large (at most 1000)"),
    ("money-exponent-too-large", "buyers.0.targets.0.price", "1.5e+10",
     f"{T0}.price: 1.5e+10 is too large (at most 9999999999.99)"),
    ("negative-duration", "campaigns.0.duplicate_window", "-60.0",
     "campaigns[0].duplicate_window: -60.0 is negative; durations must be 0 or more"),
]


@pytest.mark.parametrize(("path", "text", "expected"), [c[1:] for c in QUOTED], ids=[c[0] for c in QUOTED])
def test_a_problem_quotes_a_number_as_written(written, problems, network_counts, path, text, expected):
    assert problems(written(path, text)) == [expected]
    assert set(network_counts().values()) == {0}


@pytest.mark.parametrize(("path", "text", "expected"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_number_yaml_would_misread_is_refused_as_written(written, problems, network_counts, path, text,
                                                           expected):
    assert problems(written(path, text)) == [expected]
    assert set(network_counts().values()) == {0}


def test_plain_decimal_numbers_are_read_as_written(load, network, tmp_path):
    """Whole numbers with or without a sign, decimals with or without a digit before or after the point,
    and an exponent: YAML reads each as the number a person reads. A text written as a base 60 decimal
    (``1:30.5``) is taken as written too (it was a float, 90.5, refused as "expected text")."""
    network["campaigns"][0].update(buffer_seconds=HERE + "1", payout=HERE + "2", duplicate_window=HERE + "3",
                                   category=HERE + "0")
    target = network["buyers"][0]["targets"][0]
    target.update(priority=HERE + "4", weight=HERE + "5", price=HERE + "6", min_talk_seconds=HERE + "7",
                  caps={"daily": HERE + "8"}, area={"radius": [{"zip": "78701", "miles": HERE + "9"}]})
    text = yaml.safe_dump(network, sort_keys=False, width=1000)
    for mark, value in (("9", ".5"), ("8", "0"), ("7", "+90"), ("6", "1.5e+3"), ("5", "10"), ("4", "-0"),
                        ("3", "90"), ("2", "12.5"), ("1", "5."), ("0", "1:30.5")):
        text = text.replace(HERE + mark, value)
    path = tmp_path / "network.yaml"
    path.write_text(text)

    load(path)

    campaign, target = m.Campaign.objects.get(), m.Target.objects.get(key="acme-main")
    assert (campaign.buffer_seconds, campaign.payout, campaign.duplicate_window.total_seconds(),
            campaign.category) == (5, Decimal("12.50"), 90, "1:30.5")
    assert (target.priority, target.weight, target.price, target.min_talk_seconds, target.daily_cap) == (
        0, 10, Decimal("1500.00"), 90, 0)
    assert target.area == {"radius": [{"zip": "78701", "miles": 0.5}]}
    exported = tmp_path / "export.yaml"
    exported.write_text(dump_network(export_network()))
    assert load(exported).changed is False  # the export writes plain numbers, and loads back as they are


def test_every_misread_number_is_reported_and_nothing_is_written(tmp_path, load, problems, network,
                                                                 network_counts):
    load(network)
    before = network_counts()
    path = tmp_path / "network.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        campaigns:
          - {key: austin-plumbing, name: Austin Plumbing, payout: "99.00", duplicate_window: 1:30}
        buyers:
          - key: acme
            timezone: America/Chicago
            targets:
              - {key: acme-main, campaign: austin-plumbing, number: "+15125550150", caps: {daily: 010},
                 weight: 0x1F, area: {zips: [02134, 7_8701]}}
        """))

    assert problems(path) == [
        "campaigns[0].duplicate_window: 1:30 is read by YAML as 90 (base 60): write 90 (seconds), or 1h30m, "
        "or 1m30s",
        f"{T0}.weight: 0x1F is read by YAML as 31 (hexadecimal): write 31",
        f"{T0}.area.zips[0]: 02134 is read by YAML as 1116 (octal): write ZIP codes in quotes, e.g. \"02134\"",
        f"{T0}.area.zips[1]: 7_8701 is read by YAML as 78701 (underscores ignored): write ZIP codes in quotes, "
        f"e.g. \"78701\"",
        f"{T0}.caps.daily: 010 is read by YAML as 8 (octal): write 10, or 8",
    ]
    assert network_counts() == before
    assert m.Campaign.objects.get().payout == Decimal("15.00")
    assert m.Target.objects.get(key="acme-main").daily_cap is None


def test_a_key_given_twice_as_two_spellings_of_one_number_names_both(tmp_path, problems):
    path = tmp_path / "network.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        buyers:
          - key: acme
            targets:
              - key: t
                010: a
                8: b
        """))
    assert problems(path)[0] == (
        "line 7, column 9: not valid YAML: the key '8' is given twice in one mapping (first on line 6, "
        "written 010: YAML reads both as 8)")
