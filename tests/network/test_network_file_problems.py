"""Every kind of problem in a network file is reported at its exact location, and nothing is written.

Each case changes one value of the valid base network (``conftest.BASE_NETWORK``) and expects exactly
one problem. Messages that come from the core modules (phone numbers, opening hours, counties) are
matched on their location and a fragment, so those modules stay free to improve their wording.
"""

from __future__ import annotations

import textwrap
from decimal import Decimal

import pytest

from callbroker.network import models as m
from callbroker.network.loader import load_network
from callbroker.network.parsing import NetworkError

pytestmark = pytest.mark.django_db

DELETE = object()
T0 = "buyers[0].targets[0]"


def change(data: dict, path: str, value: object) -> None:
    """``change(data, "buyers.0.targets.0.price", "-5")``; ``DELETE`` removes the key."""
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list) and int(last) == len(node):
        node.append(value)
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


# (test id, path to change, new value, expected problem: the exact "location: message", or a list of them)
EXACT = [
    # geography
    ("unknown-zip", "buyers.0.targets.0.area", {"zips": ["78701", "99999"]},
     f"{T0}.area.zips[1]: 99999 is not a known ZIP code"),
    ("zip-not-five-digits", "buyers.0.targets.0.area", {"zips": ["7870"]},
     f"{T0}.area.zips[0]: '7870' is not a ZIP code (five digits, e.g. \"78701\")"),
    ("zip-read-as-octal", "buyers.0.targets.0.area", {"zips": [1116]},
     f"{T0}.area.zips[0]: 1116 is not a ZIP code (write ZIP codes in quotes, e.g. \"02134\")"),
    ("unknown-radius-centre", "buyers.0.targets.0.area", {"radius": [{"zip": "00000", "miles": 5}]},
     f"{T0}.area.radius[0].zip: 00000 is not a known ZIP code"),
    ("radius-not-positive", "buyers.0.targets.0.area", {"radius": [{"zip": "78701", "miles": 0}]},
     f"{T0}.area.radius[0].miles: 0 miles is out of range (more than 0, at most 250)"),
    ("radius-typo", "buyers.0.targets.0.area", {"radius": [{"zip": "78701", "mile": 5}]},
     [f"{T0}.area.radius[0].mile: unknown key 'mile' (did you mean 'miles'?)",
      f"{T0}.area.radius[0].miles: missing"]),
    ("area-key-typo", "buyers.0.targets.0.area", {"zip": ["78701"]},
     f"{T0}.area.zip: unknown key 'zip' (did you mean 'zips'?)"),
    ("area-list-expected", "buyers.0.targets.0.area", {"zips": "78701"},
     f"{T0}.area.zips: expected a list, got '78701'"),
    ("area-excludes-everything", "buyers.0.targets.0.area", {"zips": ["78701"], "exclude_zips": ["78701"]},
     f"{T0}.area: this area covers no ZIP code at all (check exclude_zips)"),
    # phone numbers
    ("phone-unquoted", "buyers.0.targets.0.number", 15125550150,
     f"{T0}.number: 15125550150 is a number, not an E.164 phone number: write phone numbers in quotes with + "
     f"and the country code, e.g. \"+15125550100\""),
    ("forward-without-number", "campaigns.0.fallback", {"kind": "forward"},
     "campaigns[0].fallback.number: missing: a forward fallback needs the number to forward to"),
    ("bad-prefix", "campaigns.0.blocked_prefixes", ["+1900", "1976"],
     "campaigns[0].blocked_prefixes[1]: '1976' is not a number prefix (a + and digits, e.g. \"+1900\")"),
    ("target-is-tracking-number", "buyers.0.targets.0.number", "+15125550101",
     f"{T0}.number: +15125550101 is a tracking number (tracking_numbers[0]); calls would ring back into the "
     f"platform"),
    # references
    ("unknown-campaign", "buyers.0.targets.1.campaign", "austn-plumbing",
     "buyers[0].targets[1].campaign: unknown campaign 'austn-plumbing' (known: austin-plumbing)"),
    ("unknown-publisher", "tracking_numbers.0.publisher", "metro",
     "tracking_numbers[0].publisher: unknown publisher 'metro' (known: metro-search)"),
    # duplicates
    ("duplicate-campaign", "campaigns.1", {"key": "austin-plumbing"},
     "campaigns[1].key: duplicate key 'austin-plumbing' (also campaigns[0])"),
    ("duplicate-target-across-buyers", "buyers.1.targets.0.key", "acme-main",
     "buyers[1].targets[0].key: duplicate key 'acme-main' (also buyers[0].targets[0])"),
    ("duplicate-tracking-number", "tracking_numbers.1",
     {"number": "+15125550101", "campaign": "austin-plumbing", "publisher": "metro-search"},
     "tracking_numbers[1].number: +15125550101 is listed twice (also tracking_numbers[0])"),
    # unknown keys
    ("target-key-typo", "buyers.0.targets.0.prioriy", 2,
     f"{T0}.prioriy: unknown key 'prioriy' (did you mean 'priority'?)"),
    ("top-level-typo", "campaign", [],
     "campaign: unknown key 'campaign' (did you mean 'campaigns'?)"),
    ("settings-reserved", "settings", {"currency": "USD"},
     "settings.currency: unknown key 'currency' (settings is reserved for later versions; leave it empty)"),
    # types and ranges
    ("priority-not-a-number", "buyers.0.targets.0.priority", "high",
     f"{T0}.priority: expected a whole number, got 'high'"),
    ("boolean-as-text", "buyers.0.targets.0.paused", "no",
     f"{T0}.paused: expected true or false, got 'no'"),
    ("weight-zero", "buyers.0.targets.0.weight", 0, f"{T0}.weight: 0 is too small (at least 1)"),
    ("ring-timeout-too-short", "campaigns.0.ring_timeout", 2,
     "campaigns[0].ring_timeout: 2 is too small (at least 5)"),
    ("campaigns-not-a-list", "campaigns", {"key": "x"}, "campaigns: expected a list, got a mapping"),
    ("buyer-not-a-mapping", "buyers.1", "bolt",
     "buyers[1]: expected a mapping like {key: acme-plumbing, name: ACME Plumbing, targets: […]}, "
     "got 'bolt'"),
    ("missing-number", "buyers.0.targets.0.number", DELETE, f"{T0}.number: missing"),
    ("bad-key", "campaigns.0.key", "Austin Plumbing",
     "campaigns[0].key: 'Austin Plumbing' is not a key (letters, digits, '-' and '_', at most 64 characters, "
     "e.g. austin-plumbing)"),
    ("name-too-long", "buyers.0.name", "x" * 201,
     "buyers[0].name: is 201 characters long; at most 200 are allowed"),
    ("control-character-in-text", "campaigns.0.fallback", {"kind": "message", "message": "Closed now.\vCall back."},
     "campaigns[0].fallback.message: holds the control character U+000B; remove it"),
    ("next-line-in-text", "campaigns.0.name", "Austin\x85Plumbing",
     "campaigns[0].name: holds the control character U+0085 (next line); remove it"),
    ("line-separator-in-text", "tracking_numbers.0.label", "Google\u2028Ads",
     "tracking_numbers[0].label: holds the control character U+2028 (line separator); remove it"),
    ("bad-email", "publishers.0.email", "ops at metro",
     "publishers[0].email: 'ops at metro' is not an email address"),
    ("email-longer-than-the-column", "publishers.0.email",
     "a" * 64 + "@" + ".".join(["b" * 63, "c" * 63, "d" * 63]) + ".com",
     "publishers[0].email: is 260 characters long; at most 254 are allowed"),
    ("forward-to-an-empty-number", "campaigns.0.fallback", {"kind": "forward", "number": " "},
     "campaigns[0].fallback.number: missing: a forward fallback needs the number to forward to"),
    ("ask-zip-choice", "campaigns.0.ivr", {"ask_zip": "sometimes"},
     "campaigns[0].ivr.ask_zip: 'sometimes' is not one of never, when_missing, always"),
    ("fallback-kind-choice", "campaigns.0.fallback", {"kind": "forwrd", "number": "+15125550199"},
     "campaigns[0].fallback.kind: 'forwrd' is not one of message, forward, voicemail, callback "
     "(did you mean 'forward'?)"),
    ("velocity-limit-zero", "campaigns.0.velocity", {"limit": 0},
     "campaigns[0].velocity.limit: 0 is too small (at least 1)"),
    # money
    ("negative-money", "buyers.0.targets.0.price", "-5.00",
     f"{T0}.price: -5.00 is negative; amounts must be 0 or more"),
    ("sub-cent-money", "campaigns.0.payout", "15.005",
     "campaigns[0].payout: 15.005 has more than two decimal places"),
    ("money-not-a-number", "campaigns.0.payout", "fifteen",
     "campaigns[0].payout: 'fifteen' is not an amount of money (e.g. \"45.00\")"),
    ("money-too-many-digits", "campaigns.0.payout", "1" + "0" * 30,
     f"campaigns[0].payout: 1{'0' * 30} is too large (at most 9999999999.99)"),
    ("money-huge-exponent", "buyers.0.targets.0.price", Decimal("1.0e+30"),
     f"{T0}.price: 1.0E+30 is too large (at most 9999999999.99)"),
    ("duration-too-long", "campaigns.0.duplicate_window", "99999999999w",
     "campaigns[0].duplicate_window: 99999999999w is too long (at most 3650d)"),
    ("duration-too-long-to-store", "campaigns.0.duplicate_window", "200000000d",
     "campaigns[0].duplicate_window: 200000000d is too long (at most 3650d)"),
    ("duration-seconds-too-long", "campaigns.0.velocity", {"window": 90_000_000_000_000},
     "campaigns[0].velocity.window: 90000000000000 is too long (at most 3650d)"),
    ("whole-number-huge-exponent", "buyers.0.targets.0.priority", Decimal("1.0e+999999999999999999"),
     f"{T0}.priority: 1.0E+999999999999999999 is too large"),
    ("radius-rounds-to-zero", "buyers.0.targets.0.area", {"radius": [{"zip": "78701", "miles": Decimal("1e-400")}]},
     f"{T0}.area.radius[0].miles: 1E-400 miles is too small to draw a circle with (more than 0, at most 250)"),
    # durations
    ("bad-duration", "campaigns.0.duplicate_window", "30 days",
     "campaigns[0].duplicate_window: '30 days' is not a duration (use e.g. 30d, 2w, 1h, 90m, 45s or a number "
     "of seconds)"),
    ("negative-duration", "campaigns.0.missed_call_protection", {"cooldown": -60},
     "campaigns[0].missed_call_protection.cooldown: -60 is negative; durations must be 0 or more"),
    # time zones and hours
    ("bad-time-zone", "buyers.0.timezone", "America/Chicgo",
     "buyers[0].timezone: 'America/Chicgo' is not a time zone (did you mean 'America/Chicago'?)"),
    ("host-time-zone", "buyers.0.timezone", "posix/America/Chicago",
     "buyers[0].timezone: 'posix/America/Chicago' is not a time zone (did you mean 'America/Chicago'?)"),
    ("long-time-zone", "buyers.0.timezone", "A" * 300,
     f"buyers[0].timezone: '{'A' * 300}' is not a time zone (use an IANA name like America/Chicago)"),
    ("hours-time-zone", "buyers.0.targets.0.hours", {"timezone": "Mars/Olympus", "weekly": {"daily": "24h"}},
     f"{T0}.hours.timezone: 'Mars/Olympus' is not a time zone (use an IANA name like America/Chicago)"),
    ("hours-without-weekly", "buyers.0.targets.0.hours", {"holidays": "US"},
     f"{T0}.hours.weekly: missing (e.g. {{weekdays: \"08:00-18:00\", sat: \"09:00-13:00\"}}; leave hours out "
     f"for always open)"),
    ("hours-unknown-day", "buyers.0.targets.0.hours", {"weekly": {"mnday": "08:00-18:00"}},
     f"{T0}.hours.weekly.mnday: unknown day 'mnday' (did you mean 'monday'?)"),
    ("hours-unknown-holidays", "buyers.0.targets.0.hours", {"weekly": {"daily": "24h"}, "holidays": "XX"},
     f"{T0}.hours.holidays: no holiday calendar for country 'XX'"),
    ("hours-exception-both", "buyers.0.targets.0.hours",
     {"weekly": {"daily": "24h"},
      "exceptions": [{"date": "2026-12-24", "hours": "08:00-12:00", "closed": True}]},
     f"{T0}.hours.exceptions[0]: give either hours or closed: true, not both"),
    ("hours-exception-date", "buyers.0.targets.0.hours",
     {"weekly": {"daily": "24h"}, "exceptions": [{"date": "2026-02-30", "closed": True}]},
     f"{T0}.hours.exceptions[0].date: '2026-02-30' is not a date (use YYYY-MM-DD)"),
    # version
    ("version-missing", "version", DELETE, "version: missing (add 'version: 1' at the top)"),
    ("version-unknown", "version", 2, "version: 2 is not a version this callbroker reads (use 1)"),
]

