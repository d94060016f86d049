"""``Call.reason_notes``: the qualification trace's sentence of each reason a call is not billable, by its code,
kept with the verdict (the buffer that applied and its figure, the window), as the call was judged.

Calls judged before have none (``{}``): their reasons are shown by their labels, as before; nothing is worked
out again for them (their rules may have changed since). The column keeps its default in the database, ``{}``:
during a rolling restart the previous release's code writes calls without it, and is not refused (NOT NULL).
Added by hand, as ``0010``: a constant default adds the column without touching the rows (metadata only on
PostgreSQL, where the partitioned call table passes it on to every partition), where Django would rebuild the
whole call table on SQLite to add a NOT NULL column. Each backend gets the column type Django gives a JSON
field (SQLite: text; PostgreSQL: jsonb). On SQLite without the JSON check Django puts on such a column
(``JSON_VALID``): SQLite 3.37 and later test a CHECK added with a column against every row already there,
reading the whole call table under the database's write lock (about 0.5 s per million calls, pages cached),
while the previous release's webhooks wait for it. Every value written is Django's JSON (the default too).
Reversible: going back drops the column.
"""

from django.db import migrations, models

ADD = {
    "sqlite": "ALTER TABLE calls_call ADD COLUMN reason_notes text NOT NULL DEFAULT '{}'",
    "postgresql": "ALTER TABLE calls_call ADD COLUMN reason_notes jsonb NOT NULL DEFAULT '{}'::jsonb",
}
DROP = "ALTER TABLE calls_call DROP COLUMN reason_notes"


def add_column(apps, schema_editor) -> None:
    schema_editor.execute(ADD[schema_editor.connection.vendor])


def drop_column(apps, schema_editor) -> None:
    schema_editor.execute(DROP)


class Migration(migrations.Migration):

    dependencies = [
        ("calls", "0014_publisher_protected"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(add_column, drop_column)],
            state_operations=[
                migrations.AddField(
                    model_name="call",
                    name="reason_notes",
                    field=models.JSONField(blank=True, db_default={}, default=dict,
                                           verbose_name="reasons in words, as judged"),
                ),
            ],
        ),
    ]
