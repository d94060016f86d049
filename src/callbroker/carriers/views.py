"""Twilio-protocol webhook endpoints: thin — verify, parse, call one service, answer TwiML.

Every endpoint refuses unsigned or forged requests (signed as Twilio signs, or as Telnyx TeXML does:
``twilio.signature_refused``), and with ``TWILIO_ACCOUNT_SID`` set another account's,
with 403 (logged), and answers any other failure with safe TwiML (status 200), so that a caller is never
left in silence.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from callbroker import checkpoints
from callbroker.calls import degraded as degraded_mode
from callbroker.calls import replay, services, spool
from callbroker.calls.events import EventIn, InboundCall, inbound_fields
from callbroker.carriers import form, twilio
from callbroker.core.periods import REPEATED_HOUR
from callbroker.ops.limits import client_address, current_limits
from callbroker.ops.logging import clean_sid
from callbroker.ops.metrics import record_routing_failure

log = logging.getLogger("callbroker.carriers")

XML = "text/xml; charset=utf-8"
OUTAGES = replay.OUTAGES  # errors meaning "a backend is unreachable", not "this request is wrong"


def _check_text(params: dict[str, str]) -> None:
    """No carrier sends NUL characters; PostgreSQL can't store them. Refuse them as malformed."""
    for key, value in params.items():
        if "\x00" in key or "\x00" in value:
            raise twilio.MalformedWebhook(key.replace("\x00", "")[:40] or "parameter", "contains a NUL character")


Degraded = Callable[[HttpRequest, dict[str, str]], tuple[tuple, dict]]


Answer = Callable[[HttpRequest, dict[str, str]], str]


def webhook(handler: Answer | None = None, *, kind: str = "", degraded: Degraded | None = None,
            safe: Answer | None = None):
    """Signature check first; then the handler; malformed input and internal errors get safe TwiML.

    With ``degraded``, a call whose database work fails (database or Redis unreachable), or a call that
    is already degraded, is answered from memory by ``degraded`` and the webhook is spooled to disk.
    ``safe``: the answer when the handler failed (default: the caller forwarded to a fallback, ``_safe``).
    """
    if handler is None:
        return functools.partial(webhook, kind=kind, degraded=degraded, safe=safe)
    fallback = safe or _safe

    @csrf_exempt
    @functools.wraps(handler)
    def view(request: HttpRequest) -> HttpResponse:
        if request.method not in ("POST", "GET"):
            return HttpResponseNotAllowed(["POST", "GET"])
        try:
            params = form.params(request)
        except Exception as exc:  # noqa: BLE001 - oversized or undecodable body
            log.warning("webhook %s refused: unreadable body (%s)", request.path, exc)
            return HttpResponse("Bad Request: unreadable body", status=400, content_type="text/plain")
        refused = twilio.signature_refused(request, params, form.every_value(request))
        if refused:
            return _refused(request, params, refused, "invalid signature")
        if not twilio.account_accepted(params):
            account = clean_sid(params.get("AccountSid", ""))
            return _refused(request, params, f"AccountSid {account!r} is not in TWILIO_ACCOUNT_SID",
                            "unexpected AccountSid")
        replay.ensure_running()
        checkpoints.ensure_running()
        try:
            _check_text(params)
            if degraded is not None and spool.is_degraded(params.get("CallSid", "")[:64]):
                body = _degrade(request, params, kind, degraded)
            else:
                body = handler(request, params)
        except OUTAGES as exc:
            if degraded is None:
                log.warning("webhook %s: backend unavailable (%s); nothing to spool", request.path, exc)
                body = fallback(request, params)
            else:
                log.error("webhook %s: backend unavailable (%s); CallSid=%s handled from memory and spooled",
                          request.path, exc, clean_sid(params.get("CallSid", "")))
                body = _degrade(request, params, kind, degraded)
        except twilio.MalformedWebhook as exc:
            log.warning("webhook %s malformed (CallSid=%s): %s", request.path, clean_sid(params.get("CallSid", "")),
                        exc)
            body = fallback(request, params)
        except services.UnknownCall as exc:
            if degraded is not None and degraded_mode.routed_elsewhere(params.get("CallSid", "")[:64]):
                log.warning("webhook %s: call not replayed yet from another node's spool (%s); handled from "
                            "memory and spooled", request.path, exc)
                body = _degrade(request, params, kind, degraded)
            else:
                log.warning("webhook %s for an unknown call: %s", request.path, exc)
                body = fallback(request, params)
        except Exception:
            log.exception("webhook %s failed (CallSid=%s); caller sent to the fallback", request.path,
                          clean_sid(params.get("CallSid", "")))
            body = fallback(request, params)
        return HttpResponse(body, content_type=XML)

    return view


