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
    local time — the same period names as ``TargetUsage.period`` in the database (an hour's second time
    when the clocks go back is ``H2026110101b``: ``core/periods.py``). Each expires one hour after its
    period ends (``EXPIREAT``, set when it is counted): a finished period is never read again, and the
    hour covers clocks that differ between nodes. Only keys of targets with that cap exist.
``P{t:ID}:known``
    says the counters above are known: the microseconds since the epoch at which they were last
    rebuilt. **Absent** when Redis lost its data (restarted without persistence, flushed, evicted) or
    for a target never used: ``reserve`` then refuses to guess (a missing count would read as zero, and
    a target could take more calls than its limit) and the caller rebuilds the counters first
    (:meth:`RedisCounters.rebuild`; ``network/live.py`` counts them from the database). While a rebuild
    runs it holds ``loading:<id>`` (expiring, in case the rebuilder dies).
``P{t:ID}:early``
    during a rebuild only: slots given back meanwhile (their name, or their stamp, and whether the cap
    units went back too), so that a slot the database still showed as held when the rebuild read it is
    not counted.
``P{t:ID}:slots``
    the call path's slots counted, by name (``<CallSid>#<attempt>``, a hash: name -> how many times it
    was taken; twice when a webhook delivered twice at once took it twice, and the duplicate's
    rolled-back transaction gives one back). Giving back a slot not listed takes nothing off, and a
    rebuild lists exactly the slots it counted: a slot given back in the database just before the
    rebuild counted, whose release reached Redis just after, is not taken off twice, nor is a slot
    taken while Redis was unreachable and never counted here.
``P{t:ID}:holds``
    tokens (``<CallSid>:<step>``) of the slots taken in degraded mode (the database away), where no
    database row says whether a slot was already taken or given back: taking or giving back the same
    token twice changes nothing. Also ``<CallSid>:<step>:units``: a hold whose call ended while its leg's
    outcome was unknown gave its slot back and kept its cap units under that name, until the leg turns out
    not delivered (its units go back, once) or the call's replay settles them (kept).
``P{c:CallSid}:plan``
    degraded mode only: what was dialled at each step of that call (a JSON object per step, ``end``
    once the call ended), so that a repeated webhook gets the same answer on any node and the slots can
    be given back from any node. Expires after two days; the replay deletes it.

Scripts (registered once per client; redis-py's ``Script`` sends ``EVALSHA`` and loads the script again
when the server answers ``NOSCRIPT``, e.g. after a Redis restart):

