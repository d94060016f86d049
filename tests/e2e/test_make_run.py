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

import pytest

from tests.services import free_port, missing

REPO = Path(__file__).resolve().parents[2]
CALLS = 4
LIVE_LINE = re.compile(r"\b(NOT )?BILLABLE\b|PENDING")
CALLBROKER = str(Path(sys.prefix) / "bin" / "callbroker")


class Run:
    """``callbroker run`` in the background, in a process group of its own (as a shell runs a job), its
    output read as it comes; killed with its group if a test leaves it running."""

    def __init__(self, tmp_path: Path, *args: str, **env: str) -> None:
        self.env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1",
                    **env}
        self.proc = subprocess.Popen([CALLBROKER, "run", *args], env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.out = ""

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def read_until(self, pattern: str | re.Pattern) -> None:
        """Until a line matches (the command got that far)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out += line
            if re.search(pattern, line):
                return
        raise AssertionError(f"{pattern!r} never came:\n{self.out[-3000:]}")

    def finish(self, timeout: float) -> int:
        """What it printed until it exited; its exit code."""
        rest, _ = self.proc.communicate(timeout=timeout)
        self.out += rest
        return self.proc.returncode

    def calls(self) -> list[dict]:
        listed = subprocess.run([CALLBROKER, "calls", "list", "--json", "--limit", "0"], env=self.env,
                                capture_output=True, text=True, timeout=120, check=True)
        return json.loads(listed.stdout)


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


def test_make_typed_in_another_directory_runs_the_recipes_in_the_project(tmp_path):
    """``make -f ~/cb/Makefile run`` from another directory stopped before ``run`` started: make looked for
    ``pyproject.toml`` (the install's prerequisite) there ("No rule to make target"), and ``var`` and a
    relative ``.venv`` would have been there too. A dry run (``-n``): nothing is installed or started."""
    if shutil.which("make") is None:
        missing("make")
    venv = Path(sys.prefix)
    for recipe, line in (("run", f"{venv}/bin/callbroker run"), ("clean", f"rm -rf {venv} var build")):
        # --no-print-directory: under an outer make (``make test``) this make is a sub-make, which prints
        # "Entering/Leaving directory" lines around its recipes by default.
        result = subprocess.run(["make", "-n", "--no-print-directory", "-f", str(REPO / "Makefile"),
                                 f"VENV={venv}", recipe],
                                cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[-1].startswith(f"cd '{REPO}' && {line}"), result.stdout


def test_run_stops_feeding_calls_and_stops_the_server_on_sigterm(tmp_path):
    """``kill`` (SIGTERM to the command alone, as a service manager or ``timeout`` sends it): no new
    call is placed, the calls in flight finish, the server stops and the command exits cleanly, instead
    of placing the rest of its batch of 200 calls first."""
    port = free_port()
    with Run(tmp_path, "--rate", "1", "--port", str(port), "--seed", "7", "--workers", "1") as run:
        run.read_until(LIVE_LINE)  # the first live line: traffic is flowing
        run.proc.send_signal(signal.SIGTERM)
        code = run.finish(timeout=120)  # without the stop, the batch's 200 calls take 200 s
    assert code == 0, run.out[-3000:]
    assert "Starting the server (1 worker, log in" in run.out  # not "1 workers"
    assert "Stopping the server" in run.out
    simulated = int(re.search(r"(\d+) calls? simulated", run.out).group(1))
    assert 1 <= simulated < 20, run.out[-3000:]  # the calls in flight (at most 8), not the batch
    assert "not recorded" not in run.out, run.out[-3000:]  # the server answered every call it was sent
    with socket.socket() as probe:  # the server is gone with the command
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_run_takes_its_own_calls_whatever_account_the_environment_pins(tmp_path):
    """Its server takes its emulator's AccountSid: with the production account in TWILIO_ACCOUNT_SID, it
    refused every call the run placed (403, "not recorded")."""
    port = free_port()
    with Run(tmp_path, "--calls", "2", "--rate", "4", "--port", str(port), "--seed", "7", "--workers", "1",
             TWILIO_ACCOUNT_SID="AC" + "f" * 32) as run:
        code = run.finish(timeout=120)
    assert code == 0, run.out[-3000:]
    assert "not recorded" not in run.out, run.out[-3000:]
    assert len(run.calls()) == 2


def test_ctrl_c_lets_the_calls_in_flight_finish_and_leaves_none_unfinished(tmp_path):
    """Ctrl-C in a terminal signals the whole foreground process group (``make``, ``callbroker run``, and
    formerly the server it started, which then died under the calls in flight, leaving them ringing with
    their buyers' lines held). The server now has a session of its own; the command stops feeding calls,
    lets those in flight finish, then stops the server."""
    port = free_port()
    # Calls of a few seconds: some are in flight at the Ctrl-C.
    with Run(tmp_path, "--rate", "4", "--port", str(port), "--seed", "7", "--time-scale", "0.05") as run:
        run.read_until(LIVE_LINE)
        os.killpg(run.proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        code = run.finish(timeout=120)
    assert code == 0, run.out[-3000:]
    assert "the calls in flight finish first" in run.out and "Traceback" not in run.out, run.out[-3000:]
    assert "not recorded" not in run.out, run.out[-3000:]
    calls = run.calls()
    assert calls and all(call["stage"] == "ended" for call in calls), [c["stage"] for c in calls]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_run_refuses_a_port_another_server_listens_on(tmp_path):
    """Instead of sending its calls to whatever answers there (its own server failing to bind); the port
    comes from CALLBROKER_PORT when --port is not given, as for ``serve``. Refused in one line before
    anything starts, as ``serve`` refuses it (formerly after migrating and loading the demo: 35 lines)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path / "var"), "CALLBROKER_PORT": str(port)}
        result = subprocess.run([CALLBROKER, "run", "--calls", "1"], env=env, capture_output=True, text=True,
                                timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-3000:]
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"CommandError: 127.0.0.1:{port} is in use: another server runs there; stop it or choose another "
        "port (--port)"]
    assert not (tmp_path / "var" / "callbroker.sqlite3").exists()  # nothing migrated


