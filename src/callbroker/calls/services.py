"""The call flow: from an inbound call to a ring tree, a connected buyer and a verdict.

Every public function here handles one carrier event inside one transaction and returns the next
steps for the carrier (``callbroker.calls.steps``). ``handle_once`` wraps them so that a webhook
delivered twice changes nothing the second time and gets the same answer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from functools import lru_cache

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from callbroker import db
from callbroker.billing.services import post_verdict
from callbroker.calls import steps as s
from callbroker.calls.choices import AttemptResult, CallStage, IvrPrompt, Verdict, ZipSourceChoices
from callbroker.calls.events import (
    TERMINAL_STATUSES,
    DialOutcome,
    EventIn,
    InboundCall,
    RecordingUpdate,
    StatusUpdate,
    inbound_fields,
    parse_seconds,
)
from callbroker.calls.models import Call, CallAttempt, CallEvent, KeptStatus
from callbroker.core import model as core
from callbroker.core.geo import USPS_STATES, ZipDirectory
from callbroker.core.phone import area_code, classify_caller, normalize
from callbroker.core.qualification import NEVER_CONNECTED, history_facts, qualify_and_explain
from callbroker.core.routing import counted_targets, route
from callbroker.network import live
from callbroker.network.live_redis import CountersUnknown
from callbroker.network.models import TargetState
from callbroker.network.snapshot import (
    VERSION_SQL,
    CampaignInfo,
    NetworkSnapshot,
    TargetInfo,
    cached_snapshot,
    current_snapshot,
)
from callbroker.words import counted as in_words

log = logging.getLogger(__name__)

#: States where every party must consent to a recording (the disclosure is always played there).
ALL_PARTY_CONSENT_STATES = frozenset({"CA", "CT", "DE", "FL", "IL", "MD", "MA", "MI", "MT", "NV", "NH", "OR",
                                      "PA", "WA"})
ZIP_PROMPT = "Please enter the five digit ZIP code where you need service."
ZIP_REPROMPT = "Sorry, that is not a ZIP code we know. Please enter your five digit ZIP code."
APOLOGY = "We're sorry, we can't connect your call right now. Please try again later. Goodbye."
UNANSWERED = (AttemptResult.NO_ANSWER, AttemptResult.BUSY)


class UnknownCall(LookupError):
    """A callback names a CallSid we never saw (or a step that doesn't exist)."""


# --------------------------------------------------------------------------- idempotency


def handle_once(event: EventIn, run: Callable[..., Sequence[s.Step]], render: Callable[[Sequence[s.Step]], str],
                *, prepare: Callable[[int | None], object] | None = None) -> str:
    """Run ``run`` once per ``event.dedupe_key`` and store the rendered answer with the raw event.

    A repeated delivery returns the stored answer without running anything. State change and event
    log are written in the same transaction, so a crash leaves neither. ``prepare`` (reads only) runs
    before the transaction and its result is passed to ``run``: on SQLite a write transaction holds
    the database's one write lock, so the reading and deciding is kept out of it. ``prepare`` is given
    the network version, read with the stored answer in one statement (None on a retry: read it again).
    An IVR answer out of turn (``run`` answers :class:`OutOfTurn`) is stored under ``out_of_turn_key``,
    leaving its own key to the answer in turn.
    """
    stored, version = _stored_answer_and_version(event)
    if stored is not None:
        return stored
    if prepare is None:
        # The handlers after the inbound call read the process's snapshot without asking the database
        # (``check_version=False``); a worker that hasn't handled an inbound call since the network
        # changed would price or judge the call with a network older than the one that routed it.
        current_snapshot(version=version)
    started = time.monotonic()
    row = _event_row(event)  # made before the write lock, which is held only for the writing
    for attempt in range(1, TRANSIENT_RETRIES + 1):
        prepared = prepare(version if attempt == 1 else None) if prepare is not None else None
        try:
            with db.write_lock(), transaction.atomic():
                db.lock_call(event.call_sid)  # PostgreSQL: its other webhooks wait (SQLite: the line above)
                if live.backend_name() == "redis":
                    # A delivery of the same webhook may have committed while this one waited for the locks
                    # above. Run again, its handler would take slots in Redis, outside this transaction,
                    # that other calls see until the rollback on the event's unique key gives them back.
                    stored = _stored_answer(event)
                    if stored is not None:
                        return stored
                steps = run(prepared) if prepare is not None else run()
                stored_row = row
                if isinstance(steps, OutOfTurn):
                    # Kept apart: under the answer's own key it would be what the answer in turn, posted
                    # later, gets. Read under the call's lock: a delivery of this answer in turn may have
                    # committed (and moved the call on) while this one waited; this one is its duplicate.
                    stored = _stored_answer(event)
                    if stored is None:
                        stored = _stored_answer(_apart(event))
                    if stored is not None:
                        return stored
                    stored_row = [*row[:2], out_of_turn_key(event.dedupe_key), *row[3:]]
                body = render(steps)
                _store_event(stored_row, body)
        except IntegrityError:
            # A concurrent delivery of the same webhook won the race: answer what it answered.
            stored = _stored_answer(event)
            if stored is None:
                stored = _stored_answer(_apart(event))
            if stored is None:
                raise
            return stored
        except OperationalError as exc:
            if attempt == TRANSIENT_RETRIES or not _transient(exc) or _waited_long_enough(started):
                raise
            log.info("webhook %s: %s; retrying (%s)", event.dedupe_key, exc, attempt)
            continue
        return body
    raise AssertionError("unreachable")  # pragma: no cover


class OutOfTurn(tuple):
    """The steps answering an IVR answer out of turn: to a prompt the call doesn't wait for (answered already,
    asked later, never asked), or for a call that has moved on. It changed nothing, and ``handle_once`` stores
    it under ``out_of_turn_key``: under the answer's own key (``zip:2``), an answer to ZIP prompt 2 posted
    while prompt 1 waited was taken for the first delivery of the caller's real answer, which got its
    hang-up when prompt 2 was asked, the ZIP typed never read. A delivery of it again while the call still
    doesn't wait for it gets the same answer; one once the call waits for it is an answer in turn."""

    __slots__ = ()


#: The answer to an IVR answer out of turn (``OutOfTurn``).
STRAY_ANSWER = OutOfTurn((s.Hangup(),))


def _apart(event: EventIn) -> EventIn:
    """``event`` under the key it is stored under when it is an IVR answer out of turn (``OutOfTurn``); made
    only when needed, not on every webhook's path."""
    return dataclasses.replace(event, dedupe_key=out_of_turn_key(event.dedupe_key))


def out_of_turn_key(dedupe_key: str) -> str:
    """The dedupe key an IVR answer out of turn is stored under (``OutOfTurn``), live and replayed."""
    return f"{dedupe_key}:out-of-turn"[:200]


#: Deadlocks and serialization failures (PostgreSQL) and a busy SQLite file are retried this many times.
TRANSIENT_RETRIES = 3

#: Errors that mean "a backend is unreachable" — not "this request is wrong": an IntegrityError or
#: DataError comes from bad input and must never send a call into degraded mode.
OUTAGES: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, RedisConnectionError,
                                             RedisTimeoutError, CountersUnknown)


def _waited_long_enough(started: float) -> bool:
    """The web server's lock timeout has passed since the webhook began (``CALLBROKER_DB_LOCK_TIMEOUT_MS``):
    no more retries, the call goes on from memory while the carrier still listens. A busy SQLite file
    has been waited for that long already, once; a retry would wait as long again."""
    limit_ms = settings.DB_LOCK_TIMEOUT_MS
    return limit_ms > 0 and (time.monotonic() - started) * 1000 >= limit_ms


def _transient(exc: OperationalError) -> bool:
    """A conflict between concurrent transactions that a retry resolves (not an outage), or a busy SQLite
    file.

    E.g. a webhook meeting another connection that takes the locks in another order than the one order
    (docs/database.md). The whole handler is re-run, reading again, so a retry never reuses stale state.
    """
    return lost_to_another_transaction(exc) or "database is locked" in str(exc)


#: PostgreSQL's SQLSTATEs for a transaction it stopped because of another one: deadlock_detected,
#: serialization_failure.
CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})


def lost_to_another_transaction(exc: BaseException) -> bool:
    """PostgreSQL stopped the transaction in a deadlock or a serialization failure: the other transaction goes
    on, and running this one again (reading again) gets through. The database is up: not an outage.

    Not SQLite's "database is locked" (the one writer's lock held past the busy timeout): the whole
    database is taken, by a writer that may not let go (another program, a process stopped mid-transaction).
    ``handle_once`` retries that too, a webhook having nowhere else to go; the spool replay stops its pass.
    """
    return getattr(exc.__cause__, "sqlstate", None) in CONFLICT_SQLSTATES


_EVENTS = CallEvent._meta.db_table


# Hand-written SQL: this runs on every webhook and the ORM's query building costs more than the query.
_ANSWER_SQL = f"SELECT response FROM {_EVENTS} WHERE call_sid = %s AND dedupe_key = %s"  # event_unique_call_key


# The status callbacks of a call the inbound webhook hasn't recorded yet (see ``call_status``), and the
# records the replay made without it (the carrier's Fallback URL answer, ``carrier_fallback_answered``; a
# final status alone, ``record_from_final_status``): one probe of the same index, in the inbound call's
# write transaction; usually none.
_BEFORE_INBOUND_SQL = (f"SELECT kind, params FROM {_EVENTS} WHERE call_sid = %s "
                       "AND kind IN ('status', 'fallback', 'status_only')")

#: ``Call.fallback_applied`` of a call to a number that is no active tracking number.
UNKNOWN_NUMBER = "unknown_number"
#: ``Call.fallback_applied`` of a call the carrier answered with our Fallback URL's answer, our Voice URL
#: having failed (e.g. too slow): see :func:`carrier_fallback_answered`.
CARRIER_FALLBACK = "carrier_fallback"
#: ``Call.fallback_applied`` of a call known only from its final status: no node recorded its inbound
#: webhook (it died in the worker), so nothing says how it was routed: see :func:`record_from_final_status`.
STATUS_ONLY = "status_only"
#: What the replay recorded without the call's inbound webhook (the ``CallEvent`` kinds): an inbound
#: webhook handled after it writes nothing (``_ended_early``).
RECORDED_WITHOUT_INBOUND = frozenset({"fallback", STATUS_ONLY})


def _stored_answer(event: EventIn) -> str | None:
    row = db.fetchone(_ANSWER_SQL, [event.call_sid, event.dedupe_key])
    return row[0] if row else None


def _stored_answer_and_version(event: EventIn) -> tuple[str | None, int]:
    """``_stored_answer`` and the network version (``snapshot.network_version``) in one statement."""
    row = db.fetchone(f"SELECT ({_ANSWER_SQL}), ({VERSION_SQL})", [event.call_sid, event.dedupe_key])
    return row[0], row[1] or 0


def _event_row(event: EventIn) -> list:
    """The event's column values but its answer (``_store_event``), received now."""
    received = connection.ops.adapt_datetimefield_value(timezone.now())
    return [event.call_sid, event.kind, event.dedupe_key, json.dumps(event.params), received]


def _store_event(row: list, body: str) -> None:
    call_sid, kind, dedupe_key, params, received = row
    db.execute(
        f"INSERT INTO {_EVENTS} (call_sid, kind, dedupe_key, params, response, received_at) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        [call_sid, kind, dedupe_key, params, body, received],
    )


# --------------------------------------------------------------------------- inbound call


