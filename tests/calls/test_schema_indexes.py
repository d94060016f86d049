"""The call path's tables carry no index that another index already serves (SQLite; PostgreSQL in tests/postgres).

Every index is one more B-tree page written per call. A plain index whose columns lead another index
(``caller_number`` before ``caller_number, started_at``) serves no lookup the longer one doesn't.
"""

from __future__ import annotations

import pytest
from django.db import connection

from tests.schema_checks import CALL_PATH_TABLES, redundant_indexes


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
@pytest.mark.parametrize("table", CALL_PATH_TABLES)
def test_no_index_is_served_by_another_on_sqlite(table):
    indexes = sqlite_indexes(table)
    assert indexes, f"{table} has no index at all"
    assert redundant_indexes(indexes) == []


def test_the_check_finds_a_leading_column_index():
    indexes = [("one", ("caller_number",), False, False), ("two", ("caller_number", "started_at"), False, False),
               ("partial", ("caller_number",), False, True), ("unique", ("call_sid",), True, False),
               ("same", ("call_sid",), False, False)]
    assert redundant_indexes(indexes) == [("one", "two"), ("same", "unique")]
