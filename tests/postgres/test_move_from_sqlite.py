"""Moving an install from SQLite to PostgreSQL, as docs/database.md tells the operator to.

Given an embedded install with calls placed through the webhooks (and an old month of history),
when its data is dumped with ``dumpdata`` and loaded into a fresh PostgreSQL database, then every call
reads back the same, the money ledger comes along (``billing check`` agrees), old calls land in their
month's partition, and new calls get new ids.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing

from tests.e2e.conftest import TOKEN
from tests.postgres.conftest import PgDatabase, new_database


def calls_by_sid(listing: dict) -> dict[str, dict]:
    return {c["sid"]: c for c in json.loads(listing["stdout"])}


def test_dumpdata_from_sqlite_loads_into_partitioned_postgres(postgres_server, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("sqlite-install")
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(data_dir), "TWILIO_AUTH_TOKEN": TOKEN,
           "CALLBROKER_FALLBACK_NUMBER": "+15125550999"}
    env.pop("DATABASE_URL", None)
    sqlite = PgDatabase("", env)  # the same helpers, pointed at the embedded database
    dump = data_dir / "callbroker.xml"
    unknown = {"CallSid": "CA" + "e" * 32, "AccountSid": "AC" + "0" * 32, "From": "+15124440999",
               "To": "+15125550999", "CallStatus": "ringing"}  # no tracking number: judged not_connected
    _, placed, _, _, (checked_before, dumped, before) = sqlite.probe("steps", steps=[
        ["setup", {"network": True}],
        ["place_calls", {"count": 4, "token": TOKEN}],
        ["post_webhooks", {"token": TOKEN, "webhooks": [
            ["/carriers/twilio/voice", unknown],
            ["/carriers/twilio/status", {**unknown, "CallStatus": "completed", "CallDuration": "5"}]]}],
        ["insert_calls", {"calls": [{"call_sid": "CAhistory", "started_at": "2025-06-15T12:00:00+00:00"}]}],
        # What docs/database.md says (XML: Django's JSON serializer keeps only milliseconds of times).
        ["commands", {"argvs": [
            ["billing", "check"],
            ["dumpdata", "network", "calls", "billing", "auth.user", "--format", "xml", "-o", str(dump)],
            ["calls", "list", "--json", "--limit", "0"],
        ]}],
    ])
    assert checked_before["code"] == 0 and dumped["code"] == 0, (checked_before, dumped)
    pg = new_database(postgres_server, tmp_path_factory, "moved")
    *steps, checked, after = pg.commands(["migrate", "--verbosity", "0"], ["loaddata", str(dump)],
                                         ["partitions", "ensure"], ["billing", "check"],
                                         ["calls", "list", "--json", "--limit", "0"])
    assert all(step["code"] == 0 for step in steps), steps
    # Without ``billing`` in the dump, every billable call was "billable but not charged in the ledger".
    assert checked["code"] == 0 and "OK: the ledger agrees with every call." in checked["stdout"], checked
    assert checked["stdout"] == checked_before["stdout"]

    before, after = calls_by_sid(before), calls_by_sid(after)
    assert len(before) == 6 and set(placed) < set(before)
    # the reasons' sentences kept with the verdicts come along (calls list --json: reason_notes)
    assert before[unknown["CallSid"]]["reason_notes"] == {
        "not_connected": "the caller was never connected to a buyer"}
    for sid, call in before.items():
        assert after[sid] == call, sid
    assert sum(1 for c in after.values() if c["verdict"] == "billable") >= 1
    assert pg.partition_of("CAhistory") == "calls_call_y2025m06"
    with closing(sqlite3.connect(data_dir / "callbroker.sqlite3")) as conn:
        events = conn.execute("SELECT count(*) FROM calls_callevent").fetchone()[0]
    assert events > 5 and pg.value("SELECT count(*) FROM calls_callevent") == events
    # loaddata reset the id sequence: a new call never reuses an id.
    assert pg.value("SELECT nextval(pg_get_serial_sequence('calls_call', 'id'))") > \
        pg.value("SELECT max(id) FROM calls_call")
