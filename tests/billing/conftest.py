"""Factory fixtures for the billing tests (the calls factories, plus billable calls and a settable clock).

::

    call = make_billable(revenue="45.00", payout="20.00")
    with clock.at(NOV):
        post(call)
"""

from __future__ import annotations

import contextlib
import datetime as dt
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from callbroker.billing.services import post_verdict
from callbroker.calls.models import Call
from tests.calls.conftest import (  # noqa: F401  (fixtures used by the billing tests)
    T0,
    make_buyer,
    make_call,
    make_campaign,
    make_publisher,
    make_target,
    make_tracking_number,
    seq,
)

NOV = dt.datetime(2026, 11, 27, 14, 10, tzinfo=dt.UTC)
DEC = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)


def post(call: Call) -> list:
    """Post ``call``'s verdict as the call flow does: in the transaction that wrote it."""
    with transaction.atomic():
        call.save()
        return post_verdict(call)


class Clock:
    """Sets what ``timezone.now()`` returns (entries are posted at that time)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch

    @contextlib.contextmanager
    def at(self, moment: dt.datetime):
        with self.monkeypatch.context() as patch:
            patch.setattr(timezone, "now", lambda: moment)
            yield


@pytest.fixture
def clock(monkeypatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def acme(make_buyer):  # noqa: F811  (the imported fixtures)
    return make_buyer(key="acme", name="ACME Plumbing")


@pytest.fixture
def google(make_publisher):  # noqa: F811  (the imported fixtures)
    return make_publisher(key="google", name="Google Ads Pub")


@pytest.fixture
def plumbing(make_campaign):  # noqa: F811  (the imported fixtures)
    return make_campaign(key="austin-plumbing", name="Austin Plumbing", payout=Decimal("20.00"))


@pytest.fixture
def make_billable(make_call, make_target, make_tracking_number, acme, google, plumbing):  # noqa: F811  (the imported fixtures)
    """A finished call with a verdict (billable by default), bridged to one of ACME's targets in Austin
    Plumbing, from a Google Ads tracking number. Not posted: the test posts it."""
    target = make_target(campaign=plumbing, buyer=acme, key="acme-main", name="Main line",
                         price=Decimal("45.00"))
    tracking = make_tracking_number(campaign=plumbing, publisher=google, number="+15124440001")

    def make(verdict: str = "billable", revenue: str = "45.00", payout: str = "20.00", **fields) -> Call:
        billable = verdict == "billable"
        fields.setdefault("started_at", NOV - dt.timedelta(minutes=5))
        return make_call(
            tracking_number=tracking, verdict=verdict,
            reason_codes=[] if billable else fields.pop("reason_codes", ["below_buffer"]),
            revenue=Decimal(revenue if billable else "0.00"), payout=Decimal(payout if billable else "0.00"),
            attempts=[{"target": target, "result": "bridged", "talk_seconds": 151}], **fields,
        )

    return make
