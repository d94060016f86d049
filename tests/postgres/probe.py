"""Code the PostgreSQL tests run inside Django on the database of ``DATABASE_URL``.

The test process's own Django is configured for SQLite (pytest-django), so anything that needs the
ORM or the call flow on PostgreSQL runs here, in a subprocess:
``python -m tests.postgres.probe ACTION '{json arguments}'`` prints the result as JSON.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

#: Rows in the call table for the query-plan checks: enough that the planner prefers indexes for real.
PLAN_ROWS = 24_000
PLAN_CALLERS = 2_400
NETWORK_FILE = Path(__file__).resolve().parents[1] / "e2e" / "network.yaml"


def insert_calls(calls: list[dict]) -> list[dict]:
    """Create calls (call_sid, started_at ISO) through the ORM; return where each row landed (or the
    database's refusal)."""
    from django.db import IntegrityError, connection, transaction

    from callbroker.calls.models import Call

    out = []
    for spec in calls:
        try:
            with transaction.atomic():
                call = Call.objects.create(call_sid=spec["call_sid"], to_number="+15125550001",
                                           started_at=dt.datetime.fromisoformat(spec["started_at"]))
        except IntegrityError as exc:
            out.append({"call_sid": spec["call_sid"], "error": str(exc)})
            continue
        partition = None  # SQLite: one plain table
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT tableoid::regclass::text FROM calls_call WHERE id = %s", [call.pk])
                partition = cursor.fetchone()[0]
        out.append({"id": call.pk, "call_sid": call.call_sid, "partition": partition})
    return out


def _populate(campaign_id: int, target_id: int, now: dt.datetime) -> None:
    """PLAN_ROWS calls over the last year (in their months' partitions) from PLAN_CALLERS callers, a third
    of them connected and billable."""
    from django.db import connection

    from callbroker.calls import partitions
    from callbroker.calls.models import Call

    partitions.ensure(months_ahead=13, now=now - dt.timedelta(days=366))  # the past year's months
    template = Call.objects.create(call_sid="CAtemplate", to_number="+15125550001", started_at=now,
                                   campaign_id=campaign_id, caller_number="+15123339999")
    varying = {"id", "call_sid", "caller_number", "started_at", "connected_target_id", "campaign_id",
               "verdict"}
    same = [f.column for f in Call._meta.concrete_fields if f.column not in varying]
    columns = ", ".join(same)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO calls_call ({columns}, call_sid, caller_number, started_at, connected_target_id, "
            f"campaign_id, verdict) SELECT {columns}, 'CAgen' || g, "
            "'+1512333' || lpad((g %% %s)::text, 4, '0'), "
            "%s::timestamptz - (g %% 365) * interval '1 day' - (g %% 1440) * interval '1 minute', "
            "CASE WHEN g %% 3 = 0 THEN %s END, %s, "
            "CASE WHEN g %% 3 = 0 THEN 'billable' ELSE 'not_billable' END "
            "FROM calls_call, generate_series(1, %s) AS g WHERE calls_call.id = %s",
            [PLAN_CALLERS, now, target_id, campaign_id, PLAN_ROWS, template.pk],
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE calls_call")


def explain_call_path() -> dict:
    """Place a call from a repeat caller through the call flow and EXPLAIN every query it ran on the
    call table (the sticky-caller lookup, the CallSid lookups, the duplicate and velocity lookups)."""
    from django.db import connection, transaction

    from callbroker.calls import services
    from callbroker.calls.events import InboundCall, StatusUpdate
    from callbroker.network.models import TrackingNumber

    tracking = TrackingNumber.objects.select_related("campaign").get(number="+15125550001")
    target = tracking.campaign.targets.order_by("priority").first()
    now = dt.datetime.now(dt.UTC)
    _populate(tracking.campaign_id, target.pk, now)
    caller = "+15123330003"  # g = 3, 6003, …: connected, billable calls in the generated set

    captured: list[tuple[str, tuple]] = []

    def capture(execute, sql, params, many, context):
        on_calls = "calls_call" in sql and "calls_callattempt" not in sql
        if sql.lstrip().upper().startswith("SELECT") and on_calls:
            captured.append((sql, tuple(params or ())))
        return execute(sql, params, many, context)

    with transaction.atomic():
        with connection.execute_wrapper(capture):
            services.start_call(InboundCall(call_sid="CAprobe", account_sid="AC", from_raw=caller,
                                            to="+15125550001", from_zip="78701", from_state="TX"))
            services.call_status("CAprobe", StatusUpdate(status="completed", duration=90))
        plans, parent_index, rows = _explained(captured)
        transaction.set_rollback(True)
    return {"plans": plans, "parent_index": parent_index, "rows_by_partition": rows}


def _explained(captured: list[tuple[str, tuple]]) -> tuple[list[dict], dict, dict]:
    """The plan of each captured statement, each partition index's parent index, and the call rows by
    partition (in the caller's transaction)."""
    from django.db import connection

    plans = []
    with connection.cursor() as cursor:
        for sql, params in captured:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
            plans.append({"sql": sql, "plan": plan if isinstance(plan, list) else json.loads(plan)})
        cursor.execute(
            "SELECT c.relname, p.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE c.relkind = 'i'"
        )
        parent_index = dict(cursor.fetchall())
        cursor.execute("SELECT tableoid::regclass::text, count(*) FROM calls_call GROUP BY 1")
        rows = dict(cursor.fetchall())
    return plans, parent_index, rows


def explain_close_abandoned() -> dict:
    """Given a year of calls (all judged), three left unfinished in past months and one started now, run
    ``close_abandoned`` and EXPLAIN every query it ran on the call table (the calls still in progress,
    then each call closed loaded by CallSid). Rolled back."""
    from django.db import connection, transaction

    from callbroker.calls import services
    from callbroker.calls.models import Call
    from callbroker.network.models import TrackingNumber

    tracking = TrackingNumber.objects.select_related("campaign").get(number="+15125550001")
    target = tracking.campaign.targets.order_by("priority").first()
    now = dt.datetime.now(dt.UTC)
    _populate(tracking.campaign_id, target.pk, now)  # its template call: in progress, started now
    left = [f"CAleft{days}" for days in (40, 100, 300)]
    for sid, days in zip(left, (40, 100, 300), strict=True):  # at the IVR, in three older months' partitions
        Call.objects.create(call_sid=sid, to_number=tracking.number, tracking_number=tracking,
                            campaign_id=tracking.campaign_id, started_at=now - dt.timedelta(days=days))

    captured: list[tuple[str, tuple]] = []

    def capture(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("SELECT") and "calls_call" in sql and "calls_callattempt" not in sql:
            captured.append((sql, tuple(params or ())))
        return execute(sql, params, many, context)

    with transaction.atomic():
        with connection.execute_wrapper(capture):
            closed = services.close_abandoned(now)
        stages = dict(Call.objects.filter(call_sid__in=[*left, "CAtemplate"]).values_list("call_sid", "stage"))
        plans, parent_index, rows = _explained(captured)
        transaction.set_rollback(True)
    return {"closed": closed, "stages": stages, "plans": plans, "parent_index": parent_index,
            "rows_by_partition": rows}


def place_calls(count: int, token: str) -> list[str]:
    """``count`` answered calls through the whole webhook stack, in process (the carrier emulator over
    httpx's WSGI transport: no server to start). Returns their CallSids."""
    import httpx
    from django.core.wsgi import get_wsgi_application

    from callbroker.sim.emulator import BuyerBehaviour, Carrier

    client = httpx.Client(transport=httpx.WSGITransport(app=get_wsgi_application()))
    answers = BuyerBehaviour(answers=True, ring_seconds=3, talk_seconds=90)
    with client, Carrier("http://127.0.0.1", token, client=client, seed=11) as carrier:
        records = [carrier.place_call("+15125550001", f"+1512444{n:04d}", params={"FromZip": "78701"},
                                      buyers={"+15125550101": answers}) for n in range(count)]
    assert not any(r.errors for r in records), [r.errors for r in records]
    return [r.call_sid for r in records]


def post_webhooks(webhooks: list[list], token: str) -> list[str]:
    """Signed carrier webhooks (``[path, params]``, …) through the whole webhook stack, in process and in turn
    (httpx's WSGI transport: no server to start); their answers."""
    import httpx
    from django.core.wsgi import get_wsgi_application
    from twilio.request_validator import RequestValidator

    base, answers = "http://127.0.0.1", []
    with httpx.Client(transport=httpx.WSGITransport(app=get_wsgi_application()), base_url=base) as client:
        for path, params in webhooks:
            signature = RequestValidator(token).compute_signature(base + path, params)
            response = client.post(path, data=params, headers={"X-Twilio-Signature": signature})
            assert response.status_code == 200, (path, response.status_code, response.text)
            answers.append(response.text)
    return answers


def setup(network: bool = True) -> None:
    """``callbroker migrate`` (and ``network load`` of the e2e network) in one process."""
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if network:
        call_command("network", "load", str(NETWORK_FILE), stdout=io.StringIO())


def commands(argvs: list[list[str]]) -> list[dict]:
    """Several ``callbroker`` commands in one process (each ``callbroker`` start costs a second or two):
    their output and exit code, as the CLI would give them."""
    from django.core.management import CommandError, call_command

    results = []
    for argv in argvs:
        out, err, code = io.StringIO(), io.StringIO(), 0
        try:
            call_command(*argv, stdout=out, stderr=err)
        except CommandError as exc:
            err.write(f"CommandError: {exc}\n")
            code = exc.returncode
        except SystemExit as exc:  # makemigrations --check
            code = exc.code if isinstance(exc.code, int) else 1
        results.append({"argv": argv, "stdout": out.getvalue(), "stderr": err.getvalue(), "code": code})
    return results


def lock_marked(target_ids: list[int]) -> dict:
    """``live._lock_marked`` in a transaction (with a 5 s lock timeout): the targets it locked, and how
    long it took; the marks of the locked ones are then cleared, as a rebuild does."""
    import time

    from django.db import connection, transaction

    from callbroker.network import live

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '5s'")
        started = time.monotonic()
        locked = live._lock_marked(target_ids)
        took = time.monotonic() - started
        if locked:
            with connection.cursor() as cursor:
                cursor.execute(f"UPDATE {live.STATE} SET counted_without_redis_at = NULL WHERE target_id = ANY(%s)",
                               [locked])
    return {"locked": locked, "seconds": took}


def handover(redis_url: str, number: str, hold_s: float, first: str, second: str, held_before: int = 0,
             marked: bool = False) -> dict:
    """Two nodes in one process, a thread each, on the target whose line is ``number``: a "database"
    node can't reach Redis and counts its limits in the database; a "redis" node reaches Redis, whose
    counters say the line is free at first. The ``first`` node takes the target's one slot and holds its
    webhook's transaction open ``hold_s``; meanwhile the ``second`` reserves the same target. Before,
    ``held_before`` calls already hold a slot of the target in the database (not in Redis), and with
    ``marked`` the target is marked counted without Redis. Returns what each got and how long the
    second took."""
    import threading
    import time

    from django.db import connection, transaction

    from callbroker.calls.models import Call, CallAttempt
    from callbroker.network import live, live_redis
    from callbroker.network.snapshot import build_snapshot

    info = next(t for t in build_snapshot().targets.values() if t.core.number == number)
    store = live_redis.RedisCounters(live_redis.connect(redis_url), f"cb-handover-{first}-{second}:",
                                     rebuild=live.rebuild_from_database)
    store.mark_known([(info.core, info.timezone)])  # Redis: nothing held
    for n in range(held_before):  # calls in progress that Redis doesn't know of
        earlier = Call.objects.create(call_sid=f"CAheld{n}", to_number="+15125550005",
                                      started_at=dt.datetime.now(dt.UTC))
        CallAttempt.objects.create(call=earlier, sequence=1, target_id=info.core.id, buyer_id=info.core.buyer_id,
                                   number=number, started_at=earlier.started_at)
    if marked:
        live.mark_counted_without_redis(info.core.id)
    nodes = [live.RedisBackend(store), live.RedisBackend(store)]
    for node, kind in zip(nodes, (first, second), strict=True):
        if kind == "database":
            node._retry_at = time.monotonic() + 3600  # Redis failed a moment ago, for this node
    took, result = threading.Event(), {}

    def on_first() -> None:
        try:
            with transaction.atomic():
                now = dt.datetime.now(dt.UTC)
                result["first"] = nodes[0].reserve(info.core, info.timezone, now)
                call = Call.objects.create(call_sid="CAhandover", to_number="+15125550005", started_at=now)
                CallAttempt.objects.create(call=call, sequence=1, target_id=info.core.id,
                                           buyer_id=info.core.buyer_id, number=number, started_at=now)
                took.set()
                time.sleep(hold_s)
        finally:
            took.set()
            connection.close()

    def on_second() -> None:
        try:
            took.wait()
            started = time.monotonic()
            with transaction.atomic():
                result["second"] = nodes[1].reserve(info.core, info.timezone, dt.datetime.now(dt.UTC))
            result["second_seconds"] = time.monotonic() - started
        finally:
            connection.close()

    threads = [threading.Thread(target=on_first), threading.Thread(target=on_second)]
    _start_and_join(threads)
    return {"first": result["first"] and result["first"].value, "second": result["second"] and result["second"].value,
            "second_seconds": result["second_seconds"],
            "redis_active": int(store.client.get(store.active_key(info.core.id)) or 0)}


def _deliver(sid: str, key: str, run) -> None:
    """One webhook of call ``sid`` through ``handle_once`` (dedupe key ``{sid}:{key}``), answered with repr."""
    from callbroker.calls import services
    from callbroker.calls.events import EventIn

    event = EventIn(call_sid=sid, kind=key.split(":")[0], dedupe_key=f"{sid}:{key}", params={"CallSid": sid})
    services.handle_once(event, run, repr)


def _start_and_join(threads: list) -> None:
    """Start every thread, then wait for them all."""
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class _RetriesLogged:
    """The lines "… retrying" that these loggers write at INFO between ``start`` and ``stop``: each a transaction
    PostgreSQL stopped (a deadlock) and run again, which the lock-order probes must not see."""

    def __init__(self, *names: str) -> None:
        import logging

        self.lines: list[str] = []
        self.loggers = [logging.getLogger(name) for name in names]
        self.levels = [log.level for log in self.loggers]
        lines = self.lines

        class Retries(logging.Handler):
            def emit(self, record):
                if "retrying" in record.getMessage():
                    lines.append(f"{record.name}: {record.getMessage()[:160]}")

        self.handler = Retries(level=logging.INFO)

    def start(self) -> list[str]:
        import logging

        for log in self.loggers:
            log.addHandler(self.handler)
            log.setLevel(logging.INFO)
        return self.lines

    def stop(self) -> None:
        for log, level in zip(self.loggers, self.levels, strict=True):
            log.removeHandler(self.handler)
            log.setLevel(level)


def _one_callers_two_calls(sids: dict[str, str], caller: str, started: dt.datetime) -> None:
    """The caller's ``earlier`` and ``later`` calls to the e2e plumbing number, a minute apart from ``started``,
    from two ZIPs (Austin's line A, Dallas's line C)."""
    from callbroker.calls import services
    from callbroker.calls.events import InboundCall

    for n, (label, zip_code) in enumerate((("earlier", "78701"), ("later", "75201"))):
        call = InboundCall(call_sid=sids[label], account_sid="AC" + "0" * 32, from_raw=caller,
                           to="+15125550001", from_zip=zip_code, from_state="TX")
        _deliver(sids[label], "voice",
                 lambda call=call, n=n: services.start_call(call, started + dt.timedelta(minutes=n)))


def _call_the_missed_calls_number(sid: str, caller: int) -> None:
    """A new call to the e2e network's missed-calls number (Sleepy line first, then Awake) from the caller
    +1737555<caller>."""
    from callbroker.calls import services
    from callbroker.calls.events import InboundCall

    call = InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw=f"+1737555{caller}", to="+15125550004")
    _deliver(sid, "voice", lambda: services.start_call(call))


def _no_answer(sid: str, n: int) -> None:
    """The Dial action of call ``sid``'s first leg: nobody answered (its leg's CallSid made of ``n``)."""
    from callbroker.calls import services
    from callbroker.calls.events import DialOutcome

    outcome = DialOutcome("no-answer", False, 0, "CA" + f"{n}" * 32)
    _deliver(sid, "dial:1", lambda: services.dial_finished(sid, 1, outcome))


def _at_once(runs: dict[str, Callable[[], None]], first: str, hold_s: float) -> None:
    """Webhooks in threads of their own at the same time, keyed by their dedupe keys: the one keyed ``first``
    goes first and holds its transaction open ``hold_s`` after its work (its event written), while the
    others run. Without anything ordering them, the others read the state it has not committed yet."""
    import threading
    import time

    from django.db import connection

    from callbroker.calls import services

    store, holding = services._store_event, threading.Event()

    def held_store(row, body):
        store(row, body)
        if row[2] == first:  # the event's dedupe key
            holding.set()
            time.sleep(hold_s)

    def run(key: str) -> None:
        try:
            if key != first:
                holding.wait(10)
            runs[key]()
        finally:
            holding.set()
            connection.close()

    services._store_event = held_store
    try:
        threads = [threading.Thread(target=run, args=(key,)) for key in runs]
        _start_and_join(threads)
    finally:
        services._store_event = store


def racing_callbacks(first: str, bridged: bool, hold_s: float = 1.0) -> dict:
    """One call on the e2e plumbing campaign (SQL counters), ringing Line A; then its Dial action (the
    buyer talked 120 s, or didn't answer) and its final status (the caller hung up) handled at the same
    time in two threads, ``first`` ("dial" or "status") holding its transaction open ``hold_s`` after its
    work. Returns the call as it ends up: stage, verdict, attempts, slots, ledger."""
    from django.test.utils import override_settings

    from callbroker.billing.models import LedgerEntry
    from callbroker.calls import services
    from callbroker.calls.events import DialOutcome, InboundCall, StatusUpdate
    from callbroker.calls.models import Call, CallAttempt
    from callbroker.network.models import TargetState

    sid = "CA" + os.urandom(16).hex()
    with override_settings(REDIS_URL=""):
        inbound = InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw="+17375550166", to="+15125550001",
                              from_zip="78701", from_state="TX")
        _deliver(sid, "voice", lambda: services.start_call(inbound))
        outcome = (DialOutcome("completed", True, 120, "CA" + "d" * 32) if bridged
                   else DialOutcome("no-answer", False, 0, "CA" + "d" * 32))
        keys = {"dial": "dial:1", "status": "status:completed:"}
        _at_once({f"{sid}:{keys['dial']}": lambda: _deliver(sid, keys["dial"],
                                                            lambda: services.dial_finished(sid, 1, outcome)),
                  f"{sid}:{keys['status']}": lambda: _deliver(
                      sid, keys["status"], lambda: services.call_status(sid, StatusUpdate("completed", 150)))},
                 first=f"{sid}:{keys[first]}", hold_s=hold_s)
    call = Call.objects.get(call_sid=sid)
    return {
        "stage": call.stage, "verdict": call.verdict, "reasons": call.reason_codes, "talk": call.talk_seconds,
        "attempts": [[a.sequence, a.result, a.slot_held] for a in CallAttempt.objects.filter(call=call).order_by("sequence")],
        "active_calls": sum(TargetState.objects.values_list("active_calls", flat=True)),
        "charges": LedgerEntry.objects.filter(call_sid=sid, kind="charge").count(),
    }


def misses_at_once(redis_url: str, redis_prefix: str, hold_s: float = 1.0) -> dict:
    """Missed-call protection with Redis counters: two calls on the e2e missed-calls campaign (2 misses in
    an hour pause a line for 30 min) ring its Sleepy line; both no-answers are handled at the same time, the
    first holding its transaction open ``hold_s`` after its work. Returns Sleepy's pause reason, what each
    call rang, and the line a third call rings first."""
    from django.test.utils import override_settings

    from callbroker.calls.models import CallAttempt
    from callbroker.network.models import Target, TargetState

    sids = ["CA" + os.urandom(16).hex() for _ in range(3)]

    def inbound(n: int) -> None:
        _call_the_missed_calls_number(sids[n], caller=1000 + n)

    def no_answer(n: int) -> None:
        _no_answer(sids[n], n)

    with override_settings(REDIS_URL=redis_url, COUNTERS_BACKEND="redis", REDIS_KEY_PREFIX=redis_prefix):
        inbound(0)
        inbound(1)
        _at_once({f"{sids[n]}:dial:1": lambda n=n: no_answer(n) for n in (0, 1)}, first=f"{sids[0]}:dial:1",
                 hold_s=hold_s)
        inbound(2)
    sleepy = Target.objects.get(key="sparky-sleepy")
    rang = {sid: list(CallAttempt.objects.filter(call__call_sid=sid).order_by("sequence")
                      .values_list("number", flat=True)) for sid in sids}
    return {"pause_reason": TargetState.objects.get(target=sleepy).pause_reason, "sleepy": sleepy.number,
            "rang": [rang[sid] for sid in sids]}


def verdicts_at_once(first: str, hold_s: float = 1.0) -> dict:
    """One caller's two calls on the e2e plumbing campaign (duplicate window 1 day), SQL counters: the earlier
    from 78701 (Line A), the later, a minute after, from Dallas (Line C: another line, so that giving back
    their slots doesn't make them take turns). Both bridged 120 s; then both final statuses are handled at
    the same time, the ``first`` call's ("earlier" or "later") holding its transaction open ``hold_s`` after
    its work. Returns each call's verdict, reasons and net charge."""
    from django.db.models import Sum
    from django.test.utils import override_settings
    from django.utils import timezone

    from callbroker.billing.models import LedgerEntry
    from callbroker.calls import services
    from callbroker.calls.events import DialOutcome, StatusUpdate
    from callbroker.calls.models import Call

    sids = {"earlier": "CA" + os.urandom(16).hex(), "later": "CA" + os.urandom(16).hex()}
    started = timezone.now() - dt.timedelta(minutes=5)
    with override_settings(REDIS_URL=""):
        _one_callers_two_calls(sids, "+17375550177", started)
        for sid in sids.values():
            talked = DialOutcome("completed", True, 120, "CA" + "d" * 32)
            _deliver(sid, "dial:1", lambda sid=sid, talked=talked: services.dial_finished(sid, 1, talked))
        _at_once({f"{sid}:status:completed:": lambda sid=sid: _deliver(
            sid, "status:completed:", lambda: services.call_status(sid, StatusUpdate("completed", 150)))
            for sid in sids.values()}, first=f"{sids[first]}:status:completed:", hold_s=hold_s)
    found = {}
    for label, sid in sids.items():
        call = Call.objects.get(call_sid=sid)
        charged = LedgerEntry.objects.filter(call_sid=sid, kind__in=["charge", "charge_reversal"]).aggregate(
            net=Sum("amount"))["net"]
        found[label] = {"verdict": call.verdict, "reasons": call.reason_codes, "line": call.connected_target.key,
                        "charged": "0.00" if charged is None else str(charged)}
    return found


def late_miss_beside_a_miss(hold_s: float = 1.0) -> dict:
    """Missed-call protection with SQL counters (review22b): Sleepy (2 misses in an hour) has one miss
    already; call 0's final status came first (its leg closed canceled, its slot given back), call 1 still
    rings Sleepy. Then call 0's late no-answer (``record_late_unbridged``: takes the misses lock and, the
    count at the limit, writes Sleepy's pause) and call 1's no-answer (gives its slot back, an UPDATE of
    Sleepy's state row, then the misses lock) are handled at the same time, call 0 pausing ``hold_s`` right
    after taking the misses lock. Returns the webhooks that were retried (and why), and Sleepy's pause."""
    import threading
    import time

    from django.db import connection
    from django.test.utils import override_settings

    from callbroker import db
    from callbroker.calls import services
    from callbroker.calls.events import StatusUpdate
    from callbroker.network.models import Target, TargetState

    sids = ["CA" + os.urandom(16).hex() for _ in range(3)]
    retries = _RetriesLogged("callbroker.calls.services")
    retried = retries.start()

    def inbound(n: int) -> None:
        _call_the_missed_calls_number(sids[n], caller=2000 + n)

    def no_answer(n: int) -> None:
        _no_answer(sids[n], n)

    took, lock = threading.Event(), db.lock_target_misses

    def lock_and_hold(target_id: int) -> None:
        lock(target_id)
        if threading.current_thread().name == "late" and not took.is_set():
            took.set()
            time.sleep(hold_s)

    def run(n: int) -> None:
        try:
            if n == 1:
                took.wait(10)
            no_answer(n)
        finally:
            took.set()
            connection.close()

    with override_settings(REDIS_URL="", COUNTERS_BACKEND="sql"):
        inbound(2)
        no_answer(2)  # Sleepy's first miss (call 2 goes on to Awake)
        inbound(0)
        _deliver(sids[0], "status:completed:", lambda: services.call_status(sids[0], StatusUpdate("completed", 30)))
        inbound(1)
        db.lock_target_misses = lock_and_hold
        try:
            threads = [threading.Thread(target=run, args=(0,), name="late"),
                       threading.Thread(target=run, args=(1,), name="ringing")]
            _start_and_join(threads)
        finally:
            db.lock_target_misses = lock
    retries.stop()
    sleepy = Target.objects.get(key="sparky-sleepy")
    return {"retried": retried, "pause_reason": TargetState.objects.get(target=sleepy).pause_reason}


def replayed_late_bridge_beside_a_verdict(hold_s: float = 1.5, live_first: bool = False) -> dict:
    """A caller's two calls on the e2e plumbing campaign (SQL counters): the earlier bridged on
    Line A, still talking; the later on Line C, ended while its leg rang (judged not connected). Then, at the
    same moment, the replay of the later call's spooled bridged Dial action (as ``replay._replay_events``
    applies it: ``replay._lock_for_replay``, then ``services.dial_finished``), holding the row
    ``hold_s`` before applying it, and the earlier call's final status handled live (judged billable, it
    judges the later call again: a duplicate). ``live_first``: the final status takes the caller's lock
    first and holds it ``hold_s`` before judging, while the replay takes its locks. Returns what each
    transaction raised and the retries."""
    import threading
    import time

    from django.db import connection, transaction
    from django.test.utils import override_settings
    from django.utils import timezone

    from callbroker import db
    from callbroker.calls import replay as replaying
    from callbroker.calls import services
    from callbroker.calls.events import DialOutcome, StatusUpdate
    from callbroker.calls.models import Call

    sids = {"earlier": "CA" + os.urandom(16).hex(), "later": "CA" + os.urandom(16).hex()}
    started = timezone.now() - dt.timedelta(minutes=5)
    retries = _RetriesLogged("callbroker.calls.services")
    retried = retries.start()
    raised: dict[str, str] = {}
    locked, caller_held = threading.Event(), threading.Event()
    talked = DialOutcome("completed", True, 120, "CA" + "d" * 32)
    lock_caller = db.lock_caller

    def live_holds_the_caller(number: str) -> None:
        lock_caller(number)
        if live_first and threading.current_thread().name == "live" and not caller_held.is_set():
            caller_held.set()
            time.sleep(hold_s)  # the replay takes its locks meanwhile

    def replay() -> None:
        try:
            if live_first:
                caller_held.wait(10)
            with transaction.atomic():
                # The replay's own locks, in its order (the call's events as spooled: their From).
                replaying._lock_for_replay(sids["later"], replaying._caller_to_lock(sids["later"], [
                    {"params": {"CallSid": sids["later"], "From": "+17375550188"}}]))
                locked.set()
                if not live_first:
                    time.sleep(hold_s)
                services.dial_finished(sids["later"], 1, talked)
        except Exception as exc:  # noqa: BLE001
            raised["replay"] = f"{type(exc).__name__}: {str(exc)[:80]}"
        finally:
            locked.set()
            connection.close()

    def live() -> None:
        try:
            if not live_first:
                locked.wait(10)
            _deliver(sids["earlier"], "status:completed:",
                     lambda: services.call_status(sids["earlier"], StatusUpdate("completed", 150)))
        except Exception as exc:  # noqa: BLE001
            raised["live"] = f"{type(exc).__name__}: {str(exc)[:80]}"
        finally:
            connection.close()

    with override_settings(REDIS_URL=""):
        _one_callers_two_calls(sids, "+17375550188", started)
        _deliver(sids["earlier"], "dial:1", lambda: services.dial_finished(sids["earlier"], 1, talked))
        _deliver(sids["later"], "status:completed:",
                 lambda: services.call_status(sids["later"], StatusUpdate("completed", 150)))
        db.lock_caller = live_holds_the_caller
        threads = [threading.Thread(target=replay, name="replay"), threading.Thread(target=live, name="live")]
        _start_and_join(threads)
        db.lock_caller = lock_caller
    retries.stop()
    found = {label: [Call.objects.get(call_sid=sid).verdict, Call.objects.get(call_sid=sid).reason_codes]
             for label, sid in sids.items()}
    return {"raised": raised, "retried": retried, "calls": found}


def replayed_status_beside_a_final_status(replay_first: bool, live_webhook: str = "status") -> dict:
    """A caller's two calls on the e2e plumbing campaign (SQL counters), started together, both ringing Line A
    (each holding one of its slots); one call's final status was spooled during an outage. Then the replayer
    (``replay.replay_ready``) replays that status while a webhook of the other call is handled live,
    ``live_webhook``: its final status (``status``: gives its slot back on Line A's state row, then judges
    the call under the caller's lock), or its Dial action, bridged, after its final status (``late bridge``:
    Line A given a daily cap, the call's cap unit counted again on Line A's usage row, then the call judged
    again under the caller's lock). The replay takes the caller's lock, then gives its slot and cap unit back
    on those rows. The two are driven so that each has taken its first lock before it asks for the other's:
    the replay has taken the caller's lock (``replay._lock_for_replay``) and the live webhook has run up to
    asking for it (``db.lock_caller``), having taken whatever it takes before. ``replay_first``: the replay
    takes its locks, then the live webhook runs; else the live webhook runs up to the caller's lock, then the
    replay takes its locks. No sleep: each side waits for the other's event only. Returns the transactions
    run again (and why), the replay's errors, the waits that ended without their event, each call's stage,
    verdict, line and slots held, and Line A's slots taken."""
    import threading

    from django.db import connection
    from django.test.utils import override_settings
    from django.utils import timezone

    from callbroker import db
    from callbroker.calls import replay as replaying
    from callbroker.calls import services, spool
    from callbroker.calls.events import DialOutcome, InboundCall, StatusUpdate
    from callbroker.calls.models import Call, CallAttempt
    from callbroker.network.models import Target, TargetState, TargetUsage

    sids = {"live": "CA" + os.urandom(16).hex(), "replayed": "CA" + os.urandom(16).hex()}
    retries = _RetriesLogged("callbroker.calls.services", "callbroker.calls.replay")
    retried = retries.start()
    raised: dict[str, str] = {}
    in_vain: list[str] = []
    replay_locked, live_asks = threading.Event(), threading.Event()  # the replay holds the caller's lock; the
    lock_for_replay, lock_caller = replaying._lock_for_replay, db.lock_caller  # live webhook asks for it

    def wait(event: threading.Event, what: str) -> None:
        if not event.wait(60):  # never reached when the two meet as meant: the result tells
            in_vain.append(what)

    def replay_holding_the_caller(call_sid: str, caller: str) -> bool:
        found = lock_for_replay(call_sid, caller)
        if not replay_locked.is_set():  # once: a run again goes its way
            replay_locked.set()
            if replay_first:
                wait(live_asks, "the live webhook asking for the caller's lock")
        return found

    def live_asking_for_the_caller(number: str) -> None:
        if threading.current_thread().name == "live" and not live_asks.is_set():
            live_asks.set()
            if not replay_first:
                wait(replay_locked, "the replay holding the caller's lock")
        lock_caller(number)

    def replay() -> None:
        try:
            if not replay_first:
                wait(live_asks, "the live webhook asking for the caller's lock")
            raised["replay"] = replaying.replay_ready().errors
        finally:
            replay_locked.set()
            connection.close()

    def live() -> None:
        try:
            if replay_first:
                wait(replay_locked, "the replay holding the caller's lock")
            if live_webhook == "status":
                _deliver(sids["live"], "status:completed:",
                         lambda: services.call_status(sids["live"], StatusUpdate("completed", 150)))
            else:
                talked = DialOutcome("completed", True, 120, "CA" + "d" * 32)
                _deliver(sids["live"], "dial:1", lambda: services.dial_finished(sids["live"], 1, talked))
        except Exception as exc:  # noqa: BLE001
            raised["live"] = f"{type(exc).__name__}: {str(exc)[:120]}"
        finally:
            live_asks.set()
            connection.close()

    started = timezone.now() - dt.timedelta(minutes=5)  # both at once: their cap units on one row
    with override_settings(REDIS_URL="", COUNTERS_BACKEND="sql"):
        if live_webhook == "late bridge":
            line = Target.objects.get(key="pipes-a")
            line.daily_cap = 100  # saved: the network's version moves on, the webhooks below read it
            line.save()
        for label, sid in sids.items():
            inbound = InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw="+17375550189",
                                  to="+15125550001", from_zip="78701", from_state="TX")
            _deliver(sid, "voice", lambda inbound=inbound: services.start_call(inbound, started))
        if live_webhook == "late bridge":  # its final status first: its leg closed, its unit given back
            _deliver(sids["live"], "status:completed:",
                     lambda: services.call_status(sids["live"], StatusUpdate("completed", 150)))
        ended = (started + dt.timedelta(minutes=3)).isoformat()
        spool.append(sids["replayed"], {"kind": "status", "received_at": ended,
                                        "params": {"CallSid": sids["replayed"]}, "query": {}, "answer": "",
                                        "update": {"status": "completed", "duration": 100, "sequence": ""}})
        written = dt.datetime.now().timestamp() - 300  # spooled a while ago
        os.utime(spool.path_of(sids["replayed"]), (written, written))
        replaying._lock_for_replay, db.lock_caller = replay_holding_the_caller, live_asking_for_the_caller
        try:
            _start_and_join([threading.Thread(target=replay, name="replay"),
                             threading.Thread(target=live, name="live")])
        finally:
            replaying._lock_for_replay, db.lock_caller = lock_for_replay, lock_caller
    retries.stop()
    calls = {}
    for label, sid in sids.items():
        call = Call.objects.get(call_sid=sid)
        attempts = CallAttempt.objects.filter(call=call).select_related("target")
        calls[label] = {"stage": call.stage, "verdict": call.verdict, "reasons": call.reason_codes,
                        "lines": [a.target.key for a in attempts], "slots_held": sum(a.slot_held for a in attempts)}
    return {"retried": retried, "raised": raised, "in_vain": in_vain, "calls": calls,
            "spooled": spool.path_of(sids["replayed"]).exists(),
            "line_a_active": TargetState.objects.get(target__key="pipes-a").active_calls,
            "line_a_units": sorted(TargetUsage.objects.filter(target__key="pipes-a").values_list("count", flat=True))}


