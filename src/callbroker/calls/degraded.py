"""Degraded mode: answer a call's webhooks from memory when the database (or Redis) is unreachable.

Routing uses the process's network snapshot (areas, hours, pauses, priorities — everything but sticky
callers and auto-pauses, which live in the database) and rings the best targets it knows. The Dial action
URL carries the rest of the ring list, so the ring tree goes on without the database. Every webhook
handled here is spooled to local disk (``calls/spool.py``) with what we decided, and replayed into the
database when it is back (``calls/replay.py``). The IVR is skipped: a degraded call goes straight to
routing, with the carrier's ZIP when it gave one, or the ZIP the caller typed (an answer to the prompt, or,
for an answer to the category question, the ZIP typed live before it, carried in the question's action URL),
taken as typed. An IVR answer is not judged here (nothing tells which question the call is at):
the replay judges it from the spooled parameters by the live rules.

**Limits.** With the Redis counters backend and Redis reachable (the database alone is away), degraded
routing reads the live counters and takes and gives back concurrency slots and cap units in Redis as the
normal path does, so every limit holds (:class:`Limits`). A slot taken here is held under the token
``<CallSid>:<step>``: taken or given back twice, it counts once (webhooks are delivered twice, on any
node). What each step dialled is remembered in Redis per call, so a repeated webhook gets the same
answer and the slot can be given back from any node: when the leg ends unanswered (Dial action), when
the call ends (final status; a leg whose outcome is still unknown then keeps its cap unit, given back if
it turns out not delivered), and, for anything left, when the call is replayed. With the SQL backend, or
Redis unreachable too, the counters are unknown: the best target known is rung and limits are not enforced
(``"limits": "unenforced"`` in the decision) — the caller is connected rather than dropped.

Each function returns the steps to answer and the facts the replay needs; the facts carry the moments a
slot was taken (``started_at``, after taking it) and given back (``ended_at``, before giving it back), so
the replayed attempts never overlap more than the limits allowed.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import uuid

import redis
from django.utils import timezone

from callbroker.calls import steps as s
from callbroker.calls.events import DialOutcome, InboundCall, StatusUpdate
from callbroker.calls.services import (
    decide,
    fallback_steps,
    installation_fallback,
    intro_steps,
    new_call,
    routing_context,
    set_typed_zip,
)
from callbroker.core.model import Exclusion, Target, TargetCounters
from callbroker.network import live
from callbroker.network.snapshot import CampaignInfo, NetworkSnapshot, TargetInfo, cached_snapshot

log = logging.getLogger(__name__)

Facts = dict
ENFORCED, UNENFORCED = "redis", "unenforced"


def _snapshot() -> NetworkSnapshot | None:
    return cached_snapshot()


class Limits:
    """Concurrency slots and caps of one call in degraded mode, kept in Redis (see the module docstring).

    Any Redis failure turns enforcement off for the rest of this webhook (``mode`` says which applied):
    the caller is still connected.
    """

    def __init__(self, call_sid: str) -> None:
        self.call_sid = call_sid
        self.store = live.store_without_database() if call_sid else None
        self.mode = ENFORCED if self.store is not None else UNENFORCED

    @property
    def enforced(self) -> bool:
        return self.mode == ENFORCED

    def _failed(self, what: str, exc: Exception) -> None:
        log.warning("call %s: %s in Redis failed (%s); limits not enforced for this call's webhook",
                    self.call_sid, what, exc)
        self.mode = UNENFORCED

    def read(self, targets, timezones: dict[int, str], now: dt.datetime) -> dict[int, TargetCounters]:
        if not self.enforced or not targets:
            return {}
        try:
            # Counters Redis doesn't know are read as its keys hold them: with the database away no
            # reservation can rebuild them, so read as empty a busy line would be rung again.
            return self.store.read(targets, timezones, now, unknown_as_empty=False)
        except redis.RedisError as exc:
            self._failed("reading the counters", exc)
            return {}

    def recall(self, step: int | str) -> dict | None:
        """What this step dialled when its webhook was handled before (a repeated delivery)."""
        if not self.enforced:
            return None
        try:
            return self.store.plan(self.call_sid, str(step))
        except redis.RedisError as exc:
            self._failed("reading the call's plan", exc)
            return None

    def ended(self) -> bool:
        """The call's final status came already (a late, reordered callback): take nothing more."""
        return self.recall("end") is not None

    def take(self, info: TargetInfo, step: int, now: dt.datetime) -> Exclusion | None:
        """Take the target's slot and cap units for this step (``None``: taken, or not enforced)."""
        if not self.enforced:
            return None
        try:
            return self.store.reserve(info.core, info.timezone, now, token=self._token(step), rebuild=False)
        except redis.RedisError as exc:
            self._failed("taking a slot", exc)
            if isinstance(exc, redis.TimeoutError | redis.ConnectionError):
                # The script may have run before the reply was lost: nothing remembers this hold, so give it
                # back by its name now (a no-op when nothing was taken), cap units included.
                try:
                    self.store.release(info.core, info.core.id, info.timezone, now, undo_usage=True,
                                       token=self._token(step))
                except redis.RedisError as again:
                    log.warning("call %s: giving back a slot that may have been taken failed too (%s)",
                                self.call_sid, again)
            return None

    def remember(self, step: int, plan: dict) -> dict:
        """Keep what this step dialled; returns the plan that stands (another delivery's, if it was first)."""
        if not self.enforced:
            return plan
        try:
            return self.store.remember(self.call_sid, str(step), plan)
        except redis.RedisError as exc:
            self._failed("remembering the call's plan", exc)
            return plan

    def give_back(self, step: int, plan: dict | None, *, undo_usage: bool, pending: bool = False) -> None:
        """Give back the slot this step took (nothing if it took none, or gave it back already).

        ``undo_usage``: the leg was not delivered, its cap units go back too, also when its call's end kept
        them (``pending``: the call ended, the leg's outcome unknown; see ``RedisCounters.release``)."""
        if not plan or not plan.get("held") or self.store is None:
            return
        try:
            self.store.release(_target_of(plan), plan["target"], plan["tz"],
                               dt.datetime.fromisoformat(plan["at"]), undo_usage=undo_usage,
                               token=self._token(step), pending=pending)
        except redis.RedisError as exc:
            log.warning("call %s: giving back the slot of step %s failed (%s); the replay gives it back",
                        self.call_sid, step, exc)

    def still_counts(self, step: int) -> bool:
        """Redis still counts the cap units this step took: its hold stands, or the call's end kept them.
        False when it took none (limits not enforced: SQL counters, Redis away), gave them back, or Redis
        lost them."""
        plan = self.recall(step)
        if not plan or not plan.get("held"):
            return False
        try:
            return self.store.hold_counted(plan["target"], self._token(step))
        except redis.RedisError as exc:
            self._failed("reading a hold", exc)
            return False

    def end(self) -> bool:
        """The call ended: give back every slot still held. A leg's cap units stay, its outcome unknown here:
        kept by its token until the leg turns out not delivered (a Dial action, the replay closing it
        ``canceled``: given back then) or the replay settles them (``release_leftovers``: kept).
        True when its plan in Redis now holds the end mark (which the replay deletes with the plan)."""
        if self.store is None:
            return False
        try:
            plans = self.store.plans(self.call_sid)
            # Marked even when degraded mode took nothing (a call routed live): a late Dial action
            # rings no one.
            self.store.remember(self.call_sid, "end", {"at": timezone.now().isoformat()})
            if not plans:
                return True
        except redis.RedisError as exc:
            log.warning("call %s: reading its plan at the end failed (%s); the replay gives its slots back",
                        self.call_sid, exc)
            return False
        for step, plan in plans.items():
            if step.isdigit():
                self.give_back(int(step), plan, undo_usage=False, pending=True)
        return True

    def _token(self, step: int) -> str:
        return token(self.call_sid, step)


