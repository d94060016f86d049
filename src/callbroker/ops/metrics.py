"""Prometheus metrics and the ``/metrics`` endpoint (text exposition format).

Counted as things happen (every gunicorn worker writes its own file in ``PROMETHEUS_MULTIPROC_DIR``;
a scrape answered by any worker adds them all up — ``callbroker.ops.gunicorn_conf`` sets the directory
up before the app is imported, which is when prometheus_client decides on multiprocess mode):

- ``callbroker_webhook_duration_seconds{endpoint}`` histogram: time to answer a carrier webhook
  (``endpoint`` is the URL name, e.g. ``twilio-voice``), measured by :class:`WebhookMetricsMiddleware`
- ``callbroker_webhook_responses_total{endpoint,status}``: carrier webhooks answered, by HTTP status
- ``callbroker_routing_failures_total{endpoint}``: webhooks answered with the safe fallback because
  something inside failed (``carriers/views.py`` ``_safe``)
- ``callbroker_counter_backend_errors_total{backend,operation}``: failed reads, reservations and
  releases of the live counters (``backend`` = ``sql`` or ``redis``)
- ``callbroker_spool_events_dropped_total``: degraded-mode events that neither the disk nor the
  in-memory spool could keep (``calls/spool.py``; each is logged whole at CRITICAL level)

Computed when scraped:

- ``callbroker_calls_total{verdict}``: calls qualified ``billable`` / ``not_billable``, counted in the
  database — the same figure on every node, correct across nodes and restarts (cached
  ``CALLBROKER_METRICS_DB_CACHE_S`` seconds per worker); ``callbroker_calls_pending``: calls not
  qualified yet (in progress); ``callbroker_database_up``: 1 when that count succeeded
- ``callbroker_spool_depth``: call events waiting in this node's local disk spool
  (``callbroker.calls.spool.depth()``; 0 where there is no spool)
- ``callbroker_counters_backend{backend}``: 1 for the backend this node keeps live counters in

This module is a leaf: stdlib and prometheus_client at import, Django only inside functions, so any
layer may count something here.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger(__name__)

CARRIER_PATH_PREFIX = "/carriers/"
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

WEBHOOK_SECONDS = Histogram("callbroker_webhook_duration_seconds", "Time to answer a carrier webhook.",
                            ["endpoint"], buckets=LATENCY_BUCKETS)
WEBHOOK_RESPONSES = Counter("callbroker_webhook_responses", "Carrier webhooks answered, by HTTP status.",
                            ["endpoint", "status"])
ROUTING_FAILURES = Counter("callbroker_routing_failures",
                           "Webhooks answered with the safe fallback because something inside failed.", ["endpoint"])
COUNTER_BACKEND_ERRORS = Counter("callbroker_counter_backend_errors",
                                 "Failed operations on the live per-target counters.", ["backend", "operation"])
SQLITE_CHECKPOINT_PASSES = Counter("callbroker_sqlite_checkpoint_passes",
                                   "Checkpoints of the SQLite WAL by the background thread (callbroker/checkpoints.py): "
                                   "'background' beside the writers, 'under_writers_lock' completing a large WAL.",
                                   ["kind"])
SPOOL_EVENTS_DROPPED = Counter("callbroker_spool_events_dropped",
                               "Degraded-mode events neither the disk nor the memory spool could keep (logged whole).")


def endpoint_of(request) -> str:
    match = getattr(request, "resolver_match", None)
    return (match.url_name if match and match.url_name else "unmatched")


def record_routing_failure(request) -> None:
    """A webhook is being answered with the safe fallback (called from ``carriers/views.py``)."""
    ROUTING_FAILURES.labels(endpoint=endpoint_of(request)).inc()


def initialise_series() -> None:
    """Create the error series at zero, so that they exist (and alerts can use them) before any error."""
    from callbroker.carriers.urls import urlpatterns

    for pattern in urlpatterns:
        if pattern.name:
            ROUTING_FAILURES.labels(endpoint=pattern.name)
    for backend in ("sql", "redis"):
        for operation in ("read", "reserve", "release"):
            COUNTER_BACKEND_ERRORS.labels(backend=backend, operation=operation)


class WebhookMetricsMiddleware:
    """Times every carrier webhook and counts its answer by status."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self._series: dict[tuple[str, int], tuple] = {}  # (endpoint, status) -> its histogram and counter
        initialise_series()

    def __call__(self, request):
        if not request.path_info.startswith(CARRIER_PATH_PREFIX):  # the path of CALLBROKER_PUBLIC_URL left out
            return self.get_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        key = (endpoint_of(request), response.status_code)
        series = self._series.get(key)
        if series is None:  # a few endpoints and statuses: each pair's labelled series looked up once
            series = (WEBHOOK_SECONDS.labels(endpoint=key[0]),
                      WEBHOOK_RESPONSES.labels(endpoint=key[0], status=str(key[1])))
            self._series = {**self._series, key: series}  # a new dict: no thread sees it half-made
        series[0].observe(elapsed)
        series[1].inc()
        return response


