"""A caller whose ZIP is only guessed from the area code (no carrier ZIP, no IVR) is routed as of unknown
location near that area code, not as being in the one ZIP guessed (the area code's most populous).

Given a buyer serving only the guessed ZIP who refuses callers of unknown location, and a buyer serving
downtown Austin who takes them, when a 512 caller comes in with no ZIP, then the downtown buyer is rung
and the other one is out of area; a buyer serving no ZIP of the area code is out of area too. The
guess is still recorded on the call (``zip_source = area_code``).
"""

from __future__ import annotations

import pytest

from callbroker.calls import services
from callbroker.calls.events import InboundCall
from callbroker.calls.models import Call
from callbroker.core.geo import ZipDirectory
from callbroker.network.loader import load_network
from callbroker.network.models import Target
from callbroker.network.snapshot import reset_snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def network(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.REDIS_URL = ""
    reset_snapshot()
    guess = ZipDirectory.default().zip_for_area_code("512")
    assert guess != "78701"
    load_network({
        "version": 1,
        "campaigns": [{"key": "austin", "name": "Austin", "category": "plumbing", "payout": "10.00",
                       "ivr": {"ask_zip": "never"}, "fallback": {"kind": "message", "message": "Closed."}}],
        "buyers": [{"key": "b", "name": "B", "timezone": "America/Chicago", "targets": [
            {"key": "guessed-zip-only", "campaign": "austin", "number": "+15125550161", "priority": 1,
             "area": {"zips": [guess]}, "accepts_unknown_location": False},
            {"key": "downtown", "campaign": "austin", "number": "+15125550162", "priority": 2,
             "area": {"zips": ["78701", "78702"]}},
            {"key": "dallas", "campaign": "austin", "number": "+12145550163", "priority": 2,
             "area": {"zips": ["75201"]}},
        ]}],
        "publishers": [{"key": "p", "name": "P"}],
        "tracking_numbers": [{"number": "+15125550060", "campaign": "austin", "publisher": "p"}],
    })
    yield guess
    reset_snapshot()


def test_a_caller_located_by_area_code_only_is_near_it_not_in_one_zip(network):
    steps = services.start_call(InboundCall(call_sid="CA" + "1" * 32, account_sid="AC" + "0" * 32,
                                            from_raw="+15124440199", to="+15125550060"))
    assert [getattr(step, "number", None) for step in steps][-1] == "+15125550162"  # downtown
    call = Call.objects.get()
    assert (call.caller_zip, call.zip_source) == (network, "area_code")  # the guess is still recorded
    ids = {t.key: t.pk for t in Target.objects.all()}
    assert call.decision["ring"] == [ids["downtown"]]
    assert sorted(call.decision["excluded"]["out_of_area"]) == sorted([ids["guessed-zip-only"], ids["dallas"]])
