"""A repeat caller goes back to the buyer it reached last, not only to the line.

Given a campaign with two buyers, ACME (Main line, priority 1; Overflow line, priority 3) and Bolt (one line,
priority 2), when a caller who talked to ACME's Main line calls again inside the duplicate window while
that line is paused, then ACME's Overflow line rings first, before Bolt's line of a better priority; and a
new caller gets the usual priority order.
"""

from __future__ import annotations

from callbroker.calls import services
from callbroker.calls import steps as s
from callbroker.calls.events import DialOutcome, InboundCall, StatusUpdate
from callbroker.network.models import Target
from callbroker.network.snapshot import reset_snapshot

NETWORK = {
    "version": 1,
    "campaigns": [{"key": "plumbing", "name": "Plumbing", "payout": "10.00", "duplicate_window": "1d",
                   "ivr": {"ask_zip": "never"}, "fallback": {"kind": "message", "message": "Sorry."}}],
    "buyers": [
        {"key": "acme", "name": "ACME", "timezone": "America/Chicago", "targets": [
            {"key": "acme-main", "campaign": "plumbing", "number": "+15125550150", "price": "40.00", "priority": 1},
            {"key": "acme-overflow", "campaign": "plumbing", "number": "+15125550151", "price": "40.00", "priority": 3},
        ]},
        {"key": "bolt", "name": "Bolt", "timezone": "America/Chicago", "targets": [
            {"key": "bolt-main", "campaign": "plumbing", "number": "+15125550152", "price": "40.00", "priority": 2},
        ]},
    ],
    "publishers": [{"key": "pub", "name": "Publisher"}],
    "tracking_numbers": [{"number": "+15125550001", "campaign": "plumbing", "publisher": "pub"}],
}


def rings(n: int, caller: str) -> list[str]:
    steps = services.start_call(InboundCall(call_sid=f"CA{n:032x}", account_sid="AC" + "0" * 32, from_raw=caller,
                                            to="+15125550001", from_zip="78701", from_state="TX"))
    return [step.number for step in steps if isinstance(step, s.DialTarget)]


def test_a_repeat_caller_rings_the_buyer_it_reached_before_a_better_priority(network):
    network(NETWORK)
    assert rings(1, "+17375550601") == ["+15125550150"]
    services.dial_finished(f"CA{1:032x}", 1, DialOutcome(status="completed", bridged=True, duration=90))
    services.call_status(f"CA{1:032x}", StatusUpdate(status="completed", duration=95))
    Target.objects.filter(key="acme-main").update(paused=True)
    reset_snapshot()

    assert rings(2, "+17375550601") == ["+15125550151"]  # ACME's other line, not Bolt's priority-2 one
    assert rings(3, "+17375550602") == ["+15125550152"]  # a new caller: priority order