def _refused(request: HttpRequest, params: dict[str, str], why: str, answer: str) -> HttpResponse:
    """403, logged with the path, CallSid and client: nothing read beyond the form, nothing stored. The
    values are a stranger's: only a SID's characters go into the line (no forged line breaks), and the
    client is the one the rate limits see (behind the proxy, not the proxy's address)."""
    limits = current_limits()
    log.warning("webhook %s refused: %s (CallSid=%s, from %s)", request.path, why,
                clean_sid(params.get("CallSid", "")), client_address(request.META, limits.trusted_proxies))
    return HttpResponse(f"Forbidden: {answer}", status=403, content_type="text/plain")


def _degrade(request: HttpRequest, params: dict[str, str], kind: str, handler: Degraded) -> str:
    """Answer from memory and spool the webhook with what was decided (never raises)."""
    try:
        steps, facts = handler(request, params)
        body = twilio.render(steps, twilio.base_url(request))
    except twilio.MalformedWebhook:
        return _safe(request, params)
    except Exception:  # noqa: BLE001 - the caller must still hear something
        log.exception("degraded handling of %s failed", request.path)
        return _safe(request, params)
    sid = params.get("CallSid", "")[:64]
    if sid:
        # ``carrier`` beside ``inbound``: who signed, for the call the replay may record (``events.inbound_of``).
        spool.append(sid, {"kind": kind, "params": params, "query": request.GET.dict(), "answer": body,
                           "carrier": twilio.signed_by(request), **facts})
        replay.replay_now(sid)  # when only Redis failed: in the database before the carrier's next webhook
    return body


def _safe(request: HttpRequest, params: dict[str, str]) -> str:
    record_routing_failure(request)
    try:
        steps = services.safe_steps_for_call(params.get("CallSid", "")[:64], params.get("To", "")[:32])
    except Exception:  # noqa: BLE001 - last line of defence
        log.exception("safe fallback failed")
        steps = (services.s.Say(services.APOLOGY), services.s.Hangup())
    return twilio.render(steps, twilio.base_url(request))


def _once(request: HttpRequest, params: dict[str, str], kind: str, key: str, run, prepare=None) -> str:
    sid = twilio.call_sid(params)
    event = EventIn(call_sid=sid, kind=kind, dedupe_key=f"{sid}:{key}"[:200], params=params)
    base = twilio.base_url(request)
    return services.handle_once(event, run, lambda steps: twilio.render(steps, base), prepare=prepare)


_QUERY_NUMBER = re.compile(r"[0-9]{1,10}")


def _int_query(request: HttpRequest, name: str, low: int = 1, high: int = 2**31 - 1) -> int:
    raw = request.GET.get(name, "")
    if not _QUERY_NUMBER.fullmatch(raw):  # ASCII digits: int() would take "+1", "1_0" and other scripts' digits
        raise twilio.MalformedWebhook(name, "missing or not a number in the callback URL")
    value = int(raw)
    if not low <= value <= high:
        raise twilio.MalformedWebhook(name, f"{value} is out of range in the callback URL")
    return value


# --------------------------------------------------------------------------- degraded handlers


def _degraded_inbound(request: HttpRequest, params: dict[str, str]):
    """The inbound webhook routed from memory; ``inbound`` is the call as the carrier describes it."""
    inbound = twilio.inbound_call(params, twilio.signed_by(request))
    steps, facts = degraded_mode.voice(inbound)
    return steps, {**facts, "inbound": inbound_fields(inbound)}


