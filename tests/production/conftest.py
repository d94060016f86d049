"""Fixtures for the production backends: live counters in Redis and in PostgreSQL, servers with them.

Both counter backends are driven through one small interface (:class:`RedisDriver`, :class:`SqlDriver`)
so that every behaviour is tested the same way on each. The SQL backend runs on the private PostgreSQL
inside worker processes set up with ``DATABASE_URL`` (``callbroker.ops.bench.CounterWorkers``, the
benchmark's own harness), the Redis backend in this process against the private Redis.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
import uuid

import pytest

from callbroker.calls.models import Call, CallAttempt
from callbroker.network.live_redis import RedisCounters, connect
from callbroker.network.loader import load_network
from callbroker.network.models import Target as TargetRow
from callbroker.ops import bench

TZ = "America/Chicago"
_ids = itertools.count(1_000_000)


def spec(**limits) -> dict:
    """A target for the counters: an id (fresh unless given) and its limits (None = unlimited)."""
    limits.setdefault("id", next(_ids))
    return limits


class RedisDriver:
    name = "redis"

    def __init__(self, store: RedisCounters) -> None:
        self.store = store

    def target(self, **limits) -> dict:
        return spec(**limits)

    def reserve(self, target: dict, now: dt.datetime, tz: str = TZ) -> str | None:
        refused = self.store.reserve(bench.core_target(target), tz, now)
        return refused.value if refused is not None else None

    def release(self, target: dict, started_at: dt.datetime, *, undo_usage: bool, tz: str = TZ,
                known: bool = True) -> None:
        core = bench.core_target(target)
        self.store.release(core if known else None, core.id, tz, started_at, undo_usage=undo_usage)

    def read(self, targets: list[dict], now: dt.datetime, tz: str = TZ) -> dict[int, tuple[int, int, int, int]]:
        cores = [bench.core_target(t) for t in targets]
        counters = self.store.read(cores, {t.id: tz for t in cores}, now)
        return {tid: (c.active, c.hour, c.day, c.month) for tid, c in counters.items()}


class SqlDriver:
    """The SQL backend on PostgreSQL, through a worker process (targets must exist: a pool of rows)."""

    name = "sql"

    def __init__(self, workers: bench.CounterWorkers, pool: list[int]) -> None:
        self.workers = workers
        self.pool = itertools.cycle(pool)

    def target(self, **limits) -> dict:
        target = spec(id=next(self.pool), **limits)
        self.workers.one("reset", {"ids": [target["id"]]})
        return target

    def reserve(self, target: dict, now: dt.datetime, tz: str = TZ) -> str | None:
        return self.workers.one("reserve", {"target": target, "timezone": tz, "now": now.isoformat()})

    def release(self, target: dict, started_at: dt.datetime, *, undo_usage: bool, tz: str = TZ,
                known: bool = True) -> None:
        self.workers.one("release", {"target": target, "timezone": tz, "now": started_at.isoformat(),
                                     "undo_usage": undo_usage, "known": known})

    def read(self, targets: list[dict], now: dt.datetime, tz: str = TZ) -> dict[int, tuple[int, int, int, int]]:
        got = self.workers.one("read", {"targets": targets, "timezone": tz, "now": now.isoformat(), "atomic": False})
        return {int(k): tuple(v) for k, v in got.items()}


@pytest.fixture(scope="session")
def redis_client(redis_server):
    client = connect(redis_server.url, timeout_s=2.0)
    yield client
    client.close()


@pytest.fixture()
def redis_store(redis_client) -> RedisCounters:
    """Counters under a prefix of their own (deleted afterwards)."""
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    yield RedisCounters(redis_client, prefix)
    keys = list(redis_client.scan_iter(match=f"{prefix}*"))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture()
def redis_backend(settings, redis_server, redis_store):
    """``live`` switched to Redis (same prefix as ``redis_store``, so the test can look inside)."""
    from callbroker.network import live

    settings.REDIS_URL = redis_server.url
    settings.COUNTERS_BACKEND = "redis"
    settings.REDIS_KEY_PREFIX = redis_store.prefix
    assert live.backend_name() == "redis"
    yield redis_store


@pytest.fixture(scope="session")
def pg_database_url(postgres_server, tmp_path_factory) -> str:
    """A migrated PostgreSQL database for the SQL backend."""
    url = postgres_server.create_database("callbroker_production")
    bench.migrate({"DATABASE_URL": url, "CALLBROKER_DATA_DIR": str(tmp_path_factory.mktemp("pg-migrate")),
                   "CALLBROKER_ENV": "development"})
    return url


def worker_env(data_dir, **extra: str) -> dict[str, str]:
    env = {"CALLBROKER_DATA_DIR": str(data_dir), "CALLBROKER_ENV": "development", "CALLBROKER_LOG_LEVEL": "ERROR",
           "DATABASE_URL": "", "REDIS_URL": "", "CALLBROKER_COUNTERS": "sql"}
    env.update(extra)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


@pytest.fixture(scope="session")
def sql_workers(pg_database_url, tmp_path_factory):
    """Two worker processes × four threads keeping counters in PostgreSQL, and a pool of target rows."""
    env = worker_env(tmp_path_factory.mktemp("sql-workers"), DATABASE_URL=pg_database_url)
    with bench.CounterWorkers(env, processes=2, threads=4) as workers:
        pool = workers.one("targets", {"count": 40, "timezone": TZ})
        yield workers, pool


@pytest.fixture(scope="session")
def redis_workers(redis_server, tmp_path_factory):
    """Two worker processes × four threads keeping counters in Redis (prefix of their own)."""
    prefix = f"procs-{uuid.uuid4().hex[:8]}:"
    env = worker_env(tmp_path_factory.mktemp("redis-workers"), CALLBROKER_COUNTERS="redis",
                     REDIS_URL=redis_server.url, CALLBROKER_REDIS_PREFIX=prefix)
    bench.migrate(env)  # a target's first reservation counts its held slots in the database (a rebuild)
    with bench.CounterWorkers(env, processes=2, threads=4) as workers:
        yield workers, prefix


@pytest.fixture(params=["redis", "sql"])
def counters(request):
    """Each counter backend in turn, behind the same driver interface."""
    if request.param == "redis":
        return RedisDriver(request.getfixturevalue("redis_store"))
    workers, pool = request.getfixturevalue("sql_workers")
    return SqlDriver(workers, pool)


def now_utc() -> dt.datetime:
    """Now, but never in an hour's first minute (waits it out, rarely): the tests put attempts up to 40 s
    before now and count them in now's hour, day and month, which such attempts would not be in."""
    now = dt.datetime.now(dt.UTC)
    if now.minute == 0:
        time.sleep(60 - now.second - now.microsecond / 1e6 + 0.05)
        now = dt.datetime.now(dt.UTC)
    return now


