"""A call the carrier answered through our Fallback URL is recorded, once, without the database in the request.

Given the e2e network and a caller whose inbound webhook failed the carrier (a worker stuck past its 15 s
timeout), when the carrier calls the Fallback URL, then the answer comes from memory with no query, and the
trace it spools becomes a call record on replay: fallback applied by the carrier, not billable
(``not_connected``: the forward it answered reports nothing of a bridge), ended by its final status whether
that was spooled after it, or kept on a node that had no trace of the call. When the slow inbound webhook
was recorded too, the replay makes no second call: the leg the carrier never dialled is closed and its
slot given back; when it commits after the replay, it writes nothing. The carrier calling the Fallback URL
twice (on one node or two) records it once. Until 2026-12-07 the Fallback URL left no trace: the call
existed nowhere, and its final status waited forever.
"""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from callbroker.calls import replay, services, spool
from callbroker.calls.events import InboundCall
from callbroker.calls.models import Call, CallAttempt, CallEvent
from callbroker.network.loader import load_network
from callbroker.network.models import TargetState
from callbroker.network.snapshot import current_snapshot, reset_snapshot
from tests.hostile.strategies import E2E_NETWORK, SignedCarrier, signing_carrier_settings

PLUMBING = "+15125550001"
SOLO = "+15125550005"  # e2e-concurrency: one line, one call at a time
SOLO_LINE = "+15125550121"
INSTALLATION_FALLBACK = "+15125550999"


@pytest.fixture
def carrier(transactional_db, settings, tmp_path, monkeypatch):
    """The e2e network, a signing carrier, and no background replayer: each test replays when it says so."""
    signing_carrier_settings(settings, tmp_path / "a", INSTALLATION_FALLBACK)
    settings.COUNTERS_BACKEND = "sql"
    monkeypatch.setattr(replay, "ensure_running", lambda: None)
    monkeypatch.setattr(replay, "background_pass", lambda sweep_at: (False, sweep_at))
    reset_snapshot()
    load_network(E2E_NETWORK)
    current_snapshot()
    yield Carrier(Client(raise_request_exception=True))
    reset_snapshot()


class Carrier(SignedCarrier):
    def inbound(self, sid: str, to: str) -> dict[str, str]:
        return {"CallSid": sid, "AccountSid": "AC" + "7" * 32, "From": "+15125559876", "To": to,
                "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01", "FromZip": "78701"}

    def voice(self, sid: str, to: str) -> str:
        return self.post("/carriers/twilio/voice", self.inbound(sid, to))

    def fallback(self, sid: str, to: str) -> str:
        return self.post("/carriers/twilio/fallback", {**self.inbound(sid, to), "ErrorCode": "11205",
                                                       "ErrorUrl": "https://calls.example/carriers/twilio/voice"})

    def ended(self, sid: str, to: str, seconds: int = 40) -> str:
        return self.post("/carriers/twilio/status", {**self.inbound(sid, to), "CallStatus": "completed",
                                                     "CallDuration": str(seconds), "SequenceNumber": "3"})


def assert_recorded_from_the_fallback(sid: str, *, seconds: int = 40) -> Call:
    call = Call.objects.get(call_sid=sid)
    assert (call.stage, call.fallback_applied, call.final_status, call.duration_seconds) == (
        "ended", services.CARRIER_FALLBACK, "completed", seconds)
    assert (call.verdict, call.connected_target_id) == ("not_billable", None)
    assert "not_connected" in call.reason_codes
    assert CallEvent.objects.filter(call_sid=sid, kind="fallback").count() == 1
    assert not spool.path_of(sid).exists()
    return call


def test_the_fallback_url_answers_without_the_database_and_its_call_is_recorded(carrier):
    sid = "CA" + "f1" * 16
    with CaptureQueriesContext(connection) as queries:
        answer = carrier.fallback(sid, PLUMBING)
    assert queries.captured_queries == []
    assert "<Dial" in answer and INSTALLATION_FALLBACK in answer
    assert [e["kind"] for e in spool.read(spool.path_of(sid))] == ["fallback"]

    # The call's file marks it on this node: its final status is spooled after the trace, and replayed
    # (at once, the database answering this worker, or by the replayer).
    carrier.ended(sid, PLUMBING)
    replay.replay_ready()
    call = assert_recorded_from_the_fallback(sid)
    assert call.campaign_id is not None and call.to_number == PLUMBING and call.caller_zip == "78701"
    assert call.revenue == call.payout == 0
    assert not CallAttempt.objects.filter(call=call).exists()


def test_a_final_status_kept_on_another_node_ends_the_call_recorded_from_the_fallback(carrier, settings, tmp_path):
    sid = "CA" + "f2" * 16
    carrier.fallback(sid, PLUMBING)  # node a
    settings.DATA_DIR = tmp_path / "b"
    carrier.ended(sid, PLUMBING, seconds=25)  # node b, database up: no such call yet, kept
    assert CallEvent.objects.filter(call_sid=sid, kind="status").count() == 1 and not Call.objects.exists()
    settings.DATA_DIR = tmp_path / "a"
    replay.replay_ready()
    assert_recorded_from_the_fallback(sid, seconds=25)


