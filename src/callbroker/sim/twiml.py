"""TwiML parsing for the carrier emulator: a response body in, frozen verb objects out.

Only the parts of TwiML that callbroker speaks are modelled (see docs/emulator.md); anything
else becomes :class:`Unknown` plus an entry in :attr:`Document.issues`, so a test can assert
that the server produced nothing the emulator does not understand.

Attribute names and defaults follow Twilio's TwiML reference (the names the ``twilio``
package writes): ``<Dial timeout="30" timeLimit="14400">``, ``<Gather timeout="5"
finishOnKey="#">``, ``<Record maxLength="3600" timeout="5" finishOnKey="1234567890*#">``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

MAX_DOCUMENT_BYTES = 64 * 1024  # error 11750 above this

# Twilio error codes the emulator reproduces (https://www.twilio.com/docs/api/errors; docs/emulator.md).
ERROR_RETRIEVAL = "11200"  # HTTP retrieval failure (any status outside 2xx, a redirect included: not followed)
ERROR_TIMEOUT = "11205"  # connection failure or timeout
ERROR_TOO_LARGE = "11750"  # response body larger than 64 kB
ERROR_PARSE = "12100"  # document parse failure
ERROR_CONTENT_TYPE = "12300"  # invalid Content-Type

XML_CONTENT_TYPES = frozenset({"text/xml", "application/xml"})
# Twilio also parses text/html as TwiML; accepted here with an issue recorded.
TOLERATED_CONTENT_TYPES = frozenset({"text/html"})


class TwimlError(ValueError):
    """A document the carrier cannot execute; ``code`` is the Twilio error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------------------------
# Verbs and nouns


@dataclass(frozen=True, slots=True)
class Say:
    text: str
    loop: int = 1
    voice: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class Play:
    url: str
    loop: int = 1
    digits: str | None = None


@dataclass(frozen=True, slots=True)
class Pause:
    length: int = 1


@dataclass(frozen=True, slots=True)
class Gather:
    action: str | None = None  # None = the current document's URL
    method: str = "POST"
    input: tuple[str, ...] = ("dtmf",)
    num_digits: int | None = None
    timeout: int = 5
    finish_on_key: str = "#"
    action_on_empty_result: bool = False
    children: tuple[Say | Play | Pause, ...] = ()


@dataclass(frozen=True, slots=True)
class Number:
    number: str
    url: str | None = None  # whisper TwiML, run on the answering party before bridging
    method: str = "POST"
    status_callback: str | None = None
    status_callback_event: tuple[str, ...] = ("completed",)
    status_callback_method: str = "POST"
    send_digits: str | None = None


@dataclass(frozen=True, slots=True)
class Dial:
    numbers: tuple[Number, ...]
    action: str | None = None
    method: str = "POST"
    timeout: int = 30
    time_limit: int = 14400
    record: str = "do-not-record"
    recording_status_callback: str | None = None
    recording_status_callback_event: tuple[str, ...] = ("completed",)
    recording_status_callback_method: str = "POST"
    caller_id: str | None = None
    answer_on_bridge: bool = False
    unsupported_nouns: tuple[str, ...] = ()  # <Client>, <Sip>, <Conference> …: not emulated

    @property
    def records(self) -> bool:
        return self.record not in ("", "do-not-record", "false")

    @property
    def dual_channel(self) -> bool:
        return self.record.endswith("-dual")


@dataclass(frozen=True, slots=True)
class Record:
    action: str | None = None  # None = the current document's URL
    method: str = "POST"
    max_length: int = 3600
    timeout: int = 5
    finish_on_key: str = "1234567890*#"
    play_beep: bool = True
    transcribe: bool = False
    recording_status_callback: str | None = None
    recording_status_callback_event: tuple[str, ...] = ("completed",)
    recording_status_callback_method: str = "POST"


@dataclass(frozen=True, slots=True)
class Redirect:
    url: str
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


@dataclass(frozen=True, slots=True)
class Reject:
    reason: str = "rejected"


@dataclass(frozen=True, slots=True)
class Unknown:
    tag: str


Verb = Say | Play | Pause | Gather | Dial | Record | Redirect | Hangup | Reject | Unknown


@dataclass(frozen=True, slots=True)
class Document:
    """A parsed ``<Response>``: its verbs in order and what the parser did not understand."""

    verbs: tuple[Verb, ...]
    issues: tuple[str, ...] = field(default=())


# ---------------------------------------------------------------------------------------------
# Parsing


def check_content_type(content_type: str | None) -> str | None:
    """Raise 12300 for a Content-Type the carrier will not parse; return a warning or None."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in XML_CONTENT_TYPES:
        return None
    if media in TOLERATED_CONTENT_TYPES:
        return f"Content-Type {media} tolerated by the carrier; TwiML should be text/xml"
    raise TwimlError(ERROR_CONTENT_TYPE, f"unsupported Content-Type {media or '(none)'!r}")


def parse(body: str | bytes) -> Document:
    """Parse a TwiML document; raise :class:`TwimlError` (12100 / 11750) when it is not one."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise TwimlError(ERROR_TOO_LARGE, f"document is {len(raw)} bytes (limit 64 kB)")
    if not raw.strip():
        raise TwimlError(ERROR_PARSE, "empty document")
    if raw[:1].isspace() or raw.startswith(b"\xef\xbb\xbf") and raw[3:4].isspace():
        raise TwimlError(ERROR_PARSE, "leading whitespace or blank line before the document")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        raise TwimlError(ERROR_PARSE, f"not well-formed XML: {exc}") from None
    if root.tag != "Response":
        raise TwimlError(ERROR_PARSE, f"root element is <{root.tag}>, not <Response>")
    issues: list[str] = []
    verbs = tuple(_verb(element, issues) for element in root)
    return Document(verbs=verbs, issues=tuple(issues))


