"""Past calls for a bench server's database: ``callbroker bench --history N``.

A fresh database flatters the figures: its call table and indexes fit in a few pages, where an
installation in use holds months of calls, and every new call's row goes into B-trees of that size
(random keys such as the CallSid and the caller's number land on a different leaf page each time).
``fill`` writes ``calls`` past calls into a bench server's SQLite file before the server starts, each
with the rows a real call leaves: four carrier events and, when it talked to a buyer, one attempt.

The calls lie in the :data:`DAYS` days that end :data:`ENDS_DAYS_AGO` days ago: older than every
window the routing counts in (caps by hour, day and month, duplicate windows of 30 days, velocity and
missed-call windows), so the measured calls route exactly as on a fresh database and only the size of
the tables differs. They go to the loaded network's targets in turn (each through a tracking number of
the target's campaign); 60 % talked to the buyer and are billable.

Written with SQL on the file (``INSERT … SELECT`` over a counter, in batches of :data:`BATCH` calls,
one transaction each; SQLite 3.35 or later): 600,000 calls take about 70 s here. Columns the statements
don't name take the model field's default (an empty text for text fields), or ``NULL`` where the field
allows it; a new column with neither stops the fill with its name (the bench's tests fill a few calls,
so a model change that needs this file changed shows there).
"""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from decimal import Decimal
from pathlib import Path

from callbroker.calls.choices import AttemptResult, CallerStatus, CallStage, Verdict, ZipSourceChoices
from callbroker.core.model import Reason
from callbroker.core.qualification import NEVER_CONNECTED

DAYS = 90
ENDS_DAYS_AGO = 60
BATCH = 50_000
#: Bytes a past call takes in the database with its four events and attempt (measured: 3,303; 600,000
#: calls make a 2 GB database).
BYTES_PER_CALL = 3_300
#: The carrier events each past call leaves (the webhooks of a call that talked to a buyer).
EVENT_KINDS = ("voice", "dial", "status", "recording")

# The call rows: SQL over ``h`` (one row per call: i, caller, started, talk) joined to ``r`` (the
# route: campaign, target, buyer, tracking number, publisher). Django keeps an aware datetime on
# SQLite as UTC text "YYYY-MM-DD HH:MM:SS.ffffff".
_TIME = "strftime('%Y-%m-%d %H:%M:%f', h.started, 'unixepoch', '+{add} seconds')"
_TALKED = "h.i % 5 < 3"
_CALL_COLUMNS = {
    "call_sid": "'CA' || lower(hex(randomblob(16)))",
    "account_sid": "'AC' || lower(hex(randomblob(16)))",
    "carrier": "'twilio'",
    "to_number": "r.to_number",
    "caller_raw": "h.caller",
    "caller_number": "h.caller",
    "caller_status": f"'{CallerStatus.VALID}'",
    "caller_zip": "''",
    "zip_source": f"'{ZipSourceChoices.UNKNOWN}'",
    "stage": f"'{CallStage.ENDED}'",
    "started_at": _TIME.format(add=0),
    "ended_at": _TIME.format(add="' || (h.talk + 20) || '"),
    "duration_seconds": "h.talk + 20",
    "final_status": "'completed'",
    "decision": "json_object('at', strftime('%Y-%m-%dT%H:%M:%f+00:00', h.started, 'unixepoch'), "
                f"'caller_zip', NULL, 'zip_source', '{ZipSourceChoices.UNKNOWN}', "
                "'ring', json_array(r.target_id), 'excluded', json_object(), 'sticky', json('false'), "
                "'fallback', NULL, 'targets', json_object(CAST(r.target_id AS TEXT), r.target_name), "
                "'auto_paused', json_array())",
    "talk_seconds": f"CASE WHEN {_TALKED} THEN h.talk ELSE 0 END",
    "in_area": "1",
    "recording_sid": f"CASE WHEN {_TALKED} THEN 'RE' || lower(hex(randomblob(16))) ELSE '' END",
    "recording_seconds": f"CASE WHEN {_TALKED} THEN h.talk + 20 END",
    "verdict": f"CASE WHEN {_TALKED} THEN '{Verdict.BILLABLE}' ELSE '{Verdict.NOT_BILLABLE}' END",
    "reason_codes": f"CASE WHEN {_TALKED} THEN '[]' ELSE '[\"{Reason.NOT_CONNECTED}\"]' END",
    "reason_notes": f"CASE WHEN {_TALKED} THEN '{{}}' ELSE json_object('{Reason.NOT_CONNECTED}', "
                    f"'{NEVER_CONNECTED}') END",
    "revenue": f"CASE WHEN {_TALKED} THEN r.price ELSE 0 END",
    "payout": f"CASE WHEN {_TALKED} THEN r.payout ELSE 0 END",
    "qualified_at": _TIME.format(add="' || (h.talk + 20) || '"),
    "buyer_id": f"CASE WHEN {_TALKED} THEN r.buyer_id END",
    "campaign_id": "r.campaign_id",
    "connected_target_id": f"CASE WHEN {_TALKED} THEN r.target_id END",
    "publisher_id": "r.publisher_id",
    "tracking_number_id": "r.tracking_number_id",
}
_EVENT_COLUMNS = {
    "call_sid": "c.call_sid",
    "kind": "k.kind",
    "dedupe_key": "c.call_sid || ':' || k.kind",
    "params": "json_object('CallSid', c.call_sid, 'AccountSid', c.account_sid, 'From', c.caller_number, "
              "'To', c.to_number, 'CallStatus', 'completed', 'Direction', 'inbound', 'ApiVersion', '2010-04-01')",
    "response": "'<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Dial action=\"/carriers/twilio/dial\">"
                "<Number>' || c.to_number || '</Number></Dial></Response>'",
    "received_at": "c.started_at",
}
_ATTEMPT_COLUMNS = {
    "sequence": "0",
    "number": "t.number",
    "started_at": "c.started_at",
    "ended_at": "c.ended_at",
    "ring_seconds": "8",
    "talk_seconds": "c.talk_seconds",
    "result": f"'{AttemptResult.BRIDGED}'",
    "dial_call_sid": "'CA' || lower(hex(randomblob(16)))",
    "slot_held": "0",
    "buyer_id": "c.buyer_id",
    "target_id": "c.connected_target_id",
    "call_id": "c.id",
}


