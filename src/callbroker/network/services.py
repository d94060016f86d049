"""Network operations shared by the loader, the admin and the commands (each owns no transaction logic)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q, QuerySet
from django.utils import timezone

from callbroker.db import in_batches
from callbroker.network import models as m

__all__ = ["clear_auto_pause", "ensure_target_states", "target_ids_with_calls"]


def ensure_target_states(target_ids: Iterable[int]) -> int:
    """Create the missing ``TargetState`` rows of these targets; return how many were created.

    Every target needs its live-state row: the call path updates it (atomically), and makes it only at a
    target's first reservation when it is missing (a target made other than by the loader or the admin).
    """
    wanted = set(target_ids)
    if not wanted:
        return 0
    have = set()
    for some in in_batches(sorted(wanted)):
        have.update(m.TargetState.objects.filter(target_id__in=some).values_list("target_id", flat=True))
    missing = [m.TargetState(target_id=pk) for pk in sorted(wanted - have)]
    m.TargetState.objects.bulk_create(missing, ignore_conflicts=True)
    return len(missing)


def target_ids_with_calls(target_ids: Iterable[int]) -> set[int]:
    """Those of these targets that some call connected to or rang (deleting them would cut history)."""
    used: set[int] = set()
    for some in in_batches(list(target_ids)):
        rang = Q(connected_calls__isnull=False) | Q(attempts__isnull=False)
        rows = m.Target.objects.filter(rang, pk__in=some)
        used.update(rows.values_list("pk", flat=True).distinct())
    return used


def clear_auto_pause(states: QuerySet[m.TargetState]) -> int:
    """End the automatic pause (missed-call protection) of these targets now; return how many changed.

    The pause ends *now* (``paused_until`` = now), as if it had run out: missed-call protection counts
    only the misses after the last pause ended, so the misses that caused this one don't pause the target
    again at its next miss (they did when the end was erased). Never touches ``active_calls``, which only
    the call path changes.
    """
    now = timezone.now()
    changed = states.filter(paused_until__gt=now).update(paused_until=now, pause_reason="")
    states.filter(~Q(pause_reason="")).update(pause_reason="")  # a pause that had ended: tidied, not counted
    return changed
