"""Private PostgreSQL and Redis servers on loopback, in a directory of their own.

Started by ``callbroker bench`` (counters, ``--nodes``) and by the test suite (``tests/services.py``) from
the Debian packages (``postgresql``, ``redis-server``; ``.ci/run`` installs them). Never used by a
deployment: production points ``DATABASE_URL`` and ``REDIS_URL`` at real servers (docs/deploy.md).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin_dir() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl`` (the newest Debian PostgreSQL), or ``None``."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the 'postgres' user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@dataclass
class PostgresServer:
    directory: Path
    port: int
    bin_dir: Path

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgres://callbroker@127.0.0.1:{self.port}/{name}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run([str(self.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "callbroker",
                              "-d", database, "-tAc", sql], capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def create_database(self, name: str) -> str:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def start(self) -> None:
        subprocess.run(_as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.directory / "data"), "-w", "-t", "60",
                                     "-l", str(self.directory / "postgres.log"), "start"]),
                       capture_output=True, check=True)

    def stop(self) -> None:
        subprocess.run(_as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "fast",
                                     "-w", "stop"]), capture_output=True)


def start_postgres(base: Path, *, durable: bool, max_connections: int = 200) -> PostgresServer | None:
    """A new cluster in ``base``, started; ``None`` when PostgreSQL is not installed.

    ``durable``: ``fsync`` and ``synchronous_commit`` on, as in production (the benchmark's figures include
    the commit's WAL flush); off for the tests, which only need correctness.
    """
    bin_dir = postgres_bin_dir()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists():
        return None
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data = base / "data"
    subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "callbroker", "--auth=trust",
                                 "--no-sync", "-E", "UTF8", "--locale=C"]), capture_output=True, check=True)
    port = free_port()
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{base}'\n"
                   f"max_connections = {max_connections}\n")
        if not durable:
            conf.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
    server = PostgresServer(base, port, bin_dir)
    server.start()
    return server


@dataclass
class RedisServer:
    directory: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again, empty: no persistence) and wait until it answers PING."""
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def start_redis(base: Path) -> RedisServer | None:
    """A Redis without persistence in ``base``, started; ``None`` when redis-server is not installed."""
    if not shutil.which("redis-server"):
        return None
    base.mkdir(parents=True, exist_ok=True)
    server = RedisServer(base, free_port())
    server.start()
    return server
