"""Telnyx TeXML's webhooks, signed with Ed25519 (``telnyx-signature-ed25519`` over ``telnyx-timestamp|raw body``),
accepted on every carrier endpoint when ``TELNYX_PUBLIC_KEY`` holds the account's public key, refused (403,
logged, nothing stored) otherwise. Until 2026-12-08 only ``X-Twilio-Signature`` was checked: every Telnyx
webhook was refused.

Given the e2e network and a Telnyx account whose key is generated here, posted through Django's test client
with real signatures (the ``cryptography`` package signs as Telnyx does)."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
from urllib.parse import parse_qsl, urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.test import Client

from callbroker.calls import replay, spool
from callbroker.calls.models import Call, CallEvent
from callbroker.carriers import twilio
from callbroker.network.loader import load_network
from callbroker.network.snapshot import current_snapshot, reset_snapshot
from tests.hostile.strategies import E2E_NETWORK, TOKEN, sign, signing_carrier_settings

PLUMBING = "+15125550001"
ACCOUNT = "6a09cdc3-8948-47f0-aa62-74ac943d6c58"  # Telnyx's AccountSid: a UUID
TELNYX = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ANOTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
FORM = "application/x-www-form-urlencoded"
NOW = 1_765_000_000  # our clock, in the test (the timestamps' tolerance is 300 s either way)


def public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.fixture
def carrier(transactional_db, settings, tmp_path, monkeypatch):
    signing_carrier_settings(settings, tmp_path / "data")
    settings.COUNTERS_BACKEND = "sql"
    settings.TELNYX_PUBLIC_KEYS = (public(TELNYX),)
    monkeypatch.setattr(replay, "ensure_running", lambda: None)
    monkeypatch.setattr(twilio, "_now", lambda: NOW + 0.25, raising=False)  # without the check: assertions fail
    reset_snapshot()
    load_network(E2E_NETWORK)
    current_snapshot()
    yield settings
    reset_snapshot()


def sid(n: int) -> str:
    """Call ``n``'s CallSid as Telnyx writes it."""
    return f"v3:telnyx-call-{n:08d}"


def inbound(n: int, **extra: str) -> dict[str, str]:
    return {"CallSid": sid(n), "AccountSid": ACCOUNT, "From": "+15125559876", "To": PLUMBING,
            "CallStatus": "ringing", "Direction": "inbound", "FromZip": "78701",
            "ShakenStirAttestation": "A", "ShakenStirValidated": "true", **extra}


def telnyx_post(path: str, params: dict[str, str], *, key: Ed25519PrivateKey = TELNYX, age: int = 0,
                timestamp: str | None = None, signed_at: str | None = None, body: bytes | None = None):
    """Post ``params`` as Telnyx does: the form's bytes signed with the timestamp ``age`` seconds old (or
    ``timestamp``; "" leaves the header out). ``signed_at``: another timestamp signed than the one sent;
    ``body``: other bytes sent than those signed."""
    signed = urlencode(params).encode()
    at = str(NOW - age) if timestamp is None else timestamp
    signature = base64.b64encode(key.sign((signed_at or at).encode() + b"|" + signed)).decode()
    sent = {"telnyx-signature-ed25519": signature, **({"telnyx-timestamp": at} if at else {})}
    return Client().post(path, signed if body is None else body, content_type=FORM, headers=sent)


def test_a_telnyx_call_is_taken_and_its_status_callback_too(carrier):
    answer = telnyx_post("/carriers/twilio/voice", inbound(1))
    assert answer.status_code == 200 and "<Dial" in answer.content.decode()
    status = telnyx_post("/carriers/twilio/status", inbound(1, CallStatus="completed", CallDuration="30"))
    assert status.status_code == 200

    call = Call.objects.get(call_sid=sid(1))
    assert (call.account_sid, call.stir_verstat, call.final_status) == (ACCOUNT, "TN-Validation-Passed-A",
                                                                         "completed")


