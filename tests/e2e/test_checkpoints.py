"""The served workers checkpoint SQLite's WAL in a background thread (``callbroker/checkpoints.py``)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.e2e.test_call_flow import new_caller
from tests.production.test_observability import parse_metrics, total


def _passes(server) -> float:
    return total(parse_metrics(httpx.get(server.base_url + "/metrics", timeout=10).text),
                 "callbroker_sqlite_checkpoint_passes_total")


def test_the_workers_checkpoint_sqlite_in_the_background(server, carrier):
    carrier.place_call("+15125559876", new_caller())  # a first webhook starts the worker's checkpointer
    role_lock = Path(server.env["CALLBROKER_DATA_DIR"]) / "callbroker.sqlite3-checkpointer.lock"
    if server.backend == "postgres":  # nothing to checkpoint: no thread, no lock file, no passes
        time.sleep(1)
        assert _passes(server) == 0 and not role_lock.exists()
        return
    deadline = time.monotonic() + 30
    while _passes(server) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _passes(server) > 0
    assert role_lock.exists()
