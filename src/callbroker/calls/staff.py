"""What staff decide about a call by hand: a verdict for an ended call that no rule can judge.

A call is judged by its campaign's rules when it ends (``services._qualify``). When its campaign left the
network while it went on (deleted in the admin: the call's ``campaign`` is then empty), nothing can judge it,
and it stays ``pending`` once ended, listed by ``calls list --verdict pending`` beside the calls in progress,
for staff to judge. So does a call whose buyer talked on a line (its target, or its buyer) deleted while the
call went on: nothing is left to price it by (``services._judge_without_its_line``). This is how they do (the
admin's action on the calls list, ``callbroker calls judge``).

The one verdict staff give is *not billable*, with the reason code ``judged_by_staff``: billing a call needs
a price and a payout, which only a campaign gives, and ``not_connected`` would be untrue of a call a buyer
talked to (the call's record says whether one did). Nothing is posted to the ledger (``post_verdict`` runs,
as for every verdict, and finds nothing to post: a pending call was never billed). The caller's other calls
are not judged again: the duplicate rule looks at billable calls only, and velocity counts every call
whatever its verdict, pending or not.

All or none: every call named is judged, or none is (one transaction), and each call refused is named with
why: not ended (its final status, or the six-hour close, judges it), judged already, or unknown. Who judged
it, when and their note are written to the call's event log, append-only, as an event of its own (kind
``judged_by_staff``, once per call: its key is the CallSid's), where ``calls show --events`` and the admin's
carrier events show it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from callbroker import db
from callbroker.billing.services import post_verdict
from callbroker.calls.choices import CallStage, Verdict
from callbroker.calls.models import Call, CallEvent
from callbroker.core.model import Reason

#: The kind of the event that records a verdict staff gave (``CallEvent.kind``).
JUDGED_BY_STAFF = "judged_by_staff"
#: Who judged, when it was not a staff user of the admin.
FROM_THE_CLI = "cli"
#: The longest note kept with a verdict (characters).
NOTE_MAX = 1000
#: The most calls judged at once (one transaction, one message naming every call refused).
MOST_AT_ONCE = 1000
#: How many refused calls a message names one by one (the rest are counted).
NAMED_IN_MESSAGE = 10


class NotJudged(ValueError):
    """Nothing was judged: ``problems`` maps each call refused (CallSid) to why, in the order given."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        named = [f"{sid} {why}" for sid, why in list(problems.items())[:NAMED_IN_MESSAGE]]
        more = len(problems) - len(named)
        text = "; ".join(named) + (f"; and {more} more" if more else "")
        super().__init__(f"Nothing judged (all or none): {text}.")


def clean_note(note: str | None) -> str:
    """The note as kept: surrounding blanks off. Raises ``ValueError`` naming the note when it can't be kept
    (too long, or holding a NUL character, which PostgreSQL's JSON refuses)."""
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise ValueError(f"note: at most {NOTE_MAX} characters (it has {len(note)}).")
    if "\x00" in note:
        raise ValueError("note: it holds a NUL character; remove it.")
    return note


def refusals(call_sids: Sequence[str]) -> dict[str, str]:
    """Why each call named can't be judged by staff now (CallSid -> why; empty: every one can). Reads only."""
    if len(call_sids) > MOST_AT_ONCE:
        return _too_many(len(call_sids))
    asked = [sid for sid in call_sids if "\x00" not in sid]  # PostgreSQL refuses a NUL in a text: no call has one
    found = {call.call_sid: call for call in Call.objects.filter(call_sid__in=asked)}
    by_staff = set(CallEvent.objects.filter(call_sid__in=asked, kind=JUDGED_BY_STAFF)
                   .values_list("call_sid", flat=True))
    problems = {}
    for sid in call_sids:
        why = _why_not(found.get(sid), sid in by_staff)
        if why:
            problems[sid] = why
    return problems


def _too_many(count: int) -> dict[str, str]:
    return {f"{count} calls": f"are too many at once (at most {MOST_AT_ONCE}): judge them in parts"}


def _why_not(call: Call | None, judged_by_staff: bool) -> str:
    if call is None:
        return "is no call"
    if call.stage != CallStage.ENDED:
        stage = call.get_stage_display()
        return (f"is still in progress ({stage[:1].lower()}{stage[1:]}): its final status judges it, or the "
                "six-hour close (calls close-abandoned)")
    if call.verdict != Verdict.PENDING:
        codes = f": {', '.join(call.reason_codes)}" if call.reason_codes else ""
        return f"is judged already ({call.get_verdict_display().lower()}{codes})"
    if judged_by_staff:  # its verdict set back by hand since: the event log keeps one staff verdict a call
        return "was judged by staff already (see its events)"
    return ""


def judge_not_billable(call_sids: Iterable[str], *, by: str, note: str = "") -> list[str]:
    """Judge these ended, pending calls not billable (``judged_by_staff``), all or none: their CallSids.

    ``by``: the staff user's name, or :data:`FROM_THE_CLI`. Raises :class:`NotJudged` (nothing written) when
    any call is refused, checked again under the calls' locks (a final status or another staff member may
    have come first), and ``ValueError`` for a note that can't be kept (:func:`clean_note`).
    """
    sids = list(dict.fromkeys(call_sids))
    note = clean_note(note)
    if not sids:
        return []
    if len(sids) > MOST_AT_ONCE:
        raise NotJudged(_too_many(len(sids)))
    with db.write_lock(), transaction.atomic():
        # Every call's lock before any row is written (PostgreSQL: its webhooks wait; SQLite: the line above),
        # in one order, so two staff members judging calls in common can't wait for each other.
        for sid in sorted(sids):
            if "\x00" not in sid:  # no call (``refusals``), and no text PostgreSQL takes
                db.lock_call(sid)
        problems = refusals(sids)
        if problems:
            raise NotJudged(problems)
        now = timezone.now()
        reasons = [Reason.JUDGED_BY_STAFF.value]
        notes = {Reason.JUDGED_BY_STAFF.value: staff_sentence(by, note)}
        params = {"verdict": Verdict.NOT_BILLABLE.value, "reasons": reasons, "by": by, "note": note}
        for call in Call.objects.filter(call_sid__in=sids):
            call.verdict = Verdict.NOT_BILLABLE
            call.reason_codes = reasons
            call.reason_notes = notes
            call.revenue = call.payout = Decimal("0.00")
            call.qualified_at = now
            call.save(update_fields=["verdict", "reason_codes", "reason_notes", "revenue", "payout", "qualified_at"])
            post_verdict(call)  # nothing to post for a call never billed; the ledger stays in line all the same
        CallEvent.objects.bulk_create([
            CallEvent(call_sid=sid, kind=JUDGED_BY_STAFF, dedupe_key=f"{sid}:{JUDGED_BY_STAFF}", params=params,
                      received_at=now)
            for sid in sids
        ])
    return sids


def staff_sentence(by: str, note: str) -> str:
    """Staff's own reason, kept with the verdict as the rules' sentences are (``Call.reason_notes``): who judged
    and their note. Why: the label says only that staff judged; the note says why, and is the one the call's
    page and ``calls show`` give beside the code."""
    who = "staff from the command line" if by == FROM_THE_CLI else f"staff ({by})"
    return f"judged not billable by {who}: {note}" if note else \
        f"judged not billable by {who} (no rule left to judge it by)"
