"""``carriers/form.py`` parses a webhook's form like Django's ``request.POST`` would, once per request."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.core.exceptions import BadRequest, RequestDataTooBig, TooManyFieldsSent
from django.test import RequestFactory, override_settings
from hypothesis import given
from hypothesis import strategies as st

from callbroker.carriers import form

FORM = "application/x-www-form-urlencoded"
VOICE = "/carriers/twilio/voice"
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(st.lists(st.tuples(names, values), max_size=15))
def test_same_parameters_as_djangos_post(pairs):
    request = RequestFactory().post("/carriers/twilio/voice", urlencode(pairs), content_type=FORM)
    expected = {key: RequestFactory().post("/", urlencode(pairs), content_type=FORM).POST.get(key)
                for key, _ in pairs}
    assert form.params(request) == expected  # repeated names keep their last value, as POST.get does


def test_parsed_once_and_shared():
    request = RequestFactory().post("/carriers/twilio/voice", "CallSid=CA1&Digits=", content_type=FORM)
    first = form.params(request)
    assert first == {"CallSid": "CA1", "Digits": ""}
    assert form.params(request) is first


def test_get_reads_the_query():
    assert form.params(RequestFactory().get("/carriers/twilio/fallback?CallSid=CA2&To=%2B1")) == \
        {"CallSid": "CA2", "To": "+1"}


def test_multipart_goes_through_django():
    request = RequestFactory().post("/carriers/twilio/voice", {"CallSid": "CA3"})  # multipart by default
    assert form.params(request) == {"CallSid": "CA3"}


def test_invalid_utf8_is_read_as_latin1_like_querydict():
    body = b"City=S%E3o&Raw=\xe9"
    request = RequestFactory().post("/carriers/twilio/voice", body, content_type=FORM)
    assert form.params(request) == {"City": "S\ufffdo", "Raw": "é"}
    assert form.params(request) == RequestFactory().post("/", body, content_type=FORM).POST.dict()


@override_settings(CALLBROKER_CARRIER_MAX_FIELDS=3)
def test_too_many_fields_refused():
    request = RequestFactory().post("/carriers/twilio/voice", "a=1&b=2&c=3&d=4", content_type=FORM)
    with pytest.raises(TooManyFieldsSent):
        form.params(request)


@override_settings(CALLBROKER_MAX_BODY_BYTES=10)
def test_oversized_body_refused():
    request = RequestFactory().post("/carriers/twilio/voice", "CallSid=" + "C" * 20, content_type=FORM)
    with pytest.raises(RequestDataTooBig):
        form.params(request)


def test_the_carrier_limits_hold_with_the_default_settings():
    """Django's own limits are the admin's (thousands of fields, megabytes): a webhook keeps its own."""
    many = {f"Field{i}": "x" for i in range(201)}
    for request in (RequestFactory().post(VOICE, urlencode(many), content_type=FORM),
                    RequestFactory().post(VOICE, many)):  # multipart
        with pytest.raises(TooManyFieldsSent):
            form.params(request)
    assert len(form.params(RequestFactory().post(VOICE, dict(list(many.items())[:200])))) == 200
    for request in (RequestFactory().post(VOICE, "CallSid=" + "C" * 65536, content_type=FORM),
                    RequestFactory().post(VOICE, {"CallSid": "C" * 65536})):
        with pytest.raises(RequestDataTooBig):
            form.params(request)


def test_another_charset_refused():
    request = RequestFactory().post("/carriers/twilio/voice", "CallSid=CA1", content_type=FORM + "; charset=latin-1")
    with pytest.raises(BadRequest):
        form.params(request)


def test_every_value_of_the_names_given_more_than_once_only():
    request = RequestFactory().post("/carriers/twilio/voice", "CallSid=CA1&Foo=1&Bar=x&Foo=2", content_type=FORM)
    assert form.params(request) == {"CallSid": "CA1", "Foo": "2", "Bar": "x"}
    assert form.every_value(request) == {"Foo": ["1", "2"]}
    once = RequestFactory().post("/carriers/twilio/voice", "CallSid=CA1&Foo=1", content_type=FORM)
    form.params(once)
    assert form.every_value(once) == {}
