"""A locked SQLite database: a webhook still reaches degraded mode within seconds.

Given the real server (gunicorn, 2 workers) on the embedded SQLite database, when another program holds the
database's write lock (an ``sqlite3`` shell in a transaction, a long command, a process stopped in the middle
of one) and calls arrive, then each inbound webhook gives up after ``CALLBROKER_DB_LOCK_TIMEOUT_MS`` (2 s by
default in the server), answers from memory with a ``<Dial>`` to the campaign's first line and spools the
call; once the lock is gone the calls are replayed into the database. Before, a webhook waited SQLite's busy
timeout (20 s) three times and the other worker queued on the writers' lock behind it for good: the caller
heard the carrier's error, gunicorn killed the workers, and the Fallback URL queued behind them.

The same bound holds for the writers' own queue (``db.write_lock``): a writer that holds it and doesn't go on
holds no webhook past the limit.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from twilio.request_validator import RequestValidator

from callbroker.db import writers_lock_path
from callbroker.ops.server import start_server, stop_server
from tests.e2e.conftest import HERE as E2E_DIR
from tests.e2e.conftest import TOKEN, free_port

PLUMBING = "+15125550001"  # tests/e2e/network.yaml: a tracking number of campaign e2e-plumbing
PIPES_A = "+15125550101"  # its first line, dialled from memory


@pytest.fixture()
def sqlite_server(tmp_path):
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path), "TWILIO_AUTH_TOKEN": TOKEN, "DATABASE_URL": "",
           "CALLBROKER_LOG_LEVEL": "INFO"}
    env.pop("CALLBROKER_DB_LOCK_TIMEOUT_MS", None)  # the server's own default
    for args in (("migrate", "--verbosity", "0"), ("network", "load", str(E2E_DIR / "network.yaml"))):
        subprocess.run([sys.executable, "-m", "callbroker.cli", *args], env=env, check=True, capture_output=True)
    port = free_port()
    proc = start_server("127.0.0.1", port, 2, env=env, log_path=tmp_path / "server.log")
    yield f"http://127.0.0.1:{port}", tmp_path / "callbroker.sqlite3"
    stop_server(proc)


def post(base_url: str, path: str, params: dict[str, str]) -> httpx.Response:
    url = base_url + path
    headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, params)}
    return httpx.post(url, data=params, headers=headers, timeout=30)


def inbound(n: int) -> dict[str, str]:
    return {"CallSid": "CA" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32, "From": f"+1737555{n:04d}",
            "To": PLUMBING, "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01",
            "FromZip": "78701"}


def recorded(database: Path, sid: str) -> int:
    with sqlite3.connect(database, timeout=30) as conn:
        return conn.execute("SELECT count(*) FROM calls_call WHERE call_sid = ?", [sid]).fetchone()[0]


def wait_recorded(database: Path, sids: list[str], timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(recorded(database, sid) for sid in sids):
        time.sleep(0.5)
    return [recorded(database, sid) for sid in sids]


def answered_in_time(base_url: str, calls: list[dict[str, str]]) -> list[tuple[httpx.Response, float]]:
    def place(params: dict[str, str]) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        response = post(base_url, "/carriers/twilio/voice", params)
        return response, time.monotonic() - started

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(place, calls))


def test_calls_while_another_program_holds_the_write_lock_are_answered_from_memory_in_seconds(sqlite_server):
    base_url, database = sqlite_server
    calls = [inbound(n) for n in range(4)]  # more calls than workers: the second of each worker queues
    locked, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        conn = sqlite3.connect(database, isolation_level=None, timeout=30)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(90)
        conn.execute("ROLLBACK")
        conn.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert locked.wait(10)
        answers = answered_in_time(base_url, calls)
    finally:
        release.set()
        holder.join(30)
    for response, waited in answers:
        assert response.status_code == 200
        assert "<Number" in response.text and PIPES_A in response.text  # dialled from memory
        assert waited < 10, f"answered after {waited:.1f} s (the carrier gives up at 15 s)"
    assert wait_recorded(database, [c["CallSid"] for c in calls]) == [1, 1, 1, 1]  # replayed once the lock went


def test_a_writer_stuck_in_the_writers_queue_holds_no_webhook_past_the_limit(sqlite_server):
    base_url, database = sqlite_server
    calls = [inbound(10 + n) for n in range(3)]
    fd = os.open(writers_lock_path(str(database)), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a writer of the call path that took its turn and stopped
    try:
        answers = answered_in_time(base_url, calls)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    for response, waited in answers:
        assert response.status_code == 200
        assert "<Number" in response.text and PIPES_A in response.text
        assert 1.5 < waited < 10, f"answered after {waited:.1f} s"  # it did wait for its turn, 2 s
    assert wait_recorded(database, [c["CallSid"] for c in calls]) == [1, 1, 1]


# --------------------------------------------------------------------------- the wait itself (db._take)


def _held_by_another_writer(tmp_path: Path) -> tuple[int, int]:
    """(the other writer's descriptor, holding the lock; this writer's descriptor of the same file)."""
    path = str(tmp_path / "db.sqlite3-writers.lock")
    other = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(other, fcntl.LOCK_EX)
    return other, os.open(path, os.O_RDWR)


def _is_held(fd: int) -> bool:
    probe = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)  # a description of its own: flock conflicts with it
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(probe)
    return False


@pytest.mark.parametrize("where", ["main thread", "other thread"])
def test_a_wait_for_the_writers_lock_ends_at_the_limit_and_leaves_no_alarm(tmp_path, where):
    import signal

    from django.db import OperationalError

    from callbroker.db import _take

    other, mine = _held_by_another_writer(tmp_path)
    outcome: list = []

    def wait() -> None:
        started = time.monotonic()
        try:
            _take(mine, 300)
        except OperationalError as exc:
            outcome.append((str(exc), time.monotonic() - started))

    if where == "main thread":
        wait()
    else:
        worker = threading.Thread(target=wait)
        worker.start()
        worker.join(10)
    message, waited = outcome[0]
    assert "not free within 300 ms" in message and "database is locked" not in message  # not retried
    assert 0.25 < waited < 2
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    os.close(other)  # the other writer's lock goes with its descriptor
    os.close(mine)


def test_a_lock_released_during_the_wait_is_taken_at_once(tmp_path):
    from callbroker.db import _take

    other, mine = _held_by_another_writer(tmp_path)
    threading.Timer(0.2, fcntl.flock, (other, fcntl.LOCK_UN)).start()
    started = time.monotonic()
    _take(mine, 5000)
    assert time.monotonic() - started < 1  # handed over when released, not at the end of the limit
    assert _is_held(mine)
    os.close(other)
    os.close(mine)


def test_the_limit_is_one_for_the_thread_queue_and_the_writers_queue_together(tmp_path, settings, monkeypatch):
    """Another thread of the process (the spool replayer) waits for the writers' lock first: a webhook behind
    it gives up at the limit from when it began waiting, not after the limit twice over."""
    from django.db import OperationalError

    from callbroker import db

    other, mine = _held_by_another_writer(tmp_path)
    settings.DB_LOCK_TIMEOUT_MS = 600
    monkeypatch.setattr(db, "_lock_fd", lambda: mine)
    outcomes: dict[str, float] = {}

    def wait(who: str) -> None:
        started = time.monotonic()
        try:
            with db.write_lock():
                pass
        except OperationalError:
            outcomes[who] = time.monotonic() - started

    replayer = threading.Thread(target=wait, args=("replayer",))
    replayer.start()
    time.sleep(0.1)
    wait("webhook")
    replayer.join(5)
    assert 0.5 < outcomes["replayer"] < 1.0
    assert 0.3 < outcomes["webhook"] < 0.9, outcomes  # ~0.5 s left after the replayer's turn, not 1.1 s
    os.close(other)
    os.close(mine)
