"""The event log: one unique index on (CallSid, dedupe key) instead of one on each.

Every webhook writes one event, and each of its indexes is one more B-tree written. The dedupe key starts
with the CallSid (``"{CallSid}:dial:2"``), so (CallSid, dedupe key) is unique exactly when the key is,
and the pair's index serves the idempotency lookup (both columns) and "the events of this call" (its
leading column). Webhook handling looks the key up with its CallSid (``calls/services.py``,
``calls/replay.py``).

Django's own operations: on PostgreSQL they drop the constraint and the index and add the new unique
constraint in place; on SQLite each of them rebuilds the event table (three copies, once, when upgrading).
Reversible.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('calls', '0006_partial_buyer_and_target_indexes'),
    ]

    operations = [
        migrations.AlterField(
            model_name='callevent',
            name='call_sid',
            field=models.CharField(max_length=64, verbose_name='CallSid'),
        ),
        migrations.AlterField(
            model_name='callevent',
            name='dedupe_key',
            field=models.CharField(max_length=200, verbose_name='dedupe key'),
        ),
        migrations.AddConstraint(
            model_name='callevent',
            constraint=models.UniqueConstraint(fields=('call_sid', 'dedupe_key'), name='event_unique_call_key'),
        ),
    ]
