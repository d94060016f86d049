"""Start the production web server (gunicorn) the same way for `serve`, `run` and `bench`."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

GUNICORN_CONFIG_MODULE = "callbroker.ops.gunicorn_conf"


def host_port(host: str, port: int) -> str:
    """``host:port`` for a bind address or a URL: an IPv6 address in brackets (``[::1]:8000``)."""
    return f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host}:{port}"


def gunicorn_command(host: str, port: int, workers: int, *, access_log: bool = False) -> list[str]:
    cmd = [
        sys.executable, "-m", "gunicorn", "callbroker.wsgi:application",
        # Prometheus multiprocess directory (emptied at every start), child_exit hook, JSON logs: see there.
        "--config", f"python:{GUNICORN_CONFIG_MODULE}",
        "--bind", host_port(host, port),
        "--workers", str(workers),
        "--worker-class", "sync",
        "--backlog", "2048",
        "--timeout", "30",
        "--graceful-timeout", "10",
        "--keep-alive", "5",
        "--preload",  # load Django and the ZIP table once, then fork: workers share the memory
        "--log-level", "warning",
        # Request-line and header limits (docs/security.md): our URLs are short and carriers send ~12
        # headers, so these leave room for proxies while capping what a stranger can make us parse.
        "--limit-request-line", "4094",
        "--limit-request-fields", "50",
        "--limit-request-field_size", "8190",
    ]
    if access_log:
        cmd += ["--access-logfile", "-"]
    return cmd


def default_workers(cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """One worker per core this process may use: the CPUs it is allowed to run on (a cpuset), and no more
    than a container's CPU quota (cgroup v2 ``cpu.max``, e.g. ``docker run --cpus 2``) allows. The host's
    core count alone would start one worker (and database connections) per core of a big host."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = cgroup.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 limit to read
        pass
    return max(1, cores)


def start_server(host: str, port: int, workers: int, *, env: dict | None = None, log_path: Path | None = None,
                 wait: float = 30.0) -> subprocess.Popen:
    """Start gunicorn in the background and wait until it answers."""
    full_env = {**os.environ, **(env or {})}
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(gunicorn_command(host, port, workers), env=full_env, stdout=out, stderr=out)
    finally:
        if log_path:
            out.close()  # the server has its own copy of the descriptor
    deadline = time.monotonic() + wait
    url = f"http://{host_port(host, port)}/healthz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}" + (f"; see {log_path}" if log_path else ""))
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"server did not answer on {url} within {wait:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