# (test id, path, new value, location, a fragment of the core module's message)
FRAGMENT = [
    ("bad-e164-fallback", "campaigns.0.fallback", {"kind": "forward", "number": "5125550100"},
     "campaigns[0].fallback.number", "'5125550100' is not an E.164 phone number"),
    ("bad-e164-blocked", "campaigns.0.blocked_numbers", ["+1 512 555 0199"],
     "campaigns[0].blocked_numbers[0]", "is not an E.164 phone number"),
    ("hours-bad-range", "buyers.0.targets.0.hours", {"weekly": {"mon": "25:00-18:00"}},
     f"{T0}.hours.weekly.mon", "25:00"),
    ("hours-not-a-range", "buyers.0.targets.0.hours", {"weekly": {"weekdays": "8 to late"}},
     f"{T0}.hours.weekly.weekdays", "8 to late"),
    ("hours-overlap", "buyers.0.targets.0.hours", {"weekly": {"mon": "08:00-12:00, 11:00-14:00"}},
     f"{T0}.hours.weekly.mon", "overlap"),
    ("unknown-county", "buyers.0.targets.0.area", {"counties": ["Trvis County, TX"]},
     f"{T0}.area.counties[0]", "Travis County"),
    ("unknown-state", "buyers.0.targets.0.area", {"states": ["XX"]},
     f"{T0}.area.states[0]", "XX"),
]


