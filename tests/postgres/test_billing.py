"""The ledger on PostgreSQL: append-only in the database itself, beside the partitioned call table.

Given a database migrated with ``callbroker migrate``, when anyone updates or deletes a ledger row with
plain SQL, then PostgreSQL refuses; the ledger refers to calls without a foreign key (the call table is
partitioned), and ``callbroker billing check`` reports a ledger row that disagrees with its call.
"""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest


def test_the_ledger_refuses_updates_and_deletes_but_flush_still_empties_it(fresh_pg):
    started = "2026-11-27T14:03:12+00:00"
    [call] = fresh_pg.probe("insert_calls", calls=[{"call_sid": "CAledger", "started_at": started}])
    fresh_pg.sql("INSERT INTO billing_ledgerentry (call_id, call_sid, kind, generation, amount, currency, "
                 "created_at, memo) VALUES (%s, 'CAledger', 'charge', 1, 45.00, 'USD', now(), 'by hand')",
                 [call["id"]])
    for statement in ("UPDATE billing_ledgerentry SET amount = 1", "DELETE FROM billing_ledgerentry"):
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="append-only"):
            fresh_pg.sql(statement)
    assert fresh_pg.value("SELECT amount FROM billing_ledgerentry") == Decimal("45.00")
    # The call is still pending: a charge for it is a disagreement the operator's check reports.
    check = fresh_pg.cli("billing", "check", check=False)
    assert check.returncode == 1
    assert "CAledger: pending but charged 45.00 in the ledger" in check.stdout
    # Nothing references the partitioned call table (its id alone is not a unique key there).
    assert fresh_pg.value("SELECT count(*) FROM pg_constraint WHERE confrelid = 'calls_call'::regclass") == 0
    # ``flush`` (TRUNCATE) still empties the database, ledger included.
    fresh_pg.cli("flush", "--no-input")
    assert fresh_pg.value("SELECT count(*) FROM billing_ledgerentry") == 0