ENDPOINTS = ["/carriers/twilio/voice", "/carriers/twilio/fallback", "/carriers/twilio/status",
             "/carriers/twilio/dial?seq=1&c=1", "/carriers/twilio/ivr/zip?attempt=1", "/carriers/twilio/ivr/category",
             "/carriers/twilio/whisper?c=1", "/carriers/twilio/recording", "/carriers/twilio/voicemail"]


def ours(path: str) -> str:
    """``path`` with its parameters signed as our TwiML signs them (``sig=``: Telnyx doesn't sign the URL)."""
    name, _, query = path.partition("?")
    return twilio._signed_url("", name, dict(parse_qsl(query)), twilio._callback_keys()[0])


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_carrier_endpoint_takes_telnyx_signatures_and_refuses_forged_ones(carrier, path):
    params = inbound(2, DialCallStatus="completed", RecordingSid="RE" + "1" * 32, RecordingUrl="https://r.example/1",
                     Digits="1")
    path = ours(path)
    assert telnyx_post(path, params, key=ANOTHER).status_code == 403
    assert telnyx_post(path, params).status_code == 200


@pytest.mark.parametrize("why, post, logged", [
    ("another key", dict(key=ANOTHER), "invalid Telnyx signature (no key of TELNYX_PUBLIC_KEY verifies it"),
    ("a tampered body", dict(body=urlencode(inbound(3, FromZip="78702")).encode()), "invalid Telnyx signature"),
    ("301 s old", dict(age=301), "stale Telnyx signature: telnyx-timestamp is 301 s behind our clock"),
    ("301 s ahead", dict(age=-301), "stale Telnyx signature: telnyx-timestamp is 301 s ahead of our clock"),
    ("a signature of another time", dict(timestamp=str(NOW - 1), signed_at=str(NOW)),
     "invalid Telnyx signature"),
    ("no timestamp", dict(timestamp=""), "Telnyx signature without a telnyx-timestamp of Unix seconds"),
    ("a timestamp not of digits", dict(timestamp=" 1765000000"), "without a telnyx-timestamp of Unix seconds"),
])
def test_a_forged_or_stale_telnyx_webhook_is_refused_logged_and_stores_nothing(carrier, caplog, why, post, logged):
    with caplog.at_level(logging.WARNING, logger="callbroker.carriers"):
        answer = telnyx_post("/carriers/twilio/voice", inbound(3), **post)
        fallback = telnyx_post("/carriers/twilio/fallback", inbound(3), **post)

    assert (answer.status_code, answer.content) == (403, b"Forbidden: invalid signature")
    assert fallback.status_code == 403
    assert not Call.objects.exists() and not CallEvent.objects.exists()
    assert not spool.path_of(sid(3)).exists()
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 2 and all(logged in line for line in refusals), refusals


def test_a_telnyx_signed_get_is_refused_its_query_being_unsigned(carrier, caplog):
    """Telnyx signs ``timestamp|body``, never the URL: a GET's parameters, in its query string, were signed by
    nothing. Until 2026-12-08 one signature of an empty body (any GET Telnyx sent) was taken for 300 s with any
    CallSid, caller and number in the query: a call recorded and routed for each."""
    signature = base64.b64encode(TELNYX.sign(f"{NOW}|".encode())).decode()
    sent = {"telnyx-signature-ed25519": signature, "telnyx-timestamp": str(NOW)}
    with caplog.at_level(logging.WARNING, logger="callbroker.carriers"):
        answers = [Client().get(f"{path}?{urlencode(inbound(n, From=f'+1512555000{n}'))}", headers=sent)
                   for n, path in ((11, "/carriers/twilio/voice"), (12, "/carriers/twilio/voice"),
                                   (13, "/carriers/twilio/fallback"))]

    assert [(a.status_code, a.content) for a in answers] == [(403, b"Forbidden: invalid signature")] * 3
    assert not Call.objects.exists() and not CallEvent.objects.exists()
    assert not spool.path_of(sid(13)).exists()
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 3 and all("Telnyx signature on a GET: Telnyx signs the body only" in line
                                      and "set the TeXML application's webhook methods to POST" in line
                                      for line in refusals), refusals