def new_call(inbound: InboundCall, snap: NetworkSnapshot, now: dt.datetime) -> tuple[Call, CampaignInfo | None]:
    """An unsaved Call for an inbound call, and its campaign (None: not an active tracking number)."""
    called = _tracking_key(inbound.to)
    tracking = snap.tracking.get(called)
    campaign = snap.campaigns.get(tracking.campaign_id) if tracking else None
    caller_e164, caller_status = classify_caller(inbound.from_raw)
    call = db.new(  # Call(...) without Model.__init__'s per-field work: this runs on every inbound call
        Call,
        call_sid=inbound.call_sid,
        account_sid=inbound.account_sid,
        to_number=called[:32],
        caller_raw=inbound.from_raw[:64],
        caller_number=caller_e164 or "",
        caller_status=caller_status,
        stir_verstat=inbound.stir_verstat[:40],
        carrier=inbound.carrier,
        caller_state=carrier_state(inbound.from_state),
        caller_city=inbound.from_city[:100],
        started_at=now,
        ivr_prompt=IvrPrompt.NONE,  # until a question is asked
    )
    if tracking is None or campaign is None or not tracking.active or not campaign.active:
        call.stage = CallStage.FALLBACK
        call.fallback_applied = UNKNOWN_NUMBER
        return call, None
    call.tracking_number_id = tracking.id
    call.campaign_id = campaign.core.id
    call.publisher_id = tracking.publisher_id
    directory = ZipDirectory.default()
    carrier_zip = inbound.from_zip.strip()[:5]
    if carrier_zip and carrier_zip in directory:
        _set_zip(call, carrier_zip, ZipSourceChoices.CARRIER, directory)
    return call, campaign


#: Canada's provinces and territories: a carrier's FromState for a Canadian caller.
_PROVINCES = frozenset("AB BC MB NB NL NS NT NU ON PE QC SK YT".split())


def carrier_state(raw: str) -> str:
    """The caller's state as the carrier gave it (``FromState``), when it is a USPS state code or a Canadian
    province; otherwise ``""``, unknown (``"XX"`` or ``"Pennsylvania"`` would otherwise skip the recording
    disclosure that an unknown state gets)."""
    code = raw.strip().upper()
    return code if code in USPS_STATES or code in _PROVINCES else ""


def intro_steps(call: Call, campaign: CampaignInfo) -> tuple[s.Step, ...]:
    """The recording disclosure, when the campaign records and the caller must (or may need to) hear it."""
    if campaign.recording and (
        campaign.recording_disclosure or not call.caller_state or call.caller_state in ALL_PARTY_CONSENT_STATES
    ):
        return (s.Say(campaign.disclosure_text),)
    return ()


def prepare_call(inbound: InboundCall, now: dt.datetime | None = None, *,
                 network_version: int | None = None) -> Callable[[], tuple[s.Step, ...]]:
    """A new inbound call on a tracking number: disclosure, IVR, or straight to routing.

    Everything is read and decided here, outside any transaction; the returned function writes the
    call (and takes the first target's slot) and returns the steps. ``start_call`` runs both.
    ``network_version``: the version just read from the database (``handle_once``), else it is read here.
    """
    now = now or timezone.now()
    snap = current_snapshot(version=network_version)
    call, campaign = new_call(inbound, snap, now)
    if campaign is None:
        log.warning("call %s to %s: not an active tracking number", inbound.call_sid, inbound.to)
        return _saving(call, installation_fallback(snap, None))
    intro = intro_steps(call, campaign)
    if campaign.ask_zip == "always" or (campaign.ask_zip == "when_missing" and not call.caller_zip):
        call.zip_attempts = 1
        call.ivr_prompt = IvrPrompt.ZIP
        return _saving(call, (*intro, s.AskZip(ZIP_PROMPT, 1)), campaign, snap)
    if not call.caller_zip and call.caller_number:
        _guess_zip_from_area_code(call, call.caller_number, ZipDirectory.default())
    if campaign.confirm_category:
        call.ivr_prompt = IvrPrompt.CATEGORY
        return _saving(call, (*intro, s.AskCategory(campaign.confirm_category)), campaign, snap)
    _decide(call, campaign, snap, now)

    def commit() -> tuple[s.Step, ...]:
        if _ended_early(call, campaign, snap, now):
            return (s.Hangup(),)
        return (*intro, *_dial_next(call, campaign, snap, now))

    return commit


def _saving(call: Call, steps: tuple[s.Step, ...], campaign: CampaignInfo | None = None,
            snap: NetworkSnapshot | None = None) -> Callable[[], tuple[s.Step, ...]]:
    # The new call's row made here, outside the write transaction (nothing below changes the call but
    # ``_ended_early``, which writes the call itself).
    write = db.insert_later(call)

    def commit() -> tuple[s.Step, ...]:
        if _ended_early(call, campaign, snap, timezone.now()):
            return (s.Hangup(),)
        write()
        return steps

    return commit


def _ended_early(call: Call, campaign: CampaignInfo | None, snap: NetworkSnapshot | None,
                 now: dt.datetime) -> bool:
    """The carrier went on without this inbound webhook's answer (True: write nothing more, hang up).

    Its final status was handled first (the caller hung up while the inbound webhook waited, e.g. past
    the carrier's timeout): the call is recorded as ended, with no target rung and no slot taken, and
    judged. Otherwise it would be left ringing for good, holding a target's slot. Or the carrier took our
    Fallback URL's answer instead, and its spooled trace was replayed first (``carrier_fallback_answered``):
    the call is recorded already, and the carrier never follows this answer, so nothing is written (no
    target's slot taken for a leg it won't dial). Runs in the inbound call's write transaction, after
    the status's or the replay's (one per CallSid)."""
    recorded_from, params = _carrier_went_ahead(call.call_sid)
    if recorded_from:
        source = "the carrier's Fallback URL trace" if recorded_from == "fallback" else "its final status alone"
        log.warning("call %s: recorded from %s before its inbound webhook was handled; this answer changes "
                    "nothing", call.call_sid, source)
        return True
    if params is None:
        return False
    log.warning("call %s: its final status came before its inbound webhook was handled; recorded as ended",
                call.call_sid)
    call.stage = CallStage.ENDED
    call.ended_at = now
    call.final_status = str(params.get("CallStatus", ""))[:16]
    call.duration_seconds = _stored_duration(params)
    call.ring_position = 0
    _judge_if_unrouted(call)
    _write(call)
    if campaign is not None:
        _qualify(call, campaign, snap)
    return True


def kept_final_status(call_sid: str) -> tuple[dict, StatusUpdate, dt.datetime] | None:
    """The final status stored for this call before the call was (``call_status`` with ``keep_if_unknown``):
    its parameters, the update as the status webhook read it, and when it was received; or None. Read by the
    replay and the sweep only: the inbound webhook's probe (``_carrier_went_ahead``) reads no time."""
    stored = CallEvent.objects.filter(call_sid=call_sid, kind="status").order_by("id")
    for params, received_at in stored.values_list("params", "received_at"):
        if params.get("CallStatus") in TERMINAL_STATUSES:
            update = StatusUpdate(status=str(params["CallStatus"])[:16], duration=_stored_duration(params),
                                  sequence="kept")
            return params, update, received_at
    return None


def _carrier_went_ahead(call_sid: str) -> tuple[str, dict | None]:
    """What the carrier did before this call's inbound webhook was handled: what the replay recorded the
    call from without it (``fallback``, ``status_only``; ``""``: nothing), and the parameters of a final
    status kept (or None)."""
    recorded_from, final = "", None
    for kind, stored in db.fetchall(_BEFORE_INBOUND_SQL, [call_sid]):
        if kind in RECORDED_WITHOUT_INBOUND:
            recorded_from = recorded_from or kind
            continue
        params = stored if isinstance(stored, dict) else json.loads(stored)  # JSON text on SQLite
        if final is None and params.get("CallStatus") in TERMINAL_STATUSES:
            final = params
    return recorded_from, final


def _stored_duration(params: dict) -> int | None:
    """``CallDuration`` of a stored status webhook, read as the webhook read it (``carriers.twilio``)."""
    try:
        return parse_seconds(str(params.get("CallDuration", "")))
    except ValueError:
        return None


def start_call(inbound: InboundCall, now: dt.datetime | None = None) -> tuple[s.Step, ...]:
    """``prepare_call`` and its writes in one go (for callers that manage the transaction themselves)."""
    return prepare_call(inbound, now)()


def zip_entered(call_sid: str, attempt: int, digits: str, now: dt.datetime | None = None, *,
                caller_gone: bool = False) -> tuple[s.Step, ...]:
    """The caller typed (or didn't type) a ZIP code at the IVR. ``caller_gone``: the carrier posted it after
    the caller hung up at the prompt (``_left_at_the_ivr``)."""
    now = now or timezone.now()
    call, campaign, snap = _load(call_sid)
    digits = (digits or "").strip()
    finds = _zip_answer_finds(call, attempt)
    if finds == _AFTER_END and set_typed_zip(call, digits):
        # The caller typed the ZIP, then hung up, and the final status was handled first (the call was
        # never routed): where the caller is is still a fact of the call, as in the other order.
        call.ivr_prompt = IvrPrompt.NONE
        _qualify(call, campaign, snap)
        return (s.Hangup(),)
    if finds == _STRAY:
        # A stray IVR callback: for a call that has moved on, or a prompt that isn't the one the call waits
        # for (answered already, or never asked). Change nothing.
        return STRAY_ANSWER
    if finds != _AT_IVR:  # no ZIP we know, typed before the caller hung up: nothing to record
        return (s.Hangup(),)
    if caller_gone:
        set_typed_zip(call, digits)
        return _left_at_the_ivr(call)
    heard_disclosure = bool(intro_steps(call, campaign))  # as the inbound webhook decided it
    if not set_typed_zip(call, digits):
        if attempt < 2:
            call.zip_attempts = attempt + 1
            call.ivr_prompt = IvrPrompt.ZIP
            db.update(call, ["zip_attempts", "ivr_prompt"])
            return (s.AskZip(ZIP_REPROMPT, attempt + 1),)
        if not call.caller_zip:
            log.info("call %s: no valid ZIP after %s prompts; routing as unknown", call_sid, attempt)
    # The typed ZIP may put the caller in an all-party-consent state the carrier's didn't: the recording
    # disclosure is played now, before anything is recorded (a question, the buyer's leg, a voicemail).
    disclosure = () if heard_disclosure else intro_steps(call, campaign)
    if campaign.confirm_category:
        call.ivr_prompt = IvrPrompt.CATEGORY
        db.update(call)
        typed = call.caller_zip if call.zip_source == ZipSourceChoices.IVR else ""
        return (*disclosure, s.AskCategory(campaign.confirm_category, typed))
    call.ivr_prompt = IvrPrompt.NONE
    return (*disclosure, *_route_and_dial(call, campaign, snap, now))


def category_answered(call_sid: str, digits: str, now: dt.datetime | None = None, *,
                      caller_gone: bool = False) -> tuple[s.Step, ...]:
    """The caller answered the category confirmation: "1" is yes, any other key is no, nothing is unknown.

    Callers who say no are still connected (never left without help) but the call is not billable.
    ``caller_gone``: the carrier posted it after the caller hung up at the question (``_left_at_the_ivr``).
    """
    now = now or timezone.now()
    call, campaign, snap = _load(call_sid)
    digits = (digits or "").strip()
    finds = _category_answer_finds(call)
    if finds == _AFTER_END and digits and campaign.confirm_category:
        # The caller answered, then hung up, and the final status was handled first (the call was never
        # routed): the answer is still a fact the verdict rests on (wrong_category), as in the other order.
        call.category_confirmed = category_meaning(digits)
        call.ivr_prompt = IvrPrompt.NONE
        _qualify(call, campaign, snap)
        return (s.Hangup(),)
    if finds == _STRAY:
        # A stray IVR callback: for a call that has moved on, or one not asked the question (yet).
        return STRAY_ANSWER
    if finds != _AT_IVR:  # no key pressed before the caller hung up (or no question now): nothing to record
        return (s.Hangup(),)
    call.category_confirmed = category_meaning(digits)
    if caller_gone:
        return _left_at_the_ivr(call)
    call.ivr_prompt = IvrPrompt.NONE
    return _route_and_dial(call, campaign, snap, now)


