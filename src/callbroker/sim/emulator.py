"""A Twilio Programmable Voice emulator that drives a real callbroker server over HTTP.

One :class:`Carrier` stands for one Twilio account with its phone numbers all pointing at the
server (Voice URL, Fallback URL and Status Callback on ``base_url``). :meth:`Carrier.place_call`
plays one inbound call end to end in the calling thread and returns a :class:`CallRecord`:

* every request is a form-encoded POST (or GET) signed with ``X-Twilio-Signature`` over the public
  URL, exactly as ``twilio.request_validator.RequestValidator`` checks it; or, for a Carrier given a Telnyx
  key (``telnyx_key``), as Telnyx TeXML signs: Ed25519 over ``timestamp|body`` in ``telnyx-signature-ed25519``
  and ``telnyx-timestamp``, with Telnyx's CallSids (``v3:…``), a UUID AccountSid and
  ``ShakenStirAttestation``/``ShakenStirValidated`` for ``StirVerstat``;
* TwiML is executed verb by verb with a simulated clock (no real waiting unless ``time_scale``);
* ``<Dial>`` rings its ``<Number>`` children at once, plays the whisper on the answering buyer,
  bridges or not, posts the Dial action, Number status callbacks and the recording callback;
* fetch or parse failures go to the Fallback URL with ``ErrorCode`` and ``ErrorUrl``;
* the number's status callback gets the terminal event with ``CallDuration``;
* :class:`Delivery` adds retries (every webhook twice) and reordering of async callbacks.

A ``Carrier`` is safe to share between threads: per-call state lives in a private ``_Call`` and
the shared HTTP client (``wire.Wire``) keeps one connection per thread. Nothing here raises for a
misbehaving server: errors land in ``CallRecord.errors``. Timings and the simplifications are listed in
docs/emulator.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import NamedTuple
from urllib.parse import parse_qsl, urljoin, urlsplit, urlunsplit

import httpx

from callbroker.sim import twiml
from callbroker.sim.twiml import (
    Dial,
    Document,
    Gather,
    Hangup,
    Number,
    Pause,
    Play,
    Record,
    Redirect,
    Reject,
    Say,
    TwimlError,
    Unknown,
)
from callbroker.sim.wire import Answer, Wire, WireError, form_encode

API_VERSION = "2010-04-01"
TWILIO_ACCOUNT_SID = "AC" + "0" * 30 + "01"  # the emulator's own accounts, unless told another
TELNYX_ACCOUNT_SID = "00000000-0000-4000-8000-000000000001"
ANONYMOUS_NUMBER = "+266696687"  # what Twilio puts in From for a withheld caller ID
USER_AGENT = "TwilioProxy/1.1"
MAX_DOCUMENTS = 50  # loop guard per call
BODY_LIMIT = 64 * 1024 + 1  # what a RequestLog keeps of an answer (a TwiML document is at most 64 kB)

# Simulated durations (seconds) of things whose real length the emulator cannot know.
SAY_WORDS_PER_SECOND = 2.5  # 150 words a minute
PLAY_SECONDS = 5  # an audio file of unknown length
SECONDS_PER_TWO_DIGITS = 1  # keypad entry speed
FAILED_AFTER = 1  # a buyer line that fails (SIP error) gives up after this long
BUSY_AFTER = 2  # a busy signal comes back after this long

# SIP response code reported in the terminal status callback.
SIP_CODES = {"completed": 200, "busy": 486, "no-answer": 480, "canceled": 487, "failed": 500}


# ---------------------------------------------------------------------------------------------
# What a test or the traffic generator describes


@dataclass(frozen=True)
class BuyerBehaviour:
    """How the buyer's phone behaves when a ``<Number>`` rings it."""

    answers: bool = True
    ring_seconds: int = 6
    busy: bool = False
    fails: bool = False
    talk_seconds: int = 90
    declines_whisper: bool = False


@dataclass(frozen=True)
class CallerScript:
    """What the caller does: keypad answers, patience, voicemail length."""

    digits: tuple[str, ...] = ()  # answers to successive <Gather>s in order ('' = no input)
    hangs_up_after: int | None = None  # total simulated seconds before the caller hangs up
    message_seconds: int = 12  # length spoken into a <Record> (0 = silent, empty recording)


@dataclass(frozen=True)
class Delivery:
    """Network misbehaviour to inject (both are allowed by Twilio; the server must cope).

    ``duplicate``: every webhook is delivered twice; for documents the emulator follows the second
    answer, like a carrier retrying after a timeout. ``reorder``: asynchronous callbacks (Number
    status events, the final status callback) are held and sent in a seeded shuffled order at the
    end of the call, and a Dial's recording callback is sent before its Dial action.
    ``late_recording``: recording callbacks are held until after the final status callback.
    ``status_first``: when the caller hangs up during a ``<Dial>`` that has an action, the final status
    callback is sent before the Dial action request (the call is over when both go out, and Twilio doesn't
    order them): the server hears that the call ended before it hears whether the buyer talked.
    """

    duplicate: bool = False
    reorder: bool = False
    late_recording: bool = False
    status_first: bool = False


class RequestLog(NamedTuple):
    """One HTTP request the carrier made, as the server saw it."""

    method: str
    url: str  # the public URL as signed (GET: with the query string)
    params: dict[str, str]
    status_code: int | None  # None when the request failed at transport level
    elapsed_ms: float
    body: str  # the answer (first 64 kB), or the transport error


@dataclass
class DialResult:
    """The outcome of one ``<Dial>`` as reported to the Dial action."""

    number: str  # the number that answered, else the dialled numbers joined with ","
    status: str  # DialCallStatus
    bridged: bool  # DialBridged
    duration: int  # DialCallDuration
    child_sid: str  # DialCallSid
    numbers: tuple[str, ...] = ()
    ring_seconds: int = 0
    whisper_seconds: int = 0
    whisper_declined: bool = False
    recording_sid: str | None = None


