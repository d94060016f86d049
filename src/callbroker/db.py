"""Small database helpers for the call path, where the ORM's per-query overhead is most of the cost.

Every carrier webhook reads a call, maybe an attempt, and writes them back. Building those statements
with the ORM (filters, compiler, ordering) costs several times what SQLite takes to run them, so the
call path uses statements built once per model and query shape, here:

- ``insert`` writes a new row with one prepared ``INSERT … RETURNING`` (SQLite >= 3.35 and PostgreSQL
  both support RETURNING);
- ``select`` / ``select_one`` read whole rows by equality on a few columns and build model instances
  with ``Model.from_db`` (as the ORM does, so ``_state`` and deferred-field tracking are the ORM's);
- ``update`` writes some or all columns of an existing row by its primary key.

``fetchone`` / ``fetchall`` / ``execute`` run hand-written statements the same way: on the DB-API
connection itself, without Django's cursor wrapper (which, per statement, creates a wrapper cursor and
on SQLite rewrites ``%s`` placeholders with a regular expression), but inside Django's
``wrap_database_errors`` so that a failure raises the same ``django.db`` exception as through the ORM
(``OperationalError`` for an outage, ``IntegrityError`` for a duplicate, …). Placeholders are written
``%s`` as everywhere in Django and converted once per statement text. When statements are watched
(``DEBUG`` or a test counting queries, or an ``execute_wrapper`` installed) Django's own cursor is
used, so that they are seen.

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
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from functools import cache, lru_cache
from operator import attrgetter, methodcaller
from typing import TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, OperationalError, connection, connections, models
from django.db.models import signals

M = TypeVar("M", bound=models.Model)
V = TypeVar("V")


def in_batches(values: Sequence[V]) -> Iterator[Sequence[V]]:
    """``values`` in slices small enough for one ``IN (…)`` of the default database.

    SQLite takes at most 32,766 values per statement as built (Django assumes 999), PostgreSQL 65,535;
    a network of that many tracking numbers or targets is big but real. Slices of Django's own
    ``max_query_params`` (what ``in_bulk`` batches by) leave room for a statement's other values.
    """
    size = max(1, (connection.features.max_query_params or 10_000) - 10)
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _connection():
    """The default connection itself: ``django.db.connection`` is a proxy that looks it up on every use."""
    return connections[DEFAULT_DB_ALIAS]


_QMARK = re.compile(r"(?<!%)%s")


@lru_cache(maxsize=1024)
def _native(sql: str) -> str:
    """``sql`` with SQLite's ``?`` placeholders, as Django's SQLite cursor rewrites it on every execute."""
    return _QMARK.sub("?", sql).replace("%%", "%")


def _raw_cursor(conn):
    """A DB-API cursor that executes ``%s`` statements (call inside ``conn.wrap_database_errors``)."""
    if conn.connection is None or conn.health_check_enabled:
        conn.close_if_health_check_failed()
        conn.ensure_connection()
    conn.validate_no_broken_transaction()
    return conn.create_cursor() if conn.vendor != "sqlite" else None


def _run(conn, sql: str, params: Sequence):
    """Execute one statement on ``conn``'s DB-API connection; the DB-API cursor (errors wrapped by caller)."""
    cursor = _raw_cursor(conn)
    if cursor is None:  # SQLite: the connection executes (and caches the prepared statement) itself
        return conn.connection.execute(_native(sql), params)
    cursor.execute(sql, params)
    return cursor


def _observed(conn) -> bool:
    """Someone watches this connection's statements: Django's query log (``DEBUG``, a test counting
    queries) or an ``execute_wrapper`` (monitoring, tests). Then statements go through Django's cursor."""
    return bool(conn.execute_wrappers) or conn.queries_logged


def _statement(sql: str, params: Sequence, read: Callable):
    """Run one hand-written statement and return ``read(cursor)`` (a row, the rows, the row count)."""
    conn = _connection()
    if _observed(conn):
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return read(cursor)
    with conn.wrap_database_errors:
        cursor = _run(conn, sql, params)
        try:
            return read(cursor)
        finally:
            cursor.close()


_ONE, _ALL, _COUNT = methodcaller("fetchone"), methodcaller("fetchall"), attrgetter("rowcount")


