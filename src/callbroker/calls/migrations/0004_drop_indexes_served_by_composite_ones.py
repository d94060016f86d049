"""Drop the call table's and attempt table's single-column indexes that a composite index already serves.

Every index is one more B-tree page written (and checkpointed) per call; these four only duplicated the
leading column of another index: ``caller_number`` (``call_caller_time_idx``), ``campaign_id``
(``call_campaign_caller_idx``), the attempt's ``call_id`` (``attempt_unique_sequence``) and its
``target_id`` (``attempt_target_result_idx``). On PostgreSQL the ``varchar_pattern_ops`` copy of
``caller_number`` (``…_like``, only for ``LIKE 'prefix%'``) goes too, as Django drops it with the index.

The indexes are dropped by name (``DROP INDEX IF EXISTS``), not by letting Django alter the fields: on
SQLite that would copy the whole call table four times, and on PostgreSQL dropping a partitioned index
drops it on every monthly partition at once. Reversible: the indexes are created again.
"""

import django.db.models.deletion
from django.db import migrations, models

from callbroker.migration_ops import DropIndexes

#: index name -> (table, column), as Django named them in 0001_initial
DROPPED = {
    "calls_call_caller_number_b68d6ec4": ("calls_call", "caller_number"),
    "calls_call_campaign_id_238afaff": ("calls_call", "campaign_id"),
    "calls_callattempt_call_id_4f61f6cf": ("calls_callattempt", "call_id"),
    "calls_callattempt_target_id_bd99aedc": ("calls_callattempt", "target_id"),
}
LIKE = {"calls_call_caller_number_b68d6ec4_like": ("calls_call", "caller_number")}  # PostgreSQL only


class Migration(migrations.Migration):

    dependencies = [
        ('calls', '0003_attempt_slot_held_index'),
        ('network', '0003_drop_indexes_served_by_composite_ones'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[DropIndexes(DROPPED),
                                 DropIndexes(LIKE, opclass="varchar_pattern_ops", vendor="postgresql")],
            state_operations=[
                migrations.AlterField(
                    model_name='call',
                    name='caller_number',
                    field=models.CharField(blank=True, max_length=20, verbose_name='caller (E.164)'),
                ),
                migrations.AlterField(
                    model_name='call',
                    name='campaign',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='calls', to='network.campaign'),
                ),
                migrations.AlterField(
                    model_name='callattempt',
                    name='call',
                    field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='attempts', to='calls.call'),
                ),
                migrations.AlterField(
                    model_name='callattempt',
                    name='target',
                    field=models.ForeignKey(db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='attempts', to='network.target'),
                ),
            ],
        ),
    ]
