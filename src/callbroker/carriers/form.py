"""The parameters of a carrier webhook, parsed once per request.

Carriers post ``application/x-www-form-urlencoded`` bodies of 15–30 fields. Django's ``request.POST``
builds a ``QueryDict`` (lists of values, a mutable-guard, per-field method calls) that nothing here
needs; parsing the body into a plain ``dict`` with the same rules costs a fraction and the result is
kept on the request, so the log context (``ops/logging.py``) and the view share one parse.

Same rules as Django's ``QueryDict``: UTF-8 (a body that isn't is read as ISO-8859-1), blank values kept,
a urlencoded body declaring another charset refused (``BadRequest``); a repeated name keeps its last value,
as ``QueryDict.get`` did, and :func:`every_value` gives all of them to the signature check (Twilio signs
each value). Other content types (multipart) and GET requests go through Django's own parsing.

The limits are the carrier's, not Django's (whose ``DATA_UPLOAD_MAX_*`` are sized for the admin's larger
forms, docs/security.md): at most ``CALLBROKER_CARRIER_MAX_FIELDS`` fields (``TooManyFieldsSent``) and
a body of at most ``CALLBROKER_MAX_BODY_BYTES`` bytes (``RequestDataTooBig``), whatever the content type.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from django.conf import settings
from django.core.exceptions import BadRequest, RequestDataTooBig, TooManyFieldsSent
from django.http import HttpRequest

URLENCODED = "application/x-www-form-urlencoded"


def params(request: HttpRequest) -> dict[str, str]:
    """The webhook's parameters (form body for POST, query for GET); raises on an unreadable body."""
    cached = request.__dict__.get("_carrier_params")
    if cached is not None:
        return cached
    repeated: dict[str, list[str]] = {}
    _refuse_a_large_body(request)
    if request.method == "POST" and request.content_type == URLENCODED:
        if request.encoding is not None and request.encoding.lower() != "utf-8":
            raise BadRequest(f"HTTP requests with the '{URLENCODED}' content type must be UTF-8 encoded.")
        pairs = parse_urlencoded(request.body)
        found = dict(pairs)
        if len(found) < len(pairs):  # a name given more than once (rare): keep every value for the signature
            for key, value in pairs:
                repeated.setdefault(key, []).append(value)
            repeated = {key: values for key, values in repeated.items() if len(values) > 1}
    else:
        source = request.POST if request.method == "POST" else request.GET
        if sum(len(values) for _key, values in source.lists()) > settings.CALLBROKER_CARRIER_MAX_FIELDS:
            raise TooManyFieldsSent(TOO_MANY_FIELDS)
        found = {key: source.get(key, "") for key in source}
        repeated = {key: values for key, values in source.lists() if len(values) > 1}
    request._carrier_params = found
    request._carrier_repeated = repeated
    return found


def every_value(request: HttpRequest) -> dict[str, list[str]]:
    """Every value of each name the webhook gave more than once (after :func:`params`), usually nothing."""
    return request.__dict__.get("_carrier_repeated") or {}


TOO_MANY_FIELDS = "The number of GET/POST parameters exceeded settings.CALLBROKER_CARRIER_MAX_FIELDS."


def _refuse_a_large_body(request: HttpRequest) -> None:
    """``RequestDataTooBig`` for a body over ``CALLBROKER_MAX_BODY_BYTES``, by its length, before reading it
    (``RequestLimitsMiddleware`` has refused it already when it runs: this holds without it)."""
    limit = settings.CALLBROKER_MAX_BODY_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0  # Django reads such a body as empty
    if limit is not None and length > limit:
        raise RequestDataTooBig("Request body exceeded settings.CALLBROKER_MAX_BODY_BYTES.")


def parse_urlencoded(body: bytes) -> list[tuple[str, str]]:
    """The body's name-value pairs, in order."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("iso-8859-1")
    try:
        return parse_qsl(text, keep_blank_values=True, encoding="utf-8",
                         max_num_fields=settings.CALLBROKER_CARRIER_MAX_FIELDS)
    except ValueError as exc:
        raise TooManyFieldsSent(TOO_MANY_FIELDS) from exc
