"""A call as plain data and as text for people: one place, reused by the CLI, the admin, the API and the
live terminal view.

* :func:`call_to_dict` — every fact of a call as a JSON-ready dict (times ISO-8601 UTC, money as strings).
* :func:`call_summary_line` — one line per call for live views.
* :func:`call_detail_lines` — the full story of one call in sections (``callbroker calls show``).
* :func:`decision_passes` — the stored routing decision(s) with target names and human labels.

Functions take a :class:`~callbroker.calls.models.Call`. To avoid a query per call, load lists with
:func:`with_related` (``select_related`` / ``prefetch_related`` of everything read here).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import OuterRef, Prefetch, QuerySet, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from callbroker.calls.choices import (
    AttemptResult,
    CallerStatus,
    CallStage,
    Outcome,
    Verdict,
    ZipSourceChoices,
)
from callbroker.calls.models import Call, CallAttempt, CallEvent
from callbroker.core.model import Exclusion, FallbackKind, Reason
from callbroker.core.money import CENT, format_money
from callbroker.core.routing import EXCLUSION_LABELS as _CORE_EXCLUSION_LABELS
from callbroker.network.models import Target

__all__ = [
    "AUTO_PAUSED_LABEL",
    "EXCLUSION_LABELS",
    "FALLBACK_LABELS",
    "REASON_LABELS",
    "call_detail_lines",
    "call_summary_line",
    "call_to_dict",
    "decided_at_text",
    "decision_passes",
    "exclusion_label",
    "format_seconds",
    "money_str",
    "money_text",
    "reason_label",
    "reason_texts",
    "with_related",
]

#: Why a target was left out of the ring list (``Call.decision["excluded"]``). The routing core owns
#: these labels (``core.routing.explain`` uses them too); they are re-exported here under string keys.
EXCLUSION_LABELS: Mapping[str, str] = {str(code): label for code, label in _CORE_EXCLUSION_LABELS.items()}

#: Why a finished call is not billable (``Call.reason_codes``).
REASON_LABELS: Mapping[str, str] = {
    Reason.NOT_CONNECTED: "never connected to a buyer",
    Reason.BELOW_BUFFER: "talk time with the buyer below the billable buffer",
    Reason.DUPLICATE: "repeat caller inside the duplicate window",
    Reason.OUT_OF_AREA: "caller outside the buyer's service area",
    Reason.WRONG_CATEGORY: "caller did not confirm the service category",
    Reason.BLOCKED_NUMBER: "caller's number is blocked",
    Reason.ANONYMOUS_CALLER: "anonymous or invalid caller ID",
    # Both cases the rule gives: a failed verification, and none at all where the campaign requires one.
    Reason.FAILED_ATTESTATION: "caller ID not verified (STIR/SHAKEN failed, or no result where required)",
    Reason.CALLER_VELOCITY: "too many calls from this caller in a short time",
    Reason.JUDGED_BY_STAFF: "judged not billable by staff (no rule left to judge it by)",
}

#: Shown instead of the ``paused`` label for a target paused by missed-call protection.
AUTO_PAUSED_LABEL = "paused automatically (missed calls)"

#: What happened to a caller no target could take (``Call.fallback_applied``).
FALLBACK_LABELS: Mapping[str, str] = {
    FallbackKind.MESSAGE: "closed message played",
    FallbackKind.FORWARD: "forwarded to the fallback number",
    FallbackKind.VOICEMAIL: "voicemail taken",
    FallbackKind.CALLBACK: "callback requested",
    "unknown_number": "number called is not an active tracking number",
    "carrier_fallback": "answered by the carrier's Fallback URL (our Voice URL failed it)",
    "status_only": "known from its final status alone (no node recorded its inbound webhook)",
}

def exclusion_label(code: str) -> str:
    """Human label of an exclusion code; an unknown (newer) code is shown as itself."""
    return EXCLUSION_LABELS.get(code, code)


def reason_label(code: str) -> str:
    """Human label of a not-billable reason code; an unknown (newer) code is shown as itself."""
    return REASON_LABELS.get(code, code)


def reason_texts(call: Call) -> list[tuple[str, str]]:
    """Every reason the call is not billable, as ``(code, words)``: the qualification trace's sentence kept with
    the verdict ("talked 29 s with the buyer; 30 s needed (this buyer's own minimum)", "the campaign requires
    verified caller ID; the carrier gave no result"), else the code's label (a call judged before 2026-12-07).

    Why: the label alone names no figure (which buffer applied: the campaign's or the buyer's own, and how
    much) and may say more than happened ("failed STIR/SHAKEN attestation" of a call the carrier gave no
    result for). The sentence is the one written when the call was judged (``Call.reason_notes``), never
    worked out again from the rules as they are now: a buffer changed since would give a figure that was not
    the one applied. Reads nothing but the call's row. Only the stored codes are shown."""
    notes = call.reason_notes or {}
    return [(code, notes.get(code) or reason_label(code)) for code in call.reason_codes or ()]


# --------------------------------------------------------------------------------------------------
# Small formatters


def iso_utc(value: dt.datetime | None) -> str | None:
    """``2026-11-27T14:03:12Z`` (microseconds kept when present); ``None`` stays ``None``."""
    if value is None:
        return None
    if timezone.is_naive(value):
        value = timezone.make_aware(value, dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def money_str(value: Decimal | None) -> str | None:
    """A Decimal as a fixed two-place string (``"45.00"``); never a float."""
    if value is None:
        return None
    return str(Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP))


def money_text(value: Decimal | None, currency: str = "USD") -> str:
    """``$45.00`` (see :func:`callbroker.core.money.format_money`); ``None`` is ``—``."""
    return "—" if value is None else format_money(value, currency)


def format_seconds(seconds: int | None) -> str:
    """``2:31`` or ``1:02:03``; ``None`` is ``—``."""
    if seconds is None:
        return "—"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _local(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if value is None:
        return "—"
    return timezone.localtime(value).strftime(fmt)


#: The annotation :func:`with_related` adds: the currency of the call's latest ledger entry (or None).
LEDGER_CURRENCY = "ledger_currency"


def _ledger_currency() -> Subquery:
    # billing.LedgerEntry by the reverse relation: billing imports calls, not the other way round.
    entries = Call._meta.get_field("ledger_entries").related_model
    return Subquery(entries.objects.filter(call_id=OuterRef("pk")).order_by("-id").values("currency")[:1])


def call_currency(call: Call) -> str:
    """The currency of the call's revenue and payout: the one its ledger entries were posted in (the
    latest entry's), else its campaign's (nothing posted), else USD.

    A campaign's currency may change after its calls were charged; the ledger and the statements keep the
    currency charged, and so does every page and listing of those calls. Read from the annotation
    :func:`with_related` adds (no query per call); a call loaded otherwise costs one query.
    """
    if hasattr(call, LEDGER_CURRENCY):
        posted = getattr(call, LEDGER_CURRENCY)
    elif call.pk:
        posted = call.ledger_entries.order_by("-id").values_list("currency", flat=True).first()
    else:
        posted = None
    if posted:
        return posted
    return call.campaign.currency if call.campaign_id and call.campaign else "USD"


# --------------------------------------------------------------------------------------------------
# Loading


def with_related(queryset: QuerySet[Call]) -> QuerySet[Call]:
    """The related rows every presenter reads, in a fixed number of queries."""
    attempts = CallAttempt.objects.select_related("target__buyer", "buyer").order_by("sequence")
    return queryset.select_related(
        "campaign", "publisher", "tracking_number", "connected_target__buyer", "buyer"
    ).prefetch_related(Prefetch("attempts", queryset=attempts)).annotate(
        **{LEDGER_CURRENCY: _ledger_currency()})


def _attempts(call: Call) -> list[CallAttempt]:
    # Sorted in Python so a prefetched list is used as is (no extra query).
    return sorted(call.attempts.all(), key=lambda attempt: attempt.sequence)


def _events(call: Call) -> list[CallEvent]:
    return list(CallEvent.objects.filter(call_sid=call.call_sid).order_by("id"))


# --------------------------------------------------------------------------------------------------
# Routing decision


def _raw_passes(raw: Any) -> list[dict]:
    if not raw:
        return []
    if isinstance(raw, Mapping):
        if "passes" in raw:
            return [p for p in raw.get("passes") or [] if isinstance(p, Mapping)]
        return [raw]
    if isinstance(raw, list):  # tolerate a bare list of passes
        return [p for p in raw if isinstance(p, Mapping)]
    return []


def _excluded_pairs(items: Any) -> list[tuple[Any, str]]:
    """``(target id, code)`` pairs from a stored exclusion list: ``{code: [ids]}`` (decisions since
    2026-12-06), or ``[[id, code], …]`` / ``[{"id": …, "code": …}, …]`` (older decisions, ``refused_at_dial``)."""
    if isinstance(items, Mapping):
        return [(tid, str(code)) for code, ids in items.items() if isinstance(ids, list) for tid in ids]
    pairs = []
    for item in items or ():
        if isinstance(item, Mapping):
            pairs.append((item.get("id", item.get("target")), str(item.get("code", item.get("reason", "")))))
        elif isinstance(item, list | tuple) and len(item) >= 2:
            pairs.append((item[0], str(item[1])))
    return pairs


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def decision_passes(call: Call) -> list[dict]:
    """Every routing pass of the call, oldest first, as plain dicts with names and labels::

        {"at": "...", "ring": [{"id": 12, "name": "ACME / Main"}],
         "excluded": [{"id": 3, "name": "Bob / Night", "code": "closed", "label": "closed",
                       "auto_paused": False}],
         "refused_at_dial": [{"id": 12, "name": "ACME / Main", "code": "concurrency_full", "label": …}],
         "sticky": False, "fallback": {"kind": "message", ...} | None,
         "caller_zip": "78701", "zip_source": "carrier", "degraded": False, "limits_enforced": True,
         "limits_counted_in_database": False}

    ``refused_at_dial`` lists ring-list targets skipped when their turn came (a cap or the concurrency
    limit was reached, its hours ended, or it was paused in between); ``auto_paused`` marks targets
    paused by missed-call protection.
    ``degraded``: routed from memory while the database (or Redis) was away; ``limits_enforced`` is
    False when a step of the call was routed while the live counters were unreachable too;
    ``limits_counted_in_database``: Redis was unreachable, and the limits were counted from the call
    attempts in the database instead (still enforced).
    Names come from the snapshot stored with the decision (``"targets"``: the ring's targets, as named
    when the call was routed; every target of the campaign in decisions stored before 2026-12-06);
    targets missing from it are looked up (one query per call at most) and shown as ``#id`` when gone.
    """
    raw_passes = _raw_passes(call.decision)
    if not raw_passes:
        return []
    names: dict[int, str] = {}
    wanted: set[int | None] = set()
    for raw in raw_passes:
        for key, name in (raw.get("targets") or {}).items():
            tid = _int_or_none(key)
            if tid is not None and tid not in names:
                names[tid] = str(name)
        wanted.update(_int_or_none(t) for t in raw.get("ring") or ())
        for key in ("excluded", "refused_at_dial"):
            wanted.update(_int_or_none(t) for t, _code in _excluded_pairs(raw.get(key)))
    missing = {tid for tid in wanted if tid is not None and tid not in names}
    if missing:
        for target in Target.objects.filter(pk__in=missing).select_related("buyer"):
            names[target.pk] = str(target)

    def name_of(tid: Any) -> str:
        as_int = _int_or_none(tid)
        return names.get(as_int, f"#{tid}") if as_int is not None else f"#{tid}"

    def left_out(items: Any, auto_paused: set[int | None] | None = None) -> list[dict]:
        entries = []
        for tid, code in _excluded_pairs(items):
            entry = {"id": _int_or_none(tid), "name": name_of(tid), "code": code, "label": exclusion_label(code)}
            if auto_paused is not None:
                entry["auto_paused"] = entry["id"] in auto_paused
                if entry["auto_paused"] and code == Exclusion.PAUSED:
                    entry["label"] = AUTO_PAUSED_LABEL
            entries.append(entry)
        return entries

    passes = []
    for raw in raw_passes:
        fallback = raw.get("fallback")
        auto_paused = {_int_or_none(t) for t in raw.get("auto_paused") or ()}
        passes.append({
            "at": raw.get("at"),
            "ring": [{"id": _int_or_none(t), "name": name_of(t)} for t in raw.get("ring") or ()],
            "excluded": left_out(raw.get("excluded"), auto_paused),
            "refused_at_dial": left_out(raw.get("refused_at_dial")),
            "sticky": bool(raw.get("sticky", False)),
            "fallback": dict(fallback) if isinstance(fallback, Mapping) else None,
            "caller_zip": raw.get("caller_zip"),
            "zip_source": raw.get("zip_source"),
            "degraded": bool(raw.get("degraded", False)),
            "limits_enforced": raw.get("limits") != "unenforced",
            "limits_counted_in_database": raw.get("limits") == "database",
        })
    return passes


def _decision_dict(call: Call) -> dict | None:
    passes = decision_passes(call)
    if not passes:
        return None
    # The latest pass is the one the call followed; all passes are listed for the rare re-route.
    return {**passes[-1], "passes": passes}


# --------------------------------------------------------------------------------------------------
# call_to_dict


def _ref(obj: Any) -> dict | None:
    if obj is None:
        return None
    return {"id": obj.pk, "key": obj.key, "name": obj.name}


def _attempt_dict(attempt: CallAttempt) -> dict:
    target = attempt.target
    return {
        "sequence": attempt.sequence,
        "target": {"id": target.pk, "key": target.key, "name": str(target)} if target else None,
        "buyer": _ref(attempt.buyer),
        "number": attempt.number,
        "started_at": iso_utc(attempt.started_at),
        "ended_at": iso_utc(attempt.ended_at),
        "ring_seconds": attempt.ring_seconds,
        "talk_seconds": attempt.talk_seconds,
        "result": attempt.result,
        "result_label": _label(AttemptResult, attempt.result),
        "dial_call_sid": attempt.dial_call_sid,
    }


def _event_dict(event: CallEvent) -> dict:
    return {
        "kind": event.kind,
        "received_at": iso_utc(event.received_at),
        "params": event.params,
        "response": event.response,
    }


def _label(choices: type, value: str) -> str:
    return choices(value).label if value in choices.values else value


def call_to_dict(call: Call, *, with_events: bool = False) -> dict:
    """Every fact of a call as a JSON-ready dict: times ISO-8601 UTC, money as strings, codes with labels.

    ``"decision"`` is the latest routing pass (``ring``, ``excluded`` with labels, ``fallback`` …) plus
    ``"passes"``, all of them; ``None`` when the call was never routed. ``"events"`` (the raw carrier
    webhooks, oldest first) is included only with ``with_events=True``: it costs a query.
    """
    tracking = call.tracking_number
    target = call.connected_target
    has_recording = bool(call.recording_sid or call.recording_url)
    data = {
        "sid": call.call_sid,
        "account_sid": call.account_sid,
        "carrier": call.carrier,
        "started_at": iso_utc(call.started_at),
        "ended_at": iso_utc(call.ended_at),
        "duration_seconds": call.duration_seconds,
        "final_status": call.final_status,
        "stage": call.stage,
        "stage_label": _label(CallStage, call.stage),
        "tracking_number": {
            "number": tracking.number if tracking else call.to_number,
            "label": tracking.label if tracking else "",
            "known": tracking is not None,
        },
        "campaign": _ref(call.campaign),
        "publisher": _ref(call.publisher),
        "caller": {
            "number": call.caller_number or None,
            "raw": call.caller_raw,
            "status": call.caller_status,
            "zip": call.caller_zip or None,
            "zip_source": call.zip_source,
            "zip_source_label": _label(ZipSourceChoices, call.zip_source),
            "zip_prompts": call.zip_attempts,
            "state": call.caller_state or None,
            "city": call.caller_city or None,
            "stir_verstat": call.stir_verstat or None,
            "category_confirmed": call.category_confirmed,
        },
        "decision": _decision_dict(call),
        "fallback_applied": call.fallback_applied or None,
        "fallback_label": FALLBACK_LABELS.get(call.fallback_applied, call.fallback_applied) or None,
        "connected_target": {"id": target.pk, "key": target.key, "name": str(target)} if target else None,
        "buyer": _ref(call.buyer),
        "talk_seconds": call.talk_seconds,
        "in_area": call.in_area,
        "recording": {
            "sid": call.recording_sid,
            "url": call.recording_url,
            "seconds": call.recording_seconds,
        } if has_recording else None,
        "verdict": call.verdict,
        "verdict_label": _label(Verdict, call.verdict),
        "reasons": [{"code": code, "label": reason_label(code)} for code in call.reason_codes or ()],
        # The sentence each reason was judged with, by code (null: judged before 2026-12-07; use its label).
        "reason_notes": {code: (call.reason_notes or {}).get(code) for code in call.reason_codes or ()},
        "currency": call_currency(call),
        "revenue": money_str(call.revenue),
        "payout": money_str(call.payout),
        "qualified_at": iso_utc(call.qualified_at),
        "outcome": call.outcome or None,
        "outcome_label": _label(Outcome, call.outcome) if call.outcome else None,
        "job_value": money_str(call.job_value),
        "outcome_note": call.outcome_note,
        "outcome_at": iso_utc(call.outcome_at),
        "attempts": [_attempt_dict(attempt) for attempt in _attempts(call)],
    }
    if with_events:
        data["events"] = [_event_dict(event) for event in _events(call)]
    return data


# --------------------------------------------------------------------------------------------------
# Text


def caller_text(call: Call) -> str:
    """The caller as people read it: the number, or why there is none."""
    if call.caller_number:
        return call.caller_number
    if call.caller_status == CallerStatus.ANONYMOUS:
        return "anonymous"
    return call.caller_raw or "unknown caller"


def zip_text(call: Call) -> str:
    """``ZIP 78704 (ivr)`` or ``ZIP ?``."""
    return f"ZIP {call.caller_zip} ({call.zip_source})" if call.caller_zip else "ZIP ?"


def was_connected(call: Call) -> bool:
    """Whether a buyer answered and was bridged. The connected target (and the buyer) may have been deleted
    since (``SET NULL``): the call still keeps its buyer, its talk time and its bridged attempt."""
    if call.connected_target_id or call.buyer_id or call.talk_seconds:
        return True
    return any(attempt.result == AttemptResult.BRIDGED for attempt in _attempts(call))


def connected_text(call: Call) -> str:
    """Who the call reached: ``ACME / Main``; ``ACME / (deleted target)`` once that target is deleted."""
    if call.connected_target_id:
        return str(call.connected_target)
    return f"{call.buyer.name} / (deleted target)" if call.buyer_id and call.buyer else "(deleted buyer)"


def routed_text(call: Call) -> str:
    """Where the call went: ``→ ACME / Main``, ``→ fallback: message``, ``→ no answer (3 tried)`` …"""
    if was_connected(call):
        return f"→ {connected_text(call)}"
    attempts = _attempts(call)
    if call.stage == CallStage.DIALING and attempts:
        return f"→ ringing {attempts[-1].target or attempts[-1].number}"
    tried = ""
    if attempts:
        tried = f"{', '.join(_attempt_words(attempts))} ({len(attempts)} tried)"
    if call.fallback_applied:
        return f"→ {tried + ', ' if tried else ''}fallback: {call.fallback_applied}"
    if tried:
        return f"→ {tried}"
    if call.stage == CallStage.IVR:
        return "→ in IVR"
    passes = _raw_passes(call.decision)
    if passes and not passes[-1].get("ring"):
        fallback = passes[-1].get("fallback")
        kind = fallback.get("kind") if isinstance(fallback, Mapping) else None
        return f"→ fallback: {kind}" if kind else "→ no target"
    return "→ not routed"


_ATTEMPT_WORDS = {AttemptResult.DECLINED: "declined", AttemptResult.NO_ANSWER: "no answer",
                  AttemptResult.BUSY: "busy", AttemptResult.FAILED: "failed", AttemptResult.CANCELED: "caller hung up"}


def _attempt_words(attempts) -> list[str]:
    """What became of the buyers rung, each result once in the order it first happened: ``no answer,
    declined`` (a leg answered but not bridged: the whisper declined), ``busy``, ``caller hung up`` …"""
    words: list[str] = []
    for attempt in attempts:
        word = _ATTEMPT_WORDS.get(attempt.result, attempt.result)
        if word not in words:
            words.append(word)
    return words


def verdict_text(call: Call) -> str:
    """``BILLABLE $45.00``, ``NOT BILLABLE: below_buffer, duplicate`` or ``PENDING``."""
    if call.verdict == Verdict.BILLABLE:
        return f"BILLABLE {money_text(call.revenue, call_currency(call))}"
    if call.verdict == Verdict.NOT_BILLABLE:
        codes = ", ".join(call.reason_codes or ())
        return f"NOT BILLABLE: {codes}" if codes else "NOT BILLABLE"
    return "PENDING"


#: Characters of a CallSid the live view shows: "CA" and 8 of its 32 hex digits, which ``calls show``
#: takes as a prefix (a clash among a few million calls is unlikely; ``calls show`` says when it happens).
SID_SHOWN = 10


def call_summary_line(call: Call) -> str:
    """One line for live terminal views (time in the current time zone), e.g. (shown on two lines)::

        14:03:12  CA1f2e3d4c  +15125550101 Austin Plumbing  from +15125550001  ZIP 78704 (ivr)
            → ACME Plumbing / Main line  talked 2:31  BILLABLE $45.00

    or ``… → fallback: message  NOT BILLABLE: not_connected``, ``… → no answer (3 tried)  …``. The
    CallSid is shortened to its first ``SID_SHOWN`` characters (``calls show`` takes them).
    """
    campaign = call.campaign.name if call.campaign_id and call.campaign else "no campaign"
    parts = [
        _local(call.started_at, "%H:%M:%S"),
        call.call_sid[:SID_SHOWN],
        f"{call.to_number} {campaign}",
        f"from {caller_text(call)}",
        zip_text(call),
        routed_text(call),
    ]
    if was_connected(call):
        parts.append(f"talked {format_seconds(call.talk_seconds)}")
    parts.append(verdict_text(call))
    return "  ".join(parts)


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def decided_at_text(value: str | None) -> str:
    """A decision's stored ISO time in the current time zone; anything unparsable as stored."""
    try:
        moment = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None:
        return value or "—"
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, dt.UTC)
    return _local(moment)


def decision_lines(call: Call) -> list[str]:
    """The routing decision in words: ring order, every excluded target with its reason, fallback."""
    passes = decision_passes(call)
    if not passes:
        return ["  not routed (no decision recorded)"]
    lines: list[str] = []
    for number, routing in enumerate(passes, start=1):
        if len(passes) > 1:
            lines.append(f"  Pass {number} of {len(passes)}")
        where = "ZIP unknown"
        if routing["caller_zip"]:
            where = f"ZIP {routing['caller_zip']} ({routing['zip_source']})"
        lines.append(f"  Decided at {decided_at_text(routing['at'])} for {where}")
        if routing["ring"]:
            lines.append("  Ring list:")
            for place, entry in enumerate(routing["ring"], start=1):
                sticky = place == 1 and routing["sticky"]
                note = "  (repeat caller: the buyer reached last time)" if sticky else ""
                lines.append(f"    {place}. {entry['name']} [#{entry['id']}]{note}")
        else:
            lines.append("  Ring list: empty, no target could take the call")
        if routing["excluded"]:
            lines.append("  Excluded:")
            for entry in routing["excluded"]:
                lines.append(f"    - {entry['name']} [#{entry['id']}]: {entry['label']} ({entry['code']})")
        if routing["refused_at_dial"]:
            lines.append("  Skipped when their turn came:")
            for entry in routing["refused_at_dial"]:
                lines.append(f"    - {entry['name']} [#{entry['id']}]: {entry['label']} ({entry['code']})")
        fallback = routing["fallback"]
        if fallback:
            detail = fallback.get("number") or fallback.get("message") or ""
            lines.append(f"  Fallback: {fallback.get('kind')}" + (f" — {detail}" if detail else ""))
    return lines


def _header_lines(call: Call) -> list[str]:
    tracking = call.tracking_number
    lines = [
        f"Call {call.call_sid}",
        f"  Started      {_local(call.started_at)} {timezone.get_current_timezone_name()}",
    ]
    if call.ended_at:
        duration = format_seconds(call.duration_seconds)
        lines.append(f"  Ended        {_local(call.ended_at)}  (duration {duration})")
    status = f"; carrier status {call.final_status}" if call.final_status else ""
    lines.append(f"  Stage        {_label(CallStage, call.stage)}{status}")
    if tracking:
        number = tracking.number + (f" ({tracking.label})" if tracking.label else "")
    else:
        number = f"{call.to_number} (not a known tracking number)"
    lines.append(f"  Number       {number}")
    if call.campaign_id and call.campaign:
        lines.append(f"  Campaign     {call.campaign.name} ({call.campaign.key})")
    if call.publisher_id and call.publisher:
        lines.append(f"  Publisher    {call.publisher.name} ({call.publisher.key})")
    return lines


def _caller_lines(call: Call) -> list[str]:
    lines = ["Caller", f"  Number       {caller_text(call)}  ({_label(CallerStatus, call.caller_status)})"]
    if call.caller_zip:
        source = _label(ZipSourceChoices, call.zip_source).lower()
        lines.append(f"  ZIP          {call.caller_zip}  ({source})")
    else:
        lines.append("  ZIP          unknown")
    place = ", ".join(p for p in (call.caller_city, call.caller_state) if p)
    if place:
        lines.append(f"  Place        {place}")
    if call.stir_verstat:
        lines.append(f"  STIR/SHAKEN  {call.stir_verstat}")
    if call.category_confirmed is not None:
        answer = "confirmed" if call.category_confirmed else "not confirmed"
        lines.append(f"  Category     {answer} in the IVR")
    return lines


def _routing_lines(call: Call) -> list[str]:
    result = routed_text(call).removeprefix("→ ")
    if call.fallback_applied and not was_connected(call):
        result += f" ({FALLBACK_LABELS.get(call.fallback_applied, call.fallback_applied)})"
    lines = ["Routing", *decision_lines(call), f"  Result       {result}"]
    if was_connected(call):
        lines.append(f"  Talk time    {format_seconds(call.talk_seconds)} ({call.talk_seconds} s bridged)"
                     f"; caller in area: {_yes_no(call.in_area)}")
    return lines


def _attempt_lines(call: Call) -> list[str]:
    lines = ["Attempts"]
    attempts = _attempts(call)
    if not attempts:
        lines.append("  none")
    for attempt in attempts:
        ring = f"rang {attempt.ring_seconds} s" if attempt.ring_seconds is not None else "ring time unknown"
        # Talk only of the leg that was bridged: a buyer who didn't answer, was busy or declined the whisper
        # talked to no one, and "talked 0 s" would read as a connection that lasted no time.
        talked = f", talked {attempt.talk_seconds} s" if attempt.result == AttemptResult.BRIDGED else ""
        lines.append(
            f"  {attempt.sequence}. {_local(attempt.started_at, '%H:%M:%S')}"
            f"  {attempt.target or _deleted_target(attempt)}  {attempt.number}"
            f"  {ring}{talked}  → {_label(AttemptResult, attempt.result)}"
        )
    return lines


def _deleted_target(attempt: CallAttempt) -> str:
    return f"{attempt.buyer.name} / (deleted target)" if attempt.buyer else "(deleted target)"


def _recording_lines(call: Call) -> list[str]:
    if not (call.recording_sid or call.recording_url):
        return []
    length = format_seconds(call.recording_seconds)
    return ["Recording", f"  {call.recording_sid or '—'}  {length}  {call.recording_url}"]


def _hanging(first: str, text: str, indent: str) -> list[str]:
    """``first`` then ``text``, its later lines indented by ``indent``: a note staff typed on several lines
    (the admin's text box, a quoted ``--note``) read, unindented, as lines of the sections around it. A blank
    line of the note keeps its indent: an empty line is where the next section starts."""
    head, *rest = text.splitlines() or [""]
    return [first + head, *(indent + line for line in rest)]


def _qualification_lines(call: Call) -> list[str]:
    currency = call_currency(call)
    when = f" at {_local(call.qualified_at)}" if call.qualified_at else ""
    lines = ["Qualification", f"  Verdict      {_label(Verdict, call.verdict)}{when}"]
    for code, words in reason_texts(call):
        lines += _hanging(f"    - {code}: ", words, " " * 8)
    lines.append(f"  Revenue      {money_text(call.revenue, currency)}")
    lines.append(f"  Payout       {money_text(call.payout, currency)}")
    return lines


def _outcome_lines(call: Call) -> list[str]:
    if not (call.outcome or call.job_value is not None or call.outcome_note):
        return ["Outcome", "  not recorded"]
    # A job value or a note recorded without choosing an outcome: not "Not recorded … (recorded …)".
    line = f"  {_label(Outcome, call.outcome) if call.outcome else 'No outcome chosen'}"
    if call.job_value is not None:
        line += f", job value {money_text(call.job_value, call_currency(call))}"
    if call.outcome_at:
        line += f" (recorded {_local(call.outcome_at)})"
    lines = ["Outcome", line]
    if call.outcome_note:
        lines += _hanging("  Note: ", call.outcome_note, " " * 8)
    return lines


def _event_lines(call: Call) -> list[str]:
    events = _events(call)
    lines = ["Events"]
    if not events:
        lines.append("  none")
    for event in events:
        params = json.dumps(event.params, sort_keys=True, ensure_ascii=False)
        lines.append(f"  {_local(event.received_at)}  {event.kind:<12} {params}")
    return lines


def call_detail_lines(call: Call, *, with_events: bool = False) -> list[str]:
    """The whole story of one call in sections (blank line between), for ``callbroker calls show``."""
    sections = [
        _header_lines(call),
        _caller_lines(call),
        _routing_lines(call),
        _attempt_lines(call),
        _recording_lines(call),
        _qualification_lines(call),
        _outcome_lines(call),
    ]
    if with_events:
        sections.append(_event_lines(call))
    lines: list[str] = []
    for section in sections:
        if section:
            lines += [*([""] if lines else []), *section]
    return lines


# --------------------------------------------------------------------------------------------------
# Short texts for compact views (the admin): added helpers, the functions above are unchanged

#: Short words for a not-billable reason, for narrow columns (the full label goes in a tooltip).
REASON_SHORT_LABELS: Mapping[str, str] = {
    Reason.NOT_CONNECTED: "not connected",
    Reason.BELOW_BUFFER: "below buffer",
    Reason.DUPLICATE: "duplicate",
    Reason.OUT_OF_AREA: "out of area",
    Reason.WRONG_CATEGORY: "wrong category",
    Reason.BLOCKED_NUMBER: "blocked number",
    Reason.ANONYMOUS_CALLER: "anonymous caller",
    Reason.FAILED_ATTESTATION: "caller ID not verified",
    Reason.CALLER_VELOCITY: "too many calls",
    Reason.JUDGED_BY_STAFF: "judged by staff",
}

#: Where the caller's ZIP came from, in one or two words.
ZIP_SOURCE_SHORT_LABELS: Mapping[str, str] = {
    ZipSourceChoices.IVR: "typed",
    ZipSourceChoices.CARRIER: "carrier",
    ZipSourceChoices.AREA_CODE: "area code",
    ZipSourceChoices.UNKNOWN: "unknown",
}


def reason_short_label(code: str) -> str:
    """``not connected``; an unknown code with its underscores as spaces."""
    return REASON_SHORT_LABELS.get(code, str(code).replace("_", " "))


def zip_source_short(code: str | None) -> str:
    """``typed``, ``carrier``, ``area code`` or ``unknown``."""
    return ZIP_SOURCE_SHORT_LABELS.get(code or "", str(code or "unknown").replace("_", " "))


def zip_short_text(call: Call) -> str:
    """``78704 (typed)`` or ``—``."""
    return f"{call.caller_zip} ({zip_source_short(call.zip_source)})" if call.caller_zip else "—"


def datetime_text(value: dt.datetime | None) -> str:
    """One date format with its time zone: ``2026-11-27 09:53:06 UTC`` (current time zone); ``—``."""
    if value is None:
        return "—"
    local = timezone.localtime(value)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname() or timezone.get_current_timezone_name()}"


