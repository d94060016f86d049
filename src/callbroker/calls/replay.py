"""Replay spooled calls into the database once it is reachable again.

A spooled call's events are replayed in the order received (the order the node wrote them, whatever
its wall clock said), each in one transaction with its
``CallEvent``, under the same dedupe key a live webhook would have used, so replaying twice (a crash
between commit and deleting the file, two workers, a retried delivery, the same webhook spooled on two
nodes) changes nothing the second time: no call is recorded twice and none is billed twice.

Behind a load balancer one call's webhooks reach several nodes, so its events may be spooled on more
than one node: each node applies what it can as soon as the database is back, in order, and waits when
an event needs one another node has not replayed yet (the call, or the attempt a Dial action settles).
A final status replayed before a connected Dial action is handled as on the live path (the call is
qualified again). A node's file is deleted once the call has ended in the database.

What was decided in degraded mode is replayed as it happened — the targets that were actually rung,
with the moments their slots were taken and given back — not decided again. Replayed attempts take no
concurrency slot and no cap unit (they are over), except a leg that talked whose unit nothing counts
(degraded mode took none: SQL counters, or Redis away too), counted as delivered (``services.dial_finished``);
slots degraded mode took in Redis and still holds are given back after the call's replay commits
(``degraded.release_leftovers``), before its file is deleted.
A leg still ringing when the call's final status is applied, or replayed after it, is closed as the caller
hanging up (``services.end_ringing_leg``), whatever order the nodes replay in.

An empty spool file marks a call whose events wait in a process's memory (the disk refused them,
``spool.py``): it is kept, so the call stays degraded on every worker, until it is stale.

**Files that wait.** A file left waiting (a call in progress, events waiting for another node's, a final
status with no call) is tried at every pass (every second) for its first minute unchanged, then less and
less often: after a tenth of the time it has waited unchanged, at most every ``BACKOFF_MAX_S`` — and at
the next pass again as soon as a line is added to it. A pass costs nothing more for the other files (one
look-up in a dict each), and one ``stat`` for each file resting. When a file starts resting the replayer
logs once why it waits (:func:`why_waiting`, which ``callbroker spool status`` prints for every file).
A final status whose call no node has recorded (its inbound webhook died in the worker: no event of it
exists anywhere) is kept as a call of its own once it has waited ``STATUS_ONLY_AFTER``
(:func:`_record_status_only`), instead of being dropped when the file is given up.

**A pass stops at an outage** (``OUTAGES``: the next pass, a second later, tries again), **not at a
deadlock**: a transaction PostgreSQL stopped in a deadlock or a serialization failure (a live webhook of
the same call or caller locking in another order) means the database is up. The file is replayed again at
once, up to ``services.TRANSIENT_RETRIES`` runs as a live webhook is, then left waiting like any waiting
file, with a log line, while the pass goes on with the others. SQLite's "database is locked" still stops
the pass: the one write lock is the whole database's, and every other file would wait for it too.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from redis.exceptions import RedisError

from callbroker import db
from callbroker.calls import degraded, services, spool
from callbroker.calls.choices import AttemptResult, CallStage
from callbroker.calls.events import DialOutcome, InboundCall, RecordingUpdate, StatusUpdate, inbound_of
from callbroker.calls.models import Call, CallAttempt, CallEvent, KeptStatus
from callbroker.network import cap_counts
from callbroker.network.snapshot import cached_snapshot, current_snapshot
from callbroker.words import counted

log = logging.getLogger(__name__)

#: Errors that mean "a backend is unreachable" (``services.OUTAGES``).
OUTAGES = services.OUTAGES
#: A spooled call whose final status never came (or whose other events never could be applied) is given
#: up after its file has waited this long with the database reachable (this process's replayer counts from
#: the first pass that got through with the database and had to leave it; an outage longer than this must
#: not make the first pass after it give up on events waiting for another node's): what can be applied is,
#: the call is closed (it started before the wait began, so it is over: a call lasts less than this), and
#: its file is deleted. A file not written to for ``STALE_LEFTOVER`` is given up at once (left from before a
#: restart; an outage longer than that too).
STALE_AFTER = services.ABANDONED_AFTER  # a call is over by then, however long
STALE_LEFTOVER = dt.timedelta(days=2)
#: A file whose only events are a call's status callbacks, a final one among them, while no node has recorded
#: the call, is kept as a call of its own (``services.record_from_final_status``) once it has waited this
#: long with the database reachable (counted as for ``STALE_AFTER``). Not six hours: a final status says the
#: call is over, so nothing more will come from the carrier; what is waited for is another node's spool
#: holding the call's inbound webhook. Every node retries its spool every second once the database answers
#: (the same database as ours), so that comes within seconds of the outage's end, a large backlog within
#: minutes, a node killed during the outage as soon as it is restarted (minutes under systemd or compose);
#: an hour also leaves the on-call engineer time to free a full spool disk (its events wait in memory) or to
#: restart a node. Should a routing event of the call still come after that, it changes nothing: the call is
#: recorded, never billable (``_apply_routing``, ``_apply_dial``).
STATUS_ONLY_AFTER = dt.timedelta(hours=1)
_waiting_since: dict[str, dt.datetime] = {}  # file name -> the first pass of this process that left it
REPLAY_INTERVAL_S = 5.0
REPLAY_BUSY_INTERVAL_S = 1.0
#: A file left waiting unchanged is tried at every pass this long, then after ``BACKOFF_SHARE`` of the time it
#: has waited unchanged (at most ``BACKOFF_MAX_S``): about 160 tries in six hours instead of 21,600. Events of
#: another node's spool arrive within seconds of the outage's end (the first minute); a file that rests is
#: late by at most ``BACKOFF_MAX_S`` for anything that doesn't add a line to it (another node's replay, a
#: final status handled on another node, the grace periods above).
RETRY_EVERY_PASS_FOR_S = 60.0
BACKOFF_SHARE = 0.1
BACKOFF_MAX_S = 300.0


@dataclass
class _Rest:
    """A file this process's replayer left waiting: as it was then, and when to try it again."""

    stamp: tuple[int, int]  # (mtime_ns, size): a line added changes both
    unchanged_since: float  # monotonic seconds: the first pass that left it as it is
    next_at: float = 0.0  # monotonic seconds; 0: the next pass
    told: bool = False  # why it waits is logged once
    failing: bool = False  # its replay raised (``_rest_after_failure``), as it is now


