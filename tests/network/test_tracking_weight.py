"""A tracking number's ``weight`` (its share of the calls ``callbroker sim traffic --network`` places) in a
network file the platform loads: ``network load`` refused the whole file (``unknown key 'weight'``), so a
file written for the emulator could not be loaded. It is now checked by the emulator's rule and not kept
(no call is routed by it); ``network export`` has none to write, and the emulator, given the export, picks
its seeded weights as for any tracking number without one."""

from __future__ import annotations

import io
import textwrap

import pytest
import yaml
from django.core.management import call_command

from callbroker.network import models as m
from callbroker.network.yamlfile import read_yaml
from callbroker.sim.network_file import check_network, read_network_file
from callbroker.sim.traffic import generate_day

pytestmark = pytest.mark.django_db


def test_a_file_with_tracking_number_weights_loads_and_the_export_plans_traffic(network, load, zip_directory,
                                                                                tmp_path):
    network["tracking_numbers"].append({"number": "+15125550102", "campaign": "austin-plumbing",
                                        "publisher": "metro-search", "label": "Bing"})
    network["tracking_numbers"][0]["weight"] = 3
    network["tracking_numbers"][1]["weight"] = 0.5
    assert check_network(network, zip_directory) == []  # what the emulator takes …

    load(network)  # … the platform loads
    assert m.TrackingNumber.objects.count() == 2
    network["tracking_numbers"][0]["weight"] = 7
    assert not load(network).changed  # nothing kept of it: nothing to update
    out = io.StringIO()
    call_command("network", "export", stdout=out)
    exported = yaml.safe_load(out.getvalue())
    assert all("weight" not in tracking for tracking in exported["tracking_numbers"])
    path = tmp_path / "exported.yaml"
    path.write_text(out.getvalue())
    day = read_network_file(path)
    assert check_network(day, zip_directory) == []
    planned = generate_day(day, calls=40, seed=3, directory=zip_directory)
    assert {call.tracking_number for call in planned} == {"+15125550101", "+15125550102"}  # seeded weights


@pytest.mark.parametrize("weight", ["0", "-2", "1000001", "many", "true", "0x10", ".nan"])
def test_the_loader_refuses_a_weight_as_the_emulator_does(tmp_path, zip_directory, problems, weight):
    """One rule, one message at one place, whichever command reads the file."""
    path = tmp_path / "network.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        campaigns: [{{key: c, fallback: {{kind: message, message: Sorry.}}}}]
        publishers: [{{key: p}}]
        tracking_numbers:
          - {{number: "+15125550101", campaign: c, publisher: p, weight: {weight}}}
        """))
    emulator = [str(p) for p in check_network(read_yaml(path)[0], zip_directory)]
    assert len(emulator) == 1 and emulator[0].startswith("tracking_numbers[0].weight: ")
    assert problems(path) == emulator
    assert not m.TrackingNumber.objects.exists()
