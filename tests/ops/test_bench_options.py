"""``callbroker bench`` refuses a count out of range in one line naming the option, before any part runs
(``--decisions 0`` was an ``IndexError`` traceback once the core part had measured nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("option", "value", "refusal"), [
    ("--decisions", "0", "0 is below 1"),
    ("--calls", "0", "0 is below 1"),
    ("--workers", "0", "0 is below 1"),
    ("--concurrency", "0", "0 is below 1"),
    ("--drivers", "0", "0 is below 1"),
    ("--seconds", "0", "0 is below 1"),
    ("--wrk-rounds", "0", "0 is below 1"),
    ("--connections", "-3", "-3 is below 2"),
    ("--connections", "1", "1 is below 2"),  # wrk's 2 threads: it measured nothing, "0 req/s"
    ("--counter-processes", "0", "0 is below 1"),
    ("--counter-threads", "0", "0 is below 1"),
    ("--rate", "-5", "-5 is below 0"),
    ("--calls", "many", "'many' is not an integer"),
    ("--counter-seconds", "0", "0 is below 0.1"),  # measured nothing: "0 reserve+release/s"
    ("--counter-seconds", "-2", "-2 is below 0.1"),
    ("--counter-seconds", "nan", "'nan' is not a finite number"),
    ("--counter-seconds", "inf", "'inf' is not a finite number"),
    ("--counter-seconds", "soon", "'soon' is not a number"),
    ("--history", "-1", "-1 is below 0"),  # ended 1, refused by the command instead of the parser
    ("--history", "some", "'some' is not an integer"),
])
def test_a_count_out_of_range_is_refused_before_anything_runs(tmp_path, option, value, refusal):
    """Only the core part is asked for (it starts no server), with few decisions: a value taken as given
    runs it and ends 0 (or, for ``--decisions 0``, in a traceback), printing its figures."""
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path / "var")}
    env.pop("DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-m", "callbroker.cli", "bench", "--only", "core", "--decisions", "50",
                             option, value], env=env, capture_output=True, text=True, timeout=120, check=False,
                            cwd=REPO)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == f"callbroker bench: error: argument {option}: {refusal}"


def test_a_negative_number_of_nodes_is_refused_by_the_parser():
    """Read by the parser alone: taken as given, ``--nodes -1`` is true and starts the nodes part (a private
    PostgreSQL and Redis), which a test has no business starting to show a refusal."""
    from django.core.management import CommandError

    from callbroker.ops.management.commands.bench import Command

    parser = Command().create_parser("callbroker", "bench")
    with pytest.raises(CommandError, match=r"argument --nodes: -1 is below 0"):
        parser.parse_args(["--nodes", "-1"])
    assert parser.parse_args(["--nodes", "0"]).nodes == 0


def test_a_counters_run_longer_than_the_workers_answer_wait_is_waited_for(tmp_path):
    """``--counter-seconds 125`` ran its 125 s, then ended in "counter worker … did not answer within 120 s"
    (a traceback): the wait for a worker's answer did not count the run's own seconds. Here the wait is
    5 s and the run 6 s, on SQLite."""
    from callbroker.ops import bench

    env = {"CALLBROKER_DATA_DIR": str(tmp_path), "DATABASE_URL": "", "CALLBROKER_ENV": "development",
           "CALLBROKER_LOG_LEVEL": "ERROR", "CALLBROKER_COUNTERS": "sql", "REDIS_URL": ""}
    bench.migrate(env)
    with bench.CounterWorkers(env, processes=1, threads=1, timeout=5.0) as workers:
        ids = workers.one("targets", {"count": 1, "timezone": bench.BENCH_TZ})
        runs = workers.all("hammer", {"timezone": bench.BENCH_TZ, "now": "2026-12-07T12:00:00+00:00",
                                      "atomic": False, "mode": "cycle", "seconds": 6.0,
                                      "targets": [{**bench.CYCLE_SPEC, "id": ids[0]}]})
    assert runs[0]["errors"] == [] and runs[0]["pairs"] > 0
