"""Twilio-protocol webhook endpoints: thin — verify, parse, call one service, answer TwiML.

Every endpoint refuses unsigned or forged requests with 403 (logged), and answers any other failure
with safe TwiML (status 200), so that a caller is never left in silence.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.views.decorators.csrf import csrf_exempt

from callbroker.calls import services
from callbroker.calls.events import EventIn
from callbroker.carriers import twilio

log = logging.getLogger("callbroker.carriers")

XML = "text/xml; charset=utf-8"


def _params(request: HttpRequest) -> dict[str, str]:
    source = request.POST if request.method == "POST" else request.GET
    return {key: source.get(key, "") for key in source}


def webhook(handler: Callable[[HttpRequest, dict[str, str]], str]) -> Callable[[HttpRequest], HttpResponse]:
    """Signature check first; then the handler; malformed input and internal errors get safe TwiML."""

    @csrf_exempt
    @functools.wraps(handler)
    def view(request: HttpRequest) -> HttpResponse:
        if request.method not in ("POST", "GET"):
            return HttpResponseNotAllowed(["POST", "GET"])
        try:
            params = _params(request)
        except Exception as exc:  # noqa: BLE001 - oversized or undecodable body
            log.warning("webhook %s refused: unreadable body (%s)", request.path, exc)
            return HttpResponse("Bad Request: unreadable body", status=400, content_type="text/plain")
        if not twilio.verify(request, params):
            log.warning("webhook %s refused: missing or invalid signature (CallSid=%s, from %s)",
                        request.path, params.get("CallSid", "")[:64], request.META.get("REMOTE_ADDR"))
            return HttpResponse("Forbidden: invalid signature", status=403, content_type="text/plain")
        try:
            body = handler(request, params)
        except twilio.MalformedWebhook as exc:
            log.warning("webhook %s malformed (CallSid=%s): %s", request.path, params.get("CallSid", "")[:64], exc)
            body = _safe(request, params)
        except services.UnknownCall as exc:
            log.warning("webhook %s for an unknown call: %s", request.path, exc)
            body = _safe(request, params)
        except Exception:
            log.exception("webhook %s failed (CallSid=%s); caller sent to the fallback", request.path,
                          params.get("CallSid", "")[:64])
            body = _safe(request, params)
        return HttpResponse(body, content_type=XML)

    return view


def _safe(request: HttpRequest, params: dict[str, str]) -> str:
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


def _int_query(request: HttpRequest, name: str) -> int:
    try:
        return int(request.GET.get(name, ""))
    except ValueError:
        raise twilio.MalformedWebhook(name, "missing or not a number in the callback URL") from None


@webhook
def voice(request: HttpRequest, params: dict[str, str]) -> str:
    inbound = twilio.inbound_call(params)
    return _once(request, params, "voice", "voice", lambda commit: commit(),
                 prepare=lambda: services.prepare_call(inbound))


@webhook
def ivr_zip(request: HttpRequest, params: dict[str, str]) -> str:
    attempt = _int_query(request, "attempt")
    digits = params.get("Digits", "")[:16]
    sid = twilio.call_sid(params)
    return _once(request, params, "ivr_zip", f"zip:{attempt}", lambda: services.zip_entered(sid, attempt, digits))


@webhook
def ivr_category(request: HttpRequest, params: dict[str, str]) -> str:
    digits = params.get("Digits", "")[:8]
    sid = twilio.call_sid(params)
    return _once(request, params, "ivr_category", "category", lambda: services.category_answered(sid, digits))


@webhook
def dial_action(request: HttpRequest, params: dict[str, str]) -> str:
    seq = _int_query(request, "seq")
    outcome = twilio.dial_outcome(params)
    sid = twilio.call_sid(params)
    return _once(request, params, "dial", f"dial:{seq}", lambda: services.dial_finished(sid, seq, outcome))


@webhook
def status(request: HttpRequest, params: dict[str, str]) -> str:
    update = twilio.status_update(params)
    sid = twilio.call_sid(params)
    key = f"status:{update.status}:{update.sequence}"
    return _once(request, params, "status", key, lambda: services.call_status(sid, update))


@webhook
def recording(request: HttpRequest, params: dict[str, str]) -> str:
    update = twilio.recording_update(params)
    sid = twilio.call_sid(params)
    key = f"recording:{update.recording_sid}:{update.status}"
    return _once(request, params, "recording", key, lambda: services.recording_ready(sid, update))


@webhook
def voicemail(request: HttpRequest, params: dict[str, str]) -> str:
    sid = twilio.call_sid(params)
    url = params.get("RecordingUrl", "")[:500]
    duration = twilio._int(params, "RecordingDuration")  # noqa: SLF001
    return _once(request, params, "voicemail", "voicemail", lambda: services.message_left(sid, url, duration))


@webhook
def whisper(request: HttpRequest, params: dict[str, str]) -> str:
    """Said to the buyer on answer, before bridging. Answered from memory: no database."""
    campaign_id = _int_query(request, "c")
    snap = services.cached_snapshot() or services.current_snapshot()
    campaign = snap.campaigns.get(campaign_id)
    text = campaign.whisper_text if campaign else "Incoming call."
    return twilio.render((services.s.Say(text),), twilio.base_url(request))


@webhook
def fallback(request: HttpRequest, params: dict[str, str]) -> str:
    """The number's Fallback URL: the carrier calls it when our Voice URL failed. Never touches the DB."""
    log.warning("carrier fallback for CallSid=%s: ErrorCode=%s ErrorUrl=%s", params.get("CallSid", "")[:64],
                params.get("ErrorCode", "")[:10], params.get("ErrorUrl", "")[:200])
    return twilio.render(services.fallback_for_number(params.get("To", "")[:32]), twilio.base_url(request))
