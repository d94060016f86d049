"""``callbroker serve``: options out of range, a taken port and an unknown host are refused in one line
before anything starts; the line saying where it listens is true when it is printed."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.services import free_port

CALLBROKER = [sys.executable, "-m", "callbroker.cli"]


class Exec(Exception):
    """What ``os.execv`` was asked to run (the test stops there instead of becoming gunicorn)."""

    def __init__(self, cmd: list[str], listening: bool) -> None:
        self.cmd, self.listening = cmd, listening


@pytest.fixture
def no_exec(monkeypatch):
    """``os.execv`` that records the command and whether the port answered a connection at that moment."""
    def execv(path, cmd):
        port = int(os.environ["TEST_SERVE_PORT"])
        with socket.socket() as probe:
            listening = probe.connect_ex(("127.0.0.1", port)) == 0
        raise Exec(list(cmd), listening)

    monkeypatch.setattr(os, "execv", execv)


def test_the_line_saying_where_it_listens_comes_once_the_port_listens(no_exec, monkeypatch):
    """Formerly ``serving on …`` came before gunicorn had bound anything (and was printed for a port
    gunicorn then failed to bind). Now the socket listens first and gunicorn is handed it (``fd://``)."""
    port = free_port()
    monkeypatch.setenv("TEST_SERVE_PORT", str(port))
    out = io.StringIO()
    with pytest.raises(Exec) as exec_:
        call_command("serve", "--port", str(port), "--workers", "3", stdout=out)
    bind = exec_.value.cmd[exec_.value.cmd.index("--bind") + 1]
    fd = int(bind.removeprefix("fd://"))
    try:
        assert exec_.value.listening, "nothing listened when serve handed over to gunicorn"
        assert out.getvalue() == f"callbroker listening on http://127.0.0.1:{port}; starting 3 workers\n"
        assert os.get_inheritable(fd)  # gunicorn, exec'd, must find it open
        with socket.socket(fileno=os.dup(fd)) as handed:
            assert handed.getsockname() == ("127.0.0.1", port)
    finally:
        os.close(fd)


def test_a_port_another_server_listens_on_is_refused_in_one_line(tmp_path):
    """Formerly: ``serving on …``, then about eleven gunicorn ``Connection in use`` lines over 8 s, and
    exit code 1."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path / "var")}
        started = time.monotonic()
        result = subprocess.run([*CALLBROKER, "serve", "--port", str(port), "--workers", "1"], env=env,
                                capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 6  # no gunicorn retrying its bind
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"CommandError: 127.0.0.1:{port} is in use: another server runs there; stop it or choose another "
        "port (--port)"]


def test_a_host_that_does_not_resolve_is_refused_in_one_line(tmp_path):
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path / "var")}
    result = subprocess.run([*CALLBROKER, "serve", "--host", "nosuchhost.invalid", "--port", str(free_port()),
                             "--workers", "1"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("CommandError: cannot listen on nosuchhost.invalid:"), line


@pytest.mark.parametrize(("argv", "says"), [
    (["--workers", "0"], "argument --workers: 0 is below 1"),  # was: a server that never answered
    (["--workers", "-1"], "argument --workers: -1 is below 1"),  # was: "serving …", then gunicorn's error
    (["--workers", "two"], "argument --workers: 'two' is not an integer"),
    (["--port", "0"], "--port: 0 is not a port number (1-65535)"),
    (["--port", "65536"], "--port: 65536 is not a port number (1-65535)"),
    (["--port", "http"], "--port: 'http' is not a port number"),
])
def test_options_out_of_range_are_refused_before_anything_starts(no_exec, argv, says):
    out = io.StringIO()
    with pytest.raises(CommandError, match=re.escape(says)):
        call_command("serve", *argv, stdout=out)
    assert out.getvalue() == ""


@pytest.mark.parametrize("port", ["http", "0"])
def test_run_names_the_port_option_it_refuses(port):
    """``run`` reads its port as ``serve`` does; the refusal said ``'http' is not a port number`` without
    saying where the port came from (``CALLBROKER_PORT``'s refusal names the variable)."""
    with pytest.raises(CommandError, match=rf"^--port: '?{port}'? is not a port number"):
        call_command("run", "--port", port, stdout=io.StringIO())


def test_a_data_directory_it_cannot_write_in_is_refused_in_one_line_before_listening(tmp_path):
    """Formerly: ``callbroker listening on …; starting 1 worker``, then gunicorn's ``Error: [Errno 30]
    Read-only file system: '…/prometheus'``, exit code 1. Now one line naming the variable, as for a data
    directory that can't be made (docs/cli.md), before anything listens."""
    from tests.reliability.conftest import read_only, tmpfs

    data = tmp_path / "var"
    with tmpfs(data, "1m"):
        (data / "static").mkdir()  # what the command line makes first is there: only writing fails
        read_only(data)
        env = {**os.environ, "CALLBROKER_DATA_DIR": str(data)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        result = subprocess.run([*CALLBROKER, "serve", "--port", str(free_port()), "--workers", "1"], env=env,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"callbroker: CALLBROKER_DATA_DIR={str(data)!r}: cannot write in the directory {data} "
        "(Read-only file system)"]


def test_a_warning_of_the_start_is_said_once_though_gunicorn_sets_django_up_again(tmp_path):
    """Outside production a ``TWILIO_ACCOUNT_SID`` entry of no account's shape is a WARNING at start. ``serve``
    said it, then gunicorn, which it hands over to and which sets Django up again, said it a second time."""
    from callbroker.ops.server import _wait_until_it_answers, stop_server

    port = free_port()
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path / "var"), "TWILIO_ACCOUNT_SID": "ACxyz",
           "CALLBROKER_ENV": "development"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = subprocess.Popen([*CALLBROKER, "serve", "--port", str(port), "--workers", "1"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:  # gunicorn answers once it has set Django up (--preload: before its worker starts)
        _wait_until_it_answers(server, f"http://127.0.0.1:{port}/healthz", 60, None)
    finally:
        stop_server(server)
    output = server.stdout.read()
    warnings = [line for line in output.splitlines() if " WARNING callbroker.settings " in line]
    assert len(warnings) == 1, output
    assert "TWILIO_ACCOUNT_SID's entry 1 (5 characters, not shown: it may hold a token) is no account SID" in warnings[0]
    assert "ACxyz" not in output
