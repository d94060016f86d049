"""Twilio protocol adapter (also spoken by SignalWire cXML and Telnyx TeXML where they share it).

Verify the signature -> parse the form into a typed event -> (services decide) -> render TwiML.
TwiML is built with the ``twilio`` package's ``VoiceResponse``; signatures are checked with its
``RequestValidator``, and Telnyx's (Ed25519 over the raw body, the one part of the protocol TeXML doesn't
share) with the ``cryptography`` package.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl, urlencode

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.http import HttpRequest
from django.http.request import RawPostDataException
from twilio.request_validator import RequestValidator, compare, get_signature_algorithm
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from callbroker.calls import steps as s
from callbroker.calls.events import (
    TERMINAL_STATUSES,
    DialOutcome,
    InboundCall,
    RecordingUpdate,
    StatusUpdate,
    parse_seconds,
)
from callbroker.core.accounts import account_sid, account_sids
from callbroker.ops.logging import clean_sid

log = logging.getLogger(__name__)

SIGNATURE_HEADERS = ("HTTP_X_TWILIO_SIGNATURE", "HTTP_X_SIGNALWIRE_SIGNATURE")
#: Telnyx TeXML's signature (base64 Ed25519) and the Unix time it signed with the body: ``telnyx-signature-ed25519``
#: and ``telnyx-timestamp`` as WSGI names them.
TELNYX_SIGNATURE = "HTTP_TELNYX_SIGNATURE_ED25519"
TELNYX_TIMESTAMP = "HTTP_TELNYX_TIMESTAMP"
#: Seconds a Telnyx timestamp may be from our clock, either way (Telnyx's SDKs refuse older than 300 s).
TELNYX_TOLERANCE_S = 300
VOICE = "Polly.Joanna"  # Twilio voice name; carriers without it fall back to their default voice
MAX_RING_IN_URL = 20  # targets after the current one carried in the Dial action URL (degraded mode)


class MalformedWebhook(ValueError):
    """A signed webhook whose parameters are missing or of the wrong shape."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


# --------------------------------------------------------------------------- signatures


def public_url(request: HttpRequest) -> str:
    """The URL exactly as the carrier called it: ``CALLBROKER_PUBLIC_URL`` + path + query when set.

    The path as the node saw it (``PATH_INFO``): a path of ``CALLBROKER_PUBLIC_URL`` (``/cb``), which the proxy
    stripped, is in it once, where ``request.path`` would give it twice (``FORCE_SCRIPT_NAME``, settings.py)."""
    if settings.PUBLIC_URL:
        return settings.PUBLIC_URL + request.get_full_path_info()
    return request.build_absolute_uri()


def base_url(request: HttpRequest) -> str:
    if settings.PUBLIC_URL:
        return settings.PUBLIC_URL
    # "scheme://host" exactly as ``public_url`` has it: Django keeps the validated host of the request's
    # first ``build_absolute_uri`` (6.6 µs to validate the Host header again, 3 µs this way).
    return request.build_absolute_uri("/")[:-1]


def _validators() -> tuple[RequestValidator, ...]:
    return _validators_for((settings.TWILIO_AUTH_TOKEN, *settings.TWILIO_AUTH_TOKENS_EXTRA))


@functools.lru_cache(maxsize=256)  # one entry per account of TWILIO_ACCOUNT_TOKENS, one for the flat tokens
def _validators_for(tokens: tuple[str, ...]) -> tuple[RequestValidator, ...]:
    return tuple(RequestValidator(t) for t in tokens if t)


class SignedParams(dict):
    """A webhook's parameters as the twilio package's validator reads them fastest.

    ``RequestValidator.compute_signature`` asks each parameter's values of ``getall`` (Flask), then of
    ``getlist`` (Django), then indexes the mapping; on a plain ``dict`` that is two exceptions raised and
    caught per parameter, half of the signature's cost. One value per name, as in ``form.params``; a
    webhook that gives a name more than once is signed with :class:`SignedRepeatedParams`.
    """

    __slots__ = ()

    def getall(self, name: str) -> list[str]:
        return [self[name]]


