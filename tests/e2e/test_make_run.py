"""The README's first command: ``make run`` migrates, loads the demo network, serves it and feeds it calls.

The Makefile's own ``run`` recipe is run (with this test's virtualenv, so nothing is installed), on an
empty data directory and a free port, for a handful of calls: it must start the server, print the admin
and carrier URLs, show one live line per call and leave the calls in the database.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.services import free_port, missing

REPO = Path(__file__).resolve().parents[2]
CALLS = 4


def test_make_run_serves_the_demo_and_shows_every_call(tmp_path):
    if shutil.which("make") is None:
        missing("make")
    venv = Path(sys.prefix)
    stamp = venv / ".installed"
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path / "var")}
    port = free_port()
    result = subprocess.run(
        ["make", "-C", str(REPO), f"VENV={venv}", "-o", str(stamp), "run",
         f"RUN_ARGS=--calls {CALLS} --rate 4 --port {port} --seed 7"],
        env=env, capture_output=True, text=True, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert f"callbroker is running on http://127.0.0.1:{port}" in out
    assert f"http://127.0.0.1:{port}/admin/" in out and "/carriers/twilio/voice" in out
    live_lines = [line for line in out.splitlines() if re.search(r"\b(NOT )?BILLABLE\b", line)]
    assert len(live_lines) == CALLS, out[-3000:]
    assert f"{CALLS} calls simulated" in out

    listed = subprocess.run([str(venv / "bin" / "callbroker"), "calls", "list", "--json"], env=env,
                            capture_output=True, text=True, timeout=120, check=True)
    calls = json.loads(listed.stdout)  # a list of calls
    assert len(calls) == CALLS
    assert all(call["verdict"] in {"billable", "not_billable"} for call in calls)


def test_run_stops_feeding_calls_and_stops_the_server_on_sigterm(tmp_path):
    """``kill`` (SIGTERM to the command alone, as a service manager or ``timeout`` sends it): no new
    call is placed, the calls in flight finish, the server stops and the command exits cleanly, instead
    of placing the rest of its batch of 200 calls first."""
    venv = Path(sys.prefix)
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1"}
    port = free_port()
    command = [str(venv / "bin" / "callbroker"), "run", "--rate", "1", "--port", str(port), "--seed", "7"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the first live line: traffic is flowing
            lines.append(line)
            if re.search(r"\b(NOT )?BILLABLE\b|PENDING", line):
                break
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)  # without the stop, the batch's 200 calls take 200 s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(lines) + rest
    assert proc.returncode == 0, out[-3000:]
    assert "Stopping the server" in out
    simulated = int(re.search(r"(\d+) calls simulated", out).group(1))
    assert 1 <= simulated < 20, out[-3000:]  # the calls in flight (at most 8), not the batch
    assert "not recorded" not in out, out[-3000:]  # the server answered every call it was sent
    with socket.socket() as probe:  # the server is gone with the command
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_ctrl_c_lets_the_calls_in_flight_finish_and_leaves_none_unfinished(tmp_path):
    """Ctrl-C in a terminal signals the whole foreground process group (``make``, ``callbroker run``, and
    formerly the server it started, which then died under the calls in flight, leaving them ringing with
    their buyers' lines held). The server now has a session of its own; the command stops feeding calls,
    lets those in flight finish, then stops the server."""
    venv = Path(sys.prefix)
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1"}
    port = free_port()
    command = [str(venv / "bin" / "callbroker"), "run", "--rate", "4", "--port", str(port), "--seed", "7",
               "--time-scale", "0.05"]  # calls of a few seconds: some are in flight at the Ctrl-C
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # a process group of its own, as a shell gives a job
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if re.search(r"\b(NOT )?BILLABLE\b|PENDING", line):
                break
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = "".join(lines) + rest
    assert proc.returncode == 0, out[-3000:]
    assert "the calls in flight finish first" in out and "Traceback" not in out, out[-3000:]
    assert "not recorded" not in out, out[-3000:]
    listed = subprocess.run([str(venv / "bin" / "callbroker"), "calls", "list", "--json", "--limit", "0"], env=env,
                            capture_output=True, text=True, timeout=120, check=True)
    calls = json.loads(listed.stdout)
    assert calls and all(call["stage"] == "ended" for call in calls), [c["stage"] for c in calls]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_run_refuses_a_port_another_server_listens_on(tmp_path):
    """Instead of sending its calls to whatever answers there (its own server failing to bind); the port
    comes from CALLBROKER_PORT when --port is not given, as for ``serve``."""
    venv = Path(sys.prefix)
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path / "var"), "CALLBROKER_PORT": str(port)}
        result = subprocess.run([str(venv / "bin" / "callbroker"), "run", "--calls", "1"], env=env,
                                capture_output=True, text=True, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert f"127.0.0.1:{port} is in use" in out and "Traceback" not in out, out[-3000:]
    assert "callbroker is running" not in out


def test_a_second_ctrl_c_stops_at_once_and_the_next_run_closes_what_it_left(tmp_path):
    """Calls in real time (minutes each): the first Ctrl-C would wait for them, the second doesn't; the
    next run on the data directory closes the calls left ringing (their buyers' lines were held)."""
    venv = Path(sys.prefix)
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1"}
    command = [str(venv / "bin" / "callbroker"), "run", "--rate", "4", "--port", str(free_port()), "--seed", "7",
               "--time-scale", "1"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Feeding simulated calls" in line:
                break
        time.sleep(3)  # a dozen calls in flight, none near its end
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = "".join(lines) + rest
    assert proc.returncode == 130, out[-3000:]
    assert "Stopped at once after" in out and "Traceback" not in out, out[-3000:]

    again = subprocess.run([*command[:-6], "--calls", "1", "--port", str(free_port())], env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    closed = int(re.search(r"Closed (\d+) simulated calls? an earlier run left unfinished", again.stdout).group(1))
    assert closed >= 1
    listed = subprocess.run([str(venv / "bin" / "callbroker"), "calls", "list", "--json", "--limit", "0"], env=env,
                            capture_output=True, text=True, timeout=120, check=True)
    assert all(call["stage"] == "ended" for call in json.loads(listed.stdout))


def test_one_run_per_data_directory(tmp_path):
    """A second run on the same data directory would close the first one's calls as left unfinished."""
    venv = Path(sys.prefix)
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen([str(venv / "bin" / "callbroker"), "run", "--rate", "2", "--port", str(free_port())],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert first.stdout is not None
        for line in first.stdout:
            if "Feeding simulated calls" in line:
                break
        second = subprocess.run([str(venv / "bin" / "callbroker"), "run", "--calls", "1", "--port", str(free_port())],
                                env=env, capture_output=True, text=True, timeout=120)
        first.send_signal(signal.SIGTERM)
        rest, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert second.returncode != 0
    assert "another `callbroker run` uses this data directory" in second.stderr, second.stderr[-2000:]
    assert "Closed" not in second.stdout and "callbroker is running" not in second.stdout
    assert first.returncode == 0 and "calls simulated" in rest


def test_a_server_whose_start_is_interrupted_is_stopped(tmp_path, monkeypatch):
    from callbroker.ops import server

    spawned = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        spawned.append(real_popen(*args, **kwargs))
        return spawned[-1]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while it starts

    monkeypatch.setattr(server.subprocess, "Popen", popen)
    monkeypatch.setattr(server, "_wait_until_it_answers", interrupted)
    env = {"CALLBROKER_DATA_DIR": str(tmp_path)}
    try:
        server.start_server("127.0.0.1", free_port(), 1, env=env, own_session=True)
    except KeyboardInterrupt:
        pass
    assert len(spawned) == 1 and spawned[0].poll() is not None  # not left running in its own session
