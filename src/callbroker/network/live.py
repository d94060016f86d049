"""Live per-target counters on the call path: active calls, auto-pauses and cap usage.

Three functions, whatever keeps the counters:

- ``read(targets, timezones, now)`` -> (counters for routing, the set of targets auto-paused at ``now``)
- ``reserve(target, tz_name, now)`` -> ``None`` when the concurrency slot and one call of each cap were
  taken (all or nothing), else the ``Exclusion`` that was full
- ``release(target, target_id, tz_name, started_at, *, undo_usage, periods)`` gives the slot back and, for
  a call that was not delivered, the cap units its reservation counted: ``periods``, the period names
  recorded with the attempt at dial time (:func:`counted_periods`); not recorded (an attempt dialled by
  the previous release), those of ``started_at`` for the caps the target has now

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

When Redis has lost the counters (restarted without persistence, flushed) a reservation finds its
target's counters unknown and :func:`rebuild_from_database` counts them again from the call attempts
(slots held, calls counted in the current periods) before anything is taken; releases meanwhile
change nothing (the database already has them). See ``live_redis`` and docs/production.md.

Degraded mode (the database away, Redis up) takes and gives back slots in Redis too, under a token
per call and step (:func:`store_without_database`, ``calls/degraded.py``).

Auto-pauses (``TargetState.paused_until``) stay in the database with either backend: the call flow and
the admin write them there. The Redis ``read`` reads them with one indexed query, uncached, so that
a pause or its end in the admin applies to the next call.

Both are correct across processes and nodes; Redis was measured faster and takes the counter writes
(and their row locks) out of the webhook's transaction: ``callbroker bench --only counters``, figures
and decision in docs/production.md.

**One authority per target when Redis is unreachable from some node.** A node that can't reach Redis
counts in the database (:class:`RedisBackend`); another may reach it at the same moment (as Redis stops,
as it comes back, or out of one node's reach only). Every reservation of a target therefore takes the
target's *limits lock* (a PostgreSQL advisory lock until the transaction ends): shared through Redis,
exclusive when counted in the database. A reservation counted in the database thus waits for those in
flight through Redis and counts their committed attempts; one through Redis that follows it sees the
target marked counted without Redis and has the database decide as well (:func:`lock_for_reservation`).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from functools import cache, lru_cache, partial
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

import redis
from django.conf import settings
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.dispatch import receiver

from callbroker import db
from callbroker.core.model import Exclusion, Target, TargetCounters
from callbroker.core.periods import local_period_keys
from callbroker.network.models import TargetState, TargetUsage
from callbroker.ops import metrics
from callbroker.words import counted

if TYPE_CHECKING:
    from callbroker.network.live_redis import RedisCounters

log = logging.getLogger(__name__)

STATE = TargetState._meta.db_table
USAGE = TargetUsage._meta.db_table
CAP_EXCLUSIONS = (Exclusion.HOURLY_CAP, Exclusion.DAILY_CAP, Exclusion.MONTHLY_CAP)


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def period_keys(at: dt.datetime, tz_name: str) -> tuple[str, str, str]:
    """Hour, day and month keys of ``at`` in the buyer's local time (caps count per local period; an hour's
    second time when the clocks go back is a period of its own: ``core/periods.py``)."""
    return local_period_keys(at.astimezone(zone(tz_name)))


def period_keys_at(at: dt.datetime) -> Callable[[str], tuple[str, str, str]]:
    """``period_keys`` at ``at`` by zone name, each zone worked out once: a read covers many targets in a
    handful of zones (converting the time for each target was a third of reading 1,000 targets)."""
    return cache(partial(period_keys, at))


def caps_of(target: Target) -> tuple[int | None, int | None, int | None]:
    return target.hourly_cap, target.daily_cap, target.monthly_cap


def counted_periods(target: Target, keys: tuple[str, str, str]) -> str:
    """The periods a reservation of ``target`` counts a cap unit in, as recorded with its attempt
    (``CallAttempt.counted_periods``): the names of ``keys`` (:func:`period_keys` of the reservation's
    moment) whose cap the target has, space-separated; '' when it has none.

    Recorded so that the release gives back exactly these units. Worked out again at release time from
    the caps and the buyer's time zone then, a cap added while the line rang (``network load``) had the
    release give back a unit of that cap the call never took (another call's: the line took one call too
    many in that hour), one removed gave back none of a unit taken, and a time zone changed gave back
    units of other days or months.
    """
    hour_cap, day_cap, month_cap = target.hourly_cap, target.daily_cap, target.monthly_cap
    if hour_cap is None and day_cap is None and month_cap is None:
        return ""
    hour, day, month = keys
    if hour_cap is not None and day_cap is not None and month_cap is not None:
        return f"{hour} {day} {month}"
    counted = [hour] if hour_cap is not None else []  # spelt out: on every dial (a generator cost four times this)
    if day_cap is not None:
        counted.append(day)
    if month_cap is not None:
        counted.append(month)
    return " ".join(counted)


def units_to_give_back(target: Target | None, tz_name: str | None, started_at: dt.datetime,
                       periods: str | None) -> list[str]:
    """The periods whose cap unit a release of a call not delivered gives back: those recorded at dial time
    (``periods``, :func:`counted_periods`), or for an attempt that recorded none (dialled by the previous
    release, ``None``), as that release worked them out: ``started_at``'s periods in ``tz_name`` of the caps
    ``target`` has now. None for a target unknown (gone from the network)."""
    if target is None:
        return []
    if periods is not None:
        return periods.split()
    if not tz_name:
        return []
    return [key for key, cap in zip(period_keys(started_at, tz_name), caps_of(target), strict=True)
            if cap is not None]


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


def auto_paused(target_ids: Iterable[int], now: dt.datetime) -> set[int]:
    """Those of these targets whose automatic pause (missed-call protection) lasts beyond ``now``.

    In the database with either backend. One query over the state rows whose pause lasts beyond ``now``
    (few), with no list of ids however big the campaign: a decision needs every target's pause before it
    knows whose counters to read (``routing.counted_targets``). ``target_ids`` is read only when a pause
    exists.
    """
    rows = db.fetchall(f"SELECT target_id FROM {STATE} WHERE paused_until > %s",
                       [connection.ops.adapt_datetimefield_value(now)])
    paused = {target_id for (target_id,) in rows}
    return paused.intersection(target_ids) if paused else paused


def reserve(target: Target, tz_name: str, now: dt.datetime, slot: str = "", *,
            let_go_if_refused: bool = False) -> Exclusion | None:
    """Take a concurrency slot and one call of each cap, all or nothing. Call inside a transaction.

    ``slot``: the slot's name (:func:`slot_name` of the attempt that will hold it), given back by name.

    ``let_go_if_refused``: when refused, the caller goes on in the same transaction to a target that comes
    before this one in target order, whose row it has not locked yet (the inbound webhook or an IVR answer
    going down its ring, or a Dial action that locked nothing of it first: :func:`lock_targets_in_order`). A
    refusal for a cap just reached leaves the target's rows locked on PostgreSQL (its slot taken then given
    back on its state row; ``INSERT … ON CONFLICT DO UPDATE … WHERE`` locks the
    usage row even when its ``WHERE`` is false), and held while the next target's row was waited for they
    made a deadlock with a Dial action that locks both rows in target order. With SQL counters on PostgreSQL
    the reservation is then taken under a savepoint, rolled back when refused, which lets go of those rows.
    Two statements more, so only there (docs/database.md, the order of the locks).

    The same with Redis counters on a process counting in the database (Redis unreachable, not tried for
    this reservation): a refusal there keeps the target's limits lock (exclusive) and its row (the mark)
    otherwise. The mark goes with the savepoint too: a refused reservation changed no slot that Redis would
    have to count again. So does a reservation on a process that found Redis unreachable and hasn't heard
    from it since (``RedisBackend.outage_seen``) but tries it again first (its last failure more than
    :data:`REDIS_RETRY_REFUSED_S` ago): the try takes the limits lock (exclusive there, see
    :func:`lock_for_reservation`), and Redis failing again it is counted in the database under it. The
    savepoint rolls back that lock too (and a refusal through Redis, should Redis answer). Refused in the
    database after Redis failed, the mark goes with the savepoint, though the Redis command may have run (a
    timeout): this process then has Redis recount the target at its next read
    (``RedisBackend.forget_later``), as after a give-back that could reach neither.

    And so does one through a Redis that answers: refused there (its script checks every limit before it
    takes anything, so a refusal wrote nothing in Redis), it kept the target's limits lock, shared, while the
    webhook took the next target's, beside the Dial action of a node counting in the database (some nodes
    reaching Redis, others not) that takes its ring's limits locks exclusive in target order: a deadlock. The
    rollback lets go of that lock (and of the row of a target marked counted without Redis); it undoes nothing
    in Redis, and has nothing to: a reservation taken in Redis then refused by the database was given back at
    once (``_give_back_now``), and one taken registers its give-back (``_GiveBackUnlessCommitted``) only when
    it is not refused, so the savepoint released keeps it.
    """
    if let_go_if_refused and connection.vendor == "postgresql" and connection.in_atomic_block:
        backend = _backend()
        if backend.name == "sql":
            return _counted("reserve", lambda sql: _let_go_if_refused(
                lambda: sql.reserve(target, tz_name, now, slot)))
        if isinstance(backend, RedisBackend) and backend.counting_in_database:
            return _counted("reserve", lambda without_redis: _let_go_if_refused(
                lambda: without_redis.count_in_database(target, tz_name, now)))
        if isinstance(backend, RedisBackend):
            return _counted("reserve", lambda redis_backend: _tried_then_let_go_if_refused(
                redis_backend, target, tz_name, now, slot))
    return _counted("reserve", lambda backend: backend.reserve(target, tz_name, now, slot))


def _tried_then_let_go_if_refused(backend: RedisBackend, target: Target, tz_name: str, now: dt.datetime,
                                  slot: str) -> Exclusion | None:
    """A reservation through Redis, else in the database (Redis failing, or without this target's counters),
    under a savepoint rolled back when refused (see :func:`reserve`); refused in the database, Redis recounts
    the target (its mark rolled back)."""
    refused = _let_go_if_refused(lambda: backend.reserve(target, tz_name, now, slot))
    if refused is not None and backend.last_reserved_in_database:
        backend.forget_later(target.id)
    return refused


def _let_go_if_refused(reserving: Callable[[], Exclusion | None]) -> Exclusion | None:
    """A reservation under a savepoint, rolled back when refused: the locks the refusal took (rows, and a
    limits lock) go with it (see :func:`reserve`)."""
    savepoint = transaction.savepoint()
    refused = reserving()
    if refused is not None:
        transaction.savepoint_rollback(savepoint)
    transaction.savepoint_commit(savepoint)
    return refused


def release(target: Target | None, target_id: int, tz_name: str | None, started_at: dt.datetime, *,
            undo_usage: bool, slot: str = "", periods: str | None = None) -> None:
    """Give back a concurrency slot and, for a call that was not delivered, its cap units: those of
    ``periods`` (recorded with the attempt at dial time), else worked out as :func:`units_to_give_back` says."""
    _counted("release", lambda backend: backend.release(target, target_id, tz_name, started_at,
                                                        undo_usage=undo_usage, slot=slot, periods=periods))


def count_again(target: Target, tz_name: str, started_at: dt.datetime, periods: str | None = None) -> None:
    """Count a call against the caps again after its units were given back as not delivered.

    For an attempt whose bridged result arrived after the call's final status: the status gave the
    cap units back (a call that ends while its target rings was not delivered), then the buyer turned out
    to have talked. No limit is checked: the call happened. Call inside the transaction that records it.
    ``periods``: those its reservation counted (recorded at dial time), else worked out as a release does.
    """
    if units_to_give_back(target, tz_name, started_at, periods):
        _counted("count_again", lambda backend: backend.count_again(target, tz_name, started_at, periods))


def lock_targets_in_order(target_ids: Iterable[int | None]) -> bool:
    """Before a writer gives one target's slot back and takes another's: lock the ``TargetState`` rows of
    every target it may write until the transaction ends, in one statement, in target order (SQL counters
    on PostgreSQL; nothing otherwise). Returns whether this process locks them here (it then takes the next
    target's reservation with no savepoint, ``reserve``'s ``let_go_if_refused``).

    An unanswered leg's Dial action gives its target's slot back, then takes the next target's, in ring
    order. Two of them at the same moment whose rings cross (Line A then B, Line B then A: a repeat
    caller's sticky target, or targets of one priority shuffled) each held its own line's row and waited
    for the other's: a deadlock, one stopped by PostgreSQL after a second and run again. Taken in target
    order, the second waits for the first before it holds anything the first needs. Every target left in
    the ring is locked, not the next one only: the next may be refused (closed, paused, full) and a later
    one taken. With Redis counters the slots are outside the rows (a release after the commit, a
    reservation in Redis), so nothing is locked here while Redis answers; on SQLite the writers take turns
    already.

    With Redis counters on a process counting in the database (Redis unreachable) the same two Dial
    actions deadlocked the same way: each marked the line it gave back (its state row), then took the next
    line's limits lock and marked that one. There the targets' limits locks are taken first, exclusive, in
    target order, then their rows: a reservation through Redis on another node takes a target's limits lock
    (shared) before its row, so the limits locks must come first here too. So does a process that lost Redis
    and has not heard from it since (``RedisBackend.outage_seen``) though it tries it again first (its last
    failure more than :data:`REDIS_RETRY_REFUSED_S` ago): Redis failing again, its reservation of the next
    target is counted in the database under that target's limits lock, and refused (a cap just reached) it
    kept that lock while it took a later target's, before it in target order, beside a Dial action taking
    both in target order: a deadlock. Until Redis answers that process, the locks go in target order first.

    A process whose Redis answers locks nothing here, and its reservation of the next target (through Redis,
    under that target's limits lock held shared) refused for a cap just reached kept that lock while it took
    a later target's, before it in target order, beside the Dial action of a process counting in the database
    taking both exclusive in target order: a deadlock. It returns False, so that reservation lets go of what
    its refusal took (a savepoint, as the inbound webhook's).
    """
    if connection.vendor != "postgresql":
        return False
    backend = _backend()
    without_redis = isinstance(backend, RedisBackend) and (backend.counting_in_database or backend.outage_seen)
    if backend.name != "sql" and not without_redis:
        return False
    ids = sorted({target_id for target_id in target_ids if target_id is not None})
    if len(ids) > 1:
        if without_redis:  # one lock after the other, in the array's order
            db.fetchall("SELECT pg_advisory_xact_lock(%s, target_id) FROM unnest(%s::integer[]) AS target_id",
                        [LIMITS_LOCK_SPACE, ids])
        db.fetchall(f"SELECT target_id FROM {STATE} WHERE target_id = ANY(%s) ORDER BY target_id FOR UPDATE",
                    [ids])
    return True


def slot_name(call_sid: str, sequence: int) -> str:
    """The name of the slot an attempt holds: the call's CallSid and the attempt's sequence number."""
    return f"{call_sid}#{sequence}"


def last_reserved_in_database() -> bool:
    """This process's latest reservation was counted in the database because Redis was unreachable."""
    backend = _backend()
    return isinstance(backend, RedisBackend) and backend.last_reserved_in_database


def backend_name() -> str:
    """``sql`` or ``redis``: where this process keeps the counters."""
    return _backend().name


def current_backend() -> Backend:
    """The backend object (``SQL``, or a ``RedisBackend`` whose ``store`` is the ``RedisCounters``)."""
    return _backend()


def store_without_database() -> RedisCounters | None:
    """The ``RedisCounters`` when this process keeps the counters in Redis, else ``None``.

    Degraded mode uses it directly: it needs no database (SQL counters live in the database, so with the
    SQL backend degraded mode has no counters at all).
    """
    backend = _backend()
    return backend.store if isinstance(backend, RedisBackend) else None


# --------------------------------------------------------------------------- backend choice


class Backend(Protocol):
    name: str

    def read(self, targets: Sequence[Target], timezones: dict[int, str],
             now: dt.datetime) -> tuple[dict[int, TargetCounters], set[int]]: ...

    def reserve(self, target: Target, tz_name: str, now: dt.datetime, slot: str = "") -> Exclusion | None: ...

    def release(self, target: Target | None, target_id: int, tz_name: str | None, started_at: dt.datetime, *,
                undo_usage: bool, slot: str = "", periods: str | None = None) -> None: ...

    def count_again(self, target: Target, tz_name: str, started_at: dt.datetime,
                    periods: str | None = None) -> None: ...


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

        store = live_redis.RedisCounters(redis_client(), getattr(settings, "REDIS_KEY_PREFIX", "cb:"),
                                         rebuild=rebuild_from_database)
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
        rows = db.fetchall(
            f"SELECT target_id, active_calls, paused_until FROM {STATE} "
            f"WHERE target_id IN ({_placeholders(len(ids))})",
            ids,
        )
        for target_id, active_calls, paused_until in rows:
            active[target_id] = active_calls
            if paused_until is not None and _aware(paused_until) > now:
                auto_paused.add(target_id)
        keys_in = period_keys_at(now)
        keys = {t.id: keys_in(timezones[t.id]) for t in targets
                if any(c is not None for c in caps_of(t))}
        usage: dict[tuple[int, str], int] = {}
        if keys:
            periods = sorted({k for triple in keys.values() for k in triple})
            rows = db.fetchall(
                f"SELECT target_id, period, count FROM {USAGE} WHERE target_id IN ({_placeholders(len(keys))}) "
                f"AND period IN ({_placeholders(len(periods))})",
                [*keys, *periods],
            )
            usage = {(target_id, period): count for target_id, period, count in rows}
        counters = {}
        for t in targets:
            h, d, m = keys.get(t.id, ("", "", ""))
            counters[t.id] = TargetCounters(active=active.get(t.id, 0), hour=usage.get((t.id, h), 0),
                                            day=usage.get((t.id, d), 0), month=usage.get((t.id, m), 0))
        return counters, auto_paused

    def reserve(self, target: Target, tz_name: str, now: dt.datetime, slot: str = "") -> Exclusion | None:
        limit = target.concurrency_limit
        sql = f"UPDATE {STATE} SET active_calls = active_calls + 1 WHERE target_id = %s"
        take = (sql, [target.id]) if limit is None else (sql + " AND active_calls < %s", [target.id, limit])
        # No row changed: full, or no row yet (a target made other than by the loader or the admin), which
        # its first slot makes; if another first reservation made it meanwhile, the slot is taken on that
        # row, within the limit like any other.
        if not db.execute(*take) and not (limit != 0 and (db.execute(
            f"INSERT INTO {STATE} (target_id, active_calls, pause_reason) VALUES (%s, 1, '') "
            "ON CONFLICT (target_id) DO NOTHING",
            [target.id],
        ) or db.execute(*take))):
            return Exclusion.CONCURRENCY_FULL
        taken: list[str] = []
        for key, cap, exclusion in zip(period_keys(now, tz_name), caps_of(target), CAP_EXCLUSIONS, strict=True):
            if cap is None:
                continue
            if cap > 0 and db.execute(
                f"INSERT INTO {USAGE} (target_id, period, count) VALUES (%s, %s, 1) "
                f"ON CONFLICT (target_id, period) DO UPDATE SET count = {USAGE}.count + 1 "
                f"WHERE {USAGE}.count < %s",
                [target.id, key, cap],
            ):
                taken.append(key)
                continue
            # Cap reached: give back what this call took so far, so nothing of the reservation remains.
            _give_back(target.id, taken)
            return exclusion
        return None

    def release(self, target: Target | None, target_id: int, tz_name: str | None, started_at: dt.datetime, *,
                undo_usage: bool, slot: str = "", periods: str | None = None) -> None:
        _give_back(target_id, units_to_give_back(target, tz_name, started_at, periods) if undo_usage else ())

    def count_again(self, target: Target, tz_name: str, started_at: dt.datetime,
                    periods: str | None = None) -> None:
        for key in units_to_give_back(target, tz_name, started_at, periods):
            db.execute(
                f"INSERT INTO {USAGE} (target_id, period, count) VALUES (%s, %s, 1) "
                f"ON CONFLICT (target_id, period) DO UPDATE SET count = {USAGE}.count + 1",
                [target.id, key],
            )


def _give_back(target_id: int, keys: Iterable[str]) -> None:
    db.execute(f"UPDATE {STATE} SET active_calls = active_calls - 1 WHERE target_id = %s AND active_calls > 0",
               [target_id])
    keys = list(keys)
    if keys:
        db.execute(
            f"UPDATE {USAGE} SET count = count - 1 WHERE target_id = %s AND period IN ({_placeholders(len(keys))}) "
            "AND count > 0",
            [target_id, *keys],
        )


SQL = SqlBackend()


# --------------------------------------------------------------------------- Redis


def _paused_and_stale(target_ids: Sequence[int], now: dt.datetime) -> tuple[set[int], set[int]]:
    """Targets auto-paused at ``now``, and targets whose Redis counters are stale (counted without Redis)."""
    if not target_ids:
        return set(), set()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT target_id, paused_until, counted_without_redis_at FROM {STATE} "
            f"WHERE target_id IN ({_placeholders(len(target_ids))}) "
            "AND (paused_until IS NOT NULL OR counted_without_redis_at IS NOT NULL)",
            list(target_ids),
        )
        rows = cursor.fetchall()
    paused = {target_id for target_id, until, _ in rows if until is not None and _aware(until) > now}
    return paused, {target_id for target_id, _, stale in rows if stale is not None}


#: Seconds a rebuild waits between claiming the targets and reading the database: a webhook that took a
#: slot just before Redis lost it commits meanwhile, and is counted.
REBUILD_GRACE_S = 0.25


def rebuild_from_database(store: RedisCounters, wanted: Target, tz_name: str) -> None:
    """Redis no longer knows ``wanted``'s counters: count them again from the call attempts in the database.

    Claims every target whose counters are unknown (after Redis lost its data: all of them, so one
    rebuild serves the whole network), waits ``REBUILD_GRACE_S``, then loads for each: the slots held
    (attempts with ``slot_held``) and the calls counted in the buyer's current hour, day and month
    (attempts started then that hold a slot or were bridged — a cap unit goes back only when a call was
    not delivered). Slots given back while it runs are not counted (``live_redis``). Calls handled in
    degraded mode and not replayed yet are not in the database, so they are not counted.

    The marked targets' ``TargetState`` rows are locked while they are counted (skipping any held by a
    reservation still counting in the database on a node that finds Redis unreachable,
    :func:`reserve_in_database`); the marks of the rows locked are then cleared. A target skipped, or
    marked by a reservation made in the database after this rebuild, stays marked, and the next ``read``
    has Redis count it once more (:meth:`RedisBackend.read`).
    """
    from callbroker.network.snapshot import cached_snapshot

    targets: dict[int, tuple[Target, str]] = {wanted.id: (wanted, tz_name)}
    snap = cached_snapshot()
    if snap is not None:
        for target_id, info in snap.targets.items():
            targets.setdefault(target_id, (info.core, info.timezone))
    claim = store.claim(targets)
    if not claim.target_ids:
        return  # another process rebuilds them: the reservation waits for it
    try:
        time.sleep(REBUILD_GRACE_S)
        claimed = {target_id: targets[target_id] for target_id in claim.target_ids}
        with transaction.atomic():
            marked = _lock_marked(sorted(claimed))
            now = dt.datetime.now(dt.UTC)
            held, counts = _counted_in_database(claimed, now, names=True)
            loaded = sum(store.load(claim, target, tz, now, held=held.get(target_id, ()),
                                    counts=counts.get(target_id, (0, 0, 0)))
                         for target_id, (target, tz) in claimed.items())
            if marked:
                with connection.cursor() as cursor:
                    if connection.vendor == "postgresql" and connection.in_atomic_block:
                        cursor.execute(f"SELECT target_id, counted_without_redis_at FROM {STATE} "
                                       "WHERE target_id = ANY(%s)", [marked])
                        transaction.on_commit(partial(_unmark_if_unchanged, cursor.fetchall()))
                    for some in db.in_batches(marked):
                        cursor.execute(f"UPDATE {STATE} SET counted_without_redis_at = NULL "
                                       f"WHERE target_id IN ({_placeholders(len(some))})", some)
    except BaseException:
        try:
            store.abandon(claim)
        except Exception:  # noqa: BLE001 - the claim expires by itself
            log.exception("giving up the counters rebuild claim failed")
        raise
    log.warning("live counters of %s rebuilt from the database (Redis did not know them)",
                counted(loaded, "target"))


def _unmark_if_unchanged(marks: list[tuple[int, dt.datetime]]) -> None:
    """After the commit of a transaction in which a rebuild cleared these marks: clear those still as the
    rebuild found them, each in a statement of its own (one row lock at a time, held for that statement).

    A reservation on PostgreSQL may rebuild its target's counters under a savepoint (``reserve``'s
    ``let_go_if_refused``) that its refusal rolls back, and the marks the rebuild cleared with it, though its
    counters stand in Redis: the next read forgot them again and the next such reservation rebuilt them
    again, call after call while the target stayed full. A mark set again since (a slot counted or given
    back in the database) has another time and stays; a mark cleared already is left as it is.
    """
    with connection.cursor() as cursor:
        for target_id, marked_at in marks:
            cursor.execute(f"UPDATE {STATE} SET counted_without_redis_at = NULL "
                           "WHERE target_id = %s AND counted_without_redis_at = %s", [target_id, marked_at])


def _lock_marked(target_ids: Sequence[int]) -> list[int]:
    """Those of these targets marked "counted without Redis" whose ``TargetState`` rows this transaction
    could lock (PostgreSQL ``SELECT … FOR UPDATE SKIP LOCKED``; on SQLite ``db.write_lock`` serialises
    writers): locked until the transaction ends, so no reservation counted in the database changes them
    meanwhile.

    A row held by a reservation still counting in the database is skipped, never waited for (that
    webhook may itself be waiting for this rebuild: a wait here could stall both). Only the rows locked
    here are unmarked after the count: a skipped one, or one marked after the lock, stays marked, and
    the next read has Redis count it again.
    """
    lock = ""
    if connection.features.has_select_for_update:
        lock = " ORDER BY target_id FOR UPDATE"
        if connection.features.has_select_for_update_skip_locked:
            lock += " SKIP LOCKED"
    marked = []
    with connection.cursor() as cursor:
        for some in db.in_batches(list(target_ids)):  # ascending, batch after batch: the same lock order
            cursor.execute(f"SELECT target_id FROM {STATE} WHERE target_id IN ({_placeholders(len(some))}) "
                           f"AND counted_without_redis_at IS NOT NULL{lock}", some)
            marked.extend(row[0] for row in cursor.fetchall())
    return marked


def _counted_in_database(targets: dict[int, tuple[Target, str]], now: dt.datetime, *,
                         names: bool = False) -> tuple[dict[int, list[tuple[dt.datetime, str, str | None]]],
                                                       dict[int, tuple[int, int, int]]]:
    """The slots held per target (start, and with ``names`` the slot's name and the periods it counted, else
    "" and ``None``), and calls counted in the current hour, day and month (:func:`counted_now`: a unit the
    reservation didn't take, a cap added while the line rang, isn't counted, as its release gives none back).
    Only a rebuild needs the names (a join on the calls)."""
    from django.db.models import Q

    from callbroker.calls.choices import AttemptResult  # the counters are derived from the calls' attempts
    from callbroker.calls.models import CallAttempt

    held: dict[int, list[tuple[dt.datetime, str, str | None]]] = defaultdict(list)
    for some in db.in_batches(list(targets)):
        attempts = CallAttempt.objects.filter(target_id__in=some, slot_held=True)
        if names:
            columns = attempts.values_list("target_id", "started_at", "call__call_sid", "sequence",
                                           "counted_periods")
            for target_id, started_at, call_sid, sequence, periods in columns:
                held[target_id].append((started_at, slot_name(call_sid, sequence), periods))
        else:
            for target_id, started_at in attempts.values_list("target_id", "started_at"):
                held[target_id].append((started_at, "", None))
    capped = {tid: pair for tid, pair in targets.items() if any(cap is not None for cap in caps_of(pair[0]))}
    counts: dict[int, tuple[int, int, int]] = {}
    if capped:
        caps = [caps_of(target) for target, _ in capped.values()]
        # Far enough back for the longest capped period, whatever the buyers' time zones.
        back = (dt.timedelta(days=32) if any(c[2] is not None for c in caps)
                else dt.timedelta(days=2) if any(c[1] is not None for c in caps) else dt.timedelta(hours=3))
        counted = Q(slot_held=True) | Q(result=AttemptResult.BRIDGED)
        rows = [row for some in db.in_batches(list(capped))
                for row in CallAttempt.objects.filter(counted, target_id__in=some, started_at__gte=now - back)
                .values_list("target_id", "started_at", "counted_periods")]
        tally: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        keys_in = period_keys_at(now)
        current = {tid: keys_in(tz) for tid, (_, tz) in capped.items()}
        for target_id, started_at, periods in rows:
            for i in counted_now(current[target_id], started_at, capped[target_id][1], periods):
                tally[target_id][i] += 1
        counts = {tid: (h, d, m) for tid, (h, d, m) in tally.items()}
    return held, counts


def counted_now(current: tuple[str, str, str], started_at: dt.datetime, tz_name: str,
                periods: str | None) -> list[int]:
    """Which of the ``current`` hour, day and month (0, 1, 2) an attempt's cap unit counts in: those its
    reservation counted (``periods``, recorded at dial time), as its release gives them back; not recorded
    (dialled by the previous release), those its start falls in."""
    if periods is not None:
        counted = periods.split()
        return [i for i in range(3) if current[i] in counted]
    keys = period_keys(started_at, tz_name)
    return [i for i in range(3) if keys[i] == current[i]]


#: Errors meaning "Redis can't be reached" (not "this command is wrong"): counters are then counted in the
#: database (:class:`RedisBackend`).
REDIS_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)
#: Seconds a process counts in the database after Redis failed, before it tries Redis again: after a
#: timeout (each try costs ``REDIS_TIMEOUT_MS``), and after a refused connection (a try costs next to
#: nothing, and the sooner every node is back on Redis the shorter the time two nodes count in different
#: places when it returns).
REDIS_RETRY_S = 0.5
REDIS_RETRY_REFUSED_S = 0.05


class RedisBackend:
    """``live_redis.RedisCounters`` tied to the database transaction of the caller (see the module docstring).

    **Redis unreachable, database up.** The counters are then counted from the call attempts in the
    database, under the target's limits lock held exclusive (:func:`reserve_in_database`), so every
    limit still holds across nodes; the process tries Redis again after :data:`REDIS_RETRY_S` (a
    timeout) or :data:`REDIS_RETRY_REFUSED_S` (a refused connection). Each slot taken or given back
    that way marks its target (``TargetState.counted_without_redis_at``): Redis's counters of that
    target are stale, so the next ``read`` on any node that reaches Redis has them rebuilt from the
    database before they are used again (this also corrects a slot whose release could not reach Redis).
    Until they are, a reservation through Redis of a marked target (taken under the limits lock held
    shared, :func:`lock_for_reservation`) is also checked against the database, and given back when the
    database finds the target full.
    """

    name = "redis"

    def __init__(self, store) -> None:
        self.store = store
        self._retry_at = 0.0  # time.monotonic() before which Redis is taken as unreachable
        self._down = False  # Redis failed and has not answered since (one warning per outage)
        self._latest = threading.local()  # per thread: was the latest reservation counted in the database?
        self._forget_later: set[int] = set()  # targets whose Redis counters a failed give-back left too high

    @property
    def last_reserved_in_database(self) -> bool:
        return getattr(self._latest, "in_database", False)

    @property
    def outage_seen(self) -> bool:
        """Redis failed this process and has not answered it since (though it may be tried again now)."""
        return self._down

    @property
    def counting_in_database(self) -> bool:
        """Redis failed a moment ago (see ``_unreachable``): the counters are counted in the database."""
        return time.monotonic() < self._retry_at

    def _unreachable(self, operation: str, exc: Exception) -> None:
        retry_s = REDIS_RETRY_S if isinstance(exc, redis.TimeoutError) else REDIS_RETRY_REFUSED_S
        if not self._down:
            log.warning("Redis unreachable (%s: %s); live counters are counted in the database until it answers "
                        "(tried again every %.2f s)", operation, exc, retry_s)
            self._down = True
        metrics.COUNTER_BACKEND_ERRORS.labels(backend=self.name, operation=operation).inc()
        self._retry_at = time.monotonic() + retry_s

    def _answered(self) -> None:
        if self._down:
            self._down = False
            log.warning("Redis answers again; live counters are kept in Redis")

    def read(self, targets: Sequence[Target], timezones: dict[int, str],
             now: dt.datetime) -> tuple[dict[int, TargetCounters], set[int]]:
        if not targets:
            return {}, set()
        if not self.counting_in_database:
            paused, stale = _paused_and_stale([t.id for t in targets], now)
            if stale or self._forget_later:
                # Forgotten before they are read, so that they read as unknown (``RedisCounters.read``) and
                # the next reservation of each rebuilds them: read as they stand they might show a slot or
                # a cap unit given back in the database meanwhile as taken, and a target that looks full
                # is never reserved, so never rebuilt.
                self._recount(stale | self._forget_later)
            if not self.counting_in_database:  # the forget reached Redis (or had nothing to do)
                try:
                    counters = self.store.read(targets, timezones, now)
                except REDIS_UNREACHABLE as exc:
                    self._unreachable("read", exc)
                else:
                    self._answered()
                    return counters, paused
        return read_in_database(targets, timezones, now)

    def _recount(self, stale: set[int]) -> None:
        """Forget Redis's counters of targets counted in the database meanwhile: the next reservation
        rebuilds them (Redis being reachable again)."""
        try:
            forgotten = self.store.forget_counters(sorted(stale))
        except REDIS_UNREACHABLE as exc:
            self._unreachable("read", exc)
            return
        self._forget_later -= stale
        if forgotten:
            log.warning("Redis counters of targets %s were counted in the database meanwhile; rebuilding them",
                        sorted(stale))

    def reserve(self, target: Target, tz_name: str, now: dt.datetime, slot: str = "") -> Exclusion | None:
        self._latest.in_database = False
        if not self.counting_in_database:
            # After an outage this process saw (Redis not heard from since), Redis may fail again and the
            # reservation be counted in the database, under the lock held exclusive: taken shared first, two
            # such reservations of one target each waited for the other's to go exclusive, a deadlock.
            marked = lock_for_reservation(target.id, exclusive=self.outage_seen)
            try:
                refused = self.store.reserve(target, tz_name, now, token=slot)
            except REDIS_UNREACHABLE as exc:
                # A command that timed out may have run; the database reservation below marks the target,
                # so Redis's counters of it are rebuilt before they are used again.
                self._unreachable("reserve", exc)
            except redis.RedisError as exc:
                from callbroker.network.live_redis import CountersUnknown  # live_redis imports this module

                if not isinstance(exc, CountersUnknown):
                    raise
                # Redis answers but lost this target's counters and no rebuild finished in time (another
                # process's outlasted the wait, or failed): this reservation is counted in the database
                # rather than the call going on with its limits unenforced; the mark has Redis count the
                # target again at its next read.
                metrics.COUNTER_BACKEND_ERRORS.labels(backend=self.name, operation="reserve").inc()
                log.warning("target %s: %s; this reservation is counted in the database", target.id, exc)
            else:
                self._answered()
                if refused is None and marked:
                    # Counted in the database meanwhile (by a node that could not reach Redis): Redis may
                    # not know every slot taken yet, so the database decides as well.
                    refused = full_in_database(target, tz_name, now)
                    if refused is not None:
                        self._give_back_now(target, tz_name, now, slot)
                        return refused
                if refused is None and connection.in_atomic_block:
                    transaction.on_commit(_GiveBackUnlessCommitted(self, target, tz_name, now, slot).committed)
                return refused
        return self.count_in_database(target, tz_name, now)

    def count_in_database(self, target: Target, tz_name: str, now: dt.datetime) -> Exclusion | None:
        """Reserve by counting the target's attempts in the database (:func:`reserve_in_database`), Redis
        unreachable, and remember it for :func:`last_reserved_in_database`."""
        refused = reserve_in_database(target, tz_name, now)
        self._latest.in_database = True
        return refused

    def release(self, target: Target | None, target_id: int, tz_name: str | None, started_at: dt.datetime, *,
                undo_usage: bool, slot: str = "", periods: str | None = None) -> None:
        if self.counting_in_database:
            mark_counted_without_redis(target_id)  # the attempt's slot_held=False is the release
            return
        if not connection.in_atomic_block:
            self._release(target, target_id, tz_name, started_at, undo_usage=undo_usage, slot=slot, periods=periods)
            return
        transaction.on_commit(lambda: self._release(target, target_id, tz_name, started_at, undo_usage=undo_usage,
                                                    slot=slot, periods=periods))

    def count_again(self, target: Target, tz_name: str, started_at: dt.datetime,
                    periods: str | None = None) -> None:
        # Rare (callbacks out of order): Redis counts the target again from the calls' attempts, where this
        # call's bridged attempt counts, instead of a script of its own for a unit taken without a check.
        mark_counted_without_redis(target.id)

    def _give_back_now(self, target: Target, tz_name: str, at: dt.datetime, slot: str) -> None:
        """Give back a reservation just taken in Redis that the database then refused."""
        try:
            self.store.release(target, target.id, tz_name, at, undo_usage=True, token=slot)
        except Exception:  # noqa: BLE001 - the refusal stands; Redis recounts the target instead
            metrics.COUNTER_BACKEND_ERRORS.labels(backend=self.name, operation="release").inc()
            self.forget_later(target.id)
            log.exception("target %s: giving back a reservation the database refused failed; Redis recounts "
                          "the target at its next read", target.id)

    def forget_later(self, target_id: int) -> None:
        """A reservation of this target could not be given back in Redis (unreachable) and no database
        write can mark it (its transaction rolled back): this process has Redis recount the target the next
        time it reads its counters."""
        self._forget_later.add(target_id)

    def _release(self, target: Target | None, target_id: int, tz_name: str | None, started_at: dt.datetime, *,
                 undo_usage: bool, slot: str = "", periods: str | None = None) -> None:
        try:
            self.store.release(target, target_id, tz_name, started_at, undo_usage=undo_usage, token=slot,
                               periods=periods)
        except Exception as exc:  # noqa: BLE001 - the transaction is committed; the webhook's answer stands
            if isinstance(exc, REDIS_UNREACHABLE):
                self._unreachable("release", exc)
            else:
                metrics.COUNTER_BACKEND_ERRORS.labels(backend=self.name, operation="release").inc()
            log.warning("target %s: releasing its slot in Redis failed (%s); its counters are rebuilt from the "
                        "database when Redis answers again", target_id, exc)
            try:
                mark_counted_without_redis(target_id)
            except Exception:  # noqa: BLE001 - the database may be what failed too
                log.exception("target %s: marking its Redis counters stale failed; the slot stays taken in Redis "
                              "until the counters are rebuilt (docs/production.md)", target_id)


def read_in_database(targets: Sequence[Target], timezones: dict[int, str],
                     now: dt.datetime) -> tuple[dict[int, TargetCounters], set[int]]:
    """Counters for routing counted from the call attempts (Redis unreachable), and the auto-paused targets."""
    held, counts = _counted_in_database({t.id: (t, timezones[t.id]) for t in targets}, now)
    counters = {}
    for t in targets:
        hour, day, month = counts.get(t.id, (0, 0, 0))
        counters[t.id] = TargetCounters(active=len(held.get(t.id, ())), hour=hour, day=day, month=month)
    return counters, auto_paused([t.id for t in targets], now)


def reserve_in_database(target: Target, tz_name: str, now: dt.datetime) -> Exclusion | None:
    """Take a slot and a unit of each cap by counting the target's attempts, under its limits lock held
    exclusive (:func:`lock_for_reservation`) and its ``TargetState`` row lock.

    Call inside the transaction that then inserts the attempt (``slot_held``): the locks are held until it
    commits, so the next reservation of this target, on any node, counts that attempt. Marks the target
    counted without Redis (see :class:`RedisBackend`), refused or not. Returns ``None`` when taken, else
    the limit that is full (concurrency first, then hourly, daily, monthly, as the other backends).
    """
    _lock_limits_exclusive(target.id)  # reservations through Redis still in a transaction commit first
    mark_counted_without_redis(target.id)  # also locks the target's row until the transaction ends
    return full_in_database(target, tz_name, now)


def full_in_database(target: Target, tz_name: str, now: dt.datetime) -> Exclusion | None:
    """The limit of ``target`` that the call attempts in the database fill (concurrency first, then
    hourly, daily, monthly, as the other backends), or ``None``: a call may be taken. Call it while
    holding the target's ``TargetState`` row lock (every reservation counted this way takes it), so no
    other reservation checked in the database changes the count meanwhile."""
    held, counts = _counted_in_database({target.id: (target, tz_name)}, now)
    if target.concurrency_limit is not None and len(held.get(target.id, ())) >= target.concurrency_limit:
        return Exclusion.CONCURRENCY_FULL
    for count, cap, exclusion in zip(counts.get(target.id, (0, 0, 0)), caps_of(target), CAP_EXCLUSIONS,
                                     strict=True):
        if cap is not None and count >= cap:
            return exclusion
    return None


#: First key of the PostgreSQL advisory locks that order one target's reservations across nodes (the second
#: is the target's id): "CBlv".
LIMITS_LOCK_SPACE = 0x43426C76


def lock_for_reservation(target_id: int, *, exclusive: bool = False) -> bool:
    """Before a reservation through Redis: take the target's limits lock *shared* until the transaction
    ends, then return whether the target is marked counted without Redis (``counted_without_redis_at``).
    ``exclusive``: the lock held exclusive at once, by a process that lost Redis and hasn't heard from it
    since (``RedisBackend.outage_seen``): Redis failing again, the reservation is counted in the database
    under the lock held exclusive, and two reservations of the target that took it shared first each waited
    for the other to let go of it (a deadlock, one stopped by PostgreSQL after a second and run again).

    A reservation counted in the database takes the same lock *exclusive* (:func:`reserve_in_database`),
    so it waits for every reservation of the target still in a transaction through Redis and counts
    their attempts once committed; a reservation through Redis that comes after it waits for its commit
    and then sees its mark (Redis missed that slot, so the database decides as well). Without the lock
    a node that had just found Redis unreachable and one that reached it could each take a target's
    last slot (as Redis stops, and as it comes back). Reservations through Redis don't wait for each
    other: their lock is shared, and Redis's script is atomic. Those of a *marked* target, though, are
    checked in the database one at a time: this also locks the target's ``TargetState`` row then, so
    two can't both count the same last free slot.

    A PostgreSQL advisory lock (held in memory, nothing written); the mark is read after the lock is
    granted, so with a snapshot that sees what the lock waited for. On SQLite there are no such locks:
    the writers of all processes take turns already (``db.write_lock``), so the mark is only read.
    """
    locking = connection.vendor == "postgresql" and connection.in_atomic_block
    with connection.cursor() as cursor:
        if locking:
            lock = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
            cursor.execute(f"SELECT {lock}(%s, %s)", [LIMITS_LOCK_SPACE, target_id])
        cursor.execute(f"SELECT 1 FROM {STATE} WHERE target_id = %s AND counted_without_redis_at IS NOT NULL",
                       [target_id])
        marked = cursor.fetchone() is not None
        if marked and locking:
            cursor.execute(f"SELECT 1 FROM {STATE} WHERE target_id = %s FOR UPDATE", [target_id])
    return marked


def _lock_limits_exclusive(target_id: int) -> None:
    """Wait for the reservations of this target still in a transaction (see :func:`lock_for_reservation`),
    and hold off new ones until this transaction ends."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LIMITS_LOCK_SPACE, target_id])


def mark_counted_without_redis(target_id: int) -> None:
    """Say that this target's slots changed in the database alone: Redis must count them again.

    One upsert, which also locks the target's ``TargetState`` row until the transaction ends.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {STATE} (target_id, active_calls, pause_reason, counted_without_redis_at) "
            "VALUES (%s, 0, '', %s) ON CONFLICT (target_id) "
            "DO UPDATE SET counted_without_redis_at = EXCLUDED.counted_without_redis_at",
            [target_id, connection.ops.adapt_datetimefield_value(dt.datetime.now(dt.UTC))])


class _GiveBackUnlessCommitted:
    """Gives a Redis reservation back when the transaction it was taken in does not commit.

    Django has no on-rollback hook, but it drops the ``on_commit`` callbacks of a transaction (or of a
    savepoint) that rolls back. :meth:`committed` is registered as one; nothing else refers to this
    object, so CPython finalizes it the moment Django either calls and discards it (commit: nothing to
    do) or discards it uncalled (rollback: give the reservation back, here, in ``__del__``).

    One more case: a commit hook registered before ours that raises makes Django drop the rest uncalled
    although the transaction committed; the connection then still says it is running commit hooks,
    and the reservation is kept. When Redis can't be reached to give it back, the backend has Redis
    recount the target from the database at its next read (:meth:`RedisBackend.forget_later`).
    """

    __slots__ = ("_at", "_backend", "_connection", "_done", "_slot", "_target", "_tz_name")

    def __init__(self, backend: RedisBackend, target: Target, tz_name: str, at: dt.datetime, slot: str = "") -> None:
        self._backend, self._target, self._tz_name, self._at, self._slot = backend, target, tz_name, at, slot
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
            self._backend.store.release(self._target, self._target.id, self._tz_name, self._at, undo_usage=True,
                                        token=self._slot)
            log.info("target %s: reservation given back (its transaction rolled back)", self._target.id)
        except Exception:  # noqa: BLE001 - a finalizer must not raise
            metrics.COUNTER_BACKEND_ERRORS.labels(backend="redis", operation="release").inc()
            self._backend.forget_later(self._target.id)
            log.exception("target %s: giving back a rolled-back reservation in Redis failed; Redis recounts the "
                          "target at its next read", self._target.id)
