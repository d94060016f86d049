"""SQLite checkpoints off the request path: one background thread per database on a node.

In WAL mode a commit appends the pages it changed to the ``-wal`` file; a *checkpoint* copies them back
into the database file, with an ``fsync`` of each file, so that the WAL can start over from its
beginning. Left to itself SQLite runs the checkpoint inside the commit that takes the WAL past
``wal_autocheckpoint`` pages: that webhook waits for thousands of pages to be copied and synced, and so
does every webhook queued behind it on the writers' lock (``db.write_lock``). Those pauses were most
of the slowest 1 % of webhooks under load (docs/benchmarks.md).

Here a thread does it instead, every ``INTERVAL_S``:

1. a passive checkpoint, without any lock: it copies what the WAL holds while the webhooks go on
   committing (SQLite lets a checkpoint run beside readers and a writer);
2. once the WAL holds ``RESTART_FRAMES`` pages or more, a second passive checkpoint *while holding the
   writers' lock*: it has only what was committed during step 1 left to copy (a few pages), so the
   checkpoint is complete and the next commit starts the WAL over. Under steady traffic a checkpoint
   without the lock is never complete (every pass leaves the pages committed meanwhile) and the WAL
   would only grow; this step is the one short pause left, a fraction of the old one.

**Which thread.** Every server worker starts one on its first carrier webhook (``ensure_running``);
the one that takes a non-blocking ``flock`` of ``<database>-checkpointer.lock`` checkpoints, the others
stand by and try again every pass, so one takes over when a worker exits or is killed (the kernel
releases a dead process's lock). A forked child closes the lock it inherited.

**When it fails** (a full disk: ``database or disk is full``) the thread retries every pass; the first
failure is logged with its traceback, then one line a minute with a count, and one when it works again
(``ops/repeated_failure.py``).

**Safety net.** ``wal_autocheckpoint`` stays set on every connection (``settings.py``): a process
without a checkpointer (the command line, the admin of a server that has had no webhook yet) or a WAL
growing faster than the thread copies it is checkpointed by SQLite itself, as before.

Nothing here runs on PostgreSQL or on an in-memory SQLite database (the tests').
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass, field

from django.db import connection

from callbroker.db import writers_lock_path
from callbroker.ops import metrics
from callbroker.ops.repeated_failure import RepeatedFailure

log = logging.getLogger(__name__)

INTERVAL_S = 0.2
#: Past this many pages in the WAL (4 KiB each), a pass completes the checkpoint under the writers' lock.
RESTART_FRAMES = 1000


@dataclass
class PassResult:
    """What one pass did (``frames``: pages in the WAL; ``copied``: of them, in the database file)."""

    active: bool
    frames: int = 0
    copied: int = 0
    completed_under_lock: bool = False


@dataclass
class Checkpointer:
    """Checkpoints one SQLite database in WAL mode; ``run_once`` is one pass, ``start`` runs passes in a thread."""

    path: str
    interval: float = INTERVAL_S
    restart_frames: int = RESTART_FRAMES
    passes: int = 0
    completions: int = 0  # passes completed under the writers' lock
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _connection: sqlite3.Connection | None = field(default=None, repr=False)
    _role_fd: int | None = field(default=None, repr=False)  # holds the checkpointer's lock while not None
    _writers_fd: int | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        """This checkpointer holds the role (the others on the database stand by)."""
        return self._role_fd is not None

    def run_once(self) -> PassResult:
        """One pass: take the role if free, copy the WAL, complete the checkpoint when the WAL is large."""
        if not self._take_role():
            return PassResult(active=False)
        con = self._db()
        _, frames, copied = con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.passes += 1
        metrics.SQLITE_CHECKPOINT_PASSES.labels("background").inc()
        if frames < self.restart_frames:
            return PassResult(active=True, frames=max(frames, 0), copied=max(copied, 0))
        fcntl.flock(self._writers(), fcntl.LOCK_EX)  # the call path's writers wait: nothing is committed
        try:
            # Only what was committed during the pass above is left: the checkpoint completes, and the
            # next commit starts the WAL over. (Idle, with everything copied, this copies and syncs nothing.)
            _, frames, copied = con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            fcntl.flock(self._writers(), fcntl.LOCK_UN)
        self.completions += 1
        metrics.SQLITE_CHECKPOINT_PASSES.labels("under_writers_lock").inc()
        return PassResult(active=True, frames=max(frames, 0), copied=max(copied, 0), completed_under_lock=True)

    def start(self) -> Checkpointer:
        self._thread = threading.Thread(target=self._loop, name="callbroker-sqlite-checkpointer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (if started) and give up the role and the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.close()

    def close(self) -> None:
        self._close_descriptors()  # releases the locks
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def forget_inherited(self) -> None:
        """In a forked child: let go of what the parent's checkpointer held without touching its locks.

        Closing the child's copies of the descriptors leaves the locks with the parent's; the SQLite
        connection is dropped, never closed (a connection must not be used across a fork).
        """
        self._close_descriptors()
        self._connection = None

    def _close_descriptors(self) -> None:
        for fd in (self._role_fd, self._writers_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._role_fd = self._writers_fd = None

    def _loop(self) -> None:
        # A failure lasts (a full disk): five passes a second must not make five tracebacks a second.
        failures = RepeatedFailure(log, f"SQLite checkpoint of {self.path}")
        while not self._stop.wait(self.interval):
            try:
                result = self.run_once()
            except Exception as exc:  # noqa: BLE001 - the thread must not die (SQLite's own checkpoints: the net)
                failures.failed(exc)
                self.close()
            else:
                if result.active:  # standing by proves nothing
                    failures.succeeded()
        self.close()

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            # Autocommit (no transaction around the PRAGMA); a checkpoint never waits on the busy timeout.
            self._connection = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
        return self._connection

    def _writers(self) -> int:
        if self._writers_fd is None:
            # Its own descriptor: an flock conflicts with the request threads' (``db.write_lock``) only so.
            self._writers_fd = os.open(writers_lock_path(self.path), os.O_RDWR | os.O_CREAT, 0o600)
        return self._writers_fd

    def _take_role(self) -> bool:
        if self._role_fd is not None:
            return True
        fd = os.open(f"{self.path}-checkpointer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._role_fd = fd
        return True


_running: Checkpointer | None = None
_start_lock = threading.Lock()


def ensure_running() -> None:
    """Start this process's checkpointer for the default SQLite database once (cheap on every request)."""
    global _running
    if _running is not None:
        return
    with _start_lock:
        if _running is not None or connection.vendor != "sqlite" or connection.is_in_memory_db():
            return
        _running = Checkpointer(str(connection.settings_dict["NAME"])).start()


def _after_fork_in_child() -> None:
    global _running
    if _running is not None:
        _running.forget_inherited()
        _running = None  # the thread didn't survive the fork; the child's first webhook starts its own


os.register_at_fork(after_in_child=_after_fork_in_child)
