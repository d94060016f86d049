"""Structured logs: the CallSid on every line of a call; one JSON object per line in production.

- :class:`CallContextMiddleware` puts the request path and, for a carrier webhook, the call's SID into
  context variables for the time of the request.
- :class:`ContextFilter` (on the console handler, so it sees every logger's records) copies them onto
  each record as ``call_sid``, ``path`` and ``node``: a line logged anywhere while a webhook is handled
  — the call flow, the database layer, Django itself — carries the call's SID without anyone passing it.
- :class:`JsonFormatter` writes ``{"time", "level", "logger", "message", "call_sid", "node", "path"}``
  plus ``"exception"`` (the traceback text) when there is one. ``CALLBROKER_LOG_FORMAT=json`` selects
  it (the default when ``CALLBROKER_ENV=production``); ``plain`` keeps one readable line, with the SID in
  brackets when there is one.

Which SID: the inbound call's. A callback about the buyer's leg (the whisper URL) names the leg as
``CallSid`` and the inbound call as ``ParentCallSid``; ``ParentCallSid`` wins when present, so that
every line of one caller's call can be found with one search.

Stdlib only at import time: ``settings.LOGGING`` and the gunicorn config module refer to this module.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import socket
from collections.abc import Callable
from contextvars import ContextVar

#: SID of the call the current request is about ("" outside carrier webhooks).
call_sid_var: ContextVar[str] = ContextVar("callbroker_call_sid", default="")
#: Path of the current request ("" outside requests).
path_var: ContextVar[str] = ContextVar("callbroker_request_path", default="")

CARRIER_PATH_PREFIX = "/carriers/"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def clean_sid(value: str) -> str:
    """A CallSid as it may go into a log line: a SID's characters only (a stranger's value forges nothing)."""
    return _UNSAFE.sub("", value[:64])


def current_call_sid() -> str:
    """The SID of the call being handled by this request/thread, or ""."""
    return call_sid_var.get()


def _sid_of(request) -> str:
    """ParentCallSid or CallSid of a carrier webhook (form body or query); "" when unreadable."""
    from callbroker.carriers import form  # here: this module is imported by settings, before Django is set up

    try:
        source = form.params(request)
        sid = source.get("ParentCallSid") or source.get("CallSid") or request.GET.get("CallSid", "")
    except Exception:  # noqa: BLE001 - an unreadable body is the view's to answer (400), not ours
        return ""
    return clean_sid(sid)


class CallContextMiddleware:
    """Sets :data:`path_var` for every request and :data:`call_sid_var` for carrier webhooks."""

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info  # without the path of CALLBROKER_PUBLIC_URL, which the proxy stripped
        path_token = path_var.set(path)
        sid_token = call_sid_var.set(_sid_of(request) if path.startswith(CARRIER_PATH_PREFIX) else "")
        try:
            return self.get_response(request)
        finally:
            call_sid_var.reset(sid_token)
            path_var.reset(path_token)


class ContextFilter(logging.Filter):
    """Adds ``call_sid``, ``call_sid_tag`` ("[CA…] " or ""), ``node`` and ``path`` to every record."""

    def __init__(self, node: str = "") -> None:
        super().__init__()
        self.node = node or socket.gethostname()

    def filter(self, record: logging.LogRecord) -> bool:
        sid = getattr(record, "call_sid", "") or call_sid_var.get()  # an explicit extra={"call_sid": …} wins
        record.call_sid = sid
        record.call_sid_tag = f"[{sid}] " if sid else ""
        record.node = self.node
        record.path = getattr(record, "path", "") or path_var.get()
        return True


def configure(config: dict) -> None:
    """``settings.LOGGING_CONFIG``: Django's ``dictConfig``, plus Python warnings sent through logging.

    Without ``captureWarnings`` a ``UserWarning`` would be printed raw on standard error, breaking the
    one-JSON-object-per-line promise; through logging it becomes a line of logger ``py.warnings``.
    """
    import logging.config

    logging.config.dictConfig(config)
    logging.captureWarnings(True)


#: What may not appear inside a plain log line: a line break (or any control character) would start a line
#: of its own, so a webhook's value could forge one.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class PlainFormatter(logging.Formatter):
    """``2026-12-07 05:14:03,120 WARNING callbroker.carriers.views [CA…] message``: one line per record, control
    characters in it shown as ``?`` (a traceback still follows on lines of its own)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(call_sid_tag)s%(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return _UNPRINTABLE.sub("?", super().formatMessage(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line (newlines inside messages and tracebacks are escaped by JSON)."""

    def __init__(self, *args, node: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.node = node or socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "call_sid": getattr(record, "call_sid", "") or call_sid_var.get(),
            "node": getattr(record, "node", "") or self.node,
            "path": getattr(record, "path", "") or path_var.get(),
        }
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
