"""Small database helpers for the call path, where the ORM's per-query overhead is most of the cost.

Every carrier webhook reads a call, maybe an attempt, and writes them back. Building those statements
with the ORM (filters, compiler, ordering) costs several times what SQLite takes to run them, so the
call path uses statements built once per model and query shape, here:

- ``insert`` writes a new row with one prepared ``INSERT … RETURNING`` (SQLite >= 3.35 and PostgreSQL
  both support RETURNING);
- ``select`` / ``select_one`` read whole rows by equality on a few columns and build model instances
  with ``Model.from_db`` (as the ORM does, so ``_state`` and deferred-field tracking are the ORM's);
- ``update`` writes some or all columns of an existing row by its primary key.

``write_lock`` queues the call path's write transactions on SQLite (see there).

Values go through each field's own ``get_db_prep_save`` and results through the same converters the
ORM's compiler applies (backend converters, then the field's ``from_db_value``), so conversions of
JSON, datetimes, decimals and booleans are exactly the ORM's. No signals are sent: nothing listens to
the call-path models (``network/signals.py`` listens to the network's models only).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from functools import cache
from typing import TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections, models

M = TypeVar("M", bound=models.Model)


def _connection():
    """The default connection itself: ``django.db.connection`` is a proxy that looks it up on every use."""
    return connections[DEFAULT_DB_ALIAS]


_NONE = type(None)


@cache
def _plain(field: models.Field, vendor: str) -> frozenset[type]:
    """The value types ``field.get_db_prep_save`` returns unchanged (empty: always call it).

    ``to_python`` of a ``str`` for a text field, a ``bool`` for a boolean field or an ``int`` for an
    integer field is the value itself, so the three layers of method calls per column can be skipped.
    Integers only on SQLite: Django's PostgreSQL backend wraps them in psycopg's sized integer types.
    """
    if isinstance(field, models.ForeignKey):
        return _plain(field.target_field, vendor)
    if type(field).get_db_prep_save is not models.Field.get_db_prep_save:
        return frozenset()
    if isinstance(field, (models.CharField, models.TextField)):
        return frozenset({str, _NONE})
    if isinstance(field, models.BooleanField):
        return frozenset({bool, _NONE})
    if isinstance(field, models.IntegerField) and vendor == "sqlite":  # auto fields are integer fields too
        return frozenset({int, _NONE})
    return frozenset()


def _prepared(fields: Sequence[models.Field], obj: models.Model, adding: bool, conn) -> list:
    """Each field's value of ``obj`` for the database, exactly as ``Field.get_db_prep_save`` gives it."""
    vendor = conn.vendor
    out = []
    for f in fields:
        value = f.pre_save(obj, adding)
        out.append(value if type(value) in _plain(f, vendor) else f.get_db_prep_save(value, conn))
    return out


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
    conn = _connection()
    sql, fields = _insert_sql(type(obj), conn.vendor)
    values = _prepared(fields, obj, True, conn)
    with conn.cursor() as cursor:
        cursor.execute(sql, values)
        obj.pk = cursor.fetchone()[0]
    obj._state.adding = False
    obj._state.db = conn.alias
    _remember(obj)
    return obj


@cache
def _select_sql(model: type[models.Model], vendor: str, where: tuple[str, ...], order_by: str,
                limit: int | None) -> tuple[str, tuple[models.Field, ...], tuple[str, ...], tuple]:
    """SELECT every concrete column WHERE each of ``where`` equals a parameter, plus the converters."""
    meta = model._meta
    q = connection.ops.quote_name
    fields = tuple(meta.concrete_fields)
    columns = ", ".join(q(f.column) for f in fields)
    conditions = " AND ".join(f"{q(meta.get_field(name).column)} = %s" for name in where)
    sql = f"SELECT {columns} FROM {meta.db_table} WHERE {conditions}"
    if order_by:
        descending = order_by.startswith("-")
        sql += f" ORDER BY {q(meta.get_field(order_by.lstrip('-')).column)}{' DESC' if descending else ''}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    converters = []  # (position, converters, expression) for the columns that have any, as the compiler does
    for i, field in enumerate(fields):
        col, found = _converters(field)
        if found:
            converters.append((i, found, col))
    return sql, fields, tuple(f.attname for f in fields), tuple(converters)


def _converters(field: models.Field):
    """The column expression and the converters the ORM's compiler applies to it (backend's, then field's)."""
    col = field.get_col(field.model._meta.db_table)
    return col, tuple(connection.ops.get_db_converters(col) + col.get_db_converters(connection))


def select(model: type[M], *, order_by: str = "", limit: int | None = None, **where) -> list[M]:
    """Rows of ``model`` whose columns equal ``where`` (field names, e.g. ``call_id``), as instances."""
    names = tuple(where)
    conn = _connection()
    sql, _fields, attnames, converters = _select_sql(model, conn.vendor, names, order_by, limit)
    params = [model._meta.get_field(name).get_db_prep_value(where[name], conn) for name in names]
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    alias = conn.alias
    out = []
    for row in rows:
        values = list(row)
        for i, field_converters, expression in converters:
            value = values[i]
            for convert in field_converters:
                value = convert(value, expression, conn)
            values[i] = value
        obj = model.from_db(alias, attnames, values)
        obj._db_values = dict(zip(attnames, values))
        out.append(obj)
    return out


def select_one(model: type[M], *, order_by: str = "", **where) -> M | None:
    """The first row of ``model`` matching ``where`` (in ``order_by`` order), or None."""
    rows = select(model, order_by=order_by, limit=1, **where)
    return rows[0] if rows else None