def late_status_beside_a_verdict() -> dict:
    """A caller's two calls on the e2e plumbing campaign (duplicate window 1 day, SQL counters), the earlier
    on Line A, the later on Line C, both bridged 120 s; the later one closed without its final status (its
    spool file given up: ``close_without_status``), judged billable. Then, at the same moment, the earlier
    call's final status (judged billable for the first time, it judges the later call again: a duplicate,
    writing its row under the caller's lock) and the later call's real final status come late, live, saying
    the call lasted 60 s (shorter than its talk time: judged again, under the caller's lock). The earlier
    one takes the caller's lock first and goes on once the later one asks for it (``db.lock_caller``),
    having done whatever it does before. No sleep: each side waits for the other's event only. Returns the
    transactions run again (and why), what each raised, the waits that ended without their event, and each
    call's verdict and reasons."""
    import threading

    from django.db import connection
    from django.test.utils import override_settings
    from django.utils import timezone

    from callbroker import db
    from callbroker.billing.reconcile import check_ledger
    from callbroker.calls import services
    from callbroker.calls.events import DialOutcome, StatusUpdate
    from callbroker.calls.models import Call

    sids = {"earlier": "CA" + os.urandom(16).hex(), "later": "CA" + os.urandom(16).hex()}
    started = timezone.now() - dt.timedelta(minutes=5)
    retries = _RetriesLogged("callbroker.calls.services")
    retried = retries.start()
    raised: dict[str, str] = {}
    in_vain: list[str] = []
    earlier_holds, later_asks = threading.Event(), threading.Event()
    lock_caller = db.lock_caller

    def wait(event: threading.Event, what: str) -> None:
        if not event.wait(60):  # never reached when the two meet as meant: the result tells
            in_vain.append(what)

    def meeting_the_other(number: str) -> None:
        name = threading.current_thread().name
        if name == "later" and not later_asks.is_set():
            later_asks.set()
        lock_caller(number)
        if name == "earlier" and not earlier_holds.is_set():  # once: a run again goes its way
            earlier_holds.set()
            wait(later_asks, "the late status asking for the caller's lock")

    def earlier() -> None:
        try:
            _deliver(sids["earlier"], "status:completed:",
                     lambda: services.call_status(sids["earlier"], StatusUpdate("completed", 150)))
        except Exception as exc:  # noqa: BLE001
            raised["earlier"] = f"{type(exc).__name__}: {str(exc)[:120]}"
        finally:
            earlier_holds.set()
            connection.close()

    def later() -> None:
        try:
            wait(earlier_holds, "the earlier call's final status holding the caller's lock")
            _deliver(sids["later"], "status:completed:",
                     lambda: services.call_status(sids["later"], StatusUpdate("completed", 60)))
        except Exception as exc:  # noqa: BLE001
            raised["later"] = f"{type(exc).__name__}: {str(exc)[:120]}"
        finally:
            later_asks.set()
            connection.close()

    with override_settings(REDIS_URL="", COUNTERS_BACKEND="sql"):
        _one_callers_two_calls(sids, "+17375550166", started)
        talked = DialOutcome("completed", True, 120, "CA" + "d" * 32)
        for sid in sids.values():
            _deliver(sid, "dial:1", lambda sid=sid: services.dial_finished(sid, 1, talked))
        assert services.close_without_status(sids["later"])
        closed = Call.objects.get(call_sid=sids["later"])
        db.lock_caller = meeting_the_other
        try:
            _start_and_join([threading.Thread(target=earlier, name="earlier"),
                             threading.Thread(target=later, name="later")])
        finally:
            db.lock_caller = lock_caller
    retries.stop()
    calls = {}
    for label, sid in sids.items():
        call = Call.objects.get(call_sid=sid)
        calls[label] = {"verdict": call.verdict, "reasons": call.reason_codes, "final_status": call.final_status,
                        "duration": call.duration_seconds}
    return {"retried": retried, "raised": raised, "in_vain": in_vain, "calls": calls,
            "closed_verdict": closed.verdict, "ledger": [str(m) for m in check_ledger().mismatches]}


