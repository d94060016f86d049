"""``callbroker bench`` part (c): alternating rounds of wrk, every inbound request a new call, the ratio."""

from __future__ import annotations

import io
import statistics

import pytest

from callbroker.ops import bench


@pytest.mark.parametrize(("text", "ms"), [("850.12us", 0.85012), ("28.82ms", 28.82), ("1.02s", 1020.0),
                                          ("1.50m", 90000.0), ("", None), (None, None), ("fast", None)])
def test_wrk_latencies_read_in_milliseconds(text, ms):
    value = bench._wrk_ms(text)  # noqa: SLF001
    if ms is None:
        assert value is None
    else:
        assert value == pytest.approx(ms)


def test_requests_done_is_read_from_wrk_report():
    raw = "Running 2s test @ http://x\n  2 threads and 4 connections\n  1804 requests in 2.00s, 0.9MB read\n"
    assert bench._requests_done(raw) == 1804  # noqa: SLF001
    assert bench._requests_done("") == 0  # noqa: SLF001


def test_wrk_part_alternates_rounds_and_sends_new_calls_only():
    """Needs ``wrk`` (Debian package; ``.ci/run`` installs it)."""
    out = io.StringIO()
    results = bench.run({"wrk"}, workers=1, seconds=2, connections=4, wrk_rounds=2, out=out)
    w = results["wrk"]
    assert "skipped" not in w, w
    assert w["rounds"] == 2 and len(w["round_ratios"]) == 2 and w["inbound_non_2xx"] == 0
    assert w["ratio"] == pytest.approx(statistics.median(w["round_ratios"]), abs=0.001)
    assert w["ratio_min"] <= w["ratio"] <= w["ratio_max"]
    # Latencies as the rates: every round's, and their median (not the last round's alone).
    assert len(w["round_hello_p99_ms"]) == len(w["round_inbound_p50_ms"]) == 2
    assert w["hello_p99_ms"] == pytest.approx(statistics.median(w["round_hello_p99_ms"]), abs=0.01)
    assert w["inbound_p50_ms"] == pytest.approx(statistics.median(w["round_inbound_p50_ms"]), abs=0.01)
    assert all(ms > 0 for ms in (*w["round_hello_p99_ms"], *w["round_inbound_p50_ms"]))
    # Each round has its own slice of signed requests: every request answered made a call (none was a
    # repeated CallSid answered from the log), and at most one per connection and round more was in flight.
    assert w["inbound_requests"] > 0
    assert w["inbound_requests"] <= w["calls_recorded"] <= w["inbound_requests"] + 2 * (4 + 2)
    assert "2 alternating rounds of 1 s each" in out.getvalue()
    assert f"ratio {w['ratio']} (rounds {w['ratio_min']}–{w['ratio_max']})" in out.getvalue()


def test_wrk_part_warns_when_requests_were_not_new_calls(monkeypatch):
    """A round that outran its slice of signed requests repeats CallSids: the figure must say so."""
    monkeypatch.setattr(bench, "_count_calls", lambda database: 0 if database is None else 1)
    out = io.StringIO()
    w = bench.run({"wrk"}, workers=1, seconds=1, connections=2, wrk_rounds=1, out=out)["wrk"]
    assert w["inbound_requests"] > 1
    assert f"WARNING: {w['inbound_requests']:,} inbound requests answered but 1 calls recorded" in out.getvalue()
