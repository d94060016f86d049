"""A call already judged is judged again only when what it takes from the caller's other calls changes.

When an earlier call of the same caller ends after a later one was judged, the later one may become a
duplicate, or stop being one (docs/billing.md): it is judged again. A call whose duplicate and velocity
reasons come out as they were is left alone, so a change to the network made since (a new price, a longer
billable buffer) never re-prices or re-judges it after the fact through an unrelated call's end.
"""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pytest

from callbroker.billing.models import LedgerEntry
from callbroker.billing.reconcile import check_ledger
from callbroker.calls import services
from callbroker.calls.events import DialOutcome, InboundCall, StatusUpdate
from callbroker.calls.models import Call
from callbroker.network.models import Campaign, Target
from tests.calls.conftest import deliver

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

PLUMBING, ONE_LINE = "+15125550001", "+15125550005"
_sids = itertools.count(0x9100)


def voice(caller: str, to: str = PLUMBING) -> str:
    sid = f"CA{next(_sids):032x}"
    inbound = InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw=caller, to=to, from_zip="78701",
                          from_state="TX")
    deliver(sid, "voice", lambda: services.start_call(inbound))
    return sid


def talked(sid: str, seconds: int = 120) -> None:
    outcome = DialOutcome(status="completed", bridged=True, duration=seconds, dial_call_sid="CA" + "d" * 32)
    deliver(sid, "dial:1", lambda: services.dial_finished(sid, 1, outcome))


def ended(sid: str) -> None:
    deliver(sid, "status:completed:", lambda: services.call_status(sid, StatusUpdate("completed", 150)))


def judged(sid: str) -> tuple:
    call = Call.objects.get(call_sid=sid)
    return call.verdict, call.reason_codes, call.revenue


def postings(sid: str) -> list[tuple[str, Decimal]]:
    return [(e.kind, e.amount) for e in LedgerEntry.objects.filter(call_sid=sid).order_by("id")]


def test_a_new_price_is_not_applied_to_a_judged_call_when_an_earlier_unconnected_call_ends():
    first, second = voice("+17375550188"), voice("+17375550188")
    talked(second)
    ended(second)
    assert judged(second) == ("billable", [], Decimal("40.00"))
    line = Target.objects.get(key="pipes-a")
    line.price = Decimal("55.00")
    line.save()

    ended(first)  # never reached a buyer: nothing the second call's verdict rests on changed
    assert judged(first)[:2] == ("not_billable", ["not_connected"])
    assert judged(second) == ("billable", [], Decimal("40.00"))
    assert postings(second) == [("charge", Decimal("40.00")), ("payout", Decimal("10.00"))]
    assert check_ledger().ok


def test_a_longer_buffer_does_not_reach_back_through_a_call_of_another_campaign():
    first = voice("+17375550121", to=ONE_LINE)
    second = voice("+17375550121")
    talked(second, 120)
    ended(second)
    campaign = Campaign.objects.get(key="e2e-plumbing")
    campaign.buffer_seconds = 180
    campaign.save()

    ended(first)
    assert judged(second) == ("billable", [], Decimal("40.00"))


def test_an_earlier_billable_call_ending_late_still_makes_the_later_one_a_duplicate():
    first, second = voice("+17375550131"), voice("+17375550131")
    talked(second)
    ended(second)
    talked(first)
    ended(first)
    assert judged(first)[0] == "billable"
    assert judged(second)[:2] == ("not_billable", ["duplicate"])
    assert check_ledger().ok


def test_a_duplicate_judged_again_names_the_billable_call_it_now_repeats():
    """A duplicate's sentence names how long before the caller's last billable call was (``reason_notes``).
    When an earlier call of the caller ends late and is billed, the call that was the last billable one
    becomes its duplicate (not billable), and a later duplicate, judged again, is a duplicate still, of that
    earlier call now: its sentence gives that call's time, not the time of one no longer billable."""
    caller = "+17375550141"
    first, middle, last = voice(caller), voice(caller), voice(caller)
    now = Call.objects.get(call_sid=last).started_at
    for sid, minutes in ((first, 30), (middle, 20)):
        Call.objects.filter(call_sid=sid).update(started_at=now - dt.timedelta(minutes=minutes))
    for sid in (middle, last):
        talked(sid)
        ended(sid)
    assert judged(middle)[0] == "billable"
    assert Call.objects.get(call_sid=last).reason_notes == {
        "duplicate": "last billable call from this caller was 20 min earlier, inside the 1 day duplicate window"}

    talked(first)
    ended(first)  # billed: the middle call is its duplicate now, the last one still a duplicate

    assert judged(first)[0] == "billable" and judged(middle)[:2] == ("not_billable", ["duplicate"])
    call = Call.objects.get(call_sid=last)
    assert (call.verdict, call.reason_codes, call.revenue) == ("not_billable", ["duplicate"], Decimal("0.00"))
    assert call.reason_notes == {
        "duplicate": "last billable call from this caller was 30 min earlier, inside the 1 day duplicate window"}
    assert check_ledger().ok


def test_a_duplicate_judged_again_keeps_the_window_it_was_judged_by_when_an_unrelated_call_ends():
    """The sentence kept with a duplicate names the window it was judged by. A window changed since (1 day,
    now 2 days) doesn't rewrite it when an earlier call of the caller that never reached a buyer ends and
    judges the later calls again: the billable call it repeats is the same, so is its sentence."""
    caller = "+17375550177"
    unanswered, billed, repeat = voice(caller), voice(caller), voice(caller)
    now = Call.objects.get(call_sid=repeat).started_at
    for sid, minutes in ((unanswered, 40), (billed, 12)):
        Call.objects.filter(call_sid=sid).update(started_at=now - dt.timedelta(minutes=minutes))
    for sid in (billed, repeat):
        talked(sid)
        ended(sid)
    as_judged = {"duplicate": "last billable call from this caller was 12 min earlier, inside the 1 day duplicate "
                              "window"}
    assert Call.objects.get(call_sid=repeat).reason_notes == as_judged
    campaign = Campaign.objects.get(key="e2e-plumbing")
    campaign.duplicate_window = dt.timedelta(days=2)
    campaign.save()

    ended(unanswered)  # never reached a buyer: nothing the duplicate rests on changed

    assert judged(unanswered)[:2] == ("not_billable", ["not_connected"])
    call = Call.objects.get(call_sid=repeat)
    assert (call.verdict, call.reason_codes, call.reason_notes) == ("not_billable", ["duplicate"], as_judged)
    assert check_ledger().ok
