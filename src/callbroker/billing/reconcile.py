"""Reconcile calls and ledger: does every call's verdict, revenue and payout agree with its ledger entries?

:func:`check_ledger` (``callbroker billing check``, the tests, the reliability suite) reads every call that
is billable or has ledger entries, with its entries, in two streams sorted by call id, and checks, for
the charge (buyer, ``Call.revenue``) and the payout (publisher, ``Call.payout``) of each call:

* a billable call has exactly one open posting (posted, not reversed) of each kind, to the call's buyer
  (publisher) and campaign, and its entries sum to the call's amount;
* a call that is not billable (or still pending) has no open posting and its entries sum to zero;
* every reversal takes back exactly the posting of its generation;
* every entry belongs to a call that exists, under that call's CallSid.

Anything else is a :class:`Mismatch`, described in a sentence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import groupby

from django.db.models import Exists, OuterRef, Q

from callbroker.billing.choices import REVERSAL_OF, EntryKind
from callbroker.billing.models import LedgerEntry
from callbroker.billing.statements import Period
from callbroker.calls.choices import Verdict
from callbroker.calls.models import Call
from callbroker.core.money import ZERO

#: Rows read per round trip from each stream.
CHUNK = 2000
_CALL_FIELDS = ("id", "call_sid", "verdict", "revenue", "payout", "buyer_id", "publisher_id", "campaign_id")
_ENTRY_FIELDS = ("call_id", "call_sid", "kind", "generation", "amount", "buyer_id", "publisher_id",
                 "campaign_id", "currency")


@dataclass(frozen=True)
class Mismatch:
    """One way a call and the ledger disagree."""

    call_sid: str
    problem: str

    def __str__(self) -> str:
        return f"{self.call_sid}: {self.problem}"

    def to_dict(self) -> dict:
        return {"call_sid": self.call_sid, "problem": self.problem}


@dataclass(frozen=True)
class LedgerCheck:
    """The result of a reconciliation: counts, and every mismatch found (none when the ledger is right)."""

    period: Period | None
    calls_checked: int = 0  # billable calls and calls with ledger entries
    billable_calls: int = 0
    charged_calls: int = 0  # calls with an open charge
    paid_calls: int = 0  # calls with an open payout
    mismatches: tuple[Mismatch, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict:
        return {"period": self.period.to_dict() if self.period else None, "ok": self.ok,
                "calls_checked": self.calls_checked, "billable_calls": self.billable_calls,
                "charged_calls": self.charged_calls, "paid_calls": self.paid_calls,
                "mismatches": [m.to_dict() for m in self.mismatches]}


def ledger_mismatches(period: Period | None = None) -> list[Mismatch]:
    """Every disagreement between calls (started in ``period``, default all) and the ledger."""
    return list(check_ledger(period).mismatches)


def check_ledger(period: Period | None = None) -> LedgerCheck:
    """Reconcile calls started in ``period`` (default: every call) with their ledger entries.

    Entries whose call does not exist are reported too: all of them, or with a period those posted in it
    (their call's start is unknown). Calls archived by dropping a partition leave such entries behind on
    purpose (the ledger outlives the calls, see docs/database.md): check the months still attached.
    """
    has_entries = Exists(LedgerEntry.objects.filter(call_id=OuterRef("pk")))
    calls = Call.objects.filter(Q(verdict=Verdict.BILLABLE) | Q(has_entries))
    entries = LedgerEntry.objects.all()
    if period is not None:
        calls = calls.filter(started_at__gte=period.start, started_at__lt=period.end)
        entries = entries.filter(call__started_at__gte=period.start, call__started_at__lt=period.end)
    call_rows = calls.order_by("id").values_list(*_CALL_FIELDS).iterator(chunk_size=CHUNK)
    entry_rows = entries.order_by("call_id", "generation", "id").values_list(*_ENTRY_FIELDS).iterator(
        chunk_size=CHUNK)
    mismatches: list[Mismatch] = []
    counts = {"calls": 0, "billable": 0, "charged": 0, "paid": 0}
    for call, call_entries in _merge(call_rows, entry_rows):
        counts["calls"] += 1
        counts["billable"] += call[2] == Verdict.BILLABLE
        problems, open_kinds = _check_call(call, call_entries)
        counts["charged"] += EntryKind.CHARGE in open_kinds
        counts["paid"] += EntryKind.PAYOUT in open_kinds
        mismatches += [Mismatch(call[1], problem) for problem in problems]
    orphans = LedgerEntry.objects.filter(~Exists(Call.objects.filter(pk=OuterRef("call_id"))))
    if period is not None:
        orphans = orphans.filter(created_at__gte=period.start, created_at__lt=period.end)
    for call_sid, call_id in orphans.order_by("call_sid").values_list("call_sid", "call_id").distinct():
        mismatches.append(Mismatch(call_sid, f"ledger entries for call #{call_id}, which does not exist"))
    return LedgerCheck(period, counts["calls"], counts["billable"], counts["charged"], counts["paid"],
                       tuple(mismatches))


def _merge(call_rows: Iterator[tuple], entry_rows: Iterator[tuple]) -> Iterator[tuple[tuple, list[tuple]]]:
    """Each call with its entries (both streams sorted by call id). Entries without a call row in the
    stream are skipped here: their call does not exist, which the orphan query reports."""
    groups = groupby(entry_rows, key=lambda row: row[0])
    pending = next(groups, None)
    for call in call_rows:
        while pending is not None and pending[0] < call[0]:
            pending = next(groups, None)
        if pending is not None and pending[0] == call[0]:
            yield call, list(pending[1])
            pending = next(groups, None)
        else:
            yield call, []


def _check_call(call: tuple, entries: list[tuple]) -> tuple[list[str], set[str]]:
    """The problems of one call, and the posting kinds it has open."""
    _id, call_sid, verdict, revenue, payout, buyer_id, publisher_id, campaign_id = call
    billable = verdict == Verdict.BILLABLE
    problems = [f"ledger entry {kind} #{generation} is filed under CallSid {sid}"
                for _, sid, kind, generation, *_ in entries if sid != call_sid]
    open_kinds: set[str] = set()
    sides = ((EntryKind.CHARGE, "charged", "buyer", revenue, buyer_id, 5),
             (EntryKind.PAYOUT, "paid out", "publisher", payout, publisher_id, 6))
    for kind, verb, party, expected, party_id, party_at in sides:
        reversal_kind = REVERSAL_OF[kind]
        postings = {row[3]: row for row in entries if row[2] == kind}
        reversals = {row[3]: row for row in entries if row[2] == reversal_kind}
        for generation, reversal in sorted(reversals.items()):
            posting = postings.get(generation)
            if posting is None:
                problems.append(f"{reversal_kind} #{generation} reverses nothing")
            else:
                if reversal[4] != -posting[4]:
                    problems.append(f"{reversal_kind} #{generation} is {reversal[4]}, "
                                    f"the {kind} was {posting[4]}")
                problems += [f"{reversal_kind} #{generation} is filed to {what} {reversal[at]}, "
                             f"the {kind} to {what} {posting[at]}"
                             for what, at in ((party, party_at), ("campaign", 7), ("currency", 8))
                             if reversal[at] != posting[at]]
        still_open = [row for generation, row in sorted(postings.items()) if generation not in reversals]
        net = sum((row[4] for row in entries if row[2] in (kind, reversal_kind)), ZERO)
        if still_open:
            open_kinds.add(kind)
        if not billable:
            if still_open or net != ZERO:
                problems.append(f"{verdict.replace('_', ' ')} but {verb} {net} in the ledger")
            continue
        if party_id is None:
            problems.append(f"billable but the call has no {party}")
        if not still_open:
            problems.append(f"billable but not {verb} in the ledger")
            continue
        if len(still_open) > 1:
            problems.append(f"{verb} {len(still_open)} times (generations "
                            f"{', '.join(str(row[3]) for row in still_open)})")
        if net != Decimal(expected):
            problems.append(f"{verb} {net} in the ledger, the call says {expected}")
        latest = still_open[-1]
        if latest[party_at] != party_id:
            problems.append(f"{verb} to {party} #{latest[party_at]}, the call's {party} is #{party_id}")
        if latest[7] != campaign_id:
            problems.append(f"{verb} under campaign #{latest[7]}, the call's campaign is #{campaign_id}")
    return problems, open_kinds
