"""Fixtures shared by every test package: private PostgreSQL and Redis servers (see tests/services.py)."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from django.urls import reverse

from tests import services


def pytest_configure(config):
    """The data directory's ``static`` folder exists, as ``callbroker`` makes it before any command:
    in-process tests on a fresh clone would otherwise get WhiteNoise's "No directory" warning."""
    from django.conf import settings

    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)


@pytest.fixture(autouse=True)
def _data_dir_of_its_own(settings, tmp_path_factory, monkeypatch):
    """Every in-process test keeps its data directory (spool, network snapshot) apart, never the checkout's
    ``var`` that ``make run`` serves, and starts no background spool replayer.

    A webhook view starts the process's replayer thread (``replay.ensure_running``); in the test process
    it outlived its test and replayed a spooled call every second into whatever database the next test
    had (or failed, logging a traceback: CPython 3.11.7 formatting a traceback in one thread while another
    parses source, as pytest's assertion rewriting does on an import, raises ``SystemError: AST
    constructor recursion depth mismatch`` in the other). A test of the replay calls it itself.

    The calls the sweep failed to close are forgotten, as by a new process: a CallSid another test failed
    to close would otherwise be logged as failing again, without its traceback.
    """
    from callbroker.calls import replay, services as call_services

    settings.DATA_DIR = tmp_path_factory.mktemp("data")
    monkeypatch.setattr(replay, "ensure_running", lambda: None)
    monkeypatch.setattr(call_services, "_failed_to_close", set())


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A private PostgreSQL on loopback for the whole session (skipped outside CI when not installed)."""
    # Not under pytest's tmp dir: that is private to root and PostgreSQL runs as 'postgres'.
    base = Path(tempfile.mkdtemp(prefix="callbroker-test-pg-"))
    server = services.start_postgres(base)
    if server is None:
        services.missing("PostgreSQL")
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A private Redis on loopback for the whole session (skipped outside CI when not installed)."""
    server = services.start_redis(tmp_path_factory.mktemp("redis"))
    if server is None:
        services.missing("Redis")
    yield server
    server.stop()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print the reliability figures (calls, faults survived, inputs tried, violations found)."""
    from tests import figures

    data = figures.all_figures()
    if not data:
        return
    terminalreporter.section("reliability figures")
    for section, values in sorted(data.items()):
        line = ", ".join(f"{k}={v}" for k, v in sorted(values.items()))
        terminalreporter.write_line(f"{section}: {line}")
    path = figures.write()
    if path:
        terminalreporter.write_line(f"(written to {path})")


@pytest.fixture
def staff(client, django_user_model, settings):
    """A superuser logged in through the admin login form (the admin tests of every area)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, tests only
    settings.CALLBROKER_RATE_ADMIN_LOGIN_BURST = 10_000  # every test logs in from 127.0.0.1
    settings.CALLBROKER_RATE_ADMIN_LOGIN_PER_MIN = 10_000
    django_user_model.objects.create_superuser("ops", "ops@example.com", "pw-for-tests")
    response = client.post(reverse("admin:login"), {"username": "ops", "password": "pw-for-tests",
                                                    "next": reverse("admin:index")})
    assert response.status_code == 302 and response.url == reverse("admin:index")
    return client


@pytest.fixture
def few_sql_variables(db, monkeypatch):
    """The database takes at most 100 values per statement (SQLite as built takes 32,766, PostgreSQL
    65,535): a network with more targets or tracking numbers than that must still load, prune and count."""
    from django.db import connection

    assert connection.vendor == "sqlite"
    connection.ensure_connection()
    raw = connection.connection
    was = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)
    monkeypatch.setattr(connection.features, "max_query_params", 100)  # what Django batches its own by
    yield
    raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, was)