def _left_at_the_ivr(call: Call) -> tuple[s.Step, ...]:
    """An IVR answer the carrier posted after the caller hung up at the prompt (its ``CallStatus`` final): what
    was typed, set on the call, is recorded (a fact of the call, as when the final status comes first), but
    no one is asked, routed or rung: a target's slot taken now would be held for a caller who is gone until
    the final status gave it back. That status ends and judges the call; no question waits any more."""
    call.ivr_prompt = IvrPrompt.NONE
    db.update(call)
    return (s.Hangup(),)


#: Where an IVR answer finds its call: still at the IVR (the answer counts and routes the call), ended
#: before it was routed (its final status handled first: the answer is still a fact of the call), or
#: moved on (a stray answer: it changes nothing).
_AT_IVR, _AFTER_END, _STRAY = "at_ivr", "after_end", "stray"


def _zip_answer_finds(call: Call, attempt: int) -> str:
    """Where an answer to ZIP prompt ``attempt`` finds the call. Stray: the call doesn't wait for that
    prompt's answer (``_awaits_zip``), or it was routed."""
    if not _awaits_zip(call, attempt):
        return _STRAY
    if call.stage == CallStage.ENDED and call.decision is None:
        return _AFTER_END
    return _AT_IVR if call.stage == CallStage.IVR else _STRAY


def _category_answer_finds(call: Call) -> str:
    """Where a category answer finds the call. Stray: the call wasn't asked the question (it waits for a
    ZIP, or has its answer already), or it was routed."""
    if not _awaits_category(call):
        return _STRAY
    if call.stage == CallStage.ENDED and call.decision is None:
        return _AFTER_END
    return _AT_IVR if call.stage == CallStage.IVR else _STRAY


def _awaits_zip(call: Call, attempt: int) -> bool:
    """The call's question is ZIP prompt ``attempt`` (``Call.ivr_prompt``, the prompt's number in
    ``zip_attempts``). A call that doesn't record its question (written by the previous release) is read
    as before: no ZIP typed yet, and ``attempt`` the last prompt asked (``zip_attempts`` 0: any)."""
    if not _question_recorded(call):
        asked = not call.zip_attempts or attempt == call.zip_attempts
        return asked and call.zip_source != ZipSourceChoices.IVR
    return call.ivr_prompt == IvrPrompt.ZIP and attempt == call.zip_attempts


def _awaits_category(call: Call) -> bool:
    """The call's question is the category confirmation (``Call.ivr_prompt``). A call that doesn't record
    its question (written by the previous release) is read as before: anything but a first ZIP prompt
    unanswered (which can't tell prompt 2 from the question after it)."""
    if not _question_recorded(call):
        return not (call.zip_attempts == 1 and call.zip_source != ZipSourceChoices.IVR)
    return call.ivr_prompt == IvrPrompt.CATEGORY


def _question_recorded(call: Call) -> bool:
    """``Call.ivr_prompt`` says which question the call waits for. Not when it is not recorded (a call the
    previous release started), nor when it says a ZIP prompt although a ZIP was typed: this release never
    leaves it so (a ZIP typed asks the category question, or routes), the previous release's ``zip_entered``
    does, during a rolling restart, for a call this release started (it doesn't know the column): read as
    that release reads it."""
    if call.ivr_prompt == IvrPrompt.NOT_RECORDED:
        return False
    return not (call.ivr_prompt == IvrPrompt.ZIP and call.zip_source == ZipSourceChoices.IVR)


def category_meaning(digits: str) -> bool | None:
    """The category confirmation's keys: "1…" is yes, any other key no, none at all not answered."""
    digits = (digits or "").strip()
    return None if not digits else digits.startswith("1")


def set_typed_zip(call: Call, digits: str) -> bool:
    """Take a ZIP the caller typed at the IVR as where the caller is, when it is a ZIP we know: source
    ``ivr``, with its state and city (which the recording disclosure and the area check then go by). The
    call is not saved. The one reading of a typed ZIP, live, answered from memory and replayed alike."""
    directory = ZipDirectory.default()
    digits = (digits or "").strip()
    if len(digits) == 5 and digits.isdigit() and digits in directory:
        _set_zip(call, digits, ZipSourceChoices.IVR, directory)
        return True
    return False


def zip_answer_out_of_turn(call: Call, attempt: int) -> bool:
    """An answer to ZIP prompt ``attempt`` is out of turn for the call as it is (``OutOfTurn``): the replay
    stores one that degraded mode answered apart (``out_of_turn_key``), as live stores it."""
    return _zip_answer_finds(call, attempt) == _STRAY


def category_answer_out_of_turn(call: Call) -> bool:
    """A category answer is out of turn for the call as it is (see ``zip_answer_out_of_turn``)."""
    return _category_answer_finds(call) == _STRAY


def zip_answer_replayed(call: Call, attempt: int, digits: str) -> bool:
    """A ZIP answer degraded mode answered from memory, applied to the call's record as ``zip_entered``
    applies it live, the call as the database holds it before this answer: a ZIP we know typed at the last
    prompt of a call still at the IVR, or of one whose final status came first, is where the caller is
    (``set_typed_zip``); a stray answer changes nothing. Degraded mode can't tell (it has no database) and
    routes the call with the typed ZIP whatever it is: the replay records that routing, not the ZIP.

    The call is not saved. Returns whether the call had ended (judge it again once saved: ``judge_again``).
    """
    finds = _zip_answer_finds(call, attempt)
    if finds == _STRAY:
        return False
    typed = set_typed_zip(call, digits)
    if typed or finds == _AT_IVR:  # answered for good, or degraded mode routed the call: no more questions
        call.ivr_prompt = IvrPrompt.NONE
    return typed and finds == _AFTER_END


def category_answer_replayed(call: Call, digits: str, snap: NetworkSnapshot) -> bool:
    """A category answer degraded mode answered from memory (it connects the caller whatever the answer),
    applied to the call's record as ``category_answered`` applies it live, the call as the database holds
    it before this answer: "1…" confirmed, any other key not (``wrong_category``), no key not answered,
    for a call still at the IVR; a key pressed before a call's final status came first counts too; a
    stray answer changes nothing. Without this a caller who said no was billed when the outage came at
    the question.

    The call is not saved. Returns whether the call had ended (judge it again once saved: ``judge_again``).
    """
    finds = _category_answer_finds(call)
    if finds == _AT_IVR:
        call.category_confirmed = category_meaning(digits)
        call.ivr_prompt = IvrPrompt.NONE
        return False
    campaign = snap.campaigns.get(call.campaign_id) if call.campaign_id else None
    answered = category_meaning(digits)
    if finds == _AFTER_END and answered is not None and campaign is not None and campaign.confirm_category:
        call.category_confirmed = answered
        call.ivr_prompt = IvrPrompt.NONE
        return True
    return False


def judge_again(call: Call, snap: NetworkSnapshot) -> None:
    """Judge an ended call again from its stored facts, after a fact of it was learnt late (an IVR answer
    replayed after its final status); a call whose campaign left the network is left as it is."""
    campaign = snap.campaigns.get(call.campaign_id) if call.campaign_id else None
    if campaign is not None:
        _qualify(call, campaign, snap)


# --------------------------------------------------------------------------- ring tree


def dial_finished(call_sid: str, sequence: int, outcome: DialOutcome,
                  now: dt.datetime | None = None) -> tuple[s.Step, ...]:
    """A target rang out: connected, or try the next target, or the fallback."""
    now = now or timezone.now()
    call = db.select_one(Call, call_sid=call_sid)
    if call is not None and call.campaign_id is None:
        return _dial_finished_without_campaign(call, sequence, outcome, now)
    call, campaign, snap = _load(call_sid, call)
    attempt = db.select_one(CallAttempt, call_id=call.pk, sequence=sequence)
    if attempt is None:
        raise UnknownCall(f"call {call_sid} has no attempt {sequence}")
    if attempt.result != AttemptResult.RINGING and not (attempt.result == AttemptResult.CANCELED and outcome.bridged):
        # Already settled (the final status arrived first and closed it): nothing more to ring.
        if attempt.result == AttemptResult.CANCELED:
            record_late_unbridged(attempt, outcome, campaign, snap, now)
        return (s.Hangup(),)
    info = snap.targets.get(attempt.target_id) if attempt.target_id else None
    given_back = attempt.result == AttemptResult.CANCELED  # by the final status, which came first
    # Ringing without a slot of the call path: dialled in degraded mode and replayed while it rang (the
    # replay takes no slot), or its slot given back by a final status that came first.
    dialled_degraded = attempt.result == AttemptResult.RINGING and not attempt.slot_held
    if (not outcome.bridged and info is not None and campaign.missed_calls_limit
            and unbridged_result(outcome) in UNANSWERED):
        # PostgreSQL: the target's misses lock before its state row (giving back the slot): missed-call
        # protection of a late no-answer takes that lock, then writes the pause on that row.
        db.lock_target_misses(info.core.id)
    settle_attempt(call, attempt, outcome, now)
    if outcome.bridged:
        # The final status came first: the call is judged again below. PostgreSQL: the caller's lock before the
        # target's rows written here (a cap unit counted again, the slot), the one order (``db.lock_caller``).
        caller_locked = call.stage == CallStage.ENDED and _lock_caller_to_judge(call)
        if dialled_degraded and info is not None and not _degraded_leg_counted(call_sid, sequence):
            # Delivered, and no cap unit counts it: degraded mode took none (SQL counters, or Redis away
            # too) or Redis lost it since. A leg whose hold in Redis still counts its unit keeps that one.
            live.count_again(info.core, info.timezone, attempt.started_at)
        if call.stage != CallStage.ENDED:
            call.stage = CallStage.CONNECTED
            db.update(call)
        else:  # the final status came first: release what the end of the call couldn't, then re-qualify
            release_attempt(call, attempt, info, undo_usage=False)
            if given_back and info is not None:
                # It gave the cap units back as for a call not delivered; the buyer talked after all.
                live.count_again(info.core, info.timezone, attempt.started_at, attempt.counted_periods)
            _qualify(call, campaign, snap, caller_locked=caller_locked)
        return (s.Hangup(),)

    # Over, or about to be: ``canceled`` is the caller hanging up while the target rang, ``caller_gone`` the
    # carrier saying the caller's call has ended (e.g. during the whisper). Ringing the next buyer would only
    # add an attempt the carrier never places (its final status follows).
    over = call.stage == CallStage.ENDED or outcome.status == "canceled" or outcome.caller_gone
    ring_locked = False
    if not over:
        # PostgreSQL, SQL counters (or Redis counters counted in the database, Redis unreachable: their limits
        # locks first): this target's row and those of the targets the call may take next, in target order,
        # before the slot goes back: a Dial action whose ring crosses this one's waits here rather than in a
        # deadlock (docs/database.md, the order of the locks). Nothing locked (Redis answering, SQLite): the
        # next reservation lets go of what its refusal took, as the inbound webhook's does.
        ring_locked = live.lock_targets_in_order(
            [attempt.target_id, *(call.decision or {}).get("ring", [])[call.ring_position:]])
    release_attempt(call, attempt, info, undo_usage=True)
    if dialled_degraded:
        _give_back_degraded_hold(call_sid, sequence)
    if attempt.result in UNANSWERED and info is not None:
        _protect_from_missed_calls(info, campaign, now)
    if over:
        return (s.Hangup(),)
    return _dial_next(call, campaign, snap, now, ring_locked=ring_locked)


