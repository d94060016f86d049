"""An IVR answer handled in degraded mode is recorded as live records it.

Given the e2e network and a call whose inbound webhook was answered live with the IVR, when the database
is away as the caller answers (the webhook is answered from memory with a ``<Dial>`` and spooled) and the
call is replayed, bridged and ended afterwards, then:

- the answer to the category question is judged as ``services.category_answered`` judges it: "2" is a
  no (``wrong_category``, nothing charged or paid, although the caller was connected), "1" a yes, no key
  unknown, each the verdict the same call gets live; a "no" whose final status came first (through a
  node whose database was back) still counts; an answer out of turn (the ZIP still awaited) changes
  nothing, as live. Until the fix the answer was dropped: a caller who said no was billed.
- a typed ZIP is recorded as typed (``zip_source = ivr``, with its state and city, inside the buyer's
  area), routes from memory as live routes it, and plays the recording disclosure as live plays it: when
  the typed ZIP calls for it, not a second time for a caller who heard it at the start. Until the fix it
  was recorded as the carrier's ZIP, without a city; a spool file written then replays right.
"""

from __future__ import annotations

import dataclasses
import html
import re
import uuid
from itertools import count
from urllib.parse import urlsplit

import pytest
from django.test import Client

from callbroker.billing.models import LedgerEntry
from callbroker.calls import degraded, replay, spool
from callbroker.calls.events import InboundCall
from callbroker.calls.models import Call
from callbroker.network.loader import load_network
from callbroker.network.models import Campaign, TargetState
from callbroker.network.snapshot import current_snapshot, reset_snapshot
from tests.hostile.strategies import E2E_NETWORK, SignedCarrier, signing_carrier_settings

IVR = "+15125550003"  # e2e-ivr: asks the ZIP always, then "If you need a roofer, press 1."
ROOFER = "+13035550101"  # its one line, serving 80202-80204
PLUMBING = "+15125550001"  # e2e-plumbing: asks the ZIP when the carrier gives none; records calls
PIPES_A, PIPES_C = "+15125550101", "+15125550103"  # Austin ZIPs; anywhere in Texas
CALLERS = count(1)


@pytest.fixture
def carrier(transactional_db, settings, tmp_path, monkeypatch):
    """The e2e network, a signing carrier, an outage to switch on, and no background replayer."""
    signing_carrier_settings(settings, tmp_path / "a")
    settings.COUNTERS_BACKEND = "sql"
    monkeypatch.setattr(replay, "ensure_running", lambda: None)
    monkeypatch.setattr(replay, "replay_now", lambda call_sid: None)  # the replay comes when the test says
    reset_snapshot()
    load_network(E2E_NETWORK)
    current_snapshot()
    yield Carrier(Client(raise_request_exception=True), monkeypatch)
    reset_snapshot()


class Carrier(SignedCarrier):
    """Signed webhooks through the test client; follows the callback URLs of our answers."""

    def __init__(self, client: Client, monkeypatch) -> None:
        super().__init__(client, monkeypatch)
        self.monkeypatch = monkeypatch

    def call(self, to: str, **carrier: str) -> dict[str, str]:
        """A new caller (a number of their own: no duplicate or velocity rule between the tests' calls)."""
        return {"CallSid": "CA" + uuid.uuid4().hex, "AccountSid": "AC" + "7" * 32,
                "From": f"+1720555{next(CALLERS):04d}", "To": to, "CallStatus": "in-progress",
                "Direction": "inbound", **carrier}

    def voice(self, call: dict[str, str]) -> str:
        return self.post("/carriers/twilio/voice", call)

    def zip(self, call: dict[str, str], digits: str, attempt: int = 1) -> str:
        return self.post(f"/carriers/twilio/ivr/zip?attempt={attempt}", {**call, "Digits": digits})

    def category(self, call: dict[str, str], digits: str) -> str:
        return self.post("/carriers/twilio/ivr/category", {**call, "Digits": digits})

    def answer(self, question: str, call: dict[str, str], digits: str) -> str:
        """The caller's keys at the question our answer asked, posted to its Gather action URL."""
        url = urlsplit(html.unescape(re.search(r'<Gather action="([^"]+)"', question).group(1)))
        return self.post(f"{url.path}?{url.query}" if url.query else url.path, {**call, "Digits": digits})

    def bridged(self, answer: str, call: dict[str, str], talk: int) -> str:
        """The buyer our answer dialled talked ``talk`` seconds: its Dial action."""
        action = html.unescape(re.search(r'<Dial action="([^"]+)"', answer).group(1))
        url = urlsplit(action)
        return self.post(f"{url.path}?{url.query}", {**call, "DialCallStatus": "completed", "DialBridged": "true",
                                                     "DialCallDuration": str(talk), "DialCallSid": "CA" + "d" * 32})

    def unanswered(self, answer: str, call: dict[str, str]) -> str:
        """The buyer our answer dialled didn't answer: its Dial action."""
        action = html.unescape(re.search(r'<Dial action="([^"]+)"', answer).group(1))
        url = urlsplit(action)
        return self.post(f"{url.path}?{url.query}", {**call, "DialCallStatus": "no-answer", "DialCallDuration": "0"})

    def ended(self, call: dict[str, str], seconds: int) -> str:
        return self.post("/carriers/twilio/status", {**call, "CallStatus": "completed",
                                                     "CallDuration": str(seconds), "SequenceNumber": "9"})

    def replay(self) -> None:
        """The database is back: the replayer's pass (a call in progress keeps its file: its next webhooks
        are spooled after it, and replayed by the next pass)."""
        assert replay.replay_ready().errors == []


