"""Cap counts of finished periods deleted: ``TargetUsage`` rows no cap can read any more.

A target with a cap gets a row per hour, day and month of its buyer's local time it took calls in
(``live.period_keys``: ``H2026112714``, ``D20261127``, ``M202611``). A cap reads only the periods of the moment a
call is routed or reserved (``live.SqlBackend``; with Redis counters, the database's rows while Redis is
unreachable), so a finished period's row is never read again, but nothing deleted them: 315 targets with caps
wrote millions of rows a year, for ever (the admin's list of them, backups, the table's index).

A row is deleted once its period is over in every time zone, :data:`KEPT_AFTER_ITS_END` ago. The row names its
period in its buyer's local time, not the zone, and a buyer's zone may change: so "over everywhere" is the
local end of the period taken as the latest any zone can reach it (no zone is more than :data:`ZONE_SPREAD`
from UTC). :data:`KEPT_AFTER_ITS_END` outlasts what may still write in a finished period: a leg's cap unit is
given back, or counted again, in the period its call started (a late final status; the replay of a spool
file, given up after ``replay.STALE_LEFTOVER``, two days). Such a write after the row is gone changes
nothing a cap reads (a unit given back: no row, nothing to take off; counted again: a new row, deleted at the
next pass). The hourly rows, most of the table, go three days on; a month's when that month is three days over.

Redis counters expire by themselves (``live_redis.period_expiry``: an hour after their period), so this is
the database's table only. Rows are deleted in small batches, one transaction each (on SQLite, each after the
call path's writers' queue, ``db.write_lock``, so a webhook waits for one batch at most, never for the whole
run), target by target along ``targetusage_unique_period`` (target, period): only the rows deleted are read.
Nothing else is: a period no key of ``period_keys`` can be (another length, another letter) is left alone. An
hour's second time when the clocks go back (``H2026110101b``, ``core/periods.py``) is a key: its rows were
never deleted. It sorts after its hour's first time and before the next hour, and goes with the hours up to
that one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.db import transaction

from callbroker import db
from callbroker.core.periods import REPEATED_HOUR
from callbroker.network.models import Target, TargetUsage
from callbroker.words import counted as in_words

#: No time zone is further than this from UTC (Kiribati, UTC+14; the farthest west is UTC-12).
ZONE_SPREAD = dt.timedelta(hours=14)
#: How long a period's row is kept once the period is over in every zone (see the module docstring).
KEPT_AFTER_ITS_END = dt.timedelta(days=3)
#: Rows deleted per transaction.
BATCH = 500
#: Rows the background pass deletes at most (``replay.background_pass``); the next pass goes on. A pass is
#: every ``CALLBROKER_CLOSE_ABANDONED_EVERY`` seconds (10 min in production): more than the rows 315 targets
#: write in that time, so a table left to grow before this release is emptied of its old rows in hours.
MOST_A_PASS = 20_000

USAGE = TargetUsage._meta.db_table
TARGETS = Target._meta.db_table
#: The length of each kind of period key (``live.period_keys``): hour, day, month.
KEY_LENGTHS = {"H": 11, "D": 9, "M": 7}
#: An hour's second time when the clocks go back: its hour's key and ``REPEATED_HOUR`` (``H2026110101b``).
REPEATED_HOUR_LENGTH = KEY_LENGTHS["H"] + len(REPEATED_HOUR)


def _shaped_as_key(kind: str) -> str:
    """SQL: ``period`` has the shape of a key of ``kind``: its length, or an hour's second time's."""
    shape = f"LENGTH(period) = {KEY_LENGTHS[kind]}"
    if kind != "H":
        return shape
    return (f"({shape} OR LENGTH(period) = {REPEATED_HOUR_LENGTH} "
            f"AND SUBSTR(period, {KEY_LENGTHS['H'] + 1}) = '{REPEATED_HOUR}')")


#: By kind. The kind's letter compared on its own: a database sorting text by a language's rules (PostgreSQL
#: created in ``en_US.UTF-8``, or ICU) weighs a letter's case less than the digits after it, so the range
#: alone took ``h2026110100`` for an hour before ``H2026120323``.
_DELETE = {kind: f"DELETE FROM {USAGE} WHERE id IN (SELECT id FROM {USAGE} WHERE target_id = %s "
                 f"AND period > %s AND period <= %s AND SUBSTR(period, 1, 1) = %s AND {_shaped_as_key(kind)} "
                 f"LIMIT %s)"
           for kind in KEY_LENGTHS}


def last_finished_periods(now: dt.datetime) -> tuple[str, str, str]:
    """The last hour, day and month keys whose period ended, in every time zone, :data:`KEPT_AFTER_ITS_END`
    before ``now``: the rows of these periods and of earlier ones of the same kind may go.

    A period whose local end is ``E`` is over everywhere at ``E + ZONE_SPREAD`` (UTC). So it may go when
    ``E <= edge``, ``edge`` being ``now - ZONE_SPREAD - KEPT_AFTER_ITS_END`` written as a local time."""
    edge = (now.astimezone(dt.UTC) - ZONE_SPREAD - KEPT_AFTER_ITS_END).replace(tzinfo=None)
    hour = edge - dt.timedelta(hours=1)  # its hour ends at or before edge
    day = (edge - dt.timedelta(days=1)).date()  # ends at midnight after it, at or before edge
    month = edge.date().replace(day=1) - dt.timedelta(days=1)  # the month before edge's: over by its 1st
    return (f"H{hour.year:04d}{hour.month:02d}{hour.day:02d}{hour.hour:02d}",
            f"D{day.year:04d}{day.month:02d}{day.day:02d}", f"M{month.year:04d}{month.month:02d}")


def may_go(period: str, now: dt.datetime) -> bool:
    """Whether the row of ``period`` is deleted at ``now`` (what the statement's condition says, in Python)."""
    last = dict(zip("HDM", last_finished_periods(now), strict=True))
    kind = period[:1]
    if kind not in last:
        return False
    shaped = len(period) == KEY_LENGTHS[kind] or (
        kind == "H" and len(period) == REPEATED_HOUR_LENGTH and period.endswith(REPEATED_HOUR))
    return shaped and kind < period <= last[kind]


def counted(rows: int) -> str:
    """``1 cap count``, ``2,000 cap counts``: for the commands' lines."""
    return in_words(rows, "cap count", grouped=True)


#: ``progress(targets_done, targets, rows_deleted)``.
Progress = Callable[[int, int, int], None]


def forget_finished_periods(now: dt.datetime | None = None, *, most: int | None = None, batch: int = BATCH,
                            progress: Progress | None = None) -> int:
    """Delete the cap counts of the periods finished everywhere (:func:`last_finished_periods`), at most
    ``most`` rows (``None``: all of them), ``batch`` rows a transaction; ``progress`` is called after each
    target. The number of rows deleted."""
    last = last_finished_periods(now or dt.datetime.now(dt.UTC))
    bounds = list(zip("HDM", last, strict=True))
    targets = [row[0] for row in db.fetchall(f"SELECT id FROM {TARGETS} ORDER BY id")]
    deleted = 0
    for done, target_id in enumerate(targets, start=1):
        for kind, key in bounds:
            while True:
                size = batch if most is None else min(batch, most - deleted)
                if size <= 0:
                    return deleted
                with db.write_lock(), transaction.atomic():
                    gone = db.execute(_DELETE[kind], [target_id, kind, key, kind, size])
                deleted += gone
                if gone < size:
                    break
        if progress is not None:
            progress(done, len(targets), deleted)
    return deleted
