"""``TWILIO_ACCOUNT_SID``: a webhook of another carrier account is refused like a bad signature.

Given a network and a carrier signing with a token we accept, when ``TWILIO_ACCOUNT_SID`` names the
account and a signed webhook carries another ``AccountSid`` (or none), then it is answered 403 and
logged, and nothing is recorded or spooled: the Voice URL's call, the Fallback URL's trace. The account
named (or one of several) is taken as before, and with the setting empty nothing is checked. Until
2026-12-07 ``AccountSid`` was never compared.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import pytest
from django.test import Client

from callbroker.calls import replay, spool
from callbroker.calls.models import Call, CallEvent
from callbroker.network.loader import load_network
from callbroker.network.snapshot import current_snapshot, reset_snapshot
from tests.hostile.strategies import E2E_NETWORK, TOKEN, sign, signing_carrier_settings

PLUMBING = "+15125550001"
OURS, SUBACCOUNT, OTHER = "AC" + "a" * 32, "AC" + "5" * 32, "AC" + "b" * 32


@pytest.fixture
def carrier(transactional_db, settings, tmp_path, monkeypatch):
    signing_carrier_settings(settings, tmp_path / "data")
    settings.COUNTERS_BACKEND = "sql"
    monkeypatch.setattr(replay, "ensure_running", lambda: None)
    reset_snapshot()
    load_network(E2E_NETWORK)
    current_snapshot()
    yield settings
    reset_snapshot()


def post(path: str, sid: str, account: str | None, **extra: str):
    params = {"CallSid": sid, "From": "+15125559876", "To": PLUMBING, "CallStatus": "ringing",
              "Direction": "inbound", "FromZip": "78701", **extra}
    if account is not None:
        params["AccountSid"] = account
    return Client().post(path, urlencode(params), content_type="application/x-www-form-urlencoded",
                         headers={"X-Twilio-Signature": sign(TOKEN, f"http://testserver{path}", params)})


def voice(sid: str, account: str | None):
    return post("/carriers/twilio/voice", sid, account)


def fallback(sid: str, account: str | None):
    return post("/carriers/twilio/fallback", sid, account, ErrorCode="11205",
                ErrorUrl="https://calls.example/carriers/twilio/voice")


def test_a_signed_webhook_of_another_account_is_refused_logged_and_changes_nothing(carrier, caplog):
    carrier.TWILIO_ACCOUNT_SID = OURS
    sids = {"other": "CA" + "1" * 32, "none": "CA" + "2" * 32, "ours": "CA" + "3" * 32}

    with caplog.at_level(logging.WARNING, logger="callbroker.carriers"):
        other, none = voice(sids["other"], OTHER), voice(sids["none"], None)
    ours = voice(sids["ours"], OURS)

    assert (other.status_code, other.content) == (403, b"Forbidden: unexpected AccountSid")
    assert none.status_code == 403
    assert ours.status_code == 200 and "<Dial" in ours.content.decode()
    assert list(Call.objects.values_list("call_sid", flat=True)) == [sids["ours"]]
    assert not CallEvent.objects.exclude(call_sid=sids["ours"]).exists()
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals == [
        f"webhook /carriers/twilio/voice refused: AccountSid '{OTHER}' is not in TWILIO_ACCOUNT_SID "
        f"(CallSid={sids['other']}, from 127.0.0.1)",
        f"webhook /carriers/twilio/voice refused: AccountSid '' is not in TWILIO_ACCOUNT_SID "
        f"(CallSid={sids['none']}, from 127.0.0.1)"]


def test_the_fallback_url_refuses_another_account_as_it_refuses_a_bad_signature(carrier):
    """The Fallback URL answers a bad signature with 403 too (the carrier then plays its own error message):
    it answers only the carrier whose calls these are, and leaves no trace of another's."""
    carrier.TWILIO_ACCOUNT_SID = OURS
    other, ours = "CA" + "4" * 32, "CA" + "5" * 32

    assert fallback(other, OTHER).status_code == 403
    answer = fallback(ours, OURS)

    assert answer.status_code == 200 and "<Dial" in answer.content.decode()  # the forward, from memory
    assert not spool.path_of(other).exists()
    assert [e["kind"] for e in spool.read(spool.path_of(ours))] == ["fallback"]


def test_several_accounts_may_be_named_and_none_means_unchecked(carrier):
    carrier.TWILIO_ACCOUNT_SID = f" {OURS} , {SUBACCOUNT},"
    assert voice("CA" + "6" * 32, SUBACCOUNT).status_code == 200
    assert voice("CA" + "7" * 32, OURS).status_code == 200
    assert voice("CA" + "8" * 32, OTHER).status_code == 403

    carrier.TWILIO_ACCOUNT_SID = ""
    assert voice("CA" + "9" * 32, OTHER).status_code == 200


def test_the_setting_is_read_from_the_environment_without_spaces(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "TWILIO_ACCOUNT_SID": f" {OURS} ", "CALLBROKER_DATA_DIR": str(tmp_path),
           "DJANGO_SETTINGS_MODULE": "callbroker.settings"}
    env.pop("CALLBROKER_ENV", None)
    code = "from django.conf import settings; print(settings.TWILIO_ACCOUNT_SID)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == OURS


def test_the_accounts_may_be_written_in_any_case_and_the_call_keeps_the_accountsid_as_sent(carrier):
    """Carriers send a Twilio SID as ``AC`` and lower-case hex, a SignalWire or Telnyx account as a lower-case
    UUID. Until 2026-12-08 ``TWILIO_ACCOUNT_SID`` was compared as written: the SID copied in upper case (or in
    mixed case) refused every webhook of its account with 403, where ``TWILIO_ACCOUNT_TOKENS`` took the same
    account in any case. Both now read an account as the carrier sends it; the ``AccountSid`` a webhook
    sent is recorded on its call unchanged, whatever its case."""
    project = "9b2f5c1e-3d4a-4b6c-8e7f-0a1b2c3d4e5f"  # a SignalWire project's (or a Telnyx account's) UUID
    mixed = "AC" + "5a" * 16
    carrier.TWILIO_ACCOUNT_SID = f"{OURS.upper()}, ac{mixed[2:].upper()} ,{project.upper()}"
    sent = {"CA" + "a1" * 16: OURS, "CA" + "a2" * 16: mixed, "CA" + "a3" * 16: project,
            "CA" + "a4" * 16: OURS.upper()}  # the last in no carrier's case: compared as any other, kept as sent

    taken = [voice(sid, account) for sid, account in sent.items()]
    other = voice("CA" + "a5" * 16, OTHER)

    assert [r.status_code for r in taken] == [200] * 4 and other.status_code == 403
    assert dict(Call.objects.values_list("call_sid", "account_sid")) == sent
