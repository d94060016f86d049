"""The gunicorn settings module's fork hook: what the master loaded is frozen out of the collector's reach.

Given the settings module gunicorn is started with (``ops/server.py``), when gunicorn reads it and the
master is about to fork a worker, then every object alive in the master is in the permanent generation:
a worker's collections never walk the ZIP table, the snapshot or Django's set-up it shares with the master.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from callbroker.ops import prompt_close
from callbroker.ops.server import GUNICORN_CONFIG_MODULE, gunicorn_command, start_server, stop_server
from tests.services import free_port

REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: importing the settings module sets PROMETHEUS_MULTIPROC_DIR, and freezing
# the test process itself would keep its garbage forever.
FORK_HOOK_PROBE = """
import gc, json, os
from gunicorn.config import Config
from callbroker.core.geo import ZipDirectory
from callbroker.ops import gunicorn_conf
config = Config()
config.set("pre_fork", gunicorn_conf.pre_fork)  # gunicorn's own check: a callable of (server, worker)
directory = ZipDirectory.default()          # loaded before the fork, as --preload does
loaded = [directory, {"zip": directory}]    # a container made in the master
before = gc.get_freeze_count()
gunicorn_conf.pre_fork(None, None)
walked = {id(o) for o in gc.get_objects()}  # what a collection would walk from now on
made_after = [object()]
print(json.dumps({
    "hook_accepted": config.pre_fork is gunicorn_conf.pre_fork,
    "before": before,
    "frozen": gc.get_freeze_count(),
    "loaded_walked": any(id(o) in walked for o in loaded),
    "made_after_walked": any(o is made_after for o in gc.get_objects()),
}))
"""


def test_the_fork_hook_freezes_what_the_master_loaded_and_only_that(tmp_path):
    command = gunicorn_command("127.0.0.1", 8000, 2)
    assert command[command.index("--config") + 1] == f"python:{GUNICORN_CONFIG_MODULE}"
    assert "--preload" in command
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    result = subprocess.run([sys.executable, "-c", FORK_HOOK_PROBE], env=env, cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=True)
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["hook_accepted"] is True
    assert seen["before"] == 0
    assert seen["frozen"] > 1000  # the interpreter's and the imports' objects, the ZIP directory's
    assert seen["loaded_walked"] is False
    assert seen["made_after_walked"] is True  # a worker's own objects are collected as usual


# --------------------------------------------------------------------------- closing a client connection
# (``ops/prompt_close.py``, installed by the settings module; the module itself is not imported here:
# importing it sets PROMETHEUS_MULTIPROC_DIR for this process and every server the tests start after it)


def _tcp_pair():
    """(server side, client side) of one loopback TCP connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname(), timeout=10)
    server, _ = listener.accept()
    listener.close()
    return server, client


def _close_in_thread(sock) -> threading.Thread:
    thread = threading.Thread(target=prompt_close.close_promptly, args=(sock, 30.0), daemon=True)
    thread.start()
    thread.join(10)
    return thread


@pytest.fixture()
def graceful_calls(monkeypatch):
    calls = []
    real = prompt_close._graceful
    monkeypatch.setattr(prompt_close, "_graceful", lambda sock, *a: (calls.append(sock), real(sock, *a)))
    return calls


def test_a_connection_with_nothing_unread_is_closed_without_waiting_for_the_client(graceful_calls):
    server, client = _tcp_pair()
    server.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
    thread = _close_in_thread(server)  # the client neither reads nor closes meanwhile
    assert not thread.is_alive(), "the worker must not wait for the client's FIN"
    assert server.fileno() == -1 and graceful_calls == []
    received = b""
    while chunk := client.recv(4096):  # the whole answer, then FIN (b""), no reset
        received += chunk
    assert received.endswith(b"\r\n\r\nok")
    client.close()


def test_a_connection_with_unread_bytes_gets_gunicorns_graceful_close(graceful_calls):
    server, client = _tcp_pair()
    client.sendall(b"bytes the application never read")
    client.shutdown(socket.SHUT_WR)  # so that the graceful drain ends at once
    time.sleep(0.05)  # let them arrive (loopback)
    server.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
    thread = _close_in_thread(server)
    assert not thread.is_alive()
    assert graceful_calls == [server] and server.fileno() == -1
    assert client.recv(4096).endswith(b"ok")
    client.close()


def test_a_connection_the_client_closed_first_is_closed_at_once(graceful_calls):
    server, client = _tcp_pair()
    client.close()
    time.sleep(0.05)
    thread = _close_in_thread(server)
    assert not thread.is_alive() and server.fileno() == -1 and graceful_calls == []


def test_the_served_workers_close_promptly(tmp_path):
    """Both workers answer clients that never close; a third client is still answered at once.

    With gunicorn's own close, each worker would wait for its client's FIN (up to 2 s) and the third
    request would wait for a worker just as long.
    """
    port = free_port()
    env = {"CALLBROKER_DATA_DIR": str(tmp_path), "CALLBROKER_LOG_LEVEL": "ERROR"}
    proc = start_server("127.0.0.1", port, 2, env=env, log_path=tmp_path / "server.log")
    held = []
    try:
        for _ in range(3):
            client = socket.create_connection(("127.0.0.1", port), timeout=1.5)
            client.sendall(b"GET /bench/hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            received = b""
            while chunk := client.recv(4096):  # socket.timeout here: no worker was free
                received += chunk
            assert received.startswith(b"HTTP/1.1 200") and received.endswith(b"Hello, world")
            held.append(client)  # kept open: a client slow to close, or far away
    finally:
        for client in held:
            client.close()
        stop_server(proc)


def test_an_ipv6_host_is_bound_in_brackets():
    from callbroker.ops.server import gunicorn_command, host_port

    command = gunicorn_command("::1", 8000, 1)
    assert command[command.index("--bind") + 1] == "[::1]:8000"
    assert host_port("10.0.0.7", 8000) == "10.0.0.7:8000" and host_port("[::]", 80) == "[::]:80"


def test_serve_passes_its_pythonpath_and_settings_to_the_server(tmp_path):
    """``--pythonpath DIR --settings mod`` (Django's options, listed by ``serve --help``): the server is a new
    program, which didn't see DIR and failed to import the settings while ``serve`` said it was serving."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx

    from tests.services import free_port

    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "local_settings.py").write_text("from callbroker.settings import *  # noqa: F403\nLOCAL = True\n")
    port = free_port()
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path / "var")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    server = subprocess.Popen([sys.executable, "-m", "callbroker.cli", "serve", "--port", str(port), "--workers", "1",
                               "--pythonpath", str(extra), "--settings", "local_settings"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline, status = time.monotonic() + 30, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert status == 200, server.stderr.read().decode()[-2000:] if server.poll() is not None else "no answer"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)


def test_workers_default_to_the_cores_this_process_may_use(tmp_path):
    """A container limited to 2 CPUs on a big host must not start a worker (and database connections) per
    core of the host."""
    import os

    from callbroker.ops.server import default_workers

    allowed = len(os.sched_getaffinity(0))
    limit = tmp_path / "cpu.max"
    limit.write_text("max 100000\n")
    assert default_workers(limit) == allowed
    limit.write_text("150000 100000\n")  # docker run --cpus 1.5
    assert default_workers(limit) == min(allowed, 2)
    limit.write_text("50000 100000\n")
    assert default_workers(limit) == 1
    assert default_workers(tmp_path / "missing") == allowed
