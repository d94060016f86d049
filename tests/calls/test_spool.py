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
    path = spool.directory() / f"{SID_A}.jsonl"
    path.touch()  # another process holds this call's events in memory
    assert replay.replay_ready().waiting == 1 and path.exists()
    old = time.time() - replay.STALE_AFTER.total_seconds() - 60
    os.utime(path, (old, old))
    replay.replay_ready()
    assert not path.exists()


def test_a_dead_process_mark_does_not_hold_the_replay_forever(disk):
    spool.directory()
    (spool.directory() / ".in-memory-999999999").touch()  # no such process
    assert spool.held_in_memory() == []
    assert not (spool.directory() / ".in-memory-999999999").exists()
