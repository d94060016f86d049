"""deploy/env.example and docs/deploy.md name every variable the code reads, so the deployment docs
can't drift from settings.py."""

from __future__ import annotations

import re

import pytest

from tests.deploy.conftest import (
    DEPLOY,
    ROOT,
    SYSTEMD,
    env_file_entries,
    settings_env_names,
)

ENV_EXAMPLE = DEPLOY / "env.example"
SETTINGS_NAMES = sorted(settings_env_names())


def test_settings_scanner_finds_the_variables():
    # Guards the AST scan itself: if these stop being found, the comparison below would prove nothing.
    expected = {"DATABASE_URL", "TWILIO_AUTH_TOKEN", "CALLBROKER_SECRET_KEY", "CALLBROKER_DATA_DIR"}
    assert expected <= set(SETTINGS_NAMES)


@pytest.mark.parametrize("name", SETTINGS_NAMES)
def test_env_example_names_every_variable_settings_reads(name):
    assert name in env_file_entries(ENV_EXAMPLE), f"settings.py reads {name}: add it to deploy/env.example"


@pytest.mark.parametrize("name", SETTINGS_NAMES)
def test_the_deploy_doc_names_every_variable_settings_reads(name):
    doc = (ROOT / "docs" / "deploy.md").read_text()
    assert f"`{name}`" in doc, f"settings.py reads {name}: add it to the table in docs/deploy.md"


def test_env_example_names_only_variables_something_reads():
    code = "\n".join(p.read_text() for p in (ROOT / "src" / "callbroker").rglob("*.py"))
    units = "\n".join(p.read_text() for p in SYSTEMD.iterdir())
    for name in env_file_entries(ENV_EXAMPLE):
        read = f'"{name}"' in code or f"'{name}'" in code or name in units
        assert read, f"deploy/env.example names {name}, which nothing reads (a typo?)"


def test_env_example_is_a_valid_environment_file():
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*=[^\s\"']*", line), f"line {number}: {line!r}"


def test_env_example_sets_the_production_contract():
    entries = {name: value for name, (value, active) in env_file_entries(ENV_EXAMPLE).items() if active}
    assert entries["CALLBROKER_ENV"] == "production"
    assert entries["CALLBROKER_LOG_FORMAT"] == "json"
    assert entries["CALLBROKER_PUBLIC_URL"].startswith("https://")
    assert re.match(r"postgres(ql)?://", entries["DATABASE_URL"])
    assert entries["REDIS_URL"].startswith("redis://")
    for name in ("CALLBROKER_SECRET_KEY", "TWILIO_AUTH_TOKEN", "CALLBROKER_ALLOWED_HOSTS",
                 "TWILIO_AUTH_TOKENS_EXTRA", "CALLBROKER_FALLBACK_NUMBER", "CALLBROKER_RATE_TRUSTED_PROXIES"):
        assert name in entries, name


@pytest.mark.parametrize("name", ["CALLBROKER_DATA_DIR", "CALLBROKER_NODE"])
def test_per_node_variables_are_left_to_the_units(name):
    # EnvironmentFile= overrides Environment=: an active value would give every instance the same spool
    # (or the same name in the logs).
    _value, active = env_file_entries(ENV_EXAMPLE)[name]
    assert not active
    assert f"Environment={name}=" in (SYSTEMD / "callbroker@.service").read_text()


def test_a_postgres_url_gives_up_on_a_silent_database_in_seconds():
    """libpq's defaults wait for the kernel (minutes to connect); a webhook must reach degraded mode well
    inside the carrier's 15 s. The URL's own values win."""
    from pathlib import Path

    from callbroker.settings import database_from_url

    db = database_from_url("postgres://cb:pw@db.example:5432/callbroker?sslmode=require", Path("/tmp"))
    assert db["OPTIONS"] == {"connect_timeout": "3", "tcp_user_timeout": "5000", "sslmode": "require"}
    db = database_from_url("postgres://cb:pw@db/callbroker?connect_timeout=10", Path("/tmp"))
    assert db["OPTIONS"]["connect_timeout"] == "10"


def test_the_web_servers_sessions_give_up_on_a_lock_or_a_statement_in_seconds():
    """``ops/gunicorn_conf.py`` sets CALLBROKER_DB_LOCK_TIMEOUT_MS / _STATEMENT_TIMEOUT_MS for the server's
    processes; the settings pass them to PostgreSQL (tests/postgres/test_locked_table.py: the effect)."""
    from pathlib import Path

    from callbroker.settings import database_from_url

    db = database_from_url("postgres://cb:pw@db/callbroker", Path("/tmp"), lock_timeout_ms=2000,
                           statement_timeout_ms=8000)
    assert db["OPTIONS"]["options"] == "-c lock_timeout=2000 -c statement_timeout=8000"
    assert "options" not in database_from_url("postgres://cb:pw@db/callbroker", Path("/tmp"))["OPTIONS"]
    given = database_from_url("postgres://cb:pw@db/callbroker?options=-c%20search_path%3Dcb", Path("/tmp"),
                              lock_timeout_ms=2000)
    assert given["OPTIONS"]["options"] == "-c search_path=cb"  # the URL's own value wins
    # SQLite: the same limit is the busy timeout for the write lock (tests/calls/test_locked_sqlite.py: the effect)
    for url in ("", "sqlite:////tmp/cb.sqlite3"):
        server = database_from_url(url, Path("/tmp"), lock_timeout_ms=2000)["OPTIONS"]
        command = database_from_url(url, Path("/tmp"))["OPTIONS"]
        assert server["timeout"] == 2 and "PRAGMA busy_timeout=2000;" in server["init_command"]
        assert command["timeout"] == 20 and "PRAGMA busy_timeout=20000;" in command["init_command"]


def test_a_database_that_accepts_and_never_answers_fails_the_connection():
    """A listener that takes the TCP connection and never says a word (a host hung under load): the
    connection fails with the 3 s default instead of waiting for good."""
    import socket
    import threading
    from pathlib import Path

    import psycopg

    from callbroker.settings import database_from_url

    listener = socket.create_server(("127.0.0.1", 0))
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()
    db = database_from_url(f"postgres://cb:pw@127.0.0.1:{listener.getsockname()[1]}/callbroker", Path("/tmp"))
    outcome: list[BaseException] = []

    def connect() -> None:
        try:
            psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"],
                            dbname=db["NAME"], **db["OPTIONS"]).close()
        except psycopg.OperationalError as exc:
            outcome.append(exc)

    attempt = threading.Thread(target=connect, daemon=True)
    attempt.start()
    attempt.join(30)  # far beyond the 3 s: only a connection that waits for good is still there
    listener.close()
    assert not attempt.is_alive(), "the connection is still waiting for the silent database"
    assert outcome and "timeout" in str(outcome[0]).lower()
