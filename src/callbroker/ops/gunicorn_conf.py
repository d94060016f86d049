"""gunicorn settings module: ``gunicorn -c python:callbroker.ops.gunicorn_conf`` (``ops/server.py`` passes it).

Everything else comes from the command line; this module does what only a config module can:

- **Prometheus multiprocess mode.** gunicorn imports this module before it loads the app (``--preload``
  loads it in the master, then forks), and prometheus_client decides at its own import whether to
  write metrics to files. So here, first: ``PROMETHEUS_MULTIPROC_DIR`` is set (kept when given, its
  previous run's ``*.db`` files deleted; else a directory of this server's own on the RAM-backed
  ``/dev/shm``, removed at exit by ``on_exit``) and prometheus_client's files are made to allocate their
  blocks before they are mapped (``ops/metric_files.py``: a full disk made every worker die of SIGBUS on
  its first webhook). A restarted server starts its counters from zero, as Prometheus expects of a
  restarted target. The workers inherit the variable through ``fork``.
- ``child_exit``: a dead worker's live-gauge files are removed (``multiprocess.mark_process_dead``);
  its counters and histograms stay, so totals never go down when a worker is recycled.
- ``pre_fork``: everything the master loaded (Django, the ZIP table, the holiday calendars, the network
  snapshot: ``--preload``) is moved out of the garbage collector's reach (``gc.freeze``) right before
  each worker is forked, as the ``gc`` module's documentation advises for a process that forks without
  exec. Those ~140,000 objects live as long as the process anyway. Without it, a worker's first full
  collection walks them all (a 120–135 ms pause in the middle of a webhook) and writes to each
  one's header, copying 37 MiB of pages it shared with the master into its own memory; with it, 0.5 ms
  and 0.5 MiB (docs/benchmarks.md). Full collections are rare (none in 15,000 webhooks per worker), so
  the bench's figures don't show it; a server up for days does.
- **A closed connection is not held open for the client's reply.** gunicorn releases since April 2026
  close each connection the RFC 9112 way (``gunicorn.util.close_graceful``: send FIN, then read until the client
  closes too, up to 2 s), so that a client whose unread bytes are still in the buffer gets FIN, not a
  reset that could cut off the answer. A sync worker waits all that while: one network round trip per
  webhook (tens of ms from a carrier across the internet), and under load here the emulator's time to
  close. ``ops/prompt_close.py`` closes at once when the client sent nothing that is still unread (a
  webhook's form is read whole), which sends FIN as well; otherwise it lingers as gunicorn does.
- **An answer's head and body in one write** (``ops/one_write.py``): gunicorn's ``Response.write`` sends
  them with two ``sendall`` calls (two TCP segments per webhook answer); the head now goes out with the
  first body piece.
- **PostgreSQL time limits for the web server's sessions.** A locked table or a stuck statement must not
  hold a webhook past the carrier's 15 s (the caller would hear the carrier's error, and the Fallback URL
  queues behind the same busy workers): ``CALLBROKER_DB_LOCK_TIMEOUT_MS`` (default 2000) and
  ``CALLBROKER_DB_STATEMENT_TIMEOUT_MS`` (default 8000) are set here, before the settings are read, so
  that a webhook waiting longer fails as an outage and the call goes on from memory (degraded mode).
  Commands run outside the server (``migrate``, ``billing statement``, …) have none.
- ``logger_class``: gunicorn's own log lines (worker timeouts, crashes) become JSON lines too when
  ``CALLBROKER_LOG_FORMAT`` is ``json``.

gunicorn reads every global of this module as a setting, hence the underscore names.
"""

from __future__ import annotations

import gc as _gc
import os as _os
from pathlib import Path as _Path

from gunicorn.glogging import Logger as _GunicornLogger

from callbroker.ops import metric_files as _metric_files
from callbroker.ops import one_write as _one_write
from callbroker.ops import prompt_close as _prompt_close


_DATA_DIR = _Path(_os.environ.get("CALLBROKER_DATA_DIR", "var")).resolve()


def _prepare_metrics_dir() -> _Path:
    path = _metric_files.directory(_DATA_DIR, _os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""))
    _os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    _metric_files.install()  # before any metric exists: files allocated before they are mapped
    return path


_METRICS_DIR = _prepare_metrics_dir()
# PostgreSQL time limits of the server's sessions (read by the settings, loaded after this module).
_os.environ.setdefault("CALLBROKER_DB_LOCK_TIMEOUT_MS", "2000")
_os.environ.setdefault("CALLBROKER_DB_STATEMENT_TIMEOUT_MS", "8000")
# The spool's directory, made while the disk has room: the first call of an outage must not need a
# directory made then (on a full disk mkdir fails, and the event would have nowhere to go).
(_DATA_DIR / "spool").mkdir(parents=True, exist_ok=True)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(_METRICS_DIR))


def on_exit(server) -> None:
    _metric_files.remove(_METRICS_DIR)  # a directory of our own on /dev/shm (RAM): not left behind


_prompt_close.install()
_one_write.install()


def pre_fork(server, worker) -> None:
    _gc.freeze()


class _Logger(_GunicornLogger):
    """gunicorn's logger, writing JSON lines when the app does."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        _os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callbroker.settings")
        from django.conf import settings

        if getattr(settings, "LOG_FORMAT", "plain") != "json":
            return
        from callbroker.ops.logging import ContextFilter, JsonFormatter

        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter(node=settings.NODE_NAME))
                handler.addFilter(ContextFilter(node=settings.NODE_NAME))


logger_class = _Logger
