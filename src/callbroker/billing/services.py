"""Posting to the ledger: bring a call's ledger entries in line with its verdict, once.

:func:`post_verdict` is called by the call flow right after it writes a verdict (``calls.services._qualify``),
in the same transaction, so the call and the ledger are committed together or not at all.

The rules (docs/billing.md):

* A **billable** call has exactly one open *charge* to its buyer (``Call.revenue``) and one open *payout*
  to its publisher (``Call.payout``), even when the amount is 0.00. A call that is not billable (or still
  pending) has none.
* Entries are never changed. When a verdict, an amount, the buyer, the publisher or the campaign changes
  after posting (qualification is re-run when a dial result arrives after the end of the call), the open
  entry is **reversed** (a new entry with minus its amount) and, if the call is still billable, a new one
  is posted. Both go in the campaign's currency, and together: when one is posted again after the
  campaign's currency changed, the other, open in the old currency, is reversed and posted again too.
* Postings and reversals of one kind alternate and are numbered: charge #1, charge reversal #1,
  charge #2, … The number (``generation``) follows from the entries already there, and the database
  refuses a second entry with the same (CallSid, kind, generation). Posting the same verdict again
  finds nothing to do; two transactions posting for one call at once would need the same number, and
  the second one fails instead of charging twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from callbroker import db
from callbroker.billing.choices import REVERSAL_OF, REVERSALS, EntryKind
from callbroker.billing.models import DEFAULT_CURRENCY, LedgerEntry
from callbroker.calls.choices import Verdict
from callbroker.calls.models import Call
from callbroker.core.money import CENT, ZERO
from callbroker.network.models import Campaign

log = logging.getLogger(__name__)

MEMO_LENGTH = LedgerEntry._meta.get_field("memo").max_length
AGAIN = "billable call, posted again after re-qualification"


@dataclass(frozen=True)
class _Open:
    """A posting of one kind not reversed yet."""

    generation: int
    amount: Decimal
    party_id: int | None
    campaign_id: int | None
    currency: str


@dataclass(frozen=True)
class _Account:
    """One side of a call's money: what the call says is owed, in the terms of one posting kind."""

    kind: EntryKind
    party: str  # "buyer" or "publisher"
    amount: Decimal
    party_id: int | None


def post_verdict(call: Call) -> list[LedgerEntry]:
    """Post whatever makes the ledger agree with ``call``'s verdict, revenue and payout; return the entries.

    Must run inside the transaction that wrote the verdict (raises ``TransactionManagementError``
    otherwise). Idempotent: when the ledger already agrees, it posts nothing. On PostgreSQL the verdict's
    own write holds the call row's lock until commit, so two transactions posting for the same call take
    turns, and the second reads what the first posted; the unique constraint stays the last word.
    """
    if not connection.in_atomic_block:
        raise TransactionManagementError("post_verdict must run in the transaction that writes the verdict")
    billable = call.verdict == Verdict.BILLABLE
    accounts = (
        _Account(EntryKind.CHARGE, "buyer", _money(call.revenue), call.buyer_id),
        _Account(EntryKind.PAYOUT, "publisher", _money(call.payout), call.publisher_id),
    )
    entries: dict[str, list[tuple]] = {}
    for row in _entries_of(call.call_sid):
        entries.setdefault(row[0], []).append(row)
    now = timezone.now()
    new: list[LedgerEntry] = []
    sides = []
    for account in accounts:
        postings = {row[1]: row for row in entries.get(account.kind, ())}
        reversed_ = {row[1] for row in entries.get(REVERSAL_OF[account.kind], ())}
        party_at = 3 if account.party == "buyer" else 4
        still_open = [_Open(g, row[2], row[party_at], row[5], row[6])
                      for g, row in sorted(postings.items()) if g not in reversed_]
        agrees = billable and len(still_open) == 1 and _agrees(still_open[0], account, call.campaign_id)
        sides.append((account, postings, still_open, agrees))
    currency = None
    if billable and not all(agrees for *_, agrees in sides):
        currency = _currency(call.campaign_id)
        # A call's charge and payout are in one currency (its pages show both in the currency of its
        # latest entry): when one is posted again in the campaign's currency, which changed since, the
        # other one, still open in the old currency, is reversed and posted again in the new one too.
        sides = [(account, postings, still_open, agrees and still_open[0].currency == currency)
                 for account, postings, still_open, agrees in sides]
    for account, postings, still_open, agrees in sides:
        if agrees:
            continue  # already posted as it should be
        for posting in still_open:
            new.append(_entry(call, REVERSAL_OF[account.kind], posting.generation, -posting.amount or ZERO,
                              account.party, posting.party_id, posting.campaign_id, posting.currency, now,
                              _reversal_memo(call, account, posting, currency)))
        if billable:
            generation = max(postings, default=0) + 1
            memo = "billable call" if generation == 1 else AGAIN
            new.append(_entry(call, account.kind, generation, account.amount, account.party, account.party_id,
                              call.campaign_id, currency, now, memo))
    if new:
        for entry in new:
            db.insert(entry)
        if any(entry.kind in REVERSALS for entry in new):
            log.info("call %s: verdict or amount changed after posting; ledger: %s", call.call_sid,
                     ", ".join(f"{e.kind} #{e.generation} {e.amount}" for e in new))
    return new


