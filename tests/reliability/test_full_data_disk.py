"""A full data disk under a server on the embedded SQLite: every caller is answered, no worker dies.

Given a real server (two gunicorn workers) whose ``CALLBROKER_DATA_DIR`` is a small tmpfs holding the
migrated database and the demo network, answering calls; when that disk is filled up and calls come in,
then every webhook is answered with TwiML the carrier plays (routed from memory: SQLite's "disk is full"
is an outage to the call path), no worker is killed, ``/readyz`` says the database's disk is full, and
``/metrics`` still answers.

Formerly the workers' metric files lived on that disk too (``<data dir>/prometheus``), sparse and mapped
into memory: the first new page a webhook touched got SIGBUS, killing the worker, and every worker
started in its place, in a loop; the caller heard the carrier's error. Now they are on ``/dev/shm``
(``ops/metric_files.py``); and where an operator puts them on the full disk anyway
(``PROMETHEUS_MULTIPROC_DIR``), their blocks are allocated before they are mapped, so the disk refuses
with an error the metrics swallow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import httpx
import pytest

from callbroker.ops import metric_files
from callbroker.ops.server import start_server, stop_server
from callbroker.sim.emulator import Carrier
from tests.e2e.conftest import TOKEN, free_port
from tests.reliability.conftest import DEMO, fill, tmpfs

pytestmark = pytest.mark.e2e

PLUMBING = "+15125550101"  # the demo's Austin plumbing number
CALLERS = iter(f"+1512333{n:04d}" for n in range(10_000))


def callbroker(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "callbroker.cli", *args], env=env, check=True, capture_output=True,
                   timeout=120)


def place_calls(base_url: str, count: int) -> list:
    with Carrier(base_url, TOKEN, seed=3, timeout=15.0) as carrier:
        return [carrier.place_call(PLUMBING, next(CALLERS), params={"FromZip": "78701", "FromState": "TX"})
                for _ in range(count)]


def answered_with_twiml(record) -> list[str]:
    """What went wrong on one call as the carrier saw it (nothing: every webhook answered with TwiML)."""
    problems = [*record.errors, *record.error_codes, *record.issues]
    if record.used_fallback or record.heard_error:
        problems.append("the carrier used the Fallback URL or played its error")
    for request in record.requests:
        if request.status_code != 200:
            problems.append(f"{request.url} answered {request.status_code}: {request.body[:200]}")
        elif request.body.strip():
            try:
                root = ET.fromstring(request.body)
            except ET.ParseError as exc:
                problems.append(f"{request.url} answered what is not XML ({exc}): {request.body[:200]}")
                continue
            if root.tag != "Response":
                problems.append(f"{request.url} answered <{root.tag}>, not TwiML")
    return problems


@pytest.mark.parametrize("metrics_dir", ["default", "on the full disk"])
def test_a_full_data_disk_answers_every_caller_and_kills_no_worker(tmp_path, metrics_dir):
    data_dir = tmp_path / "data"
    with tmpfs(data_dir, "4m"):
        env = {**os.environ, "CALLBROKER_DATA_DIR": str(data_dir), "DATABASE_URL": "", "REDIS_URL": "",
               "TWILIO_AUTH_TOKEN": TOKEN, "CALLBROKER_LOG_LEVEL": "INFO",
               "CALLBROKER_FALLBACK_NUMBER": "+15125550999"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        callbroker(env, "migrate", "--verbosity", "0")
        callbroker(env, "network", "load", str(DEMO))
        if metrics_dir == "on the full disk":  # the server's only: the command line counts nothing in files
            env["PROMETHEUS_MULTIPROC_DIR"] = str(data_dir / "prometheus")
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        log = tmp_path / "server.log"  # off the full disk, so that it tells all
        server = start_server("127.0.0.1", port, 2, env=env, log_path=log)
        try:
            filled = fill(data_dir)  # before the first webhook: no page of the metrics touched yet
            during = place_calls(base_url, 6)
            readyz = httpx.get(f"{base_url}/readyz", timeout=10)
            scraped = httpx.get(f"{base_url}/metrics", timeout=10)
            (data_dir / "filler").unlink()  # room again
            after = place_calls(base_url, 2)
            scraped_after = httpx.get(f"{base_url}/metrics", timeout=10)
        finally:
            stop_server(server)
            server_log = log.read_text(errors="replace")
    assert filled > 0
    problems = {r.call_sid: answered_with_twiml(r) for r in during + after}
    assert not any(problems.values()), f"{problems}\n{server_log[-3000:]}"
    assert "handled from memory" in server_log  # the database did refuse: these were routed from memory
    assert "SIGBUS" not in server_log and "was sent" not in server_log, server_log[-3000:]
    assert readyz.status_code == 503
    assert "is full" in readyz.json()["checks"]["database"]["error"]
    assert scraped.status_code == 200 and scraped_after.status_code == 200
    assert "callbroker_webhook_duration_seconds_count" in scraped_after.text
    if metrics_dir == "default":  # a directory of the server's own on /dev/shm, counting all the while
        assert "callbroker_webhook_duration_seconds_count" in scraped.text
        owners = metric_files.SHARED_MEMORY.glob(f"{metric_files.PREFIX}*/{metric_files.OWNER_FILE}")
        left = [owner for owner in owners if owner.read_text().strip() == str(server.pid)]
        assert not left, "the server's metrics directory outlived it"
    else:  # refused, said, and swallowed; written again once there is room
        assert "writing metrics to" in server_log and "works again" in server_log, server_log[-3000:]