def _dial_finished_without_campaign(call: Call, sequence: int, outcome: DialOutcome,
                                    now: dt.datetime) -> tuple[s.Step, ...]:
    """A leg's Dial action for a call whose campaign left the network while the leg rang (deleted in the admin:
    its targets went with it). The leg is recorded as it ended, a bridge with its buyer and talk time on the
    call, and its slot flag cleared, whichever came first, this or the final status (which closed the leg
    ``canceled``): the call stays ``pending`` for staff to judge (``calls.staff``), who need to see whether a
    buyer talked; a call the final status judged first, as reaching no buyer, is pending again. Until
    2026-12-07 it was handled as a Dial action of an unknown call: nothing recorded (the call read as answered
    by no one) and a bridged leg answered with the installation's fallback, a forward ringing after the buyer
    hung up. No next line is rung (the ring went with the campaign): a caller still waiting gets the
    installation's fallback, never silence."""
    attempt = db.select_one(CallAttempt, call_id=call.pk, sequence=sequence)
    if attempt is None:  # a call to an unknown number, or kept from its final status alone: it dialled no one
        raise UnknownCall(f"call {call.call_sid} has no attempt {sequence}")
    if attempt.result == AttemptResult.RINGING or (attempt.result == AttemptResult.CANCELED and outcome.bridged):
        settle_attempt(call, attempt, outcome, now)
        release_attempt(call, attempt, None, undo_usage=True)  # its target is gone: no counter to give back to
        if outcome.bridged:
            if call.stage != CallStage.ENDED:
                call.stage = CallStage.CONNECTED
            elif call.verdict != Verdict.PENDING and core.Reason.NOT_CONNECTED.value in (call.reason_codes or ()):
                # Judged before the campaign left (its final status came first), as reaching no buyer: untrue
                # now, and no rule is left to judge it again. Pending again, for staff, as the calls whose
                # campaign left while a buyer talked; nothing was posted for it, nothing is.
                call.verdict, call.reason_codes, call.qualified_at = Verdict.PENDING, [], None
                call.reason_notes = {}
                call.revenue = call.payout = Decimal("0.00")
            db.update(call)
            if call.verdict == Verdict.PENDING:
                post_verdict(call)  # the ledger follows the verdict (nothing was posted for it: nothing is)
    elif attempt.result == AttemptResult.CANCELED and unbridged_result(outcome) != AttemptResult.CANCELED:
        attempt.result = unbridged_result(outcome)  # as ``record_late_unbridged``: what the leg really did
        attempt.dial_call_sid = outcome.dial_call_sid[:64]
        db.update(attempt, ["result", "dial_call_sid"])
    over = (outcome.bridged or call.stage == CallStage.ENDED or outcome.status == "canceled"
            or outcome.caller_gone)
    if over:
        return (s.Hangup(),)
    log.warning("call %s: its campaign left the network while line %s rang; the caller goes to the "
                "installation's fallback", call.call_sid, sequence)
    return installation_fallback(None, None)


def record_late_unbridged(attempt: CallAttempt, outcome: DialOutcome, campaign: CampaignInfo, snap: NetworkSnapshot,
                           now: dt.datetime) -> None:
    """A leg's unbridged result (no answer, busy, failed, declined) that came after the call's final status,
    which closed the attempt as canceled (the caller hanging up while it rang): what the leg really did is
    recorded, so every arrival order ends in the same record and missed-call protection counts a buyer's
    miss. Nothing its verdict rests on changed (it reached no buyer either way). The end of the call gave
    its slot and cap units back, and its end time stays the one the final status gave it."""
    attempt.result = unbridged_result(outcome)
    attempt.dial_call_sid = outcome.dial_call_sid[:64]
    db.update(attempt, ["result", "dial_call_sid"])
    info = snap.targets.get(attempt.target_id) if attempt.target_id else None
    if attempt.result in UNANSWERED and info is not None:
        _protect_from_missed_calls(info, campaign, now)


def _give_back_degraded_hold(call_sid: str, sequence: int) -> None:
    """A leg dialled in degraded mode, whose call was replayed while it rang, ended unanswered here: give
    back the hold degraded mode took for it in Redis (by its token: once, whichever node comes first) and
    its cap units, as degraded mode itself does at a Dial action; also the units alone when the call's end,
    handled in degraded mode, gave the slot back and kept them (the leg's outcome unknown then). Otherwise the
    hold would stay until the node that spooled the call had replayed its end (the line busy while the caller
    talks to the next buyer) and the unit would be kept for good. Nothing to do without Redis counters."""
    from callbroker.calls import degraded  # degraded mode is built on this module

    limits = degraded.Limits(call_sid)
    limits.give_back(sequence, limits.recall(sequence), undo_usage=True)


def _degraded_leg_counted(call_sid: str, sequence: int) -> bool:
    """The cap units degraded mode took in Redis for this leg still count (``degraded.Limits.still_counts``);
    False with SQL counters, where degraded mode takes none."""
    from callbroker.calls import degraded  # degraded mode is built on this module

    return degraded.Limits(call_sid).still_counts(sequence)


def settle_attempt(call: Call, attempt: CallAttempt, outcome: DialOutcome, now: dt.datetime) -> None:
    """Record how a target's leg ended on the attempt (saved) and, when bridged, on the call (not saved)."""
    attempt.ended_at = now
    attempt.dial_call_sid = outcome.dial_call_sid[:64]
    if outcome.bridged:
        attempt.result = AttemptResult.BRIDGED
        attempt.talk_seconds = outcome.duration
        attempt.ring_seconds = _ring_seconds(attempt, now, outcome.duration)
        call.connected_target_id = attempt.target_id
        call.buyer_id = attempt.buyer_id
        call.talk_seconds = outcome.duration
        if outcome.recording_url and not call.recording_url:
            call.recording_url = outcome.recording_url[:500]
            call.recording_sid = outcome.recording_sid[:64]
    else:
        attempt.result = unbridged_result(outcome)
        attempt.ring_seconds = _ring_seconds(attempt, now, 0)
    db.update(attempt)


def call_status(call_sid: str, update: StatusUpdate, now: dt.datetime | None = None, *,
                keep_if_unknown: bool = False,
                described: Callable[[], InboundCall | None] | None = None) -> tuple[s.Step, ...]:
    """The carrier's status callback: on a terminal status, close the call and qualify it.

    ``keep_if_unknown`` (a live webhook): the final status of a call not recorded yet, and not routed in
    degraded mode elsewhere, is answered without raising, so it is stored with its event; the inbound
    webhook, handled after it, finds it and records the call as ended (``_ended_early``). ``described``
    gives the call as the carrier describes it (read only then; None: the webhook doesn't say, no ``To``):
    the status is also set aside (``KeptStatus``), so that the call is kept as a call of its own should
    that inbound webhook never come (``replay.record_kept_statuses``).
    """
    now = now or timezone.now()
    if not update.terminal:
        return ()
    call = db.select_one(Call, call_sid=call_sid)
    if call is None:
        from callbroker.calls import degraded  # degraded mode is built on this module

        if keep_if_unknown and not degraded.routed_elsewhere(call_sid):
            log.warning("call %s: final status before the call was recorded; kept for its inbound webhook",
                        call_sid)
            inbound = described() if described is not None else None
            if inbound is not None:
                # In this webhook's transaction, with its event. A second final status of the call (none
                # should come) leaves the first one's row.
                kept = KeptStatus(call_sid=call_sid, inbound=inbound_fields(inbound), carrier=inbound.carrier,
                                  received_at=now)
                KeptStatus.objects.bulk_create([kept], ignore_conflicts=True)
            return ()
        raise UnknownCall(call_sid)
    if call.stage == CallStage.ENDED:
        if not call.final_status and _closed_without_status(call_sid):
            _end_closed_call_with_status(call, update, now)
        return ()
    _end_call(call, update.status[:16], update.duration, now)
    return ()


def _closed_without_status(call_sid: str) -> bool:
    """The call holds an ``abandoned`` event: ``close_without_status`` ended it (the six-hour close, a spool
    file given up). Read only for an ended call with no carrier status, never on a call in progress."""
    return db.fetchone(_ANSWER_SQL, [call_sid, f"{call_sid}:abandoned"]) is not None


def _end_closed_call_with_status(call: Call, update: StatusUpdate, now: dt.datetime) -> None:
    """The call's real final status, come after ``close_without_status`` ended the call without it (an outage
    longer than six hours: replayed from a node that was down, or delivered late by the carrier). What the
    close made up gives way to the carrier's facts, as if the status had come in time: the call ends when the
    status came (``now``), with its ``CallStatus`` and ``CallDuration``, and a leg the close canceled rang
    until then. Nothing is given back: the close gave back every slot and the cap units of legs not
    delivered, and none is held since. The ``abandoned`` event stays in the log (what the sweep did).

    Judged again only when what the verdict rests on changed: the talk time comes from the Dial action, the
    duration only caps it (``_qualify``), so a call whose buyer talked longer than the carrier's duration is
    judged again, the ledger following; any other keeps its verdict, not priced again by today's network.
    Once: the call then has a final status, and any status after it finds an ended call (as before).

    Judged again, the caller's lock is taken before the call's row is written (PostgreSQL: the one lock
    order, ``db.lock_caller``): taken after, this transaction held the row while it waited for the lock, and
    a verdict of the caller's earlier call, holding the lock, waited for the row to judge this call again."""
    closed_at = call.ended_at
    snap = campaign = None
    if call.talk_seconds and update.duration is not None and call.talk_seconds > update.duration:
        snap = current_snapshot(check_version=False)
        campaign = snap.campaigns.get(call.campaign_id) if call.campaign_id else None
    caller_locked = campaign is not None and _lock_caller_to_judge(call)
    log.warning("call %s: its final status (%s, %s s) came after it was closed without one; it now ends when "
                "the status came", call.call_sid, update.status, update.duration)
    call.ended_at = now
    call.final_status = update.status[:16]
    call.duration_seconds = update.duration
    db.update(call, ["ended_at", "final_status", "duration_seconds"])
    for attempt in db.select(CallAttempt, call_id=call.pk, result=AttemptResult.CANCELED, ended_at=closed_at):
        attempt.ended_at = now
        attempt.ring_seconds = _ring_seconds(attempt, now, 0)
        db.update(attempt, ["ended_at", "ring_seconds"])
    if campaign is not None:  # a call whose campaign left the network is left as it is (``judge_again``)
        _qualify(call, campaign, snap, caller_locked=caller_locked)


def _end_call(call: Call, final_status: str, duration: int | None, now: dt.datetime) -> None:
    """Close the call: attempts still ringing canceled, every slot given back, the call judged.

    The caller's lock that judging takes is taken before the slots go back (PostgreSQL: the one lock order,
    ``db.lock_caller``): taken after, this transaction held a target's state row while it waited for the
    caller's lock, and a replay of the caller's other call, holding that lock, waited for the row."""
    call.stage = CallStage.ENDED
    call.ended_at = now
    call.final_status = final_status
    call.duration_seconds = duration
    snap = current_snapshot(check_version=False)
    campaign = snap.campaigns.get(call.campaign_id) if call.campaign_id else None
    caller_locked = campaign is not None and _lock_caller_to_judge(call)
    _release_held(call, snap, now)
    if campaign is not None:
        _qualify(call, campaign, snap, caller_locked=caller_locked)
    else:  # no campaign to judge by: a call to an unknown number, or one whose campaign left the network
        _judge_if_unrouted(call)  # while it went on (staff judge that one, ``calls.staff``: it stays pending)
        db.update(call)


_UNROUTED = frozenset({UNKNOWN_NUMBER, CARRIER_FALLBACK, STATUS_ONLY})


def _judge_if_unrouted(call: Call) -> None:
    """A call to a number that is no active tracking number (answered by us, by the carrier's Fallback
    URL, or known only from its final status) had no campaign, publisher or buyer: it was never connected
    to a buyer, so it is not billable and pays nothing. (Judged, not left pending among
    the calls still in progress; migration ``calls/0009_judge_unknown_numbers`` judged the earlier ones.)
    Sets the verdict of such a call, leaves any other alone; the caller writes the call."""
    if call.campaign_id is not None or call.fallback_applied not in _UNROUTED:
        return
    call.verdict = Verdict.NOT_BILLABLE
    call.reason_codes = [core.Reason.NOT_CONNECTED.value]
    call.reason_notes = {core.Reason.NOT_CONNECTED.value: NEVER_CONNECTED}
    call.revenue = call.payout = Decimal("0.00")
    call.qualified_at = timezone.now()


