"""Limits on what a stranger can reach: request body size, and per-client token buckets.

:class:`RequestLimitsMiddleware` runs first in ``settings.MIDDLEWARE`` — before anything reads the
body — and answers, in this order:

* **400** for a malformed ``Content-Length``; **411** for a body without a length
  (``Transfer-Encoding``: Django would read it as empty, and reading it ourselves would let a slow
  sender pin a worker); **413** for a ``Content-Length`` over ``CALLBROKER_MAX_BODY_BYTES`` (64 KiB:
  carrier webhooks, the admin login form, health and metrics, anyone not logged in). Django's
  ``DATA_UPLOAD_MAX_MEMORY_SIZE`` does not count multipart file parts: this check does, and reads
  nothing to make it. Admin pages other than the login form may send up to
  ``CALLBROKER_ADMIN_MAX_BODY_BYTES`` (a target's area of thousands of ZIPs, a buyer with hundreds of
  targets): such a request is let through here and :class:`StaffBodyMiddleware`, once the user is
  known and before anything reads the body, answers 413 unless it is an active staff member's.
* On carrier webhook paths, two buckets per client address:

  - **refused** (``CALLBROKER_RATE_REFUSED_*``): charged *after the fact* by every carrier request the
    app refused (403 bad signature; 400, 404, 405, 411, 413). Once it is empty, a request carrying no
    signature header gets **429** at once, without its body being read, and a signed request that is
    refused again gets 429 instead of its 4xx. A request whose signature verifies always goes
    through: a stranger who shares an address with the carrier (its egress pool, or our own proxy)
    can't lock the carrier out by failing on purpose.
  - **carrier** (``CALLBROKER_RATE_CARRIER_*``): charged by every carrier request; generous, sized so
    that a real carrier's volume never empties it (docs/security.md has the arithmetic).

* On the admin login form, **admin_login** (``CALLBROKER_RATE_ADMIN_LOGIN_*``): charged by every POST
  that doesn't log in (a successful login redirects); once empty, every POST gets 429 — a password
  guesser gets a handful of tries, then one every few seconds.
* Everything else (health, readiness, metrics, admin pages), **open** (``CALLBROKER_RATE_OPEN_*``):
  a generous cap per address so that no single stranger can turn the readiness check (which opens a
  database connection) into load.

Every refusal is **429** with ``Retry-After`` (whole seconds). A limit with a rate or burst of 0 is off.
Clients on loopback are exempt from every rate limit (see :func:`is_exempt`), not from the body checks.

Client address: ``REMOTE_ADDR``, unless it is one of ``CALLBROKER_RATE_TRUSTED_PROXIES``; then the
right-most ``X-Forwarded-For`` entry that is not a trusted proxy (the left part of the header is
whatever the client wrote). IPv6 clients are bucketed by /64, the block one subscriber gets.

Buckets live in each worker process (each worker counts on its own: the effective limit is the
figure times the workers an address's connections land on) or, when ``REDIS_URL`` is set, in Redis,
shared by every worker and node. When Redis fails, the worker uses its own buckets and tries Redis
again after :data:`REDIS_RETRY_S` seconds; a rate limiter must never take the call path down.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, get_script_prefix, reverse

log = logging.getLogger(__name__)

#: Statuses that count as "the app refused this carrier request" (charged to the refused bucket).
REFUSALS = frozenset({400, 403, 404, 405, 411, 413})
#: Seconds a worker keeps its own buckets after Redis failed, before it tries Redis again.
REDIS_RETRY_S = 30.0
#: Most client addresses a worker keeps buckets for (least recently seen are forgotten first).
MEMORY_MAX_KEYS = 50_000
#: A throttled client is logged at most once per this many seconds (per bucket kind and worker).
LOG_EVERY_S = 60.0
DEFAULT_CARRIER_PREFIX = "/carriers/"

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class Rate:
    """A token bucket: ``burst`` tokens, refilled at ``per_minute`` a minute. Zero in either: off."""

    per_minute: float
    burst: int

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0 and self.burst > 0

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int | None
    admin_max_body_bytes: int | None
    refused: Rate
    carrier: Rate
    admin_login: Rate
    open: Rate
    trusted_proxies: tuple[_Network, ...]


def _rate(name: str, per_minute: int, burst: int) -> Rate:
    return Rate(float(getattr(settings, f"CALLBROKER_RATE_{name}_PER_MIN", per_minute)),
                int(getattr(settings, f"CALLBROKER_RATE_{name}_BURST", burst)))


@lru_cache(maxsize=8)
def parse_networks(entries: tuple[str, ...]) -> tuple[_Network, ...]:
    """``("10.0.0.0/8", "127.0.0.1")`` -> networks; ImproperlyConfigured names the bad entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"CALLBROKER_RATE_TRUSTED_PROXIES: {entry!r} is not an IP address or network") from None
    return tuple(networks)