def token(call_sid: str, step: int) -> str:
    """The name a degraded-mode slot is held under in Redis."""
    return f"{call_sid}:{step}"


def _target_of(plan: dict) -> Target:
    """The core target of a plan, as far as giving its cap units back needs it (id and caps)."""
    hourly, daily, monthly = plan.get("caps") or (None, None, None)
    return Target(id=plan["target"], buyer_id=0, name="", number="", hourly_cap=hourly, daily_cap=daily,
                  monthly_cap=monthly)


def routed_elsewhere(call_sid: str) -> bool:
    """This call was routed in degraded mode (on any node) and its plan is still in Redis.

    Behind a load balancer a call's next webhook may reach a node whose database is back before the
    node that spooled the call has replayed it: that webhook is then handled in degraded mode too,
    instead of as a webhook for an unknown call (whose event would be lost).
    """
    store = live.store_without_database()
    if store is None or not call_sid:
        return False
    try:
        return bool(store.client.exists(store.plan_key(call_sid)))
    except redis.RedisError:
        return False


def release_leftovers(call_sid: str) -> None:
    """After the replay: give back whatever degraded mode still holds for this call and forget its plan. Cap
    units still counted are kept (a leg not delivered gave them back when the replay recorded it so).

    Raises ``redis.RedisError`` when Redis can't be reached (the replay keeps the spool file and tries again).
    """
    store = live.store_without_database()
    if store is None:
        return
    for step, plan in store.plans(call_sid).items():
        if step.isdigit() and plan.get("held"):
            store.release(_target_of(plan), plan["target"], plan["tz"], dt.datetime.fromisoformat(plan["at"]),
                          undo_usage=False, token=token(call_sid, int(step)))
    store.forget(call_sid)


