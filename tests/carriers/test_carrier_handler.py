"""``callbroker.wsgi``'s carrier handler (what gunicorn serves for ``/carriers/…``), in process: each fixed
carrier path is resolved once and its match kept; the metrics series of each endpoint and status too."""

from __future__ import annotations

import io
import sys
from urllib.parse import urlencode

import pytest
from django.test import override_settings
from django.urls.resolvers import URLResolver
from prometheus_client import REGISTRY
from twilio.request_validator import RequestValidator

from callbroker import wsgi

TOKEN = "handler-test-token"
PARAMS = {"CallSid": "CA" + "7" * 32, "AccountSid": "AC" + "b" * 32, "To": "+15125550101",
          "ErrorCode": "11200", "ErrorUrl": "https://example.com/carriers/twilio/voice"}


def post(path: str) -> tuple[str, bytes]:
    body = urlencode(PARAMS).encode()
    signature = RequestValidator(TOKEN).compute_signature(f"http://testserver{path}", PARAMS)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "testserver",
               "SERVER_PORT": "80", "HTTP_HOST": "testserver", "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1",
               "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "REMOTE_ADDR": "127.0.0.1",
               "HTTP_X_TWILIO_SIGNATURE": signature}
    started = []
    answer = b"".join(wsgi.application(environ, lambda status, headers, exc_info=None: started.append(status)))
    return started[0], answer


@pytest.fixture
def handler(settings, monkeypatch):
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.TWILIO_AUTH_TOKENS_EXTRA = []
    settings.PUBLIC_URL = ""
    settings.ALLOWED_HOSTS = ["testserver"]
    monkeypatch.setattr(wsgi.carriers, "_exact", {})
    resolved = []
    original = URLResolver.resolve

    def counting(self, path):
        resolved.append(path)
        return original(self, path)

    monkeypatch.setattr(URLResolver, "resolve", counting)
    return resolved


@pytest.mark.django_db
def test_a_carrier_path_is_resolved_once_and_its_match_kept(handler):
    status, answer = post("/carriers/twilio/fallback")
    assert status == "200 OK" and b"<Response>" in answer
    assert handler  # Django's resolver walked the patterns the first time
    kept = wsgi.carriers._exact["/carriers/twilio/fallback"]
    assert kept.url_name == "twilio-fallback"
    handler.clear()
    assert post("/carriers/twilio/fallback") == (status, answer)
    assert handler == []  # not the second time
    assert wsgi.carriers._exact["/carriers/twilio/fallback"] is kept


@pytest.mark.django_db
def test_an_unknown_carrier_path_is_never_kept(handler):
    for _ in range(2):
        status, _answer = post("/carriers/twilio/nowhere")
        assert status.startswith("404")
    assert handler.count("/carriers/twilio/nowhere") == 2 and wsgi.carriers._exact == {}  # asked each time


@pytest.mark.django_db
def test_kept_matches_are_forgotten_with_the_url_map(handler):
    post("/carriers/twilio/fallback")
    with override_settings(ROOT_URLCONF="tests.carriers.urls_other"):
        assert wsgi.carriers._exact == {}
        assert post("/carriers/twilio/fallback") == ("200 OK", b"other map")
    assert post("/carriers/twilio/fallback")[1].count(b"<Response>") == 1


@pytest.mark.django_db
def test_every_webhook_is_timed_and_counted_with_its_series_kept(handler):
    def counts():
        return (REGISTRY.get_sample_value("callbroker_webhook_duration_seconds_count", {"endpoint": "twilio-fallback"})
                or 0, REGISTRY.get_sample_value("callbroker_webhook_responses_total",
                                                {"endpoint": "twilio-fallback", "status": "200"}) or 0)
    before = counts()
    for _ in range(3):
        post("/carriers/twilio/fallback")
    assert counts() == (before[0] + 3, before[1] + 3)
