"""Load: two app nodes, many calls, every webhook delivered twice and some reordered.

Afterwards every call exists exactly once, its record agrees with what the carrier saw, its verdict
follows from its facts, and no target ever held more calls than its concurrency limit or took more
calls than its caps. `make test` runs a few hundred calls; `make soak` runs 10,000
(CALLBROKER_SOAK_CALLS).
"""

from __future__ import annotations

import json
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from callbroker.ops.audit import limit_violations
from callbroker.sim.emulator import Carrier, Delivery
from callbroker.sim.traffic import generate_day
from tests.e2e.conftest import TOKEN
from tests.reliability import figures

pytestmark = pytest.mark.e2e

CALLS = int(os.environ.get("CALLBROKER_SOAK_CALLS", "150"))
DEMO = Path(__file__).resolve().parents[2] / "src" / "callbroker" / "network" / "demo" / "demo-network.yaml"


def test_two_nodes_duplicated_and_reordered_webhooks_lose_nothing(cluster_demo):
    network = yaml.safe_load(DEMO.read_text())
    planned = generate_day(network, calls=CALLS, seed=2026)
    carriers = [Carrier(node.base_url, TOKEN, seed=i) for i, node in enumerate(cluster_demo.nodes)]
    rng = random.Random(7)
    deliveries = [Delivery(duplicate=True, reorder=rng.random() < 0.10) for _ in planned]

    def place(i: int):
        plan = planned[i]
        carrier = carriers[i % len(carriers)]
        return plan, carrier.place_call(plan.tracking_number, plan.caller, caller=plan.script, params=plan.params,
                                        buyers=plan.buyers, delivery=deliveries[i])

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(place, range(len(planned))))

    problems: list[str] = []
    errors = [r for _, r in results if not r.ok]
    problems += [f"carrier error on {r.call_sid}: {r.errors or r.error_codes}" for r in errors]
    calls = cluster_demo.calls_by_sid()
    details = {rows[0]["sid"]: rows[0] for rows in calls.values()}
    campaigns = {c["name"]: c for c in network["campaigns"]}
    for plan, record in results:
        rows = calls.get(record.call_sid, [])
        if len(rows) != 1:
            problems.append(f"{record.call_sid} recorded {len(rows)} times")
            continue
        call = details[record.call_sid]
        # The record agrees with what the carrier saw (a fallback forward is not a buyer: not counted).
        dialled = [a["number"] for a in call["attempts"]]
        talked = sum(d.duration for d in record.dials if d.bridged and d.number in dialled)
        if call["talk_seconds"] != talked:
            problems.append(f"{record.call_sid}: talk {call['talk_seconds']} s, carrier says {talked} s")
        carrier_dialled = [d.number for d in record.dials]
        if call["fallback_applied"] not in ("forward", "unknown_number") and dialled != carrier_dialled:
            problems.append(f"{record.call_sid}: attempts {dialled}, carrier dialled {carrier_dialled}")
        # The verdict follows from the facts.
        codes = {r["code"] for r in call["reasons"]}
        buffer = campaigns.get(call["campaign"]["name"], {}).get("buffer_seconds", 60) if call["campaign"] else 60
        if call["verdict"] == "billable" and talked < min(buffer, 60):
            problems.append(f"{record.call_sid}: billable but the carrier saw {talked} s bridged with a buyer")
        if not talked and "not_connected" not in codes:
            problems.append(f"{record.call_sid}: never bridged but not flagged not_connected")
        if call["stage"] != "ended":
            problems.append(f"{record.call_sid}: stage {call['stage']} after the call ended")

    violations = limit_violations(network, details.values())
    problems += violations
    # The ledger charges (and pays out) every billable call exactly once, and nothing else (docs/billing.md).
    ledger = json.loads(cluster_demo.cli("billing", "check", "--json", check=False).stdout)
    problems += [f"ledger: {m['call_sid']}: {m['problem']}" for m in ledger["mismatches"]]
    billable = sum(1 for c in details.values() if c["verdict"] == "billable")
    if (ledger["billable_calls"], ledger["charged_calls"], ledger["paid_calls"]) != (billable,) * 3:
        problems.append(f"ledger: {ledger['charged_calls']} calls charged, {ledger['paid_calls']} paid out, "
                        f"{billable} billable")
    figures.record("load", {"calls": len(results), "nodes": len(cluster_demo.nodes),
                            "webhooks": sum(len(r.requests) for _, r in results),
                            "reordered_calls": sum(d.reorder for d in deliveries),
                            "billable": sum(1 for c in details.values() if c["verdict"] == "billable"),
                            "limit_violations": len(violations), "problems": len(problems)})
    assert not problems, "\n".join(problems[:30])