@dataclass
class CallRecord:
    """Everything that happened on one simulated call, from the carrier's side."""

    call_sid: str
    to: str
    from_: str
    requests: list[RequestLog] = field(default_factory=list)
    verbs_executed: list[str] = field(default_factory=list)
    dials: list[DialResult] = field(default_factory=list)
    talk_seconds: int = 0  # bridged seconds, all Dials together
    duration: int = 0  # parent call, from the carrier's pickup: IVR + ring + talk (CallDuration)
    final_status: str = ""
    used_fallback: bool = False
    heard_error: bool = False
    recording_sid: str | None = None  # the last recording made on the call
    rejected: bool = False
    hung_up_by: str = ""  # caller | app | end
    said: str = ""  # every <Say> the caller heard, joined with spaces
    whisper_said: str = ""  # every <Say> a buyer heard in a whisper
    webhook_latencies_ms: list[float] = field(default_factory=list)
    error_codes: list[str] = field(default_factory=list)  # Twilio error codes raised on the call
    errors: list[str] = field(default_factory=list)  # human-readable problems, incl. exceptions
    issues: list[str] = field(default_factory=list)  # TwiML the emulator did not understand
    recordings: list[str] = field(default_factory=list)  # RecordingSids, in order

    @property
    def ok(self) -> bool:
        """No error code, no application error, no exception."""
        return not self.errors and not self.error_codes and not self.heard_error

    @property
    def bridged(self) -> bool:
        return any(d.bridged for d in self.dials)

    def requests_to(self, path: str) -> list[RequestLog]:
        """The requests whose URL path ends with ``path`` (query string ignored)."""
        return [r for r in self.requests if urlsplit(r.url).path.endswith(path)]

    def transcript(self) -> str:
        """A human-readable account of the call, for the CLI and failing tests."""
        lines = [f"call {self.call_sid} {self.from_} -> {self.to}"]
        lines += [f"  verb     {v}" for v in self.verbs_executed]
        for r in self.requests:
            path = urlsplit(r.url).path
            lines.append(f"  request  {r.method} {path} -> {r.status_code} ({r.elapsed_ms:.1f} ms)")
        for d in self.dials:
            lines.append(
                f"  dial     {d.number} {d.status} bridged={d.bridged} duration={d.duration}s "
                f"ring={d.ring_seconds}s whisper={d.whisper_seconds}s"
            )
        lines.append(
            f"  end      status={self.final_status} duration={self.duration}s talk={self.talk_seconds}s "
            f"hung_up_by={self.hung_up_by} fallback={self.used_fallback} error={self.heard_error}"
        )
        lines += [f"  problem  {e}" for e in self.errors + self.issues]
        return "\n".join(lines)


BuyerLookup = Callable[[str], BuyerBehaviour] | Mapping[str, BuyerBehaviour] | None


# ---------------------------------------------------------------------------------------------
# The carrier


