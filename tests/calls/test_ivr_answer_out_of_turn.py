"""An IVR answer out of turn leaves the key of the answer the call waits for later to that answer.

Given the e2e network (e2e-ivr asks the ZIP, then "If you need a roofer, press 1."; its roofer serves
80202-80204) and signed webhooks through the real views, when an answer the call doesn't wait for arrives
(an answer to ZIP prompt 2 while prompt 1 waits, a category answer while the ZIP is asked: a delayed retry,
the carrier's duplicate of another request), then it changes nothing and is stored apart, and the caller's
real answer, once that prompt is asked, is taken, live and replayed after an outage. Until the fix the stray
answer was stored under the key of the answer in turn (``zip:2``, ``category``), and the caller's real
answer was taken for its duplicate: answered with its ``<Hangup/>``, the ZIP typed never read, the call left
at the IVR; a real answer handled in degraded mode was skipped by the replay, the caller's routing never
recorded. A true duplicate of an answer in turn still gets the stored answer and changes nothing.
"""

from __future__ import annotations

import pytest

from callbroker.calls import services
from callbroker.calls.models import Call, CallAttempt, CallEvent
from tests.calls.test_degraded_ivr import IVR, ROOFER, carrier, recorded  # noqa: F401 - the fixture

HANG_UP = "<Response><Hangup /></Response>"


def keys(call: dict[str, str]) -> list[str]:
    """The dedupe keys stored for the call's IVR answers, after its CallSid."""
    sid = call["CallSid"]
    stored = CallEvent.objects.filter(call_sid=sid, kind__startswith="ivr_").order_by("pk")
    return [key.removeprefix(f"{sid}:") for key in stored.values_list("dedupe_key", flat=True)]


def at_prompt_1(carrier, *, previous_release: bool = False) -> dict[str, str]:
    """A roofing caller the inbound webhook asked for the ZIP (prompt 1); ``previous_release``: the call as
    a node of the previous release writes it, its question not recorded."""
    call = carrier.call(IVR, FromZip="", FromState="CO")
    assert "ivr/zip?attempt=1" in carrier.voice(call)
    if previous_release:
        Call.objects.filter(call_sid=call["CallSid"]).update(ivr_prompt="")
    return call


@pytest.mark.parametrize("previous_release", [False, True], ids=["question recorded", "previous release's call"])
def test_a_zip_for_prompt_2_posted_while_prompt_1_waits_leaves_prompt_2_to_the_caller(carrier, previous_release):
    call = at_prompt_1(carrier, previous_release=previous_release)
    assert HANG_UP in carrier.zip(call, "80204", attempt=2)  # stray: prompt 2 isn't asked
    assert (recorded(call).caller_zip, recorded(call).zip_attempts) == ("", 1)
    reprompt = carrier.zip(call, "00000")  # the caller's own answer to prompt 1: not a ZIP we know
    assert "ivr/zip?attempt=2" in reprompt
    if previous_release:
        Call.objects.filter(call_sid=call["CallSid"]).update(ivr_prompt="")
    question = carrier.answer(reprompt, call, "80203")
    assert "press 1" in question  # was <Hangup/>: the stray answer's, stored under zip:2
    taken = recorded(call)
    assert (taken.caller_zip, taken.zip_source, taken.zip_attempts, taken.stage) == ("80203", "ivr", 2, "ivr")
    assert keys(call) == ["zip:2:out-of-turn", "zip:1", "zip:2"]
    assert ROOFER in carrier.answer(question, call, "1")
    assert (recorded(call).stage, recorded(call).category_confirmed) == ("dialing", True)


def test_the_answer_in_turn_delivered_again_gets_its_answer_and_changes_nothing(carrier, monkeypatch):
    """Again after it was stored, and again having looked for the stored answer before the first delivery
    committed (it then waited for the call's lock): it finds the call moved on, the answer out of turn, and
    must answer what the first delivery answered, not a hang-up stored apart."""
    call = at_prompt_1(carrier)
    carrier.zip(call, "80204", attempt=2)
    reprompt = carrier.zip(call, "00000")
    question = carrier.answer(reprompt, call, "80203")
    assert carrier.answer(reprompt, call, "80203") == question
    real = services._stored_answer_and_version
    monkeypatch.setattr(services, "_stored_answer_and_version", lambda event: (None, real(event)[1]))
    assert carrier.answer(reprompt, call, "80203") == question
    taken = recorded(call)
    assert (taken.caller_zip, taken.ivr_prompt, taken.zip_attempts, taken.stage) == ("80203", "category", 2, "ivr")
    assert keys(call) == ["zip:2:out-of-turn", "zip:1", "zip:2"]