def crossed_rings(first: str, counters: str = "sql") -> dict:
    """Two calls on the e2e plumbing campaign (SQL counters; with ``counters="database"`` Redis counters with
    Redis unreachable, every limit counted in the database, as on nodes that all lost Redis) whose rings
    cross: call "ab", a new caller from 78701, rings Line A then Line B; call "ba", from a caller who reached
    Line B yesterday (sticky), rings Line B then Line A. Both first legs go unanswered and both Dial actions
    are handled at the same moment: the ``first`` one ("ab" or "ba") gives its line's slot back and goes on
    only once the other's connection waits for a lock (``pg_locks``), so that each has taken its first lock
    before it asks for the other's. Returns the transactions run again (and why), what each raised, the
    waits that ended without their event, each call's ring as decided, where its limits were counted and
    the lines its legs rang (with the slots still held), Lines A and B's slots taken (SQL counters) and
    which of them are marked counted without Redis."""
    import threading
    import time

    from django.db import connection
    from django.test.utils import override_settings
    from django.utils import timezone

    from callbroker.calls import services
    from callbroker.calls.events import DialOutcome, InboundCall, StatusUpdate
    from callbroker.calls.models import Call, CallAttempt
    from callbroker.network.models import Target, TargetState

    sids = {"ab": "CA" + os.urandom(16).hex(), "ba": "CA" + os.urandom(16).hex()}
    sticky = "CA" + os.urandom(16).hex()  # the "ba" caller's call yesterday, bridged on Line B
    callers = {"ab": "+17375550191", "ba": "+17375550192"}
    retries = _RetriesLogged("callbroker.calls.services")
    retried = retries.start()
    raised: dict[str, str] = {}
    in_vain: list[str] = []
    first_holds, second_ready, second_done = threading.Event(), threading.Event(), threading.Event()
    second_pid: list[int] = []
    release_attempt = services.release_attempt

    def wait(event: threading.Event, what: str) -> None:
        if not event.wait(60):  # never reached when the two meet as meant: the result tells
            in_vain.append(what)

    def holding_the_slot_given_back(call, attempt, info, *, undo_usage):
        release_attempt(call, attempt, info, undo_usage=undo_usage)
        if threading.current_thread().name != "first" or first_holds.is_set():
            return  # once: a run again goes its way
        first_holds.set()
        wait(second_ready, "the other Dial action's connection")
        given_up = time.monotonic() + 60
        with connection.cursor() as cursor:
            while not second_done.is_set() and time.monotonic() < given_up:
                cursor.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", second_pid)
                if cursor.fetchone()[0]:
                    return  # the other waits for a lock this one holds: go on and ask for the other's
                time.sleep(0.01)
        in_vain.append("the other Dial action waiting for a lock")

    def unanswered(label: str) -> None:
        name = threading.current_thread().name
        try:
            if name == "second":
                connection.ensure_connection()
                second_pid.append(connection.connection.info.backend_pid)
                second_ready.set()
                wait(first_holds, "the first Dial action holding its line's row")
            missed = DialOutcome("no-answer", False, 0, "CA" + "e" * 32)
            _deliver(sids[label], "dial:1", lambda: services.dial_finished(sids[label], 1, missed))
        except Exception as exc:  # noqa: BLE001
            raised[label] = f"{type(exc).__name__}: {str(exc)[:120]}"
        finally:
            if name == "second":
                second_done.set()
            else:
                first_holds.set()
            connection.close()

    now = timezone.now()
    backend = {"sql": {"REDIS_URL": "", "COUNTERS_BACKEND": "sql"},
               "database": {"REDIS_URL": "redis://127.0.0.1:19001/0", "COUNTERS_BACKEND": "redis"}}[counters]
    with override_settings(**backend):
        if counters == "database":
            from callbroker.network import live

            live.current_backend()._retry_at = time.monotonic() + 3600  # Redis failed a moment ago: never tried

        def inbound(sid: str, caller: str, at: dt.datetime) -> None:
            call = InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw=caller, to="+15125550001",
                               from_zip="78701", from_state="TX")
            _deliver(sid, "voice", lambda: services.start_call(call, at))

        yesterday = now - dt.timedelta(hours=20)
        inbound(sticky, callers["ba"], yesterday)  # rings Line A: no answer; then Line B: talked
        _deliver(sticky, "dial:1", lambda: services.dial_finished(
            sticky, 1, DialOutcome("no-answer", False, 0, "CA" + "a" * 32), yesterday))
        _deliver(sticky, "dial:2", lambda: services.dial_finished(
            sticky, 2, DialOutcome("completed", True, 120, "CA" + "b" * 32), yesterday))
        _deliver(sticky, "status:completed:",
                 lambda: services.call_status(sticky, StatusUpdate("completed", 180), yesterday))
        for label in ("ab", "ba"):
            inbound(sids[label], callers[label], now)
        labels = {"first": first, "second": "ba" if first == "ab" else "ab"}
        services.release_attempt = holding_the_slot_given_back
        try:
            _start_and_join([threading.Thread(target=unanswered, args=(labels[name],), name=name)
                             for name in ("first", "second")])
        finally:
            services.release_attempt = release_attempt
    retries.stop()
    keys = dict(Target.objects.values_list("id", "key"))
    calls = {}
    for label, sid in sids.items():
        call = Call.objects.get(call_sid=sid)
        attempts = CallAttempt.objects.filter(call=call).order_by("sequence")
        calls[label] = {"ring": [keys[t] for t in call.decision["ring"]], "limits": call.decision.get("limits"),
                        "lines": [keys[a.target_id] for a in attempts],
                        "results": [a.result for a in attempts], "slots_held": [a.slot_held for a in attempts]}
    active = dict(TargetState.objects.filter(target__key__in=["pipes-a", "pipes-b"])
                  .values_list("target__key", "active_calls"))
    marked = sorted(TargetState.objects.filter(target__key__in=["pipes-a", "pipes-b"],
                                               counted_without_redis_at__isnull=False)
                    .values_list("target__key", flat=True))
    return {"retried": retried, "raised": raised, "in_vain": in_vain, "calls": calls, "active": active,
            "marked": marked}


