"""A durable local-disk spool for call events received while the database can't be written.

One file per call, ``<data dir>/spool/<CallSid>.jsonl``: each webhook of a call handled in degraded
mode appends one JSON line (kind, parameters, URL query, what we answered and decided, when) and the
line is flushed and fsync'ed before the caller hears anything. The file's existence also marks the call
as degraded, for every worker and process on the node: its later webhooks are handled from memory too,
so a call never switches between two records halfway.

``replay`` moves the events into the database when it is back and deletes a call's file once the call
has ended there (see ``calls/replay.py``).

**When the disk refuses a write** (full, read-only, quota) the caller is answered all the same; the line
is kept in this process's memory, in order, and written out before anything else as soon as the disk
takes writes again: on the process's next spooled webhook, or its replayer's next pass (every few
seconds). A write that fails halfway is cut back (``ftruncate``) so no torn line is left to be read. The
call's file is still created when possible (a full disk usually still has inodes): an empty file marks
the call as degraded for the node's other processes, and the replayer keeps it until the lines arrive;
``.in-memory-<pid>`` says a process holds lines (``callbroker spool status`` lists them). What reached
the disk is replayed meanwhile (freeing room for the rest): a call's events may arrive in any order
(``calls/replay.py``). Lines in memory are lost if the process dies before the disk frees up; beyond
``MEMORY_LIMIT`` lines a new line is not kept but logged whole at CRITICAL level (the only copy left)
and counted in ``callbroker_spool_events_dropped_total``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
import time
from collections import deque
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from callbroker.ops import metrics

log = logging.getLogger(__name__)

_SAFE_SID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MEMORY_LIMIT = 10_000  # lines kept in memory when the disk refuses them (a few MB)
MEMORY_MARK_STALE_S = 4 * 3600  # a mark this old is ignored (a reused pid)
_overflow: deque[tuple[str, str]] = deque()
_lock = threading.Lock()


def directory(*, create: bool = True) -> Path:
    path = Path(settings.DATA_DIR) / "spool"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _file(call_sid: str, *, create_dir: bool = True) -> Path:
    if not _SAFE_SID.match(call_sid):
        raise ValueError(f"CallSid {call_sid[:70]!r} can't name a spool file")
    return directory(create=create_dir) / f"{call_sid.replace(':', '_')}.jsonl"


def path_of(call_sid: str) -> Path:
    """The spool file of a call (it may not exist)."""
    return _file(call_sid, create_dir=False)


def is_held_in_memory(call_sid: str) -> bool:
    """Some of this call's lines wait in this process's memory (the disk refused them)."""
    return bool(_overflow) and any(sid == call_sid for sid, _ in list(_overflow))


def is_degraded(call_sid: str) -> bool:
    """True when this call's events are being spooled (its file exists or lines wait in memory)."""
    if not call_sid or not _SAFE_SID.match(call_sid):
        return False
    if is_held_in_memory(call_sid):
        return True
    # One stat() on every webhook, no mkdir; os.path rather than pathlib: this runs on every webhook.
    return os.path.exists(os.path.join(settings.DATA_DIR, "spool", f"{call_sid.replace(':', '_')}.jsonl"))


def append(call_sid: str, record: dict) -> None:
    """Write one event durably (flush + fsync). Never raises: a refused disk keeps it in memory."""
    record = {"received_at": timezone.now().isoformat(), **record}
    line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
    with _lock:
        _flush_overflow()
        if _overflow:
            _keep(call_sid, line)
            return
        try:
            _write(call_sid, line)
        except OSError as exc:
            log.error("spool write failed for %s (%s); keeping the event in memory", call_sid, exc)
            _keep(call_sid, line)


def _keep(call_sid: str, line: str) -> None:
    """Hold a line the disk refused (the file, if it could be created, marks the call meanwhile)."""
    if len(_overflow) >= MEMORY_LIMIT:
        metrics.SPOOL_EVENTS_DROPPED.inc()
        log.critical("spool full on disk and in memory (%s lines): event of %s NOT kept; its only copy is "
                     "this line: %s", len(_overflow), call_sid, line.rstrip("\n"))
        return
    global _holding_mark
    for path_of_mark in (lambda: _file(call_sid), _memory_mark):  # empty files: inodes, even on a full disk
        try:
            path = path_of_mark()  # may have to make the directory, which a full disk refuses
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o640))
            os.utime(path)
        except OSError:
            pass
    _holding_mark = True
    _overflow.append((call_sid, line))


def _write(call_sid: str, line: str) -> None:
    """Append ``line`` and fsync it, or raise ``OSError`` leaving the file as it was (no torn line)."""
    data = line.encode()
    while True:
        fd = os.open(_file(call_sid), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        fcntl.flock(fd, fcntl.LOCK_EX)  # other workers' writes, and the replayer (which reads, then deletes)
        if os.fstat(fd).st_nlink:
            break
        os.close(fd)  # replayed and deleted while we waited: a new file
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            # A process killed in the middle of a line left it torn: end it, so that this line is a line of
            # its own (the torn one is skipped when read), not glued to the fragment and lost with it.
            data = b"\n" + data
        try:
            written = 0
            while written < len(data):  # a full disk can take part of a write without an error
                written += os.write(fd, data[written:])
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def _flush_overflow() -> None:
    while _overflow:
        call_sid, line = _overflow[0]
        try:
            _write(call_sid, line)
        except OSError:
            return
        _overflow.popleft()
    global _holding_mark
    if _holding_mark:
        try:
            _memory_mark().unlink(missing_ok=True)
            _holding_mark = False
        except OSError:
            pass


def _memory_mark() -> Path:
    """``.in-memory-<pid>``: this process holds spool lines in memory (the disk refused them)."""
    return directory() / f".in-memory-{os.getpid()}"


_holding_mark = False  # this process created its mark


def held_in_memory() -> list[int]:
    """Processes of this node that hold spool lines in memory (live ones; marks of dead ones are removed)."""
    pids = []
    for mark in directory(create=False).glob(".in-memory-*"):
        try:
            pid = int(mark.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
            if time.time() - mark.stat().st_mtime < MEMORY_MARK_STALE_S:
                pids.append(pid)
                continue
        except ProcessLookupError:
            log.error("spool: process %s died holding events in memory; they are lost", mark.name.rsplit("-", 1)[1])
        except (ValueError, OSError):
            pass
        mark.unlink(missing_ok=True)
    return pids


def flush_memory() -> int:
    """Try to write events held in memory to disk; returns how many still wait in memory."""
    with _lock:
        _flush_overflow()
        return len(_overflow)


def read(path: Path) -> list[dict]:
    """The events of one spool file, skipping a torn last line (a crash mid-write)."""
    events = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("spool %s line %s is unreadable; skipped", path.name, number)
    return events


def files() -> list[Path]:
    found = []
    for path in directory(create=False).glob("*.jsonl"):
        try:
            found.append((path.stat().st_mtime, path))
        except FileNotFoundError:  # replayed meanwhile by another process
            continue
    return [path for _, path in sorted(found)]


def depth() -> int:
    """Events waiting in the spool (on disk and in memory) — exported as a metric."""
    try:
        on_disk = sum(sum(1 for _ in p.open()) for p in files())
    except OSError:
        on_disk = 0
    return on_disk + len(_overflow)
