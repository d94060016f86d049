"""Spool files that wait: tried less often, their reason shown, and a final status alone kept as a call.

Given the e2e network and a signing carrier, when the database is away and only a call's final status
reaches a node (its inbound webhook died in the worker: no event of it exists anywhere), then, once the
database is back, the status waits for an hour of replays (another node's spool may still hold the call)
and is then kept as a call of its own — the caller, the number called, its campaign, its duration, ended,
never billable (``status_only``, ``not_connected``) — instead of waiting six hours and being dropped; with
Redis, the call's plan there goes with it. A routing event or a bridged Dial action of the call replayed
later, or its inbound webhook handled live later, makes no second call and no bridge. A file left waiting
unchanged (here a call answered by the carrier's Fallback URL, whose final status hasn't come) is tried at
every pass for a minute, then less and less often (at most every five minutes), at once when a line is
added to it, and the replayer logs once why it waits; ``callbroker spool status`` says why for each file.
Until 2026-12-07 both files were replayed every second for six hours, and the final status was dropped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import logging
import uuid

import pytest
from django.core.management import call_command
from django.db import transaction

from callbroker.billing.models import LedgerEntry
from callbroker.calls import degraded, replay, services, spool
from callbroker.calls.events import DialOutcome, InboundCall
from callbroker.calls.models import Call, CallAttempt, CallEvent
from callbroker.ops import limits as rate_limits
from tests.hostile.strategies import PlumbingCaller, outage_on_e2e_network
from tests.hostile.strategies import PLUMBING_CALLER as CALLER
from tests.hostile.strategies import PLUMBING_NUMBER as PLUMBING



@pytest.fixture
def carrier(transactional_db, settings, tmp_path, monkeypatch):
    """The e2e network, a signing carrier, an outage to switch on, and a replay only when the test says."""
    yield from outage_on_e2e_network(settings, tmp_path / "a", monkeypatch, Carrier)


class Carrier(PlumbingCaller):
    """Signed webhooks of one caller to the plumbing number; ``down``: the outage."""

    def fallback(self, sid: str) -> str:
        return self.post("/carriers/twilio/fallback", {**self.inbound(sid), "ErrorCode": "11205",
                                                       "ErrorUrl": "https://calls.example/carriers/twilio/voice"})

    def ended(self, sid: str, seconds: int) -> str:
        return self.post("/carriers/twilio/status", {**self.inbound(sid), "CallStatus": "completed",
                                                     "CallDuration": str(seconds), "SequenceNumber": "4"})


def spooled_status_alone(carrier: Carrier, seconds: int = 42) -> str:
    """A call whose inbound webhook died in the worker: only its final status came, during an outage."""
    sid = "CA" + uuid.uuid4().hex
    carrier.down = True
    carrier.ended(sid, seconds)
    carrier.down = False
    assert [e["kind"] for e in spool.read(spool.path_of(sid))] == ["status"]
    return sid


def an_hour_of_replays(sid: str) -> None:
    """The replayer's passes over the grace period (its clock: the first pass that left the file)."""
    replay._waiting_since[spool.path_of(sid).name] -= replay.STATUS_ONLY_AFTER


def assert_kept_from_its_final_status(sid: str, seconds: int = 42) -> Call:
    call = Call.objects.get(call_sid=sid)
    assert (call.stage, call.final_status, call.duration_seconds, call.fallback_applied) == (
        "ended", "completed", seconds, services.STATUS_ONLY)
    assert (call.caller_number, call.to_number, call.caller_zip) == (CALLER, PLUMBING, "78701")
    assert call.campaign_id is not None and call.publisher_id is not None  # the network's call log shows it
    assert (call.verdict, call.reason_codes, call.connected_target_id) == ("not_billable", ["not_connected"], None)
    assert call.revenue == call.payout == 0 and not LedgerEntry.objects.filter(call_sid=sid).exists()
    assert not CallAttempt.objects.filter(call=call).exists()
    return call


def test_a_final_status_no_node_recorded_is_kept_as_a_call_after_the_grace_period(carrier):
    sid = spooled_status_alone(carrier)
    received = dt.datetime.fromisoformat(spool.read(spool.path_of(sid))[0]["received_at"])
    assert replay.replay_ready().waiting == 1  # another node's spool may still hold the call: it waits
    assert not Call.objects.filter(call_sid=sid).exists()

    an_hour_of_replays(sid)
    report = replay.replay_ready()
    assert (report.waiting, report.errors) == (0, [])
    call = assert_kept_from_its_final_status(sid)
    assert call.started_at == received - dt.timedelta(seconds=42)  # the call lasted CallDuration before it
    assert set(CallEvent.objects.filter(call_sid=sid).values_list("kind", flat=True)) == {"status", "status_only"}
    assert not spool.path_of(sid).exists()


