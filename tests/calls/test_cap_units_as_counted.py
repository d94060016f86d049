"""A leg not delivered gives back the cap units its reservation took at dial time, whatever changed while it rang.

Until 2026-12-08 the release worked out which units to give back from the line's caps and its buyer's time zone
as they were at release time. Given E2E Concurrency's one line (Solo Heating's, Chicago) with room for three calls
at once: a ``network load`` adds ``hourly: 1`` while call 1 rings it (no hourly unit taken: there was no cap),
call 2 takes the hour's unit, call 1's leg goes unanswered, and its release gave back call 2's unit: call 3 was
put through, two calls delivered in an hour capped at one. The same with the buyer's time zone changed while
call 1 rang (its day unit was counted on Chicago's date, given back on the new zone's: call 2's), and the other
way round: a cap removed while a call rang kept the unit it took, so the line put back to one call an hour was
full with nothing delivered.

Driven by signed webhooks (the Django test client), with the SQL counters and with the Redis counters (a private
Redis, tests/services.py); the attempt records the periods it counted (``CallAttempt.counted_periods``).
"""

from __future__ import annotations

import copy
import uuid

import pytest
import yaml
from django.utils import timezone

from callbroker.calls.models import CallAttempt
from callbroker.network import live
from callbroker.network.loader import load_network
from callbroker.network.snapshot import current_snapshot, reset_snapshot
from callbroker.ops import limits as rate_limits
from tests.calls.conftest import E2E_NETWORK
from tests.calls.signed import TOKEN, post, sid

SOLO = "+15125550005"  # e2e-concurrency: rings Solo Heating's one line
SOLO_LINE = "+15125550121"
BUSY = "The line is busy."  # e2e-concurrency's fallback


def _counters_in(backend: str, request, settings, tmp_path):
    settings.TWILIO_AUTH_TOKEN, settings.TWILIO_AUTH_TOKENS_EXTRA, settings.PUBLIC_URL = TOKEN, [], ""
    settings.FALLBACK_NUMBER = ""
    settings.DATA_DIR = tmp_path
    if backend == "redis":
        settings.REDIS_URL = request.getfixturevalue("redis_server").url
        settings.COUNTERS_BACKEND = "redis"
        settings.REDIS_KEY_PREFIX = f"capunits-{uuid.uuid4().hex[:8]}:"
    else:
        settings.REDIS_URL, settings.COUNTERS_BACKEND = "", "sql"
    reset_snapshot()
    rate_limits.reset()
    yield backend
    reset_snapshot()
    rate_limits.reset()


@pytest.fixture(params=["sql", "redis"])
def counters(request, transactional_db, settings, tmp_path):
    """The e2e network's settings with the SQL counters, or the Redis counters on the session's private Redis
    (a prefix of the test's own). A real commit per webhook: Redis releases run when it commits."""
    yield from _counters_in(request.param, request, settings, tmp_path)


@pytest.fixture
def redis_counters(request, transactional_db, settings, tmp_path):
    """As ``counters``, the Redis counters only."""
    yield from _counters_in("redis", request, settings, tmp_path)


def network_load(caps: dict, buyer_timezone: str = "America/Chicago") -> None:
    """``network load`` of the e2e network with Solo Heating's line given ``caps`` and its buyer ``buyer_timezone``."""
    with open(E2E_NETWORK) as f:
        data = copy.deepcopy(yaml.safe_load(f))
    solo = next(buyer for buyer in data["buyers"] if buyer["key"] == "solo")
    solo["timezone"] = buyer_timezone
    solo["targets"][0]["caps"] = caps
    load_network(data)


def inbound(n: int) -> str:
    return post("/carriers/twilio/voice", CallSid=sid(n), AccountSid="AC" + "0" * 32, From=f"+1720555{n:04d}",
                To=SOLO, FromZip="78701", FromState="TX", CallStatus="ringing")


def unanswered(n: int) -> str:
    return post("/carriers/twilio/dial?seq=1", CallSid=sid(n), DialCallStatus="no-answer",
                DialCallSid="CA" + f"{n:032x}"[::-1], CallStatus="in-progress")