def _money(value: Decimal | int | str) -> Decimal:
    return Decimal(value).quantize(CENT)


def _agrees(posting: _Open, account: _Account, campaign_id: int | None) -> bool:
    return (posting.amount == account.amount and posting.party_id == account.party_id
            and posting.campaign_id == campaign_id)


_LEDGER = LedgerEntry._meta.db_table
_CAMPAIGNS = Campaign._meta.db_table


def _entries_of(call_sid: str) -> list[tuple]:
    """(kind, generation, amount, buyer_id, publisher_id, campaign_id, currency) of the call's entries."""
    # Hand-written, on the call path's statements (``callbroker/db.py``): runs at the end of every call
    # (served by the unique (call_sid, kind, generation) index).
    rows = db.fetchall(
        f"SELECT kind, generation, amount, buyer_id, publisher_id, campaign_id, currency FROM {_LEDGER} "
        "WHERE call_sid = %s",
        [call_sid],
    )
    return [(kind, generation, db.from_db(LedgerEntry, "amount", amount), *rest)
            for kind, generation, amount, *rest in rows]


def _currency(campaign_id: int | None) -> str:
    if campaign_id is None:
        return DEFAULT_CURRENCY
    row = db.fetchone(f"SELECT currency FROM {_CAMPAIGNS} WHERE id = %s", [campaign_id])
    return (row[0] if row else None) or DEFAULT_CURRENCY


def _reversal_memo(call: Call, account: _Account, posting: _Open, currency: str | None) -> str:
    if call.verdict != Verdict.BILLABLE:
        reasons = ", ".join(call.reason_codes or ())
        memo = f"call no longer billable ({reasons})" if reasons else f"call now {call.verdict}"
    elif posting.amount != account.amount:
        memo = f"amount changed to {account.amount} (was {posting.amount})"
    elif posting.party_id != account.party_id:
        memo = f"{account.party} changed to #{account.party_id} (was #{posting.party_id})"
    elif posting.campaign_id != call.campaign_id:
        memo = f"campaign changed to #{call.campaign_id} (was #{posting.campaign_id})"
    elif currency is not None and posting.currency != currency:
        memo = f"currency changed to {currency} (was {posting.currency})"
    else:
        memo = "posted more than once"  # never by this module; reverses a stray extra posting
    return memo[:MEMO_LENGTH]


def _entry(call: Call, kind: str, generation: int, amount: Decimal, party: str, party_id: int | None,
           campaign_id: int | None, currency: str, now, memo: str) -> LedgerEntry:
    return LedgerEntry(
        call_id=call.pk, call_sid=call.call_sid, kind=kind, generation=generation, amount=amount,
        buyer_id=party_id if party == "buyer" else None,
        publisher_id=party_id if party == "publisher" else None,
        campaign_id=campaign_id, currency=currency, created_at=now, memo=memo,
    )