# --------------------------------------------------------------------------- a target in the database

_sids = itertools.count(1)


def values(store, target, now) -> tuple[int, int, int, int]:
    c = store.read([target], {target.id: TZ}, now)[target.id]
    return c.active, c.hour, c.day, c.month


@pytest.fixture()
def target(db):
    """One target with concurrency 2 and hourly/daily caps, as the network loader writes it."""
    load_network({
        "version": 1,
        "campaigns": [{"key": "c", "name": "C", "category": "plumbing", "payout": "1.00"}],
        "buyers": [{"key": "b", "name": "B", "timezone": TZ, "targets": [
            {"key": "t", "campaign": "c", "name": "T", "number": "+15125557001", "price": "1.00",
             "caps": {"concurrency": 2, "hourly": 5, "daily": 9}}]}],
    })
    row = TargetRow.objects.get(key="t")
    return bench.core_target({"id": row.pk, "concurrency_limit": 2, "hourly_cap": 5, "daily_cap": 9})


def attempt(target, started_at: dt.datetime, *, result: str = "ringing", slot_held: bool = True) -> CallAttempt:
    call = Call.objects.create(call_sid=f"CA{next(_sids):032x}", to_number="+15125550001", started_at=started_at)
    return CallAttempt.objects.create(call=call, sequence=1, target_id=target.id, number="+15125557001",
                                      started_at=started_at, result=result, slot_held=slot_held)
