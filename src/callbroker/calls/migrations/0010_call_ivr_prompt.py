"""``Call.ivr_prompt``: the IVR question a call waits for an answer to (``choices.IvrPrompt``).

The column keeps its default in the database, '' (not recorded): during a rolling restart the previous
release's code writes calls without it, and the call flow reads those as it did before. Added by hand in
the same statement on SQLite and PostgreSQL: a constant default adds the column without touching the rows,
where Django would rebuild the whole call table on SQLite to add a NOT NULL column.
"""

from django.db import migrations, models

ADD = "ALTER TABLE calls_call ADD COLUMN ivr_prompt varchar(16) NOT NULL DEFAULT ''"
DROP = "ALTER TABLE calls_call DROP COLUMN ivr_prompt"


class Migration(migrations.Migration):

    dependencies = [
        ("calls", "0009_judge_unknown_numbers"),
    ]

    operations = [
        migrations.RunSQL(ADD, DROP, state_operations=[
            migrations.AddField(
                model_name="call",
                name="ivr_prompt",
                field=models.CharField(blank=True, choices=[("", "Not recorded"), ("none", "None"),
                                                            ("zip", "ZIP code"), ("category", "Category confirmation")],
                                       db_default="", default="", max_length=16,
                                       verbose_name="IVR question awaited"),
            ),
        ]),
    ]