class Carrier:
    """A Twilio account whose numbers all point at one callbroker server."""

    def __init__(
        self,
        base_url: str,
        auth_token: str,
        *,
        account_sid: str | None = None,
        public_url: str | None = None,
        voice_path: str = "/carriers/twilio/voice",
        fallback_path: str | None = "/carriers/twilio/fallback",
        status_path: str | None = "/carriers/twilio/status",
        time_scale: float = 0.0,
        timeout: float = 15.0,
        client: httpx.Client | None = None,
        seed: int | None = None,
        buyers: BuyerLookup = None,
        dial_duration_includes_whisper: bool = False,
        telnyx_key: bytes | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.public_url = (public_url or base_url).rstrip("/")
        # Telnyx TeXML instead of Twilio: the account's Ed25519 private key (its 32-byte seed) signs every request.
        self.telnyx = None
        if telnyx_key is not None:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            self.telnyx = Ed25519PrivateKey.from_private_bytes(telnyx_key)
        self.account_sid = account_sid or (TELNYX_ACCOUNT_SID if self.telnyx else TWILIO_ACCOUNT_SID)
        self.voice_path = voice_path
        self.fallback_path = fallback_path
        self.status_path = status_path
        self.time_scale = max(0.0, float(time_scale))
        self.timeout = float(timeout)
        self.buyers = buyers
        self.seed = seed
        # Twilio's DialCallDuration is the child leg's length; whether a whisper counts is
        # configurable so the server can be tested against both readings.
        self.dial_duration_includes_whisper = dial_duration_includes_whisper
        self._key = auth_token.encode("utf-8")
        # An httpx client when given one (e.g. on httpx's WSGI transport, with no server at all); else the
        # standard library's http.client, which costs a third of httpx's CPU per request (see wire.py).
        self._client = client
        self._wire = None if client is not None else Wire({"User-Agent": USER_AGENT}, _ssl_context())
        self._lock = threading.Lock()
        self._placed = 0

    # -- lifecycle

    def close(self) -> None:
        if self._wire is not None:
            self._wire.close()

    def __enter__(self) -> Carrier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- public API

    @property
    def voice_url(self) -> str:
        return self.public_url + self.voice_path

    def new_sid(self, prefix: str) -> str:
        """A new SID, unique like the carrier's even across seeded runs (the seed drives behaviour only). A call's
        SID (``CA``) as Telnyx writes it for a Telnyx carrier: ``v3:`` and URL-safe base64."""
        if prefix == "CA" and self.telnyx is not None:
            return "v3:" + base64.urlsafe_b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).decode().rstrip("=")
        return f"{prefix}{uuid.uuid4().hex}"

    def telnyx_headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """Telnyx's headers for a request with this raw ``body``: its Ed25519 signature of ``timestamp|body``
        (the time now unless given: the server checks it against its clock, not the simulated one)."""
        signed_at = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.telnyx.sign(signed_at.encode() + b"|" + body)
        return {"telnyx-signature-ed25519": base64.b64encode(signature).decode(), "telnyx-timestamp": signed_at}

    def signature(self, url: str, params: Mapping[str, str] | None) -> str:
        """``X-Twilio-Signature`` for a request to ``url`` (public form) with POST ``params``.

        For ``https`` the port is dropped before signing (the carrier signs ``https://host/path`` even when
        it called ``https://host:8443/path``); for ``http`` it is kept.
        """
        return _signature(self._key, _signed_url(url), params or {})

    def place_call(
        self,
        to: str,
        from_: str | None,
        *,
        caller: CallerScript = CallerScript(),
        params: Mapping[str, str] | None = None,
        delivery: Delivery = Delivery(),
        buyers: BuyerLookup = None,
        call_sid: str | None = None,
    ) -> CallRecord:
        """Play one inbound call from ``from_`` (None = anonymous) to our number ``to``."""
        sid = call_sid or self.new_sid("CA")
        with self._lock:
            self._placed += 1
            number = self._placed
        # The seed makes each call's choices (the reorder shuffle) repeatable: the n-th call placed
        # through a Carrier with seed S always shuffles the same way. SIDs stay unique regardless.
        rng = random.Random(f"{self.seed}:{number}") if self.seed is not None else random.Random()
        call = _Call(
            self,
            sid=sid,
            to=to,
            from_=from_ or ANONYMOUS_NUMBER,
            caller=caller,
            extra=params or {},
            delivery=delivery,
            buyers=buyers if buyers is not None else self.buyers,
            rng=rng,
        )
        try:
            call.run()
        except Exception as exc:  # noqa: BLE001 - a traffic run must survive any single call
            call.record.errors.append(f"emulator exception: {exc.__class__.__name__}: {exc}")
            if not call.record.final_status:
                call.record.final_status = "failed"
        return call.record

    # -- transport (shared, thread-safe)

    def _timeouts(self, overrides: Mapping[str, int] | None) -> tuple[float, float, float]:
        """(connect, read, total) in seconds: the carrier's defaults or a URL's ``#ct``/``#rt``/``#tt``."""
        o = overrides or {}
        total = o.get("tt", self.timeout * 1000) / 1000
        connect = o.get("ct", min(5.0, self.timeout) * 1000) / 1000
        read = o.get("rt", total * 1000) / 1000
        return min(connect, total), min(read, total), total

    def _transport_url(self, public: str) -> str:
        """Where to send a request for ``public`` (a URL our TwiML named): below the public base URL means the
        server under test (``base_url``), whether or not the URL writes the scheme's port (``:443``)."""
        base = self.public_url
        if public.startswith(base) and public[len(base) : len(base) + 1] in ("", "/", "?"):
            return self.base_url + public[len(base) :]
        origin = _origin(public)
        if origin is not None and origin == _origin(base):
            parts = urlsplit(public)
            base_path = urlsplit(base).path
            if parts.path == base_path or parts.path.startswith(base_path.rstrip("/") + "/"):
                query = f"?{parts.query}" if parts.query else ""
                return self.base_url + parts.path[len(base_path) :] + query
        return public

    def _send(self, method: str, url: str, params: Mapping[str, str]) -> _Response:
        """Sign and send one request (with the carrier's retry on connection failure)."""
        url, overrides = _split_fragment(url)
        params = {k: str(v) for k, v in params.items()}
        if method == "GET":
            signed_url = _add_query(url, params)
            body = None
        else:
            signed_url = url
            body = params
        if self.telnyx is not None:  # the body as sent (``wire`` and httpx encode a form as form_encode does)
            headers = self.telnyx_headers(form_encode(body).encode() if body is not None else b"")
        else:
            headers = {"X-Twilio-Signature": self.signature(signed_url, None if body is None else params)}
        attempts = 1 + int(overrides.get("rc", 1))
        connect, read, total = self._timeouts(overrides)
        started = time.perf_counter()
        budget_ends = time.monotonic() + total  # ``tt``: the time allowed for every attempt, retries included
        error = ""
        for _ in range(attempts):
            started = time.perf_counter()
            left = budget_ends - time.monotonic()
            if left <= 0:
                break
            connect, read, total = min(connect, left), min(read, left), left
            try:
                if self._wire is not None:
                    answer = self._wire.request(method, self._transport_url(signed_url), data=body, headers=headers,
                                                connect=connect, read=read, total=total)
                else:
                    answer = self._httpx_request(method, self._transport_url(signed_url), body, headers,
                                                 httpx.Timeout(total, connect=connect, read=read))
            except (WireError, httpx.TransportError) as exc:
                error = str(exc) if isinstance(exc, WireError) else f"{exc.__class__.__name__}: {exc}"
                continue
            elapsed = (time.perf_counter() - started) * 1000
            return _Response(
                method=method,
                url=signed_url,
                params=params,
                status_code=answer.status,
                content_type=answer.content_type,
                text=answer.text,
                content=answer.content,
                elapsed_ms=elapsed,
                error="",
            )
        elapsed = (time.perf_counter() - started) * 1000
        return _Response(method, signed_url, params, None, "", "", b"", elapsed, error or "no attempt made")

    def _httpx_request(self, method: str, url: str, body, headers: dict[str, str], timeout: httpx.Timeout) -> Answer:
        response = self._client.request(method, url, data=body, headers={"User-Agent": USER_AGENT, **headers},
                                        timeout=timeout, follow_redirects=False)
        return Answer(response.status_code, response.headers.get("content-type", ""), response.content)


@dataclass(frozen=True, slots=True)
class _Response:
    method: str
    url: str
    params: dict[str, str]
    status_code: int | None
    content_type: str
    text: str
    content: bytes
    elapsed_ms: float
    error: str

    @property
    def log(self) -> RequestLog:
        body = self.error if self.status_code is None else self.text[:BODY_LIMIT]
        return RequestLog(self.method, self.url, self.params, self.status_code, self.elapsed_ms, body)


@dataclass(frozen=True, slots=True)
class _Failure:
    code: str  # Twilio error code
    message: str


class _End(Exception):
    """The call is over (raised from anywhere in the verb loop)."""


@dataclass(slots=True)
class _Pending:
    method: str
    url: str
    params: dict[str, str]
    late: bool = False  # a held recording callback (Delivery.late_recording)


# ---------------------------------------------------------------------------------------------
# One call