def test_the_log_says_why_a_final_status_alone_was_kept(carrier, caplog):
    """After the grace period it says so; replayed by force (``spool replay --all``) at once, it doesn't claim
    an hour went by."""
    waited, forced = spooled_status_alone(carrier), spooled_status_alone(carrier)
    assert replay.replay_ready().waiting == 2
    an_hour_of_replays(waited)
    with caplog.at_level(logging.WARNING, logger="callbroker.calls.replay"):
        replay.replay_ready()
        replay.replay_ready(force=True)
    said = {sid: [r.getMessage() for r in caplog.records if sid in r.getMessage() and "final status alone" in
                  r.getMessage()] for sid in (waited, forced)}
    assert len(said[waited]) == 1 and "in 1 h with the database reachable" in said[waited][0]
    assert len(said[forced]) == 1 and "replayed by force or given up" in said[forced][0]
    assert "1 h" not in said[forced][0]
    assert_kept_from_its_final_status(waited), assert_kept_from_its_final_status(forced)


def test_a_routing_event_replayed_after_the_grace_period_makes_no_bridge(carrier, settings, tmp_path):
    """Node b held the call's inbound webhook and a bridged Dial action, and replays them only after the
    grace period (it came back late): they are stored as the call's events, nothing more."""
    sid = spooled_status_alone(carrier)
    settings.DATA_DIR = tmp_path / "b"
    inbound = InboundCall(sid, "AC" + "7" * 32, CALLER, PLUMBING, from_zip="78701")
    _steps, facts = degraded.voice(inbound)
    assert facts["dialled"]["sequence"] == 1
    spool.append(sid, {"kind": "voice", "params": carrier.inbound(sid), "query": {}, "answer": "", **facts,
                       "inbound": dataclasses.asdict(inbound)})
    spool.append(sid, {"kind": "dial", "params": carrier.inbound(sid), "query": {"seq": "1"}, "answer": "", "seq": 1,
                       "outcome": dataclasses.asdict(DialOutcome("completed", True, 85, "CA" + "e" * 32))})
    settings.DATA_DIR = tmp_path / "a"
    replay.replay_ready()
    an_hour_of_replays(sid)
    replay.replay_ready()
    assert_kept_from_its_final_status(sid)

    settings.DATA_DIR = tmp_path / "b"
    assert replay.replay_ready().errors == []
    assert not spool.path_of(sid).exists()  # applied (stored as events), not left waiting six hours
    assert CallEvent.objects.filter(call_sid=sid, kind__in=("voice", "dial")).count() == 2
    assert Call.objects.filter(call_sid=sid).count() == 1
    assert_kept_from_its_final_status(sid)


def test_an_inbound_webhook_handled_after_the_record_writes_nothing(carrier):
    """A stuck worker's inbound webhook commits after the replay kept the call; the carrier retries it."""
    sid = spooled_status_alone(carrier)
    replay.replay_ready()
    an_hour_of_replays(sid)
    replay.replay_ready()
    inbound = InboundCall(sid, "AC" + "7" * 32, CALLER, PLUMBING, from_zip="78701")
    with transaction.atomic():  # past the degraded-mode check, before the replay; it commits after
        assert services.start_call(inbound) == (services.s.Hangup(),)
    assert "<Hangup" in carrier.voice(sid)
    assert Call.objects.filter(call_sid=sid).count() == 1
    assert_kept_from_its_final_status(sid)


def test_with_redis_the_calls_plan_goes_with_its_final_status(carrier, settings, redis_server):
    """Degraded mode marks the call's end in Redis (its plan): every node takes the call for one routed
    elsewhere while the plan is there. It went only when the file was given up, six hours later."""
    settings.REDIS_URL = redis_server.url
    settings.COUNTERS_BACKEND = "redis"
    settings.REDIS_KEY_PREFIX = f"waits-{uuid.uuid4().hex[:8]}:"
    rate_limits.reset()
    try:
        sid = spooled_status_alone(carrier)
        assert degraded.routed_elsewhere(sid)
        replay.replay_ready()
        an_hour_of_replays(sid)
        replay.replay_ready()
        assert_kept_from_its_final_status(sid)
        assert not degraded.routed_elsewhere(sid)
    finally:
        rate_limits.reset()