def current_limits() -> Limits:
    """The limits from settings, read once and again whenever one of them changes (``setting_changed``,
    sent by ``override_settings`` and pytest-django's ``settings``): every request asks for them, and
    reading them afresh cost a dozen settings lookups and five objects per request."""
    global _current
    if _current is None:
        _current = _read_limits()
    return _current


_current: Limits | None = None


@receiver(setting_changed)
def _settings_changed(*, setting: str, **_kwargs) -> None:
    global _current
    if setting in ("CALLBROKER_MAX_BODY_BYTES", "CALLBROKER_ADMIN_MAX_BODY_BYTES") \
            or setting.startswith("CALLBROKER_RATE_"):
        _current = None


def _bytes(name: str) -> int | None:
    value = getattr(settings, name, None)
    return int(value) if value is not None else None


def _read_limits() -> Limits:
    return Limits(
        max_body_bytes=_bytes("CALLBROKER_MAX_BODY_BYTES"),
        admin_max_body_bytes=_bytes("CALLBROKER_ADMIN_MAX_BODY_BYTES"),
        refused=_rate("REFUSED", 30, 60),
        carrier=_rate("CARRIER", 6000, 6000),
        admin_login=_rate("ADMIN_LOGIN", 5, 10),
        open=_rate("OPEN", 1200, 600),
        trusted_proxies=parse_networks(tuple(getattr(settings, "CALLBROKER_RATE_TRUSTED_PROXIES", ()))),
    )


# --------------------------------------------------------------------------- client address


