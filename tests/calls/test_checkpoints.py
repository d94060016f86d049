"""``callbroker.checkpoints``: SQLite's WAL is copied back by one background thread per database.

Each test works on its own SQLite file, written by a plain connection whose own automatic checkpoints
are off, so that whatever reaches the database file got there through the checkpointer.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from callbroker import checkpoints
from callbroker.checkpoints import Checkpointer


def _database(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")  # only the checkpointer copies the WAL back
    con.execute("CREATE TABLE call (id INTEGER PRIMARY KEY, sid TEXT UNIQUE, note TEXT)")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the empty table in the database file, the WAL empty
    return con


def _write(con: sqlite3.Connection, first: int, count: int) -> None:
    for i in range(first, first + count):  # one transaction each, as webhooks commit
        con.execute("INSERT INTO call (sid, note) VALUES (?, ?)", (f"CA{i:032d}", "x" * 300))


def _rows_in_database_file_alone(path: Path, tmp_path: Path) -> int:
    """Rows a copy of the database file holds without its WAL (what has been checkpointed)."""
    copy = tmp_path / f"copy-{os.urandom(4).hex()}.sqlite3"
    shutil.copyfile(path, copy)
    with sqlite3.connect(copy) as con:
        return con.execute("SELECT count(*) FROM call").fetchone()[0]


def test_a_pass_copies_what_the_wal_holds_into_the_database_file(tmp_path):
    path = tmp_path / "db.sqlite3"
    con = _database(path)
    _write(con, 0, 200)
    assert _rows_in_database_file_alone(path, tmp_path) == 0  # all of it still in the WAL

    checkpointer = Checkpointer(str(path), restart_frames=10**9)
    result = checkpointer.run_once()

    assert result.active and result.frames > 0 and result.copied == result.frames
    assert not result.completed_under_lock
    assert _rows_in_database_file_alone(path, tmp_path) == 200
    checkpointer.close()


def test_a_large_wal_is_completed_under_the_writers_lock_then_starts_over(tmp_path):
    path = tmp_path / "db.sqlite3"
    con = _database(path)
    _write(con, 0, 100)
    checkpointer = Checkpointer(str(path), restart_frames=20)
    writers = os.open(f"{path}-writers.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(writers, fcntl.LOCK_EX)  # a webhook is writing
    results = []
    thread = threading.Thread(target=lambda: results.append(checkpointer.run_once()), daemon=True)
    try:
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the completing pass must wait for the writers' lock"
    finally:
        fcntl.flock(writers, fcntl.LOCK_UN)
    thread.join(10)
    assert not thread.is_alive()
    (result,) = results
    assert result.completed_under_lock and result.copied == result.frames >= 20
    wal_before = result.frames

    _write(con, 100, 1)  # the next commit starts the WAL over from its beginning
    after = checkpointer.run_once()
    assert 0 < after.frames < wal_before
    assert _rows_in_database_file_alone(path, tmp_path) == 101
    os.close(writers)
    checkpointer.close()


def test_a_small_wal_never_waits_for_the_writers(tmp_path):
    path = tmp_path / "db.sqlite3"
    con = _database(path)
    _write(con, 0, 100)
    checkpointer = Checkpointer(str(path), restart_frames=10**9)
    writers = os.open(f"{path}-writers.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(writers, fcntl.LOCK_EX)  # a webhook is writing: a background pass goes on beside it
    results = []
    thread = threading.Thread(target=lambda: results.append(checkpointer.run_once()), daemon=True)
    try:
        thread.start()
        thread.join(10)
        assert not thread.is_alive(), "a pass below restart_frames must not wait for the writers' lock"
    finally:
        fcntl.flock(writers, fcntl.LOCK_UN)
        os.close(writers)
    assert results[0].copied == results[0].frames > 0 and not results[0].completed_under_lock
    assert checkpointer.completions == 0
    checkpointer.close()


def test_one_checkpointer_per_database_and_a_standby_takes_over(tmp_path):
    path = tmp_path / "db.sqlite3"
    con = _database(path)
    _write(con, 0, 10)
    first, second = Checkpointer(str(path)), Checkpointer(str(path))

    assert first.run_once().active
    assert not second.run_once().active and second.passes == 0
    first.close()  # its worker exits (a killed process's lock is released by the kernel the same way)
    assert second.run_once().active and second.active
    second.close()


def test_the_thread_keeps_up_with_a_writer_and_loses_nothing(tmp_path):
    path = tmp_path / "db.sqlite3"
    con = _database(path)
    checkpointer = Checkpointer(str(path), interval=0.01, restart_frames=50).start()
    written = 0
    try:
        for _ in range(2000):  # bounded: the assertions below tell if the thread never completed
            _write(con, written, 20)
            written += 20
            if checkpointer.completions >= 3:
                break
    finally:
        checkpointer.stop()
    assert checkpointer.completions >= 3
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert con.execute("SELECT count(*) FROM call").fetchone()[0] == written
    assert not checkpointer.active  # stopping gave the role up


def test_a_forked_child_leaves_the_parents_role_to_the_parent(tmp_path, monkeypatch):
    path = tmp_path / "db.sqlite3"
    con = _database(path)
    _write(con, 0, 10)
    parent = Checkpointer(str(path))
    assert parent.run_once().active
    monkeypatch.setattr(checkpoints, "_running", parent)

    pid = os.fork()
    if pid == 0:  # the child: its inherited checkpointer is forgotten; the parent still holds the role
        code = 0
        try:
            if checkpoints._running is not None:
                code = 1
            elif Checkpointer(str(path)).run_once().active:
                code = 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parent.active and not Checkpointer(str(path)).run_once().active  # the child's exit released nothing
    parent.close()


@pytest.mark.django_db
def test_nothing_runs_for_an_in_memory_database(monkeypatch):
    monkeypatch.setattr(checkpoints, "_running", None)
    checkpoints.ensure_running()
    assert checkpoints._running is None


def test_a_lasting_failure_is_logged_once_not_at_every_pass(tmp_path, monkeypatch, caplog):
    """A full disk fails every pass (every 0.2 s): formerly an ERROR with a traceback each time. Now the
    first failure with its traceback, and a line when checkpoints work again (``ops/repeated_failure.py``)."""
    path = tmp_path / "db.sqlite3"
    con = _database(path)
    _write(con, 0, 10)
    checkpointer = Checkpointer(str(path), interval=0.005)
    real, passes = checkpointer.run_once, []

    def full_disk_for_a_while():
        passes.append(1)
        if len(passes) <= 50:
            raise sqlite3.OperationalError("database or disk is full")
        return real()

    monkeypatch.setattr(checkpointer, "run_once", full_disk_for_a_while)
    with caplog.at_level("INFO", logger="callbroker.checkpoints"):
        checkpointer.start()
        try:
            deadline = time.monotonic() + 30
            while len(passes) < 60 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            checkpointer.stop()
    said = [(r.levelname, r.getMessage(), bool(r.exc_info)) for r in caplog.records
            if r.name == "callbroker.checkpoints"]
    assert len(passes) >= 60
    assert [(level, traceback) for level, _, traceback in said] == [("ERROR", True), ("WARNING", False)], said
    assert said[0][1].startswith(f"SQLite checkpoint of {path} failed: database or disk is full")
    assert said[1][1].startswith(f"SQLite checkpoint of {path} works again, after 50 failures")
