"""Degraded mode: answer a call's webhooks from memory when the database (or Redis) is unreachable.

Routing uses the process's network snapshot (areas, hours, pauses, priorities — everything but live
counters, sticky callers and auto-pauses, which live in the database) and rings the best targets it
knows. The Dial action URL carries the rest of the ring list, so the ring tree goes on without the
database. Every webhook handled here is spooled to local disk (``calls/spool.py``) with what we decided,
and replayed into the database when it is back (``calls/replay.py``). The IVR is skipped: a degraded call
goes straight to routing, with the carrier's ZIP when it gave one.

Each function returns the steps to answer and the facts the replay needs.
"""

from __future__ import annotations

import datetime as dt
import logging
import random

from django.utils import timezone

from callbroker.calls import steps as s
from callbroker.calls.events import DialOutcome, InboundCall
from callbroker.calls.services import decide, fallback_steps, installation_fallback, intro_steps, new_call
from callbroker.network.snapshot import CampaignInfo, NetworkSnapshot, cached_snapshot

log = logging.getLogger(__name__)

Facts = dict


def _snapshot() -> NetworkSnapshot | None:
    return cached_snapshot()


def voice(inbound: InboundCall, now: dt.datetime | None = None) -> tuple[tuple[s.Step, ...], Facts]:
    """A new call (or a call whose IVR step arrived in degraded mode): route it from memory."""
    now = now or timezone.now()
    snap = _snapshot()
    if snap is None:  # this process never loaded the network: nothing to route with
        return installation_fallback(None, None), {"unroutable": True}
    call, campaign = new_call(inbound, snap, now)
    if campaign is None:
        return installation_fallback(snap, None), {"unknown_number": True}
    # Seeded by the CallSid: a retried delivery of the same webhook gets the same answer.
    decision = decide(call, campaign, now, counters={}, auto_paused=set(), sticky=None,
                      rng=random.Random(inbound.call_sid))
    facts: Facts = {"decision": {**call.decision, "degraded": True}, "caller_zip": call.caller_zip,
                    "zip_source": call.zip_source, "campaign_id": campaign.core.id}
    steps = _dial_from(list(decision.ring), 1, campaign, snap, facts)
    return (*intro_steps(call, campaign), *steps), facts


def dial(seq: int, rest: tuple[int, ...], campaign_id: int, outcome: DialOutcome) -> tuple[tuple[s.Step, ...], Facts]:
    """A target's leg ended: connected (done), or ring the next target carried in the URL, or fall back."""
    if outcome.bridged:
        return (s.Hangup(),), {}
    snap = _snapshot()
    campaign = snap.campaigns.get(campaign_id) if snap else None
    if campaign is None:
        return installation_fallback(snap, None), {"unroutable": True}
    facts: Facts = {}
    return _dial_from(list(rest), seq + 1, campaign, snap, facts), facts


def _dial_from(ring: list[int], seq: int, campaign: CampaignInfo, snap: NetworkSnapshot,
               facts: Facts) -> tuple[s.Step, ...]:
    while ring:
        target_id = ring.pop(0)
        info = snap.targets.get(target_id)
        if info is None or info.core.paused:
            continue
        facts["dialled"] = {"sequence": seq, "target_id": target_id, "buyer_id": info.core.buyer_id,
                            "number": info.core.number}
        return (s.DialTarget(info.core.number, seq, campaign.ring_timeout, campaign.recording, campaign.core.id,
                             tuple(ring)),)
    facts["fallback"] = campaign.core.fallback.kind.value
    return fallback_steps(campaign)


def quiet() -> tuple[tuple[s.Step, ...], Facts]:
    """Status and recording callbacks: nothing to say, just spool them."""
    return (), {}


def message_left() -> tuple[tuple[s.Step, ...], Facts]:
    return (s.Say("Thank you. We will get back to you. Goodbye."), s.Hangup()), {}
