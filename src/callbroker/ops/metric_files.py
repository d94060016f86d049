"""The workers' metric files: where they live, and written so that a metric can never take a webhook down.

Every gunicorn worker counts its metrics in files of its own (prometheus_client's multiprocess mode), which
it maps into memory (``MmapedDict``). prometheus_client makes each file 64 KiB long with ``truncate``,
which allocates nothing (a sparse file): a page gets its block on the disk only when first written through
the map, and on a full filesystem the kernel, with no block to give, answers that write with SIGBUS. The
worker dies on its first webhook after the disk filled up (a new series: the middleware's ``.labels()``),
and so does every worker started in its place, on the Fallback URL too: callers hear the carrier's error.
The rest of the product copes with a full disk (SQLite's "disk is full" is an outage: the call is routed
from memory and its events kept in memory); the metrics didn't. Hence:

- **Where** (:func:`directory`): ``PROMETHEUS_MULTIPROC_DIR`` when the environment gives it; otherwise a
  directory of this server's own on ``/dev/shm`` (``callbroker-metrics-XXXX``, made afresh at every start),
  a RAM-backed tmpfs that the data disk filling up doesn't touch — gunicorn advises the same place for its
  workers' heartbeat files, and the counters start from zero at every start anyway. It is removed when the
  server exits (:func:`remove`, gunicorn's ``on_exit``); one left behind by a server killed outright is
  removed by the next start on the host (:func:`remove_abandoned`). Where there is no writable
  ``/dev/shm`` (not Linux), ``<CALLBROKER_DATA_DIR>/prometheus`` as before.
- **Writes that fail as writes** (:func:`install`): a file's blocks are allocated (``posix_fallocate``)
  before it is mapped and before it grows, so a full filesystem (``/dev/shm`` is finite too: 64 MiB in a
  Docker container by default) refuses with ``OSError`` there, instead of SIGBUS later; and every metric
  value catches its own failures (logged once, then once a minute: ``ops/repeated_failure.py``) and tries
  again on its next use. A webhook is answered whatever happens to its metrics; the metrics of the
  moments the files refused are lost.

Only the gunicorn settings module calls this, before anything imports prometheus_client (which decides
at its import whether to write files). Stdlib at import.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import tempfile
from pathlib import Path

from callbroker.ops.repeated_failure import RepeatedFailure

log = logging.getLogger("callbroker.ops.metrics")

#: Where a server's own metrics directory goes when the environment names none (RAM-backed on Linux).
SHARED_MEMORY = Path("/dev/shm")
PREFIX = "callbroker-metrics-"
#: In a server's metrics directory: the server's (gunicorn master's) process id, so that a later start can
#: tell a directory whose server is gone.
OWNER_FILE = "server.pid"


def directory(data_dir: Path, given: str = "", shared_memory: Path = SHARED_MEMORY) -> Path:
    """The metrics directory of a server starting now, made (and emptied of a previous run's files)."""
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)  # a restarted server starts its counters from zero
        return path
    if shared_memory.is_dir() and os.access(shared_memory, os.W_OK | os.X_OK):
        remove_abandoned(shared_memory)
        try:
            path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=shared_memory))  # 0700, a name no one guessed
            (path / OWNER_FILE).write_text(f"{os.getpid()}\n")
            return path
        except OSError as exc:  # full, or read-only after all: the data directory, as where there is none
            log.warning("metrics: cannot make a directory in %s (%s); using %s", shared_memory, exc,
                        data_dir / "prometheus")
    return directory(data_dir, str(data_dir / "prometheus"))


def remove(path: Path) -> None:
    """Remove a server's own metrics directory at its exit (never one the environment named)."""
    if path.name.startswith(PREFIX) and (path / OWNER_FILE).exists():
        shutil.rmtree(path, ignore_errors=True)