def _release_held(call: Call, snap: NetworkSnapshot, now: dt.datetime) -> None:
    """Give back every slot the call's attempts hold; an attempt still ringing is canceled (not delivered),
    also one that holds no slot of the call path (dialled in degraded mode and replayed)."""
    for attempt in db.select(CallAttempt, call_id=call.pk, order_by="sequence"):
        info = snap.targets.get(attempt.target_id) if attempt.target_id else None
        if attempt.result == AttemptResult.RINGING:
            end_ringing_leg(call, attempt, now, info)
        else:
            release_attempt(call, attempt, info, undo_usage=False)


def end_ringing_leg(call: Call, attempt: CallAttempt, now: dt.datetime, info: TargetInfo | None = None) -> None:
    """Close a leg still ringing when its call ended: the caller hung up while it rang (``canceled``), so it was
    not delivered and its slot and cap units are given back, the call path's (``info``: its target), or the
    hold degraded mode took in Redis for a leg it dialled (replayed with no slot of the call path). Otherwise
    such a leg stayed ``ringing`` on an ended call when no Dial action followed. A Dial action that does
    follow records what the leg really did (``dial_finished``). Saved; a new attempt (one replayed after its
    call's end) is inserted."""
    attempt.result = AttemptResult.CANCELED
    attempt.ended_at = now
    attempt.ring_seconds = _ring_seconds(attempt, now, 0)
    if attempt.pk is None:
        db.insert(attempt)
    else:
        db.update(attempt)
    if attempt.slot_held:
        release_attempt(call, attempt, info, undo_usage=True)
    else:
        _give_back_degraded_hold(call.call_sid, attempt.sequence)


#: A call not ended, or still holding a target's slot, this long after it started is over at the carrier,
#: whatever happened: a Dial (to a buyer, or the fallback's forward) lasts at most its ``timeLimit`` (4 h by
#: default, which the TwiML keeps), the IVR, the ring tree and a voicemail minutes. Its final status was lost
#: (the carrier gave up after its retry, or nothing could take it): see :func:`close_abandoned`.
ABANDONED_AFTER = dt.timedelta(hours=6)


def close_abandoned(now: dt.datetime | None = None, *, limit: int = 1000,
                    closed_so_far: list[str] | None = None) -> list[str]:
    """End the calls whose final status never came, ``ABANDONED_AFTER`` after they started: those still
    holding a slot (an ended call's slot left held is given back), and those not ended and not judged that
    hold none (left at the IVR, in a fallback, or whose leg was dialled in degraded mode), which would
    otherwise stay in progress and ``pending`` for good. Each is closed as a final status would close it
    (attempts still ringing canceled, slots given back, the call judged; no carrier status recorded), under
    an event of its own (kind ``abandoned``), once however often this runs and on however many nodes. An
    ended call still ``pending`` (no rule to judge it by: staff judge it, ``calls.staff``) is left alone.
    Returns their CallSids (at most ``limit`` closed: the next pass takes the rest).

    A call that fails to close (``_closed_now``) doesn't count against ``limit``: the pass goes on past it
    (``_close_listed``), so a pile of them, tried again at every pass, can't take every pass's ``limit`` and
    keep the other abandoned calls from ever being closed. Its traceback is logged the first time it fails in
    this process; the calls failing again are one line a pass (the background pass runs every 10 minutes
    for good: a traceback a call a pass buried the log).

    ``closed_so_far``: a list each call closed is added to as it is closed, for a caller that must say what
    was done when an outage stops the pass part-way (the calls closed before it stay closed: each is its own
    transaction), where the list returned is lost with the exception.
    """
    now = now or timezone.now()
    started_before = now - ABANDONED_AFTER
    reason = f"no final status {ABANDONED_AFTER.total_seconds() / 3600:g} h after the call started"
    # attempt_slot_held_idx: the attempts holding a slot, a handful per target
    held = (CallAttempt.objects.filter(slot_held=True, started_at__lt=started_before)
            .values_list("call_id", "call__call_sid").distinct())
    tried: set[str] = set()
    again: list[tuple[str, str]] = []  # (CallSid, error) failing again, their traceback logged before
    try:
        closed = _close_both(held, started_before, limit, reason, now, tried, again,
                             [] if closed_so_far is None else closed_so_far)
    finally:
        if again:
            shown = ", ".join(f"{sid} ({error})" for sid, error in again[:FAILED_AGAIN_SHOWN])
            more = f" and {len(again) - FAILED_AGAIN_SHOWN} more" if len(again) > FAILED_AGAIN_SHOWN else ""
            log.warning("%s could not be closed again (%s; tracebacks logged when each first failed): %s%s; "
                        "tried again at the next sweep", in_words(len(again), "call"), reason, shown, more)
    if len(closed) < limit:
        # Every call listed was tried (the limit left none out): one remembered as failing and listed no more
        # was closed otherwise (its final status, another process's sweep, the command) and is forgotten, so
        # the set holds the calls failing now. Kept until then, it stayed for good, the set only growing.
        _failed_to_close.intersection_update(tried)
    return closed


#: Calls failing again named in a sweep's one line; the line says how many more.
FAILED_AGAIN_SHOWN = 5

#: The calls this process failed to close, their traceback logged (``_closed_now``); a call closed leaves it,
#: and so does one closed otherwise, at the next pass that tries every call listed (``close_abandoned``).
_failed_to_close: set[str] = set()


def _close_both(held: QuerySet, started_before: dt.datetime, limit: int, reason: str, now: dt.datetime,
                tried: set[str], again: list[tuple[str, str]], so_far: list[str]) -> list[str]:
    """``close_abandoned``'s two lists, the calls holding a slot first."""
    closed = _close_listed(held, "call_id", limit, reason, now, tried, again, so_far)
    if len(closed) >= limit:
        return closed
    # Read after the calls above are ended (none comes twice; one that failed to close, still in progress,
    # is listed again and not tried again: ``tried``). The verdict index: the calls still pending
    # are those in progress and the few ended ones staff judge, in every partition (PostgreSQL), sorted by
    # id once read. Not by started_at: ORDER BY started_at would have PostgreSQL read the started_at index
    # through the whole history.
    unfinished = (Call.objects.filter(verdict=Verdict.PENDING, started_at__lt=started_before)
                  .exclude(stage=CallStage.ENDED).values_list("id", "call_sid"))
    return closed + _close_listed(unfinished, "id", limit - len(closed), reason, now, tried, again, so_far)


def _close_listed(listed: QuerySet, key: str, limit: int, reason: str, now: dt.datetime,
                  tried: set[str], again: list[tuple[str, str]], so_far: list[str]) -> list[str]:
    """Close the calls ``listed`` (``(key, CallSid)`` rows) in the order of ``key``, until ``limit`` are
    closed or none is left: the CallSids closed. Read ``limit`` rows at a time, each read starting after the
    last row of the one before, so the calls that fail to close are gone past, each tried once a pass, and
    only one read's rows are held whatever their number. (Read once, ``limit`` rows, they filled every pass
    when there were that many: a call that fails stays listed.) ``tried``: the CallSids tried in this pass
    (a call on both of its lists, failing, is tried once), added to; ``again``: the calls failing again
    (``_closed_now``), added to; ``so_far``: each CallSid closed, added to as it is closed."""
    closed: list[str] = []
    after = None
    while len(closed) < limit:
        page = listed if after is None else listed.filter(**{f"{key}__gt": after})
        rows = list(page.order_by(key)[:limit])
        for _, call_sid in rows:
            if call_sid in tried:
                continue
            tried.add(call_sid)
            if _closed_now(call_sid, reason, now, again):
                closed.append(call_sid)
                so_far.append(call_sid)
                if len(closed) == limit:
                    break
        if len(rows) < limit:
            break
        after = rows[-1][0]
    return closed


def _closed_now(call_sid: str, reason: str, now: dt.datetime, again: list[tuple[str, str]]) -> bool:
    """``close_without_status`` for one call of a sweep: a call that fails for another reason than an outage
    is logged and left for the next sweep, and the others are closed (one such call stopped every sweep
    at it, each one failing, and no other abandoned call was ever closed). An outage stops the sweep.
    The traceback is logged the first time the call fails in this process; failing again, it is added to
    ``again``, the sweep's one line (it logged its traceback at every pass, for good)."""
    try:
        closed = close_without_status(call_sid, reason, now)
    except OUTAGES:
        raise
    except Exception as exc:  # noqa: BLE001 - one call must not keep the others from being closed
        if call_sid in _failed_to_close:
            words = str(exc).strip().splitlines()
            again.append((call_sid, f"{type(exc).__name__}: {words[0]}" if words else type(exc).__name__))
        else:
            _failed_to_close.add(call_sid)
            log.exception("call %s: could not be closed (%s); tried again at the next sweep (its traceback "
                          "once: failing again, it is counted in one line a sweep)", call_sid, reason)
        return False
    _failed_to_close.discard(call_sid)
    return closed


def unfinished_calls_of(account_sid: str) -> list[str]:
    """The CallSids of ``account_sid``'s calls not ended, or ended with a slot still held, oldest first."""
    held = CallAttempt.objects.filter(slot_held=True).values("call_id")
    calls = Call.objects.filter(account_sid=account_sid).filter(~Q(stage=CallStage.ENDED) | Q(pk__in=held))
    return list(calls.order_by("started_at").values_list("call_sid", flat=True))


def close_without_status(call_sid: str, reason: str = "no final status before its spool file was given up",
                         now: dt.datetime | None = None) -> bool:
    """End a call whose final status will not come, as a final status would (attempts still ringing
    canceled, slots given back, the call judged; no carrier status recorded), under an event of its own
    (kind ``abandoned``, with ``reason``): once, whoever calls it how often. True when it closed the call
    (or gave back the slots an ended call still held) now.

    Nothing, and False, when the call is found ended with nothing left to give back: its final status came,
    or another node's sweep closed it, after the caller listed it and before this took the call's lock. (It
    was taken for a call closed now: listed and logged by both nodes' sweeps, and the status's call given
    an ``abandoned`` event, "no final status", beside the status that came.)"""
    now = now or timezone.now()
    closed = False

    def close() -> tuple[s.Step, ...]:
        nonlocal closed
        call = db.select_one(Call, call_sid=call_sid)
        if call is None:  # not in the database (yet): store nothing, or a later close would find it done
            raise UnknownCall(call_sid)
        if call.stage == CallStage.ENDED and not _holds_anything(call):
            raise _ClosedMeanwhile(call_sid)  # store nothing: this close changes nothing
        log.warning("call %s: %s; closed, any slot it held given back", call_sid, reason)
        if call.stage == CallStage.ENDED:  # ended, yet a slot left held: give it back
            _release_held(call, current_snapshot(check_version=False), now)
        else:
            _end_call(call, "", None, now)
        closed = True
        return ()

    event = EventIn(call_sid=call_sid, kind="abandoned", dedupe_key=f"{call_sid}:abandoned",
                    params={"reason": reason})
    try:
        handle_once(event, close, lambda steps: "")
    except (UnknownCall, _ClosedMeanwhile):
        return False
    return closed


class _ClosedMeanwhile(Exception):
    """The call ``close_without_status`` was to close is ended and holds nothing any more."""


def _holds_anything(call: Call) -> bool:
    """One of the call's attempts holds a slot or still rings (``_release_held`` has something to do)."""
    return any(attempt.slot_held or attempt.result == AttemptResult.RINGING
               for attempt in db.select(CallAttempt, call_id=call.pk))


def end_with_kept_status(call_sid: str) -> bool:
    """Apply the final status kept for a call that was not in the database when it came (``call_status``
    with ``keep_if_unknown``), now that it is (replayed from a spool): True when it ended the call.

    The call ends, and a leg still ringing is closed, when the status came (its event's ``received_at``), as
    a spooled status ends it when it was spooled: not when the replay ran, which may be hours later."""
    kept = kept_final_status(call_sid)
    if kept is None:
        return False
    params, update, received_at = kept
    event = EventIn(call_sid=call_sid, kind="status", dedupe_key=f"{call_sid}:status:kept", params=params)
    handle_once(event, lambda: call_status(call_sid, update, now=received_at), lambda steps: "")
    return True


