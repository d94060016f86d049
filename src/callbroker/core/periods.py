"""Cap periods: the hour, day and month of the buyer's local time that a target's caps count calls in.

Each is named by a key: ``H2026112714`` (the hour from 14:00), ``D20261127``, ``M202611``. The counters keep a
count per target and key (``TargetUsage`` rows, Redis keys: ``network/live.py``), an attempt records the keys
its reservation counted (``CallAttempt.counted_periods``), finished ones are deleted by key
(``network/cap_counts.py``) and the limits audit counts the calls delivered per key (``ops/audit.py``): all
name a period as :func:`local_period_keys` does, so a unit is given back, pruned and audited in the period it
was counted in.

When the clocks go back (Chicago, 2026-11-01: 02:00 CDT is 01:00 CST), 01:00-01:59 comes twice: its second
time is an hour of its own, ``H2026110101b`` (:data:`REPEATED_HOUR`). Under one key the two real hours
shared one hourly cap: a line capped at N calls an hour took N in both together. The second time runs from
the change to the hour's end: where the clocks go back at 45 past (Chatham, 03:45 CHADT is 02:45 CHAST),
03:45-03:59 CHAST, shown once, ends the second 03 hour, not the first (whose key would then be two
stretches an hour apart). So no hourly key is more than one stretch of an hour. Every other hour keeps its
key, as before 2026-12-08: the counts kept then are still the ones read. A day and a month are one key
however long (25 hours, 23). The key sorts after its hour's first time and before the next hour. When the
clocks go forward, the hour that doesn't exist (02:xx in Chicago on 2026-03-08) has no key: 01 and 03 are an
hour each.
"""

from __future__ import annotations

import datetime as dt

#: Ends the key of an hour's second time, when the clocks go back: ``H2026110101b``.
REPEATED_HOUR = "b"


def local_period_keys(local: dt.datetime) -> tuple[str, str, str]:
    """Hour, day and month keys of ``local``, an instant in the buyer's zone (``at.astimezone(zone)``)."""
    day = f"{local.year:04d}{local.month:02d}{local.day:02d}"
    # A second time: the hour's start as first shown (fold 0) was ahead of now, the clocks went back since.
    # (Built, not replace(): a third of the time, on every reservation.)
    if local.fold or dt.datetime(local.year, local.month, local.day, local.hour, 0, 0, 0,
                                 local.tzinfo).utcoffset() > local.utcoffset():
        return f"H{day}{local.hour:02d}{REPEATED_HOUR}", f"D{day}", f"M{day[:6]}"
    return f"H{day}{local.hour:02d}", f"D{day}", f"M{day[:6]}"