# --------------------------------------------------------------------------- computed at scrape time


class DatabaseCollector:
    """Calls by verdict, counted in the database (one ``GROUP BY``, cached a few seconds per worker)."""

    _lock = threading.Lock()
    _cached: tuple[float, dict[str, int] | None] = (0.0, None)

    def collect(self):
        from django.conf import settings

        max_age = getattr(settings, "METRICS_DB_CACHE_S", 10)
        with self._lock:
            at, counts = DatabaseCollector._cached
            if counts is None or time.monotonic() - at > max_age:
                counts = self._count()
                DatabaseCollector._cached = (time.monotonic(), counts)
        up = GaugeMetricFamily("callbroker_database_up", "1 when the database answered the last metrics query.")
        up.add_metric([], 0 if counts is None else 1)
        yield up
        if counts is None:
            return
        calls = CounterMetricFamily("callbroker_calls", "Calls qualified, by verdict (counted in the database).",
                                    labels=["verdict"])
        for verdict in ("billable", "not_billable"):
            calls.add_metric([verdict], counts.get(verdict, 0))
        yield calls
        pending = GaugeMetricFamily("callbroker_calls_pending", "Calls not qualified yet (in progress).")
        pending.add_metric([], counts.get("pending", 0))
        yield pending

    @staticmethod
    def _count() -> dict[str, int] | None:
        from django.db.models import Count

        from callbroker.calls.models import Call

        try:
            return {row["verdict"]: row["n"] for row in Call.objects.values("verdict").annotate(n=Count("pk"))
                    .order_by()}
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even when the database doesn't
            log.warning("metrics: counting calls failed: %s", exc)
            return None

    @classmethod
    def forget(cls) -> None:
        cls._cached = (0.0, None)


class NodeCollector:
    """This node's local spool depth and the live counters' backend."""

    def collect(self):
        depth = GaugeMetricFamily("callbroker_spool_depth", "Call events waiting in this node's local disk spool.")
        depth.add_metric([], spool_depth())
        yield depth
        try:
            from callbroker.network import live

            name = live.backend_name()
        except Exception:  # noqa: BLE001
            name = "unknown"
        backend = GaugeMetricFamily("callbroker_counters_backend", "Where this node keeps the live counters.",
                                    labels=["backend"])
        backend.add_metric([name], 1)
        yield backend


def spool_depth() -> int:
    """``callbroker.calls.spool.depth()`` when that module exists, else 0."""
    try:
        from callbroker.calls import spool
    except ImportError:
        return 0
    depth = getattr(spool, "depth", None)
    if depth is None:
        return 0
    try:
        return int(depth())
    except Exception as exc:  # noqa: BLE001
        log.warning("metrics: reading the spool depth failed: %s", exc)
        return 0


def multiprocess_dir() -> str:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    return path if path and os.path.isdir(path) else ""


def exposition() -> bytes:
    """Every metric in the text format: all workers' counters plus the scrape-time ones."""
    computed = CollectorRegistry(auto_describe=False)
    computed.register(DatabaseCollector())
    computed.register(NodeCollector())
    if multiprocess_dir():
        from prometheus_client import multiprocess

        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
        return generate_latest(counted) + generate_latest(computed)
    return generate_latest(REGISTRY) + generate_latest(computed)


def metrics_view(request):
    """``GET /metrics``. With ``CALLBROKER_METRICS_TOKEN`` set, only for ``Authorization: Bearer <token>``."""
    import hmac

    from django.conf import settings
    from django.http import HttpResponse

    token = getattr(settings, "METRICS_TOKEN", "")
    if token:
        given = request.META.get("HTTP_AUTHORIZATION", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return HttpResponse("Unauthorized", status=401, content_type="text/plain",
                                headers={"WWW-Authenticate": "Bearer"})
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
