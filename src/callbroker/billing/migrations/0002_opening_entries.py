"""Opening entries: calls already billable before the ledger existed get their charge and payout (#1).

Each is posted at the time the call was qualified (else when it started), so statements of past months
show what the calls said then. Nothing to do on a new installation. Reversing this migration leaves the
entries (the ledger is append-only); reversing 0001 drops the table.
"""

from django.db import migrations

BATCH = 2000
MEMO = "opening entry: billable before the ledger existed"


def post_opening_entries(apps, schema_editor) -> None:
    Call = apps.get_model("calls", "Call")
    LedgerEntry = apps.get_model("billing", "LedgerEntry")
    rows = (Call.objects.using(schema_editor.connection.alias).filter(verdict="billable").order_by("id")
            .values_list("id", "call_sid", "revenue", "payout", "buyer_id", "publisher_id", "campaign_id",
                         "campaign__currency", "qualified_at", "started_at")
            .iterator(chunk_size=BATCH))
    batch = []
    for call_id, sid, revenue, payout, buyer_id, publisher_id, campaign_id, currency, qualified, started \
            in rows:
        common = {"call_id": call_id, "call_sid": sid, "generation": 1, "campaign_id": campaign_id,
                  "currency": currency or "USD", "created_at": qualified or started, "memo": MEMO}
        batch.append(LedgerEntry(kind="charge", amount=revenue, buyer_id=buyer_id, **common))
        batch.append(LedgerEntry(kind="payout", amount=payout, publisher_id=publisher_id, **common))
        if len(batch) >= BATCH:
            LedgerEntry.objects.using(schema_editor.connection.alias).bulk_create(batch)
            batch = []
    if batch:
        LedgerEntry.objects.using(schema_editor.connection.alias).bulk_create(batch)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunPython(post_opening_entries, migrations.RunPython.noop)]