@pytest.mark.parametrize("age", [300, -300])
def test_a_timestamp_300_s_from_our_clock_is_taken(carrier, age):
    assert telnyx_post("/carriers/twilio/voice", inbound(10), age=age).status_code == 200


def test_a_telnyx_webhook_without_a_key_set_is_refused_saying_to_set_it(carrier, caplog):
    carrier.TELNYX_PUBLIC_KEYS = ()
    with caplog.at_level(logging.WARNING, logger="callbroker.carriers"):
        answer = telnyx_post("/carriers/twilio/voice", inbound(4))
    assert answer.status_code == 403
    assert not Call.objects.exists()
    assert any("TELNYX_PUBLIC_KEY is not set: set it" in r.getMessage() for r in caplog.records)


def test_any_key_of_a_rotation_is_taken(carrier):
    carrier.TELNYX_PUBLIC_KEYS = (public(ANOTHER), public(TELNYX))
    assert telnyx_post("/carriers/twilio/voice", inbound(5)).status_code == 200
    assert telnyx_post("/carriers/twilio/voice", inbound(6), key=ANOTHER).status_code == 200


def test_twilio_and_telnyx_webhooks_are_both_taken_with_a_telnyx_key_set(carrier):
    assert telnyx_post("/carriers/twilio/voice", inbound(7)).status_code == 200
    params = {"CallSid": "CA" + "7" * 32, "AccountSid": "AC" + "7" * 32, "From": "+15125559876", "To": PLUMBING,
              "CallStatus": "ringing", "Direction": "inbound", "FromZip": "78701"}
    path = "/carriers/twilio/voice"
    answer = Client().post(path, urlencode(params), content_type=FORM,
                           headers={"X-Twilio-Signature": sign(TOKEN, f"http://testserver{path}", params)})
    assert answer.status_code == 200 and Call.objects.filter(call_sid="CA" + "7" * 32).exists()


def test_the_telnyx_account_is_named_in_twilio_account_sid(carrier):
    """``TWILIO_ACCOUNT_SID`` compares text: Telnyx's UUID is named there like a Twilio SID."""
    carrier.TWILIO_ACCOUNT_SID = f"AC{'a' * 32},{ACCOUNT}"
    assert telnyx_post("/carriers/twilio/voice", inbound(8)).status_code == 200
    assert telnyx_post("/carriers/twilio/voice", inbound(9, AccountSid="0" * 8 + ACCOUNT[8:])).status_code == 403


def settings_error(value: str) -> str:
    env = {**os.environ, "TELNYX_PUBLIC_KEY": value, "DJANGO_SETTINGS_MODULE": "callbroker.settings"}
    env.pop("CALLBROKER_ENV", None)
    code = "from django.conf import settings; print(list(map(bytes.hex, settings.TELNYX_PUBLIC_KEYS)))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else done.stderr.strip().splitlines()[-1]


def test_the_key_is_read_from_the_environment_and_a_malformed_one_stops_the_start():
    good = base64.b64encode(public(TELNYX)).decode()
    other = base64.b64encode(public(ANOTHER)).decode()
    assert settings_error(f" {good} , {other},") == str([public(TELNYX).hex(), public(ANOTHER).hex()])
    assert settings_error("not base64!") == ("django.core.exceptions.ImproperlyConfigured: TELNYX_PUBLIC_KEY: "
                                             "'not base64!' is not base64 (copy the public key as the Telnyx "
                                             "portal shows it)")
    assert settings_error(base64.b64encode(b"x" * 31).decode()).endswith(
        "TELNYX_PUBLIC_KEY: 'eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eA==' is 31 bytes once decoded; an Ed25519 "
        "public key is 32")
    assert settings_error(f"{good},abc").endswith("TELNYX_PUBLIC_KEY: key 2 ('abc') is not base64 (copy the "
                                                  "public key as the Telnyx portal shows it)")
