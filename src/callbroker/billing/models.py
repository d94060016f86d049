"""The money ledger: one append-only row per charge, payout or reversal of a call."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from callbroker.billing.choices import POSTINGS, REVERSALS, EntryKind
from callbroker.calls.models import Call
from callbroker.network.models import MONEY, Buyer, Campaign, Publisher

#: The currency of an entry whose campaign is gone or has none (the campaign's own default).
DEFAULT_CURRENCY = "USD"


class AppendOnly(RuntimeError):
    """Raised on any attempt to change or delete a ledger entry: post a reversal instead."""


class LedgerEntryQuerySet(models.QuerySet):
    """Ledger entries can be read, filtered and inserted; never updated or deleted in bulk."""

    def update(self, **kwargs):
        raise AppendOnly("ledger entries are never updated: post a reversal instead")

    def delete(self):
        raise AppendOnly("ledger entries are never deleted: post a reversal instead")


class LedgerEntry(models.Model):
    """One line of the money ledger: a buyer charged for a billable call, a publisher paid for it, or one
    of those taken back (a reversal) after the call's verdict or amount changed.

    Append-only: rows are inserted by ``billing.services.post_verdict`` in the transaction that writes the
    call's verdict, and never changed or deleted (refused here, and by a database trigger). A call's
    postings and reversals alternate per kind — charge #1, reversal #1, charge #2, … — numbered by
    ``generation``; the unique constraint on (CallSid, kind, generation) makes every step happen at most
    once, whoever posts it and however often (duplicated webhooks, spool replays). So a call is charged,
    and paid out, at most once at any time. Amounts are signed: postings are >= 0, reversals <= 0 (minus
    the amount they take back), so a sum of entries is a balance. See docs/billing.md.

    ``call`` has no database constraint: on PostgreSQL the call table is partitioned by month and its
    ``id`` alone is not a unique key there (see ``CallAttempt.call``). ``call_sid`` is kept on the row for
    the constraint and for people.
    """

    call = models.ForeignKey(Call, on_delete=models.PROTECT, related_name="ledger_entries",
                             db_constraint=False, verbose_name="call")
    call_sid = models.CharField("CallSid", max_length=64)
    kind = models.CharField("kind", max_length=16, choices=EntryKind.choices)
    generation = models.PositiveIntegerField(
        "posting generation",
        help_text="1 for a call's first charge (or payout) and its reversal, 2 for the one posted after that "
                  "reversal, and so on.",
    )
    # Indexed by ledger_buyer_posted_idx and ledger_publisher_posted_idx (Meta), which start with them.
    buyer = models.ForeignKey(Buyer, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="ledger_entries", verbose_name="buyer", db_index=False)
    publisher = models.ForeignKey(Publisher, null=True, blank=True, on_delete=models.PROTECT,
                                  related_name="ledger_entries", verbose_name="publisher", db_index=False)
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="ledger_entries", verbose_name="campaign")
    amount = models.DecimalField("amount", help_text="Charges and payouts are positive, reversals negative.",
                                 **MONEY)
    currency = models.CharField("currency", max_length=3, default=DEFAULT_CURRENCY)
    created_at = models.DateTimeField("posted", default=timezone.now)
    memo = models.CharField("reason", max_length=200)

    objects = LedgerEntryQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(fields=["call_sid", "kind", "generation"],
                                    name="ledger_once_per_generation"),
            models.CheckConstraint(condition=models.Q(generation__gte=1), name="ledger_generation_from_one"),
            models.CheckConstraint(
                condition=(models.Q(kind__in=POSTINGS, amount__gte=0)
                           | models.Q(kind__in=REVERSALS, amount__lte=0)),
                name="ledger_kind_and_sign",
            ),
        ]
        indexes = [
            models.Index(fields=["buyer", "created_at"], name="ledger_buyer_posted_idx"),
            models.Index(fields=["publisher", "created_at"], name="ledger_publisher_posted_idx"),
            models.Index(fields=["created_at"], name="ledger_posted_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.call_sid} {self.kind} #{self.generation} {self.amount}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AppendOnly("ledger entries are never updated: post a reversal instead")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnly("ledger entries are never deleted: post a reversal instead")