def _until_it_waits_for_a_lock(pid: list[int], done, waited: list[bool], in_vain: list[str], what: str) -> None:
    """Hold this thread, its transaction and the locks it has, until the connection ``pid[0]`` waits for a
    lock (``pg_locks``: noted in ``waited``) or its thread is ``done``; after 60 s without either, ``what`` goes
    to ``in_vain`` (the result tells)."""
    import time

    from django.db import connection

    given_up = time.monotonic() + 60
    with connection.cursor() as cursor:
        while not done.is_set() and time.monotonic() < given_up:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", pid)
            if cursor.fetchone()[0]:
                waited.append(True)
                return
            time.sleep(0.01)
    if not done.is_set():
        in_vain.append(what)


def _calls_in_progress_on(target_id: int, count: int, also: Callable | None = None) -> None:
    """``count`` calls ringing the target now, each with its attempt, written and committed by a thread and
    connection of their own (another node's calls); ``also(call)`` after each (e.g. its slot taken in Redis)."""
    import threading

    from django.db import connection
    from django.utils import timezone

    from callbroker.calls.models import Call, CallAttempt
    from callbroker.network.models import Target

    def take() -> None:
        try:
            line = Target.objects.get(pk=target_id)
            for n in range(count):
                other = Call.objects.create(call_sid=f"CAelsewhere{n}", to_number="+15125550001",
                                            started_at=timezone.now())
                CallAttempt.objects.create(call=other, sequence=1, target_id=target_id, buyer_id=line.buyer_id,
                                           number=line.number, started_at=other.started_at)
                if also is not None:
                    also(other)
        finally:
            connection.close()

    elsewhere = threading.Thread(target=take)
    elsewhere.start()
    elsewhere.join()


