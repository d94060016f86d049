"""The schema on PostgreSQL: migrations, the partitioned call table, its keys, indexes and money columns.

Given a fresh database migrated with ``callbroker migrate``, when we look at PostgreSQL's catalogs,
then the call table is partitioned by month of ``started_at`` the way docs/database.md says.
"""

from __future__ import annotations

import datetime as dt

from tests.schema_checks import APP_TABLE_PREFIXES, CALL_PATH_TABLES, redundant_indexes

CALL_PATH_INDEXES = ("calls_call_pkey", "call_unique_sid_started", "call_campaign_caller_idx",
                     "call_caller_time_idx", "call_buyer_idx", "call_connected_target_idx")


def month(offset: int = 0) -> dt.datetime:
    """Midnight UTC on the first day of this month (+ offset months)."""
    today = dt.datetime.now(dt.UTC)
    index = today.year * 12 + today.month - 1 + offset
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.UTC)


def name_of(start: dt.datetime) -> str:
    return f"calls_call_y{start:%Y}m{start:%m}"


def test_migrations_apply_on_a_fresh_database_and_match_the_models(pg):
    # (``pg`` is a copy of a database that ``callbroker migrate`` built from nothing.)
    shown, pending = pg.commands(["showmigrations", "calls", "network"],
                                 ["makemigrations", "--check", "--dry-run"])
    assert "[ ]" not in shown["stdout"] and "[X] 0002_partition_calls_by_month" in shown["stdout"]
    assert pending["code"] == 0, pending  # the models need no migration the repo lacks