@cache
def _update_sql(model: type[models.Model], vendor: str, names: tuple[str, ...] | None
                ) -> tuple[str, tuple[models.Field, ...]]:
    meta = model._meta
    q = connection.ops.quote_name
    if names is None:
        fields = tuple(f for f in meta.concrete_fields if not f.primary_key)
    else:
        fields = tuple(meta.get_field(name) for name in names)
    assignments = ", ".join(f"{q(f.column)} = %s" for f in fields)
    return f"UPDATE {meta.db_table} SET {assignments} WHERE {q(meta.pk.column)} = %s", fields


#: Values that can't change without the attribute being reassigned (so "same object" means "unchanged").
_IMMUTABLE = (str, int, float, bool, Decimal, dt.datetime, dt.date, dt.timedelta, type(None))


def _remember(obj: models.Model) -> None:
    """Note the values just read or written, so that ``update`` can skip the columns left alone."""
    obj._db_values = {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def _changed(obj: models.Model) -> tuple[str, ...] | None:
    """Names of the columns whose value was reassigned since ``select``/``insert``/``update`` (None: unknown).

    Only identity is compared, never equality: an attribute still holding the very object that was
    read is unchanged, anything else (and every mutable value, e.g. a JSON dict) is written.
    """
    known = obj.__dict__.get("_db_values")
    if known is None:
        return None
    changed = []
    for field in obj._meta.concrete_fields:
        if field.primary_key:
            continue
        value = getattr(obj, field.attname)
        if value is known.get(field.attname, _MISSING) and isinstance(value, _IMMUTABLE) \
                and not getattr(field, "auto_now", False):
            continue
        changed.append(field.name)
    return tuple(changed)


_MISSING = object()


def update(obj: models.Model, fields: Sequence[str] | None = None) -> None:
    """Write ``fields`` of ``obj``, an existing row, by its primary key.

    Default: every column reassigned since the row was read or written through this module (all columns
    for an instance that came from the ORM).
    """
    names = tuple(fields) if fields is not None else _changed(obj)
    if names == ():
        return
    conn = _connection()
    sql, targets = _update_sql(type(obj), conn.vendor, names)
    values = _prepared(targets, obj, False, conn)
    values.append(obj.pk)
    with conn.cursor() as cursor:
        cursor.execute(sql, values)
    known = obj.__dict__.get("_db_values")
    if known is not None:
        for f in targets:
            known[f.attname] = getattr(obj, f.attname)


@cache
def _update_where_sql(model: type[models.Model], vendor: str, names: tuple[str, ...],
                      where: tuple[str, ...]) -> tuple[str, tuple[models.Field, ...], tuple]:
    meta = model._meta
    q = connection.ops.quote_name
    fields = tuple(meta.get_field(name) for name in names)
    keys = tuple(meta.get_field(name) for name in where)
    assignments = ", ".join(f"{q(f.column)} = %s" for f in fields)
    conditions = " AND ".join(f"{q(f.column)} = %s" for f in keys)
    return f"UPDATE {meta.db_table} SET {assignments} WHERE {conditions}", fields, keys


def update_where(model: type[models.Model], values: dict, **where) -> int:
    """``UPDATE`` the columns in ``values`` of the rows whose columns equal ``where``; the rows changed."""
    conn = _connection()
    sql, fields, keys = _update_where_sql(model, conn.vendor, tuple(values), tuple(where))
    params = [f.get_db_prep_save(values[f.name], conn) for f in fields]
    params += [k.get_db_prep_value(where[k.name], conn) for k in keys]
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@cache
def _column_converter(model: type[models.Model], vendor: str, name: str):
    col, converters = _converters(model._meta.get_field(name))

    def convert(value, conn):
        for converter in converters:
            value = converter(value, col, conn)
        return value

    return convert


def from_db(model: type[models.Model], name: str, value):
    """A raw column value of ``model.name`` as the ORM would return it (e.g. SQLite's text datetimes)."""
    conn = _connection()
    return _column_converter(model, conn.vendor, name)(value, conn)


# --------------------------------------------------------------------------- SQLite writers' queue

_thread_lock = threading.Lock()
_lock_file: tuple[int, int] | None = None  # (pid, fd): reopened in a forked child


def writers_lock_path(database: str) -> str:
    """The file beside an SQLite database whose ``flock`` the call path's writers queue on."""
    return f"{database}-writers.lock"


def _lock_fd() -> int | None:
    global _lock_file
    if connection.is_in_memory_db():
        return None
    if _lock_file is None or _lock_file[0] != os.getpid():
        fd = os.open(writers_lock_path(connection.settings_dict["NAME"]), os.O_RDWR | os.O_CREAT, 0o600)
        _lock_file = (os.getpid(), fd)
    return _lock_file[1]


@contextmanager
def write_lock() -> Iterator[None]:
    """On SQLite, wait for the database's one write lock in a queue instead of SQLite's busy loop.

    SQLite lets one writer in at a time; a second one polls, sleeping 1, 2, 5, 10, 15, 20, 25 … ms
    between tries (its busy handler), so under load most of a webhook's time was spent asleep while the
    lock sat free. Here the writers of every process on this machine line up on an ``flock`` of a file
    beside the database (and threads of one process on a mutex, since ``flock`` is per open file), and
    the kernel wakes the next one the moment the lock is released. A process that dies releases it.
    Nothing is done on PostgreSQL, whose row locks queue properly.
    """
    if connection.vendor != "sqlite":
        yield
        return
    with _thread_lock:
        fd = _lock_fd()
        if fd is None:
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
