"""``CallAttempt.counted_periods``: the periods (hour, day, month of the buyer's time) whose cap unit the
attempt's reservation took, written at dial time, so that its release gives back exactly those units.

The release worked them out again from the caps and the buyer's time zone as they were at release time: a cap
added while a line rang (``network load``) had an unanswered leg give back a unit it never took (another
call's), and the line took one call more than its cap allowed; a cap removed gave back nothing of a unit taken;
a time zone changed gave back units of another day or month.

Nullable, no default: NULL is "not recorded", what the previous release's code writes during a rolling restart
(and what every attempt dialled before holds); their release works the periods out as before. Added by hand in
the same statement on SQLite and PostgreSQL: a nullable column without a default is added without touching the
rows (metadata only on both). Reversible: going back drops the column.
"""

from django.db import migrations, models

ADD = "ALTER TABLE calls_callattempt ADD COLUMN counted_periods varchar(32) NULL"
DROP = "ALTER TABLE calls_callattempt DROP COLUMN counted_periods"


class Migration(migrations.Migration):

    dependencies = [
        ("calls", "0015_call_reason_notes"),
    ]

    operations = [
        migrations.RunSQL(ADD, DROP, state_operations=[
            migrations.AddField(
                model_name="callattempt",
                name="counted_periods",
                field=models.CharField(blank=True, max_length=32, null=True, verbose_name="cap periods counted"),
            ),
        ]),
    ]