class NotEnoughSpace(ValueError):
    """The disk can't hold the databases ``--history`` asks for."""


def check_space(calls: int, directory: Path, copies: int = 2) -> None:
    """Refuse, before writing anything, when ``directory`` can't hold ``copies`` databases of ``calls`` past
    calls (the bench keeps the filled one and copies it for each server in turn)."""
    needed = calls * BYTES_PER_CALL * copies
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise NotEnoughSpace(f"--history {calls:,} needs about {_size(needed)} free in {directory} "
                             f"({copies} databases of {_size(calls * BYTES_PER_CALL)}), {_size(free)} is: "
                             f"ask for fewer calls or set TMPDIR to a larger disk")


def _size(octets: float) -> str:
    return f"{octets / 1e9:.1f} GB" if octets >= 1e9 else f"{octets / 1e6:.1f} MB"


def fill(db_path: Path, calls: int, *, now: dt.datetime | None = None,
         progress: Callable[[int, int], None] | None = None) -> int:
    """Write ``calls`` past calls (with their events and attempts) into the SQLite file ``db_path``.

    The network must be loaded. Returns the calls written; ``progress(done, calls)`` after each batch.
    """
    from callbroker.calls.models import Call, CallAttempt, CallEvent

    if sqlite3.sqlite_version_info < (3, 35, 0):  # "AS MATERIALIZED" below
        raise ValueError(f"history: needs SQLite 3.35 or later, this Python has {sqlite3.sqlite_version}")
    now = now or dt.datetime.now(dt.UTC)
    newest = int((now - dt.timedelta(days=ENDS_DAYS_AGO)).timestamp())
    span = DAYS * 86_400
    written = 0
    with closing(sqlite3.connect(db_path, timeout=60, isolation_level=None)) as con:
        routes = _routes(con)
        if not routes:
            raise ValueError("history: the database has no target with a tracking number in its campaign; "
                             "load a network first")
        con.execute("CREATE TEMP TABLE r (k INTEGER PRIMARY KEY, campaign_id, target_id, target_name, buyer_id, "
                    "price, payout, tracking_number_id, publisher_id, to_number)")
        con.executemany("INSERT INTO r VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(k, *route) for k, route in enumerate(routes)])
        con.execute("CREATE TEMP TABLE k (kind)")
        con.executemany("INSERT INTO k VALUES (?)", [(kind,) for kind in EVENT_KINDS])
        call_cols, call_exprs, call_params = _columns(Call, _CALL_COLUMNS)
        event_cols, event_exprs, event_params = _columns(CallEvent, _EVENT_COLUMNS)
        attempt_cols, attempt_exprs, attempt_params = _columns(CallAttempt, _ATTEMPT_COLUMNS)
        calls_table, events_table = Call._meta.db_table, CallEvent._meta.db_table
        attempts_table = CallAttempt._meta.db_table
        target_table = Call._meta.get_field("connected_target").related_model._meta.db_table
        while written < calls:
            batch = min(BATCH, calls - written)
            first = written
            con.execute("BEGIN IMMEDIATE")
            try:
                (last_id,) = con.execute(f"SELECT COALESCE(MAX(id), 0) FROM {calls_table}").fetchone()
                # Call i starts (calls - i) / calls of the span before the newest moment: oldest first,
                # so ids and times rise together as they do in a real database.
                con.execute(
                    f"WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?), "
                    # MATERIALIZED: a row's random caller and talk time drawn once, not at each use.
                    f"h AS MATERIALIZED (SELECT i, '+1' || (2002000000 + abs(random() % 7000000000)) AS caller, "
                    f"? - (? - i) * ? / ? AS started, 30 + abs(random() % 400) AS talk FROM n) "
                    f"INSERT INTO {calls_table} ({call_cols}) SELECT {call_exprs} "
                    f"FROM h JOIN r ON r.k = h.i % ?",
                    (first, first + batch - 1, newest, calls, span, calls, *call_params, len(routes)))
                con.execute(f"INSERT INTO {events_table} ({event_cols}) SELECT {event_exprs} "
                            f"FROM {calls_table} c CROSS JOIN k WHERE c.id > ? ORDER BY c.id",
                            (*event_params, last_id))
                con.execute(f"INSERT INTO {attempts_table} ({attempt_cols}) SELECT {attempt_exprs} "
                            f"FROM {calls_table} c JOIN {target_table} t ON t.id = c.connected_target_id "
                            f"WHERE c.id > ?", (*attempt_params, last_id))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            written += batch
            if progress:
                progress(written, calls)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return written


def _routes(con: sqlite3.Connection) -> list[tuple]:
    """(campaign, target, target name, buyer, price, payout, tracking number id, publisher, number) for every
    target and each tracking number of its campaign."""
    from callbroker.network.models import Campaign, Target, TrackingNumber

    targets, numbers = Target._meta.db_table, TrackingNumber._meta.db_table
    campaigns = Campaign._meta.db_table
    return con.execute(
        "SELECT t.campaign_id, t.id, t.name, t.buyer_id, t.price, c.payout, n.id, n.publisher_id, n.number "
        f"FROM {targets} t JOIN {numbers} n ON n.campaign_id = t.campaign_id "
        f"JOIN {campaigns} c ON c.id = t.campaign_id ORDER BY t.id, n.id").fetchall()


def _plain_value(model, field):
    """The field's default as SQLite stores it (whatever database the bench process itself is set up for)."""
    value = field.get_default()
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, Decimal):
        return str(value)
    raise ValueError(f"history: {model._meta.db_table}.{field.column} defaults to a {type(value).__name__}: "
                     f"give its value in callbroker/ops/history.py")


def _columns(model, given: dict[str, str]) -> tuple[str, str, list]:
    """The column list, the SQL expressions and the bound defaults for ``model``'s rows: ``given`` by
    column name, else the field's default (a parameter; "" for text), else NULL where allowed."""
    names, exprs, params = [], [], []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        names.append(f'"{field.column}"')
        if field.column in given:
            exprs.append(given[field.column])
        elif field.has_default() or (field.empty_strings_allowed and not field.null):  # text: "" by default
            exprs.append("?")
            params.append(_plain_value(model, field))
        elif field.null:
            exprs.append("NULL")
        else:
            raise ValueError(f"history: no value for {model._meta.db_table}.{field.column} "
                             f"(not null, no default): add it to callbroker/ops/history.py")
    unknown = set(given) - {f.column for f in model._meta.concrete_fields}
    if unknown:
        raise ValueError(f"history: {model._meta.db_table} has no column {', '.join(sorted(unknown))}")
    return ", ".join(names), ", ".join(exprs), params
