"""The money ledger (``billing_ledgerentry``), append-only down to the database.

Besides the table, a trigger refuses to change a ledger entry on every backend, and on PostgreSQL also to
delete one (``TRUNCATE``, used by ``callbroker flush``, still works; on SQLite ``flush`` deletes rows, so
DELETE stays allowed there and is refused by the model). Both raise an integrity error. A later migration
that rebuilds the table on SQLite (most field changes do) drops its triggers: it must create them again.

``call`` has no database constraint: on PostgreSQL the call table is partitioned and its ``id`` alone is
not a unique key (see calls migration 0002, which refuses to partition a table that is referenced).
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

TABLE = "billing_ledgerentry"
MESSAGE = "ledger entries are append-only: post a reversal instead"

SQLITE_FORWARD = [
    f"CREATE TRIGGER {TABLE}_no_update BEFORE UPDATE ON {TABLE} BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
]
SQLITE_BACKWARD = [f"DROP TRIGGER IF EXISTS {TABLE}_no_update"]
POSTGRES_FORWARD = [
    f"""CREATE FUNCTION {TABLE}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'integrity_constraint_violation';
END $$""",
    (f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
     f"FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()"),
]
POSTGRES_BACKWARD = [f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}",
                     f"DROP FUNCTION IF EXISTS {TABLE}_append_only()"]


def _run(schema_editor, statements: dict[str, list[str]]) -> None:
    for sql in statements.get(schema_editor.connection.vendor, ()):
        schema_editor.execute(sql)


def refuse_changes(apps, schema_editor) -> None:
    _run(schema_editor, {"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD})


def allow_changes(apps, schema_editor) -> None:
    _run(schema_editor, {"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD})


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('calls', '0002_partition_calls_by_month'),
        ('network', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='LedgerEntry',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('call_sid', models.CharField(max_length=64, verbose_name='CallSid')),
                ('kind', models.CharField(choices=[('charge', 'Buyer charge'), ('charge_reversal', 'Buyer charge reversed'), ('payout', 'Publisher payout'), ('payout_reversal', 'Publisher payout reversed')], max_length=16, verbose_name='kind')),
                ('generation', models.PositiveIntegerField(help_text="1 for a call's first charge (or payout) and its reversal, 2 for the one posted after that reversal, and so on.", verbose_name='posting generation')),
                ('amount', models.DecimalField(decimal_places=2, help_text='Charges and payouts are positive, reversals negative.', max_digits=12, verbose_name='amount')),
                ('currency', models.CharField(default='USD', max_length=3, verbose_name='currency')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='posted')),
                ('memo', models.CharField(max_length=200, verbose_name='reason')),
                ('buyer', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='ledger_entries', to='network.buyer', verbose_name='buyer')),
                ('call', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.PROTECT, related_name='ledger_entries', to='calls.call', verbose_name='call')),
                ('campaign', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='ledger_entries', to='network.campaign', verbose_name='campaign')),
                ('publisher', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='ledger_entries', to='network.publisher', verbose_name='publisher')),
            ],
            options={
                'verbose_name': 'ledger entry',
                'verbose_name_plural': 'ledger entries',
                'ordering': ['created_at', 'id'],
                'indexes': [models.Index(fields=['buyer', 'created_at'], name='ledger_buyer_posted_idx'), models.Index(fields=['publisher', 'created_at'], name='ledger_publisher_posted_idx'), models.Index(fields=['created_at'], name='ledger_posted_idx')],
                'constraints': [models.UniqueConstraint(fields=('call_sid', 'kind', 'generation'), name='ledger_once_per_generation'), models.CheckConstraint(condition=models.Q(('generation__gte', 1)), name='ledger_generation_from_one'), models.CheckConstraint(condition=models.Q(models.Q(('amount__gte', 0), ('kind__in', ('charge', 'payout'))), models.Q(('amount__lte', 0), ('kind__in', ('charge_reversal', 'payout_reversal'))), _connector='OR'), name='ledger_kind_and_sign')],
            },
        ),
        migrations.RunPython(refuse_changes, allow_changes),
    ]
