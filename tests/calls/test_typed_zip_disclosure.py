"""A caller who types a ZIP in an all-party-consent state hears the recording disclosure before anything
is recorded, even when the carrier's state (one-party) had made it unnecessary at the start of the call.

Given the e2e network's E2E Plumbing campaign (records calls, asks for the ZIP when the carrier gives none,
no disclosure for callers of one-party states), when a caller whose carrier says TX types 90210 (Beverly
Hills, CA), then the answer to the typed ZIP starts with the disclosure; a typed Texas ZIP adds none; and
a caller of unknown state, who heard it when the call came in, doesn't hear it twice.
"""

from __future__ import annotations

import pytest

from callbroker.calls import services
from callbroker.calls import steps as s
from callbroker.calls.events import InboundCall
from callbroker.calls.models import Call
from callbroker.network.models import Campaign

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

PLUMBING = "+15125550001"


def disclosures(steps) -> list[s.Say]:
    text = Campaign.objects.get(key="e2e-plumbing").disclosure_text
    return [step for step in steps if step == s.Say(text)]


def arrives(n: int, state: str) -> tuple[str, tuple]:
    sid = f"CA{n:032x}"
    steps = services.start_call(InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw=f"+1737555030{n}",
                                            to=PLUMBING, from_state=state))
    assert any(isinstance(step, s.AskZip) for step in steps)
    return sid, steps


def test_a_texan_number_typing_a_california_zip_hears_the_disclosure_before_the_call_goes_on():
    sid, first = arrives(1, "TX")
    assert disclosures(first) == []  # Texas: one-party consent
    after = services.zip_entered(sid, 1, "90210")
    assert disclosures(after) == [after[0]]  # first, before the rest
    assert Call.objects.get(call_sid=sid).caller_state == "CA"


def test_a_typed_zip_of_a_one_party_state_adds_no_disclosure():
    sid, _ = arrives(2, "TX")
    after = services.zip_entered(sid, 1, "78701")
    assert disclosures(after) == []
    assert any(isinstance(step, s.DialTarget) for step in after)


def test_a_caller_who_heard_it_at_the_start_does_not_hear_it_again():
    sid, first = arrives(3, "")  # state unknown: played when the call came in
    assert len(disclosures(first)) == 1
    assert disclosures(services.zip_entered(sid, 1, "90210")) == []