def carrier_fallback_answered(call: Call, now: dt.datetime) -> None:
    """The carrier answered this call with our Fallback URL's answer (our Voice URL failed it: too slow,
    unreachable): record that it did, on the call (saved; a new one is inserted).

    The Fallback URL answers from memory and spools a trace of itself, never touching the database; the
    replay brings it here (``calls/replay.py``), creating the call when the inbound webhook never recorded
    it. When the inbound webhook did record it (it answered, too late for the carrier), the carrier
    followed the fallback's answer, not ours: the call is marked as such (``CARRIER_FALLBACK``), and each
    leg still ringing, which the carrier never dialled, is closed as ``failed`` with no ring time, its slot
    and cap units given back (the buyer never had the call). The routing decision stays: it is what we
    decided.

    Never billable by itself: the fallback's answer is a forward without a Dial action, so nothing tells
    whether a buyer (a target's number may be the forward) was bridged or for how long; the call has no
    connected target and is judged ``not_connected`` when it ends, like a call to our own fallback
    forward. A call already judged keeps its verdict (nothing it rests on changes).
    """
    call.fallback_applied = CARRIER_FALLBACK
    if call.stage != CallStage.ENDED:
        call.stage = CallStage.FALLBACK
    _write(call)
    snap = current_snapshot(check_version=False)
    for attempt in db.select(CallAttempt, call_id=call.pk, result=AttemptResult.RINGING, order_by="sequence"):
        attempt.result = AttemptResult.FAILED
        attempt.ended_at = now
        attempt.ring_seconds = 0
        db.update(attempt)
        info = snap.targets.get(attempt.target_id) if attempt.target_id else None
        release_attempt(call, attempt, info, undo_usage=True)
    if call.stage == CallStage.ENDED and call.verdict == Verdict.PENDING:
        _judge_if_unrouted(call)
        db.update(call)


def record_from_final_status(inbound: InboundCall, update: StatusUpdate, received_at: dt.datetime) -> Call:
    """Record a call known only from its final status (inserted; ``call_status`` then ends and judges it).

    Its inbound webhook was never recorded anywhere (it died in the worker, and the carrier played its own
    error), so the replay found only the status callback, spooled during an outage, and nothing to apply it
    to, or the status came with the database up and was kept for an inbound webhook that never came
    (``replay.record_kept_statuses``); after a grace period (``replay.STATUS_ONLY_AFTER``) it is kept as a call of
    its own rather than dropped or forgotten, so the network's call log shows the call happened: the caller
    and the number called as the status callback gives them (its tracking number, campaign and publisher
    when the number is one), started ``CallDuration`` before the status came, with
    ``fallback_applied = status_only``. Not routed by us, so
    it has no decision and no attempt, and it is never billable: no buyer is connected to it, now or later
    (a routing event or Dial action replayed after it changes nothing: ``calls/replay.py``; an inbound
    webhook handled after it writes nothing: ``_ended_early``), and it is judged ``not_connected``.
    """
    snap = current_snapshot(check_version=False)
    started = received_at - dt.timedelta(seconds=update.duration or 0)
    call, _campaign = new_call(inbound, snap, started)
    call.stage = CallStage.FALLBACK
    call.fallback_applied = STATUS_ONLY
    call.ring_position = 0
    db.insert(call)
    return call


def recording_ready(call_sid: str, update: RecordingUpdate, now: dt.datetime | None = None) -> tuple[s.Step, ...]:
    """A recording of the call is available (or failed)."""
    if update.status != "completed":
        return ()
    updated = db.update_where(Call, {"recording_sid": update.recording_sid[:64], "recording_url": update.url[:500],
                                     "recording_seconds": update.duration}, call_sid=call_sid)
    if not updated:
        raise UnknownCall(call_sid)
    return ()


#: The fallbacks whose ``<Record>`` posts to the voicemail action.
_RECORDING_FALLBACKS = frozenset({core.FallbackKind.VOICEMAIL.value, core.FallbackKind.CALLBACK.value})


def message_left(call_sid: str, url: str, duration: int | None, recording_sid: str = "") -> tuple[s.Step, ...]:
    """A voicemail or callback request was recorded in the fallback.

    Stored only on a call that went to a recording fallback and was never bridged to a buyer, and only
    when the callback names a recording: a voicemail callback for any other call (a bridged one has the
    buyer's recording) or one without a ``RecordingUrl`` changes nothing.
    """
    call = db.select_one(Call, call_sid=call_sid)
    why = ("no such call" if call is None else "no RecordingUrl" if not url
           else "bridged to a buyer" if call.connected_target_id is not None
           else f"its fallback is {call.fallback_applied or 'none'}"
           if call.fallback_applied not in _RECORDING_FALLBACKS else "")
    if why:
        log.warning("call %s: voicemail callback ignored (%s)", call_sid, why)
    else:
        db.update_where(Call, {"recording_url": url[:500], "recording_seconds": duration,
                               "recording_sid": recording_sid[:64]}, call_sid=call_sid)
    return (s.Say("Thank you. We will get back to you. Goodbye."), s.Hangup())


def installation_fallback(snap: NetworkSnapshot | None, campaign: CampaignInfo | None) -> tuple[s.Step, ...]:
    """Where a caller goes when something inside failed: never silence.

    The campaign's forward number, else the installation's fallback number, else the campaign's first
    target (the best target known), else a short apology.
    """
    if campaign is not None:
        fb = campaign.core.fallback
        if fb.kind == core.FallbackKind.FORWARD and fb.number:
            return (s.Forward(fb.number),)
    if settings.FALLBACK_NUMBER:
        return (s.Forward(settings.FALLBACK_NUMBER),)
    if campaign is not None:
        for target in campaign.targets:
            if not target.paused:
                return (s.Forward(target.number, campaign.ring_timeout),)
    return (s.Say(APOLOGY), s.Hangup())


def fallback_for_number(to: str) -> tuple[s.Step, ...]:
    """The carrier's Fallback URL: answer from memory only (no database)."""
    snap = cached_snapshot()
    campaign = None
    if snap is not None:
        tracking = snap.tracking.get(_tracking_key(to))
        campaign = snap.campaigns.get(tracking.campaign_id) if tracking else None
    return installation_fallback(snap, campaign)


def safe_steps_for_call(call_sid: str, to: str) -> tuple[s.Step, ...]:
    """Steps for a call whose webhook failed inside: use memory first, the database only if cheap."""
    if to:
        return fallback_for_number(to)
    try:
        to = Call.objects.filter(call_sid=call_sid).values_list("to_number", flat=True).first() or ""
    except Exception:  # noqa: BLE001 - the database may be what failed
        to = ""
    return fallback_for_number(to)


# --------------------------------------------------------------------------- internals


def _load(call_sid: str, call: Call | None = None) -> tuple[Call, CampaignInfo, NetworkSnapshot]:
    """The call (read unless given), its campaign and the network; UnknownCall when either is missing."""
    if call is None:
        call = db.select_one(Call, call_sid=call_sid)
    if call is None or call.campaign_id is None:
        raise UnknownCall(call_sid)
    snap = current_snapshot(check_version=False)
    campaign = snap.campaigns.get(call.campaign_id)
    if campaign is None:
        snap = current_snapshot()
        campaign = snap.campaigns.get(call.campaign_id)
        if campaign is None:
            raise UnknownCall(f"call {call_sid}: campaign {call.campaign_id} is gone")
    return call, campaign, snap


@lru_cache(maxsize=4096)
def _tracking_key(to: str) -> str:
    """The called number in E.164 when it is a valid number, however the carrier wrote it (full-width
    digits, spaces, no ``+1``): the tracking number's key, and what ``Call.to_number`` stores, so the
    call is found and listed under its tracking number. Anything else is kept as received: no tracking
    number has that key, so the call gets the unknown-tracking-number answer, and the record shows what
    was dialled. The ``+1NPANXXXXXX`` form every US carrier sends takes ``normalize``'s shortcut."""
    return normalize(to) or to


def _set_zip(call: Call, zip_code: str, source: str, directory: ZipDirectory) -> None:
    call.caller_zip = zip_code
    call.zip_source = source
    info = directory.get(zip_code)
    if info is not None:
        call.caller_state = info.state
        call.caller_city = info.city[:100]


def _guess_zip_from_area_code(call: Call, caller_e164: str, directory: ZipDirectory) -> None:
    npa = area_code(caller_e164)
    guess = directory.zip_for_area_code(npa) if npa else None
    if guess:
        _set_zip(call, guess, ZipSourceChoices.AREA_CODE, directory)


def _route_and_dial(call: Call, campaign: CampaignInfo, snap: NetworkSnapshot,
                    now: dt.datetime) -> tuple[s.Step, ...]:
    _decide(call, campaign, snap, now)
    return _dial_next(call, campaign, snap, now)


def _decide(call: Call, campaign: CampaignInfo, snap: NetworkSnapshot, now: dt.datetime) -> None:
    """Route the call (reads only) and store the decision on the unsaved call.

    The live counters are read for the targets the decision weighs only (``routing.counted_targets``:
    not paused, not blocking the caller, in area, open), not for every target of the campaign: for a
    caller with a known ZIP that is a few of a big campaign's targets (1,006 targets: 10.5 ms → 0.6 ms
    per call on SQLite, docs/benchmarks.md). The auto-pauses come first, for all of them, since they decide
    who is in the running; a pause found by the counters read (taken meanwhile) counts too.
    """
    context = routing_context(call, now, _last_reached(call, campaign, now))
    paused = live.auto_paused((t.id for t in campaign.targets), now)
    counted = counted_targets(campaign.core, campaign.targets, context, paused)
    counters, paused_meanwhile = live.read(counted, snap.timezones, now)
    decide(call, campaign, context, counters, paused | paused_meanwhile)


def routing_context(call: Call, now: dt.datetime, last_reached: tuple[int, int | None] | None = None
                    ) -> core.RoutingContext:
    """The core's view of this call at ``now``: its caller, and the target (and buyer) a repeat caller
    reached last (if any).

    A ZIP guessed from the caller's area code is not taken as where the caller is: routing sees a caller
    of unknown location near every ZIP of that area code (``Caller.near_zips``)."""
    source = core.ZipSource(call.zip_source)
    near = None
    if source == core.ZipSource.AREA_CODE:
        npa = area_code(call.caller_number or None)
        near = ZipDirectory.default().zips_for_area_code(npa) if npa else None
    caller = core.Caller(
        number=call.caller_number or None,
        zip_code=call.caller_zip or None,
        zip_source=source,
        near_zips=near,
    )
    sticky_target, sticky_buyer = last_reached or (None, None)
    return core.RoutingContext(caller=caller, now=now, sticky_target_id=sticky_target, sticky_buyer_id=sticky_buyer)


def decide(call: Call, campaign: CampaignInfo, context: core.RoutingContext,
           counters: dict[int, core.TargetCounters], auto_paused: set[int],
           rng: random.Random | None = None) -> core.Decision:
    """Run the core router with the given live facts and store its decision on ``call`` (no I/O)."""
    now, caller = context.now, context.caller
    decision = route(campaign.core, campaign.targets, context, counters, rng, paused_ids=auto_paused)
    call.decision = {
        "at": now.isoformat(),
        "caller_zip": caller.zip_code,
        "zip_source": caller.zip_source.value,
        "ring": list(decision.ring),
        "excluded": _by_reason(decision.excluded),
        "sticky": decision.sticky,
        "fallback": _fallback_json(decision.fallback),
        # Names as they were at the decision, of the targets in the ring (dialled, billed): the presenters
        # look the others up when shown (one query). With every target's name and a pair per excluded
        # target, a 1,000-target campaign's decision was 52 KB a call (6.7 KB now), encoded again at each
        # update of the call and decoded at each of its webhooks.
        "targets": _names_of(campaign.target_names, decision.ring),
        "auto_paused": sorted(auto_paused),
    }
    call.ring_position = 0
    return decision