def over(carrier: Carrier, call: dict[str, str]) -> Call:
    """The replay after the call ended: everything applied, the spool file gone."""
    carrier.replay()
    assert not spool.path_of(call["CallSid"]).exists()
    return Call.objects.get(call_sid=call["CallSid"])


def recorded(call: dict[str, str]) -> Call:
    return Call.objects.get(call_sid=call["CallSid"])


def held_slots() -> int:
    return sum(TargetState.objects.values_list("active_calls", flat=True))


def answered_at_the_category_question(carrier: Carrier, digits: str, *, outage: bool) -> Call:
    """A roofing caller types an in-area ZIP, then answers the question (during an outage, or live); the
    roofer takes the call for 120 s and the call ends."""
    call = carrier.call(IVR, FromZip="80202", FromState="CO")
    assert "<Gather" in carrier.voice(call)
    assert "press 1" in carrier.zip(call, "80203")
    carrier.down = outage
    answer = carrier.category(call, digits)
    carrier.down = False
    assert ROOFER in answer  # yes or no, the caller is connected
    carrier.replay()
    carrier.bridged(answer, call, 120)
    carrier.ended(call, 150)
    return over(carrier, call)


@pytest.mark.parametrize(("digits", "confirmed", "billable"), [("2", False, False), ("1", True, True),
                                                                ("", None, True), ("9", False, False)])
def test_a_category_answer_handled_in_degraded_mode_is_judged_as_live(carrier, digits, confirmed, billable):
    degraded = answered_at_the_category_question(carrier, digits, outage=True)
    live = answered_at_the_category_question(carrier, digits, outage=False)
    assert degraded.decision["degraded"] and "degraded" not in live.decision
    assert degraded.connected_target_id is not None and degraded.talk_seconds == 120
    for call in (degraded, live):
        assert call.category_confirmed is confirmed
        assert (call.verdict == "billable") is billable
        assert ("wrong_category" in call.reason_codes) is (confirmed is False)
    assert degraded.reason_codes == live.reason_codes and degraded.revenue == live.revenue
    entries = LedgerEntry.objects.filter(call_sid=degraded.call_sid).count()
    assert entries == (2 if billable else 0)  # a "no" is neither charged nor paid out


@pytest.mark.parametrize(("carrier_zip", "typed", "rung"), [("", "80203", True), ("80202", "90210", False)],
                         ids=["no ZIP from the carrier", "the carrier's ZIP in the area, the typed one not"])
def test_a_category_answer_from_memory_routes_with_the_zip_typed_live(carrier, carrier_zip, typed, rung):
    """The caller typed the ZIP live; the database went away at the question. Degraded mode, which can't read
    the typed ZIP from the database, routed the answer with the carrier's ZIP or as of unknown location: the
    roofer (no callers of unknown location) was passed over for the fallback, or rung for a caller outside
    his area (not billable). The question's action URL carries the ZIP typed, as live routes with it."""
    call = carrier.call(IVR, FromZip=carrier_zip, FromState="CO")
    carrier.voice(call)
    question = carrier.zip(call, typed)
    carrier.down = True
    answer = carrier.answer(question, call, "1")
    carrier.down = False
    live = carrier.call(IVR, FromZip=carrier_zip, FromState="CO")
    carrier.voice(live)
    live_answer = carrier.answer(carrier.zip(live, typed), live, "1")
    assert (ROOFER in answer, ROOFER in live_answer) == (rung, rung)
    carrier.replay()
    routed = recorded(call).decision
    assert (routed["degraded"], routed["caller_zip"], routed["zip_source"]) == (True, typed, "ivr")
    assert routed["ring"] == recorded(live).decision["ring"]
    assert (recorded(call).caller_zip, recorded(call).zip_source) == (typed, "ivr")