def test_call_table_is_partitioned_by_range_of_started_at(pg):
    assert pg.sql(
        "SELECT p.partstrat, a.attname FROM pg_partitioned_table p "
        "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = ANY (p.partattrs::int2[]) "
        "WHERE p.partrelid = 'calls_call'::regclass"
    ) == [("r", "started_at")]
    bounds = dict(pg.sql("SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                         "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'calls_call'::regclass"))
    assert bounds.pop("calls_call_default") == "DEFAULT"
    for offset in range(4):  # this month and the next three, ready before their first call
        start, end = month(offset), month(offset + 1)
        name = name_of(start)
        assert name in bounds, sorted(bounds)
        assert bounds[name] == (f"FOR VALUES FROM ('{start:%Y-%m-%d} 00:00:00+00') "
                                f"TO ('{end:%Y-%m-%d} 00:00:00+00')")


def test_primary_and_unique_keys_include_the_partition_key(pg):
    keys = dict(pg.sql("SELECT contype, pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE conrelid = 'calls_call'::regclass AND contype IN ('p', 'u')"))
    assert keys == {"p": "PRIMARY KEY (id, started_at)", "u": "UNIQUE (call_sid, started_at)"}
    # Nothing references the call table (a partitioned table can't be referenced by id alone) …
    assert pg.value("SELECT count(*) FROM pg_constraint WHERE confrelid = 'calls_call'::regclass") == 0
    # … but the call table's own foreign keys to the network are still there.
    referenced = {row[0] for row in pg.sql("SELECT confrelid::regclass::text FROM pg_constraint "
                                           "WHERE conrelid = 'calls_call'::regclass AND contype = 'f'")}
    assert referenced == {"network_buyer", "network_campaign", "network_target", "network_publisher",
                          "network_trackingnumber"}
    # Ids still come from one sequence shared by every partition.
    assert pg.value("SELECT pg_get_serial_sequence('calls_call', 'id')") == "public.calls_call_id_seq"


def test_calls_of_different_months_land_in_different_partitions(pg):
    stamps = {"CAmonth0": month(0) + dt.timedelta(days=2, hours=5),
              "CAmonth1": month(1) + dt.timedelta(hours=1),
              "CAmonth2": month(2) + dt.timedelta(days=27),
              "CAmonth2end": month(3) - dt.timedelta(microseconds=1),
              "CAfar": dt.datetime(2061, 7, 4, tzinfo=dt.UTC)}
    placed = pg.probe("insert_calls", calls=[{"call_sid": sid, "started_at": at.isoformat()}
                                             for sid, at in stamps.items()])
    where = {row["call_sid"]: row["partition"] for row in placed}
    assert where == {
        "CAmonth0": name_of(month(0)),
        "CAmonth1": name_of(month(1)),
        "CAmonth2": name_of(month(2)),
        "CAmonth2end": name_of(month(2)),
        "CAfar": "calls_call_default",  # no partition that far ahead: the default one catches it
    }
    # Reading through the parent finds every call, wherever it lives.
    found = pg.value("SELECT count(*) FROM calls_call WHERE call_sid = ANY (%s)", [list(stamps)])
    assert found == len(stamps)
    pg.sql("DELETE FROM calls_call WHERE call_sid = ANY (%s)", [list(stamps)])  # leave the shared db clean


def test_a_callsid_is_unique_across_partitions(pg):
    # (call_sid, started_at) alone would allow this; the CallSid registry refuses it, as SQLite does.
    first, same_month, next_month, far = pg.probe("insert_calls", calls=[
        {"call_sid": "CAonce", "started_at": month(0).isoformat()},
        {"call_sid": "CAonce", "started_at": (month(0) + dt.timedelta(seconds=1)).isoformat()},
        {"call_sid": "CAonce", "started_at": month(1).isoformat()},
        {"call_sid": "CAonce", "started_at": "2071-01-01T00:00:00+00:00"},
    ])
    assert first["partition"] == name_of(month(0))
    for refused in (same_month, next_month, far):
        assert "a call with CallSid CAonce already exists" in refused["error"]
    assert pg.value("SELECT count(*) FROM calls_call WHERE call_sid = 'CAonce'") == 1
    assert pg.sql("SELECT call_id FROM calls_call_sid_registry WHERE call_sid = 'CAonce'") == [(first["id"],)]


def test_call_path_indexes_exist_on_the_table_and_every_partition(pg):
    partitions = pg.value("SELECT count(*) FROM pg_inherits WHERE inhparent = 'calls_call'::regclass")
    for index in CALL_PATH_INDEXES:
        kind = pg.value("SELECT relkind FROM pg_class WHERE relname = %s", [index])
        assert kind == "I", f"{index} is not a partitioned index"
        children = pg.value("SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", [index])
        assert children == partitions, index
    assert pg.value("SELECT pg_get_indexdef('call_campaign_caller_idx'::regclass)").endswith(
        "(campaign_id, caller_number, started_at DESC)")
    # Only connected calls are indexed by buyer and target: a new call writes neither index.
    for index, column in (("call_buyer_idx", "buyer_id"), ("call_connected_target_idx", "connected_target_id")):
        assert pg.value("SELECT pg_get_indexdef(%s::regclass)", [index]).endswith(
            f"({column}) WHERE ({column} IS NOT NULL)")
    # The idempotency key stays globally unique: the event log is not partitioned. The key starts with the
    # CallSid, so unique with it; that one index also finds a call's events.
    assert pg.sql("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                  "WHERE conrelid = 'calls_callevent'::regclass AND contype = 'u'") == [
        ("event_unique_call_key", "UNIQUE (call_sid, dedupe_key)")]
    assert pg.value("SELECT count(*) FROM pg_index WHERE indrelid = 'calls_callevent'::regclass") == 2  # + pkey


def test_money_columns_are_numeric_with_cents(pg):
    money = {("calls_call", "revenue"), ("calls_call", "payout"), ("calls_call", "job_value"),
             ("network_campaign", "payout"), ("network_target", "price")}
    rows = pg.sql("SELECT table_name, column_name, data_type, numeric_precision, numeric_scale "
                  "FROM information_schema.columns WHERE (table_name, column_name) IN "
                  "(SELECT * FROM unnest(%s::text[], %s::text[]))",
                  [[t for t, _ in money], [c for _, c in money]])
    assert {(t, c): (kind, p, s) for t, c, kind, p, s in rows} == {key: ("numeric", 12, 2) for key in money}


def index_rows(pg, table: str) -> list[tuple]:
    """(name, columns in order, unique, partial, definition) of every index on ``table``."""
    return pg.sql(
        "SELECT i.relname, ARRAY(SELECT a.attname FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.ord), "
        "x.indisunique, x.indpred IS NOT NULL, pg_get_indexdef(x.indexrelid) "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass",
        [table],
    )


def test_no_table_of_ours_has_an_index_another_serves(pg):
    tables = [t for (t,) in pg.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
              if t.startswith(APP_TABLE_PREFIXES)]
    assert set(CALL_PATH_TABLES) <= set(tables)
    rows = {t: index_rows(pg, t) for t in tables}
    assert [t for t in CALL_PATH_TABLES if not rows[t]] == []  # each has some index at all
    # No varchar_pattern_ops copy (``…_like``, Django's for LIKE 'prefix%') on the tables every call writes:
    # no lookup there is by prefix.
    assert [(t, name) for t in CALL_PATH_TABLES for name, *_, definition in rows[t]
            if "_pattern_ops" in definition] == []
    # Elsewhere such a copy serves other operators than its plain twin, so it is not counted as served;
    # the few left (on the network's unique keys) cost only when a network file is loaded.
    found = {t: redundant_indexes([(n, tuple(c), u, p) for n, c, u, p, definition in rows[t]
                                   if "_pattern_ops" not in definition])
             for t in tables}
    assert found == {t: [] for t in tables}


def test_the_reasons_in_words_are_added_to_every_partition_without_touching_a_call(fresh_pg):
    """``calls/0015`` adds ``reason_notes`` (jsonb, NOT NULL, default ``{}`` kept in the database) to the
    partitioned call table, which passes it on to every partition: the calls already there read ``{}``, and a
    node of the previous release, inserting calls without the column during a rolling restart, is not refused."""
    fresh_pg.probe("insert_calls", calls=[{"call_sid": "CArn0", "started_at": month(0).isoformat()},
                                          {"call_sid": "CArn1", "started_at": month(1).isoformat()}])
    fresh_pg.commands(["migrate", "calls", "0014_publisher_protected", "--verbosity", "0"])
    column = ("SELECT c.relname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid) "
              "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
              "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
              "WHERE a.attname = 'reason_notes' AND NOT a.attisdropped AND (c.oid = 'calls_call'::regclass "
              "OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'calls_call'::regclass))")
    assert fresh_pg.sql(column) == []

    fresh_pg.commands(["migrate", "calls", "0015_call_reason_notes", "--verbosity", "0"])

    tables = {row[0] for row in fresh_pg.sql(
        "SELECT 'calls_call' UNION SELECT inhrelid::regclass::text FROM pg_inherits "
        "WHERE inhparent = 'calls_call'::regclass")}
    rows = fresh_pg.sql(column)
    assert {name for name, *_ in rows} == tables and len(tables) > 2
    assert {tuple(rest) for _, *rest in rows} == {("jsonb", True, "'{}'::jsonb")}
    previous = [name for (name,) in fresh_pg.sql(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'calls_call'::regclass AND attnum > 0 "
        "AND NOT attisdropped AND attname NOT IN ('id', 'call_sid', 'reason_notes')")]
    columns = ", ".join(previous)
    fresh_pg.sql(f"INSERT INTO calls_call (call_sid, {columns}) SELECT 'CAold' || call_sid, {columns} "
                 "FROM calls_call WHERE call_sid = 'CArn1'")  # the previous release's INSERT
    assert dict(fresh_pg.sql("SELECT call_sid, reason_notes FROM calls_call")) == {
        "CArn0": {}, "CArn1": {}, "CAoldCArn1": {}}
