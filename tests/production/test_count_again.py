"""Counting a delivered call again after its cap units were given back, with the Redis backend.

Given the Redis counters backend and a target with hourly and daily caps, when a call's final status
arrives first (its ringing attempt is canceled, slot and cap units given back in Redis) and its bridged
result after (``live.count_again``, from ``services.dial_finished``), then Redis's counters of the target
are marked stale and rebuilt from the calls' attempts, where the bridged attempt counts: the next
reservation sees the delivered call in the hour and the day. (The SQL backend, through the whole call
flow: ``tests/calls/test_reordered_caps.py``.)
"""

from __future__ import annotations

import pytest
from django.db import transaction

from callbroker.network import live
from callbroker.network.models import TargetState
from tests.production.conftest import TZ, now_utc, values
from tests.production.test_redis_unreachable import reserve


@pytest.mark.django_db(transaction=True)
def test_a_late_bridged_result_is_counted_again_in_redis(redis_backend, target):
    from callbroker.calls.models import CallAttempt

    now = now_utc()
    assert reserve(target, now) is None
    assert values(redis_backend, target, now)[:3] == (1, 1, 1)
    row = CallAttempt.objects.get(target_id=target.id)
    with transaction.atomic():  # the final status first: the attempt canceled, given back as not delivered
        row.result, row.slot_held = "canceled", False
        row.save(update_fields=["result", "slot_held"])
        live.release(target, target.id, TZ, row.started_at, undo_usage=True)
    assert values(redis_backend, target, now)[:3] == (0, 0, 0)
    with transaction.atomic():  # then the Dial action: the buyer talked
        row.result = "bridged"
        row.save(update_fields=["result"])
        live.count_again(target, TZ, row.started_at)
    assert TargetState.objects.filter(target_id=target.id, counted_without_redis_at__isnull=False).exists()
    live.read([target], {target.id: TZ}, now)  # meets the mark: Redis forgets the target's counters
    assert reserve(target, now) is None  # rebuilt from the attempts first, then this call's slot
    assert values(redis_backend, target, now)[:3] == (1, 2, 2)  # one slot held; two calls this hour and day
