"""PostgreSQL fixtures: migrated databases on the private server (tests/services.py), the CLI pointed at
them, plain SQL through psycopg, probes that run code inside Django there (tests/postgres/probe.py),
and a real server on PostgreSQL.

The test process's own Django is configured for SQLite, so everything that goes through Django on
PostgreSQL runs in a subprocess, exactly as an operator would run it.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from callbroker.ops.server import start_server, stop_server
from tests.e2e.conftest import TOKEN, Server, free_port

REPO = Path(__file__).resolve().parents[2]
_names = itertools.count(1)


@dataclass
class PgDatabase:
    """A migrated PostgreSQL database and ways to look at it."""

    url: str
    env: dict[str, str] = field(repr=False)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "callbroker.cli", *args], env=self.env, cwd=REPO,
                                capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"callbroker {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def sql(self, query: str, params: tuple | list = ()) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("SET TIME ZONE 'UTC'")  # as Django's connections: time stamps read in UTC
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def value(self, query: str, params: tuple | list = ()):
        rows = self.sql(query, params)
        return rows[0][0] if rows else None

    def probe(self, action: str, **arguments):
        result = subprocess.run([sys.executable, "-m", "tests.postgres.probe", action, json.dumps(arguments)],
                                env=self.env, cwd=REPO, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise AssertionError(f"probe {action} failed:\n{result.stdout}\n{result.stderr}")
        return json.loads(result.stdout.rpartition("@@probe@@")[2])

    def partition_of(self, call_sid: str) -> str:
        return self.value("SELECT tableoid::regclass::text FROM calls_call WHERE call_sid = %s", [call_sid])

    def commands(self, *argvs: list[str] | tuple[str, ...]) -> list[dict]:
        """Several commands in one process: [{"stdout", "stderr", "code"}, …] (see probe.commands)."""
        return self.probe("commands", argvs=[list(a) for a in argvs])


def new_database(postgres_server, tmp_path_factory, label: str, *, template: str | None = None) -> PgDatabase:
    """An empty database, or a copy of ``template`` (instant: no ``migrate`` to run again)."""
    name = f"pgt_{label}_{next(_names)}"
    if template is None:
        url = postgres_server.create_database(name)
    else:
        postgres_server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        postgres_server.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        url = postgres_server.database_url(name)
    env = {**os.environ, "DATABASE_URL": url, "CALLBROKER_DATA_DIR": str(tmp_path_factory.mktemp(name)),
           "TWILIO_AUTH_TOKEN": TOKEN, "CALLBROKER_LOG_LEVEL": "WARNING",
           "CALLBROKER_FALLBACK_NUMBER": "+15125550999", "DJANGO_SETTINGS_MODULE": "callbroker.settings"}
    return PgDatabase(url, env)


@pytest.fixture(scope="session")
def pg_template(postgres_server, tmp_path_factory) -> str:
    """The name of a database migrated with ``callbroker migrate`` and the e2e network loaded: the
    databases of the tests are copies of it."""
    db = new_database(postgres_server, tmp_path_factory, "template")
    db.probe("setup", network=True)
    return db.url.rpartition("/")[2]


@pytest.fixture(scope="session")
def pg(postgres_server, tmp_path_factory, pg_template) -> PgDatabase:
    """One migrated database with the e2e network, shared by the read-mostly tests."""
    return new_database(postgres_server, tmp_path_factory, "shared", template=pg_template)


@pytest.fixture()
def fresh_pg(postgres_server, tmp_path_factory, pg_template, request) -> PgDatabase:
    """A database of its own (migrated, e2e network) for a test that changes the schema or fills tables."""
    label = "".join(ch for ch in request.node.name.lower() if ch.isalnum() or ch == "_")[:24]
    return new_database(postgres_server, tmp_path_factory, label, template=pg_template)


@pytest.fixture(scope="module")
def pg_server(pg: PgDatabase):
    """The real server (gunicorn, 4 workers: real concurrency) on the shared PostgreSQL database."""
    data_dir = Path(pg.env["CALLBROKER_DATA_DIR"])
    port = free_port()
    env = {**pg.env, "CALLBROKER_LOG_LEVEL": "INFO"}
    proc = start_server("127.0.0.1", port, 4, env=env, log_path=data_dir / "server.log")
    srv = Server(f"http://127.0.0.1:{port}", env)
    srv.log_path = data_dir / "server.log"
    yield srv
    stop_server(proc)
