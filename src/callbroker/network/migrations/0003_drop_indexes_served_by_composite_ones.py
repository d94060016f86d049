"""Drop ``network_targetusage``'s index on ``target_id``: ``targetusage_unique_period`` (target, period) serves it.

Dropped by name rather than by altering the field, which on SQLite would copy the table (see
calls/0004). Reversible.
"""

import django.db.models.deletion
from django.db import migrations, models

from callbroker.migration_ops import DropIndexes

DROPPED = {"network_targetusage_target_id_97387112": ("network_targetusage", "target_id")}


class Migration(migrations.Migration):

    dependencies = [
        ('network', '0002_targetstate_counted_without_redis'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[DropIndexes(DROPPED)],
            state_operations=[
                migrations.AlterField(
                    model_name='targetusage',
                    name='target',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='usage', to='network.target'),
                ),
            ],
        ),
    ]