_rests: dict[str, _Rest] = {}  # file name -> its rest (files left waiting only: a healthy pass adds none)


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


def replay_ready(*, force: bool = False) -> ReplayReport:
    """Apply every spooled event that can be applied; delete the files of calls that ended.

    A call's events are applied in the order received, each in its own transaction, up to the first
    one that can't be applied yet (its call or attempt was created by an event spooled on another node
    and not replayed yet): the rest waits for the next pass. A file is deleted once its events are all
    applied and the call has ended in the database (its final status may have come through any node),
    or when it is stale; until then it keeps the call degraded on this node. ``force``: apply what can
    be applied, skip the rest and delete every file (``callbroker spool replay --all``). Stops at the
    first outage. Not at a deadlock or serialization failure (PostgreSQL), which says the database is up:
    the file is replayed again (``_replay_file_retried``), and if it still can't get through it waits for a
    later pass, alone (``_left_after_conflicts``).
    """
    report = ReplayReport()
    spool.flush_memory()
    # Lines other processes still hold in memory (a full disk) come later, in files of their own: each
    # event waits for what it needs, and a call's file goes only once it ended, so replaying what is
    # on disk now is safe — and frees the disk for the rest.
    now, moment = dt.datetime.now(dt.UTC), time.monotonic()
    files = spool.files()
    names = {path.name for path in files}
    for name in (set(_waiting_since) | set(_rests)) - names:  # deleted by another process
        _waiting_since.pop(name, None)
        _rests.pop(name, None)
    for path in files:
        if not force and _resting(path, moment):
            report.waiting += 1
            continue
        try:
            stamp = _replay_file_retried(path, report, now=now, force=force)
        except FileNotFoundError:
            continue
        except OUTAGES as exc:
            report.errors.append(f"{path.name}: {exc}")
            if not services.lost_to_another_transaction(exc):
                break  # still down: try again later
            stamp = _left_after_conflicts(path, exc)  # the database is up: the other files go on
        except Exception as exc:  # noqa: BLE001 - keep the file, report, go on with the next one
            report.errors.append(f"{path.name}: {exc}")
            _rest_after_failure(path, exc, moment)
            continue
        _rest_after(path, stamp, moment)
    if report.calls:
        log.warning("replayed %s (%s, %s skipped)", counted(report.calls, "spooled call"),
                    counted(report.events, "event"), counted(report.skipped_duplicates, "duplicate"))
    return report


