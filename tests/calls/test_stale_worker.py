"""A call is judged with the network that routed it, whichever worker receives its later webhooks.

Given two server workers, each with its own copy of the network in memory: the inbound webhook reads the
network version and brings its worker's copy up to date, but the later webhooks of the same call (IVR,
dial result, final status) may reach the other worker, which hasn't handled an inbound call since the
network changed. When the final status reaches that worker, then the call must still be priced and
judged with the current network (the new price, the new target, the new campaign), never with the copy
that worker built before the change.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from callbroker.billing.models import LedgerEntry
from callbroker.calls import services
from callbroker.calls.events import DialOutcome, InboundCall, StatusUpdate
from callbroker.calls.models import Call
from callbroker.network import snapshot
from callbroker.network.models import Buyer, Campaign, Publisher, Target, TrackingNumber
from callbroker.network.snapshot import current_snapshot
from tests.calls.conftest import deliver

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

PLUMBING = "+15125550001"  # e2e-plumbing's tracking number
_sids = itertools.count(0x7000)


def talked_call(to: str = PLUMBING, stale: snapshot.NetworkSnapshot | None = None) -> Call:
    """A call routed by an up-to-date worker, bridged for 120 s; its final status reaches ``stale``'s worker."""
    sid = f"CA{next(_sids):032x}"
    inbound = InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw="+17375550123", to=to,
                          from_zip="78701", from_state="TX")
    snapshot.reset_snapshot()  # the inbound webhook's worker: reads the version, builds the current network
    deliver(sid, "voice", lambda: services.start_call(inbound))
    outcome = DialOutcome(status="completed", bridged=True, duration=120, dial_call_sid="CA" + "d" * 32)
    deliver(sid, "dial:1", lambda: services.dial_finished(sid, 1, outcome))
    snapshot._current = stale  # the other worker, whose copy predates the change
    deliver(sid, "status:completed:", lambda: services.call_status(sid, StatusUpdate("completed", 150)))
    return Call.objects.get(call_sid=sid)


def charged(call: Call) -> list[Decimal]:
    return [e.amount for e in LedgerEntry.objects.filter(call_sid=call.call_sid, kind="charge")]


def test_a_new_price_is_charged_by_a_worker_that_had_the_old_one():
    stale = current_snapshot()
    line = Target.objects.get(key="pipes-a")
    line.price = Decimal("55.00")
    line.save()
    call = talked_call(stale=stale)
    assert call.connected_target_id == line.pk
    assert (call.verdict, call.revenue, charged(call)) == ("billable", Decimal("55.00"), [Decimal("55.00")])


def test_a_new_target_is_priced_by_a_worker_that_never_heard_of_it():
    stale = current_snapshot()
    new_line = Target.objects.create(
        key="pipes-new", campaign=Campaign.objects.get(key="e2e-plumbing"), buyer=Buyer.objects.get(key="austin-pipes"),
        name="New line", number="+15125550109", priority=0, price=Decimal("60.00"), area={"zips": ["78701"]})
    call = talked_call(stale=stale)
    assert call.connected_target_id == new_line.pk  # priority 0 rings first
    assert (call.verdict, call.revenue, charged(call)) == ("billable", Decimal("60.00"), [Decimal("60.00")])


def test_a_call_on_a_new_campaign_is_judged_by_a_worker_that_never_heard_of_it():
    stale = current_snapshot()
    campaign = Campaign.objects.create(key="new-camp", name="New campaign", payout=Decimal("10.00"))
    Target.objects.create(key="nc-line", campaign=campaign, buyer=Buyer.objects.get(key="austin-pipes"),
                          name="NC line", number="+15125550177", price=Decimal("33.00"))
    TrackingNumber.objects.create(number="+15125550077", campaign=campaign, publisher=Publisher.objects.get(key="e2e-pub"))
    call = talked_call(to="+15125550077", stale=stale)
    assert (call.stage, call.verdict, call.revenue, charged(call)) == ("ended", "billable", Decimal("33.00"),
                                                                       [Decimal("33.00")])
