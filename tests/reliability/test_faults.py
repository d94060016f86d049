"""Faults: the database goes away mid-traffic and comes back; a node is killed. Nothing is lost.

Given two app nodes on PostgreSQL, when PostgreSQL stops, calls are still routed from memory and their
events spooled to each node's disk; when it starts again, the spool is replayed, and every call exists
exactly once with the right verdict.
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from callbroker.sim.emulator import BuyerBehaviour, Carrier, Delivery
from tests.e2e.conftest import TOKEN

pytestmark = pytest.mark.e2e

PLUMBING = "+15125550001"
PIPES_A, PIPES_B = "+15125550101", "+15125550102"
_callers = itertools.count(2000)


def caller() -> str:
    return f"+1512333{next(_callers):04d}"


def answers(talk: int = 120) -> BuyerBehaviour:
    return BuyerBehaviour(answers=True, ring_seconds=3, talk_seconds=talk)


def test_calls_survive_a_database_outage_and_are_replayed_exactly_once(cluster, postgres_server):
    carriers = [Carrier(node.base_url, TOKEN, seed=5) for node in cluster.nodes]
    placed = []
    # Before: normal calls on both nodes (the nodes learn the network).
    for carrier in carriers:
        record = carrier.place_call(PLUMBING, caller(), params={"FromZip": "78701"}, buyers={PIPES_A: answers()})
        placed.append((record, [PIPES_A]))

    # A call that is ringing when the database stops: it started normally and ends in degraded mode.
    slow = Carrier(cluster.nodes[0].base_url, TOKEN, seed=6, time_scale=0.1)
    mid = {}
    thread = threading.Thread(target=lambda: mid.setdefault("record", slow.place_call(
        PLUMBING, caller(), params={"FromZip": "78701"},
        buyers={PIPES_A: BuyerBehaviour(answers=False, ring_seconds=40), PIPES_B: answers(90)})))
    thread.start()
    time.sleep(1.0)  # the first target is ringing (30 s simulated = 3 s real)
    postgres_server.stop()
    try:
        for i in range(8):
            carrier = carriers[i % 2]
            behaviour = {PIPES_A: answers()} if i % 2 else {PIPES_A: BuyerBehaviour(answers=False, ring_seconds=40),
                                                              PIPES_B: answers(100)}
            delivery = Delivery(duplicate=True, reorder=True) if i == 3 else Delivery()
            record = carrier.place_call(PLUMBING, caller(), params={"FromZip": "78701"}, buyers=behaviour,
                                        delivery=delivery)
            assert record.talk_seconds > 0, record.transcript()  # routed and connected without the database
            placed.append((record, [PIPES_A] if i % 2 else [PIPES_A, PIPES_B]))
        thread.join(timeout=60)
        placed.append((mid["record"], [PIPES_A, PIPES_B]))
        assert mid["record"].talk_seconds == 90, mid["record"].transcript()
        assert sum(node.spooled() for node in cluster.nodes) >= 8
    finally:
        postgres_server.start()

    cluster.wait_until_replayed()
    calls = cluster.calls_by_sid()
    for record, numbers in placed:
        rows = calls.get(record.call_sid)
        assert rows is not None and len(rows) == 1, f"{record.call_sid} recorded {len(rows or [])} times"
        call = cluster.call(record.call_sid)
        assert [a["number"] for a in call["attempts"]] == numbers, record.transcript()
        assert call["verdict"] == "billable", (call["reasons"], record.transcript())
        assert call["stage"] == "ended"
    billable = [c for rows in calls.values() for c in rows if c["verdict"] == "billable"]
    assert len(billable) == len(placed)  # none billed twice


def test_killing_a_node_mid_traffic_loses_no_finished_call(cluster):
    victim, survivor = cluster.nodes
    records = []
    stop = threading.Event()

    def traffic(node, sink):
        carrier = Carrier(node.base_url, TOKEN, seed=9)
        while not stop.is_set():
            sink.append(carrier.place_call(PLUMBING, caller(), params={"FromZip": "78702"},
                                           buyers={PIPES_A: answers(75)}))

    on_victim: list = []
    on_survivor: list = []
    threads = [threading.Thread(target=traffic, args=(victim, on_victim)),
               threading.Thread(target=traffic, args=(survivor, on_survivor))]
    for t in threads:
        t.start()
    time.sleep(2.0)
    victim.kill()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    records = on_victim + on_survivor
    calls = cluster.calls_by_sid()
    completed = [r for r in records if r.ok and r.final_status == "completed" and r.talk_seconds]
    assert len(on_survivor) > 0 and len(completed) > 0
    for record in completed:
        rows = calls.get(record.call_sid, [])
        assert len(rows) == 1
        assert rows[0]["verdict"] == "billable"
    # Calls cut off by the kill got errors from the carrier's point of view, never a duplicate record.
    assert all(len(rows) == 1 for rows in calls.values())
