"""Live per-target counters in Redis: one Lua script per change, atomic across every app node.

Used by ``callbroker.network.live`` when ``REDIS_URL`` is set (see there for the choice, and for how the
changes are tied to the database transaction of the webhook). This module knows Redis only — no
Django — so tests and the benchmark drive it directly.

Keys (``P`` = ``CALLBROKER_REDIS_PREFIX``, default ``cb:``; ``{t:ID}`` is a Redis Cluster hash tag so
that one target's keys live in one slot and one script may touch them all):

``P{t:ID}:active``
    calls ringing or connected on target ``ID`` now (an integer; never expires — it is a level, not a
    count per period).
``P{t:ID}:H2026112714`` / ``P{t:ID}:D20261127`` / ``P{t:ID}:M202611``
    calls counted towards the hourly / daily / monthly cap in that hour, day, month of the buyer's
    local time — the same period names as ``TargetUsage.period`` in the database. Each expires one
    hour after its period ends (``EXPIREAT``, set when it is counted): a finished period is never read
    again, and the hour covers clocks that differ between nodes. Only keys of targets with that cap
    exist.

Scripts (registered once per client; redis-py's ``Script`` sends ``EVALSHA`` and loads the script again
when the server answers ``NOSCRIPT``, e.g. after a Redis restart):

- ``reserve``: checks the concurrency slot and every cap, then takes them all — or takes nothing and
  says which was full (concurrency first, then hourly, daily, monthly: the SQL backend's order).
  Redis runs a script alone, so two reservations can never both see the last free slot.
- ``release``: gives back the slot and, for a call that was not delivered, one unit of the caps of
  the period it was counted in; never below zero, never recreating an expired period.

The client is built without retries: a command that timed out may have run, and running ``reserve``
twice would take two slots. A failed command raises ``redis.RedisError`` to the caller (the webhook
then takes its degraded path).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import lru_cache

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from callbroker.core.model import Exclusion, Target, TargetCounters
from callbroker.network.live import CAP_EXCLUSIONS, caps_of, period_keys, zone

#: Seconds a period key outlives its period (covers clocks that differ between nodes).
EXPIRY_MARGIN_S = 3600

RESERVE_LUA = """
-- KEYS[1] = active slots; KEYS[2..n] = period usage keys of the caps the target has
-- ARGV[1] = concurrency limit (-1 = unlimited); ARGV[2k], ARGV[2k+1] = cap and EXPIREAT of KEYS[k+1]
-- returns 0 = taken, -1 = concurrency full, k = the cap of KEYS[k+1] is reached (nothing was taken)
local limit = tonumber(ARGV[1])
if limit >= 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= limit then
  return -1
end
for i = 2, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[2 * i - 2]) then
    return i - 1
  end
end
redis.call('INCR', KEYS[1])
for i = 2, #KEYS do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIREAT', KEYS[i], ARGV[2 * i - 1])
end
return 0
"""

RELEASE_LUA = """
-- KEYS[1] = active slots; KEYS[2..n] = period usage keys to give one unit back to
-- decrements only what is above zero; an expired period stays expired (DECR would recreate it)
for i = 1, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then
    redis.call('DECR', KEYS[i])
  end