def _plumbing_call(sid: str, caller: str, at: dt.datetime) -> None:
    """The inbound webhook of a call from ``caller`` in 78701 to the e2e network's plumbing number."""
    from callbroker.calls import services
    from callbroker.calls.events import InboundCall

    call = InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw=caller, to="+15125550001",
                       from_zip="78701", from_state="TX")
    _deliver(sid, "voice", lambda: services.start_call(call, at))


def _rings_and_legs(sids: dict[str, str], keys: dict[int, str]) -> dict:
    """Each call's ring (by target key), whether it goes against target order, its limits, the lines refused
    at a Dial action and why, and the lines its legs rang, their results and the slots they hold."""
    from callbroker.calls.models import Call, CallAttempt

    calls = {}
    for label, sid in sids.items():
        call = Call.objects.get(call_sid=sid)
        attempts = CallAttempt.objects.filter(call=call).order_by("sequence")
        ring = call.decision["ring"]
        calls[label] = {"ring": [keys[t] for t in ring], "limits": call.decision.get("limits"),
                        "against_target_order": any(b < a for a, b in zip(ring, ring[1:], strict=False)),
                        "refused_at_dial": [[keys[t], why] for t, why in call.decision.get("refused_at_dial", [])],
                        "lines": [keys[a.target_id] for a in attempts],
                        "results": [a.result for a in attempts], "slots_held": [a.slot_held for a in attempts]}
    return calls


def refused_then_crossed(counters: str = "sql", redis_url: str = "", redis_prefix: str = "") -> dict:
    """On the e2e plumbing campaign (SQL counters), Line B given an hourly cap of 2: call "ab", a new caller
    from 78701, rings Line A (its ring: A, B, C); then a new call "ba" from a caller who reached Line B
    yesterday (sticky, its ring: B, A, C) is handled while the Dial action of "ab"'s first leg (no answer) is.
    Between "ba"'s routing and its reservation, another call takes Line B's last unit of the hour (a
    connection of its own, committed): "ba"'s reservation of Line B is refused for the cap. Its webhook then
    pauses, as the reservation left Line B's rows, until the Dial action's connection waits for a lock
    (``pg_locks``) or is done, and goes on to Line A. Returns the transactions run again (and why), what each
    raised, the waits that ended without their event, whether the Dial action waited for a lock, each
    call's ring and the lines its legs rang (with the slots held), where the rings go against target order,
    Lines A, B and C's slots taken and Line B's units of the hour, and the lines this process has Redis
    recount at its next read (``forget_later``). With ``counters="database"``: Redis
    counters with Redis unreachable, every limit counted in the database (the last unit taken elsewhere is
    then a call attempt on Line B). With ``counters="tried"``: the same, but the inbound webhook's node tries
    Redis before each operation (its last failure long enough ago, as a node between two of its retries
    sees it: ``live.REDIS_RETRY_REFUSED_S``), finds it unreachable and counts in the database, while the Dial
    action's node counts there at once. With ``counters="redis"``: Redis counters at ``redis_url``, which the
    inbound webhook's node reaches (its reservation of Line B refused by Redis, the last unit of the hour
    taken there by the other call, whose attempt is in the database too) while the Dial action's node can't
    and counts in the database at once."""
    import threading
    import time

    from django.db import connection
    from django.test.utils import override_settings
    from django.utils import timezone

    from callbroker.calls import services
    from callbroker.calls.events import DialOutcome, StatusUpdate
    from callbroker.network import live
    from callbroker.network.models import Target, TargetState, TargetUsage
    from callbroker.network.signals import bump_network_version

    cap = 2
    Target.objects.filter(key="pipes-b").update(hourly_cap=cap)
    bump_network_version()
    keys = dict(Target.objects.values_list("id", "key"))
    ids = {key: target_id for target_id, key in keys.items()}
    sids = {"ab": "CA" + os.urandom(16).hex(), "ba": "CA" + os.urandom(16).hex()}
    sticky = "CA" + os.urandom(16).hex()  # the "ba" caller's call yesterday, bridged on Line B
    callers = {"ab": "+17375550193", "ba": "+17375550194"}
    retries = _RetriesLogged("callbroker.calls.services")
    raised: dict[str, str] = {}
    in_vain: list[str] = []
    refused_holds, dial_ready, dial_done = threading.Event(), threading.Event(), threading.Event()
    dial_pid: list[int] = []
    dial_waited: list[bool] = []
    def wait(event: threading.Event, what: str) -> None:
        if not event.wait(60):  # never reached when the two meet as meant: the result tells
            in_vain.append(what)

    def last_unit_taken_elsewhere(target, tz_name: str, period: str) -> None:
        if counters in ("database", "tried", "redis"):  # the hour's calls on Line B, in progress; with Redis
            # their slots and units taken there too (the store's own reserve, not the pausing one)
            _calls_in_progress_on(target.id, cap, None if counters != "redis" else lambda other: reserve(
                target, tz_name, other.started_at, token=live.slot_name(other.call_sid, 1)))
            return
        target_id = target.id

        def take() -> None:
            try:
                with connection.cursor() as cursor:  # this thread's own connection, autocommit
                    cursor.execute(f"INSERT INTO {live.USAGE} (target_id, period, count) VALUES (%s, %s, %s) "
                                   f"ON CONFLICT (target_id, period) DO UPDATE SET count = EXCLUDED.count",
                                   [target_id, period, cap])
            finally:
                connection.close()

        elsewhere = threading.Thread(target=take)
        elsewhere.start()
        elsewhere.join()

    def refused_then_paused(target, tz_name, now, slot="", *, token="", rebuild=True):
        pausing = (threading.current_thread().name == "inbound" and target.id == ids["pipes-b"]
                   and not refused_holds.is_set())
        if pausing:
            last_unit_taken_elsewhere(target, tz_name, live.period_keys(now, tz_name)[0])
        if counters == "sql":
            refused = reserve(target, tz_name, now, slot)
        elif counters == "redis":
            refused = reserve(target, tz_name, now, token=token, rebuild=rebuild)
        else:
            refused = reserve(target, tz_name, now)
        if not pausing:
            return refused
        refused_holds.set()
        wait(dial_ready, "the Dial action's connection")
        # then on to the next target
        _until_it_waits_for_a_lock(dial_pid, dial_done, dial_waited, in_vain,
                                   "the Dial action waiting for a lock or done")
        return refused

    inbound = _plumbing_call

    def run(label: str) -> None:
        name = threading.current_thread().name
        try:
            if name == "dial":
                connection.ensure_connection()
                dial_pid.append(connection.connection.info.backend_pid)
                dial_ready.set()
                wait(refused_holds, "the inbound webhook refused on Line B")
                missed = DialOutcome("no-answer", False, 0, "CA" + "e" * 32)
                _deliver(sids[label], "dial:1", lambda: services.dial_finished(sids[label], 1, missed))
            else:
                inbound(sids[label], callers[label], timezone.now())
        except Exception as exc:  # noqa: BLE001
            raised[label] = f"{type(exc).__name__}: {str(exc)[:120]}"
        finally:
            if name == "dial":
                dial_done.set()
            else:
                refused_holds.set()
            connection.close()

    now = timezone.now()
    backend = {"sql": {"REDIS_URL": "", "COUNTERS_BACKEND": "sql"},
               "database": {"REDIS_URL": "redis://127.0.0.1:19001/0", "COUNTERS_BACKEND": "redis"},
               "redis": {"REDIS_URL": redis_url, "COUNTERS_BACKEND": "redis", "REDIS_KEY_PREFIX": redis_prefix}}
    backend["tried"] = backend["database"]
    with override_settings(**backend[counters]):
        # Where the reservation is counted: the SQL backend's statements, or the attempts in the database
        # (Redis unreachable, tried again in an hour only; "tried": by the inbound webhook, every time;
        # "redis": by the Dial action's node only, the others reaching Redis).
        if counters in ("database", "tried", "redis"):
            live.current_backend()._retry_at = time.monotonic() + 3600
        redis_backend = type(live.current_backend())
        counting_in_database = redis_backend.__dict__.get("counting_in_database")
        if counters == "tried":
            redis_backend.counting_in_database = property(
                lambda self: threading.current_thread().name != "inbound" and counting_in_database.fget(self))
        if counters == "redis":
            redis_backend.counting_in_database = property(
                lambda self: threading.current_thread().name == "dial" and counting_in_database.fget(self))
        counting, method = (live, "reserve_in_database")  # in the database (Redis unreachable)
        if counters == "sql":
            counting, method = live.SQL, "reserve"
        elif counters == "redis":  # in Redis: the store's script, inside the backend's reservation
            counting, method = live.current_backend().store, "reserve"
        reserve = getattr(counting, method)
        yesterday = now - dt.timedelta(hours=20)
        inbound(sticky, callers["ba"], yesterday)  # rings Line A: no answer; then Line B: talked
        _deliver(sticky, "dial:1", lambda: services.dial_finished(
            sticky, 1, DialOutcome("no-answer", False, 0, "CA" + "a" * 32), yesterday))
        _deliver(sticky, "dial:2", lambda: services.dial_finished(
            sticky, 2, DialOutcome("completed", True, 120, "CA" + "b" * 32), yesterday))
        _deliver(sticky, "status:completed:",
                 lambda: services.call_status(sticky, StatusUpdate("completed", 180), yesterday))
        inbound(sids["ab"], callers["ab"], now)
        retried = retries.start()
        setattr(counting, method, refused_then_paused)
        try:
            _start_and_join([threading.Thread(target=run, args=("ba",), name="inbound"),
                             threading.Thread(target=run, args=("ab",), name="dial")])
        finally:
            setattr(counting, method, reserve)
            if counters in ("tried", "redis"):
                redis_backend.counting_in_database = counting_in_database
            retries.stop()
        recount_later = sorted(keys[t] for t in getattr(live.current_backend(), "_forget_later", ()))
    calls = _rings_and_legs(sids, keys)
    active = dict(TargetState.objects.filter(target__key__in=["pipes-a", "pipes-b", "pipes-c"])
                  .values_list("target__key", "active_calls"))
    units = sorted(TargetUsage.objects.filter(target__key="pipes-b", period__startswith="H")
                   .values_list("count", flat=True))
    return {"retried": retried, "raised": raised, "in_vain": in_vain, "dial_waited": bool(dial_waited),
            "calls": calls, "active": active, "line_b_hour_units": units, "recount_later": recount_later}


