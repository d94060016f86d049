"""Start the production web server (gunicorn) the same way for `serve`, `run` and `bench`."""

from __future__ import annotations

import errno
import math
import os
import socket
import subprocess
import sys
import tempfile
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


class DataDirNotWritable(RuntimeError):
    """The server can't write in ``CALLBROKER_DATA_DIR`` (a read-only file system, no permission)."""


def check_data_dir_writable(given: str) -> None:
    """Raise :class:`DataDirNotWritable`, in one line naming the variable, when no file can be made in the
    data directory ``given``. The server writes its SQLite database, spool and network snapshot there;
    started anyway, it said where it listened, then gunicorn died on ``[Errno 30] Read-only file system``.
    (A full disk passes: an empty file takes no block, and the server runs on from memory.)"""
    path = Path(given)
    try:
        path.mkdir(parents=True, exist_ok=True)  # a directory not made yet: the server makes it
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise DataDirNotWritable(f"CALLBROKER_DATA_DIR={given!r}: cannot write in the directory {path} "
                                 f"({exc.strerror or exc})") from None


class PortInUse(RuntimeError):
    """Something already listens on the address a server was to bind."""


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`PortInUse` when ``host:port`` can't be bound (bound the way gunicorn binds it, with
    ``SO_REUSEADDR``, so a port left in ``TIME_WAIT`` by a stopped server counts as free). Without this, a
    server started on a taken port retries its bind for seconds and exits, while the health check meanwhile
    gets its answer from whatever listens there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"{host_port(host, port)} is in use: another server runs there; stop it or "
                                "choose another port (--port)") from None
            raise PortInUse(f"cannot listen on {host_port(host, port)}: {exc.strerror or exc} (--host, --port)"
                            ) from None


def start_server(host: str, port: int, workers: int, *, env: dict | None = None, log_path: Path | None = None,
                 wait: float = 30.0, own_session: bool = False) -> subprocess.Popen:
    """Start gunicorn in the background and wait until it answers.

    ``own_session``: the server in a session of its own, so the terminal's Ctrl-C (or a signal to the
    caller's process group) reaches only the caller, which then stops the server when it is ready to
    (``callbroker run`` lets the calls in flight finish first). Raises :class:`PortInUse` when the port is
    taken, :class:`DataDirNotWritable` when the data directory is read-only, and ``RuntimeError`` when the
    server exits or doesn't answer.
    """
    check_port_free(host, port)
    full_env = {**os.environ, **(env or {})}
    check_data_dir_writable(full_env.get("CALLBROKER_DATA_DIR", "var"))
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(gunicorn_command(host, port, workers), env=full_env, stdout=out, stderr=out,
                                start_new_session=own_session)
    finally:
        if log_path:
            out.close()  # the server has its own copy of the descriptor
    try:
        _wait_until_it_answers(proc, f"http://{host_port(host, port)}/healthz", wait, log_path)
    except BaseException:  # not up in time, or the wait interrupted (Ctrl-C): no server left behind
        stop_server(proc)
        raise
    return proc


def _wait_until_it_answers(proc: subprocess.Popen, url: str, wait: float, log_path: Path | None) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}" + (f"; see {log_path}" if log_path else ""))
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer on {url} within {wait:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
