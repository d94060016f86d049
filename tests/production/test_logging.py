"""Structured logs in this process: the middleware, the filter and the JSON formatter (``ops/logging.py``)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from callbroker.ops.logging import CallContextMiddleware, ContextFilter, JsonFormatter, call_sid_var, path_var


@pytest.fixture()
def captured():
    """Every record of every logger, as the console handler of ``settings.LOGGING`` writes it in JSON."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(node="node-t"))
    handler.addFilter(ContextFilter(node="node-t"))
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_a_forged_webhook_is_logged_with_its_call_sid_and_path(client, captured):
    response = client.post("/carriers/twilio/voice", {"CallSid": "CA" + "1" * 32, "To": "+15125550001"},
                           HTTP_X_TWILIO_SIGNATURE="forged")
    assert response.status_code == 403
    [entry] = [e for e in captured() if "invalid signature" in e["message"]]
    assert entry["call_sid"] == "CA" + "1" * 32
    assert entry["path"] == "/carriers/twilio/voice"
    assert entry["node"] == "node-t" and entry["level"] == "WARNING" and entry["logger"] == "callbroker.carriers"
    assert call_sid_var.get() == "" and path_var.get() == ""  # nothing leaks past the request


def test_the_parent_call_sid_names_a_buyer_leg_callback(client, captured):
    client.post("/carriers/twilio/whisper?c=1", {"CallSid": "CA" + "c" * 32, "ParentCallSid": "CA" + "p" * 32},
                HTTP_X_TWILIO_SIGNATURE="forged")
    assert {e["call_sid"] for e in captured() if e["path"] == "/carriers/twilio/whisper"} == {"CA" + "p" * 32}


@pytest.mark.parametrize("body", ["CallSid=CA1&x=" + "a" * 70_000, "&".join(f"k{i}=v" for i in range(300))])
def test_reading_the_call_sid_leaves_an_unreadable_body_to_the_view(rf, body):
    """The middleware swallows the error an oversized body raises; the view still sees it and answers 400."""
    from callbroker.carriers import views

    request = rf.post("/carriers/twilio/voice", data=body, content_type="application/x-www-form-urlencoded")
    response = CallContextMiddleware(views.voice)(request)
    assert response.status_code == 400 and b"unreadable body" in response.content


def test_call_sid_is_cleaned_of_anything_that_could_forge_a_log_line():
    from urllib.parse import urlencode

    from django.test import RequestFactory

    body = urlencode({"CallSid": 'CA12\n{"level": "ERROR"}'})
    request = RequestFactory().post("/carriers/twilio/status", body, content_type="application/x-www-form-urlencoded")
    seen = []
    CallContextMiddleware(lambda request: seen.append(call_sid_var.get()))(request)
    assert seen == ["CA12level:ERROR"]


def test_json_lines_carry_the_exception_text():
    record = logging.LogRecord("callbroker.x", logging.ERROR, __file__, 1, "failed for %s", ("CA1",), None)
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    ContextFilter(node="n").filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "failed for CA1" and entry["level"] == "ERROR"
    assert "ValueError: boom" in entry["exception"] and "Traceback" in entry["exception"]
    assert entry["time"].endswith("Z")


def test_plain_lines_show_the_call_sid_in_brackets():
    formatter = logging.Formatter("%(levelname)s %(call_sid_tag)s%(message)s")
    record = logging.LogRecord("callbroker.x", logging.INFO, __file__, 1, "hello", (), None)
    token = call_sid_var.set("CA9")
    try:
        ContextFilter().filter(record)
    finally:
        call_sid_var.reset(token)
    assert formatter.format(record) == "INFO [CA9] hello"


def test_the_refusal_line_forges_no_line_and_names_the_client_behind_the_proxy(client, captured, settings):
    """The message itself carried the stranger's CallSid as sent (a line break forged a log line in plain
    format) and the proxy's address instead of the client's."""
    from callbroker.ops import limits

    settings.CALLBROKER_RATE_TRUSTED_PROXIES = ["127.0.0.1"]
    limits.reset()
    try:
        response = client.post("/carriers/twilio/voice", {"CallSid": "CA1\n2026-12-06 CRITICAL forged", "To": "+1"},
                               HTTP_X_TWILIO_SIGNATURE="forged", HTTP_X_FORWARDED_FOR="203.0.113.9",
                               REMOTE_ADDR="127.0.0.1")
    finally:
        limits.reset()
    assert response.status_code == 403
    [entry] = [e for e in captured() if "invalid signature" in e["message"]]
    assert "\n" not in entry["message"] and "CallSid=CA12026-12-06CRITICALforged" in entry["message"]
    assert entry["message"].endswith("from 203.0.113.9)")
