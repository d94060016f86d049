"""Replay spooled calls into the database once it is reachable again.

A spooled call is replayed in one transaction, event by event, in the order received. Each event is
recorded in ``CallEvent`` under the same dedupe key a live webhook would have used, so replaying twice
(a crash between commit and deleting the file, two workers, a retried delivery) changes nothing the
second time: no call is recorded twice and none is billed twice.

What was decided in degraded mode is replayed as it happened — the targets that were actually rung —
not decided again. Replayed attempts take no concurrency slot and no cap unit (they are over).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import threading
import time
from dataclasses import dataclass, field

from django.db import InterfaceError, OperationalError, connection, transaction

from callbroker import db
from callbroker.calls import services, spool
from callbroker.calls.choices import AttemptResult, CallStage, ZipSourceChoices
from callbroker.calls.events import DialOutcome, InboundCall, RecordingUpdate, StatusUpdate
from callbroker.calls.models import Call, CallAttempt, CallEvent
from callbroker.network.snapshot import cached_snapshot, current_snapshot

log = logging.getLogger(__name__)

try:  # Redis is optional
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    _REDIS_OUTAGES: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError)
except ImportError:  # pragma: no cover
    _REDIS_OUTAGES = ()

#: Errors that mean "a backend is unreachable" — not "this request is wrong": an IntegrityError or
#: DataError comes from bad input and must never send a call into degraded mode.
OUTAGES: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, *_REDIS_OUTAGES)
#: A spooled call whose final status never came is replayed anyway after this long.
STALE_AFTER = dt.timedelta(hours=4)
REPLAY_INTERVAL_S = 5.0


@dataclass
class ReplayReport:
    calls: int = 0
    events: int = 0
    skipped_duplicates: int = 0
    waiting: int = 0
    errors: list[str] = field(default_factory=list)


def event_key(call_sid: str, record: dict) -> str:
    """The dedupe key the live webhook would have had (see carriers/views.py)."""
    kind, query = record["kind"], record.get("query", {})
    if kind == "voice":
        key = "voice"
    elif kind == "ivr_zip":
        key = f"zip:{query.get('attempt', '')}"
    elif kind == "ivr_category":
        key = "category"
    elif kind == "dial":
        key = f"dial:{record.get('seq', query.get('seq', ''))}"
    elif kind == "status":
        update = record.get("update", {})
        key = f"status:{update.get('status', '')}:{update.get('sequence', '')}"
    elif kind == "recording":
        update = record.get("update", {})
        key = f"recording:{update.get('recording_sid', '')}:{update.get('status', '')}"
    else:
        key = kind
    return f"{call_sid}:{key}"[:200]


def _finished(events: list[dict]) -> bool:
    return any(e["kind"] == "status" and StatusUpdate(**e["update"]).terminal for e in events if "update" in e)


def replay_ready(*, force: bool = False) -> ReplayReport:
    """Replay every spooled call that has ended (or is stale). Stops at the first outage."""
    report = ReplayReport()
    spool.flush_memory()
    now = dt.datetime.now(dt.UTC)
    for path in spool.files():
        try:
            with path.open("r+") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another worker is on it
                except BlockingIOError:
                    continue
                events = spool.read(path)
                age = now - dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
                if events and not (force or _finished(events) or age > STALE_AFTER):
                    report.waiting += 1
                    continue
                if events:
                    applied, duplicates = replay_call(events)
                    report.events += applied
                    report.skipped_duplicates += duplicates
                    report.calls += 1
                path.unlink()
        except FileNotFoundError:
            continue
        except OUTAGES as exc:
            report.errors.append(f"{path.name}: {exc}")
            break  # still down: try again later
        except Exception as exc:  # noqa: BLE001 - keep the file, report, go on with the next one
            log.exception("replay of %s failed; the file is kept", path.name)
            report.errors.append(f"{path.name}: {exc}")
    if report.calls:
        log.warning("replayed %s spooled calls (%s events, %s duplicates skipped)", report.calls, report.events,
                    report.skipped_duplicates)
    return report


def replay_call(events: list[dict]) -> tuple[int, int]:
    """Apply one call's spooled events in one transaction; returns (applied, skipped as duplicates)."""
    call_sid = events[0]["params"]["CallSid"]
    snap = current_snapshot()
    applied = duplicates = 0
    with transaction.atomic():
        for record in events:
            key = event_key(call_sid, record)
            if CallEvent.objects.filter(dedupe_key=key).exists():
                duplicates += 1
                continue
            at = dt.datetime.fromisoformat(record["received_at"])
            _apply(call_sid, record, at, snap)
            db.insert(CallEvent(call_sid=call_sid, kind=record["kind"], dedupe_key=key, params=record["params"],
                                response=record.get("answer", ""), received_at=at))
            applied += 1
    return applied, duplicates


