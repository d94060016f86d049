"""``sim traffic --network FILE``: whatever is wrong with the file is one line naming it and the problem
(exit code 2), never a traceback; what the plan reads is checked as the network loader checks it."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from decimal import Decimal

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from callbroker.network.parsing import NetworkError
from callbroker.sim.network_file import check_network
from callbroker.sim.traffic import generate_day
from tests.sim.test_sim_traffic import DIRECTORY, NETWORK, TOKEN, run_cli


def _with(path: str, value: object) -> dict:
    """NETWORK with the value at ``path`` (``buyers.0.targets.1.area``) replaced."""
    network = copy.deepcopy(NETWORK)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    at = network
    for key in parents:
        at = at[key]
    at[last] = value
    return network


@pytest.mark.parametrize(("content", "says"), [
    # what the reviewer ran: each was a traceback (or "not found" for a directory)
    (b"foo: [\n", "line 2, column 1: not valid YAML: "),
    (b"- a\n", "expected a mapping with campaigns, buyers and tracking_numbers, got a list"),
    (b"campaigns: 5\n", "campaigns: expected a list, got 5"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "line 1, column 1: not UTF-8 text (byte 0x89)"),
    (b"a: 1\nb: x\xff\n", "line 2, column 5: not UTF-8 text (byte 0xFF)"),
    (b"a: 1\nb: 'x\x00y'\n", "line 2, column 6: not valid YAML: the character U+0000 is not allowed in a YAML file"),
    (b"a: 2026-02-30\n", "line 1, column 4: not valid YAML: '2026-02-30' is not a real date"),
    (b"a: !!python/object:os.system x\n", "line 1, column 4: not valid YAML: "),
    (b"[" * 5000, "not valid YAML"),
    (b"", "the file is empty"),
    (b"just text\n", "expected a mapping with campaigns, buyers and tracking_numbers, got 'just text'"),
    # read as the network loader reads it: a key given twice is a problem, every one of them counted
    (b"a: 1\nb: 2\na: 3\nb: 4\n",
     "line 3, column 1: not valid YAML: the key 'a' is given twice in one mapping (first on line 1) "
     "(and 1 more problem)"),
    (yaml.safe_dump({"tracking_numbers": [{"number": "+15125550001"}]}).encode(),
     "tracking_numbers[0].campaign: missing"),
    (yaml.safe_dump({"tracking_numbers": ["+15125550001"]}).encode(),
     "tracking_numbers[0]: expected a mapping, got '+15125550001'"),
    (yaml.safe_dump(_with("buyers.0.targets", {"key": "a"})).encode(),
     "buyers[0].targets: expected a list, got a mapping"),
    (yaml.safe_dump(_with("buyers.0.targets.0.area.zips", ["99999", "7870"])).encode(),
     "buyers[0].targets[0].area.zips[0]: 99999 is not a known ZIP code (and 1 more problem)"),
    (yaml.safe_dump(_with("tracking_numbers.1.number", 15125550002)).encode(),
     "tracking_numbers[1].number: 15125550002 is a number, not an E.164 phone number"),
    (yaml.safe_dump(_with("campaigns.0.ivr", "always")).encode(), "campaigns[0].ivr: expected a mapping"),
    (yaml.safe_dump(_with("campaigns.0.blocked_prefixes", "+1900")).encode(),
     "campaigns[0].blocked_prefixes: expected a list, got '+1900'"),
    (yaml.safe_dump(_with("tracking_numbers.0.weight", 0)).encode(),
     "tracking_numbers[0].weight: expected a number above 0"),
    # a number YAML would misread (0x10 is 16, 02134 is the octal 1116) is refused, as the loader refuses it
    (b"tracking_numbers:\n  - {number: \"+15125550001\", campaign: c, weight: 0x10}\n",
     "tracking_numbers[0].weight: 0x10 is read by YAML as 16 (hexadecimal): write 16"),
    (b"buyers:\n  - targets: [{campaign: c, area: {zips: [02134]}}]\n",
     'buyers[0].targets[0].area.zips[0]: 02134 is read by YAML as 1116 (octal): write ZIP codes in quotes, '
     'e.g. "02134"'),
])
def test_a_bad_network_file_is_one_line_naming_it_and_the_problem(server, tmp_path, capsys, content, says):
    path = tmp_path / "net.yaml"
    path.write_bytes(content)
    code = run_cli(["traffic", "--url", server.url, "--token", TOKEN, "--network", str(path)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.splitlines() == [err.rstrip("\n")] and err.startswith(f"callbroker sim: network file {path}: ")
    assert says in err, err
    assert server.requests == []  # no call placed


@pytest.mark.parametrize(("make", "says"), [
    (lambda tmp: tmp / "nope.yaml", "no such file"),
    (lambda tmp: tmp, "is a directory, not a file"),  # was: "not found"
    (lambda tmp: "/dev/zero", "is not a file"),  # would never end
])
def test_a_path_that_is_no_readable_file_says_what_it_is(server, tmp_path, capsys, make, says):
    path = make(tmp_path)
    code = run_cli(["traffic", "--url", server.url, "--token", TOKEN, "--network", str(path)])
    assert code == 2 and capsys.readouterr().err == f"callbroker sim: network file {path}: {says}\n"


def test_the_command_line_prints_no_traceback(server, tmp_path):
    """Through ``callbroker`` itself, as the reviewer ran it."""
    path = tmp_path / "bad.yaml"
    path.write_text("foo: [\n")
    result = subprocess.run([sys.executable, "-m", "callbroker.cli", "sim", "traffic", "--url", server.url,
                             "--network", str(path)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "TWILIO_AUTH_TOKEN": TOKEN})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"callbroker sim: network file {path}: line 2, column 1: not valid YAML: "
                             "did not find expected node content (while parsing a flow node)\n")


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 100_000), st.floats(), st.text(max_size=12),
                 st.lists(st.one_of(st.integers(), st.text(max_size=6), st.none()), max_size=3),
                 st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=6)),
                                 max_size=3))


def _places(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _places(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _places(item, (*path, i))


PLACES = [p for p in _places(NETWORK) if p]
KEYS = ("key", "campaign", "number", "area", "targets", "ivr", "blocked_prefixes", "weight", "active",
        "zips", "radius", "states", "counties", "exclude_zips", "ask_zip", "confirm_category")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PLACES), st.sampled_from((None, *KEYS)), JUNK), min_size=1,
                max_size=3))
def test_any_file_is_planned_or_refused_with_its_problems_never_an_exception(changes):
    """Any value anywhere (or any key the plan reads, added anywhere): a plan, or a ``NetworkError``."""
    network = copy.deepcopy(NETWORK)
    for place, key, value in changes:
        at = network
        try:
            for step in place[:-1]:
                at = at[step]
            if key is None:
                at[place[-1]] = value
            elif isinstance(at[place[-1]], dict):
                at[place[-1]][key] = value
        except (KeyError, IndexError, TypeError):  # an earlier change replaced the way there
            continue
    try:
        generate_day(network, calls=5, seed=1, directory=DIRECTORY)
    except NetworkError as exc:
        assert exc.problems and all(p.location for p in exc.problems)  # each at its place in the file


def test_the_packaged_demo_and_the_tests_network_have_no_problem():
    from callbroker.core.geo import ZipDirectory
    from callbroker.sim.cli import DEMO_NETWORK
    from callbroker.sim.network_file import read_network_file

    assert check_network(NETWORK, DIRECTORY) == []
    assert check_network(read_network_file(DEMO_NETWORK), ZipDirectory.default()) == []


@pytest.mark.parametrize("weights", [(10**400,), (1e308, 1e308), (float("nan"),), (Decimal("NaN"),)],
                         ids=["too big for a float", "adding up to infinity", "nan", "decimal nan"])
def test_a_weight_that_can_not_share_out_the_calls_is_a_problem_at_its_place(weights):
    network = copy.deepcopy(NETWORK)
    for tracking, weight in zip(network["tracking_numbers"], weights, strict=False):
        tracking["weight"] = weight
    with pytest.raises(NetworkError) as refused:
        generate_day(network, calls=3, seed=1, directory=DIRECTORY)
    assert [p.location for p in refused.value.problems][:1] == ["tracking_numbers[0].weight"]
