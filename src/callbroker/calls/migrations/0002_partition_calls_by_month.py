"""Partition the call table by month of ``started_at`` on PostgreSQL; nothing changes on SQLite.

PostgreSQL requires the partition key in the primary key and in every unique constraint, and a foreign
key can only reference a unique key. So, on PostgreSQL only:

- the primary key becomes ``(id, started_at)`` and the unique key ``(call_sid, started_at)``; Django keeps
  ``id`` as its primary key (ids still come from one sequence, so they stay unique);
- a CallSid stays unique across partitions through ``calls_call_sid_registry`` (one row per CallSid ever
  written, filled by a trigger on insert: a second call with the same CallSid fails with a unique
  violation, as it does on SQLite). The call flow's own guarantee (``CallEvent.dedupe_key``
  "{CallSid}:voice" written with the call) stays the first line; this one covers any other code path;
- ``CallAttempt.call`` loses its database constraint (on every backend: it is a model option).
  Django emulates ``on_delete=CASCADE`` in Python anyway.

The table is rebuilt: renamed, recreated partitioned (same columns, defaults, checks, identity
sequence continuing where it was), rows copied into their month's partition, old table dropped, then
indexes and foreign keys recreated under their old names. It takes an exclusive lock on the call table
for the copy: on a big existing table, plan a maintenance window. The reverse operation rebuilds the
plain table. This file is self-contained on purpose (a migration is history); the partitions of later
months are created by ``callbroker.calls.partitions.ensure`` (after every ``migrate`` and from cron).
"""

from __future__ import annotations

import datetime as dt

import django.db.models.deletion
from django.db import migrations, models

PK = "calls_call_pkey"
UNIQUE_SID = "calls_call_call_sid_key"  # Django's name for call_sid's unique constraint (0001)
UNIQUE_SID_PARTITIONED = "call_unique_sid_started"
MONTHS_AHEAD = 3
REGISTRY = "calls_call_sid_registry"

# A CallSid is registered when its call is written; the registry is insert-only (deleting or archiving
# calls leaves their CallSid taken: a carrier never reuses one), and emptied with the table (TRUNCATE,
# e.g. ``callbroker flush``). Inserting the row again with the same id (a row moving between
# partitions) is not a duplicate.
REGISTRY_SQL = [
    f"CREATE TABLE {REGISTRY} (call_sid varchar(64) PRIMARY KEY, call_id bigint NOT NULL)",
    f"""CREATE FUNCTION {REGISTRY}_register() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {REGISTRY} (call_sid, call_id) VALUES (NEW.call_sid, NEW.id)
        ON CONFLICT (call_sid) DO NOTHING;
    IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM {REGISTRY} WHERE call_sid = NEW.call_sid AND call_id = NEW.id)
    THEN
        RAISE unique_violation USING MESSAGE = format('a call with CallSid %s already exists', NEW.call_sid),
            CONSTRAINT = '{REGISTRY}_pkey', TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NEW;
END $$""",
    f"""CREATE FUNCTION {REGISTRY}_empty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE {REGISTRY};
    RETURN NULL;
END $$""",
]


def _month(year: int, month: int) -> dt.datetime:
    return dt.datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1, tzinfo=dt.UTC)


def _partition_sql(table: str, q, start: dt.datetime) -> str:
    end = _month(start.year, start.month + 1)
    name = f"{table}_y{start.year:04d}m{start.month:02d}"
    return (f"CREATE TABLE {q(name)} PARTITION OF {q(table)} "
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')")


def _definition(cursor, table: str) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """Column names, foreign keys (name, definition) and plain indexes (CREATE INDEX …) of ``table``."""
    cursor.execute("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
                   "AND NOT attisdropped ORDER BY attnum", [table])
    columns = [row[0] for row in cursor.fetchall()]
    cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                   "WHERE conrelid = to_regclass(%s) AND contype = 'f' ORDER BY conname", [table])
    foreign_keys = cursor.fetchall()
    # Indexes that back no constraint (the primary and unique keys are recreated with new columns).
    cursor.execute("SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = to_regclass(%s) "
                   "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) "
                   "ORDER BY i.indexrelid::regclass::text", [table])
    # A partitioned table's indexes read "ON ONLY table": recreated on the new table, they must cover it all.
    indexes = [row[0].replace(" ON ONLY ", " ON ", 1) for row in cursor.fetchall()]
    return columns, foreign_keys, indexes


