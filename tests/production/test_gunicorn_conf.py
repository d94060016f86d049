"""The gunicorn settings module's fork hook: what the master loaded is frozen out of the collector's reach.

Given the settings module gunicorn is started with (``ops/server.py``), when gunicorn reads it and the
master is about to fork a worker, then every object alive in the master is in the permanent generation:
a worker's collections never walk the ZIP table, the snapshot or Django's set-up it shares with the master.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from callbroker.ops.server import GUNICORN_CONFIG_MODULE, gunicorn_command

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