def _degraded_ivr_zip(request: HttpRequest, params: dict[str, str]):
    """A typed ZIP routed from memory with that ZIP, as typed (source ``ivr``), never as the carrier's: the
    carrier's own ZIP stays in ``inbound`` (the typed one used to replace it there, and the replay recorded
    it as the carrier's, without its city). Posted after the caller hung up: routed nowhere."""
    inbound = twilio.inbound_call(params)
    if twilio.caller_gone(params):
        steps, facts = degraded_mode.caller_gone()
    else:
        steps, facts = degraded_mode.voice(inbound, typed_zip=params.get("Digits", "")[:16])
    return steps, {**facts, "inbound": inbound_fields(inbound)}


def _degraded_ivr_category(request: HttpRequest, params: dict[str, str]):
    """A category answer routed from memory (the caller is connected whatever it is: the replay judges the
    answer), with the ZIP the caller typed live at the prompt before, which the question's action URL carries
    (``zip=``): the database that recorded it is away, and the carrier's ZIP, or none, would route the caller
    otherwise than live. Posted after the caller hung up: routed nowhere (the replay records the answer)."""
    inbound = twilio.inbound_call(params)
    if twilio.caller_gone(params):
        steps, facts = degraded_mode.caller_gone()
    else:
        steps, facts = degraded_mode.voice(inbound, typed_zip=request.GET.get("zip", "")[:5] or None,
                                           after_question=True)
    return steps, {**facts, "inbound": inbound_fields(inbound)}


def _degraded_dial(request: HttpRequest, params: dict[str, str]):
    seq = _int_query(request, "seq")
    outcome = twilio.dial_outcome(params)
    steps, facts = degraded_mode.dial(seq, twilio.ring_rest(request.GET), _int_query(request, "c"), outcome,
                                      call_sid=params.get("CallSid", "")[:64],
                                      rung=_int_query(request, "t") if request.GET.get("t") else 0,
                                      counted=_counted_query(request))
    return steps, {**facts, "seq": seq, "outcome": dataclasses.asdict(outcome)}


#: ``u`` of a Dial action's URL: the periods a leg's reservation counted (``H2026120814.D20261208.M202612``;
#: an hour's second time when the clocks go back ends in ``core.periods.REPEATED_HOUR``: ``H2026110101b``).
_COUNTED_PERIODS = re.compile(
    rf"(?:(?:H[0-9]{{10}}{REPEATED_HOUR}?|D[0-9]{{8}}|M[0-9]{{6}})(?:\.(?!$)|$)){{0,3}}")


def _counted_query(request: HttpRequest) -> str | None:
    """The cap periods the leg rung counted (``u``, space-separated as ``CallAttempt.counted_periods``), or
    ``None``: a URL written before it was carried (or by degraded mode), or not such periods, which is
    logged naming it; the units are then worked out as before rather than the caller's ring cut short."""
    if "u" not in request.GET:
        return None
    raw = request.GET.get("u", "")
    if not _COUNTED_PERIODS.fullmatch(raw):
        log.warning("webhook %s: u=%r in the callback URL is no cap periods; the leg's units are worked out "
                    "from the line's caps now", request.path, raw[:40])
        return None
    return raw.replace(".", " ")


def _degraded_status(request: HttpRequest, params: dict[str, str]):
    """A status callback handled from memory. A final one also carries the call as the carrier describes it
    (``inbound``): should no node ever record the call (its inbound webhook died in the worker), the replay
    keeps the call from it (``replay._record_status_only``) rather than drop it."""
    update = twilio.status_update(params)
    steps, facts = degraded_mode.status(params.get("CallSid", "")[:64], update)
    facts = {**facts, "update": dataclasses.asdict(update)}
    inbound = _described(params) if update.terminal else None
    if inbound is not None:  # else (no To) the status is spooled all the same, and waits as before
        facts["inbound"] = inbound_fields(inbound)
    return steps, facts


def _degraded_recording(request: HttpRequest, params: dict[str, str]):
    update = twilio.recording_update(params)
    return (), {"update": dataclasses.asdict(update)}


def _degraded_voicemail(request: HttpRequest, params: dict[str, str]):
    steps, facts = degraded_mode.message_left()
    return steps, {**facts, "url": params.get("RecordingUrl", "")[:500],
                   "duration": twilio.seconds_or_unknown(params, "RecordingDuration"),
                   "recording_sid": params.get("RecordingSid", "")[:64]}


# --------------------------------------------------------------------------- endpoints