def test_the_carrier_calling_the_fallback_url_twice_records_it_once(carrier, settings, tmp_path):
    sid = "CA" + "f3" * 16
    first = carrier.fallback(sid, PLUMBING)
    assert carrier.fallback(sid, PLUMBING) == first
    assert [e["kind"] for e in spool.read(spool.path_of(sid))] == ["fallback"]  # once on a node
    settings.DATA_DIR = tmp_path / "b"
    carrier.fallback(sid, PLUMBING)  # and once more on another node
    carrier.ended(sid, PLUMBING)
    for node in ("a", "b", "a"):
        settings.DATA_DIR = tmp_path / node
        replay.replay_ready()
    assert Call.objects.filter(call_sid=sid).count() == 1
    assert_recorded_from_the_fallback(sid)
    assert not (tmp_path / "a" / "spool" / f"{sid}.jsonl").exists()


def test_an_inbound_webhook_recorded_too_late_for_the_carrier_makes_no_second_call(carrier):
    """The Voice URL answered a Dial after the carrier gave up on it: the carrier followed the fallback's
    forward, so the line it reserved was never dialled; its slot is given back and the call not billed."""
    sid = "CA" + "f4" * 16
    assert SOLO_LINE in carrier.voice(sid, SOLO)  # recorded, the one line reserved: too late for the carrier
    assert CallAttempt.objects.get(call__call_sid=sid).slot_held
    carrier.fallback(sid, SOLO)
    replay.replay_ready()
    call = Call.objects.get(call_sid=sid)
    attempt = CallAttempt.objects.get(call=call)
    assert (call.stage, call.fallback_applied) == ("fallback", services.CARRIER_FALLBACK)
    assert (attempt.result, attempt.slot_held, attempt.ring_seconds) == ("failed", False, 0)
    assert TargetState.objects.get(target_id=attempt.target_id).active_calls == 0
    assert SOLO_LINE in carrier.voice("CA" + "f5" * 16, SOLO)  # the line takes the next caller

    carrier.ended(sid, SOLO)
    replay.replay_ready()
    assert_recorded_from_the_fallback(sid)
    assert Call.objects.filter(call_sid=sid).count() == 1


def test_an_inbound_webhook_committed_after_the_fallback_was_recorded_writes_nothing(carrier):
    """The stuck worker gets the write lock only after the replay recorded the call from the fallback."""
    sid = "CA" + "f6" * 16
    carrier.fallback(sid, SOLO)
    replay.replay_ready()
    with transaction.atomic():  # the stuck worker's inbound webhook, already past the degraded-mode check
        steps = services.start_call(InboundCall(sid, "AC" + "7" * 32, "+15125559876", SOLO, from_zip="78701"))
    assert steps == (services.s.Hangup(),)
    call = Call.objects.get(call_sid=sid)
    assert (call.stage, call.fallback_applied) == ("fallback", services.CARRIER_FALLBACK)
    assert not CallAttempt.objects.filter(call=call).exists()

    # A late retry reaching this node, where the call is still marked: spooled, replayed, nothing dialled.
    carrier.voice(sid, SOLO)
    carrier.ended(sid, SOLO)
    replay.replay_ready()
    assert_recorded_from_the_fallback(sid)
    assert not CallAttempt.objects.filter(call__call_sid=sid).exists()


def test_a_fallback_request_that_names_no_call_leaves_no_trace(carrier):
    answer = carrier.post("/carriers/twilio/fallback", {"CallSid": "not-a-sid", "To": PLUMBING, "ErrorCode": "11200"})
    assert INSTALLATION_FALLBACK in answer
    assert spool.files() == []


def test_a_fallback_for_a_failed_dial_action_leaves_the_call_to_its_dial_result(carrier):
    """The carrier calls the Fallback URL for a failed action URL too (``ErrorUrl`` names it). That call was
    recorded by its inbound webhook; the slow Dial action that failed the carrier still commits, and its
    bridge is billed. A trace made the replay close the call as the fallback's (leg ``failed``, not
    billable) and the late Dial action recorded nothing."""
    import re

    sid = "CA" + "f7" * 16
    answer = carrier.voice(sid, SOLO)
    action = re.search(r'action="([^"]+)"', answer).group(1).replace("&amp;", "&")
    assert "/carriers/twilio/dial?" in action
    carrier.post("/carriers/twilio/fallback", {**carrier.inbound(sid, SOLO), "ErrorCode": "11205",
                                               "ErrorUrl": action, "CallStatus": "in-progress"})
    assert not spool.path_of(sid).exists()  # no trace: the call is in the database
    replay.replay_ready()
    path = action.split("http://testserver", 1)[-1]
    carrier.post(path, {**carrier.inbound(sid, SOLO), "CallStatus": "in-progress", "DialCallStatus": "completed",
                        "DialCallSid": "CA" + "d7" * 16, "DialCallDuration": "120", "DialBridged": "true"})
    carrier.ended(sid, SOLO, seconds=150)
    call = Call.objects.get(call_sid=sid)
    assert (call.verdict, call.fallback_applied, call.talk_seconds) == ("billable", "", 120)
    assert call.connected_target_id is not None
    assert [a.result for a in CallAttempt.objects.filter(call=call)] == ["bridged"]