def fetchone(sql: str, params: Sequence = ()) -> tuple | None:
    """The first row of a hand-written ``SELECT`` (or ``… RETURNING``), or None."""
    return _statement(sql, params, _ONE)


def fetchall(sql: str, params: Sequence = ()) -> list[tuple]:
    """Every row of a hand-written ``SELECT``."""
    return _statement(sql, params, _ALL)


def execute(sql: str, params: Sequence = ()) -> int:
    """Run a hand-written ``INSERT`` / ``UPDATE`` / ``DELETE``; the number of rows it changed."""
    return _statement(sql, params, _COUNT)


_NONE = type(None)


@cache
def _plain(field: models.Field, vendor: str) -> frozenset[type]:
    """The value types ``field.get_db_prep_save`` returns unchanged (empty: always call it).

    ``to_python`` of a ``str`` for a text field, a ``bool`` for a boolean field or an ``int`` for an
    integer field is the value itself, so the three layers of method calls per column can be skipped.
    Integers only on SQLite: Django's PostgreSQL backend wraps them in psycopg's sized integer types.
    A date, datetime or decimal column's ``None`` is ``None`` for the database too.
    """
    if isinstance(field, models.ForeignKey):
        return _plain(field.target_field, vendor)
    decimal_prep = models.DecimalField.get_db_prep_save
    if isinstance(field, models.DecimalField) and type(field).get_db_prep_save is decimal_prep:
        return frozenset({_NONE})
    if type(field).get_db_prep_save is not models.Field.get_db_prep_save:
        return frozenset()
    if isinstance(field, (models.CharField, models.TextField)):
        return frozenset({str, _NONE})
    if isinstance(field, models.BooleanField):
        return frozenset({bool, _NONE})
    if isinstance(field, models.IntegerField) and vendor == "sqlite":  # auto fields are integer fields too
        return frozenset({int, _NONE})
    if type(field).get_db_prep_value in (models.DateField.get_db_prep_value, models.DateTimeField.get_db_prep_value):
        return frozenset({_NONE})  # Django's own date and datetime columns
    return frozenset()


def _reads_attribute(field: models.Field) -> bool:
    """``field.pre_save`` only reads the attribute (no ``auto_now``, no override of ours to honour)."""
    pre_save = type(field).pre_save
    if pre_save is models.Field.pre_save:
        return True
    return (pre_save in (models.DateField.pre_save, models.DateTimeField.pre_save)
            and not (field.auto_now or field.auto_now_add))


def _utc_text(field: models.Field, vendor: str) -> bool:
    """An SQLite datetime column that Django writes as ``str(naive UTC)`` (see ``_prepared``)."""
    cls = type(field)
    return (vendor == "sqlite" and isinstance(field, models.DateTimeField)
            and cls.get_db_prep_save is models.Field.get_db_prep_save
            and cls.get_db_prep_value is models.DateTimeField.get_db_prep_value
            and cls.get_prep_value is models.DateTimeField.get_prep_value)


def _values_of(names: tuple[str, ...]) -> Callable:
    """One getter returning the tuple of these attributes of an object (a tuple even for one name)."""
    getter = attrgetter(*names)
    return getter if len(names) > 1 else (lambda obj: (getter(obj),))


def _plan(fields: tuple[models.Field, ...], vendor: str) -> tuple[Callable, tuple[tuple, ...]]:
    """How ``_prepared`` reads and converts each of ``fields``: one getter for all, a step per field.

    Kept by the identity of the ``fields`` tuple, which comes from the cached statements (``_insert_sql``,
    ``_update_sql`` …), so the same object every time: hashing the tuple (what ``functools.cache`` does)
    calls ``Field.__hash__``, a Python method, once per column, 40 times per call row written. The entry
    holds the tuple, so its id can't be reused while kept; a tuple not seen before is planned afresh.
    """
    kept = _PLANS.get((id(fields), vendor))
    if kept is not None and kept[0] is fields:
        return kept[1]
    plan = (_values_of(tuple(f.attname for f in fields)),
            tuple((f, _plain(f, vendor), _reads_attribute(f), _utc_text(f, vendor)) for f in fields))
    if len(_PLANS) >= _PLANS_KEPT:  # only tuples built per call (not the module's own) get here often
        _PLANS.clear()
    _PLANS[(id(fields), vendor)] = (fields, plan)
    return plan