@pytest.mark.parametrize(("path", "value", "expected"), [c[1:] for c in EXACT], ids=[c[0] for c in EXACT])
def test_each_problem_is_reported_at_its_location(network, problems, network_counts, path, value, expected):
    change(network, path, value)
    assert problems(network) == (expected if isinstance(expected, list) else [expected])
    assert set(network_counts().values()) == {0}


@pytest.mark.parametrize(("path", "value", "location", "fragment"), [c[1:] for c in FRAGMENT],
                         ids=[c[0] for c in FRAGMENT])
def test_core_module_messages_are_reported_at_their_location(network, problems, path, value, location,
                                                              fragment):
    change(network, path, value)
    [problem] = problems(network)
    assert problem.startswith(f"{location}: ")
    assert fragment in problem


def test_a_typo_in_a_campaign_does_not_make_its_references_unknown(network, problems):
    change(network, "campaigns.0.payout", "-1")
    assert problems(network) == ["campaigns[0].payout: -1 is negative; amounts must be 0 or more"]


def test_an_entry_with_an_unreadable_key_still_has_its_other_values_checked(network, problems):
    change(network, "campaigns.0.key", None)
    change(network, "campaigns.0.payout", "-1")
    assert problems(network) == [
        "campaigns[0].key: nothing (null) is not a key (letters, digits, '-' and '_', at most 64 characters, "
        "e.g. austin-plumbing)",
        "campaigns[0].payout: -1 is negative; amounts must be 0 or more",
    ]


