"""Redis unreachable, database up: the limits are counted from the call attempts in the database.

Given the Redis counters backend, when Redis can't be reached (stopped, a closed port), then a
reservation counts the target's slots held and calls delivered this hour, day and month from its attempts
in the database, and refuses exactly as Redis would; every slot taken or given back that way marks the
target (``counted_without_redis_at``). When Redis answers again, the first ``read`` that meets a marked
target makes Redis forget its counters, and the next reservation rebuilds them from the database, with
the calls taken meanwhile, and clears the mark. The concurrency of several nodes doing this at once is
proven on PostgreSQL in ``tests/postgres/test_redis_unreachable.py``.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.db import transaction

from callbroker.calls.models import Call, CallAttempt
from callbroker.network import live, live_redis
from callbroker.network.models import TargetState
from tests.e2e.conftest import free_port
from tests.production.conftest import TZ, attempt, now_utc, values

FULL = live.Exclusion.CONCURRENCY_FULL


@pytest.fixture()
def redis_down(settings, redis_backend):
    """Switch ``live`` to a Redis that doesn't answer (nothing listens on the port); ``up()`` switches back."""
    real_url = settings.REDIS_URL

    class Switch:
        store = redis_backend

        @staticmethod
        def down() -> None:
            settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

        @staticmethod
        def up() -> None:
            settings.REDIS_URL = real_url

    Switch.down()
    return Switch


def reserve(target, now: dt.datetime, *, sid: int | None = None) -> live.Exclusion | None:
    """What ``services._dial_next`` does: reserve, and on success insert the attempt, in one transaction."""
    with transaction.atomic():
        refused = live.reserve(target, TZ, now)
        if refused is None:
            attempt(target, max(now, now_utc()))
    return refused


def marked(target) -> bool:
    return TargetState.objects.filter(target_id=target.id, counted_without_redis_at__isnull=False).exists()


@pytest.mark.django_db(transaction=True)
def test_without_redis_the_concurrency_limit_is_counted_from_the_attempts(redis_down, target):
    now = now_utc()
    first = attempt(target, now - dt.timedelta(seconds=5))  # a call in progress before Redis went away
    assert reserve(target, now) is None
    assert live.last_reserved_in_database()
    assert marked(target)
    assert reserve(target, now) is FULL  # concurrency 2: both slots held in the database
    counters, paused = live.read([target], {target.id: TZ}, now)
    assert (counters[target.id].active, counters[target.id].hour, paused) == (2, 2, set())
    # A release while Redis is away is the attempt's slot_held=False (services.release_attempt).
    first.slot_held = False
    first.save(update_fields=["slot_held"])
    with transaction.atomic():
        live.release(target, target.id, TZ, first.started_at, undo_usage=True)
    assert reserve(target, now) is None


@pytest.mark.django_db(transaction=True)
def test_without_redis_the_caps_are_counted_from_the_attempts(redis_down, target):
    now = now_utc()
    hour_start = now.replace(minute=0, second=0, microsecond=0)
    for i in range(5):  # delivered this hour and over (bridged): the hourly cap of 5 is reached
        attempt(target, max(hour_start, now - dt.timedelta(minutes=10)) + dt.timedelta(microseconds=i),
                result="bridged", slot_held=False)
    attempt(target, now - dt.timedelta(seconds=1), result="no_answer", slot_held=False)  # given back: not counted
    assert reserve(target, now) is live.Exclusion.HOURLY_CAP


@pytest.mark.django_db(transaction=True)
def test_when_redis_answers_again_the_calls_counted_meanwhile_are_rebuilt_into_it(redis_down, target):
    now = now_utc()
    redis_down.up()
    assert reserve(target, now) is None  # Redis: counters rebuilt from the database (nothing), then taken
    assert values(redis_down.store, target, now)[:2] == (1, 1)
    assert not marked(target)

    redis_down.down()
    assert reserve(target, now) is None  # counted in the database: Redis doesn't know this one
    assert values(redis_down.store, target, now)[:2] == (1, 1)
    assert marked(target)

    redis_down.up()  # another node, or this one once Redis answers
    live.read([target], {target.id: TZ}, now)  # meets the mark: Redis forgets the stale counters
    assert redis_down.store.client.exists(redis_down.store.known_key(target.id)) == 0
    assert reserve(target, now) is FULL  # rebuilt from the database first: both calls hold a slot
    assert values(redis_down.store, target, now)[:2] == (2, 2)
    assert not marked(target)


@pytest.mark.django_db(transaction=True)
def test_a_release_that_cannot_reach_redis_is_corrected_when_it_answers(redis_down, target):
    now = now_utc()
    redis_down.up()
    assert reserve(target, now) is None
    assert reserve(target, now) is None
    assert values(redis_down.store, target, now)[0] == 2

    redis_down.down()  # both calls end while Redis is away: its counters still show them
    from callbroker.calls.models import CallAttempt

    for row in CallAttempt.objects.filter(target_id=target.id):
        with transaction.atomic():
            row.slot_held = False
            row.save(update_fields=["slot_held"])
            live.release(target, target.id, TZ, row.started_at, undo_usage=False)
    assert marked(target)
    assert values(redis_down.store, target, now)[0] == 2

    redis_down.up()
    live.read([target], {target.id: TZ}, now)
    assert reserve(target, now) is None  # rebuilt: no slot held; this call takes one
    assert values(redis_down.store, target, now)[0] == 1
    assert not marked(target)