_PLANS: dict[tuple[int, str], tuple[tuple, tuple[Callable, tuple[tuple, ...]]]] = {}
_PLANS_KEPT = 256


_UTC = dt.UTC


def _prepared(fields: tuple[models.Field, ...], obj: models.Model, adding: bool, conn) -> list:
    """Each field's value of ``obj`` for the database, exactly as ``Field.get_db_prep_save`` gives it.

    Per column that is the value itself when ``get_db_prep_save`` would return it unchanged (``_plain``),
    and on SQLite an aware UTC datetime's ``str`` without the offset, which is what Django's
    ``adapt_datetimefield_value`` makes of it when the connection's time zone is UTC (the default).
    Everything else goes through the field's own ``pre_save`` and ``get_db_prep_save``.
    """
    getter, steps = _plan(fields, conn.vendor)
    utc = conn.timezone is _UTC
    out = []
    for value, (field, plain, reads, utc_text) in zip(getter(obj), steps, strict=True):
        if not reads:
            value = field.pre_save(obj, adding)
        if type(value) in plain:
            out.append(value)
        elif utc_text and utc and type(value) is dt.datetime and value.tzinfo is _UTC:
            out.append(str(value.replace(tzinfo=None)))
        else:
            out.append(field.get_db_prep_save(value, conn))
    return out


@cache
def _blank(model: type[models.Model]) -> tuple[dict, tuple[tuple[str, Callable], ...], frozenset[str]]:
    """A new ``model`` instance's column values: those shared by every instance, those made per instance
    (a callable default such as ``list``), and the names ``new`` accepts."""
    fixed, fresh = {}, []
    for f in model._meta.concrete_fields:
        if f.has_default() and callable(f.default):
            fresh.append((f.attname, f.default))
        else:
            fixed[f.attname] = f.get_default()
    return fixed, tuple(fresh), frozenset(fixed) | {name for name, _ in fresh}


def new(model: type[M], **values) -> M:
    """``model(**values)`` for a new row, built without ``Model.__init__``'s per-field work.

    ``values`` are given by column attribute (``campaign_id``, not ``campaign``). Each column gets its
    default as ``__init__`` gives it (a callable default is called for each instance); no ``pre_init`` /
    ``post_init`` signal is sent, so a model that has receivers for them is built by ``__init__``.
    """
    fixed, fresh, names = _blank(model)
    unknown = values.keys() - names
    if unknown:
        raise TypeError(f"{model.__name__} has no column attribute {', '.join(sorted(unknown))}")
    if signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model):
        return model(**values)
    obj = model.__new__(model)
    state = obj.__dict__
    state.update(fixed)
    for name, default in fresh:
        state[name] = default()
    state.update(values)
    state["_state"] = models.base.ModelState()
    return obj


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
    return insert_later(obj)()


def insert_later(obj: models.Model) -> Callable[[], models.Model]:
    """``insert(obj)`` with the column values taken now and written when the returned function is called.

    For a row decided before its write transaction: the values are prepared outside it, so that SQLite's
    write lock is held for the writing only. ``obj`` must not change in between (nothing checks that).
    """
    conn = _connection()
    sql, fields = _insert_sql(type(obj), conn.vendor)
    values = _prepared(fields, obj, True, conn)

    def write() -> models.Model:
        obj.pk = fetchone(sql, values)[0]
        obj._state.adding = False
        obj._state.db = conn.alias
        _remember(obj)
        return obj

    return write


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
    rows = fetchall(sql, params)
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


@cache
def _all_columns(model: type[models.Model]) -> tuple[tuple[str, ...], Callable]:
    """The attribute names of ``model``'s columns and one getter returning all of their values."""
    names = tuple(f.attname for f in model._meta.concrete_fields)
    return names, _values_of(names)


def _remember(obj: models.Model) -> None:
    """Note the values just read or written, so that ``update`` can skip the columns left alone."""
    names, values = _all_columns(type(obj))
    obj._db_values = dict(zip(names, values(obj), strict=True))


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
    execute(sql, values)
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
    return execute(sql, params)


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


# --------------------------------------------------------------------------- webhooks in turn (PostgreSQL)

