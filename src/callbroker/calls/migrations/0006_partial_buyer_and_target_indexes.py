"""Index only connected calls by buyer and target; stop indexing attempts by buyer.

A call's ``buyer_id`` and ``connected_target_id`` stay NULL until a buyer answers, yet their indexes
were written for every new call, and every call that never connects kept a NULL entry in both. Partial
indexes (``WHERE … IS NOT NULL``) serve the same lookups, since an equality on the column implies it
is not NULL, on SQLite and PostgreSQL alike. The attempt's ``buyer_id`` index served no query at all:
only deleting a buyer reads attempts by buyer (to set it to NULL), a rare admin action that can afford
a scan. So a new call writes two B-trees fewer, and each target it rings one fewer (``calls/0007``
takes one more off every webhook; docs/benchmarks.md).

The old indexes are dropped by name (``DROP INDEX IF EXISTS``), not by letting Django alter the fields:
on SQLite that would copy the whole call table, and on PostgreSQL dropping a partitioned index drops it
on every monthly partition at once. The partial indexes are created the usual way (``AddIndex``; on
PostgreSQL on the partitioned table, so on every partition). Reversible: the plain indexes come back.
"""

import django.db.models.deletion
from django.db import migrations, models

from callbroker.migration_ops import DropIndexes

#: index name -> (table, column), as Django named them in 0001_initial
DROPPED = {
    "calls_call_buyer_id_95571c89": ("calls_call", "buyer_id"),
    "calls_call_connected_target_id_2df1f88d": ("calls_call", "connected_target_id"),
    "calls_callattempt_buyer_id_0fd1b928": ("calls_callattempt", "buyer_id"),
}


class Migration(migrations.Migration):

    dependencies = [
        ("calls", "0005_drop_pattern_ops_copies"),
        ("network", "0003_drop_indexes_served_by_composite_ones"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[DropIndexes(DROPPED)],
            state_operations=[
                migrations.AlterField(
                    model_name="call",
                    name="buyer",
                    field=models.ForeignKey(blank=True, db_index=False, null=True,
                                            on_delete=django.db.models.deletion.SET_NULL, related_name="calls",
                                            to="network.buyer"),
                ),
                migrations.AlterField(
                    model_name="call",
                    name="connected_target",
                    field=models.ForeignKey(blank=True, db_index=False, null=True,
                                            on_delete=django.db.models.deletion.SET_NULL,
                                            related_name="connected_calls", to="network.target"),
                ),
                migrations.AlterField(
                    model_name="callattempt",
                    name="buyer",
                    field=models.ForeignKey(db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                            related_name="attempts", to="network.buyer"),
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="call",
            index=models.Index(condition=models.Q(("connected_target__isnull", False)), fields=["connected_target"],
                               name="call_connected_target_idx"),
        ),
        migrations.AddIndex(
            model_name="call",
            index=models.Index(condition=models.Q(("buyer__isnull", False)), fields=["buyer"], name="call_buyer_idx"),
        ),
    ]
