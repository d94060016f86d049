"""A target's live-state row (``TargetState``) and the SQL counters (``network/live.py``, SQLite).

The loader and the admin make a state row for every target; a target made any other way (a script, a
data migration) has none until its first call. Its first reservation must then make the row, with or
without a concurrency limit, instead of finding "no row changed" and calling the target full for ever.
"""

from __future__ import annotations

import copy

import pytest
from django.db import transaction
from django.utils import timezone

from callbroker.network import live
from callbroker.network import models as m
from callbroker.network.snapshot import build_snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def target_without_state(network, load):
    network = copy.deepcopy(network)
    network["buyers"][0]["targets"][0]["caps"] = {"concurrency": 1}
    load(network)
    row = m.Target.objects.get(key="acme-main")
    m.TargetState.objects.filter(target=row).delete()
    info = build_snapshot().targets[row.pk]
    assert info.core.concurrency_limit == 1
    return info


def _reserve(info) -> live.Exclusion | None:
    with transaction.atomic():
        return live.SQL.reserve(info.core, info.timezone, timezone.now())


def test_the_first_slot_of_a_target_without_a_state_row_makes_the_row(target_without_state):
    info = target_without_state
    assert _reserve(info) is None
    assert m.TargetState.objects.get(target_id=info.core.id).active_calls == 1
    assert _reserve(info) is live.Exclusion.CONCURRENCY_FULL  # its limit holds from then on
    assert m.TargetState.objects.get(target_id=info.core.id).active_calls == 1


def test_a_limit_of_zero_takes_no_call_and_makes_no_row(target_without_state):
    info = target_without_state
    m.Target.objects.filter(pk=info.core.id).update(concurrency_limit=0)
    info = build_snapshot().targets[info.core.id]
    assert _reserve(info) is live.Exclusion.CONCURRENCY_FULL
    assert not m.TargetState.objects.filter(target_id=info.core.id).exists()
