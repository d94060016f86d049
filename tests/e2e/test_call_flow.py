"""Full calls through the real server, placed by the carrier emulator.

Given the e2e network (tests/e2e/network.yaml), when the emulator plays the carrier's side of a call,
then the call record read back through `callbroker calls show --json` says what happened.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import pytest

from callbroker.sim.emulator import BuyerBehaviour, CallerScript

pytestmark = pytest.mark.e2e

PLUMBING, AFTER_HOURS, IVR, MISSED, CONCURRENCY = (f"+1512555000{i}" for i in range(1, 6))
PIPES_A, PIPES_B, PIPES_C = "+15125550101", "+15125550102", "+15125550103"
ROOF = "+13035550101"
_callers = itertools.count(1000)


def new_caller() -> str:
    """A fresh caller number per test so duplicate and velocity rules don't leak between tests."""
    return f"+1512444{next(_callers):04d}"


def answers(talk: int = 120) -> BuyerBehaviour:
    return BuyerBehaviour(answers=True, ring_seconds=4, talk_seconds=talk)


NO_ANSWER = BuyerBehaviour(answers=False, ring_seconds=40)
BUSY = BuyerBehaviour(busy=True)
DECLINES = BuyerBehaviour(answers=True, declines_whisper=True)


def attempt_results(call: dict) -> list[tuple[str, str]]:
    return [(a["number"], a["result"]) for a in call["attempts"]]


def codes(call: dict) -> list[str]:
    return [r["code"] for r in call["reasons"]]


def refused_codes(decision_pass: dict) -> list[str]:
    return [r["code"] for r in decision_pass.get("refused_at_dial", [])]


def excluded_codes(call: dict) -> dict[str, str]:
    """{target name: exclusion code} over every routing pass."""
    return {e["name"]: e["code"] for p in call["decision"]["passes"] for e in p["excluded"]}


def test_connected_call_is_billable_with_recording(server, carrier):
    record = carrier.place_call(PLUMBING, new_caller(), params={"FromZip": "78701", "FromState": "TX"},
                                buyers={PIPES_A: answers(120)})
    assert [d.number for d in record.dials] == [PIPES_A]
    call = server.call(record.call_sid)
    assert call["verdict"] == "billable"
    assert codes(call) == []
    assert call["revenue"] == "40.00" and call["payout"] == "10.00"
    assert call["talk_seconds"] == 120
    assert call["caller"]["zip"] == "78701" and call["caller"]["zip_source"] == "carrier"
    assert call["recording"]["url"].startswith("https://")
    assert attempt_results(call) == [(PIPES_A, "bridged")]
    assert call["stage"] == "ended"


def test_ring_tree_tries_next_target_until_one_answers(server, carrier):
    record = carrier.place_call(PLUMBING, new_caller(), params={"FromZip": "78702"},
                                buyers={PIPES_A: NO_ANSWER, PIPES_B: BUSY, PIPES_C: answers(90)})
    assert [d.number for d in record.dials] == [PIPES_A, PIPES_B, PIPES_C], record.transcript()
    call = server.call(record.call_sid)
    assert attempt_results(call) == [(PIPES_A, "no-answer"), (PIPES_B, "busy"), (PIPES_C, "bridged")]
    assert call["verdict"] == "billable" and call["revenue"] == "30.00"


def test_short_call_is_below_the_buffer(server, carrier):
    record = carrier.place_call(PLUMBING, new_caller(), params={"FromZip": "78701"}, buyers={PIPES_A: answers(30)})
    call = server.call(record.call_sid)
    assert call["verdict"] == "not_billable"
    assert codes(call) == ["below_buffer"]
    assert call["revenue"] == "0.00"


def test_declined_whisper_is_not_connected_and_ring_tree_ends_in_fallback(server, carrier):
    record = carrier.place_call(PLUMBING, new_caller(), params={"FromZip": "78701"},
                                buyers={PIPES_A: DECLINES, PIPES_B: DECLINES, PIPES_C: DECLINES})
    call = server.call(record.call_sid)
    assert attempt_results(call) == [(PIPES_A, "declined"), (PIPES_B, "declined"), (PIPES_C, "declined")]
    assert call["talk_seconds"] == 0
    assert call["verdict"] == "not_billable" and "not_connected" in codes(call)
    assert call["fallback_applied"] == "message"
    assert "all our plumbers are busy" in record.said


def test_out_of_area_caller_skips_targets_whose_area_excludes_them(server, carrier):
    # 76101 (Fort Worth) is in Texas but outside the Austin ZIP list and the 20-mile radius.
    record = carrier.place_call(PLUMBING, new_caller(), params={"FromZip": "76101"},
                                buyers={PIPES_C: answers(100)})
    assert [d.number for d in record.dials] == [PIPES_C]
    call = server.call(record.call_sid)
    codes = excluded_codes(call)
    assert codes == {"Austin Pipes / Line A": "out_of_area", "Austin Pipes / Line B": "out_of_area"}
    assert call["verdict"] == "billable"


def test_after_hours_call_gets_the_campaign_message(server, carrier):
    record = carrier.place_call(AFTER_HOURS, new_caller())
    assert record.dials == []
    assert "We are closed right now." in record.said
    call = server.call(record.call_sid)
    assert excluded_codes(call) == {"Night Owl HVAC / Never open": "closed"}
    assert call["fallback_applied"] == "message"
    assert codes(call) == ["not_connected"]


