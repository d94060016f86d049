"""A durable local-disk spool for call events received while the database can't be written.

One file per call, ``<data dir>/spool/<CallSid>.jsonl``: each webhook of a call handled in degraded
mode appends one JSON line (kind, parameters, URL query, what we answered and decided, when) and the
line is flushed and fsync'ed before the caller hears anything. Each line also carries the moment it was
received on the node's monotonic clock (``boot``, ``monotonic_ns``): the replay applies a call's events
in that order (:func:`in_received_order`), which a wall clock stepped back (an NTP correction during the
outage) doesn't change, and which lines held in several processes' memory keep (below). The file's existence also marks the call
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


def holds(call_sid: str, kind: str) -> bool:
    """This node has spooled an event of ``kind`` for this call (on disk or in this process's memory)."""
    if not is_degraded(call_sid):
        return False
    marker = f'"kind":{json.dumps(kind)}'
    if any(sid == call_sid and marker in line for sid, line in list(_overflow)):
        return True
    try:
        return any(event.get("kind") == kind for event in read(path_of(call_sid)))
    except (OSError, ValueError):
        return False


def append(call_sid: str, record: dict) -> None:
    """Write one event durably (flush + fsync). Never raises: a refused disk keeps it in memory."""
    record = {"received_at": timezone.now().isoformat(), "boot": _boot_id(), "monotonic_ns": time.monotonic_ns(),
              **record}
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


def _boot_id() -> str:
    """This boot of the machine (Linux): the monotonic clock counts from it, the same for every process."""
    global _boot
    if _boot is None:
        try:
            _boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        except OSError:
            _boot = ""  # unknown: the lines are replayed in the order they are in the file
    return _boot


_boot: str | None = None


def in_received_order(events: list[dict]) -> list[dict]:
    """A call's spooled events in the order this node received them, whatever the wall clock said.

    ``received_at`` is the wall clock, which an NTP correction can step back during an outage: sorted by
    it, a Dial action or a final status could come before the inbound event that created the call, and the
    whole file would wait for it until given up. The spool appends, so the lines are in the order they were
    written; only lines the disk refused, held in several processes' memory, reach the file in the order
    those processes could write them. Each line's ``monotonic_ns`` (the node's monotonic clock: one for
    all its processes, never stepped) puts those back in order. It restarts at each boot, so it is compared
    only between consecutive lines of the same boot (``boot``); lines without it (written before it was,
    or with the boot unknown) keep their place in the file.
    """
    runs: list[list[tuple[int, dict]]] = []
    boot = object()
    for position, event in enumerate(events):
        written = event.get("boot") or None
        if written is None or written != boot or not runs:
            runs.append([])
        boot = written
        runs[-1].append((event.get("monotonic_ns", position) if written else position, event))
    return [event for run in runs for _key, event in sorted(run, key=lambda pair: pair[0])]


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
