"""Put on the list of ``calls/0011`` (``KeptStatus``) the final statuses kept before it existed.

A final status that came for a call not recorded yet was kept in the event log only (``services.call_status``,
for the call's inbound webhook to find) until ``calls/0011``; from then on the status webhook also puts it
on the list, and the sweep (``replay.record_kept_statuses``) keeps it as a call of its own an hour on when that
inbound webhook never came. The statuses kept before the upgrade were on no list, so they never became calls:
the call log lacked calls that happened. This migration puts each on the list, as the status webhook would
have: every final status event (kind ``status``, ``CallStatus`` one of ``events.TERMINAL_STATUSES``, as
``call_status`` and ``services.kept_final_status`` read it), the first one of its CallSid, with the call as
the status describes it (read by ``carriers.twilio.inbound_call``, as ``carriers.views._described`` reads
it: one naming no ``To`` is left out, as the webhook leaves it out) and when it came. Only a CallSid with no
call, none on the list yet, and no event but status callbacks (as the spool replay's ``_final_status_alone``:
a call recorded once, its row archived since, has its ``voice``, ``fallback`` or ``status_only`` event).
The sweep does the rest, as for any status on the list (a status whose call is recorded meanwhile only
leaves the list).

Reads the event log once, in batches of ``BATCH`` ids by its primary key (each batch one query, the call
table probed by CallSid for its final statuses only, the other events by their ``(CallSid, key)`` index),
and writes only the rows found: the list's own table, nothing else. An empty event log costs one query;
one with nothing to put on the list writes nothing. SQLite and PostgreSQL alike (the partitioned call table
is only read, by CallSid, as every callback reads it). Reversible as a no-op: going back leaves the rows on
the list (``calls/0011`` reversed drops the table with them). It also names the list in the plural for the
admin (``KeptStatus``'s ``verbose_name_plural``: Django's state only).
"""


from django.db import migrations
from django.db.models import Exists, Max, Min, OuterRef

#: Event ids read per query.
BATCH = 10_000


def put_on_the_list(apps, schema_editor):
    # The status webhook's own reading, not a copy: a row must be what the webhook puts on the list
    # (``InboundCall``'s fields), which the sweep reads back with the code that runs it.
    from callbroker.calls.events import TERMINAL_STATUSES, inbound_fields
    from callbroker.carriers.twilio import MalformedWebhook, inbound_call

    db = schema_editor.connection.alias
    Call = apps.get_model("calls", "Call")
    CallEvent = apps.get_model("calls", "CallEvent")
    KeptStatus = apps.get_model("calls", "KeptStatus")
    events = CallEvent.objects.using(db)
    bounds = events.aggregate(first=Min("id"), last=Max("id"))
    if bounds["first"] is None:
        return
    finals = (events.filter(kind="status", params__CallStatus__in=sorted(TERMINAL_STATUSES))
              .exclude(Exists(Call.objects.using(db).filter(call_sid=OuterRef("call_sid"))))
              .exclude(Exists(KeptStatus.objects.using(db).filter(call_sid=OuterRef("call_sid"))))
              .exclude(Exists(events.filter(call_sid=OuterRef("call_sid")).exclude(kind="status")))
              .order_by("id"))
    for start in range(bounds["first"], bounds["last"] + 1, BATCH):
        found: dict[str, object] = {}
        batch = finals.filter(id__gte=start, id__lt=start + BATCH)
        for call_sid, params, received_at in batch.values_list("call_sid", "params", "received_at"):
            if call_sid in found or not isinstance(params, dict):
                continue  # its first final status only
            try:
                inbound = inbound_call({key: str(value) for key, value in params.items()})
            except MalformedWebhook:  # no To (or no CallSid as a carrier writes it): nothing to record
                continue
            found[call_sid] = KeptStatus(call_sid=call_sid, inbound=inbound_fields(inbound),
                                         received_at=received_at)
        if found:
            KeptStatus.objects.using(db).bulk_create(found.values(), ignore_conflicts=True)


class Migration(migrations.Migration):

    dependencies = [
        ('calls', '0012_received_at_kept_when_given'),
    ]

    operations = [
        # Django's state only (the admin's name for the list): nothing in the database.
        migrations.AlterModelOptions(
            name='keptstatus',
            options={'verbose_name': 'final status kept for its call',
                     'verbose_name_plural': 'final statuses kept for their calls'},
        ),
        migrations.RunPython(put_on_the_list, migrations.RunPython.noop, elidable=True),
    ]
