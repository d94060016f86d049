"""Monthly partitions of the call table on PostgreSQL (nothing to do on SQLite).

On PostgreSQL ``calls_call`` is partitioned by range of ``started_at``: one partition per calendar month
in UTC (``calls_call_y2026m11`` holds ``[2026-11-01 00:00 UTC, 2026-12-01 00:00 UTC)``) and a default
partition (``calls_call_default``) that catches any call outside them, so an insert never fails for a
missing partition. Migration 0002 converts the table; :func:`ensure` keeps partitions ready ahead of
time. It runs after every ``migrate`` (``CallsConfig``) and should run monthly from cron or a systemd
timer (``callbroker partitions ensure``). See docs/database.md.

New partitions are created as plain tables and then attached (``ATTACH PARTITION`` takes a SHARE UPDATE
EXCLUSIVE lock on the call table, so the call path keeps reading and writing). A month whose calls
already landed in the default partition (maintenance forgotten) gets its partition too, and its rows
are moved there in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction
from django.utils import timezone

from callbroker.calls.models import Call

log = logging.getLogger(__name__)

TABLE = Call._meta.db_table
KEY = "started_at"
DEFAULT_PARTITION = f"{TABLE}_default"
#: Months created ahead of the current one by default.
MONTHS_AHEAD = 3
#: How long one partition's creation may wait for a lock, and how many times it tries.
LOCK_TIMEOUT_MS = 5000
LOCK_ATTEMPTS = 3
#: Serialises concurrent maintenance runs (post_migrate on several nodes, cron): any constant works.
_LOCK_KEY = 0x63616C6C  # "call"


@dataclass(frozen=True)
class Partition:
    """One partition of the call table: a month ``[start, end)`` in UTC, or the default partition."""

    name: str
    start: dt.datetime | None
    end: dt.datetime | None
    estimated_rows: int  # from the planner statistics (pg_class.reltuples); -1 = never analysed

    @property
    def is_default(self) -> bool:
        return self.start is None and self.end is None


def supported(using: str = DEFAULT_DB_ALIAS) -> bool:
    """True when the database is PostgreSQL (the only backend whose call table is partitioned)."""
    return connections[using].vendor == "postgresql"


def is_partitioned(using: str = DEFAULT_DB_ALIAS) -> bool:
    """True when the call table exists and is partitioned (PostgreSQL after migration 0002)."""
    if not supported(using):
        return False
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
            "WHERE c.oid = to_regclass(%s)",
            [TABLE],
        )
        return cursor.fetchone() is not None


def month_start(moment: dt.datetime | dt.date) -> dt.datetime:
    """Midnight UTC on the first day of the month of ``moment`` (aware datetimes are taken in UTC)."""
    if isinstance(moment, dt.datetime):
        if timezone.is_aware(moment):
            moment = moment.astimezone(dt.UTC)
        moment = moment.date()
    return dt.datetime(moment.year, moment.month, 1, tzinfo=dt.UTC)


def add_months(month: dt.datetime, n: int) -> dt.datetime:
    index = month.year * 12 + month.month - 1 + n
    return month.replace(year=index // 12, month=index % 12 + 1)


def partition_name(month: dt.datetime) -> str:
    return f"{TABLE}_y{month.year:04d}m{month.month:02d}"


def _bound(text: str) -> dt.datetime | None:
    if text in ("MINVALUE", "MAXVALUE"):
        return None
    return dt.datetime.fromisoformat(text.strip("'"))


def _parse_bounds(expr: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``FOR VALUES FROM ('2026-11-01 00:00:00+00') TO ('2026-12-01 00:00:00+00')`` -> (start, end)."""
    if expr == "DEFAULT":
        return None, None
    body = expr.removeprefix("FOR VALUES FROM (")
    low, _, high = body.partition(") TO (")
    return _bound(low), _bound(high.removesuffix(")"))


def partitions(using: str = DEFAULT_DB_ALIAS) -> list[Partition]:
    """The partitions of the call table, oldest first, the default partition last. Empty on SQLite."""
    if not is_partitioned(using):
        return []
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), c.reltuples::bigint FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)",
            [TABLE],
        )
        rows = cursor.fetchall()
    found = [Partition(name, *_parse_bounds(bound), int(estimate)) for name, bound, estimate in rows]
    far_future = dt.datetime.max.replace(tzinfo=dt.UTC)
    return sorted(found, key=lambda p: (p.is_default, p.start or far_future, p.name))


