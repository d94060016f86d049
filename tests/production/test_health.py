"""``/readyz`` in this process: every check named, a failing or hanging backend answered within the timeout."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import OperationalError

from callbroker.ops import health

pytestmark = pytest.mark.django_db


def test_ready_when_the_database_answers(client, settings):
    settings.REDIS_URL = ""
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["checks"].keys() == {"database"}  # no Redis configured: not checked
    assert response.json()["checks"]["database"]["ok"] is True


def test_an_unreachable_database_is_named(client, settings, monkeypatch):
    settings.REDIS_URL = ""

    def refused():
        raise OperationalError('connection to server at "10.0.0.5", port 5432 failed: Connection refused')

    monkeypatch.setattr(health, "check_database", refused)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail" and body["checks"]["database"]["ok"] is False
    assert body["checks"]["database"]["error"].startswith("OperationalError: connection to server")


def test_a_hanging_check_fails_at_the_timeout_not_later(client, settings, monkeypatch):
    settings.REDIS_URL = "redis://10.255.255.1:6379/0"  # configured: checked
    settings.READYZ_TIMEOUT_MS = 300
    release = threading.Event()
    monkeypatch.setattr(health, "check_redis", lambda: release.wait(10))
    started = time.monotonic()
    response = client.get("/readyz")
    elapsed = time.monotonic() - started
    release.set()
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] == {"ok": False, "ms": 300.0, "error": "timed out"}
    assert response.json()["checks"]["database"]["ok"] is True
    assert elapsed < 2


def test_healthz_touches_nothing(client, monkeypatch):
    monkeypatch.setattr(health, "check_database", lambda: pytest.fail("liveness must not touch the database"))
    assert client.get("/healthz").content == b"ok"


def test_a_server_on_a_database_nobody_migrated_is_not_ready_until_it_is(tmp_path):
    """The restart loop of deploy.md waits for /readyz: a node on an unmigrated database answered every
    caller with the apology while /readyz said 200."""
    import os
    import subprocess
    import sys

    import httpx

    from callbroker.ops.server import start_server, stop_server
    from tests.services import free_port

    env = {"CALLBROKER_DATA_DIR": str(tmp_path), "CALLBROKER_ENV": "development", "DATABASE_URL": "",
           "REDIS_URL": ""}
    port = free_port()
    server = start_server("127.0.0.1", port, 1, env=env, log_path=tmp_path / "server.log")
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert response.status_code == 503
        assert "migrations not applied" in response.json()["checks"]["database"]["error"]
        subprocess.run([sys.executable, "-m", "callbroker.cli", "migrate", "--verbosity", "0"],
                       env={**os.environ, **env}, check=True)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
    finally:
        stop_server(server)


def test_a_database_file_deleted_or_replaced_under_the_server_is_not_ready_and_none_is_made(tmp_path):
    """Formerly /readyz said 200 once it had seen the database migrated, whatever happened to the file
    after: deleted, the workers wrote on into the unlinked file (lost at the next start) while the probe's
    own connection made a new empty one in its place."""
    import os
    import shutil
    import subprocess
    import sys

    import httpx

    from callbroker.ops.server import start_server, stop_server
    from tests.services import free_port

    env = {"CALLBROKER_DATA_DIR": str(tmp_path), "CALLBROKER_ENV": "development", "DATABASE_URL": "",
           "REDIS_URL": ""}
    subprocess.run([sys.executable, "-m", "callbroker.cli", "migrate", "--verbosity", "0"],
                   env={**os.environ, **env}, check=True)
    database, aside = tmp_path / "callbroker.sqlite3", tmp_path / "aside.sqlite3"
    port = free_port()
    server = start_server("127.0.0.1", port, 1, env=env, log_path=tmp_path / "server.log")

    def ready() -> tuple[int, str]:
        response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        return response.status_code, response.json()["checks"]["database"].get("error", "")

    try:
        assert ready() == (200, "")
        database.rename(aside)  # deleted, or moved away
        status, error = ready()
        assert status == 503 and f"the database file {database} is gone" in error
        assert not database.exists(), "the probe made a database file"
        aside.rename(database)  # put back: the very file the server has open
        assert ready() == (200, "")
        shutil.copyfile(database, aside)
        aside.replace(database)  # a copy in its place (a restored backup): not the file the server writes to
        status, error = ready()
        assert status == 503 and "was replaced after the server opened it" in error
    finally:
        stop_server(server)


def test_the_probe_never_makes_a_database_file(tmp_path):
    missing = tmp_path / "callbroker.sqlite3"
    with pytest.raises(RuntimeError, match="no database file at"):
        health.check_sqlite_file(str(missing))
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_under_the_database_is_not_ready(tmp_path, monkeypatch):
    import os
    import sqlite3

    database = tmp_path / "callbroker.sqlite3"
    sqlite3.connect(database).close()
    real = os.statvfs(tmp_path)

    class Full:
        f_bavail = f_bfree = 10
        f_frsize = real.f_frsize

    monkeypatch.setattr(os, "statvfs", lambda path: Full)
    with pytest.raises(RuntimeError, match=r"the disk holding .* is full \(\d+ KiB free\): the database"):
        health.check_sqlite_file(str(database))
