"""A durable local-disk spool for call events received while the database can't be written.

One file per call, ``<data dir>/spool/<CallSid>.jsonl``: each webhook of a call handled in degraded
mode appends one JSON line (kind, parameters, URL query, what we answered and decided, when) and the
line is flushed and fsync'ed before the caller hears anything. The file's existence also marks the call
as degraded, for every worker and process on the node: its later webhooks are handled from memory too,
so a call never switches between two records halfway.

``replay`` moves finished calls into the database when it is back (see ``calls/replay.py``). If the disk
itself fails (full, read-only), lines are kept in memory (bounded) and written out as soon as possible.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections import deque
from pathlib import Path

from django.conf import settings
from django.utils import timezone

log = logging.getLogger(__name__)

_SAFE_SID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MEMORY_LIMIT = 10_000  # lines kept in memory when the disk refuses them
_overflow: deque[tuple[str, str]] = deque(maxlen=MEMORY_LIMIT)
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


def is_degraded(call_sid: str) -> bool:
    """True when this call's events are being spooled (its file exists or lines wait in memory)."""
    if not call_sid or not _SAFE_SID.match(call_sid):
        return False
    if _overflow and any(sid == call_sid for sid, _ in list(_overflow)):
        return True
    return _file(call_sid, create_dir=False).exists()  # one stat() on every webhook: no mkdir here


def append(call_sid: str, record: dict) -> None:
    """Write one event durably (flush + fsync). Never raises: a refused disk keeps it in memory."""
    record = {"received_at": timezone.now().isoformat(), **record}
    line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
    with _lock:
        _flush_overflow()
        if _overflow:
            _overflow.append((call_sid, line))
            return
        try:
            _write(call_sid, line)
        except OSError as exc:
            log.error("spool write failed for %s (%s); keeping the event in memory", call_sid, exc)
            _overflow.append((call_sid, line))


def _write(call_sid: str, line: str) -> None:
    fd = os.open(_file(call_sid), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
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
