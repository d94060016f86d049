""""Why did (or didn't) my call convert?": the words ``callbroker calls show`` prints for a real call.

Given the e2e network (tests/e2e/network.yaml), when the emulator plays a call through the real server, then
the text a publisher or buyer reads says what the call record says, and nothing that isn't so.
"""

from __future__ import annotations

import itertools

import pytest

from callbroker.sim.emulator import BuyerBehaviour

pytestmark = pytest.mark.e2e

PLUMBING = "+15125550001"
PIPES_A, PIPES_B, PIPES_C = "+15125550101", "+15125550102", "+15125550103"
_callers = itertools.count(1000)


def new_caller() -> str:
    """A caller of this file's own (the duplicate and velocity rules never reach another file's calls)."""
    return f"+1512445{next(_callers):04d}"


def answers(talk: int) -> BuyerBehaviour:
    return BuyerBehaviour(answers=True, ring_seconds=4, talk_seconds=talk)


def shown(server, call_sid: str) -> list[str]:
    return server.cli("calls", "show", call_sid).stdout.splitlines()


def section(lines: list[str], title: str) -> list[str]:
    """The lines of one section of ``calls show`` (its title to the next blank line)."""
    start = lines.index(title)
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start + 1:end]


def test_buyers_who_never_talked_are_not_said_to_have_talked(server, carrier):
    # given a caller whom the first buyer doesn't answer, the second is busy for, the third talks to
    record = carrier.place_call(PLUMBING, new_caller(), params={"FromZip": "78701"}, buyers={
        PIPES_A: BuyerBehaviour(answers=False, ring_seconds=40), PIPES_B: BuyerBehaviour(busy=True),
        PIPES_C: answers(95)})
    # when the call is shown
    attempts = section(shown(server, record.call_sid), "Attempts")
    # then only the leg that was bridged says how long the buyer talked
    assert [line.rsplit("→ ", 1)[1] for line in attempts] == ["No answer", "Busy", "Connected"]
    assert [("talked" in line) for line in attempts] == [False, False, True]
    assert "talked 95 s" in attempts[2]


VERIFIED, KEYS = "+15125550006", "+15125550131"  # the campaign requires verified caller ID; its line: 30 s


def reasons(server, call_sid: str) -> list[str]:
    """The Qualification section's reasons, ``code: words``."""
    lines = section(shown(server, call_sid), "Qualification")
    return [line.removeprefix("    - ") for line in lines if line.startswith("    - ")]


def test_below_the_buffer_names_the_buffer_that_applied(server, carrier):
    # given one call a second short of the plumbing campaign's 60 s, one a second short of the locksmith's
    # own 30 s (its campaign's buffer is 60 s: it talked enough by that one), and one exactly at it
    plumber = carrier.place_call(PLUMBING, new_caller(), params={"FromZip": "78701"}, buyers={PIPES_A: answers(59)})
    verified = {"StirVerstat": "TN-Validation-Passed-A"}
    locksmith = carrier.place_call(VERIFIED, new_caller(), params=verified, buyers={KEYS: answers(29)})
    at_it = carrier.place_call(VERIFIED, new_caller(), params=verified, buyers={KEYS: answers(30)})
    # then each says how long the buyer talked, and how long it had to
    assert reasons(server, plumber.call_sid) == ["below_buffer: talked 59 s with the buyer; 60 s needed"]
    assert reasons(server, locksmith.call_sid) == [
        "below_buffer: talked 29 s with the buyer; 30 s needed (this buyer's own minimum)"]
    assert server.call(at_it.call_sid)["verdict"] == "billable" and reasons(server, at_it.call_sid) == []


def test_a_caller_id_never_verified_is_not_said_to_have_failed(server, carrier):
    # given a campaign that requires verified caller ID: one call the carrier gave no result for, one that
    # failed verification, and one that failed it and was too short, from an anonymous caller
    unverified = carrier.place_call(VERIFIED, new_caller(), buyers={KEYS: answers(90)})
    spoofed = carrier.place_call(VERIFIED, new_caller(), params={"StirVerstat": "TN-Validation-Failed-B"},
                                 buyers={KEYS: answers(90)})
    anonymous = carrier.place_call(VERIFIED, None, params={"StirVerstat": "TN-Validation-Failed-C"},
                                   buyers={KEYS: answers(10)})
    # then each reason says what the carrier gave, and only the stored reasons are shown
    assert reasons(server, unverified.call_sid) == [
        "failed_attestation: the campaign requires verified caller ID; the carrier gave no result"]
    assert reasons(server, spoofed.call_sid) == [
        "failed_attestation: caller ID verification failed (TN-Validation-Failed-B): the number may be spoofed"]
    codes = [reason["code"] for reason in server.call(anonymous.call_sid)["reasons"]]
    assert codes == ["below_buffer", "anonymous_caller", "failed_attestation"]
    assert reasons(server, anonymous.call_sid) == [
        "below_buffer: talked 10 s with the buyer; 30 s needed (this buyer's own minimum)",
        "anonymous_caller: the caller's number was withheld or invalid",
        "failed_attestation: caller ID verification failed (TN-Validation-Failed-C): the number may be spoofed"]


def test_a_caller_the_campaign_blocks_is_not_said_to_be_blocked_by_the_buyer(server, carrier):
    # given a caller whose number starts with a prefix the locksmith campaign blocks (its line blocks none)
    record = carrier.place_call(VERIFIED, "+15126660001", params={"StirVerstat": "TN-Validation-Passed-A"},
                                buyers={KEYS: answers(90)})
    assert record.dials == []
    lines = shown(server, record.call_sid)
    # then the line left out is not said to block the number itself, and the reason names the prefix
    line_id = server.call(record.call_sid)["decision"]["excluded"][0]["id"]
    assert (f"    - Keys Co / Quick line [#{line_id}]: caller's number blocked by the campaign or this line"
            " (caller_blocked)") in section(lines, "Routing")
    assert reasons(server, record.call_sid) == [
        "not_connected: the caller was never connected to a buyer",
        "blocked_number: +15126660001 starts with the blocked prefix +1512666"]


def test_the_label_of_an_unverified_caller_id_is_true_of_a_call_never_verified(server, carrier):
    # given a call the carrier gave no STIR/SHAKEN result for, on a campaign that requires one
    record = carrier.place_call(VERIFIED, new_caller(), buyers={KEYS: answers(90)})
    # then its reason's label (--json, the admin's tooltip) doesn't say a verification failed
    call = server.call(record.call_sid)
    assert call["caller"]["stir_verstat"] is None
    assert call["reasons"] == [{"code": "failed_attestation",
                                "label": "caller ID not verified (STIR/SHAKEN failed, or no result where required)"}]
