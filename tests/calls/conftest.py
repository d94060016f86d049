"""Factory fixtures for the calls tests: each ``make_*`` fixture returns a function that creates a row.

Every factory has working defaults, so a test names only what it is about::

    call = make_call(verdict="billable",
                     attempts=[{"target": target, "result": "bridged", "talk_seconds": 151}])
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from decimal import Decimal
from pathlib import Path

import pytest

from callbroker.calls.models import Call, CallAttempt, CallEvent
from callbroker.network.loader import load_network
from callbroker.network.models import Buyer, Campaign, Publisher, Target, TrackingNumber
from callbroker.network.snapshot import current_snapshot, reset_snapshot

T0 = dt.datetime(2026, 11, 27, 14, 3, 12, tzinfo=dt.UTC)
E2E_NETWORK = Path(__file__).resolve().parents[1] / "e2e" / "network.yaml"
PLUMBING = "+15125550001"  # e2e-plumbing's tracking number


@pytest.fixture
def clear_of_the_hour():
    """Starts the test at least 10 s before the next whole hour (waits past it, rarely): tests that take a
    cap unit and read it back from the live counters read now's hour (and day, whose local midnight is a
    whole hour in UTC), and a unit taken at 59:59 is not in the hour the next second's read asks about.
    Every such test runs in under 2 s."""
    now = dt.datetime.now(dt.UTC)
    left = 3600 - now.minute * 60 - now.second - now.microsecond / 1e6
    if left < 10:
        time.sleep(left + 0.05)


@pytest.fixture
def network(db, settings, tmp_path):
    """``load_network`` for a network of the test's own (a file or a mapping): no Redis, the process's
    snapshot built afresh."""
    settings.DATA_DIR = tmp_path
    settings.REDIS_URL = ""
    reset_snapshot()
    yield load_network
    reset_snapshot()


@pytest.fixture
def e2e_network(network):
    """The e2e network (tests/e2e/network.yaml) loaded (see ``network``)."""
    network(E2E_NETWORK)


@pytest.fixture
def replay_network(transactional_db, settings, tmp_path):
    """The e2e network for replays of degraded mode: a real transaction per statement (a replay takes
    the writers' lock and commits as a server does), counters in the database, no Redis."""
    settings.DATA_DIR = tmp_path
    settings.REDIS_URL = ""
    settings.COUNTERS_BACKEND = "sql"
    reset_snapshot()
    load_network(E2E_NETWORK)
    current_snapshot()
    yield
    reset_snapshot()


@pytest.fixture
def seq():
    """A fresh counter per test, for unique keys, numbers and CallSids."""
    return itertools.count(1)


@pytest.fixture
def make_campaign(db, seq):
    def make(**fields) -> Campaign:
        n = next(seq)
        fields.setdefault("key", f"campaign-{n}")
        fields.setdefault("name", f"Campaign {n}")
        fields.setdefault("category", "plumbing")
        fields.setdefault("payout", Decimal("20.00"))
        return Campaign.objects.create(**fields)

    return make


@pytest.fixture
def make_buyer(db, seq):
    def make(**fields) -> Buyer:
        n = next(seq)
        fields.setdefault("key", f"buyer-{n}")
        fields.setdefault("name", f"Buyer {n}")
        fields.setdefault("timezone", "America/Chicago")
        return Buyer.objects.create(**fields)

    return make


@pytest.fixture
def make_target(db, seq, make_campaign, make_buyer):
    def make(**fields) -> Target:
        n = next(seq)
        if "campaign" not in fields:
            fields["campaign"] = make_campaign()
        if "buyer" not in fields:
            fields["buyer"] = make_buyer()
        fields.setdefault("key", f"target-{n}")
        fields.setdefault("name", f"Target {n}")
        fields.setdefault("number", f"+1512555{n:04d}")
        fields.setdefault("price", Decimal("45.00"))
        return Target.objects.create(**fields)

    return make


@pytest.fixture
def make_publisher(db, seq):
    def make(**fields) -> Publisher:
        n = next(seq)
        fields.setdefault("key", f"publisher-{n}")
        fields.setdefault("name", f"Publisher {n}")
        return Publisher.objects.create(**fields)

    return make


@pytest.fixture
def make_tracking_number(db, seq, make_campaign, make_publisher):
    def make(**fields) -> TrackingNumber:
        n = next(seq)
        if "campaign" not in fields:
            fields["campaign"] = make_campaign()
        if "publisher" not in fields:
            fields["publisher"] = make_publisher()
        fields.setdefault("number", f"+1512444{n:04d}")
        fields.setdefault("label", f"ad {n}")
        return TrackingNumber.objects.create(**fields)

    return make


@pytest.fixture
def make_call(db, seq, make_tracking_number):
    """A call on a tracking number (created when not given), with its attempts and events.

    ``attempts``: dicts of :class:`CallAttempt` fields; ``sequence`` (1, 2, …), ``number`` and
    ``buyer`` (from the target) and ``started_at`` (a few seconds apart) are filled in.
    A bridged attempt makes its target the connected one unless ``connected_target`` is given.
    ``events``: dicts with ``kind`` and ``params`` (``dedupe_key`` filled in).
    """

    def make(*, attempts=(), events=(), **fields) -> Call:
        n = next(seq)
        tracking = fields.pop("tracking_number", None)
        if tracking is None:
            given = {"campaign": fields["campaign"]} if "campaign" in fields else {}
            tracking = make_tracking_number(**given)
        fields["tracking_number"] = tracking
        fields.setdefault("campaign", tracking.campaign)
        fields.setdefault("publisher", tracking.publisher)
        fields.setdefault("call_sid", f"CA{n:032d}")
        fields.setdefault("to_number", tracking.number)
        fields.setdefault("caller_number", f"+1512555{n:04d}")
        fields.setdefault("caller_raw", fields["caller_number"])
        fields.setdefault("started_at", T0)
        fields.setdefault("stage", "ended")
        bridged = [a for a in attempts if a.get("result") == "bridged"]
        if bridged and "connected_target" not in fields:
            fields["connected_target"] = bridged[-1]["target"]
            fields.setdefault("talk_seconds", bridged[-1].get("talk_seconds", 0))
        if fields.get("connected_target") is not None:
            fields.setdefault("buyer", fields["connected_target"].buyer)
        call = Call.objects.create(**fields)
        for position, spec in enumerate(attempts, start=1):
            spec = dict(spec)
            target = spec.get("target")
            spec.setdefault("sequence", position)
            spec.setdefault("number", target.number if target else "+15125550000")
            spec.setdefault("buyer", target.buyer if target else None)
            spec.setdefault("started_at", call.started_at + dt.timedelta(seconds=10 * position))
            CallAttempt.objects.create(call=call, **spec)
        for position, spec in enumerate(events, start=1):
            spec = dict(spec)
            spec.setdefault("dedupe_key", f"{call.call_sid}:{spec['kind']}:{position}")
            CallEvent.objects.create(call_sid=call.call_sid, **spec)
        return call

    return make


@pytest.fixture
def routed_call(make_campaign, make_buyer, make_target, make_tracking_number, make_call):
    """A billable call in "Austin Plumbing": two targets rung (no answer, then bridged), two excluded."""
    campaign = make_campaign(key="austin-plumbing", name="Austin Plumbing")
    acme = make_buyer(key="acme", name="ACME Plumbing")
    bob = make_buyer(key="bob", name="Bob's Pipes")
    main = make_target(campaign=campaign, buyer=acme, key="acme-main", name="Main line")
    night = make_target(campaign=campaign, buyer=bob, key="bob-night", name="Night line")
    closed = make_target(campaign=campaign, buyer=bob, key="bob-day", name="Day line")
    capped = make_target(campaign=campaign, buyer=acme, key="acme-south", name="South")
    tracking = make_tracking_number(campaign=campaign, number="+15124440001", label="Google Ads")
    decision = {
        "ring": [night.pk, main.pk],
        "excluded": [[closed.pk, "closed"], [capped.pk, "daily_cap"]],
        "sticky": False,
        "fallback": None,
        "targets": {str(t.pk): str(t) for t in (main, night, closed, capped)},
        "caller_zip": "78704",
        "zip_source": "ivr",
        "at": "2026-11-27T14:03:20Z",
    }
    call = make_call(
        call_sid="CA0123456789abcdef0123456789abcdef",
        tracking_number=tracking,
        caller_number="+15125550001",
        caller_zip="78704",
        zip_source="ivr",
        caller_state="TX",
        stir_verstat="TN-Validation-Passed-A",
        decision=decision,
        verdict="billable",
        revenue=Decimal("45.00"),
        payout=Decimal("20.00"),
        duration_seconds=190,
        ended_at=T0 + dt.timedelta(seconds=190),
        attempts=[
            {"target": night, "result": "no-answer", "ring_seconds": 30},
            {"target": main, "result": "bridged", "ring_seconds": 6, "talk_seconds": 151},
        ],
        events=[
            {"kind": "voice", "params": {"CallSid": "CA0123456789abcdef0123456789abcdef",
                                         "From": "+15125550001"}},
            {"kind": "status", "params": {"CallStatus": "completed", "CallDuration": "190"}},
        ],
    )
    call.targets = {"main": main, "night": night, "closed": closed, "capped": capped}  # for assertions
    return call


def deliver(call_sid: str, key: str, run) -> tuple:
    """One webhook through ``services.handle_once``, as the carrier views send it (``key``: its dedupe key
    after the CallSid, e.g. ``"dial:1"``); returns the steps ``run`` answered with."""
    from callbroker.calls import services
    from callbroker.calls.events import EventIn

    answered: list = []
    event = EventIn(call_sid=call_sid, kind=key.split(":")[0], dedupe_key=f"{call_sid}:{key}",
                    params={"CallSid": call_sid})
    services.handle_once(event, run, lambda steps: answered.extend(steps) or repr(steps))
    return tuple(answered)