def test_every_problem_in_a_file_is_reported_and_nothing_is_written(network, problems, load, network_counts):
    load(network)
    before = network_counts()
    version = m.NetworkVersion.objects.get(pk=1).version
    change(network, "campaigns.0.payout", "99.00")  # a valid change that must not be written either
    change(network, "campaigns.0.fallback", {"kind": "forward", "number": "5125550100"})
    change(network, "buyers.0.targets.1.campaign", "austn-plumbing")
    change(network, "buyers.0.targets.1.prioriy", 3)
    change(network, "buyers.1.targets.0.area", {"zips": ["78701", "78702", "78703", "99999"]})
    change(network, "buyers.1.targets.0.hours", {"weekly": {"mon": "25:00-18:00"}})
    change(network, "buyers.1.timezone", "Central")
    change(network, "tracking_numbers.0.number", "+1512555")

    found = problems(network)

    locations = [p.split(": ", 1)[0] for p in found]
    assert sorted(locations) == sorted([
        "campaigns[0].fallback.number",
        "buyers[0].targets[1].prioriy",
        "buyers[0].targets[1].campaign",
        "buyers[1].timezone",
        "buyers[1].targets[0].area.zips[3]",
        "buyers[1].targets[0].hours.weekly.mon",
        "tracking_numbers[0].number",
    ])
    assert network_counts() == before
    assert m.Campaign.objects.get().payout == Decimal("15.00")
    assert m.NetworkVersion.objects.get(pk=1).version == version


