"""Carrier webhooks signed as Twilio signs them, posted in process through Django's test client (no server):
what the call-path tests of the e2e network share. A test module sets the installation's token to ``TOKEN``
(an autouse fixture of its own: ``settings.TWILIO_AUTH_TOKEN = TOKEN``, no extra tokens, no public URL, so
signatures are over ``http://testserver…``)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.test import Client
from twilio.request_validator import RequestValidator

TOKEN = "calls-signed-token"


def sid(n: int) -> str:
    """Call ``n``'s CallSid."""
    return f"CA{n:032x}"


def post(path: str, **params: str) -> str:
    """Post one webhook signed with ``TOKEN``; it must answer 200. The answer's body (TwiML)."""
    url = f"http://testserver{path}"
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    response = Client().post(path, urlencode(params), content_type="application/x-www-form-urlencoded",
                             HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 200
    return response.content.decode()
