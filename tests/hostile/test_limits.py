"""The request limits (callbroker.ops.limits): body size before reading, token buckets, client address."""

from __future__ import annotations

import io
import logging

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import RequestFactory

from callbroker.ops import limits
from callbroker.ops.limits import (
    Buckets,
    MemoryBuckets,
    Rate,
    RedisBuckets,
    RequestLimitsMiddleware,
    StaffBodyMiddleware,
)
from tests.hostile.conftest import inbound, post_signed

STRANGER = "203.0.113.9"
VOICE = "/carriers/twilio/voice"


class Unreadable(io.RawIOBase):
    """A request body that fails the test if anyone reads it."""

    def read(self, *args):
        pytest.fail("the body was read")

    readline = read


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _fresh_buckets():
    limits.reset()
    yield
    limits.reset()


def middleware(view=None) -> RequestLimitsMiddleware:
    return RequestLimitsMiddleware(view or (lambda request: HttpResponse("ok")))


# --------------------------------------------------------------------------- body size


@pytest.mark.parametrize("path", [VOICE, "/admin/login/", "/healthz"])
def test_a_body_over_the_limit_is_refused_before_it_is_read(path, settings):
    settings.CALLBROKER_MAX_BODY_BYTES = 1000
    request = RequestFactory().post(path, data=b"x", content_type="application/x-www-form-urlencoded",
                                    REMOTE_ADDR=STRANGER)
    request.META["CONTENT_LENGTH"] = "1001"
    request.META["wsgi.input"] = Unreadable()
    response = middleware(lambda r: pytest.fail("the view ran"))(request)
    assert response.status_code == 413
    assert b"1000 bytes" in response.content


def test_a_body_at_the_limit_goes_through(settings):
    settings.CALLBROKER_MAX_BODY_BYTES = 1000
    request = RequestFactory().post("/healthz", data=b"x" * 1000, content_type="text/plain", REMOTE_ADDR=STRANGER)
    assert middleware()(request).status_code == 200


# --------------------------------------------------------------------------- admin pages: larger, for staff

ADMIN_PAGE = "/admin/network/publisher/add/"
FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize("address", [STRANGER, "127.0.0.1"])
def test_admin_pages_take_a_larger_body_from_staff_only(client, settings, django_user_model, address):
    settings.CALLBROKER_MAX_BODY_BYTES = 1000
    settings.CALLBROKER_ADMIN_MAX_BODY_BYTES = 5000
    staff = django_user_model.objects.create_superuser("ops", "ops@example.com", "right")
    clerk = django_user_model.objects.create_user("clerk", "clerk@example.com", "right")  # not staff

    def post(path: str, size: int):
        return client.post(path, "name=" + "x" * (size - 5), content_type=FORM, REMOTE_ADDR=address)

    anonymous = post(ADMIN_PAGE, 2000)
    assert anonymous.status_code == 413 and b"1000 bytes" in anonymous.content
    client.force_login(clerk)
    assert post(ADMIN_PAGE, 2000).status_code == 413
    client.force_login(staff)
    assert post(ADMIN_PAGE, 2000).status_code == 200  # the form again, with its errors: it was read
    too_large = post(ADMIN_PAGE, 5001)
    assert too_large.status_code == 413 and b"5000 bytes" in too_large.content
    # Before logging in, and everywhere else, the small limit holds, whoever sends it.
    for path in ("/admin/login/", VOICE, "/healthz"):
        assert post(path, 1001).status_code == 413, path


def test_a_larger_admin_body_is_refused_unread_when_the_user_is_not_staff(settings):
    from django.contrib.auth.models import AnonymousUser

    settings.CALLBROKER_MAX_BODY_BYTES = 1000
    request = RequestFactory().post(ADMIN_PAGE, data=b"x", content_type=FORM, REMOTE_ADDR=STRANGER)
    request.META["CONTENT_LENGTH"] = "1001"
    request.META["wsgi.input"] = Unreadable()

    def authenticated(request):
        request.user = AnonymousUser()
        return StaffBodyMiddleware(lambda r: pytest.fail("the view ran"))(request)

    response = middleware(authenticated)(request)
    assert response.status_code == 413 and b"1000 bytes" in response.content