def test_checks_across_the_file_see_entries_with_problems_of_their_own(problems):
    """Duplicates, references and ring-back numbers are checked on every entry whose key or reference can
    be read, so fixing the first batch of problems doesn't reveal a second one."""
    data = {
        "version": 1,
        "campaigns": [{"key": "c1"}],
        "publishers": [{"key": "p1"}],
        "buyers": [{"key": "b0", "targets": [
            {"key": "t1", "campaign": "nope", "number": "5125550182"},
            {"key": "t1", "campaign": "c1", "number": "+15125550183", "price": "-1"},
            {"key": "t2", "campaign": "c1", "number": "+15125550001", "weight": 0},
        ]}],
        "tracking_numbers": [
            {"number": "+15125550001", "campaign": "nope2", "publisher": "p1", "label": ["x"]},
            {"number": "+15125550001", "campaign": "c1", "publisher": "nope3", "active": "yes"},
        ],
    }
    assert sorted(problems(data)) == sorted([
        "buyers[0].targets[0].number: '5125550182' is not an E.164 phone number "
        "(expected +<country><number>, e.g. +15125550100)",
        "buyers[0].targets[1].price: -1 is negative; amounts must be 0 or more",
        "buyers[0].targets[2].weight: 0 is too small (at least 1)",
        "tracking_numbers[0].label: expected text, got a list",
        "tracking_numbers[1].active: expected true or false, got 'yes'",
        "buyers[0].targets[1].key: duplicate key 't1' (also buyers[0].targets[0])",
        "tracking_numbers[1].number: +15125550001 is listed twice (also tracking_numbers[0])",
        "buyers[0].targets[0].campaign: unknown campaign 'nope' (known: c1)",
        "tracking_numbers[0].campaign: unknown campaign 'nope2' (known: c1)",
        "tracking_numbers[1].publisher: unknown publisher 'nope3' (known: p1)",
        "buyers[0].targets[2].number: +15125550001 is a tracking number (tracking_numbers[0]); "
        "calls would ring back into the platform",
    ])


def test_a_campaign_with_an_invalid_key_hides_only_the_references_meaning_it(problems):
    data = {"version": 1,
            "campaigns": [
                {"key": "austin plumbing", "fallback": {"kind": "voicemail", "number": "+15125550001"}},
                {"key": "denver-roofing"},
            ],
            "publishers": [{"key": "p1"}],
            "buyers": [{"key": "b1", "targets": [
                {"key": "t1", "campaign": "denvr-roofing", "number": "+15125550101"},
                {"key": "t2", "campaign": "austin-plumbing", "number": "+15125550102"},
            ]}],
            "tracking_numbers": [
                {"number": "+15125550001", "campaign": "austin-plumbing", "publisher": "p1"},
            ]}
    assert problems(data) == [
        "campaigns[0].key: 'austin plumbing' is not a key (letters, digits, '-' and '_', "
        "at most 64 characters, e.g. austin-plumbing)",
        "buyers[0].targets[0].campaign: unknown campaign 'denvr-roofing' (known: denver-roofing)",
        "campaigns[0].fallback.number: +15125550001 is a tracking number (tracking_numbers[0]); "
        "calls would ring back into the platform",
    ]