end
return 0
"""


def connect(url: str, timeout_s: float = 0.5) -> redis.Redis:
    """A client for ``url`` with short timeouts and no automatic retries (see the module docstring)."""
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                socket_keepalive=True, retry=Retry(NoBackoff(), 0))


@lru_cache(maxsize=4096)
def _day_month_ends(tz_name: str, year: int, month: int, day: int) -> tuple[int, int]:
    """Epoch seconds at which the local day and the local month that contain this date end."""
    tz = zone(tz_name)
    next_day = dt.date(year, month, day) + dt.timedelta(days=1)
    next_month = dt.date(year + month // 12, month % 12 + 1, 1)
    day_end = dt.datetime.combine(next_day, dt.time(0), tzinfo=tz).timestamp()
    month_end = dt.datetime.combine(next_month, dt.time(0), tzinfo=tz).timestamp()
    return int(day_end), int(month_end)


def period_expiry(at: dt.datetime, tz_name: str) -> tuple[int, int, int]:
    """``EXPIREAT`` of the hour, day and month keys of ``at``: the end of each period + the margin.

    The hour ends at the next UTC hour boundary: local hours start on a UTC hour or at most 45 minutes
    off it (India, Nepal), which the margin covers; a repeated hour at the end of daylight saving time
    is counted under one key, whose expiry each reservation moves on.
    """
    local = at.astimezone(zone(tz_name))
    hour_end = (int(at.timestamp()) // 3600 + 1) * 3600
    day_end, month_end = _day_month_ends(tz_name, local.year, local.month, local.day)
    return hour_end + EXPIRY_MARGIN_S, day_end + EXPIRY_MARGIN_S, month_end + EXPIRY_MARGIN_S


class RedisCounters:
    """The counters of every target, in one Redis (or one Redis Cluster slot per target)."""

    def __init__(self, client: redis.Redis, prefix: str = "cb:") -> None:
        self.client = client
        self.prefix = prefix
        self._reserve = client.register_script(RESERVE_LUA)
        self._release = client.register_script(RELEASE_LUA)

    # -- key names

    def active_key(self, target_id: int) -> str:
        return f"{self.prefix}{{t:{target_id}}}:active"

    def usage_key(self, target_id: int, period: str) -> str:
        return f"{self.prefix}{{t:{target_id}}}:{period}"

    # -- operations

    def read(self, targets: Sequence[Target], timezones: dict[int, str], now: dt.datetime) -> dict[int, TargetCounters]:
        """Counters of these targets at ``now`` (one round trip). Advisory: ``reserve`` checks again."""
        if not targets:
            return {}
        pipe = self.client.pipeline(transaction=False)
        periods: dict[int, tuple[str, str, str] | None] = {}
        for t in targets:
            pipe.get(self.active_key(t.id))
            hour_cap, day_cap, month_cap = caps_of(t)
            if hour_cap is None and day_cap is None and month_cap is None:
                periods[t.id] = None
                continue
            periods[t.id] = keys = period_keys(now, timezones[t.id])
            for key in keys:
                pipe.get(self.usage_key(t.id, key))
        values = iter(pipe.execute())
        counters = {}
        for t in targets:
            active = int(next(values) or 0)
            if periods[t.id] is None:
                counters[t.id] = TargetCounters(active=active)
            else:
                hour, day, month = (int(next(values) or 0) for _ in range(3))
                counters[t.id] = TargetCounters(active=active, hour=hour, day=day, month=month)
        return counters

    def reserve(self, target: Target, tz_name: str, now: dt.datetime) -> Exclusion | None:
        """Take the concurrency slot and one unit of each cap, all or nothing (one ``EVALSHA``)."""
        keys = [self.active_key(target.id)]
        args: list[int] = [-1 if target.concurrency_limit is None else target.concurrency_limit]
        refusals: list[Exclusion] = []
        caps = caps_of(target)
        if any(cap is not None for cap in caps):
            for period, cap, expiry, exclusion in zip(period_keys(now, tz_name), caps, period_expiry(now, tz_name),
                                                      CAP_EXCLUSIONS, strict=True):
                if cap is not None:
                    keys.append(self.usage_key(target.id, period))
                    args += [cap, expiry]
                    refusals.append(exclusion)
        result = int(self._reserve(keys=keys, args=args))
        if result == 0:
            return None
        if result < 0:
            return Exclusion.CONCURRENCY_FULL
        return refusals[result - 1]

    def release(self, target: Target | None, target_id: int, tz_name: str | None, started_at: dt.datetime, *,
                undo_usage: bool) -> None:
        """Give back the slot and, with ``undo_usage``, the cap units counted at ``started_at`` (one ``EVALSHA``)."""
        keys = [self.active_key(target_id)]
        if undo_usage and target is not None and tz_name:
            keys += [self.usage_key(target_id, period)
                     for period, cap in zip(period_keys(started_at, tz_name), caps_of(target), strict=True)
                     if cap is not None]
        self._release(keys=keys)

    def ping(self) -> bool:
        return bool(self.client.ping())
