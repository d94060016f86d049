"""Audit finished traffic against the network's limits (used by `bench --nodes` and the reliability suite).

Works on the JSON of `callbroker calls list --json` (the public output), so it checks what was recorded,
not the server's internals: replaying every attempt's interval, no target may ever hold more calls than
its concurrency limit, nor take more calls than its hourly/daily/monthly cap in the buyer's local time (the
periods the caps count in, ``core/periods.py``: an hour's second time when the clocks go back is one of its
own).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from callbroker.core.periods import local_period_keys
from callbroker.words import counted

PERIODS = ("hourly", "daily", "monthly")


def _parse(ts: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")) if ts else None


def limit_violations(network: dict, calls: Iterable[dict]) -> list[str]:
    """Every concurrency or cap violation found in the recorded attempts, as plain sentences."""
    limits: dict[str, dict] = {}
    for buyer in network["buyers"]:
        for target in buyer.get("targets", []):
            limits[target["key"]] = {**target.get("caps", {}), "tz": buyer.get("timezone", "UTC")}
    edges: dict[str, list[tuple[dt.datetime, int, str]]] = defaultdict(list)
    delivered: dict[tuple[str, str], int] = defaultdict(int)
    for call in calls:
        ended = _parse(call["ended_at"])
        for attempt in call["attempts"]:
            key = (attempt.get("target") or {}).get("key")
            if key is None:
                continue
            start = _parse(attempt["started_at"])
            # A slot is held from the dial until the leg ends unbridged, or until the call ends.
            stop = ended if attempt["result"] == "bridged" else (_parse(attempt["ended_at"]) or ended)
            edges[key] += [(start, +1, call["sid"]), (stop or start, -1, call["sid"])]
            if attempt["result"] == "bridged":
                local = start.astimezone(ZoneInfo(limits.get(key, {}).get("tz", "UTC")))
                for period, period_key in zip(PERIODS, local_period_keys(local), strict=True):
                    delivered[(key, f"{period}:{period_key[1:]}")] += 1  # hourly:2026112714
    problems = []
    for key, points in edges.items():
        limit = limits.get(key, {}).get("concurrency")
        if limit is None:
            continue
        holding: dict[str, int] = defaultdict(int)  # the calls holding the target, at each moment
        active = peak = 0
        peak_at, peak_calls = None, []
        for at, step, sid in sorted(points):  # at the same instant a release (-1) sorts before a take (+1)
            active += step
            holding[sid] += step
            if not holding[sid]:
                del holding[sid]
            if active > peak:
                peak, peak_at, peak_calls = active, at, sorted(holding)
        if peak > limit:
            problems.append(f"target {key}: {peak} calls at once, limit {limit} (at {peak_at.isoformat()}: "
                            f"{', '.join(peak_calls)})")
    for (key, period), count in delivered.items():
        cap = limits.get(key, {}).get(period.split(":")[0])
        if cap is not None and count > cap:
            problems.append(f"target {key}: {counted(count, 'call')} delivered in {period}, cap {cap}")
    return problems
