"""The degraded-mode spool when the disk refuses writes: nothing is lost, nothing is torn, nothing replayed early.

Given a spool directory whose writes fail (ENOSPC, as on a full disk), when calls are spooled, then the
events wait in memory in order, the call's (empty) file still marks it as degraded, the replay waits, and
once the disk takes writes again every event reaches the file, whole and in order. The reliability suite
does the same on a real full tmpfs (tests/reliability/test_faults.py).
"""

from __future__ import annotations

import errno
import logging
import os
import time

import pytest

from callbroker.calls import replay, spool
from callbroker.ops import metrics

SID_A, SID_B = "CA" + "a1" * 16, "CA" + "b2" * 16


class Disk:
    """Makes writes into the spool directory fail like a full disk (``partial``: after taking some bytes)."""

    def __init__(self, monkeypatch, directory) -> None:
        self.directory = str(directory)
        self.full = False
        self.partial = 0
        real_write = os.write

        def write(fd: int, data: bytes) -> int:
            if self.full and os.readlink(f"/proc/self/fd/{fd}").startswith(self.directory):
                if self.partial:
                    taken, self.partial = real_write(fd, data[: self.partial]), 0
                    return taken
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, data)

        monkeypatch.setattr(spool.os, "write", write)


@pytest.fixture
def disk(settings, tmp_path, monkeypatch):
    settings.DATA_DIR = tmp_path
    monkeypatch.setattr(spool, "_overflow", spool.deque())
    monkeypatch.setattr(spool, "_holding_mark", False)
    return Disk(monkeypatch, tmp_path / "spool")


def event(n: int) -> dict:
    return {"kind": "status", "params": {"CallSid": "x"}, "n": n}


def test_events_the_disk_refuses_wait_in_memory_and_reach_the_file_in_order(disk):
    disk.full = True
    spool.append(SID_A, event(1))
    spool.append(SID_B, event(2))
    spool.append(SID_A, event(3))
    files = {p.stem: p for p in spool.files()}
    assert set(files) == {SID_A, SID_B} and all(p.stat().st_size == 0 for p in files.values())
    assert spool.is_degraded(SID_A) and spool.is_degraded(SID_B)
    assert spool.held_in_memory() == [os.getpid()] and spool.depth() == 3
    report = replay.replay_ready()  # no database touched: it waits for the memory
    assert report.calls == 0 and set(files) == {p.stem for p in spool.files()}

    disk.full = False
    assert spool.flush_memory() == 0
    assert [e["n"] for e in spool.read(files[SID_A])] == [1, 3]
    assert [e["n"] for e in spool.read(files[SID_B])] == [2]
    assert spool.held_in_memory() == []


def test_a_write_the_disk_takes_halfway_leaves_no_torn_line(disk):
    spool.append(SID_A, event(1))
    size = (spool.directory() / f"{SID_A}.jsonl").stat().st_size
    disk.full, disk.partial = True, 7
    spool.append(SID_A, event(2))
    path = spool.directory() / f"{SID_A}.jsonl"
    assert path.stat().st_size == size  # the 7 bytes were cut back
    disk.full = False
    spool.append(SID_A, event(3))
    assert [e["n"] for e in spool.read(path)] == [1, 2, 3]


def test_beyond_the_memory_limit_an_event_is_logged_whole_and_counted_never_dropped_silently(disk, monkeypatch,
                                                                                                caplog):
    monkeypatch.setattr(spool, "MEMORY_LIMIT", 2)
    dropped = metrics.SPOOL_EVENTS_DROPPED._value.get()
    disk.full = True
    with caplog.at_level(logging.CRITICAL, logger="callbroker.calls.spool"):
        for n in (1, 2, 3):
            spool.append(SID_A, event(n))
    assert len(spool._overflow) == 2  # the first two are kept
    assert metrics.SPOOL_EVENTS_DROPPED._value.get() == dropped + 1
    assert '"n":3' in caplog.text and "NOT kept" in caplog.text
    disk.full = False
    assert spool.flush_memory() == 0
    assert [e["n"] for e in spool.read(spool.directory() / f"{SID_A}.jsonl")] == [1, 2]


def test_an_empty_file_marks_a_call_until_it_is_stale(disk):
    """Stale: waited ``STALE_AFTER`` with the database reachable, counted from the first pass that left it
    (not from the file's last write: an outage longer than that must not make the first pass give up)."""
    path = spool.directory() / f"{SID_A}.jsonl"
    path.touch()  # another process holds this call's events in memory
    old = time.time() - replay.STALE_AFTER.total_seconds() - 60
    os.utime(path, (old, old))  # written before a long outage
    assert replay.replay_ready().waiting == 1 and path.exists()
    replay._waiting_since[path.name] -= replay.STALE_AFTER  # six hours of passes later
    replay.replay_ready()
    assert not path.exists() and path.name not in replay._waiting_since


def test_a_file_left_from_long_ago_is_given_up_at_once(disk):
    path = spool.directory() / f"{SID_A}.jsonl"
    path.touch()
    old = time.time() - replay.STALE_LEFTOVER.total_seconds() - 60
    os.utime(path, (old, old))
    replay.replay_ready()
    assert not path.exists()


def test_a_dead_process_mark_does_not_hold_the_replay_forever(disk):
    spool.directory()
    (spool.directory() / ".in-memory-999999999").touch()  # no such process
    assert spool.held_in_memory() == []
    assert not (spool.directory() / ".in-memory-999999999").exists()


def test_a_line_torn_by_a_killed_writer_does_not_take_the_next_event_with_it(disk):
    spool.append(SID_A, event(1))
    path = spool.directory() / f"{SID_A}.jsonl"
    with path.open("ab") as handle:
        handle.write(b'{"kind":"dial","params":{"CallSid":"x"},"n":')  # a worker killed in the middle of a line
    spool.append(SID_A, event(3))  # the carrier's retry of it, on another worker
    assert [e["n"] for e in spool.read(path)] == [1, 3]


