"""Upgrading an installation: calls to unknown numbers that ended before such calls were judged, the IVR
question, the list of kept final statuses and the statuses kept before it, the reasons in words, the cap periods
an attempt counted."""

from __future__ import annotations

import datetime as dt
from importlib import import_module

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from callbroker.calls import replay
from callbroker.calls.models import Call, CallAttempt, CallEvent, KeptStatus

KEEP_BEFORE = "0013_keep_statuses_kept_before_the_list"


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

    later = ("reason_notes",)  # columns added since (0015)
    columns = ", ".join(f.column for f in Call._meta.concrete_fields
                        if f.column not in ("id", "ivr_prompt", "call_sid", *later))
    with connection.cursor() as cursor:  # the previous release's INSERT: every column but the new one
        cursor.execute(f"INSERT INTO calls_call (call_sid, {columns}) SELECT 'CA' || call_sid, {columns} "
                       "FROM calls_call WHERE id = %s", [at_the_ivr.pk])
    prompts = dict(Call.objects.values_list("call_sid", "ivr_prompt"))
    assert prompts == {at_the_ivr.call_sid: "", "CA" + at_the_ivr.call_sid: ""}


@pytest.mark.django_db(transaction=True)
def test_reasons_in_words_are_added_empty_and_the_previous_release_can_still_write_calls(make_call):
    """``Call.reason_notes`` (0015): calls judged before have none (their reasons are shown by their labels), and
    during a rolling restart the previous release's code, which writes calls without the column, is not refused
    (NOT NULL); going back drops the column."""
    judged = make_call(verdict="not_billable", reason_codes=["below_buffer"])
    migrate(("calls", "0014_publisher_protected"))
    with connection.cursor() as cursor:
        assert "reason_notes" not in {c.name for c in connection.introspection.get_table_description(
            cursor, "calls_call")}

    migrate(("calls", "0015_call_reason_notes"))

    columns = ", ".join(f.column for f in Call._meta.concrete_fields if f.column not in ("id", "reason_notes",
                                                                                          "call_sid"))
    with connection.cursor() as cursor:  # the previous release's INSERT: every column but the new one
        cursor.execute(f"INSERT INTO calls_call (call_sid, {columns}) SELECT 'CA' || call_sid, {columns} "
                       "FROM calls_call WHERE id = %s", [judged.pk])
    notes = dict(Call.objects.values_list("call_sid", "reason_notes"))
    assert notes == {judged.call_sid: {}, "CA" + judged.call_sid: {}}


@pytest.mark.django_db(transaction=True)
def test_reasons_in_words_are_added_without_reading_the_calls_on_sqlite(make_call):
    """``calls/0015`` on SQLite adds the column to the schema alone, as ``0010``: its cost doesn't grow with the
    call table. With a CHECK on the new column (the JSON check Django gives a JSON field), SQLite 3.37 and later
    read every call to test it, holding the database's write lock all the while (about 0.5 s per million
    calls with the pages cached): the previous release's webhooks waited, and past their lock timeout were
    answered from memory, during the migration. Counted in SQLite's steps, not timed (tests run on SQLite;
    PostgreSQL: tests/postgres/test_schema.py)."""
    judged = make_call(verdict="not_billable", reason_codes=["below_buffer"])
    columns = ", ".join(f.column for f in Call._meta.concrete_fields if f.column not in ("id", "reason_notes",
                                                                                          "call_sid"))

    def steps_to_add_the_column() -> int:
        migrate(("calls", "0014_publisher_protected"))
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        def counted(execute, sql, params, many, context):
            if "reason_notes" not in sql:  # Django's own statements (its foreign key check reads every table)
                return execute(sql, params, many, context)
            connection.connection.set_progress_handler(count, 1)
            try:
                return execute(sql, params, many, context)
            finally:
                connection.connection.set_progress_handler(None, 1)

        with connection.execute_wrapper(counted):
            migrate(("calls", "0015_call_reason_notes"))
        assert steps[0] > 0
        return steps[0]

    with_one_call = steps_to_add_the_column()
    with connection.cursor() as cursor:  # 2,000 calls more
        cursor.execute(f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
                       f"INSERT INTO calls_call (call_sid, {columns}) SELECT 'CA' || i || call_sid, {columns} "
                       "FROM calls_call CROSS JOIN n WHERE id = %s", [judged.pk])
    assert Call.objects.count() == 2001

    assert steps_to_add_the_column() == with_one_call
    assert all(notes == {} for notes in Call.objects.values_list("reason_notes", flat=True))


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


ALONE = "CA" + "1" * 32
NOTFINAL = "CA" + "2" * 32
NOTO = "CA" + "3" * 32
RECORDED = "CA" + "4" * 32
ARCHIVED = "CA" + "5" * 32
LISTED = "CA" + "6" * 32
BUSY = "CA" + "7" * 32


def status_event(sid: str, status: str = "completed", at: dt.datetime | None = None, **params: str) -> CallEvent:
    """A status webhook as the event log keeps it (its parameters as the carrier posted them)."""
    posted = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+17205550142", "To": "+15125550001",
              "FromZip": "78701", "FromState": "TX", "CallStatus": status, "CallDuration": "42", **params}
    posted = {key: value for key, value in posted.items() if value is not None}
    return CallEvent.objects.create(call_sid=sid, kind="status", dedupe_key=f"{sid}:status:{status}:",
                                    params=posted, received_at=at or dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC))