class _Call:
    """The state of one call while it runs. Not shared between threads."""

    def __init__(
        self,
        carrier: Carrier,
        *,
        sid: str,
        to: str,
        from_: str,
        caller: CallerScript,
        extra: Mapping[str, str],
        delivery: Delivery,
        buyers: BuyerLookup,
        rng: random.Random,
    ) -> None:
        self.carrier = carrier
        self.caller = caller
        self.delivery = delivery
        self.buyers = buyers
        self.rng = rng
        self.record = CallRecord(call_sid=sid, to=to, from_=from_)
        self.digits = list(caller.digits)
        self.t = 0.0  # simulated seconds since the call arrived
        self.started_at = dt.datetime.now(dt.UTC)
        self.answered = False
        self.answered_at = 0.0  # simulated second the carrier picked up (after a leading <Pause>)
        self.caller_gone = False
        self.executed_any = False
        self.documents = 0
        self.pending: list[_Pending] = []
        self.final_status_sent = False
        self.base = {
            "CallSid": sid,
            "AccountSid": carrier.account_sid,
            "From": from_,
            "To": to,
            "Caller": from_,
            "Called": to,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "ApiVersion": API_VERSION,
        }
        for key, value in extra.items():
            self.base[key] = str(value)
        if carrier.telnyx is not None:
            self.base.update(_telnyx_stir(self.base.pop("StirVerstat", "")))
        # Twilio sends the location of both parties twice: From*/Caller* and To*/Called*.
        for key, value in list(self.base.items()):
            for a, b in (("From", "Caller"), ("To", "Called")):
                if key.startswith(a) and key not in (a,) and b + key[len(a) :] not in self.base:
                    self.base[b + key[len(a) :]] = value

    # -- the clock

    def hangup_at(self) -> float | None:
        h = self.caller.hangs_up_after
        return None if h is None else float(h)

    def advance(self, seconds: float) -> bool:
        """Let ``seconds`` pass; False (and the caller gone) if the caller hangs up meanwhile."""
        seconds = max(0.0, float(seconds))
        limit = self.hangup_at()
        if self.caller_gone:
            return False
        if limit is not None and self.t + seconds >= limit:
            self._sleep(max(0.0, limit - self.t))
            self.t = max(self.t, limit)
            self.caller_gone = True
            return False
        self._sleep(seconds)
        self.t += seconds
        return True

    def _sleep(self, seconds: float) -> None:
        if self.carrier.time_scale > 0 and seconds > 0:
            time.sleep(seconds * self.carrier.time_scale)

    def timestamp(self, at: float | None = None) -> str:
        moment = self.started_at + dt.timedelta(seconds=self.t if at is None else at)
        return format_datetime(moment.replace(microsecond=0))

    # -- parameters

    def params(self, **extra: str) -> dict[str, str]:
        p = dict(self.base)
        if self.caller_gone:
            p["CallStatus"] = "completed" if self.answered else "canceled"  # as the final status will say
        elif self.answered:
            p["CallStatus"] = "in-progress"
        p.update({k: str(v) for k, v in extra.items()})
        return p

    def resolve(self, ref: str | None, doc_url: str) -> str:
        """An absolute URL for ``ref`` found in the document fetched from ``doc_url``."""
        if not ref:
            return doc_url
        return urljoin(doc_url, ref)

    # -- HTTP

    def _log(self, response: _Response) -> None:
        self.record.requests.append(response.log)
        self.record.webhook_latencies_ms.append(response.elapsed_ms)

    def send_async(self, method: str, url: str, params: dict[str, str], *, recording: bool = False) -> None:
        """A status-type callback: nobody waits for its answer; duplicated and reordered on demand."""
        copies = 2 if self.delivery.duplicate else 1
        late = recording and self.delivery.late_recording
        if late or (self.delivery.reorder and not recording):
            self.pending.extend(_Pending(method, url, dict(params), late=late) for _ in range(copies))
            return
        for _ in range(copies):
            response = self.carrier._send(method, url, params)
            self._log(response)
            if response.status_code is None or response.status_code >= 400:
                self.record.errors.append(
                    f"callback {urlsplit(url).path} answered {response.status_code or response.error}"
                )

    def flush_pending(self) -> None:
        normal = [p for p in self.pending if not p.late]
        late = [p for p in self.pending if p.late]
        if self.delivery.reorder:
            self.rng.shuffle(normal)
        self.pending = []
        for item in normal + late:
            response = self.carrier._send(item.method, item.url, item.params)
            self._log(response)
            if response.status_code is None or response.status_code >= 400:
                self.record.errors.append(
                    f"callback {urlsplit(item.url).path} answered {response.status_code or response.error}"
                )

    def fetch(
        self, method: str, url: str, params: dict[str, str], *, fallback: bool = True
    ) -> tuple[Document, str] | None:
        """Request a TwiML document; on failure try the Fallback URL. None = nothing to execute."""
        self.documents += 1
        if self.documents > MAX_DOCUMENTS:
            self.record.errors.append(f"more than {MAX_DOCUMENTS} documents on one call (loop?)")
            raise _End("app")
        got = self._get_document(method, url, params)
        if not isinstance(got, _Failure):
            return got
        self.record.error_codes.append(got.code)
        self.record.errors.append(f"{got.code} at {urlsplit(url).path}: {got.message}")
        if not fallback or not self.carrier.fallback_path or self.caller_gone:
            return None  # nobody left on the line to play a fallback to
        fallback_url = self.carrier.public_url + self.carrier.fallback_path
        self.record.used_fallback = True
        fb_params = dict(params, ErrorCode=got.code, ErrorUrl=_strip_fragment(url))
        got = self._get_document("POST", fallback_url, fb_params)
        if not isinstance(got, _Failure):
            return got
        self.record.error_codes.append(got.code)
        self.record.errors.append(f"{got.code} at fallback {urlsplit(fallback_url).path}: {got.message}")
        return None

    def _get_document(self, method: str, url: str, params: dict[str, str]) -> tuple[Document, str] | _Failure:
        copies = 2 if self.delivery.duplicate else 1
        response = None
        for _ in range(copies):  # a retried webhook: the carrier acts on the last answer
            response = self.carrier._send(method, url, params)
            self._log(response)
        assert response is not None
        if response.status_code is None:
            return _Failure(twiml.ERROR_TIMEOUT, response.error)
        if not 200 <= response.status_code < 300:
            return _Failure(twiml.ERROR_RETRIEVAL, f"HTTP {response.status_code}")
        try:
            warning = twiml.check_content_type(response.content_type)
            document = twiml.parse(response.content)
        except TwimlError as exc:
            return _Failure(exc.code, exc.message)
        if warning:
            self.record.issues.append(warning)
        self.record.issues.extend(document.issues)
        return document, _strip_fragment(url)

    # -- the call

    def run(self) -> None:
        carrier = self.carrier
        try:
            fetched = self.fetch("POST", carrier.voice_url, self.params())
            limit = self.hangup_at()
            if limit is not None and limit <= 0:
                self.caller_gone = True  # hung up while it rang: the answer comes too late
                raise _End("caller")
            if fetched is None:
                self.application_error()
            else:
                self.execute(*fetched)
                self.finish("end")
        except _End as end:
            self.finish(str(end.args[0]) if end.args else "end")
        except Exception as exc:  # noqa: BLE001 - an emulator bug still ends the call properly
            self.record.errors.append(f"emulator exception: {exc.__class__.__name__}: {exc}")
            self.finish("end")
        self.send_final_status()

    def application_error(self) -> None:
        """The carrier could not get TwiML: it answers, plays its canned error and hangs up."""
        self.pick_up()
        self.record.heard_error = True
        self.record.verbs_executed.append("Error:application error")
        self.advance(4)
        raise _End("end")

    def finish(self, who: str) -> None:
        if not self.record.hung_up_by:
            self.record.hung_up_by = "caller" if self.caller_gone else who

    def send_final_status(self) -> None:
        if self.final_status_sent:  # sent already, ahead of a Dial action (``Delivery.status_first``)
            self.flush_pending()  # what was held since (a recording callback …)
            return
        self.final_status_sent = True
        r = self.record
        if r.rejected:
            status = r.final_status
        elif not self.answered:
            status = "canceled" if self.caller_gone else "no-answer"
        else:
            status = "completed"
        r.final_status = status
        r.duration = int(round(self.t - self.answered_at)) if self.answered else 0
        if self.carrier.status_path:
            params = self.params(
                CallStatus=status,
                CallDuration=str(r.duration),
                SipResponseCode=str(SIP_CODES.get(status, 200)),
                Timestamp=self.timestamp(),
                CallbackSource="call-progress-events",
                SequenceNumber="0",
            )
            self.send_async("POST", self.carrier.public_url + self.carrier.status_path, params)
        self.flush_pending()

    def execute(self, document: Document, url: str) -> None:
        """Run documents until the call ends (raises :class:`_End`) or one runs out of verbs."""
        current: tuple[Document, str] | None = (document, url)
        while current is not None:
            document, url = current
            verbs = document.verbs
            if not self.executed_any:
                self.executed_any = True
                first = verbs[0] if verbs else None
                if isinstance(first, Reject):
                    self.reject(first)
                if isinstance(first, Pause):
                    self.delay_pickup(first)
                    verbs = verbs[1:]
                if not (isinstance(first, Dial) and first.answer_on_bridge):
                    self.pick_up()  # any other first answer is picked up, even an empty document
            current = None
            for verb in verbs:
                outcome = self.verb(verb, url)
                if outcome is not None:
                    current = outcome
                    break
            if current is None:
                return

    def pick_up(self) -> None:
        """The carrier answers the call: from here on it is billed and ``CallDuration`` counts."""
        if not self.answered:
            self.answered = True
            self.answered_at = self.t

    def delay_pickup(self, verb: Pause) -> None:
        """A ``<Pause>`` as the first verb of the call: Twilio waits that long *before* picking up (Pause page:
        "If <Pause> is the first verb in a TwiML document, Twilio will wait the specified number of seconds
        before picking up the call"), so those seconds are not in ``CallDuration``, and a caller who hangs up
        meanwhile was never answered."""
        self.record.verbs_executed.append(f"Pause:{verb.length} (before answering)")
        if not self.advance(verb.length):
            raise _End("caller")

    def reject(self, verb: Reject) -> None:
        r = self.record
        r.rejected = True
        r.final_status = "busy" if verb.reason == "busy" else "no-answer"
        r.verbs_executed.append(f"Reject:{verb.reason}")
        raise _End("app")

    def next_document(self, fetched: tuple[Document, str] | None) -> tuple[Document, str]:
        if fetched is None:
            self.application_error()
        assert fetched is not None
        return fetched

    # -- verbs on the caller's leg

    def verb(self, verb, url: str) -> tuple[Document, str] | None:
        r = self.record
        if not self.answered:
            # Still ringing after a <Dial answerOnBridge="true"> that didn't bridge: a <Reject> can still turn
            # the call away unanswered, another such Dial keeps it ringing, anything else picks it up.
            if isinstance(verb, Reject):
                self.reject(verb)
            if not (isinstance(verb, Dial) and verb.answer_on_bridge):
                self.pick_up()
        if isinstance(verb, Say):
            r.verbs_executed.append(f"Say:{verb.text}")
            r.said = f"{r.said} {verb.text}".strip() if r.said else verb.text
            if not self.advance(say_seconds(verb.text) * max(1, verb.loop)):
                raise _End("caller")
            return None
        if isinstance(verb, Play):
            r.verbs_executed.append(f"Play:{verb.url}")
            if not self.advance(PLAY_SECONDS * max(1, verb.loop)):
                raise _End("caller")
            return None
        if isinstance(verb, Pause):
            r.verbs_executed.append(f"Pause:{verb.length}")
            if not self.advance(verb.length):
                raise _End("caller")
            return None
        if isinstance(verb, Gather):
            return self.gather(verb, url)
        if isinstance(verb, Dial):
            return self.dial(verb, url)
        if isinstance(verb, Record):
            return self.record_verb(verb, url)
        if isinstance(verb, Redirect):
            r.verbs_executed.append(f"Redirect:{verb.url}")
            target = self.resolve(verb.url, url)
            return self.next_document(self.fetch(verb.method, target, self.params()))
        if isinstance(verb, Hangup):
            r.verbs_executed.append("Hangup")
            raise _End("app")
        if isinstance(verb, Reject):
            # Not the first verb: the call is already answered, so this is a plain hang-up.
            r.verbs_executed.append(f"Reject:{verb.reason}")
            r.issues.append("<Reject> after the call was answered acts as <Hangup>")
            raise _End("app")
        if isinstance(verb, Unknown):
            r.verbs_executed.append(f"Unknown:{verb.tag}")
            return None
        raise TypeError(f"unexpected verb {verb!r}")

    def play_prompts(self, children, *, whisper: bool = False) -> bool:
        for child in children:
            if isinstance(child, Say):
                if whisper:
                    self.record.whisper_said = f"{self.record.whisper_said} {child.text}".strip()
                else:
                    self.record.said = f"{self.record.said} {child.text}".strip()
                seconds = say_seconds(child.text) * max(1, child.loop)
            elif isinstance(child, Play):
                seconds = PLAY_SECONDS * max(1, child.loop)
            else:
                seconds = child.length
            if not self.advance(seconds):
                return False
        return True

    def gather(self, verb: Gather, url: str) -> tuple[Document, str] | None:
        r = self.record
        if not self.play_prompts(verb.children):
            r.verbs_executed.append("Gather->(caller hung up)")
            raise _End("caller")
        answer = self.digits.pop(0) if self.digits else ""
        if "dtmf" not in verb.input:
            if answer:
                r.issues.append(f"<Gather input={' '.join(verb.input)}>: keypad answer {answer!r} ignored")
            answer = ""
        digits, finished_on_key, extra_wait = _keypad(answer, verb)
        if not self.advance(entry_seconds(digits) + extra_wait):
            r.verbs_executed.append("Gather->(caller hung up)")
            raise _End("caller")
        r.verbs_executed.append(f"Gather->{digits}" if digits else "Gather->(no input)")
        if not digits and not verb.action_on_empty_result:
            return None
        action = self.resolve(verb.action, url)
        params = self.params(Digits=digits, FinishedOnKey=finished_on_key)
        return self.next_document(self.fetch(verb.method, action, params))

    def record_verb(self, verb: Record, url: str) -> tuple[Document, str] | None:
        r = self.record
        if verb.play_beep and not self.advance(1):
            raise _End("caller")
        message = max(0, int(self.caller.message_seconds))
        if message == 0:
            r.verbs_executed.append("Record:empty")
            self.absent_recording(verb, url, self.t)
            if not self.advance(verb.timeout):
                raise _End("caller")
            return None  # an empty recording: no action request, the document continues
        length = min(message, verb.max_length)
        started = self.t
        completed = self.advance(length)
        length = int(round(self.t - started))
        digits = "hangup" if not completed else ""
        if completed and length < verb.max_length and not self.advance(verb.timeout):
            digits = "hangup"
        if length <= 0:
            r.verbs_executed.append("Record:empty")
            self.absent_recording(verb, url, started)
            raise _End("caller")
        sid = self.carrier.new_sid("RE")
        r.recording_sid = sid
        r.recordings.append(sid)
        r.verbs_executed.append(f"Record:{length}s")
        recording_url = self.recording_url(sid)
        if verb.recording_status_callback:
            self.recording_callback(
                verb.recording_status_callback_method,
                self.resolve(verb.recording_status_callback, url),
                sid,
                length,
                channels=1,
                started=started,
                source="RecordVerb",
                events=verb.recording_status_callback_event,
            )
        params = self.params(
            RecordingUrl=recording_url, RecordingSid=sid, RecordingDuration=str(length), Digits=digits
        )
        action = self.resolve(verb.action, url)
        fetched = self.fetch(verb.method, action, params)
        if self.caller_gone:
            raise _End("caller")  # the action is requested, its TwiML is ignored
        return self.next_document(fetched)

    def recording_url(self, sid: str) -> str:
        return f"https://api.twilio.com/{API_VERSION}/Accounts/{self.carrier.account_sid}/Recordings/{sid}"

    def absent_recording(self, verb: Record, url: str, started: float) -> None:
        """A ``<Record>`` that heard nothing: no file and no action request, but a ``recordingStatusCallback``
        that asked for ``absent`` (``recordingStatusCallbackEvent``) is told so: ``RecordingStatus=absent``,
        duration 0, no ``RecordingUrl`` (there is no file to fetch)."""
        if not verb.recording_status_callback or "absent" not in verb.recording_status_callback_event:
            return
        params = {
            "AccountSid": self.carrier.account_sid,
            "CallSid": self.record.call_sid,
            "RecordingSid": self.carrier.new_sid("RE"),
            "RecordingStatus": "absent",
            "RecordingDuration": "0",
            "RecordingChannels": "1",
            "RecordingStartTime": self.timestamp(started),
            "RecordingSource": "RecordVerb",
            "RecordingTrack": "both",
        }
        self.send_async(verb.recording_status_callback_method, self.resolve(verb.recording_status_callback, url),
                        params, recording=True)

    def recording_callback(
        self,
        method: str,
        url: str,
        sid: str,
        duration: int,
        *,
        channels: int,
        started: float,
        source: str,
        events: tuple[str, ...],
    ) -> None:
        base = {
            "AccountSid": self.carrier.account_sid,
            "CallSid": self.record.call_sid,
            "RecordingSid": sid,
            "RecordingUrl": self.recording_url(sid),
            "RecordingChannels": str(channels),
            "RecordingStartTime": self.timestamp(started),
            "RecordingSource": source,
            "RecordingTrack": "both",
        }
        if "in-progress" in events:
            self.send_async(method, url, dict(base, RecordingStatus="in-progress", RecordingDuration="-1"))
        if "completed" in events:
            params = dict(base, RecordingStatus="completed", RecordingDuration=str(duration))
            self.send_async(method, url, params, recording=True)

    # -- Dial

    def behaviour(self, number: str) -> BuyerBehaviour:
        lookup = self.buyers
        if lookup is None:
            return BuyerBehaviour()
        if callable(lookup) and not isinstance(lookup, Mapping):
            return lookup(number)
        for key in (number, normalize_number(number)):
            if key in lookup:
                return lookup[key]
        return BuyerBehaviour()

    def dial(self, verb: Dial, url: str) -> tuple[Document, str] | None:
        r = self.record
        parent_from = self.base["From"]
        legs = [_Leg(n, self.carrier.new_sid("CA"), self.behaviour(n.number), verb.timeout) for n in verb.numbers]
        started = self.t
        result = DialResult(
            number=",".join(n.number for n in verb.numbers),
            status="failed",
            bridged=False,
            duration=0,
            child_sid=legs[0].sid if legs else self.carrier.new_sid("CA"),
            numbers=tuple(n.number for n in verb.numbers),
        )
        if not legs:
            r.errors.append("<Dial> without a number the emulator can ring")
        for leg in legs:
            self.leg_event(leg, "initiated", "initiated", started, verb, url, parent_from)
            if leg.outcome in ("answer", "no-answer"):
                self.leg_event(leg, "ringing", "ringing", started, verb, url, parent_from)

        answering = [leg for leg in legs if leg.outcome == "answer"]
        winner = min(answering, key=lambda leg: leg.at) if answering else None
        recording_sid: str | None = None
        record_from = rec_duration = 0.0
        if winner is not None and self.advance(winner.at):
            result.ring_seconds = int(winner.at)
            result.number = winner.number.number
            result.child_sid = winner.sid
            result.status = "completed"
            answered_at = self.t
            self.leg_event(winner, "answered", "in-progress", answered_at, verb, url, parent_from)
            for leg in legs:
                if leg is not winner:
                    # A leg that failed or was busy before the winner answered says so; every other one (still
                    # ringing, or answering at the same moment as the winner) is canceled by the carrier.
                    gave_up = leg.at <= winner.at and leg.outcome in ("busy", "failed")
                    status = leg.outcome if gave_up else "canceled"
                    self.leg_event(leg, "completed", status, min(leg.at, winner.at) + started, verb, url, parent_from)
            accepted = True
            if winner.number.url:
                accepted = self.whisper(winner, verb, url, parent_from)
            result.whisper_seconds = int(round(self.t - answered_at))
            result.whisper_declined = not accepted and not self.caller_gone
            talk = 0
            if accepted and not self.caller_gone:
                result.bridged = True
                bridged_at = self.t
                self.pick_up()  # answerOnBridge: the caller's call is answered only now
                if verb.records and verb.record.startswith("record-from-ringing"):
                    record_from = started
                else:
                    record_from = bridged_at
                self.advance(min(winner.behaviour.talk_seconds, verb.time_limit))
                talk = int(round(self.t - bridged_at))
                r.talk_seconds += talk
                if verb.records:
                    recording_sid = self.carrier.new_sid("RE")
                    result.recording_sid = recording_sid
                    r.recording_sid = recording_sid
                    r.recordings.append(recording_sid)
                    rec_duration = round(self.t - record_from)
            result.duration = talk
            if self.carrier.dial_duration_includes_whisper or not result.bridged:
                result.duration = talk + result.whisper_seconds
            # The leg's own length runs from its answer (whisper included), whatever DialCallDuration says.
            self.leg_event(winner, "completed", "completed", self.t, verb, url, parent_from,
                           duration=int(round(self.t - answered_at)))
        else:
            # Nobody answered in time, or the caller hung up while it rang.
            ends = max((leg.at for leg in legs), default=0)
            self.advance(ends)
            outcomes = {leg.outcome for leg in legs}
            if self.caller_gone:
                result.status = "canceled"
            elif "no-answer" in outcomes or "answer" in outcomes:
                result.status = "no-answer"
            elif "busy" in outcomes:
                result.status = "busy"
            else:
                result.status = "failed"
            result.ring_seconds = int(round(self.t - started))
            for leg in legs:
                status = leg.outcome if leg.at <= self.t - started and leg.outcome != "answer" else "canceled"
                if status == "no-answer" and self.caller_gone and leg.at > self.t - started:
                    status = "canceled"
                self.leg_event(leg, "completed", status, self.t, verb, url, parent_from)

        r.dials.append(result)
        label = f"Dial:{result.number}:{result.status}"
        if result.bridged:
            label += ":bridged"
        elif result.whisper_declined:
            label += ":declined"
        r.verbs_executed.append(label)

        def send_recording() -> None:
            if recording_sid and verb.recording_status_callback:
                self.recording_callback(
                    verb.recording_status_callback_method,
                    self.resolve(verb.recording_status_callback, url),
                    recording_sid,
                    int(rec_duration),
                    channels=2 if verb.dual_channel else 1,
                    started=record_from,
                    source="DialVerb",
                    events=verb.recording_status_callback_event,
                )

        recording_first = self.delivery.reorder
        if recording_first:
            send_recording()
        if verb.action:
            extra = {
                "DialCallStatus": result.status,
                "DialCallSid": result.child_sid,
                "DialCallDuration": str(result.duration),
                "DialBridged": "true" if result.bridged else "false",
            }
            if recording_sid:
                extra.update(
                    RecordingUrl=self.recording_url(recording_sid),
                    RecordingSid=recording_sid,
                    RecordingDuration=str(int(rec_duration)),
                )
            if self.caller_gone and self.delivery.status_first:
                self.finish("caller")
                self.send_final_status()  # the call has ended: its status races the Dial action, and wins
            fetched = self.fetch(verb.method, self.resolve(verb.action, url), self.params(**extra))
            if not recording_first:
                send_recording()
            if self.caller_gone:
                raise _End("caller")  # Twilio still posts the action; the TwiML is ignored
            return self.next_document(fetched)
        if not recording_first:
            send_recording()
        if self.caller_gone:
            raise _End("caller")
        return None

    def leg_event(
        self,
        leg: _Leg,
        event: str,
        status: str,
        at: float,
        verb: Dial,
        url: str,
        parent_from: str,
        *,
        duration: int | None = None,
    ) -> None:
        number = leg.number
        if not number.status_callback or event not in number.status_callback_event:
            return
        if event == "completed" and leg.completed_sent:
            return
        leg.completed_sent = leg.completed_sent or event == "completed"
        params = self.leg_params(leg, verb, parent_from, status)
        params.update(
            SequenceNumber=str(leg.sequence),
            Timestamp=self.timestamp(at),
            CallbackSource="call-progress-events",
        )
        leg.sequence += 1
        if event == "completed":
            params["CallDuration"] = str(duration or 0)
            params["SipResponseCode"] = str(SIP_CODES.get(status, 200))
        self.send_async(number.status_callback_method, self.resolve(number.status_callback, url), params)

    def leg_params(self, leg: _Leg, verb: Dial, parent_from: str, status: str) -> dict[str, str]:
        caller_id = verb.caller_id or parent_from
        return {
            "CallSid": leg.sid,
            "ParentCallSid": self.record.call_sid,
            "AccountSid": self.carrier.account_sid,
            "From": caller_id,
            "To": leg.number.number,
            "Caller": caller_id,
            "Called": leg.number.number,
            "CallStatus": status,
            "Direction": "outbound-dial",
            "ApiVersion": API_VERSION,
        }

    def whisper(self, leg: _Leg, verb: Dial, dial_url: str, parent_from: str) -> bool:
        """Run the whisper TwiML on the buyer's leg; True if the buyer accepts the call."""
        r = self.record
        params = self.leg_params(leg, verb, parent_from, "in-progress")
        fetched = self.fetch(leg.number.method, self.resolve(leg.number.url, dial_url), params, fallback=False)
        while fetched is not None:
            document, url = fetched
            fetched = None
            for w in document.verbs:
                if isinstance(w, (Say, Play, Pause)):
                    if not self.play_prompts((w,), whisper=True):
                        return False
                elif isinstance(w, Gather):
                    if not self.play_prompts(w.children, whisper=True):
                        return False
                    # The buyer who accepts keys 1, the Gather ending it as the caller's would (finish key,
                    # numDigits or timeout): its action gets Digits and FinishedOnKey, as any Gather action.
                    answer = "" if leg.behaviour.declines_whisper else "1"
                    digits, finished_on_key, extra_wait = _keypad(answer, w)
                    if not self.advance(entry_seconds(digits) + extra_wait):
                        return False
                    r.verbs_executed.append(f"Whisper:Gather->{digits or '(no input)'}")
                    if digits or w.action_on_empty_result:
                        action = self.resolve(w.action, url)
                        fetched = self.fetch(w.method, action, dict(params, Digits=digits, FinishedOnKey=finished_on_key),
                                             fallback=False)
                        if fetched is None:
                            return False
                        break
                elif isinstance(w, (Hangup, Reject)):
                    r.verbs_executed.append("Whisper:Hangup")
                    return False
                elif isinstance(w, Redirect):
                    fetched = self.fetch(w.method, self.resolve(w.url, url), params, fallback=False)
                    if fetched is None:
                        return False
                    break
                else:
                    r.issues.append(f"{type(w).__name__} is not allowed in a whisper; ignored")
            else:
                # The whisper played to the end: a buyer who declines hangs up now, unbridged.
                if leg.behaviour.declines_whisper:
                    r.verbs_executed.append("Whisper:buyer hung up")
                    return False
                return True
        # The whisper document could not be fetched: the buyer's leg hangs up unbridged.
        return False


