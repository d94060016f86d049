"""Ctrl-C on ``callbroker sim traffic``: the first stops placing calls and lets the calls in flight finish
(shown, then the summary, exit code 130); a second exits at once. Formerly the first printed a bare
``interrupted`` and the calls in flight went on printing their lines for seconds after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.sim.test_sim_traffic import NETWORK, TOKEN

VOICE = "/carriers/twilio/voice"


@pytest.fixture
def traffic(server, tmp_path):
    """``callbroker sim traffic`` against the test server, each call's first webhook answered after
    ``server.delay`` seconds (so calls are in flight for that long), started once asked for."""
    network = tmp_path / "net.yaml"
    network.write_text(yaml.safe_dump(NETWORK))
    server.delay = 1.0

    def slow(seen):
        time.sleep(server.delay)
        return 200, "text/xml", "<Response><Hangup/></Response>"

    server.routes[VOICE] = slow
    procs = []

    def start(calls: int = 50) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "callbroker.cli", "sim", "traffic", "--url", server.url, "--token", TOKEN,
             "--network", str(network), "--calls", str(calls), "--rate", "4", "--concurrency", "8"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        procs.append(proc)
        deadline = time.monotonic() + 30
        while len(server.to(VOICE)) < 3:  # calls are being placed: the Ctrl-C handling is in place
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_first_ctrl_c_places_no_new_call_and_lets_those_in_flight_finish(server, traffic):
    proc = traffic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    placed = len(server.to(VOICE))
    out, err = proc.communicate(timeout=30)
    lines = out.splitlines()
    assert proc.returncode == 130
    assert len(server.to(VOICE)) == placed < 50  # none after the Ctrl-C (one every 0.25 s before it)
    assert len(lines) == placed + 1  # each call in flight shown, then the summary
    assert lines[-1].startswith(f"{placed} calls in")
    assert err.splitlines() == [
        "", "callbroker: stopping: no new calls; the calls in flight finish first (Ctrl-C again to stop now)",
        f"callbroker: interrupted ({placed} of 50 calls placed)"]


def test_a_second_ctrl_c_exits_at_once(server, traffic):
    server.delay = 20.0  # the calls in flight would take that long
    proc = traffic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 3
    assert proc.returncode == 130 and out == ""  # no call ended: none shown, no summary
    assert err.splitlines()[-1] == "callbroker: interrupted" and "Traceback" not in err, err


def test_a_ctrl_c_after_the_last_call_was_placed_interrupts_nothing(server, traffic):
    proc = traffic(calls=3)  # all three placed (and in flight for a second) when the Ctrl-C comes
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.splitlines()[-1].startswith("3 calls in")
    assert "interrupted" not in err