@pytest.mark.django_db(transaction=True)
def test_a_target_whose_slots_went_back_while_redis_was_away_is_offered_calls_again(redis_down, target):
    """Routing reads the counters before anything is reserved. Redis still shows the two slots given back
    in the database while it was away; read as they stand, the target looks full, is left out of every
    ring list, is never reserved, so never rebuilt: full for good (a cap unit, until its period ends).
    Unknown counters read as empty, so the target is offered the call, and its reservation rebuilds them."""
    now = now_utc()
    redis_down.up()
    assert reserve(target, now) is None and reserve(target, now) is None
    redis_down.down()  # both calls end while Redis is away
    for row in CallAttempt.objects.filter(target_id=target.id):
        with transaction.atomic():
            row.slot_held = False
            row.save(update_fields=["slot_held"])
            live.release(target, target.id, TZ, row.started_at, undo_usage=False)
    assert values(redis_down.store, target, now)[0] == 2  # Redis's keys still say two

    redis_down.up()
    for _ in range(3):  # every read, not only the one that met the mark
        counters, _paused = live.read([target], {target.id: TZ}, now)
        assert counters[target.id].active == 0 < target.concurrency_limit  # offered, not left out as full
    assert reserve(target, now) is None  # rebuilt from the database: nothing held; this call takes one
    assert values(redis_down.store, target, now)[0] == 1 and not marked(target)
    counters, _paused = live.read([target], {target.id: TZ}, now)
    assert counters[target.id].active == 1  # known again: read as it stands


class Boom(Exception):
    pass


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_reservation_that_cannot_be_given_back_is_recounted_at_the_next_read(redis_down, target,
                                                                                           monkeypatch):
    now = now_utc()
    redis_down.up()
    assert reserve(target, now) is None  # one call holds a slot
    backend = live.current_backend()

    def unreachable(*args, **kwargs):
        raise live.redis.ConnectionError("Redis went away")

    # The webhook's transaction fails after the slot was taken in Redis, and Redis is gone meanwhile.
    with pytest.raises(Boom), transaction.atomic():
        assert live.reserve(target, TZ, now) is None
        monkeypatch.setattr(backend.store, "release", unreachable)
        raise Boom
    monkeypatch.undo()
    assert values(redis_down.store, target, now)[0] == 2  # too high: the give-back never reached Redis

    live.read([target], {target.id: TZ}, now)  # Redis answers again: it forgets the target's counters
    assert reserve(target, now) is None  # rebuilt from the database (one slot held), then this call's
    assert values(redis_down.store, target, now)[0] == 2
    assert reserve(target, now) is FULL


def reserve_named(target, now: dt.datetime) -> CallAttempt | None:
    """``reserve`` as the call flow does it, the slot named after the attempt; the attempt, or None."""
    with transaction.atomic():
        call = Call.objects.create(call_sid=f"CA{uuid.uuid4().hex}", to_number="+15125550001", started_at=now)
        if live.reserve(target, TZ, now, live.slot_name(call.call_sid, 1)) is not None:
            return None
        return CallAttempt.objects.create(call=call, sequence=1, target_id=target.id, number="+15125557001",
                                          started_at=max(now, now_utc()))


@pytest.mark.django_db(transaction=True)
def test_a_slot_taken_without_redis_and_given_back_through_it_takes_nothing_off(redis_down, target):
    """Redis never counted a slot taken while it was unreachable: when that call ends on a node back on
    Redis, before anything recounted the target, its release takes nothing off Redis's counters (the
    slot of the call still in progress stays counted)."""
    now = now_utc()
    redis_down.up()
    through_redis = reserve_named(target, now)
    redis_down.down()
    in_database = reserve_named(target, now)
    assert through_redis and in_database and live.last_reserved_in_database()
    redis_down.up()
    with transaction.atomic():
        CallAttempt.objects.filter(pk=in_database.pk).update(slot_held=False)
        live.release(target, target.id, TZ, in_database.started_at, undo_usage=False,
                     slot=live.slot_name(in_database.call.call_sid, 1))
    assert values(redis_down.store, target, now)[0] == 1


@pytest.mark.django_db(transaction=True)
def test_counters_redis_could_not_rebuild_in_time_are_counted_in_the_database(redis_down, target, monkeypatch):
    """Redis answers, but lost the target's counters and no rebuild finished in time (another process's
    outlasted the wait): the reservation is counted in the database, limits enforced, and the target
    marked so that Redis counts it again; before, the webhook went to degraded mode, limits unenforced."""
    now = now_utc()
    redis_down.up()
    assert reserve(target, now) is None  # one call holds a slot, known to Redis
    backend = live.current_backend()

    def not_rebuilt(*args, **kwargs):
        raise live_redis.CountersUnknown(f"counters of target {target.id} could not be rebuilt")

    monkeypatch.setattr(backend.store, "reserve", not_rebuilt)
    assert reserve(target, now) is None  # counted in the database: one held, the limit is 2
    assert live.last_reserved_in_database()
    assert marked(target)
    assert reserve(target, now) is FULL  # the database counts both slots
    monkeypatch.undo()

    live.read([target], {target.id: TZ}, now)  # meets the mark: Redis forgets the target's counters
    assert reserve(target, now) is FULL  # rebuilt from the database: both slots held
    assert values(redis_down.store, target, now)[0] == 2
    assert not marked(target)
