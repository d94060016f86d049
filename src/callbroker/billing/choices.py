"""Choices of the billing app: stable codes stored in the ledger, labels for people."""

from django.db import models


class EntryKind(models.TextChoices):
    """What a ledger entry does. A charge and a payout are *postings*; each can be undone by its reversal.

    The codes are stable (statements, JSON and the database constraints use them).
    """

    CHARGE = "charge", "Buyer charge"
    CHARGE_REVERSAL = "charge_reversal", "Buyer charge reversed"
    PAYOUT = "payout", "Publisher payout"
    PAYOUT_REVERSAL = "payout_reversal", "Publisher payout reversed"


#: The kinds that post money (non-negative amounts) and the kinds that take it back (non-positive).
POSTINGS = (EntryKind.CHARGE, EntryKind.PAYOUT)
REVERSALS = (EntryKind.CHARGE_REVERSAL, EntryKind.PAYOUT_REVERSAL)
#: Each posting kind and the kind of its reversal.
REVERSAL_OF = {EntryKind.CHARGE: EntryKind.CHARGE_REVERSAL, EntryKind.PAYOUT: EntryKind.PAYOUT_REVERSAL}
