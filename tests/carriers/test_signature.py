"""``carriers/twilio.verify``: the twilio package's validator, fed parameters it reads without raising."""

from __future__ import annotations

from urllib.parse import urlencode

from django.test import RequestFactory, override_settings
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from callbroker.carriers import form, twilio
from callbroker.sim import emulator

names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
URL = "https://calls.example.com/carriers/twilio/status?seq=2"
FORM = "application/x-www-form-urlencoded"


@given(st.dictionaries(names, values, max_size=20))
def test_signed_params_sign_exactly_as_a_plain_dict(params):
    validator = RequestValidator("token")
    expected = validator.compute_signature(URL, params)
    assert validator.compute_signature(URL, twilio.SignedParams(params)) == expected
    assert emulator.Carrier("http://127.0.0.1:9", "token").signature(URL, params) == expected


@override_settings(PUBLIC_URL="https://calls.example.com", TWILIO_AUTH_TOKEN="token", TWILIO_AUTH_TOKENS_EXTRA=[])
def test_verify_accepts_the_carriers_signature_and_refuses_any_other():
    params = {"CallSid": "CA" + "1" * 32, "CallStatus": "completed", "From": "+15125550100"}
    good = RequestValidator("token").compute_signature(URL, params)
    for signature, expected in ((good, True), (RequestValidator("other").compute_signature(URL, params), False)):
        request = RequestFactory().post("/carriers/twilio/status?seq=2", params, HTTP_X_TWILIO_SIGNATURE=signature)
        assert twilio.verify(request, params) is expected
    tampered = {**params, "CallStatus": "busy"}
    request = RequestFactory().post("/carriers/twilio/status?seq=2", tampered, HTTP_X_TWILIO_SIGNATURE=good)
    assert twilio.verify(request, tampered) is False


@override_settings(PUBLIC_URL="", ALLOWED_HOSTS=["calls.example.com"])
def test_callback_base_is_the_url_the_carrier_called_without_its_path():
    """Without ``CALLBROKER_PUBLIC_URL`` the callbacks' base is the signed URL's scheme and host, port kept."""
    for kwargs, base in (({"HTTP_HOST": "calls.example.com:8443", "secure": True}, "https://calls.example.com:8443"),
                         ({"HTTP_HOST": "calls.example.com"}, "http://calls.example.com")):
        request = RequestFactory().post("/carriers/twilio/status?seq=2", {}, **kwargs)
        assert twilio.base_url(request) == base
        assert twilio.public_url(request) == base + "/carriers/twilio/status?seq=2"


@override_settings(PUBLIC_URL="https://calls.example.com", ALLOWED_HOSTS=["10.0.0.7"])
def test_callback_base_behind_a_proxy_is_the_public_url():
    request = RequestFactory().post("/carriers/twilio/status", {}, HTTP_HOST="10.0.0.7:8000")
    assert twilio.base_url(request) == "https://calls.example.com"


def test_extra_tokens_are_read_without_the_spaces_around_the_commas(tmp_path):
    """``TWILIO_AUTH_TOKENS_EXTRA="old, new"``: every webhook signed with the new token was refused (403)
    while its leading space was kept — in the middle of a token rotation, every call."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "TWILIO_AUTH_TOKENS_EXTRA": " old-token , new-token,, ", "CALLBROKER_DATA_DIR": str(tmp_path),
           "DJANGO_SETTINGS_MODULE": "callbroker.settings"}
    env.pop("CALLBROKER_ENV", None)
    out = subprocess.run([sys.executable, "-c", "import json; from django.conf import settings; "
                          "print(json.dumps(settings.TWILIO_AUTH_TOKENS_EXTRA))"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == ["old-token", "new-token"]


@override_settings(PUBLIC_URL="https://calls.example.com", TWILIO_AUTH_TOKEN="token", TWILIO_AUTH_TOKENS_EXTRA=[])
@given(st.lists(st.tuples(st.sampled_from(["CallSid", "Digits", "Foo"]), values), min_size=1, max_size=8))
def test_a_name_given_more_than_once_is_verified_over_every_value_as_twilio_signs_it(pairs):
    """Twilio's validator signs each value of a repeated name (it reads Django's ``QueryDict`` by
    ``getlist``); the webhook's own parse keeps the last for the view and every one for the signature."""
    body = urlencode(pairs)
    signature = RequestValidator("token").compute_signature(
        URL, RequestFactory().post("/", body, content_type=FORM).POST)
    request = RequestFactory().post("/carriers/twilio/status?seq=2", body, content_type=FORM,
                                    HTTP_X_TWILIO_SIGNATURE=signature)
    assert twilio.verify(request, form.params(request), form.every_value(request))
    if any(len({v for n, v in pairs if n == name}) > 1 for name, _ in pairs):  # last values alone: another text
        assert not twilio.verify(request, form.params(request))