def test_a_category_answer_while_the_zip_is_asked_leaves_the_question_to_the_caller(carrier):
    call = at_prompt_1(carrier)
    assert HANG_UP in carrier.category(call, "2")  # stray: the question isn't asked
    question = carrier.zip(call, "80203")
    dialled = carrier.answer(question, call, "1")
    assert ROOFER in dialled  # was <Hangup/>, the call left at the question
    taken = recorded(call)
    assert (taken.stage, taken.category_confirmed) == ("dialing", True)
    assert carrier.category(call, "1") == dialled  # the answer delivered again
    assert CallAttempt.objects.filter(call=taken).count() == 1
    assert keys(call) == ["category:out-of-turn", "zip:1", "category"]


def test_the_caller_s_answer_to_prompt_2_handled_in_degraded_mode_is_replayed_after_a_stray_one(carrier):
    """The stray answer came live; the database was away when the caller answered prompt 2: the caller was
    routed from memory (the roofer rung), and the replay skipped the answer as a duplicate of the stray one:
    the call stayed at the IVR, its typed ZIP and the roofer's leg never recorded."""
    call = at_prompt_1(carrier)
    carrier.zip(call, "80204", attempt=2)
    reprompt = carrier.zip(call, "00000")
    carrier.down = True
    answer = carrier.answer(reprompt, call, "80203")
    carrier.down = False
    assert ROOFER in answer
    carrier.replay()
    routed = recorded(call)
    assert (routed.caller_zip, routed.zip_source, routed.stage) == ("80203", "ivr", "dialing")
    assert routed.decision["degraded"] and routed.decision["caller_zip"] == "80203"
    assert CallAttempt.objects.filter(call=routed).count() == 1
    assert keys(call) == ["zip:2:out-of-turn", "zip:1", "zip:2"]


def test_a_stray_zip_replayed_out_of_turn_is_not_taken_later_for_the_caller_s_answer(carrier, settings, tmp_path):
    """A stray answer to prompt 2 (posted as after the caller hung up) reached this node during an outage and
    was replayed while prompt 1 waited: out of turn, stored apart. The call's file stays until it ends, and
    is replayed at every pass; prompt 1 was then answered on another node and prompt 2 asked: the next pass
    must not take this line for prompt 2's answer (it was applied once, out of turn), nor the caller's
    answer, which comes after, for a duplicate of it."""
    call = at_prompt_1(carrier)
    carrier.down = True
    assert HANG_UP in carrier.zip({**call, "CallStatus": "completed"}, "80204", attempt=2)
    carrier.down = False
    carrier.replay()
    assert keys(call) == ["zip:2:out-of-turn"]
    assert (recorded(call).caller_zip, recorded(call).zip_attempts, recorded(call).stage) == ("", 1, "ivr")
    settings.DATA_DIR = tmp_path / "b"  # another node, the database back
    reprompt = carrier.zip(call, "00000")
    settings.DATA_DIR = tmp_path / "a"
    carrier.replay()  # the file's next pass: the stray line again
    assert (recorded(call).caller_zip, recorded(call).ivr_prompt, recorded(call).zip_attempts) == ("", "zip", 2)
    settings.DATA_DIR = tmp_path / "b"
    assert "press 1" in carrier.answer(reprompt, call, "80203")
    assert (recorded(call).caller_zip, recorded(call).ivr_prompt) == ("80203", "category")
    assert keys(call) == ["zip:2:out-of-turn", "zip:1", "zip:2"]



def stray_yes_then_the_question(carrier, call: dict[str, str]) -> tuple[str, str]:
    assert HANG_UP in carrier.category(call, "1")  # stray: the question isn't asked
    return carrier.zip(call, "80203"), "1"


def stray_zip_for_prompt_2_then_prompt_2(carrier, call: dict[str, str]) -> tuple[str, str]:
    assert HANG_UP in carrier.zip(call, "80203", attempt=2)  # stray: prompt 2 isn't asked
    return carrier.zip(call, "00000"), "80203"


@pytest.mark.parametrize("asked", [stray_yes_then_the_question, stray_zip_for_prompt_2_then_prompt_2],
                         ids=lambda f: f.__name__)
def test_the_caller_s_answer_in_degraded_mode_is_replayed_when_a_stray_one_had_the_same_keys(carrier, asked):
    """The stray answer came live and pressed what the caller then pressed at the prompt (a yes is one key):
    the caller's answer, handled from memory, carries the same parameters. The replay took it for the stray
    line itself, replayed again, and skipped it: the caller's answer and the roofer's leg never recorded, the
    call left at the IVR (its Dial action then waiting for a leg that never comes). Live takes that answer;
    so does the replay now."""
    call = at_prompt_1(carrier)
    prompt, keys_pressed = asked(carrier, call)
    carrier.down = True
    answer = carrier.answer(prompt, call, keys_pressed)  # the caller's own answer, the stray one's keys
    carrier.down = False
    assert ROOFER in answer
    carrier.replay()
    routed = recorded(call)
    assert (routed.stage, routed.caller_zip, routed.ivr_prompt) == ("dialing", "80203", "none")
    assert CallAttempt.objects.filter(call=routed).count() == 1
    assert keys(call)[-1] == keys(call)[0].removesuffix(":out-of-turn")  # the caller's, under its own key