def refused_in_a_dial_action_trying_redis(redis_url: str = "", redis_prefix: str = "") -> dict:
    """Redis counters, Redis unreachable for both nodes: one node ("tried") tries Redis again before each
    operation (its last failure long enough ago, ``live.REDIS_RETRY_REFUSED_S``), the other ("counting")
    counts in the database at once. The e2e plumbing campaign's lines ring B, A, C (priorities changed so),
    Line B given an hourly cap of 2. Call "y", a new caller, rings Line B; call "x", from a caller who reached
    Line C yesterday (sticky: its ring C, B, A), rings Line C. Both first legs go unanswered. The Dial action
    of "x" (the "tried" node) goes on to Line B, whose last unit of the hour another call takes just before
    (attempts on Line B): refused, it pauses until the Dial action of "y" (the "counting" node, its ring's
    limits locks taken in target order: A, B, C) waits for a lock or is done, then goes on to Line A.
    Returns the transactions run again (and why), what each raised, the waits that ended without their
    event, whether the "counting" Dial action waited, and each call's ring and the lines its legs rang. With
    ``redis_url``: the "tried" node reaches Redis there (its reservation of Line B refused by Redis, where the
    other calls took the hour's units too), the "counting" node still counts in the database."""
    import threading
    import time

    from django.db import connection
    from django.test.utils import override_settings
    from django.utils import timezone

    from callbroker.calls import services
    from callbroker.calls.events import DialOutcome, StatusUpdate
    from callbroker.network import live
    from callbroker.network.models import Target
    from callbroker.network.signals import bump_network_version

    cap = 2
    for key, priority in (("pipes-b", 1), ("pipes-a", 2), ("pipes-c", 3)):
        Target.objects.filter(key=key).update(priority=priority)
    Target.objects.filter(key="pipes-b").update(hourly_cap=cap)
    bump_network_version()
    keys = dict(Target.objects.values_list("id", "key"))
    ids = {key: target_id for target_id, key in keys.items()}
    sids = {"x": "CA" + os.urandom(16).hex(), "y": "CA" + os.urandom(16).hex()}
    sticky = "CA" + os.urandom(16).hex()  # the "x" caller's call yesterday, bridged on Line C
    callers = {"x": "+17375550195", "y": "+17375550196"}
    retries = _RetriesLogged("callbroker.calls.services")
    raised: dict[str, str] = {}
    in_vain: list[str] = []
    refused_holds, counting_ready, counting_done = threading.Event(), threading.Event(), threading.Event()
    counting_pid: list[int] = []
    counting_waited: list[bool] = []
    where: list = []  # Line B and its time zone, as the pausing reservation had them

    def wait(event: threading.Event, what: str) -> None:
        if not event.wait(60):  # never reached when the two meet as meant: the result tells
            in_vain.append(what)

    def last_unit_taken_elsewhere(target_id: int) -> None:
        # with Redis, taken there too (the store's own reserve, not the pausing one)
        _calls_in_progress_on(target_id, cap, None if not redis_url else lambda other: reserve(
            *where[0], other.started_at, token=live.slot_name(other.call_sid, 1)))

    def refused_then_paused(target, tz_name, now, *, token="", rebuild=True):
        pausing = (threading.current_thread().name == "tried" and target.id == ids["pipes-b"]
                   and not refused_holds.is_set())
        if pausing:
            where.append((target, tz_name))
            last_unit_taken_elsewhere(target.id)
        refused = reserve(target, tz_name, now, token=token, rebuild=rebuild) if redis_url else reserve(
            target, tz_name, now)
        if not pausing:
            return refused
        refused_holds.set()
        wait(counting_ready, "the counting node's connection")
        # then on to the next target
        _until_it_waits_for_a_lock(counting_pid, counting_done, counting_waited, in_vain,
                                   "the counting node's Dial action waiting for a lock or done")
        return refused

    inbound = _plumbing_call

    def unanswered(label: str) -> None:
        name = threading.current_thread().name
        try:
            if name == "counting":
                connection.ensure_connection()
                counting_pid.append(connection.connection.info.backend_pid)
                counting_ready.set()
                wait(refused_holds, "the tried node's Dial action refused on Line B")
            missed = DialOutcome("no-answer", False, 0, "CA" + "e" * 32)
            _deliver(sids[label], "dial:1", lambda: services.dial_finished(sids[label], 1, missed))
        except Exception as exc:  # noqa: BLE001
            raised[label] = f"{type(exc).__name__}: {str(exc)[:120]}"
        finally:
            if name == "counting":
                counting_done.set()
            else:
                refused_holds.set()
            connection.close()

    now = timezone.now()
    reached = {"REDIS_URL": redis_url, "REDIS_KEY_PREFIX": redis_prefix} if redis_url else {
        "REDIS_URL": "redis://127.0.0.1:19001/0"}
    with override_settings(COUNTERS_BACKEND="redis", **reached):
        backend = live.current_backend()
        backend._retry_at = time.monotonic() + 3600  # Redis failed a moment ago: not tried again for an hour
        backend._down = not redis_url
        redis_backend = type(backend)
        counting_in_database = redis_backend.__dict__["counting_in_database"]
        if redis_url:  # the "counting" node alone can't reach Redis; the set-up goes through it
            redis_backend.counting_in_database = property(
                lambda self: threading.current_thread().name == "counting" and counting_in_database.fget(self))
        counting, method = (backend.store, "reserve") if redis_url else (live, "reserve_in_database")
        reserve = getattr(counting, method)
        yesterday = now - dt.timedelta(hours=20)
        inbound(sticky, callers["x"], yesterday)  # rings Line B, then Line A: no answer; then Line C: talked
        for seq, outcome in ((1, DialOutcome("no-answer", False, 0, "CA" + "a" * 32)),
                             (2, DialOutcome("no-answer", False, 0, "CA" + "b" * 32)),
                             (3, DialOutcome("completed", True, 120, "CA" + "c" * 32))):
            _deliver(sticky, f"dial:{seq}", lambda seq=seq, outcome=outcome: services.dial_finished(
                sticky, seq, outcome, yesterday))
        _deliver(sticky, "status:completed:",
                 lambda: services.call_status(sticky, StatusUpdate("completed", 300), yesterday))
        for label in ("x", "y"):
            inbound(sids[label], callers[label], now)
        retried = retries.start()
        setattr(counting, method, refused_then_paused)
        if not redis_url:
            redis_backend.counting_in_database = property(
                lambda self: threading.current_thread().name != "tried" and counting_in_database.fget(self))
        try:
            _start_and_join([threading.Thread(target=unanswered, args=("x",), name="tried"),
                             threading.Thread(target=unanswered, args=("y",), name="counting")])
        finally:
            setattr(counting, method, reserve)
            redis_backend.counting_in_database = counting_in_database
            retries.stop()
    return {"retried": retried, "raised": raised, "in_vain": in_vain, "counting_waited": bool(counting_waited),
            "calls": _rings_and_legs(sids, keys)}


