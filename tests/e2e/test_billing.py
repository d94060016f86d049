"""The ledger behind the real server, read back through ``callbroker billing``.

Given the e2e network, when the carrier emulator places calls (webhooks duplicated and reordered) or a dial
result arrives after the final status, then the buyer's and the publisher's statements list each billable
call once, with the call's revenue and payout, and ``callbroker billing check`` finds every call of the
run in agreement with the ledger (on SQLite and on PostgreSQL).
"""

from __future__ import annotations

import json
import uuid

import pytest

from callbroker.sim.emulator import Delivery
from tests.e2e.test_call_flow import PIPES_A, PLUMBING, answers, new_caller
from tests.e2e.test_webhook_safety import inbound, signed_post

pytestmark = pytest.mark.e2e


def statement(server, party: str, key: str, month: str) -> dict[str, dict]:
    """{CallSid: line} of a statement."""
    output = server.cli("billing", "statement", f"--{party}", key, "--month", month, "--json").stdout
    data = json.loads(output)
    return {line["call_sid"]: line for line in data["lines"]}


def entries(line: dict) -> list[tuple[str, str]]:
    return [(entry["kind"], entry["amount"]) for entry in line["entries"]]


def test_billable_calls_are_on_the_statements_once_and_the_ledger_agrees(server, carrier):
    where = {"FromZip": "78701"}
    billable = carrier.place_call(PLUMBING, new_caller(), params=where, buyers={PIPES_A: answers(120)},
                                  delivery=Delivery(duplicate=True, reorder=True))
    short = carrier.place_call(PLUMBING, new_caller(), params=where, buyers={PIPES_A: answers(30)})
    call = server.call(billable.call_sid)
    assert (call["verdict"], call["revenue"], call["payout"]) == ("billable", "40.00", "10.00")
    month = call["qualified_at"][:7]

    charges = statement(server, "buyer", "austin-pipes", month)
    assert entries(charges[billable.call_sid]) == [("charge", "40.00")]
    assert short.call_sid not in charges  # below the buffer: never charged
    payouts = statement(server, "publisher", "e2e-pub", month)
    assert entries(payouts[billable.call_sid]) == [("payout", "10.00")]

    check = json.loads(server.cli("billing", "check", "--json").stdout)  # exit 0, or cli() raises
    assert check["ok"] and check["mismatches"] == []
    assert check["charged_calls"] == check["billable_calls"] >= 1


def test_a_dial_result_after_the_final_status_is_charged_once(server):
    sid = "CA" + uuid.uuid4().hex
    assert signed_post(server, "/carriers/twilio/voice", inbound(sid)).status_code == 200
    final = {"CallSid": sid, "CallStatus": "completed", "CallDuration": "150"}
    assert signed_post(server, "/carriers/twilio/status", final).status_code == 200
    assert server.call(sid)["verdict"] == "not_billable"
    late_dial = {"CallSid": sid, "DialCallStatus": "completed", "DialCallDuration": "120",
                 "DialBridged": "true"}
    for _ in range(2):  # delivered twice
        assert signed_post(server, "/carriers/twilio/dial?seq=1", late_dial).status_code == 200
    call = server.call(sid)
    assert call["verdict"] == "billable"
    assert entries(statement(server, "buyer", "austin-pipes", call["qualified_at"][:7])[sid]) == [
        ("charge", "40.00")]
    assert server.cli("billing", "check").stdout.splitlines()[-1] == "OK: the ledger agrees with every call."
