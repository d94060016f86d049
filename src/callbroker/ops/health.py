"""Health endpoints for load balancers and orchestrators.

- ``GET /healthz`` — liveness: the process answers HTTP. Touches nothing else, so a database outage
  never gets healthy workers restarted.
- ``GET /readyz`` — readiness: 200 only when the database and, when ``REDIS_URL`` is set, Redis each
  answer within ``CALLBROKER_READYZ_TIMEOUT_MS``; 503 otherwise. The JSON body names every check::

      {"status": "fail", "checks": {"database": {"ok": true, "ms": 1.4},
                                    "redis": {"ok": false, "ms": 3.0, "error": "ConnectionError: …"}}}

On the embedded SQLite the database check also fails when the file was deleted or replaced under the
running server (its connections, kept open, still write to the old file: lost at the next start), and
when the disk holding it has less than 1 MiB free (every write refused). It never creates the file.

Checks run in parallel in short-lived threads, so a hanging backend costs the timeout, not the TCP
timeout; the database check opens (and closes) its own connection in its thread.
"""

from __future__ import annotations

import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable
from urllib.parse import quote

from django.conf import settings
from django.db import connections
from django.http import HttpResponse, JsonResponse


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


_migrated = False  # once every migration this code knows was found applied, it stays so
_opened: tuple[int, int] | None = None  # (device, inode) of the SQLite file this process opened first

#: Below this many bytes free on the disk holding the SQLite file, the database counts as refusing writes.
DISK_FULL_BELOW_BYTES = 1 << 20


def remember_database_file(sender, connection, **kwargs) -> None:
    """``connection_created``: note which file this process's SQLite connections have open.

    The connections stay open for the life of a worker (``CONN_MAX_AGE`` None): a database file deleted or
    replaced under a running server is not the one it writes to. (In a worker forked from a master that
    had opened the database, the master's note, about the same file.)
    """
    global _opened
    if _opened is not None or connection.vendor != "sqlite" or connection.is_in_memory_db():
        return
    try:
        found = os.stat(connection.settings_dict["NAME"])
    except OSError:
        return
    _opened = (found.st_dev, found.st_ino)


def check_database() -> None:
    """The database answers, and holds every migration this code knows: a node started on a database
    nobody migrated would answer every caller with the apology (a missing table is an outage to it).
    On SQLite, also: the file is still the one the server has open, and its disk has room to write."""
    global _migrated
    connection = connections["default"]  # this (checker) thread's own connection
    if connection.vendor == "sqlite" and not connection.is_in_memory_db():
        check_sqlite_file(str(connection.settings_dict["NAME"]))
        if _migrated:
            return  # what Django's connection would tell (it answers), the file's own connection just did
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


def check_sqlite_file(path: str) -> None:
    """The SQLite file at ``path`` exists, is the one this process opened, has room to grow, and reads.

    Opened with ``mode=rw``: a probe never creates a database (a plain connection to a missing file makes
    an empty one, which the next start would take for a database nobody migrated).
    """
    try:
        found = os.stat(path)
    except FileNotFoundError:
        if _opened is None:
            raise RuntimeError(f"there is no database file at {path}; run: callbroker migrate") from None
        raise RuntimeError(f"the database file {path} is gone (deleted or moved) while the server has it "
                           "open: what it writes now is lost when it stops; put the file back, or restart"
                           ) from None
    if _opened is not None and (found.st_dev, found.st_ino) != _opened:
        raise RuntimeError(f"the database file {path} was replaced after the server opened it: the server "
                           "still writes to the old one; restart it to use the new file")
    disk = os.statvfs(os.path.dirname(os.path.abspath(path)))
    free = (disk.f_bfree if os.geteuid() == 0 else disk.f_bavail) * disk.f_frsize  # root may use the reserve
    if free < DISK_FULL_BELOW_BYTES:
        raise RuntimeError(f"the disk holding {path} is full ({free // 1024} KiB free): the database refuses "
                           "writes; calls are routed from memory and their events kept in memory until there "
                           "is room")
    probe = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=rw", uri=True, timeout=1)
    try:
        probe.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the file's header and schema
    finally:
        probe.close()


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