def test_ivr_zip_entry_and_category_confirmation(server, carrier):
    record = carrier.place_call(IVR, new_caller(), caller=CallerScript(digits=("80202", "1")),
                                buyers={ROOF: answers(200)})
    assert "may be recorded" in record.said  # disclosure always played on this campaign
    call = server.call(record.call_sid)
    assert call["caller"]["zip"] == "80202" and call["caller"]["zip_source"] == "ivr"
    assert call["caller"]["category_confirmed"] is True
    assert call["verdict"] == "billable" and call["revenue"] == "80.00"


def test_ivr_reprompts_once_after_an_invalid_zip(server, carrier):
    record = carrier.place_call(IVR, new_caller(), caller=CallerScript(digits=("00000", "80203", "1")),
                                buyers={ROOF: answers(200)})
    call = server.call(record.call_sid)
    assert call["caller"]["zip"] == "80203" and call["caller"]["zip_prompts"] == 2
    assert call["verdict"] == "billable"


def test_ivr_routes_as_unknown_after_two_invalid_zips(server, carrier):
    record = carrier.place_call(IVR, new_caller(), caller=CallerScript(digits=("00000", "12", "1")),
                                buyers={"+15125550199": answers(60)})
    call = server.call(record.call_sid)
    assert call["caller"]["zip"] in ("", None) and call["caller"]["zip_source"] == "unknown"
    # The only target refuses callers of unknown location: the campaign forwards to its fallback number.
    assert excluded_codes(call) == {"Roof Co / Main": "out_of_area"}
    assert call["fallback_applied"] == "forward"
    assert [d.number for d in record.dials] == ["+15125550199"]


@pytest.mark.parametrize("key", ["2", "#"])
def test_wrong_category_is_connected_but_not_billable(server, carrier, key):
    record = carrier.place_call(IVR, new_caller(), caller=CallerScript(digits=("80204", key)),
                                buyers={ROOF: answers(200)})
    call = server.call(record.call_sid)
    assert call["caller"]["category_confirmed"] is False
    assert call["verdict"] == "not_billable" and codes(call) == ["wrong_category"]


def test_repeat_caller_goes_back_to_the_same_buyer_and_is_a_duplicate(server, carrier):
    caller = new_caller()
    first = carrier.place_call(PLUMBING, caller, params={"FromZip": "78701"},
                               buyers={PIPES_A: NO_ANSWER, PIPES_B: answers(100)})
    assert server.call(first.call_sid)["verdict"] == "billable"
    second = carrier.place_call(PLUMBING, caller, params={"FromZip": "78701"},
                                buyers={PIPES_A: answers(100), PIPES_B: answers(100)})
    assert second.dials[0].number == PIPES_B  # sticky: the buyer reached last, ahead of priority 1
    call = server.call(second.call_sid)
    assert call["decision"]["passes"][0]["sticky"] is True
    assert call["verdict"] == "not_billable" and codes(call) == ["duplicate"]


def test_missed_calls_pause_a_target_for_a_cool_down(server, carrier):
    sleepy, awake = "+15125550111", "+15125550112"
    for _ in range(2):
        record = carrier.place_call(MISSED, new_caller(), buyers={sleepy: NO_ANSWER, awake: answers(90)})
        assert [d.number for d in record.dials] == [sleepy, awake]
    record = carrier.place_call(MISSED, new_caller(), buyers={sleepy: answers(90), awake: answers(90)})
    assert [d.number for d in record.dials] == [awake]
    call = server.call(record.call_sid)
    assert excluded_codes(call) == {"Sparky Electric / Sleepy line": "paused"}
    assert call["verdict"] == "billable"


def test_concurrency_limit_is_never_exceeded(server):
    from callbroker.sim.emulator import Carrier

    from tests.e2e.conftest import TOKEN

    # Calls overlap in real time: each holds the only line for ~2 s of real time.
    with Carrier(server.base_url, TOKEN, time_scale=0.05, seed=3) as slow:
        with ThreadPoolExecutor(max_workers=4) as pool:
            records = list(pool.map(
                lambda _: slow.place_call(CONCURRENCY, new_caller(), buyers={"+15125550121": answers(40)}),
                range(4)))
    calls = [server.call(r.call_sid) for r in records]
    connected = [c for c in calls if c["talk_seconds"] > 0]
    refused = [c for c in calls if "concurrency_full" in excluded_codes(c).values()
               or any(code == "concurrency_full" for p in c["decision"]["passes"] for code in refused_codes(p))]
    assert len(connected) >= 1
    assert len(connected) + len(refused) == 4
    # No two connected calls overlapped on the one line.
    spans = sorted((a["started_at"], a["ended_at"]) for c in connected for a in c["attempts"] if a["result"] == "bridged")
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end


def test_unknown_tracking_number_is_forwarded_to_the_installation_fallback(server, carrier):
    record = carrier.place_call("+15125559876", new_caller())
    assert [d.number for d in record.dials] == ["+15125550999"]
    call = server.call(record.call_sid)
    assert call["fallback_applied"] == "unknown_number"
    # Ended, so judged: never connected to a buyer, not billable, nothing to pay (not left "pending").
    assert call["stage"] == "ended"
    assert (call["verdict"], [r["code"] for r in call["reasons"]]) == ("not_billable", ["not_connected"])
    assert (call["revenue"], call["payout"]) == ("0.00", "0.00")
