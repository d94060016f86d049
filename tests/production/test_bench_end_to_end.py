"""``callbroker bench`` part (b) on a small run: the figures it prints, the CPU split among them."""

from __future__ import annotations

import io
import multiprocessing
import os
import time

from callbroker.ops import bench


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_seconds_counts_what_a_process_spent():
    child = multiprocessing.get_context("fork").Process(target=_burn, args=(0.4,))
    child.start()
    try:
        peak = 0.0
        while child.is_alive():
            peak = max(peak, bench.cpu_seconds([child.pid]))  # read while it lives (no /proc entry after)
            time.sleep(0.02)
    finally:
        child.join()
    assert 0.3 <= peak <= 0.6
    assert bench.cpu_seconds([]) == 0
    assert bench.cpu_seconds([os.getpid()]) > 0


def test_end_to_end_reports_throughput_latency_and_who_used_the_cpu():
    out = io.StringIO()
    results = bench.run({"e2e"}, workers=1, calls=40, concurrency=4, rate=40, drivers=2, out=out)
    text = out.getvalue()
    assert text.count("CPU per webhook: server") == 2  # the saturated run and the paced one
    for run in (results["e2e"], results["e2e_paced"]):
        assert run["calls"] == 40 and run["errors"] == 0 and run["webhooks"] >= 80
        assert run["webhook_p99_ms"] >= run["webhook_p50_ms"] > 0
        # Only the traffic's own CPU: the migration and network load before it (seconds of CPU, tens of
        # ms per webhook here) are outside the measured span.
        assert 0 < run["server_cpu_ms_per_webhook"] < 15
        assert 0 < run["emulator_cpu_ms_per_webhook"] < 10
        assert 0 < run["cores_busy"] <= os.cpu_count() + 0.5
        # The machine's speed then: the hello world on the same server under wrk, before and after.
        assert run["hello_rps_before"] > 100 and run["hello_rps_after"] > 100
    assert text.count(" req/s before, ") == 2


def test_the_closed_loop_keeps_a_few_calls_in_flight_per_worker_unless_told():
    """Enough to keep each worker busy, not a queue in the backlog (which only adds latency)."""
    out = io.StringIO()
    results = bench.run({"e2e"}, workers=1, calls=12, rate=0, drivers=1, out=out)
    assert results["e2e"]["concurrency"] == bench.CALLS_IN_FLIGHT_PER_WORKER == 4
    assert "as fast as it answers, 4 calls in flight" in out.getvalue()
    assert results["e2e"]["calls"] == 12 and "e2e_paced" not in results


def test_the_emulator_cpu_is_counted_when_it_runs_in_this_process_too():
    figures = bench.bench_end_to_end(workers=1, calls=20, concurrency=2, drivers=1)
    assert figures["drivers"] == 1 and figures["errors"] == 0
    assert 0 < figures["emulator_cpu_ms_per_webhook"] < 10


EXPOSITION = b"""# HELP callbroker_webhook_duration_seconds Webhook latency.
# TYPE callbroker_webhook_duration_seconds histogram
callbroker_webhook_duration_seconds_bucket{endpoint="twilio-voice",le="0.01"} 98.0
callbroker_webhook_duration_seconds_bucket{endpoint="twilio-voice",le="0.025"} 99.0
callbroker_webhook_duration_seconds_bucket{endpoint="twilio-voice",le="+Inf"} 100.0
callbroker_webhook_duration_seconds_count{endpoint="twilio-voice"} 100.0
callbroker_webhook_duration_seconds_sum{endpoint="twilio-voice"} 0.5
"""


def _metrics_server(token: str):
    """A /metrics endpoint that answers as the app does with CALLBROKER_METRICS_TOKEN set."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            ok = self.path == "/metrics" and self.headers.get("Authorization") == f"Bearer {token}"
            body = EXPOSITION if ok else b"Unauthorized"
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_workers_histogram_is_read_when_the_metrics_need_a_token():
    server = _metrics_server("s3cret")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        read = bench.server_side_latency(base, "s3cret")
        assert read == {"server_webhooks": 100, "server_within_25ms": 99, "server_p99_le_ms": 25.0}
        refused = bench.server_side_latency(base)  # no token: says why instead of reporting nothing
        assert refused["server_webhooks"] == 0 and refused["server_metrics_error"] == "/metrics answered 401"
    finally:
        server.shutdown()
