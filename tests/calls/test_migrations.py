"""Upgrading an installation with calls to unknown numbers that ended before such calls were judged."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from callbroker.calls.models import Call


def migrate(*target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(list(target))


@pytest.mark.django_db(transaction=True)
def test_ended_calls_to_unknown_numbers_are_judged_not_connected(make_call):
    ended_at = dt.datetime(2026, 11, 27, 14, 5, tzinfo=dt.UTC)
    unknown, live, orphan, judged = (make_call(verdict="pending", ended_at=ended_at) for _ in range(4))
    Call.objects.filter(pk__in=[unknown.pk, live.pk]).update(campaign=None, tracking_number=None, publisher=None,
                                                             fallback_applied="unknown_number")
    Call.objects.filter(pk=live.pk).update(stage="fallback", ended_at=None)  # still on the line
    Call.objects.filter(pk=orphan.pk).update(campaign=None)  # its campaign was deleted: staff judge it
    Call.objects.filter(pk=judged.pk).update(campaign=None, fallback_applied="unknown_number",
                                             verdict="billable")  # not pending: left alone
    migrate(("calls", "0008_job_value_not_negative"))

    migrate(("calls", "0009_judge_unknown_numbers"))

    rows = {c.pk: (c.verdict, c.reason_codes, c.qualified_at) for c in Call.objects.all()}
    assert rows[unknown.pk] == ("not_billable", ["not_connected"], ended_at)
    assert rows[live.pk][0] == rows[orphan.pk][0] == "pending"
    assert rows[judged.pk][0] == "billable"