class Clock:
    """The replayer's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_file_left_waiting_is_tried_less_often_and_at_once_when_a_line_is_added(carrier, monkeypatch, caplog):
    sid = "CA" + uuid.uuid4().hex
    carrier.fallback(sid)  # the carrier's Fallback URL answered it; its final status will take a while
    clock = Clock()
    monkeypatch.setattr(replay.time, "monotonic", clock)
    tried = []
    real = replay._replay_events

    def replay_events(events, **kwargs):
        tried.append(clock.now - 1000)
        return real(events, **kwargs)

    monkeypatch.setattr(replay, "_replay_events", replay_events)
    with caplog.at_level(logging.WARNING, logger="callbroker.calls.replay"):
        for second in (0, 1, 30, 61, 62, 66, 68, 74, 75, 10_000, 10_299):
            clock.now = 1000 + second
            replay.replay_ready()
        assert Call.objects.get(call_sid=sid).fallback_applied == services.CARRIER_FALLBACK
        # Every pass for a minute unchanged, then after a tenth of the time unchanged (61 -> 67.1, 68 -> 74.8),
        # at most every 300 s.
        assert tried == [0, 1, 30, 61, 68, 75, 10_000]
        told = [r.getMessage() for r in caplog.records if "tried less often" in r.getMessage()]
        assert len(told) == 1 and "answered by the carrier's Fallback URL and recorded, waiting for its final " \
                                  "status" in told[0]

        carrier.ended(sid, 40)  # spooled after the trace (the file marks the call): a line added
        clock.now = 1000 + 10_001
        replay.replay_ready()
    assert tried[-1] == 10_001
    assert Call.objects.get(call_sid=sid).stage == "ended" and not spool.path_of(sid).exists()
    assert replay._rests == {}


def test_spool_status_says_why_each_file_waits(carrier):
    alone = spooled_status_alone(carrier)
    answered = "CA" + uuid.uuid4().hex
    carrier.fallback(answered)
    replay.replay_ready()
    out = io.StringIO()
    call_command("spool", "status", stdout=out)
    lines = out.getvalue().splitlines()
    why = {line.split()[0]: lines[n + 1].strip() for n, line in enumerate(lines) if line.startswith("  CA")}
    assert why[alone].startswith("waiting: a final status, and no node has recorded its call")
    assert "kept as a call of its own (status_only, not billable) once it has waited 1 h" in why[alone]
    assert why[answered].startswith("waiting: answered by the carrier's Fallback URL and recorded, waiting for its "
                                    "final status; closed without it after 6 h of waiting with the database "
                                    "reachable")


def test_a_file_whose_replay_fails_is_tried_less_often_and_its_traceback_logged_once(carrier, monkeypatch, caplog):
    """A file that fails for another reason than an outage (a bug, a line the replay can't apply) is kept and
    tried as a waiting file is, not at every pass (every second while the spool holds files) with a traceback
    each time: until 2026-12-07 one such file logged a traceback a second, for good."""
    sid = "CA" + uuid.uuid4().hex
    carrier.fallback(sid)
    clock = Clock()
    monkeypatch.setattr(replay.time, "monotonic", clock)
    tried = []

    def replay_events(events, **kwargs):
        tried.append(clock.now - 1000)
        raise RuntimeError("a line the replay can't apply")

    monkeypatch.setattr(replay, "_replay_events", replay_events)
    with caplog.at_level(logging.WARNING, logger="callbroker.calls.replay"):
        for second in (0, 1, 30, 61, 62, 66, 68, 74, 75, 10_000, 10_299):
            clock.now = 1000 + second
            report = replay.replay_ready()
            if second in tried:
                assert report.errors == [f"{spool.path_of(sid).name}: a line the replay can't apply"]
        assert tried == [0, 1, 30, 61, 68, 75, 10_000]
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert len(tracebacks) == 1 and "replay of" in tracebacks[0].getMessage()
        again = [r.getMessage() for r in caplog.records if "failed again" in r.getMessage()]
        assert len(again) == len(tried) - 1 and "a line the replay can't apply" in again[0]
        told = [r.getMessage() for r in caplog.records if "tried less often" in r.getMessage()]
        assert len(told) == 1 and "its replay fails" in told[0]

        carrier.ended(sid, 40)  # a line added: tried at once
        clock.now = 1000 + 10_001
        replay.replay_ready()
    assert tried[-1] == 10_001 and spool.path_of(sid).exists()  # still failing: kept
