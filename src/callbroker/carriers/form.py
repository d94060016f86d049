"""The parameters of a carrier webhook, parsed once per request.

Carriers post ``application/x-www-form-urlencoded`` bodies of 15–30 fields. Django's ``request.POST``
builds a ``QueryDict`` (lists of values, a mutable-guard, per-field method calls) that nothing here
needs; parsing the body into a plain ``dict`` with the same rules costs a fraction and the result is
kept on the request, so the log context (``ops/logging.py``) and the view share one parse.

Same rules as Django's ``QueryDict``: UTF-8 (a body that isn't is read as ISO-8859-1), blank values kept,
at most ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` fields (``TooManyFieldsSent``), the body at most
``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes (``RequestDataTooBig``), a urlencoded body declaring another
charset refused (``BadRequest``); a repeated name keeps its last value, as ``QueryDict.get`` did, and
:func:`every_value` gives all of them to the signature check (Twilio signs each value). Other content types
(multipart) and GET requests go through Django's own parsing.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from django.conf import settings
from django.core.exceptions import BadRequest, TooManyFieldsSent
from django.http import HttpRequest

URLENCODED = "application/x-www-form-urlencoded"


def params(request: HttpRequest) -> dict[str, str]:
    """The webhook's parameters (form body for POST, query for GET); raises on an unreadable body."""
    cached = request.__dict__.get("_carrier_params")
    if cached is not None:
        return cached
    repeated: dict[str, list[str]] = {}
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
        found = {key: source.get(key, "") for key in source}
        repeated = {key: values for key, values in source.lists() if len(values) > 1}
    request._carrier_params = found
    request._carrier_repeated = repeated
    return found


def every_value(request: HttpRequest) -> dict[str, list[str]]:
    """Every value of each name the webhook gave more than once (after :func:`params`), usually nothing."""
    return request.__dict__.get("_carrier_repeated") or {}


def parse_urlencoded(body: bytes) -> list[tuple[str, str]]:
    """The body's name-value pairs, in order."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("iso-8859-1")
    try:
        return parse_qsl(text, keep_blank_values=True, encoding="utf-8",
                         max_num_fields=settings.DATA_UPLOAD_MAX_NUMBER_FIELDS)
    except ValueError as exc:
        raise TooManyFieldsSent("The number of GET/POST parameters exceeded "
                                "settings.DATA_UPLOAD_MAX_NUMBER_FIELDS.") from exc
