"""Hostile input over real HTTP: the server started as ``callbroker serve`` starts it (gunicorn, sync workers).

Fewer inputs than in process, but everything in front of Django is real: gunicorn's parser and limits,
the body arriving over a socket (slowly, partly, or too much of it), the workers. State is read from
outside the server: every table of its database file (row count and digest) and the spool directory.
The server log must hold no 500 and no traceback.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.hostile import checks, ledger, wire
from tests.hostile.strategies import (
    TOKEN,
    UNSIGNED_SIGNERS,
    VALID_SIGNERS,
    Target,
    carrier_endpoints,
    hostile_settings,
    probe_for,
    profile_for,
    sign,
)

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("CALLBROKER_HOSTILE_HTTP_EXAMPLES", "30"))
MAX_BODY = 64 * 1024  # the server runs with the default CALLBROKER_MAX_BODY_BYTES
FORGED = (*UNSIGNED_SIGNERS, "other-url", "other-params", "sha256-without-header", "bogus-algorithm")
ENDPOINTS = carrier_endpoints()
#: What gunicorn and the middleware do before any database work is the same on both backends; only the
#: signed webhooks (which write) run on PostgreSQL too.
SQLITE_ONLY = pytest.mark.parametrize("hostile_server", ["sqlite"], indirect=True)
VOICE = "/carriers/twilio/voice"


def target_of(server) -> Target:
    return Target("http", f"{server.host}:{server.port}", MAX_BODY, 200)


def server_state(server) -> dict:
    """Every table of the server's SQLite file (row count and digest, read-only) and the spool directory."""
    path = server.data_dir / "callbroker.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = checks.db_state(full=True, cursor=db.cursor())
    return {"tables": tables, "spool": checks.spool_state(server.data_dir)}


class LogWatch:
    """What the server logged since the watch started (500s and tracebacks are violations)."""

    def __init__(self, server) -> None:
        self.path = server.log_path
        self.offset = self.path.stat().st_size

    def new(self) -> str:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            return handle.read().decode("utf-8", "replace")

    def records(self) -> list[str]:
        """Log records (a line starting with a date begins one; tracebacks belong to the record above)."""
        records: list[str] = []
        for line in self.new().splitlines():
            if line[:4].isdigit() or line.startswith("[") or not records:
                records.append(line)
            else:
                records[-1] += "\n" + line
        return records

    def server_errors(self) -> list[str]:
        """500s, gunicorn's own request errors, and tracebacks — except Django's 400s for a bad request
        (``django.security.*``: DisallowedHost …) and the view's own "answered with safe TwiML"."""
        errors = []
        for record in self.records():
            head = record.splitlines()[0]
            if "django.security." in head or "caller sent to the fallback" in head:
                continue
            if "Internal Server Error" in record or "Traceback" in record or "Error handling request" in record:
                errors.append(record)
        return errors

    def handled_failures(self) -> int:
        return sum("caller sent to the fallback" in r.splitlines()[0] for r in self.records())


def send(server, probe, client: str) -> checks.Answer:
    answer = wire.exchange(server.host, server.port, wire.request_bytes(probe, client=client))
    ledger.tried("http", probe.endpoint, answer.status, probe.signer)
    return answer


def check(probe, answer) -> None:
    try:
        checks.check_answer(probe, answer, "http")
    except checks.Violation as violation:
        violation.record()
        raise


def no_server_errors(watch: LogWatch, what: str) -> None:
    errors = watch.server_errors()
    if errors:
        ledger.violation("no 500 or traceback in the server log", "http", errors[0][:200],
                         {"what": what, "log": watch.new()[-4000:]})
    assert not errors, f"{what}: the server logged\n" + "\n".join(errors[:20])


# --------------------------------------------------------------------------- generated webhooks


