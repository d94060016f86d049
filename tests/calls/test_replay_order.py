"""A call's spooled events are replayed in the order the node received them, not by the wall clock.

Given a call handled in degraded mode during an outage in which the node's clock was stepped back (an NTP
correction) after its inbound webhook, so that its Dial action (bridged, 90 s), final status and recording
carry ``received_at`` times earlier than the inbound event's, when the spool is replayed, then the call is
recorded at once, bridged and billable, its recording kept and its file gone: the replay follows the order
the lines were written. Until 2026-12-07 it sorted by ``received_at``: the Dial action came first, found no
call, and held the whole file for six hours; ``spool replay --all`` then recorded a bridged call as
``not_connected`` with its attempt still ringing.

Spool files written before the order was (no ``boot``/``monotonic_ns``) are replayed in line order; lines
that several processes held in memory (a full disk) and wrote out of order are put back in the order
they were received by the node's monotonic clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from django.utils import timezone

from callbroker.calls import degraded, replay, spool
from callbroker.calls.events import DialOutcome, InboundCall, RecordingUpdate, StatusUpdate
from callbroker.calls.models import Call, CallAttempt

PLUMBING = "+15125550001"
BRIDGED = DialOutcome(status="completed", bridged=True, duration=90, dial_call_sid="CA" + "d" * 32)
END = StatusUpdate(status="completed", duration=110, sequence="3")
RECORDING = RecordingUpdate(recording_sid="RE" + "1" * 32, url="https://api.example/rec/RE1", status="completed",
                            duration=90)


def outage_events(sid: str) -> list[dict]:
    """The call's webhooks as degraded mode spools them: routed from memory, bridged, ended, recorded."""
    call = InboundCall(sid, "AC" + "7" * 32, "+15125550188", PLUMBING, from_zip="78701")
    _steps, facts = degraded.voice(call)
    assert facts.get("dialled"), "the e2e network's plumbing campaign rings a line"
    common = {"params": {"CallSid": sid}, "query": {}, "answer": ""}
    return [
        {**common, "kind": "voice", **facts, "inbound": dataclasses.asdict(call)},
        {**common, "kind": "dial", "seq": 1, "outcome": dataclasses.asdict(BRIDGED)},
        {**common, "kind": "status", "update": dataclasses.asdict(END)},
        {**common, "kind": "recording", "update": dataclasses.asdict(RECORDING)},
    ]


def assert_recorded_bridged(sid: str) -> None:
    call = Call.objects.get(call_sid=sid)
    attempt = CallAttempt.objects.get(call=call, sequence=1)
    assert (call.stage, call.verdict, call.talk_seconds, call.recording_sid) == (
        "ended", "billable", 90, RECORDING.recording_sid)
    assert (attempt.result, attempt.talk_seconds) == ("bridged", 90)
    assert not spool.path_of(sid).exists()


def test_a_clock_stepped_back_during_the_outage_does_not_hold_the_replay(replay_network, monkeypatch):
    sid = "CA" + "5a" * 16
    events = outage_events(sid)
    before_the_step = timezone.now()
    clock = iter([before_the_step, *(before_the_step - dt.timedelta(seconds=60 - 10 * n) for n in range(3))])
    monkeypatch.setattr(spool.timezone, "now", lambda: next(clock))  # what each spooled line is stamped with
    for record in events:
        spool.append(sid, record)
    monkeypatch.undo()
    stamps = [dt.datetime.fromisoformat(e["received_at"]) for e in spool.read(spool.path_of(sid))]
    assert stamps[1] < stamps[0], "the clock went backwards after the inbound webhook"

    report = replay.replay_ready()
    assert (report.calls, report.waiting) == (1, 0)
    assert_recorded_bridged(sid)


def test_a_spool_file_written_before_the_order_was_is_replayed_in_line_order(replay_network):
    """Lines of the current version carry no ``boot``/``monotonic_ns``: their place in the file decides."""
    sid = "CA" + "5b" * 16
    at = timezone.now()
    path = spool.directory() / f"{sid}.jsonl"
    with path.open("w") as handle:
        for n, record in enumerate(outage_events(sid)):
            stamp = at if n == 0 else at - dt.timedelta(seconds=60 - 10 * n)  # the step, after the inbound
            handle.write(json.dumps({"received_at": stamp.isoformat(), **record}) + "\n")
    replay.replay_ready()
    assert_recorded_bridged(sid)


def test_lines_two_processes_held_in_memory_are_put_back_in_the_order_received():
    """A full disk: process 2's final status reached the file before process 1's inbound event."""
    boot = "b0" * 16
    voice = {"kind": "voice", "boot": boot, "monotonic_ns": 1_000}
    status = {"kind": "status", "boot": boot, "monotonic_ns": 2_000}
    assert spool.in_received_order([status, voice]) == [voice, status]


def test_the_monotonic_clock_is_compared_within_one_boot_only():
    """It starts again at each boot: lines of a later boot come after, in the file's order."""
    first = [{"n": 1, "boot": "one", "monotonic_ns": 9_000}, {"n": 2, "boot": "one", "monotonic_ns": 9_500}]
    old = [{"n": 3}]  # an older version's line (no order): keeps its place
    later = [{"n": 5, "boot": "two", "monotonic_ns": 200}, {"n": 4, "boot": "two", "monotonic_ns": 100}]
    assert [e["n"] for e in spool.in_received_order([*first, *old, *later])] == [1, 2, 3, 4, 5]


def test_each_spooled_line_carries_where_it_stands_in_the_nodes_order(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    sid = "CA" + "5c" * 16
    spool.append(sid, {"kind": "status", "params": {"CallSid": sid}})
    spool.append(sid, {"kind": "recording", "params": {"CallSid": sid}})
    first, second = spool.read(spool.path_of(sid))
    assert first["boot"] == second["boot"] and first["monotonic_ns"] < second["monotonic_ns"]