def test_every_key_given_twice_is_reported_with_the_other_problems(tmp_path, problems):
    path = tmp_path / "network.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        campaigns:
          - key: a
            payout: "1.00"
            payout: "2.00"
          - key: b
            name: B
            name: C
            ring_timeout: 1
        """))
    assert problems(path) == [
        "line 5, column 5: not valid YAML: the key 'payout' is given twice in one mapping (first on line 4)",
        "line 8, column 5: not valid YAML: the key 'name' is given twice in one mapping (first on line 7)",
        "campaigns[1].ring_timeout: 1 is too small (at least 5)",
    ]


def test_a_yaml_syntax_error_gives_line_and_column(tmp_path, problems):
    path = tmp_path / "network.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        campaigns:
          - key: austin-plumbing
            name: "Austin Plumbing
        buyers: []
        """))
    [problem] = problems(path)
    assert problem.startswith("line 6, column 1: not valid YAML: found unexpected end of stream")
    assert "starts on line 4, column 11" in problem


@pytest.mark.parametrize(("text", "where", "code"), [
    ("version: 1\x00\n", "line 1, column 11", "0000"),
    ("version: 1\ncampaigns:\n  - key: \u00e9t\u00e9\n    name: \"a\x07b\"\n", "line 4, column 13", "0007"),
], ids=["nul", "after-accented-letters"])
def test_a_character_yaml_does_not_allow_gives_line_and_column(tmp_path, problems, text, where, code):
    path = tmp_path / "network.yaml"
    path.write_bytes(text.encode())
    assert problems(path) == [
        f"{where}: not valid YAML: the character U+{code} is not allowed in a YAML file; remove it"]


def test_a_key_given_twice_in_one_mapping_is_an_error(tmp_path, problems):
    path = tmp_path / "network.yaml"
    path.write_text("version: 1\ncampaigns:\n  - key: a\n    payout: '1.00'\n    payout: '2.00'\n")
    assert problems(path) == [
        "line 5, column 5: not valid YAML: the key 'payout' is given twice in one mapping (first on line 4)"
    ]


