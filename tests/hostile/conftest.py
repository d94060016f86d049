"""Fixtures of the hostile-input suite, and its figures at the end of the run.

- ``carrier_world``: the e2e network (tests/e2e/network.yaml) in the pytest-django test database, a few
  calls placed by genuine signed webhooks, and a test client that returns 500s instead of raising.
- ``hostile_server``: the real server (gunicorn, started as ``callbroker serve`` starts it) on a fresh
  database — SQLite, then PostgreSQL like the e2e suite — trusting ``X-Forwarded-For`` from loopback so
  each test can speak as its own client address.

At the end of the run, :func:`pytest_terminal_summary` prints the figures (inputs tried, violations
found, known issues) and writes them as JSON to the pytest cache, ``.pytest_cache/v/callbroker/
hostile-input.json`` (stable), and to the run's basetemp (``$TMPDIR/pytest-of-$USER/pytest-N/``);
``CALLBROKER_HOSTILE_REPORT`` names another path instead. They also go to ``tests.figures`` (section
``hostile_input``) for the reliability report.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.test import Client

from tests.hostile import ledger
from tests.hostile.strategies import E2E_NETWORK, SEEDED_CALLS, TOKEN, Target, sign, signing_carrier_settings

_basetemp: Path | None = None


@dataclass
class World:
    client: Client
    target: Target


def post_signed(client: Client, target: Target, path: str, params: dict[str, str], query: str = "",
                **extra) -> object:
    url = target.base + path + (f"?{query}" if query else "")
    return client.post(path + (f"?{query}" if query else ""), data=urlencode(params),
                       content_type="application/x-www-form-urlencoded",
                       headers={"X-Twilio-Signature": sign(TOKEN, url, params)}, **extra)


def inbound(sid: str, to: str, **extra: str) -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": "AC" + "7" * 32, "From": "+15125559876", "To": to, "CallStatus": "ringing",
            "Direction": "inbound", "ApiVersion": "2010-04-01", "Caller": "+15125559876", "Called": to, **extra}


@pytest.fixture
def carrier_world(db, settings, tmp_path, monkeypatch):
    from callbroker.calls import replay
    from callbroker.calls.models import Call
    from callbroker.network.loader import load_network
    from callbroker.network.snapshot import reset_snapshot
    from callbroker.ops import limits

    signing_carrier_settings(settings, tmp_path)
    # No background replayer: a trace the Fallback URL spools stays where the checks compare it (the
    # replay itself has its own tests: tests/carriers/test_fallback_url.py).
    monkeypatch.setattr(replay, "ensure_running", lambda: None)
    monkeypatch.setattr(replay, "background_pass", lambda sweep_at: (False, sweep_at))
    reset_snapshot()
    limits.reset()
    load_network(E2E_NETWORK)
    client = Client(raise_request_exception=False)
    target = Target("http", "testserver", settings.CALLBROKER_MAX_BODY_BYTES,
                    settings.CALLBROKER_CARRIER_MAX_FIELDS)
    for sid, (to, extra) in SEEDED_CALLS.items():
        response = post_signed(client, target, "/carriers/twilio/voice", inbound(sid, to, **extra))
        assert response.status_code == 200, (sid, response.status_code, response.content[:200])
    assert Call.objects.count() == len(SEEDED_CALLS), "the seeded calls were not all stored"
    yield World(client, target)
    reset_snapshot()
    limits.reset()


@pytest.fixture(scope="session", params=("sqlite", "postgres"))
def hostile_server(request, tmp_path_factory):
    """The real server on a fresh database of each backend in turn (skips PostgreSQL outside CI if absent)."""
    from callbroker.ops.server import start_server, stop_server
    from tests.e2e.conftest import Server, free_port

    backend = request.param
    data_dir = tmp_path_factory.mktemp(f"hostile-{backend}")
    env = {
        **os.environ,
        "CALLBROKER_DATA_DIR": str(data_dir),
        "TWILIO_AUTH_TOKEN": TOKEN,
        "CALLBROKER_LOG_LEVEL": "INFO",
        "CALLBROKER_LOG_FORMAT": "plain",
        "CALLBROKER_FALLBACK_NUMBER": "+15125550999",
        # Each test speaks as its own client (X-Forwarded-For), so that one test's flood can't throttle another.
        "CALLBROKER_RATE_TRUSTED_PROXIES": "127.0.0.1",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "CALLBROKER_PUBLIC_URL", "TWILIO_AUTH_TOKENS_EXTRA"):
        env.pop(name, None)
    if backend == "postgres":
        postgres = request.getfixturevalue("postgres_server")  # skips (fails in CI) when not installed
        env["DATABASE_URL"] = postgres.create_database("callbroker_hostile")
    srv = Server("", env)
    srv.cli("migrate", "--verbosity", "0")
    srv.cli("network", "load", str(E2E_NETWORK))
    port = free_port()
    proc = start_server("127.0.0.1", port, 2, env=dict(env), log_path=data_dir / "server.log")
    srv.base_url = f"http://127.0.0.1:{port}"
    srv.host, srv.port = "127.0.0.1", port
    srv.log_path = data_dir / "server.log"
    srv.data_dir = data_dir
    srv.backend = backend
    yield srv
    stop_server(proc)


@pytest.fixture(scope="session", autouse=True)
def _hostile_report_dir(tmp_path_factory):
    global _basetemp
    _basetemp = tmp_path_factory.getbasetemp()


def report_paths(config) -> list[Path]:
    """Where the figures are written: ``CALLBROKER_HOSTILE_REPORT`` if set; else the pytest cache
    (``.pytest_cache/v/callbroker/hostile-input.json``: stable, whatever else runs) and this run's basetemp."""
    given = os.environ.get("CALLBROKER_HOSTILE_REPORT", "")
    if given:
        return [Path(given)]
    paths = [Path(config.rootpath) / ".pytest_cache" / "v" / "callbroker" / ledger.REPORT_NAME]
    if _basetemp is not None:
        paths.append(_basetemp / ledger.REPORT_NAME)
    return paths


@pytest.hookimpl(tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    data = ledger.LEDGER.as_json()
    if not data["inputs_tried"] and not data["known_issues"]:
        return
    reporter = terminalreporter
    reporter.section("hostile input")
    by_channel = ", ".join(f"{k} {v}" for k, v in sorted(data["inputs_by_channel"].items()))
    reporter.write_line(f"inputs tried: {data['inputs_tried']} ({by_channel})")
    reporter.write_line(f"violations found: {data['violations_found']}")
    for v in data["violations"]:
        reporter.write_line(f"  - {v['endpoint']}: {v['invariant']} ({v['where'] or 'see report'})")
    reporter.write_line(f"known open issues (strict xfail): {data['known_issues']}")
    for k in data["known_issue_details"]:
        reporter.write_line(f"  - {k['name']}: {k.get('summary', '')}")
    for path in report_paths(config):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, default=str))
        reporter.write_line(f"(written to {path})")
    try:
        from tests import figures
    except ImportError:  # the shared figures module is optional
        return
    figures.record("hostile_input", {"inputs_tried": data["inputs_tried"], "violations_found": data["violations_found"],
                                     "known_issues": data["known_issues"],
                                     **{f"inputs_{k}": v for k, v in data["inputs_by_channel"].items()}})
