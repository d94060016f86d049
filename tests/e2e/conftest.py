"""End-to-end fixtures: a real gunicorn server on a fresh database, driven by the carrier emulator.

The whole suite runs twice: on the embedded SQLite default and on PostgreSQL (``DATABASE_URL``, a fresh
database on the private server of ``tests/services.py``; skipped outside CI when PostgreSQL is not
installed). The server is started exactly as ``callbroker serve`` starts it. Assertions read results
back through the public CLI (``callbroker calls show --json``), never through the server's internals.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from callbroker.ops.server import start_server, stop_server

TOKEN = "e2e-test-auth-token"
#: The Telnyx account's Ed25519 private key (its 32-byte seed, base64) the emulator plays Telnyx with; the server
#: takes its public key (``TELNYX_PUBLIC_KEY``), so every other test's Twilio webhooks pass with a key set.
TELNYX_SEED = "ZTJlLXRlbG55eC1hY2NvdW50LXByaXZhdGUta2V5ISE="
TELNYX_PUBLIC_KEY = "46v+HYmH8vtcQ5GN5hZ3yrJdepVyL6l1CQsodRPIDUY="
HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A running callbroker server and the CLI pointed at its database."""

    def __init__(self, base_url: str, env: dict[str, str]) -> None:
        self.base_url = base_url
        self.env = env
        self.backend = "postgres" if env.get("DATABASE_URL", "").startswith("postgres") else "sqlite"
        self.log_path: Path | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "callbroker.cli", *args], env=self.env,
                                capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"callbroker {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def call(self, call_sid: str) -> dict:
        return json.loads(self.cli("calls", "show", call_sid, "--json").stdout)

    def calls(self, limit: int = 10000) -> list[dict]:
        return json.loads(self.cli("calls", "list", "--json", "--limit", str(limit)).stdout)


BACKENDS = ("sqlite", "postgres")


@pytest.fixture(scope="session", params=BACKENDS)
def server(request, tmp_path_factory) -> Server:
    """The server on a fresh database of each backend in turn (every e2e test runs on both)."""
    backend = request.param
    data_dir = tmp_path_factory.mktemp(f"e2e-data-{backend}")
    env = {
        **os.environ,
        "CALLBROKER_DATA_DIR": str(data_dir),
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TELNYX_PUBLIC_KEY": TELNYX_PUBLIC_KEY,
        "CALLBROKER_LOG_LEVEL": "INFO",
        "CALLBROKER_FALLBACK_NUMBER": "+15125550999",
    }
    env["DATABASE_URL"] = ""  # empty, not absent: start_server merges os.environ back in
    if backend == "postgres":
        postgres = request.getfixturevalue("postgres_server")  # skips (fails in CI) when not installed
        env["DATABASE_URL"] = postgres.create_database("callbroker_e2e")
    srv = Server("", env)
    srv.cli("migrate", "--verbosity", "0")
    srv.cli("network", "load", str(HERE / "network.yaml"))
    port = free_port()
    proc = start_server("127.0.0.1", port, 2, env=dict(env), log_path=data_dir / "server.log")
    srv.base_url = f"http://127.0.0.1:{port}"
    srv.log_path = data_dir / "server.log"
    yield srv
    stop_server(proc)


@pytest.fixture()
def carrier(server):
    from callbroker.sim.emulator import Carrier

    with Carrier(server.base_url, TOKEN, seed=7) as c:
        yield c
