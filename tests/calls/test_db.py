"""``callbroker.db``: the call path's prepared statements must read and write exactly what the ORM does."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from callbroker import db
from callbroker.calls.models import Call, CallAttempt

T0 = dt.datetime(2026, 11, 27, 14, 3, 12, 250000, tzinfo=dt.UTC)

texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
small_ints = st.integers(min_value=0, max_value=32767)


def _call(**fields) -> Call:
    fields.setdefault("call_sid", "CA" + "0" * 32)
    fields.setdefault("to_number", "+15125550100")
    fields.setdefault("started_at", T0)
    return Call(**fields)


@settings(max_examples=60, deadline=None)
@given(sid=texts, city=texts, attempts=small_ints, confirmed=st.sampled_from([None, True, False]),
       talk=small_ints, revenue=st.decimals(min_value=0, max_value=9999, places=2),
       decision=st.none() | st.dictionaries(st.sampled_from(["ring", "x"]), st.lists(small_ints, max_size=3)))
def test_prepared_values_are_the_orms(sid, city, attempts, confirmed, talk, revenue, decision):
    call = _call(call_sid=sid, caller_city=city, zip_attempts=attempts, category_confirmed=confirmed,
                 talk_seconds=talk, revenue=revenue, decision=decision)
    fields = [f for f in Call._meta.concrete_fields if not f.primary_key]
    fast = db._prepared(fields, call, True, connection)
    orm = [f.get_db_prep_save(f.pre_save(call, True), connection) for f in fields]
    assert fast == orm
    assert [type(v) for v in fast] == [type(v) for v in orm]


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
    assert mutable == {"reason_codes"}
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
