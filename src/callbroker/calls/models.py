"""Calls as they happen: the call, each target rung, and the raw webhook log."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from callbroker.calls.choices import (
    AttemptResult,
    CallerStatus,
    CallStage,
    IvrPrompt,
    Outcome,
    Verdict,
    ZipSourceChoices,
)
from callbroker.network.models import MONEY, Buyer, Campaign, Publisher, Target, TrackingNumber


class Call(models.Model):
    """One inbound call on a tracking number: who called, how it was routed, and whether it is billable.

    On PostgreSQL the table is partitioned by month of ``started_at`` (migration 0002, maintained by
    ``callbroker.calls.partitions``; see docs/database.md). There the primary key is ``(id,
    started_at)`` and the unique key ``(call_sid, started_at)`` in the database, while Django keeps
    using ``id`` as the primary key; a CallSid stays unique through a registry table filled by a
    trigger, besides ``CallEvent``'s unique (CallSid, ``"{CallSid}:voice"``) written with the call.
    ``started_at`` never changes once the call is written. On SQLite it is a plain table, ``call_sid``
    unique.
    """

    call_sid = models.CharField("CallSid", max_length=64, unique=True)
    account_sid = models.CharField("AccountSid", max_length=64, blank=True)
    carrier = models.CharField("carrier", max_length=16, default="twilio")
    to_number = models.CharField("number called", max_length=32)
    tracking_number = models.ForeignKey(TrackingNumber, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="calls")
    # No single-column index where a composite index starts with the column (see Meta.indexes): every
    # index is one more page written per call, and the composite one serves the same lookups.
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls",
                                 db_index=False)
    # PROTECT: a publisher with calls can't be deleted (deactivate it: ``active``, ``network load --prune``).
    # SET NULL erased who brought each call, silently (the ledger protects only publishers paid for one), and
    # a call in progress then ended billable with its payout posted to no one. Nothing in the database: the
    # check is Django's (``Collector``), along ``call_publisher_id`` (docs/database.md).
    publisher = models.ForeignKey(Publisher, null=True, blank=True, on_delete=models.PROTECT,
                                  related_name="calls")
    # caller
    caller_raw = models.CharField("caller ID as received", max_length=64, blank=True)
    caller_number = models.CharField("caller (E.164)", max_length=20, blank=True)  # indexed by call_caller_time_idx
    caller_status = models.CharField("caller ID", max_length=16, choices=CallerStatus.choices,
                                     default=CallerStatus.VALID)
    caller_zip = models.CharField("caller ZIP", max_length=5, blank=True)
    zip_source = models.CharField("ZIP from", max_length=16, choices=ZipSourceChoices.choices,
                                  default=ZipSourceChoices.UNKNOWN)
    caller_state = models.CharField("caller state", max_length=2, blank=True)
    caller_city = models.CharField("caller city", max_length=100, blank=True)
    stir_verstat = models.CharField("STIR/SHAKEN", max_length=40, blank=True)
    zip_attempts = models.PositiveSmallIntegerField("ZIP prompts", default=0)
    # Recorded, not inferred from the ZIP and ``zip_attempts``: after two ZIPs we don't know, ``zip_attempts``
    # is 2 both while prompt 2 waits and once the category question is asked. The default is the database's
    # too: the previous release's code, still serving during a rolling restart, writes calls without it.
    ivr_prompt = models.CharField("IVR question awaited", max_length=16, choices=IvrPrompt.choices, blank=True,
                                  default=IvrPrompt.NOT_RECORDED, db_default=IvrPrompt.NOT_RECORDED)
    category_confirmed = models.BooleanField("category confirmed (IVR)", null=True, blank=True)
    # life
    stage = models.CharField("stage", max_length=16, choices=CallStage.choices, default=CallStage.IVR)
    started_at = models.DateTimeField("started", db_index=True)
    ended_at = models.DateTimeField("ended", null=True, blank=True)
    duration_seconds = models.PositiveIntegerField("call duration (s)", null=True, blank=True)
    final_status = models.CharField("carrier's final status", max_length=16, blank=True)
    # routing
    decision = models.JSONField("routing decision", null=True, blank=True,
                                help_text="Ring list, excluded targets with reasons, fallback.")
    ring_position = models.PositiveSmallIntegerField("next position in the ring list", default=0)
    fallback_applied = models.CharField("fallback applied", max_length=16, blank=True)
    # Both are empty until a buyer answers, so their indexes are partial (Meta.indexes): a new call, and a
    # call that never connects, writes neither B-tree.
    connected_target = models.ForeignKey(Target, null=True, blank=True, on_delete=models.SET_NULL,
                                         related_name="connected_calls", db_index=False)
    buyer = models.ForeignKey(Buyer, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls",
                              db_index=False)
    talk_seconds = models.PositiveIntegerField("bridged talk time (s)", default=0)
    in_area = models.BooleanField("caller in the target's area", null=True, blank=True)
    # recording
    recording_sid = models.CharField("recording SID", max_length=64, blank=True)
    recording_url = models.URLField("recording URL", max_length=500, blank=True)
    recording_seconds = models.PositiveIntegerField("recording length (s)", null=True, blank=True)
    # qualification and money
    verdict = models.CharField("verdict", max_length=16, choices=Verdict.choices, default=Verdict.PENDING,
                               db_index=True)
    reason_codes = models.JSONField("reasons not billable", default=list, blank=True)
    # The qualification trace's sentence of each reason, by its code, written with the verdict: the figures the
    # call was judged by (the buffer that applied, the window), which its rules as they are later may no longer
    # give. Empty for a call judged before 2026-12-07 (its reasons are shown by their labels). The database
    # keeps the default ({}): the previous release writes calls without it during a rolling restart.
    reason_notes = models.JSONField("reasons in words, as judged", default=dict, db_default={}, blank=True)
    revenue = models.DecimalField("revenue (buyer price)", default=Decimal("0.00"), **MONEY)
    payout = models.DecimalField("publisher payout", default=Decimal("0.00"), **MONEY)
    qualified_at = models.DateTimeField("qualified", null=True, blank=True)
    # outcome, recorded by the buyer later
    outcome = models.CharField("outcome", max_length=24, choices=Outcome.choices, blank=True, default="")
    job_value = models.DecimalField("job value", null=True, blank=True,
                                    validators=[MinValueValidator(Decimal("0.00"), "A job value can't be negative.")],
                                    **MONEY)
    outcome_note = models.TextField("outcome note", blank=True)
    outcome_at = models.DateTimeField("outcome recorded", null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        verbose_name = "call"
        indexes = [
            models.Index(fields=["campaign", "caller_number", "-started_at"], name="call_campaign_caller_idx"),
            models.Index(fields=["caller_number", "-started_at"], name="call_caller_time_idx"),
            # Calls by buyer or by target (and the SET NULL when one is deleted): connected calls only.
            models.Index(fields=["connected_target"], condition=models.Q(connected_target__isnull=False),
                         name="call_connected_target_idx"),
            models.Index(fields=["buyer"], condition=models.Q(buyer__isnull=False), name="call_buyer_idx"),
        ]

    def __str__(self) -> str:
        return self.call_sid


class CallAttempt(models.Model):
    """One target rung for a call, in ring-tree order."""

    # No database constraint: on PostgreSQL the call table is partitioned and its ``id`` alone is not a
    # unique key there, so nothing can reference it. Django still cascades deletes (it always did that
    # in Python), and attempts are only written by the call path in the transaction that wrote the call.
    # Neither ``call`` nor ``target`` has an index of its own: attempt_unique_sequence (call, sequence) and
    # attempt_target_result_idx (target, …) start with them.
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="attempts", db_constraint=False,
                             db_index=False)
    sequence = models.PositiveSmallIntegerField("position in the ring tree")
    target = models.ForeignKey(Target, null=True, on_delete=models.SET_NULL, related_name="attempts", db_index=False)
    # No index: nothing looks attempts up by buyer (the call and the ledger carry the buyer who was billed).
    # Only deleting a buyer does, to set it to NULL, and that rare admin action scans the table instead of
    # every attempt writing one more B-tree.
    buyer = models.ForeignKey(Buyer, null=True, on_delete=models.SET_NULL, related_name="attempts", db_index=False)
    number = models.CharField("number dialled", max_length=20)
    started_at = models.DateTimeField("dialled at")
    ended_at = models.DateTimeField("ended", null=True, blank=True)
    ring_seconds = models.PositiveIntegerField("ring time (s)", null=True, blank=True)
    talk_seconds = models.PositiveIntegerField("talk time (s)", default=0)
    result = models.CharField("result", max_length=16, choices=AttemptResult.choices,
                              default=AttemptResult.RINGING)
    dial_call_sid = models.CharField("DialCallSid", max_length=64, blank=True)
    slot_held = models.BooleanField("holds a concurrency slot", default=True)
    # The periods its reservation counted a cap unit in ("H2026120814 D20261208": ``live.counted_periods``;
    # '' none), written at dial time, so that its release gives back exactly those units whatever the caps or
    # the buyer's time zone became while it rang. NULL: not recorded (dialled by the previous release during
    # a rolling restart, before 2026-12-08, or in degraded mode and replayed): worked out as before.
    counted_periods = models.CharField("cap periods counted", max_length=32, null=True, blank=True)

    class Meta:
        ordering = ["call", "sequence"]
        verbose_name = "call attempt"
        constraints = [models.UniqueConstraint(fields=["call", "sequence"], name="attempt_unique_sequence")]
        indexes = [
            models.Index(fields=["target", "result", "started_at"], name="attempt_target_result_idx"),
            # Slots held now, counted per target when Redis is unreachable or rebuilt (network/live.py).
            models.Index(fields=["target"], condition=models.Q(slot_held=True), name="attempt_slot_held_idx"),
        ]


class CallEvent(models.Model):
    """Append-only log of every carrier webhook accepted, with the answer given (for audit and replay).

    ``dedupe_key`` makes webhook handling idempotent: a second delivery of the same webhook finds its
    event and gets the same answer without changing anything. The key starts with the CallSid
    (``"{CallSid}:dial:2"``), so the pair (CallSid, key) is unique exactly when the key is: one unique
    index on the pair (``event_unique_call_key``) enforces it and serves the lookups by CallSid too (its
    leading column), one B-tree written per webhook instead of two.
    """

    call_sid = models.CharField("CallSid", max_length=64)  # indexed by event_unique_call_key
    kind = models.CharField("kind", max_length=24)
    dedupe_key = models.CharField("dedupe key", max_length=200)
    params = models.JSONField("parameters")
    response = models.TextField("TwiML answered", blank=True)
    # When the carrier's webhook reached us: now for a webhook handled live (``services._event_row`` stamps
    # it), the spooled line's own time for one answered from memory and replayed later (``replay.py``), so
    # the log says when the carrier posted, not when the database came back. A default, not ``auto_now_add``,
    # which overwrote any time given on insert.
    received_at = models.DateTimeField("received", default=timezone.now, editable=False)

    class Meta:
        ordering = ["id"]
        verbose_name = "call event"
        constraints = [models.UniqueConstraint(fields=["call_sid", "dedupe_key"], name="event_unique_call_key")]

    def __str__(self) -> str:
        return f"{self.call_sid} {self.kind}"


class KeptStatus(models.Model):
    """A final status that came before its call was recorded, kept until the call is (a small to-do list).

    The status webhook of a call the database doesn't hold yet is answered and stored with its event
    (``services.call_status``), for the call's inbound webhook, handled after it, to find. When that webhook
    never comes (it died in the worker and the carrier played its own error), nothing else would ever record
    the call: the sweep (``replay.record_kept_statuses``) keeps it as a call of its own once the status has
    waited ``replay.STATUS_ONLY_AFTER``, as the spool replay keeps a spooled one, and deletes the row, as it
    does when it finds the call recorded meanwhile. So the table holds the statuses of the last hour or so
    of such calls: no index but its keys, and the event log (written by every webhook) gets none either.
    """

    # Unique by a constraint, not ``unique=True``: on PostgreSQL Django gives a unique text field a second,
    # ``varchar_pattern_ops`` index, for lookups by prefix that nothing makes (database.md).
    call_sid = models.CharField("CallSid", max_length=64)
    inbound = models.JSONField("the call as the carrier described it")  # ``events.InboundCall``'s fields
    received_at = models.DateTimeField("received")
    #: Who signed the status (``events.CARRIERS``), beside ``inbound``, whose keys stay the previous release's
    #: (it builds ``InboundCall(**inbound)``); NULL: kept by a release before 2026-12-08, read as Twilio's.
    carrier = models.CharField("signed by", max_length=16, null=True, blank=True)

    class Meta:
        verbose_name = "final status kept for its call"
        verbose_name_plural = "final statuses kept for their calls"  # the admin's (Django adds an s)
        constraints = [models.UniqueConstraint(fields=["call_sid"], name="kept_status_once_per_call")]

    def __str__(self) -> str:
        return self.call_sid