@pytest.mark.django_db(transaction=True)
def test_the_final_statuses_kept_before_the_list_are_put_on_it_and_become_calls(replay_network, make_call,
                                                                                monkeypatch):
    """``calls/0013``: a final status kept in the event log only, before ``calls/0011`` made the list, was
    never turned into a call. Each one whose call was never recorded is put on the list (once, with the call
    as the status describes it and when it came); the sweep then keeps it as a call of its own."""
    came = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    status_event(ALONE, "ringing", at=came - dt.timedelta(seconds=50))
    status_event(ALONE, "completed", at=came)
    status_event(ALONE, "canceled", at=came + dt.timedelta(seconds=1))  # a second final one: the first counts
    status_event(NOTFINAL, "in-progress")
    status_event(NOTO, To=None)  # names no number called: kept for its inbound webhook only, as the webhook does
    recorded = make_call(call_sid=RECORDED)
    status_event(recorded.call_sid)  # its call is in the database
    status_event(ARCHIVED)
    CallEvent.objects.create(call_sid=ARCHIVED, kind="voice", dedupe_key=f"{ARCHIVED}:voice", params={})
    status_event(LISTED)
    KeptStatus.objects.create(call_sid=LISTED, inbound={"to": "as listed"}, received_at=came)
    status_event(BUSY, "busy", at=came + dt.timedelta(minutes=5))
    migrate(("calls", "0012_received_at_kept_when_given"))
    monkeypatch.setattr(import_module(f"callbroker.calls.migrations.{KEEP_BEFORE}"), "BATCH", 2)  # several batches

    migrate(("calls", KEEP_BEFORE))

    # The columns of the schema at 0013 (``carrier`` came with 0017).
    listed = {kept.call_sid: kept for kept in KeptStatus.objects.only("call_sid", "inbound", "received_at")}
    assert sorted(listed) == sorted([ALONE, BUSY, LISTED])
    assert listed[LISTED].inbound == {"to": "as listed"}  # left as it was
    assert listed[ALONE].received_at == came and listed[BUSY].received_at == came + dt.timedelta(minutes=5)
    assert listed[ALONE].inbound == {
        "call_sid": ALONE, "account_sid": "AC" + "0" * 32, "from_raw": "+17205550142", "to": "+15125550001",
        "from_zip": "78701", "from_state": "TX", "from_city": "", "stir_verstat": ""}
    rows = sorted(KeptStatus.objects.values_list("id", "call_sid", "inbound", "received_at"))
    migrate(("calls", "0012_received_at_kept_when_given"))  # going back changes nothing …
    assert sorted(KeptStatus.objects.values_list("id", "call_sid", "inbound", "received_at")) == rows
    migrate(("calls", KEEP_BEFORE))  # … and forward again puts nothing on the list twice
    assert sorted(KeptStatus.objects.values_list("id", "call_sid", "inbound", "received_at")) == rows
    KeptStatus.objects.filter(call_sid=LISTED).delete()
    migrate(*MigrationExecutor(connection).loader.graph.leaf_nodes())  # the sweep writes calls of the latest schema

    assert sorted(replay.record_kept_statuses(timezone.now())) == sorted([ALONE, BUSY])

    alone = Call.objects.get(call_sid=ALONE)
    assert (alone.fallback_applied, alone.final_status, alone.duration_seconds, alone.ended_at) == (
        "status_only", "completed", 42, came)
    assert (alone.caller_number, alone.to_number, alone.verdict) == ("+17205550142", "+15125550001", "not_billable")
    assert not Call.objects.filter(call_sid__in=[NOTFINAL, NOTO, ARCHIVED]).exists()


@pytest.mark.django_db(transaction=True)
def test_putting_the_statuses_kept_before_the_list_on_it_costs_one_query_on_an_empty_event_log():
    migrate(("calls", "0012_received_at_kept_when_given"))
    with CaptureQueriesContext(connection) as queries:
        migrate(("calls", KEEP_BEFORE))
    looked = [q["sql"] for q in queries.captured_queries if "calls_callevent" in q["sql"]]
    assert len(looked) == 1 and "MIN(" in looked[0].upper()  # its first and last ids: none, no batch read
    assert not any("calls_keptstatus" in q["sql"] for q in queries.captured_queries)


@pytest.mark.django_db(transaction=True)
def test_cap_periods_counted_are_added_not_recorded_and_the_previous_release_can_still_write_attempts(make_call):
    """``CallAttempt.counted_periods`` (0016): attempts dialled before read as not recorded (NULL: their release
    works the periods out as before), and during a rolling restart the previous release's code, which writes
    attempts without the column, is not refused; going back drops the column."""
    rung = make_call(attempts=[{"result": "ringing"}])
    migrate(("calls", "0015_call_reason_notes"))
    with connection.cursor() as cursor:
        assert "counted_periods" not in {c.name for c in connection.introspection.get_table_description(
            cursor, "calls_callattempt")}

    migrate(("calls", "0016_attempt_counted_periods"))

    columns = ", ".join(f.column for f in CallAttempt._meta.concrete_fields
                        if f.column not in ("id", "sequence", "counted_periods"))
    with connection.cursor() as cursor:  # the previous release's INSERT: every column but the new one
        cursor.execute(f"INSERT INTO calls_callattempt (sequence, {columns}) SELECT sequence + 1, {columns} "
                       "FROM calls_callattempt WHERE call_id = %s", [rung.pk])
    assert list(CallAttempt.objects.filter(call=rung).values_list("sequence", "counted_periods")) == [
        (1, None), (2, None)]
