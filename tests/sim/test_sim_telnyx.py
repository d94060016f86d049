"""The emulator playing Telnyx TeXML (``Carrier(telnyx_key=…)``, ``callbroker sim --carrier telnyx``) against a
canned-TwiML server: every request signed as Telnyx signs (Ed25519 over ``telnyx-timestamp|raw body``), Telnyx's
CallSids and STIR parameters, and the CLI refusing a key it can't sign with."""

from __future__ import annotations

import base64
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from callbroker.sim import cli as sim_cli
from callbroker.sim.emulator import BuyerBehaviour, CallerScript, Carrier

SEED = bytes(range(32))
PUBLIC = Ed25519PrivateKey.from_private_bytes(SEED).public_key()
BUYER = "+15125550101"


def test_every_request_is_signed_as_telnyx_signs_with_its_sids_and_stir(server):
    server.routes["/carriers/twilio/voice"] = '<Response><Gather numDigits="1" action="/ivr"><Say>Press 1</Say></Gather></Response>'
    server.routes["/ivr"] = f'<Response><Dial action="/dial-done"><Number url="/whisper">{BUYER}</Number></Dial></Response>'
    with Carrier(server.url, "unused-token", seed=3, telnyx_key=SEED) as carrier:
        record = carrier.place_call("+15125550000", "+15125551234", params={"StirVerstat": "TN-Validation-Failed-B"},
                                    caller=CallerScript(digits=("1",)),
                                    buyers={BUYER: BuyerBehaviour(answers=True, talk_seconds=60)})

    assert record.errors == [] and re.fullmatch(r"v3:[A-Za-z0-9_-]{43}", record.call_sid)
    assert {r.path for r in server.requests} >= {"/carriers/twilio/voice", "/ivr", "/whisper", "/dial-done",
                                                   "/carriers/twilio/status"}
    for seen in server.requests:
        assert "x-twilio-signature" not in seen.headers
        signed = seen.headers["telnyx-timestamp"].encode() + b"|" + seen.body
        try:
            PUBLIC.verify(base64.b64decode(seen.headers["telnyx-signature-ed25519"]), signed)
        except InvalidSignature:
            raise AssertionError(f"{seen.path}: not signed over its body") from None
        assert seen.params["AccountSid"] == "00000000-0000-4000-8000-000000000001"
    voice = server.to("/carriers/twilio/voice")[0].params
    assert "StirVerstat" not in voice
    assert (voice["ShakenStirAttestation"], voice["ShakenStirValidated"]) == ("B", "false")
    assert server.to("/dial-done")[0].params["DialCallSid"].startswith("v3:")


def test_the_cli_refuses_a_telnyx_carrier_without_a_usable_key(monkeypatch, capsys):
    monkeypatch.delenv(sim_cli.TELNYX_KEY_VARIABLE, raising=False)
    parser = __import__("argparse").ArgumentParser()
    sim_cli.add_arguments(parser.add_subparsers())
    call = ["call", "--url", "http://127.0.0.1:9", "--to", "+15125550000"]

    assert sim_cli.run(parser.parse_args([*call, "--carrier", "telnyx"])) == 2
    assert "give --telnyx-key or set CALLBROKER_SIM_TELNYX_PRIVATE_KEY" in capsys.readouterr().err
    monkeypatch.setenv(sim_cli.TELNYX_KEY_VARIABLE, base64.b64encode(b"x" * 31).decode())
    assert sim_cli.run(parser.parse_args([*call, "--carrier", "telnyx"])) == 2
    assert "CALLBROKER_SIM_TELNYX_PRIVATE_KEY is 31 bytes once decoded" in capsys.readouterr().err
    assert sim_cli.run(parser.parse_args([*call, "--carrier", "telnyx", "--telnyx-key", "not base64!"])) == 2
    assert "--telnyx-key is not base64" in capsys.readouterr().err
    assert sim_cli.run(parser.parse_args([*call, "--telnyx-key", base64.b64encode(SEED).decode()])) == 2
    assert "give --carrier telnyx too" in capsys.readouterr().err
