"""Live per-target counters on the call path: active calls, auto-pauses and cap usage.

Three functions, whatever keeps the counters:

- ``read(targets, timezones, now)`` -> (counters for routing, the set of targets auto-paused at ``now``)
- ``reserve(target, tz_name, now)`` -> ``None`` when the concurrency slot and one call of each cap were
  taken (all or nothing), else the ``Exclusion`` that was full
- ``release(target, target_id, tz_name, started_at, *, undo_usage)`` gives the slot back and, for a
  call that was not delivered, the cap usage counted at ``started_at``

Two backends, chosen by ``CALLBROKER_COUNTERS`` (``auto``: Redis when ``REDIS_URL`` is set):

**sql** (the embedded default; this module) — single statements written by hand (portable between
SQLite and PostgreSQL; the ORM's query building cost more than the queries), each one conditional and
atomic in the database:

- a concurrency slot: ``UPDATE … SET active_calls = active_calls + 1 WHERE … AND active_calls < limit``
- one call of a cap: ``INSERT … ON CONFLICT (target, period) DO UPDATE SET count = count + 1
  WHERE count < cap`` (no row changed = cap reached)

On PostgreSQL the second of two simultaneous updates waits for the first's row lock and re-checks its
``WHERE`` on the new row, so two calls can never both take the last slot or the last call of a cap.
The changes are part of the webhook's transaction: a rollback gives them back.

**redis** (``callbroker.network.live_redis``) — one Lua script per change, for several app nodes.
Redis is outside the database transaction, so this module ties the two together:

- a reservation taken inside a transaction that then rolls back (a concurrent duplicate webhook, the
  database failing) is given back (``_GiveBackUnlessCommitted``);
- a release inside a transaction happens only once it commits (``transaction.on_commit``): a rolled
  back release leaves ``slot_held`` set in the database, and its retry must not release twice.

Auto-pauses (``TargetState.paused_until``) stay in the database with either backend: the call flow and
the admin write them there. The Redis ``read`` reads them with one indexed query, uncached, so that
a pause or its end in the admin applies to the next call.

Both are correct across processes and nodes; Redis was measured 3.4-9 times faster and takes the counter
writes (and their row locks) out of the webhook's transaction: ``callbroker bench --only counters``,
figures and decision in docs/production.md.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.dispatch import receiver

from callbroker.core.model import Exclusion, Target, TargetCounters
from callbroker.network.models import TargetState, TargetUsage
from callbroker.ops import metrics

log = logging.getLogger(__name__)

STATE = TargetState._meta.db_table
USAGE = TargetUsage._meta.db_table
CAP_EXCLUSIONS = (Exclusion.HOURLY_CAP, Exclusion.DAILY_CAP, Exclusion.MONTHLY_CAP)


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def period_keys(at: dt.datetime, tz_name: str) -> tuple[str, str, str]:
    """Hour, day and month keys of ``at`` in the buyer's local time (caps count per local period)."""
    local = at.astimezone(zone(tz_name))
    day = f"{local.year:04d}{local.month:02d}{local.day:02d}"
    return f"H{day}{local.hour:02d}", f"D{day}", f"M{day[:6]}"


def caps_of(target: Target) -> tuple[int | None, int | None, int | None]:
    return target.hourly_cap, target.daily_cap, target.monthly_cap


# --------------------------------------------------------------------------- the public functions


def _counted(operation: str, call):
    """Run one counter operation on this process's backend, counting its failures for the metrics."""
    backend = _backend()
    try:
        return call(backend)
    except Exception:
        metrics.COUNTER_BACKEND_ERRORS.labels(backend=backend.name, operation=operation).inc()
        raise


def read(targets: Sequence[Target], timezones: dict[int, str],
         now: dt.datetime) -> tuple[dict[int, TargetCounters], set[int]]:
    """Counters for routing and the set of targets auto-paused at ``now``."""
    return _counted("read", lambda backend: backend.read(targets, timezones, now))


def reserve(target: Target, tz_name: str, now: dt.datetime) -> Exclusion | None:
    """Take a concurrency slot and one call of each cap, all or nothing. Call inside a transaction."""
    return _counted("reserve", lambda backend: backend.reserve(target, tz_name, now))


def release(target: Target | None, target_id: int, tz_name: str | None, started_at: dt.datetime, *,
            undo_usage: bool) -> None:
    """Give back a concurrency slot and, for a call that was not delivered, its cap usage."""
    _counted("release", lambda backend: backend.release(target, target_id, tz_name, started_at,
                                                        undo_usage=undo_usage))


