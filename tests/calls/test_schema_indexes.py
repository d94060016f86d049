"""No table of ours carries an index that another index already serves (SQLite; PostgreSQL in tests/postgres).

Every index is one more B-tree page written per call. A plain index whose columns lead another index
(``caller_number`` before ``caller_number, started_at``) serves no lookup the longer one doesn't.
"""

from __future__ import annotations

import pytest
from django.db import connection

from tests.schema_checks import APP_TABLE_PREFIXES, CALL_PATH_TABLES, redundant_indexes


def sqlite_indexes(table: str) -> list[tuple[str, tuple[str, ...], bool, bool]]:
    """(name, columns in order, unique, partial) of every index on ``table``."""
    with connection.cursor() as cursor:
        cursor.execute(f'PRAGMA index_list("{table}")')
        listed = [(row[1], bool(row[2]), bool(row[4])) for row in cursor.fetchall()]  # name, unique, partial
        out = []
        for name, unique, partial in listed:
            cursor.execute(f'PRAGMA index_info("{name}")')
            columns = tuple(row[2] for row in sorted(cursor.fetchall()))
            out.append((name, columns, unique, partial))
    return out


@pytest.mark.django_db
def test_no_table_of_ours_has_an_index_another_serves():
    tables = [t for t in connection.introspection.table_names() if t.startswith(APP_TABLE_PREFIXES)]
    assert set(CALL_PATH_TABLES) <= set(tables)
    indexes = {table: sqlite_indexes(table) for table in tables}
    assert [table for table in CALL_PATH_TABLES if not indexes[table]] == []  # each has some index at all
    assert {table: redundant_indexes(found) for table, found in indexes.items()} == {table: [] for table in tables}


def test_the_check_finds_a_leading_column_index():
    indexes = [("one", ("caller_number",), False, False), ("two", ("caller_number", "started_at"), False, False),
               ("partial", ("caller_number",), False, True), ("unique", ("call_sid",), True, False),
               ("same", ("call_sid",), False, False)]
    assert redundant_indexes(indexes) == [("one", "two"), ("same", "unique")]


def query_plan(queryset_or_sql, params=()) -> str:
    """SQLite's EXPLAIN QUERY PLAN of a queryset (or of SQL with params), its lines joined."""
    if not isinstance(queryset_or_sql, str):
        queryset_or_sql, params = queryset_or_sql.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {queryset_or_sql}", params)
        return "\n".join(row[-1] for row in cursor.fetchall())


@pytest.mark.django_db
def test_calls_are_indexed_by_buyer_and_target_only_once_connected():
    partial = {name: columns for name, columns, _unique, is_partial in sqlite_indexes("calls_call") if is_partial}
    assert partial == {"call_buyer_idx": ("buyer_id",), "call_connected_target_idx": ("connected_target_id",)}
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, sql FROM sqlite_master WHERE name IN ('call_buyer_idx', 'call_connected_target_idx')")
        definitions = dict(cursor.fetchall())
    assert definitions["call_buyer_idx"].endswith('WHERE "buyer_id" IS NOT NULL')
    assert definitions["call_connected_target_idx"].endswith('WHERE "connected_target_id" IS NOT NULL')
    # Nothing reads attempts by buyer: no index to write on every attempt.
    assert [cols for _name, cols, *_ in sqlite_indexes("calls_callattempt") if cols == ("buyer_id",)] == []


@pytest.mark.django_db
def test_lookups_by_buyer_and_target_use_the_partial_indexes(make_target):
    from callbroker.calls.models import Call
    from callbroker.network.models import Target

    target = make_target()
    assert "INDEX call_buyer_idx (buyer_id=?)" in query_plan(Call.objects.filter(buyer=target.buyer))
    assert "INDEX call_buyer_idx (buyer_id=?)" in query_plan(Call.objects.filter(buyer_id__in=[target.buyer_id, 99]))
    # The network loader's "does this target have calls" check (network/services.target_ids_with_calls).
    used = Target.objects.filter(pk__in=[target.pk]).filter(connected_calls__isnull=False).values_list("pk")
    assert "call_connected_target_idx" in query_plan(used)