def test_a_key_merged_from_an_anchor_can_be_given_again(tmp_path, load):
    """YAML's merge key: ``<<: *defaults`` then the key written again, which wins."""
    path = tmp_path / "network.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        campaigns:
          - &plumbing
            key: austin-plumbing
            name: Austin Plumbing
            payout: "15.00"
          - <<: *plumbing
            key: dallas-plumbing
            name: Dallas Plumbing
        """))
    load(path)
    assert dict(m.Campaign.objects.values_list("key", "payout")) == {
        "austin-plumbing": Decimal("15.00"), "dallas-plumbing": Decimal("15.00")}
    assert m.Campaign.objects.get(key="dallas-plumbing").name == "Dallas Plumbing"


def test_a_date_that_does_not_exist_gives_line_and_column(tmp_path, problems):
    path = tmp_path / "network.yaml"
    path.write_text("version: 1\ncampaigns:\n  - key: a\n    name: 2026-02-30\n")
    assert problems(path) == [
        "line 4, column 11: not valid YAML: '2026-02-30' is not a real date (day is out of range for month)"]


def test_a_county_fips_code_with_a_leading_zero_must_be_quoted(tmp_path, problems, load):
    """YAML reads 04017 (Navajo County, AZ) as the octal number 2063 and 06037 as 3103: never another
    county, and the problem quotes the code as written. A code with no leading zero (48453, Travis County,
    TX) reads as itself, quoted or not."""
    path = tmp_path / "network.yaml"
    text = textwrap.dedent("""\
        version: 1
        campaigns: [{key: c}]
        buyers:
          - key: b
            targets:
              - {key: t, campaign: c, number: "+15125550150", area: {counties: [COUNTIES]}}
        """)
    path.write_text(text.replace("COUNTIES", "04017, 06037"))
    assert problems(path) == [
        'buyers[0].targets[0].area.counties[0]: 04017 is read by YAML as 2063 (octal): write FIPS codes in '
        'quotes, e.g. "04017"',
        'buyers[0].targets[0].area.counties[1]: 06037 is read by YAML as 3103 (octal): write FIPS codes in '
        'quotes, e.g. "06037"']
    path.write_text(text.replace("COUNTIES", '"04017", 48453'))
    load(path)
    assert m.Target.objects.get().area == {"counties": ["04017", "48453"]}


def test_missing_and_empty_files(tmp_path, problems):
    assert problems(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: no such file"]
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    assert problems(tmp_path / "empty.yaml") == ["the file is empty (start with 'version: 1')"]


def test_a_path_that_is_no_readable_yaml_file_says_what_it_is(tmp_path, problems):
    """One reader for ``network load`` and ``sim traffic --network`` (``network/yamlfile.py``): ``/dev/zero``
    was read until memory ran out (a ``MemoryError`` traceback), bytes that aren't UTF-8 were Python's
    codec message, a file nested too deeply for the parser a ``RecursionError``."""
    assert problems(tmp_path) == [f"{tmp_path}: is a directory, not a file"]
    assert problems("/dev/zero") == ["/dev/zero: is not a file"]
    (tmp_path / "latin1.yaml").write_bytes(b"version: 1\ncampaigns: [{key: caf\xe9}]\n")
    assert problems(tmp_path / "latin1.yaml") == [
        "line 2, column 22: not UTF-8 text (byte 0xE9): a network file is YAML, saved as UTF-8"]
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    [deep] = problems(tmp_path / "deep.yaml")
    assert deep.startswith("line 1, column ") and ": not valid YAML: " in deep


def test_yaml_numbers_are_read_as_exact_decimals(tmp_path, load):
    path = tmp_path / "network.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        campaigns:
          - {key: c, payout: 0.1}
        buyers:
          - key: b
            targets:
              - key: t
                campaign: c
                number: "+15125550150"
                price: 45.1
                area: {radius: [{zip: "78701", miles: 7.5}]}
        """))
    load(path)
    assert m.Campaign.objects.get().payout == Decimal("0.10")
    target = m.Target.objects.get()
    assert target.price == Decimal("45.10")
    assert target.area == {"radius": [{"zip": "78701", "miles": 7.5}]}


def test_references_to_campaigns_in_the_database_are_allowed_unless_pruning(network, load, problems):
    load(network)
    partial = {"version": 1, "buyers": [
        {"key": "new-buyer",
         "targets": [{"key": "new-t", "campaign": "austin-plumbing", "number": "+15125550160"}]},
    ]}
    report = load(partial)
    assert report.counts["targets"]["created"] == 1
    assert problems(partial, prune=True) == [
        "buyers[0].targets[0].campaign: unknown campaign 'austin-plumbing' (none defined)"
    ]


def test_a_number_that_is_a_tracking_number_in_the_database_is_refused(network, load, problems):
    load(network)  # +15125550101 is one of its tracking numbers
    partial = {"version": 1,
               "campaigns": [{"key": "austin-plumbing", "name": "Austin Plumbing",
                              "fallback": {"kind": "forward", "number": "+15125550101"}}],
               "buyers": [{"key": "new-buyer", "timezone": "America/Chicago",
                           "targets": [{"key": "new-t", "campaign": "austin-plumbing", "number": "+15125550101"}]}]}
    assert problems(partial) == [
        "buyers[0].targets[0].number: +15125550101 is a tracking number (already in the database); "
        "calls would ring back into the platform",
        "campaigns[0].fallback.number: +15125550101 is a tracking number (already in the database); "
        "calls would ring back into the platform",
    ]


def test_check_only_writes_nothing(network, network_counts):
    report = load_network(network, check_only=True)
    assert not report.written
    assert set(network_counts().values()) == {0}


def test_network_error_is_a_value_error_listing_problems(network):
    change(network, "version", 3)
    with pytest.raises(ValueError, match="version: 3 is not a version") as info:
        load_network(network)
    assert isinstance(info.value, NetworkError)
    assert info.value.problems[0].location == "version"