def backend_name() -> str:
    """``sql`` or ``redis``: where this process keeps the counters."""
    return _backend().name


def current_backend() -> Backend:
    """The backend object (``SQL``, or a ``RedisBackend`` whose ``store`` is the ``RedisCounters``)."""
    return _backend()


# --------------------------------------------------------------------------- backend choice


class Backend(Protocol):
    name: str

    def read(self, targets: Sequence[Target], timezones: dict[int, str],
             now: dt.datetime) -> tuple[dict[int, TargetCounters], set[int]]: ...

    def reserve(self, target: Target, tz_name: str, now: dt.datetime) -> Exclusion | None: ...

    def release(self, target: Target | None, target_id: int, tz_name: str | None, started_at: dt.datetime, *,
                undo_usage: bool) -> None: ...


_current: Backend | None = None


def _backend() -> Backend:
    global _current
    if _current is None:
        _current = _from_settings()
    return _current


def _from_settings() -> Backend:
    choice = getattr(settings, "COUNTERS_BACKEND", "auto")
    url = getattr(settings, "REDIS_URL", "")
    if choice == "redis" or (choice == "auto" and url):
        from callbroker.network import live_redis

        store = live_redis.RedisCounters(redis_client(), getattr(settings, "REDIS_KEY_PREFIX", "cb:"))
        return RedisBackend(store)
    return SQL


def redis_client():
    """This process's Redis client for ``REDIS_URL`` (``None`` when no Redis is configured)."""
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        return None
    return _client(url, getattr(settings, "REDIS_TIMEOUT_MS", 500) / 1000)


@lru_cache(maxsize=4)
def _client(url: str, timeout_s: float):
    from callbroker.network import live_redis

    return live_redis.connect(url, timeout_s)


@receiver(setting_changed)
def _settings_changed(setting: str, **kwargs) -> None:
    """Tests that change the backend settings get a backend built from the new ones."""
    global _current
    if setting in {"COUNTERS_BACKEND", "REDIS_URL", "REDIS_KEY_PREFIX", "REDIS_TIMEOUT_MS"}:
        _current = None


# --------------------------------------------------------------------------- SQL


def _placeholders(n: int) -> str:
    return ", ".join(["%s"] * n)


def _aware(value) -> dt.datetime:
    if isinstance(value, str):  # SQLite returns text through a raw cursor
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


class SqlBackend:
    """The counters as rows of ``TargetState`` and ``TargetUsage``, changed by conditional statements."""

    name = "sql"

    def read(self, targets: Sequence[Target], timezones: dict[int, str],
             now: dt.datetime) -> tuple[dict[int, TargetCounters], set[int]]:
        if not targets:
            return {}, set()
        ids = [t.id for t in targets]
        active: dict[int, int] = {}
        auto_paused: set[int] = set()
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT target_id, active_calls, paused_until FROM {STATE} "
                f"WHERE target_id IN ({_placeholders(len(ids))})",
                ids,
            )
            for target_id, active_calls, paused_until in cursor.fetchall():
                active[target_id] = active_calls
                if paused_until is not None and _aware(paused_until) > now:
                    auto_paused.add(target_id)
            keys = {t.id: period_keys(now, timezones[t.id]) for t in targets
                    if any(c is not None for c in caps_of(t))}
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

    def reserve(self, target: Target, tz_name: str, now: dt.datetime) -> Exclusion | None:
        with connection.cursor() as cursor:
            if target.concurrency_limit is None:
                cursor.execute(f"UPDATE {STATE} SET active_calls = active_calls + 1 WHERE target_id = %s",
                               [target.id])
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
            for key, cap, exclusion in zip(period_keys(now, tz_name), caps_of(target), CAP_EXCLUSIONS, strict=True):
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
                _give_back(cursor, target.id, taken)
                return exclusion
        return None

    def release(self, target: Target | None, target_id: int, tz_name: str | None, started_at: dt.datetime, *,
                undo_usage: bool) -> None:
        keys: list[str] = []
        if undo_usage and target is not None and tz_name:
            keys = [k for k, cap in zip(period_keys(started_at, tz_name), caps_of(target), strict=True)
                    if cap is not None]
        with connection.cursor() as cursor:
            _give_back(cursor, target_id, keys)


