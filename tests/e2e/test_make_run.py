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
import subprocess
import sys
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