def test_a_no_spooled_before_a_final_status_handled_elsewhere_still_counts(carrier, settings, tmp_path):
    call = carrier.call(IVR, FromZip="80202", FromState="CO")
    carrier.voice(call)
    carrier.zip(call, "80203")
    carrier.down = True
    assert ROOFER in carrier.category(call, "2")
    carrier.down = False
    settings.DATA_DIR = tmp_path / "b"  # the final status reaches a node whose database is back: ends the call
    carrier.ended(call, 20)
    assert recorded(call).reason_codes == ["not_connected"]
    settings.DATA_DIR = tmp_path / "a"
    ended = over(carrier, call)
    assert (ended.stage, ended.category_confirmed, ended.verdict) == ("ended", False, "not_billable")
    assert ended.reason_codes == ["not_connected", "wrong_category"]  # as live: the answer is a fact of the call


@pytest.mark.parametrize("status_first", [True, False], ids=["final status handled elsewhere first",
                                                          "final status spooled after it"])
def test_a_leg_dialled_from_memory_is_not_left_ringing_when_the_call_ends_without_its_dial_action(
        carrier, settings, tmp_path, status_first):
    """The caller hung up while the roofer rang and no Dial action came: the replayed leg stayed ``ringing`` on
    an ended call (the end of the call closed only the legs holding a slot of the call path, and a leg replayed
    after the end was written as it was dialled)."""
    call = carrier.call(IVR, FromZip="80202", FromState="CO")
    carrier.voice(call)
    carrier.zip(call, "80203")
    carrier.down = True
    assert ROOFER in carrier.category(call, "1")
    carrier.down = False
    if status_first:
        settings.DATA_DIR = tmp_path / "b"  # a node whose database is back ends the call
        carrier.ended(call, 20)
        settings.DATA_DIR = tmp_path / "a"
    else:
        carrier.ended(call, 20)
    ended = over(carrier, call)
    [leg] = ended.attempts.all()
    assert (leg.result, leg.slot_held, leg.ended_at) == ("canceled", False, ended.ended_at)
    assert leg.ring_seconds == max(0, int((ended.ended_at - leg.started_at).total_seconds()))
    assert (ended.stage, ended.reason_codes, held_slots()) == ("ended", ["not_connected"], 0)


@pytest.mark.parametrize(("leg", "result", "verdict"), [("no-answer", "no-answer", "not_billable"),
                                                        ("bridged", "bridged", "billable")])
def test_a_leg_closed_at_the_replay_still_records_its_late_dial_action(carrier, settings, tmp_path, leg, result,
                                                                        verdict):
    """A Dial action that comes after all records what the leg did, as for a leg the live path dialled."""
    call = carrier.call(IVR, FromZip="80202", FromState="CO")
    carrier.voice(call)
    carrier.zip(call, "80203")
    carrier.down = True
    answer = carrier.category(call, "1")
    carrier.down = False
    settings.DATA_DIR = tmp_path / "b"
    carrier.ended(call, 150)
    settings.DATA_DIR = tmp_path / "a"
    carrier.replay()
    assert recorded(call).attempts.get().result == "canceled"
    if leg == "bridged":
        carrier.bridged(answer, call, 120)
    else:
        carrier.unanswered(answer, call)
    ended = over(carrier, call)
    assert (ended.attempts.get().result, ended.verdict, held_slots()) == (result, verdict, 0)


def test_a_category_answer_out_of_turn_changes_nothing_as_live(carrier):
    call = carrier.call(IVR, FromZip="80202", FromState="CO")
    carrier.voice(call)  # the ZIP prompt: its answer, not the category's, is awaited
    carrier.down = True
    answer = carrier.category(call, "2")
    carrier.down = False
    carrier.replay()
    carrier.bridged(answer, call, 120)  # degraded mode connected the caller: recorded
    carrier.ended(call, 150)
    assert (over(carrier, call).category_confirmed, recorded(call).verdict) == (None, "billable")