def _by_reason(excluded: Iterable[tuple[int, core.Exclusion]]) -> dict[str, list[int]]:
    """The excluded targets' ids under their reason's code, reasons in routing order, ids in campaign order:
    ``{"out_of_area": [4, 9], "closed": [2]}``. A list of ``[id, code]`` pairs (how decisions were stored
    before 2026-12-06, still read) cost a 1,000-target campaign 22 KB and most of its encoding time a call."""
    grouped: dict[core.Exclusion, list[int]] = {}
    for tid, reason in excluded:
        ids = grouped.get(reason)
        if ids is None:
            grouped[reason] = ids = []
        ids.append(tid)
    return {reason.value: grouped[reason] for reason in core.Exclusion if reason in grouped}


def _names_of(names: dict[str, str], target_ids: Iterable[int]) -> dict[str, str]:
    """``names`` (target id as text -> name) of these targets only."""
    return {key: names[key] for key in map(str, target_ids) if key in names}


def _dial_next(call: Call, campaign: CampaignInfo, snap: NetworkSnapshot, now: dt.datetime, *,
               ring_locked: bool = False) -> tuple[s.Step, ...]:
    """Take the slot of the next target of the ring that can take the call and dial it, else the fallback.

    ``ring_locked``: the rows of every target left in the ring are locked already, in target order (a Dial
    action, ``live.lock_targets_in_order``). Otherwise (the inbound webhook, an IVR answer, a Dial action on a
    node reaching Redis, which locks nothing first) a reservation that a target further down the ring, before
    it in target order, may follow lets go of the rows its refusal locked (``live.reserve``): the rows this
    transaction holds are then always locked in target order.
    """
    ring = (call.decision or {}).get("ring", [])
    while call.ring_position < len(ring):
        target_id = ring[call.ring_position]
        later = call.ring_position > 0  # the ring was decided before this webhook, maybe minutes ago
        call.ring_position += 1
        info = snap.targets.get(target_id)
        if info is None:
            continue
        refused = _closed_or_paused(info, now) if later else None
        # The cap units are counted in the buyer's hour, day and month of this moment, and given back (or
        # counted again, or rebuilt) by the attempt's start: both must be the same moment. ``now`` was
        # read before the webhook waited for the write lock, maybe in the previous hour.
        at = max(now, timezone.now())
        if refused is None:
            slot = live.slot_name(call.call_sid, call.ring_position)
            out_of_order_next = not ring_locked and any(next_id < target_id for next_id in ring[call.ring_position:])
            refused = live.reserve(info.core, info.timezone, at, slot, let_go_if_refused=out_of_order_next)
        if refused is not None:
            call.decision.setdefault("refused_at_dial", []).append([target_id, refused.value])
            continue
        if live.last_reserved_in_database():
            call.decision["limits"] = "database"  # Redis unreachable: the slot was counted in the database
        call.stage = CallStage.DIALING
        _write(call)
        # Stamped after the slot was taken (not at routing time): attempt intervals then never overlap
        # more than the concurrency limit allowed, which the reliability suite checks; but never in
        # another hour than the one the cap units were counted in (a reservation that waited on a row
        # lock across the hour's end).
        started = max(at, timezone.now())
        counted_in = live.period_keys(at, info.timezone)
        if live.period_keys(started, info.timezone) != counted_in:
            started = at
        # The periods the reservation counted, so that the release gives back those units and no others
        # (the caps or the buyer's time zone may change while the line rings).
        counted = live.counted_periods(info.core, counted_in)
        db.insert(db.new(CallAttempt, call_id=call.pk, sequence=call.ring_position, target_id=target_id,
                         buyer_id=info.core.buyer_id, number=info.core.number, started_at=started,
                         counted_periods=counted))
        # The Dial action's URL carries them too: a leg ending while the database is away gives them back
        # from memory (``degraded._give_back_live_slot``).
        return (s.DialTarget(info.core.number, call.ring_position, campaign.ring_timeout, campaign.recording,
                             campaign.core.id, tuple(ring[call.ring_position:]), target_id, snap.version,
                             counted),)
    return _apply_fallback(call, campaign)


def _closed_or_paused(info: TargetInfo, now: dt.datetime) -> core.Exclusion | None:
    """Why a target further down a ring can't be dialled now, though it could when the call was routed:
    its hours ended, or it was paused (by hand, or by missed-call protection) while the ones before rang.
    Caps and concurrency are checked by the reservation itself."""
    target = info.core
    if target.paused:
        return core.Exclusion.PAUSED
    if target.schedule is not None and not target.schedule.is_open(now):
        return core.Exclusion.CLOSED
    if live.auto_paused((target.id,), now):
        return core.Exclusion.PAUSED
    return None


def _apply_fallback(call: Call, campaign: CampaignInfo) -> tuple[s.Step, ...]:
    call.stage = CallStage.FALLBACK
    call.fallback_applied = campaign.core.fallback.kind.value
    _write(call)
    return fallback_steps(campaign)


def fallback_steps(campaign: CampaignInfo) -> tuple[s.Step, ...]:
    """What a caller hears when no target can take the call (the campaign's fallback)."""
    fb = campaign.core.fallback
    if fb.kind == core.FallbackKind.FORWARD and fb.number:
        return (s.Forward(fb.number),)
    if fb.kind == core.FallbackKind.VOICEMAIL:
        prompt = fb.message or "No one can take your call right now."
        return (s.TakeMessage(_with_tone(prompt, "Please leave a message after the tone.")),)
    if fb.kind == core.FallbackKind.CALLBACK:
        prompt = fb.message or "No one can take your call right now."
        return (s.TakeMessage(_with_tone(prompt, "After the tone, please say your name and the best time to "
                                                 "call you back tomorrow. We will call you back on this number.")),)
    text = fb.message or "Sorry, no one can take your call right now."
    if campaign.hours_text:
        text = f"{text} Our hours are {campaign.hours_text}."
    return (s.Say(text), s.Hangup())


_SAYS_WHEN = re.compile(r"\b(tone|beep)\b", re.IGNORECASE)


def _with_tone(prompt: str, instructions: str) -> str:
    """A recording fallback's prompt and what to do at the tone, unless the campaign's own message says it
    already (the demo's "… after the tone." was followed by "Please leave a message after the tone.")."""
    return prompt if _SAYS_WHEN.search(prompt) else f"{prompt} {instructions}"


def _fallback_json(fb: core.Fallback | None) -> dict | None:
    if fb is None:
        return None
    return {"kind": fb.kind.value, "number": fb.number, "message": fb.message}


_CALLS = Call._meta.db_table
_ATTEMPTS = CallAttempt._meta.db_table
_STATE = TargetState._meta.db_table


def _last_reached(call: Call, campaign: CampaignInfo, now: dt.datetime) -> tuple[int, int | None] | None:
    """The target a repeat caller reached last inside the campaign's duplicate window, and its buyer."""
    if not call.caller_number:
        return None
    since = connection.ops.adapt_datetimefield_value(now - campaign.core.duplicate_window)
    row = db.fetchone(  # hand-written: runs on every call (index call_campaign_caller_idx)
        f"SELECT connected_target_id, buyer_id FROM {_CALLS} WHERE campaign_id = %s AND caller_number = %s "
        "AND started_at >= %s AND connected_target_id IS NOT NULL ORDER BY started_at DESC LIMIT 1",
        [campaign.core.id, call.caller_number, since],
    )
    return (row[0], row[1]) if row else None


def _caller_history(call: Call, campaign: CampaignInfo, snap: NetworkSnapshot
                    ) -> tuple[tuple[dt.datetime, ...], tuple[dt.datetime, ...], tuple[tuple[int, int], ...]]:
    """The caller's last billable call in this campaign before this one; their calls in the velocity window
    before it; and their calls already judged, started after this one, whose verdict may rest on it
    (``(id, campaign id)`` in start order, see ``_judge_again``)."""
    started = connection.ops.adapt_datetimefield_value(call.started_at)
    since = connection.ops.adapt_datetimefield_value(call.started_at - campaign.core.velocity_window)
    until = connection.ops.adapt_datetimefield_value(call.started_at + snap.longest_window)
    # hand-written: runs at the end of every call (call_*_idx indexes)
    rows = db.fetchall(
        f"SELECT started_at FROM {_CALLS} WHERE campaign_id = %s AND caller_number = %s AND verdict = %s "
        "AND started_at < %s ORDER BY started_at DESC LIMIT 1",
        [call.campaign_id, call.caller_number, Verdict.BILLABLE.value, started],
    )
    previous = tuple(db.from_db(Call, "started_at", row[0]) for row in rows)
    # One range of the caller's calls: those before this one (velocity) and those after it (judged again).
    rows = db.fetchall(
        f"SELECT started_at, id, campaign_id, verdict FROM {_CALLS} WHERE caller_number = %s "
        "AND started_at >= %s AND started_at < %s AND id <> %s ORDER BY started_at, id",
        [call.caller_number, since, until, call.pk],
    )
    recent, later = [], []
    for raw_started, pk, campaign_id, verdict in rows:
        at = db.from_db(Call, "started_at", raw_started)
        if at < call.started_at:
            recent.append(at)
        elif at > call.started_at and verdict != Verdict.PENDING and campaign_id is not None:
            other = snap.campaigns.get(campaign_id)
            if other is None:
                continue
            # That call counts this one in its velocity window, or (same campaign) as its earlier
            # billable call.
            reach = max(other.core.velocity_window,
                        other.core.duplicate_window if campaign_id == call.campaign_id else dt.timedelta(0))
            if at - call.started_at < reach:
                later.append((pk, campaign_id))
    return previous, tuple(recent), tuple(later)


def _judge_again(later: Sequence[tuple[int, int]], snap: NetworkSnapshot) -> None:
    """Qualify again the caller's later calls whose verdict may rest on the call just judged.

    Callbacks and replayed spool files can end an earlier call after a later one of the same caller: the
    later one was judged without it (not yet billable, so no duplicate; not yet stored, so not counted in
    the velocity window). Each is judged again from its stored facts, in start order; the ledger follows
    (``post_verdict``), and a call whose billability changes passes the question on to the calls after it.
    Only a call whose duplicate or velocity reason comes out otherwise is written: the others' verdicts
    rest on nothing that changed, and are not judged (nor priced) again by the network as it is now (their
    duplicate or velocity sentence alone is written when it came out otherwise: ``_history_notes_renewed``).
    """
    for pk, campaign_id in later:
        other = db.select_one(Call, id=pk)
        if other is not None and other.verdict != Verdict.PENDING:
            _qualify(other, snap.campaigns[campaign_id], snap, history_only=True)


#: The reasons a call's verdict takes from the caller's other calls (``_caller_history``).
_HISTORY_REASONS = frozenset({core.Reason.DUPLICATE.value, core.Reason.CALLER_VELOCITY.value})


def _talked_on_a_line_gone(call: Call) -> bool:
    """A buyer talked to the caller on a line that left the network since (the target, or its buyer, deleted
    in the admin while the call rang or talked, or after it ended): the bridge is on the call (its talk time,
    its buyer, a connected target the network no longer has), its target's price, buffer and area are not."""
    return call.connected_target_id is not None or call.talk_seconds > 0 or call.buyer_id is not None


