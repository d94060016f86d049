"""Health endpoints for load balancers and orchestrators.

- ``GET /healthz`` — liveness: the process answers HTTP. Touches nothing else, so a database outage
  never gets healthy workers restarted.
- ``GET /readyz`` — readiness: 200 only when the database and, when ``REDIS_URL`` is set, Redis each
  answer within ``CALLBROKER_READYZ_TIMEOUT_MS``; 503 otherwise. The JSON body names every check::

      {"status": "fail", "checks": {"database": {"ok": true, "ms": 1.4},
                                    "redis": {"ok": false, "ms": 3.0, "error": "ConnectionError: …"}}}

Checks run in parallel in short-lived threads, so a hanging backend costs the timeout, not the TCP
timeout; the database check opens (and closes) its own connection in its thread.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable

from django.conf import settings
from django.db import connections
from django.http import HttpResponse, JsonResponse


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


_migrated = False  # once every migration this code knows was found applied, it stays so


def check_database() -> None:
    """The database answers, and holds every migration this code knows: a node started on a database
    nobody migrated would answer every caller with the apology (a missing table is an outage to it)."""
    global _migrated
    connection = connections["default"]  # this (checker) thread's own connection
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        if not _migrated:
            from django.db.migrations.executor import MigrationExecutor

            executor = MigrationExecutor(connection)
            missing = executor.migration_plan(executor.loader.graph.leaf_nodes())
            if missing:
                raise RuntimeError(f"{len(missing)} migrations not applied (first: {missing[0][0]}); "
                                   "run: callbroker migrate")
            _migrated = True
    finally:
        connection.close()


def check_redis() -> None:
    from callbroker.network import live

    client = live.redis_client()
    if not client.ping():
        raise RuntimeError("PING was not answered with PONG")


def checks() -> dict[str, Callable[[], None]]:
    """The checks that apply to this configuration, by name."""
    found: dict[str, Callable[[], None]] = {"database": check_database}
    if getattr(settings, "REDIS_URL", ""):
        found["redis"] = check_redis
    return found


def _timed(check: Callable[[], None]) -> dict:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:  # noqa: BLE001 - any failure is "not ready"
        return {"ok": False, "ms": _ms(started), "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "ms": _ms(started)}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def run_checks(timeout_s: float) -> dict[str, dict]:
    todo = checks()
    pool = ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="readyz")
    try:
        futures = {name: pool.submit(_timed, check) for name, check in todo.items()}
        wait(futures.values(), timeout=timeout_s)
        return {name: (future.result() if future.done()
                       else {"ok": False, "ms": round(timeout_s * 1000, 1), "error": "timed out"})
                for name, future in futures.items()}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a hung check finishes (or not) on its own


def readyz(request):
    results = run_checks(getattr(settings, "READYZ_TIMEOUT_MS", 1000) / 1000)
    ok = all(r["ok"] for r in results.values())
    return JsonResponse({"status": "ok" if ok else "fail", "checks": results}, status=200 if ok else 503)
