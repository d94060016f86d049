"""Small database helpers for the call path, where the ORM's per-query overhead is most of the cost.

``insert`` writes a model instance with one prepared ``INSERT … RETURNING`` built once per model from
its fields (SQLite >= 3.35 and PostgreSQL both support RETURNING). Values go through each field's own
``get_db_prep_save``, so conversions (JSON, datetimes, decimals) are exactly the ORM's.
"""

from __future__ import annotations

from functools import cache

from django.db import connection, models


@cache
def _insert_sql(model: type[models.Model], vendor: str) -> tuple[str, tuple[models.Field, ...]]:
    meta = model._meta
    fields = tuple(f for f in meta.concrete_fields if not isinstance(f, models.fields.AutoFieldMixin))
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    pk = connection.ops.quote_name(meta.pk.column)
    return f"INSERT INTO {meta.db_table} ({columns}) VALUES ({marks}) RETURNING {pk}", fields


def insert(obj: models.Model) -> models.Model:
    """Insert ``obj`` (a new row) and set its primary key. Fires no signals; call in a transaction."""
    sql, fields = _insert_sql(type(obj), connection.vendor)
    values = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        obj.pk = cursor.fetchone()[0]
    obj._state.adding = False
    obj._state.db = connection.alias
    return obj
