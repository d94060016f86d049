"""Telnyx TeXML calls through the real server: ``callbroker sim … --carrier telnyx`` plays Telnyx's side (Ed25519
signatures, ``v3:`` CallSids, a UUID AccountSid, ``ShakenStirAttestation``) against a server given the
account's public key (``TELNYX_PUBLIC_KEY``, tests/e2e/conftest.py), and the calls complete as Twilio's do.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

from tests.e2e.conftest import HERE, TELNYX_SEED

pytestmark = pytest.mark.e2e

VERIFIED, KEYS = "+15125550006", "+15125550131"  # a campaign that requires an attested caller ID; its line


def sim(server, *args: str, key: str = TELNYX_SEED) -> subprocess.CompletedProcess:
    env = {**server.env, "CALLBROKER_SIM_TELNYX_PRIVATE_KEY": key}
    return subprocess.run([sys.executable, "-m", "callbroker.cli", "sim", *args, "--url", server.base_url,
                           "--carrier", "telnyx", "--json"], env=env, capture_output=True, text=True, timeout=300)


def test_a_telnyx_call_completes_attested_and_billable(server):
    done = sim(server, "call", "--to", VERIFIED, "--from", "+15124440901", "--talk", "90")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["call_sid"].startswith("v3:") and record["errors"] == []

    call = server.call(record["call_sid"])
    assert call["stage"] == "ended" and call["verdict"] == "billable"
    assert call["caller"]["stir_verstat"] == "TN-Validation-Passed-A"  # from ShakenStirAttestation=A, validated
    assert call["account_sid"] == "00000000-0000-4000-8000-000000000001"
    assert [(a["number"], a["result"]) for a in call["attempts"]] == [(KEYS, "bridged")]


def test_a_day_of_telnyx_traffic_completes_without_an_error(server):
    done = sim(server, "traffic", "--calls", "12", "--network", str(HERE / "network.yaml"), "--seed", "5")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    *calls, summary = (json.loads(line) for line in done.stdout.splitlines())
    assert len(calls) == 12 and summary["summary"]["errors"] == 0
    assert all(c["call_sid"].startswith("v3:") and c["errors"] == [] for c in calls)
    recorded = {c["sid"] for c in server.calls()}
    assert {c["call_sid"] for c in calls} <= recorded


def test_a_telnyx_call_signed_with_another_key_is_refused_and_the_sim_says_why(server):
    other = base64.b64encode(b"another-telnyx-account-key-32by!").decode()
    done = sim(server, "call", "--to", VERIFIED, "--from", "+15124440902", key=other)
    assert done.returncode == 1
    assert json.loads(done.stdout)["errors"] and "TELNYX_PUBLIC_KEY must be its public key" in done.stderr
    assert not [c for c in server.calls() if c["caller"]["number"] == "+15124440902"]
