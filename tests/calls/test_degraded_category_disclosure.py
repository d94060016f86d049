"""A category answer handled from memory plays no recording disclosure: the live call flow played every one
due before it asked the question (review22)."""

from __future__ import annotations

from callbroker.network.models import Campaign
from callbroker.network.snapshot import current_snapshot, reset_snapshot
from tests.calls.test_degraded_ivr import IVR, carrier  # noqa: F401 - the fixture


def test_a_category_answer_from_memory_doesnt_play_the_disclosure_heard_after_the_zip(carrier):
    """The caller (carrier state CO: no disclosure at the start) typed a California ZIP live and heard the
    disclosure right after it, before the question; the database went away at the question. Degraded mode,
    given the ZIP typed (``zip=``), played the disclosure a second time; live plays it once."""
    campaign = Campaign.objects.get(key="e2e-ivr")
    campaign.recording_disclosure = False  # disclose by the caller's state only
    campaign.save()
    reset_snapshot()
    current_snapshot()
    disclosure = campaign.disclosure_text

    def heard(answers):
        return sum(answer.count(disclosure) for answer in answers)

    live = carrier.call(IVR, FromZip="", FromState="CO")
    live_answers = [carrier.voice(live)]
    live_answers.append(carrier.zip(live, "90210"))
    live_answers.append(carrier.answer(live_answers[-1], live, "1"))

    call = carrier.call(IVR, FromZip="", FromState="CO")
    answers = [carrier.voice(call)]
    answers.append(carrier.zip(call, "90210"))
    carrier.down = True
    answers.append(carrier.answer(answers[-1], call, "1"))
    carrier.down = False
    assert heard(live_answers) == 1
    assert heard(answers) == heard(live_answers)
