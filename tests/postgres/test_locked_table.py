"""A database that answers but doesn't get on: a webhook still reaches degraded mode within seconds.

Given the real server (gunicorn) on PostgreSQL, when another session holds an ``ACCESS EXCLUSIVE`` lock on
the webhook log (a migration, or an operator by hand) and a call arrives, then the inbound webhook gives up
on the lock after ``CALLBROKER_DB_LOCK_TIMEOUT_MS`` (2 s by default in the server), answers the call from
memory with a ``<Dial>`` to the campaign's first line, and spools it; once the lock is gone the call is
replayed into the database. Before, the webhook waited on the lock for as long as it was held: past the
carrier's 15 s, so the caller heard the carrier's error, and the worker was killed by gunicorn's timeout.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from callbroker.ops.server import start_server, stop_server
from tests.e2e.conftest import free_port
from tests.postgres.test_redis_unreachable import PIPES_A, post



@pytest.fixture()
def server(fresh_pg):
    data_dir = Path(fresh_pg.env["CALLBROKER_DATA_DIR"])
    port = free_port()
    proc = start_server("127.0.0.1", port, 2, env={**fresh_pg.env, "CALLBROKER_LOG_LEVEL": "INFO"},
                        log_path=data_dir / "server.log")
    yield f"http://127.0.0.1:{port}"
    stop_server(proc)


def test_a_call_while_the_webhook_log_is_locked_is_answered_from_memory_in_seconds(server, fresh_pg):
    sid = "CA" + uuid.uuid4().hex
    params = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+17375550188", "To": "+15125550001",
              "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01", "FromZip": "78701"}
    locked, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with psycopg.connect(fresh_pg.url) as conn:
            conn.execute("LOCK TABLE calls_callevent IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(60)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        response = post(server, "/carriers/twilio/voice", params)
        waited = time.monotonic() - started
    finally:
        release.set()
        holder.join(30)
    assert response.status_code == 200
    assert "<Number" in response.text and PIPES_A in response.text  # dialled from memory
    assert waited < 8, f"answered after {waited:.1f} s"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not fresh_pg.value("SELECT count(*) FROM calls_call WHERE call_sid = %s",
                                                             [sid]):
        time.sleep(0.5)
    assert fresh_pg.value("SELECT count(*) FROM calls_call WHERE call_sid = %s", [sid]) == 1  # replayed