# --------------------------------------------------------------------------- webhooks


def voice(inbound: InboundCall, now: dt.datetime | None = None, *,
          typed_zip: str | None = None, after_question: bool = False) -> tuple[tuple[s.Step, ...], Facts]:
    """A new call (or a call whose IVR step arrived in degraded mode): route it from memory.

    ``typed_zip``: the digits of an answer to the ZIP prompt (or, for an answer to the category question,
    the ZIP typed at the prompt before it, from the question's action URL). A ZIP we know is taken as live
    takes it (``services.set_typed_zip``: where the caller is, typed); the recording disclosure is played
    when that ZIP calls for it and the start of the call (the carrier's state, the inbound webhook answered
    live) didn't, as live, not a second time. The replay records the ZIP by ``zip_entered``'s rules
    (``services.zip_answer_replayed``), from the webhook's own parameters. ``after_question``: an answer to
    the category question, which the live call flow asked only after every disclosure due (at the start, or
    right after the ZIP typed), so none is played again, as live plays none then.
    """
    now = now or timezone.now()
    snap = _snapshot()
    if snap is None:  # this process never loaded the network: nothing to route with
        return installation_fallback(None, None), {"unroutable": True}
    call, campaign = new_call(inbound, snap, now)
    if campaign is None:
        return installation_fallback(snap, None), {"unknown_number": True}
    intro = intro_steps(call, campaign)
    if typed_zip is not None:
        heard = bool(intro)  # when the call came in, by the carrier's state
        set_typed_zip(call, typed_zip)
        intro = () if heard else intro_steps(call, campaign)
    if after_question:
        intro = ()
    limits = Limits(inbound.call_sid)
    counters = limits.read(campaign.targets, snap.timezones, now) if limits.recall(1) is None else {}
    # Seeded by the CallSid: a retried delivery of the same webhook gets the same answer.
    decision = decide(call, campaign, routing_context(call, now), counters=counters, auto_paused=set(),
                      rng=random.Random(inbound.call_sid))
    facts: Facts = {"decision": {**call.decision, "degraded": True}, "caller_zip": call.caller_zip,
                    "zip_source": call.zip_source, "campaign_id": campaign.core.id}
    steps = _dial_from(list(decision.ring), 1, campaign, snap, facts, limits)
    facts["decision"]["limits"] = limits.mode
    if facts.get("refused_at_dial"):
        facts["decision"]["refused_at_dial"] = facts.pop("refused_at_dial")
    return (*intro, *steps), facts


