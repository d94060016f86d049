"""``callbroker.db``: the call path's prepared statements must read and write exactly what the ORM does."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from callbroker import db
from callbroker.calls.models import Call, CallAttempt, CallEvent
from callbroker.network.models import Campaign

T0 = dt.datetime(2026, 11, 27, 14, 3, 12, 250000, tzinfo=dt.UTC)

texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
small_ints = st.integers(min_value=0, max_value=32767)


def _call(**fields) -> Call:
    fields.setdefault("call_sid", "CA" + "0" * 32)
    fields.setdefault("to_number", "+15125550100")
    fields.setdefault("started_at", T0)
    return Call(**fields)


ZONES = st.sampled_from([dt.UTC, ZoneInfo("UTC"), ZoneInfo("America/Chicago"), dt.timezone(dt.timedelta(hours=5))])
moments = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31), timezones=ZONES)


@settings(max_examples=80, deadline=None)
@given(sid=texts, city=texts, attempts=small_ints, confirmed=st.sampled_from([None, True, False]),
       talk=small_ints, revenue=st.decimals(min_value=0, max_value=9999, places=2),
       decision=st.none() | st.dictionaries(st.sampled_from(["ring", "x"]), st.lists(small_ints, max_size=3)),
       started=moments, ended=st.none() | moments, job_value=st.none() | st.decimals(min_value=0, max_value=99999,
                                                                                        places=2),
       campaign=st.none() | st.integers(min_value=1, max_value=2**31 - 1))
def test_prepared_values_are_the_orms(sid, city, attempts, confirmed, talk, revenue, decision, started, ended,
                                      job_value, campaign):
    call = _call(call_sid=sid, caller_city=city, zip_attempts=attempts, category_confirmed=confirmed,
                 talk_seconds=talk, revenue=revenue, decision=decision, started_at=started, ended_at=ended,
                 job_value=job_value, campaign_id=campaign)
    fields = tuple(f for f in Call._meta.concrete_fields if not f.primary_key)
    fast = db._prepared(fields, call, True, connection)
    orm = [f.get_db_prep_save(f.pre_save(call, True), connection) for f in fields]
    assert fast == orm
    assert [type(v) for v in fast] == [type(v) for v in orm]
    one = (Call._meta.get_field("started_at"),)  # a single column (update of one field)
    assert db._prepared(one, call, False, connection) == [one[0].get_db_prep_save(started, connection)]


def test_prepared_runs_pre_save_where_it_does_more_than_read():
    """``auto_now_add`` sets the value on insert: ``_prepared`` must call ``pre_save`` for such a column."""
    campaign = Campaign(name="Plumbing")
    field = (Campaign._meta.get_field("created_at"),)
    assert campaign.created_at is None
    (value,) = db._prepared(field, campaign, True, connection)
    assert campaign.created_at is not None and value == connection.ops.adapt_datetimefield_value(campaign.created_at)


def test_an_events_time_given_is_the_time_written():
    """``CallEvent.received_at`` defaults to now but keeps a time given (the spool replay gives the time the
    webhook was received): no ``pre_save`` stamps it on insert."""
    event = CallEvent(call_sid="CA1", kind="voice", dedupe_key="CA1:voice", params={}, received_at=T0)
    (value,) = db._prepared((CallEvent._meta.get_field("received_at"),), event, True, connection)
    assert event.received_at == T0 and value == connection.ops.adapt_datetimefield_value(T0)


@pytest.mark.django_db
def test_insert_select_update_round_trip_like_the_orm():
    call = _call(decision={"ring": [3, 1]}, revenue=Decimal("42.50"), category_confirmed=True)
    db.insert(call)
    assert call.pk is not None and not call._state.adding

    loaded = db.select_one(Call, call_sid=call.call_sid)
    orm = Call.objects.get(pk=call.pk)
    for field in Call._meta.concrete_fields:
        assert getattr(loaded, field.attname) == getattr(orm, field.attname), field.name
    assert loaded.started_at == T0 and loaded.started_at.tzinfo is not None
    assert loaded.revenue == Decimal("42.50") and loaded.decision == {"ring": [3, 1]}

    loaded.stage = "ended"
    loaded.decision["ring"].append(7)  # mutated in place: must still be written
    loaded.talk_seconds = 95
    db.update(loaded)
    again = Call.objects.get(pk=call.pk)
    assert (again.stage, again.decision, again.talk_seconds) == ("ended", {"ring": [3, 1, 7]}, 95)


@pytest.mark.django_db
def test_update_writes_only_reassigned_columns():
    call = db.insert(_call(caller_city="Austin"))
    loaded = db.select_one(Call, call_sid=call.call_sid)
    # Someone else changes a column this request never touched ...
    Call.objects.filter(pk=call.pk).update(caller_city="Dallas")
    loaded.stage = "dialing"
    db.update(loaded)
    row = Call.objects.get(pk=call.pk)
    # ... and it is not overwritten with the stale value read before.
    assert (row.stage, row.caller_city) == ("dialing", "Dallas")
    # Written: nothing left to write but the mutable values (JSON lists and dicts), always written.
    mutable = {f.name for f in Call._meta.concrete_fields if isinstance(getattr(loaded, f.attname), (dict, list))}
    assert mutable == {"reason_codes", "reason_notes"}
    assert set(db._changed(loaded)) == mutable


@pytest.mark.django_db
def test_an_orm_instance_is_written_whole():
    call = Call.objects.create(call_sid="CA" + "1" * 32, to_number="+15125550100", started_at=T0)
    Call.objects.filter(pk=call.pk).update(caller_city="Dallas")
    call.stage = "ended"
    db.update(call)  # no record of what was read: every column is written, as Model.save() does
    assert Call.objects.get(pk=call.pk).caller_city == ""


@pytest.mark.django_db
def test_select_filters_orders_and_update_where_counts():
    call = db.insert(_call())
    for seq in (2, 1, 3):
        db.insert(CallAttempt(call=call, sequence=seq, number="+15125550101", started_at=T0, slot_held=seq != 3))
    held = db.select(CallAttempt, call_id=call.pk, slot_held=True, order_by="sequence")
    assert [a.sequence for a in held] == [1, 2]
    last = db.select_one(CallAttempt, call_id=call.pk, order_by="-sequence")
    assert last.sequence == 3 and last.started_at == T0
    assert db.select_one(CallAttempt, call_id=call.pk, sequence=9) is None
    assert db.update_where(Call, {"recording_url": "https://r/1", "recording_seconds": 12}, call_sid=call.call_sid) == 1
    assert db.update_where(Call, {"recording_url": "x"}, call_sid="CA-none") == 0
    assert Call.objects.get(pk=call.pk).recording_seconds == 12
    assert db.from_db(Call, "started_at", connection.ops.adapt_datetimefield_value(T0)) == T0


@pytest.mark.django_db
def test_hand_written_statements_run_on_the_connection_with_djangos_errors():
    from django.db import IntegrityError, OperationalError

    call = db.insert(_call())
    table = Call._meta.db_table
    assert db.fetchone(f"SELECT call_sid, talk_seconds FROM {table} WHERE id = %s", [call.pk]) == (call.call_sid, 0)
    assert db.fetchone(f"SELECT call_sid FROM {table} WHERE id = %s", [call.pk + 1]) is None
    assert db.execute(f"UPDATE {table} SET caller_city = %s WHERE id = %s", ["100% Austin", call.pk]) == 1
    assert db.fetchall(f"SELECT caller_city FROM {table} WHERE caller_city LIKE '100%%'") == [("100% Austin",)]
    with pytest.raises(IntegrityError):  # a duplicate CallSid: the ORM's exception, as callers catch it
        db.insert(_call())
    with pytest.raises(OperationalError):  # e.g. a missing table; an unreachable database raises the same
        db.fetchone("SELECT 1 FROM no_such_table")


@pytest.mark.django_db
def test_hand_written_statements_are_counted_when_queries_are_logged():
    from django.test.utils import CaptureQueriesContext

    call = db.insert(_call())
    with CaptureQueriesContext(connection) as queries:
        db.fetchone(f"SELECT id FROM {Call._meta.db_table} WHERE id = %s", [call.pk])
        db.select_one(Call, call_sid=call.call_sid)
        db.update_where(Call, {"caller_city": "Waco"}, call_sid=call.call_sid)
    assert len(queries) == 3


def _columns(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


@settings(max_examples=40, deadline=None)
@given(sid=texts, city=texts, started=moments, confirmed=st.sampled_from([None, True, False]))
def test_new_builds_what_the_constructor_builds(sid, city, started, confirmed):
    values = {"call_sid": sid, "caller_city": city, "started_at": started, "category_confirmed": confirmed,
              "campaign_id": 7}
    fast, orm = db.new(Call, **values), Call(**values)
    assert _columns(fast) == _columns(orm)
    assert (fast._state.adding, fast._state.db) == (True, None)
    assert db.new(Call).reason_codes is not db.new(Call).reason_codes  # a callable default: one list each
    attempt = {"call_id": 3, "sequence": 2, "number": "+15125550101", "started_at": started}
    assert _columns(db.new(CallAttempt, **attempt)) == _columns(CallAttempt(**attempt))


def test_new_refuses_what_is_not_a_column_attribute():
    with pytest.raises(TypeError, match="campaign"):
        db.new(Call, campaign=None)  # the relation's name: ``campaign_id`` is the column attribute


def test_new_uses_the_constructor_when_someone_listens_to_it():
    from django.db.models.signals import post_init

    seen = []

    def listener(sender, instance, **kwargs):
        seen.append(instance.call_sid)

    post_init.connect(listener, sender=Call)
    try:
        db.new(Call, call_sid="CA-heard")
    finally:
        post_init.disconnect(listener, sender=Call)
    assert seen == ["CA-heard"]


@pytest.mark.django_db
def test_a_new_instance_is_inserted_and_read_back():
    call = db.insert(db.new(Call, call_sid="CA" + "2" * 32, to_number="+15125550100", started_at=T0))
    stored = Call.objects.get(pk=call.pk)
    assert (stored.call_sid, stored.started_at, stored.reason_codes, stored.stage) == (call.call_sid, T0, [], "ivr")


@pytest.mark.django_db
def test_hand_written_statements_pass_through_execute_wrappers():
    """Django's ``execute_wrapper`` (monitoring, query probes) sees the call path's statements."""
    call = db.insert(_call())
    seen = []

    def watch(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        db.fetchone(f"SELECT id FROM {Call._meta.db_table} WHERE id = %s", [call.pk])
        db.insert(_call(call_sid="CA" + "3" * 32))
    assert len(seen) == 2 and seen[0].startswith("SELECT id") and seen[1].startswith("INSERT INTO")


def test_plans_are_kept_per_fields_tuple_and_never_mixed_up():
    """``_plan`` is kept by the identity of the fields tuple: the same tuple gets the kept plan, an equal or
    reordered tuple built anew gets a plan of its own columns, and a full cache starts afresh."""
    call = _call(caller_city="Austin", zip_attempts=2)
    fields = tuple(f for f in Call._meta.concrete_fields if not f.primary_key)
    plan = db._plan(fields, "sqlite")
    assert db._plan(fields, "sqlite") is plan
    reordered = tuple(reversed(fields))
    assert db._prepared(reordered, call, True, connection) == db._prepared(fields, call, True, connection)[::-1]
    for _ in range(db._PLANS_KEPT + 5):  # tuples made per call fill the cache; it starts afresh, still right
        two = (Call._meta.get_field("zip_attempts"), Call._meta.get_field("caller_city"))
        assert db._prepared(two, call, False, connection) == [2, "Austin"]
    assert len(db._PLANS) <= db._PLANS_KEPT


@pytest.mark.django_db
def test_statements_are_in_djangos_query_log_while_debug_is_on(settings):
    db.fetchone("SELECT 1")  # the first statement of the process reads DEBUG (off in tests)
    settings.DEBUG = True
    connection.queries_log.clear()
    assert db.fetchone("SELECT 2 + %s", [1]) == (3,)
    assert [q["sql"] for q in connection.queries_log] == ["SELECT 2 + 1"]
    settings.DEBUG = False
    connection.queries_log.clear()
    assert db.fetchone("SELECT 3") == (3,)
    assert not connection.queries_log