def _give_back(cursor, target_id: int, keys: Iterable[str]) -> None:
    cursor.execute(f"UPDATE {STATE} SET active_calls = active_calls - 1 WHERE target_id = %s AND active_calls > 0",
                   [target_id])
    keys = list(keys)
    if keys:
        cursor.execute(
            f"UPDATE {USAGE} SET count = count - 1 WHERE target_id = %s AND period IN ({_placeholders(len(keys))}) "
            "AND count > 0",
            [target_id, *keys],
        )


SQL = SqlBackend()


# --------------------------------------------------------------------------- Redis


def auto_paused(target_ids: Sequence[int], now: dt.datetime) -> set[int]:
    """Those of these targets whose automatic pause (missed-call protection) lasts beyond ``now``."""
    if not target_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT target_id, paused_until FROM {STATE} WHERE target_id IN ({_placeholders(len(target_ids))}) "
            "AND paused_until IS NOT NULL",
            list(target_ids),
        )
        return {target_id for target_id, until in cursor.fetchall() if _aware(until) > now}


class RedisBackend:
    """``live_redis.RedisCounters`` tied to the database transaction of the caller (see the module docstring)."""

    name = "redis"

    def __init__(self, store) -> None:
        self.store = store

    def read(self, targets: Sequence[Target], timezones: dict[int, str],
             now: dt.datetime) -> tuple[dict[int, TargetCounters], set[int]]:
        if not targets:
            return {}, set()
        counters = self.store.read(targets, timezones, now)
        return counters, auto_paused([t.id for t in targets], now)

    def reserve(self, target: Target, tz_name: str, now: dt.datetime) -> Exclusion | None:
        refused = self.store.reserve(target, tz_name, now)
        if refused is None and connection.in_atomic_block:
            transaction.on_commit(_GiveBackUnlessCommitted(self.store, target, tz_name, now).committed)
        return refused

    def release(self, target: Target | None, target_id: int, tz_name: str | None, started_at: dt.datetime, *,
                undo_usage: bool) -> None:
        if not connection.in_atomic_block:
            self.store.release(target, target_id, tz_name, started_at, undo_usage=undo_usage)
            return

        def after_commit() -> None:
            try:
                self.store.release(target, target_id, tz_name, started_at, undo_usage=undo_usage)
            except Exception:  # noqa: BLE001 - the transaction is committed; the webhook's answer stands
                metrics.COUNTER_BACKEND_ERRORS.labels(backend=self.name, operation="release").inc()
                log.exception("target %s: releasing its slot in Redis failed after commit; the slot stays taken "
                              "until the counters are corrected (docs/production.md)", target_id)

        transaction.on_commit(after_commit)


class _GiveBackUnlessCommitted:
    """Gives a Redis reservation back when the transaction it was taken in does not commit.

    Django has no on-rollback hook, but it drops the ``on_commit`` callbacks of a transaction (or of a
    savepoint) that rolls back. :meth:`committed` is registered as one; nothing else refers to this
    object, so CPython finalizes it the moment Django either calls and discards it (commit: nothing to
    do) or discards it uncalled (rollback: give the reservation back, here, in ``__del__``).

    One more case: a commit hook registered before ours that raises makes Django drop the rest uncalled
    although the transaction committed; the connection then still says it is running commit hooks,
    and the reservation is kept.
    """

    __slots__ = ("_store", "_target", "_tz_name", "_at", "_connection", "_done")

    def __init__(self, store, target: Target, tz_name: str, at: dt.datetime) -> None:
        self._store, self._target, self._tz_name, self._at = store, target, tz_name, at
        self._connection = connections[DEFAULT_DB_ALIAS]  # this thread's connection (``connection`` is a proxy)
        self._done = False

    def committed(self) -> None:
        self._done = True

    def __del__(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            if self._connection.run_commit_hooks_on_set_autocommit_on:
                return  # committed; an earlier commit hook failed (see the class docstring)
            self._store.release(self._target, self._target.id, self._tz_name, self._at, undo_usage=True)
            log.info("target %s: reservation given back (its transaction rolled back)", self._target.id)
        except Exception:  # noqa: BLE001 - a finalizer must not raise
            metrics.COUNTER_BACKEND_ERRORS.labels(backend="redis", operation="release").inc()
            log.exception("target %s: giving back a rolled-back reservation in Redis failed", self._target.id)