@webhook(kind="voice", degraded=_degraded_inbound)
def voice(request: HttpRequest, params: dict[str, str]) -> str:
    inbound = twilio.inbound_call(params, twilio.signed_by(request))
    return _once(request, params, "voice", "voice", lambda commit: commit(),
                 prepare=lambda version: services.prepare_call(inbound, network_version=version))


@webhook(kind="ivr_zip", degraded=_degraded_ivr_zip)
def ivr_zip(request: HttpRequest, params: dict[str, str]) -> str:
    attempt = _int_query(request, "attempt", high=2)
    digits = params.get("Digits", "")[:16]
    sid = twilio.call_sid(params)
    gone = twilio.caller_gone(params)
    return _once(request, params, "ivr_zip", f"zip:{attempt}",
                 lambda: services.zip_entered(sid, attempt, digits, caller_gone=gone))


@webhook(kind="ivr_category", degraded=_degraded_ivr_category)
def ivr_category(request: HttpRequest, params: dict[str, str]) -> str:
    digits = params.get("Digits", "")[:8]
    sid = twilio.call_sid(params)
    gone = twilio.caller_gone(params)
    return _once(request, params, "ivr_category", "category",
                 lambda: services.category_answered(sid, digits, caller_gone=gone))


@webhook(kind="dial", degraded=_degraded_dial)
def dial_action(request: HttpRequest, params: dict[str, str]) -> str:
    seq = _int_query(request, "seq")
    outcome = twilio.dial_outcome(params)
    sid = twilio.call_sid(params)
    return _once(request, params, "dial", f"dial:{seq}", lambda: services.dial_finished(sid, seq, outcome))


@webhook(kind="status", degraded=_degraded_status)
def status(request: HttpRequest, params: dict[str, str]) -> str:
    update = twilio.status_update(params)
    sid = twilio.call_sid(params)
    key = f"status:{update.status}:{update.sequence}"
    return _once(request, params, "status", key,
                 lambda: services.call_status(sid, update, keep_if_unknown=True,
                                              described=lambda: _described(params, twilio.signed_by(request))))


def _described(params: dict[str, str], carrier: str = "twilio") -> InboundCall | None:
    """The call as a status callback describes it (``InboundCall``), or None when it names no ``To``: read when
    a final status is kept for a call not recorded yet, which is then kept as a call of its own should its
    inbound webhook never come (``services.call_status``)."""
    try:
        return twilio.inbound_call(params, carrier)
    except twilio.MalformedWebhook:
        return None


@webhook(kind="recording", degraded=_degraded_recording)
def recording(request: HttpRequest, params: dict[str, str]) -> str:
    update = twilio.recording_update(params)
    sid = twilio.call_sid(params)
    key = f"recording:{update.recording_sid}:{update.status}"
    return _once(request, params, "recording", key, lambda: services.recording_ready(sid, update))


@webhook(kind="voicemail", degraded=_degraded_voicemail)
def voicemail(request: HttpRequest, params: dict[str, str]) -> str:
    sid = twilio.call_sid(params)
    url = params.get("RecordingUrl", "")[:500]
    duration = twilio.seconds_or_unknown(params, "RecordingDuration")
    recording_sid = params.get("RecordingSid", "")[:64]
    return _once(request, params, "voicemail", "voicemail",
                 lambda: services.message_left(sid, url, duration, recording_sid))


#: What the buyer hears before the bridge when the campaign is unknown or the whisper failed.
WHISPER_DEFAULT = "Incoming call."


def _safe_whisper(request: HttpRequest, params: dict[str, str]) -> str:
    """A whisper that failed inside: the buyer hears a plain line and is bridged to the caller.

    The whisper answers the *buyer's* leg: a ``<Dial>`` there (``_safe``'s forward) is not allowed by the
    carrier and would never connect the caller.
    """
    record_routing_failure(request)
    return twilio.render((services.s.Say(WHISPER_DEFAULT),), twilio.base_url(request))


