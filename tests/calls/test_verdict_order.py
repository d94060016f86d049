"""A caller's calls get the same verdicts whatever order they end in.

The duplicate rule looks back for the caller's earlier billable call in the campaign, and the velocity
rule counts the caller's calls shortly before this one. Callbacks (a final status before the Dial result)
and the spool's replay after an outage (files taken in the order they were last written) can end an
earlier call after a later one. When the earlier call is judged, then the later calls that were judged
without it are judged again: the later call becomes the duplicate (its charge and payout reversed in
the ledger) or the spam, exactly as if the calls had ended in order.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from decimal import Decimal

import pytest
from django.utils import timezone

from callbroker.billing.choices import REVERSAL_OF
from callbroker.billing.models import LedgerEntry
from callbroker.billing.reconcile import check_ledger
from callbroker.calls import degraded, replay, services
from callbroker.calls.events import DialOutcome, InboundCall, StatusUpdate
from callbroker.calls.models import Call
from callbroker.network.models import Campaign
from callbroker.network.snapshot import current_snapshot
from tests.calls.conftest import deliver

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

PLUMBING, HEATING = "+15125550001", "+15125550005"  # e2e-plumbing (duplicate window 1 day), e2e-concurrency
CALLER = "+17375550188"
_sids = itertools.count(0x7100)


def new_sid() -> str:
    return f"CA{next(_sids):032x}"


def inbound(sid: str, to: str = PLUMBING) -> InboundCall:
    return InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw=CALLER, to=to, from_zip="78701",
                       from_state="TX")


def voice(sid: str) -> None:
    deliver(sid, "voice", lambda: services.start_call(inbound(sid)))


def talked(sid: str) -> None:
    outcome = DialOutcome(status="completed", bridged=True, duration=120, dial_call_sid="CA" + "d" * 32)
    deliver(sid, "dial:1", lambda: services.dial_finished(sid, 1, outcome))


def ended(sid: str) -> None:
    deliver(sid, "status:completed:", lambda: services.call_status(sid, StatusUpdate("completed", 150)))


def verdict(sid: str) -> tuple[str, list[str], Decimal]:
    call = Call.objects.get(call_sid=sid)
    return call.verdict, call.reason_codes, call.revenue


def net(sid: str, kind: str) -> Decimal:
    """What the ledger holds for the call on one account: its postings less their reversals."""
    kinds = (kind, REVERSAL_OF[kind])
    return sum((e.amount for e in LedgerEntry.objects.filter(call_sid=sid, kind__in=kinds)), Decimal("0.00"))


def test_a_repeat_caller_is_billed_once_when_the_first_call_is_judged_last():
    first, second = new_sid(), new_sid()
    voice(first)
    ended(first)  # the final status overtakes the Dial result: not connected, for now
    voice(second)  # the same caller again, a moment later
    talked(second)
    ended(second)
    assert verdict(second) == ("billable", [], Decimal("40.00"))  # no earlier billable call yet
    talked(first)  # the first call's Dial result: the buyer talked after all
    assert verdict(first) == ("billable", [], Decimal("40.00"))
    assert verdict(second) == ("not_billable", ["duplicate"], Decimal("0.00"))
    assert (net(second, "charge"), net(second, "payout")) == (Decimal("0.00"), Decimal("0.00"))
    assert (net(first, "charge"), net(first, "payout")) == (Decimal("40.00"), Decimal("10.00"))
    assert check_ledger().ok


def spooled(sid: str, to: str, at: dt.datetime) -> list[dict]:
    """The spool records of a call taken during an outage: inbound, bridged for 120 s, ended."""
    call = inbound(sid, to)
    _steps, facts = degraded.voice(call, now=at)
    common = {"params": {"CallSid": sid}, "query": {}, "answer": ""}
    return [
        {**common, "received_at": at.isoformat(), "kind": "voice", **facts, "inbound": dataclasses.asdict(call)},
        {**common, "received_at": (at + dt.timedelta(seconds=20)).isoformat(), "kind": "dial", "query": {"seq": "1"},
         "seq": 1, "outcome": dataclasses.asdict(DialOutcome("completed", True, 120, "CA" + "e" * 32))},
        {**common, "received_at": (at + dt.timedelta(seconds=150)).isoformat(), "kind": "status",
         "update": dataclasses.asdict(StatusUpdate("completed", 150))},
    ]


def replayed(calls: list[tuple[str, str, dt.datetime]], order: list[int]) -> list[tuple]:
    current_snapshot()  # the node routed from memory during the outage: the snapshot it had built before
    records = [spooled(*c) for c in calls]
    for i in order:
        replay.replay_call(records[i])
    return [verdict(sid) for sid, _, _ in calls]


@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
def test_replayed_calls_get_the_same_verdicts_in_either_order(order):
    start = timezone.now() - dt.timedelta(minutes=30)
    calls = [(new_sid(), PLUMBING, start), (new_sid(), PLUMBING, start + dt.timedelta(minutes=10))]
    assert replayed(calls, order) == [("billable", [], Decimal("40.00")), ("not_billable", ["duplicate"], Decimal("0.00"))]
    assert check_ledger().ok


@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
def test_the_velocity_rule_counts_a_call_replayed_after_the_caller_s_next_one(order):
    Campaign.objects.filter(key="e2e-concurrency").update(velocity_limit=1)  # a second call in 10 min is spam
    start = timezone.now() - dt.timedelta(minutes=30)
    # Two campaigns: no duplicate, only the velocity rule (which counts the caller's calls on any campaign).
    calls = [(new_sid(), PLUMBING, start), (new_sid(), HEATING, start + dt.timedelta(minutes=2))]
    first, second = replayed(calls, order)
    assert first == ("billable", [], Decimal("40.00"))
    assert second[:2] == ("not_billable", ["caller_velocity"])


def test_a_changed_verdict_is_passed_on_down_the_caller_s_calls():
    start = timezone.now() - dt.timedelta(days=2)
    # In order: the first billable, the second its duplicate (10 min later), the third billable again (more
    # than the 1-day window after the first billable call). Ended in another order: the second, the third
    # (a duplicate of the second, for now), then the first.
    calls = [(new_sid(), PLUMBING, start), (new_sid(), PLUMBING, start + dt.timedelta(minutes=10)),
             (new_sid(), PLUMBING, start + dt.timedelta(days=1, minutes=5))]
    in_order = [("billable", [], Decimal("40.00")), ("not_billable", ["duplicate"], Decimal("0.00")),
                ("billable", [], Decimal("40.00"))]
    assert replayed(calls, [1, 2, 0]) == in_order
    assert [net(sid, "charge") for sid, _, _ in calls] == [Decimal("40.00"), Decimal("0.00"), Decimal("40.00")]
    assert check_ledger().ok