def refused_after_a_rebuild(redis_url: str, redis_prefix: str) -> dict:
    """Redis counters at ``redis_url``, reached by this node; Line B (hourly cap 1) marked counted without
    Redis (another node counted its one call of the hour, in progress, in the database) and its counters
    unknown in Redis. Two calls in turn read the lines' counters, as routing does, then reserve Line B as
    an inbound webhook does when a line before it in target order may follow (``let_go_if_refused``), each
    in a transaction of its own. Returns what each got, whether Line B is still marked after each, and how
    many rebuilds ran."""
    import logging

    from django.db import transaction
    from django.test.utils import override_settings
    from django.utils import timezone

    from callbroker.network import live
    from callbroker.network.models import Target, TargetState
    from callbroker.network.signals import bump_network_version
    from callbroker.network.snapshot import current_snapshot

    Target.objects.filter(key="pipes-b").update(hourly_cap=1)
    bump_network_version()
    line_b = Target.objects.get(key="pipes-b")
    info = current_snapshot().targets[line_b.id]
    _calls_in_progress_on(line_b.id, 1)
    live.mark_counted_without_redis(line_b.id)  # by the node that counted that call in the database
    rebuilds: list[str] = []

    class Rebuilds(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "rebuilt from the database" in record.getMessage():
                rebuilds.append(record.getMessage())

    handler = Rebuilds()
    logging.getLogger("callbroker.network.live").addHandler(handler)
    refused, marked = [], []
    try:
        with override_settings(COUNTERS_BACKEND="redis", REDIS_URL=redis_url, REDIS_KEY_PREFIX=redis_prefix):
            for n in range(2):
                now = timezone.now()
                live.read([info.core], {line_b.id: info.timezone}, now)  # routing: a stale line forgotten
                with transaction.atomic():
                    why = live.reserve(info.core, info.timezone, now, live.slot_name(f"CAnext{n}", 1),
                                       let_go_if_refused=True)
                refused.append(why.value if why is not None else None)
                marked.append(TargetState.objects.filter(target_id=line_b.id,
                                                         counted_without_redis_at__isnull=False).exists())
    finally:
        logging.getLogger("callbroker.network.live").removeHandler(handler)
    return {"refused": refused, "marked": marked, "rebuilds": len(rebuilds)}


def two_reservations_trying_redis() -> dict:
    """Redis counters, Redis unreachable, two nodes that lost it and try it again before a reservation (their
    last failure long enough ago): two reservations of Line A at the same moment, each through Redis first
    (its limits lock taken shared), Redis failing for both once both hold that lock, then counted in the
    database. Returns what each raised, each one's refusal (None: taken), and the waits that ended without
    their event."""
    import threading
    import time

    import redis
    from django.db import connection, transaction
    from django.test.utils import override_settings
    from django.utils import timezone

    from callbroker.network import live
    from callbroker.network.models import Target

    raised: dict[str, str] = {}
    refused: dict[str, str | None] = {}
    in_vain: list[str] = []
    pids: dict[str, int] = {}
    trying = {"one": threading.Event(), "two": threading.Event()}

    def unreachable(*args, **kwargs):
        """Redis fails once the other reservation tries it too (holding its lock) or waits for a lock."""
        label = threading.current_thread().name
        other = "two" if label == "one" else "one"
        trying[label].set()
        given_up = time.monotonic() + 60
        with connection.cursor() as cursor:
            while not trying[other].is_set() and time.monotonic() < given_up:
                cursor.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", [pids[other]])
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.01)
            else:
                if not trying[other].is_set():
                    in_vain.append(f"{label}: the other reservation trying Redis or waiting")
        raise redis.ConnectionError("Connection refused (the probe)")

    def reserve(label: str) -> None:
        try:
            connection.ensure_connection()
            pids[label] = connection.connection.info.backend_pid
            ready.wait(60)
            target = Target.objects.get(key="pipes-a")
            with transaction.atomic():
                result = live.reserve(target, "America/Chicago", timezone.now(), f"CA{label}:1")
                refused[label] = result.value if result is not None else None
        except Exception as exc:  # noqa: BLE001
            raised[label] = f"{type(exc).__name__}: {str(exc)[:120]}"
        finally:
            connection.close()

    with override_settings(REDIS_URL="redis://127.0.0.1:19001/0", COUNTERS_BACKEND="redis"):
        backend = live.current_backend()
        backend._retry_at = 0.0  # tried again at once
        backend._down = True
        retry_s, live.REDIS_RETRY_REFUSED_S = live.REDIS_RETRY_REFUSED_S, 0.0
        store_reserve = backend.store.reserve
        backend.store.reserve = unreachable
        try:
            ready = threading.Barrier(2, timeout=60)
            _start_and_join([threading.Thread(target=reserve, args=(label,), name=label) for label in ("one", "two")])
        finally:
            backend.store.reserve = store_reserve
            live.REDIS_RETRY_REFUSED_S = retry_s
    return {"raised": raised, "refused": refused, "in_vain": in_vain}


def replay_beside_a_lock_holder(deadlocks: int, cut: bool = False) -> dict:
    """Four calls of the e2e plumbing campaign (SQL counters) recorded live, ringing, whose final statuses
    were spooled during an outage: files A, B, C, D, replayed in that order. During one replay pass a second
    connection (``SET deadlock_timeout = '10s'``: PostgreSQL stops the replay's transaction, not its own)
    makes a real deadlock with the replay of A ``deadlocks`` times in a row: it locks A's row (``SELECT ...
    FOR UPDATE``) while the replay holds A's call lock (``db.lock_call``), and once the replay waits for the
    row it asks for the call's lock. With ``cut``, it then ends the replay's connection while the replay of C
    waits for C's row (``pg_terminate_backend``: the database gone, as in an outage). A second pass follows,
    with nothing in its way. Returns, for each pass, the files still spooled and the calls ended, the pass's
    errors, the replayer's log lines about A, and how many times the replay of A was begun."""
    import logging
    import queue
    import threading
    import time

    import psycopg
    from django.db import connection
    from django.test.utils import override_settings

    from callbroker import db
    from callbroker.calls import replay as replaying
    from callbroker.calls import services, spool
    from callbroker.calls.events import InboundCall
    from callbroker.calls.models import Call

    labels = "ABCD"
    sids = {label: "CA" + os.urandom(16).hex() for label in labels}
    rounds = {sids["A"]: deadlocks, sids["C"]: int(cut)}  # the replay's meetings with the other connection
    begun: list[str] = []
    arrived: queue.Queue = queue.Queue()  # (call_sid, the replay's backend pid): it holds the call's lock
    held = {sid: queue.Queue() for sid in rounds}  # the other connection holds the call's row
    lines: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record):
            if sids["A"] in record.getMessage():
                lines.append(f"{record.levelname} {record.getMessage()}")

    handler = Lines(level=logging.INFO)
    log = logging.getLogger("callbroker.calls.replay")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    lock_for_replay = replaying._lock_for_replay

    def meeting_the_other(call_sid: str, caller: str) -> bool:
        if call_sid == sids["A"]:
            begun.append(call_sid)
        if rounds.get(call_sid, 0) > 0:
            rounds[call_sid] -= 1
            db.lock_call(call_sid)  # what the replay locks first (again below: the same lock, held once)
            arrived.put((call_sid, connection.connection.info.backend_pid))
            held[call_sid].get(timeout=60)
        return lock_for_replay(call_sid, caller)

    def other_connection() -> None:
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:  # each meeting commits
            conn.execute("SET deadlock_timeout = '10s'")
            while (meeting := arrived.get()) is not None:
                sid, pid = meeting
                with conn.transaction():
                    conn.execute("SELECT id FROM calls_call WHERE call_sid = %s FOR UPDATE", [sid])
                    held[sid].put(True)
                    given_up = time.monotonic() + 60  # the replay never waited: its result tells
                    while not conn.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted",
                                           [pid]).fetchone()[0] and time.monotonic() < given_up:
                        time.sleep(0.01)  # until the replay waits for the row
                    if sid == sids["C"]:
                        conn.execute("SELECT pg_terminate_backend(%s)", [pid])
                    else:
                        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                                     [db.CALL_LOCK_SPACE, sid])

    def state() -> dict:
        connection.close()  # as the replayer does after each pass (a connection the outage broke goes)
        return {"spooled": sorted(label for label, sid in sids.items() if spool.path_of(sid).exists()),
                "ended": sorted(label for label, sid in sids.items()
                                if Call.objects.get(call_sid=sid).stage == "ended")}

    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    with override_settings(REDIS_URL="", COUNTERS_BACKEND="sql"):
        for n, sid in enumerate(sids.values()):
            inbound = InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw=f"+173755502{n:02d}",
                                  to="+15125550001", from_zip="78701", from_state="TX")
            _deliver(sid, "voice", lambda inbound=inbound: services.start_call(inbound, started))
            ended = (started + dt.timedelta(minutes=2)).isoformat()
            spool.append(sid, {"kind": "status", "received_at": ended,
                               "params": {"CallSid": sid}, "query": {}, "answer": "",
                               "update": {"status": "completed", "duration": 100, "sequence": ""}})
            written = time.time() - 300 + n  # the order the replayer takes them in: A first
            os.utime(spool.path_of(sid), (written, written))
        replaying._lock_for_replay = meeting_the_other
        other = threading.Thread(target=other_connection)
        other.start()
        try:
            first = replaying.replay_ready()
        finally:
            arrived.put(None)
            other.join()
        passes = [{"errors": first.errors, **state()}]
        tries = len(begun)
        rounds.clear()
        passes.append({"errors": replaying.replay_ready().errors, **state()})
        replaying._lock_for_replay = lock_for_replay
    log.removeHandler(handler)
    return {"passes": passes, "lines": lines, "tries": tries, "retries": services.TRANSIENT_RETRIES}


def sweeps_at_once(token: str) -> dict:
    """Two nodes' sweeps (``close_abandoned``, then ``record_kept_statuses``, as the background pass and
    ``callbroker calls close-abandoned`` run them) at the same moment, a thread and connection each, SQL
    counters, seven hours on: three calls whose final status never came (two of the e2e plumbing number
    ringing Line A, one at the IVR number's ZIP prompt) and two final statuses kept for an inbound webhook
    that never came. The first sweep holds the transaction of the first call it closes open, its event
    written, until the second waits for that call's lock (``pg_locks``): the second read the list while the
    call was not closed yet. Returns what each sweep reported, and the calls, events and slots as they end up."""
    import threading
    import time

    from django.db import connection
    from django.test.utils import override_settings
    from django.utils import timezone

    from callbroker.calls import replay, services
    from callbroker.calls.events import InboundCall

    started = timezone.now()
    later = started + dt.timedelta(hours=7)
    abandoned = ["CA" + os.urandom(16).hex() for _ in range(3)]
    kept = ["CA" + os.urandom(16).hex() for _ in range(2)]
    second_pid: list[int] = []
    waited = threading.Event()
    store = services._store_event
    reported: dict[str, dict] = {}

    def held_store(row, body):
        store(row, body)
        if threading.current_thread().name == "first" and not waited.is_set():
            waited.set()
            given_up = time.monotonic() + 30  # the second never waited: the result tells
            with connection.cursor() as cursor:
                while time.monotonic() < given_up:
                    cursor.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", second_pid)
                    if cursor.fetchone()[0]:
                        return
                    time.sleep(0.01)

    def sweep() -> None:
        name = threading.current_thread().name
        try:
            connection.ensure_connection()
            if name == "second":
                second_pid.append(connection.connection.info.backend_pid)
                waited.wait(30)
            closed = services.close_abandoned(later)
            reported[name] = {"closed": closed, "recorded": replay.record_kept_statuses(later)}
        finally:
            waited.set()
            connection.close()

    with override_settings(REDIS_URL="", COUNTERS_BACKEND="sql"):
        for n, sid in enumerate(abandoned):
            to, zip_code = ("+15125550003", "") if n == 2 else ("+15125550001", "78701")
            inbound = InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw=f"+173755503{n:02d}", to=to,
                                  from_zip=zip_code, from_state="TX")
            _deliver(sid, "voice", lambda inbound=inbound: services.start_call(inbound, started))
        post_webhooks([["/carriers/twilio/status", {
            "CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": f"+173755504{n:02d}", "To": "+15125550001",
            "CallStatus": "completed", "CallDuration": "42", "Direction": "inbound", "FromZip": "78701"}]
            for n, sid in enumerate(kept)], token)
        services._store_event = held_store
        try:
            _start_and_join([threading.Thread(target=sweep, name=name) for name in ("first", "second")])
        finally:
            services._store_event = store

    def rows(query: str) -> list:
        with connection.cursor() as cursor:
            cursor.execute(query, [abandoned + kept])
            return [list(row) for row in cursor.fetchall()]

    return {"abandoned": abandoned, "kept": kept, "reported": reported,
            "calls": rows("SELECT call_sid, count(*), min(stage), min(verdict) FROM calls_call "
                          "WHERE call_sid = ANY(%s) GROUP BY 1 ORDER BY 1"),
            "events": rows("SELECT call_sid, kind, count(*) FROM calls_callevent WHERE call_sid = ANY(%s) "
                           "AND kind IN ('abandoned', 'status_only') GROUP BY 1, 2 ORDER BY 1"),
            "slots_held": rows("SELECT count(*) FROM calls_callattempt a JOIN calls_call c ON c.id = a.call_id "
                               "WHERE c.call_sid = ANY(%s) AND a.slot_held")[0][0],
            "active_calls": rows("SELECT coalesce(sum(active_calls), 0) FROM network_targetstate "
                                 "WHERE %s IS NOT NULL")[0][0],
            "kept_left": rows("SELECT count(*) FROM calls_keptstatus WHERE call_sid = ANY(%s)")[0][0]}