def _address(raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    raw = raw.strip()
    return None if len(raw) > 64 else _parse_address(raw)  # no address is longer; keeps the cache small


@lru_cache(maxsize=4096)  # parsed on every request; clients (carrier ranges, proxies) are few
def _parse_address(raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(raw.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(meta: dict, trusted: tuple[_Network, ...]) -> str:
    """The client's address: REMOTE_ADDR, or behind trusted proxies the right-most untrusted hop."""
    remote = str(meta.get("REMOTE_ADDR", ""))
    address = _address(remote)
    if address is None or not trusted or not any(address in net for net in trusted):
        return str(address) if address is not None else remote
    for hop in reversed(str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",")):
        hop_address = _address(hop)
        if hop_address is None:
            break  # garbage: nothing further left can be believed
        if not any(hop_address in net for net in trusted):
            return str(hop_address)
        address = hop_address
    return str(address)


def bucket_key(address: str) -> str:
    """The bucket a client address counts against: IPv6 by /64, anything unparsable by its text."""
    parsed = _address(address)
    if parsed is None:
        return "?" + address[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def is_exempt(address: str) -> bool:
    """Loopback clients skip the rate limits (not the body checks).

    A request from loopback comes from this machine: a load test or benchmark, the test suites, or a
    local reverse proxy that ``CALLBROKER_RATE_TRUSTED_PROXIES`` doesn't name — and then every client
    shares the address, so a per-address limit would let one stranger throttle the carrier (or lock out
    every admin) for everybody. :func:`warn_undeclared_proxy` says so in the log.
    """
    parsed = _address(address)
    return parsed is not None and parsed.is_loopback


_warned_proxy = False


def warn_undeclared_proxy(meta: dict, limits: Limits) -> None:
    """Log once per process when requests arrive through a local proxy the settings don't name."""
    global _warned_proxy
    if _warned_proxy or limits.trusted_proxies or not meta.get("HTTP_X_FORWARDED_FOR"):
        return
    _warned_proxy = True
    log.warning("rate limits: requests come from %s with X-Forwarded-For, but CALLBROKER_RATE_TRUSTED_PROXIES "
                "is empty: loopback is exempt, so rate limits are off for everything this proxy forwards. "
                "Name the proxy (e.g. CALLBROKER_RATE_TRUSTED_PROXIES=127.0.0.1,::1).", meta.get("REMOTE_ADDR"))


# --------------------------------------------------------------------------- buckets


class Decision(NamedTuple):
    allowed: bool
    retry_after: float  # seconds until the request would be allowed (0 when allowed)


class BucketStore(Protocol):
    def update(self, key: str, rate: Rate, cost: float, need: float) -> Decision:
        """Refill ``key``; when it holds ``need`` tokens, take ``cost`` and allow."""


class MemoryBuckets:
    """Token buckets in this process (thread-safe), the least recently used forgotten past ``max_keys``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = MEMORY_MAX_KEYS) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def update(self, key: str, rate: Rate, cost: float, need: float) -> Decision:
        with self._lock:
            now = self._clock()
            tokens, stamp = self._buckets.pop(key, (float(rate.burst), now))
            tokens = min(float(rate.burst), tokens + max(0.0, now - stamp) * rate.per_second)
            allowed = tokens >= need
            if allowed:
                tokens -= cost
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        return Decision(allowed, 0.0 if allowed else (need - tokens) / rate.per_second)

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()


#: KEYS[1] = the bucket (a hash: tokens, stamp); ARGV = per second, burst, cost, need. Redis's clock.
REDIS_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local need = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
if tokens == nil or stamp == nil then
  tokens = burst
  stamp = now
end
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local allowed = 0
if tokens >= need then
  allowed = 1
  tokens = tokens - cost
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local wait = 0
if allowed == 0 then
  wait = (need - tokens) / rate
end
return {allowed, tostring(wait)}
"""


class RedisBuckets:
    """Token buckets in Redis, shared by every worker and node (one Lua script per check: atomic)."""

    def __init__(self, url: str, prefix: str, timeout_s: float) -> None:
        import redis  # a dependency of the package; imported here so that no import opens anything

        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                            retry_on_timeout=False)
        self._script = self._client.register_script(REDIS_LUA)
        self._prefix = f"{prefix}rl:"

    def update(self, key: str, rate: Rate, cost: float, need: float) -> Decision:
        allowed, wait = self._script(keys=[self._prefix + key], args=[rate.per_second, rate.burst, cost, need])
        return Decision(bool(int(allowed)), float(wait))


class Buckets:
    """Redis when configured and answering, else this worker's memory."""

    def __init__(self, redis_store: BucketStore | None, memory: MemoryBuckets | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.redis = redis_store
        self.memory = memory or MemoryBuckets(clock)
        self._clock = clock
        self._redis_retry_at = 0.0

    def update(self, key: str, rate: Rate, cost: float = 1.0, need: float = 1.0) -> Decision:
        if self.redis is not None and self._clock() >= self._redis_retry_at:
            try:
                return self.redis.update(key, rate, cost, need)
            except Exception as exc:  # noqa: BLE001 - any Redis failure: count in memory meanwhile
                self._redis_retry_at = self._clock() + REDIS_RETRY_S
                log.warning("rate limits: Redis failed (%s: %s); this worker counts on its own for %.0f s",
                            exc.__class__.__name__, exc, REDIS_RETRY_S)
        return self.memory.update(key, rate, cost, need)

    def take(self, key: str, rate: Rate) -> Decision:
        return self.update(key, rate, 1.0, 1.0)

    def peek(self, key: str, rate: Rate) -> Decision:
        """Whether ``key`` still has a token, without taking it."""
        return self.update(key, rate, 0.0, 1.0)


_store_lock = threading.Lock()
_store: tuple[str, Buckets] | None = None


def _redis_url() -> str:
    # Blank is no Redis, as settings.py reads it: a REDIS_URL of spaces logged "Redis unusable" here.
    return getattr(settings, "REDIS_URL", "") or os.environ.get("REDIS_URL", "").strip()


def buckets() -> Buckets:
    """This process's buckets (built on first use, rebuilt when ``REDIS_URL`` changes)."""
    global _store
    url = _redis_url()
    current = _store
    if current is not None and current[0] == url:
        return current[1]
    with _store_lock:
        if _store is None or _store[0] != url:
            redis_store = None
            if url:
                try:
                    timeout_ms = min(int(getattr(settings, "REDIS_TIMEOUT_MS", 100)), 100)
                    redis_store = RedisBuckets(url, getattr(settings, "REDIS_KEY_PREFIX", "cb:"),
                                               timeout_ms / 1000)
                except Exception as exc:  # noqa: BLE001 - a bad URL must not stop the call path
                    log.warning("rate limits: Redis unusable (%s); counting per worker", exc)
            _store = (url, Buckets(redis_store))
        return _store[1]


def reset() -> None:
    """Forget every bucket of this process (tests)."""
    global _store
    with _store_lock:
        _store = None


# --------------------------------------------------------------------------- paths


def _route(name: str) -> str:
    """The path of URL ``name`` as a request's ``path_info`` has it: without the script prefix ``reverse``
    puts first, the path of ``CALLBROKER_PUBLIC_URL`` (``/cb``) that the proxy stripped. With it, which
    ``reverse`` gives inside a request (and the caches below keep), no path matched: the admin's login
    counted as any other page, the carrier webhooks as strangers' requests."""
    url, prefix = reverse(name), get_script_prefix()
    return "/" + url[len(prefix):] if url.startswith(prefix) else url


@lru_cache(maxsize=4)
def _carrier_prefix(urlconf: str) -> str:
    try:
        voice = _route("carriers:twilio-voice")
    except NoReverseMatch:
        return DEFAULT_CARRIER_PREFIX
    return voice[: voice.index("/", 1) + 1]  # "/carriers/twilio/voice" -> "/carriers/"


def carrier_prefix() -> str:
    """Path prefix of every carrier webhook (where ``callbroker.carriers.urls`` is mounted)."""
    return _carrier_prefix(settings.ROOT_URLCONF)


@lru_cache(maxsize=4)
def _admin_login_path(urlconf: str) -> str:
    try:
        return _route("admin:login")
    except NoReverseMatch:
        return ""


def admin_login_path() -> str:
    return _admin_login_path(settings.ROOT_URLCONF)


@lru_cache(maxsize=4)
def _admin_prefix(urlconf: str) -> str:
    try:
        return _route("admin:index")
    except NoReverseMatch:
        return ""


def admin_prefix() -> str:
    """Path prefix of the admin ("/admin/"); "" when the URL configuration has none."""
    return _admin_prefix(settings.ROOT_URLCONF)


def staff_may_send_more(path: str, limits: Limits) -> bool:
    """Whether a body over ``max_body_bytes`` may go on to :class:`StaffBodyMiddleware` (which checks the
    user): admin pages other than the login form, when their limit is the larger one."""
    prefix = admin_prefix()
    larger = limits.admin_max_body_bytes is None or (
        limits.max_body_bytes is not None and limits.admin_max_body_bytes > limits.max_body_bytes)
    return larger and bool(prefix) and path.startswith(prefix) and path != admin_login_path()


def _has_signature(meta: dict) -> bool:
    """A carrier signature header of any carrier (X-Twilio-Signature, X-SignalWire-Signature, Telnyx's …)."""
    return any(key.startswith("HTTP_") and "SIGNATURE" in key and meta[key] for key in meta)


# --------------------------------------------------------------------------- responses


def _plain(text: str, status: int) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


def too_many(retry_after: float, what: str) -> HttpResponse:
    seconds = max(1, math.ceil(retry_after))
    response = _plain(f"Too Many Requests: {what}; retry after {seconds} s", 429)
    response["Retry-After"] = str(seconds)
    return response


class _Throttled:
    """Log a throttled client once per :data:`LOG_EVERY_S` per bucket kind (a flood must not flood the log)."""

    def __init__(self) -> None:
        self._last: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, kind: str, client: str, path: str) -> None:
        now = time.monotonic()
        key = f"{kind}:{client}"
        with self._lock:
            last = self._last.pop(key, None)
            self._last[key] = now if last is None or now - last >= LOG_EVERY_S else last
            while len(self._last) > 10_000:
                self._last.popitem(last=False)
        if last is None or now - last >= LOG_EVERY_S:
            log.warning("rate limit %s: client %s throttled (429) on %s", kind, client, path)


_log_throttled = _Throttled()


# --------------------------------------------------------------------------- the middleware


def too_large(max_body_bytes: int) -> HttpResponse:
    return _plain(f"Payload Too Large: bodies are limited to {max_body_bytes} bytes", 413)


def body_refusal(meta: dict, max_body_bytes: int | None) -> HttpResponse | None:
    """400/411/413 for a body we won't read; None when it may be read. Reads nothing."""
    if meta.get("HTTP_TRANSFER_ENCODING"):
        return _plain("Length Required: send the body with a Content-Length", 411)
    raw = str(meta.get("CONTENT_LENGTH") or "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return _plain("Bad Request: invalid Content-Length", 400)
    if max_body_bytes is not None and int(raw) > max_body_bytes:
        return too_large(max_body_bytes)
    return None


#: Set on a request whose body is over ``CALLBROKER_MAX_BODY_BYTES`` and let through for an admin page:
#: :class:`StaffBodyMiddleware` refuses it unless the user is an active staff member.
STAFF_ONLY = "_callbroker_body_for_staff_only"


def _body_check(request: HttpRequest, limits: Limits) -> HttpResponse | None:
    """The body checks: the small limit, or on an admin page the admin's (for staff: ``STAFF_ONLY``)."""
    refused = body_refusal(request.META, limits.max_body_bytes)
    if refused is None or refused.status_code != 413 or not staff_may_send_more(request.path_info, limits):
        return refused
    refused = body_refusal(request.META, limits.admin_max_body_bytes)
    if refused is None:
        setattr(request, STAFF_ONLY, True)
    return refused


class RequestLimitsMiddleware:
    """Body size before reading, and per-client rate limits (see the module docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        current_limits()  # a bad CALLBROKER_RATE_TRUSTED_PROXIES stops the server at start, not per request

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limits = current_limits()
        meta = request.META
        path = request.path_info
        client = client_address(meta, limits.trusted_proxies)
        if is_exempt(client):
            warn_undeclared_proxy(meta, limits)
            return _body_check(request, limits) or self.get_response(request)
        key = bucket_key(client)
        store = buckets()
        if path.startswith(carrier_prefix()):
            return self._carrier(request, limits, client, key, store)
        refused = _body_check(request, limits)
        if refused is not None:
            return refused
        if request.method == "POST" and path == admin_login_path():
            return self._admin_login(request, limits.admin_login, client, key, store)
        if limits.open.enabled:
            decision = store.take(f"open:{key}", limits.open)
            if not decision.allowed:
                _log_throttled("open", client, path)
                return too_many(decision.retry_after, f"too many requests from {client}")
        return self.get_response(request)

    def _admin_login(self, request: HttpRequest, rate: Rate, client: str, key: str, store: Buckets) -> HttpResponse:
        if not rate.enabled:
            return self.get_response(request)
        peek = store.peek(f"admin_login:{key}", rate)
        if not peek.allowed:
            _log_throttled("admin_login", client, request.path_info)
            return too_many(peek.retry_after, f"too many login attempts from {client}")
        response = self.get_response(request)
        if response.status_code not in (301, 302, 303):  # logged in = redirected; anything else failed
            store.take(f"admin_login:{key}", rate)
        return response

    def _carrier(self, request: HttpRequest, limits: Limits, client: str, key: str, store: Buckets) -> HttpResponse:
        meta = request.META
        if limits.carrier.enabled:
            decision = store.take(f"carrier:{key}", limits.carrier)
            if not decision.allowed:
                _log_throttled("carrier", client, request.path_info)
                return too_many(decision.retry_after, f"too many carrier requests from {client}")
        throttled: Decision | None = None
        if limits.refused.enabled:
            peek = store.peek(f"refused:{key}", limits.refused)
            if not peek.allowed:
                throttled = peek
                if not _has_signature(meta):
                    _log_throttled("refused", client, request.path_info)
                    return too_many(peek.retry_after, f"too many refused requests from {client}")
        response = body_refusal(meta, limits.max_body_bytes) or self.get_response(request)
        if limits.refused.enabled and response.status_code in REFUSALS:
            charged = store.take(f"refused:{key}", limits.refused)
            if throttled is not None:
                _log_throttled("refused", client, request.path_info)
                return too_many(max(throttled.retry_after, charged.retry_after),
                                f"too many refused requests from {client}")
        return response


class StaffBodyMiddleware:
    """413 for a body over ``CALLBROKER_MAX_BODY_BYTES`` that :class:`RequestLimitsMiddleware` let through
    for an admin page, unless the user is an active staff member. Placed right after Django's
    ``AuthenticationMiddleware`` (``request.user`` is known) and before anything reads the body: CSRF's
    check and the views come after every middleware's ``__call__``. Reads nothing itself.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if getattr(request, STAFF_ONLY, False):
            user = getattr(request, "user", None)
            if user is None or not (user.is_active and user.is_staff):
                return too_large(current_limits().max_body_bytes or 0)
        return self.get_response(request)
