"""Drop the ledger's single-column ``buyer_id`` and ``publisher_id`` indexes.

``ledger_buyer_posted_idx`` (buyer, created_at) and ``ledger_publisher_posted_idx`` (publisher,
created_at) start with those columns and serve every lookup they served (statements, the PROTECT check
when a buyer or publisher is deleted). A billable call posts a charge and a payout: two B-trees fewer
written for each.

Dropped by name (``DROP INDEX IF EXISTS``), not by letting Django alter the fields, which on SQLite copies
the table. Reversible: the indexes are created again.
"""

import django.db.models.deletion
from django.db import migrations, models

from callbroker.migration_ops import DropIndexes

#: index name -> (table, column), as Django named them in 0001_initial
DROPPED = {
    "billing_ledgerentry_buyer_id_0c7d062b": ("billing_ledgerentry", "buyer_id"),
    "billing_ledgerentry_publisher_id_3e88f4bd": ("billing_ledgerentry", "publisher_id"),
}


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0002_opening_entries"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[DropIndexes(DROPPED)],
            state_operations=[
                migrations.AlterField(
                    model_name="ledgerentry",
                    name="buyer",
                    field=models.ForeignKey(blank=True, db_index=False, null=True,
                                            on_delete=django.db.models.deletion.PROTECT,
                                            related_name="ledger_entries", to="network.buyer", verbose_name="buyer"),
                ),
                migrations.AlterField(
                    model_name="ledgerentry",
                    name="publisher",
                    field=models.ForeignKey(blank=True, db_index=False, null=True,
                                            on_delete=django.db.models.deletion.PROTECT,
                                            related_name="ledger_entries", to="network.publisher",
                                            verbose_name="publisher"),
                ),
            ],
        ),
    ]
