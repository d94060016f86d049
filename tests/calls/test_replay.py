"""A call's spooled events spread over two nodes (behind a load balancer) are replayed right, in any order.

Given a call handled in degraded mode whose voice webhook and final status reached node A and whose Dial
action (connected) reached node B, when node B replays first, then A, then B again, then the call is
recorded once, connected, billable, and both spool files are gone; B waits for A instead of dropping
its event.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from pathlib import Path

import pytest
from django.utils import timezone

from callbroker.calls import degraded, replay, spool
from callbroker.calls.events import DialOutcome, InboundCall, StatusUpdate
from callbroker.calls.models import Call
from callbroker.network.loader import load_network
from callbroker.network.snapshot import current_snapshot, reset_snapshot

E2E_NETWORK = Path(__file__).resolve().parents[1] / "e2e" / "network.yaml"


@pytest.fixture
def nodes(transactional_db, settings, tmp_path):
    settings.REDIS_URL = ""
    settings.COUNTERS_BACKEND = "sql"
    reset_snapshot()
    load_network(E2E_NETWORK)
    current_snapshot()
    yield tmp_path / "a", tmp_path / "b"
    reset_snapshot()


def on(settings, node: Path, what):
    settings.DATA_DIR = node
    return what()


def test_a_call_spooled_on_two_nodes_is_replayed_once_and_right_whatever_the_order(nodes, settings):
    a, b = nodes
    sid = "CA" + uuid.uuid4().hex
    call = InboundCall(sid, "AC" + "7" * 32, "+15125550177", "+15125550001", from_zip="78701")
    _steps, facts = degraded.voice(call)
    at = timezone.now() - dt.timedelta(minutes=3)

    def spooled(node: Path, seconds: int, record: dict) -> None:
        settings.DATA_DIR = node
        spool.append(sid, {"received_at": (at + dt.timedelta(seconds=seconds)).isoformat(),
                           "params": {"CallSid": sid}, "query": {}, "answer": "", **record})

    spooled(a, 0, {"kind": "voice", **facts, "inbound": dataclasses.asdict(call)})
    spooled(b, 90, {"kind": "dial", "seq": 1,
                    "outcome": dataclasses.asdict(DialOutcome("completed", True, 85, "CA" + "e" * 32))})
    spooled(a, 100, {"kind": "status", "update": dataclasses.asdict(StatusUpdate("completed", 100))})

    first = on(settings, b, replay.replay_ready)  # the call isn't in the database yet: B waits
    assert (first.calls, first.waiting) == (0, 1) and not Call.objects.filter(call_sid=sid).exists()
    on(settings, a, replay.replay_ready)  # the call, and its end: not connected as far as A knows
    assert Call.objects.get(call_sid=sid).verdict == "not_billable" and not spool.path_of(sid).exists()
    on(settings, b, replay.replay_ready)  # the connection, after the end: qualified again
    recorded = Call.objects.get(call_sid=sid)
    assert (recorded.verdict, recorded.talk_seconds, recorded.stage) == ("billable", 85, "ended")
    assert not spool.path_of(sid).exists()