class SignedRepeatedParams(dict):
    """:class:`SignedParams` of a webhook that gave some names more than once: Twilio signs every value."""

    __slots__ = ("repeated",)

    def __init__(self, params: Mapping[str, str], repeated: Mapping[str, list[str]]) -> None:
        super().__init__(params)
        self.repeated = repeated

    def getall(self, name: str) -> list[str]:
        return self.repeated.get(name) or [self[name]]


def verify(request: HttpRequest, params: Mapping[str, str], repeated: Mapping[str, list[str]] | None = None) -> bool:
    """True when the webhook's signature is valid (:func:`signature_refused` says why not)."""
    return not signature_refused(request, params, repeated)


def signature_refused(request: HttpRequest, params: Mapping[str, str],
                      repeated: Mapping[str, list[str]] | None = None) -> str:
    """Why the webhook's signature is refused, for the log; "" when it is valid.

    A request carrying ``telnyx-signature-ed25519`` is Telnyx's, checked by :func:`telnyx_refused`; any other,
    ``X-Twilio-Signature`` (or SignalWire's header) valid for this URL and parameters (``repeated``: every
    value of the names given more than once, ``form.every_value``). One header lookup is all the Twilio path
    pays for Telnyx's. With ``TWILIO_ACCOUNT_TOKENS`` set, only the tokens of the ``AccountSid`` the webhook
    names verify it: a token we accept can no longer sign for another of our accounts (or a stranger's)."""
    telnyx = request.META.get(TELNYX_SIGNATURE)
    if telnyx is not None:
        return telnyx_refused(request, telnyx) or callback_query_refused(request)
    signature = next((request.META[h] for h in SIGNATURE_HEADERS if request.META.get(h)), "")
    if not signature:
        return INVALID
    algorithm = get_signature_algorithm(request.META.get("HTTP_X_TWILIO_WEBHOOKS_SIGNATURE_SETTINGS", ""))
    url = public_url(request)
    # Twilio signs a GET over the URL alone (its parameters are in the query string already).
    signed = {} if request.method != "POST" else SignedRepeatedParams(params, repeated) if repeated \
        else SignedParams(params)
    per_account = settings.TWILIO_ACCOUNT_TOKENS
    if per_account:
        account = params.get("AccountSid", "")
        tokens = per_account.get(account)  # as carriers send it, as settings.py reads it: one lookup
        if tokens is None:
            tokens = per_account.get(account_sid(account))  # another case (core.accounts)
        if tokens is None:
            return f"AccountSid {clean_sid(account)!r} is not in TWILIO_ACCOUNT_TOKENS"
        validators = _validators_for(tokens)
    else:
        validators = _validators()
    try:
        if _signed_by(validators, url, signed, signature, algorithm):
            return ""
        if per_account:
            return _by_another_account(per_account, account, url, signed, signature, algorithm)
    except ValueError:  # a URL urllib refuses, e.g. "Host: 127.0.0.1:99999" (port out of range): not signed
        return INVALID
    return INVALID


INVALID = "missing or invalid signature"


def _signed_by(validators: tuple[RequestValidator, ...], url: str, signed: Mapping[str, str], signature: str,
               algorithm) -> bool:
    """The URL as received first (one signature with the twilio package's own code); ``validate`` then tries
    it with and without the default port, as Twilio signs either way."""
    return any(compare(v.compute_signature(url, signed, algorithm), signature) for v in validators) \
        or any(v.validate(url, signed, signature, algorithm) for v in validators)