@webhook(safe=_safe_whisper)
def whisper(request: HttpRequest, params: dict[str, str]) -> str:
    """Said to the buyer on answer, before bridging. Answered from memory, unless this process's network
    is older than the one the call was routed by (``v`` in the URL, ``DialTarget.network_version``): the
    call was routed by another worker since the network changed, and this one, not having routed a call
    since, would say the text of its older network (a whisper edited while running), or "Incoming call."
    for a campaign added since. The network is then read once. A URL without ``v`` (a call routed before
    2026-12-08, or in degraded mode) reads it when the campaign isn't in this worker's network."""
    campaign_id = _int_query(request, "c")
    raw_version = request.GET.get("v", "")
    routed_by = int(raw_version) if _QUERY_NUMBER.fullmatch(raw_version) else 0
    snap = services.cached_snapshot() or services.current_snapshot()
    if snap.version < routed_by or (not routed_by and campaign_id not in snap.campaigns):
        snap = services.current_snapshot()
    campaign = snap.campaigns.get(campaign_id)
    text = campaign.whisper_text if campaign else WHISPER_DEFAULT
    return twilio.render((services.s.Say(text),), twilio.base_url(request))


def _safe_fallback(request: HttpRequest, params: dict[str, str]) -> str:
    """The Fallback URL's own answer when its handler failed: by the called number only, no database."""
    try:
        steps = services.fallback_for_number(params.get("To", "")[:32])
    except Exception:  # noqa: BLE001 - last line of defence
        log.exception("fallback URL: the safe answer failed")
        steps = (services.s.Say(services.APOLOGY), services.s.Hangup())
    return twilio.render(steps, twilio.base_url(request))


@webhook(safe=_safe_fallback)
def fallback(request: HttpRequest, params: dict[str, str]) -> str:
    """The number's Fallback URL: the carrier calls it when our Voice URL, or an action URL of the call,
    failed it. Never touches the DB.

    The caller is answered from memory; when it stands in for the Voice URL, the call is recorded from the
    trace this leaves in the spool, as degraded mode's webhooks are (``_leave_trace``).
    """
    log.warning("carrier fallback for CallSid=%s: ErrorCode=%s ErrorUrl=%s", clean_sid(params.get("CallSid", "")),
                params.get("ErrorCode", "")[:10], params.get("ErrorUrl", "")[:200])
    body = twilio.render(services.fallback_for_number(params.get("To", "")[:32]), twilio.base_url(request))
    if _voice_url_failed(params):
        _leave_trace(request, params, body)
    return body


def _voice_url_failed(params: dict[str, str]) -> bool:
    """The Fallback URL stands in for our Voice URL (``ErrorUrl`` names it, or nothing): the call may be
    nowhere in the database. The carrier calls it for a failed action URL too (a Dial action, an IVR
    answer, a redirect); that call was recorded by its inbound webhook, and the action, if it was only
    slow, records what happened when it commits: a trace would close the call as the fallback's and lose
    a bridge that took place."""
    failed = params.get("ErrorUrl", "")
    if not failed:
        return True
    try:
        path = urlsplit(failed).path
    except ValueError:
        return True
    return path.rstrip("/").endswith(reverse("carriers:twilio-voice"))


def _leave_trace(request: HttpRequest, params: dict[str, str], body: str) -> None:
    """Spool the Fallback URL's answer, so that the replay records the call (``replay._apply_carrier_fallback``).

    The carrier used the Fallback URL because our Voice URL failed it (too slow, a worker stuck, the
    database locked or away), so the call may be nowhere in the database, and its final status, kept
    for an inbound webhook that never comes, would wait forever. The spool is what degraded mode writes
    to without the database; the call's file also marks it as degraded on this node, so its later
    webhooks (the final status) are spooled after this and replayed onto it. Once per call on a node:
    the carrier's retry of the Fallback URL (the same answer) adds nothing; on another node it adds a
    line the replay skips (the same dedupe key). A request that doesn't name a call as a carrier does
    (no CallSid of a SID's shape, no To) leaves none: there is no call to record.
    """
    try:
        inbound = twilio.inbound_call(params)
    except twilio.MalformedWebhook as exc:
        log.warning("carrier fallback: no call to record (%s)", exc)
        return
    if spool.holds(inbound.call_sid, "fallback"):
        return
    spool.append(inbound.call_sid, {
        "kind": "fallback", "params": params, "query": request.GET.dict(), "answer": body,
        "inbound": inbound_fields(inbound), "carrier": twilio.signed_by(request),
        "error_code": params.get("ErrorCode", "")[:10], "error_url": params.get("ErrorUrl", "")[:200]})
