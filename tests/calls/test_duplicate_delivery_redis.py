"""A webhook delivered twice at once changes nothing the second time, Redis counters included.

Given Redis live counters, when the same voice webhook reaches two workers at the same instant, both look
for its stored answer before either has committed; the second then waits for the first (the call's lock
on PostgreSQL, the writers' lock on SQLite). It must answer what the first answered without running the
handler again: run again, it takes a second concurrency slot in Redis under the same slot name, which
only its rolled-back transaction gives back, and meanwhile other calls on other nodes see the target
fuller than it is (a real server on PostgreSQL + Redis refused a caller with a line free in 3 of 8 rounds
of three calls each delivered three times at once).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.test import Client
from twilio.request_validator import RequestValidator

from callbroker.calls import services
from callbroker.network import live
from callbroker.network.loader import load_network
from callbroker.network.snapshot import current_snapshot, reset_snapshot
from callbroker.ops import limits as rate_limits

E2E_NETWORK = Path(__file__).resolve().parents[1] / "e2e" / "network.yaml"
TOKEN = "duplicate-test-token"
PUBLIC = "https://cb.test"
PLUMBING, LINE_A = "+15125550001", "+15125550101"  # Line A: priority 1, concurrency 5


@pytest.fixture
def redis_world(transactional_db, settings, tmp_path, redis_server):
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.TWILIO_AUTH_TOKENS_EXTRA = []
    settings.PUBLIC_URL = PUBLIC
    settings.DATA_DIR = tmp_path
    settings.REDIS_URL = redis_server.url
    settings.COUNTERS_BACKEND = "redis"
    settings.REDIS_KEY_PREFIX = f"dup-{uuid.uuid4().hex[:8]}:"
    reset_snapshot()
    rate_limits.reset()
    load_network(E2E_NETWORK)
    yield
    reset_snapshot()
    rate_limits.reset()


def post_voice(client: Client, params: dict[str, str]) -> str:
    path = "/carriers/twilio/voice"
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC + path, params)
    response = client.post(path, data=urlencode(params), content_type="application/x-www-form-urlencoded",
                           headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200
    return response.content.decode()


def line_a_active() -> int:
    snap = current_snapshot(check_version=False)
    line = next(t for t in snap.targets.values() if t.core.number == LINE_A)
    store = live.current_backend().store
    return store.read([line.core], {line.core.id: line.timezone}, services.timezone.now())[line.core.id].active


def test_a_duplicate_that_looked_before_the_first_committed_takes_no_slot_in_redis(redis_world, monkeypatch):
    client = Client(raise_request_exception=False)
    params = {"CallSid": "CA" + uuid.uuid4().hex, "AccountSid": "AC" + "5" * 32, "From": "+15124445555",
              "To": PLUMBING, "CallStatus": "ringing", "Direction": "inbound", "FromZip": "78701"}
    first = post_voice(client, params)
    assert LINE_A in first
    assert line_a_active() == 1

    # The second delivery looked for the stored answer before the first committed (it found none), then
    # waited for the first's locks: what it does with them is what is checked.
    real = services._stored_answer_and_version
    monkeypatch.setattr(services, "_stored_answer_and_version", lambda event: (None, real(event)[1]))
    seen_while_handling: list[int] = []
    real_reserve = live.reserve

    def reserve(*args, **kwargs):
        refused = real_reserve(*args, **kwargs)
        seen_while_handling.append(line_a_active())
        return refused

    monkeypatch.setattr(live, "reserve", reserve)
    second = post_voice(client, params)

    assert second == first
    assert seen_while_handling == [], f"the duplicate took Line A's slot again: {seen_while_handling} held"
    assert line_a_active() == 1
