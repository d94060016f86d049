"""``CallEvent.received_at``: a default of now instead of ``auto_now_add``, so a time given on insert is kept.

The spool replay gives each event the time its webhook was received (the spooled line's ``received_at``);
``auto_now_add`` overwrote it with the replay's. Django's state only: neither backend holds the default in
the database (Django fills it in Python), and the column stays ``NOT NULL`` as it was. Let Django alter the
field and SQLite would copy the whole event log into a new table; this migration writes nothing, instant on
SQLite and PostgreSQL whatever the size of the log. A rolling restart is enough: the previous release's
nodes write events as before. Reversible (nothing to undo in the database).
"""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('calls', '0011_kept_statuses'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name='callevent',
                    name='received_at',
                    field=models.DateTimeField(default=django.utils.timezone.now, editable=False,
                                               verbose_name='received'),
                ),
            ],
        ),
    ]