def _by_another_account(per_account: Mapping[str, tuple[str, ...]], account: str, url: str,
                        signed: Mapping[str, str], signature: str, algorithm) -> str:
    """Why a webhook naming ``account`` is refused: signed with another account's token (named, so that the
    operator sees which of their accounts' numbers points here as the other), or with none of ours. Paid
    only by a refused request (the refused requests' rate limit bounds it)."""
    named, account = clean_sid(account), account_sid(account)
    for other, tokens in per_account.items():
        if other != account and _signed_by(_validators_for(tokens), url, signed, signature, algorithm):
            return f"AccountSid {named!r} but signed with the token of account {other!r} (TWILIO_ACCOUNT_TOKENS)"
    return f"{INVALID} for AccountSid {named!r} (its tokens in TWILIO_ACCOUNT_TOKENS)"


def telnyx_refused(request: HttpRequest, signature: str) -> str:
    """Why a webhook signed as Telnyx signs is refused, for the log; "" when it is valid.

    Telnyx signs ``f"{telnyx-timestamp}|{raw body}"`` with the account's Ed25519 key; the body is checked as
    received (``request.body``), before any parsing. The signature is checked before the time, so that a
    refusal for the time is of a request Telnyx did sign: a clock off by minutes, or a replay. Within the
    tolerance, a request replayed is answered from the idempotency of the webhooks (their dedupe keys), as
    the carrier's own retries are.

    Only a POST is taken: Telnyx signs the body alone, never the URL, and a GET's parameters are in its
    query string, so its signature (of ``timestamp|`` and an empty body) vouched for no parameter at all:
    any one seen, of any call, was good for 300 s for any CallSid, caller and number put in the query."""
    keys = _telnyx_keys(tuple(settings.TELNYX_PUBLIC_KEYS))
    if not keys:
        return "Telnyx signature, but TELNYX_PUBLIC_KEY is not set: set it to the public key of the Telnyx portal"
    if request.method != "POST":
        return (f"Telnyx signature on a {request.method}: Telnyx signs the body only, and this request's "
                "parameters are in its URL, unsigned; set the TeXML application's webhook methods to POST")
    raw_time = request.META.get(TELNYX_TIMESTAMP, "")
    if not _UNIX_TIME.fullmatch(raw_time):
        return "Telnyx signature without a telnyx-timestamp of Unix seconds"
    try:
        signed = raw_time.encode() + b"|" + request.body
    except RawPostDataException:  # a multipart body, parsed from the stream: its bytes are gone (Telnyx posts forms)
        return "Telnyx signature over a body no longer readable as received (multipart)"
    try:
        decoded = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return "invalid Telnyx signature (not base64)"
    if not any(_ed25519_valid(key, decoded, signed) for key in keys):
        return "invalid Telnyx signature (no key of TELNYX_PUBLIC_KEY verifies it over this body)"
    off = int(raw_time) - int(_now())  # whole seconds, as the timestamp is
    if abs(off) > TELNYX_TOLERANCE_S:
        return (f"stale Telnyx signature: telnyx-timestamp is {abs(off)} s {'behind' if off < 0 else 'ahead of'} "
                f"our clock (tolerance {TELNYX_TOLERANCE_S} s)")
    return ""


#: The parameter of our own callback URLs that signs the others (:func:`callback_query_refused`).
CALLBACK_MAC = "sig"
#: The names our views (and the spool's replay) read from a callback URL's query string: the TwiML puts them
#: there (``_render``). A Telnyx request whose query names one must carry a valid :data:`CALLBACK_MAC`; a name
#: missing here is taken unsigned in a query that names no other (``u``, the Dial action's cap periods, was).
READ_FROM_URL = frozenset({"seq", "c", "t", "u", "ring", "v", "attempt", "zip"})
_MAC_MARK = f"&{CALLBACK_MAC}="  # where _signed_url puts it: last


