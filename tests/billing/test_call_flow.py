"""The ledger behind the real call flow, in process: webhooks delivered twice, out of order, and replayed.

Given the e2e network (tests/e2e/network.yaml) in the test database, when carrier events go through the
call flow exactly as the webhook views hand them over (``services.handle_once``) or as the spool replayer
replays them (``replay.replay_call``), then each billable call is charged and paid out exactly once, a
verdict that changes after posting is reversed, and ``check_ledger`` finds nothing wrong.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone

from callbroker.billing.models import LedgerEntry
from callbroker.billing.reconcile import check_ledger
from callbroker.calls import degraded, replay, services
from callbroker.calls.events import DialOutcome, EventIn, InboundCall, StatusUpdate
from callbroker.calls.models import Call
from callbroker.network.loader import load_network
from callbroker.network.models import Target
from callbroker.network.snapshot import current_snapshot, reset_snapshot

pytestmark = pytest.mark.django_db

E2E_NETWORK = Path(__file__).resolve().parents[1] / "e2e" / "network.yaml"
PLUMBING = "+15125550001"  # e2e-plumbing: Line A (+15125550101) rings first for ZIP 78701, at 40.00
_sids = itertools.count(1)


@pytest.fixture(autouse=True)
def network(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.REDIS_URL = ""
    settings.FALLBACK_NUMBER = "+15125550999"
    reset_snapshot()
    load_network(E2E_NETWORK)
    yield
    reset_snapshot()


def new_sid() -> str:
    return f"CA{next(_sids):032x}"


def inbound(sid: str) -> InboundCall:
    return InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw=f"+1737555{int(sid[-4:], 16):04d}",
                       to=PLUMBING, from_zip="78701", from_state="TX")


def deliver(sid: str, key: str, run) -> str:
    """One webhook as the views hand it to the call flow: once per dedupe key, in one transaction."""
    event = EventIn(call_sid=sid, kind=key.split(":")[0], dedupe_key=f"{sid}:{key}", params={"CallSid": sid})
    return services.handle_once(event, run, lambda steps: repr(steps))


def voice(sid: str) -> str:
    return deliver(sid, "voice", lambda: services.start_call(inbound(sid)))


def dial(sid: str, talk: int) -> str:
    outcome = DialOutcome(status="completed", bridged=talk > 0, duration=talk, dial_call_sid="CA" + "d" * 32)
    return deliver(sid, "dial:1", lambda: services.dial_finished(sid, 1, outcome))


def status(sid: str) -> str:
    update = StatusUpdate("completed", 150)
    return deliver(sid, "status:completed:", lambda: services.call_status(sid, update))


def ledger(sid: str) -> list[tuple[str, int, Decimal]]:
    return [(e.kind, e.generation, e.amount) for e in LedgerEntry.objects.filter(call_sid=sid).order_by("id")]


def test_a_connected_call_is_charged_once_although_every_webhook_came_twice():
    sid = new_sid()
    for _ in range(2):
        voice(sid)
        dial(sid, talk=120)
        status(sid)
    call = Call.objects.get(call_sid=sid)
    assert (call.verdict, call.revenue, call.payout) == ("billable", Decimal("40.00"), Decimal("10.00"))
    assert ledger(sid) == [("charge", 1, Decimal("40.00")), ("payout", 1, Decimal("10.00"))]
    charge = LedgerEntry.objects.get(call_sid=sid, kind="charge")
    assert (charge.buyer.key, charge.campaign.key) == ("austin-pipes", "e2e-plumbing")
    assert charge.call_id == call.pk
    assert LedgerEntry.objects.get(call_sid=sid, kind="payout").publisher.key == "e2e-pub"
    assert check_ledger().ok


def test_a_call_that_never_connected_is_not_charged():
    sid = new_sid()
    voice(sid)
    dial(sid, talk=0)  # declined: the ring tree moves on to Line B …
    status(sid)  # … and the caller hangs up while it rings
    assert Call.objects.get(call_sid=sid).verdict == "not_billable"
    assert ledger(sid) == []
    assert check_ledger().ok


def test_a_dial_result_after_the_end_of_the_call_charges_it_then():
    sid = new_sid()
    voice(sid)
    status(sid)  # the final status overtook the dial result: never connected, so far
    assert Call.objects.get(call_sid=sid).reason_codes == ["not_connected"]
    assert ledger(sid) == []
    dial(sid, talk=120)  # the late dial result: qualification runs again
    dial(sid, talk=120)  # and is delivered twice
    assert Call.objects.get(call_sid=sid).verdict == "billable"
    assert ledger(sid) == [("charge", 1, Decimal("40.00")), ("payout", 1, Decimal("10.00"))]
    assert check_ledger().ok


def test_qualification_run_again_after_a_price_change_reverses_and_charges_the_new_price():
    sid = new_sid()
    voice(sid)
    dial(sid, talk=120)
    status(sid)
    line_a = Target.objects.get(key="pipes-a")
    line_a.price = Decimal("42.50")
    line_a.save()
    # Qualification again, where the call flow runs it (``_qualify``, as after a late callback).
    with transaction.atomic():
        call, campaign, _ = services._load(sid)  # noqa: SLF001
        services._qualify(call, campaign, current_snapshot())  # noqa: SLF001
    assert ledger(sid) == [("charge", 1, Decimal("40.00")), ("payout", 1, Decimal("10.00")),
                           ("charge_reversal", 1, Decimal("-40.00")), ("charge", 2, Decimal("42.50"))]
    assert check_ledger().ok


def test_a_spooled_call_replayed_twice_is_charged_once():
    # given a call handled in degraded mode (database away) and spooled as the webhook views spool it
    current_snapshot()  # the process knew the network before the outage
    sid = new_sid()
    call = inbound(sid)
    _steps, facts = degraded.voice(call)
    assert facts["dialled"]["sequence"] == 1
    at = timezone.now() - dt.timedelta(minutes=3)
    records = [
        {"received_at": at.isoformat(), "kind": "voice", "params": {"CallSid": sid}, "query": {},
         "answer": "", **facts, "inbound": dataclasses.asdict(call)},
        {"received_at": (at + dt.timedelta(seconds=20)).isoformat(), "kind": "dial",
         "params": {"CallSid": sid}, "query": {"seq": "1"}, "answer": "", "seq": 1,
         "outcome": dataclasses.asdict(DialOutcome("completed", True, 120, "CA" + "e" * 32))},
        {"received_at": (at + dt.timedelta(seconds=150)).isoformat(), "kind": "status",
         "params": {"CallSid": sid}, "query": {}, "answer": "",
         "update": dataclasses.asdict(StatusUpdate("completed", 150))},
    ]
    # when the replayer replays it twice (a crash between commit and deleting the file, two workers)
    assert replay.replay_call(records) == (3, 0)
    assert replay.replay_call(records) == (0, 3)
    # then it is charged and paid out once
    assert Call.objects.get(call_sid=sid).verdict == "billable"
    assert ledger(sid) == [("charge", 1, Decimal("40.00")), ("payout", 1, Decimal("10.00"))]
    assert check_ledger().ok
