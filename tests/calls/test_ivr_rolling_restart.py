"""A call this release started whose ZIP the previous release took during a rolling restart: the category
answer that follows is taken (review22)."""

from __future__ import annotations

from callbroker.calls.models import Call
from tests.calls.test_degraded_ivr import IVR, ROOFER, carrier, recorded  # noqa: F401 - the fixture


def test_a_category_answer_after_the_previous_release_asked_the_question_is_taken(carrier):
    """Rolling restart: the new release answered the inbound webhook (``ivr_prompt = zip``), a node of the
    previous release took the ZIP and asked the category question, which doesn't know ``ivr_prompt`` and
    leaves it ``zip``; the caller's "1" then reaches a new node. It was taken for a stray answer: the
    caller was hung up on, the call left at the IVR."""
    call = carrier.call(IVR, FromZip="80202", FromState="CO")
    carrier.voice(call)
    assert recorded(call).ivr_prompt == "zip"
    # What the previous release's zip_entered writes (8b4f6da): the ZIP typed, its state and city; no ivr_prompt.
    Call.objects.filter(call_sid=call["CallSid"]).update(caller_zip="80203", zip_source="ivr", caller_state="CO",
                                                        caller_city="Denver")
    answer = carrier.category(call, "1")
    assert ROOFER in answer
    assert (recorded(call).stage, recorded(call).category_confirmed) == ("dialing", True)
