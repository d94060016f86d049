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


@pytest.fixture(autouse=True)
def _latest_schema_after():
    """Each test migrates back and forth; the tests after it get the latest schema again."""
    yield
    migrate(*MigrationExecutor(connection).loader.graph.leaf_nodes())


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

    fields = ("pk", "verdict", "reason_codes", "qualified_at")  # the columns the model had then
    rows = {pk: rest for pk, *rest in Call.objects.values_list(*fields)}
    assert rows[unknown.pk] == ["not_billable", ["not_connected"], ended_at]
    assert rows[live.pk][0] == rows[orphan.pk][0] == "pending"
    assert rows[judged.pk][0] == "billable"


@pytest.mark.django_db(transaction=True)
def test_the_ivr_question_is_added_as_not_recorded_and_the_previous_release_can_still_write_calls(make_call):
    """``Call.ivr_prompt`` (0010): calls already written read as not recorded, and during a rolling restart
    the previous release's code, which writes calls without the column, is not refused (NOT NULL)."""
    at_the_ivr = make_call(stage="ivr", zip_attempts=1, ended_at=None)
    migrate(("calls", "0009_judge_unknown_numbers"))

    migrate(("calls", "0010_call_ivr_prompt"))

    columns = ", ".join(f.column for f in Call._meta.concrete_fields if f.column not in ("id", "ivr_prompt",
                                                                                          "call_sid"))
    with connection.cursor() as cursor:  # the previous release's INSERT: every column but the new one
        cursor.execute(f"INSERT INTO calls_call (call_sid, {columns}) SELECT 'CA' || call_sid, {columns} "
                       "FROM calls_call WHERE id = %s", [at_the_ivr.pk])
    prompts = dict(Call.objects.values_list("call_sid", "ivr_prompt"))
    assert prompts == {at_the_ivr.call_sid: "", "CA" + at_the_ivr.call_sid: ""}


@pytest.mark.django_db(transaction=True)
def test_the_kept_statuses_are_a_table_of_their_own_that_going_back_drops():
    """``calls/0011`` adds an empty table and changes no other one (the event log keeps its one index), so a
    rolling restart is enough; reversed, the table goes."""
    def event_log_indexes() -> set[str]:
        with connection.cursor() as cursor:
            return set(connection.introspection.get_constraints(cursor, "calls_callevent"))

    migrate(("calls", "0010_call_ivr_prompt"))
    before = event_log_indexes()
    assert "calls_keptstatus" not in connection.introspection.table_names()

    migrate(("calls", "0011_kept_statuses"))

    assert "calls_keptstatus" in connection.introspection.table_names()
    assert event_log_indexes() == before
    migrate(("calls", "0010_call_ivr_prompt"))
    assert "calls_keptstatus" not in connection.introspection.table_names()
