"""The invariants every hostile request is held to, and the in-process runner that checks them.

For each probe (one request, see ``strategies.Probe``):

1. never a 5xx;
2. the status is one of :data:`ALLOWED` (200 or a refusal in :data:`REFUSED`);
3. a 200 is well-formed TwiML: ``text/xml``, starts with ``<?xml`` (no blank line: carrier error
   12100), parses, root ``<Response>``, at most 64 kB;
4. a request nobody signed with our token (none, empty, garbage, another token) is refused and changes
   nothing — every row of every model and the degraded-mode spool on disk are compared;
5. a request whose signature must verify is not refused as forged (no 403), and a genuine carrier
   request gets its status (200; 413 or 400 when over the size or field limits);
6. every change is backed by a signature: each new ``CallEvent`` holds exactly the parameters that
   were signed, for the URL that was called; no change without an event (nothing spooled either);
   endpoints answered from memory change nothing at all (the Fallback URL: nothing but the spool, where
   a signed request naming a call leaves its trace, holding exactly the parameters signed);
7. a replay of an answered request gets the same answer and changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import traceback
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from django.apps import apps
from django.conf import settings
from django.db import connection
from django.test.client import FakePayload

from tests.hostile import ledger
from tests.hostile.strategies import TWIML_MAX_BYTES, Probe, url_forms

REFUSED = frozenset({400, 403, 404, 405, 411, 413})
ALLOWED = REFUSED | {200}
CLIENT_ADDRESS = "198.51.100.23"  # TEST-NET-2: not loopback, so every limit applies


class Violation(AssertionError):
    """A hostile-input invariant broke."""

    def __init__(self, invariant: str, endpoint: str, where: str, detail: dict) -> None:
        super().__init__(f"{invariant} on {endpoint}: {detail}")
        self.invariant, self.endpoint, self.where, self.detail = invariant, endpoint, where, detail

    def record(self) -> None:
        ledger.violation(self.invariant, self.endpoint, self.where, self.detail)


#: Open issues, reproduced by the strict-xfail tests of test_known_issues.py. A violation that matches
#: one is counted under its name instead of failing the run; anything else still fails it.
#: Violations understood but not fixed yet: name -> (summary, log pattern). Empty: every issue the
#: suite found is fixed (tests/hostile/test_known_issues.py keeps them as regression tests).
KNOWN_ISSUES: dict[str, tuple[str, re.Pattern]] = {}


def known_issue(violation: Violation, logs: list[str]) -> str | None:
    """The name of the known issue ``violation`` is, from what the server logged; None if it is new."""
    changed = violation.detail.get("changed", [])
    if changed and set(changed) <= {"spool"}:
        for name, (_summary, pattern) in KNOWN_ISSUES.items():
            if any(pattern.search(line) for line in logs):
                return name
    return None


@dataclass(frozen=True)
class Answer:
    status: int | None
    body: bytes
    content_type: str
    retry_after: str = ""
    trace: str = ""


# --------------------------------------------------------------------------- state


#: Tables the call path writes: every row is digested before and after each input. The others (network
#: configuration, auth, sessions …) are counted, and on SQLite any write at all shows in total_changes().
CALL_PATH_MODELS = frozenset({"calls.Call", "calls.CallAttempt", "calls.CallEvent", "network.TargetState",
                              "network.TargetUsage", "network.NetworkVersion"})


WRITE_ATTEMPT = "a write (rolled back, or one that changed nothing digested)"


@dataclass(frozen=True)
class State:
    counts: dict[str, int]
    digests: dict[str, str]
    spool: dict[str, int]
    writes: int | None  # SQLite's total_changes() on this connection (None: not SQLite)


def _tables() -> list[tuple[str, str]]:
    models = apps.get_models(include_auto_created=True)
    return sorted({(m._meta.label, m._meta.db_table) for m in models if m._meta.managed and not m._meta.proxy})


def db_state(full: bool = False, cursor=None) -> dict[str, tuple[int, str]]:
    """Row count of every installed model, and a digest of every row (of the call path's, unless ``full``).

    ``cursor``: a DB-API cursor on another database (e.g. a running server's SQLite file); default: Django's.
    """
    if cursor is None:
        with connection.cursor() as own:
            return db_state(full, own)
    tables = _tables()

    def quote(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    state = {}
    cursor.execute("SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {quote(t)})" for _, t in tables))
    counts = dict(zip((label for label, _ in tables), cursor.fetchone()))
    for label, table in tables:
        digest = ""
        if full or label in CALL_PATH_MODELS:
            cursor.execute(f"SELECT * FROM {quote(table)}")
            digest = hashlib.sha1("\n".join(sorted(map(repr, cursor.fetchall()))).encode()).hexdigest()
        state[label] = (counts[label], digest)
    return state


def _writes() -> int | None:
    if connection.vendor != "sqlite":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT total_changes()")
        return cursor.fetchone()[0]


def spool_state(data_dir: Path | None = None) -> dict[str, int]:
    """Degraded-mode spool files (name -> size): webhooks written to disk instead of the database."""
    directory = Path(data_dir or settings.DATA_DIR) / "spool"
    if not directory.is_dir():
        return {}
    return {p.name: p.stat().st_size for p in sorted(directory.iterdir())}


def spooled_since(before: dict[str, int], data_dir: Path | None = None) -> list[dict]:
    """The lines added to the spool since ``before`` (``spool_state``): new files, and what grew."""
    import json

    directory = Path(data_dir or settings.DATA_DIR) / "spool"
    added = []
    for name, size in spool_state(data_dir).items():
        if not name.endswith(".jsonl") or size == before.get(name):
            continue
        try:
            with (directory / name).open("rb") as handle:
                handle.seek(before.get(name, 0))
                added.extend(json.loads(line) for line in handle.read().splitlines() if line.strip())
        except FileNotFoundError:  # a server's replayer recorded that call meanwhile
            continue
    return added


def state() -> State:
    db = db_state()
    return State({k: v[0] for k, v in db.items()}, {k: v[1] for k, v in db.items()}, spool_state(), _writes())


def changes(before: State, after: State) -> list[str]:
    changed = sorted({label for label in after.counts if before.counts.get(label) != after.counts[label]}
                     | {label for label in after.digests if before.digests.get(label) != after.digests[label]})
    if before.spool != after.spool:
        changed.append("spool")
    if not changed and before.writes != after.writes:
        changed.append(WRITE_ATTEMPT)
    return changed


def max_event_pk() -> int:
    from callbroker.calls.models import CallEvent

    return CallEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def events_after(pk: int) -> list[tuple[str, dict]]:
    from callbroker.calls.models import CallEvent

    return list(CallEvent.objects.filter(pk__gt=pk).order_by("pk").values_list("dedupe_key", "params"))


# --------------------------------------------------------------------------- single checks


def twiml_problem(body: bytes, content_type: str) -> str | None:
    if not content_type.startswith("text/xml"):
        return f"content type {content_type!r}"
    if not body.startswith(b"<?xml"):
        return f"does not start with <?xml: {body[:40]!r}"
    if len(body) > TWIML_MAX_BYTES:
        return f"{len(body)} bytes (carriers refuse over {TWIML_MAX_BYTES})"
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        return f"not XML: {exc}"
    if root.tag != "Response":
        return f"root <{root.tag}>"
    return None


def _where(trace: str) -> str:
    """The innermost callbroker frame of a traceback (groups violations by where they break)."""
    lines = [line.strip() for line in trace.splitlines() if line.strip().startswith('File "')]
    ours = [line for line in lines if "/callbroker/" in line] or lines
    return ours[-1] if ours else ""


def fail(invariant: str, probe: Probe, answer: Answer, **more) -> None:
    where = _where(answer.trace) if answer.trace else more.pop("where", "")
    detail = {"input": probe.summary(), "status": answer.status, "response": answer.body[:300].decode("utf-8", "replace"),
              **({"traceback": answer.trace[-3000:]} if answer.trace else {}), **more}
    raise Violation(invariant, probe.endpoint, where, detail)


def check_answer(probe: Probe, answer: Answer, channel: str) -> None:
    """Invariants 1, 2, 3, 5 (those that need no database)."""
    if answer.status is not None and answer.status >= 500:
        fail("never a 5xx", probe, answer)
    allowed = ALLOWED | ({429} if channel == "http" else set())
    if answer.status is not None and answer.status not in allowed:
        fail("status in the allowed set", probe, answer, allowed=sorted(allowed))
    if answer.status == 200:
        problem = twiml_problem(answer.body, answer.content_type)
        if problem:
            fail("200 is well-formed TwiML", probe, answer, problem=problem)
    if probe.expect_valid is False and answer.status == 200:
        fail("unsigned or forged request refused", probe, answer)
    if probe.genuine and answer.status not in probe.genuine_status:
        fail("genuine carrier request answered", probe, answer, expected=sorted(probe.genuine_status))
    if probe.expect_valid is True and answer.status == 403:
        fail("validly signed request not refused as forged", probe, answer)


def check_state(probe: Probe, answer: Answer, changed: list[str], events: list[tuple[str, dict]],
                writes: bool, spools: bool = False, traces: list[dict] = ()) -> None:
    """Invariants 4 and 6. ``traces``: the spooled lines the request added (an endpoint that ``spools``)."""
    if not changed:
        return
    if not probe.token_signed or probe.expect_valid is False:
        fail("no state change from an unsigned or forged request", probe, answer, changed=changed)
    changed = [c for c in changed if c != WRITE_ATTEMPT]  # a signed request's rolled-back write is no change
    if not changed:
        return
    if not writes and not (spools and changed == ["spool"]):
        fail("endpoint answered from memory changes nothing", probe, answer, changed=changed)
    if not events and not (spools and changed == ["spool"]):
        fail("no state change without a CallEvent", probe, answer, changed=changed)
    signed = dict(probe.signed_params or ())
    if probe.method == "GET":  # the parameters are the signed URL's query
        signed = dict(parse_qsl(urlsplit(probe.signed_url or "").query, keep_blank_values=True))
    called = f"http://{probe.server_host}{probe.target}"
    if probe.signed_url not in url_forms(called) and probe.signed_url != called:
        fail("change backed by a signature for the URL called", probe, answer, changed=changed,
             signed_url=probe.signed_url, called=called)
    events = [*events, *((f"spooled {t.get('kind')}", t.get("params")) for t in traces)]
    for key, params in events:
        if params != signed:
            fail("change backed by a signature over the parameters acted on", probe, answer, changed=changed,
                 event=key, acted_on=_short(params), signed=_short(signed))


def _short(params: dict) -> dict:
    return {k[:40]: str(v)[:60] for k, v in list(params.items())[:30]}


# --------------------------------------------------------------------------- in-process runner


def environ(probe: Probe) -> dict:
    env = {"REQUEST_METHOD": probe.method, "PATH_INFO": probe.path, "QUERY_STRING": probe.query,
           "SERVER_NAME": "testserver", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
           "REMOTE_ADDR": CLIENT_ADDRESS, "wsgi.input": FakePayload(probe.body)}
    if probe.host:
        env["HTTP_HOST"] = probe.host
    if probe.body or probe.content_type is not None:
        env["CONTENT_LENGTH"] = str(len(probe.body))
    if probe.content_type is not None:
        env["CONTENT_TYPE"] = probe.content_type
    for name, value in probe.headers:
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


def send(client, probe: Probe) -> Answer:
    response = client.request(**environ(probe))
    trace = ""
    exc_info = getattr(response, "exc_info", None)
    if exc_info:
        trace = "".join(traceback.format_exception(*exc_info))
    return Answer(response.status_code, response.content, response.get("Content-Type", ""),
                  response.get("Retry-After", ""), trace)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def exercise(client, probe: Probe, *, writes: bool, spools: bool = False) -> Answer:
    """Send ``probe`` (and a replay when answered), check every invariant, count it. Raises Violation."""
    from callbroker.ops import limits

    limits.reset()  # each input starts with fresh buckets: the limits have their own tests
    before, last_event = state(), max_event_pk()
    capture = _Capture()
    carriers_log = logging.getLogger("callbroker.carriers")
    carriers_log.addHandler(capture)
    try:
        answer = send(client, probe)
    finally:
        carriers_log.removeHandler(capture)
    ledger.tried("in-process", probe.endpoint, answer.status, probe.signer)
    try:
        check_answer(probe, answer, "in-process")
        after = state()
        check_state(probe, answer, changes(before, after), events_after(last_event), writes, spools,
                    spooled_since(before.spool) if spools else [])
    except Violation as violation:
        name = known_issue(violation, capture.lines)
        if name is None:
            violation.record()
            raise
        ledger.known_issue(name, {"summary": KNOWN_ISSUES[name][0], "example": violation.detail})
        shutil.rmtree(Path(settings.DATA_DIR) / "spool", ignore_errors=True)  # back to normal for the next input
        return answer
    if answer.status == 200:
        replay = send(client, probe)
        ledger.tried("in-process", probe.endpoint, replay.status, "replay")
        try:
            if (replay.status, replay.body) != (answer.status, answer.body):
                fail("a replay gets the same answer", probe, replay,
                     first=answer.body[:300].decode("utf-8", "replace"))
            changed = changes(after, state())
            if changed:
                fail("a replay changes nothing", probe, replay, changed=changed)
        except Violation as violation:
            violation.record()
            raise
    return answer