- ``reserve``: checks the concurrency slot and every cap, then takes them all — or takes nothing and
  says which was full (concurrency first, then hourly, daily, monthly: the SQL backend's order).
  Redis runs a script alone, so two reservations can never both see the last free slot.
- ``release``: gives back the slot and, for a call that was not delivered, one unit of each period its
  reservation counted (recorded with its attempt at dial time); never below zero, never recreating an expired period; nothing at all
  while the counters are unknown (the rebuild reads the database, where the release is already
  committed).
- ``claim`` and ``load``: a rebuild (see ``known`` above).
- ``forget``: makes a target's counters unknown, unless a rebuild is loading them, when they went stale
  (slots taken or given back in the database while Redis was unreachable); the next reservation
  rebuilds them.

The client is built without retries: a command that timed out may have run, and running ``reserve``
twice would take two slots. A failed command raises ``redis.RedisError`` to the caller: when Redis can't
be reached, ``network/live.py`` counts in the database instead, and marks the targets whose slots changed
there; :meth:`RedisCounters.forget_counters` then makes their counters unknown, to be rebuilt.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from callbroker.core.model import Exclusion, Target, TargetCounters
from callbroker.network.live import (
    CAP_EXCLUSIONS,
    caps_of,
    counted_now,
    period_keys,
    period_keys_at,
    units_to_give_back,
    zone,
)

#: Seconds a period key outlives its period (covers clocks that differ between nodes).
EXPIRY_MARGIN_S = 3600
#: Longest a rebuild may take before its claim expires and another process may rebuild instead.
REBUILD_CLAIM_MS = 30_000
#: Longest a reservation waits for a rebuild that another process is running.
REBUILD_WAIT_S = 5.0
#: Degraded-mode plans of a call are kept this long (a call lasts hours at most; the replay deletes them).
PLAN_TTL_S = 2 * 24 * 3600

UNKNOWN, REBUILDING = -2, -3
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

RESERVE_LUA = """
-- KEYS[1] = active slots; KEYS[2] = 'known' mark; KEYS[3] = degraded-mode hold tokens (a set) or, for a
-- call-path slot name, the slots counted by name (a hash: name -> count); KEYS[4..n] = period usage keys
-- ARGV[1] = concurrency limit (-1 = unlimited); ARGV[2] = hold token '<CallSid>:<step>', or slot name
-- '<CallSid>#<attempt>', or '' = none; ARGV[2k+1], ARGV[2k+2] = cap and EXPIREAT of KEYS[k+3]
-- returns 0 = taken (or already held under this token), -1 = concurrency full, k = the cap of KEYS[k+3]
-- is reached (nothing was taken), -2 = counters unknown (rebuild them first), -3 = a rebuild is running
local known = redis.call('GET', KEYS[2])
if not known then
  return -2
end
if string.sub(known, 1, 8) == 'loading:' then
  return -3
end
local token = ARGV[2]
local named = string.find(token, '#', 1, true)
if token ~= '' and not named and redis.call('SISMEMBER', KEYS[3], token) == 1 then
  return 0
end
local limit = tonumber(ARGV[1])
if limit >= 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= limit then
  return -1
end
for i = 4, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[2 * i - 5]) then
    return i - 3
  end
end
redis.call('INCR', KEYS[1])
for i = 4, #KEYS do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIREAT', KEYS[i], ARGV[2 * i - 4])
end
if named then
  redis.call('HINCRBY', KEYS[3], token, 1)  -- counted: a webhook delivered twice at once takes it twice
elseif token ~= '' then
  redis.call('SADD', KEYS[3], token)
end
return 0
"""

RELEASE_LUA = """
-- KEYS[1] = active slots; KEYS[2] = 'known' mark; KEYS[3] = slots given back during a rebuild;
-- KEYS[4] = degraded-mode hold tokens (a set) or, for a slot name, the slots counted by name (a hash);
-- KEYS[5..n] = period usage keys to give one unit back to
-- ARGV[1] = the slot's stamp (microseconds: the attempt's start); ARGV[2] = '1' when the cap units go back,
-- '0' when they stay, 'p' (degraded mode only) when they stay until the leg's outcome is known: the hold's
-- token is then swapped for '<token>:units', and a later '1' gives back the units alone, a '0' keeps them;
-- ARGV[3] = the slot's name: '<CallSid>#<attempt>' on the call path, '<CallSid>:<step>' in degraded mode,
-- '' = none (tools; the slot is then named by its stamp during a rebuild)
-- decrements only what is above zero; an expired period stays expired (DECR would recreate it)
local known = redis.call('GET', KEYS[2])
if not known then
  return 0  -- counters lost: the rebuild reads the database, where this release is committed
end
local token = ARGV[3]
local named = string.find(token, '#', 1, true)
if string.sub(known, 1, 8) == 'loading:' then
  if named or token == '' then  -- a slot of the call path (by name, or by stamp): not a degraded-mode hold
    redis.call('HSET', KEYS[3], named and token or ARGV[1], ARGV[2])  -- the rebuild may still count it: it won't
  end
  return 0
end
if named then
  local held = tonumber(redis.call('HGET', KEYS[4], token) or '0')
  if held <= 0 then
    return 0  -- not counted under this name (given back already, not counted by the last rebuild, or
              -- taken while Redis was unreachable)
  end
  if held == 1 then
    redis.call('HDEL', KEYS[4], token)
  else
    redis.call('HINCRBY', KEYS[4], token, -1)
  end
elseif token ~= '' then
  local units = token .. ':units'
  if redis.call('SREM', KEYS[4], token) == 1 then
    if ARGV[2] == 'p' then
      redis.call('SADD', KEYS[4], units)
    else
      redis.call('SREM', KEYS[4], units)
    end
  elseif ARGV[2] == '1' and redis.call('SREM', KEYS[4], units) == 1 then
    for i = 5, #KEYS do  -- the units kept when the call ended: the leg was not delivered after all
      if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then
        redis.call('DECR', KEYS[i])
      end
    end
    return 1
  else
    if ARGV[2] == '0' then
      redis.call('SREM', KEYS[4], units)  -- kept for good: the leg's outcome is known
    end
    return 0  -- not held under this token (given back already, or taken before Redis lost its data)
  end
end
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
  redis.call('DECR', KEYS[1])
end
for i = 5, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then
    redis.call('DECR', KEYS[i])
  end
end
return 1
"""

CLAIM_LUA = """
-- KEYS[1] = 'known' mark; KEYS[2] = slots given back during a rebuild
-- ARGV[1] = 'loading:<id>'; ARGV[2] = milliseconds the claim lasts
-- returns 1 when this rebuild may load the target (its counters were unknown and nobody else rebuilds)
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""

LOAD_LUA = """
-- KEYS[1] = active slots; KEYS[2] = 'known' mark; KEYS[3] = slots given back during the rebuild;
-- KEYS[4] = degraded-mode hold tokens; KEYS[5] = the slots counted by name;
-- KEYS[6..n] = current period usage keys of the target's caps
-- ARGV[1] = the claim ('loading:<id>'); ARGV[2] = the value 'known' takes (the rebuild's stamp);
-- ARGV[2k+1], ARGV[2k+2] = count and EXPIREAT of KEYS[k+5];
-- then one 'slot:mask' per slot the database holds, slot = its name ('<CallSid>#<attempt>': counted in
-- KEYS[5]) or its stamp (bit k-1 of mask: counted in KEYS[k+5])
-- returns 1 when loaded, 0 when the claim was lost (expired): nothing is changed then
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[4], KEYS[5])  -- degraded-mode holds were not counted: giving them back is void
local periods = #KEYS - 5
local counts = {}
for k = 1, periods do
  counts[k] = tonumber(ARGV[2 * k + 1])
end
local active = 0
for j = 2 * periods + 3, #ARGV do
  local sep = string.find(ARGV[j], ':', 1, true)
  local slot = string.sub(ARGV[j], 1, sep - 1)
  local mask = tonumber(string.sub(ARGV[j], sep + 1))
  local undo = redis.call('HGET', KEYS[3], slot)
  if not undo then
    active = active + 1
    if string.find(slot, '#', 1, true) then
      redis.call('HINCRBY', KEYS[5], slot, 1)  -- its release takes it off; one not listed takes nothing
    end
  elseif undo == '1' then
    for k = 1, periods do
      if math.floor(mask / 2 ^ (k - 1)) % 2 == 1 then
        counts[k] = counts[k] - 1
      end
    end
  end
end
redis.call('SET', KEYS[1], active)
for k = 1, periods do
  if counts[k] > 0 then
    redis.call('SET', KEYS[k + 5], counts[k])
    redis.call('EXPIREAT', KEYS[k + 5], ARGV[2 * k + 2])
  else
    redis.call('DEL', KEYS[k + 5])
  end
end
redis.call('DEL', KEYS[3])
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""


FORGET_LUA = """
-- KEYS = the 'known' marks of targets whose counters are stale
-- forgets each (the next reservation rebuilds the counters) unless a rebuild is loading it already
local forgotten = 0
for i = 1, #KEYS do
  local known = redis.call('GET', KEYS[i])
  if known and string.sub(known, 1, 8) ~= 'loading:' then
    redis.call('DEL', KEYS[i])
    forgotten = forgotten + 1
  end
end
return forgotten
"""


class CountersUnknown(redis.RedisError):
    """Redis holds no counters for a target (it lost them and they were not rebuilt yet, or a rebuild runs)."""


def connect(url: str, timeout_s: float = 0.5) -> redis.Redis:
    """A client for ``url`` with short timeouts and no automatic retries (see the module docstring)."""
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                socket_keepalive=True, retry=Retry(NoBackoff(), 0))


