"""PostgreSQL: drop the ``varchar_pattern_ops`` copies (``…_like``) of the call path's text indexes.

Django gives every indexed or unique ``CharField`` on PostgreSQL a second index, ``… varchar_pattern_ops``,
that serves only ``LIKE 'prefix%'`` (a case-sensitive ``startswith``). Nothing here looks these columns up
by prefix: a CallSid and a dedupe key are looked up whole, the admin's searches are case-insensitive
(``UPPER(…) LIKE``, which no such index serves), and verdicts are compared whole. Yet each copy is one more
B-tree written: two per call (``call_sid``, ``verdict``) and two per webhook (the event log's ``call_sid``
and ``dedupe_key``). The plain and unique indexes stay.

SQLite has no such copies: nothing to do there. Dropped by name (``DROP INDEX IF EXISTS``); on the
partitioned call table that drops them on every monthly partition at once. Reversible: going back creates
them again. Django's migration state is unchanged (the fields keep ``unique`` / ``db_index``); a later
migration that alters one of these fields would make Django create its copy again, which
``tests/postgres/test_schema.py`` would then report.
"""

from django.db import migrations

from callbroker.migration_ops import DropIndexes

#: index name -> (table, column), as Django named them in 0001_initial
DROPPED = {
    "calls_call_call_sid_4598acea_like": ("calls_call", "call_sid"),
    "calls_call_verdict_6b3fe457_like": ("calls_call", "verdict"),
    "calls_callevent_call_sid_1b80051b_like": ("calls_callevent", "call_sid"),
    "calls_callevent_dedupe_key_d69c65c3_like": ("calls_callevent", "dedupe_key"),
}


class Migration(migrations.Migration):

    dependencies = [
        ("calls", "0004_drop_indexes_served_by_composite_ones"),
    ]

    operations = [
        DropIndexes(DROPPED, opclass="varchar_pattern_ops", vendor="postgresql"),
    ]
