"""Balances and statements: what a buyer was charged, and a publisher paid, over a period.

Both are sums of ledger entries **posted** in the period (``LedgerEntry.created_at``), months counted in
UTC. A closed month's statement therefore never changes: a correction posted later (a reversal after a
late callback) shows up in the month it was posted, with the call it belongs to. Totals are per currency
(a buyer may buy in campaigns of several currencies) and are summed as ``Decimal`` in Python, so they
are exact on SQLite too.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import QuerySet
from django.utils import timezone

from callbroker.billing.choices import EntryKind
from callbroker.billing.models import LedgerEntry
from callbroker.calls.models import Call
from callbroker.calls.presenters import iso_utc, money_str
from callbroker.core.money import ZERO
from callbroker.network.models import Buyer, Publisher

CHARGES = (EntryKind.CHARGE, EntryKind.CHARGE_REVERSAL)
PAYOUTS = (EntryKind.PAYOUT, EntryKind.PAYOUT_REVERSAL)
_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")


@dataclass(frozen=True)
class Period:
    """A half-open span of time ``[start, end)`` in UTC, usually one calendar month."""

    start: dt.datetime
    end: dt.datetime
    label: str

    @classmethod
    def month(cls, text: str) -> Period:
        """``"2026-11"`` -> 2026-11-01 00:00 UTC to 2026-12-01 00:00 UTC. ``ValueError`` on anything else."""
        match = _MONTH.match(text.strip())
        problem = ValueError(f"{text!r} is not a month: use YYYY-MM, e.g. 2026-11")
        if not match:
            raise problem
        year, month = int(match.group(1)), int(match.group(2))
        try:
            start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
            end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)
        except ValueError:  # month 13, year 0, December 9999
            raise problem from None
        return cls(start, end, f"{year:04d}-{month:02d}")

    @classmethod
    def month_of(cls, moment: dt.datetime | None = None) -> Period:
        """The UTC month holding ``moment`` (default: now)."""
        moment = (moment or timezone.now()).astimezone(dt.UTC)
        return cls.month(f"{moment.year:04d}-{moment.month:02d}")

    def to_dict(self) -> dict:
        return {"label": self.label, "from": iso_utc(self.start), "to": iso_utc(self.end)}


@dataclass(frozen=True)
class StatementEntry:
    """One ledger entry on a statement line."""

    kind: str
    generation: int
    amount: Decimal
    posted_at: dt.datetime
    memo: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "kind_label": EntryKind(self.kind).label, "generation": self.generation,
                "amount": money_str(self.amount), "posted_at": iso_utc(self.posted_at), "memo": self.memo}


@dataclass(frozen=True)
class StatementLine:
    """One call on a statement: its entries posted in the period and their sum."""

    call_sid: str
    call_started_at: dt.datetime | None
    campaign: str
    currency: str
    amount: Decimal
    entries: tuple[StatementEntry, ...]

    def to_dict(self) -> dict:
        return {"call_sid": self.call_sid, "call_started_at": iso_utc(self.call_started_at),
                "campaign": self.campaign, "currency": self.currency, "amount": money_str(self.amount),
                "entries": [entry.to_dict() for entry in self.entries]}


@dataclass(frozen=True)
class Statement:
    """A buyer's charges or a publisher's payouts over a period: one line per call (per call and currency
    for a call whose entries are in two: its campaign's currency changed), totals per currency."""

    party: str  # "buyer" or "publisher"
    key: str
    name: str
    period: Period
    lines: tuple[StatementLine, ...]
    totals: dict[str, Decimal]

    @property
    def calls(self) -> int:
        """How many calls the lines are of: a call with lines in two currencies counts once."""
        return len({line.call_sid for line in self.lines})

    def to_dict(self) -> dict:
        return {"party": self.party, "key": self.key, "name": self.name, "period": self.period.to_dict(),
                "lines": [line.to_dict() for line in self.lines],
                "totals": {currency: money_str(total) for currency, total in self.totals.items()},
                "calls": self.calls}


def buyer_charges(buyer: Buyer | int, period: Period) -> dict[str, Decimal]:
    """Net charges to ``buyer`` posted in ``period`` (charges minus reversals), per currency."""
    return _totals(_in_period(LedgerEntry.objects.filter(buyer=buyer, kind__in=CHARGES), period))


def publisher_payouts(publisher: Publisher | int, period: Period) -> dict[str, Decimal]:
    """Net payouts to ``publisher`` posted in ``period`` (payouts minus reversals), per currency."""
    return _totals(_in_period(LedgerEntry.objects.filter(publisher=publisher, kind__in=PAYOUTS), period))


def buyer_statement(buyer: Buyer, period: Period) -> Statement:
    """The buyer's statement: every call with a charge or reversal posted in the period."""
    entries = _in_period(LedgerEntry.objects.filter(buyer=buyer, kind__in=CHARGES), period)
    return _statement("buyer", buyer.key, buyer.name, period, entries)


def publisher_statement(publisher: Publisher, period: Period) -> Statement:
    """The publisher's statement: every call with a payout or reversal posted in the period."""
    entries = _in_period(LedgerEntry.objects.filter(publisher=publisher, kind__in=PAYOUTS), period)
    return _statement("publisher", publisher.key, publisher.name, period, entries)


def _in_period(entries: QuerySet[LedgerEntry], period: Period) -> QuerySet[LedgerEntry]:
    return entries.filter(created_at__gte=period.start, created_at__lt=period.end)


def _totals(entries: QuerySet[LedgerEntry]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for currency, amount in entries.values_list("currency", "amount").iterator():
        totals[currency] = totals.get(currency, ZERO) + amount
    return dict(sorted(totals.items()))


def _statement(party: str, key: str, name: str, period: Period, entries: QuerySet[LedgerEntry]) -> Statement:
    # The call's start time is looked up apart: a join would drop the entries of calls archived since
    # (docs/database.md, retention), and the ledger outlives the calls.
    rows = entries.order_by("created_at", "id").values_list(
        "call_sid", "campaign__name", "currency", "kind", "generation", "amount", "created_at", "memo")
    grouped: dict[tuple[str, str], list[tuple]] = {}
    for row in rows.iterator():
        grouped.setdefault((row[0], row[2]), []).append(row)  # in order of first posting
    started = _start_times({call_sid for call_sid, _ in grouped})
    lines = tuple(_line(group, started.get(call_sid)) for (call_sid, _), group in grouped.items())
    totals: dict[str, Decimal] = {}
    for line in lines:
        totals[line.currency] = totals.get(line.currency, ZERO) + line.amount
    return Statement(party, key, name, period, lines, dict(sorted(totals.items())))


def _start_times(call_sids: set[str], chunk: int = 500) -> dict[str, dt.datetime]:
    """When each of these calls started, for those still stored."""
    found: dict[str, dt.datetime] = {}
    ordered = sorted(call_sids)
    for i in range(0, len(ordered), chunk):
        calls = Call.objects.filter(call_sid__in=ordered[i:i + chunk])
        found.update(calls.values_list("call_sid", "started_at"))
    return found


def _line(rows: Iterable[tuple], started_at: dt.datetime | None) -> StatementLine:
    rows = list(rows)
    call_sid, campaign, currency = rows[0][:3]
    entries = tuple(StatementEntry(kind, generation, amount, posted_at, memo)
                    for *_, kind, generation, amount, posted_at, memo in rows)
    total = sum((entry.amount for entry in entries), ZERO)
    return StatementLine(call_sid, started_at, campaign or "—", currency, total, entries)