def solo_counters():
    """The line's live counters now (hour, day and month in its buyer's time zone now), as routing reads them."""
    snap = current_snapshot()
    line = next(info for info in snap.targets.values() if info.core.number == SOLO_LINE)
    counters, _ = live.read([line.core], {line.core.id: line.timezone}, timezone.now())
    return counters[line.core.id]


def other_day_zone() -> str:
    """A time zone whose date now is not Chicago's (Kiritimati is 20 hours ahead of Chicago, Pago Pago 5 behind:
    one of them is on another date at any hour)."""
    now = timezone.now()
    chicago_day = live.period_keys(now, "America/Chicago")[1]
    return next(zone for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago")
                if live.period_keys(now, zone)[1] != chicago_day)


@pytest.mark.usefixtures("clear_of_the_hour")
def test_an_hourly_cap_added_while_a_line_rang_holds_after_that_leg_goes_unanswered(counters):
    network_load({"concurrency": 3})
    assert SOLO_LINE in inbound(1)  # no hourly cap: no hourly unit taken
    assert CallAttempt.objects.get(call__call_sid=sid(1)).counted_periods == ""
    network_load({"concurrency": 3, "hourly": 1})
    assert SOLO_LINE in inbound(2)  # takes the hour's unit
    assert solo_counters().hour == 1

    unanswered(1)  # gives back its slot, and no hourly unit: it took none

    assert solo_counters().hour == 1
    answer = inbound(3)
    assert SOLO_LINE not in answer and BUSY in answer  # one call an hour: call 2's


@pytest.mark.usefixtures("clear_of_the_hour")
def test_a_buyer_time_zone_changed_while_a_line_rang_gives_back_the_day_it_was_counted_in(counters):
    network_load({"concurrency": 3, "daily": 1})
    assert SOLO_LINE in inbound(1)  # counted on Chicago's date
    network_load({"concurrency": 3, "daily": 1}, buyer_timezone=other_day_zone())
    assert SOLO_LINE in inbound(2)  # counted on the new zone's date, another day
    assert solo_counters().day == 1

    unanswered(1)  # gives back the unit of Chicago's date, not call 2's

    assert solo_counters().day == 1
    answer = inbound(3)
    assert SOLO_LINE not in answer and BUSY in answer  # one call a day: call 2's


@pytest.mark.usefixtures("clear_of_the_hour")
def test_a_cap_removed_while_a_line_rang_gives_back_the_unit_that_leg_took(counters):
    network_load({"concurrency": 3, "hourly": 1})
    assert SOLO_LINE in inbound(1)  # takes the hour's unit
    network_load({"concurrency": 3})

    unanswered(1)  # not delivered: its unit goes back, though the line has no hourly cap now

    network_load({"concurrency": 3, "hourly": 1})
    assert solo_counters().hour == 0
    assert SOLO_LINE in inbound(2)  # nothing was delivered this hour


@pytest.mark.usefixtures("clear_of_the_hour")
def test_counters_rebuilt_after_redis_lost_them_count_the_units_the_legs_took(redis_counters):
    """Redis rebuilds lost counters from the attempts in the database: a leg counts a unit in the periods its
    reservation counted, as its release gives them back (it counted a leg dialled before the cap was added: the
    line, counting a unit no release would give back, refused call 2 with nothing taken in the hour)."""
    network_load({"concurrency": 3})
    assert SOLO_LINE in inbound(1)  # no hourly cap: no hourly unit taken
    network_load({"concurrency": 3, "hourly": 1})
    store = live.current_backend().store
    store.client.delete(*store.client.keys(f"{store.prefix}*"))  # Redis lost its data

    assert SOLO_LINE in inbound(2)  # the rebuild counts no hourly unit for call 1: the hour's unit is free
    assert solo_counters().hour == 1
    unanswered(1)
    assert solo_counters().hour == 1
    assert BUSY in inbound(3)