def _judge_without_its_line(call: Call, verdict: core.Verdict, sentences: dict[core.Reason, str]) -> bool:
    """Judge a call whose buyer talked on a line that left the network (``_talked_on_a_line_gone``), from what
    is left; True when its billability changed. No rule can price it or weigh its talk time against the
    line's buffer, and ``not_connected`` (what the core says of a call with no connected target) would be
    untrue: a call not judged yet, or judged as reaching no buyer before its bridge was known, is left
    ``pending`` for staff (``calls.staff``), as a call whose campaign left the network while it went on. A call
    judged by its line's rules before it left keeps that verdict, its charge and payout, but for the reasons
    it takes from the caller's other calls (duplicate, velocity), which still apply: one that comes now makes
    it not billable (its entries reversed); one that goes can't make it billable again without a price, and
    is logged. Until 2026-12-07 such a call was judged ``not_connected``: not billable though a buyer talked,
    and a billable one reversed when another call's end judged it again. ``sentences``: the trace's, by reason
    (``qualify_and_explain``); a reason kept keeps its sentence, one that comes takes its own."""
    was_billable = call.verdict == Verdict.BILLABLE
    history = [r.value for r in verdict.reasons if r.value in _HISTORY_REASONS]
    if call.verdict == Verdict.PENDING or core.Reason.NOT_CONNECTED.value in (call.reason_codes or ()):
        if call.verdict != Verdict.PENDING:
            log.warning("call %s: a buyer talked on a line that left the network; pending again, for staff",
                        call.call_sid)
        call.verdict, call.reason_codes, call.qualified_at = Verdict.PENDING, [], None
        call.reason_notes = {}
        call.revenue = call.payout = Decimal("0.00")
    else:
        reasons = [code for code in call.reason_codes or () if code not in _HISTORY_REASONS] + history
        if reasons:
            if set(reasons) != set(call.reason_codes or ()):
                kept = call.reason_notes or {}
                call.reason_notes = {code: sentences[core.Reason(code)] if code in history else kept[code]
                                     for code in reasons if code in history or code in kept}
                call.verdict, call.reason_codes, call.qualified_at = Verdict.NOT_BILLABLE, reasons, timezone.now()
                call.revenue = call.payout = Decimal("0.00")
            else:
                _history_notes_renewed(call, sentences)
        elif call.verdict != Verdict.BILLABLE:
            log.warning("call %s: no longer %s, but its line left the network: no price to bill it by; left "
                        "as it was", call.call_sid, ", ".join(call.reason_codes or ()))
    db.update(call)
    post_verdict(call)  # the ledger follows the verdict, in this transaction (docs/billing.md)
    return was_billable != (call.verdict == Verdict.BILLABLE)


def _history_notes_renewed(call: Call, sentences: dict[core.Reason, str]) -> bool:
    """Give each duplicate or velocity reason the call keeps a sentence for the one it is judged with now
    (``sentences``: the trace's, by reason); True when one changed. The call's verdict, reasons and money
    are left as they are (the caller writes ``reason_notes``).

    Why: judged again when the caller's other calls change (``_judge_again``), a call can keep its reason
    and yet rest on another call: an earlier call billed late makes the call that was the last billable one
    its duplicate, and a later duplicate stays one, of that earlier call now. Its kept sentence named the
    call no longer billable ("20 min earlier" where the last billable call is 30 min earlier). A sentence of
    another reason, or none kept (a call judged before 2026-12-07: its label), is left alone, and so is one whose
    facts came out as they were (``history_facts``): only the campaign's window or limit changed since, and the
    kept sentence names the one the call was judged by."""

    def renewed_words(code: str, words: str) -> str:
        if code not in _HISTORY_REASONS:
            return words
        reason = core.Reason(code)
        now = sentences.get(reason, words)
        return now if history_facts(reason, now) != history_facts(reason, words) else words

    kept = call.reason_notes or {}
    renewed = {code: renewed_words(code, words) for code, words in kept.items()}
    if renewed == kept:
        return False
    call.reason_notes = renewed
    return True


def _write(call: Call) -> None:
    """Insert a new call, or write back the columns of a stored one that changed (``db.update``)."""
    if call.pk is None:
        db.insert(call)
    else:
        db.update(call)


def release_attempt(call: Call, attempt: CallAttempt, info: TargetInfo | None, *, undo_usage: bool) -> None:
    """Give back the attempt's concurrency slot (once) and, for a call not delivered, its cap usage: the units
    its reservation counted (``counted_periods``, recorded at dial time), not those the caps and the buyer's
    time zone of now would count."""
    if not attempt.slot_held:
        return
    attempt.slot_held = False
    db.update(attempt, ["slot_held"])
    if attempt.target_id is not None:
        live.release(info.core if info else None, attempt.target_id, info.timezone if info else None,
                     attempt.started_at, undo_usage=undo_usage, slot=live.slot_name(call.call_sid, attempt.sequence),
                     periods=attempt.counted_periods)


def _protect_from_missed_calls(info: TargetInfo, campaign: CampaignInfo, now: dt.datetime) -> None:
    """Pause a target for a cool-down when it leaves too many calls unanswered in the window."""
    limit = campaign.missed_calls_limit
    if not limit:
        return
    since = now - dt.timedelta(seconds=campaign.missed_calls_window_s)
    db.lock_target_misses(info.core.id)  # PostgreSQL: misses of the target handled at once are counted in turn
    # hand-written: runs after every unanswered attempt
    row = db.fetchone(f"SELECT paused_until FROM {_STATE} WHERE target_id = %s", [info.core.id])
    state = db.from_db(TargetState, "paused_until", row[0]) if row else None
    if state is not None and state > since:
        since = state  # count only the misses after the last auto-pause ended
    missed = db.fetchone(
        f"SELECT COUNT(*) FROM {_ATTEMPTS} WHERE target_id = %s "
        f"AND result IN ({', '.join(['%s'] * len(UNANSWERED))}) AND ended_at >= %s",
        [info.core.id, *(r.value for r in UNANSWERED), connection.ops.adapt_datetimefield_value(since)],
    )[0]
    if missed >= limit:
        window_min = campaign.missed_calls_window_s // 60
        cooldown_min = campaign.missed_calls_cooldown_s // 60
        # Made when missing (a target made other than by the loader or the admin, its slots counted in
        # Redis): an update alone would find no row and the pause would be lost.
        TargetState.objects.update_or_create(target_id=info.core.id, defaults={
            "paused_until": now + dt.timedelta(seconds=campaign.missed_calls_cooldown_s),
            "pause_reason": (f"missed {missed} calls within {window_min} min; paused for {cooldown_min} min "
                             f"from {now:%Y-%m-%d %H:%M} UTC"),
        })
        log.warning("target %s auto-paused: %s missed calls", info.core.id, missed)


def unbridged_result(outcome: DialOutcome) -> str:
    if outcome.status in ("completed", "answered"):
        # Answered (the whisper) but never bridged: the buyer declined, or the caller hung up meanwhile.
        return AttemptResult.CANCELED if outcome.caller_gone else AttemptResult.DECLINED
    return {
        "busy": AttemptResult.BUSY,
        "failed": AttemptResult.FAILED,
        "canceled": AttemptResult.CANCELED,
    }.get(outcome.status, AttemptResult.NO_ANSWER)


def _ring_seconds(attempt: CallAttempt, now: dt.datetime, talk_seconds: int) -> int | None:
    """How long the leg rang, by this server's clock: from the attempt's start to its Dial action, less the
    talk time the carrier reports (the Dial action says nothing of the ring). ``None`` (shown as "ring
    time unknown") when that clock measured less than the talk time: the carrier's clock ran faster than
    ours (the emulator at ``--time-scale`` below 1 posts 90 s of talk a second or less after the dial),
    and the difference would claim "rang 0 s" of a leg that rang for however long it did."""
    elapsed = int((now - attempt.started_at).total_seconds())
    if elapsed < talk_seconds:
        return None
    return elapsed - talk_seconds


def _lock_caller_to_judge(call: Call) -> bool:
    """Take the caller's lock (``db.lock_caller``) that judging the call needs, now: before the writer gives
    back a slot or counts a cap unit again (a target's rows), as the lock order wants. True when taken
    (the call has a caller's number): ``_qualify(…, caller_locked=True)`` then doesn't take it again."""
    if not call.caller_number:
        return False
    db.lock_caller(call.caller_number)
    return True


def _qualify(call: Call, campaign: CampaignInfo, snap: NetworkSnapshot, *, history_only: bool = False,
             caller_locked: bool = False) -> None:
    """Judge the finished call from its stored facts (deterministic: re-running gives the same verdict).

    When this is the call's first verdict, or its billability changed, the caller's later calls that
    were judged already are judged again (``_judge_again``): the verdict doesn't depend on the order in
    which calls end. ``history_only``: change the call only when the reasons it takes from the caller's
    other calls (duplicate, velocity) come out otherwise than stored. ``caller_locked``: the caller's lock
    is held already (``_lock_caller_to_judge``: a writer that gives back a slot before judging takes it
    first, so as never to hold a target's row while it waits for a caller's lock).
    """
    if core.Reason.JUDGED_BY_STAFF.value in (call.reason_codes or ()):
        # Staff judged it because no rule could (``calls.staff``): their judgement stands alone. Judged
        # again when an earlier call of its caller ended, a call whose line left gained ``duplicate`` beside
        # it (``_judge_without_its_line`` adds the history reasons to those kept).
        return
    first, was_billable = call.verdict == Verdict.PENDING, call.verdict == Verdict.BILLABLE
    info = snap.targets.get(call.connected_target_id) if call.connected_target_id else None
    source = core.ZipSource(call.zip_source)
    in_area = None
    if info is not None and call.caller_zip and source in (core.ZipSource.IVR, core.ZipSource.CARRIER):
        in_area = info.core.area_zips is None or call.caller_zip in info.core.area_zips
    previous_billable = recent = later = ()
    if call.caller_number:
        if not (history_only or caller_locked):  # else judged again by ``_judge_again`` (the same caller),
            db.lock_caller(call.caller_number)  # or locked already. PostgreSQL: their other verdicts committed
        previous_billable, recent, later = _caller_history(call, campaign, snap)
    if call.talk_seconds and call.duration_seconds is not None and call.talk_seconds > call.duration_seconds:
        # The buyer can't have talked longer than the caller's call lasted (IVR and ringing included): a
        # carrier's contradictory figures never bill more than the call's own length.
        log.warning("call %s: talk time %s s is longer than the call (%s s); counted as %s s", call.call_sid,
                    call.talk_seconds, call.duration_seconds, call.duration_seconds)
        call.talk_seconds = call.duration_seconds
    facts = core.CallFacts(
        caller=core.Caller(call.caller_number or None, call.caller_zip or None, source),
        connected=call.connected_target_id is not None,
        talk_seconds=call.talk_seconds,
        started_at=call.started_at,  # windows are measured start to start
        in_area=in_area,
        category_confirmed=call.category_confirmed,
        stir_verstat=call.stir_verstat or None,
        previous_billable_at=next(iter(previous_billable), None),
        recent_call_times=recent,
        target_min_talk_seconds=info.core.min_talk_seconds if info else None,
        target_price=info.core.price if info else Decimal("0.00"),
    )
    verdict, sentences = qualify_and_explain(campaign.core, facts)
    if info is None and _talked_on_a_line_gone(call):
        if _judge_without_its_line(call, verdict, sentences) and later:
            _judge_again(later, snap)
        return
    if history_only and _HISTORY_REASONS.intersection(verdict.reasons) == _HISTORY_REASONS.intersection(
            call.reason_codes or ()):
        if _history_notes_renewed(call, sentences):  # its verdict, reasons and money left alone
            db.update(call, ["reason_notes"])
        return
    call.in_area = in_area
    call.verdict = Verdict.BILLABLE if verdict.billable else Verdict.NOT_BILLABLE
    call.reason_codes = [r.value for r in verdict.reasons]
    call.reason_notes = {r.value: sentences[r] for r in verdict.reasons}  # the figures it was judged by
    call.revenue = verdict.revenue
    call.payout = verdict.payout
    call.qualified_at = timezone.now()
    db.update(call)
    post_verdict(call)  # the ledger follows the verdict, in this transaction (docs/billing.md)
    if later and (first or was_billable != verdict.billable):
        _judge_again(later, snap)
