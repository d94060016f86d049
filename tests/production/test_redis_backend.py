"""What is particular to the Redis backend: key names, expiry, scripts, and the tie to the database
transaction (``network/live.py``: a rolled-back reservation is given back, a release waits for commit).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction

from callbroker.network import live, live_redis
from callbroker.network.loader import load_network
from callbroker.network.models import Target as TargetRow
from callbroker.network.models import TargetState
from callbroker.ops import bench
from tests.production.conftest import TZ, now_utc, spec


def core(**limits):
    return bench.core_target(spec(**limits))


def test_key_names_are_the_documented_ones(redis_store):
    target = core(concurrency_limit=3, hourly_cap=5, daily_cap=5, monthly_cap=5)
    at = dt.datetime(2031, 3, 4, 20, 30, tzinfo=dt.UTC)  # 14:30 in Chicago (CST)
    assert redis_store.reserve(target, TZ, at) is None
    p = redis_store.prefix
    assert sorted(redis_store.client.scan_iter(match=f"{p}*")) == sorted(
        f"{p}{{t:{target.id}}}:{suffix}".encode()
        for suffix in ("active", "known", "H2031030414", "D20310304", "M203103"))


def test_usage_keys_expire_after_their_period_and_the_slot_key_never(redis_store):
    target = core(concurrency_limit=3, hourly_cap=5, daily_cap=5, monthly_cap=5)
    chicago = ZoneInfo(TZ)
    at = dt.datetime.now(chicago).replace(minute=10, second=0, microsecond=0) + dt.timedelta(days=1)
    assert redis_store.reserve(target, TZ, at) is None
    hour, day, month = live.period_keys(at, TZ)
    client = redis_store.client
    margin = live_redis.EXPIRY_MARGIN_S
    expected = {
        hour: (at.astimezone(dt.UTC).replace(minute=0) + dt.timedelta(hours=1)).timestamp() + margin,
        day: dt.datetime.combine(at.date() + dt.timedelta(days=1), dt.time(0), tzinfo=chicago).timestamp() + margin,
    }
    for period, when in expected.items():
        assert client.expiretime(redis_store.usage_key(target.id, period)) == int(when), period
    first_of_next_month = (at.replace(day=28) + dt.timedelta(days=4)).replace(day=1, hour=0, minute=0)
    assert client.expiretime(redis_store.usage_key(target.id, month)) == int(first_of_next_month.timestamp()) + margin
    assert client.ttl(redis_store.active_key(target.id)) == -1  # a level, not a count per period


def test_each_of_the_two_one_oclock_hours_of_a_fall_back_has_its_own_key_and_expiry(redis_store):
    """Chicago, 2031-11-02: 02:00 CDT is 01:00 CST. Both 01:xx hours were one key, whose expiry each
    reservation moved on: a cap of one call an hour took one in the two. The second is ``H2031110201b``,
    expiring an hour after it ends as any hour; a unit given back goes back there."""
    target = core(hourly_cap=1)
    first = dt.datetime(2031, 11, 2, 6, 30, tzinfo=dt.UTC)  # 01:30 CDT
    second = first + dt.timedelta(hours=1)  # 01:30 CST
    assert redis_store.reserve(target, TZ, first) is None
    assert redis_store.reserve(target, TZ, second) is None
    assert redis_store.reserve(target, TZ, second + dt.timedelta(minutes=20)) is live.Exclusion.HOURLY_CAP
    margin, client = live_redis.EXPIRY_MARGIN_S, redis_store.client
    ends = {"H2031110201": dt.datetime(2031, 11, 2, 7, tzinfo=dt.UTC),
            "H2031110201b": dt.datetime(2031, 11, 2, 8, tzinfo=dt.UTC)}
    for hour, end in ends.items():
        expected = int(end.timestamp()) + margin
        assert client.expiretime(redis_store.usage_key(target.id, hour)) == expected, hour
    redis_store.release(target, target.id, TZ, second, undo_usage=True)
    assert [int(client.get(redis_store.usage_key(target.id, hour))) for hour in ends] == [1, 0]


def test_release_does_not_recreate_an_expired_period(redis_store):
    target = core(hourly_cap=5)
    now = now_utc()
    assert redis_store.reserve(target, TZ, now) is None
    key = redis_store.usage_key(target.id, live.period_keys(now, TZ)[0])
    redis_store.client.delete(key)  # as if it had expired
    redis_store.release(target, target.id, TZ, now, undo_usage=True)
    assert redis_store.client.exists(key) == 0


def test_scripts_are_loaded_again_after_a_script_flush(redis_store):
    target = core(concurrency_limit=1)
    now = now_utc()
    assert redis_store.reserve(target, TZ, now) is None
    redis_store.client.script_flush()
    assert redis_store.reserve(target, TZ, now) is live.Exclusion.CONCURRENCY_FULL
    redis_store.release(target, target.id, TZ, now, undo_usage=True)
    assert redis_store.read([target], {target.id: TZ}, now)[target.id].active == 0


# --------------------------------------------------------------------------- through network/live.py


def active(store, target) -> int:
    return int(store.client.get(store.active_key(target.id)) or 0)


@pytest.mark.django_db(transaction=True)
def test_a_reservation_in_a_rolled_back_transaction_is_given_back(redis_backend):
    target = core(concurrency_limit=1, daily_cap=3)
    now = now_utc()
    with pytest.raises(RuntimeError), transaction.atomic():
        assert live.reserve(target, TZ, now) is None
        assert active(redis_backend, target) == 1
        raise RuntimeError("the webhook failed after taking the slot")
    assert redis_backend.read([target], {target.id: TZ}, now)[target.id].active == 0
    assert redis_backend.read([target], {target.id: TZ}, now)[target.id].day == 0


@pytest.mark.django_db(transaction=True)
def test_a_reservation_in_a_rolled_back_savepoint_is_given_back_and_a_committed_one_kept(redis_backend):
    kept, undone = core(concurrency_limit=1), core(concurrency_limit=1)
    now = now_utc()
    with transaction.atomic():
        assert live.reserve(kept, TZ, now) is None
        with pytest.raises(RuntimeError), transaction.atomic():
            assert live.reserve(undone, TZ, now) is None
            raise RuntimeError
        assert active(redis_backend, undone) == 0
    assert active(redis_backend, kept) == 1


@pytest.mark.django_db(transaction=True)
def test_a_release_waits_for_the_commit(redis_backend):
    target = core(concurrency_limit=1)
    now = now_utc()
    assert live.reserve(target, TZ, now) is None  # autocommit: taken at once, nothing to undo
    with pytest.raises(RuntimeError), transaction.atomic():
        live.release(target, target.id, TZ, now, undo_usage=True)
        assert active(redis_backend, target) == 1  # not yet
        raise RuntimeError
    assert active(redis_backend, target) == 1  # rolled back: the slot is still held (slot_held stays set)
    with transaction.atomic():
        live.release(target, target.id, TZ, now, undo_usage=True)
    assert active(redis_backend, target) == 0


@pytest.mark.django_db
def test_redis_read_reports_auto_paused_targets_from_the_database(redis_backend):
    load_network({
        "version": 1,
        "campaigns": [{"key": "c", "name": "C", "category": "plumbing", "payout": "1.00"}],
        "buyers": [{"key": "b", "name": "B", "timezone": TZ, "targets": [
            {"key": k, "campaign": "c", "name": k, "number": f"+1512555{7000 + i}", "price": "1.00",
             "caps": {"concurrency": 2, "hourly": 3}} for i, k in enumerate(("paused", "open"))]}],
    })
    rows = dict(TargetRow.objects.values_list("key", "id"))
    now = now_utc()
    TargetState.objects.filter(target_id=rows["paused"]).update(paused_until=now + dt.timedelta(minutes=5))
    paused, open_ = (bench.core_target({"id": rows[k], "concurrency_limit": 2, "hourly_cap": 3})
                     for k in ("paused", "open"))
    assert live.reserve(open_, TZ, now) is None
    counters, auto_paused = live.read([paused, open_], {paused.id: TZ, open_.id: TZ}, now)
    assert auto_paused == {paused.id}
    assert counters[open_.id].active == 1 and counters[open_.id].hour == 1
    assert live.read([paused], {paused.id: TZ}, now + dt.timedelta(minutes=6))[1] == set()
    # Before any counters are read (the call flow asks this first, for every target of the campaign):
    assert live.auto_paused([paused.id, open_.id], now) == {paused.id}
    assert live.auto_paused([open_.id], now) == set()  # only the targets asked about
    assert live.auto_paused([paused.id, open_.id], now + dt.timedelta(minutes=6)) == set()  # the pause ran out


def test_a_slot_taken_twice_under_one_name_is_given_back_twice_and_no_more(redis_store):
    """A webhook delivered twice at once takes its slot twice under one name (``<CallSid>#<attempt>``);
    the duplicate whose transaction rolls back gives one back, the end of the call the other. A third
    release of the name takes nothing off another call's slot."""
    target = core(concurrency_limit=3, daily_cap=5)
    now = now_utc()
    name, other = live.slot_name("CA" + "1" * 32, 1), live.slot_name("CA" + "2" * 32, 1)
    assert redis_store.reserve(target, TZ, now, token=name) is None
    assert redis_store.reserve(target, TZ, now, token=name) is None
    assert redis_store.reserve(target, TZ, now, token=other) is None
    assert active(redis_store, target) == 3
    assert redis_store.release(target, target.id, TZ, now, undo_usage=True, token=name)  # the duplicate
    assert redis_store.release(target, target.id, TZ, now, undo_usage=False, token=name)  # the call ends
    assert not redis_store.release(target, target.id, TZ, now, undo_usage=False, token=name)
    assert active(redis_store, target) == 1  # the other call's slot
    assert redis_store.read([target], {target.id: TZ}, now)[target.id].day == 2