def _replay_file_retried(path, report: ReplayReport, *, now: dt.datetime,
                         force: bool) -> tuple[int, int] | None:
    """``_replay_file``, run again when PostgreSQL stopped one of its transactions in a deadlock or a
    serialization failure (``services.lost_to_another_transaction``), up to ``services.TRANSIENT_RETRIES``
    runs in all, as a live webhook's transaction is (``services.handle_once``). What the stopped transaction
    wrote was rolled back, and what the file's earlier transactions committed is skipped the second time
    (each event under its dedupe key), so a run again reads everything afresh and writes nothing twice."""
    for attempt in range(1, services.TRANSIENT_RETRIES + 1):
        try:
            return _replay_file(path, report, now=now, force=force)
        except OperationalError as exc:
            if attempt == services.TRANSIENT_RETRIES or not services.lost_to_another_transaction(exc):
                raise
            log.info("replay of %s: %s; retrying (%s)", path.name, _first_line(exc), attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _left_after_conflicts(path, exc: OperationalError) -> tuple[int, int] | None:
    """The file's replay lost to other transactions at every run (``_replay_file_retried``): the file waits
    as any waiting file does (the next pass, then less and less often while it stays unchanged); the pass goes
    on with the other files. Returns its stamp (None: gone meanwhile, replayed by another process). Counted
    in the report's errors, not among the files waiting for their call (``spool replay`` prints both)."""
    log.warning("replay of %s stopped by PostgreSQL %s times in a row (%s): the database is up, so the file "
                "waits for a later pass and this pass goes on with the other files", path.name,
                services.TRANSIENT_RETRIES, _first_line(exc))
    try:
        return _stamp(path.stat())
    except FileNotFoundError:
        return None


def _first_line(exc: BaseException) -> str:
    """A database error's own line (PostgreSQL adds DETAIL, HINT and CONTEXT lines) for one log line."""
    return str(exc).partition("\n")[0]


def _resting(path, moment: float) -> bool:
    """This process left the file waiting, unchanged since, and its next try has not come."""
    rest = _rests.get(path.name)
    if rest is None or moment >= rest.next_at:
        return False
    try:
        return _stamp(path.stat()) == rest.stamp
    except FileNotFoundError:
        return True  # replayed by another process: forgotten at the next pass


def _rest_after(path, stamp: tuple[int, int] | None, moment: float) -> None:
    """Note when to try a file again after a pass: ``stamp`` is the file as the pass left it waiting, None
    when it went (or was not tried: another process had it)."""
    if stamp is None:
        _rests.pop(path.name, None)
        return
    rest = _rests.get(path.name)
    if rest is None or rest.stamp != stamp:  # new, or a line was added: the call is moving
        rest = _rests[path.name] = _Rest(stamp, moment, told=rest.told if rest else False)
    elif rest.failing:  # it failed until now, and went through this pass
        rest.failing = False
        rest.told = False
    _rest_until_next_try(path, rest, moment)


def _rest_after_failure(path, exc: Exception, moment: float) -> None:
    """A file whose replay raised something else than an outage (a bug, a line the replay can't apply) is kept
    and tried as a file left waiting is (``_rest_after``: every pass for a minute, then less and less often, at
    once when a line is added): tried at every pass (every second while files are spooled), it logged a
    traceback a second for good. The traceback is logged the first time the file fails as it is, one line
    after."""
    try:
        stamp = _stamp(path.stat())
    except FileNotFoundError:
        stamp = None
    rest = _rests.get(path.name)
    if stamp is not None and rest is not None and rest.stamp == stamp and rest.failing:
        log.warning("replay of %s failed again (%s); the file is kept", path.name, _first_line(exc))
    else:
        log.exception("replay of %s failed; the file is kept and tried again", path.name)
    if stamp is None:  # replayed or deleted by another process meanwhile
        _rests.pop(path.name, None)
        return
    if rest is None or rest.stamp != stamp:
        rest = _rests[path.name] = _Rest(stamp, moment)
    if not rest.failing:
        rest.failing = True
        rest.told = False
    _rest_until_next_try(path, rest, moment)


def _rest_until_next_try(path, rest: _Rest, moment: float) -> None:
    unchanged = moment - rest.unchanged_since
    if unchanged < RETRY_EVERY_PASS_FOR_S:
        rest.next_at = 0.0
        return
    rest.next_at = moment + min(BACKOFF_MAX_S, unchanged * BACKOFF_SHARE)
    if not rest.told:
        rest.told = True
        why = "its replay fails (logged above)" if rest.failing else _why_or_not(path)
        log.warning("spool %s unchanged for %.0f s: %s; tried less often from now (at most every %.0f s, at "
                    "once when a line is added)", path.name, unchanged, why, BACKOFF_MAX_S)


def _stamp(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_mtime_ns, stat.st_size


def _why_or_not(path) -> str:
    """``why_waiting`` for a log line of the replayer, which must go on whatever it raises."""
    try:
        return why_waiting(path)
    except Exception as exc:  # noqa: BLE001 - a log line
        return f"why is unknown ({exc})"


def replay_now(call_sid: str) -> None:
    """Apply a call's spooled events at once, when this request's database connection is sound.

    Called right after a webhook was spooled. When what failed was Redis (the database answered this
    request), the call is in the database before the carrier has our answer, so its next webhook finds
    it whichever node it reaches. Otherwise (database away, or not used by this request) nothing is
    tried here: the replayer does it when the database is back.
    """
    if connection.connection is None or connection.errors_occurred or connection.in_atomic_block:
        return
    if spool.is_held_in_memory(call_sid):
        return
    try:
        _replay_file(spool.path_of(call_sid), ReplayReport(), now=dt.datetime.now(dt.UTC), force=False)
    except FileNotFoundError:
        pass
    except Exception as exc:  # noqa: BLE001 - the answer is given already; the replayer tries again
        log.info("replay of %s right after spooling failed (%s); the replayer will", call_sid, exc)


def _replay_file(path, report: ReplayReport, *, now: dt.datetime, force: bool) -> tuple[int, int] | None:
    """Replay one file (see ``replay_ready``); returns the file's (mtime_ns, size) when it is left waiting,
    None when it went or another process had it."""
    with path.open("r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another worker is on it
        except BlockingIOError:
            return None
        if os.fstat(handle.fileno()).st_nlink == 0:
            return None  # replayed and deleted by another replayer since it was opened: the path may be new
        events = spool.read(path)
        written = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        since = _waiting_since.get(path.name)  # stamped below, once a pass got through with the database
        done = force or (since is not None and now - since > STALE_AFTER) or now - written > STALE_LEFTOVER
        if events:
            call_sid = events[0]["params"]["CallSid"]
            if done or (since is not None and now - since > STATUS_ONLY_AFTER):  # a status alone: kept
                waited = since is not None and now - since > STATUS_ONLY_AFTER
                _record_status_only(call_sid, events, f"in {_span(STATUS_ONLY_AFTER)} with the database reachable"
                                    if waited else "before its spool file was replayed by force or given up")
            applied, duplicates, pending = _replay_events(events, skip_pending=done)
            report.events += applied
            report.skipped_duplicates += duplicates
            report.calls += bool(applied)
            if not pending and not _ended(call_sid):
                # Its final status may have reached a node whose database was back, which kept it for the
                # call (``services.call_status``): apply it now that the call is in the database.
                services.end_with_kept_status(call_sid)
            if done and not _ended(call_sid):
                services.close_without_status(call_sid)  # given up: no final status will come now
            done = done or (not pending and _ended(call_sid))
            if done and _held_in_redis(events):
                try:
                    degraded.release_leftovers(call_sid)
                except RedisError as exc:  # recorded; its slots go back on the next pass
                    report.errors.append(f"{path.name}: giving back its slots in Redis: {exc}")
                    return None
        if not done:
            # In progress, waiting for another node's events, or in memory elsewhere. The wait counts from
            # the first pass that got this far: an outage raised before it, and isn't counted.
            _waiting_since.setdefault(path.name, now)
            report.waiting += 1
            return _stamp(os.fstat(handle.fileno()))
        path.unlink()
        _waiting_since.pop(path.name, None)
        return None


def _ended(call_sid: str) -> bool:
    """The carrier's final status of this call is in the database (through whichever node)."""
    return Call.objects.filter(call_sid=call_sid, ended_at__isnull=False).exists()


def _held_in_redis(events: list[dict]) -> bool:
    """Degraded mode kept this call's limits in Redis (it may still hold slots there), or marked its end
    there (a call routed live that ended during the outage): its plan in Redis is to be deleted."""
    return any(e.get("limits") == degraded.ENFORCED or (e.get("decision") or {}).get("limits") == degraded.ENFORCED
               for e in events)


def _final_status_alone(events: list[dict]) -> dict | None:
    """The final status a file holds when it holds nothing but the call's status callbacks (the first final
    one that carries the call as the carrier described it, ``inbound``), else None: a Dial action or a
    recording means we answered the call with a Dial, so its inbound webhook is in some spool."""
    if any(record.get("kind") != "status" for record in events):
        return None
    return next((record for record in spool.in_received_order(events)
                 if record.get("inbound") and StatusUpdate(**record["update"]).terminal), None)


def _record_status_only(call_sid: str, events: list[dict], when: str) -> bool:
    """Keep a final status whose call no node has recorded as a call of its own (True: recorded now).

    Called once the file has waited ``STATUS_ONLY_AFTER`` (or is given up): the call's inbound webhook
    died in the worker and the carrier played its own error, so no spool holds an event that records the
    call, and the status would otherwise be dropped after six hours. The call is recorded from the status
    callback's own facts (``services.record_from_final_status``) with an event of its own (kind
    ``status_only``, the status's parameters: an inbound webhook handled later finds it and writes
    nothing); the status itself is then applied as any other (it ends and judges the call). Nothing when
    the call is in the database meanwhile, or when the file holds anything but status callbacks. ``when``:
    for how long, or why, no node recorded it (the log line).
    """
    final = _final_status_alone(events)
    if final is None:
        return False
    recorded = _record_status_only_call(call_sid, inbound_of(final), StatusUpdate(**final["update"]),
                                        final["params"], dt.datetime.fromisoformat(final["received_at"]))
    if recorded:
        log.warning("call %s: no node recorded the call %s (its inbound webhook was never handled); recorded "
                    "from its final status alone (%s, not billable)", call_sid, when, services.STATUS_ONLY)
    return recorded


def _record_status_only_call(call_sid: str, inbound: InboundCall, update: StatusUpdate, params: dict,
                             at: dt.datetime, *, end: bool = False) -> bool:
    """Record the call known only from its final status (``services.record_from_final_status``) with its event
    (kind ``status_only``, the status's parameters, received ``at``: an inbound webhook handled later finds
    it and writes nothing), once, whichever node or sweep comes first: True when recorded now; nothing when
    the call is in the database. ``end``: the status is applied in the same transaction (a status kept in the
    database, whose own event is there already); else it is applied after, as any replayed event."""
    try:
        with transaction.atomic():
            db.lock_call(call_sid)
            if Call.objects.select_for_update().filter(call_sid=call_sid).exists():
                return False
            services.record_from_final_status(inbound, update, at)
            db.insert(CallEvent(call_sid=call_sid, kind=services.STATUS_ONLY, params=params, response="",
                                dedupe_key=f"{call_sid}:{services.STATUS_ONLY}", received_at=at))
            if end:
                services.call_status(call_sid, update, now=at)
    except IntegrityError:  # another node recorded it (from its routing event, or as this) at the same moment
        return False
    return True


def record_kept_statuses(now: dt.datetime | None = None, *, limit: int = 1000) -> list[str]:
    """Keep as calls of their own the final statuses kept in the database for an inbound webhook that never
    came (``services.call_status`` with ``keep_if_unknown``): those kept ``STATUS_ONLY_AFTER`` ago or more,
    as a spooled final status alone is kept (``_record_kept_status``). Returns the CallSids recorded
    now (at most ``limit`` statuses taken off the list, in the order they were put on it).

    The database was up when such a status came, so what may still record the call is its inbound webhook
    handled late, here or from another node's spool (``degraded.routed_elsewhere`` was false then, but the
    webhook may have been spooled after it): both come within the hour, as for a spooled status. A status
    whose call is in the database by then is forgotten; each one looked at leaves the list
    (``KeptStatus``), once recorded or found recorded, whichever node does it. A status that raises for
    another reason than an outage is logged and kept for the next pass, the others go on: the pass goes on
    past it, reading ``limit`` statuses at a time after the last one read, so such statuses, however many,
    don't count against ``limit`` and can't fill every pass (they stay first on the list).
    """
    now = now or dt.datetime.now(dt.UTC)
    due = KeptStatus.objects.filter(received_at__lt=now - STATUS_ONLY_AFTER).order_by("id")
    recorded = []
    taken_off = 0
    after = 0
    why = f"within {_span(STATUS_ONLY_AFTER)} of its final status"
    while taken_off < limit:
        read = list(due.filter(id__gt=after)[:limit])
        for kept in read:
            try:
                if _record_kept_status(kept, why):
                    recorded.append(kept.call_sid)
            except OUTAGES:
                raise
            except Exception:  # noqa: BLE001 - one status must not stop the others being recorded
                log.exception("call %s: its kept final status could not be recorded as a call; tried again at "
                              "the next pass", kept.call_sid)
                continue
            KeptStatus.objects.filter(call_sid=kept.call_sid).delete()
            taken_off += 1
            if taken_off == limit:
                break
        if len(read) < limit:
            break
        after = read[-1].id
    return recorded


def _record_kept_status(kept: KeptStatus, why: str) -> bool:
    """Keep a final status kept for its inbound webhook as a call of its own, that webhook never having come:
    as a spooled final status alone (``_record_status_only``), the call recorded from the status callback's
    own facts (the call as the carrier described it, when the status came), then ended and judged by the
    status (``not_connected``, never billable), under the same event, so once whichever node, sweep or replay
    comes first. True when recorded now. ``why``: for how long no inbound webhook came (the log line)."""
    final = services.kept_final_status(kept.call_sid)
    if final is None:  # its event is not in the log (deleted by hand): nothing to record the call from
        return False
    params, update, _ = final
    inbound = inbound_of({"inbound": kept.inbound, "carrier": kept.carrier})  # NULL: kept by the previous release
    recorded = _record_status_only_call(kept.call_sid, inbound, update, params, kept.received_at,
                                        end=True)
    if recorded:
        log.warning("call %s: no inbound webhook came %s (it was never handled); recorded from the final status "
                    "kept for it (%s, not billable)", kept.call_sid, why, services.STATUS_ONLY)
    return recorded


def why_waiting(path) -> str:
    """Why a spool file is still there, in words for an operator (``callbroker spool status``; the
    replayer's log when it starts trying the file less often). Reads the file and the database, changes
    nothing; the database errors of an outage are raised."""
    events = spool.in_received_order(spool.read(path))
    if not events:
        return ("its events wait in a process's memory (the disk refused them): written out and replayed "
                "once the disk takes writes again")
    call_sid = events[0]["params"]["CallSid"]
    call = Call.objects.filter(call_sid=call_sid).first()
    wait = f"{_span(STALE_AFTER)} of waiting with the database reachable"
    if call is None:
        if any(record.get("kind") in ROUTING_KINDS for record in events):
            return "not replayed yet: the replayer has not got through to the database since it was written"
        if _final_status_alone(events) is not None:
            return ("a final status, and no node has recorded its call (its inbound webhook is in another "
                    f"node's spool, or was never handled): kept as a call of its own ({services.STATUS_ONLY}, "
                    f"not billable) once it has waited {_span(STATUS_ONLY_AFTER)} with the database reachable")
        return f"waiting for its call, recorded by another node's spool (its inbound webhook); given up after {wait}"
    stored = set(CallEvent.objects.filter(call_sid=call_sid).values_list("dedupe_key", flat=True))
    for record in events:
        if (record.get("kind") == "dial" and event_key(call_sid, record) not in stored
                and not CallAttempt.objects.filter(call=call, sequence=record.get("seq")).exists()):
            return (f"waiting for its attempt {record.get('seq')}, dialled by an event in another node's spool; "
                    f"given up after {wait}")
    if call.stage == CallStage.ENDED:
        return "its call has ended: deleted at the next pass"
    if call.fallback_applied == services.CARRIER_FALLBACK:
        how = "answered by the carrier's Fallback URL and recorded"
    else:
        how = f"in progress ({call.get_stage_display().lower()})"
    return f"{how}, waiting for its final status; closed without it after {wait}"


def in_words(seconds: float) -> str:
    """A wait for an operator: ``45 s``, ``12 min``, ``1 h``, ``2 h 05 min`` (the replayer's log lines,
    ``callbroker spool status``)."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    hours, minutes = seconds // 3600, seconds % 3600 // 60
    return f"{hours} h" if minutes == 0 else f"{hours} h {minutes:02d} min"


def _span(value: dt.timedelta) -> str:
    return in_words(value.total_seconds())


def _moment(value: str | None, default: dt.datetime) -> dt.datetime:
    return dt.datetime.fromisoformat(value) if value else default


def replay_call(events: list[dict]) -> tuple[int, int]:
    """Apply one call's spooled events; returns (applied, skipped as duplicates).

    Raises ``services.UnknownCall`` (after applying the events before it) at the first event whose call
    or attempt does not exist yet: an event of another node's spool must be replayed first.
    """
    applied, duplicates, pending = _replay_events(events, skip_pending=False)
    if pending:
        raise services.UnknownCall(f"{pending} events of {events[0]['params']['CallSid']} wait for another node's")
    return applied, duplicates


def _replay_events(events: list[dict], *, skip_pending: bool) -> tuple[int, int, int]:
    """Apply one call's spooled events; returns (applied, skipped as duplicates, not applicable yet).

    In the order this node received them (``spool.in_received_order``: the order the lines were written,
    not the wall clock's ``received_at``, which an NTP step during the outage can put backwards), each event
    with its ``CallEvent`` in one transaction. It stops at the first event whose call or attempt does not
    exist yet (``skip_pending``: skips it).
    """
    events = spool.in_received_order(events)
    call_sid = events[0]["params"]["CallSid"]
    snap = current_snapshot()
    caller = _caller_to_lock(call_sid, events)
    applied = duplicates = pending = 0
    for n, record in enumerate(events):
        key = event_key(call_sid, record)
        at = dt.datetime.fromisoformat(record["received_at"])
        try:
            with transaction.atomic():
                # One call's events may be replayed by several nodes at once: one at a time per call. An
                # event for a call not written yet waits (were it applied once the call appears a moment
                # later, it would run without the lock, beside another node's event of the same call). And
                # the call's live webhooks (this node's or another's) wait too: they take the call's lock.
                if not _lock_for_replay(call_sid, caller) and record["kind"] not in ROUTING_KINDS:
                    raise services.UnknownCall(call_sid)
                if CallEvent.objects.filter(call_sid=call_sid, dedupe_key=key).exists():
                    duplicates += 1
                    continue
                key = _ivr_answer_key(call_sid, record, key)
                if key is None:
                    duplicates += 1
                    continue
                _apply(call_sid, record, at, snap)
                db.insert(CallEvent(call_sid=call_sid, kind=record["kind"], dedupe_key=key,
                                    params=record["params"], response=record.get("answer", ""), received_at=at))
        except (services.UnknownCall, IntegrityError) as exc:
            if isinstance(exc, IntegrityError) and record["kind"] not in ROUTING_KINDS:
                raise
            # Not applicable yet (or, IntegrityError: another node is writing this call right now).
            if not skip_pending:
                return applied, duplicates, len(events) - n
            log.warning("spooled %s event of %s skipped: %s", record["kind"], call_sid, exc)
            pending += 1
            continue
        applied += 1
    return applied, duplicates, pending


def _ivr_answer_key(call_sid: str, record: dict, key: str) -> str | None:
    """The key an event is stored under: its own (``event_key``), but for an IVR answer out of turn for the
    call as the database holds it, which is stored apart (``services.out_of_turn_key``), as live: under its
    own key, a stray answer to ZIP prompt 2 replayed while prompt 1 waited made the caller's real answer to
    prompt 2 a duplicate of it, hung up on live, skipped when replayed.

    None: applied already. The same webhook answered the same way stored apart (its parameters and the
    answer degraded mode gave: this very line, at an earlier pass of a file kept until the call ends, or the
    same webhook spooled by another node): the call may wait for that prompt since, and it is not taken for
    the answer then. Or another answer out of turn stored apart: this one is out of turn too (as before,
    when both had the same key). Not by its parameters alone: the caller's own answer, handled from memory
    once the prompt is asked, may be the stray one's word for word (a yes is one key), and live takes it;
    answered otherwise (a stray one handled live was hung up on), it is judged as live judges it."""
    if record["kind"] not in IVR_ANSWERS:
        return key
    apart = services.out_of_turn_key(key)
    stored_apart = CallEvent.objects.filter(call_sid=call_sid, dedupe_key=apart)
    stored = stored_apart.values_list("params", "response").first()
    if stored is not None and stored == (record["params"], record.get("answer", "")):
        return None
    call = Call.objects.filter(call_sid=call_sid).first()
    if call is None or not _out_of_turn(call, record):  # a call it creates waits for nothing: as before
        return key
    return None if stored is not None else apart


def _out_of_turn(call: Call, record: dict) -> bool:
    if record["kind"] == "ivr_zip":
        return services.zip_answer_out_of_turn(call, _zip_prompt(record))
    return services.category_answer_out_of_turn(call)


def _zip_prompt(record: dict) -> int:
    """The ZIP prompt a spooled ZIP answer answers (its ``attempt``; 0: none the call can wait for)."""
    attempt = str((record.get("query") or {}).get("attempt", ""))
    return int(attempt) if attempt in ("1", "2") else 0


def _lock_for_replay(call_sid: str, caller: str) -> bool:
    """Lock what replaying one of the call's events may write, in the order live webhooks lock it (the one
    order of the locks: ``db.lock_caller``): the call (its live webhooks wait), the caller
    (``_caller_to_lock``), then the call's row; the targets' rows the event writes (slots given back, a pause)
    come after, as the event is applied. True when the call is in the database."""
    db.lock_call(call_sid)
    if caller:  # before the call's row: a live verdict holding it may write that row (judged again)
        db.lock_caller(caller)
    return bool(list(Call.objects.select_for_update().filter(call_sid=call_sid).values_list("pk", flat=True)))


def _caller_to_lock(call_sid: str, events: list[dict]) -> str:
    """The caller's number whose lock (``db.lock_caller``) the replay of this call's events takes before it
    locks the call's row, on PostgreSQL (elsewhere ``""``: nothing to take). A verdict handled live holds the
    caller's lock while it judges the caller's later calls again, writing their rows; the replay, judging
    this call, asks for that lock: taken after the row, the two would wait for each other (a deadlock: the
    replay's transaction stopped, its file run again, ``_replay_file_retried``). The number the call records,
    or else (a call the replay creates) the one its inbound webhook's ``From`` gives, as the call will record
    it."""
    if connection.vendor != "postgresql":
        return ""
    recorded = Call.objects.filter(call_sid=call_sid).values_list("caller_number", flat=True).first()
    if recorded is not None:
        return recorded
    return services.classify_caller(str(events[0]["params"].get("From", "")))[0] or ""


#: Events that may create the call: the inbound webhook (and its IVR steps) routed from memory, and the
#: trace the Fallback URL leaves (``carriers/views.py::fallback``).
ROUTING_KINDS = frozenset({"voice", "ivr_zip", "ivr_category", "fallback"})
#: The IVR answers: one out of turn is stored under a key of its own (``_ivr_answer_key``).
IVR_ANSWERS = frozenset({"ivr_zip", "ivr_category"})


def _apply(call_sid: str, record: dict, at: dt.datetime, snap) -> None:
    kind = record["kind"]
    if kind == "fallback":
        _apply_carrier_fallback(call_sid, record, at, snap)
    elif kind in ROUTING_KINDS:
        _apply_routing(call_sid, record, at, snap)
    elif kind == "dial":
        _apply_dial(call_sid, record, at, snap)
    elif kind == "status":
        services.call_status(call_sid, StatusUpdate(**record["update"]), now=_moment(record.get("ended_at"), at))
    elif kind == "recording":
        services.recording_ready(call_sid, RecordingUpdate(**record["update"]), now=at)
    elif kind == "voicemail":
        services.message_left(call_sid, record.get("url", ""), record.get("duration"),
                              record.get("recording_sid", ""))


def _apply_routing(call_sid: str, record: dict, at: dt.datetime, snap) -> None:
    """The call was routed from memory: create (or update) it with that decision and its first attempt.

    An IVR answer (``ivr_zip``, ``ivr_category``) is judged from the webhook's own parameters by the live
    rules, against the call as the database holds it (``services.zip_answer_replayed``,
    ``category_answer_replayed``): a typed ZIP is where the caller is (source ``ivr``, state and city), a
    "no" at the category question makes the call ``wrong_category``, a stray answer changes nothing.
    What degraded mode dialled is recorded whatever the answer: the carrier followed it (an answer posted
    after the caller hung up was routed nowhere: ``degraded.caller_gone``). The carrier's
    ZIP comes with the call (``services.new_call``); the record's ``caller_zip`` is the one degraded
    mode routed with, which is in its decision, and is not copied onto the call (it overwrote a ZIP
    typed live with the carrier's, and recorded a ZIP typed during the outage as the carrier's).
    """
    call = Call.objects.filter(call_sid=call_sid).first()
    if call is not None and call.fallback_applied == services.CARRIER_FALLBACK:
        # The carrier followed its Fallback URL's answer: an inbound answer given after it (a late retry
        # handled in degraded mode) was never followed. Its event is recorded; nothing it dialled is.
        return
    if call is not None and call.fallback_applied == services.STATUS_ONLY:
        _late_for_status_only(call_sid, record)
        return
    if call is None:
        call, _campaign = services.new_call(inbound_of(record), snap, at)
    judge = _ivr_answer(call, record, snap)
    if record.get("caller_gone"):
        _save(call)  # the answer, as the live endpoint records it; nothing was dialled
    elif record.get("unknown_number") or record.get("unroutable"):
        call.stage = CallStage.FALLBACK
        call.fallback_applied = call.fallback_applied or services.UNKNOWN_NUMBER
        _save(call)
    else:
        call.decision = record.get("decision")
        call.ring_position = 0
        _follow(call, record, at)
    if judge:
        services.judge_again(call, snap)


def _ivr_answer(call: Call, record: dict, snap) -> bool:
    """Apply the IVR answer a routing record carries (none for ``voice``); True: the call had ended
    (judge it again once saved). The digits are read as the live endpoints read them."""
    params = record.get("params") or {}
    if record["kind"] == "ivr_zip":
        return services.zip_answer_replayed(call, _zip_prompt(record), str(params.get("Digits", ""))[:16])
    if record["kind"] == "ivr_category":
        return services.category_answer_replayed(call, str(params.get("Digits", ""))[:8], snap)
    return False


def _apply_carrier_fallback(call_sid: str, record: dict, at: dt.datetime, snap) -> None:
    """The carrier answered the call with the Fallback URL's answer: record the call if its inbound webhook
    never did (as the Fallback URL saw it, at the moment it was called), and mark it so
    (``services.carrier_fallback_answered``). A second trace of the same call (the carrier retried the
    Fallback URL, on this node or another) has the same dedupe key and is skipped before this."""
    call = Call.objects.filter(call_sid=call_sid).first()
    if call is None:
        call, _campaign = services.new_call(inbound_of(record), snap, at)
        call.ring_position = 0
    services.carrier_fallback_answered(call, at)


def _apply_dial(call_sid: str, record: dict, at: dt.datetime, snap) -> None:
    call = Call.objects.filter(call_sid=call_sid).first()
    if call is None:
        raise services.UnknownCall(call_sid)
    if call.fallback_applied == services.STATUS_ONLY:
        _late_for_status_only(call_sid, record)
        return
    seq = record["seq"]
    outcome = DialOutcome(**record["outcome"])
    if record.get("refused_at_dial") or record.get("limits") == degraded.UNENFORCED:
        call.decision = {**(call.decision or {})}
        call.decision.setdefault("refused_at_dial", []).extend(record.get("refused_at_dial") or ())
        if record.get("limits") == degraded.UNENFORCED:
            call.decision["limits"] = degraded.UNENFORCED  # this step was routed without counters
    attempt = CallAttempt.objects.filter(call=call, sequence=seq).first()
    if attempt is None:  # dialled by an event spooled on another node, not replayed yet
        raise services.UnknownCall(f"call {call_sid} has no attempt {seq} yet")
    ended_at = _moment(record.get("ended_at"), at)
    if outcome.bridged:  # connected; when the final status was applied first, the call is qualified again
        if attempt.result in (AttemptResult.RINGING, AttemptResult.CANCELED):
            services.dial_finished(call_sid, seq, outcome, now=ended_at)
        return
    if attempt.result == AttemptResult.RINGING:
        info = snap.targets.get(attempt.target_id) if attempt.target_id else None
        services.settle_attempt(call, attempt, outcome, ended_at)
        services.release_attempt(call, attempt, info, undo_usage=True)  # a slot taken before the outage
    elif attempt.result == AttemptResult.CANCELED:
        campaign = snap.campaigns.get(call.campaign_id)  # the final status came first: as the live path does
        if campaign is not None:
            services.record_late_unbridged(attempt, outcome, campaign, snap, ended_at)
    _follow(call, record, at)


def _late_for_status_only(call_sid: str, record: dict) -> None:
    """A routing event or Dial action of a call already recorded from its final status alone, replayed from
    another node's spool after ``STATUS_ONLY_AFTER``: its event is recorded, nothing else. The call stays
    as recorded, never billable: a bridge is not inferred from a spool that came that late (staff can look
    at the call's events); no second call is made."""
    log.error("call %s: a %s event replayed after the call was recorded from its final status alone (%s); "
              "stored as an event, the call left as it is", call_sid, record["kind"], services.STATUS_ONLY)


def _follow(call: Call, record: dict, at: dt.datetime) -> None:
    """Record what degraded mode actually did next: ring a target, or the fallback.

    A leg recorded on a call whose final status was handled first (through another node, or kept for the
    call) is closed as that status closes a leg still ringing: the caller hung up while it rang, or before
    (``services.end_ringing_leg``); a Dial action replayed after it records what the leg did.
    """
    dialled = record.get("dialled")
    if dialled:
        if call.stage != CallStage.ENDED:  # its final status may have been replayed first (another node)
            call.stage = CallStage.DIALING
        call.ring_position = max(call.ring_position, dialled["sequence"])
        _save(call)
        leg = CallAttempt(call=call, sequence=dialled["sequence"], target_id=dialled["target_id"],
                          buyer_id=dialled["buyer_id"], number=dialled["number"],
                          started_at=_moment(dialled.get("started_at"), at), slot_held=False)
        if call.stage == CallStage.ENDED:
            services.end_ringing_leg(call, leg, max(call.ended_at or at, leg.started_at))
        else:
            db.insert(leg)
    elif record.get("fallback"):
        if call.stage != CallStage.ENDED:
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
    busy = False
    sweep_at = time.monotonic() + settings.CLOSE_ABANDONED_EVERY_S
    while True:
        # Every second while this node has spooled calls: the other nodes' webhooks of those calls find
        # them in the database as soon as possible once it is back.
        time.sleep(REPLAY_BUSY_INTERVAL_S if busy else REPLAY_INTERVAL_S)
        busy, sweep_at = background_pass(sweep_at)


def background_pass(sweep_at: float) -> tuple[bool, float]:
    """One pass of the background thread: replay what is spooled; else, when ``sweep_at`` (monotonic
    seconds) has come and ``CLOSE_ABANDONED_EVERY_S`` is set, close the calls whose final status never
    came (``services.close_abandoned``), keep as calls the final statuses whose inbound webhook never
    came (``record_kept_statuses``) and delete cap counts no cap reads any more (``cap_counts``, at most
    ``MOST_A_PASS`` rows). Returns whether calls are spooled, and the next sweep's time."""
    busy = False
    try:
        busy = bool(spool.files() or spool.flush_memory())
        if busy:
            if cached_snapshot() is None:
                current_snapshot()
            replay_ready()
        if settings.CLOSE_ABANDONED_EVERY_S > 0 and time.monotonic() >= sweep_at:
            sweep_at = time.monotonic() + settings.CLOSE_ABANDONED_EVERY_S
            if cached_snapshot() is None:
                current_snapshot()
            try:
                try:
                    services.close_abandoned()
                finally:  # one failing sweep doesn't hold the other back (an outage stops both, each on its own)
                    record_kept_statuses()
            finally:  # the cap counts of finished periods, a pass's share (the next pass goes on)
                cap_counts.forget_finished_periods(most=cap_counts.MOST_A_PASS)
    except Exception:  # noqa: BLE001 - the replayer must never die
        log.exception("background pass failed")
    finally:
        connection.close()  # this thread's own connection: don't keep a broken one
    return busy, sweep_at
