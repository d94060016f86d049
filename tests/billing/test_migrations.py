"""Upgrading an installation that has calls: the ledger opens with the calls that were already billable.

Given billable calls recorded before the billing app existed, when ``migrate`` runs billing's migrations,
then each such call gets its charge and payout (generation 1), posted when the call was qualified, and the
ledger agrees with every call.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from callbroker.billing.models import LedgerEntry
from callbroker.billing.reconcile import ledger_mismatches
from tests.billing.conftest import NOV

OPENING = "opening entry: billable before the ledger existed"


def migrate(*target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(list(target))


@pytest.mark.django_db(transaction=True)
def test_calls_billable_before_the_ledger_get_opening_entries(make_billable, plumbing, acme, google):
    # given calls recorded (and qualified) before the ledger existed
    billable = make_billable(revenue="45.00", payout="20.00", qualified_at=NOV)
    make_billable(verdict="not_billable", qualified_at=NOV)
    migrate(("billing", "0001_initial"))  # back to an empty ledger, as right after the upgrade's first step
    assert LedgerEntry.objects.count() == 0
    assert len(ledger_mismatches()) == 2  # the billable call is neither charged nor paid out yet
    # when the data migration runs
    migrate(("billing", "0002_opening_entries"))
    # then the billable call is charged and paid out once, when it was qualified; the other one not at all
    rows = LedgerEntry.objects.order_by("kind").values_list(
        "call_id", "kind", "generation", "amount", "buyer_id", "publisher_id", "campaign_id", "currency",
        "created_at", "memo")
    assert list(rows) == [
        (billable.pk, "charge", 1, Decimal("45.00"), acme.pk, None, plumbing.pk, "USD", NOV, OPENING),
        (billable.pk, "payout", 1, Decimal("20.00"), None, google.pk, plumbing.pk, "USD", NOV, OPENING),
    ]
    assert ledger_mismatches() == []