def test_a_replayer_holding_a_deleted_file_leaves_the_new_one_alone(disk, monkeypatch):
    """Another replayer deleted the file after this one opened it; a late webhook made a new one: this
    replayer's lock is on the deleted file, so it must not read or delete the new one by its path."""
    path = spool.directory() / f"{SID_A}.jsonl"
    spool.append(SID_A, event(1))
    real_flock = replay.fcntl.flock
    done = []

    def meanwhile(handle, operation):  # the module's flock: the spool's own writes come through here too
        real_flock(handle, operation)
        if not done:
            done.append(True)
            path.unlink()  # the other replayer's pass
            spool.append(SID_A, event(2))  # a late webhook: a new file

    monkeypatch.setattr(replay.fcntl, "flock", meanwhile)
    report = replay.ReplayReport()
    replay._replay_file(path, report, now=replay.dt.datetime.now(replay.dt.UTC), force=False)
    monkeypatch.setattr(replay.fcntl, "flock", real_flock)
    assert [e["n"] for e in spool.read(path)] == [2]  # kept for the next pass


def test_the_first_event_of_an_outage_on_a_full_disk_without_the_directory_is_kept_in_memory(
        disk, monkeypatch, caplog):
    """The directory is made at start-up; if it is missing anyway and the full disk refuses to make it,
    the event waits in memory (it used to raise out of the webhook: a 500, the event gone)."""
    real_mkdir = spool.Path.mkdir

    def full(self, *args, **kwargs):
        if self.name == "spool":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(spool.Path, "mkdir", full)
    spool.append(SID_A, event(1))  # does not raise
    assert [sid for sid, _ in spool._overflow] == [SID_A]


def test_a_pass_stopped_by_the_outage_does_not_start_the_wait(disk, monkeypatch):
    """The replayer runs all through an outage; a pass that the outage stops must not count as waiting, or
    the first pass after an outage longer than ``STALE_AFTER`` would give the file up at once."""
    from django.db import OperationalError

    spool.append(SID_A, event(1))
    path = spool.directory() / f"{SID_A}.jsonl"

    def database_down(*args, **kwargs):
        raise OperationalError("connection refused (the test's outage)")

    monkeypatch.setattr(replay, "_replay_events", database_down)
    assert replay.replay_ready().errors and path.exists()
    assert path.name not in replay._waiting_since


def test_a_deadlock_is_retried_and_the_pass_goes_on_but_a_locked_sqlite_database_stops_it(disk, monkeypatch,
                                                                                          caplog):
    """A transaction PostgreSQL stopped in a deadlock means the database is up: the file is replayed again
    (three runs in all), then waits alone while the pass goes on. SQLite's "database is locked" (its one write
    lock held past the busy timeout, by a writer that may not let go) stops the pass as an outage, as before:
    every other file would wait the busy timeout for the same lock (tests/postgres/test_replay_deadlock.py: a
    real deadlock)."""
    import sqlite3

    import psycopg
    from django.db import OperationalError

    from callbroker.calls import services

    monkeypatch.setattr(replay, "_waiting_since", {})
    monkeypatch.setattr(replay, "_rests", {})
    sids = [SID_A, SID_B, "CA" + "c3" * 16]
    for n, sid in enumerate(sids):
        spool.append(sid, event(n))
        os.utime(spool.path_of(sid), (time.time() - 300 + n,) * 2)  # replayed in this order
    tried = []

    def replay_events(events, **kwargs):
        sid = sids[events[0]["n"]]
        tried.append(sid)
        cause = psycopg.errors.DeadlockDetected("deadlock detected") if sid == SID_A \
            else sqlite3.OperationalError("database is locked")
        raise OperationalError(str(cause)) from cause  # as Django raises what the driver raised

    monkeypatch.setattr(replay, "_replay_events", replay_events)
    with caplog.at_level(logging.INFO, logger="callbroker.calls.replay"):
        report = replay.replay_ready()
    assert tried == [SID_A] * services.TRANSIENT_RETRIES + [SID_B]  # the third file: after the outage
    assert [error.partition(": ")[2] for error in report.errors] == ["deadlock detected",
                                                                     "database is locked"]
    rests = [(name, rest.next_at) for name, rest in replay._rests.items()]
    assert rests == [(f"{SID_A}.jsonl", 0.0)]  # waits as any waiting file: tried again at the next pass
    assert all(spool.path_of(sid).exists() for sid in sids)
    assert any("this pass goes on with the other files" in r.getMessage() for r in caplog.records)


def test_spool_status_makes_no_directory(settings, tmp_path):
    """Run by root, a directory it made would be root's, and the service could then not write its spool."""
    import io

    from django.core.management import call_command

    settings.DATA_DIR = tmp_path
    out = io.StringIO()
    call_command("spool", "status", stdout=out)
    assert out.getvalue().startswith(f"spool: {tmp_path / 'spool'}  calls: 0  events: 0")
    assert not (tmp_path / "spool").exists()


def test_a_replay_of_one_call_says_one_call(monkeypatch):
    """A count of one is in the singular: ``replayed 1 calls (1 events …)`` read as a mistake in the figures."""
    import io

    from django.core.management import call_command

    monkeypatch.setattr(replay, "replay_ready", lambda force=False: replay.ReplayReport(calls=1, events=1))
    out = io.StringIO()
    call_command("spool", "replay", stdout=out)
    assert out.getvalue().startswith("replayed 1 call (1 event, 0 already recorded); 0 still in progress")
