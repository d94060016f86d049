"""Partition maintenance (``callbroker partitions``) and the migration's round trip on PostgreSQL.

Given a database of its own, when the operator runs the partition commands (or forgets to), then new
months get their partitions, nothing is ever lost in the default partition, and the migration can be
undone and redone without losing a call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.postgres.conftest import REPO, PgDatabase
from tests.postgres.test_schema import month, name_of


def test_ensure_creates_future_partitions_idempotently(fresh_pg):
    before, first, again, listed, check = fresh_pg.commands(
        ["partitions", "list", "--json"], ["partitions", "ensure", "--months-ahead", "6"],
        ["partitions", "ensure", "--months-ahead", "6"], ["partitions", "list", "--json"],
        ["partitions", "check"])
    expected = [name_of(month(n)) for n in (4, 5, 6)]
    assert f"Created 3 partition(s): {', '.join(expected)}" in first["stdout"]
    assert "All partitions already exist." in again["stdout"]
    before, after = json.loads(before["stdout"]), json.loads(listed["stdout"])
    assert [p["name"] for p in after] == [*(p["name"] for p in before[:-1]), *expected, "calls_call_default"]
    monthly = [p for p in after if not p["default"]]
    assert all(a["to"] == b["from"] for a, b in zip(monthly, monthly[1:]))  # contiguous months
    assert check["code"] == 0, check
    # New partitions carry the table's indexes, keys and checks.
    newest = expected[-1]
    assert fresh_pg.value("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", [newest]) == \
        fresh_pg.value("SELECT count(*) FROM pg_index WHERE indrelid = 'calls_call_default'::regclass")
    checks = "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'"
    assert fresh_pg.value(checks, [newest]) == 5


def test_concurrent_ensure_runs_create_each_partition_once(fresh_pg):
    # Several nodes migrating at once, or cron meeting a deploy: the advisory lock serialises them.
    command = [sys.executable, "-m", "callbroker.cli", "partitions", "ensure", "--months-ahead", "9"]
    runs = [subprocess.Popen(command, env=fresh_pg.env, cwd=REPO, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    created = [name for out, _ in outputs if "Created" in out for name in out.split(": ", 1)[1].split(", ")]
    assert sorted(n.strip() for n in created) == [name_of(month(n)) for n in range(4, 10)]


def test_default_partition_catches_calls_outside_and_ensure_gives_them_a_month(fresh_pg):
    stamps = {"CApast": "2001-02-03T04:05:06+00:00", "CAfuture1": "2040-05-01T00:00:00+00:00",
              "CAfuture2": "2040-05-31T23:59:59+00:00"}
    placed, (check, listed, ensure, check_after), again = fresh_pg.probe("steps", steps=[
        ["insert_calls", {"calls": [{"call_sid": s, "started_at": t} for s, t in stamps.items()]}],
        ["commands", {"argvs": [["partitions", "check"], ["partitions", "list"], ["partitions", "ensure"],
                                ["partitions", "check"]]}],
        ["insert_calls", {"calls": [{"call_sid": "CAfuture1", "started_at": stamps["CAfuture1"]}]}],
    ])
    assert {row["partition"] for row in placed} == {"calls_call_default"}
    ids = {row["call_sid"]: row["id"] for row in placed}
    assert check["code"] != 0 and "3 call(s) in the default partition" in check["stderr"]
    assert "WARNING: 3 call(s) in the default partition" in listed["stderr"]
    assert "calls_call_y2001m02" in ensure["stdout"] and "calls_call_y2040m05" in ensure["stdout"]
    assert check_after["code"] == 0, check_after
    assert fresh_pg.partition_of("CApast") == "calls_call_y2001m02"
    assert fresh_pg.partition_of("CAfuture1") == fresh_pg.partition_of("CAfuture2") == "calls_call_y2040m05"
    assert dict(fresh_pg.sql("SELECT call_sid, id FROM calls_call")) == ids
    assert fresh_pg.value("SELECT count(*) FROM calls_call_default") == 0
    # The moved calls keep their CallSid registered, and new partitions refuse duplicates too.
    assert "already exists" in again[0]["error"]


def test_migration_round_trip_keeps_every_call_and_its_id(fresh_pg):
    stamps = {"CArt0": month(0).isoformat(), "CArt1": month(1).isoformat(),
              "CArtfar": "2050-01-01T00:00:00+00:00"}
    indexes = "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'calls_call'::regclass"
    partitioned_indexes = {row[0] for row in fresh_pg.sql(indexes)}
    event_indexes = "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'calls_callevent'::regclass"
    assert not any(name.endswith("_like") for (name,) in fresh_pg.sql(event_indexes))
    placed, _ = fresh_pg.probe("steps", steps=[
        ["insert_calls", {"calls": [{"call_sid": s, "started_at": t} for s, t in stamps.items()]}],
        ["commands", {"argvs": [["migrate", "calls", "0001", "--verbosity", "0"]]}],
    ])
    ids = {row["call_sid"]: row["id"] for row in placed}
    renamed = {"call_unique_sid_started": "calls_call_call_sid_key"}  # the unique key, as 0001 named it
    # 0004 dropped these (a composite index serves them), 0005 the varchar_pattern_ops copies and 0006
    # the full buyer and target indexes; going back to 0001 creates them again, and drops 0006's partial ones.
    restored = {"calls_call_caller_number_b68d6ec4", "calls_call_caller_number_b68d6ec4_like",
                "calls_call_campaign_id_238afaff", "calls_call_call_sid_4598acea_like",
                "calls_call_verdict_6b3fe457_like", "calls_call_buyer_id_95571c89",
                "calls_call_connected_target_id_2df1f88d"}
    partial = {"call_buyer_idx", "call_connected_target_idx"}
    assert not restored & partitioned_indexes
    assert partial <= partitioned_indexes
    assert {row[0] for row in fresh_pg.sql(indexes)} == \
        {renamed.get(i, i) for i in partitioned_indexes - partial} | restored
    event_copies = {"calls_callevent_call_sid_1b80051b_like", "calls_callevent_dedupe_key_d69c65c3_like"}
    assert event_copies <= {row[0] for row in fresh_pg.sql(event_indexes)}
    assert fresh_pg.value("SELECT relkind FROM pg_class WHERE relname = 'calls_call'") == "r"
    assert fresh_pg.value("SELECT count(*) FROM pg_inherits WHERE inhparent = 'calls_call'::regclass") == 0
    keys = {row[0] for row in fresh_pg.sql(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'calls_call'::regclass AND contype IN ('p', 'u')")}
    assert keys == {"PRIMARY KEY (id)", "UNIQUE (call_sid)"}
    assert fresh_pg.value("SELECT count(*) FROM pg_constraint WHERE conrelid = 'calls_callattempt'::regclass "
                          "AND confrelid = 'calls_call'::regclass") == 1  # the attempt FK is back
    assert dict(fresh_pg.sql("SELECT call_sid, id FROM calls_call")) == ids
    assert fresh_pg.value("SELECT to_regclass('calls_call_sid_registry')") is None

    fresh_pg.commands(["migrate", "--verbosity", "0"])
    assert fresh_pg.value("SELECT relkind FROM pg_class WHERE relname = 'calls_call'") == "p"
    assert {row[0] for row in fresh_pg.sql(indexes)} == partitioned_indexes
    assert not any(name.endswith("_like") for (name,) in fresh_pg.sql(event_indexes))
    assert dict(fresh_pg.sql("SELECT call_sid, id FROM calls_call")) == ids
    assert fresh_pg.partition_of("CArt1") == name_of(month(1))
    assert fresh_pg.partition_of("CArtfar") == "calls_call_y2050m01"  # each month with calls has a partition
    registry = "SELECT call_sid, call_id FROM calls_call_sid_registry"
    assert dict(fresh_pg.sql(registry)) == ids  # rebuilt from the calls
    # The id sequence continued: a new call never reuses an id.
    assert fresh_pg.value("SELECT nextval(pg_get_serial_sequence('calls_call', 'id'))") > max(ids.values())
    # Emptying the database (TRUNCATE) empties the registry too: the same CallSid can be written again.
    _, (again,) = fresh_pg.probe("steps", steps=[
        ["commands", {"argvs": [["flush", "--no-input"]]}],
        ["insert_calls", {"calls": [{"call_sid": "CArt0", "started_at": stamps["CArt0"]}]}],
    ])
    assert "error" not in again and again["partition"] == name_of(month(0))


def test_partitions_command_on_sqlite_has_nothing_to_do(tmp_path):
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    sqlite = PgDatabase("", env)  # the same helpers, pointed at the embedded database
    *actions, as_json = sqlite.commands(["partitions", "ensure"], ["partitions", "list"],
                                        ["partitions", "check"], ["partitions", "list", "--json"])
    for result in actions:
        assert result["code"] == 0 and "nothing to do" in result["stdout"], result
    assert as_json["stdout"].strip() == "[]"
