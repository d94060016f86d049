"""A problem that quotes a number quotes it as it was written: YAML 1.1 reads an unquoted ``0123`` as 83
(octal), ``0x1F`` as 31 and ``8:00`` as 480 (base 60), and ``83 is not a key`` sent the reader looking for
an 83 the file doesn't hold.

Each case writes one value of the valid base network (``conftest.BASE_NETWORK``) as raw YAML text and
expects exactly one problem, at its location, and nothing written.
"""

from __future__ import annotations

import textwrap

import pytest
import yaml

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
