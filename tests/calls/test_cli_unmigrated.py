"""The commands on a database that was never migrated say what to do in one line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


EXAMPLE = "src/callbroker/network/demo/example-network.yaml"


@pytest.mark.parametrize(("argv", "what"), [
    (["calls", "list"], "calls"), (["billing", "check"], "the ledger"),
    (["network", "load", EXAMPLE], "the network"), (["network", "export"], "the network"),
])
def test_a_read_command_on_an_unmigrated_database_says_to_migrate(tmp_path, argv, what):
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "callbroker.settings"}
    env.pop("DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-m", "callbroker.cli", *argv], env=env, capture_output=True,
                            text=True, timeout=120, check=False, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 1, result
    assert f"Cannot read {what} (" in result.stderr
    assert "Is the database migrated? Run: callbroker migrate" in result.stderr
    assert "Traceback" not in result.stderr
