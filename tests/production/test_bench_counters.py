"""``callbroker bench --only counters``: both backends measured, and found correct, on the private servers.

One process here, to keep the suite short: the two-process runs of the same harness are in
test_concurrent_counters.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_bench_counters_measures_both_backends_and_finds_no_violation(pg_database_url, redis_server, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")}
    env["CALLBROKER_DATA_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "callbroker.cli", "bench", "--only", "counters", "--counter-seconds", "0.5",
         "--counter-processes", "1", "--counter-threads", "2", "--database-url", pg_database_url, "--redis-url", redis_server.url, "--json"],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    text, _, data = result.stdout.partition("\n{")
    figures = json.loads("{" + data)["counters"]
    assert "SQL on PostgreSQL" in text and "Redis (Lua)" in text and "NOT CORRECT" not in text
    for backend in ("sql", "sql_no_flush", "redis"):
        r = figures[backend]
        assert r["pairs"] > 0 and r["pairs_per_s"] > 0 and r["pair_p99_ms"] >= r["pair_p50_ms"] > 0
        assert r["violations"] == 0 and r["lost_reservations"] == 0
        assert r["counter_mismatches"] == [] and r["leftover_after_release"] == []
        assert r["fill_taken"] == r["fill_expected"]
