"""``TWILIO_ACCOUNT_SID``: a webhook of another carrier account is refused like a bad signature.

Given a network and a carrier signing with a token we accept, when ``TWILIO_ACCOUNT_SID`` names the
account and a signed webhook carries another ``AccountSid`` (or none), then it is answered 403 and
logged, and nothing is recorded or spooled: the Voice URL's call, the Fallback URL's trace. The account
named (or one of several) is taken as before, and with the setting empty nothing is checked. Until
2026-12-07 ``AccountSid`` was never compared.

At start, an entry that can name no account (a typo, a token pasted instead of the SID) stops production in
one line naming its place and length, never its text, and is one WARNING elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.test import Client

from callbroker import DEMO_AUTH_TOKEN
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


# --------------------------------------------------------------------------- at start

# A webhook of OURS posted to a process started with the variables given (development: signed with the demo's
# token), after what its start logged; its answer's status printed. No database: a refusal comes before one.
_WEBHOOK_AFTER_START = """
import json, sys
import django
django.setup()
from django.test import Client
params, signature = json.loads(sys.argv[1])
answer = Client().post("/carriers/twilio/voice", params, headers={"X-Twilio-Signature": signature},
                       HTTP_HOST="localhost")
print(answer.status_code)
"""


def start_and_post(variables: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    params = {"CallSid": "CA" + "b1" * 16, "AccountSid": OURS, "From": "+15125559876", "To": PLUMBING,
              "CallStatus": "ringing", "Direction": "inbound"}
    signature = sign(DEMO_AUTH_TOKEN, "http://localhost/carriers/twilio/voice", params)
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "callbroker.settings",
           "CALLBROKER_LOG_FORMAT": "plain", "CALLBROKER_LOG_LEVEL": "INFO"}
    for name in ("CALLBROKER_ENV", "DATABASE_URL", "REDIS_URL", "CALLBROKER_PUBLIC_URL", "TWILIO_AUTH_TOKEN",
                 "TWILIO_AUTH_TOKENS_EXTRA", "TWILIO_ACCOUNT_TOKENS", "TELNYX_PUBLIC_KEY"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-c", _WEBHOOK_AFTER_START, json.dumps([params, signature])],
                          env={**env, **variables}, capture_output=True, text=True, timeout=120, check=False,
                          cwd=Path(__file__).resolve().parents[2])


NO_ACCOUNT = "is no account SID (Twilio: AC and 32 hex characters; SignalWire, Telnyx: a UUID)"
WHY = ("no webhook names such an account, and every webhook of the account meant would be refused (403); copy the "
       "SID from the carrier's console, or leave TWILIO_ACCOUNT_SID empty")
TOKEN_PASTED = "0f" * 16  # an auth token's shape, 32 hex characters, pasted where the SID goes


@pytest.mark.parametrize(("value", "bad", "named"), [
    (OURS[:-1], OURS[:-1], "entry 1 (33 characters"),  # a character lost in the copy
    (OURS + "'", OURS + "'", "entry 1 (35 characters"),  # a stray character: a shell's or a YAML file's quote
    (f"{SUBACCOUNT}, {TOKEN_PASTED}", TOKEN_PASTED, "entry 2 (32 characters"),  # the token where the SID goes
    (f" AC..., {OURS},", "AC...", "entry 1 (5 characters"),  # deploy/env.example's comment copied as the value
], ids=["a-character-lost", "a-stray-character", "a-token-pasted", "the-template's-AC..."])
def test_an_entry_that_is_no_account_stops_a_production_start_naming_its_place_not_its_text(tmp_path, value, bad,
                                                                                            named):
    """Until 2026-12-08 production started with it and refused every webhook of the account meant with 403,
    the only sign a log line per call that never named the setting's value (the next test's webhook). Its
    text is not shown: it may be a token."""
    from tests.carriers.test_account_tokens import PRODUCTION, start

    result = start({**PRODUCTION, "TWILIO_AUTH_TOKEN": "real-token", "TWILIO_ACCOUNT_SID": value}, tmp_path)

    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0
    assert last == f"django.core.exceptions.ImproperlyConfigured: TWILIO_ACCOUNT_SID's {named}, not shown: it may " \
                   f"hold a token) {NO_ACCOUNT}: {WHY}"
    assert bad not in result.stderr and bad[:8] not in result.stderr


def test_outside_production_such_an_entry_starts_with_one_warning_and_refuses_the_account_meant(tmp_path):
    """Development and the tests keep working with it, and say why the account's webhooks will be refused: one
    WARNING at start in the same words as production's refusal, naming the entries of no account's shape by
    their place (blanks not counted) and only those: accounts in any case and UUIDs are accounts."""
    project = "9B2F5C1E-3D4A-4B6C-8E7F-0A1B2C3D4E5F"  # a SignalWire project's ID (or a Telnyx account's)
    result = start_and_post({"TWILIO_ACCOUNT_SID": f"{SUBACCOUNT.upper()},, {OURS[:-1]}, {project},{TOKEN_PASTED}"},
                            tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "403"  # the account meant, refused as before: what the warning is for
    at_start = [line for line in result.stderr.splitlines() if " callbroker.settings " in line]
    assert len(at_start) == 1 and " WARNING callbroker.settings " in at_start[0]
    assert at_start[0].endswith(
        f"TWILIO_ACCOUNT_SID's entry 2 (33 characters, not shown: it may hold a token) {NO_ACCOUNT}; "
        f"TWILIO_ACCOUNT_SID's entry 4 (32 characters, not shown: it may hold a token) {NO_ACCOUNT}: {WHY}")
    assert OURS[:-1] not in result.stderr.replace(OURS, "") and TOKEN_PASTED not in result.stderr
