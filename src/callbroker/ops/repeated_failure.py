"""Logging a failure that repeats, without flooding the log: :class:`RepeatedFailure`.

A background loop that retries every 0.2 s (the SQLite checkpointer) or a metric written on every webhook
fails as often as it runs while its cause lasts: a full disk made the checkpointer log an ERROR with a
whole traceback ten times a second, burying the lines an operator needed and, where the logs go to the
same full disk, adding to it. Here the first failure of a streak is logged with its traceback, then one
line per ``every_s`` (a minute) saying how many more there were and the latest error, and one line when
it works again, saying for how long and how often it had failed.

Stdlib only: any module may use it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

#: Seconds between two lines about the same streak of failures.
EVERY_S = 60.0


class RepeatedFailure:
    """One thing that may fail again and again (``what``: "SQLite checkpoint of /var/…", in log lines).

    Call :meth:`failed` on every failure and :meth:`succeeded` on every success (cheap when nothing had
    failed: no lock, no clock). Thread-safe.
    """

    def __init__(self, log: logging.Logger, what: str, *, every_s: float = EVERY_S,
                 level: int = logging.ERROR, clock: Callable[[], float] = time.monotonic) -> None:
        self.log, self.what, self.every_s, self.level, self.clock = log, what, every_s, level, clock
        self.streak = 0  # failures since it last worked
        self._unsaid = 0  # of them, not logged yet
        self._first_at = self._said_at = 0.0
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            now = self.clock()
            self.streak += 1
            if self.streak == 1:
                self._first_at = self._said_at = now
                self.log.log(self.level, "%s failed: %s (repeats are counted, one line per %.0f s)",
                             self.what, exc, self.every_s, exc_info=(type(exc), exc, exc.__traceback__))
                return
            self._unsaid += 1
            if now - self._said_at < self.every_s:
                return
            unsaid, since = self._unsaid, now - self._said_at
            streak, lasted = self.streak, now - self._first_at
            self._unsaid, self._said_at = 0, now
        self.log.log(self.level, "%s still failing: %d more failures in %.0f s (%d since it started %.0f s "
                     "ago); latest: %s: %s", self.what, unsaid, since, streak, lasted, type(exc).__name__, exc)

    def succeeded(self) -> None:
        if not self.streak:
            return
        with self._lock:
            if not self.streak:
                return
            streak, lasted = self.streak, self.clock() - self._first_at
            self.streak = self._unsaid = 0
        self.log.warning("%s works again, after %d failures over %.0f s", self.what, streak, lasted)