def short_time_text(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """``09:53:06`` for today (current time zone), ``Nov 27 09:53`` otherwise; ``—``."""
    if value is None:
        return "—"
    local = timezone.localtime(value)
    today = timezone.localtime(now or timezone.now()).date()
    return f"{local:%H:%M:%S}" if local.date() == today else f"{local:%b} {local.day} {local:%H:%M}"


def verdict_label(call: Call) -> str:
    """``Billable``, ``Not billable`` or ``Pending``."""
    return _label(Verdict, call.verdict)


def result_label(attempt: CallAttempt) -> str:
    """An attempt's result in words (``No answer``, ``Connected`` …)."""
    return _label(AttemptResult, attempt.result)


def fallback_text(fallback: Mapping | None) -> str:
    """A decision's fallback in words: ``closed message played: We are closed right now.``; ``""``."""
    if not fallback:
        return ""
    kind = str(fallback.get("kind") or "")
    label = FALLBACK_LABELS.get(kind, kind.replace("_", " ")) or "fallback"
    detail = fallback.get("number") or fallback.get("message") or ""
    return f"{label}: {detail}" if detail else label


def left_out_text(entry: Mapping) -> str:
    """Why a target was left out: its label, with the code only when it differs (``closed``,
    ``daily cap reached (daily_cap)``)."""
    label, code = str(entry.get("label") or ""), str(entry.get("code") or "")
    return label if not code or label == code else f"{label} ({code})"


def routed_short_text(call: Call) -> str:
    """Where the call went, without the arrow, fallbacks in words (``closed message played``)."""
    text = routed_text(call).removeprefix("→ ")
    if call.fallback_applied:
        label = FALLBACK_LABELS.get(call.fallback_applied, call.fallback_applied)
        text = text.replace(f"fallback: {call.fallback_applied}", label)
    else:
        passes = _raw_passes(call.decision)
        fallback = passes[-1].get("fallback") if passes else None
        kind = fallback.get("kind") if isinstance(fallback, Mapping) else None
        if kind and text == f"fallback: {kind}":
            text = FALLBACK_LABELS.get(kind, kind)
    return text
