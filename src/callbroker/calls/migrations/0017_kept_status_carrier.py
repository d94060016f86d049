"""``KeptStatus.carrier``: who signed the final status kept for a call not recorded yet (``events.CARRIERS``).

The sweep that records such a call when its inbound webhook never comes (``replay.record_kept_statuses``)
read it from ``inbound`` alone, which keeps the previous release's keys (that release builds
``InboundCall(**inbound)``): every call it recorded said ``twilio``, a Telnyx or SignalWire call too, where the
same call spooled in an outage and replayed said who signed.

Nullable, no default: NULL is "not recorded", what the previous release's code writes during a rolling restart
(and what every row kept before holds), read as Twilio's, as every call was then. Added by hand in the same
statement on SQLite and PostgreSQL: a nullable column without a default is added without touching the rows
(metadata only on both). Reversible: going back drops the column.
"""

from django.db import migrations, models

ADD = "ALTER TABLE calls_keptstatus ADD COLUMN carrier varchar(16) NULL"
DROP = "ALTER TABLE calls_keptstatus DROP COLUMN carrier"


class Migration(migrations.Migration):

    dependencies = [
        ("calls", "0016_attempt_counted_periods"),
    ]

    operations = [
        migrations.RunSQL(ADD, DROP, state_operations=[
            migrations.AddField(
                model_name="keptstatus",
                name="carrier",
                field=models.CharField(blank=True, max_length=16, null=True, verbose_name="signed by"),
            ),
        ]),
    ]