@pytest.mark.django_db
def test_deleting_a_buyer_still_clears_it_from_calls_and_attempts(make_target, make_call):
    from callbroker.calls.models import Call, CallAttempt

    target = make_target()
    kept = make_target()
    call = make_call(attempts=[{"target": target, "result": "bridged", "talk_seconds": 90}])
    other = make_call(attempts=[{"target": kept, "result": "bridged", "talk_seconds": 90}])
    assert call.buyer_id == target.buyer_id

    target.buyer.delete()  # cascades to the buyer's targets; the calls keep their history, without the buyer

    call.refresh_from_db()
    assert (call.buyer_id, call.connected_target_id) == (None, None)
    assert list(CallAttempt.objects.filter(call=call).values_list("buyer_id", "target_id")) == [(None, None)]
    assert Call.objects.get(pk=other.pk).buyer_id == kept.buyer_id
    assert list(Call.objects.filter(buyer=kept.buyer)) == [other]


@pytest.mark.django_db
def test_the_event_log_has_one_index_for_idempotency_and_for_a_calls_events(make_call):
    from callbroker.calls.models import CallEvent

    assert sqlite_indexes("calls_callevent") == [("sqlite_autoindex_calls_callevent_1", ("call_sid", "dedupe_key"),
                                                  True, False)]
    call = make_call(events=[{"kind": "voice", "params": {}}, {"kind": "status", "params": {}}])
    events = CallEvent.objects.filter(call_sid=call.call_sid).order_by("id")  # the admin's and `calls show`'s
    assert "INDEX sqlite_autoindex_calls_callevent_1 (call_sid=?)" in query_plan(events)
    assert [e.kind for e in events] == ["voice", "status"]


@pytest.mark.django_db(transaction=True)
def test_drop_indexes_drops_by_name_and_going_back_creates_them_again():
    from callbroker.migration_ops import DropIndexes

    def names() -> set[str]:
        return {name for name, *_ in sqlite_indexes("scratch_drop")}

    with connection.cursor() as cursor:
        cursor.execute('CREATE TABLE "scratch_drop" ("id" integer PRIMARY KEY, "a" integer, "b" varchar(9))')
        cursor.execute('CREATE INDEX "scratch_a" ON "scratch_drop" ("a")')
        cursor.execute('CREATE INDEX "scratch_b" ON "scratch_drop" ("b")')
    try:
        plain = DropIndexes({"scratch_a": ("scratch_drop", "a"), "scratch_b": ("scratch_drop", "b")})
        elsewhere = DropIndexes({"scratch_a": ("scratch_drop", "a")}, vendor="postgresql")
        with connection.schema_editor() as editor:
            elsewhere.database_forwards("calls", editor, None, None)
        assert names() == {"scratch_a", "scratch_b"}  # not this backend: nothing done
        with connection.schema_editor() as editor:
            plain.database_forwards("calls", editor, None, None)
            plain.database_forwards("calls", editor, None, None)  # already gone: IF EXISTS
        assert names() == set()
        with connection.schema_editor() as editor:
            plain.database_backwards("calls", editor, None, None)
        assert {(name, columns) for name, columns, *_ in sqlite_indexes("scratch_drop")} == {
            ("scratch_a", ("a",)), ("scratch_b", ("b",))}
        assert plain.describe() == "Drop indexes scratch_a, scratch_b"
        assert elsewhere.deconstruct() == ("DropIndexes", [{"scratch_a": ("scratch_drop", "a")}],
                                           {"vendor": "postgresql"})
    finally:
        with connection.cursor() as cursor:
            cursor.execute('DROP TABLE "scratch_drop"')
