"""End-to-end fixtures: a real gunicorn server on a fresh SQLite database, driven by the carrier emulator.

The server is started exactly as ``callbroker serve`` starts it. Assertions read results back through
the public CLI (``callbroker calls show --json``), never through the server's internals.
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


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    data_dir = tmp_path_factory.mktemp("e2e-data")
    env = {
        **os.environ,
        "CALLBROKER_DATA_DIR": str(data_dir),
        "TWILIO_AUTH_TOKEN": TOKEN,
        "CALLBROKER_LOG_LEVEL": "INFO",
        "CALLBROKER_FALLBACK_NUMBER": "+15125550999",
    }
    env.pop("DATABASE_URL", None)
    srv = Server("", env)
    srv.cli("migrate", "--verbosity", "0")
    srv.cli("network", "load", str(HERE / "network.yaml"))
    port = free_port()
    env_for_server = {k: v for k, v in env.items()}
    proc = start_server("127.0.0.1", port, 2, env=env_for_server, log_path=data_dir / "server.log")
    srv.base_url = f"http://127.0.0.1:{port}"
    srv.log_path = data_dir / "server.log"
    yield srv
    stop_server(proc)


@pytest.fixture()
def carrier(server):
    from callbroker.sim.emulator import Carrier

    with Carrier(server.base_url, TOKEN, seed=7) as c:
        yield c