def test_a_second_ctrl_c_stops_at_once_and_the_next_run_closes_what_it_left(tmp_path):
    """Calls in real time (minutes each): the first Ctrl-C would wait for them, the second doesn't; the
    next run on the data directory closes the calls left ringing (their buyers' lines were held)."""
    with Run(tmp_path, "--rate", "4", "--port", str(free_port()), "--seed", "7", "--time-scale", "1") as run:
        run.read_until("Feeding simulated calls")
        time.sleep(3)  # a dozen calls in flight, none near its end
        os.killpg(run.proc.pid, signal.SIGINT)
        time.sleep(0.5)
        os.killpg(run.proc.pid, signal.SIGINT)
        code = run.finish(timeout=30)
    assert code == 130, run.out[-3000:]
    assert "Stopped at once after" in run.out and "Traceback" not in run.out, run.out[-3000:]

    with Run(tmp_path, "--calls", "1", "--port", str(free_port())) as again:
        code = again.finish(timeout=300)
    assert code == 0, again.out[-3000:]
    closed = int(re.search(r"Closed (\d+) simulated calls? an earlier run left unfinished", again.out).group(1))
    assert closed >= 1
    assert all(call["stage"] == "ended" for call in again.calls())


def test_one_run_per_data_directory(tmp_path):
    """A second run on the same data directory would close the first one's calls as left unfinished."""
    with Run(tmp_path, "--rate", "2", "--port", str(free_port())) as first:
        first.read_until("Feeding simulated calls")
        with Run(tmp_path, "--calls", "1", "--port", str(free_port())) as second:
            refused = second.finish(timeout=120)
        first.proc.send_signal(signal.SIGTERM)
        code = first.finish(timeout=120)
    assert refused != 0
    assert "another `callbroker run` uses this data directory" in second.out, second.out[-2000:]
    assert "Closed" not in second.out and "callbroker is running" not in second.out
    assert code == 0 and re.search(r"\d+ calls? simulated", first.out)


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


@pytest.mark.parametrize(("argv", "says"), [
    (["--rate", "-1"], "argument --rate: -1 calls per second: give a rate above 0"),  # was: calls with no pacing
    (["--rate", "0"], "argument --rate: 0 calls per second"),
    (["--rate", "nan"], "argument --rate: 'nan' is not a finite number"),
    (["--time-scale", "-0.5"], "argument --time-scale: -0.5 is below 0"),
    (["--calls", "-3"], "argument --calls: -3 is below 0"),
    (["--workers", "0"], "argument --workers: 0 is below 1"),
])
def test_run_refuses_impossible_options_before_doing_anything(argv, says):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=re.escape(says)):
        call_command("run", *argv)


def test_run_piped_into_a_reader_that_stops_stops_its_server_and_ends(tmp_path):
    """``callbroker run | head``: the reader goes, nobody sees the calls any more: stop as on Ctrl-C, server
    first (a write into the closed pipe used to end the command before it stopped the server)."""
    port = free_port()
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([CALLBROKER, "run", "--rate", "8", "--time-scale", "0", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:
            if LIVE_LINE.search(line):
                break
        proc.stdout.close()  # `head` has its lines
        err = proc.stderr.read()
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert code == 141 and "Traceback" not in err, err[-3000:]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # its server is gone too