def _apply(call_sid: str, record: dict, at: dt.datetime, snap) -> None:
    kind = record["kind"]
    if kind in ("voice", "ivr_zip", "ivr_category"):
        _apply_routing(call_sid, record, at, snap)
    elif kind == "dial":
        _apply_dial(call_sid, record, at, snap)
    elif kind == "status":
        services.call_status(call_sid, StatusUpdate(**record["update"]), now=at)
    elif kind == "recording":
        services.recording_ready(call_sid, RecordingUpdate(**record["update"]), now=at)
    elif kind == "voicemail":
        services.message_left(call_sid, record.get("url", ""), record.get("duration"))


def _apply_routing(call_sid: str, record: dict, at: dt.datetime, snap) -> None:
    """The call was routed from memory: create (or update) it with that decision and its first attempt."""
    call = Call.objects.filter(call_sid=call_sid).first()
    if call is None:
        call, _campaign = services.new_call(InboundCall(**record["inbound"]), snap, at)
    if record.get("unknown_number") or record.get("unroutable"):
        call.stage = CallStage.FALLBACK
        call.fallback_applied = call.fallback_applied or "unknown_number"
        _save(call)
        return
    if record.get("caller_zip"):
        call.caller_zip = record["caller_zip"]
        call.zip_source = record.get("zip_source") or ZipSourceChoices.CARRIER
    call.decision = record.get("decision")
    call.ring_position = 0
    _follow(call, record, at)


def _apply_dial(call_sid: str, record: dict, at: dt.datetime, snap) -> None:
    call = Call.objects.filter(call_sid=call_sid).first()
    if call is None:
        raise services.UnknownCall(call_sid)
    seq = record["seq"]
    outcome = DialOutcome(**record["outcome"])
    attempt = CallAttempt.objects.filter(call=call, sequence=seq).first()
    if attempt is not None and attempt.result == AttemptResult.RINGING:
        info = snap.targets.get(attempt.target_id) if attempt.target_id else None
        services.settle_attempt(call, attempt, outcome, at)
        if outcome.bridged:
            if call.stage != CallStage.ENDED:
                call.stage = CallStage.CONNECTED
            call.save()
            return
        services.release_attempt(attempt, info, undo_usage=True)  # a slot taken before the outage
    _follow(call, record, at)


def _follow(call: Call, record: dict, at: dt.datetime) -> None:
    """Record what degraded mode actually did next: ring a target, or the fallback."""
    dialled = record.get("dialled")
    if dialled:
        call.stage = CallStage.DIALING
        call.ring_position = max(call.ring_position, dialled["sequence"])
        _save(call)
        db.insert(CallAttempt(call=call, sequence=dialled["sequence"], target_id=dialled["target_id"],
                              buyer_id=dialled["buyer_id"], number=dialled["number"], started_at=at,
                              slot_held=False))
    elif record.get("fallback"):
        call.stage = CallStage.FALLBACK
        call.fallback_applied = record["fallback"]
        _save(call)
    else:
        _save(call)


def _save(call: Call) -> None:
    if call.pk is None:
        db.insert(call)
    else:
        call.save()


# --------------------------------------------------------------------------- background replayer

_started = False
_start_lock = threading.Lock()


def ensure_running() -> None:
    """Start this process's replayer thread once (cheap to call on every request)."""
    global _started
    if _started:
        return
    with _start_lock:
        if _started:
            return
        thread = threading.Thread(target=_loop, name="callbroker-spool-replayer", daemon=True)
        thread.start()
        _started = True


def _loop() -> None:
    while True:
        time.sleep(REPLAY_INTERVAL_S)
        try:
            if spool.files() or spool.flush_memory():
                if cached_snapshot() is None:
                    current_snapshot()
                replay_ready()
        except Exception:  # noqa: BLE001 - the replayer must never die
            log.exception("spool replayer pass failed")
        finally:
            connection.close()  # this thread's own connection: don't keep a broken one