@SQLITE_ONLY
def test_forged_webhooks_over_http_are_refused_and_change_nothing(hostile_server):
    target = target_of(hostile_server)
    before = server_state(hostile_server)
    watch = LogWatch(hostile_server)

    @hostile_settings(examples=EXAMPLES)
    @given(data=st.data())
    def run(data):
        endpoint = data.draw(st.sampled_from(ENDPOINTS))
        probe = data.draw(probe_for(endpoint, profile_for(endpoint), target, signers=FORGED))
        check(probe, send(hostile_server, probe, client="198.51.100.10"))

    run()
    no_server_errors(watch, "forged webhooks")
    after = server_state(hostile_server)
    if after != before:
        ledger.violation("no state change from an unsigned or forged request", "http", "batch",
                         {"before": str(before)[:1000], "after": str(after)[:1000]})
    assert after == before


def test_signed_hostile_webhooks_over_http_never_fail(hostile_server):
    target = target_of(hostile_server)
    watch = LogWatch(hostile_server)

    @hostile_settings(examples=EXAMPLES)
    @given(data=st.data())
    def run(data):
        endpoint = data.draw(st.sampled_from(ENDPOINTS))
        probe = data.draw(probe_for(endpoint, profile_for(endpoint), target,
                                    signers=(*VALID_SIGNERS, "valid", "valid"), methods=("POST",)))
        check(probe, send(hostile_server, probe, client="198.51.100.11"))

    run()
    no_server_errors(watch, "signed webhooks")
    # The database never went away: nothing may be spooled (bad input is never taken for an outage), but
    # the traces the Fallback URL leaves (and the webhooks of the calls they mark) until they are recorded.
    spooled = {name: [line.get("kind") for line in checks.spooled_since({}, hostile_server.data_dir)
                      if line.get("params", {}).get("CallSid", "").replace(":", "_") + ".jsonl" == name]
               for name in checks.spool_state(hostile_server.data_dir)}
    unexpected = sorted(name for name, kinds in spooled.items() if kinds[:1] != ["fallback"])
    assert not unexpected, f"calls spooled without an outage: {unexpected}"


# --------------------------------------------------------------------------- malformed HTTP

SIGNED_BODY = urlencode({"CallSid": "CA" + "3" * 32, "To": "+15125550001"}).encode()


def _raw_cases(host: str) -> dict[str, bytes]:
    h = f"Host: {host}\r\n".encode()
    post = b"POST " + VOICE.encode() + b" HTTP/1.1\r\n"
    form = b"Content-Type: application/x-www-form-urlencoded\r\n"
    return {
        "garbage": b"GARBAGE\r\n\r\n",
        "http-0.9": b"GET /healthz\r\n\r\n",
        "bad-version": b"GET /healthz HTTP/9.9\r\n" + h + b"\r\n",
        "lowercase-method": b"post " + VOICE.encode() + b" HTTP/1.1\r\n" + h + b"\r\n",
        "connect": b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n" + h + b"\r\n",
        "absolute-form": b"POST http://evil.example" + VOICE.encode() + b" HTTP/1.1\r\n" + h + b"Content-Length: 0\r\n\r\n",
        "no-host": post + b"Content-Length: 0\r\n\r\n",
        "empty-host": post + b"Host: \r\nContent-Length: 0\r\n\r\n",
        "host-port-out-of-range": post + f"Host: {host.split(':')[0]}:99999\r\n".encode() + form
        + b"X-Twilio-Signature: abc\r\n" + f"Content-Length: {len(SIGNED_BODY)}\r\n\r\n".encode() + SIGNED_BODY,
        "negative-length": post + h + form + b"Content-Length: -1\r\n\r\n",
        "non-numeric-length": post + h + form + b"Content-Length: abc\r\n\r\n",
        "two-lengths": post + h + form + b"Content-Length: 5\r\nContent-Length: 50\r\n\r\nCallS",
        "length-and-chunked": post + h + form + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "chunked": post + h + form + b"Transfer-Encoding: chunked\r\n\r\n5\r\nCallS\r\n0\r\n\r\n",
        "bad-chunk-size": post + h + form + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nCallS\r\n0\r\n\r\n",
        "huge-chunk-size": post + h + form + b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nx\r\n",
        "unknown-coding": post + h + form + b"Transfer-Encoding: gzip\r\n\r\n",
        "header-without-colon": post + h + b"NoColonHere\r\nContent-Length: 0\r\n\r\n",
        "space-before-colon": post + h + b"Content-Length : 0\r\n\r\n",
        "obsolete-folding": post + h + b"X-Twilio-Signature: abc\r\n def\r\nContent-Length: 0\r\n\r\n",
        "nul-in-header": post + h + b"X-Twilio-Signature: a\x00b\r\nContent-Length: 0\r\n\r\n",
        "non-ascii-path": b"POST /carriers/twilio/v\xffice HTTP/1.1\r\n" + h + b"Content-Length: 0\r\n\r\n",
        "bare-lf": b"POST " + VOICE.encode() + b" HTTP/1.1\n" + h.replace(b"\r\n", b"\n") + b"Content-Length: 0\n\n",
        "request-line-over-limit": b"GET /carriers/twilio/voice?" + b"a" * 5000 + b" HTTP/1.1\r\n" + h + b"\r\n",
        "header-over-limit": post + h + b"X-Padding: " + b"p" * 9000 + b"\r\nContent-Length: 0\r\n\r\n",
        "too-many-headers": post + h + b"".join(b"X-H%d: v\r\n" % i for i in range(80)) + b"Content-Length: 0\r\n\r\n",
        "expect-continue-over-limit": post + h + form + b"Expect: 100-continue\r\n"
        + f"Content-Length: {MAX_BODY + 1}\r\n\r\n".encode(),
        "body-shorter-than-length-then-close": post + h + form + b"Content-Length: 500\r\n\r\nCallSid=CA1",
        "pipelined-after-body": post + h + form + b"Content-Length: 3\r\n\r\nx=1GET /healthz HTTP/1.1\r\n" + h + b"\r\n",
    }


