"""Redis lost the live counters (restarted without persistence, flushed): they are rebuilt before anything
is taken, so a target never takes more calls than its limits because Redis forgot the calls in progress.

Given calls in progress and calls delivered this hour in the database, when Redis loses its data, then
the next reservation first counts them again from the database (``network/live.py``,
``rebuild_from_database``); a release while the counters are unknown changes nothing (the rebuild reads
it from the database), and a release during the rebuild is not counted twice. Degraded-mode holds
(``token``) are taken and given back once however often they are repeated.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from callbroker.calls.models import CallAttempt
from callbroker.network import live, live_redis
from callbroker.ops import bench
from callbroker.network.loader import load_network
from tests.production.conftest import TZ, attempt, now_utc, spec, values

FULL = live.Exclusion.CONCURRENCY_FULL


def lose_everything(store) -> None:
    """What a Redis restart without persistence does to our keys."""
    keys = list(store.client.scan_iter(match=f"{store.prefix}*"))
    if keys:
        store.client.delete(*keys)


def give_back(row: CallAttempt, target, *, undo_usage: bool) -> None:
    """What ``services.release_attempt`` does: the database first, then the counters."""
    CallAttempt.objects.filter(pk=row.pk).update(slot_held=False)
    live.release(target, target.id, TZ, row.started_at, undo_usage=undo_usage)


@pytest.mark.django_db(transaction=True)
def test_counters_lost_by_redis_are_rebuilt_from_the_database_before_a_reservation(redis_backend, target):
    now = now_utc()
    ringing = attempt(target, now - dt.timedelta(seconds=20))
    attempt(target, now - dt.timedelta(seconds=10), result="bridged")  # talking: holds a slot, counted
    attempt(target, now - dt.timedelta(seconds=30), result="bridged", slot_held=False)  # delivered, over
    attempt(target, now - dt.timedelta(seconds=40), result="no_answer", slot_held=False)  # given back
    lose_everything(redis_backend)

    # Without the rebuild Redis would read 0 active calls and take a third one.
    assert live.reserve(target, TZ, now) is FULL
    assert values(redis_backend, target, now) == (2, 3, 3, 0)
    give_back(ringing, target, undo_usage=True)
    assert values(redis_backend, target, now) == (1, 2, 2, 0)
    assert live.reserve(target, TZ, now) is None
    assert live.reserve(target, TZ, now) is FULL


@pytest.mark.django_db(transaction=True)
def test_a_release_while_the_counters_are_unknown_changes_nothing(redis_backend, target):
    now = now_utc()
    first, second = attempt(target, now), attempt(target, now + dt.timedelta(microseconds=1))
    lose_everything(redis_backend)
    give_back(first, target, undo_usage=True)  # Redis is back but knows nothing yet
    assert list(redis_backend.client.scan_iter(match=f"{redis_backend.prefix}*")) == []
    assert live.reserve(target, TZ, now) is None  # rebuilt: the second call, and this one
    assert values(redis_backend, target, now) == (2, 2, 2, 0)
    give_back(second, target, undo_usage=False)
    assert values(redis_backend, target, now)[0] == 1


def test_a_slot_given_back_during_a_rebuild_is_not_counted(redis_store):
    target = bench.core_target(spec(concurrency_limit=3, hourly_cap=9))
    now = now_utc()
    held = [now - dt.timedelta(seconds=s) for s in (1, 2, 3)]
    claim = redis_store.claim([target.id])
    assert claim.target_ids == (target.id,)
    # The rebuild read the database while this call's release was committing: it still counts it.
    assert redis_store.release(target, target.id, TZ, held[0], undo_usage=True) is False
    assert redis_store.load(claim, target, TZ, now, held=held, counts=(3, 3, 3))
    assert values(redis_store, target, now)[:2] == (2, 2)
    assert redis_store.client.exists(redis_store.early_key(target.id)) == 0
    hour_key = redis_store.usage_key(target.id, live.period_keys(now, TZ)[0])
    assert redis_store.client.expiretime(hour_key) == live_redis.period_expiry(now, TZ)[0]


def test_a_reservation_waits_for_a_rebuild_running_elsewhere(redis_store):
    target = bench.core_target(spec(concurrency_limit=1))
    now = now_utc()
    claim = redis_store.claim([target.id])  # another node is rebuilding
    got = {}
    waiting = threading.Thread(target=lambda: got.setdefault("refused", redis_store.reserve(target, TZ, now)))
    waiting.start()
    waiting.join(timeout=0.3)
    assert waiting.is_alive() and not got
    redis_store.load(claim, target, TZ, now, held=[now], counts=(0, 0, 0))  # one call in progress
    waiting.join(timeout=5)
    assert got == {"refused": FULL}


def test_without_a_database_unknown_counters_are_reported_not_guessed(redis_store):
    target = bench.core_target(spec(concurrency_limit=1))
    with pytest.raises(live_redis.CountersUnknown):
        redis_store.reserve(target, TZ, now_utc(), token="CA1:1", rebuild=False)
    assert redis_store.client.exists(redis_store.active_key(target.id)) == 0


def test_degraded_mode_holds_are_taken_and_given_back_once(redis_store):
    target = bench.core_target(spec(concurrency_limit=2, daily_cap=5))
    now = now_utc()
    assert redis_store.reserve(target, TZ, now) is None  # a call of the normal path
    for _ in range(2):  # a webhook delivered twice
        assert redis_store.reserve(target, TZ, now, token="CA1:1") is None
    assert values(redis_store, target, now) == (2, 0, 2, 0)
    assert redis_store.reserve(target, TZ, now, token="CA2:1") is FULL
    assert redis_store.release(target, target.id, TZ, now, undo_usage=True, token="CA1:1") is True
    assert redis_store.release(target, target.id, TZ, now, undo_usage=True, token="CA1:1") is False
    assert values(redis_store, target, now) == (1, 0, 1, 0)


def test_a_rebuild_voids_the_degraded_holds_it_could_not_count(redis_store):
    target = bench.core_target(spec(concurrency_limit=2))
    now = now_utc()
    assert redis_store.reserve(target, TZ, now, token="CA1:1") is None
    redis_store.client.delete(redis_store.known_key(target.id))  # lost (as after a restart)
    claim = redis_store.claim([target.id])
    redis_store.load(claim, target, TZ, now, held=[], counts=(0, 0, 0))
    assert redis_store.release(target, target.id, TZ, now, undo_usage=True, token="CA1:1") is False
    assert values(redis_store, target, now)[0] == 0


def slot_of(row: CallAttempt) -> str:
    return live.slot_name(row.call.call_sid, row.sequence)


@pytest.mark.django_db(transaction=True)
def test_a_slot_given_back_just_before_the_rebuild_counted_is_taken_off_once(redis_backend, target):
    """Slots are held by name. A call's end committed in the database just before a rebuild counted the
    slots, whose release then reached Redis just after the rebuild: the rebuild did not count that slot,
    so its release takes nothing off (taken off twice, the counters would let a third call onto a line
    limited to 2)."""
    now = now_utc()
    kept = attempt(target, now - dt.timedelta(seconds=20))
    ended = attempt(target, now - dt.timedelta(seconds=10))
    lose_everything(redis_backend)
    CallAttempt.objects.filter(pk=ended.pk).update(slot_held=False)  # committed before the count…
    live.rebuild_from_database(redis_backend, target, TZ)
    assert values(redis_backend, target, now) == (1, 1, 1, 0)
    assert redis_backend.release(target, target.id, TZ, ended.started_at, undo_usage=True,
                                 token=slot_of(ended)) is False  # … released in Redis after it
    assert values(redis_backend, target, now) == (1, 1, 1, 0)

    CallAttempt.objects.filter(pk=kept.pk).update(slot_held=False)
    live.release(target, target.id, TZ, kept.started_at, undo_usage=False, slot=slot_of(kept))
    assert values(redis_backend, target, now) == (0, 1, 1, 0)
    live.release(target, target.id, TZ, kept.started_at, undo_usage=False, slot=slot_of(kept))  # again
    assert values(redis_backend, target, now) == (0, 1, 1, 0)


@pytest.mark.django_db(transaction=True)
def test_a_named_slot_given_back_during_a_rebuild_is_not_counted(redis_backend, target):
    now = now_utc()
    ringing = attempt(target, now - dt.timedelta(seconds=5))
    lose_everything(redis_backend)
    claim = redis_backend.claim([target.id])
    CallAttempt.objects.filter(pk=ringing.pk).update(slot_held=False)  # the rebuild may still read it held
    live.release(target, target.id, TZ, ringing.started_at, undo_usage=True, slot=slot_of(ringing))
    assert redis_backend.load(claim, target, TZ, now, held=[(ringing.started_at, slot_of(ringing))],
                              counts=(1, 1, 0))
    assert values(redis_backend, target, now) == (0, 0, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_a_rebuild_counts_a_network_with_more_targets_than_a_statement_takes_values(redis_backend,
                                                                                    few_sql_variables):
    from callbroker.network.models import Target as TargetRow
    from callbroker.network.snapshot import current_snapshot

    load_network({
        "version": 1,
        "campaigns": [{"key": "c", "name": "C", "category": "plumbing", "payout": "1.00"}],
        "buyers": [{"key": "b", "name": "B", "timezone": TZ, "targets": [
            {"key": f"t{i}", "campaign": "c", "number": f"+1512555{7000 + i:04d}", "price": "1.00",
             "caps": {"concurrency": 1, "hourly": 5}} for i in range(150)]}],
    })
    rows = list(TargetRow.objects.order_by("pk"))
    targets = [bench.core_target({"id": row.pk, "concurrency_limit": 1, "hourly_cap": 5}) for row in rows]
    current_snapshot()  # the rebuild counts every target this process knows
    now = now_utc()
    last = targets[-1]
    attempt(last, now - dt.timedelta(seconds=20))  # ringing: holds the last target's only slot
    attempt(last, now - dt.timedelta(seconds=30), result="bridged", slot_held=False)
    lose_everything(redis_backend)

    assert live.reserve(targets[0], TZ, now) is None  # rebuilds all 150 (the first target is free)
    assert values(redis_backend, last, now) == (1, 2, 0, 0)  # active, hour, day, month (no daily cap)
    assert live.reserve(last, TZ, now) is FULL