def dial(seq: int, rest: tuple[int, ...], campaign_id: int, outcome: DialOutcome,
         call_sid: str = "", rung: int = 0, counted: str | None = None) -> tuple[tuple[s.Step, ...], Facts]:
    """A target's leg ended: connected (done), or ring the next target carried in the URL, or fall back.

    ``rung``: the target this leg rang (carried in the URL; 0 from a URL written before it was).
    ``counted``: the periods the live path's reservation counted a cap unit in (the URL's ``u``; ``None``
    from a URL written before it was).
    """
    facts: Facts = {"ended_at": timezone.now().isoformat()}  # before its slot is given back
    limits = Limits(call_sid)
    plan = limits.recall(seq)
    if rung and limits.enforced:  # a slot the live path took for this leg (none: nothing is given back)
        _give_back_live_slot(limits, seq, rung, campaign_id, bridged=outcome.bridged, counted=counted)
    if outcome.bridged:
        return (s.Hangup(),), facts  # a slot degraded mode took stays taken until the call ends
    limits.give_back(seq, plan, undo_usage=True)
    # The caller hung up (while it rang, or during the whisper): as the live path, ring no one.
    if outcome.status == "canceled" or outcome.caller_gone or limits.ended():
        return (s.Hangup(),), facts
    snap = _snapshot()
    campaign = snap.campaigns.get(campaign_id) if snap else None
    if campaign is None:
        return installation_fallback(snap, None), {**facts, "unroutable": True}
    steps = _dial_from(list(rest), seq + 1, campaign, snap, facts, limits)
    facts["limits"] = limits.mode
    return steps, facts


#: How long before its Dial action an unanswered leg may have started, beyond the campaign's ring timeout
#: (the carrier's retries of the webhook, a wait for the write lock): see :func:`_give_back_live_slot`.
LEG_SLACK = dt.timedelta(minutes=2)


def _give_back_live_slot(limits: Limits, seq: int, target_id: int, campaign_id: int, *,
                         bridged: bool, counted: str | None = None) -> None:
    """A leg the live path dialled before the database went away has ended: give its slot back now, by the
    name the live path took it under (``live.slot_name``), instead of keeping the line busy until the
    replay. The replay then gives nothing back twice: a slot is given back by name once. Also when
    degraded mode dialled this step too (the Dial action before it was handled live, then delivered again
    during the outage): both took the line, both give it back.

    A leg that was not delivered gives its cap units back too, as the live path does, counted in the
    periods of now; the leg's start (which named the periods it was counted in) is in the database, so
    when it may have started in an earlier hour than now (the ring timeout plus ``LEG_SLACK`` ago), the
    units are kept: the buyer's cap counts that call, one unit too many, never one too few.

    Those are the units of a Dial action URL written before 2026-12-08. Since, it carries the periods the
    reservation counted (``counted``, as ``CallAttempt.counted_periods``), and exactly those go back, whatever
    the hour now: worked out from the line's caps now, a cap added while the line rang (``network load``)
    gave back a unit the leg never took, another call's, and the line took one call more than its cap.
    """
    snap = _snapshot()
    info = snap.targets.get(target_id) if snap else None
    if info is None:
        return
    campaign = snap.campaigns.get(campaign_id)
    now = timezone.now()
    longest = dt.timedelta(seconds=campaign.ring_timeout if campaign else 60) + LEG_SLACK
    same_periods = live.period_keys(now - longest, info.timezone) == live.period_keys(now, info.timezone)
    undo_usage = not bridged and (counted is not None or same_periods)
    try:
        limits.store.release(info.core, target_id, info.timezone, now, undo_usage=undo_usage,
                             token=live.slot_name(limits.call_sid, seq), periods=counted)
    except redis.RedisError as exc:
        log.warning("call %s: giving back the slot of its leg %s failed (%s); the replay gives it back",
                    limits.call_sid, seq, exc)