RAW_CASES = sorted(_raw_cases("h"))


@pytest.mark.parametrize("case", RAW_CASES)
@SQLITE_ONLY
def test_malformed_http_never_gets_a_500(hostile_server, case):
    watch = LogWatch(hostile_server)
    data = _raw_cases(f"{hostile_server.host}:{hostile_server.port}")[case]
    with socket.create_connection((hostile_server.host, hostile_server.port), timeout=5) as sock:
        sock.sendall(data)
        if case == "body-shorter-than-length-then-close":
            sock.shutdown(socket.SHUT_WR)
        answer = wire.read_answer(sock, timeout=5)
    ledger.tried("http", f"raw:{case}", answer.status, "none")
    assert answer.status is None or answer.status < 500, (case, answer)
    if case == "host-port-out-of-range":
        assert answer.status == 403  # it was a 500 before the fix in carriers/twilio.py
    if case in ("chunked", "length-and-chunked"):
        assert answer.status in (400, 411)
    if case == "expect-continue-over-limit":
        assert answer.status == 413
    no_server_errors(watch, f"raw case {case}")
    assert wire.exchange(hostile_server.host, hostile_server.port,
                         b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").status == 200


# --------------------------------------------------------------------------- size and slowness


@SQLITE_ONLY
def test_a_body_over_the_limit_is_refused_before_it_is_sent(hostile_server):
    """Only the headers go out: the 413 comes back without the server waiting for a byte of the body."""
    head = (f"POST {VOICE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {10 * 1024 * 1024}\r\nX-Forwarded-For: 198.51.100.20\r\n\r\n").encode()
    started = time.monotonic()
    with socket.create_connection((hostile_server.host, hostile_server.port), timeout=5) as sock:
        sock.sendall(head)
        answer = wire.read_answer(sock, timeout=5)
    ledger.tried("http", "raw:body-over-limit", answer.status, "none")
    assert answer.status == 413 and time.monotonic() - started < 3


@SQLITE_ONLY
def test_a_slow_partial_body_holds_one_worker_only_and_gets_no_500(hostile_server):
    """A sender that stops halfway pins one sync worker (until gunicorn's --timeout) — the other still
    answers; when the sender gives up, the truncated form fails its signature (403), not the server."""
    watch = LogWatch(hostile_server)
    head = (f"POST {VOICE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"X-Twilio-Signature: abc\r\nContent-Length: 500\r\nX-Forwarded-For: 198.51.100.21\r\n\r\n").encode()
    with socket.create_connection((hostile_server.host, hostile_server.port), timeout=5) as slow:
        slow.sendall(head + b"CallSid=CA1234&To=%2B1512")
        time.sleep(0.3)
        started = time.monotonic()
        other = wire.exchange(hostile_server.host, hostile_server.port,
                              b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", timeout=5)
        assert other.status == 200 and time.monotonic() - started < 2
        slow.shutdown(socket.SHUT_WR)
        answer = wire.read_answer(slow, timeout=5)
    ledger.tried("http", "raw:slow-partial-body", answer.status, "garbage")
    assert answer.status in (None, 400, 403)
    no_server_errors(watch, "slow partial body")


@SQLITE_ONLY
def test_slow_headers_are_still_answered_correctly(hostile_server):
    data = (f"POST {VOICE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: 0\r\nX-Forwarded-For: 198.51.100.22\r\n\r\n").encode()
    with socket.create_connection((hostile_server.host, hostile_server.port), timeout=5) as sock:
        for i in range(0, len(data), 12):
            sock.sendall(data[i:i + 12])
            time.sleep(0.05)
        answer = wire.read_answer(sock, timeout=5)
    ledger.tried("http", "raw:slow-headers", answer.status, "none")
    assert answer.status == 403


# --------------------------------------------------------------------------- rate limits


def _post(server, path: str, body: bytes, client: str, *, signature: str | None = None) -> checks.Answer:
    headers = f"X-Twilio-Signature: {signature}\r\n" if signature is not None else ""
    data = (f"POST {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n{headers}"
            f"X-Forwarded-For: {client}\r\nConnection: close\r\n\r\n").encode() + body
    return wire.exchange(server.host, server.port, data)


@SQLITE_ONLY
def test_a_flood_of_forged_webhooks_is_throttled_and_the_carrier_still_gets_through(hostile_server):
    client = "198.51.100.200"
    params = {"CallSid": "CA" + "4" * 32, "AccountSid": "AC" + "7" * 32, "From": "+15125559876",
              "To": "+15125550001", "CallStatus": "ringing", "Direction": "inbound", "FromZip": "78701"}
    body = urlencode(params).encode()
    answers = [_post(hostile_server, VOICE, body, client, signature="forged") for _ in range(150)]
    for answer in answers:
        ledger.tried("http", "flood:twilio-voice", answer.status, "garbage")
    statuses = {a.status for a in answers}
    assert statuses <= {403, 429} and 429 in statuses, statuses
    assert all(a.retry_after.isdigit() and int(a.retry_after) >= 1 for a in answers if a.status == 429)
    url = f"http://{hostile_server.host}:{hostile_server.port}{VOICE}"
    genuine = _post(hostile_server, VOICE, body, client, signature=sign(TOKEN, url, params))
    ledger.tried("http", "flood:twilio-voice", genuine.status, "valid")
    assert genuine.status == 200 and genuine.body.startswith(b"<?xml")
    unsigned = [_post(hostile_server, VOICE, body, client) for _ in range(20)]
    assert {a.status for a in unsigned} <= {403, 429} and any(a.status == 429 for a in unsigned)


@SQLITE_ONLY
def test_a_flood_of_admin_logins_is_throttled(hostile_server):
    body = b"username=admin&password=guess"
    answers = [_post(hostile_server, "/admin/login/", body, "198.51.100.201") for _ in range(30)]
    for answer in answers:
        ledger.tried("http", "flood:admin-login", answer.status, "none")
    assert all(a.status is not None and a.status < 500 for a in answers)
    assert any(a.status == 429 for a in answers)