def callback_query_refused(request: HttpRequest) -> str:
    """Why the query string of a request signed as Telnyx signs is refused, for the log; "" when it is ours.

    Telnyx signs ``timestamp|body``, never the URL: the parameters of our callback URLs (``dial?seq=N&c=…``,
    ``ivr/zip?attempt=N``, ``ivr/category?zip=…``, ``whisper?c=…&v=…``) were signed by nothing, and one captured
    Telnyx request could be replayed for 300 s with another seq, ZIP or attempt, and taken. Our TwiML signs
    them (:func:`_signed_url`); a query naming none of :data:`READ_FROM_URL` (the number's Voice URL, say)
    has nothing we read, and needs no MAC. A URL built by the previous release has none: refused, since a MAC
    that may be left out would protect nothing. Twilio and SignalWire sign the URL itself: not checked there."""
    raw = request.META.get("QUERY_STRING", "")
    if not raw:
        return ""
    keys = _callback_keys()
    signed_part, mark, mac = raw.rpartition(_MAC_MARK)
    if mark and any(_same_mac(callback_mac(key, request.path_info, signed_part), mac) for key in keys):
        return ""  # the URL as our TwiML wrote it, byte for byte: one HMAC, nothing parsed
    # Else parsed: a query re-encoded on the way (its values the same) is taken, anything else refused, and why.
    pairs = parse_qsl(raw, keep_blank_values=True)
    signed = [(name, value) for name, value in pairs if name != CALLBACK_MAC]
    if not any(name in READ_FROM_URL for name, _value in signed):
        return ""
    macs = [value for name, value in pairs if name == CALLBACK_MAC]
    if len(macs) != 1:
        return (f"Telnyx signature, and the callback URL's parameters ({', '.join(sorted({n for n, _ in signed}))}) "
                f"{'without' if not macs else 'with more than one'} {CALLBACK_MAC}= (Telnyx doesn't sign the URL: "
                "ours signs its parameters, and a URL built before 2026-12-08 has no such signature)")
    query = urlencode(signed)
    if not any(_same_mac(callback_mac(key, request.path_info, query), macs[0]) for key in keys):
        return (f"Telnyx signature, and the callback URL's {CALLBACK_MAC}= doesn't sign its parameters "
                "(altered, or signed by a CALLBROKER_SECRET_KEY not in CALLBROKER_SECRET_KEY_FALLBACKS)")
    return ""


def _same_mac(ours: str, given: str) -> bool:
    """``hmac.compare_digest`` of our MAC and the one the URL gave. Ours is base64url, ASCII; a given one with
    another character (``sig=%C3%A9``, or a raw byte of the query) is no MAC of ours, and ``compare_digest``
    raises ``TypeError`` on a non-ASCII ``str``: that was a 500 answered to one altered replay."""
    return given.isascii() and hmac.compare_digest(ours, given)