def status(call_sid: str, update: StatusUpdate) -> tuple[tuple[s.Step, ...], Facts]:
    """A status callback: the final one gives back the slots the call still holds."""
    facts: Facts = {"ended_at": timezone.now().isoformat()}  # before the slots are given back
    if update.terminal and Limits(call_sid).end():
        facts["limits"] = ENFORCED  # the call has a plan in Redis now (its end mark): the replay deletes it
    return (), facts


def _dial_from(ring: list[int], seq: int, campaign: CampaignInfo, snap: NetworkSnapshot, facts: Facts,
               limits: Limits) -> tuple[s.Step, ...]:
    remembered = limits.recall(seq)
    if remembered is not None:  # a repeated webhook: answer what the first delivery answered
        return _follow(remembered, seq, campaign, snap, facts, limits)
    ended = limits.ended()
    while ring:
        target_id = ring.pop(0)
        info = snap.targets.get(target_id)
        if info is None or info.core.paused:
            continue
        now = timezone.now()
        refused = None if ended else limits.take(info, seq, now)
        if refused is not None:
            facts.setdefault("refused_at_dial", []).append([target_id, refused.value])
            continue
        plan = {"target": target_id, "rest": ring, "tz": info.timezone, "at": now.isoformat(),
                "held": limits.enforced and not ended, "by": uuid.uuid4().hex,
                "caps": [info.core.hourly_cap, info.core.daily_cap, info.core.monthly_cap]}
        stands = limits.remember(seq, plan)
        if stands.get("by") != plan["by"]:  # a concurrent delivery of this webhook decided first: follow it
            if stands.get("target") != target_id:
                limits.give_back(seq, plan, undo_usage=True)
            return _follow(stands, seq, campaign, snap, facts, limits)
        return _dial(info, seq, ring, campaign, facts)
    fallback = campaign.core.fallback.kind.value
    stands = limits.remember(seq, {"fallback": fallback})
    if stands.get("target"):  # a concurrent delivery of this webhook dialled a target: follow it
        return _follow(stands, seq, campaign, snap, facts, limits)
    facts["fallback"] = fallback
    return fallback_steps(campaign)


def _follow(plan: dict, seq: int, campaign: CampaignInfo, snap: NetworkSnapshot, facts: Facts,
            limits: Limits) -> tuple[s.Step, ...]:
    info = snap.targets.get(plan.get("target") or 0)
    if info is None:
        facts["fallback"] = plan.get("fallback") or campaign.core.fallback.kind.value
        return fallback_steps(campaign)
    if plan.get("held") and not limits.ended():
        limits.take(info, seq, dt.datetime.fromisoformat(plan["at"]))  # the same token: nothing more is taken
    return _dial(info, seq, list(plan.get("rest") or ()), campaign, facts)


def _dial(info: TargetInfo, seq: int, rest: list[int], campaign: CampaignInfo, facts: Facts) -> tuple[s.Step, ...]:
    facts["dialled"] = {"sequence": seq, "target_id": info.core.id, "buyer_id": info.core.buyer_id,
                        "number": info.core.number, "started_at": timezone.now().isoformat()}
    return (s.DialTarget(info.core.number, seq, campaign.ring_timeout, campaign.recording, campaign.core.id,
                         tuple(rest), info.core.id),)


def caller_gone() -> tuple[tuple[s.Step, ...], Facts]:
    """An IVR answer posted after the caller hung up at the prompt: no one to route, no slot taken. The replay
    records the answer as ``services.zip_entered`` / ``category_answered`` do (a fact of the call)."""
    return (s.Hangup(),), {"caller_gone": True}


def quiet() -> tuple[tuple[s.Step, ...], Facts]:
    """Status and recording callbacks: nothing to say, just spool them."""
    return (), {}


def message_left() -> tuple[tuple[s.Step, ...], Facts]:
    return (s.Say("Thank you. We will get back to you. Goodbye."), s.Hangup()), {}
