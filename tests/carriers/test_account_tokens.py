"""``TWILIO_ACCOUNT_TOKENS``: each carrier account's webhooks verified with that account's own token.

Given the e2e network and two accounts of ours, A and B, each with its token in ``TWILIO_ACCOUNT_TOKENS``,
when a webhook names A (``AccountSid``) but is signed with B's token, or names an account not there, then
it is answered 403 with a log line saying which account and why, and nothing is recorded or spooled; one
naming A signed with A's token (either of A's tokens during a rotation) is taken. Until 2026-12-08 the
tokens were one flat list (``TWILIO_AUTH_TOKEN``, ``TWILIO_AUTH_TOKENS_EXTRA``) checked apart from the
account (``TWILIO_ACCOUNT_SID``): a webhook naming A signed with B's token passed both checks.

The setting is checked at start (a subprocess per case): malformed entries, empty tokens, an account
named twice, ``change-me`` or the demo's token in production, and combinations with the flat settings
that contradict it, each stop every command in one line naming the variable; production starts with any
one way to verify webhooks (a flat token, per-account tokens, or only ``TELNYX_PUBLIC_KEY``) and refuses
none, where it required ``TWILIO_AUTH_TOKEN`` whatever else was set.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.test import Client

from callbroker.calls import replay, spool
from callbroker.calls.models import Call, CallEvent
from callbroker.network.loader import load_network
from callbroker.network.snapshot import current_snapshot, reset_snapshot
from tests.hostile.strategies import E2E_NETWORK, TOKEN, sign, signing_carrier_settings

PLUMBING = "+15125550001"
A, B, STRANGER = "AC" + "a" * 32, "AC" + "b" * 32, "AC" + "c" * 32
PROJECT = "9b2f5c1e-3d4a-4b6c-8e7f-0a1b2c3d4e5f"  # a SignalWire project's ID
A_TOKEN, A_NEXT, B_TOKEN, PROJECT_KEY = "token-of-a", "next-token-of-a", "token-of-b", "PSK_project"


@pytest.fixture
def carrier(transactional_db, settings, tmp_path, monkeypatch):
    signing_carrier_settings(settings, tmp_path / "data")
    settings.COUNTERS_BACKEND = "sql"
    settings.TWILIO_ACCOUNT_TOKENS = {A: (A_TOKEN, A_NEXT), B: (B_TOKEN,), PROJECT: (PROJECT_KEY,)}
    # An installation moving over keeps its flat settings, which agree (settings.py checks it at start): the
    # same tokens, the same accounts. Alone, they took a webhook naming A signed with B's token.
    settings.TWILIO_AUTH_TOKEN, settings.TWILIO_AUTH_TOKENS_EXTRA = A_TOKEN, [A_NEXT, B_TOKEN, PROJECT_KEY]
    settings.TWILIO_ACCOUNT_SID = f"{A},{B},{PROJECT}"
    monkeypatch.setattr(replay, "ensure_running", lambda: None)
    reset_snapshot()
    load_network(E2E_NETWORK)
    current_snapshot()
    yield settings
    reset_snapshot()


def post(path: str, sid: str, account: str, token: str, **extra: str):
    params = {"CallSid": sid, "AccountSid": account, "From": "+15125559876", "To": PLUMBING,
              "CallStatus": "ringing", "Direction": "inbound", "FromZip": "78701", **extra}
    return Client().post(path, urlencode(params), content_type="application/x-www-form-urlencoded",
                         headers={"X-Twilio-Signature": sign(token, f"http://testserver{path}", params)})


def voice(n: int, account: str, token: str):
    return post("/carriers/twilio/voice", f"CA{n:032x}", account, token)


def test_a_webhook_signed_with_another_accounts_token_is_refused_logged_and_changes_nothing(carrier, caplog):
    with caplog.at_level(logging.WARNING, logger="callbroker.carriers"):
        by_b = voice(1, A, B_TOKEN)
        unknown = voice(2, STRANGER, A_TOKEN)
        forged = voice(3, A, TOKEN)  # a token of no account of ours
    taken = [voice(4, A, A_TOKEN), voice(5, A, A_NEXT), voice(6, B, B_TOKEN), voice(7, PROJECT, PROJECT_KEY)]

    assert [r.status_code for r in (by_b, unknown, forged)] == [403, 403, 403]
    assert [r.status_code for r in taken] == [200] * 4 and all("<Dial" in r.content.decode() for r in taken)
    assert sorted(Call.objects.values_list("call_sid", flat=True)) == [f"CA{n:032x}" for n in (4, 5, 6, 7)]
    assert not CallEvent.objects.filter(call_sid__in=[f"CA{n:032x}" for n in (1, 2, 3)]).exists()
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals == [
        f"webhook /carriers/twilio/voice refused: AccountSid '{A}' but signed with the token of account '{B}' "
        f"(TWILIO_ACCOUNT_TOKENS) (CallSid=CA{1:032x}, from 127.0.0.1)",
        f"webhook /carriers/twilio/voice refused: AccountSid '{STRANGER}' is not in TWILIO_ACCOUNT_TOKENS "
        f"(CallSid=CA{2:032x}, from 127.0.0.1)",
        f"webhook /carriers/twilio/voice refused: missing or invalid signature for AccountSid '{A}' (its tokens "
        f"in TWILIO_ACCOUNT_TOKENS) (CallSid=CA{3:032x}, from 127.0.0.1)"]


def test_the_fallback_url_leaves_no_trace_of_a_webhook_signed_for_another_account(carrier):
    other, ours = "CA" + "4" * 32, "CA" + "5" * 32
    extra = {"ErrorCode": "11205", "ErrorUrl": "https://calls.example/carriers/twilio/voice"}

    assert post("/carriers/twilio/fallback", other, B, A_TOKEN, **extra).status_code == 403
    answer = post("/carriers/twilio/fallback", ours, B, B_TOKEN, **extra)

    assert answer.status_code == 200 and "<Dial" in answer.content.decode()
    assert not spool.path_of(other).exists()
    assert [e["kind"] for e in spool.read(spool.path_of(ours))] == ["fallback"]


def test_an_account_written_in_upper_case_takes_its_webhooks(carrier):
    """Carriers send their SIDs in lower case (Twilio's hex after AC, a SignalWire project's UUID). Until
    2026-12-08 an account of TWILIO_ACCOUNT_TOKENS copied in upper case started, and every webhook of it was
    refused with 403 (``AccountSid '…' is not in TWILIO_ACCOUNT_TOKENS``); it is now read as the carrier
    sends it, and still verified with its own token only."""
    from callbroker.settings import account_tokens_from_env

    project = "AC" + PROJECT[2:]  # a UUID beginning with "ac", in upper case below: no Twilio SID for all that
    carrier.TWILIO_ACCOUNT_TOKENS = account_tokens_from_env(
        f"{A.upper()}:{A_TOKEN},{project.upper()}:{PROJECT_KEY}", production=False)
    carrier.TWILIO_ACCOUNT_SID = ""

    taken = [voice(8, A, A_TOKEN), voice(9, project.lower(), PROJECT_KEY)]
    refused = [voice(10, A, PROJECT_KEY), voice(11, project.lower(), A_TOKEN)]

    assert [r.status_code for r in taken + refused] == [200, 200, 403, 403]
    assert sorted(Call.objects.values_list("account_sid", flat=True)) == sorted([A, project.lower()])


# --------------------------------------------------------------------------- at start

PRODUCTION = {"CALLBROKER_ENV": "production", "CALLBROKER_SECRET_KEY": "k" * 50,
              "CALLBROKER_PUBLIC_URL": "https://callbroker.example.com"}
TELNYX_KEY = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="  # any 32 bytes, base64


def start(variables: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "callbroker.settings"}
    for name in ("TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKENS_EXTRA", "TWILIO_ACCOUNT_SID", "TWILIO_ACCOUNT_TOKENS",
                 "TELNYX_PUBLIC_KEY", "CALLBROKER_ENV", "DATABASE_URL"):
        env.pop(name, None)
    code = "from django.conf import settings; print(sorted(settings.TWILIO_ACCOUNT_TOKENS.items()))"
    return subprocess.run([sys.executable, "-c", code], env={**env, **variables}, capture_output=True, text=True,
                          timeout=120, check=False, cwd=Path(__file__).resolve().parents[2])


@pytest.mark.parametrize(("variables", "named"), [
    ({"TWILIO_ACCOUNT_TOKENS": f"{A}={A_TOKEN}"}, "TWILIO_ACCOUNT_TOKENS: entry 1 has no ':'"),
    ({"TWILIO_ACCOUNT_TOKENS": f"{A}:{A_TOKEN},AC12:{B_TOKEN}"},
     "TWILIO_ACCOUNT_TOKENS: entry 2: what comes before its ':' (4 characters, not shown: it may be a token) is no "
     "account SID"),
    ({"TWILIO_ACCOUNT_TOKENS": f"{A}: "}, f"TWILIO_ACCOUNT_TOKENS: entry 1 ({A}) has an empty token"),
    ({"TWILIO_ACCOUNT_TOKENS": f"{A}:{A_TOKEN}|"}, f"TWILIO_ACCOUNT_TOKENS: entry 1 ({A}) has an empty token"),
    ({"TWILIO_ACCOUNT_TOKENS": f"{A}:{A_TOKEN}, {A}:{A_NEXT}"},
     f"TWILIO_ACCOUNT_TOKENS: entry 2 ({A}): the account is named twice; give its tokens once, as {A}:NEW|OLD"),
    ({**PRODUCTION, "TWILIO_ACCOUNT_TOKENS": f"{A}:change-me"}, "is still deploy/env.example's 'change-me'"),
    ({**PRODUCTION, "TWILIO_ACCOUNT_TOKENS": f"{A}:{A_TOKEN}|callbroker-demo-auth-token"}, "the demo's public token"),
    # what wins is plain: a flat token that is no account's would verify nothing, silently
    ({"TWILIO_ACCOUNT_TOKENS": f"{A}:{A_TOKEN}", "TWILIO_AUTH_TOKEN": B_TOKEN},
     "TWILIO_AUTH_TOKEN holds a token that is no account's of TWILIO_ACCOUNT_TOKENS"),
    ({"TWILIO_ACCOUNT_TOKENS": f"{A}:{A_TOKEN}", "TWILIO_AUTH_TOKENS_EXTRA": f"{A_TOKEN},{B_TOKEN}"},
     "TWILIO_AUTH_TOKENS_EXTRA holds a token that is no account's"),
    ({"TWILIO_ACCOUNT_TOKENS": f"{A}:{A_TOKEN}", "TWILIO_ACCOUNT_SID": B},
     f"TWILIO_ACCOUNT_SID and TWILIO_ACCOUNT_TOKENS disagree: {A} is in TWILIO_ACCOUNT_TOKENS but not in "
     f"TWILIO_ACCOUNT_SID"),
    # the same account in two cases is the same account
    ({"TWILIO_ACCOUNT_TOKENS": f"{A}:{A_TOKEN},{A.upper()}:{A_NEXT}"}, f"entry 2 ({A}): the account is named twice"),
    # formerly "TWILIO_AUTH_TOKEN must be set", even with another way to verify webhooks
    (PRODUCTION, "no way to verify carrier webhooks when CALLBROKER_ENV=production: set TWILIO_AUTH_TOKEN"),
])
def test_a_setting_that_cant_verify_what_it_says_stops_the_start_naming_it(tmp_path, variables, named):
    result = start(variables, tmp_path)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and last.startswith("django.core.exceptions.ImproperlyConfigured: "), result.stderr
    assert named in last


def test_an_entry_written_token_first_stops_the_start_without_showing_the_token(tmp_path):
    """Until 2026-12-08 the refusal quoted what stood before the ':' (up to 40 characters): in an entry written
    the wrong way round, TOKEN:ACCOUNT, that is a Twilio auth token whole (32 characters), in the log of
    every command and of the service manager."""
    token = "0f" * 16  # an auth token's shape: 32 hex characters
    result = start({"TWILIO_ACCOUNT_TOKENS": f"{token}:{A}"}, tmp_path)

    assert result.returncode != 0
    assert "TWILIO_ACCOUNT_TOKENS: entry 1: what comes before its ':' (32 characters" in result.stderr
    assert token not in result.stderr and token[:8] not in result.stderr


@pytest.mark.parametrize(("variables", "accounts"), [
    ({**PRODUCTION, "TELNYX_PUBLIC_KEY": TELNYX_KEY}, []),  # Telnyx only: formerly refused for no TWILIO_AUTH_TOKEN
    ({**PRODUCTION, "TWILIO_ACCOUNT_TOKENS": f"{A}:{A_TOKEN}"}, [(A, (A_TOKEN,))]),
    # moving over: the flat token kept is one of the accounts'; a Telnyx account (a UUID) in TWILIO_ACCOUNT_SID
    ({**PRODUCTION, "TWILIO_ACCOUNT_TOKENS": f" {A}:{A_TOKEN}|{A_NEXT} ,{PROJECT}:{PROJECT_KEY},",
      "TWILIO_AUTH_TOKEN": A_TOKEN, "TWILIO_ACCOUNT_SID": f"{A},{PROJECT},6a09cdc3-8948-47f0-aa62-74ac943d6c58"},
     [(PROJECT, (PROJECT_KEY,)), (A, (A_TOKEN, A_NEXT))]),
])
def test_production_starts_with_any_one_way_to_verify_webhooks(tmp_path, variables, accounts):
    result = start(variables, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(accounts)


def test_the_same_accounts_in_another_case_agree_at_start(tmp_path):
    """Until 2026-12-08 ``TWILIO_ACCOUNT_TOKENS`` read its accounts as carriers send them (``AC`` and lower-case
    hex, a lower-case UUID) and ``TWILIO_ACCOUNT_SID`` as written: the same accounts copied there in upper or
    mixed case stopped the start, the two settings said to "disagree"; so did a Telnyx account (a UUID, no
    token needed) written in upper case when it began with "AC", taken for a Twilio SID without its token.
    Both read an account one way now."""
    telnyx = "AC6A2B1F-0D3E-4C5B-9A8F-7E6D5C4B3A21"
    result = start({"TWILIO_ACCOUNT_TOKENS": f"{A}:{A_TOKEN},{PROJECT.upper()}:{PROJECT_KEY}",
                    "TWILIO_ACCOUNT_SID": f"{A.upper()}, ac{'aA' * 16},{PROJECT.upper()},{telnyx}"}, tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr([(PROJECT, (PROJECT_KEY,)), (A, (A_TOKEN,))])


def test_an_entry_of_twilio_account_sid_holding_a_token_stops_the_start_without_showing_it(tmp_path):
    """``TWILIO_ACCOUNT_SID`` written as ``TWILIO_ACCOUNT_TOKENS`` is (``AC…:token``) has no token there: until
    2026-12-08 the refusal quoted the entry whole, the token with it, in the log of every command."""
    token = "0f" * 16
    result = start({"TWILIO_ACCOUNT_TOKENS": f"{A}:{token}", "TWILIO_ACCOUNT_SID": f"{B}, {A}:{token}"}, tmp_path)

    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and token not in result.stderr and token[:8] not in result.stderr
    assert last == (
        "django.core.exceptions.ImproperlyConfigured: TWILIO_ACCOUNT_SID and TWILIO_ACCOUNT_TOKENS disagree: "
        f"{A} is in TWILIO_ACCOUNT_TOKENS but not in TWILIO_ACCOUNT_SID (its webhooks would all be refused); "
        f"{B} is in TWILIO_ACCOUNT_SID but has no token in TWILIO_ACCOUNT_TOKENS (its webhooks would all be "
        "refused); TWILIO_ACCOUNT_SID's entry 2 (67 characters, not shown: it may hold a token) is no account SID "
        "(Twilio: AC and 32 hex characters; SignalWire, Telnyx: a UUID) "
        "(leave TWILIO_ACCOUNT_SID empty: TWILIO_ACCOUNT_TOKENS checks the account)")