@pytest.mark.parametrize(("to", "carrier_zip", "answer", "recorded_as"), [
    (IVR, "80202", ("category", "2"), ("category_confirmed", False)),
    (PLUMBING, "", ("zip", "78701"), ("caller_zip", "78701")),
], ids=["category", "ZIP"])
def test_an_ivr_answer_posted_after_the_caller_hung_up_rings_no_one_from_memory(carrier, to, carrier_zip, answer,
                                                                                  recorded_as):
    """The Gather action says the caller's call has ended (``CallStatus=completed``): degraded mode dialled a
    buyer for a caller who was gone; the replay records the answer, and nothing rung."""
    call = carrier.call(to, FromZip=carrier_zip, FromState="CO")
    carrier.voice(call)
    if to == IVR:
        carrier.zip(call, "80203")
    kind, digits = answer
    carrier.down = True
    twiml = getattr(carrier, kind)({**call, "CallStatus": "completed"}, digits)
    carrier.down = False
    assert twiml.endswith("<Response><Hangup /></Response>")
    carrier.ended(call, 20)  # spooled after it (the call is degraded on this node)
    ended = over(carrier, call)
    field, value = recorded_as
    assert getattr(ended, field) == value
    assert (ended.decision, ended.attempts.count(), ended.verdict) == (None, 0, "not_billable")


def typed_during_an_outage(carrier: Carrier, to: str, digits: str, **carrier_says: str) -> tuple[str, str, dict]:
    call = carrier.call(to, **carrier_says)
    first = carrier.voice(call)
    assert "<Gather" in first
    carrier.down = True
    answer = carrier.zip(call, digits)
    carrier.down = False
    carrier.replay()
    return first, answer, call


def test_a_zip_typed_in_degraded_mode_is_recorded_as_typed_with_its_city(carrier):
    _first, answer, call = typed_during_an_outage(carrier, PLUMBING, "78701", FromState="TX")
    assert PIPES_A in answer
    carrier.bridged(answer, call, 120)
    carrier.ended(call, 150)
    typed = over(carrier, call)
    assert (typed.caller_zip, typed.zip_source, typed.caller_state, typed.caller_city) == (
        "78701", "ivr", "TX", "Austin")
    assert typed.in_area is True and typed.verdict == "billable" and typed.reason_codes == []
    assert typed.decision["zip_source"] == "ivr"


def test_a_zip_typed_in_degraded_mode_routes_as_live(carrier):
    _first, answer, call = typed_during_an_outage(carrier, PLUMBING, "75201", FromState="TX")  # Dallas
    live = carrier.call(PLUMBING, FromState="TX")
    carrier.voice(live)
    assert PIPES_C in answer and PIPES_C in carrier.zip(live, "75201")  # the only line serving all of Texas
    assert recorded(call).decision["ring"] == recorded(live).decision["ring"]


def test_a_zip_typed_in_degraded_mode_plays_the_disclosure_as_live(carrier):
    disclosure = Campaign.objects.get(key="e2e-plumbing").disclosure_text

    def heard(*answers: str) -> int:
        return sum(answer.count(disclosure) for answer in answers)

    for state, typed, expected in (("TX", "90210", 1), ("TX", "78701", 0), ("", "90210", 1), ("", "78701", 1)):
        first, answer, call = typed_during_an_outage(carrier, PLUMBING, typed, FromState=state)
        live = carrier.call(PLUMBING, FromState=state)
        live_answers = (carrier.voice(live), carrier.zip(live, typed))
        assert heard(first, answer) == heard(*live_answers) == expected, (state, typed)
        assert (recorded(call).zip_source, recorded(call).caller_state) == ("ivr", "CA" if typed == "90210" else "TX")


def test_a_typed_zip_spooled_by_the_previous_version_replays_as_typed(carrier):
    """Its ``inbound`` held the typed ZIP as the carrier's and its facts said ``carrier``."""
    call = carrier.call(PLUMBING, FromState="TX")
    carrier.voice(call)
    old = dataclasses.replace(InboundCall(call["CallSid"], call["AccountSid"], call["From"], PLUMBING,
                                          from_state="TX"), from_zip="78701")
    _steps, facts = degraded.voice(old)
    spool.append(call["CallSid"], {"kind": "ivr_zip", "params": {**call, "Digits": "78701"},
                                   "query": {"attempt": "1"}, "answer": "", **facts,
                                   "inbound": dataclasses.asdict(old)})
    assert facts["zip_source"] == "carrier"
    carrier.replay()
    typed = recorded(call)
    assert (typed.caller_zip, typed.zip_source, typed.caller_city) == ("78701", "ivr", "Austin")
