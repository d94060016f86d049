"""``Call.carrier``: the carrier that signed the call's inbound webhook (twilio, signalwire, telnyx).

Given the e2e network, a Twilio token and a Telnyx key, when calls come in signed by each carrier, live or
during an outage (answered from memory, spooled, then replayed, the Fallback URL's trace too), then each
call records the carrier that signed it. A record spooled by the previous release names no carrier: its
call is Twilio's, as every call was then. The spool's ``inbound`` keeps the shape the previous release
reads back (``InboundCall(**inbound)``), the carrier beside it. Until 2026-12-08 every call was "twilio".
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.db import OperationalError
from django.test import Client

from callbroker.calls import replay, services, spool
from callbroker.calls.models import Call, KeptStatus
from callbroker.carriers import twilio
from callbroker.network.loader import load_network
from callbroker.network.snapshot import current_snapshot, reset_snapshot
from tests.hostile.strategies import E2E_NETWORK, TOKEN, sign, signing_carrier_settings

PLUMBING = "+15125550001"
TELNYX = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
NOW = 1_765_000_000
FORM = "application/x-www-form-urlencoded"
#: The fields of ``InboundCall`` the previous release builds from a spooled ``inbound`` (no other key).
PREVIOUS_INBOUND = {"call_sid", "account_sid", "from_raw", "to", "from_zip", "from_state", "from_city", "stir_verstat"}


@pytest.fixture
def carrier(transactional_db, settings, tmp_path, monkeypatch):
    signing_carrier_settings(settings, tmp_path / "data")
    settings.COUNTERS_BACKEND = "sql"
    settings.TELNYX_PUBLIC_KEYS = (TELNYX.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),)
    monkeypatch.setattr(twilio, "_now", lambda: NOW)
    monkeypatch.setattr(replay, "ensure_running", lambda: None)
    monkeypatch.setattr(replay, "replay_now", lambda call_sid: None)
    outage = {"on": False}
    real = services.handle_once

    def handle_once(*args, **kwargs):
        if outage["on"]:
            raise OperationalError("database is locked (the test's outage)")
        return real(*args, **kwargs)

    monkeypatch.setattr(services, "handle_once", handle_once)
    reset_snapshot()
    load_network(E2E_NETWORK)
    current_snapshot()
    yield outage
    reset_snapshot()


SIDS = {"twilio": "CA" + "1" * 32, "signalwire": "2b0c3a4e-5f60-4718-8a9b-0c1d2e3f4a5b", "telnyx": "v3:telnyx-call-00000001"}


def post(by: str, path: str = "/carriers/twilio/voice", sid: str = "", **extra: str):
    """An inbound webhook signed as ``by`` signs: Twilio's header; SignalWire's with Twilio's beside (as it
    sends them); Telnyx's Ed25519 over ``timestamp|body``."""
    params = {"CallSid": sid or SIDS[by], "AccountSid": "AC" + "a" * 32, "From": "+15125559876", "To": PLUMBING,
              "CallStatus": "ringing", "Direction": "inbound", "FromZip": "78701", **extra}
    body = urlencode(params)
    if by == "telnyx":
        signature = base64.b64encode(TELNYX.sign(f"{NOW}|{body}".encode())).decode()
        headers = {"telnyx-signature-ed25519": signature, "telnyx-timestamp": str(NOW)}
    else:
        signature = sign(TOKEN, f"http://testserver{path}", params)
        headers = {"X-Twilio-Signature": signature, **({"X-SignalWire-Signature": signature} if by == "signalwire" else {})}
    response = Client().post(path, body, content_type=FORM, headers=headers)
    assert response.status_code == 200
    return response.content.decode()


def carriers() -> dict[str, str]:
    return dict(Call.objects.values_list("call_sid", "carrier"))


def test_each_call_records_the_carrier_that_signed_its_inbound_webhook(carrier):
    for by in SIDS:
        assert "<Dial" in post(by)

    assert carriers() == {SIDS[by]: by for by in SIDS}


def test_a_call_spooled_in_an_outage_keeps_its_carrier_through_the_replay(carrier):
    """The voice webhook and the Fallback URL's trace, spooled; a Twilio call spooled by the previous
    release (its lines without ``carrier``) read as Twilio's."""
    trace = "v3:telnyx-call-00000002"
    carrier["on"] = True
    for by in SIDS:
        assert "<Dial" in post(by)
    post("telnyx", "/carriers/twilio/fallback", trace, ErrorCode="11205",
         ErrorUrl="https://calls.example/carriers/twilio/voice")
    carrier["on"] = False
    previous = spool.path_of(SIDS["twilio"])
    lines = [json.loads(line) for line in previous.read_text().splitlines()]
    previous.write_text("".join(json.dumps({k: v for k, v in line.items() if k != "carrier"}) + "\n" for line in lines))
    spooled = [record for sid in (*SIDS.values(), trace) for record in spool.read(spool.path_of(sid))]

    assert [record.get("carrier") for record in spooled] == [None, "signalwire", "telnyx", "telnyx"]
    assert all(set(record["inbound"]) == PREVIOUS_INBOUND for record in spooled)
    assert replay.replay_ready().errors == []
    assert carriers() == {**{SIDS[by]: by for by in SIDS}, trace: "telnyx"}


def test_a_call_kept_from_its_final_status_alone_keeps_its_carrier(carrier):
    """A final status that came before its call was recorded is kept (``KeptStatus``); when the inbound
    webhook never comes, the sweep records the call from it. Until 2026-12-08 such a call said ``twilio``
    whoever signed (the spooled path said who); a row kept by the previous release (no carrier) reads as
    Twilio's, and ``inbound`` keeps the previous release's keys."""
    kept = {"twilio": "CA" + "7" * 32, "signalwire": "3c1d4b5f-6a71-4829-9bac-1d2e3f4a5b6c",
            "telnyx": "v3:telnyx-call-00000007"}
    for by, sid in kept.items():
        post(by, "/carriers/twilio/status", sid, CallStatus="completed", CallDuration="5")
    KeptStatus.objects.filter(call_sid=kept["twilio"]).update(carrier=None)  # as the previous release keeps it

    assert all(set(row) == PREVIOUS_INBOUND for row in KeptStatus.objects.values_list("inbound", flat=True))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    assert sorted(replay.record_kept_statuses(now=later)) == sorted(kept.values())
    assert carriers() == {sid: by for by, sid in kept.items()}