def callback_mac(key: bytes, path: str, query: str) -> str:
    """The MAC of a callback URL's path and query: HMAC-SHA256 truncated to 16 bytes, base64url (22 characters)."""
    digest = hmac.new(key, f"{path}?{query}".encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _callback_keys() -> tuple[bytes, ...]:
    """The keys of :func:`callback_mac`: ``SECRET_KEY``'s (the one that signs) and ``SECRET_KEY_FALLBACKS``'."""
    return _callback_keys_for(settings.SECRET_KEY, tuple(settings.SECRET_KEY_FALLBACKS))


@functools.lru_cache(maxsize=8)
def _callback_keys_for(secret: str | bytes, fallbacks: tuple[str | bytes, ...]) -> tuple[bytes, ...]:
    return tuple(_callback_key(k) for k in (secret, *fallbacks))


@functools.lru_cache(maxsize=8)
def _callback_key(secret: str | bytes) -> bytes:
    """The key derived once per value, for this use alone (Django signs other things with SECRET_KEY)."""
    return hashlib.sha256(b"callbroker callback URL\x00" + (secret if isinstance(secret, bytes) else secret.encode())
                          ).digest()


_now = time.time  # the clock the timestamps are compared with (a test's own)
_UNIX_TIME = re.compile(r"[0-9]{1,12}")  # ASCII digits: int() would take "+1", " 1", "1_0" and other scripts'


def _ed25519_valid(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


@functools.lru_cache(maxsize=8)
def _telnyx_keys(raw_keys: tuple[bytes, ...]) -> tuple[Ed25519PublicKey, ...]:
    """``TELNYX_PUBLIC_KEYS`` loaded once per value (settings.py checked their shape at start)."""
    return tuple(Ed25519PublicKey.from_public_bytes(key) for key in raw_keys)


def account_accepted(params: Mapping[str, str]) -> bool:
    """True unless ``TWILIO_ACCOUNT_SID`` is set and the webhook's ``AccountSid`` is none of its SIDs.

    A valid signature says only that one of the tokens accepted signed it, and several may be (a rotation,
    subaccounts, a SignalWire key): naming the account refuses a webhook for a number of any other
    account that shares a token, a staging account pointed at production for instance, before it routes
    or records anything. A webhook without ``AccountSid`` is not one of ours either: carriers always send it.
    The setting and the ``AccountSid`` are both read with ``core.accounts.account_sid``, so that the account
    copied in another case than the carrier's is still the account; the ``AccountSid`` is stored as sent.
    """
    expected = _accounts(settings.TWILIO_ACCOUNT_SID)
    if not expected:
        return True
    account = params.get("AccountSid", "")
    return account in expected or account_sid(account) in expected  # as carriers send it: one lookup


@functools.lru_cache(maxsize=8)
def _accounts(setting: str) -> frozenset[str]:
    """The SIDs of ``TWILIO_ACCOUNT_SID`` (comma separated) as carriers send them, parsed once per value."""
    return frozenset(account_sids(setting))


# --------------------------------------------------------------------------- parsing


def _required(params: Mapping[str, str], name: str, max_len: int = 64) -> str:
    value = params.get(name, "")
    if not value:
        raise MalformedWebhook(name, "is missing")
    if len(value) > max_len:
        raise MalformedWebhook(name, f"is longer than {max_len} characters")
    return value


def _int(params: Mapping[str, str], name: str) -> int | None:
    """A duration in seconds (``events.parse_seconds``); ``None`` when not given."""
    raw = params.get(name, "")
    if raw == "":
        return None
    try:
        return parse_seconds(raw)
    except ValueError as exc:
        raise MalformedWebhook(name, str(exc)) from None


def seconds_or_unknown(params: Mapping[str, str], name: str) -> int | None:
    """A duration that decides nothing by itself (a call's or a recording's length): one of the wrong shape
    is logged and read as unknown, so that the webhook it came with still counts. Refusing the whole
    webhook would leave a call that ended open, holding its target's slot, or lose a voicemail."""
    try:
        return _int(params, name)
    except MalformedWebhook as exc:
        log.warning("%s; read as unknown", exc)  # the value is in repr(): no line break gets through
        return None


#: Call SIDs as carriers write them: Twilio "CA" + 32 hex, SignalWire a UUID, Telnyx "v3:…".
_SID_SHAPES = re.compile(
    r"^(CA[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|v3:[A-Za-z0-9_-]{8,60})$"
)


def call_sid(params: Mapping[str, str]) -> str:
    """The CallSid, which must have a SID's shape.

    The signature joins names and values without separators, so a captured request could be recut
    (``CallSid=CA…CallStatusringing``) with the same signature; a strict shape makes that useless.
    """
    sid = _required(params, "CallSid")
    if not _SID_SHAPES.match(sid):
        raise MalformedWebhook("CallSid", f"{sid[:40]!r} is not a call SID")
    return sid


def signed_by(request: HttpRequest) -> str:
    """The carrier whose signature the webhook carries (``events.CARRIERS``), read once it verified: Telnyx's
    Ed25519 header, else SignalWire's (which sends Twilio's header beside its own), else Twilio. Two header
    lookups, no query: what ``Call.carrier`` records."""
    meta = request.META
    if TELNYX_SIGNATURE in meta:
        return "telnyx"
    return "signalwire" if meta.get("HTTP_X_SIGNALWIRE_SIGNATURE") else "twilio"


def inbound_call(params: Mapping[str, str], carrier: str = "twilio") -> InboundCall:
    return InboundCall(
        call_sid=call_sid(params),
        account_sid=params.get("AccountSid", "")[:64],
        from_raw=params.get("From", params.get("Caller", ""))[:64],
        to=_required(params, "To", 32),
        from_zip=params.get("FromZip", "") or params.get("CallerZip", ""),
        from_state=params.get("FromState", "") or params.get("CallerState", ""),
        from_city=params.get("FromCity", "") or params.get("CallerCity", ""),
        stir_verstat=params.get("StirVerstat", "") or _telnyx_verstat(params),
        carrier=carrier,
    )


def _telnyx_verstat(params: Mapping[str, str]) -> str:
    """Telnyx TeXML sends ShakenStirAttestation (A/B/C) and ShakenStirValidated instead of StirVerstat."""
    level = params.get("ShakenStirAttestation", "")
    validated = params.get("ShakenStirValidated", "")
    if not level:
        return ""
    return f"TN-Validation-{'Passed' if validated.lower() == 'true' else 'Failed'}-{level[:1].upper()}"


def dial_outcome(params: Mapping[str, str]) -> DialOutcome:
    status = params.get("DialCallStatus", "")
    if status not in {"completed", "answered", "busy", "no-answer", "failed", "canceled"}:
        raise MalformedWebhook("DialCallStatus", f"{status[:20]!r} is not a dial status")
    duration = _int(params, "DialCallDuration") or 0
    bridged_raw = params.get("DialBridged", "")
    # Billing-critical: only DialBridged=true means the caller and the buyer talked, and only for a leg that
    # was answered (a busy or unanswered leg can't have been bridged, whatever else the request says).
    # Carriers that don't send DialBridged (older TeXML) report a declined whisper as no-answer, so
    # completed+duration counts.
    answered = status in ("completed", "answered")
    bridged = answered and (bridged_raw.lower() == "true" if bridged_raw else duration > 0)
    return DialOutcome(status=status, bridged=bridged, duration=duration,
                       dial_call_sid=params.get("DialCallSid", ""),
                       recording_sid=params.get("RecordingSid", ""), recording_url=params.get("RecordingUrl", ""),
                       caller_gone=caller_gone(params))


def caller_gone(params: Mapping[str, str]) -> bool:
    """The caller's call had ended when the carrier posted this action request: its ``CallStatus`` (the
    caller's call, not a leg's) is final. A Gather's action after the caller hung up at the prompt, a Dial's
    after they hung up during the whisper."""
    return params.get("CallStatus", "") in TERMINAL_STATUSES


def ring_rest(query: Mapping[str, str]) -> tuple[int, ...]:
    """The rest of the ring list carried in a Dial action URL (``ring=12.15.18``)."""
    raw = query.get("ring", "")
    if not raw:
        return ()
    try:
        return tuple(int(part) for part in raw.split(".")[:MAX_RING_IN_URL])
    except ValueError:
        raise MalformedWebhook("ring", "is not a list of target ids") from None


def status_update(params: Mapping[str, str]) -> StatusUpdate:
    status = _required(params, "CallStatus", 16)
    return StatusUpdate(status=status, duration=seconds_or_unknown(params, "CallDuration"),
                        sequence=params.get("SequenceNumber", "")[:10])


def recording_update(params: Mapping[str, str]) -> RecordingUpdate:
    """A recording status callback. Only a completed recording must name its file: ``absent`` (nothing was
    recorded), ``in-progress`` and ``failed`` may come without a ``RecordingUrl``."""
    status = params.get("RecordingStatus", "completed")
    url = _required(params, "RecordingUrl", 500) if status == "completed" else params.get("RecordingUrl", "")[:500]
    return RecordingUpdate(recording_sid=_required(params, "RecordingSid"), url=url, status=status,
                           duration=seconds_or_unknown(params, "RecordingDuration"))


# --------------------------------------------------------------------------- rendering


def render(steps: Sequence[s.Step], base: str) -> str:
    """TwiML for the steps. ``base`` is the public base URL used for every callback.

    The TwiML depends on nothing else (no CallSid in it: the carrier sends that with every callback),
    and a network answers the same few dozen ways all day, so answers are kept (``_render`` is cached).
    """
    return _render(tuple(steps), base, _callback_key(settings.SECRET_KEY))


@functools.lru_cache(maxsize=4096)
def _render(steps: tuple[s.Step, ...], base: str, key: bytes) -> str:
    """``key`` signs the callback URLs' parameters (:func:`_signed_url`); in the cache's key, as a rotated
    ``SECRET_KEY`` signs otherwise."""
    response = VoiceResponse()

    def url(name: str, **query: object) -> str:
        return _signed_url(base, f"/carriers/twilio/{name}", query, key)

    for step in steps:
        match step:
            case s.Say(text=text):
                response.say(text, voice=VOICE)
            case s.AskZip(prompt=prompt, attempt=attempt):
                gather = Gather(input="dtmf", num_digits=5, timeout=6, action=url("ivr/zip", attempt=attempt),
                                method="POST", action_on_empty_result=True)
                gather.say(prompt, voice=VOICE)
                response.append(gather)
            case s.AskCategory(prompt=prompt, typed_zip=typed_zip):
                # No finish key: "#" (Twilio's default one) would end the input with no digit, read as no answer;
                # as a digit it is a key other than 1, a no.
                action = url("ivr/category", zip=typed_zip) if typed_zip else url("ivr/category")
                gather = Gather(input="dtmf", num_digits=1, finish_on_key="", timeout=6, action=action,
                                method="POST", action_on_empty_result=True)
                gather.say(prompt, voice=VOICE)
                response.append(gather)
            case s.DialTarget(number=number, sequence=seq, timeout=timeout, record=record, campaign_id=cid,
                              rest=rest, target_id=target_id, network_version=version, counted_periods=counted):
                query: dict[str, object] = {"seq": seq, "c": cid}
                if target_id:
                    query["t"] = target_id
                if counted is not None:  # "" too: counted in no period (the line had no cap)
                    query["u"] = counted.replace(" ", ".")
                if rest:
                    query["ring"] = ".".join(str(t) for t in rest[:MAX_RING_IN_URL])
                options: dict[str, object] = {"action": url("dial", **query), "method": "POST",
                                              "timeout": timeout, "answer_on_bridge": True}
                if record:
                    options.update(record="record-from-answer-dual",
                                   recording_status_callback=url("recording"),
                                   recording_status_callback_event="completed")
                dial = Dial(**options)
                whisper = {"c": cid, "v": version} if version else {"c": cid}
                dial.number(number, url=url("whisper", **whisper), method="POST")
                response.append(dial)
            case s.Forward(number=number, timeout=timeout):
                response.dial(number, timeout=timeout, answer_on_bridge=True)
            case s.TakeMessage(prompt=prompt, max_seconds=max_seconds):
                response.say(prompt, voice=VOICE)
                response.record(action=url("voicemail"), method="POST", max_length=max_seconds, timeout=5,
                                play_beep=True)
                response.say("We did not hear a message. Goodbye.", voice=VOICE)
                response.hangup()
            case s.Hangup():
                response.hangup()
    # A character XML 1.0 can't hold (a control character pasted into a campaign's text) would make the
    # whole document unreadable to the carrier (error 12100): the caller would hear its canned error.
    return _NOT_XML.sub("", str(response))


def _signed_url(base: str, path: str, query: Mapping[str, object], key: bytes) -> str:
    """``base + path``, with its parameters and their MAC (:data:`CALLBACK_MAC`, :func:`callback_query_refused`)
    last; a URL without parameters as it is."""
    if not query:
        return base + path
    encoded = urlencode(query)
    return f"{base}{path}?{encoded}&{CALLBACK_MAC}={callback_mac(key, path, encoded)}"


#: Characters outside XML 1.0's ``Char`` production (the builder writes them as they are).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def empty() -> str:
    return str(VoiceResponse())