def replayed_hours_later(webhooks: list[list], token: str, hours: float) -> dict:
    """Signed webhooks (``[path, params]``, …) answered from memory and spooled during an outage (every
    webhook's database work fails, as ``tests.hostile.strategies.SignedCarrier`` makes it), their spooled
    times then put ``hours`` back (the outage was that long ago), and the spool replayed. Returns each
    spooled line's ``received_at`` by the dedupe key its event is stored under, and the replay's errors."""
    from django.db import OperationalError
    from django.test.utils import override_settings

    from callbroker.calls import replay, services, spool

    real, back = services.handle_once, dt.timedelta(hours=hours)

    def outage(*args, **kwargs):
        raise OperationalError("the probe's outage")

    def earlier(value: str) -> str:
        return (dt.datetime.fromisoformat(value) - back).isoformat()

    replay.ensure_running = lambda: None
    replay.replay_now = lambda call_sid: None  # the replay comes when the outage is over
    with override_settings(REDIS_URL="", COUNTERS_BACKEND="sql"):
        services.handle_once = outage
        try:
            post_webhooks(webhooks, token)
        finally:
            services.handle_once = real
        received = {}
        for path in spool.files():
            lines = spool.read(path)
            for line in lines:
                line["received_at"] = earlier(line["received_at"])
                if line.get("ended_at"):
                    line["ended_at"] = earlier(line["ended_at"])
                if line.get("dialled"):
                    line["dialled"]["started_at"] = earlier(line["dialled"]["started_at"])
                received[replay.event_key(line["params"]["CallSid"], line)] = line["received_at"]
            path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        errors = replay.replay_ready().errors
    return {"received": received, "errors": errors}


def outcomes_at_once() -> dict:
    """Two staff members save one call's outcome in the admin at the same moment, on two connections: the call
    booked, one clears its outcome while the other records a job value. The clearing one reads its form's copy
    of the call (booked, no job value), then waits until the other's save has committed, then saves. No sleep:
    each side waits for the other's event only. Returns the waits that ended without their event, the answers'
    status codes and the call's outcome columns."""
    import threading

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import override_settings
    from django.utils import timezone

    from callbroker.calls.admin import CallAdmin
    from callbroker.calls.models import Call

    call = Call.objects.create(call_sid="CA" + os.urandom(16).hex(), to_number="+15125550001",
                               started_at=timezone.now(), outcome="booked", outcome_at=timezone.now())
    staff = get_user_model().objects.create_superuser(f"staff{os.urandom(4).hex()}", "", "pw")
    url = f"/admin/calls/call/{call.pk}/change/"
    attempts = {"attempts-TOTAL_FORMS": "0", "attempts-INITIAL_FORMS": "0", "attempts-MIN_NUM_FORMS": "0",
                "attempts-MAX_NUM_FORMS": "1000",  # the ring tree's (view-only) inline, as the page posts it
                "initial-outcome": "booked", "initial-job_value": "", "initial-outcome_note": ""}  # what both showed
    clearing_read, valuing_saved = threading.Event(), threading.Event()
    in_vain: list[str] = []
    codes: dict[str, int | str] = {}
    get_object = CallAdmin.get_object

    def wait(event: threading.Event, what: str) -> None:
        if not event.wait(60):  # never reached when the two meet as meant: the result tells
            in_vain.append(what)

    def read_then_wait(self, request, object_id, from_field=None):
        obj = get_object(self, request, object_id, from_field)
        if threading.current_thread().name == "clearing":
            clearing_read.set()
            wait(valuing_saved, "the job value saved")
        return obj

    def post(name: str, data: dict, after: threading.Event | None, done: threading.Event | None) -> None:
        try:
            if after is not None:
                wait(after, "the clearing form's copy read")
            client = Client()
            client.force_login(staff)
            codes[name] = client.post(url, {**attempts, **data}).status_code
        except Exception as exc:  # noqa: BLE001
            codes[name] = f"{type(exc).__name__}: {str(exc)[:160]}"
        finally:
            if done is not None:
                done.set()
            clearing_read.set()
            connection.close()

    CallAdmin.get_object = read_then_wait
    try:
        with override_settings(ALLOWED_HOSTS=["testserver"]):
            _start_and_join([
                threading.Thread(target=post, name="clearing", args=(
                    "clearing", {"outcome": "", "job_value": "", "outcome_note": ""}, None, None)),
                threading.Thread(target=post, name="valuing", args=(
                    "valuing", {"outcome": "booked", "job_value": "350.00", "outcome_note": ""}, clearing_read,
                    valuing_saved))])
    finally:
        CallAdmin.get_object = get_object
    row = Call.objects.filter(pk=call.pk).values("outcome", "job_value", "outcome_note", "outcome_at").get()
    return {"in_vain": in_vain, "codes": codes, "outcome": row["outcome"], "job_value": str(row["job_value"]),
            "note": row["outcome_note"], "recorded": row["outcome_at"] is not None}


def admin_searches(terms: list[str]) -> dict:
    """Each term searched by staff on PostgreSQL: in the autocomplete lookups behind the admin's search-picked
    fields (a target's buyer and campaign, a tracking number's campaign and publisher) and in the lists' own
    search boxes. Returns ``{"<where> <term>": [status code, results found (autocomplete)], or the exception
    raised}``."""
    from urllib.parse import urlencode

    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import override_settings

    staff = get_user_model().objects.create_superuser(f"staff{os.urandom(4).hex()}", "", "pw")
    client = Client()
    client.force_login(staff)
    lookups = [("target", "buyer"), ("target", "campaign"), ("trackingnumber", "campaign"),
               ("trackingnumber", "publisher")]
    answers: dict[str, list | str] = {}
    with override_settings(ALLOWED_HOSTS=["testserver"]):
        for term in terms:
            pages = {f"autocomplete {model}.{field}": "/admin/autocomplete/?" + urlencode(
                {"app_label": "network", "model_name": model, "field_name": field, "term": term})
                for model, field in lookups}
            pages.update({f"list {name}": f"/admin/network/{name}/?" + urlencode({"q": term})
                          for name in ("campaign", "buyer", "publisher")})
            for where, url in pages.items():
                try:
                    response = client.get(url)
                    found = len(response.json()["results"]) if where.startswith("autocomplete") else None
                    answers[f"{where} {term!r}"] = [response.status_code, found]
                except Exception as exc:  # noqa: BLE001 - the test client raises what would be a 500
                    answers[f"{where} {term!r}"] = f"{type(exc).__name__}: {str(exc)[:120]}"
    return answers


def admin_lists(pages: list[list]) -> dict:
    """Each admin list ``[path, {parameter: value}]`` asked for by staff on PostgreSQL. Returns ``{"<path>?<query>":
    [status code, the redirect's location or None]}``, or the exception raised (what would be a 500)."""
    from urllib.parse import urlencode

    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import override_settings

    staff = get_user_model().objects.create_superuser(f"staff{os.urandom(4).hex()}", "", "pw")
    client = Client()
    client.force_login(staff)
    answers: dict[str, list | str] = {}
    with override_settings(ALLOWED_HOSTS=["testserver"]):
        for path, parameters in pages:
            url = f"{path}?{urlencode(parameters)}"
            try:
                response = client.get(url)
                answers[url] = [response.status_code, response.get("Location")]
            except Exception as exc:  # noqa: BLE001 - the test client raises what would be a 500
                answers[url] = f"{type(exc).__name__}: {str(exc)[:120]}"
    return answers


def steps(steps: list[list]) -> list:
    """Several actions in one process: [[action, {arguments}], …] -> their results in order."""
    return [ACTIONS[action](**arguments) for action, arguments in steps]


ACTIONS = {"insert_calls": insert_calls, "refused_after_a_rebuild": refused_after_a_rebuild, "explain_call_path": explain_call_path,
           "explain_close_abandoned": explain_close_abandoned, "setup": setup,
           "commands": commands, "place_calls": place_calls, "post_webhooks": post_webhooks, "steps": steps,
           "lock_marked": lock_marked, "handover": handover, "racing_callbacks": racing_callbacks,
           "misses_at_once": misses_at_once, "verdicts_at_once": verdicts_at_once,
           "late_miss_beside_a_miss": late_miss_beside_a_miss,
           "replayed_late_bridge_beside_a_verdict": replayed_late_bridge_beside_a_verdict,
           "replay_beside_a_lock_holder": replay_beside_a_lock_holder,
           "replayed_status_beside_a_final_status": replayed_status_beside_a_final_status,
           "late_status_beside_a_verdict": late_status_beside_a_verdict,
           "replayed_hours_later": replayed_hours_later, "sweeps_at_once": sweeps_at_once,
           "crossed_rings": crossed_rings, "refused_then_crossed": refused_then_crossed,
           "refused_in_a_dial_action_trying_redis": refused_in_a_dial_action_trying_redis,
           "two_reservations_trying_redis": two_reservations_trying_redis,
           "outcomes_at_once": outcomes_at_once, "admin_searches": admin_searches,
           "admin_lists": admin_lists}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callbroker.settings")
    import django

    django.setup()
    action, arguments = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
    result = ACTIONS[action](**arguments)
    sys.stdout.write("\n@@probe@@" + json.dumps(result, default=str))


if __name__ == "__main__":
    main()
