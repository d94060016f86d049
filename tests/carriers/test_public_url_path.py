"""``CALLBROKER_PUBLIC_URL`` with a path (``https://host/cb``), behind a proxy that strips it: a real server
(gunicorn, as ``callbroker serve`` starts it) asked as that proxy asks it, the path gone from ``PATH_INFO``.

Formerly the webhooks verified, and nothing else followed the path: the admin's form action, its redirects and
its static files went to ``/admin/`` and ``/static/`` (the proxy's, outside callbroker), the root redirected
there too, and the rate limits, the webhook metrics and the CallSid of the log lines, which tell paths apart
by their start, would have missed every path once Django put the prefix back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from twilio.request_validator import RequestValidator

from callbroker.ops.server import start_server, stop_server
from tests.services import free_port

TOKEN = "public-url-path-token"
NETWORK = Path(__file__).resolve().parents[2] / "src/callbroker/network/demo/example-network.yaml"
STRANGER = "203.0.113.9"  # a client behind the proxy (named in X-Forwarded-For)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The server and the public URL it was given: its own address + ``/cb``."""
    data_dir = tmp_path_factory.mktemp("public-url-path")
    port = free_port()
    public = f"http://127.0.0.1:{port}/cb"
    env = {"CALLBROKER_DATA_DIR": str(data_dir), "CALLBROKER_ENV": "development", "DATABASE_URL": "",
           "REDIS_URL": "", "CALLBROKER_PUBLIC_URL": public, "CALLBROKER_ALLOWED_HOSTS": "127.0.0.1",
           "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_AUTH_TOKENS_EXTRA": "", "TWILIO_ACCOUNT_SID": "",
           "CALLBROKER_METRICS_TOKEN": "", "CALLBROKER_LOG_FORMAT": "plain", "CALLBROKER_LOG_LEVEL": "INFO",
           "CALLBROKER_RATE_TRUSTED_PROXIES": "127.0.0.1",
           "CALLBROKER_RATE_ADMIN_LOGIN_BURST": "2", "CALLBROKER_RATE_REFUSED_BURST": "2"}
    for argv in (["migrate", "--verbosity", "0"], ["network", "load", str(NETWORK)]):
        subprocess.run([sys.executable, "-m", "callbroker.cli", *argv], env={**os.environ, **env}, check=True,
                       stdout=subprocess.DEVNULL)
    log = data_dir / "server.log"
    proc = start_server("127.0.0.1", port, 1, env=env, log_path=log)
    try:
        yield f"http://127.0.0.1:{port}", public, log
    finally:
        stop_server(proc)


def signed_post(base: str, public: str, path: str, params: dict[str, str]) -> httpx.Response:
    """A webhook as the carrier signs it (over the public URL, path included), as the proxy passes it on."""
    signature = RequestValidator(TOKEN).compute_signature(public + path, params)
    return httpx.post(base + path, content=urlencode(params), timeout=30,
                      headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})


def test_the_admin_links_redirects_and_static_files_carry_the_path(server):
    base, _, _ = server
    login = httpx.get(base + "/admin/login/", timeout=30)
    assert login.status_code == 200
    assert re.findall(r'<form[^>]* action="([^"]*)"', login.text) == ["/cb/admin/login/"]
    assert "Path=/cb/" in login.headers["Set-Cookie"]  # the CSRF cookie: the host name's other sites don't get it
    stylesheet = re.search(r'href="([^"]*/base\.css)"', login.text).group(1)
    assert stylesheet == "/cb/static/admin/css/base.css"
    # the proxy strips /cb: the node serves the file at the path it sees
    assert httpx.get(base + stylesheet.removeprefix("/cb"), timeout=30).status_code == 200
    index = httpx.get(base + "/admin/", timeout=30)
    assert index.status_code == 302 and index.headers["Location"] == "/cb/admin/login/?next=/cb/admin/"
    root = httpx.get(base + "/", timeout=30)
    assert root.status_code == 302 and root.headers["Location"] == "/cb/admin/"


def test_webhooks_signed_over_the_public_url_verify_and_call_back_under_it(server):
    base, public, log = server
    call = {"CallSid": "CA" + "7" * 32, "AccountSid": "AC" + "0" * 32, "From": "+15125550123",
            "To": "+15125550001", "CallStatus": "ringing", "Direction": "inbound"}
    answer = signed_post(base, public, "/carriers/twilio/voice", call)
    assert answer.status_code == 200, answer.text
    callbacks = re.findall(r'(?:action|url|statusCallback)="([^"]*)"', answer.text)
    assert callbacks and all(url.startswith(public + "/carriers/twilio/") for url in callbacks), answer.text
    assert signed_post(base, public, "/carriers/twilio/fallback", call).status_code == 200
    # signed over the URL without the path: not the URL the carrier calls
    wrong = RequestValidator(TOKEN).compute_signature(base + "/carriers/twilio/fallback", call)
    refused = httpx.post(base + "/carriers/twilio/fallback", data=call, headers={"X-Twilio-Signature": wrong},
                         timeout=30)
    assert refused.status_code == 403
    metrics = httpx.get(base + "/metrics", timeout=30).text
    assert 'callbroker_webhook_responses_total{endpoint="twilio-voice",status="200"} 1.0' in metrics
    assert f"[{call['CallSid']}]" in log.read_text()  # the log lines of the webhook carry its CallSid


def test_the_rate_limits_tell_the_login_and_the_carrier_paths_apart(server):
    base, _, _ = server
    stranger = {"X-Forwarded-For": STRANGER}
    # failed logins (no CSRF token: 403) from one client: the third is refused unread
    logins = [httpx.post(base + "/admin/login/", data={"username": "admin", "password": "guess"}, headers=stranger,
                         timeout=30).status_code for _ in range(3)]
    assert logins == [403, 403, 429]
    # unsigned webhooks from one client: refused (403), then throttled as refused carrier requests (429)
    webhooks = [httpx.post(base + "/carriers/twilio/status", data={"CallSid": "CA" + "8" * 32}, headers=stranger,
                           timeout=30).status_code for _ in range(3)]
    assert webhooks == [403, 403, 429]