@dataclass(slots=True)
class _Leg:
    """One child call placed by a Dial."""

    number: Number
    sid: str
    behaviour: BuyerBehaviour
    timeout: int
    sequence: int = 0
    completed_sent: bool = False
    outcome: str = field(init=False)  # answer | no-answer | busy | failed
    at: float = field(init=False)  # seconds after the Dial started when the outcome happens

    def __post_init__(self) -> None:
        b = self.behaviour
        if b.fails:
            self.outcome, self.at = "failed", float(FAILED_AFTER)
        elif b.busy:
            self.outcome, self.at = "busy", float(BUSY_AFTER)
        elif b.answers and b.ring_seconds < self.timeout:
            self.outcome, self.at = "answer", float(max(0, b.ring_seconds))
        else:
            self.outcome, self.at = "no-answer", float(self.timeout)


# ---------------------------------------------------------------------------------------------
# Helpers


_ssl_lock = threading.Lock()
_VERSTAT = re.compile(r"TN-Validation-(Passed|Failed)-([ABC])")


def _telnyx_stir(verstat: str) -> dict[str, str]:
    """Twilio's ``StirVerstat`` as Telnyx TeXML says it: ``ShakenStirAttestation`` (A/B/C) and
    ``ShakenStirValidated``; nothing for a call without attestation (``No-TN-Validation``, none)."""
    found = _VERSTAT.fullmatch(verstat)
    if found is None:
        return {}
    return {"ShakenStirAttestation": found.group(2), "ShakenStirValidated": str(found.group(1) == "Passed").lower()}


