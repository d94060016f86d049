"""Drop the target table's second index on ``campaign_id``.

``Target.campaign`` had its foreign-key index and, from 0001, ``target_campaign_idx`` on the same single
column: two identical B-trees, both written whenever a network file is loaded. The named one stays.

Dropped by name (``DROP INDEX IF EXISTS``), not by letting Django alter the field, which on SQLite copies
the table. Reversible: the index is created again.
"""

import django.db.models.deletion
from django.db import migrations, models

from callbroker.migration_ops import DropIndexes

#: index name -> (table, column), as Django named it in 0001_initial
DROPPED = {"network_target_campaign_id_c8dce987": ("network_target", "campaign_id")}


class Migration(migrations.Migration):

    dependencies = [
        ("network", "0003_drop_indexes_served_by_composite_ones"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[DropIndexes(DROPPED)],
            state_operations=[
                migrations.AlterField(
                    model_name="target",
                    name="campaign",
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name="targets", to="network.campaign"),
                ),
            ],
        ),
    ]
