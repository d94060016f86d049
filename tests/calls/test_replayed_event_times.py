"""A carrier webhook answered from memory is logged at the time it was received, not when it was replayed.

Given the e2e network and a signing carrier, when the database is away while a call's webhooks come (each
answered from memory and spooled with its own ``received_at``) and the spool is replayed two hours later
(the clock frozen there), then each of the call's ``CallEvent`` rows says when its webhook was received:
the spooled line's time, as the call's own facts (started, the leg's end, ended) already did. A webhook
handled live after the replay is stamped with the time it came, as before. The record made from a final
status alone (``status_only``) carries that status's time too. Until 2026-12-07 ``received_at`` was set on
insert (``auto_now_add``), whatever the replay gave: after an outage of hours, the event log said the
carrier's webhooks came when the replay ran. And a final status that reached a node whose database was back
(kept for the call) ended the replayed call, and closed its leg still ringing, at the replay's time, not
the status's: the call ended, and the leg rang, two hours longer than they did.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from callbroker.calls import replay, services, spool
from callbroker.calls.models import Call, CallAttempt, CallEvent
from tests.hostile.strategies import PlumbingCaller, outage_on_e2e_network

LATER = dt.timedelta(hours=2)  # how long after the outage the spool is replayed


@pytest.fixture
def carrier(transactional_db, settings, tmp_path, monkeypatch):
    """The e2e network, a signing carrier, an outage to switch on, and a replay only when the test says."""
    monkeypatch.setattr(replay, "ensure_running", lambda: None)
    yield from outage_on_e2e_network(settings, tmp_path, monkeypatch, Carrier)


class Carrier(PlumbingCaller):
    """Signed webhooks of one caller to the plumbing number; ``down``: the outage."""

    def bridged(self, answer: str, sid: str, talk: int) -> str:
        """The buyer our answer dialled talked ``talk`` seconds: its Dial action."""
        url = urlsplit(html.unescape(re.search(r'<Dial action="([^"]+)"', answer).group(1)))
        return self.post(f"{url.path}?{url.query}", {**self.inbound(sid), "DialCallStatus": "completed",
                                                     "DialBridged": "true", "DialCallDuration": str(talk),
                                                     "DialCallSid": "CA" + "d" * 32})

    def ended(self, sid: str, seconds: int) -> str:
        return self.post("/carriers/twilio/status", {**self.inbound(sid), "CallStatus": "completed",
                                                     "CallDuration": str(seconds), "SequenceNumber": "4"})


def spooled_times(sid: str) -> dict[str, dt.datetime]:
    """Each spooled event's ``received_at``, by the dedupe key it is stored under."""
    return {replay.event_key(sid, line): dt.datetime.fromisoformat(line["received_at"])
            for line in spool.read(spool.path_of(sid))}


def logged_times(sid: str) -> dict[str, dt.datetime]:
    return dict(CallEvent.objects.filter(call_sid=sid).values_list("dedupe_key", "received_at"))


def replayed_at(moment: dt.datetime, monkeypatch) -> None:
    """The database is back: the replayer's pass, run with the clock frozen at ``moment``."""
    with monkeypatch.context() as clock:
        clock.setattr(timezone, "now", lambda: moment)
        assert replay.replay_ready().errors == []


def test_the_events_of_a_call_spooled_during_an_outage_keep_the_times_they_were_received(carrier, monkeypatch):
    sid = "CA" + uuid.uuid4().hex
    carrier.down = True
    answer = carrier.voice(sid)
    carrier.bridged(answer, sid, 85)
    carrier.ended(sid, 100)
    carrier.down = False
    spooled = spooled_times(sid)
    assert [key.split(":")[1] for key in spooled] == ["voice", "dial", "status"]
    # Degraded mode notes when the leg and the call ended (before giving their slots back), a moment before
    # it writes the line.
    dial, status = (dt.datetime.fromisoformat(line["ended_at"]) for line in spool.read(spool.path_of(sid))[1:])
    later = max(spooled.values()) + LATER

    replayed_at(later, monkeypatch)

    assert not spool.path_of(sid).exists()
    assert logged_times(sid) == spooled  # not ``later``: when the carrier posted each webhook
    call = Call.objects.get(call_sid=sid)  # its facts: the outage's times too, as before
    assert (call.started_at, call.ended_at, call.talk_seconds, call.verdict) == (
        spooled[f"{sid}:voice"], status, 85, "billable")
    assert CallAttempt.objects.get(call=call).ended_at == dial

    with monkeypatch.context() as clock:  # a webhook handled live, after the replay: stamped as it comes
        clock.setattr(timezone, "now", lambda: later)
        live = "CA" + uuid.uuid4().hex
        assert "<Dial" in carrier.voice(live)
    assert logged_times(live) == {f"{live}:voice": later}


def test_a_final_status_kept_as_a_call_of_its_own_is_logged_at_that_status_time(carrier, monkeypatch):
    """Its inbound webhook died in the worker: only its final status came, during the outage; an hour of
    replays later it is kept as a call (``status_only``), both events at the time the status came."""
    sid = "CA" + uuid.uuid4().hex
    carrier.down = True
    carrier.ended(sid, 42)
    carrier.down = False
    (received,) = spooled_times(sid).values()
    replayed_at(received + dt.timedelta(seconds=1), monkeypatch)  # waits for another node's spool
    replay._waiting_since[spool.path_of(sid).name] -= replay.STATUS_ONLY_AFTER

    replayed_at(received + LATER, monkeypatch)

    assert Call.objects.get(call_sid=sid).fallback_applied == services.STATUS_ONLY
    assert logged_times(sid) == {f"{sid}:status:completed:4": received, f"{sid}:{services.STATUS_ONLY}": received}


def test_a_final_status_handled_live_before_its_call_was_replayed_ends_the_call_when_it_came(
        carrier, settings, tmp_path, monkeypatch):
    """The call was routed from memory on this node; its final status reached a node whose database was back
    (kept for the call, ``services.call_status``); this node's spool is replayed two hours later. The call
    ends, and its leg still ringing is closed, when the status came, not when the replay ran."""
    sid = "CA" + uuid.uuid4().hex
    carrier.down = True
    assert "<Dial" in carrier.voice(sid)
    carrier.down = False
    settings.DATA_DIR = tmp_path / "b"  # another node, the database up: the status is kept for the call
    carrier.ended(sid, 30)
    assert not Call.objects.filter(call_sid=sid).exists()
    came = logged_times(sid)[f"{sid}:status:completed:4"]
    settings.DATA_DIR = tmp_path

    replayed_at(came + LATER, monkeypatch)

    call = Call.objects.get(call_sid=sid)
    assert (call.stage, call.final_status, call.duration_seconds, call.ended_at) == ("ended", "completed", 30, came)
    leg = CallAttempt.objects.get(call=call)
    rang = int((came - leg.started_at).total_seconds())  # until the status came, not for two hours more
    assert (leg.result, leg.ended_at, leg.ring_seconds) == ("canceled", came, rang)
    assert not spool.path_of(sid).exists()