def _verb(element: ET.Element, issues: list[str]) -> Verb:
    tag = element.tag
    attrs = element.attrib
    if tag == "Say":
        return Say(
            text=_text(element),
            loop=_int(attrs.get("loop"), 1, issues, "Say.loop"),
            voice=attrs.get("voice"),
            language=attrs.get("language"),
        )
    if tag == "Play":
        return Play(
            url=_text(element),
            loop=_int(attrs.get("loop"), 1, issues, "Play.loop"),
            digits=attrs.get("digits"),
        )
    if tag == "Pause":
        return Pause(length=_int(attrs.get("length"), 1, issues, "Pause.length"))
    if tag == "Gather":
        children: list[Say | Play | Pause] = []
        for child in element:
            verb = _verb(child, issues)
            if isinstance(verb, (Say, Play, Pause)):
                children.append(verb)
            else:
                issues.append(f"<{child.tag}> is not allowed inside <Gather> (error 13320)")
        return Gather(
            action=attrs.get("action"),
            method=_method(attrs.get("method"), issues),
            input=tuple((attrs.get("input") or "dtmf").split()),
            num_digits=_int(attrs.get("numDigits"), None, issues, "Gather.numDigits"),
            timeout=_int(attrs.get("timeout"), 5, issues, "Gather.timeout"),
            finish_on_key=attrs.get("finishOnKey", "#"),
            action_on_empty_result=_bool(attrs.get("actionOnEmptyResult"), False),
            children=tuple(children),
        )
    if tag == "Dial":
        return _dial(element, issues)
    if tag == "Record":
        return Record(
            action=attrs.get("action"),
            method=_method(attrs.get("method"), issues),
            max_length=_int(attrs.get("maxLength"), 3600, issues, "Record.maxLength") or 3600,
            timeout=_int(attrs.get("timeout"), 5, issues, "Record.timeout"),
            finish_on_key=attrs.get("finishOnKey", "1234567890*#"),
            play_beep=_bool(attrs.get("playBeep"), True),
            transcribe=_bool(attrs.get("transcribe"), False),
            recording_status_callback=attrs.get("recordingStatusCallback"),
            recording_status_callback_event=_events(attrs.get("recordingStatusCallbackEvent")),
            recording_status_callback_method=_method(attrs.get("recordingStatusCallbackMethod"), issues),
        )
    if tag == "Redirect":
        url = _text(element)
        if not url:
            issues.append("<Redirect> without a URL")
        return Redirect(url=url, method=_method(attrs.get("method"), issues))
    if tag == "Hangup":
        return Hangup()
    if tag == "Reject":
        reason = attrs.get("reason", "rejected")
        if reason not in ("rejected", "busy"):
            issues.append(f"<Reject reason={reason!r}> is not rejected|busy")
        return Reject(reason=reason)
    issues.append(f"unknown verb <{tag}>")
    return Unknown(tag=tag)


def _dial(element: ET.Element, issues: list[str]) -> Dial:
    attrs = element.attrib
    numbers: list[Number] = []
    unsupported: list[str] = []
    for child in element:
        if child.tag == "Number":
            a = child.attrib
            numbers.append(
                Number(
                    number=_text(child),
                    url=a.get("url"),
                    method=_method(a.get("method"), issues),
                    status_callback=a.get("statusCallback"),
                    status_callback_event=_events(a.get("statusCallbackEvent")),
                    status_callback_method=_method(a.get("statusCallbackMethod"), issues),
                    send_digits=a.get("sendDigits"),
                )
            )
        else:
            unsupported.append(child.tag)
            issues.append(f"<Dial><{child.tag}> is not emulated")
    text = (element.text or "").strip()
    if text and not numbers and not unsupported:
        numbers.append(Number(number=text))
    if len(numbers) > 10:
        issues.append(f"<Dial> with {len(numbers)} <Number>s (Twilio allows 10)")
    record = attrs.get("record", "do-not-record")
    if record == "true":
        record = "record-from-answer"
    if record not in (
        "do-not-record",
        "false",
        "record-from-answer",
        "record-from-ringing",
        "record-from-answer-dual",
        "record-from-ringing-dual",
    ):
        issues.append(f"<Dial record={record!r}> is not a Twilio value")
    return Dial(
        numbers=tuple(numbers),
        action=attrs.get("action"),
        method=_method(attrs.get("method"), issues),
        timeout=_int(attrs.get("timeout"), 30, issues, "Dial.timeout"),
        time_limit=_int(attrs.get("timeLimit"), 14400, issues, "Dial.timeLimit"),
        record=record,
        recording_status_callback=attrs.get("recordingStatusCallback"),
        recording_status_callback_event=_events(attrs.get("recordingStatusCallbackEvent")),
        recording_status_callback_method=_method(attrs.get("recordingStatusCallbackMethod"), issues),
        caller_id=attrs.get("callerId"),
        answer_on_bridge=_bool(attrs.get("answerOnBridge"), False),
        unsupported_nouns=tuple(unsupported),
    )


def _text(element: ET.Element) -> str:
    return " ".join((element.text or "").split())


def _int(value: str | None, default, issues: list[str], what: str):
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        issues.append(f"{what}={value!r} is not an integer")
        return default


def _bool(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() == "true"


def _method(value: str | None, issues: list[str]) -> str:
    method = (value or "POST").upper()
    if method not in ("GET", "POST"):
        issues.append(f"method={value!r} is not GET or POST")
        return "POST"
    return method


def _events(value: str | None) -> tuple[str, ...]:
    if not value:
        return ("completed",)
    return tuple(part for part in re.split(r"[\s,]+", value.strip()) if part)