def default_rows(using: str = DEFAULT_DB_ALIAS) -> int:
    """Calls in the default partition (exact count; 0 when every call has its month's partition)."""
    if not is_partitioned(using):
        return 0
    with connections[using].cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {_quote(using, DEFAULT_PARTITION)}")
        return cursor.fetchone()[0]


def ensure(months_ahead: int = MONTHS_AHEAD, *, now: dt.datetime | None = None,
           using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Create the partitions of this month and the next ``months_ahead`` months, and of every month that
    has calls in the default partition (moving them out). Returns the names created; idempotent.

    Does nothing (returns ``[]``) unless the call table is partitioned, so it is safe on SQLite.
    """
    if months_ahead < 0:
        raise ValueError("months_ahead must be 0 or more")
    if not is_partitioned(using):
        return []
    first = month_start(now or timezone.now())
    wanted = {add_months(first, n) for n in range(months_ahead + 1)}
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT date_trunc('month', {KEY} AT TIME ZONE 'UTC') "
            f"FROM {_quote(using, DEFAULT_PARTITION)}"
        )
        wanted |= {month_start(row[0]) for row in cursor.fetchall()}
    created = []
    for month in sorted(wanted):
        if _create_month_retrying(month, using):
            created.append(partition_name(month))
    return created


def _create_month_retrying(month: dt.datetime, using: str) -> bool:
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            return _create_month(month, using)
        except OperationalError as exc:  # lock_timeout: a long transaction holds the call table
            if attempt == LOCK_ATTEMPTS:
                raise
            log.warning("partition %s: %s; retrying", partition_name(month), exc)
            time.sleep(attempt)
    return False


def _quote(using: str, name: str) -> str:
    return connections[using].ops.quote_name(name)


def _covered(month: dt.datetime, end: dt.datetime, using: str) -> bool:
    """Some existing partition (other than the default) overlaps ``[month, end)``."""
    for part in partitions(using):
        if part.is_default:
            continue
        low = part.start or dt.datetime.min.replace(tzinfo=dt.UTC)
        high = part.end or dt.datetime.max.replace(tzinfo=dt.UTC)
        if low < end and month < high:
            return True
    return False


def _create_month(month: dt.datetime, using: str) -> bool:
    """Create and attach the partition of ``month`` unless a partition already covers it (one transaction)."""
    end = add_months(month, 1)
    name = partition_name(month)
    q = connections[using].ops.quote_name
    # Literals, not parameters: DDL takes no bind parameters (with server-side binding it would fail).
    low, high = f"'{month.isoformat()}'", f"'{end.isoformat()}'"
    in_range = f"{q(KEY)} >= {low} AND {q(KEY)} < {high}"
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        # Never queue for long behind a long transaction: queries of the call path would queue behind us.
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        if _covered(month, end, using):
            return False
        # A plain table first, then ATTACH: CREATE TABLE … PARTITION OF would lock the whole call table.
        cursor.execute(f"CREATE TABLE {q(name)} (LIKE {q(TABLE)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                       "INCLUDING STORAGE INCLUDING COMMENTS)")
        # The partition constraint as a CHECK lets ATTACH skip scanning the new table.
        cursor.execute(f"ALTER TABLE {q(name)} ADD CONSTRAINT {q(name + '_bounds')} CHECK ({in_range})")
        # ATTACH locks the default partition anyway; locking it now keeps new calls of this month from
        # landing there between the move below and the ATTACH (they wait a moment instead).
        cursor.execute(f"LOCK TABLE {q(DEFAULT_PARTITION)} IN EXCLUSIVE MODE")
        columns = ", ".join(q(c) for c in _columns(cursor))
        cursor.execute(
            f"WITH moved AS (DELETE FROM {q(DEFAULT_PARTITION)} WHERE {in_range} RETURNING {columns}) "
            f"INSERT INTO {q(name)} ({columns}) SELECT {columns} FROM moved"
        )
        if cursor.rowcount:
            log.warning("moved %s calls of %s from the default partition to %s", cursor.rowcount,
                        f"{month:%Y-%m}", name)
        cursor.execute(f"ALTER TABLE {q(TABLE)} ATTACH PARTITION {q(name)} "
                       f"FOR VALUES FROM ({low}) TO ({high})")
        cursor.execute(f"ALTER TABLE {q(name)} DROP CONSTRAINT {q(name + '_bounds')}")
    log.info("created partition %s for %s", name, f"{month:%Y-%m}")
    return True


def _columns(cursor) -> list[str]:
    cursor.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum",
        [TABLE],
    )
    return [row[0] for row in cursor.fetchall()]
