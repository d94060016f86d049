"""The limits audit (``ops/audit.py``) that the benchmark and the reliability suite judge runs by: it
finds a target holding more calls than its limit, names the moment and the calls, and lets a slot
given back and taken again at the same instant pass."""

from __future__ import annotations

from callbroker.ops.audit import limit_violations

NETWORK = {"buyers": [{"timezone": "America/Chicago", "targets": [
    {"key": "one-line", "caps": {"concurrency": 1}},
    {"key": "two-a-day", "caps": {"daily": 2}},
]}]}


def call(sid: str, key: str, start: str, end: str, result: str = "bridged") -> dict:
    return {"sid": sid, "ended_at": f"2026-11-27T{end}Z", "attempts": [
        {"target": {"key": key}, "started_at": f"2026-11-27T{start}Z", "ended_at": f"2026-11-27T{end}Z",
         "result": result}]}


def test_two_calls_at_once_on_a_one_line_target_are_named_with_the_moment():
    calls = [call("CA1", "one-line", "15:00:00", "15:05:00"), call("CA2", "one-line", "15:04:00", "15:06:00"),
             call("CA3", "one-line", "15:06:00", "15:07:00")]
    assert limit_violations(NETWORK, calls) == [
        "target one-line: 2 calls at once, limit 1 (at 2026-11-27T15:04:00+00:00: CA1, CA2)"]


def test_a_slot_given_back_and_taken_at_the_same_instant_is_no_violation():
    calls = [call("CA1", "one-line", "15:00:00", "15:05:00"), call("CA2", "one-line", "15:05:00", "15:06:00"),
             call("CA3", "one-line", "15:06:00", "15:06:30", result="no_answer")]
    assert limit_violations(NETWORK, calls) == []


def test_calls_delivered_beyond_a_daily_cap_in_the_buyers_day():
    calls = [call(f"CA{i}", "two-a-day", f"1{i}:00:00", f"1{i}:01:00") for i in range(3)]
    assert limit_violations(NETWORK, calls) == ["target two-a-day: 3 calls delivered in daily:20261127, cap 2"]
    # 05:00 UTC is still the day before in Chicago: two calls that day, one the next
    calls[0] = call("CA0", "two-a-day", "05:00:00", "05:01:00")
    assert limit_violations(NETWORK, calls) == []


def test_calls_delivered_in_each_of_the_two_one_oclock_hours_of_a_fall_back_are_in_two_hours():
    """Chicago, 2026-11-01: 02:00 CDT is 01:00 CST, and the caps count the second 01:xx as an hour of its own
    (``core/periods.py``). The audit counted both as one hour, a call in each a violation of a cap of one."""
    network = {"buyers": [{"timezone": "America/Chicago",
                           "targets": [{"key": "one-an-hour", "caps": {"hourly": 1}}]}]}

    def delivered(sid: str, start: str) -> dict:
        return {"sid": sid, "ended_at": f"2026-11-01T{start}Z", "attempts": [
            {"target": {"key": "one-an-hour"}, "started_at": f"2026-11-01T{start}Z", "ended_at": None,
             "result": "bridged"}]}

    calls = [delivered("CA1", "06:30:00"), delivered("CA2", "07:30:00")]  # 01:30 CDT, 01:30 CST
    assert limit_violations(network, calls) == []
    calls.append(delivered("CA3", "07:50:00"))  # 01:50 CST
    assert limit_violations(network, calls) == [
        "target one-an-hour: 2 calls delivered in hourly:2026110101b, cap 1"]