def test_the_staff_check_runs_once_the_user_is_known_and_not_for_carriers():
    from django.conf import settings

    name = "callbroker.ops.limits.StaffBodyMiddleware"
    position = settings.MIDDLEWARE.index(name)
    assert settings.MIDDLEWARE[position - 1] == "django.contrib.auth.middleware.AuthenticationMiddleware"
    assert name not in settings.CARRIER_MIDDLEWARE
    assert settings.CALLBROKER_MAX_BODY_BYTES == 64 * 1024 and settings.CALLBROKER_CARRIER_MAX_FIELDS == 200
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE >= settings.CALLBROKER_ADMIN_MAX_BODY_BYTES


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", "１２", "12 34", "9" * 30, "0x10"])
def test_a_malformed_content_length_is_refused(value):
    request = RequestFactory().post(VOICE, data=b"x", content_type="text/plain", REMOTE_ADDR=STRANGER)
    request.META["CONTENT_LENGTH"] = value
    request.META["wsgi.input"] = Unreadable()
    assert middleware()(request).status_code == 400


@pytest.mark.parametrize("coding", ["chunked", "gzip, chunked", "identity"])
def test_a_body_without_a_length_is_refused_unread(coding):
    request = RequestFactory().post(VOICE, data=b"", content_type="application/x-www-form-urlencoded",
                                    REMOTE_ADDR=STRANGER, HTTP_TRANSFER_ENCODING=coding)
    request.META.pop("CONTENT_LENGTH", None)
    request.META["wsgi.input"] = Unreadable()
    assert middleware()(request).status_code == 411


# --------------------------------------------------------------------------- refused carrier requests


def test_strangers_failing_signatures_are_throttled_but_the_carrier_never_is(carrier_world, settings):
    settings.CALLBROKER_RATE_REFUSED_PER_MIN = 30
    settings.CALLBROKER_RATE_REFUSED_BURST = 5
    client, target = carrier_world.client, carrier_world.target
    params = inbound("CA" + "5" * 32, "+15125550001")
    forged = [client.post(VOICE, data=params, REMOTE_ADDR=STRANGER, headers={"X-Twilio-Signature": "bad"}) for _ in range(5)]
    assert [r.status_code for r in forged] == [403] * 5
    # The bucket is spent: unsigned requests are refused unread, forged ones get 429 instead of 403.
    unsigned = client.post(VOICE, data=params, REMOTE_ADDR=STRANGER)
    assert unsigned.status_code == 429
    assert int(unsigned["Retry-After"]) >= 1
    again = client.post(VOICE, data=params, REMOTE_ADDR=STRANGER, headers={"X-Twilio-Signature": "bad"})
    assert again.status_code == 429
    # A request whose signature verifies always goes through, from the very same address.
    genuine = post_signed(client, target, VOICE, params, REMOTE_ADDR=STRANGER)
    assert genuine.status_code == 200 and genuine.content.startswith(b"<?xml")
    # Another address is not affected.
    other = client.post(VOICE, data=params, REMOTE_ADDR="203.0.113.10")
    assert other.status_code == 403


def test_the_refused_bucket_refills(settings):
    clock = Clock()
    store = MemoryBuckets(clock)
    rate = Rate(per_minute=30, burst=2)
    assert store.update("k", rate, 1, 1).allowed and store.update("k", rate, 1, 1).allowed
    refused = store.update("k", rate, 1, 1)
    assert not refused.allowed and refused.retry_after == pytest.approx(2.0)
    clock.now += 2.0
    assert store.update("k", rate, 1, 1).allowed
    clock.now += 3600
    assert store.update("k", rate, 0, 1).allowed  # full again, and a peek takes nothing
    assert store.update("k", rate, 1, 2).allowed


