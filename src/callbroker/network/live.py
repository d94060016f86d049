"""Live per-target counters on the call path: active calls, auto-pauses and cap usage.

These run on every call, so they are single SQL statements written by hand (portable between SQLite
and PostgreSQL) rather than ORM querysets: the ORM's query building cost more than the queries.
Every change is one conditional statement, atomic in the database:

- a concurrency slot: ``UPDATE … SET active_calls = active_calls + 1 WHERE … AND active_calls < limit``
- one call of a cap: ``INSERT … ON CONFLICT (target, period) DO UPDATE SET count = count + 1
  WHERE count < cap`` (no row changed = cap reached)

so two simultaneous calls can never both take the last slot or the last call of a cap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from functools import lru_cache
from zoneinfo import ZoneInfo

from django.db import connection

from callbroker.core.model import Exclusion, Target, TargetCounters
from callbroker.network.models import TargetState, TargetUsage

STATE = TargetState._meta.db_table
USAGE = TargetUsage._meta.db_table
CAP_EXCLUSIONS = (Exclusion.HOURLY_CAP, Exclusion.DAILY_CAP, Exclusion.MONTHLY_CAP)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def period_keys(at: dt.datetime, tz_name: str) -> tuple[str, str, str]:
    """Hour, day and month keys of ``at`` in the buyer's local time (caps count per local period)."""
    local = at.astimezone(_zone(tz_name))
    day = f"{local.year:04d}{local.month:02d}{local.day:02d}"
    return f"H{day}{local.hour:02d}", f"D{day}", f"M{day[:6]}"


def _caps(target: Target) -> tuple[int | None, int | None, int | None]:
    return target.hourly_cap, target.daily_cap, target.monthly_cap


def _placeholders(n: int) -> str:
    return ", ".join(["%s"] * n)


def read(targets: Sequence[Target], timezones: dict[int, str],
         now: dt.datetime) -> tuple[dict[int, TargetCounters], set[int]]:
    """Counters for routing and the set of targets auto-paused at ``now``."""
    if not targets:
        return {}, set()
    ids = [t.id for t in targets]
    active: dict[int, int] = {}
    auto_paused: set[int] = set()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT target_id, active_calls, paused_until FROM {STATE} WHERE target_id IN ({_placeholders(len(ids))})",
            ids,
        )
        for target_id, active_calls, paused_until in cursor.fetchall():
            active[target_id] = active_calls
            if paused_until is not None:
                if isinstance(paused_until, str):  # SQLite returns text through a raw cursor
                    paused_until = dt.datetime.fromisoformat(paused_until)
                if paused_until.tzinfo is None:
                    paused_until = paused_until.replace(tzinfo=dt.UTC)
                if paused_until > now:
                    auto_paused.add(target_id)
        keys = {t.id: period_keys(now, timezones[t.id]) for t in targets if any(c is not None for c in _caps(t))}
        usage: dict[tuple[int, str], int] = {}
        if keys:
            periods = sorted({k for triple in keys.values() for k in triple})
            cursor.execute(
                f"SELECT target_id, period, count FROM {USAGE} WHERE target_id IN ({_placeholders(len(keys))}) "
                f"AND period IN ({_placeholders(len(periods))})",
                [*keys, *periods],
            )
            usage = {(target_id, period): count for target_id, period, count in cursor.fetchall()}
    counters = {}
    for t in targets:
        h, d, m = keys.get(t.id, ("", "", ""))
        counters[t.id] = TargetCounters(active=active.get(t.id, 0), hour=usage.get((t.id, h), 0),
                                        day=usage.get((t.id, d), 0), month=usage.get((t.id, m), 0))
    return counters, auto_paused


def reserve(target: Target, tz_name: str, now: dt.datetime) -> Exclusion | None:
    """Take a concurrency slot and one call of each cap, all or nothing. Call inside a transaction."""
    with connection.cursor() as cursor:
        if target.concurrency_limit is None:
            cursor.execute(f"UPDATE {STATE} SET active_calls = active_calls + 1 WHERE target_id = %s", [target.id])
            if cursor.rowcount == 0:
                cursor.execute(f"INSERT INTO {STATE} (target_id, active_calls, pause_reason) VALUES (%s, 1, '')",
                               [target.id])
        else:
            cursor.execute(
                f"UPDATE {STATE} SET active_calls = active_calls + 1 WHERE target_id = %s AND active_calls < %s",
                [target.id, target.concurrency_limit],
            )
            if cursor.rowcount == 0:
                return Exclusion.CONCURRENCY_FULL
        taken: list[str] = []
        for key, cap, exclusion in zip(period_keys(now, tz_name), _caps(target), CAP_EXCLUSIONS, strict=True):
            if cap is None:
                continue
            if cap > 0:
                cursor.execute(
                    f"INSERT INTO {USAGE} (target_id, period, count) VALUES (%s, %s, 1) "
                    f"ON CONFLICT (target_id, period) DO UPDATE SET count = {USAGE}.count + 1 "
                    f"WHERE {USAGE}.count < %s",
                    [target.id, key, cap],
                )
                if cursor.rowcount:
                    taken.append(key)
                    continue
            # Cap reached: give back what this call took so far, so nothing of the reservation remains.
            _give_back(cursor, target.id, taken, slot=True)
            return exclusion
    return None


def release(target: Target | None, target_id: int, tz_name: str | None, started_at: dt.datetime, *,
            undo_usage: bool) -> None:
    """Give back a concurrency slot and, for a call that was not delivered, its cap usage."""
    keys: list[str] = []
    if undo_usage and target is not None and tz_name:
        keys = [k for k, cap in zip(period_keys(started_at, tz_name), _caps(target), strict=True) if cap is not None]
    with connection.cursor() as cursor:
        _give_back(cursor, target_id, keys, slot=True)


def _give_back(cursor, target_id: int, keys: Iterable[str], *, slot: bool) -> None:
    if slot:
        cursor.execute(f"UPDATE {STATE} SET active_calls = active_calls - 1 WHERE target_id = %s AND active_calls > 0",
                       [target_id])
    keys = list(keys)
    if keys:
        cursor.execute(
            f"UPDATE {USAGE} SET count = count - 1 WHERE target_id = %s AND period IN ({_placeholders(len(keys))}) "
            "AND count > 0",
            [target_id, *keys],
        )