def _rebuild(schema_editor, table: str, *, partitioned: bool) -> None:
    """Recreate ``table`` partitioned by month (or plain again), keeping rows, ids, indexes and FKs."""
    q = schema_editor.quote_name
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT conrelid::regclass::text FROM pg_constraint "
                       "WHERE confrelid = to_regclass(%s) AND contype = 'f'", [table])
        referencing = [row[0] for row in cursor.fetchall()]
        if referencing:
            raise RuntimeError(f"{table} is referenced by foreign keys from {referencing}; a partitioned "
                               "table can't be referenced by id alone (use db_constraint=False)")
        columns, foreign_keys, indexes = _definition(cursor, table)
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        sequence = cursor.fetchone()[0]
        cursor.execute(f"SELECT GREATEST(nextval(%s), (SELECT COALESCE(max(id), 0) + 1 FROM {q(table)}))",
                       [sequence])
        next_id = cursor.fetchone()[0]
        old = f"{table}_old"
        if not partitioned:  # the registry goes with the partitioned table (its triggers go with DROP TABLE)
            cursor.execute(f"DROP TABLE IF EXISTS {REGISTRY}")
            cursor.execute(f"DROP FUNCTION IF EXISTS {REGISTRY}_register(), {REGISTRY}_empty() CASCADE")
        cursor.execute(f"ALTER TABLE {q(table)} RENAME TO {q(old)}")
        cursor.execute(f"ALTER TABLE {q(old)} ALTER COLUMN id DROP IDENTITY")  # frees the sequence's name
        cursor.execute(f"CREATE TABLE {q(table)} (LIKE {q(old)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                       "INCLUDING STORAGE INCLUDING COMMENTS)"
                       + (" PARTITION BY RANGE (started_at)" if partitioned else ""))
        cursor.execute(f"ALTER TABLE {q(table)} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY "
                       f"(SEQUENCE NAME {q(table + '_id_seq')} START WITH {int(next_id)})")
        if partitioned:
            cursor.execute(f"CREATE TABLE {q(table + '_default')} PARTITION OF {q(table)} DEFAULT")
            cursor.execute(f"SELECT DISTINCT date_trunc('month', started_at AT TIME ZONE 'UTC') "
                           f"FROM {q(old)}")
            months = {_month(row[0].year, row[0].month) for row in cursor.fetchall()}
            today = dt.datetime.now(dt.UTC)
            months |= {_month(today.year, today.month + n) for n in range(MONTHS_AHEAD + 1)}
            for start in sorted(months):
                cursor.execute(_partition_sql(table, q, start))
        names = ", ".join(q(c) for c in columns)
        cursor.execute(f"INSERT INTO {q(table)} ({names}) SELECT {names} FROM {q(old)}")
        cursor.execute(f"DROP TABLE {q(old)}")  # frees the names of its indexes and constraints
        if partitioned:
            cursor.execute(f"ALTER TABLE {q(table)} ADD CONSTRAINT {q(PK)} PRIMARY KEY (id, started_at)")
            cursor.execute(f"ALTER TABLE {q(table)} ADD CONSTRAINT {q(UNIQUE_SID_PARTITIONED)} "
                           "UNIQUE (call_sid, started_at)")
        else:
            cursor.execute(f"ALTER TABLE {q(table)} ADD CONSTRAINT {q(PK)} PRIMARY KEY (id)")
            cursor.execute(f"ALTER TABLE {q(table)} ADD CONSTRAINT {q(UNIQUE_SID)} UNIQUE (call_sid)")
        for create_index in indexes:
            cursor.execute(create_index)
        for name, definition in foreign_keys:
            cursor.execute(f"ALTER TABLE {q(table)} ADD CONSTRAINT {q(name)} {definition}")
        if partitioned:
            for statement in REGISTRY_SQL:
                cursor.execute(statement)
            cursor.execute(f"INSERT INTO {REGISTRY} (call_sid, call_id) SELECT call_sid, id FROM {q(table)}")
            cursor.execute(f"CREATE TRIGGER call_sid_register BEFORE INSERT ON {q(table)} "
                           f"FOR EACH ROW EXECUTE FUNCTION {REGISTRY}_register()")
            # Django's save() writes every column: only a CallSid that really changes is registered.
            cursor.execute(f"CREATE TRIGGER call_sid_reregister BEFORE UPDATE OF call_sid ON {q(table)} "
                           "FOR EACH ROW WHEN (OLD.call_sid IS DISTINCT FROM NEW.call_sid) "
                           f"EXECUTE FUNCTION {REGISTRY}_register()")
            cursor.execute(f"CREATE TRIGGER call_sid_empty AFTER TRUNCATE ON {q(table)} "
                           f"FOR EACH STATEMENT EXECUTE FUNCTION {REGISTRY}_empty()")


def partition(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite: the call table stays a plain table
    _rebuild(schema_editor, apps.get_model("calls", "Call")._meta.db_table, partitioned=True)


def unpartition(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    _rebuild(schema_editor, apps.get_model("calls", "Call")._meta.db_table, partitioned=False)


class Migration(migrations.Migration):

    dependencies = [
        ("calls", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="callattempt",
            name="call",
            field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.CASCADE,
                                    related_name="attempts", to="calls.call"),
        ),
        migrations.RunPython(partition, unpartition, elidable=False),
    ]
