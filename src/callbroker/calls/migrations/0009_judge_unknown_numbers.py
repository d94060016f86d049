"""Calls to a number that is no active tracking number, ended before they were judged when they end
(``services._judge_unrouted``): not billable, ``not_connected``, nothing to pay. Before, they stayed
``pending`` among the calls in progress (``calls list --verdict pending``, ``callbroker_calls_pending``)."""

from django.db import migrations
from django.db.models import F


def judge(apps, schema_editor):
    Call = apps.get_model("calls", "Call")
    Call.objects.filter(campaign__isnull=True, fallback_applied="unknown_number", stage="ended",
                        verdict="pending").update(verdict="not_billable", reason_codes=["not_connected"],
                                                  qualified_at=F("ended_at"))


class Migration(migrations.Migration):

    dependencies = [
        ("calls", "0008_job_value_not_negative"),
    ]

    operations = [
        migrations.RunPython(judge, migrations.RunPython.noop),
    ]