def test_memory_buckets_forget_the_least_recently_seen_clients():
    store = MemoryBuckets(Clock(), max_keys=3)
    rate = Rate(per_minute=1, burst=1)
    for key in ("a", "b", "c", "d"):
        store.update(key, rate, 1, 1)
    assert not store.update("d", rate, 1, 1).allowed
    assert store.update("a", rate, 1, 1).allowed  # forgotten: starts full


# --------------------------------------------------------------------------- volume limits


def test_the_carrier_volume_limit_applies_per_address_and_spares_loopback(client, settings):
    settings.CALLBROKER_RATE_CARRIER_PER_MIN = 60
    settings.CALLBROKER_RATE_CARRIER_BURST = 3
    settings.CALLBROKER_RATE_REFUSED_BURST = 100
    statuses = [client.post(VOICE, REMOTE_ADDR=STRANGER).status_code for _ in range(4)]
    assert statuses == [403, 403, 403, 429]
    assert all(client.post(VOICE, REMOTE_ADDR="127.0.0.1").status_code == 403 for _ in range(5))


def test_failed_admin_logins_are_limited_per_address(client, settings, django_user_model):
    settings.CALLBROKER_RATE_ADMIN_LOGIN_PER_MIN = 5
    settings.CALLBROKER_RATE_ADMIN_LOGIN_BURST = 3
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, tests only
    django_user_model.objects.create_superuser("ops", "ops@example.com", "right")
    right = {"username": "ops", "password": "right"}
    # Logging in is not charged: an admin who logs in often from one office address is never throttled.
    assert all(client.post("/admin/login/", right, REMOTE_ADDR=STRANGER).status_code == 302 for _ in range(5))
    client.logout()
    wrong = {"username": "ops", "password": "guess"}
    statuses = [client.post("/admin/login/", wrong, REMOTE_ADDR=STRANGER).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = client.post("/admin/login/", right, REMOTE_ADDR=STRANGER)  # even the right password, now
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert client.get("/admin/login/", REMOTE_ADDR=STRANGER).status_code == 200  # the form itself
    assert client.post("/admin/login/", wrong, REMOTE_ADDR="203.0.113.10").status_code == 200  # another address
    assert all(client.post("/admin/login/", wrong, REMOTE_ADDR="127.0.0.1").status_code == 200 for _ in range(5))


def test_open_endpoints_are_limited_per_address_and_spare_loopback(client, settings):
    settings.CALLBROKER_RATE_OPEN_PER_MIN = 60
    settings.CALLBROKER_RATE_OPEN_BURST = 2
    assert [client.get("/healthz", REMOTE_ADDR=STRANGER).status_code for _ in range(3)] == [200, 200, 429]
    assert all(client.get("/healthz", REMOTE_ADDR="::1").status_code == 200 for _ in range(5))


def test_a_local_proxy_the_settings_dont_name_is_reported_once(client, settings, caplog):
    limits._warned_proxy = False
    settings.CALLBROKER_RATE_TRUSTED_PROXIES = []
    with caplog.at_level(logging.WARNING, logger="callbroker.ops.limits"):
        for _ in range(3):
            client.get("/healthz", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.9")
    assert sum("CALLBROKER_RATE_TRUSTED_PROXIES is empty" in r.getMessage() for r in caplog.records) == 1


def test_a_limit_of_zero_is_off(client, settings):
    settings.CALLBROKER_RATE_OPEN_PER_MIN = 0
    settings.CALLBROKER_RATE_OPEN_BURST = 1
    assert all(client.get("/healthz", REMOTE_ADDR=STRANGER).status_code == 200 for _ in range(5))


# --------------------------------------------------------------------------- client address


@pytest.mark.parametrize("meta,trusted,expected", [
    ({"REMOTE_ADDR": "203.0.113.9", "HTTP_X_FORWARDED_FOR": "1.1.1.1"}, (), "203.0.113.9"),  # not trusted
    ({"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "1.1.1.1, 198.51.100.4"}, ("10.0.0.0/8",), "198.51.100.4"),
    ({"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "198.51.100.4, 10.0.0.7"}, ("10.0.0.0/8",), "198.51.100.4"),
    ({"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "garbage, 10.0.0.7"}, ("10.0.0.0/8",), "10.0.0.7"),
    ({"REMOTE_ADDR": "10.0.0.2"}, ("10.0.0.0/8",), "10.0.0.2"),
    ({"REMOTE_ADDR": "::ffff:203.0.113.9"}, (), "203.0.113.9"),
    ({"REMOTE_ADDR": "not an address"}, (), "not an address"),
    ({}, (), ""),
])
def test_the_client_address(meta, trusted, expected):
    assert limits.client_address(meta, limits.parse_networks(trusted)) == expected


def test_ipv6_clients_share_a_bucket_per_64():
    assert limits.bucket_key("2001:db8:1:2::1") == limits.bucket_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert limits.bucket_key("2001:db8:1:3::1") != limits.bucket_key("2001:db8:1:2::1")
    assert limits.bucket_key("x" * 200) == "?" + "x" * 64


def test_a_bad_trusted_proxy_stops_the_server_at_start(settings):
    settings.CALLBROKER_RATE_TRUSTED_PROXIES = ["10.0.0.0/8", "my-proxy"]
    with pytest.raises(ImproperlyConfigured, match="'my-proxy'"):
        middleware()


# --------------------------------------------------------------------------- Redis


def test_workers_share_buckets_through_redis(redis_server):
    rate = Rate(per_minute=60, burst=3)
    worker_a = Buckets(RedisBuckets(redis_server.url, "cb-test:", 0.5))
    worker_b = Buckets(RedisBuckets(redis_server.url, "cb-test:", 0.5))
    assert worker_a.take("k", rate).allowed and worker_b.take("k", rate).allowed and worker_a.take("k", rate).allowed
    refused = worker_b.take("k", rate)
    assert not refused.allowed and 0 < refused.retry_after <= 1.0
    assert worker_a.peek("other", rate).allowed


def test_a_failing_redis_falls_back_to_the_worker_and_is_tried_again(caplog):
    from tests.services import free_port

    clock = Clock()
    store = Buckets(RedisBuckets(f"redis://127.0.0.1:{free_port()}/0", "cb-test:", 0.05), clock=clock)
    rate = Rate(per_minute=60, burst=1)
    with caplog.at_level(logging.WARNING, logger="callbroker.ops.limits"):
        assert store.take("k", rate).allowed
        assert not store.take("k", rate).allowed  # counted in memory meanwhile
    assert sum("Redis failed" in r.getMessage() for r in caplog.records) == 1  # logged once, not per request
    calls = []
    store.redis.update = lambda *a: calls.append(a) or limits.Decision(True, 0.0)
    store.take("k", rate)
    assert calls == []  # not before the retry delay
    clock.now += limits.REDIS_RETRY_S
    assert store.take("k", rate).allowed and len(calls) == 1


def test_a_blank_redis_url_is_no_redis_for_the_limits_too(settings, monkeypatch, caplog):
    # formerly settings.py took REDIS_URL="  " as no Redis, and the limits as a URL: "Redis unusable" logged
    monkeypatch.setenv("REDIS_URL", "  ")
    settings.REDIS_URL = ""
    monkeypatch.setattr(limits, "_store", None)
    with caplog.at_level(logging.WARNING, logger="callbroker.ops.limits"):
        assert limits.buckets().redis is None
    assert caplog.records == []


def test_the_limits_are_read_once_and_again_when_a_setting_changes(settings):
    first = limits.current_limits()
    assert limits.current_limits() is first  # not rebuilt per request
    settings.CALLBROKER_RATE_OPEN_BURST = first.open.burst + 7
    changed = limits.current_limits()
    assert changed.open.burst == first.open.burst + 7
    settings.CALLBROKER_MAX_BODY_BYTES = 1234
    assert limits.current_limits().max_body_bytes == 1234