#: First key of the PostgreSQL advisory locks that make one call's webhooks take turns (the second is a
#: hash of the CallSid): "CBcl". ``network.live`` uses "CBlv" for targets' limits.
CALL_LOCK_SPACE = 0x4342636C


def lock_call(call_sid: str) -> None:
    """Until this transaction ends, hold the call's lock: its other webhooks wait for this one to commit.

    A carrier sends a call's Dial action and its final status at the same moment (the caller hangs up,
    the buyer hangs up); each handler reads the call and its attempts and writes back what it decided.
    On SQLite the writers' lock already makes every webhook take its turn; on PostgreSQL two transactions
    would read the same state, and the second would overwrite the first's attempt result, stage and
    verdict and give a slot back twice. An advisory lock (memory only; a hash collision only makes two
    calls take turns) keyed on the CallSid orders them, and the second reads what the first committed.
    """
    if connection.vendor == "postgresql":
        fetchone("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [CALL_LOCK_SPACE, call_sid])


#: First key of the advisory locks that make the verdicts of one caller's calls take turns (the second is a
#: hash of the caller's number): "CBcr".
CALLER_LOCK_SPACE = 0x43426372


def lock_caller(number: str) -> None:
    """Until this transaction ends, hold the caller's lock: the judging of their other calls waits for it.

    A call's verdict rests on the caller's other calls (the duplicate window in its campaign, the velocity
    window in any campaign), and judging one call may judge their later calls again. Two of a caller's
    calls ending at the same moment are two CallSids, which ``lock_call`` doesn't order: on PostgreSQL each
    transaction would read the other call without its verdict (not committed yet), and both be billed.
    Taken by number, not by campaign (velocity counts the caller's calls in every campaign). A transaction
    takes one caller's lock only (the calls it judges again are that caller's), so two of these locks never
    deadlock. On SQLite the writers' lock already makes every webhook take its turn: nothing is done.

    The one order of the locks on PostgreSQL, in every transaction that takes more than one (docs/database.md
    lists the writers): the call's lock (``lock_call``), then this caller's lock, then a target's misses lock
    (``lock_target_misses``), then a target's rows (its ``TargetState`` row: a slot taken or given back, a
    pause, a Redis mark; its ``TargetUsage`` rows: cap units) and its limits lock; several targets' state rows
    in target order, locked at once before any is written (``live.lock_targets_in_order``: an unanswered
    leg's Dial action giving one slot back and taking the next, SQL counters). The rows of the caller's
    calls are written under their call's lock or this one only, which come first. Two transactions taking
    two of them in opposite orders wait for each other: PostgreSQL stops one after a second (a deadlock) and
    it is run again. The caller's lock comes before a target's rows, not after, because
    - the replay can take it first and can't take the rows first: the caller is known before its event is
      applied (``replay._caller_to_lock``), which targets' rows the event writes only as it is applied (the
      slots it gives back, a pause); and it must come before the call's own row, which the replay locks
      (``FOR UPDATE``) before applying anything, since a verdict holding this lock writes the caller's other
      calls' rows (judged again);
    - a target's state row is every call of that target's (each inbound call takes a slot on it, each end
      gives one back): held while waiting for a caller's lock, it would hold up the target's calls for as
      long as that caller's other transaction lasts; this lock held while waiting for the row holds up that
      caller's other calls only.
    So it is taken at the start of the judging, before any slot goes back: right before the reads by a writer
    that gives nothing back first (an inbound call or IVR answer after its final status, a call judged again),
    else before the slots (``services._lock_caller_to_judge``: a final status live, kept or replayed, the
    six-hour close, a bridged Dial action after the final status) or before the call's row (a final status
    after the six-hour close, judging again), and by the replay before the call's row
    (``replay._lock_for_replay``). Until 2026-12-07 a final status gave its slots back before it took this
    lock, and deadlocked with the replay of the caller's other call on the same target.
    """
    if connection.vendor == "postgresql":
        fetchone("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [CALLER_LOCK_SPACE, number])


#: First key of the advisory locks that make missed-call protection count one target's misses in turn
#: (the second is the target's id): "CBms".
MISSES_LOCK_SPACE = 0x43426D73


def lock_target_misses(target_id: int) -> None:
    """Until this transaction ends, hold the lock on counting this target's missed calls.

    Missed-call protection writes an unanswered attempt, then counts the target's recent ones. Several
    no-answers for one target handled at the same moment (other calls, other CallSids) would each count
    only their own on PostgreSQL, the others not committed yet, and none reach the limit. Taken after the
    attempt's own result is written and before the count: each count waits for the previous one's commit,
    so the last one sees every miss. (With SQL counters giving back the slot already locks the target's
    row; not with Redis counters, nor for a late result whose slot was given back earlier.) On SQLite the
    writers' lock already orders them: nothing is done.
    """
    if connection.vendor == "postgresql":
        fetchone("SELECT pg_advisory_xact_lock(%s, %s)", [MISSES_LOCK_SPACE, target_id])


# --------------------------------------------------------------------------- SQLite writers' queue

_thread_lock = threading.Lock()
_lock_file: tuple[int, int] | None = None  # (pid, fd): reopened in a forked child


def writers_lock_path(database: str) -> str:
    """The file beside an SQLite database whose ``flock`` the call path's writers queue on."""
    return f"{database}-writers.lock"


def _lock_fd() -> int | None:
    global _lock_file
    if _lock_file is not None and _lock_file[0] == os.getpid():
        return _lock_file[1]
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
    The wait is bounded by ``settings.DB_LOCK_TIMEOUT_MS`` when set (the web server: 2 s), after which
    ``OperationalError`` is raised, as for any outage (see ``_take``).
    Nothing is done on PostgreSQL, whose row locks queue properly.
    """
    if connection.vendor != "sqlite":
        yield
        return
    timeout_ms = settings.DB_LOCK_TIMEOUT_MS
    started = time.monotonic()
    if not _thread_lock.acquire(timeout=timeout_ms / 1000 if timeout_ms > 0 else -1):
        raise _lock_expired(timeout_ms)
    try:
        fd = _lock_fd()
        if fd is None:
            yield
            return
        try:
            # One limit for both waits: what is left of it after another thread of this process (the
            # spool replayer) had the lock.
            left_ms = max(1, timeout_ms - int((time.monotonic() - started) * 1000)) if timeout_ms > 0 else 0
            _take(fd, left_ms, timeout_ms)
        except BaseException:
            fcntl.flock(fd, fcntl.LOCK_UN)  # whatever ended the wait, the lock isn't left taken (harmless if not)
            raise
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        _thread_lock.release()


class _LockWaitExpired(Exception):
    """Raised by the alarm that ends a wait for the writers' lock (``_take``)."""


def _lock_expired(timeout_ms: int) -> OperationalError:
    # Not "database is locked": ``handle_once`` retries that one, and the wait is over already.
    return OperationalError(f"the database's writers' lock was not free within {timeout_ms} ms")


def _on_alarm(signum, frame) -> None:
    raise _LockWaitExpired


def _take(fd: int, timeout_ms: int, limit_ms: int | None = None) -> None:
    """``flock`` the writers' lock, waiting at most ``timeout_ms`` (0: for good; ``limit_ms``: the whole
    limit, for the message).

    A webhook must not wait past the carrier's 15 s behind a writer that doesn't finish (another program
    holding SQLite's lock, a process stopped mid-transaction): after ``timeout_ms`` it fails as an outage
    and the call goes on from memory (degraded mode). The lock is tried first without waiting (a free lock,
    nearly always, costs one system call as before); a wait in the main thread is a blocking ``flock``
    ended by ``SIGALRM`` (so the kernel still hands the lock over the moment it is released), elsewhere a
    poll every millisecond. A lock taken just as the alarm went off is kept: a second try tells.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        if timeout_ms <= 0:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, _on_alarm):
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, timeout_ms / 1000)
                fcntl.flock(fd, fcntl.LOCK_EX)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            return
        except _LockWaitExpired:
            pass  # the wait ended; or the alarm rang just after the lock was taken (the last try below tells)
        finally:
            signal.signal(signal.SIGALRM, previous)
    else:
        deadline = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < deadline:
            time.sleep(0.001)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                continue
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken as the alarm rang, or free just now: keep it
    except BlockingIOError:
        raise _lock_expired(limit_ms or timeout_ms) from None
