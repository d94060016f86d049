"""``Call.publisher``: ``PROTECT`` instead of ``SET NULL``, so a publisher with calls can't be deleted.

Deleting a publisher (its tracking numbers first) set every call it brought to no publisher, silently: the
calls no longer said who brought them, and a call in progress ended billable with its payout posted to no one
(``billing check``: "billable but the call has no publisher"). Django's state only: neither backend holds the
rule in the database (Django's deletion collector applies it, in Python, as it did ``SET NULL``); this
migration writes nothing, instant on SQLite and PostgreSQL whatever the number of calls. A rolling restart is
enough: a node of the previous release still deletes as before. Reversible (nothing to undo in the database).
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('calls', '0013_keep_statuses_kept_before_the_list'),
        ('network', '0006_money_not_negative'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name='call',
                    name='publisher',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                            related_name='calls', to='network.publisher'),
                ),
            ],
        ),
    ]