def _signature(key: bytes, url: str, params: Mapping[str, str]) -> str:
    """Twilio's ``X-Twilio-Signature``: the base64 HMAC-SHA1, keyed with the auth token, of the URL followed by
    each parameter's name and value in the names' order. The server checks it with the twilio package's
    ``RequestValidator``; this is the same sum in under half that package's CPU (it asks each parameter
    for its list of values and sorts each list), and a second implementation to check that package's
    against (tests/carriers/test_signature.py)."""
    text = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.digest(key, text.encode("utf-8"), "sha1")).decode("ascii")


_ssl_contexts: list = []


def _ssl_context():
    """One TLS context for every Carrier: building one loads the CA bundle (about 0.1 s)."""
    if not _ssl_contexts:
        with _ssl_lock:
            if not _ssl_contexts:
                _ssl_contexts.append(httpx.create_ssl_context())
    return _ssl_contexts[0]


def say_seconds(text: str) -> int:
    """How long a ``<Say>`` takes: 150 words a minute, at least a second."""
    return max(1, math.ceil(len(text.split()) / SAY_WORDS_PER_SECOND))


def entry_seconds(digits: str) -> int:
    """How long the caller takes to key ``digits``."""
    return 0 if not digits else 1 + len(digits) // 2 * SECONDS_PER_TWO_DIGITS