def stamp(at: dt.datetime) -> int:
    """Microseconds since the epoch: names a slot by its attempt's start (exact, unlike a float)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return (at - _EPOCH) // dt.timedelta(microseconds=1)


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
    off it (India, Nepal), which the margin covers. An hour's second time when the clocks go back has a key
    of its own (``H2026110101b``, ``core/periods.py``), expiring after its own end as any hour's.
    """
    local = at.astimezone(zone(tz_name))
    hour_end = (int(at.timestamp()) // 3600 + 1) * 3600
    day_end, month_end = _day_month_ends(tz_name, local.year, local.month, local.day)
    return hour_end + EXPIRY_MARGIN_S, day_end + EXPIRY_MARGIN_S, month_end + EXPIRY_MARGIN_S


@dataclass(frozen=True, slots=True)
class Claim:
    """A rebuild under way: the targets it may load."""

    value: str
    at: dt.datetime
    target_ids: tuple[int, ...]


#: ``rebuild(store, target, tz_name)``: make the counters of ``target`` known (see ``RedisCounters``).
Rebuild = Callable[["RedisCounters", Target, str], None]


def rebuild_assuming_nothing_held(store: RedisCounters, target: Target, tz_name: str) -> None:
    """The rebuild of a store used on its own (tests, tools): nothing is held anywhere, every count is zero."""
    claim = store.claim([target.id])
    if claim.target_ids:
        store.load(claim, target, tz_name, dt.datetime.now(dt.UTC), held=(), counts=(0, 0, 0))


class RedisCounters:
    """The counters of every target, in one Redis (or one Redis Cluster slot per target).

    ``rebuild`` is called when a reservation finds the counters of its target unknown: it must claim
    the target (:meth:`claim`), count what is held and used, and :meth:`load` it. ``network/live.py``
    counts from the database; without one, nothing is assumed held (:func:`rebuild_assuming_nothing_held`).
    """

    def __init__(self, client: redis.Redis, prefix: str = "cb:", rebuild: Rebuild | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.rebuild = rebuild or rebuild_assuming_nothing_held
        self._reserve = client.register_script(RESERVE_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self._claim = client.register_script(CLAIM_LUA)
        self._load = client.register_script(LOAD_LUA)
        self._forget = client.register_script(FORGET_LUA)

    # -- key names

    def active_key(self, target_id: int) -> str:
        return f"{self.prefix}{{t:{target_id}}}:active"

    def usage_key(self, target_id: int, period: str) -> str:
        return f"{self.prefix}{{t:{target_id}}}:{period}"

    def known_key(self, target_id: int) -> str:
        return f"{self.prefix}{{t:{target_id}}}:known"

    def early_key(self, target_id: int) -> str:
        return f"{self.prefix}{{t:{target_id}}}:early"

    def holds_key(self, target_id: int) -> str:
        return f"{self.prefix}{{t:{target_id}}}:holds"

    def slots_key(self, target_id: int) -> str:
        return f"{self.prefix}{{t:{target_id}}}:slots"

    def _held_under(self, target_id: int, token: str) -> str:
        """Where a slot taken under ``token`` is kept: by name on the call path, as a hold in degraded mode."""
        return self.slots_key(target_id) if "#" in token else self.holds_key(target_id)

    def plan_key(self, call_sid: str) -> str:
        return f"{self.prefix}{{c:{call_sid}}}:plan"

    # -- operations

    def read(self, targets: Sequence[Target], timezones: dict[int, str], now: dt.datetime, *,
             unknown_as_empty: bool = True) -> dict[int, TargetCounters]:
        """Counters of these targets at ``now`` (one round trip). Advisory: ``reserve`` checks again.

        A target whose counters are unknown (no ``known`` mark: Redis lost them, they were forgotten as
        stale, a rebuild is loading them) reads as empty: what its keys still hold may be stale, and
        read as full it would never be offered a call, so never reserved, so never rebuilt. Offered, its
        reservation rebuilds the counters from the database first and refuses it if it is full.
        ``unknown_as_empty=False`` (degraded mode: no database to rebuild from, so a reservation can't
        check again) reads what the keys hold, the best there is then.
        """
        if not targets:
            return {}
        pipe = self.client.pipeline(transaction=False)
        periods: dict[int, tuple[str, str, str] | None] = {}
        keys_in = period_keys_at(now)
        for t in targets:
            pipe.get(self.known_key(t.id))
            pipe.get(self.active_key(t.id))
            hour_cap, day_cap, month_cap = caps_of(t)
            if hour_cap is None and day_cap is None and month_cap is None:
                periods[t.id] = None
                continue
            periods[t.id] = keys = keys_in(timezones[t.id])
            for key in keys:
                pipe.get(self.usage_key(t.id, key))
        values = iter(pipe.execute())
        counters = {}
        for t in targets:
            known = next(values)
            active = int(next(values) or 0)
            if periods[t.id] is None:
                counters[t.id] = TargetCounters(active=active)
            else:
                hour, day, month = (int(next(values) or 0) for _ in range(3))
                counters[t.id] = TargetCounters(active=active, hour=hour, day=day, month=month)
            if unknown_as_empty and (not known or known.startswith(b"loading:")):
                counters[t.id] = TargetCounters()
        return counters

    def reserve(self, target: Target, tz_name: str, now: dt.datetime, *, token: str = "",
                rebuild: bool = True) -> Exclusion | None:
        """Take the concurrency slot and one unit of each cap, all or nothing (one ``EVALSHA``).

        With ``token``, the slot is held under it and only a release with that token gives it back: a
        call-path slot name (``<CallSid>#<attempt>``, see ``slots``), or a degraded-mode token
        (``<CallSid>:<step>``), with which a second reservation takes nothing more. When the target's
        counters are unknown they are rebuilt first (or, with ``rebuild=False``,
        :class:`CountersUnknown` is raised).
        """
        keys = [self.active_key(target.id), self.known_key(target.id), self._held_under(target.id, token)]
        args: list[int | str] = [-1 if target.concurrency_limit is None else target.concurrency_limit, token]
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
        if result in (UNKNOWN, REBUILDING):
            if not rebuild:
                raise CountersUnknown(f"counters of target {target.id} are unknown (Redis lost them)")
            if result == UNKNOWN:
                self.rebuild(self, target, tz_name)
            self.wait_until_known(target.id)
            result = int(self._reserve(keys=keys, args=args))
            if result in (UNKNOWN, REBUILDING):
                raise CountersUnknown(f"counters of target {target.id} could not be rebuilt")
        if result == 0:
            return None
        if result < 0:
            return Exclusion.CONCURRENCY_FULL
        return refusals[result - 1]

    def release(self, target: Target | None, target_id: int, tz_name: str | None, started_at: dt.datetime, *,
                undo_usage: bool, token: str = "", pending: bool = False, periods: str | None = None) -> bool:
        """Give back the slot and, with ``undo_usage``, the cap units its reservation counted (one ``EVALSHA``):
        those of ``periods`` (period names recorded at dial time, ``live.counted_periods``), else those of
        ``started_at`` for the caps ``target`` has now (``live.units_to_give_back``).

        ``started_at`` is the attempt's start: during a rebuild it names the slot (see ``early``).
        ``token``: the slot's name, or the degraded-mode hold to give back. Returns whether anything was given
        back. ``pending`` (a degraded-mode hold whose call ended while the leg's outcome is unknown): the
        slot goes back, its cap units stay, kept under ``<token>:units`` (see ``holds``) until a later
        release by the same token settles them: ``undo_usage`` gives them back (the leg was not delivered),
        otherwise they stay for good.
        """
        keys = [self.active_key(target_id), self.known_key(target_id), self.early_key(target_id),
                self._held_under(target_id, token)]
        if undo_usage:
            keys += [self.usage_key(target_id, period)
                     for period in units_to_give_back(target, tz_name, started_at, periods)]
        how = "1" if undo_usage else "p" if pending else "0"
        return bool(self._release(keys=keys, args=[stamp(started_at), how, token]))

    def hold_counted(self, target_id: int, token: str) -> bool:
        """The cap units a degraded-mode hold took under ``token`` are still counted: the hold stands, or its
        call's end kept them (``release(..., pending=True)``). False once given back, and once Redis lost them
        (a rebuild counts from the database instead)."""
        key = self.holds_key(target_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.sismember(key, token)
        pipe.sismember(key, f"{token}:units")
        return any(pipe.execute())

    def ping(self) -> bool:
        return bool(self.client.ping())

    # -- rebuilding unknown counters

    def claim(self, target_ids: Iterable[int], ttl_ms: int = REBUILD_CLAIM_MS) -> Claim:
        """Mark the targets whose counters are unknown as being rebuilt by us; returns those we got."""
        ids = list(dict.fromkeys(target_ids))
        value, at = f"loading:{uuid.uuid4().hex}", dt.datetime.now(dt.UTC)
        pipe = self.client.pipeline(transaction=False)
        for target_id in ids:
            self._claim(keys=[self.known_key(target_id), self.early_key(target_id)], args=[value, ttl_ms],
                        client=pipe)
        got = pipe.execute() if ids else []
        return Claim(value, at, tuple(tid for tid, ok in zip(ids, got, strict=True) if int(ok)))

    def load(self, claim: Claim, target: Target, tz_name: str, now: dt.datetime, *,
             held: Iterable[dt.datetime | tuple[dt.datetime, str] | tuple[dt.datetime, str, str | None]],
             counts: tuple[int, int, int]) -> bool:
        """Set a claimed target's counters: ``held`` = the slots held (their start, or their start and
        name: see ``holds``, and the periods their reservation counted, recorded at dial time, ``None`` when
        not recorded), ``counts`` = calls counted in the current hour, day and month (``now``).
        Slots given back since the claim are not counted."""
        keys = [self.active_key(target.id), self.known_key(target.id), self.early_key(target.id),
                self.holds_key(target.id), self.slots_key(target.id)]
        args: list[int | str] = [claim.value, stamp(claim.at)]
        current = period_keys(now, tz_name)
        capped = [i for i, cap in enumerate(caps_of(target)) if cap is not None]
        expiry = period_expiry(now, tz_name)
        for i in capped:
            keys.append(self.usage_key(target.id, current[i]))
            args += [counts[i], expiry[i]]
        for slot in held:
            at, name, recorded = (*slot, None)[:3] if isinstance(slot, tuple) else (slot, "", None)
            counted = counted_now(current, at, tz_name, recorded)
            mask = sum(1 << k for k, i in enumerate(capped) if i in counted)
            args.append(f"{name or stamp(at)}:{mask}")
        return bool(self._load(keys=keys, args=args))

    def abandon(self, claim: Claim) -> None:
        """Give up a claim (the rebuild failed): its targets are unknown again, for the next try."""
        for target_id in claim.target_ids:
            key = self.known_key(target_id)
            if self.client.get(key) == claim.value.encode():
                self.client.delete(key)

    def forget_counters(self, target_ids: Sequence[int]) -> int:
        """Make these targets' counters unknown (they are stale): the next reservation of each rebuilds them.

        A target being rebuilt is left alone. Returns how many were forgotten (one script per target: a
        target's keys share one Redis Cluster slot, different targets' may not).
        """
        return sum(int(self._forget(keys=[self.known_key(target_id)])) for target_id in target_ids)

    def wait_until_known(self, target_id: int, timeout_s: float = REBUILD_WAIT_S) -> bool:
        """Wait (polling) while another process rebuilds this target's counters."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.client.get(self.known_key(target_id))
            if value is not None and not value.startswith(b"loading:"):
                return True
            if value is None or time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def mark_known(self, targets: Iterable[tuple[Target, str]]) -> None:
        """Declare these targets' counters known as they are (tools that zero the counters themselves)."""
        for target, tz_name in targets:
            claim = self.claim([target.id])
            if claim.target_ids:
                self.load(claim, target, tz_name, dt.datetime.now(dt.UTC), held=(), counts=(0, 0, 0))

    # -- degraded mode: what each step of a call dialled (see calls/degraded.py)

    def plans(self, call_sid: str) -> dict[str, dict]:
        """Every step remembered for this call (``"1"``, ``"2"`` … and ``"end"``)."""
        raw = self.client.hgetall(self.plan_key(call_sid))
        return {key.decode(): json.loads(value) for key, value in raw.items()}

    def plan(self, call_sid: str, step: str) -> dict | None:
        raw = self.client.hget(self.plan_key(call_sid), step)
        return json.loads(raw) if raw is not None else None

    def remember(self, call_sid: str, step: str, plan: dict) -> dict:
        """Store ``plan`` for this step unless one is there already; returns the one that stands."""
        key = self.plan_key(call_sid)
        pipe = self.client.pipeline(transaction=False)
        pipe.hsetnx(key, step, json.dumps(plan, separators=(",", ":")))
        pipe.hget(key, step)
        pipe.expire(key, PLAN_TTL_S)
        _, stored, _ = pipe.execute()
        return json.loads(stored)

    def forget(self, call_sid: str) -> None:
        self.client.delete(self.plan_key(call_sid))
