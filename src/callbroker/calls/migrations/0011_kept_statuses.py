"""``KeptStatus``: the final statuses that came before their call was recorded, until the call is.

A new, empty table (``CREATE TABLE`` and its two keys): instant on SQLite and PostgreSQL, whatever the size
of the call table and of the event log, neither of which it touches (no index is added to the event log,
which every webhook writes). A rolling restart is enough: the previous release's nodes don't know the
table and go on as before. Reversible: going back drops the table (the statuses stay in the event log).
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('calls', '0010_call_ivr_prompt'),
    ]

    operations = [
        migrations.CreateModel(
            name='KeptStatus',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('call_sid', models.CharField(max_length=64, verbose_name='CallSid')),
                ('inbound', models.JSONField(verbose_name='the call as the carrier described it')),
                ('received_at', models.DateTimeField(verbose_name='received')),
            ],
            options={
                'verbose_name': 'final status kept for its call',
                'constraints': [models.UniqueConstraint(fields=('call_sid',), name='kept_status_once_per_call')],
            },
        ),
    ]
