"""Checks of the database schema shared by the SQLite and PostgreSQL tests."""

from __future__ import annotations

from collections.abc import Sequence

#: The tables written on every call (the ledger: on every billable one).
CALL_PATH_TABLES = ("calls_call", "calls_callattempt", "calls_callevent", "network_targetusage",
                    "billing_ledgerentry")
#: The table name prefixes of callbroker's own apps (Django's apps are left as Django makes them).
APP_TABLE_PREFIXES = ("calls_", "network_", "billing_")


def redundant_indexes(indexes: Sequence[tuple[str, tuple[str, ...], bool, bool]]) -> list[tuple[str, str]]:
    """(index, the index that serves it) for each plain index whose columns lead another full index.

    ``indexes`` holds (name, columns in order, unique, partial). A unique index enforces something and a
    partial one is smaller than any other, so neither is ever the redundant one; a partial index never
    serves another (it lacks rows).
    """
    found = []
    for name, columns, unique, partial in indexes:
        if unique or partial:
            continue
        for other, other_columns, _, other_partial in indexes:
            if other != name and not other_partial and other_columns[: len(columns)] == columns:
                found.append((name, other))
                break
    return sorted(found)
