"""Reliability fixtures: app nodes (real gunicorn servers) on a private PostgreSQL, driven by the emulator."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from callbroker.ops.server import start_server, stop_server
from tests.e2e.conftest import HERE as E2E_DIR
from tests.e2e.conftest import TOKEN, Server, free_port


DEMO = Path(__file__).resolve().parents[2] / "src" / "callbroker" / "network" / "demo" / "demo-network.yaml"


class Node:
    """One app node: its own data directory (spool, snapshot, logs) and gunicorn process."""

    def __init__(self, name: str, env: dict[str, str], data_dir: Path, workers: int = 2) -> None:
        self.name, self.data_dir, self.workers = name, data_dir, workers
        self.env = {**env, "CALLBROKER_DATA_DIR": str(data_dir)}
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> None:
        self.proc = start_server("127.0.0.1", self.port, self.workers, env=self.env,
                                 log_path=self.data_dir / "server.log")

    def stop(self) -> None:
        if self.proc:
            stop_server(self.proc)

    def kill(self) -> None:
        """kill -9 the whole node (master and workers): nothing gets to clean up."""
        import signal

        pids = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)

    def spooled(self) -> int:
        spool = self.data_dir / "spool"
        return len(list(spool.glob("*.jsonl"))) if spool.exists() else 0


class Cluster(Server):
    """Several nodes sharing one PostgreSQL database."""

    def __init__(self, env: dict[str, str], base: Path, nodes: int) -> None:
        super().__init__("", env)
        self.nodes = [Node(f"node{i}", env, base / f"node{i}") for i in range(nodes)]
        for node in self.nodes:
            node.data_dir.mkdir(parents=True, exist_ok=True)
        self.base_url = self.nodes[0].base_url
        self.log_path = self.nodes[0].data_dir / "server.log"

    def wait_until_replayed(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(node.spooled() for node in self.nodes):
                return
            time.sleep(0.5)
        raise AssertionError(f"spool not replayed within {timeout:.0f} s: "
                             f"{[(n.name, n.spooled()) for n in self.nodes]}")

    def calls_by_sid(self) -> dict[str, list[dict]]:
        rows = json.loads(self.cli("calls", "list", "--json", "--limit", "0").stdout)
        out: dict[str, list[dict]] = {}
        for row in rows:
            out.setdefault(row["sid"], []).append(row)
        return out


def _cluster(postgres_server, redis_server, request, network: Path):
    """Nodes set up as production runs them: PostgreSQL for the data, Redis for the live counters."""
    name = "rel_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    url = postgres_server.create_database(name)
    base = Path(tempfile.mkdtemp(prefix="callbroker-cluster-"))
    env = {**os.environ, "DATABASE_URL": url, "TWILIO_AUTH_TOKEN": TOKEN, "CALLBROKER_LOG_LEVEL": "INFO",
           "CALLBROKER_FALLBACK_NUMBER": "+15125550999", "CALLBROKER_DATA_DIR": str(base / "cli"),
           "REDIS_URL": redis_server.url, "CALLBROKER_REDIS_PREFIX": f"{name}:"}
    cluster = Cluster(env, base, nodes=2)
    cluster.cli("migrate", "--verbosity", "0")
    cluster.cli("network", "load", str(network))
    for node in cluster.nodes:
        node.start()
    yield cluster
    for node in cluster.nodes:
        try:
            node.stop()
        except Exception:  # noqa: BLE001 - a killed node
            pass
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture()
def cluster(postgres_server, redis_server, request):
    """Two app nodes on a fresh PostgreSQL database (Redis counters) with the e2e network loaded."""
    yield from _cluster(postgres_server, redis_server, request, E2E_DIR / "network.yaml")


@pytest.fixture()
def cluster_demo(postgres_server, redis_server, request):
    """Two app nodes on a fresh PostgreSQL database (Redis counters) with the demo network loaded."""
    yield from _cluster(postgres_server, redis_server, request, DEMO)