def _keypad(answer: str, verb: Gather) -> tuple[str, str, int]:
    """What a <Gather> collects from the caller's answer: (Digits, FinishedOnKey, extra wait)."""
    if not answer:
        return "", "", verb.timeout
    digits = answer
    for i, ch in enumerate(answer):  # key by key: whichever ends the input first, the finish key or numDigits
        if verb.finish_on_key and ch in verb.finish_on_key:
            return answer[:i], ch, 0
        if verb.num_digits and i + 1 >= verb.num_digits:
            return answer[: i + 1], "", 0
    if verb.finish_on_key:
        return digits, verb.finish_on_key[0], 0  # the caller presses the finish key
    return digits, "", verb.timeout


def normalize_number(text: str) -> str:
    """E.164 for the ways a US number appears in ``<Dial>`` text (``415-123-4567`` …)."""
    digits = re.sub(r"\D", "", text)
    if text.strip().startswith("+"):
        return "+" + digits
    if len(digits) == 10:
        return "+1" + digits
    if len(digits) == 11 and digits.startswith("1"):
        return "+" + digits
    return text.strip()


def _signed_url(url: str) -> str:
    """The URL as the carrier signs it: an https URL without its port."""
    if not url.startswith("https://"):
        return url
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    if host.endswith("]") or ":" not in host:  # no port (an IPv6 literal's colons are inside the brackets)
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc[: parts.netloc.rindex(":")]))


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, the scheme's port when none is written; None if it has none."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _split_fragment(url: str) -> tuple[str, dict[str, int]]:
    """Strip ``#ct=…&rt=…&tt=…&rc=…`` (Twilio's connection overrides) from a URL."""
    if "#" not in url:
        return url, {}
    parts = urlsplit(url)
    overrides: dict[str, int] = {}
    for key, value in parse_qsl(parts.fragment):
        if key in ("ct", "rt", "tt", "rc") and value.isdigit():
            overrides[key] = int(value)
    return urlunsplit(parts._replace(fragment="")), overrides


def _strip_fragment(url: str) -> str:
    return _split_fragment(url)[0]


def _add_query(url: str, params: Mapping[str, str]) -> str:
    if not params:
        return url
    sep = "&" if urlsplit(url).query else "?"
    return url + sep + form_encode(params)