def remove_abandoned(shared_memory: Path) -> None:
    """Remove the metrics directories of servers that are gone (killed outright: no ``on_exit``).

    A directory is abandoned when the process that made it no longer runs, or when it bears this very
    process's id (a container's server is process 1 at every start: it is from a previous start).
    Directories of other users are left alone.
    """
    for path in shared_memory.glob(f"{PREFIX}*"):
        try:
            if path.is_symlink() or path.stat().st_uid != os.geteuid():
                continue
            pid = int((path / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if pid == os.getpid() or not _runs(pid):
            shutil.rmtree(path, ignore_errors=True)


def _runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


# --------------------------------------------------------------------------- writing the files


def allocate(fd: int, size: int) -> None:
    """Give the file's first ``size`` bytes their blocks now (``OSError`` ENOSPC on a full filesystem)."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:  # not on macOS: there, the sparse file as prometheus_client makes it
        fallocate(fd, 0, size)


def install() -> None:
    """Make prometheus_client allocate its files before mapping them, and its values never raise.

    Call after ``PROMETHEUS_MULTIPROC_DIR`` is set and before any metric exists.
    """
    from prometheus_client import mmap_dict, values

    if getattr(values.ValueClass, "never_fails", False):
        return
    values.MmapedDict = _allocated_files(mmap_dict)
    values.ValueClass = _never_failing(values.ValueClass)


def _allocated_files(mmap_dict):
    """prometheus_client's ``MmapedDict`` with every page allocated before it is mapped."""

    class AllocatedMmapedDict(mmap_dict.MmapedDict):
        def __init__(self, filename, read_mode=False):
            if not read_mode:
                _allocate_file(filename, mmap_dict._INITIAL_MMAP_SIZE)
            super().__init__(filename, read_mode)

        def _init_value(self, key):
            encoded = key.encode("utf-8")
            size = struct.calcsize(f"i{len(encoded) + (8 - (len(encoded) + 4) % 8)}sdd")  # as the base class
            capacity = self._capacity
            while self._used + size > capacity:
                capacity *= 2
            if capacity != self._capacity:  # the base class will grow the file to this and map it again
                allocate(self._f.fileno(), capacity)
            super()._init_value(key)

    return AllocatedMmapedDict


def _allocate_file(filename: str, size: int) -> None:
    fd = os.open(filename, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        existing = os.fstat(fd).st_size
        try:
            allocate(fd, max(existing, size))  # a file of a previous process: its holes too
        except OSError:
            if existing == 0:  # an empty file would break every scrape (its header can't be read)
                os.unlink(filename)
            raise
    finally:
        os.close(fd)


def _never_failing(value_class):
    """``value_class`` (prometheus_client's file-backed value) behind a value that swallows its failures.

    A failed value is dropped and made again on its next use: it then finds its file (made again when
    the filesystem has room) and the count it last wrote there.
    """
    failures = RepeatedFailure(log, f"writing metrics to {os.environ.get('PROMETHEUS_MULTIPROC_DIR', '')}",
                               level=logging.WARNING)

    class NeverFailingValue:
        _multiprocess = True
        never_fails = True

        def __init__(self, *args, **kwargs) -> None:
            self._made = (args, kwargs)
            self._value = None
            self._attach()

        def _attach(self):
            if self._value is None:
                args, kwargs = self._made
                try:
                    self._value = value_class(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001 - a metric is not worth a call
                    failures.failed(exc)
            return self._value

        def _do(self, method: str, *args):
            value = self._attach()
            if value is None:
                return None
            try:
                result = getattr(value, method)(*args)
            except Exception as exc:  # noqa: BLE001
                self._value = None
                failures.failed(exc)
                return None
            failures.succeeded()
            return result

        def inc(self, amount) -> None:
            self._do("inc", amount)

        def set(self, value, timestamp=None) -> None:
            self._do("set", value, timestamp)

        def set_exemplar(self, exemplar) -> None:
            self._do("set_exemplar", exemplar)

        def get(self):
            got = self._do("get")
            return 0.0 if got is None else got

        def get_exemplar(self):
            return self._do("get_exemplar")

    NeverFailingValue.__name__ = f"NeverFailing{value_class.__name__}"
    return NeverFailingValue
