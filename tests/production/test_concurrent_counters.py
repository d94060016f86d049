"""Concurrent reservations never exceed a limit, on either backend, across threads and processes.

Given targets with limits drawn by hypothesis, when 8 threads (in one process, or in 2 processes × 4)
reserve at once and nobody releases, then exactly the smallest limit's worth of reservations succeed
(more would be a violation, fewer a lost or half-taken reservation) and the stored counters say so.
Then, with reservations held for a moment and released, a referee outside the backend never sees
more holders than the limit, and everything is given back.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callbroker.network.live_redis import RedisCounters
from callbroker.ops import bench
from callbroker.ops.bench import LIMIT_FIELDS, expected_counters, expected_successes
from tests.production.conftest import TZ, now_utc, spec

ATTEMPTS = 2  # per thread and target: 16 attempts in all, more than any limit drawn
THREADS = 8
limit = st.one_of(st.none(), st.integers(min_value=0, max_value=6))
scenarios = st.lists(st.fixed_dictionaries({field: limit for field in LIMIT_FIELDS}), min_size=1, max_size=3)
examples = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                          HealthCheck.too_slow])


def assert_exact(specs: list[dict], taken: list[int], stored: dict, attempts_total: int) -> None:
    for target, n in zip(specs, taken, strict=True):
        assert n == expected_successes(target, attempts_total), (target, n)
        assert tuple(stored[target["id"]]) == expected_counters(target, n), (target, stored[target["id"]])


def fill_with_threads(store: RedisCounters, specs: list[dict], now: dt.datetime) -> list[int]:
    """THREADS threads in this process reserve (never release) until every target refuses."""
    targets = [bench.core_target(s) for s in specs]
    start = threading.Barrier(THREADS)
    taken = [[0] * len(targets) for _ in range(THREADS)]

    def run(n: int) -> None:
        start.wait(timeout=30)
        for _ in range(ATTEMPTS):
            for i, target in enumerate(targets):
                if store.reserve(target, TZ, now) is None:
                    taken[n][i] += 1

    pool = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return [sum(column) for column in zip(*taken, strict=True)]


@examples
@given(limits=scenarios)
def test_redis_8_threads_never_exceed_a_limit(redis_client, limits):
    store = RedisCounters(redis_client, f"threads-{uuid.uuid4().hex[:8]}:")
    specs = [spec(**lims) for lims in limits]
    now = now_utc()
    taken = fill_with_threads(store, specs, now)
    cores = [bench.core_target(s) for s in specs]
    stored = {tid: (c.active, c.hour, c.day, c.month)
              for tid, c in store.read(cores, {c.id: TZ for c in cores}, now).items()}
    assert_exact(specs, taken, stored, ATTEMPTS * THREADS)


def fill_with_processes(workers, specs: list[dict], now: dt.datetime, *, atomic: bool) -> list[int]:
    runs = workers.all("hammer", {"mode": "fill", "targets": specs, "attempts": ATTEMPTS, "timezone": TZ,
                                  "now": now.isoformat(), "atomic": atomic})
    assert not [e for r in runs for e in r["errors"]]
    return [sum(r["taken"][i] for r in runs) for i in range(len(specs))]


@settings(parent=examples, max_examples=12)
@given(limits=scenarios)
def test_redis_2_processes_never_exceed_a_limit(redis_workers, redis_client, limits):
    workers, prefix = redis_workers
    specs = [spec(**lims) for lims in limits]
    now = now_utc()
    taken = fill_with_processes(workers, specs, now, atomic=False)
    store = RedisCounters(redis_client, prefix)
    cores = [bench.core_target(s) for s in specs]
    stored = {tid: (c.active, c.hour, c.day, c.month)
              for tid, c in store.read(cores, {c.id: TZ for c in cores}, now).items()}
    assert_exact(specs, taken, stored, ATTEMPTS * THREADS)


@settings(parent=examples, max_examples=12)
@given(limits=scenarios)
def test_sql_on_postgresql_2_processes_of_4_threads_never_exceed_a_limit(sql_workers, limits):
    workers, pool = sql_workers
    specs = [{**lims, "id": target_id} for lims, target_id in zip(limits, pool, strict=False)]
    workers.one("reset", {"ids": [s["id"] for s in specs]})
    now = now_utc()
    taken = fill_with_processes(workers, specs, now, atomic=True)
    stored = workers.one("read", {"targets": specs, "timezone": TZ, "now": now.isoformat()})
    assert_exact(specs, taken, stored, ATTEMPTS * THREADS)


def hold_and_release(workers, specs: list[dict], *, atomic: bool) -> dict:
    now = now_utc()
    runs = workers.all("hammer", {"mode": "cycle", "targets": specs, "seconds": 1.0, "hold_s": 0.003,
                                  "timezone": TZ, "now": now.isoformat(), "atomic": atomic})
    assert not [e for r in runs for e in r["errors"]]
    return {"pairs": sum(r["pairs"] for r in runs), "violations": sum(r["violations"] for r in runs),
            "refused": sum(sum(r["refused"].values()) for r in runs), "now": now}


CYCLE = [{"concurrency_limit": 1, "hourly_cap": 10**6}, {"concurrency_limit": 2, "daily_cap": 10**6},
         {"concurrency_limit": 3, "monthly_cap": 10**6}]


def test_sql_on_postgresql_holders_never_exceed_the_limit_and_all_is_given_back(sql_workers):
    workers, pool = sql_workers
    specs = [{**lims, "id": target_id} for lims, target_id in zip(CYCLE, pool, strict=False)]
    workers.one("reset", {"ids": [s["id"] for s in specs]})
    result = hold_and_release(workers, specs, atomic=True)
    assert result["pairs"] > 50 and result["refused"] > 0  # real contention
    assert result["violations"] == 0
    stored = workers.one("read", {"targets": specs, "timezone": TZ, "now": result["now"].isoformat()})
    assert all(values == (0, 0, 0, 0) for values in stored.values())


def test_redis_holders_never_exceed_the_limit_and_all_is_given_back(redis_workers, redis_client):
    workers, prefix = redis_workers
    specs = [spec(**lims) for lims in CYCLE]
    result = hold_and_release(workers, specs, atomic=False)
    assert result["pairs"] > 50 and result["refused"] > 0
    assert result["violations"] == 0
    cores = [bench.core_target(s) for s in specs]
    stored = RedisCounters(redis_client, prefix).read(cores, {c.id: TZ for c in cores}, result["now"])
    assert all((c.active, c.hour, c.day, c.month) == (0, 0, 0, 0) for c in stored.values())
