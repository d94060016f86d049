"""Reliability fixtures: app nodes (real gunicorn servers) on a private PostgreSQL, driven by the emulator."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
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
                             f"{[(n.name, n.spooled()) for n in self.nodes]}\n{self.spool_report()}")

    def spool_report(self) -> str:
        """What is left in the spools, what the nodes logged about those calls and what the database
        holds of them (for a failing test)."""
        logs = {node.name: (node.data_dir / "server.log").read_text(errors="replace").splitlines()
                for node in self.nodes}
        lines = []
        for node in self.nodes:
            for path in sorted((node.data_dir / "spool").glob("*.jsonl"))[:5]:
                events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
                lines.append(f"{node.name} {path.name}: " + "; ".join(
                    f"{e.get('kind')}@{e.get('received_at', '')[11:23]} seq={e.get('seq')} "
                    f"dialled={(e.get('dialled') or {}).get('sequence')}" for e in events))
                for name, node_logs in logs.items():
                    lines += [f"    {name}: {line[:260]}" for line in node_logs if path.stem in line][-12:]
                shown = self.cli("calls", "show", path.stem, "--json", check=False)
                lines.append(f"    database: {shown.stdout[:1500] or shown.stderr[-300:]}")
        return "\n".join(lines)

    def wait_until_recorded(self, sids: set[str], timeout: float = 180.0) -> None:
        """Until every one of these calls is in the database and ended (spools drained, memory flushed)."""
        deadline = time.monotonic() + timeout
        while True:
            calls = self.calls_by_sid()
            missing = {sid for sid in sids if not any(c["stage"] == "ended" for c in calls.get(sid, ()))}
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(missing)} calls not recorded (ended) within {timeout:.0f} s: "
                                     f"{sorted(missing)[:5]}; spools {[(n.name, n.spooled()) for n in self.nodes]}"
                                     f"\n{self.spool_report()}")
            time.sleep(1.0)

    def calls_by_sid(self) -> dict[str, list[dict]]:
        rows = json.loads(self.cli("calls", "list", "--json", "--limit", "0").stdout)
        out: dict[str, list[dict]] = {}
        for row in rows:
            out.setdefault(row["sid"], []).append(row)
        return out


def _cluster(postgres_server, redis_server, request, network: Path, public_url: str = ""):
    """Nodes set up as production runs them: PostgreSQL for the data, Redis for the live counters.

    With ``public_url``, the nodes sit behind it (a load balancer: ``traffic.Balanced``) and verify
    signatures against it, as behind a real proxy (``CALLBROKER_PUBLIC_URL``).
    """
    name = "rel_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    url = postgres_server.create_database(name)
    base = Path(tempfile.mkdtemp(prefix="callbroker-cluster-"))
    env = {**os.environ, "DATABASE_URL": url, "TWILIO_AUTH_TOKEN": TOKEN, "CALLBROKER_LOG_LEVEL": "INFO",
           "CALLBROKER_FALLBACK_NUMBER": "+15125550999", "CALLBROKER_DATA_DIR": str(base / "cli"),
           "REDIS_URL": redis_server.url, "CALLBROKER_REDIS_PREFIX": f"{name}:"}
    if public_url:
        env["CALLBROKER_PUBLIC_URL"] = public_url
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
def cluster_lb(postgres_server, redis_server, request):
    """Two app nodes behind a load balancer (``traffic.PUBLIC_URL``), e2e network, PostgreSQL + Redis."""
    from tests.reliability.traffic import PUBLIC_URL

    yield from _cluster(postgres_server, redis_server, request, E2E_DIR / "network.yaml", PUBLIC_URL)


@contextmanager
def tmpfs(path: Path, size: str):
    """A small tmpfs mounted on ``path`` for the block (a disk that fills up). Needs root; never skipped."""
    path.mkdir(parents=True, exist_ok=True)
    _mount(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)])
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def read_only(path: Path) -> None:
    """Remount the tmpfs on ``path`` read-only (what it holds stays readable). Needs root."""
    _mount(["mount", "-o", "remount,ro", str(path)])


def _mount(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"the disk tests mount a small tmpfs and could not: `{' '.join(command[:2])}` answered "
                    f"{done.returncode}: {done.stderr.strip()} (run the suite as root, or in a container allowed "
                    "to mount, e.g. docker --privileged)", pytrace=False)


def fill(directory: Path) -> int:
    """Write a file into ``directory`` until the disk refuses: returns the bytes written."""
    written = 0
    with open(directory / "filler", "wb", buffering=0) as handle:
        chunk = b"\0" * 4096
        while True:
            try:
                written += handle.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return written


@pytest.fixture()
def cluster_demo(postgres_server, redis_server, request):
    """Two app nodes on a fresh PostgreSQL database (Redis counters) with the demo network loaded."""
    yield from _cluster(postgres_server, redis_server, request, DEMO)
